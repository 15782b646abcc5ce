/*
 * bench_snapshot.c - snapshots of a large picture and live latency. Not a
 * test: run it by hand from a Release build without sanitizers:
 *
 *   cmake -S . -B build-subbench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-subbench -j && build-subbench/tests/bench/bench_snapshot
 *
 * 1. Fills a database with N records (default 1,000,000 residents, half
 *    AZ, half TJ) directly through the store API, then starts the real
 *    parksyncd on it (through the test harness).
 * 2. Snapshot: one subscriber (libparksync, this process) takes the whole
 *    snapshot; records/s, and peak RSS (VmRSS sampled every 10 ms) of the
 *    daemon and of this process, against their RSS before.
 * 3. Ingest: INGEST updates from one producer, alone, then again while
 *    snapshots stream back to back, then again while a live subscriber
 *    (libparksync, a thread of this process) follows every change;
 *    updates/s of each, and the follower's CPU time (its thread's) per
 *    record it received live. Between the first two,
 *    a snapshot taken while the rows the first ingest left wait to be
 *    written (deferred state, Status.deferred_rows): how long its first
 *    record takes.
 * 4. Latency: a live subscriber and a producer sending at 1,000 and at
 *    20,000 updates/s (-R) for LAT_S seconds, after LAT_WARM updates not
 *    measured; each update carries its CLOCK_REALTIME send time (in
 *    investment_usd_cents); the subscriber records receipt - send; p50,
 *    p99, p99.9. PARKSYNCD_BIN runs another build's daemon.
 *
 * 5. With -G SIZES (e.g. 10000,100000,1000000,10000000), instead of
 *    2-4: the cost of an update as the picture grows. The database is
 *    filled up to each size in turn (ascending), the daemon started on it
 *    ([store] synchronous as -s says, default full), and one producer
 *    sends INGEST updates to records picked at random among all of them
 *    (after a tenth as many to warm up); updates/s, and the daemon's CPU
 *    time per update (user + system, from /proc: a busy machine disturbs
 *    it far less than the rate), each against the smallest size's.
 *
 * 6. With -M ROUNDS, instead of 2-4: latency at 1,000 updates/s with the
 *    metrics endpoint ([metrics] http) on and off, ROUNDS rounds of each,
 *    interleaved (off, on, on, off, off, on, ...: neither side always
 *    runs on a warmer cache), the daemon restarted on the same database
 *    for each; the median of each side's p99. With the endpoint on, the
 *    loop renders the metrics once a second, reading the store's figures.
 *
 * Options: -n RECORDS, -i INGEST updates (default 100000), -t LAT_S seconds
 * (default 3), -R RATES of the latency runs (default 1000,20000), -M
 * ROUNDS, -G SIZES, -s full|normal (the daemon's [store] synchronous;
 * default full with -G, normal otherwise: say -s full for latency at
 * FULL), -k keep the database directory.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "rng.h"
#include "parksync.h"
#include "store.h"
#include "wire.h"

#define FILL_BATCH   20000              /* updates per fill transaction */
#define BASE_TIME_US 1600000000000000LL /* event time of the first fill update */
#define SAMPLE_MS    10                 /* RSS sampling period */
#define LAT_WARM     100                /* updates sent before the latency is measured */
#define PAD          "Sumgait Chemical Industrial Park resident, petrochemicals and polymers"

static uint64_t n_records = 1000000;
static uint64_t n_ingest = 100000;
static int lat_s = 3;
static const char *lat_rates = "1000,20000"; /* -R: offered rates of the latency runs */
static int metrics_rounds = 0;
static const char *growth_sizes; /* -G: sizes of the cost-growth curve */
static int sync_full = -1;       /* -s: the daemon's synchronous, 1 full, 0 normal; -1: the
                                    mode's default (full with -G, normal otherwise) */

/* ---------------------------------------------------------------- helpers */

static int64_t now_us(void)
{
    return wire_now_us();
}

