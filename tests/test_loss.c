/*
 * test_loss.c - a live subscriber under loss never misses a revision.
 *
 * Each run starts a daemon with tiny publish high-water marks, pushes a
 * bursty stream over 40 record topics (parks, residents, trade flows and
 * summaries of 10 countries), and follows it with two subscribers whose
 * receive queues are tiny and whose readers pause at random: one takes
 * everything, one Azerbaijan's records only. Records are dropped on the
 * way; at the end of a burst, losses on one topic show only at the next
 * heartbeat, after records of other topics with higher revisions were
 * delivered. The check is revision by revision against the daemon's own
 * change log in SQLite: every matching revision after the last snapshot
 * (or reset) up to the head is delivered exactly once, no revision
 * outside the filter is, and no record goes back in time (a record's
 * revisions ascend; a recovery may deliver a record whose revision is
 * below one of another record delivered before it).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define RUNS         20                 /* daemons started, each with its own seed */
#define UPDATES      2500               /* updates pushed per run */
#define COUNTRIES    10                 /* countries of the workload: 4 topics each */
#define DEADLINE_MS  60000              /* longest wait for anything a run expects */
#define BASE_TIME_US 1600000000000000LL /* event time of the first update */
#define KEYS_CAP     (1u << 16)         /* slots of a reader's key table: > 4 x the keys */

static const char *const cc[COUNTRIES] = {"AZ", "TJ", "KZ", "UZ", "KG",
                                          "TM", "GE", "AM", "TR", "MN"};

static harness_t h;

static void teardown(void)
{
    harness_cleanup(&h);
}

static uint32_t rnd(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*state >> 33);
}

static void pause_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- the producer */

typedef struct pusher {
    uint64_t seed;
    volatile int failed; /* 0, or the step that failed */
    volatile int done;
} pusher_t;

static void *pusher_main(void *arg)
{
    pusher_t *w = arg;
    ps_producer_options_t o;
    ps_err_t err;
    uint64_t st = w->seed;

    harness_producer_options(&h, &o, "LOSS-PRODUCER");
    ps_producer_t *p = ps_producer_new(&o, &err);
    if (p == NULL) {
        w->failed = 1;
        w->done = 1;
        return NULL;
    }
    for (int n = 0; n < UPDATES && !w->failed;) {
        int burst = 50 + (int)(rnd(&st) % 400);
        for (int b = 0; b < burst && n < UPDATES; b++, n++) {
            Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
            Parksync__V1__Park pk = PARKSYNC__V1__PARK__INIT;
            Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
            Parksync__V1__TradeReport t = PARKSYNC__V1__TRADE_REPORT__INIT;
            Parksync__V1__Period per = PARKSYNC__V1__PERIOD__INIT;
            char park[16], res[16], name[32];
            int c = (int)(rnd(&st) % COUNTRIES), what = (int)(rnd(&st) % 10);

            u.has_event_time_us = true;
            u.event_time_us = BASE_TIME_US + n;
            snprintf(park, sizeof park, "%s-P%u", cc[c], rnd(&st) % 20);
            snprintf(name, sizeof name, "Name %d", n);
            if (what < 4) {
                pk.park_id = park;
                pk.country = (char *)cc[c];
                pk.name = name;
                u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
                u.park = &pk;
            } else if (what < 8) {
                snprintf(res, sizeof res, "R%u", rnd(&st) % 50);
                r.park_id = park;
                r.resident_id = res;
                r.country = (char *)cc[c];
                r.has_jobs = true;
                r.jobs = (uint32_t)n;
                u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
                u.resident = &r;
            } else {
                per.has_year = per.has_first_month = per.has_last_month = true;
                per.year = 2015 + rnd(&st) % 6;
                per.first_month = 1;
                per.last_month = 12;
                t.reporter = (char *)cc[c];
                t.partner = (char *)cc[(c + 1 + (int)(rnd(&st) % (COUNTRIES - 1))) % COUNTRIES];
                t.has_direction = true;
                t.direction = what == 8 ? PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS
                                        : PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS;
                t.period = &per;
                t.has_value_usd_cents = true;
                t.value_usd_cents = 100 * (int64_t)n;
                u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
                u.trade = &t;
            }
            if (ps_producer_send(p, &u, NULL, DEADLINE_MS) != PS_OK)
                w->failed = 2;
        }
        if (!w->failed && ps_producer_flush(p, DEADLINE_MS) != PS_OK)
            w->failed = 3;
        pause_us((long)(rnd(&st) % 30000)); /* the workload's shape: bursts */
    }
    ps_producer_destroy(&p);
    w->done = 1;
    return NULL;
}

