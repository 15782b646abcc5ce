/*
 * test_e2e.c - the whole path, with every real part: the real parksyncd on
 * ipc:// endpoints with a temporary SQLite file, updates pushed through
 * libparksync and the parksync CLI, records received through the
 * subscriber API, and the database checked with SQLite directly.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define DEADLINE_MS 10000 /* longest wait for anything a test expects */

static harness_t h;

static void setup(void)
{
    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
}

static void teardown(void)
{
    harness_cleanup(&h);
}

/* One SQLite integer from the daemon's database, read the way an operator
 * would: a separate connection on the same file. */
/* The first column of sql's first row (-1: none), ?1 bound to arg. */
static int64_t db_int_with(const char *sql, const char *arg)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    cr_assert_eq(sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    if (arg != NULL)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int64_t db_int(const char *sql)
{
    return db_int_with(sql, NULL);
}

static ps_producer_t *producer(const char *id)
{
    ps_err_t err = PS_OK;
    ps_producer_t *p = harness_producer(&h, id, &err);

    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    return p;
}

static ps_subscriber_t *subscriber(Parksync__V1__RecordKind kind, const char *country, bool live)
{
    ps_subscriber_options_t o;
    ps_subscriber_t *s;
    ps_err_t err = PS_OK;

    harness_subscriber_options(&h, &o);
    o.kind = kind;
    o.country = country;
    o.live = live;
    s = ps_subscriber_new(&o, &err);
    cr_assert_not_null(s, "subscriber: %s", ps_strerror(err));
    return s;
}

/* Sends a park update; fields beyond the key only when given. */
static void send_park(ps_producer_t *p, const char *park_id, const char *name,
                      uint32_t reported_residents)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
    uint64_t seq = 0;
    ps_err_t rc;

    park.park_id = (char *)park_id;
    park.country = "AZ";
    park.name = (char *)name;
    park.has_reported_residents = 1;
    park.reported_residents = reported_residents;
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &park;
    u.has_event_time_us = 1;
    u.event_time_us = wire_now_us();
    rc = ps_producer_send(p, &u, &seq, DEADLINE_MS);
    cr_assert_eq(rc, PS_OK, "send: %s (%s)", ps_strerror(rc), ps_producer_last_error(p));
}

/* Skips events until the snapshot ends; returns the records it held. */
static size_t drain_snapshot(ps_subscriber_t *s, uint64_t *revision)
{
    ps_event_t ev;
    size_t records = 0;

    for (;;) {
        ps_err_t rc = ps_subscriber_next(s, &ev, DEADLINE_MS);
        cr_assert_eq(rc, PS_OK, "snapshot: %s", ps_strerror(rc));
        if (ev.kind == PS_EVENT_SNAPSHOT_END) {
            *revision = ev.revision;
            return records;
        }
        records++;
    }
}

TestSuite(e2e, .init = setup, .fini = teardown, .timeout = 120);

Test(e2e, update_reaches_live_subscriber_and_sqlite)
{
    ps_subscriber_t *sub = subscriber(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, NULL, true);
    ps_producer_t *prod = producer("AZ-MOE");
    uint64_t snap_rev = 99;
    ps_event_t ev;

    cr_expect_eq(drain_snapshot(sub, &snap_rev), 0, "a new database has no parks");
    cr_expect_eq(snap_rev, 0);

    send_park(prod, "AZ-SUMGAIT-CHEM", "Sumgait Chemical Industrial Park", 21);
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);
    cr_expect_eq(ps_producer_last_acked(prod), 1);

    cr_assert_eq(ps_subscriber_next(sub, &ev, DEADLINE_MS), PS_OK, "no live record");
    cr_assert_eq(ev.kind, PS_EVENT_RECORD);
    cr_expect(ev.live);
    cr_assert_eq(ev.record->body_case, PARKSYNC__V1__RECORD__BODY_PARK);
    cr_expect_str_eq(ev.record->park->park_id, "AZ-SUMGAIT-CHEM");
    cr_expect_str_eq(ev.record->park->name, "Sumgait Chemical Industrial Park");
    cr_expect_eq(ev.record->park->reported_residents, 21);
    cr_expect_gt(ev.revision, 0);

    /* What SQLite holds, read independently of the daemon. */
    cr_expect_eq(db_int("SELECT count(*) FROM park WHERE deleted = 0"), 1);
    cr_expect_eq(db_int_with(HARNESS_POSITION_SQL, "AZ-MOE"), 1);
    cr_expect_eq(db_int("SELECT revision FROM park WHERE park_id = 'AZ-SUMGAIT-CHEM'"),
                 (int64_t)ev.revision);
    cr_expect_eq(db_int("SELECT count(*) FROM changelog WHERE kind = 1"), 1);

    ps_producer_destroy(&prod);
    ps_subscriber_destroy(&sub);
    cr_expect_eq(harness_stop(&h), 0, "parksyncd did not exit 0 on SIGTERM");
}

