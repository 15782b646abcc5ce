/*
 * test_reliable.c - reliable ingest end to end: nothing lost, nothing
 * applied twice, whatever happens to the daemon, the producers and the
 * PUB/SUB path between them.
 *
 * crash: three producer processes push 20,000 updates each, every one
 * with its own outbox, while the test SIGKILLs parksyncd at random moments
 * (seeded; the seed is printed, PARKSYNC_TEST_SEED replays it) at least
 * five times and restarts it, and SIGKILLs one producer once and restarts
 * it. The daemon runs with synchronous = full; a SIGKILL is a process
 * crash, which loses nothing committed with NORMAL either (the WAL is in
 * the OS page cache), so this test would pass with NORMAL too: only a
 * power loss tells them apart.
 *
 * drops: a daemon with a 10-message ingest queue, a producer with a
 * 10-message send queue and a daemon paused and resumed (SIGSTOP/SIGCONT)
 * while it pushes: PUB/SUB drops for real, go-back-N repairs it.
 *
 * Both end by reading the database with SQLite: each producer's last
 * sequence and applied count, every record's final contents against what
 * the generator says they must be, and PRAGMA integrity_check.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define PRODUCERS       3                  /* producer processes in the crash test */
#define UPDATES         20000              /* updates per producer */
#define KEYS            300                /* residents per producer */
#define DAEMON_KILLS    5                  /* least SIGKILLs of parksyncd */
#define KILL_POINTS     9                  /* SIGKILLs planned, at random points of progress */
#define CRASH_WINDOW    1000               /* producer window in the crash test */
#define RUN_DEADLINE_MS 240000             /* the crash test gives up after this */
#define BASE_TIME_US    1600000000000000LL /* event time of sequence 0 */
#define DROP_UPDATES    2000               /* updates in the drop test */

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

/* ---------------------------------------------------------------- generator */

/* Update `seq` of producer k: an upsert of resident R<seq % KEYS> of park
 * REL-<k>, whose fields all derive from (k, seq). Event times grow with
 * the sequence, so each resident's final state is its last update's. */
typedef struct gen {
    Parksync__V1__Update u;
    Parksync__V1__Resident r;
    char park[16];
    char resident[16];
    char company[64];
} gen_t;

static void gen_update(gen_t *g, int k, uint64_t seq)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;

    g->u = u;
    g->r = r;
    snprintf(g->park, sizeof g->park, "REL-%d", k);
    snprintf(g->resident, sizeof g->resident, "R%" PRIu64, seq % KEYS);
    snprintf(g->company, sizeof g->company, "Company %d-%" PRIu64, k, seq);
    g->r.park_id = g->park;
    g->r.resident_id = g->resident;
    g->r.country = "AZ";
    g->r.company_name = g->company;
    g->r.has_investment_usd_cents = 1;
    g->r.investment_usd_cents = (int64_t)seq * 100 + k;
    g->r.has_jobs = 1;
    g->r.jobs = (uint32_t)seq;
    g->u.has_event_time_us = 1;
    g->u.event_time_us = BASE_TIME_US + (int64_t)seq;
    g->u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    g->u.resident = &g->r;
}

/* The last sequence <= total that wrote resident `key`; 0 when none. */
static uint64_t last_writer(uint64_t key, uint64_t total)
{
    if (total < key || (key == 0 && total < KEYS))
        return 0;
    return total - ((total - key) % KEYS);
}

/* ---------------------------------------------------------------- producer process */

static ps_producer_t *producer_open(const char *id, const char *outbox, unsigned window, int sndhwm,
                                    int ack_ms, ps_err_t *err)
{
    ps_producer_options_t o;

    harness_producer_options(&h, &o, id);
    o.outbox_path = outbox;
    o.connect_timeout_ms = 2000;
    o.ack_timeout_ms = ack_ms;
    if (window > 0)
        o.window = window;
    o.sndhwm = sndhwm;
    return ps_producer_new(&o, err);
}

/* Body of a producer process: connect (retrying while the daemon is
 * down), continue after the last sequence the outbox or the daemon knows,
 * push up to `total`, wait for every ack. Exit status 0 on success. */
