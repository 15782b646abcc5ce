/*
 * test_secure.c - secure by default, against the real daemon and CLI:
 * with CURVE on only listed keys read; the control socket's directory
 * must be the daemon's user's, open at most to its own group (0750), and
 * the CLI trusts only such a directory and says at once when it may not
 * use the socket; the database, its -wal and -shm and backups are 0600
 * whatever the umask; slow connections to the metrics HTTP port do not
 * keep scrapes waiting.
 *
 * Cases that need another owner (chown) run only as root, with a numeric
 * uid no account uses: nothing is created on the machine but files under
 * the test's temporary directories.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define SLOW_CONNECTIONS 100   /* slowloris peers on the metrics port */
#define SCRAPE_LIMIT_MS  1000  /* a scrape among them must be answered within this */
#define SLOW_CLOSED_MS   8000  /* they must all be closed within this (timeout 3 s) */
#define EXIT_LIMIT_MS    10000 /* a daemon that refuses to start exits within this */

/* One key pair, Z85. */
typedef struct pair {
    char pub[41];
    char sec[41];
} pair_t;

static harness_t h;
static char outside[64] = ""; /* a directory in /tmp itself; removed by teardown */
static pair_t daemon_k, az, dash, rogue, tj_site;

static void teardown(void)
{
    char cmd[128];

    harness_cleanup(&h);
    if (outside[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", outside);
        (void)system(cmd);
        outside[0] = '\0';
    }
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(path, mode), 0);
}

/* A uid no account uses, for "another local user" (root only). */
static uid_t stranger(void)
{
    uid_t uid = 64000;

    while (getpwuid(uid))
        uid++;
    return uid;
}

