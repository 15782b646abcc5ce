/*
 * test_subscribe.c - subscribers see every consolidated change once and in
 * order: joining in the middle of a stream, losing messages to a slow
 * link, resuming from a revision the change log no longer keeps, a
 * daemon restart, history (--at-revision) and periodic summaries.
 *
 * Each test runs the real parksyncd (tests/harness.h) and compares what a
 * subscriber holds, key by key, with a fresh snapshot taken at the end.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "store.h"
#include "wire.h"

#define DEADLINE_MS  20000              /* longest wait for anything a test expects */
#define MAP_CAP      (1u << 15)         /* slots of a record map: > 2 x the keys of any test */
#define BASE_TIME_US 1600000000000000LL /* event time of the first update */

static harness_t h;

static void teardown(void)
{
    harness_cleanup(&h);
}

static void start(const char *ini)
{
    cr_assert_eq(harness_init(&h, ini), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
}

/* ---------------------------------------------------------------- a record map
 *
 * What a subscriber holds: record key -> encoded record (with revision).
 * Open addressing; deletes leave a tombstone slot. */

typedef struct entry {
    char *key;      /* NULL: free */
    bool gone;      /* deleted */
    uint8_t *bytes; /* the encoded record */
    size_t len;
    uint64_t revision; /* of the last version applied, tombstones included */
} entry_t;

typedef struct map {
    entry_t *e;  /* MAP_CAP slots */
    size_t live; /* keys present and not deleted */
} map_t;

static void map_init(map_t *m)
{
    m->e = calloc(MAP_CAP, sizeof *m->e);
    m->live = 0;
    cr_assert_not_null(m->e);
}

static void map_free(map_t *m)
{
    for (size_t i = 0; i < MAP_CAP; i++) {
        free(m->e[i].key);
        free(m->e[i].bytes);
    }
    free(m->e);
    m->e = NULL;
}

static void map_clear(map_t *m)
{
    map_free(m);
    map_init(m);
}

static entry_t *map_slot(map_t *m, const char *key)
{
    uint64_t hsh = 1469598103934665603ULL;
    for (const char *p = key; *p; p++)
        hsh = (hsh ^ (uint8_t)*p) * 1099511628211ULL;
    for (size_t i = 0; i < MAP_CAP; i++) {
        entry_t *e = &m->e[(hsh + i) & (MAP_CAP - 1)];
        if (e->key == NULL || strcmp(e->key, key) == 0)
            return e;
    }
    cr_assert_fail("record map full");
    return NULL;
}

/* The record's key as text: kind and key fields. */
static void record_key(const Parksync__V1__Record *r, char *buf, size_t size)
{
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        snprintf(buf, size, "park/%s/%s", r->park->country, r->park->park_id);
        break;
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        snprintf(buf, size, "resident/%s/%s/%s", r->resident->country, r->resident->park_id,
                 r->resident->resident_id);
        break;
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        snprintf(buf, size, "trade/%s/%s/%u-%u-%u", r->trade->exporter, r->trade->importer,
                 r->trade->period->year, r->trade->period->first_month,
                 r->trade->period->last_month);
        break;
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        snprintf(buf, size, "country/%s/%u-%u-%u", r->country->country, r->country->period->year,
                 r->country->period->first_month, r->country->period->last_month);
        break;
    case PARKSYNC__V1__RECORD__BODY_SUMMARY:
        snprintf(buf, size, "summary/%s", r->summary->country);
        break;
    default:
        cr_assert_fail("record without a body");
    }
}

/* Applies a record: a tombstone removes the key, anything else replaces
 * it. Returns false when `fresh` and the key was already there, or when
 * the key holds this revision or a newer one (a record back in time). */
static bool map_apply(map_t *m, const Parksync__V1__Record *r, bool fresh)
{
    char key[200];
    record_key(r, key, sizeof key);
    entry_t *e = map_slot(m, key);
    bool newer = e->key == NULL || r->revision > e->revision;
    e->revision = r->revision;
    bool had = e->key != NULL && !e->gone;
    if (e->key == NULL)
        e->key = strdup(key);
    free(e->bytes);
    e->bytes = NULL;
    e->len = 0;
    if (had)
        m->live--;
    e->gone = r->deleted;
    if (!r->deleted) {
        e->bytes = wire_pack(&r->base, &e->len);
        cr_assert_not_null(e->bytes);
        m->live++;
    }
    return !(fresh && had) && newer;
}