/* Samples the peak RSS of two processes until stopped. */
typedef struct sampler {
    pid_t a, b;
    volatile int stop;
    long peak_a, peak_b;
} sampler_t;

static void *sampler_main(void *arg)
{
    sampler_t *s = arg;
    while (!s->stop) {
        long a = harness_rss_kib(s->a), b = harness_rss_kib(s->b);
        if (a > s->peak_a)
            s->peak_a = a;
        if (b > s->peak_b)
            s->peak_b = b;
        usleep(SAMPLE_MS * 1000);
    }
    return NULL;
}

static void make_resident(Parksync__V1__Update *u, Parksync__V1__Resident *r, char *rid,
                          size_t ridlen, uint64_t key, int64_t investment, int64_t t)
{
    Parksync__V1__Update u0 = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Resident r0 = PARKSYNC__V1__RESIDENT__INIT;
    *u = u0;
    *r = r0;
    snprintf(rid, ridlen, "R%07" PRIu64, key);
    r->park_id = key % 2 ? "TJ-DUSHANBE" : "AZ-SUMGAIT-CHEM";
    r->country = key % 2 ? "TJ" : "AZ";
    r->resident_id = rid;
    r->company_name = "Company " PAD;
    r->has_investment_usd_cents = 1;
    r->investment_usd_cents = investment;
    r->has_jobs = 1;
    r->jobs = (uint32_t)(key % 5000);
    r->has_status = 1;
    r->status = PARKSYNC__V1__RESIDENT_STATUS__RESIDENT_STATUS_ACTIVE;
    r->registered_on = "2020-01-15";
    u->has_event_time_us = 1;
    u->event_time_us = t;
    u->body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    u->resident = r;
}

/* ---------------------------------------------------------------- fill */

/* Fills records from..to-1 (a database filled up to `from` grows). */
static int fill(const char *path, uint64_t from, uint64_t to)
{
    store_config_t cfg;
    char err[512], rid[24];
    store_config_init(&cfg);
    cfg.path = path;
    cfg.synchronous_full = false;
    store_t *s = store_open(&cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "bench: %s\n", err);
        return -1;
    }
    int64_t t0 = wire_monotonic_ms();
    for (uint64_t i = from; i < to; i += FILL_BATCH) {
        if (store_begin(s) < 0)
            goto fail;
        for (uint64_t k = i; k < i + FILL_BATCH && k < to; k++) {
            Parksync__V1__Update u;
            Parksync__V1__Resident r;
            store_outcome_t out;
            make_resident(&u, &r, rid, sizeof rid, k, (int64_t)k * 100, BASE_TIME_US + (int64_t)k);
            u.has_version = 1;
            u.version = WIRE_VERSION;
            u.producer_id = "fill";
            u.has_sequence = 1;
            u.sequence = k + 1;
            if (store_apply(s, &u, &out) < 0 || out != STORE_APPLIED)
                goto fail;
        }
        if (store_commit(s) < 0)
            goto fail;
    }
    if (store_begin(s) < 0 || store_refresh_summaries(s) < 0 || store_commit(s) < 0)
        goto fail;
    printf("fill: %" PRIu64 " records in %.1f s (store API, in process)\n", to - from,
           (double)(wire_monotonic_ms() - t0) / 1000.0);
    store_close(&s);
    return 0;
fail:
    fprintf(stderr, "bench: fill failed: %s\n", store_errmsg(s));
    store_close(&s);
    return -1;
}

/* ---------------------------------------------------------------- snapshot */

/* Takes one whole snapshot; records, or -1. When first_us is not NULL,
 * the time from the request to the first record goes there. */
