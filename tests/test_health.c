/*
 * test_health.c - what the operator sees when the daemon cannot do its
 * work: a full disk, a malformed database, a file of another application.
 *
 * The full disk is a 16 MiB tmpfs mounted over a folder of the test's
 * own (root only; the test says it skipped otherwise). The malformed
 * database is a page of the change log overwritten while the daemon is
 * stopped: SQLite reads it only when a history or a check needs it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define HEALTH_PARK_NAME 240 /* bytes of a padded park name: pages fill fast */

static harness_t h;
static char small[HARNESS_PATH]; /* the tmpfs, "" when none is mounted */

static void teardown(void)
{
    if (small[0]) {
        if (h.pid)
            harness_kill(&h);
        umount2(small, MNT_DETACH);
        small[0] = '\0';
    }
    harness_cleanup(&h);
}

/* True when the daemon's log holds needle. */
static bool logged(const char *needle)
{
    char *log = harness_slurp(h.log);
    bool found = log && strstr(log, needle);

    free(log);
    return found;
}

/* Sends parks PREFIX-first..PREFIX-(first+n-1) with padded names. */
static void send_parks(ps_producer_t *p, const char *prefix, int first, int n)
{
    char id[48], name[HEALTH_PARK_NAME + 1];
    harness_park_t pu;

    memset(name, 'n', HEALTH_PARK_NAME);
    name[HEALTH_PARK_NAME] = '\0';
    for (int i = first; i < first + n; i++) {
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        harness_park(&pu, id, "AZ");
        pu.p.name = name;
        cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 10000), PS_OK);
    }
}

static ps_producer_t *producer(const char *id)
{
    ps_producer_options_t o;
    ps_err_t err;
    ps_producer_t *p;

    harness_producer_options(&h, &o, id);
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    return p;
}

static uint64_t counter_of(const Parksync__V1__Status *st, const char *name)
{
    for (size_t i = 0; i < st->n_counters; i++)
        if (strcmp(st->counters[i]->name, name) == 0)
            return st->counters[i]->value;
    cr_assert_fail("status has no counter %s", name);
    return 0;
}

/* The daemon's applied counter against what the database holds: the sum
 * of every producer's applied, which a rollback takes back. */
static void expect_counts_committed(const Parksync__V1__Status *st, const char *when)
{
    uint64_t held = 0;

    for (size_t i = 0; i < st->n_producers; i++)
        held += st->producers[i]->applied;
    cr_expect_eq(counter_of(st, "applied"), held,
                 "%s: the daemon counts %" PRIu64 " updates applied, the database holds %" PRIu64,
                 when, counter_of(st, "applied"), held);
}

/* Fills the file system of dir; returns the filler's path in buf. */
static void fill(const char *dir, char *buf, size_t size)
{
    static char block[64 * 1024];
    int fd;

    snprintf(buf, size, "%s/filler", dir);
    fd = open(buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "%s: %s", buf, strerror(errno));
    while (write(fd, block, sizeof block) > 0)
        ;
    cr_assert_eq(errno, ENOSPC, "filling %s: %s", dir, strerror(errno));
    close(fd);
}