/* Asserts both maps hold the same live keys with the same bytes. */
static void map_expect_equal(const map_t *a, map_t *b, const char *what)
{
    size_t diff = 0;
    cr_expect_eq(a->live, b->live, "%s: %zu records against %zu in the snapshot", what, a->live,
                 b->live);
    for (size_t i = 0; i < MAP_CAP; i++) {
        const entry_t *e = &a->e[i];
        if (e->key == NULL || e->gone)
            continue;
        entry_t *o = map_slot(b, e->key);
        if (o->key == NULL || o->gone || o->len != e->len || memcmp(o->bytes, e->bytes, e->len)) {
            if (diff++ < 5)
                cr_log_error("%s: %s differs from the snapshot", what, e->key);
        }
    }
    cr_expect_eq(diff, 0, "%s: %zu records differ from the snapshot", what, diff);
}

/* ---------------------------------------------------------------- clients */

static ps_producer_t *producer(const char *id)
{
    ps_producer_options_t o;
    ps_err_t err = PS_OK;
    harness_producer_options(&h, &o, id);
    ps_producer_t *p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    return p;
}

static void sub_options(ps_subscriber_options_t *o)
{
    harness_subscriber_options(&h, o);
    o->timeout_ms = DEADLINE_MS;
}

static ps_subscriber_t *subscriber(const ps_subscriber_options_t *o)
{
    ps_err_t err = PS_OK;
    ps_subscriber_t *s = ps_subscriber_new(o, &err);
    cr_assert_not_null(s, "subscriber: %s", ps_strerror(err));
    return s;
}

/* A subscriber's view: its map, and the last revision it delivered. */
typedef struct view {
    ps_subscriber_t *sub;
    map_t map;
    bool snapshot_done; /* SNAPSHOT_END seen */
    uint64_t last_live; /* revision of the last record delivered after the snapshot */
    uint64_t records;   /* records delivered */
    uint64_t resets;    /* PS_EVENT_RESET seen */
} view_t;

/* Takes one event, waiting up to timeout_ms. False on timeout. Asserts
 * that after the snapshot no revision comes twice and no record goes back
 * in time. Across records, revisions ascend too, except that a recovery
 * may deliver a record whose revision is below one delivered before it
 * on another topic (proto/README.md, Subscribers). */
static bool view_step(view_t *v, int timeout_ms)
{
    ps_event_t ev;
    ps_err_t rc = ps_subscriber_next(v->sub, &ev, timeout_ms);
    if (rc == PS_ERR_TIMEOUT)
        return false;
    cr_assert_eq(rc, PS_OK, "subscriber: %s (%s)", ps_strerror(rc),
                 ps_subscriber_last_error(v->sub));
    switch (ev.kind) {
    case PS_EVENT_RECORD:
        v->records++;
        if (v->snapshot_done) {
            cr_assert(map_apply(&v->map, ev.record, false),
                      "revision %" PRIu64 ": a record twice or back in time", ev.revision);
            if (ev.revision > v->last_live)
                v->last_live = ev.revision;
        } else {
            cr_assert(map_apply(&v->map, ev.record, true), "a snapshot holds a key twice");
        }
        break;
    case PS_EVENT_SNAPSHOT_END:
        v->snapshot_done = true;
        v->last_live = ev.revision;
        break;
    case PS_EVENT_RESET:
        v->resets++;
        v->snapshot_done = false;
        map_clear(&v->map);
        break;
    default:
        cr_assert_fail("unknown event %d", (int)ev.kind);
    }
    return true;
}

static void view_open(view_t *v, const ps_subscriber_options_t *o)
{
    memset(v, 0, sizeof *v);
    map_init(&v->map);
    v->sub = subscriber(o);
}

static void view_close(view_t *v)
{
    ps_subscriber_destroy(&v->sub);
    map_free(&v->map);
}

/* Reads events until the view has delivered everything up to revision. */
static void view_catch_up(view_t *v, uint64_t revision)
{
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;
    while (!v->snapshot_done || ps_subscriber_revision(v->sub) < revision) {
        cr_assert_lt(wire_monotonic_ms(), deadline,
                     "subscriber stuck at revision %" PRIu64 " of %" PRIu64,
                     ps_subscriber_revision(v->sub), revision);
        view_step(v, 200);
    }
}

/* A fresh snapshot through the API (the same records `parksync snapshot`
 * prints); returns its revision. */
static uint64_t snapshot_into(map_t *m, Parksync__V1__RecordKind kind, const char *country,
                              bool has_at, uint64_t at)
{
    ps_subscriber_options_t o;
    view_t v;
    sub_options(&o);
    o.live = false;
    o.kind = kind;
    o.country = country;
    o.has_at_revision = has_at;
    o.at_revision = at;
    view_open(&v, &o);
    while (!v.snapshot_done)
        cr_assert(view_step(&v, DEADLINE_MS), "snapshot timed out");
    uint64_t rev = ps_subscriber_revision(v.sub);
    map_free(m);
    *m = v.map;
    v.map.e = NULL;
    ps_subscriber_destroy(&v.sub);
    return rev;
}

