/*
 * test_budget_streams.c - what one query client may take of the daemon's
 * snapshot and changes streams: its share of the stream slots
 * ([limits] max_streams_per_client, never all of max_streams), the bytes
 * queued for it when it grants credit and does not read ([limits]
 * query_hwm, 64 KiB chunks), and how long a stream may deliver nothing
 * ([limits] stream_idle_ms). Meanwhile a well-behaved subscriber's
 * snapshot completes and a producer's push is acknowledged within 1 s.
 *
 * The attackers are raw DEALERs that ask and grant and never read, with
 * a receive high-water mark of 1, as a client that never reads its
 * socket. Memory is the daemon's VmRSS from /proc.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "store.h"
#include "wire.h"

#define DEADLINE_MS     10000 /* longest wait for anything a test expects */
#define N_PARKS         50    /* parks in every database: the legitimate snapshot */
#define BIG_RESIDENTS   30000 /* residents for the memory test: ~14 MB of records */
#define SMALL_RESIDENTS 100   /* residents for the slot tests */
#define STALL_RESIDENTS 8000  /* residents for the stall test: ~3 MB, more than a full queue */
#define FILL_BATCH      5000  /* updates per fill transaction */
#define BASE_TIME_US    1600000000000000LL /* event time of the first fill update */
#define ATTACKERS       2                  /* clients that grant credit and never read */
#define ATTACK_MS       3000               /* how long the memory attack lasts */
#define ATTACK_PACE_MS  10                 /* the attackers ask and grant this often */
#define ATTACK_GRANTS   8                  /* recent requests each attacker grants credit to */
#define PUSH_ACK_MS     1000               /* a producer's push must be acknowledged within this */
#define RSS_GROWTH_KIB  (48 * 1024)        /* bound on the daemon's RSS growth under the attack */
#define IDLE_MS         500                /* stream_idle_ms of the stall tests */
#define MAX_SOCKETS     8                  /* DEALERs one test opens */

/* 200 bytes of company name: records of about 400 bytes */
#define PAD                                                                                        \
    "Sumgait Chemical Industrial Park resident, petrochemicals, polymers, "                        \
    "synthetic rubber, caustic soda and chlorine derivatives for the Caspian region, "             \
    "exporting to Central Asia and beyond......"

static harness_t h;
static void *ctx;
static void *sockets[MAX_SOCKETS]; /* closed by teardown, even after a failed assert */
static int n_sockets;
static ps_producer_t *producer; /* the well-behaved producer, destroyed by teardown */

static void teardown(void)
{
    for (int i = 0; i < n_sockets; i++)
        zmq_close(sockets[i]);
    n_sockets = 0;
    ps_producer_destroy(&producer);
    if (ctx)
        zmq_ctx_term(ctx); /* would wait forever for a socket left open */
    ctx = NULL;
    harness_cleanup(&h);
}

/* ---------------------------------------------------------------- the database */

static void fill_update(Parksync__V1__Update *u, uint64_t seq)
{
    u->has_version = u->has_sequence = u->has_event_time_us = 1;
    u->version = WIRE_VERSION;
    u->producer_id = "FILL";
    u->sequence = seq;
    u->event_time_us = BASE_TIME_US + (int64_t)seq;
}

/* N_PARKS parks and `residents` residents, written through the store
 * before the daemon starts: a real database without pushing it all. */
static void fill(const char *path, unsigned residents)
{
    store_config_t cfg;
    store_outcome_t out;
    char err[256], id[32];
    uint64_t seq = 0;

    store_config_init(&cfg);
    cfg.path = path;
    cfg.synchronous_full = false;
    store_t *s = store_open(&cfg, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < N_PARKS; i++) {
        Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
        Parksync__V1__Park p = PARKSYNC__V1__PARK__INIT;
        snprintf(id, sizeof id, "AZ-PARK-%u", i);
        p.park_id = id;
        p.country = "AZ";
        p.name = "Park " PAD;
        u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
        u.park = &p;
        fill_update(&u, ++seq);
        cr_assert_eq(store_apply(s, &u, &out), 0, "%s", store_errmsg(s));
    }
    for (unsigned i = 0; i < residents; i++) {
        Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
        Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
        snprintf(id, sizeof id, "R%07u", i);
        r.park_id = "AZ-PARK-0";
        r.country = "AZ";
        r.resident_id = id;
        r.company_name = "Company " PAD;
        r.has_investment_usd_cents = 1;
        r.investment_usd_cents = (int64_t)i * 100;
        u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
        u.resident = &r;
        fill_update(&u, ++seq);
        cr_assert_eq(store_apply(s, &u, &out), 0, "%s", store_errmsg(s));
        if (seq % FILL_BATCH == 0)
            cr_assert(store_commit(s) == 0 && store_begin(s) == 0, "%s", store_errmsg(s));
    }
    cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
    store_close(&s);
}