static void producer_main(int k, uint64_t total)
{
    char id[32], outbox[HARNESS_PATH + 32];
    int64_t deadline = wire_monotonic_ms() + RUN_DEADLINE_MS;
    ps_producer_t *p = NULL;
    ps_err_t err = PS_OK;
    gen_t g;

    snprintf(id, sizeof id, "rel-%d", k);
    snprintf(outbox, sizeof outbox, "%s/outbox-%d.db", h.dir, k);
    /* A window of 1000 rather than the default: after a restart the
     * daemon applies what is in flight within moments, so a small window
     * keeps each of its lives short and the kills spread over the run. */
    while (p == NULL) {
        p = producer_open(id, outbox, CRASH_WINDOW, 0, 300, &err);
        if (p == NULL && (err != PS_ERR_TIMEOUT || wire_monotonic_ms() > deadline)) {
            fprintf(stderr, "producer %s: cannot start: %s\n", id, ps_strerror(err));
            _exit(3);
        }
    }
    while (ps_producer_last_sent(p) < total) {
        gen_update(&g, k, ps_producer_last_sent(p) + 1);
        err = ps_producer_send(p, &g.u, NULL, 1000);
        if (err == PS_ERR_TIMEOUT && wire_monotonic_ms() < deadline)
            continue; /* the daemon is down: the same update again */
        if (err != PS_OK) {
            fprintf(stderr, "producer %s: send %" PRIu64 ": %s (%s)\n", id,
                    ps_producer_last_sent(p) + 1, ps_strerror(err), ps_producer_last_error(p));
            _exit(4);
        }
    }
    while ((err = ps_producer_flush(p, 1000)) == PS_ERR_TIMEOUT && wire_monotonic_ms() < deadline)
        ;
    if (err != PS_OK) {
        fprintf(stderr, "producer %s: flush: %s\n", id, ps_strerror(err));
        _exit(5);
    }
    fprintf(stderr, "producer %s: done, %" PRIu64 " resends\n", id, ps_producer_resends(p));
    ps_producer_destroy(&p);
    _exit(0);
}

static pid_t producer_spawn(int k, uint64_t total)
{
    pid_t pid = fork();

    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0)
        producer_main(k, total);
    return pid;
}

/* ---------------------------------------------------------------- checks */