/* ---------------------------------------------------------------- the workload */

/* Update n of the stream: residents of AZ over 2,000 keys, every 10th a
 * trade report (AZ's exports to TJ or TJ's imports from AZ, in 20
 * periods: flows on both countries' topics), every 50th a delete of a
 * resident. */
static void make_update(Parksync__V1__Update *u, uint64_t n, char *id, size_t idlen)
{
    static Parksync__V1__Resident r;
    static Parksync__V1__TradeReport t;
    static Parksync__V1__Period per;
    static Parksync__V1__Delete d;
    Parksync__V1__Update u0 = PARKSYNC__V1__UPDATE__INIT;

    *u = u0;
    u->has_event_time_us = 1;
    u->event_time_us = BASE_TIME_US + (int64_t)n;
    if (n % 10 == 3) {
        parksync__v1__trade_report__init(&t);
        parksync__v1__period__init(&per);
        per.has_year = per.has_first_month = per.has_last_month = 1;
        per.year = 2000 + (uint32_t)(n / 10 % 20);
        per.first_month = 1;
        per.last_month = 12;
        bool exporter = n % 20 == 3;
        t.reporter = exporter ? "AZ" : "TJ";
        t.partner = exporter ? "TJ" : "AZ";
        t.has_direction = 1;
        t.direction = exporter ? PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS
                               : PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS;
        t.period = &per;
        t.has_value_usd_cents = 1;
        t.value_usd_cents = (int64_t)(n * 100);
        u->body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
        u->trade = &t;
        return;
    }
    parksync__v1__resident__init(&r);
    snprintf(id, idlen, "R%04" PRIu64, n * 7919 % 2000);
    r.park_id = "AZ-SUMGAIT-CHEM";
    r.resident_id = id;
    r.country = "AZ";
    if (n % 50 == 7) {
        parksync__v1__delete__init(&d);
        d.target_case = PARKSYNC__V1__DELETE__TARGET_RESIDENT;
        d.resident = &r;
        u->body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
        u->delete_ = &d;
        return;
    }
    r.has_jobs = 1;
    r.jobs = (uint32_t)n;
    r.has_investment_usd_cents = 1;
    r.investment_usd_cents = (int64_t)n * 1000;
    u->body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    u->resident = &r;
}

static void push_range(ps_producer_t *p, uint64_t from, uint64_t to)
{
    char id[16];
    for (uint64_t n = from; n < to; n++) {
        Parksync__V1__Update u;
        make_update(&u, n, id, sizeof id);
        ps_err_t rc = ps_producer_send(p, &u, NULL, DEADLINE_MS);
        cr_assert_eq(rc, PS_OK, "send %" PRIu64 ": %s (%s)", n, ps_strerror(rc),
                     ps_producer_last_error(p));
    }
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);
}

/* One producer thread pushing the whole stream; `sent` tells the main
 * thread how far it is. */
typedef struct pusher {
    uint64_t total;
    volatile uint64_t sent;
    volatile int failed;
} pusher_t;

static void *pusher_main(void *arg)
{
    pusher_t *w = arg;
    ps_producer_options_t o;
    ps_err_t err;
    char id[16];

    harness_producer_options(&h, &o, "AZ-MOE");
    /* `sent` is the stream's position only while the window keeps the
     * producer near the daemon: with the default window a fast daemon
     * has half the stream in flight before it applied any, and the
     * stream is over before a subscriber joins "in the middle" */
    o.window = 8192;
    ps_producer_t *p = ps_producer_new(&o, &err);
    if (p == NULL) {
        w->failed = 1;
        return NULL;
    }
    for (uint64_t n = 0; n < w->total && !w->failed; n++) {
        Parksync__V1__Update u;
        make_update(&u, n, id, sizeof id);
        if (ps_producer_send(p, &u, NULL, DEADLINE_MS) != PS_OK)
            w->failed = 2;
        w->sent = n + 1;
    }
    if (!w->failed && ps_producer_flush(p, DEADLINE_MS) != PS_OK)
        w->failed = 3;
    ps_producer_destroy(&p);
    return NULL;
}

/* ---------------------------------------------------------------- tests */

TestSuite(subscribe, .fini = teardown, .timeout = 120);

/* Two subscribers (everything, and Tajikistan's records only: trade flows
 * it imports arrive on its own topic) join in the middle of a 50,000-update
 * stream; each ends with exactly the records of a fresh snapshot, and
 * every revision reached each once. */