/* Waits for the spawned daemon to exit; its status, or -1 after the limit. */
static int wait_exit(harness_t *hh, int limit_ms)
{
    int64_t deadline = wire_monotonic_ms() + limit_ms;
    int status;

    while (wire_monotonic_ms() < deadline) {
        if (waitpid(hh->pid, &status, WNOHANG) == hh->pid) {
            hh->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        poll(NULL, 0, 10);
    }
    return -1;
}

/* True when the daemon's log holds text within limit_ms. */
static bool log_has(const char *text, int limit_ms)
{
    int64_t deadline = wire_monotonic_ms() + limit_ms;
    bool found = false;

    while (!found && wire_monotonic_ms() < deadline) {
        char *log = harness_slurp(h.log);
        found = log && strstr(log, text);
        free(log);
        if (!found)
            poll(NULL, 0, 50);
    }
    return found;
}

/* Runs `parksyncd --check-config -c path`; stdout into out (caller
 * frees), the exit status returned. */
static int check_config(const char *path, char **out)
{
    char cmd[512], res[300];
    int rc;

    cr_assert_lt((size_t)snprintf(res, sizeof res, "%s.out", path), sizeof res);
    cr_assert_lt((size_t)snprintf(cmd, sizeof cmd, "%s --check-config -c %s >%s 2>&1",
                                  PARKSYNCD_BIN, path, res),
                 sizeof cmd);
    rc = system(cmd);
    *out = harness_slurp(res);
    cr_assert_not_null(*out);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ---------------------------------------------------------------- subscriber_auth */

/* Starts the daemon with CURVE on, a ministry AZ-MOE, a subscriber dash1,
 * heartbeats every 100 ms, and `security` added to [security]. */
static void start_curve(const char *security)
{
    char path[HARNESS_PATH + 16], text[128];

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(zmq_curve_keypair(daemon_k.pub, daemon_k.sec), 0);
    cr_assert_eq(zmq_curve_keypair(az.pub, az.sec), 0);
    cr_assert_eq(zmq_curve_keypair(dash.pub, dash.sec), 0);
    cr_assert_eq(zmq_curve_keypair(rogue.pub, rogue.sec), 0);
    snprintf(path, sizeof path, "%s/daemon.key", h.dir);
    snprintf(text, sizeof text, "%s\n", daemon_k.sec);
    write_file(path, text, 0600);
    snprintf(h.extra, sizeof h.extra,
             "[limits]\nsummary_interval_ms = 0\nheartbeat_ms = 100\n\n"
             "[security]\ncurve = on\nsecret_key_file = %s\n%s\n\n"
             "[ministry AZ-MOE]\ncountry = AZ\nkeys = %s\n\n"
             "[subscriber dash1]\nkeys = %s\n",
             path, security, az.pub, dash.pub);
    cr_assert_eq(harness_write_config(&h), 0);
    memcpy(h.server_key, daemon_k.pub, 41);
    memcpy(h.client_public, az.pub, 41);
    memcpy(h.client_secret, az.sec, 41);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start; see %s", h.log);
}

/* AZ-MOE pushes one park and waits for its ack; with key k, or plain
 * when k is NULL. */
static void push_park(const pair_t *k)
{
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;

    harness_producer_options(&h, &o, "AZ-MOE");
    if (k) {
        o.server_public_key = daemon_k.pub;
        o.secret_key = k->sec;
    }
    o.connect_timeout_ms = 5000;
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    park.park_id = (char *)"AZ-SUMGAIT-CHEM";
    park.country = (char *)"AZ";
    park.name = (char *)"Sumgait Chemical Industrial Park";
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &park;
    cr_assert_eq(ps_producer_send(p, &u, NULL, 5000), PS_OK);
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    ps_producer_destroy(&p);
}

/* Takes a snapshot of parks with key k; returns the error, records in *n. */
static ps_err_t snapshot(const pair_t *k, int *n)
{
    return harness_snapshot(&h, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, daemon_k.pub, k->sec,
                            1500, n);
}

/* A raw SUB on publish with key k, subscribed to everything. */
static void *raw_sub(void *ctx, const pair_t *k)
{
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;

    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_CURVE_SERVERKEY, daemon_k.pub, 40);
    zmq_setsockopt(sub, ZMQ_CURVE_PUBLICKEY, k->pub, 40);
    zmq_setsockopt(sub, ZMQ_CURVE_SECRETKEY, k->sec, 40);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq(zmq_connect(sub, h.publish), 0);
    return sub;
}

Test(secure, with_curve_only_listed_keys_read_by_default, .fini = teardown, .timeout = 60)
{
    void *ctx = zmq_ctx_new(), *listed, *unlisted;
    int n = -1;

    start_curve(""); /* subscriber_auth not written: the default */
    listed = raw_sub(ctx, &dash);
    unlisted = raw_sub(ctx, &rogue);
    push_park(&az);

    cr_expect_eq(snapshot(&dash, &n), PS_OK, "a [subscriber] key takes a snapshot");
    cr_expect_eq(n, 1);
    cr_expect_eq(snapshot(&rogue, &n), PS_ERR_TIMEOUT, "an unlisted key took a snapshot");
    cr_expect_eq(n, 0, "an unlisted key got %d records", n);

    /* Heartbeats every 100 ms: the listed SUB has one soon, the unlisted
     * none in the same time. */
    zmq_pollitem_t it = {listed, 0, ZMQ_POLLIN, 0};
    cr_expect_eq(zmq_poll(&it, 1, 3000), 1, "the listed subscriber got no publication");
    it.socket = unlisted;
    cr_expect_eq(zmq_poll(&it, 1, 1000), 0, "an unlisted key received a publication");
    zmq_close(listed);
    zmq_close(unlisted);
    zmq_ctx_term(ctx);

    /* query (snapshot) and publish (SUB) handshakes at least */
    int64_t refused = harness_counter(&h, "handshakes_refused", 2000);
    cr_expect_geq(refused, 2, "handshakes_refused = %" PRId64, refused);
    cr_expect_geq(harness_counter(&h, "handshakes_admitted", 2000), 3);
    cr_assert_eq(harness_stop(&h), 0);
    char *log = harness_slurp(h.log);
    cr_assert_not_null(log);
    cr_expect(strstr(log, "refused a CURVE handshake on parksync.") != NULL, "%s", log);
    cr_expect(strstr(log, "subscriber_auth = off") == NULL, "warned although on:\n%s", log);
    free(log);
}

Test(secure, any_key_reads_only_when_the_file_says_so_and_it_is_warned, .fini = teardown,
     .timeout = 60)
{
    int n = -1;

    start_curve("subscriber_auth = off");
    push_park(&az);
    cr_expect_eq(snapshot(&rogue, &n), PS_OK);
    cr_expect_eq(n, 1);
    cr_assert_eq(harness_stop(&h), 0);
    char *log = harness_slurp(h.log);
    cr_assert_not_null(log);
    cr_expect(strstr(log, "warning: [security] subscriber_auth = off: any CURVE key may read") !=
                  NULL,
              "no warning at start:\n%s", log);
    free(log);
}

/* A [peer NAME] key reads as a [subscriber] key does (another site pulls
 * over the query socket), never writes, and a reload admits and revokes
 * it at once like any key. */
Test(secure, a_peer_key_reads_and_a_reload_admits_or_revokes_it, .fini = teardown, .timeout = 90)
{
    char peer[200], *base;
    int n = -1;

    cr_assert_eq(zmq_curve_keypair(tj_site.pub, tj_site.sec), 0);
    snprintf(peer, sizeof peer, "\n[peer tj-dushanbe]\nkey = %s\ncountries = TJ\n", tj_site.pub);
    start_curve(peer);
    push_park(&az);
    cr_expect_eq(snapshot(&tj_site, &n), PS_OK, "a [peer] key takes a snapshot");
    cr_expect_eq(n, 1);

    /* ingest is for ministries only */
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    harness_producer_options(&h, &o, "AZ-MOE");
    o.server_public_key = daemon_k.pub;
    o.secret_key = tj_site.sec;
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    cr_expect(log_has("on parksync.ingest", 5000) && log_has("not a ministry's key", 100),
              "a peer's key was not refused on ingest");
    ps_producer_destroy(&p);

    /* the section goes: its key is revoked before the reload is answered */
    base = strstr(h.extra, "\n[peer tj-dushanbe]");
    cr_assert_not_null(base);
    memmove(base, base + strlen(peer), strlen(base + strlen(peer)) + 1);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_cli(&h, (const char *const[]){"reload", NULL}, NULL, NULL, NULL), 0);
    cr_expect(log_has("keys were removed: closed", 100), "no revocation on reload");
    cr_expect_eq(snapshot(&tj_site, &n), PS_ERR_TIMEOUT, "a removed [peer] key still reads");

    /* and comes back: admitted at once, though what this site pulls waits for a restart */
    strncat(h.extra, peer, sizeof h.extra - strlen(h.extra) - 1);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_cli(&h, (const char *const[]){"reload", NULL}, NULL, NULL, NULL), 0);
    cr_expect_eq(snapshot(&tj_site, &n), PS_OK, "a [peer] key added by a reload does not read");
    cr_expect(log_has("what this site pulls from whom ([peer] sections; their keys are admitted "
                      "at once) changed in the file; it takes effect at the next restart",
                      100),
              "the reload did not say what waits for a restart");
    cr_assert_eq(harness_stop(&h), 0);
}

