/*
 * test_pcache.c - the page-cache layer (store/pcache.h) passes a
 * truncation on to SQLite's cache exactly when a page at or past its
 * limit may be there: never leaving one behind, and not scanning the
 * cache after every commit that split a B-tree page.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pcache.h"
#include "rng.h"

#define PAGE 1024

static sqlite3_pcache_methods2 layer; /* as installed */
static char dir[] = "/tmp/parksync-pcache-XXXXXX";
static char path[sizeof(dir) + 16];

/* Each test is a process of its own: the layer goes in before SQLite is
 * first used, as store_open does it. */
static void setup(void)
{
    cr_assert(pcache_setup(), "the layer was not installed");
    cr_assert(pcache_setup(), "a second call refused"); /* and must not wrap the layer */
    cr_assert_eq(sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &layer), SQLITE_OK);
    cr_assert_eq(sqlite3_initialize(), SQLITE_OK);
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
}

static void teardown(void)
{
    char f[sizeof(path) + 8];
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};

    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(f, sizeof(f), "%s%s", path, suffix[i]);
        unlink(f);
    }
    rmdir(dir);
}

TestSuite(pcache, .init = setup, .fini = teardown);

static pcache_counts_t counts(void)
{
    pcache_counts_t c;
    pcache_counts(&c);
    return c;
}

/* The page numbered key, created when create; its first bytes marked. */
static sqlite3_pcache_page *page_at(sqlite3_pcache *c, unsigned key, int create)
{
    sqlite3_pcache_page *p = layer.xFetch(c, key, create);
    if (p && create)
        memcpy(p->pBuf, &key, sizeof(key));
    return p;
}

static unsigned mark(const sqlite3_pcache_page *p)
{
    unsigned m;
    memcpy(&m, p->pBuf, sizeof(m));
    return m;
}

/* Whether the cache holds page key (left unpinned). */
static bool holds(sqlite3_pcache *c, unsigned key)
{
    sqlite3_pcache_page *p = layer.xFetch(c, key, 0);
    if (p)
        layer.xUnpin(c, p, 0);
    return p != NULL;
}

/* The layer's methods called as the pager calls them. */
Test(pcache, passes_a_truncation_only_when_a_page_may_be_at_its_limit)
{
    sqlite3_pcache *c = layer.xCreate(PAGE, 64, 1);
    sqlite3_pcache_page *a, *b;
    uint64_t passed;

    cr_assert_not_null(c);
    layer.xCachesize(c, 200);
    for (unsigned k = 1; k <= 50; k++)
        layer.xUnpin(c, page_at(c, k, 2), 0);

    /* a commit's truncation to the size the cache already fits */
    passed = counts().passed;
    layer.xTruncate(c, 51);
    cr_assert_eq(counts().passed, passed, "nothing is at 51 or past it");
    cr_assert(holds(c, 50));

    /* a rollback's: the pages past the limit go */
    layer.xTruncate(c, 40);
    cr_assert_eq(counts().passed, passed + 1);
    cr_assert(!holds(c, 45) && !holds(c, 40));
    cr_assert(holds(c, 39));

    /* a balance swaps two pages' numbers through a high one */
    uint64_t renumbered = counts().renumbered;
    a = layer.xFetch(c, 20, 0);
    b = layer.xFetch(c, 21, 0);
    cr_assert(a && b);
    layer.xRekey(c, a, 20, 262145);
    layer.xRekey(c, b, 21, 20);
    layer.xRekey(c, a, 262145, 21);
    layer.xUnpin(c, a, 0);
    layer.xUnpin(c, b, 0);
    cr_assert_eq(counts().renumbered, renumbered + 1, "page 20 went past the bound");
    passed = counts().passed;
    layer.xTruncate(c, 40);
    cr_assert_eq(counts().passed, passed, "the high number was left behind");
    a = layer.xFetch(c, 20, 0);
    cr_assert(a && mark(a) == 21, "page 20 holds what 21 held");
    layer.xUnpin(c, a, 0);

    /* a page left at a high number is dropped by the next truncation */
    a = layer.xFetch(c, 30, 0);
    layer.xRekey(c, a, 30, 100000);
    layer.xUnpin(c, a, 0);
    layer.xTruncate(c, 40);
    cr_assert_eq(counts().passed, passed + 1);
    cr_assert(!holds(c, 100000));

    /* one discarded at its high number is forgotten */
    a = layer.xFetch(c, 31, 0);
    layer.xRekey(c, a, 31, 100001);
    layer.xUnpin(c, a, 1);
    layer.xTruncate(c, 40);
    cr_assert_eq(counts().passed, passed + 1, "the discarded page was not forgotten");

    /* more high pages than the layer tracks: the bound covers them */
    for (unsigned k = 1; k <= 12; k++) {
        a = layer.xFetch(c, k, 0);
        cr_assert_not_null(a);
        layer.xRekey(c, a, k, 5000 + k);
        layer.xUnpin(c, a, 0);
    }
    layer.xTruncate(c, 5007);
    cr_assert_eq(counts().passed, passed + 2);
    for (unsigned k = 1; k <= 12; k++)
        cr_assert_eq(holds(c, 5000 + k), 5000 + k < 5007, "page %u", 5000 + k);
    layer.xTruncate(c, 40);
    cr_assert_eq(counts().passed, passed + 3);
    for (unsigned k = 5001; k <= 5006; k++)
        cr_assert(!holds(c, k), "page %u", k);
    cr_assert(holds(c, 39));
    layer.xDestroy(c);
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK, "%s: %s", sql, err ? err : "");
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* Rows of random keys, a few a commit: the B-tree splits as it grows. */
static void insert_random(sqlite3 *db, uint64_t *r, int rows, int per_commit, int tag)
{
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t VALUES (?1, ?2, zeroblob(300))",
                                    -1, &st, NULL),
                 SQLITE_OK);
    for (int i = 0; i < rows; i++) {
        char key[32];
        if (i % per_commit == 0)
            exec(db, "BEGIN");
        snprintf(key, sizeof(key), "K%012llu", (unsigned long long)rnd(r, 1000000000));
        sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 2, tag);
        cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
        if (i % per_commit == per_commit - 1 || i == rows - 1)
            exec(db, "COMMIT");
    }
    sqlite3_finalize(st);
}