Test(subscribe, late_joiner_in_a_50000_update_stream_ends_equal_to_a_snapshot)
{
    pusher_t w = {.total = 50000};
    pthread_t t;
    ps_subscriber_options_t o;
    view_t all, tj;
    map_t snap;

    start(NULL);
    cr_assert_eq(pthread_create(&t, NULL, pusher_main, &w), 0);
    while (w.sent < w.total / 2 && !w.failed)
        usleep(1000);
    sub_options(&o);
    view_open(&all, &o);
    o.country = "TJ";
    view_open(&tj, &o);
    while (w.sent < w.total && !w.failed) {
        view_step(&all, 5);
        view_step(&tj, 5);
    }
    pthread_join(t, NULL);
    cr_assert_eq(w.failed, 0, "the producer failed (%d)", w.failed);

    map_init(&snap);
    uint64_t head = snapshot_into(&snap, 0, NULL, false, 0);
    view_catch_up(&all, head);
    map_expect_equal(&all.map, &snap, "every record");
    cr_expect_gt(all.records, 1000);
    ps_subscriber_stats_t st;
    ps_subscriber_stats(all.sub, &st);
    cr_expect_gt(st.duplicates, 0, "the importer's copy of a trade flow should be dropped");
    cr_log_info("all: %" PRIu64 " records, gaps %" PRIu64 ", resyncs %" PRIu64
                ", duplicates %" PRIu64,
                all.records, st.gaps, st.resyncs, st.duplicates);

    snapshot_into(&snap, 0, "TJ", false, 0);
    view_catch_up(&tj, head);
    cr_expect_gt(tj.map.live, 0, "TJ has trade flows");
    map_expect_equal(&tj.map, &snap, "TJ's records");

    /* `parksync snapshot` prints the same number of records */
    const char *argv[] = {"snapshot", NULL};
    char *out = NULL;
    cr_assert_eq(harness_cli(&h, argv, NULL, &out, NULL), 0);
    size_t lines = 0;
    for (const char *p = out; p && *p; p++)
        lines += *p == '\n';
    cr_expect_eq(lines, all.map.live);
    free(out);
    map_free(&snap);
    view_close(&all);
    view_close(&tj);
}

/* A tiny receive high-water mark, a daemon that queues little per
 * subscriber and a consumer that pauses while 6,000 updates go by: the
 * subscriber sees a sequence jump, asks for the changes it missed and
 * ends exactly where a fresh snapshot is. */
/* A commit publishes its changes all at once, and a subscriber's queue
 * holds publish_hwm of them: the daemon ends a batch before its changes
 * could overfill the queue, however many updates wait (batch_max far
 * above). Every update here is a change of its own (a resident never
 * seen), so each commit may apply at most publish_hwm of them. */
Test(subscribe, a_commit_publishes_no_more_than_a_subscriber_queue_holds)
{
    enum { HWM = 3000, UPDATES = 30000 };
    ps_producer_options_t o;
    ps_err_t err;
    char ini[128], id[16];

    snprintf(ini, sizeof ini, "[limits]\npublish_hwm = %d\nbatch_max = 100000\n", HWM);
    start(ini);
    harness_producer_options(&h, &o, "AZ-MOE");
    o.window = UPDATES; /* all of them in flight: the daemon finds them waiting */
    ps_producer_t *p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    for (int n = 0; n < UPDATES; n++) {
        Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
        Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
        snprintf(id, sizeof id, "R%06d", n);
        r.park_id = "AZ-SUMGAIT-CHEM";
        r.resident_id = id;
        r.country = "AZ";
        u.has_event_time_us = 1;
        u.event_time_us = BASE_TIME_US + n;
        u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
        u.resident = &r;
        cr_assert_eq(ps_producer_send(p, &u, NULL, DEADLINE_MS), PS_OK, "send %d: %s", n,
                     ps_producer_last_error(p));
    }
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);
    ps_producer_destroy(&p);

    int64_t applied = harness_counter(&h, "applied", DEADLINE_MS);
    int64_t commits = harness_counter(&h, "commits", DEADLINE_MS);
    cr_log_info("%" PRId64 " updates in %" PRId64 " commits", applied, commits);
    cr_assert_eq(applied, UPDATES);
    cr_assert_geq(commits * HWM, applied,
                  "%" PRId64 " changes in %" PRId64 " commits: a commit published more than the "
                  "%d a subscriber's queue holds",
                  applied, commits, HWM);
}

Test(subscribe, lost_messages_are_detected_and_recovered)
{
    ps_subscriber_options_t o;
    view_t v;
    map_t snap;
    ps_subscriber_stats_t st;

    start("[limits]\npublish_hwm = 20\n");
    sub_options(&o);
    o.rcvhwm = 10;
    view_open(&v, &o);
    while (!v.snapshot_done)
        cr_assert(view_step(&v, DEADLINE_MS));
    ps_producer_t *p = producer("AZ-MOE");
    push_range(p, 0, 6000); /* the subscriber is not reading */
    ps_producer_destroy(&p);

    map_init(&snap);
    uint64_t head = snapshot_into(&snap, 0, NULL, false, 0);
    view_catch_up(&v, head);
    ps_subscriber_stats(v.sub, &st);
    cr_expect_geq(st.gaps, 1, "no loss detected");
    cr_expect_geq(st.resyncs, 1, "no recovery");
    cr_expect_eq(v.resets, 0);
    map_expect_equal(&v.map, &snap, "after recovery");
    map_free(&snap);
    view_close(&v);
}