Test(secure, check_config_prints_the_effective_subscriber_auth, .fini = teardown)
{
    static const struct {
        const char *ini; /* the file */
        int status;      /* --check-config's exit status */
        const char *has; /* in its output */
    } cases[] = {
        {"[security]\ncurve = on\n", 0, "\nsubscriber_auth = on\n"},
        {"[security]\ncurve = on\nsubscriber_auth = off\n", 0, "\nsubscriber_auth = off\n"},
        {"[security]\ncurve = off\n", 0, "\nsubscriber_auth = off\n"},
        {"[security]\nsubscriber_auth = on\n", 2, "subscriber_auth = on needs curve = on"},
        /* what start would fail on is caught by the check too */
        {"[security]\ncurve = on\nsecret_key_file = /nonexistent/daemon.key\n", 2,
         "[security] secret_key_file: "},
        {"[daemon]\ndatabase = /nonexistent/dir/parksync.db\n", 2,
         "the folder /nonexistent/dir does not exist"},
    };
    char path[300], key[300], text[600], line[48], *out;

    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(path, sizeof path, "%s/check.conf", h.dir);
    snprintf(key, sizeof key, "%s/daemon.key", h.dir);
    cr_assert_eq(zmq_curve_keypair(daemon_k.pub, daemon_k.sec), 0);
    snprintf(line, sizeof line, "%s\n", daemon_k.sec);
    write_file(key, line, 0600);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* a key file the check can read, unless the case names its own */
        snprintf(text, sizeof text, "%s%s%s\n", cases[i].ini,
                 strstr(cases[i].ini, "secret_key_file") ? "" : "secret_key_file = ",
                 strstr(cases[i].ini, "secret_key_file") ? "" : key);
        if (!strstr(cases[i].ini, "[security]"))
            snprintf(text, sizeof text, "%s", cases[i].ini);
        write_file(path, text, 0600);
        cr_expect_eq(check_config(path, &out), cases[i].status, "case %zu: %s", i, out);
        cr_expect(strstr(out, cases[i].has) != NULL, "case %zu: no '%s' in:\n%s", i, cases[i].has,
                  out);
        free(out);
    }
}

