/*
 * test_ops.c - operating parksyncd: the systemd notify protocol (READY,
 * STATUS, WATCHDOG, RELOADING, STOPPING) under load, reload (SIGHUP and
 * `parksync reload`) with a valid and an invalid file, shutdown under load
 * with nothing acknowledged lost, `parksync backup` during ingest,
 * `parksync metrics` against a strict parser of the Prometheus text
 * format, `parksync status`, and the installed unit against
 * systemd-analyze.
 *
 * The notify socket is an AF_UNIX datagram socket in the harness's
 * directory, handed to the daemon as NOTIFY_SOCKET; every wait is a poll
 * with a deadline on it or on the daemon's sockets.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "harness.h"
#include "parksync.h"
#include "store.h"
#include "wire.h"

#define WATCHDOG_USEC 2000000            /* WatchdogSec the test pretends: 2 s */
#define WATCH_MS      3000               /* how long watchdog pings are watched under load */
#define STOP_LIMIT_MS 5000               /* SIGTERM to exit, at most */
#define KEYS          200                /* residents the load cycles through */
#define LOAD_ID       "OPS-LOAD"         /* the load's producer id */
#define BASE_TIME_US  1600000000000000LL /* event time of sequence 0 */

static harness_t h;

static void teardown(void)
{
    harness_cleanup(&h);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- load */

/* A producer pushing resident upserts as fast as the window allows, in a
 * thread, until told to stop. */
typedef struct load {
    pthread_t thread;
    atomic_bool stop;       /* set by the test */
    atomic_bool failed;     /* the producer could not start */
    _Atomic uint64_t acked; /* highest sequence acknowledged so far */
} load_t;

static void *load_main(void *arg)
{
    load_t *l = arg;
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    char resident[16], company[32];

    harness_producer_options(&h, &o, LOAD_ID);
    o.connect_timeout_ms = 5000;
    o.ack_timeout_ms = 200;
    p = ps_producer_new(&o, &err);
    if (!p) {
        atomic_store(&l->failed, true);
        return NULL;
    }
    while (!atomic_load(&l->stop)) {
        Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
        Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
        uint64_t seq = ps_producer_last_sent(p) + 1;

        snprintf(resident, sizeof resident, "R%" PRIu64, seq % KEYS);
        snprintf(company, sizeof company, "Company %" PRIu64, seq);
        r.park_id = "OPS-PARK";
        r.resident_id = resident;
        r.country = "AZ";
        r.company_name = company;
        r.has_jobs = 1;
        r.jobs = (uint32_t)seq;
        u.has_event_time_us = 1;
        u.event_time_us = BASE_TIME_US + (int64_t)seq;
        u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
        u.resident = &r;
        ps_producer_send(p, &u, NULL, 100); /* a timeout: window full or daemon gone */
        ps_producer_poll(p);
        atomic_store(&l->acked, ps_producer_last_acked(p));
    }
    ps_producer_poll(p);
    atomic_store(&l->acked, ps_producer_last_acked(p));
    ps_producer_destroy(&p);
    return NULL;
}

static void load_start(load_t *l)
{
    atomic_init(&l->stop, false);
    atomic_init(&l->failed, false);
    atomic_init(&l->acked, 0);
    cr_assert_eq(pthread_create(&l->thread, NULL, load_main, l), 0);
}

static uint64_t load_stop(load_t *l)
{
    atomic_store(&l->stop, true);
    pthread_join(l->thread, NULL);
    cr_assert(!atomic_load(&l->failed), "the load's producer did not start");
    return atomic_load(&l->acked);
}

/* Waits (up to timeout_ms) until the load has n acknowledged updates. */
static void load_wait_acked(load_t *l, uint64_t n, int timeout_ms)
{
    int64_t deadline = wire_monotonic_ms() + timeout_ms;

    while (atomic_load(&l->acked) < n && !atomic_load(&l->failed) && wire_monotonic_ms() < deadline)
        sleep_ms(10);
    cr_assert_geq(atomic_load(&l->acked), n, "the load got only %" PRIu64 " acks",
                  (uint64_t)atomic_load(&l->acked));
}

/* ---------------------------------------------------------------- notify socket */

static int notify_open(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    cr_assert_geq(fd, 0);
    cr_assert_lt(strlen(path), sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind %s: %s", path,
                 strerror(errno));
    return fd;
}

/* The next datagram within timeout_ms, NUL-terminated; false on timeout. */
static bool notify_recv(int fd, char *buf, size_t size, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    ssize_t n;

    if (poll(&p, 1, timeout_ms) != 1)
        return false;
    n = recv(fd, buf, size - 1, 0);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* Reads datagrams until one contains `want` (returned in buf), failing
 * the test after timeout_ms or when one contains `never` first. */
static void notify_expect(int fd, const char *want, const char *never, char *buf, size_t size,
                          int timeout_ms)
{
    int64_t deadline = wire_monotonic_ms() + timeout_ms;

    for (;;) {
        int64_t left = deadline - wire_monotonic_ms();
        cr_assert(left > 0 && notify_recv(fd, buf, size, (int)left),
                  "no '%s' from the daemon within %d ms (log: %s)", want, timeout_ms, h.log);
        if (strstr(buf, want))
            return;
        cr_assert(!never || !strstr(buf, never), "'%s' came before '%s': %s", never, want, buf);
    }
}

/* ---------------------------------------------------------------- helpers */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* last_sequence of a producer in a database file; 0 when unknown. */
static uint64_t db_producer_last(const char *db, const char *id)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t v = 0;

    cr_assert_eq(sqlite3_open_v2(db, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, HARNESS_POSITION_SQL, -1, &st, NULL), SQLITE_OK, "%s",
                 sqlite3_errmsg(c));
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return v;
}

/* One text value of a query on a database file (caller frees). */
static char *db_text(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    char *v = NULL;

    cr_assert_eq(sqlite3_open_v2(db, &c, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(c));
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(c);
    cr_assert_not_null(v, "%s gave no row", sql);
    return v;
}

/* ---------------------------------------------------------------- systemd notify */

Test(ops, notify_reload_and_stop_under_load, .fini = teardown, .timeout = 120)
{
    char path[HARNESS_PATH + 16], env_notify[HARNESS_PATH + 32], env_wd[64], buf[4096];
    char *good, *bad, *out = NULL, *err = NULL;
    const char *env[3] = {env_notify, env_wd, NULL};
    int64_t last_ping = 0, max_gap = 0, t0, stopped_ms;
    int fd, pings = 0, rc;
    bool live_status = false;
    load_t load;
    uint64_t acked, stored;

    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(path, sizeof path, "%s/notify", h.dir);
    fd = notify_open(path);
    snprintf(env_notify, sizeof env_notify, "NOTIFY_SOCKET=%s", path);
    snprintf(env_wd, sizeof env_wd, "WATCHDOG_USEC=%d", WATCHDOG_USEC);
    cr_assert_eq(harness_spawn(&h, env), 0);

    /* READY comes once the database is migrated and every socket is bound:
     * the query socket answers at once, and READY carries a STATUS. */
    notify_expect(fd, "READY=1", NULL, buf, sizeof buf, 10000);
    cr_assert(strstr(buf, "STATUS=") != NULL, "READY without STATUS: %s", buf);
    cr_assert(harness_ping(&h, 1000), "READY=1 before the query socket answers");

    /* Under load: a ping at least every WatchdogSec/2, and live STATUS lines. */
    load_start(&load);
    load_wait_acked(&load, 100, 20000);
    t0 = wire_monotonic_ms();
    while (wire_monotonic_ms() - t0 < WATCH_MS) {
        if (!notify_recv(fd, buf, sizeof buf, WATCHDOG_USEC / 1000))
            cr_assert_fail("no datagram within WatchdogSec");
        if (strstr(buf, "WATCHDOG=1")) {
            int64_t now = wire_monotonic_ms();
            if (last_ping && now - last_ping > max_gap)
                max_gap = now - last_ping;
            last_ping = now;
            pings++;
        }
        if (strstr(buf, "STATUS=") && strstr(buf, "revision") && strstr(buf, "producers"))
            live_status = true;
    }
    cr_assert_geq(pings, 3, "only %d watchdog pings in %d ms", pings, WATCH_MS);
    cr_assert_leq(max_gap, WATCHDOG_USEC / 2000, "watchdog gap %" PRId64 " ms > WatchdogSec/2",
                  max_gap);
    cr_assert(live_status, "no live STATUS line (revision, producers) in %d ms", WATCH_MS);

    /* SIGHUP with a valid file: RELOADING, then READY. */
    kill(h.pid, SIGHUP);
    notify_expect(fd, "RELOADING=1", "READY=1", buf, sizeof buf, 5000);
    cr_assert(strstr(buf, "MONOTONIC_USEC=") != NULL, "RELOADING without MONOTONIC_USEC: %s", buf);
    notify_expect(fd, "READY=1", "RELOADING=1", buf, sizeof buf, 5000);

    /* An invalid file: refused as a whole, the old config runs on, and the
     * reason (file:line) is in STATUS, the log, `parksync status` and the
     * answer to `parksync reload`. */
    good = harness_slurp(h.config);
    cr_assert_not_null(good);
    bad = malloc(strlen(good) + 64);
    cr_assert_not_null(bad);
    sprintf(bad, "%s\n[limits]\nbatch_max = 0\n", good);
    write_file(h.config, bad);
    kill(h.pid, SIGHUP);
    notify_expect(fd, "RELOADING=1", "READY=1", buf, sizeof buf, 5000);
    notify_expect(fd, "READY=1", "RELOADING=1", buf, sizeof buf, 5000);
    cr_assert(strstr(buf, "STATUS=reload failed") && strstr(buf, "batch_max"),
              "STATUS does not say why the reload failed: %s", buf);
    cr_assert(harness_ping(&h, 2000), "the daemon stopped answering after a bad reload");
    rc = harness_cli(&h, (const char *const[]){"status", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 0, "status: %s", err);
    cr_assert(strstr(out, "last reload failed") && strstr(out, "batch_max"), "%s", out);
    cr_assert(strstr(out, LOAD_ID) != NULL, "status does not list the producer: %s", out);
    free(out);
    free(err);
    rc = harness_cli(&h, (const char *const[]){"reload", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 1, "reload of a bad file: %d, %s", rc, err);
    cr_assert(strstr(err, "batch_max") != NULL, "%s", err);
    free(out);
    free(err);
    notify_expect(fd, "READY=1", NULL, buf, sizeof buf, 5000);
    write_file(h.config, good);
    rc = harness_cli(&h, (const char *const[]){"reload", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 0, "reload of the good file: %s", err);
    cr_assert(strstr(out, "configuration reloaded") != NULL, "%s", out);
    free(out);
    free(err);
    notify_expect(fd, "READY=1", NULL, buf, sizeof buf, 5000);
    free(good);
    free(bad);
    char *log = harness_slurp(h.log);
    cr_assert(log && strstr(log, "reload failed") && strstr(log, "keeping the running"),
              "the log does not say the reload failed");
    free(log);

    /* SIGTERM under load: STOPPING, exit 0 within 5 s, and every update
     * the producer saw acknowledged is in the database. */
    acked = atomic_load(&load.acked);
    load_wait_acked(&load, acked + 100, 20000); /* still pushing */
    t0 = wire_monotonic_ms();
    kill(h.pid, SIGTERM);
    notify_expect(fd, "STOPPING=1", NULL, buf, sizeof buf, STOP_LIMIT_MS);
    rc = harness_stop(&h); /* already signalled: waits for the exit */
    stopped_ms = wire_monotonic_ms() - t0;
    cr_assert_eq(rc, 0, "exit status %d after SIGTERM", rc);
    cr_assert_lt(stopped_ms, STOP_LIMIT_MS, "took %" PRId64 " ms to stop", stopped_ms);
    acked = load_stop(&load);
    stored = db_producer_last(h.db, LOAD_ID);
    cr_assert_gt(acked, 0);
    cr_assert_geq(stored, acked, "acknowledged %" PRIu64 " but the database has %" PRIu64, acked,
                  stored);
    close(fd);
}

/* ---------------------------------------------------------------- Prometheus text format */

static bool metric_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

static bool label_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return n < 2 || strncmp(s, "__", 2) != 0;
}

static bool value_ok(const char *s)
{
    char *end = NULL;

    if (!strcmp(s, "NaN") || !strcmp(s, "+Inf") || !strcmp(s, "-Inf"))
        return true;
    errno = 0;
    strtod(s, &end);
    return end != s && *end == '\0' && errno == 0;
}

#define PROM_MAX 512 /* families and series the parser tracks */

/* What the parser has seen. */
typedef struct prom {
    char families[PROM_MAX][256];   /* names with a TYPE */
    char types[PROM_MAX][16];       /* their types */
    bool sampled[PROM_MAX];         /* a sample of the family was seen */
    bool helped[PROM_MAX];          /* a HELP line was seen */
    size_t n;                       /* families */
    char series[PROM_MAX * 4][256]; /* name{labels} seen */
    size_t n_series;
    int current; /* family of the last sample, -1: none */
} prom_t;

static int prom_family(prom_t *p, const char *name, size_t n)
{
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->families[i]) == n && !strncmp(p->families[i], name, n))
            return (int)i;
    return -1;
}

/* Checks one exposition; returns NULL or what is wrong (static text). */
static const char *prom_check(const char *text, char *why, size_t whylen)
{
    prom_t *p = calloc(1, sizeof *p);
    const char *line = text;
    int lineno = 1;

#define BAD(...)                                                                                   \
    do {                                                                                           \
        int at_ = snprintf(why, whylen, "line %d: ", lineno);                                      \
        snprintf(why + at_, whylen - (size_t)at_, __VA_ARGS__);                                    \
        free(p);                                                                                   \
        return why;                                                                                \
    } while (0)
    cr_assert_not_null(p);
    p->current = -1;
    if (!*text || text[strlen(text) - 1] != '\n') {
        free(p);
        return "the text does not end with a newline";
    }
    for (; *line; lineno++) {
        const char *nl = strchr(line, '\n');
        char l[1024];
        size_t len = (size_t)(nl - line);

        if (len >= sizeof l)
            BAD("too long");
        memcpy(l, line, len);
        l[len] = '\0';
        line = nl + 1;
        if (len == 0)
            continue;
        if (l[0] == '#') {
            char kw[8], name[256];
            int off = 0;
            if (sscanf(l, "# %7s %255s %n", kw, name, &off) < 2 ||
                (strcmp(kw, "HELP") && strcmp(kw, "TYPE")))
                continue; /* a comment */
            if (!metric_name_ok(name, strlen(name)))
                BAD("bad metric name '%s'", name);
            int f = prom_family(p, name, strlen(name));
            if (!strcmp(kw, "TYPE")) {
                const char *t = l + off;
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                    strcmp(t, "summary") && strcmp(t, "untyped"))
                    BAD("bad type '%s'", t);
                if (f >= 0 && p->types[f][0])
                    BAD("second TYPE for %s", name);
                if (f >= 0 && p->sampled[f])
                    BAD("TYPE of %s after its samples", name);
                if (f < 0) {
                    cr_assert_lt(p->n, PROM_MAX);
                    f = (int)p->n++;
                    snprintf(p->families[f], sizeof p->families[f], "%s", name);
                }
                snprintf(p->types[f], sizeof p->types[f], "%s", t);
            } else {
                for (const char *c = l + off; *c; c++)
                    if (*c == '\\' && c[1] != '\\' && c[1] != 'n')
                        BAD("bad escape in HELP");
                    else if (*c == '\\')
                        c++;
                if (f >= 0 && p->helped[f])
                    BAD("second HELP for %s", name);
                if (f < 0) {
                    cr_assert_lt(p->n, PROM_MAX);
                    f = (int)p->n++;
                    snprintf(p->families[f], sizeof p->families[f], "%s", name);
                }
                p->helped[f] = true;
            }
            continue;
        }
        /* a sample: name[{labels}] value [timestamp] */
        size_t nlen = strcspn(l, "{ ");
        char series[256];
        const char *c = l + nlen;
        if (!metric_name_ok(l, nlen))
            BAD("bad sample name");
        if (*c == '{') {
            c++;
            while (*c != '}') {
                size_t ln = strcspn(c, "=");
                if (!label_name_ok(c, ln) || c[ln] != '=' || c[ln + 1] != '"')
                    BAD("bad label");
                c += ln + 2;
                while (*c && *c != '"') {
                    if (*c == '\\') {
                        if (c[1] != '\\' && c[1] != '"' && c[1] != 'n')
                            BAD("bad escape in a label value");
                        c++;
                    }
                    c++;
                }
                if (*c != '"')
                    BAD("unterminated label value");
                c++;
                if (*c == ',')
                    c++;
                else if (*c != '}')
                    BAD("expected , or } after a label");
            }
            c++;
        }
        if (*c != ' ')
            BAD("no space before the value");
        snprintf(series, sizeof series, "%.*s", (int)(c - l), l);
        c++;
        char value[64] = "", ts[64] = "";
        int got = sscanf(c, "%63s %63s", value, ts);
        if (got < 1 || !value_ok(value))
            BAD("bad value '%s'", value);
        if (got == 2) {
            char *end = NULL;
            strtoll(ts, &end, 10);
            if (*end)
                BAD("bad timestamp '%s'", ts);
        }
        /* its family: the name itself, or a summary/histogram's part */
        int f = prom_family(p, l, nlen);
        if (f < 0) {
            static const char *const suffix[] = {"_sum", "_count", "_bucket"};
            for (int s = 0; s < 3 && f < 0; s++) {
                size_t sl = strlen(suffix[s]);
                if (nlen > sl && !strncmp(l + nlen - sl, suffix[s], sl))
                    f = prom_family(p, l, nlen - sl);
            }
        }
        if (f < 0 || !p->types[f][0])
            BAD("sample %.*s without a TYPE before it", (int)nlen, l);
        if (p->sampled[f] && p->current != f)
            BAD("samples of %s are not together", p->families[f]);
        p->sampled[f] = true;
        p->current = f;
        for (size_t i = 0; i < p->n_series; i++)
            if (!strcmp(p->series[i], series))
                BAD("duplicate series %.160s", series);
        cr_assert_lt(p->n_series, PROM_MAX * 4);
        snprintf(p->series[p->n_series++], sizeof p->series[0], "%s", series);
    }
#undef BAD
    free(p);
    return NULL;
}

Test(ops, prometheus_parser_refuses_bad_text)
{
    char why[256];

    cr_assert_null(
        prom_check("# HELP a_total x\n# TYPE a_total counter\na_total 1\n", why, sizeof why));
    cr_assert_null(prom_check("# TYPE b gauge\nb{x=\"a\\\"b\",y=\"\"} -1.5e3 1700000000000\n", why,
                              sizeof why));
    cr_assert_not_null(prom_check("a 1\n", why, sizeof why));               /* no TYPE */
    cr_assert_not_null(prom_check("# TYPE a gauge\na 1", why, sizeof why)); /* no \n */
    cr_assert_not_null(prom_check("# TYPE a gauge\n# TYPE a gauge\n", why, sizeof why));
    cr_assert_not_null(prom_check("# TYPE a gauge\na 1\na 2\n", why, sizeof why)); /* dup */
    cr_assert_not_null(prom_check("# TYPE a gauge\na{1x=\"v\"} 1\n", why, sizeof why));
    cr_assert_not_null(prom_check("# TYPE a gauge\na one\n", why, sizeof why));
    cr_assert_not_null(prom_check("# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"y\"} 2\n", why,
                                  sizeof why)); /* a's samples split */
    cr_assert_not_null(prom_check("# TYPE 9a gauge\n", why, sizeof why));
}

/* ---------------------------------------------------------------- backup, metrics, status */

/* The value of the sample whose line starts with series (name and
 * labels, as rendered); fails the test when there is none. */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, series, n) && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    cr_assert_fail("no sample %s in\n%s", series, text);
    return 0;
}