/* Resuming from revision 1 after 1,000 changes with a change log of 100:
 * TOO_OLD, said explicitly, then a reset and a fresh snapshot. History
 * that far back is refused the same way. */
Test(subscribe, resume_older_than_the_change_log_gets_too_old_and_a_snapshot)
{
    ps_subscriber_options_t o;
    view_t v;
    map_t snap;
    ps_subscriber_stats_t st;

    start("[store]\nchangelog_keep = 100\n");
    ps_producer_t *p = producer("AZ-MOE");
    push_range(p, 0, 1000);
    ps_producer_destroy(&p);

    sub_options(&o);
    o.has_from_revision = true;
    o.from_revision = 1;
    view_open(&v, &o);
    cr_assert(view_step(&v, DEADLINE_MS));
    cr_expect_eq(v.resets, 1, "the first event is a reset");
    ps_subscriber_stats(v.sub, &st);
    cr_expect_eq(st.too_old, 1);
    cr_expect(strstr(ps_subscriber_last_error(v.sub), "older than the change log") != NULL,
              "daemon said: %s", ps_subscriber_last_error(v.sub));
    map_init(&snap);
    uint64_t head = snapshot_into(&snap, 0, NULL, false, 0);
    view_catch_up(&v, head);
    map_expect_equal(&v.map, &snap, "after the fresh snapshot");

    /* within the log, a resume needs no snapshot */
    o.from_revision = head - 50;
    ps_subscriber_t *r = subscriber(&o);
    ps_event_t ev;
    uint64_t last = head - 50, changes = 0;
    for (;;) {
        cr_assert_eq(ps_subscriber_next(r, &ev, DEADLINE_MS), PS_OK);
        cr_assert_neq(ev.kind, PS_EVENT_RESET);
        if (ev.kind == PS_EVENT_SNAPSHOT_END)
            break;
        cr_expect_gt(ev.revision, last);
        last = ev.revision;
        changes++;
    }
    cr_expect_gt(changes, 0);
    ps_subscriber_stats(r, &st);
    cr_expect_eq(st.snapshots, 0);
    cr_expect_geq(ps_subscriber_revision(r), head);
    ps_subscriber_destroy(&r);

    const char *argv[] = {"snapshot", "--at-revision", "1", NULL};
    char *err = NULL;
    cr_expect_eq(harness_cli(&h, argv, NULL, NULL, &err), 1);
    cr_expect(err && strstr(err, "older than the change log"), "stderr: %s", err);
    free(err);
    map_free(&snap);
    view_close(&v);
}

static void send_park(ps_producer_t *p, const char *id, const char *name, bool del)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
    Parksync__V1__Delete d = PARKSYNC__V1__DELETE__INIT;
    park.park_id = (char *)id;
    park.country = "AZ";
    u.has_event_time_us = 1;
    u.event_time_us = wire_now_us();
    if (del) {
        d.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
        d.park = &park;
        u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
        u.delete_ = &d;
    } else {
        park.name = (char *)name;
        u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
        u.park = &park;
    }
    cr_assert_eq(ps_producer_send(p, &u, NULL, DEADLINE_MS), PS_OK);
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);
}

static const char *park_name(map_t *m, const char *id)
{
    char key[64];
    snprintf(key, sizeof key, "park/AZ/%s", id);
    entry_t *e = map_slot(m, key);
    if (e->key == NULL || e->gone)
        return NULL;
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, e->len, e->bytes);
    cr_assert_not_null(r);
    static char name[64];
    snprintf(name, sizeof name, "%s", r->park->name);
    parksync__v1__record__free_unpacked(r, NULL);
    return name;
}

/* The picture at an earlier revision: what changed since is shown as it
 * was, what was created since is absent, what was deleted since is back. */
