/*
 * bench_ingest.c - sustained ingest throughput, end to end, against the
 * raw rate of plain SQLite upserts of the same rows. Not a test: run it
 * by hand from a Release build without sanitizers:
 *
 *   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-bench -j && build-bench/tests/bench/bench_ingest
 *
 * Matrix: synchronous NORMAL and FULL; workload (a) updates spread over
 * 1,000 records, (b) updates in random order over 100,000 records; 1, 3
 * and 8 producers (threads, each with its own libparksync producer, ZeroMQ
 * context and SQLite outbox). Each cell starts a fresh parksyncd (the real
 * binary, through the test harness) on a fresh database and measures from
 * the first ps_producer_send to the last acknowledgement. Updates are
 * resident upserts of about 200 bytes encoded.
 *
 * Baseline, same process: INSERT ... ON CONFLICT DO UPDATE of the same
 * rows (same key, a record blob of the same size) into a WITHOUT ROWID
 * table in WAL mode with the daemon's pragmas, one prepared statement,
 * transactions of 1,000. Every ingest run is paired with a baseline run
 * just before it; the table gives the medians of RUNS runs of each and
 * the median of the per-pair ratios, which this shared machine's load
 * swings disturb far less than either rate alone.
 *
 * Besides the rates it reports the producers' resends and the updates the
 * daemon applied per commit (its group-commit batch), summed over runs.
 *
 * Options: -n UPDATES (total per cell, default 60000), -r RUNS (default
 * 3), -q (only workload a, NORMAL: a quick look), -p N (only N
 * producers), -s normal|full and -l a|b (only that setting, workload),
 * -b N (the daemon's batch_max), -w WINDOW (producer window;
 * default the library's), -T MS (the producers' first resend timeout; a
 * window far beyond the default needs more than the library's 500 ms, or
 * the ack of a large batch comes after the resends), -m (producers
 * without an outbox, to see what the outbox costs).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define MAX_PRODUCERS 8                  /* largest producer count of the matrix */
#define MAX_RUNS      9                  /* most runs per cell */
#define BASE_TIME_US  1600000000000000LL /* event time of the first update */
#define RAW_BATCH     1000               /* rows per transaction in the baseline */
/* The daemon's other pragmas (store.c), so the baseline writes the way it
 * does; it checkpoints inline, as SQLite does by default. */
#define RAW_PRAGMAS "PRAGMA cache_size=-32768; PRAGMA journal_size_limit=67108864;"
#define PAD         120 /* bytes of company-name padding: ~200-byte updates */

static unsigned bench_window;    /* -w: producer window, 0 = library default */
static bool bench_no_outbox;     /* -m: producers keep unacknowledged updates in memory only */
static unsigned bench_batch_max; /* -b: the daemon's batch_max, 0 = its default */
static int bench_ack_timeout_ms; /* -T: the producers' first resend timeout, 0 = the library's */

/* One benchmark producer thread. */
typedef struct worker {
    const harness_t *h; /* the daemon */
    int index;          /* 0.. */
    uint64_t count;     /* updates to send */
    uint32_t keys;      /* distinct records of the workload */
    unsigned seed;      /* for rand_r */
    int64_t start_ms;   /* monotonic ms of the first send */
    int64_t end_ms;     /* monotonic ms of the last ack */
    uint64_t resends;   /* from the producer */
    int failed;         /* non-zero: what went wrong */
} worker_t;

/* Fills the update for record `key` with ~200 bytes of fields. */
static void make_update(Parksync__V1__Update *u, Parksync__V1__Resident *r, char *rid,
                        size_t ridlen, char *company, size_t clen, uint32_t key, uint64_t n)
{
    Parksync__V1__Update u0 = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Resident r0 = PARKSYNC__V1__RESIDENT__INIT;

    *u = u0;
    *r = r0;
    snprintf(rid, ridlen, "R%06" PRIu32, key);
    snprintf(company, clen, "Company %06" PRIu32 " %" PRIu64 " %.*s", key, n, PAD,
             "Sumgait Chemical Industrial Park resident, petrochemicals and polymer "
             "processing, Absheron peninsula, Republic of Azerbaijan .................");
    r->park_id = "BENCH-PARK";
    r->resident_id = rid;
    r->country = "AZ";
    r->company_name = company;
    r->has_investment_usd_cents = 1;
    r->investment_usd_cents = (int64_t)n * 100;
    r->has_jobs = 1;
    r->jobs = (uint32_t)(n % 100000);
    r->has_sector = 1;
    r->sector = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
    r->has_status = 1;
    r->status = PARKSYNC__V1__RESIDENT_STATUS__RESIDENT_STATUS_ACTIVE;
    r->registered_on = "2020-01-15";
    u->has_event_time_us = 1;
    u->event_time_us = BASE_TIME_US + (int64_t)n;
    u->body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    u->resident = r;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    char id[32], outbox[HARNESS_PATH + 32], rid[16], company[256];
    Parksync__V1__Update u;
    Parksync__V1__Resident r;

    snprintf(id, sizeof id, "bench-%d", w->index);
    snprintf(outbox, sizeof outbox, "%s/outbox-%d.db", w->h->dir, w->index);
    ps_producer_options_init(&o);
    o.producer_id = id;
    o.ingest_endpoint = w->h->ingest;
    o.publish_endpoint = w->h->publish;
    o.query_endpoint = w->h->query;
    o.outbox_path = bench_no_outbox ? NULL : outbox;
    if (bench_window > 0)
        o.window = bench_window;
    if (bench_ack_timeout_ms > 0)
        o.ack_timeout_ms = bench_ack_timeout_ms;
    p = ps_producer_new(&o, &err);
    if (p == NULL) {
        w->failed = (int)err;
        return NULL;
    }
    w->start_ms = wire_monotonic_ms();
    for (uint64_t i = 0; i < w->count; i++) {
        uint32_t key = (uint32_t)rand_r(&w->seed) % w->keys;
        make_update(&u, &r, rid, sizeof rid, company, sizeof company, key,
                    i * MAX_PRODUCERS + (uint64_t)w->index);
        if ((err = ps_producer_send(p, &u, NULL, 60000)) != PS_OK) {
            w->failed = (int)err;
            goto out;
        }
    }
    if ((err = ps_producer_flush(p, 120000)) != PS_OK) {
        w->failed = (int)err;
        goto out;
    }
    w->end_ms = wire_monotonic_ms();
    w->resends = ps_producer_resends(p);
out:
    ps_producer_destroy(&p);
    return NULL;
}

