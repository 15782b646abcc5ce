/*
 * harness.c - starts the real parksyncd for integration tests; see harness.h.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "wire.h"

#define START_TIMEOUT_MS 10000 /* longest wait for the first pong */
#define STOP_TIMEOUT_MS  10000 /* longest wait for exit after SIGTERM */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

int harness_init(harness_t *h, const char *extra_ini)
{
    return harness_init_at(h, extra_ini, "debug");
}

int harness_init_at(harness_t *h, const char *extra_ini, const char *log_level)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->log_level, sizeof(h->log_level), "%s", log_level);
    snprintf(h->dir, sizeof(h->dir), "/tmp/parksync-test-XXXXXX");
    if (mkdtemp(h->dir) == NULL)
        return -errno;
    snprintf(h->config, sizeof(h->config), "%s/parksyncd.conf", h->dir);
    snprintf(h->db, sizeof(h->db), "%s/parksync.db", h->dir);
    snprintf(h->log, sizeof(h->log), "%s/parksyncd.log", h->dir);
    snprintf(h->ingest, sizeof(h->ingest), "ipc://%s/ingest", h->dir);
    snprintf(h->publish, sizeof(h->publish), "ipc://%s/publish", h->dir);
    snprintf(h->query, sizeof(h->query), "ipc://%s/query", h->dir);
    snprintf(h->control, sizeof(h->control), "ipc://%s/control", h->dir);
    if (extra_ini != NULL)
        snprintf(h->extra, sizeof(h->extra), "%s", extra_ini);
    return harness_write_config(h);
}

int harness_write_config(const harness_t *h)
{
    FILE *f;

    if ((f = fopen(h->config, "w")) == NULL)
        return -errno;
    fprintf(f,
            "[daemon]\ndatabase = %s\nlog_level = %s\n\n"
            "[endpoints]\ningest = %s\npublish = %s\nquery = %s\ncontrol = %s\n\n%s\n",
            h->db, h->log_level, h->ingest, h->publish, h->query, h->control, h->extra);
    return fclose(f) == 0 ? 0 : -errno;
}

/* Sends one packed message on a fresh DEALER to endpoint (with the
 * harness's CURVE keys when curve) and waits up to timeout_ms for one
 * reply frame, which goes to *reply (caller closes it). True when a reply
 * came. */
static bool roundtrip(const harness_t *h, const char *endpoint, bool curve,
                      const ProtobufCMessage *req, int timeout_ms, zmq_msg_t *reply)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    bool ok = false;
    uint8_t buf[256];
    size_t len;

    zmq_msg_init(reply);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    if (curve && h->server_key[0] != '\0' &&
        (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, h->server_key, 40) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, h->client_public, 40) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, h->client_secret, 40) != 0))
        goto out;
    if (protobuf_c_message_get_packed_size(req) > sizeof(buf) || zmq_connect(s, endpoint) != 0)
        goto out;
    len = protobuf_c_message_pack(req, buf);
    if (zmq_send(s, buf, len, 0) < 0)
        goto out;
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    ok = zmq_poll(&item, 1, timeout_ms) == 1 && zmq_msg_recv(reply, s, 0) >= 0;
out:
    zmq_close(s);
    zmq_ctx_term(ctx);
    return ok;
}

bool harness_ping(const harness_t *h, int timeout_ms)
{
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__Ping ping = PARKSYNC__V1__PING__INIT;
    Parksync__V1__QueryReply *reply = NULL;
    bool ok = false;
    const char *why;
    zmq_msg_t m;

    q.has_version = q.has_request_id = 1;
    q.version = WIRE_VERSION;
    q.request_id = 1;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PING;
    q.ping = &ping;
    if (roundtrip(h, h->query, true, &q.base, timeout_ms, &m) &&
        wire_query_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &reply, &why) == 0) {
        ok = reply->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_PONG;
        parksync__v1__query_reply__free_unpacked(reply, NULL);
    }
    zmq_msg_close(&m);
    return ok;
}