/* ---------------------------------------------------------------- the control socket's directory
 */

/* Puts the control socket in DIR/ctl and spawns the daemon; returns its
 * exit status and the log in *log (caller frees). */
static int start_with_control_dir(const char *dir, char **log)
{
    int rc;

    snprintf(h.control, sizeof h.control, "ipc://%s/control", dir);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_spawn(&h, NULL), 0);
    rc = wait_exit(&h, EXIT_LIMIT_MS);
    harness_kill(&h); /* one that started after all */
    *log = harness_slurp(h.log);
    cr_assert_not_null(*log);
    return rc;
}

Test(secure, daemon_refuses_a_control_directory_others_can_enter, .fini = teardown, .timeout = 60)
{
    /* others may enter, the group may write, or both: another local user
     * could reach or swap the socket */
    static const mode_t modes[] = {0777, 0770, 0705, 0755, 0730};
    char dir[128], shown[32], *log;
    int rc;

    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(dir, sizeof dir, "%s/ctl", h.dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        cr_assert_eq(chmod(dir, modes[i]), 0); /* 0777: as another user's /tmp/parksync-UID */
        rc = start_with_control_dir(dir, &log);
        cr_expect_eq(rc, 1, "mode %04o: exit status %d; log:\n%s", (unsigned)modes[i], rc, log);
        cr_expect(strstr(log, "refusing to start: the control socket") != NULL, "%s", log);
        snprintf(shown, sizeof shown, "with mode %04o", (unsigned)modes[i]);
        cr_expect(strstr(log, shown) != NULL && strstr(log, dir) != NULL, "%s", log);
        cr_expect(strstr(log, "chmod 0750") != NULL, "no remedy named:\n%s", log);
        free(log);
    }

    /* a symlink to a private directory is refused too: it can be re-pointed */
    char link[160];
    snprintf(link, sizeof link, "%s/ctl-link", h.dir);
    cr_assert_eq(chmod(dir, 0700), 0);
    cr_assert_eq(symlink(dir, link), 0);
    rc = start_with_control_dir(link, &log);
    cr_expect_eq(rc, 1, "exit status %d; log:\n%s", rc, log);
    cr_expect(strstr(log, "is a symlink or not a directory") != NULL, "%s", log);
    free(log);
}