/* The store's kind of work through SQLite itself: the commits after page
 * splits renumber pages high (so SQLite's cache alone would scan itself
 * whole at each), yet almost no truncation is passed on. */
Test(pcache, commits_after_splits_pass_no_truncation_on)
{
    sqlite3 *db;
    uint64_t r = 7;

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "PRAGMA journal_mode = WAL; PRAGMA cache_size = -8192;"
             "CREATE TABLE t(k TEXT PRIMARY KEY, tag INTEGER, v BLOB) WITHOUT ROWID");
    pcache_counts_t before = counts();
    insert_random(db, &r, 20000, 8, 1);
    pcache_counts_t after = counts();
    uint64_t truncations = after.truncations - before.truncations;
    uint64_t passed = after.passed - before.passed;
    cr_assert_geq(truncations, 2500, "a truncation per commit");
    cr_assert_gt(after.renumbered, before.renumbered, "no page was renumbered high");
    cr_assert_leq(passed * 100, truncations, "%llu of %llu truncations passed on",
                  (unsigned long long)passed, (unsigned long long)truncations);
    cr_assert_eq(query_int(db, "SELECT count(*) FROM t WHERE tag = 1"), 20000);
    integrity_ok(db);
    sqlite3_close(db);
}

/* A rolled-back growth leaves no page of it in the cache: the database
 * grows again over the same page numbers with other rows, and the
 * connection that rolled back reads what a fresh one reads. */
Test(pcache, a_rollback_leaves_no_page_past_the_database)
{
    sqlite3 *db, *fresh;
    uint64_t r = 11;

    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec(db, "PRAGMA journal_mode = WAL;"
             "CREATE TABLE t(k TEXT PRIMARY KEY, tag INTEGER, v BLOB) WITHOUT ROWID");
    insert_random(db, &r, 1000, 100, 1);
    int64_t pages = query_int(db, "PRAGMA page_count");
    uint64_t passed = counts().passed;
    exec(db, "BEGIN");
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
             " INSERT INTO t SELECT printf('R%06d', i), 2, randomblob(300) FROM n");
    cr_assert_gt(query_int(db, "PRAGMA page_count"), pages + 100);
    exec(db, "ROLLBACK");
    cr_assert_gt(counts().passed, passed, "the rollback's truncation was not passed on");
    cr_assert_eq(query_int(db, "PRAGMA page_count"), pages);
    exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
             " INSERT INTO t SELECT printf('S%06d', i), 3, zeroblob(300) FROM n");
    cr_assert_eq(query_int(db, "SELECT count(*) FROM t WHERE tag = 2"), 0);
    cr_assert_eq(query_int(db, "SELECT count(*) FROM t WHERE tag = 3"), 3000);
    integrity_ok(db);
    cr_assert_eq(sqlite3_open(path, &fresh), SQLITE_OK);
    cr_assert_eq(query_int(fresh, "SELECT count(*) FROM t WHERE tag = 3"),
                 query_int(db, "SELECT count(*) FROM t WHERE tag = 3"));
    cr_assert_eq(query_int(fresh, "SELECT total(length(k)) FROM t"),
                 query_int(db, "SELECT total(length(k)) FROM t"));
    sqlite3_close(fresh);
    sqlite3_close(db);
}