/* The daemon to start: this build's, or $PARKSYNCD_BIN, so that a
 * benchmark can run the same client against another build's daemon. */
static const char *daemon_bin(void)
{
    const char *bin = getenv("PARKSYNCD_BIN");

    return bin && bin[0] ? bin : PARKSYNCD_BIN;
}

int harness_spawn(harness_t *h, const char *const env[])
{
    pid_t parent = getpid();
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        /* The daemon ends with the test: a test that crashes (an assert
         * in a sanitizer build, a signal) cannot run its teardown, and
         * must not leave parksyncd running. */
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(127);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execl(daemon_bin(), "parksyncd", "-c", h->config, (char *)NULL);
        _exit(127);
    }
    h->pid = pid;
    return 0;
}

int harness_start(harness_t *h)
{
    int64_t deadline = wire_monotonic_ms() + START_TIMEOUT_MS;
    pid_t pid;

    if (harness_spawn(h, NULL) < 0)
        return -1;
    pid = h->pid;
    while (wire_monotonic_ms() < deadline) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            h->pid = 0;
            return -1;
        }
        if (harness_ping(h, 200))
            return 0;
    }
    harness_kill(h);
    return -1;
}

/* After a failed stop: the end of the daemon's log, which the cleanup
 * is about to delete, on stderr. */
static void log_tail(const harness_t *h, int rc)
{
    char *log = harness_slurp(h->log);
    size_t len = log ? strlen(log) : 0, from = len > 4000 ? len - 4000 : 0;

    fprintf(stderr, "harness: parksyncd %s %d; the end of %s:\n%s\n",
            rc < 0 ? "did not stop, killed; status" : "exited with status", rc, h->log,
            log ? log + from : "(unreadable)");
    free(log);
}

int harness_stop(harness_t *h)
{
    int64_t deadline = wire_monotonic_ms() + STOP_TIMEOUT_MS;
    int status;

    if (h->pid <= 0)
        return -1;
    kill(h->pid, SIGTERM);
    while (wire_monotonic_ms() < deadline) {
        if (waitpid(h->pid, &status, WNOHANG) == h->pid) {
            h->pid = 0;
            int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            if (rc != 0)
                log_tail(h, rc);
            return rc;
        }
        sleep_ms(5);
    }
    harness_kill(h);
    log_tail(h, -1);
    return -1;
}

void harness_kill(harness_t *h)
{
    if (h->pid <= 0)
        return;
    kill(h->pid, SIGKILL);
    waitpid(h->pid, NULL, 0);
    h->pid = 0;
}

char *harness_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        size_t got = fread(buf, 1, (size_t)n, f);
        buf[got] = '\0';
    }
    fclose(f);
    return buf;
}

/* Runs the CLI with args (args[0] = "parksync"); env as harness.h says
 * when clean_env, else inherited. */