Test(subscribe, snapshot_at_revision_shows_the_past)
{
    map_t m;

    start(NULL);
    ps_producer_t *p = producer("AZ-MOE");
    send_park(p, "AZ-A", "A before", false);
    send_park(p, "AZ-C", "C before", false);
    send_park(p, "AZ-A", "A middle", false);
    map_init(&m);
    uint64_t r = snapshot_into(&m, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, NULL, false, 0);
    send_park(p, "AZ-A", "A after", false);
    send_park(p, "AZ-A", "A last", false);
    send_park(p, "AZ-B", "B after", false);
    send_park(p, "AZ-C", NULL, true);
    ps_producer_destroy(&p);

    uint64_t at = snapshot_into(&m, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, NULL, true, r);
    cr_expect_eq(at, r);
    cr_expect_eq(m.live, 2);
    cr_expect_str_eq(park_name(&m, "AZ-A"), "A middle");
    cr_expect_str_eq(park_name(&m, "AZ-C"), "C before");
    cr_expect_null(park_name(&m, "AZ-B"));

    snapshot_into(&m, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, NULL, false, 0);
    cr_expect_str_eq(park_name(&m, "AZ-A"), "A last");
    cr_expect_null(park_name(&m, "AZ-C"));

    char rev[24];
    snprintf(rev, sizeof rev, "%" PRIu64, r);
    const char *argv[] = {"snapshot", "--kind", "park", "--at-revision", rev, NULL};
    char *out = NULL;
    cr_assert_eq(harness_cli(&h, argv, NULL, &out, NULL), 0);
    cr_expect(strstr(out, "A middle") && strstr(out, "C before") && !strstr(out, "A last"), "%s",
              out);
    free(out);
    map_free(&m);
}

/* A daemon restart (new instance, stream sequences from 1 again) while a
 * subscriber follows: it resyncs from its revision and misses nothing. */
Test(subscribe, daemon_restart_is_recognised_and_resynced)
{
    ps_subscriber_options_t o;
    view_t v;
    map_t snap;
    ps_subscriber_stats_t st;

    start(NULL);
    ps_producer_t *p = producer("AZ-MOE");
    push_range(p, 0, 300);
    ps_producer_destroy(&p);
    sub_options(&o);
    view_open(&v, &o);
    while (!v.snapshot_done)
        cr_assert(view_step(&v, DEADLINE_MS));
    cr_assert_eq(harness_stop(&h), 0);
    cr_assert_eq(harness_start(&h), 0);
    p = producer("AZ-MOE");
    push_range(p, 300, 600);
    ps_producer_destroy(&p);

    map_init(&snap);
    uint64_t head = snapshot_into(&snap, 0, NULL, false, 0);
    view_catch_up(&v, head);
    /* let the next heartbeat show the new instance */
    while (view_step(&v, 1500))
        ;
    ps_subscriber_stats(v.sub, &st);
    cr_expect_geq(st.restarts + st.gaps, 1, "the restart went unnoticed");
    map_expect_equal(&v.map, &snap, "after the restart");
    map_free(&snap);
    view_close(&v);
}

/* Summaries go out again every summary_republish_s, marked repeat: a
 * plain SUB sees them, the library drops them. */
Test(subscribe, summaries_are_republished_as_repeats)
{
    ps_subscriber_options_t o;
    view_t v;
    ps_subscriber_stats_t st;

    start("[limits]\nsummary_republish_s = 1\n");
    ps_producer_t *p = producer("AZ-MOE");
    send_park(p, "AZ-A", "A", false);
    ps_producer_destroy(&p);

    void *ctx = zmq_ctx_new();
    void *raw = zmq_socket(ctx, ZMQ_SUB);
    cr_assert_eq(zmq_setsockopt(raw, ZMQ_SUBSCRIBE, "rec/summary/AZ/", 15), 0);
    cr_assert_eq(zmq_connect(raw, h.publish), 0);
    int timeout = 5000;
    zmq_setsockopt(raw, ZMQ_RCVTIMEO, &timeout, sizeof timeout);

    sub_options(&o);
    o.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY;
    view_open(&v, &o);
    while (!v.snapshot_done)
        cr_assert(view_step(&v, DEADLINE_MS));
    cr_expect_eq(v.map.live, 1, "AZ's summary");

    bool repeat = false;
    for (int i = 0; i < 4 && !repeat; i++) {
        char topic[WIRE_MAX_TOPIC];
        uint8_t buf[65536];
        int n = zmq_recv(raw, topic, sizeof topic, 0);
        if (n < 0)
            break;
        n = zmq_recv(raw, buf, sizeof buf, 0);
        cr_assert_gt(n, 0);
        Parksync__V1__Publication *pub = NULL;
        const char *why = NULL;
        cr_assert_eq(wire_publication_decode(buf, (size_t)n, &pub, &why), 0, "%s", why);
        repeat = pub->has_repeat && pub->repeat;
        parksync__v1__publication__free_unpacked(pub, NULL);
    }
    cr_expect(repeat, "no repeated summary within a few seconds");
    zmq_close(raw);
    zmq_ctx_term(ctx);

    while (view_step(&v, 1200))
        ;
    ps_subscriber_stats(v.sub, &st);
    cr_expect_geq(st.repeats, 1);
    cr_expect_eq(v.records, 1, "a repeat was delivered as a change");
    view_close(&v);
}