Test(secure, daemon_lets_only_its_own_group_into_a_0750_control_directory, .fini = teardown,
     .timeout = 60)
{
    char dir[128], *log;
    int rc;

    /* its own group: the operators' (systemd's RuntimeDirectoryMode=0750) */
    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(dir, sizeof dir, "%s/ctl", h.dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chown(dir, geteuid(), getegid()), 0);
    cr_assert_eq(chmod(dir, 0750), 0);
    snprintf(h.control, sizeof h.control, "ipc://%s/control", dir);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_start(&h), 0, "daemon refused a 0750 directory of its group; see %s",
                 h.log);
    cr_expect(harness_counter(&h, "bad_frames", 3000) >= 0, "control socket does not answer");
    cr_expect_eq(harness_stop(&h), 0);

    /* another group would let its members in */
    if (geteuid() != 0)
        cr_skip_test("needs root to give a directory to another group");
    cr_assert_eq(chown(dir, geteuid(), (gid_t)stranger()), 0);
    cr_assert_eq(chmod(dir, 0750), 0); /* chown cleared nothing, but be plain */
    rc = start_with_control_dir(dir, &log);
    cr_expect_eq(rc, 1, "exit status %d; log:\n%s", rc, log);
    cr_expect(strstr(log, "with mode 0750, group gid") != NULL, "%s", log);
    cr_expect(strstr(log, "chgrp") != NULL, "no remedy named:\n%s", log);
    free(log);
}

Test(secure, daemon_refuses_a_control_directory_of_another_user, .fini = teardown, .timeout = 60)
{
    char dir[128], owner[64], *log;
    uid_t uid;
    int rc;

    if (geteuid() != 0)
        cr_skip_test("needs root to give a directory to another user");
    cr_assert_eq(harness_init(&h, NULL), 0);
    uid = stranger();
    snprintf(dir, sizeof dir, "%s/ctl", h.dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chown(dir, uid, uid), 0);
    rc = start_with_control_dir(dir, &log);
    cr_expect_eq(rc, 1, "exit status %d; log:\n%s", rc, log);
    snprintf(owner, sizeof owner, "belongs to uid %u with mode 0700", (unsigned)uid);
    cr_expect(strstr(log, owner) != NULL, "no '%s' in:\n%s", owner, log);
    cr_expect(strstr(log, "remove it") != NULL, "no remedy named:\n%s", log);
    free(log);
}

/* Runs `parksync status` with the control socket found by the default
 * rule in rundir (RUNTIME_DIRECTORY), while answering on impostor (a
 * ROUTER or NULL) whatever it is asked with a forged status. Returns the
 * exit status; stdout and stderr in *out and *err (caller frees). */
static int status_via_default(const char *rundir, void *impostor, char **out, char **err)
{
    char out_path[300], err_path[300], env[300];
    int64_t deadline = wire_monotonic_ms() + 10000;
    pid_t pid;
    int status = -1;

    snprintf(out_path, sizeof out_path, "%s/status.out", h.dir);
    snprintf(err_path, sizeof err_path, "%s/status.err", h.dir);
    snprintf(env, sizeof env, "RUNTIME_DIRECTORY=%s", rundir);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (o < 0 || e < 0)
            _exit(126);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        putenv(env);
        execl(PARKSYNC_BIN, "parksync", "status", "--timeout", "3", (char *)NULL);
        _exit(127);
    }
    while (wire_monotonic_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            break;
        }
        zmq_pollitem_t it = {impostor, 0, ZMQ_POLLIN, 0};
        if (!impostor || zmq_poll(&it, 1, 20) != 1) {
            if (!impostor)
                poll(NULL, 0, 20);
            continue;
        }
        /* [id][request] -> [id][a status the CLI would print] */
        zmq_msg_t id, req;
        zmq_msg_init(&id);
        zmq_msg_init(&req);
        zmq_msg_recv(&id, impostor, 0);
        zmq_msg_recv(&req, impostor, 0);
        Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
        Parksync__V1__Status s = PARKSYNC__V1__STATUS__INIT;
        uint8_t epoch[WIRE_EPOCH_BYTES] = {0}, buf[512];
        r.has_version = r.has_request_id = true;
        r.version = WIRE_VERSION;
        r.request_id = 1;
        s.version = (char *)"6.6.6-impostor";
        s.has_epoch = true;
        s.epoch.data = epoch;
        s.epoch.len = sizeof epoch;
        r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_STATUS;
        r.status = &s;
        size_t len = parksync__v1__control_reply__pack(&r, buf);
        zmq_msg_send(&id, impostor, ZMQ_SNDMORE);
        zmq_send(impostor, buf, len, 0);
        zmq_msg_close(&req);
    }
    if (status < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    *out = harness_slurp(out_path);
    *err = harness_slurp(err_path);
    return status;
}