/* A daemon with `ini` on a database of `residents` residents. */
static void start(const char *ini, unsigned residents)
{
    cr_assert_eq(harness_init(&h, ini), 0);
    fill(h.db, residents);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    ctx = zmq_ctx_new();
}

/* ---------------------------------------------------------------- raw query clients */

/* A DEALER on the query socket, closed by teardown; rcvhwm 1 makes a
 * client that does not read. */
static void *dealer_new(int rcvhwm)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;

    cr_assert(d && n_sockets < MAX_SOCKETS);
    sockets[n_sockets++] = d;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    if (rcvhwm > 0)
        zmq_setsockopt(d, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
    cr_assert_eq(zmq_connect(d, h.query), 0);
    return d;
}

/* Sends without waiting: an attacker's request may be dropped at its own
 * high-water mark, which changes nothing for the daemon. */
static void send_request(void *d, uint64_t rid, Parksync__V1__QueryRequest *q)
{
    size_t len;
    uint8_t *buf;

    q->has_version = q->has_request_id = true;
    q->version = WIRE_VERSION;
    q->request_id = rid;
    buf = wire_pack(&q->base, &len);
    cr_assert_not_null(buf);
    zmq_send(d, buf, len, ZMQ_DONTWAIT);
    free(buf);
}

static void ask_snapshot(void *d, uint64_t rid, uint32_t credit, uint32_t chunk_records)
{
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__SnapshotRequest sr = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;

    sr.has_credit = sr.has_chunk_records = true;
    sr.credit = credit;
    sr.chunk_records = chunk_records;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
    q.snapshot = &sr;
    send_request(d, rid, &q);
}

static void grant(void *d, uint64_t rid, uint32_t chunks)
{
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__Credit c = PARKSYNC__V1__CREDIT__INIT;

    c.has_chunks = true;
    c.chunks = chunks;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT;
    q.credit = &c;
    send_request(d, rid, &q);
}

/* The next reply within timeout_ms, decoded; NULL when none came. */
static Parksync__V1__QueryReply *next_reply(void *d, int timeout_ms)
{
    Parksync__V1__QueryReply *r = NULL;
    zmq_pollitem_t item = {d, 0, ZMQ_POLLIN, 0};
    const char *why;
    zmq_msg_t m;

    if (zmq_poll(&item, 1, timeout_ms) != 1)
        return NULL;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, d, 0) >= 0)
        wire_query_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, &why);
    zmq_msg_close(&m);
    return r;
}

/* ---------------------------------------------------------------- well-behaved clients */

/* A whole snapshot through libparksync, of one kind (UNSPECIFIED: all);
 * the records, or -1 when it failed. */
static int64_t legit_snapshot(Parksync__V1__RecordKind kind)
{
    int records = 0;
    ps_err_t err = harness_snapshot(&h, kind, NULL, NULL, DEADLINE_MS, &records);

    if (err != PS_OK) {
        fprintf(stderr, "legitimate snapshot failed: %s\n", ps_strerror(err));
        return -1;
    }
    return records;
}

/* Pushes one park and waits for its ack; the milliseconds it took, or -1
 * when it was not acknowledged within PUSH_ACK_MS. */
static int64_t push_one(ps_producer_t *p, unsigned k)
{
    harness_park_t pu;
    char id[32];
    int64_t t0 = wire_monotonic_ms();

    snprintf(id, sizeof id, "AZ-PUSHED-%u", k);
    harness_park(&pu, id, "AZ");
    if (ps_producer_send(p, &pu.u, NULL, PUSH_ACK_MS) != PS_OK ||
        ps_producer_flush(p, PUSH_ACK_MS) != PS_OK)
        return -1;
    return wire_monotonic_ms() - t0;
}

/* The well-behaved producer (teardown destroys it). */
static ps_producer_t *producer_new(void)
{
    ps_producer_options_t o;
    ps_err_t err;

    harness_producer_options(&h, &o, "AZ-LEGIT");
    producer = ps_producer_new(&o, &err);
    cr_assert_not_null(producer, "producer: %s", ps_strerror(err));
    return producer;
}