/* ---------------------------------------------------------------- restored backups */

/* The epoch `parksync status --json` reports, as hex text. */
static void status_epoch(char *buf, size_t size)
{
    char *out = NULL, *err = NULL;
    const char *argv[] = {"status", "--json", NULL};
    cr_assert_eq(harness_cli(&h, argv, NULL, &out, &err), 0, "status: %s", err);
    const char *at = strstr(out, "\"epoch\":\"");
    cr_assert_not_null(at, "%s", out);
    at += strlen("\"epoch\":\"");
    size_t n = strcspn(at, "\"");
    cr_assert(n > 0 && n < size, "%s", out);
    memcpy(buf, at, n);
    buf[n] = '\0';
    free(out);
    free(err);
}

/* What an operator does to restore a backup: stop the daemon, copy the
 * backup over the database (its WAL files go), start the daemon. */
static void restore(const char *backup)
{
    char cmd[6 * HARNESS_PATH];
    cr_assert_eq(harness_stop(&h), 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && rm -f '%s-wal' '%s-shm'", backup, h.db, h.db, h.db);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
}

/* Issue 11, defect 3: a restored backup is another history. It gets a
 * new epoch (each restore its own), and a subscriber resuming from a
 * revision of the old history beyond the new head is told so (TOO_OLD:
 * reset, fresh snapshot) instead of getting an empty stream. */
Test(subscribe, a_restored_backup_is_a_new_history)
{
    char copy[HARNESS_PATH + 16], name[16], e1[64], e2[64], e3[64];
    char *out = NULL, *err = NULL;
    ps_subscriber_options_t o;
    view_t v;
    map_t snap;

    start(NULL);
    ps_producer_t *p = producer("AZ-MOE");
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "OLD-%d", i);
        send_park(p, name, "before the backup", false);
    }
    snprintf(copy, sizeof copy, "%s/backup.db", h.dir);
    const char *backup[] = {"backup", copy, NULL};
    cr_assert_eq(harness_cli(&h, backup, NULL, &out, &err), 0, "backup: %s", err);
    free(out);
    free(err);
    for (int i = 4; i < 20; i++) {
        snprintf(name, sizeof name, "OLD-%d", i);
        send_park(p, name, "after the backup", false);
    }
    ps_producer_destroy(&p);
    map_init(&snap);
    uint64_t old_head = snapshot_into(&snap, 0, NULL, false, 0);
    status_epoch(e1, sizeof e1);

    restore(copy);
    status_epoch(e2, sizeof e2);
    cr_expect_str_neq(e1, e2, "the restored database kept the epoch %s", e1);
    p = producer("AZ-MOE");
    send_park(p, "NEW-1", "after the restore", false);
    ps_producer_destroy(&p);
    uint64_t new_head = snapshot_into(&snap, 0, NULL, false, 0);
    cr_assert_lt(new_head, old_head, "the test needs the old head beyond the new one");
    cr_expect_not_null(park_name(&snap, "NEW-1"));
    cr_expect_null(park_name(&snap, "OLD-10"), "a park of the lost history is back");

    /* a subscriber that followed the old history up to its head */
    sub_options(&o);
    o.has_from_revision = true;
    o.from_revision = old_head;
    view_open(&v, &o);
    cr_assert(view_step(&v, DEADLINE_MS));
    cr_expect_eq(v.resets, 1, "resuming beyond the head must start with a reset");
    cr_expect(strstr(ps_subscriber_last_error(v.sub), "beyond") != NULL, "daemon said: %s",
              ps_subscriber_last_error(v.sub));
    view_catch_up(&v, new_head);
    map_expect_equal(&v.map, &snap, "after the reset");
    view_close(&v);

    /* the same backup restored again is yet another history */
    restore(copy);
    status_epoch(e3, sizeof e3);
    cr_expect_str_neq(e3, e2, "two restores of one backup share the epoch %s", e3);
    cr_expect_str_neq(e3, e1, "the second restore has the original epoch %s", e3);
    map_free(&snap);
}

/* changes{since_revision} beyond the head: TOO_OLD (another history),
 * not an empty stream that looks like "caught up". */