Test(health, a_full_disk_degrades_the_daemon_and_only_committed_work_counts, .fini = teardown,
     .timeout = 300)
{
    char filler[HARNESS_PATH + 16], input[HARNESS_PATH + 16];
    const char *push[] = {"push", "--producer", "AZ-CLI", "--timeout", "3", input, NULL};
    char *out = NULL, *err = NULL;
    Parksync__V1__ControlReply *r;
    const char *why;
    int64_t since = 0, deadline, t0;
    ps_producer_t *p;
    bool ok = false;
    FILE *f;

    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(small, sizeof small, "%s/small", h.dir);
    cr_assert_eq(mkdir(small, 0700), 0);
    if (mount("tmpfs", small, "tmpfs", 0, "size=16m,mode=0700") != 0) {
        int e = errno;
        small[0] = '\0';
        cr_skip_test("cannot mount a tmpfs to fill (%s): run the tests as root to cover a full "
                     "disk",
                     strerror(e));
    }
    cr_assert_lt(strlen(small) + 16, sizeof h.db);
    memcpy(h.db, small, strlen(small));
    strcpy(h.db + strlen(small), "/parksync.db");
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    p = producer("AZ-MOE");
    send_parks(p, "AZ-FULL", 0, 2000);
    cr_assert_eq(ps_producer_flush(p, 30000), PS_OK);
    t0 = wire_now_us();

    /* the disk fills: the next updates cannot commit */
    fill(small, filler, sizeof filler);
    send_parks(p, "AZ-FULL", 2000, 6000);
    cr_expect_eq(ps_producer_flush(p, 4000), PS_ERR_TIMEOUT, "acked on a full disk?");
    why = ps_producer_daemon_health(p, &since);
    cr_expect(why && strstr(why, "disk is full"), "the heartbeats said: %s", why ? why : "ok");
    cr_expect_geq(since, t0);

    r = harness_status(&h, 5000);
    cr_assert_not_null(r);
    cr_assert_not_null(r->status->health, "status has no health");
    cr_expect(r->status->health->degraded, "a full disk, and status says ok");
    cr_expect(r->status->health->reason && strstr(r->status->health->reason, "ingest stalled") &&
                  strstr(r->status->health->reason, "disk is full"),
              "reason: %s", r->status->health->reason);
    cr_expect_geq(r->status->health->since_us, t0);
    cr_expect_lt(r->status->health->last_commit_us, r->status->health->since_us);
    cr_expect_gt(counter_of(r->status, "store_errors"), 0);
    expect_counts_committed(r->status, "disk full");
    parksync__v1__control_reply__free_unpacked(r, NULL);

    /* a push times out with the daemon's reason */
    snprintf(input, sizeof input, "%s/cli.jsonl", h.dir);
    f = fopen(input, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 3000; i++)
        fprintf(
            f,
            "{\"park\": {\"park_id\": \"AZ-CLI-%d\", \"country\": \"AZ\", \"name\": \"%0200d\"}}\n",
            i, i);
    fclose(f);
    cr_expect_eq(harness_cli(&h, push, NULL, &out, &err), 1, "push on a full disk: %s", err);
    cr_expect(err && strstr(err, "degraded") && strstr(err, "disk is full"), "push said: %s", err);
    free(out);
    free(err);
    const char *metrics[] = {"metrics", NULL};
    cr_assert_eq(harness_cli(&h, metrics, NULL, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "parksync_degraded{condition=\"commit\"} 1"), "metrics:\n%s", out);
    free(out);
    free(err);

    /* space comes back: everything is acked, the daemon is ok again */
    cr_assert_eq(unlink(filler), 0);
    cr_expect_eq(ps_producer_flush(p, 60000), PS_OK, "not acked after space came back");
    deadline = wire_monotonic_ms() + 20000;
    while (!ok && wire_monotonic_ms() < deadline) {
        r = harness_status(&h, 5000);
        cr_assert_not_null(r);
        ok = !r->status->health->degraded;
        if (ok) {
            expect_counts_committed(r->status, "after the disk full");
            cr_expect_geq(r->status->health->last_commit_us, since);
        }
        parksync__v1__control_reply__free_unpacked(r, NULL);
        if (!ok)
            usleep(100000);
    }
    cr_expect(ok, "still degraded 20 s after space came back");
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0);
}