/* ---------------------------------------------------------------- measures */

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- slots */

/* One DEALER asks 64 snapshots of one record per chunk and credit 1 (each
 * runs until cancelled): it gets `share` streams and BUSY for the rest,
 * the BUSY naming max_streams_per_client; the CLI's snapshot still runs
 * meanwhile, and the daemon opened nothing beyond that. */
static void one_connection_gets(int share)
{
    void *d = dealer_new(0);
    bool seen[65] = {false};
    int running = 0, busy = 0, named = 0;
    const char *argv[] = {"snapshot", NULL};
    char *out = NULL, *err = NULL;

    for (uint64_t rid = 1; rid <= 64; rid++)
        ask_snapshot(d, rid, 1, 1);
    while (running + busy < 64) {
        Parksync__V1__QueryReply *r = next_reply(d, DEADLINE_MS);
        cr_assert_not_null(r, "%d of 64 requests answered", running + busy);
        cr_assert(r->request_id >= 1 && r->request_id <= 64 && !seen[r->request_id],
                  "unexpected reply to %" PRIu64, r->request_id);
        seen[r->request_id] = true;
        if (r->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK) {
            running++;
        } else {
            cr_assert_eq(r->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_ERROR);
            cr_assert_eq(r->error->code, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY);
            busy++;
            named += strstr(r->error->message, "max_streams_per_client") != NULL;
        }
        parksync__v1__query_reply__free_unpacked(r, NULL);
    }
    cr_assert_eq(running, share, "one connection runs %d streams, its share is %d", running, share);
    cr_expect_eq(named, busy, "%d of %d BUSY replies name max_streams_per_client", named, busy);
    cr_assert_eq(harness_cli(&h, argv, NULL, &out, &err), 0, "parksync snapshot: %s", err);
    cr_expect_geq(strlen(out), (size_t)(N_PARKS + SMALL_RESIDENTS) * 100,
                  "the snapshot printed %zu bytes", strlen(out));
    cr_expect_eq(harness_counter(&h, "streams_opened", 2000), share + 1);
    cr_expect_eq(harness_counter(&h, "streams_refused", 2000), 64 - share);
    free(out);
    free(err);
}

Test(budget_streams, one_connection_runs_at_most_max_streams_per_client, .fini = teardown,
     .timeout = 60)
{
    start("[limits]\nmax_streams_per_client = 4\n", SMALL_RESIDENTS);
    one_connection_gets(4);
}

Test(budget_streams, one_connection_never_takes_every_slot, .fini = teardown, .timeout = 60)
{
    /* a budget above the total is capped at max_streams - 1 */
    start("[limits]\nmax_streams = 3\nmax_streams_per_client = 8\n", SMALL_RESIDENTS);
    one_connection_gets(2);
}

/* ---------------------------------------------------------------- memory */

typedef struct attack {
    atomic_bool stop;   /* set by the test when the attack is over */
    long peak_kib;      /* highest daemon VmRSS seen by the attack thread */
    void *d[ATTACKERS]; /* the attackers' DEALERs, made before the thread starts */
} attack_t;

/* ATTACKERS clients each ask a new snapshot of the whole database (credit
 * 64, the largest chunks) every ATTACK_PACE_MS and grant 64 more chunks
 * to their recent requests, and never read a reply. */
static void *attack_main(void *arg)
{
    attack_t *a = arg;
    void **d = a->d;
    struct timespec pace = {0, ATTACK_PACE_MS * 1000000L};

    for (uint64_t rid = 1; !atomic_load(&a->stop); rid++) {
        for (int i = 0; i < ATTACKERS; i++) {
            ask_snapshot(d[i], rid, WIRE_MAX_CREDIT, WIRE_MAX_CHUNK_RECORDS);
            for (uint64_t g = rid > ATTACK_GRANTS ? rid - ATTACK_GRANTS : 1; g < rid; g++)
                grant(d[i], g, WIRE_MAX_CREDIT);
        }
        long rss = harness_rss_kib(h.pid);
        if (rss > a->peak_kib)
            a->peak_kib = rss;
        nanosleep(&pace, NULL); /* pacing the attack, not waiting for anything */
    }
    return NULL;
}