/* ---------------------------------------------------------------- a reader */

/* What one subscriber delivered after its last snapshot, by revision. */
typedef struct reader {
    const char *country; /* NULL: everything */
    uint64_t seed;
    ps_subscriber_t *sub;
    uint8_t *count;           /* deliveries per revision since the last snapshot */
    size_t cap;               /* revisions count can hold */
    uint64_t snapshot;        /* revision of the last snapshot */
    uint64_t resets;          /* PS_EVENT_RESET seen */
    uint64_t *key_hash;       /* KEYS_CAP slots: FNV-1a of a record key, 0 = free */
    uint64_t *key_rev;        /* the revision last delivered for that key */
    uint64_t out_of_order;    /* records delivered at or below their previous revision */
    bool streaming;           /* between SNAPSHOT_END and the next RESET */
    volatile uint64_t target; /* stop once the watermark reaches it (0: not yet known) */
    volatile int failed;      /* 0, or a ps_err_t */
    ps_subscriber_stats_t stats;
} reader_t;

/* The record's key as a 64-bit hash: kind and key fields. */
static uint64_t key_hash(const Parksync__V1__Record *r)
{
    char k[256];
    uint64_t hv = UINT64_C(14695981039346656037);

    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        snprintf(k, sizeof k, "park/%s/%s", r->park->country, r->park->park_id);
        break;
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        snprintf(k, sizeof k, "resident/%s/%s/%s", r->resident->country, r->resident->park_id,
                 r->resident->resident_id);
        break;
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        snprintf(k, sizeof k, "trade/%s/%s/%u", r->trade->exporter, r->trade->importer,
                 r->trade->period ? r->trade->period->year : 0);
        break;
    case PARKSYNC__V1__RECORD__BODY_SUMMARY:
        snprintf(k, sizeof k, "summary/%s", r->summary->country);
        break;
    default:
        snprintf(k, sizeof k, "other/%d", (int)r->body_case);
    }
    for (const char *p = k; *p; p++)
        hv = (hv ^ (unsigned char)*p) * UINT64_C(1099511628211);
    return hv ? hv : 1;
}

/* Notes a delivery of r; false when r's key had this revision or a newer
 * one delivered before. */
static bool key_advance(reader_t *rd, const Parksync__V1__Record *r, uint64_t revision)
{
    uint64_t kh = key_hash(r);
    size_t i = (size_t)kh & (KEYS_CAP - 1);

    while (rd->key_hash[i] != 0 && rd->key_hash[i] != kh)
        i = (i + 1) & (KEYS_CAP - 1);
    rd->key_hash[i] = kh;
    bool ok = revision > rd->key_rev[i];
    rd->key_rev[i] = revision;
    return ok;
}