/* A pause histogram: buckets that only grow, the last one its count. */
static double check_histogram(const char *text, const char *name)
{
    static const char *const le[] = {"0.0005", "0.001", "0.002", "0.005", "0.01", "0.02",
                                     "0.05",   "0.1",   "0.25",  "1",     "+Inf"};
    char series[128];
    double below = 0;

    for (size_t i = 0; i < sizeof le / sizeof le[0]; i++) {
        snprintf(series, sizeof series, "%s_bucket{le=\"%s\"}", name, le[i]);
        double v = metric(text, series);
        cr_assert_geq(v, below, "%s: a bucket below the one before it", series);
        below = v;
    }
    snprintf(series, sizeof series, "%s_count", name);
    cr_assert_eq(metric(text, series), below, "%s is not its +Inf bucket", series);
    snprintf(series, sizeof series, "%s_sum", name);
    cr_assert_geq(metric(text, series), 0);
    return below;
}

Test(ops, backup_during_ingest_metrics_and_status, .fini = teardown, .timeout = 120)
{
    char copy[HARNESS_PATH + 16], why[256];
    char *out = NULL, *err = NULL, *v;
    const char *revision;
    uint64_t rev;
    load_t load;
    int rc;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start (log: %s)", h.log);
    load_start(&load);
    load_wait_acked(&load, 500, 30000);

    /* the backup runs while the producer keeps pushing */
    snprintf(copy, sizeof copy, "%s/copy.db", h.dir);
    rc = harness_cli(&h, (const char *const[]){"backup", copy, NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 0, "backup: %s", err);
    revision = strstr(out, "\"revision\":");
    cr_assert_not_null(revision, "%s", out);
    rev = strtoull(revision + 11, NULL, 10);
    cr_assert_gt(rev, 0);
    free(out);
    free(err);
    rc = harness_cli(&h, (const char *const[]){"backup", "relative.db", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 2, "a relative backup path must be refused");
    cr_assert(strstr(err, "absolute") != NULL, "%s", err);
    free(out);
    free(err);

    /* metrics and status while the load runs */
    rc = harness_cli(&h, (const char *const[]){"metrics", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 0, "metrics: %s", err);
    cr_assert_null(prom_check(out, why, sizeof why), "metrics text: %s", why);
    cr_assert(strstr(out, "parksync_producer_last_sequence{producer=\"" LOAD_ID "\"}"), "%s", out);
    cr_assert(strstr(out, "parksync_records{kind=\"resident\"}"), "%s", out);
    cr_assert(strstr(out, "\nparksync_deferred_rows "), "%s", out);
    cr_assert(strstr(out, "\nparksync_replay_revisions "), "%s", out);
    cr_assert_gt(metric(out, "parksync_cache_bytes"), 0, "the writer's cache holds pages: %s", out);
    cr_assert(strstr(out, "\nparksync_wal_starts_total "), "%s", out);
    double commits = metric(out, "parksync_commits_total");
    cr_assert_gt(commits, 0);
    cr_assert_eq(check_histogram(out, "parksync_commit_seconds"), commits,
                 "every commit is timed once");
    check_histogram(out, "parksync_wal_reset_seconds");
    check_histogram(out, "parksync_wal_sync_seconds");
    double commit_sum = metric(out, "parksync_commit_seconds_sum");
    free(out);
    free(err);
    /* Every commit lies inside a pass of the loop (at most one a pass
     * here: no streams, no peers). A scrape is answered inside a pass
     * that it cannot count yet, after that pass's commit, so the passes
     * are read from a later scrape: every commit the first one counted
     * is in a pass the second one does. */
    rc = harness_cli(&h, (const char *const[]){"metrics", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 0, "metrics: %s", err);
    cr_assert_geq(check_histogram(out, "parksync_loop_pass_seconds"), commits);
    cr_assert_geq(metric(out, "parksync_loop_pass_seconds_sum"), commit_sum,
                  "the passes' time includes the commits' time");
    free(out);
    free(err);
    rc = harness_cli(&h, (const char *const[]){"status", "--json", NULL}, NULL, &out, &err);
    cr_assert_eq(rc, 0, "status: %s", err);
    cr_assert(strstr(out, "\"producer_id\":\"" LOAD_ID "\"") && strstr(out, "\"lag_us\":") &&
                  strstr(out, "\"database_bytes\":") && strstr(out, "\"rejected\":") &&
                  strstr(out, "\"deferred_rows\":") && strstr(out, "\"replay_revisions\":"),
              "%s", out);
    free(out);
    free(err);

    load_stop(&load);
    cr_assert_eq(harness_stop(&h), 0);

    /* the copy: intact, one self-contained file, at the revision reported */
    v = db_text(copy, "PRAGMA integrity_check");
    cr_assert_str_eq(v, "ok");
    free(v);
    v = db_text(copy, "PRAGMA journal_mode");
    cr_assert_str_eq(v, "delete");
    free(v);
    v = db_text(copy, "SELECT value FROM meta WHERE key = 'head'");
    cr_assert_eq(strtoull(v, NULL, 10), rev, "copy head %s, reported %" PRIu64, v, rev);
    free(v);

    /* and it opens as a working database */
    store_config_t sc;
    char serr[256] = "";
    store_config_init(&sc);
    sc.path = copy;
    store_t *s = store_open(&sc, serr, sizeof serr);
    cr_assert_not_null(s, "store_open of the copy: %s", serr);
    cr_assert_eq(store_head(s), rev);
    cr_assert_gt(store_producer_last(s, LOAD_ID), 0);
    store_close(&s);
}

/* ---------------------------------------------------------------- the installed unit */

static bool have(const char *prog)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

Test(ops, installed_unit_verifies_and_is_hardened, .fini = teardown, .timeout = 300)
{
    char dest[HARNESS_PATH + 16], cmd[4096], path[HARNESS_PATH + 128];
    static const char *const installed[] = {"usr/bin/parksyncd",
                                            "usr/bin/parksync",
                                            "usr/lib/systemd/system/parksyncd.service",
                                            "usr/lib/sysusers.d/parksync.conf",
                                            "usr/lib/tmpfiles.d/parksync.conf",
                                            "usr/share/man/man8/parksyncd.8.gz",
                                            "usr/share/man/man5/parksyncd.conf.5.gz",
                                            "usr/share/man/man1/parksync.1.gz",
                                            "usr/share/doc/parksync/copyright",
                                            "usr/share/doc/parksync/changelog.gz",
                                            "usr/include/parksync/parksync.h",
                                            NULL};
    char *err;
    struct stat st;

    if (!have("systemd-analyze") || !have("cmake"))
        cr_skip_test("systemd-analyze or cmake is not installed");
    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(dest, sizeof dest, "%s/dest", h.dir);
    /* DESTDIR only: nothing of the real system is touched */
    snprintf(cmd, sizeof cmd,
             "DESTDIR='%s' cmake --install '%s' --prefix /usr >'%s/install.log' 2>&1", dest,
             PARKSYNC_BUILD_DIR, h.dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    for (int i = 0; installed[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dest, installed[i]);
        cr_assert_eq(stat(path, &st), 0, "not installed: %s", installed[i]);
    }
    /* verify: a copy of the unit whose binaries point into DESTDIR (the
     * unit names /usr/bin/...; --root lacks systemd's own units) */
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/units' && sed 's|/usr/bin/|%s/usr/bin/|g' "
             "'%s/usr/lib/systemd/system/parksyncd.service' >'%s/units/parksyncd.service' && "
             "MANPATH='%s/usr/share/man' systemd-analyze verify '%s/units/parksyncd.service' "
             ">/dev/null 2>'%s/verify.err'",
             h.dir, dest, dest, h.dir, dest, h.dir, h.dir);
    cr_assert_eq(system(cmd), 0, "systemd-analyze verify failed");
    snprintf(path, sizeof path, "%s/verify.err", h.dir);
    err = harness_slurp(path);
    cr_assert(err && err[0] == '\0', "systemd-analyze verify said: %s", err ? err : "?");
    free(err);
    /* exposure 2.0 or lower (the threshold counts tenths) */
    snprintf(cmd, sizeof cmd,
             "systemd-analyze security --offline=yes --root='%s' --threshold=20 "
             "parksyncd.service >'%s/security.out' 2>&1",
             dest, h.dir);
    cr_assert_eq(system(cmd), 0, "systemd-analyze security: exposure above 2.0 (see %s)", h.dir);
}