Test(budget_streams, clients_that_do_not_read_cost_bounded_memory, .fini = teardown, .timeout = 120)
{
    /* ASan keeps freed memory in a quarantine (256 MiB): the churn of
     * the legitimate snapshots would show as growth. Keep it small in
     * the daemon so VmRSS follows what it holds. */
    char asan[512];
    char *was = getenv("ASAN_OPTIONS") ? strdup(getenv("ASAN_OPTIONS")) : NULL;
    setenv("ASAN_OPTIONS", harness_asan_options(asan, sizeof asan, "quarantine_size_mb=1"), 1);
    start(NULL, BIG_RESIDENTS);

    ps_producer_t *p = producer_new();
    attack_t a = {.peak_kib = 0};
    int64_t lat[2048], ack_max = 0;
    int n_lat = 0, failed = 0;
    unsigned pushes = 0;
    pthread_t t;

    /* warm: SQLite caches, the libraries' first allocations */
    cr_assert_geq(legit_snapshot(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED),
                  N_PARKS + BIG_RESIDENTS);
    cr_assert_geq(push_one(p, pushes++), 0);
    long base = harness_rss_kib(h.pid);
    cr_assert_gt(base, 0);

    atomic_init(&a.stop, false);
    for (int i = 0; i < ATTACKERS; i++)
        a.d[i] = dealer_new(1);
    cr_assert_eq(pthread_create(&t, NULL, attack_main, &a), 0);
    for (int64_t end = wire_monotonic_ms() + ATTACK_MS; wire_monotonic_ms() < end;) {
        int64_t t0 = wire_monotonic_ms(),
                n = legit_snapshot(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK), ack;
        if (n < N_PARKS)
            failed++;
        else if (n_lat < (int)(sizeof lat / sizeof lat[0]))
            lat[n_lat++] = wire_monotonic_ms() - t0;
        ack = push_one(p, pushes++);
        if (ack < 0 || ack > ack_max)
            ack_max = ack < 0 ? PUSH_ACK_MS + 1 : ack;
    }
    atomic_store(&a.stop, true);
    pthread_join(t, NULL);
    long now = harness_rss_kib(h.pid);
    long peak = a.peak_kib > now ? a.peak_kib : now;

    qsort(lat, (size_t)n_lat, sizeof lat[0], by_value);
    fprintf(stderr,
            "budget_streams: daemon VmRSS %ld KiB before the attack, peak %ld KiB (+%ld KiB); "
            "legitimate snapshots: %d done, %d failed, median %" PRId64 " ms, max %" PRId64
            " ms; %u pushes, slowest ack %" PRId64 " ms; streams refused %" PRId64 "\n",
            base, peak, peak - base, n_lat, failed, n_lat ? lat[n_lat / 2] : -1,
            n_lat ? lat[n_lat - 1] : -1, pushes, ack_max,
            harness_counter(&h, "streams_refused", 2000));
    cr_expect_lt(peak - base, RSS_GROWTH_KIB, "the daemon grew by %ld KiB (bound %d KiB)",
                 peak - base, RSS_GROWTH_KIB);
    cr_expect_eq(failed, 0, "%d legitimate snapshots failed", failed);
    cr_expect_geq(n_lat, 3, "only %d legitimate snapshots in %d ms", n_lat, ATTACK_MS);
    cr_expect_leq(ack_max, PUSH_ACK_MS, "a push waited %" PRId64 " ms for its ack", ack_max);
    unsetenv("ASAN_OPTIONS");
    if (was)
        setenv("ASAN_OPTIONS", was, 1);
    free(was);
}

/* ---------------------------------------------------------------- stalls */

/* A client reads its first chunk and grants no more credit: the stream
 * is dropped after stream_idle_ms, counted, and a credit afterwards
 * finds no stream. */
Test(budget_streams, a_stream_without_credit_is_dropped_after_stream_idle_ms, .fini = teardown,
     .timeout = 60)
{
    char ini[128];
    snprintf(ini, sizeof ini, "[limits]\nstream_idle_ms = %d\n", IDLE_MS);
    start(ini, SMALL_RESIDENTS);
    void *d = dealer_new(0);
    Parksync__V1__QueryReply *r;

    ask_snapshot(d, 7, 1, 1);
    r = next_reply(d, DEADLINE_MS);
    cr_assert(r && r->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK, "no first chunk");
    parksync__v1__query_reply__free_unpacked(r, NULL);
    int64_t t0 = wire_monotonic_ms();
    cr_assert_eq(harness_counter_reaches(&h, "streams_stalled", 1, DEADLINE_MS), 1,
                 "the stream was not dropped as stalled");
    cr_expect_geq(wire_monotonic_ms() - t0, IDLE_MS - 100, "dropped before stream_idle_ms");
    grant(d, 7, 1);
    r = next_reply(d, DEADLINE_MS);
    cr_assert_not_null(r, "no answer to the late credit");
    cr_expect_eq(r->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_ERROR);
    if (r->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR)
        cr_expect_eq(r->error->code, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_REQUEST);
    parksync__v1__query_reply__free_unpacked(r, NULL);
}