Test(secure, cli_trusts_only_a_private_control_directory, .fini = teardown, .timeout = 60)
{
    char dir[128], ep[200], *out, *err;
    void *ctx = zmq_ctx_new(), *impostor = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, rc;

    /* A directory anyone may write, holding a socket that answers status:
     * what another local user leaves where the default rule looks. */
    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(dir, sizeof dir, "%s/open", h.dir);
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chmod(dir, 0777), 0);
    snprintf(ep, sizeof ep, "ipc://%s/control", dir);
    zmq_setsockopt(impostor, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_bind(impostor, ep), 0);
    rc = status_via_default(dir, impostor, &out, &err);
    cr_expect_neq(rc, 0, "status answered by an impostor:\n%s", out);
    cr_expect(strstr(out, "impostor") == NULL, "%s", out);
    cr_expect(strstr(err, "will not use") != NULL && strstr(err, "mode 0777") != NULL, "%s", err);
    free(out);
    free(err);

    /* The same in /tmp, by another owner (the attack as reported). */
    if (geteuid() == 0) {
        snprintf(outside, sizeof outside, "/tmp/parksync-secure-XXXXXX");
        cr_assert_not_null(mkdtemp(outside));
        cr_assert_eq(chmod(outside, 0755), 0);
        snprintf(ep, sizeof ep, "ipc://%s/control", outside);
        zmq_close(impostor);
        impostor = zmq_socket(ctx, ZMQ_ROUTER);
        zmq_setsockopt(impostor, ZMQ_LINGER, &zero, sizeof zero);
        cr_assert_eq(zmq_bind(impostor, ep), 0);
        cr_assert_eq(chown(outside, stranger(), stranger()), 0);
        rc = status_via_default(outside, impostor, &out, &err);
        cr_expect_neq(rc, 0, "status answered by an impostor:\n%s", out);
        cr_expect(strstr(err, "will not use") != NULL && strstr(err, "belongs to uid") != NULL,
                  "%s", err);
        free(out);
        free(err);
    }
    zmq_close(impostor);
    zmq_ctx_term(ctx);

    /* No directory at all: said at once, nothing waited for. */
    snprintf(dir, sizeof dir, "%s/none", h.dir);
    rc = status_via_default(dir, NULL, &out, &err);
    cr_expect_eq(rc, 1);
    cr_expect(strstr(err, "does not exist") != NULL, "%s", err);
    free(out);
    free(err);

    /* The daemon's own private directory works through the default rule. */
    snprintf(dir, sizeof dir, "%s/ctl", h.dir);
    snprintf(h.control, sizeof h.control, "ipc://%s/control", dir);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start; see %s", h.log);
    rc = status_via_default(dir, NULL, &out, &err);
    cr_expect_eq(rc, 0, "%s", err);
    cr_expect(strstr(out, "parksyncd " PARKSYNC_VERSION) != NULL, "%s", out);
    free(out);
    free(err);
    cr_expect_eq(harness_stop(&h), 0);
}

/* Runs `parksync status ARGS...` (argv ends with NULL) as uid with gid
 * and, when in_group, the supplementary group group; RUNTIME_DIRECTORY is
 * rundir when not NULL. Returns the exit status, stderr in *err (caller
 * frees) and the time it took in *ms. */