/* One end-to-end run: updates/s, or -1; adds the producers' resends and
 * the daemon's commits to *resends and *commits. */
static double run_ingest(bool full, uint32_t keys, int producers, uint64_t total, unsigned seed,
                         uint64_t *resends, uint64_t *commits)
{
    harness_t h;
    worker_t w[MAX_PRODUCERS];
    pthread_t t[MAX_PRODUCERS];
    char ini[256];
    int64_t start = INT64_MAX, end = 0;
    double rate = -1;

    snprintf(ini, sizeof ini, "[store]\nsynchronous = %s\n", full ? "full" : "normal");
    if (bench_batch_max > 0)
        snprintf(ini + strlen(ini), sizeof ini - strlen(ini), "[limits]\nbatch_max = %u\n",
                 bench_batch_max);
    if (harness_init_at(&h, ini, "info") < 0 || harness_start(&h) < 0) {
        fprintf(stderr, "bench: parksyncd did not start (see %s)\n", h.log);
        harness_cleanup(&h);
        return -1;
    }
    for (int i = 0; i < producers; i++) {
        w[i] = (worker_t){.h = &h,
                          .index = i,
                          .count = total / (uint64_t)producers,
                          .keys = keys,
                          .seed = seed * 131u + (unsigned)i};
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < producers; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < producers; i++) {
        if (w[i].failed) {
            fprintf(stderr, "bench: producer %d failed: %s\n", i,
                    ps_strerror((ps_err_t)w[i].failed));
            goto out;
        }
        if (w[i].start_ms < start)
            start = w[i].start_ms;
        if (w[i].end_ms > end)
            end = w[i].end_ms;
        *resends += w[i].resends;
    }
    rate = (double)(total / (uint64_t)producers * (uint64_t)producers) * 1000.0 /
           (double)(end > start ? end - start : 1);
    int64_t n = harness_counter(&h, "commits", 2000);
    if (n > 0)
        *commits += (uint64_t)n;
out:
    harness_stop(&h);
    harness_cleanup(&h);
    return rate;
}