/* A TRUNCATE checkpoint from outside: true when no reader pins the WAL
 * (and no writer was busy at that instant). */
static bool wal_truncates(void)
{
    sqlite3 *db = NULL;
    int rc;

    if (sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return false;
    }
    /* a first read opens the WAL; a fresh connection's checkpoint is a no-op */
    rc = sqlite3_exec(db, "PRAGMA schema_version", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_close(db);
    return rc == SQLITE_OK;
}

/* A client keeps granting credit and never reads: the credit does not
 * keep the stream alive. It is dropped after stream_idle_ms, counted,
 * and the read transaction that held the WAL is gone. */
Test(budget_streams, a_stream_whose_client_does_not_read_is_dropped_whatever_the_credit,
     .fini = teardown, .timeout = 60)
{
    /* the smallest queue: 16 chunks of 32 KiB fill long before the end */
    char ini[128];
    snprintf(ini, sizeof ini, "[limits]\nstream_idle_ms = %d\nquery_hwm = 16\n", 2 * IDLE_MS);
    start(ini, STALL_RESIDENTS);
    void *d = dealer_new(1);
    ps_producer_t *p = producer_new();
    struct timespec pace = {0, 50 * 1000000L};
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS, stalled = 0;

    ask_snapshot(d, 9, WIRE_MAX_CREDIT, WIRE_MAX_CHUNK_RECORDS);
    cr_assert_geq(harness_counter_reaches(&h, "streams_opened", 1, DEADLINE_MS), 1);
    /* a commit after the stream's view began: its reader now pins the WAL */
    cr_assert_geq(push_one(p, 0), 0);
    bool pinned = !wal_truncates();
    if (harness_counter(&h, "streams_stalled", 1000) == 0)
        cr_expect(pinned, "the running stream did not hold the WAL");
    while (wire_monotonic_ms() < deadline &&
           (stalled = harness_counter(&h, "streams_stalled", 1000)) < 1) {
        grant(d, 9, WIRE_MAX_CREDIT);
        nanosleep(&pace, NULL); /* a client granting credit every 50 ms */
    }
    cr_assert_eq(stalled, 1, "the stream was not dropped as stalled");
    bool truncated = false;
    while (!truncated && wire_monotonic_ms() < deadline + DEADLINE_MS)
        truncated = wal_truncates();
    cr_expect(truncated, "the WAL is still pinned after the stream was dropped");
}

/* A client that asks and hangs up leaves no stream behind: the daemon
 * learns of the closed connection and frees its slots at once, not after
 * stream_idle_ms. Four clients in turn each get all of their share of a
 * daemon with room for one such client only. */
Test(budget_streams, a_client_that_hangs_up_frees_its_streams_at_once, .fini = teardown,
     .timeout = 60)
{
    start("[limits]\nmax_streams = 4\nmax_streams_per_client = 3\n", SMALL_RESIDENTS);
    for (int round = 1; round <= 4; round++) {
        void *d = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0, running = 0, answered = 0;

        cr_assert_not_null(d);
        zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
        cr_assert_eq(zmq_connect(d, h.query), 0);
        for (uint64_t rid = 1; rid <= 3; rid++)
            ask_snapshot(d, rid, 1, 1);
        while (answered < 3) {
            Parksync__V1__QueryReply *r = next_reply(d, DEADLINE_MS);
            if (!r)
                break;
            answered++;
            running += r->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK;
            parksync__v1__query_reply__free_unpacked(r, NULL);
        }
        zmq_close(d);
        cr_assert_eq(running, 3, "round %d: the client got %d of its 3 streams", round, running);
        cr_assert_geq(harness_counter_reaches(&h, "streams_dropped", 3 * round, DEADLINE_MS),
                      3 * round,
                      "round %d: the streams of a closed connection still hold their slots", round);
        cr_expect_geq(legit_snapshot(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK), N_PARKS);
    }
}