static int64_t take_snapshot(const harness_t *h, uint64_t *revision, int64_t *first_us)
{
    int64_t t0 = now_us();
    ps_subscriber_options_t o;
    ps_err_t err;
    ps_event_t ev;
    int64_t n = 0;
    ps_subscriber_options_init(&o);
    o.publish_endpoint = h->publish;
    o.query_endpoint = h->query;
    o.live = false;
    o.timeout_ms = 30000;
    ps_subscriber_t *s = ps_subscriber_new(&o, &err);
    if (!s)
        return -1;
    for (;;) {
        err = ps_subscriber_next(s, &ev, 60000);
        if (err != PS_OK) {
            n = -1;
            break;
        }
        if (ev.kind == PS_EVENT_SNAPSHOT_END) {
            if (revision)
                *revision = ev.revision;
            break;
        }
        if (n++ == 0 && first_us)
            *first_us = now_us() - t0;
    }
    ps_subscriber_destroy(&s);
    return n;
}

typedef struct snapper {
    const harness_t *h;
    volatile int stop;
    int count;
    int64_t records;
    int failed;
} snapper_t;

static void *snapper_main(void *arg)
{
    snapper_t *s = arg;
    while (!s->stop) {
        int64_t n = take_snapshot(s->h, NULL, NULL);
        if (n < 0) {
            s->failed = 1;
            return NULL;
        }
        s->records += n;
        s->count++;
    }
    return NULL;
}

/* A live subscriber of residents, on a thread of its own: it takes the
 * snapshot first (not measured), then counts the records that follow
 * (live, or recovered after a loss) and the CPU time its thread spends on
 * them, until told to stop. */
typedef struct follower {
    const harness_t *h;
    volatile int ready; /* the snapshot is taken: live records follow */
    volatile int stop;
    volatile uint64_t records; /* after the snapshot */
    uint64_t live;             /* of them, from the publish socket */
    int64_t cpu_ns;            /* the thread's CPU time over them */
    int failed;
} follower_t;

static int64_t thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *follower_main(void *arg)
{
    follower_t *f = arg;
    ps_subscriber_options_t o;
    ps_event_t ev;
    ps_err_t err;
    ps_subscriber_options_init(&o);
    o.publish_endpoint = f->h->publish;
    o.query_endpoint = f->h->query;
    o.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    o.timeout_ms = 30000;
    ps_subscriber_t *s = ps_subscriber_new(&o, &err);
    if (!s) {
        f->failed = 1;
        f->ready = 1;
        return NULL;
    }
    while ((err = ps_subscriber_next(s, &ev, 60000)) == PS_OK && ev.kind != PS_EVENT_SNAPSHOT_END)
        ;
    f->failed = err != PS_OK;
    f->ready = 1;
    int64_t t0 = thread_cpu_ns();
    while (!f->stop && !f->failed) {
        err = ps_subscriber_next(s, &ev, 100);
        if (err == PS_OK && ev.kind == PS_EVENT_RECORD) {
            f->records++;
            f->live += ev.live;
        } else if (err != PS_OK && err != PS_ERR_TIMEOUT)
            f->failed = 1;
    }
    f->cpu_ns = thread_cpu_ns() - t0;
    ps_subscriber_destroy(&s);
    return NULL;
}

/* The daemon's resident rows waiting to be written (Status.deferred_rows),
 * or -1. */
static int64_t deferred_rows(const harness_t *h)
{
    Parksync__V1__ControlReply *rep = harness_status(h, 5000);
    int64_t n = -1;
    if (rep && rep->status)
        n = (int64_t)rep->status->deferred_rows;
    if (rep)
        parksync__v1__control_reply__free_unpacked(rep, NULL);
    return n;
}

/* ---------------------------------------------------------------- ingest */

static ps_producer_t *producer(const harness_t *h, const char *id)
{
    ps_producer_options_t o;
    ps_err_t err;
    ps_producer_options_init(&o);
    o.producer_id = id;
    o.ingest_endpoint = h->ingest;
    o.publish_endpoint = h->publish;
    o.query_endpoint = h->query;
    return ps_producer_new(&o, &err);
}

/* Sends `count` updates to existing records as fast as the window allows,
 * spread over them with a stride, or at random when rng is not NULL;
 * updates/s or -1. */
