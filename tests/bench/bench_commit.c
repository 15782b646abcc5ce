/*
 * bench_commit.c - what one small commit costs the store, in process:
 * the latency a producer sending at a low rate sees, less the network
 * and the daemon's loop. Not a test: run it by hand from a Release build:
 *
 *   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-bench -j --target bench_commit
 *   build-bench/tests/bench/bench_commit -s full
 *
 * A database of RECORDS residents is filled through the store API and
 * its rows written (store_settle), then COMMITS commits of one update
 * each go to residents picked at random, the way 1,000 updates/s arrive
 * one per commit. Enough of them reach the sweep of deferred rows (half
 * of defer_rows waiting), so the figures include its share of each
 * commit. Printed: each commit's time (p50, p99, p99.9, max), and the
 * bytes written (write(2) bytes, /proc/self/io wchar) per commit, WAL
 * and SQLite's own checkpoints together: there is no checkpoint thread
 * here as in the daemon.
 *
 * With -u UPDATES, each commit holds that many (the group commits of a
 * higher rate: about 100 at 20,000/s).
 *
 * With -x, a crash follows: the database and its WAL, as the commits
 * left them (nothing closed), are copied and a store opened on the copy,
 * which replays the change log past the tables' last complete write
 * (the rows still waiting). Printed: the open's time, and what it
 * replayed. `-n 1000000 -u 320 -c 1000 -x` replays the most the default
 * bounds leave over a large table.
 *
 * Options: -n RECORDS (100000), -c COMMITS (40000), -u UPDATES (1), -s full|normal
 * (normal), -x (crash and replay), -d DIR (a new directory under /tmp, removed at the end).
 * The database is removed at the end.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "store.h"
#include "wire.h"

#define FILL_BATCH 20000              /* updates per fill transaction */
#define BASE_TIME  1600000000000000LL /* event time of the first update, us */
#define COMPANY    "Company Sumgait Chemical Industrial Park resident, petrochemicals and polymers"

static uint64_t seq; /* the producer's last sequence */

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Removes the database and, when this run made it, its directory. */
static void cleanup(const char *dir, const char *path, bool made)
{
    static const char *const ends[] = {"", "-wal", "-shm"};
    char f[320];

    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++) {
        snprintf(f, sizeof f, "%s%s", path, ends[i]);
        unlink(f);
    }
    if (made)
        rmdir(dir);
}

/* Copies the file `from` + end to `to` + end. 0 or -1. */
static int copy_file(const char *from, const char *to, const char *end)
{
    char a[320], b[320], buf[65536];
    size_t n;
    int rc = 0;

    snprintf(a, sizeof a, "%s%s", from, end);
    snprintf(b, sizeof b, "%s%s", to, end);
    FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
    if (!in || !out)
        rc = -1;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        rc = -1;
    return rc;
}

/* The files of s as a crash would leave them, copied beside them; a
 * store opened on the copy replays what waits. Prints the open's time. */
static int crash_open(store_t *s, const store_config_t *cfg, const char *dir)
{
    char copy[300], err[512];
    store_config_t c = *cfg;
    uint64_t replay = store_replay_revisions(s), waiting = store_deferred_rows(s);

    snprintf(copy, sizeof copy, "%s/crash.db", dir);
    if (copy_file(cfg->path, copy, "") < 0 || copy_file(cfg->path, copy, "-wal") < 0) {
        perror("bench_commit: copy");
        cleanup(dir, copy, false);
        return -1;
    }
    c.path = copy;
    int64_t t0 = now_us();
    store_t *r = store_open(&c, err, sizeof err);
    int64_t t = now_us() - t0;
    if (r == NULL)
        fprintf(stderr, "bench_commit: the copy does not open: %s\n", err);
    else
        printf("  crash: the copy opened in %.3f s, replaying %" PRIu64 " revisions of %" PRIu64
               " waiting residents\n",
               (double)t / 1e6, replay, waiting);
    store_close(&r);
    cleanup(dir, copy, false);
    return r == NULL ? -1 : 0;
}

/* Applies one update of resident `key` in the open batch. */
static int put(store_t *s, uint64_t key, int64_t investment)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
    store_outcome_t out;
    char rid[24];

    snprintf(rid, sizeof rid, "R%07" PRIu64, key);
    r.park_id = "AZ-SUMGAIT-CHEM";
    r.country = "AZ";
    r.resident_id = rid;
    r.company_name = COMPANY;
    r.has_investment_usd_cents = 1;
    r.investment_usd_cents = investment;
    r.has_jobs = 1;
    r.jobs = (uint32_t)(key % 5000);
    u.has_version = 1;
    u.version = WIRE_VERSION;
    u.producer_id = "bench";
    u.has_sequence = 1;
    u.sequence = ++seq;
    u.has_event_time_us = 1;
    u.event_time_us = BASE_TIME + (int64_t)seq;
    u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    u.resident = &r;
    return store_apply(s, &u, &out) < 0 || out != STORE_APPLIED ? -1 : 0;
}

