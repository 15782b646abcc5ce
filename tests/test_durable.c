/*
 * test_durable.c - at synchronous = full (the default), nothing is
 * acknowledged or published before the WAL that holds it is on disk, and
 * a WAL that cannot be synced loses no acknowledged update.
 *
 * The real parksyncd runs under tests/sync_shim.c (LD_PRELOAD), which
 * makes the WAL's fsync wait, or fail, while a flag file exists: the disk
 * at its slowest, and a disk that lost the pages.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define DEADLINE_MS 10000 /* longest wait for anything a test expects */
#define QUIET_MS    500   /* how long nothing may come while the sync waits */

static harness_t h;
static char hold[HARNESS_PATH + 8], fail[HARNESS_PATH + 8];
static char env_preload[HARNESS_PATH + 32], env_hold[HARNESS_PATH + 32],
    env_fail[HARNESS_PATH + 32], env_asan[640];

static void teardown(void)
{
    if (hold[0])
        unlink(hold);
    if (fail[0])
        unlink(fail);
    harness_cleanup(&h);
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fclose(f);
}

/* Starts parksyncd (synchronous = full, the default) under the shim. */
static void start_shimmed(void)
{
    const char *env[] = {env_preload, env_hold, env_fail, env_asan, NULL};
    char asan[512];
    int64_t deadline;

    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(hold, sizeof hold, "%s/hold", h.dir);
    snprintf(fail, sizeof fail, "%s/fail", h.dir);
    snprintf(env_preload, sizeof env_preload, "LD_PRELOAD=%s", SYNC_SHIM);
    snprintf(env_hold, sizeof env_hold, "SYNC_SHIM_HOLD=%s", hold);
    snprintf(env_fail, sizeof env_fail, "SYNC_SHIM_FAIL=%s", fail);
    /* the shim comes before the sanitizers' runtime; the caller's options stay */
    snprintf(env_asan, sizeof env_asan, "ASAN_OPTIONS=%s",
             harness_asan_options(asan, sizeof asan, "verify_asan_link_order=0"));
    cr_assert_eq(harness_spawn(&h, env), 0);
    deadline = wire_monotonic_ms() + DEADLINE_MS;
    while (!harness_ping(&h, 200))
        cr_assert_lt(wire_monotonic_ms(), deadline, "parksyncd did not start; log:\n%s",
                     harness_slurp(h.log));
}

/* Waits until the shim leaves FLAG.WHAT.parksyncd: the loop's own sync
 * of the WAL (its commit's) waits, or failed. */
static void await_mark(const char *flag, const char *what)
{
    char path[HARNESS_PATH + 64];
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;

    snprintf(path, sizeof path, "%s.%s.parksyncd", flag, what);
    while (access(path, F_OK) != 0) {
        cr_assert_lt(wire_monotonic_ms(), deadline, "no commit's sync %s; log:\n%s", what,
                     harness_slurp(h.log));
        usleep(1000);
    }
}

static ps_producer_t *producer(const char *id)
{
    ps_err_t err = PS_OK;
    ps_producer_t *p = harness_producer(&h, id, &err);

    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    return p;
}

static void send_park(ps_producer_t *p, const char *park_id)
{
    harness_park_t pu;
    ps_err_t rc;

    harness_park(&pu, park_id, "AZ");
    rc = ps_producer_send(p, &pu.u, NULL, DEADLINE_MS);
    cr_assert_eq(rc, PS_OK, "send: %s", ps_strerror(rc));
    cr_assert_eq(ps_producer_flush(p, 0), PS_ERR_TIMEOUT, "acknowledged at once");
}

/* Change-log entries that hold park_id, read as another program would. */
static int64_t logged(const char *park_id)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;

    cr_assert_eq(sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM changelog WHERE instr(record, ?1) > 0", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, park_id, (int)strlen(park_id), SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A SUB on every record topic, connected before anything is sent. */
static void *records_sub(void *ctx)
{
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    cr_assert_not_null(sub);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, WIRE_TOPIC_RECORDS, strlen(WIRE_TOPIC_RECORDS)),
                 0);
    cr_assert_eq(zmq_connect(sub, h.publish), 0);
    return sub;
}

/* Whether a publication of the park park_id arrives within ms; others
 * (summaries) are read and passed over. */
static bool park_published_within(void *sub, const char *park_id, int ms)
{
    int64_t deadline = wire_monotonic_ms() + ms;
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};

    for (int64_t left = ms; left >= 0; left = deadline - wire_monotonic_ms()) {
        zmq_msg_t m;
        bool found;

        if (zmq_poll(&it, 1, (long)left) != 1)
            return false;
        zmq_msg_init(&m);
        cr_assert_geq(zmq_msg_recv(&m, sub, 0), 0);
        found = memmem(zmq_msg_data(&m), zmq_msg_size(&m), park_id, strlen(park_id)) != NULL;
        zmq_msg_close(&m);
        if (found)
            return true;
    }
    return false;
}

/* While the commit's WAL waits for the disk, its producer hears nothing
 * and no subscriber gets it; once the disk has it, both do. */
Test(durable, acks_and_publications_wait_for_the_wal_on_disk, .fini = teardown, .timeout = 60)
{
    void *ctx = zmq_ctx_new();

    start_shimmed();
    void *sub = records_sub(ctx);
    ps_producer_t *p = producer("az-ministry");
    /* the subscription reaches the daemon: a first park is published */
    send_park(p, "AZ-FIRST");
    cr_assert(park_published_within(sub, "AZ-FIRST", DEADLINE_MS),
              "the first park was never published");
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);

    touch(hold);
    send_park(p, "AZ-HELD");
    await_mark(hold, "waiting");
    cr_assert_not(park_published_within(sub, "AZ-HELD", QUIET_MS),
                  "published before its WAL was on disk");
    cr_assert_eq(ps_producer_wait(p, 0), PS_OK);
    cr_assert_eq(ps_producer_last_acked(p), 1, "acknowledged before its WAL was on disk");

    unlink(hold);
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK, "not acknowledged once on disk");
    cr_assert_eq(ps_producer_last_acked(p), 2);
    cr_assert(park_published_within(sub, "AZ-HELD", DEADLINE_MS), "not published once on disk");

    ps_producer_destroy(&p);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

/* A commit whose WAL cannot be synced is rolled back and not
 * acknowledged; once the disk works again the producer's resend is
 * applied, once. */
Test(durable, a_wal_that_cannot_be_synced_loses_no_acknowledged_update, .fini = teardown,
     .timeout = 60)
{
    int64_t deadline;
    char *log;

    start_shimmed();
    ps_producer_t *p = producer("az-ministry");
    send_park(p, "AZ-ONE");
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);

    touch(fail);
    send_park(p, "AZ-RESENT");
    await_mark(fail, "failed");
    deadline = wire_monotonic_ms() + QUIET_MS;
    while (wire_monotonic_ms() < deadline) {
        cr_assert_eq(ps_producer_wait(p, 10000), PS_OK);
        cr_assert_eq(ps_producer_last_acked(p), 1, "acknowledged although its sync failed");
    }
    log = harness_slurp(h.log);
    cr_assert(log && strstr(log, "nothing of it acknowledged"), "the log says nothing of it:\n%s",
              log);
    free(log);

    unlink(fail);
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK, "the resent update was not taken");
    cr_assert_eq(ps_producer_last_acked(p), 2);
    cr_assert_eq(logged("AZ-RESENT"), 1, "the update is not in the change log once");
    ps_producer_destroy(&p);
}