static int status_as(uid_t uid, gid_t gid, const gid_t *group, const char *rundir,
                     const char *const argv[], char **err, int64_t *ms)
{
    char err_path[300], env[300];
    const char *args[8] = {"parksync", "status", "--timeout", "5"};
    int64_t start = wire_monotonic_ms();
    size_t n = 4;
    int st;
    pid_t pid;

    for (; argv && *argv && n < 7; argv++)
        args[n++] = *argv;
    snprintf(err_path, sizeof err_path, "%s/status-as.err", h.dir);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        int o = open("/dev/null", O_WRONLY);
        if (e < 0 || o < 0 || fchown(e, uid, gid) < 0)
            _exit(126);
        dup2(o, STDOUT_FILENO);
        dup2(e, STDERR_FILENO);
        unsetenv("RUNTIME_DIRECTORY");
        if (rundir) {
            snprintf(env, sizeof env, "RUNTIME_DIRECTORY=%s", rundir);
            putenv(env);
        }
        if (setgroups(group ? 1 : 0, group) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
            _exit(125);
        execv(PARKSYNC_BIN, (char *const *)args);
        _exit(127);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    *ms = wire_monotonic_ms() - start;
    *err = harness_slurp(err_path);
    cr_assert_not_null(*err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(secure, cli_says_who_may_use_the_control_socket_instead_of_waiting, .fini = teardown,
     .timeout = 60)
{
    char dir[128], want[300], *err;
    const char *given[] = {"--control", h.control, NULL};
    gid_t group = getegid();
    uid_t uid;
    int64_t ms;
    int rc;

    if (geteuid() != 0)
        cr_skip_test("needs root to run the CLI as another user");
    uid = stranger();
    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(chmod(h.dir, 0755), 0); /* anyone may look in, as in /run */
    snprintf(dir, sizeof dir, "%s/ctl", h.dir);
    cr_assert_eq(mkdir(dir, 0750), 0);
    cr_assert_eq(chmod(dir, 0750), 0);
    snprintf(h.control, sizeof h.control, "ipc://%s/control", dir);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start; see %s", h.log);
    snprintf(want, sizeof want, "permission denied on %s/control: run as root or join group ", dir);

    /* not in the daemon's group: told at once, by --control or by the rule */
    rc = status_as(uid, uid, NULL, NULL, given, &err, &ms);
    cr_expect_eq(rc, 1, "%s", err);
    cr_expect(strstr(err, want) != NULL, "no '%s' in: %s", want, err);
    cr_expect_lt(ms, 2000, "took %" PRId64 " ms: waited for an answer", ms);
    free(err);
    rc = status_as(uid, uid, NULL, dir, NULL, &err, &ms);
    cr_expect_eq(rc, 1, "%s", err);
    cr_expect(strstr(err, want) != NULL, "no '%s' in: %s", want, err);
    free(err);

    /* a member of the daemon's group is an operator */
    rc = status_as(uid, uid, &group, NULL, given, &err, &ms);
    cr_expect_eq(rc, 0, "%s", err);
    free(err);
    rc = status_as(uid, uid, &group, dir, NULL, &err, &ms);
    cr_expect_eq(rc, 0, "a member of the group, by the default rule: %s", err);
    free(err);
    cr_expect_eq(harness_stop(&h), 0);
}

/* ---------------------------------------------------------------- file modes */

static mode_t mode_of(const char *path, const char *suffix)
{
    char name[300];
    struct stat st;

    snprintf(name, sizeof name, "%s%s", path, suffix);
    cr_assert_eq(stat(name, &st), 0, "%s: %s", name, strerror(errno));
    return st.st_mode & 07777;
}

Test(secure, database_wal_shm_and_backups_are_private_whatever_the_umask, .fini = teardown,
     .timeout = 60)
{
    char backup[300], *err = NULL;
    mode_t old = umask(0); /* the daemon inherits the most permissive umask */
    int rc;

    cr_assert_eq(harness_init(&h, NULL), 0);
    rc = harness_start(&h);
    umask(old);
    cr_assert_eq(rc, 0, "daemon did not start; see %s", h.log);
    push_park(NULL);
    cr_expect_eq(mode_of(h.db, ""), 0600, "database %o", mode_of(h.db, ""));
    cr_expect_eq(mode_of(h.db, "-wal"), 0600, "-wal %o", mode_of(h.db, "-wal"));
    cr_expect_eq(mode_of(h.db, "-shm"), 0600, "-shm %o", mode_of(h.db, "-shm"));
    /* the socket is the operators' group's too; its directory (0700 here)
     * decides whether the group gets that far */
    cr_expect_eq(mode_of(h.control + 6, ""), 0660, "control socket %o", mode_of(h.control + 6, ""));
    snprintf(backup, sizeof backup, "%s/backup.db", h.dir);
    rc = harness_cli(&h, (const char *const[]){"backup", backup, NULL}, NULL, NULL, &err);
    cr_expect_eq(rc, 0, "backup: %s", err);
    free(err);
    cr_expect_eq(mode_of(backup, ""), 0600, "backup %o", mode_of(backup, ""));
    cr_expect_eq(harness_stop(&h), 0);
}

/* ---------------------------------------------------------------- metrics HTTP */

static int tcp_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "%s", strerror(errno));
    return fd;
}

static void send_text(int fd, const char *text)
{
    cr_assert_eq(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/* The port the daemon logged for [metrics] http = 127.0.0.1:0. */
static int metrics_port(void)
{
    int port = harness_metrics_port(&h);

    cr_assert_gt(port, 0, "no metrics port in the log:\n%s", harness_slurp(h.log));
    return port;
}

Test(secure, slow_metrics_connections_do_not_hold_up_a_scrape, .fini = teardown, .timeout = 60)
{
    int slow[SLOW_CONNECTIONS], port, closed = 0;
    char reply[65536];
    ssize_t got;
    int64_t start, took;

    cr_assert_eq(harness_init(&h, "[metrics]\nhttp = 127.0.0.1:0\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start; see %s", h.log);
    port = metrics_port();
    /* Half a request each, then silence: the slowloris. */
    for (int i = 0; i < SLOW_CONNECTIONS; i++) {
        slow[i] = tcp_connect(port);
        send_text(slow[i], "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    }
    start = wire_monotonic_ms();
    got = harness_http_get(port, "/metrics", reply, sizeof reply, SCRAPE_LIMIT_MS);
    took = wire_monotonic_ms() - start;
    cr_assert_geq(got, 0, "cannot connect to the metrics port");
    cr_expect(strncmp(reply, "HTTP/1.0 200", 12) == 0 || strncmp(reply, "HTTP/1.1 200", 12) == 0,
              "no scrape answered within %d ms among %d slow connections (%zd bytes)",
              SCRAPE_LIMIT_MS, SLOW_CONNECTIONS, got);
    cr_expect(strstr(reply, "parksync_build_info") != NULL, "%s", reply);
    cr_expect_lt(took, SCRAPE_LIMIT_MS, "the scrape took %" PRId64 " ms", took);

    /* The server closes every silent connection after its timeout. */
    while (closed < SLOW_CONNECTIONS && wire_monotonic_ms() < start + SLOW_CLOSED_MS) {
        struct pollfd p[SLOW_CONNECTIONS];
        int n = 0;
        for (int i = 0; i < SLOW_CONNECTIONS; i++)
            if (slow[i] >= 0)
                p[n++] = (struct pollfd){slow[i], POLLIN, 0};
        if (poll(p, (nfds_t)n, 100) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            char c;
            if (!p[i].revents || recv(p[i].fd, &c, 1, MSG_DONTWAIT) > 0)
                continue;
            for (int j = 0; j < SLOW_CONNECTIONS; j++)
                if (slow[j] == p[i].fd)
                    slow[j] = -1;
            close(p[i].fd);
            closed++;
        }
    }
    for (int i = 0; i < SLOW_CONNECTIONS; i++)
        if (slow[i] >= 0)
            close(slow[i]);
    cr_expect_eq(closed, SLOW_CONNECTIONS, "%d of %d slow connections still open after %d ms",
                 SLOW_CONNECTIONS - closed, SLOW_CONNECTIONS, SLOW_CLOSED_MS);
    cr_expect_geq(harness_counter(&h, "metrics_http_dropped", 2000), closed);
    /* the loop logs them with its next metrics snapshot, once a second */
    cr_expect(log_has("metrics HTTP: closed", 3000), "drops not logged; see %s", h.log);
    cr_assert_eq(harness_stop(&h), 0);
}
