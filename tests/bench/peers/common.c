/*
 * common.c - what every backend shares: the records, the server processes
 * this program starts (and only those), /proc readings, base64.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
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

#include "peers.h"

#define BASE_TIME_US  1600000000000000LL /* event time of update 0 */
#define SPAWN_WAIT_MS 20000              /* longest wait for a server's port */
#define STOP_WAIT_MS  10000              /* longest wait after SIGTERM */
/* Company-name padding: the name is cut at the 256 bytes parksync
 * accepts, which brings the packed update to about 360 bytes. */
#define PAD                                                                                        \
    "Sumgait Chemical Industrial Park resident, petrochemicals and polymer processing, "           \
    "Absheron peninsula, Republic of Azerbaijan; plant, warehouse and rail siding on plots "       \
    "14-17 of the eastern zone, customs post on site, 24/7 operations ..........................."

/* ---------------------------------------------------------------- records */

void peer_record_make(peer_record_t *r, uint32_t key, uint64_t n)
{
    Parksync__V1__Update u0 = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Resident r0 = PARKSYNC__V1__RESIDENT__INIT;

    r->update = u0;
    r->resident = r0;
    snprintf(r->rid, sizeof r->rid, "R%07" PRIu32, key);
    snprintf(r->key, sizeof r->key, "AZ.BENCH-PARK.%s", r->rid);
    int head =
        snprintf(r->company, sizeof r->company, "Company %07" PRIu32 " %" PRIu64 " ", key, n);
    size_t pad = sizeof r->company - 1 - (size_t)head;
    memcpy(r->company + head, PAD, pad < sizeof PAD - 1 ? pad : sizeof PAD - 1);
    r->company[sizeof r->company - 1] = '\0';
    r->resident.park_id = "BENCH-PARK";
    r->resident.resident_id = r->rid;
    r->resident.country = "AZ";
    r->resident.company_name = r->company;
    r->resident.has_investment_usd_cents = 1;
    r->resident.investment_usd_cents = (int64_t)n * 100;
    r->resident.has_jobs = 1;
    r->resident.jobs = (uint32_t)(n % 100000);
    r->resident.has_sector = 1;
    r->resident.sector = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
    r->resident.has_status = 1;
    r->resident.status = PARKSYNC__V1__RESIDENT_STATUS__RESIDENT_STATUS_ACTIVE;
    r->resident.registered_on = "2020-01-15";
    r->update.has_event_time_us = 1;
    r->update.event_time_us = BASE_TIME_US + (int64_t)n;
    r->update.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    r->update.resident = &r->resident;
    /* The peers store what parksync's producer puts on the wire: the same
     * update with its envelope (version, producer, sequence). */
    Parksync__V1__Update wire = r->update;
    wire.has_version = 1;
    wire.version = 1;
    wire.producer_id = PEER_PRODUCER_ID;
    wire.has_sequence = 1;
    wire.sequence = n + 1;
    r->len = parksync__v1__update__get_packed_size(&wire);
    if (r->len > sizeof r->bytes)
        r->len = 0; /* cannot happen with the fields above */
    else
        parksync__v1__update__pack(&wire, r->bytes);
}

/* ---------------------------------------------------------------- servers */

int64_t peer_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int peer_free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int peer_server_dir(peer_server_t *s, const char *parent, const char *name)
{
    snprintf(s->dir, sizeof s->dir, "%s/%s-XXXXXX", parent, name);
    return mkdtemp(s->dir) != NULL ? 0 : -errno;
}

/* True when something accepts TCP connections on 127.0.0.1:port. */
static bool port_open(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;

    if (fd >= 0)
        close(fd);
    return ok;
}

int peer_server_spawn(peer_server_t *s, char *const argv[], const char *log)
{
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        /* A server must not outlive this program, even when it is killed. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    s->pid = pid;
    for (int waited = 0; waited < SPAWN_WAIT_MS; waited += 20) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "peers: %s exited at start (see %s)\n", argv[0], log);
            s->pid = 0;
            return -1;
        }
        if (port_open(s->port))
            return 0;
        usleep(20000);
    }
    fprintf(stderr, "peers: %s never listened on %d (see %s)\n", argv[0], s->port, log);
    return -1;
}

/* Removes a directory tree (data of a server this program made). */
static void remove_tree(const char *dir)
{
    char cmd[300];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "peers: could not remove %s\n", dir);
}

void peer_server_stop(peer_server_t *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int waited = 0;
        while (waitpid(s->pid, NULL, WNOHANG) != s->pid) {
            if (waited >= STOP_WAIT_MS) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                break;
            }
            usleep(20000);
            waited += 20;
        }
        s->pid = 0;
    }
    if (s->dir[0] != '\0')
        remove_tree(s->dir);
    s->dir[0] = '\0';
}

long peer_proc_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kib = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

int peer_proc_reset_peak(pid_t pid)
{
    char path[64];
    int fd, rc = 0;

    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    if ((fd = open(path, O_WRONLY)) < 0)
        return -errno;
    if (write(fd, "5", 1) != 1)
        rc = -errno;
    close(fd);
    return rc;
}

int peer_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------- base64 */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t peer_base64(char *out, const uint8_t *in, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < len ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

long peer_unbase64(uint8_t *out, size_t size, const char *text, size_t tlen)
{
    uint32_t v = 0;
    size_t o = 0;
    int bits = 0;

    for (size_t i = 0; i < tlen && text[i] != '='; i++) {
        const char *p = strchr(B64, text[i]);
        if (p == NULL || text[i] == '\0')
            return -1;
        v = v << 6 | (uint32_t)(p - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= size)
                return -1;
            out[o++] = (uint8_t)(v >> bits);
        }
    }
    return (long)o;
}