static sqlite3 *db_open(void)
{
    sqlite3 *db = NULL;

    cr_assert_eq(sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(sqlite3 *db, const char *sql, const char *arg)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    if (arg != NULL)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void check_integrity(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;

    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* Producer k's row says exactly `total` updates were applied, once each. */
static void check_producer(sqlite3 *db, int k, uint64_t total)
{
    char id[32];

    snprintf(id, sizeof id, "rel-%d", k);
    cr_assert_eq(db_int(db, "SELECT last_sequence FROM producer WHERE producer_id = ?", id),
                 (int64_t)total, "%s: last_sequence", id);
    cr_assert_eq(db_int(db, "SELECT applied FROM producer WHERE producer_id = ?", id),
                 (int64_t)total, "%s: applied (each update exactly once)", id);
    cr_assert_eq(db_int(db, "SELECT rejected FROM producer WHERE producer_id = ?", id), 0,
                 "%s: rejected", id);
}

/* Every resident of producer k holds its last writer's values. */
static void check_records(sqlite3 *db, int k, uint64_t total)
{
    sqlite3_stmt *st = NULL;
    char park[16];
    int rows = 0;

    snprintf(park, sizeof park, "REL-%d", k);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT resident_id, deleted, investment_cents, record "
                                    "FROM resident WHERE country = 'AZ' AND park_id = ?",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, park, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *rid = (const char *)sqlite3_column_text(st, 0);
        uint64_t key = strtoull(rid + 1, NULL, 10);
        uint64_t seq = last_writer(key, total);
        char company[64];
        Parksync__V1__Record *rec;

        rows++;
        cr_assert_neq(seq, 0, "%s/%s should not exist", park, rid);
        cr_assert_eq(sqlite3_column_int64(st, 1), 0, "%s/%s deleted", park, rid);
        cr_assert_eq(sqlite3_column_int64(st, 2), (int64_t)seq * 100 + k,
                     "%s/%s investment: want sequence %" PRIu64 "'s", park, rid, seq);
        rec = parksync__v1__record__unpack(NULL, (size_t)sqlite3_column_bytes(st, 3),
                                           sqlite3_column_blob(st, 3));
        cr_assert_not_null(rec);
        cr_assert_eq(rec->body_case, PARKSYNC__V1__RECORD__BODY_RESIDENT);
        snprintf(company, sizeof company, "Company %d-%" PRIu64, k, seq);
        cr_assert_str_eq(rec->resident->company_name, company, "%s/%s", park, rid);
        cr_assert_eq(rec->resident->jobs, (uint32_t)seq, "%s/%s jobs", park, rid);
        parksync__v1__record__free_unpacked(rec, NULL);
    }
    sqlite3_finalize(st);
    cr_assert_eq(rows, total < KEYS ? (int)total : KEYS, "%s: resident count", park);
}

/* ---------------------------------------------------------------- crash */

/* Updates the database holds as applied, all producers together; -1
 * while it cannot be read (the daemon is being restarted). */
/* Updates applied: of every producer (`producer` NULL), or of one. */
/* Updates applied so far (the producers' last sequences; one producer's
 * when producer is not NULL), as the daemon's database holds them. A
 * poll of progress, read while the daemon writes. */
static int64_t applied(const char *producer)
{
    sqlite3 *db = NULL;
    int64_t n = 0;

    if (sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 1000);
    for (int k = 0; k < PRODUCERS; k++) {
        char id[32];
        snprintf(id, sizeof id, "rel-%d", k);
        if (producer == NULL || strcmp(producer, id) == 0) {
            int64_t v = db_int(db, HARNESS_POSITION_SQL, id);
            n += v > 0 ? v : 0;
        }
    }
    sqlite3_close(db);
    return n;
}

/* True when some child (a producer, or the daemon) has exited; it is left
 * for its own waitpid to collect. */
static bool child_exited(void)
{
    siginfo_t info = {0};

    return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

Test(reliable, survives_daemon_and_producer_crashes, .fini = teardown, .timeout = 400)
{
    unsigned seed = (unsigned)time(NULL);
    pid_t pids[PRODUCERS];
    bool done[PRODUCERS] = {false};
    int finished = 0, kills = 0, producer_kills = 0;
    int64_t deadline = wire_monotonic_ms() + RUN_DEADLINE_MS;
    int64_t points[KILL_POINTS];

    if (getenv("PARKSYNC_TEST_SEED") != NULL)
        seed = (unsigned)strtoul(getenv("PARKSYNC_TEST_SEED"), NULL, 10);
    fprintf(stderr, "reliable crash test: seed %u (PARKSYNC_TEST_SEED replays it)\n", seed);
    srand(seed);
    /* Kill moments are points of progress (updates applied), not times, so
     * the kills land inside the run however fast this machine ingests. */
    for (int i = 0; i < KILL_POINTS; i++)
        points[i] = (int64_t)PRODUCERS * UPDATES * (5 + rand() % 70) / 100;
    qsort(points, KILL_POINTS, sizeof points[0], cmp_i64);
    /* rel-0 is killed at a point of its own progress: at the fast end of
     * the daemon's kill points it could be done before them */
    int64_t producer_point = (int64_t)UPDATES * (10 + rand() % 40) / 100;
    cr_assert_eq(harness_init(&h, "[store]\nsynchronous = full\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    /* The producers are processes: no ZeroMQ context is alive here now
     * (harness_start's ping closes its own). */
    for (int k = 0; k < PRODUCERS; k++)
        pids[k] = producer_spawn(k, UPDATES);

    while (finished < PRODUCERS) {
        cr_assert_lt(wire_monotonic_ms(), deadline,
                     "the producers did not finish in time "
                     "(seed %u, %d daemon kills)",
                     seed, kills);
        if (kills < KILL_POINTS) {
            while (applied(NULL) < points[kills] &&
                   (producer_kills > 0 || applied("rel-0") < producer_point) &&
                   wire_monotonic_ms() < deadline && !child_exited())
                sleep_ms(5); /* a poll of the database's progress, not a synchronisation */
        } else {
            sleep_ms(100 + rand() % 200);
        }
        for (int k = 0; k < PRODUCERS; k++) {
            int status;
            if (done[k] || waitpid(pids[k], &status, WNOHANG) != pids[k])
                continue;
            cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "producer rel-%d failed (status %d, seed %u)", k, status, seed);
            done[k] = true;
            finished++;
        }
        if (finished == PRODUCERS)
            break;
        if (producer_kills == 0 && !done[0] && applied("rel-0") >= producer_point) {
            /* A producer crash: unsent and unacknowledged updates are
             * only in its outbox now. */
            kill(pids[0], SIGKILL);
            waitpid(pids[0], NULL, 0);
            producer_kills++;
            fprintf(stderr, "killed producer rel-0, restarting it\n");
            pids[0] = producer_spawn(0, UPDATES);
        }
        harness_kill(&h);
        kills++;
        sleep_ms(rand() % 300);
        cr_assert_eq(harness_start(&h), 0, "parksyncd did not restart after kill %d; log:\n%s",
                     kills, harness_slurp(h.log));
    }
    fprintf(stderr, "reliable crash test: %d daemon kills, %d producer kill\n", kills,
            producer_kills);
    cr_assert_geq(kills, DAEMON_KILLS,
                  "only %d daemon kills happened before the producers "
                  "finished (seed %u)",
                  kills, seed);
    cr_assert_eq(producer_kills, 1);
    cr_assert_eq(harness_stop(&h), 0);

    sqlite3 *db = db_open();
    for (int k = 0; k < PRODUCERS; k++) {
        check_producer(db, k, UPDATES);
        check_records(db, k, UPDATES);
    }
    check_integrity(db);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- drops */

Test(reliable, repairs_pubsub_drops, .fini = teardown, .timeout = 300)
{
    ps_producer_t *p;
    ps_producer_stats_t st;
    ps_err_t err = PS_OK;
    pid_t pauser;
    gen_t g;

    cr_assert_eq(harness_init(&h, "[limits]\ningest_hwm = 10\nbatch_max = 16\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    /* Pauses the daemon 150 ms out of every 400 until killed: its tiny
     * ingest queue overflows and the producer's acks stop meanwhile. */
    pid_t parent = getpid();
    pauser = fork();
    cr_assert_geq(pauser, 0);
    if (pauser == 0) {
        while (getppid() == parent) {
            sleep_ms(250);
            kill(h.pid, SIGSTOP);
            sleep_ms(150);
            kill(h.pid, SIGCONT);
        }
        _exit(0);
    }
    /* A window larger than the send queue: bursts overflow it too. */
    p = producer_open("rel-0", NULL, 50, 20, 100, &err);
    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    for (uint64_t i = 1; i <= DROP_UPDATES; i++) {
        gen_update(&g, 0, i);
        cr_assert_eq(ps_producer_send(p, &g.u, NULL, 60000), PS_OK, "send %" PRIu64, i);
    }
    err = ps_producer_flush(p, 120000);
    kill(pauser, SIGKILL);
    waitpid(pauser, NULL, 0);
    kill(h.pid, SIGCONT);
    cr_assert_eq(err, PS_OK, "flush: %s", ps_strerror(err));
    cr_assert_eq(ps_producer_last_acked(p), DROP_UPDATES);
    /* The test must have caused loss, or it proves nothing. */
    cr_assert_gt(ps_producer_resends(p), 0, "no resends: nothing was dropped");
    ps_producer_options_t qo;
    ps_producer_options_init(&qo);
    qo.producer_id = "rel-0";
    qo.query_endpoint = h.query;
    cr_assert_eq(ps_producer_query(&qo, 5000, &st), PS_OK);
    fprintf(stderr,
            "drop test: %" PRIu64 " resends, daemon saw %" PRIu64 " duplicates and %" PRIu64
            " gaps\n",
            ps_producer_resends(p), st.duplicates, st.gaps);
    cr_assert_gt(st.gaps + st.duplicates, 0, "the daemon saw no gap or duplicate");
    cr_assert_eq(st.last_sequence, DROP_UPDATES);
    cr_assert_eq(st.applied, DROP_UPDATES);
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0);

    sqlite3 *db = db_open();
    check_producer(db, 0, DROP_UPDATES);
    check_records(db, 0, DROP_UPDATES);
    check_integrity(db);
    sqlite3_close(db);
}

/* Resumes the daemon after a pause (the slow test's pauser thread). */
static void *resume_later(void *arg)
{
    sleep_ms(*(const int *)arg);
    kill(h.pid, SIGCONT);
    return NULL;
}

/* A daemon that takes longer than the producer's first resend timeout to
 * make progress, every time (a slow disk, a large batch): paused 800 ms
 * from each send to its acks, against the 500 ms default. The producer
 * learns its pace from the waits it sees, as TCP learns a round trip: it
 * resends only until it has a sample (the first pause, or the first few
 * on a loaded machine, each doubling its timeout) and never after. With
 * the timeout reset to 500 ms at every ack it resent the whole window at
 * every pause. */
Test(reliable, a_slow_daemon_is_not_sent_its_window_again_at_each_commit, .fini = teardown,
     .timeout = 120)
{
    const int rounds = 8, learnt = 4, per_round = 50, pause_ms = 800;
    ps_err_t err = PS_OK;
    uint64_t seq = 0, early = 0;
    gen_t g;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    ps_producer_t *p = producer_open("rel-0", NULL, 0, 0, 500, &err);
    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    for (int r = 0; r < rounds; r++) {
        pthread_t resumer;
        if (r == learnt)
            early = ps_producer_resends(p);
        kill(h.pid, SIGSTOP);
        cr_assert_eq(pthread_create(&resumer, NULL, resume_later, (void *)&pause_ms), 0);
        for (int i = 0; i < per_round; i++) {
            gen_update(&g, 0, ++seq);
            cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK);
        }
        err = ps_producer_flush(p, 30000);
        pthread_join(resumer, NULL);
        cr_assert_eq(err, PS_OK, "round %d: %s", r, ps_strerror(err));
        cr_log_info("round %d: %" PRIu64 " resent so far", r, ps_producer_resends(p));
    }
    cr_assert_eq(ps_producer_last_acked(p), seq);
    cr_assert_eq(ps_producer_resends(p), early,
                 "%" PRIu64 " updates resent in the last %d pauses of %d ms, after %" PRIu64
                 " in the first %d: the window went again at each",
                 ps_producer_resends(p) - early, rounds - learnt, pause_ms, early, learnt);
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0);
}

/* A caller that leaves the producer alone for a while (here 3 s after a
 * send, the ack long arrived) reads that ack late: the wait it sees is its
 * own absence, not the daemon's pace, and is no sample. Learnt, it would
 * have set the timeout to 8 s, and the daemon pausing 800 ms just after
 * would get no resend; the producer resends at its 500 ms. */
Test(reliable, a_caller_away_does_not_teach_the_producer_a_slow_daemon, .fini = teardown,
     .timeout = 60)
{
    const int away_ms = 3000, pause_ms = 800;
    ps_err_t err = PS_OK;
    pthread_t resumer;
    gen_t g;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    ps_producer_t *p = producer_open("rel-0", NULL, 0, 0, 500, &err);
    cr_assert_not_null(p, "producer: %s", ps_strerror(err));
    gen_update(&g, 0, 1);
    cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK);
    sleep_ms(away_ms);
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);

    kill(h.pid, SIGSTOP);
    cr_assert_eq(pthread_create(&resumer, NULL, resume_later, (void *)&pause_ms), 0);
    gen_update(&g, 0, 2);
    cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK);
    err = ps_producer_flush(p, 30000);
    pthread_join(resumer, NULL);
    cr_assert_eq(err, PS_OK, "flush: %s", ps_strerror(err));
    cr_assert_gt(ps_producer_resends(p), 0,
                 "no resend in a pause of %d ms after the caller was away %d ms: the timeout "
                 "learnt the caller's absence",
                 pause_ms, away_ms);
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0);
}

/* Counts the occurrences of needle in the file at path. */
static int count_in_file(const char *path, const char *needle)
{
    char *text = harness_slurp(path);
    int n = 0;

    cr_assert_not_null(text, "cannot read %s", path);
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at += strlen(needle))
        n++;
    free(text);
    return n;
}