Test(e2e, late_joiner_gets_snapshot_then_only_newer_live_records)
{
    ps_producer_t *prod = producer("AZ-MOE");
    ps_subscriber_t *sub;
    uint64_t snap_rev = 0;
    ps_event_t ev;
    char id[32];

    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "AZ-P%02d", i);
        send_park(prod, id, "park", (uint32_t)i);
    }
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);

    sub = subscriber(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, "AZ", true);
    cr_expect_eq(drain_snapshot(sub, &snap_rev), 20);
    cr_expect_geq(snap_rev, 20);

    send_park(prod, "AZ-P05", "renamed", 5);
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);
    cr_assert_eq(ps_subscriber_next(sub, &ev, DEADLINE_MS), PS_OK);
    cr_assert_eq(ev.kind, PS_EVENT_RECORD);
    cr_expect_gt(ev.revision, snap_rev, "live record at or below the snapshot revision");
    cr_expect_str_eq(ev.record->park->name, "renamed");

    ps_producer_destroy(&prod);
    ps_subscriber_destroy(&sub);
}

Test(e2e, producer_resumes_its_sequence_after_restart)
{
    ps_producer_t *prod = producer("TJ-MINT");

    send_park(prod, "AZ-A", "a", 1);
    send_park(prod, "AZ-B", "b", 2);
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);
    ps_producer_destroy(&prod);

    /* A new producer with the same id learns sequence 2 from the daemon. */
    prod = producer("TJ-MINT");
    send_park(prod, "AZ-C", "c", 3);
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);
    cr_expect_eq(ps_producer_last_acked(prod), 3);
    cr_expect_eq(db_int_with(HARNESS_POSITION_SQL, "TJ-MINT"), 3);
    cr_expect_eq(db_int("SELECT count(*) FROM park WHERE deleted = 0"), 3);
    ps_producer_destroy(&prod);
}

/* The demo's data through the CLI: the summary a subscriber sees carries
 * the seed story's figures. */
static int64_t mono_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* ps_producer_wait sleeps until something arrives, then returns at once:
 * each ack is seen within a few waits of being sent, far sooner than the
 * wait's timeout, and a wait with nothing coming lasts its timeout (a
 * heartbeat may cut one or two short). */
Test(e2e, producer_wait_returns_when_the_ack_lands)
{
    ps_producer_t *prod = producer("AZ-WAIT");

    cr_assert_eq(ps_producer_wait(prod, -1), PS_ERR_INVALID);
    cr_assert_eq(ps_producer_wait(NULL, 0), PS_ERR_INVALID);
    send_park(prod, "AZ-W0", "warm", 1);
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);
    for (uint32_t i = 1; i <= 20; i++) {
        char id[16];
        int waits = 0;
        snprintf(id, sizeof id, "AZ-W%u", i);
        send_park(prod, id, "waited", i);
        int64_t t0 = mono_us();
        while (ps_producer_last_acked(prod) < ps_producer_last_sent(prod)) {
            cr_assert_eq(ps_producer_wait(prod, 2000000), PS_OK);
            cr_assert_lt(++waits, 20, "ps_producer_wait returns without waiting");
        }
        cr_assert_lt(mono_us() - t0, 1500000, "update %u: its ack waited out the timeout", i);
    }
    /* the longest timeout there is, with nothing in flight (no resend
     * to cap it): the next heartbeat, once a second, ends it */
    int64_t t0 = mono_us();
    cr_assert_eq(ps_producer_wait(prod, INT64_MAX), PS_OK);
    cr_assert_lt(mono_us() - t0, 5000000, "no heartbeat ended the wait");
    t0 = mono_us();
    for (int i = 0; i < 10; i++)
        cr_assert_eq(ps_producer_wait(prod, 20000), PS_OK);
    cr_assert_geq(mono_us() - t0, 150000,
                  "10 waits of 20 ms with nothing to come took %" PRId64 " us", mono_us() - t0);
    ps_producer_destroy(&prod);
}