/* The baseline: rows/s of plain upserts of the same rows, or -1. */
static double run_raw(bool full, uint32_t keys, uint64_t total, unsigned seed)
{
    char dir[] = "/tmp/parksync-bench-XXXXXX", path[64];
    sqlite3 *db = NULL;
    sqlite3_stmt *up = NULL;
    uint8_t blob[256];
    char rid[16], company[256];
    Parksync__V1__Update u;
    Parksync__V1__Resident r;
    double rate = -1;

    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/raw.db", dir);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        goto out;
    if (sqlite3_exec(db,
                     full ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" RAW_PRAGMAS
                          : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" RAW_PRAGMAS,
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db,
                     "CREATE TABLE resident(country TEXT NOT NULL, park_id TEXT NOT NULL,"
                     " resident_id TEXT NOT NULL, revision INTEGER NOT NULL,"
                     " investment_cents INTEGER, record BLOB NOT NULL,"
                     " PRIMARY KEY (country, park_id, resident_id)) WITHOUT ROWID",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO resident(country, park_id, resident_id, revision,"
                           " investment_cents, record) VALUES ('AZ', 'BENCH-PARK', ?1, ?2, ?3,"
                           " ?4) ON CONFLICT (country, park_id, resident_id) DO UPDATE SET"
                           " revision = excluded.revision,"
                           " investment_cents = excluded.investment_cents,"
                           " record = excluded.record",
                           -1, &up, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench: raw baseline: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    int64_t start = wire_monotonic_ms();
    for (uint64_t i = 0; i < total; i++) {
        if (i % RAW_BATCH == 0 && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
            goto out;
        uint32_t key = (uint32_t)rand_r(&seed) % keys;
        make_update(&u, &r, rid, sizeof rid, company, sizeof company, key, i);
        size_t len = parksync__v1__resident__get_packed_size(&r);
        if (len > sizeof blob)
            len = sizeof blob;
        parksync__v1__resident__pack(&r, blob);
        sqlite3_bind_text(up, 1, rid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 2, (sqlite3_int64)i + 1);
        sqlite3_bind_int64(up, 3, r.investment_usd_cents);
        sqlite3_bind_blob(up, 4, blob, (int)len, SQLITE_STATIC);
        if (sqlite3_step(up) != SQLITE_DONE)
            goto out;
        sqlite3_reset(up);
        if ((i + 1) % RAW_BATCH == 0 || i + 1 == total)
            if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
                goto out;
    }
    rate = (double)total * 1000.0 / (double)(wire_monotonic_ms() - start + 1);
out:
    sqlite3_finalize(up);
    sqlite3_close(db);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
    return rate;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    static const int counts[] = {1, 3, 8};
    static const struct {
        const char *name;
        uint32_t keys;
    } loads[] = {{"a: 1,000 records", 1000}, {"b: 100,000 random", 100000}};
    uint64_t total = 60000;
    int runs = 3, c;
    bool quick = false;
    int only_producers = 0; /* -p: run only this producer count */
    int only_sync = 0;      /* -s: 1 NORMAL only, 2 FULL only */
    int only_load = 0;      /* -l: 1 workload a only, 2 workload b only */

    while ((c = getopt(argc, argv, "n:r:qw:mp:s:l:b:T:")) != -1) {
        switch (c) {
        case 'n':
            total = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            runs = (int)strtol(optarg, NULL, 10);
            break;
        case 'q':
            quick = true;
            break;
        case 'w':
            bench_window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            bench_no_outbox = true;
            break;
        case 'p':
            only_producers = (int)strtol(optarg, NULL, 10);
            break;
        case 'b':
            bench_batch_max = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'T':
            bench_ack_timeout_ms = (int)strtol(optarg, NULL, 10);
            break;
        case 's':
            only_sync = strcmp(optarg, "full") == 0 ? 2 : strcmp(optarg, "normal") == 0 ? 1 : 0;
            break;
        case 'l':
            only_load = strcmp(optarg, "b") == 0 ? 2 : strcmp(optarg, "a") == 0 ? 1 : 0;
            break;
        default:
            fprintf(stderr,
                    "usage: bench_ingest [-n UPDATES] [-r RUNS] [-q] [-w WINDOW] [-m] [-p "
                    "PRODUCERS] [-s normal|full] [-l a|b] [-b BATCH_MAX] [-T ACK_TIMEOUT_MS]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || total < 1000) {
        fprintf(stderr, "bench_ingest: -r 1..%d, -n >= 1000\n", MAX_RUNS);
        return 2;
    }
    printf("ingest benchmark: %" PRIu64 " updates per cell, median of %d runs, %ld CPUs\n\n", total,
           runs, sysconf(_SC_NPROCESSORS_ONLN));
    printf("%-7s %-20s %14s %10s %12s %7s %9s %11s\n", "sync", "workload", "raw upserts/s",
           "producers", "ingest/s", "ratio", "resends", "per commit");
    for (int s = 0; s < 2; s++) {
        bool full = s == 1;
        if ((quick && full) || (only_sync > 0 && only_sync != s + 1))
            continue;
        for (size_t l = 0; l < sizeof loads / sizeof loads[0]; l++) {
            if ((quick && l > 0) || (only_load > 0 && only_load != (int)l + 1))
                continue;
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
                double raw[MAX_RUNS], rate[MAX_RUNS], ratio[MAX_RUNS];
                uint64_t resends = 0, commits = 0;
                if (only_producers > 0 && counts[k] != only_producers)
                    continue;
                /* Each run pairs a baseline with the ingest run right after
                 * it, so both see the same load on a shared machine. */
                for (int i = 0; i < runs; i++) {
                    raw[i] = run_raw(full, loads[l].keys, total, 7u + (unsigned)i);
                    rate[i] = run_ingest(full, loads[l].keys, counts[k], total, 7u + (unsigned)i,
                                         &resends, &commits);
                    ratio[i] = raw[i] > 0 && rate[i] > 0 ? rate[i] / raw[i] : 0.0;
                }
                printf("%-7s %-20s %14.0f %10d %12.0f %6.0f%% %9" PRIu64 " %11.0f\n",
                       full ? "FULL" : "NORMAL", loads[l].name, median(raw, runs), counts[k],
                       median(rate, runs), 100.0 * median(ratio, runs), resends,
                       commits > 0 ? (double)(total * (uint64_t)runs) / (double)commits : 0.0);
                fflush(stdout);
            }
        }
    }
    return 0;
}
