/*
 * test_durable.c - at synchronous = full (the default), nothing is
 * acknowledged or published before the WAL that holds it is on disk, the
 * loop commits the next batches while the sync thread waits for the disk
 * (daemon/syncer.h), and a WAL that cannot be synced loses no
 * acknowledged update: the daemon stops, and its next start takes the
 * producer's resend once.
 *
 * The real parksyncd runs under tests/sync_shim.c (LD_PRELOAD), which
 * makes the WAL's fsync wait, or fail, while a flag file exists: the disk
 * at its slowest, and a disk that lost the pages.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
    env_fail[HARNESS_PATH + 32], env_thread[64], env_asan[640];

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

/* Starts parksyncd (synchronous = full, the default) under the shim,
 * again on the same database when h is set up already (else with
 * extra_ini in its config). thread: the only thread whose syncs the shim
 * holds or fails (NULL: any). */
static void start_shimmed(const char *thread, const char *extra_ini)
{
    const char *env[] = {env_preload, env_hold, env_fail, env_thread, env_asan, NULL};
    char asan[512];
    int64_t deadline;

    if (!h.dir[0])
        cr_assert_eq(harness_init(&h, extra_ini), 0);
    snprintf(env_thread, sizeof env_thread, "SYNC_SHIM_THREAD=%s", thread ? thread : "");
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

/* Waits until the shim leaves FLAG.WHAT.THREAD: a sync of the WAL by
 * that thread ("parksyncd", the loop; "ps-sync") waits, or failed. */
static void await_mark(const char *flag, const char *what, const char *thread)
{
    char path[HARNESS_PATH + 64];
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;

    snprintf(path, sizeof path, "%s.%s.%s", flag, what, thread);
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

/* The highest revision in the change log, read as another program would. */
static int64_t logged_head(void)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t head = -1;

    cr_assert_eq(sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT max(revision) FROM changelog", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        head = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return head;
}

/* A metric (a line "NAME VALUE") as the metrics HTTP endpoint serves it. */
static int64_t scraped(int port, const char *name)
{
    static char reply[1 << 17];
    char line[128];
    const char *at;

    cr_assert_gt(harness_http_get(port, "/metrics", reply, sizeof reply, DEADLINE_MS), 0);
    snprintf(line, sizeof line, "\n%s ", name);
    at = strstr(reply, line);
    cr_assert_not_null(at, "no %s in the metrics:\n%s", name, reply);
    return strtoll(at + strlen(line), NULL, 10);
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

/* The subscription reaches the daemon: a first park is published, and
 * acknowledged. */
static void first_park(void *sub, ps_producer_t *p)
{
    send_park(p, "AZ-FIRST");
    cr_assert(park_published_within(sub, "AZ-FIRST", DEADLINE_MS),
              "the first park was never published");
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);
}

/* While the commit's WAL waits for the disk, its producer hears nothing
 * and no subscriber gets it; once the disk has it, both do. A lone
 * update is synced by the loop itself: nothing else waits to be taken in
 * meanwhile. */
Test(durable, acks_and_publications_wait_for_the_wal_on_disk, .fini = teardown, .timeout = 60)
{
    void *ctx = zmq_ctx_new();

    start_shimmed(NULL, NULL);
    void *sub = records_sub(ctx);
    ps_producer_t *p = producer("az-ministry");
    first_park(sub, p);

    touch(hold);
    send_park(p, "AZ-HELD");
    await_mark(hold, "waiting", "parksyncd");
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

/* A database reached through a symbolic link: SQLite keeps its WAL beside
 * the file the link names, and that is the WAL the daemon syncs before it
 * acknowledges. */
Test(durable, a_database_behind_a_link_has_the_wal_beside_its_file_synced, .fini = teardown,
     .timeout = 60)
{
    char real[HARNESS_PATH + 16], real_db[HARNESS_PATH + 32], wal[HARNESS_PATH + 40];
    int fd;

    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(real, sizeof real, "%s/real", h.dir);
    snprintf(real_db, sizeof real_db, "%s/parksync.db", real);
    cr_assert_eq(mkdir(real, 0700), 0);
    cr_assert_geq(fd = open(real_db, O_CREAT | O_WRONLY, 0600), 0);
    close(fd);
    cr_assert_eq(symlink(real_db, h.db), 0, "%s: %s", h.db, strerror(errno));
    start_shimmed(NULL, NULL);
    ps_producer_t *p = producer("az-ministry");

    touch(hold);
    send_park(p, "AZ-LINKED");
    await_mark(hold, "waiting", "parksyncd");
    unlink(hold);
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK, "not acknowledged; log:\n%s",
                 harness_slurp(h.log));
    cr_assert_eq(ps_producer_last_acked(p), 1);
    snprintf(wal, sizeof wal, "%s-wal", real_db);
    cr_assert_eq(access(wal, F_OK), 0, "no WAL beside the linked file");
    cr_assert(harness_ping(&h, DEADLINE_MS), "the daemon stopped");
    ps_producer_destroy(&p);
}

#define BURST 3000 /* updates sent at once: more arrive while a batch commits */

/* Publications of burst parks (AZ-B00000 ...) read from sub within ms,
 * their numbers appended to got[*n] in arrival order. */
static void read_burst(void *sub, int ms, int *got, int *n)
{
    int64_t deadline = wire_monotonic_ms() + ms;
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};

    for (int64_t left = ms; left >= 0; left = deadline - wire_monotonic_ms()) {
        zmq_msg_t m;
        const char *at;
        int k;

        if (zmq_poll(&it, 1, (long)left) != 1)
            return;
        zmq_msg_init(&m);
        cr_assert_geq(zmq_msg_recv(&m, sub, 0), 0);
        at = memmem(zmq_msg_data(&m), zmq_msg_size(&m), "AZ-B", 4);
        if (at && at + 9 <= (const char *)zmq_msg_data(&m) + zmq_msg_size(&m) &&
            sscanf(at + 4, "%5d", &k) == 1 && *n < 2 * BURST)
            got[(*n)++] = k;
        zmq_msg_close(&m);
    }
}

/* A burst keeps the loop committing while the sync thread's sync of an
 * earlier batch waits for the disk: the change log holds more of the
 * burst than was acknowledged or published, and nothing beyond the
 * synced commits is told. Once the disk answers, every update is
 * acknowledged and published once, in order. */
Test(durable, commits_go_on_while_a_sync_waits_and_are_told_after_it, .fini = teardown,
     .timeout = 90)
{
    void *ctx = zmq_ctx_new();
    static int got[2 * BURST];
    int n = 0, hwm = 0, held = 0;
    uint64_t acked;
    int64_t in_log;
    char park[16], mark[HARNESS_PATH + 32];

    start_shimmed("ps-sync", "[metrics]\nhttp = 127.0.0.1:0\n");
    void *sub = records_sub(ctx);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm), 0);
    ps_producer_t *p = producer("az-ministry");
    first_park(sub, p);

    touch(hold);
    snprintf(mark, sizeof mark, "%s.waiting.ps-sync", hold);
    /* a stream of updates, paced until one arrives while a batch
     * commits (the daemon takes in all that waits before it commits):
     * that commit's sync goes to the thread, which the shim holds; the
     * rest of the burst then comes at once */
    for (int i = 0; i < BURST; i++) {
        harness_park_t pu;
        snprintf(park, sizeof park, "AZ-B%05d", i);
        harness_park(&pu, park, "AZ");
        cr_assert_eq(ps_producer_send(p, &pu.u, NULL, DEADLINE_MS), PS_OK);
        if (!held && access(mark, F_OK) == 0)
            held = i + 1;
        if (!held)
            usleep(100 + 10 * (i % 50)); /* the load's shape, not a wait for anything */
    }
    cr_assert_gt(held, 0, "no sync went to the sync thread during the burst");
    await_mark(hold, "waiting", "ps-sync");
    /* the loop goes on until the burst is in or the unpublished changes
     * fill a subscriber's queue; then it waits for the sync too */
    read_burst(sub, QUIET_MS, got, &n);
    cr_assert_eq(ps_producer_wait(p, 0), PS_OK);
    acked = ps_producer_last_acked(p);
    cr_assert_lt(acked, BURST + 1, "the whole burst was acknowledged while a sync waited");
    cr_assert_leq((uint64_t)n, acked - 1, "%d parks published, %" PRIu64 " acknowledged", n,
                  acked - 1);
    /* the metrics served over HTTP, rendered after the whole burst was
     * taken in (and committed, in the same pass), say the head published,
     * not the one committed */
    int port = harness_metrics_port(&h);
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;
    while (scraped(port, "parksync_ingest_messages_total") < BURST + 1) {
        cr_assert_lt(wire_monotonic_ms(), deadline, "the metrics never counted the burst");
        usleep(50000); /* they are rendered once a second */
    }
    int64_t head = scraped(port, "parksync_head_revision");
    cr_assert_lt(head, logged_head(), "the metrics show a head whose sync has not returned");
    /* a pong carries the head: queries wait for the sync */
    cr_assert_not(harness_ping(&h, 200), "a query was answered while a sync waited");
    in_log = 0;
    for (int i = 0; i < BURST; i += 100) {
        snprintf(park, sizeof park, "AZ-B%05d", i);
        in_log += logged(park);
    }
    cr_assert_gt(in_log * 100, (int64_t)acked + 100,
                 "no commit went on while the sync waited: ~%" PRId64 " logged, %" PRIu64
                 " acknowledged",
                 in_log * 100, acked);

    unlink(hold);
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK, "not acknowledged once on disk");
    cr_assert_eq(ps_producer_last_acked(p), BURST + 1);
    while (n < BURST) {
        int before = n;
        read_burst(sub, DEADLINE_MS / 10, got, &n);
        cr_assert_gt(n, before, "%d of %d parks published", n, BURST);
    }
    cr_assert_eq(n, BURST, "%d publications for %d parks", n, BURST);
    for (int i = 0; i < BURST; i++)
        cr_assert_eq(got[i], i, "publication %d is park %d", i, got[i]);

    ps_producer_destroy(&p);
    zmq_close(sub);
    zmq_ctx_term(ctx);
}