Test(e2e, demo_files_give_the_consolidated_summary)
{
    const char *az[] = {"push", "--producer", "AZ-MOE", EXAMPLES_DIR "/az-moe.jsonl", NULL};
    const char *tj[] = {"push", "--producer", "TJ-MINT", EXAMPLES_DIR "/tj-mint.jsonl", NULL};
    const char *summary[] = {"summary", NULL};
    ps_subscriber_t *sub;
    char *out = NULL, *err = NULL;
    bool seen_az = false;
    int rc;

    rc = harness_cli(&h, az, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "push az-moe.jsonl: %s", err);
    free(err);
    rc = harness_cli(&h, tj, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "push tj-mint.jsonl: %s", err);
    free(err);

    sub = subscriber(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY, "AZ", false);
    for (;;) {
        ps_event_t ev;
        cr_assert_eq(ps_subscriber_next(sub, &ev, DEADLINE_MS), PS_OK);
        if (ev.kind == PS_EVENT_SNAPSHOT_END)
            break;
        cr_assert_eq(ev.record->body_case, PARKSYNC__V1__RECORD__BODY_SUMMARY);
        Parksync__V1__CountrySummary *s = ev.record->summary;
        cr_assert_str_eq(s->country, "AZ");
        seen_az = true;
        cr_expect_eq(s->parks, 5);
        cr_expect_eq(s->reported_residents, 50);
        cr_expect_eq(s->reported_investment_usd_cents, 380000000000LL);
        int64_t turnover = 0;
        for (size_t i = 0; i < s->n_turnover; i++)
            if (strcmp(s->turnover[i]->partner, "TJ") == 0 &&
                s->turnover[i]->period->year == 2020 && s->turnover[i]->period->first_month == 1 &&
                s->turnover[i]->period->last_month == 10)
                turnover = s->turnover[i]->turnover_usd_cents;
        cr_expect_eq(turnover, 290000000LL, "AZ-TJ turnover Jan-Oct 2020");
    }
    cr_expect(seen_az, "no AZ summary in the snapshot");
    ps_subscriber_destroy(&sub);

    rc = harness_cli(&h, summary, NULL, &out, &err);
    cr_assert_eq(rc, 0, "summary: %s", err);
    cr_expect_not_null(strstr(out, "3.8 billion"), "summary output:\n%s", out);
    cr_expect_not_null(strstr(out, "2.9 million"), "summary output:\n%s", out);
    free(out);
    free(err);
}

/* A malformed line: the CLI names the line and the reason, sends nothing,
 * exits non-zero, and the daemon keeps running. */