/* Issue 11, defect 3: a producer whose outbox is past the database's
 * sequence (the database was restored from a backup taken at 20, the
 * outbox had 21..49 acknowledged by the old database and deleted, and
 * holds 50..60) must not stall in silence. `parksync push` fails at once
 * naming the lost range and the remedy, `parksync status` shows the range,
 * and the daemon warns once. */
Test(reliable, producer_ahead_of_a_restored_database_is_reported, .fini = teardown, .timeout = 120)
{
    char outbox[HARNESS_PATH + 16], copy[HARNESS_PATH + 16], input[HARNESS_PATH + 16];
    char cmd[6 * HARNESS_PATH];
    char *out = NULL, *err = NULL;
    ps_producer_t *p;
    ps_err_t perr = PS_OK;
    gen_t g;
    FILE *f;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    snprintf(outbox, sizeof outbox, "%s/outbox.db", h.dir);
    snprintf(copy, sizeof copy, "%s/backup.db", h.dir);
    p = producer_open("AZ-MOE", outbox, 0, 0, 100, &perr);
    cr_assert_not_null(p, "producer: %s", ps_strerror(perr));
    for (uint64_t i = 1; i <= 20; i++) {
        gen_update(&g, 0, i);
        cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK);
    }
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    const char *backup[] = {"backup", copy, NULL};
    cr_assert_eq(harness_cli(&h, backup, NULL, &out, &err), 0, "backup: %s", err);
    free(out);
    free(err);
    for (uint64_t i = 21; i <= 49; i++) {
        gen_update(&g, 0, i);
        cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK);
    }
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    /* 50..60 stay in the outbox's batch: committed by destroy, never sent */
    for (uint64_t i = 50; i <= 60; i++) {
        gen_update(&g, 0, i);
        cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK);
    }
    cr_assert_eq(ps_producer_last_acked(p), 49);
    ps_producer_destroy(&p);

    /* restore the backup taken at 20 */
    cr_assert_eq(harness_stop(&h), 0);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && rm -f '%s-wal' '%s-shm'", copy, h.db, h.db, h.db);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));

    snprintf(input, sizeof input, "%s/more.jsonl", h.dir);
    f = fopen(input, "w");
    cr_assert_not_null(f);
    fputs("{\"event_time\": \"2020-12-23T09:00:00Z\", \"park\": {\"park_id\": \"AZ-NEW\", "
          "\"country\": \"AZ\", \"name\": \"New park\"}}\n",
          f);
    fclose(f);
    const char *push[] = {"push",      "--producer", "AZ-MOE", "--outbox", outbox,
                          "--timeout", "20",         input,    NULL};
    for (int run = 0; run < 2; run++) {
        int64_t t0 = wire_monotonic_ms();
        int rc = harness_cli(&h, push, NULL, &out, &err);
        int64_t took = wire_monotonic_ms() - t0;
        cr_expect_eq(rc, 1, "push #%d: exit %d, stderr: %s", run + 1, rc, err);
        cr_expect_lt(took, 5000, "push #%d took %" PRId64 " ms: it waited for its timeout", run + 1,
                     took);
        cr_expect(err && strstr(err, "AZ-MOE") && strstr(err, "21..49") &&
                      strstr(err, "new outbox"),
                  "push #%d stderr: %s", run + 1, err);
        free(out);
        free(err);
    }

    /* the daemon's status shows the range; its log says it once */
    int64_t deadline = wire_monotonic_ms() + 20000;
    const char *status[] = {"status", "--json", NULL};
    bool shown = false;
    while (!shown && wire_monotonic_ms() < deadline) {
        cr_assert_eq(harness_cli(&h, status, NULL, &out, &err), 0, "status: %s", err);
        shown = strstr(out, "\"missing_from\":21") && strstr(out, "\"missing_to\":49");
        if (!shown)
            sleep_ms(200);
        free(out);
        free(err);
    }
    cr_expect(shown, "status never showed the missing range 21..49");
    const char *plain[] = {"status", NULL};
    cr_assert_eq(harness_cli(&h, plain, NULL, &out, &err), 0, "status: %s", err);
    cr_expect(strstr(out, "missing 21..49"), "status: %s", out);
    free(out);
    free(err);
    cr_expect_eq(count_in_file(h.log, "producer AZ-MOE is ahead of this database"), 1, "log:\n%s",
                 harness_slurp(h.log));
    cr_expect_eq(count_in_file(h.log, "sequences 21..49 are missing"), 1);
}