/* Exits of the daemon within DEADLINE_MS, on its own: its status. */
static int exit_status(void)
{
    int64_t deadline = wire_monotonic_ms() + DEADLINE_MS;
    int status;

    while (waitpid(h.pid, &status, WNOHANG) != h.pid) {
        cr_assert_lt(wire_monotonic_ms(), deadline, "parksyncd runs on; log:\n%s",
                     harness_slurp(h.log));
        usleep(1000);
    }
    h.pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A sync that fails leaves what the WAL holds since the last good one
 * unknown: nothing of it is acknowledged, and the daemon stops failing
 * (systemd starts it again). Started again on a disk that works, it
 * takes the producer's resend, once. */
Test(durable, a_wal_that_cannot_be_synced_loses_no_acknowledged_update, .fini = teardown,
     .timeout = 60)
{
    char *log;

    start_shimmed(NULL, NULL);
    ps_producer_t *p = producer("az-ministry");
    send_park(p, "AZ-ONE");
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK);

    touch(fail);
    send_park(p, "AZ-RESENT");
    await_mark(fail, "failed", "parksyncd");
    cr_assert_eq(exit_status(), 1, "the daemon did not stop failing");
    cr_assert_eq(ps_producer_wait(p, 0), PS_OK);
    cr_assert_eq(ps_producer_last_acked(p), 1, "acknowledged although its sync failed");
    log = harness_slurp(h.log);
    cr_assert(log && strstr(log, "cannot sync the WAL"), "the log says nothing of it:\n%s", log);
    free(log);

    unlink(fail);
    start_shimmed(NULL, NULL);
    cr_assert_eq(ps_producer_flush(p, DEADLINE_MS), PS_OK, "the resent update was not taken");
    cr_assert_eq(ps_producer_last_acked(p), 2);
    cr_assert_eq(logged("AZ-RESENT"), 1, "the update is not in the change log once");
    ps_producer_destroy(&p);
}