static double ingest(const harness_t *h, const char *id, uint64_t count, uint64_t offset,
                     uint64_t *rng)
{
    char rid[24];
    ps_producer_t *p = producer(h, id);
    if (!p)
        return -1;
    int64_t t0 = wire_monotonic_ms();
    for (uint64_t i = 0; i < count; i++) {
        Parksync__V1__Update u;
        Parksync__V1__Resident r;
        uint64_t key = rng ? rng_next(rng) % n_records : (i * 7919 + offset) % n_records;
        make_resident(&u, &r, rid, sizeof rid, key, (int64_t)(i + offset), now_us());
        if (ps_producer_send(p, &u, NULL, 60000) != PS_OK) {
            ps_producer_destroy(&p);
            return -1;
        }
    }
    if (ps_producer_flush(p, 120000) != PS_OK) {
        ps_producer_destroy(&p);
        return -1;
    }
    int64_t ms = wire_monotonic_ms() - t0;
    ps_producer_destroy(&p);
    return (double)count * 1000.0 / (double)(ms > 0 ? ms : 1);
}

/* ---------------------------------------------------------------- latency */

typedef struct listener {
    ps_subscriber_t *sub;
    volatile int stop;
    volatile int warm; /* records still to take before measuring */
    int64_t *lat;      /* microseconds */
    size_t n, cap;
} listener_t;