static void *reader_main(void *arg)
{
    reader_t *r = arg;
    int64_t deadline = 0;
    uint64_t st = r->seed;

    for (;;) {
        ps_event_t ev;
        if (r->target > 0) {
            if (deadline == 0)
                deadline = wire_monotonic_ms() + DEADLINE_MS;
            if (ps_subscriber_revision(r->sub) >= r->target)
                break;
            if (wire_monotonic_ms() > deadline) {
                r->failed = PS_ERR_TIMEOUT;
                break;
            }
        }
        ps_err_t rc = ps_subscriber_next(r->sub, &ev, 100);
        if (rc == PS_ERR_TIMEOUT)
            continue;
        if (rc != PS_OK) {
            r->failed = rc;
            break;
        }
        if (ev.kind == PS_EVENT_SNAPSHOT_END) {
            memset(r->count, 0, r->cap);
            memset(r->key_hash, 0, KEYS_CAP * sizeof *r->key_hash);
            r->snapshot = ev.revision;
            r->streaming = true;
        } else if (ev.kind == PS_EVENT_RESET) {
            r->resets++;
            r->streaming = false;
        } else if (ev.kind == PS_EVENT_RECORD && r->streaming) {
            /* live, or from a recovery's changes stream */
            if (!key_advance(r, ev.record, ev.revision))
                r->out_of_order++;
            if (ev.revision < r->cap && r->count[ev.revision] < 255)
                r->count[ev.revision]++;
        }
        if (rnd(&st) % 40 == 0) /* a slow consumer, at random moments */
            pause_us(1000 + (long)(rnd(&st) % 20000));
    }
    ps_subscriber_stats(r->sub, &r->stats);
    return NULL;
}

static void reader_open(reader_t *r, const char *country, uint64_t seed)
{
    ps_subscriber_options_t o;
    ps_err_t err = PS_OK;

    memset(r, 0, sizeof *r);
    r->country = country;
    r->seed = seed;
    r->cap = 4 * UPDATES + 100000;
    r->count = calloc(r->cap, 1);
    r->key_hash = calloc(KEYS_CAP, sizeof *r->key_hash);
    r->key_rev = calloc(KEYS_CAP, sizeof *r->key_rev);
    cr_assert(r->count && r->key_hash && r->key_rev);
    harness_subscriber_options(&h, &o);
    o.country = country;
    o.rcvhwm = 5;
    o.timeout_ms = 10000;
    r->sub = ps_subscriber_new(&o, &err);
    cr_assert_not_null(r->sub, "subscriber: %s", ps_strerror(err));
}

/* ---------------------------------------------------------------- the change log */

static uint64_t head_of(sqlite3 *db)
{
    sqlite3_stmt *st;
    uint64_t head = 0;

    cr_assert_eq(
        sqlite3_prepare_v2(db, "SELECT coalesce(max(revision), 0) FROM changelog", -1, &st, NULL),
        SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        head = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return head;
}

/* The head once the daemon has gone quiet (summaries follow the last
 * update by up to summary_interval_ms): unchanged for 500 ms. */
static uint64_t settled_head(sqlite3 *db)
{
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;
    uint64_t head = head_of(db);
    int64_t since = wire_monotonic_ms();

    while (wire_monotonic_ms() - since < 500) {
        cr_assert_lt(wire_monotonic_ms(), deadline, "the daemon never went quiet");
        pause_us(50000);
        uint64_t now = head_of(db);
        if (now != head) {
            head = now;
            since = wire_monotonic_ms();
        }
    }
    return head;
}

/* Checks r against the change log: each revision in (snapshot, head]
 * that matches r's filter delivered exactly once; none other. Returns
 * the number of revisions checked. */
static uint64_t check_reader(sqlite3 *db, const reader_t *r, uint64_t head, int run)
{
    sqlite3_stmt *st;
    uint64_t checked = 0;

    cr_assert_eq(r->failed, 0, "run %d, reader %s: %s (%s)", run, r->country ? r->country : "all",
                 ps_strerror((ps_err_t)r->failed), ps_subscriber_last_error(r->sub));
    cr_assert_eq(r->out_of_order, 0, "run %d, reader %s: %" PRIu64 " records back in time", run,
                 r->country ? r->country : "all", r->out_of_order);
    cr_assert_lt(head, r->cap);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT revision, ?3 IS NULL OR country = ?3 OR country2 = ?3"
                                    " FROM changelog WHERE revision > ?1 AND revision <= ?2"
                                    " ORDER BY revision",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->snapshot);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)head);
    if (r->country)
        sqlite3_bind_text(st, 3, r->country, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    while (sqlite3_step(st) == SQLITE_ROW) {
        uint64_t rev = (uint64_t)sqlite3_column_int64(st, 0);
        int want = sqlite3_column_int(st, 1);
        cr_assert_eq(r->count[rev], want,
                     "run %d, reader %s: revision %" PRIu64 " delivered %d times, expected %d "
                     "(snapshot %" PRIu64 ", head %" PRIu64 ", gaps %" PRIu64 ", resyncs %" PRIu64
                     ")",
                     run, r->country ? r->country : "all", rev, r->count[rev], want, r->snapshot,
                     head, r->stats.gaps, r->stats.resyncs);
        checked += (uint64_t)want;
    }
    sqlite3_finalize(st);
    return checked;
}