Test(e2e, malformed_push_line_is_reported_and_nothing_is_sent)
{
    char path[HARNESS_PATH + 16];
    const char *argv[] = {"push", "--producer", "AZ-MOE", path, NULL};
    char *err = NULL;
    FILE *f;
    int rc;

    snprintf(path, sizeof(path), "%s/bad.jsonl", h.dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("# one good line, then a bad one\n"
          "{\"park\": {\"park_id\": \"AZ-OK\", \"country\": \"AZ\", \"name\": \"ok\"}}\n"
          "{\"park\": {\"park_id\": \"AZ-BAD\", \"country\": \"AZ\", \"colour\": \"red\"}}\n",
          f);
    fclose(f);

    rc = harness_cli(&h, argv, NULL, NULL, &err);
    cr_expect_neq(rc, 0);
    cr_expect_not_null(strstr(err, "bad.jsonl:3"), "stderr does not name the line:\n%s", err);
    cr_expect_not_null(strstr(err, "colour"), "stderr does not name the field:\n%s", err);
    free(err);

    cr_expect(harness_ping(&h, 2000), "daemon stopped answering");
    cr_expect_eq(db_int("SELECT count(*) FROM park"), 0, "a line was sent from a bad file");
}

/* Garbage on the ingest socket changes nothing and stops nothing. */
Test(e2e, garbage_on_ingest_is_dropped_and_valid_updates_still_apply)
{
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    ps_producer_t *prod;
    unsigned seed = 7;
    int linger = 0;

    zmq_setsockopt(pub, ZMQ_LINGER, &linger, sizeof(linger));
    cr_assert_eq(zmq_connect(pub, h.ingest), 0);
    /* The producer below waits for acks, so the garbage sent before it has
     * reached the daemon by the time the good update is acknowledged. */
    prod = producer("AZ-MOE");
    for (int i = 0; i < 2000; i++) {
        uint8_t junk[128];
        size_t n = (size_t)(rand_r(&seed) % sizeof(junk));
        for (size_t j = 0; j < n; j++)
            junk[j] = (uint8_t)rand_r(&seed);
        switch (i % 4) {
        case 0: /* one frame only */
            zmq_send(pub, junk, n, 0);
            break;
        case 1: /* right topic, random payload */
            zmq_send(pub, "park", 4, ZMQ_SNDMORE);
            zmq_send(pub, junk, n, 0);
            break;
        case 2: /* three frames */
            zmq_send(pub, "park", 4, ZMQ_SNDMORE);
            zmq_send(pub, junk, n, ZMQ_SNDMORE);
            zmq_send(pub, junk, n, 0);
            break;
        default: /* random topic */
            zmq_send(pub, junk, n, ZMQ_SNDMORE);
            zmq_send(pub, junk, n, 0);
        }
    }
    send_park(prod, "AZ-GOOD", "good", 1);
    cr_assert_eq(ps_producer_flush(prod, DEADLINE_MS), PS_OK);
    cr_expect(harness_ping(&h, 2000));
    cr_expect_eq(db_int("SELECT count(*) FROM park"), 1);
    ps_producer_destroy(&prod);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_expect_eq(harness_stop(&h), 0);
}

/* ---------------------------------------------------------------- money at the bounds */

/* A country's summary as a snapshot has it; false when it has none. */
static bool summary_of(const char *country, uint32_t *parks, int64_t *reported, bool *saturated)
{
    ps_subscriber_t *sub =
        subscriber(PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY, country, false);
    bool found = false;
    for (;;) {
        ps_event_t ev;
        cr_assert_eq(ps_subscriber_next(sub, &ev, DEADLINE_MS), PS_OK);
        if (ev.kind == PS_EVENT_SNAPSHOT_END)
            break;
        const Parksync__V1__CountrySummary *s = ev.record->summary;
        found = true;
        *parks = s->parks;
        *reported = s->reported_investment_usd_cents;
        *saturated = s->has_saturated && s->saturated;
    }
    ps_subscriber_destroy(&sub);
    return found;
}

/* The daemon's last sequence of a producer, once it reaches `want` (or
 * the deadline passes). */
static uint64_t last_sequence_at_least(const char *producer_id, uint64_t want)
{
    ps_producer_options_t o;
    ps_producer_stats_t st = {0};
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;

    ps_producer_options_init(&o);
    o.producer_id = producer_id;
    o.query_endpoint = h.query;
    for (;;) {
        cr_assert_eq(ps_producer_query(&o, DEADLINE_MS, &st), PS_OK);
        if (st.last_sequence >= want || wire_monotonic_ms() >= deadline)
            break;
        usleep(20 * 1000);
    }
    return st.last_sequence;
}

/* Issue 11, defect 4: one UpdateBatch of 100 parks of 10^17 cents each
 * (10^19 together, beyond int64) and a park of another country. It is
 * acknowledged (committed), AZ's summary shows the bound and `saturated`,
 * and the other country's summary follows its updates, then and later.
 * (Summing with SQLite's sum() failed here: the batch rolled back, was
 * never acknowledged, and a producer would have resent it for ever.) */
Test(e2e, update_batch_of_money_beyond_int64_is_acked_and_summaries_follow)
{
    enum { PARKS = 100 };
    static Parksync__V1__Update u[PARKS + 2];
    static Parksync__V1__Park p[PARKS + 2];
    static Parksync__V1__Update *ups[PARKS + 1];
    static char ids[PARKS + 2][16];
    static uint8_t buf[WIRE_MAX_BATCH_BYTES];
    Parksync__V1__UpdateBatch b = PARKSYNC__V1__UPDATE_BATCH__INIT;
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_XPUB);
    int zero = 0, rcvtimeo = DEADLINE_MS;
    uint8_t sub[64];
    uint32_t parks = 0;
    int64_t reported = 0;
    bool saturated = false;
    size_t len;

    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    cr_assert_eq(zmq_connect(pub, h.ingest), 0);
    cr_assert(zmq_recv(pub, sub, sizeof sub, 0) >= 1, "the daemon never subscribed");
    for (int i = 0; i < PARKS + 2; i++) {
        bool tj = i >= PARKS;
        parksync__v1__update__init(&u[i]);
        parksync__v1__park__init(&p[i]);
        snprintf(ids[i], sizeof ids[i], tj ? "TJ-P%d" : "AZ-P%03d", tj ? i - PARKS + 1 : i);
        p[i].park_id = ids[i];
        p[i].country = tj ? "TJ" : "AZ";
        p[i].has_reported_investment_usd_cents = 1;
        p[i].reported_investment_usd_cents = tj ? 500 : WIRE_MAX_CENTS;
        u[i].has_version = u[i].has_sequence = u[i].has_event_time_us = 1;
        u[i].version = WIRE_VERSION;
        u[i].producer_id = tj ? "TJ-MINT" : "AZ-MOE";
        u[i].sequence = tj ? (uint64_t)(i - PARKS + 1) : (uint64_t)i + 1;
        u[i].event_time_us = wire_now_us();
        u[i].body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
        u[i].park = &p[i];
        if (i <= PARKS)
            ups[i] = &u[i];
    }
    b.n_updates = PARKS + 1;
    b.updates = ups;
    len = parksync__v1__update_batch__pack(&b, buf);
    cr_assert_leq(len, sizeof buf);
    cr_assert_eq(zmq_send(pub, WIRE_TOPIC_BATCH, strlen(WIRE_TOPIC_BATCH), ZMQ_SNDMORE),
                 (int)strlen(WIRE_TOPIC_BATCH));
    cr_assert_eq(zmq_send(pub, buf, len, 0), (int)len);

    cr_assert_eq(last_sequence_at_least("AZ-MOE", PARKS), PARKS,
                 "the batch was never acknowledged; log:\n%s", harness_slurp(h.log));
    cr_assert_eq(last_sequence_at_least("TJ-MINT", 1), 1);
    cr_assert(summary_of("AZ", &parks, &reported, &saturated), "no AZ summary");
    cr_expect_eq(parks, PARKS);
    cr_expect_eq(reported, INT64_MAX, "10^19 shows the bound");
    cr_expect(saturated);
    cr_assert(summary_of("TJ", &parks, &reported, &saturated), "no TJ summary");
    cr_expect_eq(parks, 1);
    cr_expect_eq(reported, 500);
    cr_expect_not(saturated);

    /* later: another TJ update, alone; TJ's summary follows it */
    size_t n = parksync__v1__update__pack(&u[PARKS + 1], buf);
    cr_assert_eq(zmq_send(pub, "park", 4, ZMQ_SNDMORE), 4);
    cr_assert_eq(zmq_send(pub, buf, n, 0), (int)n);
    cr_assert_eq(last_sequence_at_least("TJ-MINT", 2), 2);
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;
    for (;;) {
        cr_assert(summary_of("TJ", &parks, &reported, &saturated));
        if (parks == 2 || wire_monotonic_ms() >= deadline)
            break;
        usleep(50 * 1000);
    }
    cr_expect_eq(parks, 2, "TJ's summary did not follow its update");
    cr_expect_eq(reported, 1000);
    cr_expect_eq(harness_counter(&h, "store_errors", 2000), 0);
    cr_expect_eq(harness_counter(&h, "summary_failures", 2000), 0);
    cr_expect(harness_ping(&h, 2000), "the daemon stopped answering");

    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_expect_eq(harness_stop(&h), 0);
}