static void *listener_main(void *arg)
{
    listener_t *l = arg;
    ps_event_t ev;
    while (!l->stop) {
        ps_err_t e = ps_subscriber_next(l->sub, &ev, 100);
        if (e != PS_OK || ev.kind != PS_EVENT_RECORD || !ev.live ||
            ev.record->body_case != PARKSYNC__V1__RECORD__BODY_RESIDENT)
            continue;
        int64_t sent = ev.record->resident->investment_usd_cents;
        if (sent < BASE_TIME_US)
            continue; /* not a latency probe */
        if (l->warm > 0) {
            l->warm--;
            continue;
        }
        if (l->n < l->cap)
            l->lat[l->n++] = now_us() - sent;
    }
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Live latency at `rate` updates/s for lat_s seconds; prints it and
 * returns the p99 in ms, or -1. */
static double latency(const harness_t *h, int rate)
{
    ps_subscriber_options_t o;
    ps_err_t err;
    ps_event_t ev;
    listener_t l = {0};
    pthread_t t;
    char rid[24], id[32];

    ps_subscriber_options_init(&o);
    o.publish_endpoint = h->publish;
    o.query_endpoint = h->query;
    o.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    o.country = "AZ";
    o.timeout_ms = 60000;
    o.has_from_revision = true; /* no need for a million-record snapshot first */
    o.from_revision = 0;
    /* the head: a ping through a one-record-kind snapshot would do too */
    uint64_t head = 0;
    {
        ps_subscriber_options_t q = o;
        q.has_from_revision = false;
        q.live = false;
        q.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY;
        ps_subscriber_t *s = ps_subscriber_new(&q, &err);
        while (s && ps_subscriber_next(s, &ev, 30000) == PS_OK)
            if (ev.kind == PS_EVENT_SNAPSHOT_END) {
                head = ev.revision;
                break;
            }
        ps_subscriber_destroy(&s);
    }
    o.from_revision = head;
    l.sub = ps_subscriber_new(&o, &err);
    if (!l.sub) {
        fprintf(stderr, "bench: latency subscriber: %s\n", ps_strerror(err));
        return -1;
    }
    while (ps_subscriber_next(l.sub, &ev, 30000) == PS_OK && ev.kind != PS_EVENT_SNAPSHOT_END)
        ;
    l.cap = (size_t)rate * (size_t)lat_s + 1000;
    l.lat = calloc(l.cap, sizeof *l.lat);
    pthread_create(&t, NULL, listener_main, &l);
    snprintf(id, sizeof id, "lat-%d", rate);
    ps_producer_t *p = producer(h, id);
    /* Warm-up, not measured: the live topic's first record waits for a
     * heartbeat to prove nothing was lost before it (proto/README.md), and
     * the producer's first sends find cold caches. */
    l.warm = LAT_WARM;
    for (int i = 0; p && i < LAT_WARM; i++) {
        Parksync__V1__Update u;
        Parksync__V1__Resident r;
        make_resident(&u, &r, rid, sizeof rid, (uint64_t)i * 2, now_us(), now_us());
        ps_producer_send(p, &u, NULL, 60000);
    }
    for (int64_t end = wire_monotonic_ms() + 10000; l.warm > 0 && wire_monotonic_ms() < end;)
        usleep(1000); /* a poll of the listener's count, with a deadline */
    uint64_t total = (uint64_t)rate * (uint64_t)lat_s;
    int64_t period_ns = 1000000000LL / rate;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (uint64_t i = 0; p && i < total; i++) {
        Parksync__V1__Update u;
        Parksync__V1__Resident r;
        int64_t due = (int64_t)i * period_ns;
        struct timespec ts = start;
        ts.tv_sec += due / 1000000000LL;
        ts.tv_nsec += due % 1000000000LL;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        make_resident(&u, &r, rid, sizeof rid, (i * 2) % 20000, now_us(), now_us());
        ps_producer_send(p, &u, NULL, 60000);
    }
    if (p)
        ps_producer_flush(p, 60000);
    usleep(300000);
    l.stop = 1;
    pthread_join(t, NULL);
    ps_subscriber_stats_t st;
    ps_subscriber_stats(l.sub, &st);
    qsort(l.lat, l.n, sizeof *l.lat, cmp64);
    double p99 = l.n > 0 ? l.lat[l.n * 99 / 100] / 1000.0 : -1;
    if (l.n > 0)
        printf("latency at %5d updates/s: %zu of %" PRIu64 " received; p50 %.3f ms, p99 %.3f ms,"
               " p99.9 %.3f ms, max %.3f ms (gaps %" PRIu64 ", resyncs %" PRIu64 ")\n",
               rate, l.n, total, l.lat[l.n / 2] / 1000.0, l.lat[l.n * 99 / 100] / 1000.0,
               l.lat[l.n * 999 / 1000] / 1000.0, l.lat[l.n - 1] / 1000.0, st.gaps, st.resyncs);
    ps_producer_destroy(&p);
    ps_subscriber_destroy(&l.sub);
    free(l.lat);
    return p99;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Latency at 1,000 updates/s with the metrics endpoint on and off,
 * metrics_rounds rounds of each, interleaved; the daemon is restarted on
 * the same database for every round. Returns 0 or -1. */
static int metrics_latency(harness_t *h)
{
    double on[64], off[64];
    int n_on = 0, n_off = 0;

    for (int r = 0; r < 2 * metrics_rounds && r < 128; r++) {
        bool http = (r + r / 2) % 2 == 1; /* off, on, on, off, off, on, ... */
        if (harness_stop(h) < 0)
            return -1;
        snprintf(h->extra, sizeof h->extra,
                 "[store]\nsynchronous = normal\n\n[metrics]\nhttp = %s\n",
                 http ? "127.0.0.1:19464" : "off");
        if (harness_write_config(h) < 0 || harness_start(h) < 0)
            return -1;
        printf("round %d, metrics http %s: ", r + 1, http ? "on " : "off");
        fflush(stdout);
        double p99 = latency(h, 1000);
        if (p99 < 0)
            return -1;
        if (http)
            on[n_on++] = p99;
        else
            off[n_off++] = p99;
    }
    printf("metrics: p99 at 1,000 updates/s over %d rounds each: median %.3f ms with the "
           "endpoint off, %.3f ms with it on\n",
           metrics_rounds, median(off, n_off), median(on, n_on));
    return 0;
}

/* ---------------------------------------------------------------- growth */

/* The cost-growth curve (-G): see the top of the file. 0 or -1. */
static int growth(harness_t *h)
{
    uint64_t filled = 0, rng = 1;
    double rate0 = 0, cost0 = 0;
    const char *at = growth_sizes;
    char id[32];

    printf("cost growth: %" PRIu64 " updates to random records per size, synchronous %s\n",
           n_ingest, sync_full != 0 ? "full" : "normal");
    printf("%12s %12s %9s %14s %9s\n", "records", "updates/s", "ratio", "CPU us/update", "ratio");
    while (*at) {
        char *end;
        uint64_t size = strtoull(at, &end, 10);
        if (end == at || size <= filled || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "bench: -G wants ascending sizes separated by commas\n");
            return -1;
        }
        at = *end ? end + 1 : end;
        if (fill(h->db, filled, size) < 0 || harness_start(h) < 0)
            return -1;
        filled = n_records = size;
        snprintf(id, sizeof id, "growth-%" PRIu64, size);
        double warm = ingest(h, id, n_ingest / 10 + 1, 0, &rng);
        double cpu = harness_cpu_ms(h->pid);
        double rate = ingest(h, id, n_ingest, 0, &rng);
        double cost = (harness_cpu_ms(h->pid) - cpu) * 1000.0 / (double)n_ingest;
        if (harness_stop(h) != 0 || warm < 0 || rate < 0 || cpu < 0)
            return -1;
        if (rate0 == 0) {
            rate0 = rate;
            cost0 = cost;
        }
        printf("%12" PRIu64 " %12.0f %8.2fx %14.1f %8.2fx\n", size, rate, rate / rate0, cost,
               cost / cost0);
        fflush(stdout);
    }
    return 0;
}

/* ---------------------------------------------------------------- main */

/* Stops the daemon and removes its directory unless kept; the exit
 * status of a mode that returned rc. */
static int finish(harness_t *h, bool keep, int rc)
{
    harness_stop(h);
    if (keep)
        printf("kept %s\n", h->dir);
    else
        harness_cleanup(h);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    harness_t h;
    int c;
    bool keep = false;

    while ((c = getopt(argc, argv, "n:i:t:R:M:G:s:k")) != -1) {
        switch (c) {
        case 'n':
            n_records = strtoull(optarg, NULL, 10);
            break;
        case 'i':
            n_ingest = strtoull(optarg, NULL, 10);
            break;
        case 't':
            lat_s = (int)strtol(optarg, NULL, 10);
            break;
        case 'M':
            metrics_rounds = (int)strtol(optarg, NULL, 10);
            break;
        case 'R':
            lat_rates = optarg;
            break;
        case 'G':
            growth_sizes = optarg;
            break;
        case 's':
            sync_full = strcmp(optarg, "normal") != 0;
            break;
        case 'k':
            keep = true;
            break;
        default:
            fprintf(
                stderr,
                "usage: bench_snapshot [-n RECORDS] [-i INGEST] [-t LAT_S] [-R RATES] [-M ROUNDS] "
                "[-G SIZES] [-s full|normal] [-k]\n");
            return 2;
        }
    }
    if (n_records == 0 || lat_s <= 0 || metrics_rounds < 0 || metrics_rounds > 64)
        return 2;
    if (growth_sizes) {
        if (harness_init_at(&h,
                            sync_full != 0 ? "[store]\nsynchronous = full\n"
                                           : "[store]\nsynchronous = normal\n",
                            "info") < 0)
            return 1;
        int rc = growth(&h);
        if (rc < 0)
            fprintf(stderr, "bench: cost growth failed (see %s)\n", h.log);
        return finish(&h, keep, rc);
    }
    if (harness_init_at(&h,
                        sync_full == 1 ? "[store]\nsynchronous = full\n"
                                       : "[store]\nsynchronous = normal\n",
                        "info") < 0)
        return 1;
    printf("daemon: [store] synchronous = %s\n", sync_full == 1 ? "full" : "normal");
    if (fill(h.db, 0, n_records) < 0 || harness_start(&h) < 0) {
        fprintf(stderr, "bench: cannot start (see %s)\n", h.log);
        harness_cleanup(&h);
        return 1;
    }
    /* warm the page cache and the daemon once, as a real one would be */
    take_snapshot(&h, NULL, NULL);
    if (metrics_rounds > 0) {
        return finish(&h, keep, metrics_latency(&h));
    }

    sampler_t smp = {.a = h.pid, .b = getpid()};
    long d0 = harness_rss_kib(h.pid), c0 = harness_rss_kib(getpid());
    smp.peak_a = d0;
    smp.peak_b = c0;
    pthread_t st;
    pthread_create(&st, NULL, sampler_main, &smp);
    uint64_t rev = 0;
    int64_t t0 = wire_monotonic_ms();
    int64_t n = take_snapshot(&h, &rev, NULL);
    int64_t ms = wire_monotonic_ms() - t0;
    smp.stop = 1;
    pthread_join(st, NULL);
    printf("snapshot: %" PRId64 " records (expected %" PRIu64 ", complete: %s) in %.2f s: "
           "%.0f records/s, revision %" PRIu64 "\n",
           n, n_records, n >= (int64_t)n_records ? "yes" : "NO", (double)ms / 1000.0,
           (double)n * 1000.0 / (double)(ms > 0 ? ms : 1), rev);
    printf("rss: daemon %.1f MiB before, peak %.1f MiB during (+%.1f MiB); client %.1f MiB "
           "before, peak %.1f MiB (+%.1f MiB)\n",
           d0 / 1024.0, smp.peak_a / 1024.0, (smp.peak_a - d0) / 1024.0, c0 / 1024.0,
           smp.peak_b / 1024.0, (smp.peak_b - c0) / 1024.0);

    double alone = ingest(&h, "ingest-alone", n_ingest, 0, NULL);
    /* The ingest left resident rows waiting to be written (deferred
     * state): a snapshot that begins now must not wait for them. */
    int64_t first = -1, waiting = deferred_rows(&h);
    t0 = wire_monotonic_ms();
    n = take_snapshot(&h, NULL, &first);
    ms = wire_monotonic_ms() - t0;
    printf("snapshot after the ingest, %" PRId64 " rows waiting: first record in %.1f ms, "
           "%" PRId64 " records in %.2f s\n",
           waiting, (double)first / 1000.0, n, (double)ms / 1000.0);
    snapper_t sn = {.h = &h};
    pthread_t tt;
    pthread_create(&tt, NULL, snapper_main, &sn);
    usleep(200000); /* the first snapshot is streaming */
    double during = ingest(&h, "ingest-during", n_ingest, 1, NULL);
    sn.stop = 1;
    pthread_join(tt, NULL);
    printf("ingest: %.0f updates/s alone, %.0f updates/s while snapshots stream (%.0f %%; "
           "%d snapshots, %" PRId64 " records, failed: %s)\n",
           alone, during, alone > 0 ? 100.0 * during / alone : 0.0, sn.count, sn.records,
           sn.failed ? "yes" : "no");

    follower_t fl = {.h = &h};
    pthread_create(&tt, NULL, follower_main, &fl);
    while (!fl.ready)
        usleep(1000);
    double followed = fl.failed ? -1 : ingest(&h, "ingest-followed", n_ingest, 2, NULL);
    /* every change is published once its commit is durable: the last
     * ones reach the follower shortly after the last ack */
    for (int64_t until = wire_monotonic_ms() + 10000;
         !fl.failed && fl.records < n_ingest && wire_monotonic_ms() < until;)
        usleep(1000);
    fl.stop = 1;
    pthread_join(tt, NULL);
    printf("ingest: %.0f updates/s while a live subscriber follows; it received %" PRIu64
           " records (%" PRIu64 " live) of %" PRIu64 " updates, %.2f us of its CPU each "
           "(failed: %s)\n",
           followed, (uint64_t)fl.records, fl.live, n_ingest,
           fl.records ? (double)fl.cpu_ns / 1000.0 / (double)fl.records : 0.0,
           fl.failed ? "yes" : "no");

    for (const char *at = lat_rates; *at;) {
        char *end;
        long rate = strtol(at, &end, 10);
        if (end == at || rate <= 0 || rate > 1000000)
            break;
        latency(&h, (int)rate);
        at = *end == ',' ? end + 1 : end;
    }
    return finish(&h, keep, 0);
}