TestSuite(loss, .fini = teardown, .timeout = 900);

Test(loss, every_revision_is_delivered_once_across_20_lossy_runs)
{
    uint64_t gaps = 0, resyncs = 0, checked = 0;

    for (int run = 0; run < RUNS; run++) {
        char ini[256];
        pusher_t w = {.seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(run + 1)};
        reader_t all, az;
        pthread_t tp, ta, tz;
        sqlite3 *db;

        /* tiny queues; heartbeats now frequent, now rare */
        snprintf(ini, sizeof ini,
                 "[limits]\npublish_hwm = %d\nheartbeat_ms = %d\nsummary_interval_ms = 50\n",
                 run % 2 ? 5 : 20, run % 3 ? 1000 : 150);
        cr_assert_eq(harness_init(&h, ini), 0);
        cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s",
                     harness_slurp(h.log));
        reader_open(&all, NULL, w.seed + 1);
        reader_open(&az, "AZ", w.seed + 2);
        cr_assert_eq(pthread_create(&ta, NULL, reader_main, &all), 0);
        cr_assert_eq(pthread_create(&tz, NULL, reader_main, &az), 0);
        cr_assert_eq(pthread_create(&tp, NULL, pusher_main, &w), 0);
        pthread_join(tp, NULL);
        cr_assert_eq(w.failed, 0, "run %d: the producer failed at step %d", run, w.failed);

        cr_assert_eq(sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        sqlite3_busy_timeout(db, 5000);
        uint64_t head = settled_head(db);
        all.target = az.target = head;
        pthread_join(ta, NULL);
        pthread_join(tz, NULL);
        checked += check_reader(db, &all, head, run);
        checked += check_reader(db, &az, head, run);
        sqlite3_close(db);
        gaps += all.stats.gaps + az.stats.gaps;
        resyncs += all.stats.resyncs + az.stats.resyncs;
        ps_subscriber_destroy(&all.sub);
        ps_subscriber_destroy(&az.sub);
        for (reader_t *r = &all; r; r = r == &all ? &az : NULL) {
            free(r->count);
            free(r->key_hash);
            free(r->key_rev);
        }
        cr_assert_eq(harness_stop(&h), 0);
        harness_cleanup(&h);
        cr_log_info("run %d: head %" PRIu64 ", gaps %" PRIu64 "/%" PRIu64 ", resyncs %" PRIu64
                    "/%" PRIu64 ", resets %" PRIu64 "/%" PRIu64,
                    run, head, all.stats.gaps, az.stats.gaps, all.stats.resyncs, az.stats.resyncs,
                    all.resets, az.resets);
    }
    cr_log_info("%d runs: %" PRIu64 " revisions checked, %" PRIu64 " losses detected, %" PRIu64
                " recoveries",
                RUNS, checked, gaps, resyncs);
    /* the test means something only if the stream really lost messages */
    cr_assert_gt(gaps, RUNS, "too few losses (%" PRIu64 ") to test recovery", gaps);
}