/* The first column of the first row of sql on the file db; -1: no row. */
static int64_t sql_int(const char *db, const char *sql)
{
    sqlite3 *c = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    cr_assert_eq(sqlite3_open_v2(db, &c, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(c, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(c));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(c);
    return v;
}

Test(health, a_malformed_database_is_found_and_never_backed_up, .fini = teardown, .timeout = 300)
{
    char copy[HARNESS_PATH + 16], tmp[HARNESS_PATH + 32], junk[4096];
    const char *check[] = {"check", NULL};
    const char *backup[] = {"backup", copy, NULL};
    const char *history[] = {"snapshot", "--at-revision", "1", NULL};
    char *out = NULL, *err = NULL;
    Parksync__V1__ControlReply *r;
    struct stat sb;
    ps_producer_t *p;
    int64_t page_size;
    int page, fd;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    p = producer("AZ-MOE");
    send_parks(p, "AZ-BAD", 0, 3000);
    cr_assert_eq(ps_producer_flush(p, 30000), PS_OK);
    ps_producer_destroy(&p);
    snprintf(copy, sizeof copy, "%s/copy.db", h.dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", copy);

    /* sound: check passes, a backup is made */
    cr_assert_eq(harness_cli(&h, check, NULL, &out, &err), 0, "check: %s", err);
    cr_expect(strstr(out, "\"ok\":true"), "check printed: %s", out);
    free(out);
    free(err);
    cr_assert_eq(harness_cli(&h, backup, NULL, &out, &err), 0, "backup: %s", err);
    free(out);
    free(err);
    cr_expect_eq(unlink(copy), 0);
    cr_assert_eq(harness_stop(&h), 0);

    /* a page of the change log goes bad while the daemon is stopped */
    page = (int)sql_int(h.db, "SELECT pageno FROM dbstat WHERE name = 'changelog' AND pagetype = "
                              "'leaf' ORDER BY pageno LIMIT 1 OFFSET (SELECT count(*) / 2 FROM "
                              "dbstat WHERE name = 'changelog' AND pagetype = 'leaf')");
    page_size = sql_int(h.db, "PRAGMA page_size");
    cr_assert(page_size > 0 && page_size <= (int64_t)sizeof junk, "page size %" PRId64, page_size);
    cr_assert_gt(page, 1, "no leaf page of the change log");
    memset(junk, 0xaa, sizeof junk);
    fd = open(h.db, O_WRONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, junk, (size_t)page_size, (off_t)(page - 1) * page_size),
                 (ssize_t)page_size);
    close(fd);
    cr_assert_eq(harness_start(&h), 0, "the daemon did not start; see %s", h.log);

    /* check finds it, and the daemon says so until a check passes */
    cr_expect_eq(harness_cli(&h, check, NULL, &out, &err), 1, "check of a malformed file: %s", out);
    cr_expect(err && strstr(err, "database malformed"), "check said: %s", err);
    free(out);
    free(err);
    r = harness_status(&h, 5000);
    cr_assert_not_null(r);
    cr_expect(r->status->health->degraded, "malformed, and status says ok");
    cr_expect(r->status->health->reason && strstr(r->status->health->reason, "database malformed"),
              "reason: %s", r->status->health->reason);
    parksync__v1__control_reply__free_unpacked(r, NULL);

    /* a backup fails loudly and leaves nothing */
    cr_expect_eq(harness_cli(&h, backup, NULL, &out, &err), 1, "backup of a malformed file");
    cr_expect(err && strstr(err, "malformed"), "backup said: %s", err);
    free(out);
    free(err);
    cr_expect_neq(stat(copy, &sb), 0, "a malformed copy was left at %s", copy);
    cr_expect_neq(stat(tmp, &sb), 0, "the temporary copy %s was left", tmp);

    /* a history read says what is wrong, not "Input/output error" */
    cr_expect_eq(harness_cli(&h, history, NULL, &out, &err), 1, "history of a malformed file");
    cr_expect(err && strstr(err, "database malformed") && !strstr(err, "Input/output"),
              "snapshot said: %s", err);
    free(out);
    free(err);
    cr_assert_eq(harness_stop(&h), 0);
}

Test(health, another_applications_database_is_not_taken_over, .fini = teardown, .timeout = 120)
{
    char *before, *after;
    sqlite3 *c = NULL;
    struct stat sb;

    cr_assert_eq(harness_init(&h, NULL), 0);

    /* a new database is stamped as parksync's */
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    cr_assert_eq(harness_stop(&h), 0);
    cr_expect_eq(sql_int(h.db, "PRAGMA application_id"), 0x50534e43);

    /* one made before the stamp (application_id 0, parksync's schema) is kept */
    sql_int(h.db, "PRAGMA application_id = 0");
    cr_assert_eq(sql_int(h.db, "PRAGMA application_id"), 0);
    cr_assert_eq(harness_start(&h), 0, "an unstamped parksync database was refused; see %s", h.log);
    cr_assert_eq(harness_stop(&h), 0);
    cr_expect_eq(sql_int(h.db, "PRAGMA application_id"), 0x50534e43);

    /* another application's file: tables, user_version 0 */
    unlink(h.db);
    cr_assert_eq(sqlite3_open(h.db, &c), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(c,
                              "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);"
                              "INSERT INTO notes(body) VALUES ('keep me');",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(c);
    before = harness_slurp(h.db);
    cr_assert_not_null(before);
    cr_assert_eq(stat(h.db, &sb), 0);
    cr_expect_neq(harness_start(&h), 0, "the daemon took another application's database");
    after = harness_slurp(h.db);
    cr_expect(after && memcmp(before, after, (size_t)sb.st_size) == 0, "the file was written to");
    free(after);
    cr_expect(logged("not a parksync database"), "see %s", h.log);
    cr_expect_eq(sql_int(h.db, "SELECT count(*) FROM notes"), 1);

    /* another application's id */
    cr_assert_eq(sqlite3_open(h.db, &c), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(c, "PRAGMA application_id = 1234", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(c);
    cr_expect_neq(harness_start(&h), 0, "the daemon took a database of application 1234");
    cr_expect(logged("application_id is 0x000004d2"), "see %s", h.log);
    free(before);
}