static int run_cli(const harness_t *h, const char *const args[], const char *const env[],
                   bool clean_env, const char *stdin_path, char **out, char **err)
{
    char out_path[HARNESS_PATH + 16], err_path[HARNESS_PATH + 16], xdg[HARNESS_PATH + 16];
    extern char **environ;
    int status;
    pid_t pid;

    snprintf(out_path, sizeof(out_path), "%s/cli.out", h->dir);
    snprintf(err_path, sizeof(err_path), "%s/cli.err", h->dir);
    snprintf(xdg, sizeof(xdg), "%s/xdg", h->dir);
    if ((pid = fork()) < 0)
        return -1;
    if (pid == 0) {
        int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || e < 0)
            _exit(126);
        dup2(in, STDIN_FILENO);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        if (clean_env) {
            /* whatever the machine's user has set must not reach the test */
            for (char **v = environ; *v != NULL;) {
                if (strncmp(*v, "PARKSYNC_", 9) == 0) {
                    char name[128];
                    snprintf(name, sizeof(name), "%.*s", (int)strcspn(*v, "="), *v);
                    unsetenv(name);
                } else {
                    v++;
                }
            }
            setenv("XDG_CONFIG_HOME", xdg, 1);
            for (size_t i = 0; env != NULL && env[i] != NULL; i++)
                putenv((char *)env[i]);
        }
        execv(PARKSYNC_BIN, (char *const *)args);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    if (out != NULL)
        *out = harness_slurp(out_path);
    if (err != NULL)
        *err = harness_slurp(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int harness_cli(const harness_t *h, const char *const argv[], const char *stdin_path, char **out,
                char **err)
{
    const char *args[64];
    size_t n = 0;

    args[n++] = "parksync";
    args[n++] = argv[0];
    args[n++] = "--ingest";
    args[n++] = h->ingest;
    args[n++] = "--publish";
    args[n++] = h->publish;
    args[n++] = "--query";
    args[n++] = h->query;
    args[n++] = "--control";
    args[n++] = h->control;
    for (size_t i = 1; argv[i] != NULL && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    return run_cli(h, args, NULL, false, stdin_path, out, err);
}

int harness_cli_env(const harness_t *h, const char *const env[], const char *const argv[],
                    const char *stdin_path, char **out, char **err)
{
    const char *args[64];
    size_t n = 0;

    args[n++] = "parksync";
    for (size_t i = 0; argv[i] != NULL && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    return run_cli(h, args, env, true, stdin_path, out, err);
}

void harness_cleanup(harness_t *h)
{
    char cmd[HARNESS_PATH + 16];

    harness_kill(h);
    if (h->dir[0] == '\0' || getenv("PARKSYNC_KEEP_TEST_DIR") != NULL)
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: could not remove %s\n", h->dir);
}

/* Sends q (version and request_id filled in) on the control socket and
 * returns the reply when its body is `want`, else NULL. */
static Parksync__V1__ControlReply *control_call(const harness_t *h, Parksync__V1__ControlRequest *q,
                                                Parksync__V1__ControlReply__BodyCase want,
                                                int timeout_ms)
{
    Parksync__V1__ControlReply *reply = NULL;
    const char *why;
    zmq_msg_t m;

    q->has_version = q->has_request_id = 1;
    q->version = WIRE_VERSION;
    q->request_id = 1;
    if (roundtrip(h, h->control, false, &q->base, timeout_ms, &m) &&
        wire_control_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &reply, &why) == 0 &&
        reply->body_case != want) {
        parksync__v1__control_reply__free_unpacked(reply, NULL);
        reply = NULL;
    }
    zmq_msg_close(&m);
    return reply;
}

Parksync__V1__ControlReply *harness_status(const harness_t *h, int timeout_ms)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__StatusRequest sr = PARKSYNC__V1__STATUS_REQUEST__INIT;

    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_STATUS;
    q.status = &sr;
    return control_call(h, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_STATUS, timeout_ms);
}

int harness_digest(const harness_t *h, uint8_t digest[32], uint64_t *head, int timeout_ms)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__DigestRequest dr = PARKSYNC__V1__DIGEST_REQUEST__INIT;

    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_DIGEST;
    q.digest = &dr;
    Parksync__V1__ControlReply *r =
        control_call(h, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_DIGEST, timeout_ms);
    if (!r || r->digest->digest.len != 32) {
        if (r)
            parksync__v1__control_reply__free_unpacked(r, NULL);
        return -1;
    }
    memcpy(digest, r->digest->digest.data, 32);
    *head = r->digest->head_revision;
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return 0;
}

int64_t harness_counter(const harness_t *h, const char *name, int timeout_ms)
{
    Parksync__V1__ControlReply *reply = harness_status(h, timeout_ms);
    int64_t value = -1;

    for (size_t i = 0; reply && i < reply->status->n_counters; i++)
        if (strcmp(reply->status->counters[i]->name, name) == 0)
            value = (int64_t)reply->status->counters[i]->value;
    if (reply)
        parksync__v1__control_reply__free_unpacked(reply, NULL);
    return value;
}

int64_t harness_counter_reaches(const harness_t *h, const char *name, int64_t want, int timeout_ms)
{
    int64_t deadline = wire_monotonic_ms() + timeout_ms, v;

    do
        v = harness_counter(h, name, 1000);
    while (v < want && wire_monotonic_ms() < deadline);
    return v;
}

void harness_producer_options(const harness_t *h, ps_producer_options_t *o, const char *id)
{
    ps_producer_options_init(o);
    o->producer_id = id;
    o->ingest_endpoint = h->ingest;
    o->publish_endpoint = h->publish;
    o->query_endpoint = h->query;
}

const char *harness_asan_options(char *buf, size_t len, const char *add)
{
    const char *was = getenv("ASAN_OPTIONS");

    snprintf(buf, len, "%s%s%s", was ? was : "", was && was[0] ? ":" : "", add);
    return buf;
}

ps_producer_t *harness_producer(const harness_t *h, const char *id, ps_err_t *err)
{
    ps_producer_options_t o;

    harness_producer_options(h, &o, id);
    return ps_producer_new(&o, err);
}

void harness_subscriber_options(const harness_t *h, ps_subscriber_options_t *o)
{
    ps_subscriber_options_init(o);
    o->publish_endpoint = h->publish;
    o->query_endpoint = h->query;
}

void harness_park(harness_park_t *pu, const char *id, const char *cc)
{
    parksync__v1__update__init(&pu->u);
    parksync__v1__park__init(&pu->p);
    pu->p.park_id = (char *)id;
    pu->p.country = (char *)cc;
    pu->p.name = (char *)"Test park";
    pu->u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    pu->u.park = &pu->p;
}

ps_err_t harness_snapshot(const harness_t *h, Parksync__V1__RecordKind kind, const char *server_key,
                          const char *secret_key, int timeout_ms, int *records)
{
    ps_subscriber_options_t o;
    ps_subscriber_t *s;
    ps_event_t ev;
    ps_err_t err;

    harness_subscriber_options(h, &o);
    o.live = false;
    o.timeout_ms = timeout_ms;
    o.kind = kind;
    o.server_public_key = server_key;
    o.secret_key = server_key ? secret_key : NULL;
    *records = 0;
    s = ps_subscriber_new(&o, &err);
    if (!s)
        return err;
    while ((err = ps_subscriber_next(s, &ev, 2 * timeout_ms)) == PS_OK)
        if (ev.kind == PS_EVENT_RECORD)
            (*records)++;
    ps_subscriber_destroy(&s);
    return err == PS_ERR_CLOSED ? PS_OK : err;
}

double harness_cpu_ms(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long utime, stime;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if ((fd = open(path, O_RDONLY)) < 0)
        return -1;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* the command may hold spaces and parentheses: fields count from the
     * last ')'; utime and stime are fields 14 and 15 */
    if ((p = strrchr(buf, ')')) == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

long harness_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

int harness_metrics_port(const harness_t *h)
{
    char *log = harness_slurp(h->log);
    const char *at = log ? strstr(log, "/metrics (port ") : NULL;
    int port = at ? atoi(at + strlen("/metrics (port ")) : 0;

    free(log);
    return port;
}

ssize_t harness_http_get(int port, const char *path, char *buf, size_t len, int timeout_ms)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int64_t deadline = wire_monotonic_ms() + timeout_ms;
    char ask[512];
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(ask, sizeof ask, "GET %s HTTP/1.0\r\n\r\n", path);
    if (send(fd, ask, strlen(ask), MSG_NOSIGNAL) == (ssize_t)strlen(ask)) {
        while (got + 1 < len) {
            struct pollfd p = {fd, POLLIN, 0};
            int left = (int)(deadline - wire_monotonic_ms());
            if (left <= 0 || poll(&p, 1, left) != 1)
                break;
            ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
    }
    buf[got] = '\0';
    close(fd);
    return (ssize_t)got;
}