/* Whether pid has ended: gone, or a zombie nobody has reaped yet. */
static bool process_ended(pid_t pid)
{
    char path[64], state = '?';
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if ((f = fopen(path, "r")) == NULL)
        return true;
    if (fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
        state = '?';
    fclose(f);
    return state == 'Z' || state == 'X';
}

/* A test that crashes cannot run its teardown; the daemon it started must
 * not run on after it (and hold its sockets and files). */
Test(e2e, a_daemon_ends_with_the_test_process_that_started_it)
{
    static harness_t crashed; /* as the crashed test left it */
    int fds[2];
    pid_t daemon, test;
    int64_t deadline;

    cr_assert_eq(pipe(fds), 0);
    if ((test = fork()) == 0) { /* the crashing test */
        close(fds[0]);
        if (harness_init(&crashed, NULL) != 0 || harness_start(&crashed) != 0)
            _exit(1);
        if (write(fds[1], &crashed, sizeof crashed) != (ssize_t)sizeof crashed)
            _exit(1);
        _exit(0); /* no harness_stop, no cleanup */
    }
    cr_assert_gt(test, 0);
    close(fds[1]);
    cr_assert_eq(read(fds[0], &crashed, sizeof crashed), (ssize_t)sizeof crashed,
                 "the child did not start a daemon");
    close(fds[0]);
    daemon = crashed.pid;
    waitpid(test, NULL, 0);
    deadline = wire_monotonic_ms() + DEADLINE_MS;
    while (!process_ended(daemon) && wire_monotonic_ms() < deadline)
        usleep(10000);
    bool ended = process_ended(daemon);
    if (!ended)
        kill(daemon, SIGKILL); /* the test's own leftover */
    crashed.pid = 0;
    harness_cleanup(&crashed); /* its directory */
    cr_assert(ended, "parksyncd %d still runs after the test that started it ended", (int)daemon);
}