/* Bytes this process has passed to write(2) and its kin so far. */
static long long written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char name[64];
    long long v, w = -1;

    if (f == NULL)
        return -1;
    while (fscanf(f, "%63s %lld", name, &v) == 2)
        if (strcmp(name, "wchar:") == 0)
            w = v;
    fclose(f);
    return w;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_commit [-n RECORDS] [-c COMMITS] [-u UPDATES] [-s full|normal] "
                    "[-x] [-d DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    uint64_t records = 100000, commits = 40000, per = 1, rng = 1;
    bool full = false, made = false, crash = false;
    char dir[256] = "", path[300], err[512];
    int opt;

    while ((opt = getopt(argc, argv, "n:c:u:s:xd:")) != -1) {
        switch (opt) {
        case 'n':
            records = strtoull(optarg, NULL, 10);
            break;
        case 'c':
            commits = strtoull(optarg, NULL, 10);
            break;
        case 'u':
            per = strtoull(optarg, NULL, 10);
            break;
        case 's':
            if (strcmp(optarg, "full") != 0 && strcmp(optarg, "normal") != 0)
                usage();
            full = strcmp(optarg, "full") == 0;
            break;
        case 'x':
            crash = true;
            break;
        case 'd':
            snprintf(dir, sizeof dir, "%s", optarg);
            break;
        default:
            usage();
        }
    }
    if (records < 1 || commits < 1000 || per < 1 || per > 100000)
        usage();
    if (dir[0] == '\0') {
        snprintf(dir, sizeof dir, "/tmp/bench_commit.XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("bench_commit: mkdtemp");
            return 1;
        }
        made = true;
    }
    snprintf(path, sizeof path, "%s/bench.db", dir);

    store_config_t cfg;
    store_config_init(&cfg);
    cfg.path = path;
    cfg.synchronous_full = full;
    store_t *s = store_open(&cfg, err, sizeof err);
    if (s == NULL) {
        fprintf(stderr, "bench_commit: %s\n", err);
        return 1;
    }
    for (uint64_t i = 0; i < records; i += FILL_BATCH) {
        if (store_begin(s) < 0)
            goto fail;
        for (uint64_t k = i; k < i + FILL_BATCH && k < records; k++)
            if (put(s, k, 1) < 0)
                goto fail;
        if (store_commit(s) < 0)
            goto fail;
    }
    if (store_settle(s) < 0)
        goto fail;

    int64_t *lat = malloc(commits * sizeof *lat);
    if (lat == NULL)
        goto fail;
    long long w0 = written();
    int64_t t0 = now_us();
    for (uint64_t i = 0; i < commits; i++) {
        int64_t a = now_us();
        int rc = store_begin(s);
        for (uint64_t u = 0; rc == 0 && u < per; u++)
            rc = put(s, rng_next(&rng) % records, (int64_t)i);
        if (rc < 0 || store_commit(s) < 0) {
            free(lat);
            goto fail;
        }
        lat[i] = now_us() - a;
    }
    int64_t elapsed = now_us() - t0;
    long long bytes = written() - w0;
    qsort(lat, commits, sizeof *lat, cmp64);
    printf("bench_commit: %" PRIu64 " commits of %" PRIu64 " update%s over %" PRIu64
           " residents, synchronous %s\n",
           commits, per, per == 1 ? "" : "s", records, full ? "full" : "normal");
    printf("  per commit: mean %.1f us, p50 %" PRId64 " us, p99 %" PRId64 " us, p99.9 %" PRId64
           " us, max %" PRId64 " us; %.1f KiB written; rows waiting at the end %" PRIu64 "\n",
           (double)elapsed / (double)commits, lat[commits / 2], lat[commits * 99 / 100],
           lat[commits * 999 / 1000], lat[commits - 1], (double)bytes / 1024.0 / (double)commits,
           store_deferred_rows(s));
    free(lat);
    int rc = crash ? crash_open(s, &cfg, dir) : 0;
    store_close(&s);
    cleanup(dir, path, made);
    return rc < 0;
fail:
    fprintf(stderr, "bench_commit: %s\n", store_errmsg(s));
    store_close(&s);
    cleanup(dir, path, made);
    return 1;
}