Test(subscribe, resume_beyond_the_head_gets_too_old_and_a_snapshot)
{
    ps_subscriber_options_t o;
    ps_subscriber_stats_t st;
    view_t v;
    map_t snap;

    start(NULL);
    ps_producer_t *p = producer("AZ-MOE");
    push_range(p, 0, 50);
    ps_producer_destroy(&p);
    map_init(&snap);
    uint64_t head = snapshot_into(&snap, 0, NULL, false, 0);

    sub_options(&o);
    o.has_from_revision = true;
    o.from_revision = head + 5;
    view_open(&v, &o);
    cr_assert(view_step(&v, DEADLINE_MS));
    cr_expect_eq(v.resets, 1, "the first event is a reset");
    ps_subscriber_stats(v.sub, &st);
    cr_expect_eq(st.too_old, 1);
    cr_expect(strstr(ps_subscriber_last_error(v.sub), "beyond") != NULL, "daemon said: %s",
              ps_subscriber_last_error(v.sub));
    view_catch_up(&v, head);
    map_expect_equal(&v.map, &snap, "after the fresh snapshot");
    view_close(&v);
    map_free(&snap);
}

/* ---------------------------------------------------------------- history and ingest */

#define HISTORY_CHANGES 30000 /* versions of park AZ-P1 after the one looked at */

/* Writes park AZ-P0 and then HISTORY_CHANGES + 1 versions of park AZ-P1,
 * each with its own revision, straight into the database at path.
 * Returns the revision of AZ-P1's first version. */
static uint64_t fill_history(const char *path)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
    store_config_t cfg;
    store_outcome_t out;
    char err[256], name[32];
    uint8_t digest[32];
    uint64_t first = 0;

    store_config_init(&cfg);
    cfg.path = path;
    cfg.synchronous_full = false;
    store_t *s = store_open(&cfg, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    u.producer_id = "AZ-FILL";
    u.has_sequence = u.has_event_time_us = 1;
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &park;
    park.country = "AZ";
    park.name = name;
    cr_assert_eq(store_begin(s), 0);
    for (int i = -1; i <= HISTORY_CHANGES; i++) {
        u.sequence = (uint64_t)(i + 2);
        u.event_time_us = BASE_TIME_US + i + 1;
        park.park_id = i < 0 ? "AZ-P0" : "AZ-P1";
        snprintf(name, sizeof name, "v%d", i);
        cr_assert_eq(store_apply(s, &u, &out), 0, "%s", store_errmsg(s));
        cr_assert_eq(out, STORE_APPLIED);
        if (i == 0)
            first = store_head(s);
        cr_assert_eq(store_digest(s, digest), 0); /* a flush: a revision per change */
        if (i % 1000 == 999) {
            cr_assert_eq(store_commit(s), 0);
            cr_assert_eq(store_begin(s), 0);
        }
    }
    cr_assert_eq(store_commit(s), 0);
    store_close(&s);
    return first;
}

/* A snapshot at a revision far back follows AZ-P1's 30,000 changes through
 * the change log. The daemon does that work a share at a time between
 * turns of its loop, so an update sent while the snapshot streams is
 * acknowledged before the snapshot ends; done in one go, the loop would
 * hold the update until the whole history was read. */
Test(subscribe, history_snapshot_leaves_ingest_flowing)
{
    ps_subscriber_options_t o;
    view_t v;
    uint64_t seq = 0;

    cr_assert_eq(harness_init(&h, NULL), 0);
    uint64_t first = fill_history(h.db);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    ps_producer_t *p = producer("AZ-MOE");

    sub_options(&o);
    o.live = false;
    o.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
    o.has_at_revision = true;
    o.at_revision = first;
    view_open(&v, &o);
    /* AZ-P0, first in key order, comes before AZ-P1's history is read */
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;
    while (v.records == 0 && !v.snapshot_done) {
        cr_assert_lt(wire_monotonic_ms(), deadline, "no snapshot record");
        view_step(&v, 100);
    }

    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
    park.park_id = "AZ-LIVE";
    park.country = "AZ";
    park.name = "sent during the snapshot";
    u.has_event_time_us = 1;
    u.event_time_us = wire_now_us();
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &park;
    cr_assert_eq(ps_producer_send(p, &u, &seq, DEADLINE_MS), PS_OK);
    while (ps_producer_last_acked(p) < seq) {
        cr_assert_lt(wire_monotonic_ms(), deadline, "the update was never acknowledged");
        cr_assert_eq(ps_producer_poll(p), PS_OK);
        if (!v.snapshot_done)
            view_step(&v, 1);
    }
    while (!v.snapshot_done && view_step(&v, 0))
        ; /* whatever had arrived with the ack */
    cr_assert_not(v.snapshot_done,
                  "the snapshot of %d changes ended before an update sent during it was "
                  "acknowledged: reading the history held the loop",
                  HISTORY_CHANGES);

    while (!v.snapshot_done)
        cr_assert(view_step(&v, DEADLINE_MS), "snapshot timed out");
    cr_assert_eq(v.map.live, 2);
    cr_assert_str_eq(park_name(&v.map, "AZ-P1"), "v0");
    view_close(&v);
    ps_producer_destroy(&p);
}
