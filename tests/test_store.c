/*
 * test_store.c - the SQLite store: schema, reconciliation, revisions,
 * change log, cursors, summaries and the order-independence property.
 *
 * Each test works in its own mkdtemp directory. Updates are built on the
 * stack (upd_t) with the generated protobuf-c types.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "store.h"
#include "store_int.h" /* SWEEP_CHUNK */
#include "upd.h"

/* ---------------------------------------------------------------- fixture */

static char dir[64];    /* this test's temporary directory */
static char dbpath[96]; /* the database file in it */
/* SQL that takes migration 10 back from the change log, for tests that
 * make an older file (resident_agg's revision goes too where it stays) */
#define UNDO_10                                                                                    \
    " ALTER TABLE changelog DROP COLUMN producers; ALTER TABLE changelog DROP COLUMN aggregates;"

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_store.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", dir);
}

static void remove_db(const char *path)
{
    char p[128];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
        unlink(p);
    }
}

static void teardown(void)
{
    remove_db(dbpath);
    rmdir(dir);
}

TestSuite(store, .init = setup, .fini = teardown);

static store_t *open_at(const char *path, store_config_t *cfg)
{
    store_config_t local;
    char err[256];
    if (!cfg) {
        store_config_init(&local);
        cfg = &local;
    }
    cfg->path = path;
    store_t *s = store_open(cfg, err, sizeof(err));
    cr_assert_not_null(s, "store_open: %s", err);
    return s;
}

static store_t *open_db(void)
{
    return open_at(dbpath, NULL);
}

/* Applies one update in its own batch and returns the outcome. */
static store_outcome_t apply1(store_t *s, const upd_t *x)
{
    store_outcome_t out = STORE_GAP;
    cr_assert_eq(store_begin(s), 0, "begin: %s", store_errmsg(s));
    int rc = store_apply(s, &x->u, &out);
    cr_assert_eq(rc, 0, "apply: %d %s", rc, store_errmsg(s));
    cr_assert_eq(store_commit(s), 0, "commit: %s", store_errmsg(s));
    return out;
}

/* ---------------------------------------------------------------- reading back */

typedef struct recs {
    Parksync__V1__Record *r[64]; /* decoded records */
    size_t n;                    /* records in r */
    uint64_t revision;           /* cursor's head */
} recs_t;

static void recs_free(recs_t *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        parksync__v1__record__free_unpacked(rs->r[i], NULL);
    rs->n = 0;
}

static void drain(store_cursor_t *c, recs_t *rs)
{
    const uint8_t *rec;
    size_t len;
    int rc;
    rs->n = 0;
    rs->revision = store_cursor_revision(c);
    while ((rc = store_cursor_next(c, &rec, &len)) == 1 || rc == -EAGAIN) {
        if (rc == -EAGAIN)
            continue; /* a history cursor's share of work is spent: go on */
        cr_assert_lt(rs->n, 64);
        rs->r[rs->n] = parksync__v1__record__unpack(NULL, len, rec);
        cr_assert_not_null(rs->r[rs->n]);
        rs->n++;
    }
    cr_assert_eq(rc, 0, "cursor_next: %d", rc);
}

static void snapshot(store_t *s, Parksync__V1__RecordKind kind, const char *country, recs_t *rs)
{
    store_filter_t f = {.kind = kind};
    int err = 1;
    snprintf(f.country, sizeof(f.country), "%s", country ? country : "");
    store_cursor_t *c = store_snapshot_open(s, &f, &err);
    cr_assert_not_null(c, "snapshot_open: %d", err);
    drain(c, rs);
    store_cursor_close(&c);
    cr_assert_null(c);
}

/* Calls fn with every record of a snapshot of kind, decoded, however
 * many; returns how many. */
static size_t snapshot_each(store_t *s, Parksync__V1__RecordKind kind,
                            void (*fn)(const Parksync__V1__Record *r, void *arg), void *arg)
{
    store_filter_t f = {.kind = kind};
    const uint8_t *rec;
    size_t len, seen = 0;
    int rc, err = 1;
    store_cursor_t *c = store_snapshot_open(s, &f, &err);
    cr_assert_not_null(c, "snapshot_open: %d", err);
    while ((rc = store_cursor_next(c, &rec, &len)) == 1) {
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
        cr_assert_not_null(r);
        fn(r, arg);
        parksync__v1__record__free_unpacked(r, NULL);
        seen++;
    }
    cr_assert_eq(rc, 0, "cursor_next: %d", rc);
    store_cursor_close(&c);
    return seen;
}

/* The live park (country, id) or NULL; caller frees. */
static Parksync__V1__Record *get_park(store_t *s, const char *country, const char *id)
{
    recs_t rs;
    Parksync__V1__Record *found = NULL;
    snapshot(s, K_PARK, country, &rs);
    for (size_t i = 0; i < rs.n; i++) {
        if (!found && strcmp(rs.r[i]->park->park_id, id) == 0) {
            found = rs.r[i];
            rs.r[i] = rs.r[--rs.n];
            rs.r[rs.n] = NULL;
            i--;
        }
    }
    recs_free(&rs);
    return found;
}

static int64_t sql_int(const char *sql)
{
    return sql_int_at(dbpath, sql);
}

static void sql_exec(const char *sql)
{
    sqlite3 *db;
    char *err = NULL;
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &err), SQLITE_OK, "%s: %s", sql, err);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- schema */

Test(store, open_migrate_reopen_keeps_data_and_epoch)
{
    uint8_t epoch[WIRE_EPOCH_BYTES];
    upd_t x;
    store_t *s = open_db();
    memcpy(epoch, store_epoch(s), sizeof(epoch));
    cr_assert_eq(store_head(s), 0);
    cr_assert_eq(store_oldest(s), 1);
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    park_name(&x, "Sumgait Chemical");
    upd_park(&x, "AZ", "AZ-SUMGAIT-CHEM");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    store_close(&s);
    cr_assert_null(s);

    cr_assert_eq(sql_int("PRAGMA user_version"), 11);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE name = 'conflict_recorded'"), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM sqlite_schema WHERE name = 'peer'"), 1);
    /* an earlier build reads meta's head alone: migration 8 keeps it away */
    sql_exec("PRAGMA user_version = 7; UPDATE meta SET value = 0 WHERE key = 'head';"
             " ALTER TABLE changelog DROP COLUMN stamps;" UNDO_10
             " ALTER TABLE resident_agg DROP COLUMN revision;"
             " DELETE FROM meta WHERE key = 'state_from'");
    s = open_db();
    cr_assert_eq(sql_int("SELECT value FROM meta WHERE key = 'head'"), 1,
                 "migration 8 wrote the head the change log tells");
    cr_assert_eq(memcmp(store_epoch(s), epoch, sizeof(epoch)), 0, "epoch changed on reopen");
    cr_assert_eq(store_head(s), 1);
    Parksync__V1__Record *r = get_park(s, "AZ", "AZ-SUMGAIT-CHEM");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->park->name, "Sumgait Chemical");
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);

    char other[128];
    snprintf(other, sizeof(other), "%s/other.db", dir);
    store_t *t = open_at(other, NULL);
    cr_assert_neq(memcmp(store_epoch(t), epoch, sizeof(epoch)), 0, "two databases share an epoch");
    store_close(&t);
    remove_db(other);
}

/* A backup's copy opened as a database is another history: a new epoch
 * each time it is restored, the original's kept; the copy's marker is
 * gone from the live file, so reopening it keeps its epoch. */
Test(store, a_restored_backup_gets_a_new_epoch_each_time)
{
    uint8_t epoch[WIRE_EPOCH_BYTES], first[WIRE_EPOCH_BYTES];
    char copy[128], live[128], cmd[512];
    upd_t x;
    store_t *s = open_db();

    memcpy(epoch, store_epoch(s), sizeof(epoch));
    cr_assert_not(store_epoch_is_new(s));
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-SUMGAIT-CHEM");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    snprintf(copy, sizeof(copy), "%s/copy.db", dir);
    snprintf(live, sizeof(live), "%s/live.db", dir);
    cr_assert_eq(store_backup(s, copy), 0, "%s", store_errmsg(s));
    store_close(&s);
    s = open_db();
    cr_assert_eq(memcmp(store_epoch(s), epoch, sizeof(epoch)), 0, "the original's epoch changed");
    store_close(&s);

    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", copy, live);
        cr_assert_eq(system(cmd), 0);
        s = open_at(live, NULL);
        cr_assert(store_epoch_is_new(s));
        cr_assert_eq(store_head(s), 1);
        cr_assert_neq(memcmp(store_epoch(s), epoch, sizeof(epoch)), 0, "restore %d kept the epoch",
                      i + 1);
        if (i > 0)
            cr_assert_neq(memcmp(store_epoch(s), first, sizeof(first)), 0,
                          "two restores of one backup share an epoch");
        memcpy(first, store_epoch(s), sizeof(first));
        store_close(&s);
        s = open_at(live, NULL);
        cr_assert_not(store_epoch_is_new(s));
        cr_assert_eq(memcmp(store_epoch(s), first, sizeof(first)), 0, "reopening changed it");
        store_close(&s);
        remove_db(live);
    }
    remove_db(copy);
}

Test(store, open_reports_path_and_message)
{
    store_config_t cfg;
    char err[256] = "";
    store_config_init(&cfg);
    cfg.path = "/nonexistent-dir/x/store.db";
    cr_assert_null(store_open(&cfg, err, sizeof(err)));
    cr_assert_not_null(strstr(err, "/nonexistent-dir/x/store.db: "), "err = %s", err);
}

/* ---------------------------------------------------------------- merging */

Test(store, park_update_reads_back_through_snapshot)
{
    upd_t x;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    Parksync__V1__Park *p = upd_park(&x, "AZ", "AZ-SUMGAIT-CHEM");
    park_name(&x, "Sumgait");
    p->region = "Sumgait";
    x.spec_values[0] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
    x.specs.n_values = 1;
    x.specs.values = x.spec_values;
    p->specializations = &x.specs;
    p->has_status = 1;
    p->status = PARKSYNC__V1__PARK_STATUS__PARK_STATUS_OPERATING;
    p->has_area_ha = 1;
    p->area_ha = 400.5;
    p->has_reported_residents = 1;
    p->reported_residents = 23;
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);

    recs_t rs;
    snapshot(s, K_ALL, NULL, &rs);
    cr_assert_eq(rs.n, 1);
    cr_assert_eq(rs.revision, 1);
    Parksync__V1__Record *r = rs.r[0];
    cr_assert_eq(r->revision, 1);
    cr_assert_not(r->deleted);
    cr_assert_eq(r->body_case, PARKSYNC__V1__RECORD__BODY_PARK);
    cr_assert_str_eq(r->park->country, "AZ");
    cr_assert_str_eq(r->park->region, "Sumgait");
    cr_assert_eq(r->park->specializations->n_values, 1);
    cr_assert_eq(r->park->status, PARKSYNC__V1__PARK_STATUS__PARK_STATUS_OPERATING);
    cr_assert_float_eq(r->park->area_ha, 400.5, 1e-9);
    cr_assert_eq(r->park->reported_residents, 23);
    cr_assert_not(r->park->has_reported_investment_usd_cents);
    recs_free(&rs);
    store_close(&s);
}

Test(store, partial_update_touches_only_present_fields)
{
    upd_t x;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    Parksync__V1__Park *p = upd_park(&x, "AZ", "P1");
    park_name(&x, "Old name");
    p->region = "Absheron";
    p->has_reported_residents = 1;
    p->reported_residents = 7;
    apply1(s, &x);

    upd_init(&x, "AZ-MOE", 2, 200, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "New name");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);

    Parksync__V1__Record *r = get_park(s, "AZ", "P1");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->park->name, "New name");
    cr_assert_str_eq(r->park->region, "Absheron");
    cr_assert(r->park->has_reported_residents);
    cr_assert_eq(r->park->reported_residents, 7);
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
}

static void name_write(store_t *s, const char *producer, uint64_t seq, int64_t t,
                       Parksync__V1__Vintage v, const char *name)
{
    upd_t x;
    upd_init(&x, producer, seq, t, v);
    upd_park(&x, "AZ", "P1");
    park_name(&x, name);
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
}

static void expect_name(store_t *s, const char *name)
{
    Parksync__V1__Record *r = get_park(s, "AZ", "P1");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->park->name, name);
    parksync__v1__record__free_unpacked(r, NULL);
}

Test(store, last_writer_wins_by_event_time_then_producer_then_sequence)
{
    store_t *s = open_db();
    name_write(s, "P-A", 1, 100, PROVISIONAL, "a@100");
    name_write(s, "P-B", 1, 50, PROVISIONAL, "b@50"); /* older event time, later arrival */
    expect_name(s, "a@100");
    name_write(s, "P-B", 2, 300, PROVISIONAL, "b@300");
    name_write(s, "P-A", 2, 300, PROVISIONAL, "a@300"); /* tie: P-B > P-A */
    expect_name(s, "b@300");
    name_write(s, "P-B", 3, 400, PROVISIONAL, "b3@400");
    name_write(s, "P-C", 1, 400, PROVISIONAL, "c@400"); /* tie: P-C > P-B */
    expect_name(s, "c@400");
    name_write(s, "P-C", 2, 400, PROVISIONAL, "c2@400"); /* tie on producer: higher sequence */
    expect_name(s, "c2@400");
    cr_assert_geq(sql_int("SELECT count(*) FROM conflict WHERE reason LIKE 'overridden%'"), 2);
    store_close(&s);
}

Test(store, final_beats_later_provisional)
{
    store_t *s = open_db();
    name_write(s, "P-A", 1, 100, FINAL, "final@100");
    name_write(s, "P-A", 2, 200, PROVISIONAL, "prov@200");
    expect_name(s, "final@100");
    name_write(s, "P-A", 3, 300, PARKSYNC__V1__VINTAGE__VINTAGE_REVISED, "revised@300");
    expect_name(s, "final@100");
    name_write(s, "P-A", 4, 300, FINAL, "final@300");
    expect_name(s, "final@300");
    store_close(&s);
}

Test(store, delete_leaves_tombstone_newer_upsert_resurrects)
{
    upd_t x;
    store_t *s = open_db();
    upd_init(&x, "P-A", 1, 100, PROVISIONAL);
    Parksync__V1__Park *p = upd_park(&x, "AZ", "P1");
    park_name(&x, "n@100");
    p->region = "r@100";
    apply1(s, &x);

    upd_init(&x, "P-A", 2, 200, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    upd_make_delete(&x);
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_null(get_park(s, "AZ", "P1"));
    cr_assert_eq(store_head(s), 2);

    /* the deletion was published as Record{deleted, keys only} */
    store_cursor_t *c;
    recs_t rs;
    int err;
    store_filter_t all = {.kind = K_ALL};
    cr_assert_not_null(c = store_changes_open(s, 1, &all, &err));
    drain(c, &rs);
    store_cursor_close(&c);
    cr_assert_eq(rs.n, 1);
    cr_assert(rs.r[0]->deleted);
    cr_assert_str_eq(rs.r[0]->park->park_id, "P1");
    cr_assert_null(rs.r[0]->park->name);
    recs_free(&rs);

    /* a late older upsert stays dead and is recorded */
    upd_init(&x, "P-B", 1, 150, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "n@150");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_null(get_park(s, "AZ", "P1"));
    cr_assert_eq(store_head(s), 2);
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict WHERE reason = 'stale: older than delete'"
                         " AND producer_id = 'P-B' AND key = 'AZ/P1'"),
                 1);

    /* a newer upsert resurrects the record with only what it carries */
    upd_init(&x, "P-B", 2, 300, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "n@300");
    apply1(s, &x);
    Parksync__V1__Record *r = get_park(s, "AZ", "P1");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->park->name, "n@300");
    cr_assert_null(r->park->region);
    cr_assert_eq(r->revision, 3);
    parksync__v1__record__free_unpacked(r, NULL);

    /* a delete of a never-seen record keeps an older upsert dead; its
     * tombstone is a change of the merge state, published as a deleted
     * record, so that a site replicating this one keeps it dead too */
    upd_init(&x, "P-A", 3, 500, PROVISIONAL);
    upd_park(&x, "TJ", "TJ-DANGARA");
    upd_make_delete(&x);
    apply1(s, &x);
    cr_assert_eq(store_head(s), 4, "the tombstone of a never-seen record was not published");
    cr_assert_eq(sql_int("SELECT deleted FROM park WHERE park_id = 'TJ-DANGARA'"), 1);
    apply1(s, &x);
    cr_assert_eq(store_head(s), 4, "the same delete again made a revision");
    upd_init(&x, "P-B", 3, 400, PROVISIONAL);
    upd_park(&x, "TJ", "TJ-DANGARA");
    park_name(&x, "Dangara");
    apply1(s, &x);
    cr_assert_null(get_park(s, "TJ", "TJ-DANGARA"));
    store_close(&s);
}

/* ---------------------------------------------------------------- sequencing */

Test(store, duplicate_gap_reject_and_sequence_survive_reopen)
{
    upd_t x;
    store_outcome_t out;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_eq(apply1(s, &x), STORE_DUPLICATE);
    x.u.sequence = 3;
    cr_assert_eq(apply1(s, &x), STORE_GAP);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 1);

    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_begin(s), -EBUSY);
    x.u.sequence = 2;
    cr_assert_eq(store_reject(s, &x.u, "invalid: park.name", &out), 0);
    cr_assert_eq(out, STORE_REJECTED);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 2);
    cr_assert_eq(store_reject(s, &x.u, "again", &out), 0);
    cr_assert_eq(out, STORE_DUPLICATE);
    cr_assert_eq(store_commit(s), 0);
    x.u.sequence = 3;
    cr_assert_eq(apply1(s, &x), STORE_APPLIED); /* sequence 3 now follows */
    cr_assert_eq(store_producer_last(s, "nobody"), 0);
    store_close(&s);

    s = open_db();
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 3);
    x.u.sequence = 3;
    cr_assert_eq(apply1(s, &x), STORE_DUPLICATE);
    store_close(&s);
    cr_assert_eq(sql_int("SELECT applied FROM producer WHERE producer_id = 'AZ-MOE'"), 2);
    cr_assert_eq(sql_int("SELECT duplicates FROM producer WHERE producer_id = 'AZ-MOE'"), 3);
    cr_assert_eq(sql_int("SELECT gaps FROM producer WHERE producer_id = 'AZ-MOE'"), 1);
    cr_assert_eq(sql_int("SELECT rejected FROM producer WHERE producer_id = 'AZ-MOE'"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict WHERE reason = 'invalid: park.name'"
                         " AND sequence = 2"),
                 1);
    /* the rejection names the record its update named */
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict WHERE sequence = 2 AND kind = 1"
                         " AND key = 'AZ/P1' AND country = 'AZ' AND event_time_us = 100"),
                 1);
}

Test(store, rollback_leaves_nothing)
{
    upd_t x;
    store_outcome_t out;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    apply1(s, &x);
    cr_assert_eq(store_head(s), 1);

    cr_assert_eq(store_begin(s), 0);
    upd_init(&x, "AZ-MOE", 2, 200, PROVISIONAL);
    upd_park(&x, "AZ", "P2");
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    upd_init(&x, "TJ-MINT", 1, 200, PROVISIONAL);
    upd_park(&x, "TJ", "T1");
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(store_head(s), 3);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 2);
    store_rollback(s);

    cr_assert_eq(store_head(s), 1);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 1);
    cr_assert_eq(store_producer_last(s, "TJ-MINT"), 0);
    recs_t rs;
    snapshot(s, K_ALL, NULL, &rs);
    cr_assert_eq(rs.n, 1);
    recs_free(&rs);
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), 1);
    upd_init(&x, "AZ-MOE", 2, 200, PROVISIONAL);
    upd_park(&x, "AZ", "P2");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_eq(store_head(s), 2);
    store_rollback(s); /* no batch: nothing happens */
    store_close(&s);
}

/* The store keeps recently merged rows in memory across batches; a
 * rolled-back batch must not leave its versions there. */
Test(store, rollback_forgets_cached_rows)
{
    upd_t x;
    store_outcome_t out;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "Sumgait");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);

    cr_assert_eq(store_begin(s), 0);
    upd_init(&x, "AZ-MOE", 2, 200, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "rolled back");
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    store_rollback(s);

    /* a later update of another field merges with the committed name */
    upd_init(&x, "AZ-MOE", 2, 300, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    x.park.has_reported_residents = 1;
    x.park.reported_residents = 7;
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    Parksync__V1__Record *r = get_park(s, "AZ", "P1");
    cr_assert_not_null(r);
    cr_assert_str_eq(r->park->name, "Sumgait");
    cr_assert_eq(r->park->reported_residents, 7);
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
}

/* Each change keeps the version it replaced, also when the replaced one
 * came from the in-memory rows of an earlier batch or of the same batch
 * before a flush: the state at every revision rebuilds exactly. */
Test(store, history_through_cached_rows)
{
    static const char *const names[] = {"A", "B", "C", "D"};
    uint64_t rev[4];
    uint8_t digest[32];
    upd_t x;
    store_outcome_t out;
    store_t *s = open_db();
    for (int i = 0; i < 2; i++) {
        upd_init(&x, "AZ-MOE", (uint64_t)i + 1, 100 * (i + 1), PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        park_name(&x, names[i]);
        cr_assert_eq(apply1(s, &x), STORE_APPLIED);
        rev[i] = store_head(s);
    }
    cr_assert_eq(store_begin(s), 0);
    for (int i = 2; i < 4; i++) {
        upd_init(&x, "AZ-MOE", (uint64_t)i + 1, 100 * (i + 1), PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        park_name(&x, names[i]);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
        cr_assert_eq(out, STORE_APPLIED);
        rev[i] = store_head(s);
        cr_assert_eq(store_digest(s, digest), 0); /* flushes the batch's rows */
    }
    cr_assert_eq(store_commit(s), 0);
    for (int i = 0; i < 4; i++) {
        store_filter_t f = {.kind = K_PARK};
        recs_t rs = {0};
        int err = 1;
        if (i > 0)
            cr_assert_gt(rev[i], rev[i - 1], "every change has its own revision");
        store_cursor_t *c = store_snapshot_at_open(s, &f, rev[i], &err);
        cr_assert_not_null(c, "at %" PRIu64 ": %d", rev[i], err);
        drain(c, &rs);
        store_cursor_close(&c);
        cr_assert_eq(rs.n, 1);
        cr_assert_str_eq(rs.r[0]->park->name, names[i], "at revision %" PRIu64, rev[i]);
        recs_free(&rs);
    }
    store_close(&s);
}

/* The name of park P1 at revision `at` in a history snapshot; rc is
 * what the cursor ended with (0, or a negative errno). */
static void park_name_at(store_t *s, uint64_t at, char *name, size_t size, int *rc)
{
    store_filter_t f = {.kind = K_PARK};
    const uint8_t *rec;
    size_t len;
    int err = 1;
    store_cursor_t *c = store_snapshot_at_open(s, &f, at, &err);
    cr_assert_not_null(c, "at %" PRIu64 ": %d", at, err);
    name[0] = '\0';
    while ((*rc = store_cursor_next(c, &rec, &len)) == 1 || *rc == -EAGAIN) {
        if (*rc == -EAGAIN)
            continue;
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
        cr_assert_not_null(r);
        snprintf(name, size, "%s", r->park->name);
        parksync__v1__record__free_unpacked(r, NULL);
    }
    store_cursor_close(&c);
}

/* A change of a long record logs the version it replaced as a
 * difference of a few bytes, not the record again, and the state at
 * every revision rebuilds from differences as from whole prevs (what
 * rows logged before schema 11 hold): each difference rewritten whole
 * reads the same. One that does not fit its record fails the history
 * (-EBADMSG), and nothing else. */
Test(store, history_from_differences_and_whole_prevs)
{
    enum { N = 12 };
    char names[N][32], name[256], sql[256];
    uint64_t rev[N];
    upd_t x;
    int rc;
    store_t *s = open_db();
    for (int i = 0; i < N; i++) {
        memset(names[i], 'n', 27); /* upd_t holds 31 bytes of a name */
        snprintf(names[i] + 27, 5, "-%02d", i);
        upd_init(&x, "AZ-MOE", (uint64_t)i + 1, 100 * (i + 1), PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        park_name(&x, names[i]);
        cr_assert_eq(apply1(s, &x), STORE_APPLIED);
        rev[i] = store_head(s);
    }
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM changelog WHERE kind = %d AND hex(substr(prev, 1, 1)) = '00'"
             " AND length(prev) < 24",
             (int)K_PARK);
    cr_assert_eq(sql_int(sql), N - 1, "every change but the first logs a short difference");
    for (int i = 0; i < N; i++) {
        park_name_at(s, rev[i], name, sizeof name, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_str_eq(name, names[i], "from differences, at %" PRIu64 ": %s", rev[i], name);
    }

    /* the same log with every prev whole */
    sqlite3 *db;
    sqlite3_stmt *sel, *put;
    buf_t whole = {0};
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT revision, prev, record FROM changelog"
                                    " WHERE hex(substr(prev, 1, 1)) = '00'",
                                    -1, &sel, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "UPDATE changelog SET prev = ?2 WHERE revision = ?1", -1,
                                    &put, NULL),
                 SQLITE_OK);
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    while (sqlite3_step(sel) == SQLITE_ROW) {
        cr_assert_eq(prev_decode(&whole, sqlite3_column_blob(sel, 1),
                                 (size_t)sqlite3_column_bytes(sel, 1), sqlite3_column_blob(sel, 2),
                                 (size_t)sqlite3_column_bytes(sel, 2)),
                     0);
        sqlite3_bind_int64(put, 1, sqlite3_column_int64(sel, 0));
        sqlite3_bind_blob(put, 2, whole.data, (int)whole.len, SQLITE_STATIC);
        cr_assert_eq(sqlite3_step(put), SQLITE_DONE);
        sqlite3_reset(put);
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(put);
    cr_assert_eq(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    buf_free(&whole);
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog WHERE hex(substr(prev, 1, 1)) = '00'"), 0);
    for (int i = 0; i < N; i++) {
        park_name_at(s, rev[i], name, sizeof name, &rc);
        cr_assert_eq(rc, 0);
        cr_assert_str_eq(name, names[i], "from whole prevs, at %" PRIu64, rev[i]);
    }

    /* a difference that claims more of its record than there is */
    snprintf(sql, sizeof sql, "UPDATE changelog SET prev = x'0001ff01' WHERE revision = %" PRIu64,
             rev[N - 1]);
    sql_exec(sql);
    park_name_at(s, rev[0], name, sizeof name, &rc);
    cr_assert_eq(rc, -EBADMSG, "a difference that does not fit: %d", rc);
    park_name_at(s, rev[N - 1], name, sizeof name, &rc);
    cr_assert_eq(rc, 0, "the present needs no prev");
    cr_assert_str_eq(name, names[N - 1]);
    store_close(&s);
}

/* Park P<k> is named after its last update, last[k]. */
static void check_last_name(const Parksync__V1__Record *r, void *arg)
{
    const uint32_t *last = arg;
    char name[16];
    unsigned k = (unsigned)strtoul(r->park->park_id + 1, NULL, 10);
    snprintf(name, sizeof name, "n%" PRIu32, last[k]);
    cr_assert_str_eq(r->park->name, name, "park %s", r->park->park_id);
}

/* More rows than the row cache holds (8,192), in batches small and
 * large (one touches more rows than the cache, so every entry is dirty
 * when it fills and the batch's rows are written mid-batch), with a hot
 * set merged again and again between cold rows that evict: every record
 * ends as its last update left it, in the store and after a reopen. */
Test(store, the_row_cache_evicts_without_losing_a_change)
{
    enum { KEYS = 3 * 8192, HOT = 50, UPDATES = 50000 };
    static const unsigned batches[] = {1, 100, 3000, 20000};
    static uint32_t last[KEYS]; /* sequence of each park's last update; 0: none */
    uint64_t rng = 15, seq = 0;
    char id[16], name[16];
    upd_t x;
    store_outcome_t out;
    store_t *s = open_db();

    for (size_t b = 0; seq < UPDATES; b++) {
        cr_assert_eq(store_begin(s), 0);
        for (unsigned i = 0; i < batches[b % 4] && seq < UPDATES; i++) {
            unsigned k = rnd(&rng, 4) == 0 ? rnd(&rng, HOT) : rnd(&rng, KEYS);
            snprintf(id, sizeof id, "P%u", k);
            snprintf(name, sizeof name, "n%" PRIu64, ++seq);
            upd_init(&x, "AZ-MOE", seq, (int64_t)seq, PROVISIONAL);
            upd_park(&x, "AZ", id);
            park_name(&x, name);
            cr_assert_eq(store_apply(s, &x.u, &out), 0, "%s", store_errmsg(s));
            cr_assert_eq(out, STORE_APPLIED);
            last[k] = (uint32_t)seq;
        }
        cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
    }
    size_t written = 0;
    for (unsigned k = 0; k < KEYS; k++)
        written += last[k] != 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t seen = snapshot_each(s, K_PARK, check_last_name, last);
        cr_assert_eq(seen, written, "parks: %zu, written: %zu (pass %d)", seen, written, pass);
        store_close(&s);
        s = open_db();
    }
    store_close(&s);
}

/* Appends a version-1 stamp (one per slot, as databases written before
 * shared stamps hold them) for field `id` to b. */
static size_t v1_slot(uint8_t *b, uint8_t id, int64_t t, const char *producer, uint8_t seq)
{
    size_t n = 0, plen = strlen(producer);
    b[n++] = id;
    b[n++] = (uint8_t)PROVISIONAL;
    for (int i = 7; i >= 0; i--)
        b[n++] = (uint8_t)((uint64_t)t >> (8 * i));
    b[n++] = seq;
    b[n++] = (uint8_t)plen;
    memcpy(b + n, producer, plen);
    return n + plen;
}

/* Rows written with the first stamps encoding still merge by their
 * stamps, and are rewritten in the current one when they change. */
Test(store, reads_version_1_stamps)
{
    uint8_t blob[128];
    size_t n = 0;
    sqlite3 *db;
    sqlite3_stmt *st;
    upd_t x;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 100, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "Old");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    store_close(&s);

    /* key slot and name (field 3) stamped at 500 by AZ-MOE#1, no tombstone */
    blob[n++] = 1;
    blob[n++] = 0;
    blob[n++] = 2;
    n += v1_slot(blob + n, 0, 500, "AZ-MOE", 1);
    n += v1_slot(blob + n, 3, 500, "AZ-MOE", 1);
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_prepare_v2(db, "UPDATE park SET stamps = ?1 WHERE park_id = 'P1'", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(st, 1, blob, (int)n, SQLITE_STATIC);
    cr_assert_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);

    s = open_db();
    upd_init(&x, "AZ-MOE", 2, 400, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "Older");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    Parksync__V1__Record *r = get_park(s, "AZ", "P1");
    cr_assert_str_eq(r->park->name, "Old", "the stored stamp (500) is newer than 400");
    parksync__v1__record__free_unpacked(r, NULL);
    upd_init(&x, "AZ-MOE", 3, 600, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "New");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    r = get_park(s, "AZ", "P1");
    cr_assert_str_eq(r->park->name, "New");
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict WHERE sequence = 2"), 1);
    cr_assert_eq(sql_int("SELECT unicode(stamps) FROM park WHERE park_id = 'P1'"), 2);
    cr_assert_lt(sql_int("SELECT length(stamps) FROM park WHERE park_id = 'P1'"), (int64_t)n);
}

/* ---------------------------------------------------------------- revisions, change log */

Test(store, revisions_follow_the_merge_state_and_no_ops_make_none)
{
    upd_t x;
    store_t *s = open_db();
    name_write(s, "P-A", 1, 100, PROVISIONAL, "same");
    cr_assert_eq(store_head(s), 1);
    /* an equal value with a newer stamp moves the field's stamp: a change
     * of the merge state, which replication must carry */
    name_write(s, "P-A", 2, 200, PROVISIONAL, "same");
    cr_assert_eq(store_head(s), 2, "a newer stamp of an equal value made no revision");
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), 2);
    /* the newer stamp was kept: an older write loses to it, and losing
     * changes nothing, so it makes no revision */
    name_write(s, "P-B", 1, 150, PROVISIONAL, "between");
    expect_name(s, "same");
    cr_assert_eq(store_head(s), 2, "an update that lost every field made a revision");
    name_write(s, "P-A", 3, 300, PROVISIONAL, "other");
    cr_assert_eq(store_head(s), 3);
    upd_init(&x, "P-A", 4, 400, PROVISIONAL);
    upd_park(&x, "AZ", "P2");
    apply1(s, &x);
    cr_assert_eq(store_head(s), 4);
    cr_assert_eq(sql_int("SELECT max(revision) FROM changelog"), 4);
    cr_assert_eq(sql_int("SELECT revision FROM park WHERE park_id = 'P1'"), 3);
    store_close(&s);
}

typedef struct seen {
    uint64_t revs[64]; /* revisions seen */
    size_t n;          /* entries in revs */
    size_t stop_after; /* return non-zero after this many; 0 = never */
} seen_t;

static int on_change(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                     const char *country, const uint8_t *record, size_t len)
{
    seen_t *sn = arg;
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, record);
    cr_assert_not_null(r);
    cr_assert_eq(r->revision, revision);
    cr_assert_eq(kind, K_PARK);
    cr_assert_str_eq(country, "AZ");
    parksync__v1__record__free_unpacked(r, NULL);
    sn->revs[sn->n++] = revision;
    return sn->stop_after && sn->n >= sn->stop_after;
}

Test(store, changes_cursor_and_callback_and_retention)
{
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.changelog_keep = 10;
    store_t *s = open_at(dbpath, &cfg);
    /* one batch per update: each commit changes P1, so each gets a revision */
    for (int i = 1; i <= 5; i++) {
        upd_t x;
        char name[16];
        upd_init(&x, "AZ-MOE", (uint64_t)i, i * 10, PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        snprintf(name, sizeof(name), "n%d", i);
        park_name(&x, name);
        cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    }
    cr_assert_eq(store_head(s), 5);

    seen_t sn = {0};
    cr_assert_eq(store_changes(s, 2, on_change, &sn), 0);
    cr_assert_eq(sn.n, 3);
    cr_assert_eq(sn.revs[0], 3);
    cr_assert_eq(sn.revs[2], 5);
    sn = (seen_t){.stop_after = 1};
    cr_assert_eq(store_changes(s, 0, on_change, &sn), 0);
    cr_assert_eq(sn.n, 1);

    store_filter_t f = {.kind = K_ALL};
    int err = 0;
    recs_t rs;
    store_cursor_t *c = store_changes_open(s, 3, &f, &err);
    cr_assert_not_null(c, "%d", err);
    drain(c, &rs);
    store_cursor_close(&c);
    cr_assert_eq(rs.n, 2);
    cr_assert_eq(rs.revision, 5);
    cr_assert_eq(rs.r[0]->revision, 4);
    cr_assert_str_eq(rs.r[1]->park->name, "n5");
    recs_free(&rs);
    snprintf(f.country, sizeof(f.country), "TJ");
    c = store_changes_open(s, 0, &f, &err);
    drain(c, &rs);
    store_cursor_close(&c);
    cr_assert_eq(rs.n, 0);

    /* 30 revisions with keep = 10: old ones are pruned */
    for (int i = 6; i <= 30; i++) {
        upd_t x;
        char name[16];
        upd_init(&x, "AZ-MOE", (uint64_t)i, i * 10, PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        snprintf(name, sizeof(name), "n%d", i);
        park_name(&x, name);
        cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    }
    cr_assert_eq(store_head(s), 30);
    cr_assert_eq(store_oldest(s), 21);
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), 10);
    f.country[0] = '\0';
    err = 0;
    cr_assert_null(store_changes_open(s, 5, &f, &err));
    cr_assert_eq(err, -ERANGE);
    cr_assert_eq(store_changes(s, 5, on_change, &sn), -ERANGE);
    c = store_changes_open(s, 20, &f, &err);
    cr_assert_not_null(c, "%d", err);
    drain(c, &rs);
    store_cursor_close(&c);
    cr_assert_eq(rs.n, 10);
    recs_free(&rs);
    c = store_changes_open(s, 30, &f, &err); /* at head: empty, not an error */
    cr_assert_not_null(c);
    store_cursor_close(&c);
    cr_assert_null(store_changes_open(s, 35, &f, &err)); /* beyond: another history */
    cr_assert_eq(err, -EINVAL);
    store_close(&s);
}

/* A record changed several times in one batch is written once, with one
 * revision and one change-log entry holding its final version and the
 * version before the batch; nobody can see the versions in between. */
Test(store, one_revision_per_record_and_batch)
{
    store_t *s = open_at(dbpath, NULL);
    store_outcome_t out;
    upd_t x;

    upd_init(&x, "AZ-MOE", 1, 10, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    park_name(&x, "first");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_eq(store_head(s), 1);

    cr_assert_eq(store_begin(s), 0);
    for (int i = 2; i <= 6; i++) {
        char name[16];
        upd_init(&x, "AZ-MOE", (uint64_t)i, i * 10, PROVISIONAL);
        upd_park(&x, "AZ", i % 2 ? "P1" : "P2");
        snprintf(name, sizeof(name), "n%d", i);
        park_name(&x, name);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
        cr_assert_eq(out, STORE_APPLIED);
    }
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_head(s), 3, "P1 and P2 changed in the batch: two revisions");
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), 3);
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog WHERE prev IS NOT NULL"), 1,
                 "only P1 replaced a published version");

    recs_t rs;
    store_filter_t f = {.kind = K_ALL};
    int err = 0;
    store_cursor_t *c = store_changes_open(s, 1, &f, &err);
    cr_assert_not_null(c, "%d", err);
    drain(c, &rs);
    store_cursor_close(&c);
    cr_assert_eq(rs.n, 2);
    cr_assert_str_eq(rs.r[0]->park->park_id, "P2", "P2 changed first in the batch");
    cr_assert_str_eq(rs.r[0]->park->name, "n6", "its final version");
    cr_assert_eq(rs.r[0]->revision, 2);
    cr_assert_str_eq(rs.r[1]->park->park_id, "P1");
    cr_assert_str_eq(rs.r[1]->park->name, "n5");
    cr_assert_eq(rs.r[1]->revision, 3);
    recs_free(&rs);
    store_close(&s);
}

/* ---------------------------------------------------------------- trade */

static void trade_report(store_t *s, const char *producer, uint64_t seq, const char *reporter,
                         const char *partner, Parksync__V1__TradeDirection d, int64_t cents)
{
    upd_t x;
    upd_init(&x, producer, seq, 1000 + (int64_t)seq, PROVISIONAL);
    Parksync__V1__TradeReport *t = upd_trade(&x, reporter, partner, d, 2020, 1, 10);
    t->has_value_usd_cents = 1;
    t->value_usd_cents = cents;
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
}

Test(store, trade_flow_two_sides_importer_first_flagged)
{
    store_t *s = open_db();
    trade_report(s, "AZ-MOE", 1, "AZ", "TJ", EXPORTS, 1000000);
    trade_report(s, "TJ-MINT", 1, "TJ", "AZ", IMPORTS, 880000);

    recs_t rs;
    snapshot(s, K_TRADE, NULL, &rs);
    cr_assert_eq(rs.n, 1);
    Parksync__V1__TradeFlow *f = rs.r[0]->trade;
    cr_assert_str_eq(f->exporter, "AZ");
    cr_assert_str_eq(f->importer, "TJ");
    cr_assert_eq(f->period->year, 2020);
    cr_assert_eq(f->period->last_month, 10);
    cr_assert_eq(f->exporter_reported_usd_cents, 1000000);
    cr_assert_eq(f->importer_reported_usd_cents, 880000);
    cr_assert_eq(f->value_usd_cents, 880000);
    cr_assert_eq(f->rule, PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST);
    cr_assert_eq(f->discrepancy_usd_cents, -120000);
    cr_assert_float_eq(f->discrepancy_pct, 12.0, 1e-9);
    cr_assert(f->has_flagged && f->flagged);
    cr_assert_eq(f->vintage, PROVISIONAL);
    recs_free(&rs);
    cr_assert_eq(sql_int("SELECT value_cents FROM trade_flow"), 880000);
    store_close(&s);

    /* other rule, higher threshold: not flagged */
    char other[128];
    snprintf(other, sizeof(other), "%s/mean.db", dir);
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.trade_rule = PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN;
    cfg.trade_threshold_pct = 15.0;
    s = open_at(other, &cfg);
    trade_report(s, "AZ-MOE", 1, "AZ", "TJ", EXPORTS, 1000001);
    snapshot(s, K_TRADE, NULL, &rs);
    cr_assert_eq(rs.r[0]->trade->value_usd_cents, 1000001, "one side only: its figure");
    cr_assert_not(rs.r[0]->trade->has_discrepancy_usd_cents);
    recs_free(&rs);
    trade_report(s, "TJ-MINT", 1, "TJ", "AZ", IMPORTS, 880000);
    snapshot(s, K_TRADE, NULL, &rs);
    cr_assert_eq(rs.r[0]->trade->value_usd_cents, 940001, "mean rounds half away from zero");
    cr_assert_eq(rs.r[0]->trade->rule, PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN);
    cr_assert(rs.r[0]->trade->has_flagged && !rs.r[0]->trade->flagged);
    recs_free(&rs);
    store_close(&s);
    remove_db(other);
}

/* ---------------------------------------------------------------- summaries */

static Parksync__V1__Record *get_summary(store_t *s, const char *country)
{
    recs_t rs;
    snapshot(s, K_SUMMARY, country, &rs);
    cr_assert_eq(rs.n, 1, "summaries of %s: %zu", country, rs.n);
    Parksync__V1__Record *r = rs.r[0];
    rs.n = 0;
    return r;
}

Test(store, summary_of_demo_data)
{
    static const char *ids[5] = {"AZ-SUMGAIT-CHEM", "AZ-BALAKHANI", "AZ-MINGACHEVIR",
                                 "AZ-PIRALLAHI", "AZ-GOBUSTAN"};
    static const uint32_t residents[5] = {23, 12, 8, 4, 3};
    static const int64_t invest[5] = {200000000000, 90000000000, 50000000000, 25000000000,
                                      15000000000};
    store_t *s = open_db();
    store_outcome_t out;
    cr_assert_eq(store_begin(s), 0);
    for (int i = 0; i < 5; i++) {
        upd_t x;
        upd_init(&x, "AZ-MOE", (uint64_t)i + 1, 100, FINAL);
        Parksync__V1__Park *p = upd_park(&x, "AZ", ids[i]);
        p->has_reported_residents = 1;
        p->reported_residents = residents[i];
        p->has_reported_investment_usd_cents = 1;
        p->reported_investment_usd_cents = invest[i];
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
    }
    upd_t x;
    upd_init(&x, "AZ-MOE", 6, 100, FINAL);
    Parksync__V1__CountryReport *cr = upd_country(&x, "AZ", 2020, 1, 9);
    cr->has_parks_non_oil_production_share_bp = 1;
    cr->parks_non_oil_production_share_bp = 1060;
    cr->has_parks_export_share_bp = 1;
    cr->parks_export_share_bp = 2030;
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    /* one resident in the first park: 1 known against 23 reported */
    upd_init(&x, "AZ-MOE", 7, 100, FINAL);
    Parksync__V1__Resident *r = upd_resident(&x, "AZ", ids[0], "R1");
    r->has_investment_usd_cents = 1;
    r->investment_usd_cents = 5000000000;
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(store_commit(s), 0);
    trade_report(s, "AZ-MOE", 8, "AZ", "TJ", EXPORTS, 200000000);
    trade_report(s, "TJ-MINT", 1, "TJ", "AZ", EXPORTS, 90000000);

    cr_assert(store_summaries_dirty(s));
    cr_assert_eq(store_refresh_summaries(s), -EINVAL, "refresh outside a batch");
    cr_assert_eq(store_begin(s), 0);
    uint64_t head = store_head(s);
    cr_assert_eq(store_refresh_summaries(s), 2);
    cr_assert_eq(store_head(s), head + 2);
    cr_assert_not(store_summaries_dirty(s));
    cr_assert_eq(store_refresh_summaries(s), 0);
    cr_assert_eq(store_commit(s), 0);

    Parksync__V1__Record *rec = get_summary(s, "AZ");
    Parksync__V1__CountrySummary *sum = rec->summary;
    cr_assert_str_eq(sum->country, "AZ");
    cr_assert_eq(sum->parks, 5);
    cr_assert_eq(sum->reported_residents, 50);
    cr_assert_eq(sum->reported_investment_usd_cents, 380000000000);
    cr_assert_eq(sum->known_residents, 1);
    cr_assert_eq(sum->known_investment_usd_cents, 5000000000);
    cr_assert_eq(sum->n_turnover, 1);
    cr_assert_str_eq(sum->turnover[0]->partner, "TJ");
    cr_assert_eq(sum->turnover[0]->period->first_month, 1);
    cr_assert_eq(sum->turnover[0]->period->last_month, 10);
    cr_assert_eq(sum->turnover[0]->exports_usd_cents, 200000000);
    cr_assert_eq(sum->turnover[0]->imports_usd_cents, 90000000);
    cr_assert_eq(sum->turnover[0]->turnover_usd_cents, 290000000);
    cr_assert_eq(sum->turnover[0]->exports_reported_by_country_usd_cents, 200000000);
    cr_assert_eq(sum->turnover[0]->imports_reported_by_partner_usd_cents, 90000000);
    cr_assert_not(sum->turnover[0]->has_imports_reported_by_country_usd_cents);
    cr_assert_eq(sum->n_indicators, 1);
    cr_assert_eq(sum->indicators[0]->parks_non_oil_production_share_bp, 1060);
    cr_assert_eq(sum->n_mismatches, 5);
    cr_assert_str_eq(sum->mismatches[0]->park_id, "AZ-BALAKHANI", "sorted by park id");
    cr_assert_str_eq(sum->mismatches[4]->park_id, "AZ-SUMGAIT-CHEM");
    cr_assert_eq(sum->mismatches[4]->known_residents, 1);
    cr_assert_eq(sum->mismatches[4]->reported_residents, 23);
    parksync__v1__record__free_unpacked(rec, NULL);

    rec = get_summary(s, "TJ");
    cr_assert_eq(rec->summary->parks, 0);
    cr_assert_eq(rec->summary->n_turnover, 1);
    cr_assert_str_eq(rec->summary->turnover[0]->partner, "AZ");
    cr_assert_eq(rec->summary->turnover[0]->exports_usd_cents, 90000000);
    cr_assert_eq(rec->summary->turnover[0]->turnover_usd_cents, 290000000);
    parksync__v1__record__free_unpacked(rec, NULL);
    store_close(&s);
}

/* ---------------------------------------------------------------- unknown fields */

/* Issue 11, defect 5: a record keeps no unknown field of any update. An
 * older figure for a flow whose Period carries other unknown fields loses
 * and changes nothing (no revision); the stored key, specializations and
 * bodies hold known fields only. */
Test(store, unknown_fields_reach_no_record_and_make_no_revision)
{
    store_t *s = open_db();
    recs_t rs;
    upd_t x;

    upd_init(&x, "AZ-MOE", 1, 200, PROVISIONAL);
    Parksync__V1__TradeReport *t = upd_trade(&x, "AZ", "TJ", EXPORTS, 2020, 1, 10);
    t->has_value_usd_cents = 1;
    t->value_usd_cents = 100;
    upd_unknown(&x, &x.period.base, 0x123456789ULL);
    upd_unknown(&x, &x.trade.base, 0x2345678ULL);
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    uint64_t head = store_head(s);
    upd_init(&x, "AZ-MOE", 2, 100, PROVISIONAL);
    t = upd_trade(&x, "AZ", "TJ", EXPORTS, 2020, 1, 10);
    t->has_value_usd_cents = 1;
    t->value_usd_cents = 50;
    upd_unknown(&x, &x.period.base, 0xabcdefULL);
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_eq(store_head(s), head, "an update that lost every field made a revision");

    upd_init(&x, "AZ-MOE", 3, 100, PROVISIONAL);
    Parksync__V1__CountryReport *cr = upd_country(&x, "AZ", 2020, 1, 9);
    cr->has_parks_export_share_bp = 1;
    cr->parks_export_share_bp = 2030;
    upd_unknown(&x, &x.period.base, 0x3456ULL);
    upd_unknown(&x, &x.country.base, 0x4567ULL);
    upd_unknown(&x, &x.u.base, 0x5678ULL);
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    upd_init(&x, "AZ-MOE", 4, 100, PROVISIONAL);
    Parksync__V1__Park *p = upd_park(&x, "AZ", "AZ-P1");
    x.specs.n_values = 1;
    x.specs.values = x.spec_values;
    x.spec_values[0] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
    p->specializations = &x.specs;
    upd_unknown(&x, &x.specs.base, 0x6789ULL);
    upd_unknown(&x, &x.park.base, 0x789aULL);
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);

    snapshot(s, K_ALL, NULL, &rs);
    cr_assert_eq(rs.n, 3, "park, trade flow, country report");
    for (size_t i = 0; i < rs.n; i++) {
        const Parksync__V1__Record *r = rs.r[i];
        cr_assert_eq(r->base.n_unknown_fields, 0);
        if (r->body_case == PARKSYNC__V1__RECORD__BODY_TRADE) {
            cr_assert_eq(r->trade->value_usd_cents, 100);
            cr_assert_eq(r->trade->base.n_unknown_fields, 0);
            cr_assert_eq(r->trade->period->base.n_unknown_fields, 0, "the key's Period");
        } else if (r->body_case == PARKSYNC__V1__RECORD__BODY_COUNTRY) {
            cr_assert_eq(r->country->base.n_unknown_fields, 0);
            cr_assert_eq(r->country->period->base.n_unknown_fields, 0, "the key's Period");
        } else {
            cr_assert_eq(r->park->base.n_unknown_fields, 0);
            cr_assert_eq(r->park->specializations->n_values, 1);
            cr_assert_eq(r->park->specializations->base.n_unknown_fields, 0);
        }
    }
    recs_free(&rs);
    store_close(&s);
}

/* What a batch's commit will publish: a change once per country it
 * concerns (a trade flow on both countries' topics), a record changed
 * again in the same batch once, nothing outside a batch. */
Test(store, a_batch_counts_its_changes_once_per_country)
{
    store_t *s = open_db();
    upd_t x;
    store_outcome_t out;

    cr_assert_eq(store_batch_changes(s), 0);
    cr_assert_eq(store_begin(s), 0);
    for (uint64_t seq = 1; seq <= 2; seq++) {
        upd_init(&x, "AZ-MOE", seq, 1000 + (int64_t)seq, PROVISIONAL);
        Parksync__V1__TradeReport *t = upd_trade(&x, "AZ", "TJ", EXPORTS, 2020, 1, 10);
        t->has_value_usd_cents = 1;
        t->value_usd_cents = 1000 * (int64_t)seq;
        cr_assert_eq(store_apply(s, &x.u, &out), 0, "%s", store_errmsg(s));
        cr_assert_eq(store_batch_changes(s), 2, "the flow, after update %" PRIu64, seq);
    }
    upd_init(&x, "AZ-MOE", 3, 1003, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-P1");
    cr_assert_eq(store_apply(s, &x.u, &out), 0, "%s", store_errmsg(s));
    cr_assert_eq(store_batch_changes(s), 3, "and a park");
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_batch_changes(s), 0, "after the commit");
    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_batch_changes(s), 0, "a new batch");
    store_rollback(s);
    store_close(&s);
}

/* ---------------------------------------------------------------- money at the bounds */

#define CENTS_MAX 100000000000000000LL /* 10^17: the largest amount an update may carry */

static void apply_in_batch(store_t *s, const upd_t *x)
{
    store_outcome_t out = STORE_GAP;
    int rc = store_apply(s, &x->u, &out);
    cr_assert_eq(rc, 0, "apply: %d %s", rc, store_errmsg(s));
    cr_assert_eq(out, STORE_APPLIED);
}

/* A park of `country` with reported figures, in the open batch. */
static void money_park(store_t *s, const char *producer, uint64_t seq, const char *country,
                       const char *id, uint32_t residents, int64_t cents)
{
    upd_t x;
    upd_init(&x, producer, seq, 100, PROVISIONAL);
    Parksync__V1__Park *p = upd_park(&x, country, id);
    p->has_reported_residents = 1;
    p->reported_residents = residents;
    p->has_reported_investment_usd_cents = 1;
    p->reported_investment_usd_cents = cents;
    apply_in_batch(s, &x);
}

/* A resident with an investment, in the open batch. */
static void money_resident(store_t *s, const char *producer, uint64_t seq, const char *country,
                           const char *park, const char *id, int64_t cents)
{
    upd_t x;
    upd_init(&x, producer, seq, 100, PROVISIONAL);
    Parksync__V1__Resident *r = upd_resident(&x, country, park, id);
    r->has_investment_usd_cents = 1;
    r->investment_usd_cents = cents;
    apply_in_batch(s, &x);
}

/* ---------------------------------------------------------------- deferred state */

#define K_RESIDENT PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT

/* Resident R<i> of AZ/P1 in the open batch: its investment, its company
 * name (NULL: not sent), or a delete of it. */
static void resident_put(store_t *s, uint64_t seq, unsigned i, int64_t cents, const char *company,
                         bool delete)
{
    upd_t x;
    char id[16];
    snprintf(id, sizeof id, "R%u", i);
    upd_init(&x, "AZ-MOE", seq, (int64_t)seq, PROVISIONAL);
    Parksync__V1__Resident *r = upd_resident(&x, "AZ", "P1", id);
    if (cents >= 0) {
        r->has_investment_usd_cents = 1;
        r->investment_usd_cents = cents;
    }
    r->company_name = (char *)company;
    if (delete)
        upd_make_delete(&x);
    apply_in_batch(s, &x);
}

/* One commit of residents R0..R<n-1>, each investing i, company "first". */
static void residents_first(store_t *s, uint64_t *seq, unsigned n)
{
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < n; i++)
        resident_put(s, ++*seq, i, i, "first", false);
    cr_assert_eq(store_commit(s), 0);
}

/* A hash of the resident table as another connection reads it: every
 * column of every row, in key order. */
static uint64_t resident_rows_hash(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    uint64_t h = 1469598103934665603ULL;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT resident_id, deleted, revision, investment_cents,"
                                    " record, stamps FROM resident ORDER BY country, park_id,"
                                    " resident_id",
                                    -1, &st, NULL),
                 SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < 6; c++) {
            const uint8_t *b = sqlite3_column_blob(st, c);
            for (int i = 0, n = sqlite3_column_bytes(st, c); i < n; i++)
                h = (h ^ b[i]) * 1099511628211ULL;
            h = (h ^ (uint64_t)sqlite3_column_type(st, c)) * 1099511628211ULL;
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return h;
}

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    size_t n;
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copy %s to %s", from, to);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* The database and its WAL as a crash would leave them, into a copy in
 * dir (path). */
static void crash_copy(char *path, size_t size)
{
    char from[sizeof dbpath + 8], to[160];

    snprintf(path, size, "%s/crash.db", dir);
    copy_file(dbpath, path);
    snprintf(from, sizeof from, "%s-wal", dbpath);
    snprintf(to, sizeof to, "%s-wal", path);
    copy_file(from, to);
}

/* A resident's row is not written at its commit: the change log holds
 * it. The files as two commits left them (a crash: nothing settled, no
 * close) open to the same resident table, row for row, as the store
 * that wrote them once it writes its deferred rows, and to the same
 * counts. */
Test(store, a_crash_loses_no_deferred_resident)
{
    enum { N = 300 };
    char crash[128];
    uint64_t seq = 0, n;
    int64_t want = 0;
    store_t *s = open_db();

    residents_first(s, &seq, N);
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < 100; i++)
        resident_put(s, ++seq, i, 1000 + i, NULL, false);
    for (unsigned i = 100; i < 130; i++)
        resident_put(s, ++seq, i, -1, NULL, true);
    cr_assert_eq(store_commit(s), 0);
    for (unsigned i = 0; i < N; i++)
        want += i < 100 ? 1000 + i : i < 130 ? 0 : i;
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), 0,
                 "the rows were written at their commits: nothing was deferred");

    crash_copy(crash, sizeof crash);
    store_t *c = open_at(crash, NULL);
    cr_assert_eq(store_head(c), store_head(s));
    cr_assert_eq(store_count_records(c, K_RESIDENT, &n), 0);
    cr_assert_eq(n, N - 30, "live residents after the crash");
    cr_assert_eq(sql_int_at(crash, "SELECT count(*) FROM resident"), N);
    cr_assert_eq(sql_int_at(crash, "SELECT sum(investment_cents) FROM resident WHERE deleted = 0"),
                 want);
    cr_assert_eq(store_settle(s), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), N);
    cr_assert_eq(resident_rows_hash(crash), resident_rows_hash(dbpath),
                 "the replayed table differs from the one written back");
    store_close(&c);
    store_close(&s);
    remove_db(crash);
}

/* The replay after a crash writes each resident's latest change, however
 * many it had and in whatever order they came: several commits, each
 * changing a shuffled share of the residents (some deleted, some
 * revived), open to the table the store that made them writes back. A
 * resident whose key is too long to wait (written at its commits) is in
 * the replayed log too, and left as its commits wrote it. */
Test(store, a_crash_replays_the_latest_change_of_each_resident)
{
    enum { N = 2000, ROUNDS = 4 };
    char crash[128], park[WIRE_MAX_ID + 1], id[WIRE_MAX_ID + 1];
    uint64_t seq = 0, n, live, rng = 7;
    store_t *s = open_db();

    memset(park, 'P', WIRE_MAX_ID);
    park[WIRE_MAX_ID] = '\0';
    memset(id, 'L', WIRE_MAX_ID);
    id[WIRE_MAX_ID] = '\0';
    residents_first(s, &seq, N);
    cr_assert_eq(store_settle(s), 0);
    for (int round = 1; round <= ROUNDS; round++) {
        cr_assert_eq(store_begin(s), 0);
        for (unsigned k = 0; k < N / 2; k++) {
            unsigned i = (unsigned)(rng_next(&rng) % N);
            resident_put(s, ++seq, i, round * N + (int64_t)i, NULL, round == 3 && i % 7 == 0);
        }
        upd_t x;
        seq++;
        upd_init(&x, "AZ-MOE", seq, (int64_t)seq, PROVISIONAL);
        Parksync__V1__Resident *r = upd_resident(&x, "AZ", park, id);
        r->has_investment_usd_cents = 1;
        r->investment_usd_cents = round;
        apply_in_batch(s, &x);
        cr_assert_eq(store_commit(s), 0);
    }
    cr_assert_gt(store_deferred_rows(s), N / 2, "too few residents wait for the replay");
    cr_assert_gt(store_replay_revisions(s), store_deferred_rows(s),
                 "no resident waits with more than one change");

    crash_copy(crash, sizeof crash);
    store_t *c = open_at(crash, NULL);
    cr_assert_eq(store_replay_revisions(c), 0);
    cr_assert_eq(store_count_records(c, K_RESIDENT, &n), 0);
    cr_assert_eq(store_count_records(s, K_RESIDENT, &live), 0);
    cr_assert_eq(n, live, "live residents after the crash");
    cr_assert_eq(store_settle(s), 0);
    cr_assert_eq(resident_rows_hash(crash), resident_rows_hash(dbpath),
                 "the replayed table differs from the one written back");
    cr_assert_eq(
        sql_int_at(crash, "SELECT investment_cents FROM resident WHERE park_id LIKE 'PP%'"),
        ROUNDS);
    store_close(&c);
    store_close(&s);
    remove_db(crash);
}

/* Both stores know producer id alike, every counter. */
static void same_producer(store_t *a, store_t *b, const char *id)
{
    store_producer_stats_t x, y;

    cr_assert_eq(store_producer_stats(a, id, &x), 0, "%s", id);
    cr_assert_eq(store_producer_stats(b, id, &y), 0, "%s unknown to the second store", id);
    cr_assert_eq(y.last_sequence, x.last_sequence, "%s: last_sequence", id);
    cr_assert_eq(y.applied, x.applied, "%s: applied", id);
    cr_assert_eq(y.duplicates, x.duplicates, "%s: duplicates", id);
    cr_assert_eq(y.gaps, x.gaps, "%s: gaps", id);
    cr_assert_eq(y.rejected, x.rejected, "%s: rejected", id);
    cr_assert_eq(y.last_seen_us, x.last_seen_us, "%s: last_seen_us", id);
}

/* A commit that logged changes keeps the producers it moved on its last
 * change-log row, and writes no row of theirs: a page less a commit. The
 * files as a crash left them, and a rollback, give every position and
 * counter back from there; a commit that logged nothing writes the rows,
 * and so does the close that leaves nothing to replay. */
Test(store, producers_kept_on_the_change_log_survive_a_crash_and_a_rollback)
{
    char crash[128];
    store_outcome_t out;
    store_t *s = open_db();
    upd_t x;

    cr_assert_eq(store_begin(s), 0);
    for (uint64_t q = 1; q <= 5; q++) {
        upd_init(&x, "AZ-MOE", q, 100 + (int64_t)q, PROVISIONAL);
        upd_park(&x, "AZ", "AZ-P1");
        park_name(&x, q % 2 ? "odd" : "even");
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
    }
    x.u.sequence = 3;
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(out, STORE_DUPLICATE);
    x.u.sequence = 9;
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(out, STORE_GAP);
    x.u.sequence = 6;
    cr_assert_eq(store_reject(s, &x.u, "invalid: park.name", &out), 0);
    cr_assert_eq(out, STORE_REJECTED);
    upd_init(&x, "TJ-MINT", 1, 100, PROVISIONAL);
    upd_park(&x, "TJ", "TJ-P1");
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM producer"), 0,
                 "a commit that logged changes wrote producer rows");

    /* a batch of a duplicate alone logs nothing: its producer's row is written */
    cr_assert_eq(apply1(s, &x), STORE_DUPLICATE);
    cr_assert_eq(sql_int("SELECT duplicates FROM producer WHERE producer_id = 'TJ-MINT'"), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM producer WHERE producer_id = 'AZ-MOE'"), 0);

    crash_copy(crash, sizeof crash);
    store_t *c = open_at(crash, NULL);
    same_producer(s, c, "AZ-MOE");
    same_producer(s, c, "TJ-MINT");
    cr_assert_eq(store_producer_last(c, "AZ-MOE"), 6);
    store_close(&c);
    remove_db(crash);

    /* a rollback takes the positions back from the change log too */
    cr_assert_eq(store_begin(s), 0);
    upd_init(&x, "AZ-MOE", 7, 200, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-P2");
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 7);
    store_rollback(s);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 6, "the rollback lost the logged position");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);

    store_close(&s);
    cr_assert_eq(sql_int("SELECT last_sequence FROM producer WHERE producer_id = 'AZ-MOE'"), 7,
                 "the close left the producer table behind");
    cr_assert_eq(sql_int("SELECT applied FROM producer WHERE producer_id = 'AZ-MOE'"), 6);
    cr_assert_eq(sql_int("SELECT duplicates FROM producer WHERE producer_id = 'AZ-MOE'"), 1);
    cr_assert_eq(sql_int("SELECT gaps FROM producer WHERE producer_id = 'AZ-MOE'"), 1);
    cr_assert_eq(sql_int("SELECT rejected FROM producer WHERE producer_id = 'AZ-MOE'"), 1);
}

/* resident_agg of park P1 agrees with its live residents, in the file at path. */
static void agg_matches_residents(const char *path, const char *when)
{
    cr_assert_eq(sql_int_at(path, "SELECT residents FROM resident_agg WHERE park_id = 'P1'"),
                 sql_int_at(path, "SELECT count(*) FROM resident WHERE deleted = 0"), "%s", when);
    cr_assert_eq(sql_int_at(path, "SELECT investment_cents FROM resident_agg WHERE park_id = 'P1'"),
                 sql_int_at(path, "SELECT sum(investment_cents) FROM resident WHERE deleted = 0"),
                 "%s", when);
}

/* A commit that logged changes keeps the totals of the parks it moved on
 * its last change-log row and writes no resident_agg row: the table
 * takes them before a summary reads it and when the tables catch up
 * with the log. The files as a crash left them give the latest totals
 * back, and a rollback takes back its batch's deltas. */
Test(store, park_aggregates_kept_on_the_change_log_survive_a_crash_and_a_rollback)
{
    char crash[128];
    uint64_t seq = 0;
    store_t *s = open_db();

    residents_first(s, &seq, 50);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident_agg"), 0,
                 "a commit that logged changes wrote resident_agg");
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < 10; i++)
        resident_put(s, ++seq, i, 1000 + i, NULL, false);
    for (unsigned i = 10; i < 15; i++)
        resident_put(s, ++seq, i, -1, NULL, true);
    cr_assert_eq(store_commit(s), 0);

    crash_copy(crash, sizeof crash);
    store_t *c = open_at(crash, NULL);
    store_close(&c);
    agg_matches_residents(crash, "after the crash");
    cr_assert_eq(sql_int_at(crash, "SELECT residents FROM resident_agg WHERE park_id = 'P1'"), 45);
    remove_db(crash);

    /* a summary refreshed inside a batch writes the table there, after
     * the park moved: the older copy on the log must not win at open */
    cr_assert_eq(store_begin(s), 0);
    resident_put(s, ++seq, 40, -1, NULL, true);
    cr_assert_geq(store_refresh_summaries(s), 0, "%s", store_errmsg(s));
    cr_assert_eq(store_commit(s), 0);
    crash_copy(crash, sizeof crash);
    c = open_at(crash, NULL);
    store_close(&c);
    agg_matches_residents(crash, "after a crash that followed a refresh inside a batch");
    remove_db(crash);

    /* a rolled-back batch's deltas go with it */
    cr_assert_eq(store_begin(s), 0);
    resident_put(s, ++seq, 20, 999999, NULL, false);
    resident_put(s, ++seq, 21, -1, NULL, true);
    store_rollback(s);
    seq -= 2;
    cr_assert_eq(store_begin(s), 0);
    resident_put(s, ++seq, 30, 7, NULL, false);
    cr_assert_eq(store_commit(s), 0);

    /* a summary reads the table: it takes the deltas first */
    cr_assert_eq(store_begin(s), 0);
    cr_assert_geq(store_refresh_summaries(s), 0, "%s", store_errmsg(s));
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(sql_int("SELECT residents FROM resident_agg WHERE park_id = 'P1'"), 44,
                 "the summary read a table without the waiting deltas");
    /* R0-R9 1000 + i, R10-R14 and R40 gone, R30 7, the others i */
    cr_assert_eq(sql_int("SELECT investment_cents FROM resident_agg WHERE park_id = 'P1'"),
                 10045 + (15 + 49) * 35 / 2 - 40 - 30 + 7,
                 "the summary read a table without the waiting deltas");
    store_close(&s);
    agg_matches_residents(dbpath, "after the close");
}

/* R<i> holds investment i, and company "second" for i < 10, else "first". */
static void check_rolled_back(const Parksync__V1__Record *r, void *arg)
{
    unsigned i = (unsigned)strtoul(r->resident->resident_id + 1, NULL, 10);
    (void)arg;
    cr_assert(r->resident->has_investment_usd_cents, "R%u lost its investment", i);
    cr_assert_eq(r->resident->investment_usd_cents, (int64_t)i, "R%u", i);
    cr_assert_str_eq(r->resident->company_name, i < 10 ? "second" : "first", "R%u", i);
}

/* A rollback forgets the row cache, deferred rows with it: the next batch
 * must merge over what the earlier commits left (replayed from the change
 * log), not over the stale table. A company name sent after the rollback
 * keeps the investment committed before it. */
Test(store, a_rollback_forgets_no_deferred_resident)
{
    enum { N = 100 };
    uint64_t seq = 0;
    store_t *s = open_db();

    residents_first(s, &seq, N);
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < N; i++)
        resident_put(s, ++seq, i, 5000, NULL, false);
    store_rollback(s);
    seq -= N;
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < 10; i++)
        resident_put(s, ++seq, i, -1, "second", false);
    cr_assert_eq(store_commit(s), 0);

    cr_assert_eq(snapshot_each(s, K_RESIDENT, check_rolled_back, NULL), N);
    store_close(&s);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Deferred rows wait until two thirds of defer_rows do; then a sweep
 * writes them in key order: twice each commit's new ones, and its part of
 * the sweep for the revisions a commit logs, so that the sweep ends
 * within a quarter of defer_revs (half of changelog_keep here: 2400)
 * even when every update lands on a waiting row. A commit that brings
 * defer_rows writes them all. A snapshot of residents writes nothing (it reads the
 * waiting rows from the change log); one of history has them written
 * first. defer_rows 0 writes every row at its commit. */
Test(store, deferred_rows_are_swept_in_key_order_and_written_at_the_bound)
{
    enum { ROWS = 900, WAIT = ROWS / 3 * 2 };
    static char ids[WAIT][16];
    const char *sorted[WAIT];
    int64_t written = 0;
    char sql[160];
    store_config_t cfg;
    uint64_t seq = 0;
    unsigned next = 0;
    recs_t rs;

    store_config_init(&cfg);
    cfg.defer_rows = 0;
    store_t *s = open_at(dbpath, &cfg);
    residents_first(s, &seq, 3);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), 3, "defer_rows 0 deferred rows");
    store_close(&s);
    remove_db(dbpath);
    seq = 0;

    cfg.defer_rows = ROWS;
    cfg.changelog_keep = 4800; /* defer_revs 2400: a sweep's quarter is 600 revisions */
    s = open_at(dbpath, &cfg);
    cr_assert_eq(store_begin(s), 0);
    for (; next < WAIT - 1; next++)
        resident_put(s, ++seq, next, next, "a", false);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_begin(s), 0);
    resident_put(s, ++seq, 0, 7, "b", false); /* again: still one row */
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), 0, "below two thirds: nothing written");
    cr_assert_eq(store_deferred_rows(s), WAIT - 1);
    cr_assert_eq(store_replay_revisions(s), WAIT, "a crash replays every revision");

    for (unsigned i = 0; i < WAIT; i++) {
        snprintf(ids[i], sizeof ids[i], "R%u", i);
        sorted[i] = ids[i];
    }
    qsort(sorted, WAIT, sizeof sorted[0], cmp_str);
    /* the 600th row begins the sweep of the 600: a commit of one new row
     * writes two of them; one of 100 updates to rows that wait (none
     * new) writes 600 * 100 / 600 */
    for (int step = 1; step <= 4; step++) {
        cr_assert_eq(store_begin(s), 0);
        if (step < 4)
            resident_put(s, ++seq, next++, 1, "a", false);
        for (unsigned i = WAIT - 100; step == 4 && i < WAIT; i++)
            resident_put(s, ++seq, (unsigned)atoi(sorted[i] + 1), 2, "c", false);
        cr_assert_eq(store_commit(s), 0);
        written += step < 4 ? 2 : 100;
        cr_assert_eq(sql_int("SELECT count(*) FROM resident"), written, "after sweep step %d",
                     step);
        cr_assert_eq(store_deferred_rows(s), (uint64_t)(next - written), "step %d", step);
        snprintf(sql, sizeof sql, "SELECT count(*) FROM resident WHERE resident_id <= '%s'",
                 sorted[written - 1]);
        cr_assert_eq(sql_int(sql), written, "step %d wrote rows out of key order", step);
    }
    cr_assert_eq(sql_int("SELECT investment_cents FROM resident WHERE resident_id = 'R0'"), 7);

    /* a commit of defer_rows new rows writes everything */
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < ROWS; i++)
        resident_put(s, ++seq, next++, 1, "a", false);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), next, "the bound wrote them all");
    cr_assert_eq(store_deferred_rows(s), 0);
    cr_assert_eq(store_replay_revisions(s), 0, "nothing left to replay");

    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < 5; i++)
        resident_put(s, ++seq, next++, 1, "a", false);
    cr_assert_eq(store_commit(s), 0);
    snapshot(s, K_PARK, NULL, &rs);
    recs_free(&rs);
    snapshot(s, K_RESIDENT, "TJ", &rs);
    cr_assert_eq(rs.n, 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), next - 5, "a snapshot wrote rows");
    store_filter_t f = {.kind = K_RESIDENT};
    int err;
    store_cursor_t *c = store_snapshot_at_open(s, &f, store_head(s), &err);
    cr_assert_not_null(c, "history: %d", err);
    store_cursor_close(&c);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), next, "history read before");
    store_close(&s);
}

/* A sweep of more rows than one chunk (sweep.c) takes them over several
 * commits, each taking one chunk and writing nothing, so that no commit
 * walks and sorts them all; then its runs are merged: the rows it writes
 * are the least keys of all, whatever chunk they came in. The rows are
 * deferred in shuffled order, so every chunk spans the whole key range. */
Test(store, a_large_sweep_takes_its_rows_a_chunk_a_commit_then_writes_in_key_order)
{
    enum { N = 3 * SWEEP_CHUNK + 5 };
    static char ids[N][16];
    static const char *sorted[N];
    char sql[160];
    store_config_t cfg;
    uint64_t seq = 0;
    int64_t written;

    store_config_init(&cfg);
    cfg.defer_rows = 3 * N / 2; /* the sweep begins when N wait: two thirds */
    cfg.changelog_keep = 0;     /* and not for the log's length */
    store_t *s = open_at(dbpath, &cfg);
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < N - 1; i++)
        resident_put(s, ++seq, (unsigned)((i * 7919u) % N), 1, "a", false);
    cr_assert_eq(store_commit(s), 0);
    for (unsigned i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "R%u", i);
        sorted[i] = ids[i];
    }
    qsort(sorted, N, sizeof sorted[0], cmp_str);

    /* the Nth row begins the sweep; it and the next two commits take a
     * chunk each and write nothing; the fourth takes the rest and writes
     * twice its one new row */
    unsigned extra = N;
    for (int commit = 1; commit <= 4; commit++) {
        cr_assert_eq(store_begin(s), 0);
        resident_put(s, ++seq, commit == 1 ? (unsigned)((N - 1) * 7919u % N) : extra++, 1, "b",
                     false);
        cr_assert_eq(store_commit(s), 0);
        cr_assert_eq(sql_int("SELECT count(*) FROM resident"), commit < 4 ? 0 : 2,
                     "commit %d of the sweep", commit);
    }
    /* a commit of 100 updates to waiting rows writes its part for the
     * revisions, N * 100 over a quarter of STORE_DEFER_REVS, more: still
     * the least keys */
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = N - 100; i < N; i++)
        resident_put(s, ++seq, (unsigned)atoi(sorted[i] + 1), 2, "c", false);
    cr_assert_eq(store_commit(s), 0);
    written = sql_int("SELECT count(*) FROM resident");
    cr_assert_gt(written, 2);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM resident WHERE resident_id <= '%s'",
             sorted[written - 1]);
    cr_assert_eq(sql_int(sql), written, "the sweep wrote rows out of key order");
    cr_assert_eq(store_deferred_rows(s), (uint64_t)(N + 3 - written));
    store_close(&s);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), N + 3, "close wrote them all");
}

/* Every record of a cursor to fn, unpacked; then the cursor is closed. */
static void cursor_each(store_cursor_t **c, void (*fn)(const Parksync__V1__Record *, void *),
                        void *arg)
{
    const uint8_t *rec;
    size_t len;
    int rc;
    while ((rc = store_cursor_next(*c, &rec, &len)) == 1) {
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
        cr_assert_not_null(r);
        fn(r, arg);
        parksync__v1__record__free_unpacked(r, NULL);
    }
    cr_assert_eq(rc, 0, "cursor_next: %d", rc);
    store_cursor_close(c);
}

/* A check of one resident of the snapshot below: R<i> as the commits
 * left it when the view began, sent once. */
typedef struct waiting_seen {
    unsigned times[12];  /* records seen of R<i> */
    bool provenance;     /* the snapshot asked for it */
    uint64_t second_seq; /* the sequence of R0's second version */
} waiting_seen_t;

static void check_waiting(const Parksync__V1__Record *r, void *arg)
{
    waiting_seen_t *w = arg;
    unsigned i;

    cr_assert_not_null(r->resident);
    cr_assert_eq(sscanf(r->resident->resident_id, "R%u", &i), 1);
    cr_assert_lt(i, 12);
    w->times[i]++;
    cr_assert_neq(i, 9, "R9 was deleted before the view began");
    if (i < 5) {
        cr_assert_eq(r->resident->investment_usd_cents, 100 + i, "R%u: not its latest", i);
        cr_assert_str_eq(r->resident->company_name, "second");
    } else {
        cr_assert_eq(r->resident->investment_usd_cents, i, "R%u", i);
    }
    if (w->provenance && i == 0) {
        bool found = false;
        for (size_t k = 0; k < r->n_provenance; k++)
            found |= strcmp(r->provenance[k]->field, "company_name") == 0 &&
                     r->provenance[k]->sequence == w->second_seq;
        cr_assert(found, "R0's provenance is not its latest version's");
    }
}

/* A snapshot of residents while some wait in the writer: rows written
 * and waiting again, rows never written, a deletion. It sends each live
 * resident once, in its latest version as the view began (a later
 * commit, even one that writes the rows, does not show), with its
 * provenance, and writes nothing. Both halves fail when a snapshot sends
 * the table's stale rows, or the waiting rows twice. */
Test(store, a_snapshot_sends_waiting_residents_once_without_writing_them)
{
    store_filter_t f = {.kind = K_RESIDENT};
    waiting_seen_t w;
    uint64_t seq = 0;
    int err;
    store_t *s = open_db();

    residents_first(s, &seq, 10);
    cr_assert_eq(store_settle(s), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM resident"), 10);
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < 5; i++)
        resident_put(s, ++seq, i, 100 + i, "second", false);
    w.second_seq = seq - 4;
    resident_put(s, ++seq, 9, -1, NULL, true);
    resident_put(s, ++seq, 10, 10, "first", false);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_deferred_rows(s), 7);
    uint64_t table = resident_rows_hash(dbpath);

    for (int prov = 0; prov < 2; prov++) {
        memset(w.times, 0, sizeof w.times);
        w.provenance = f.provenance = prov;
        store_cursor_t *c = store_snapshot_open(s, &f, &err);
        cr_assert_not_null(c, "snapshot_open: %d", err);
        /* the view began: what comes after it is not in it, even once
         * the rows are written */
        cr_assert_eq(store_begin(s), 0);
        resident_put(s, ++seq, 0, 999, "third", false);
        resident_put(s, ++seq, 11, 11, "first", false);
        cr_assert_eq(store_commit(s), 0);
        if (prov)
            cr_assert_eq(store_settle(s), 0);
        cursor_each(&c, check_waiting, &w);
        for (unsigned i = 0; i < 11; i++)
            cr_assert_eq(w.times[i], i == 9 ? 0 : 1, "R%u sent %u times", i, w.times[i]);
        cr_assert_eq(w.times[11], 0, "R11 came after the view");
        if (!prov) {
            cr_assert_eq(resident_rows_hash(dbpath), table, "the snapshot wrote rows");
            /* the second view expects the same: R0 back, R11 deleted (waiting) */
            cr_assert_eq(store_begin(s), 0);
            resident_put(s, ++seq, 0, 100, "second", false);
            resident_put(s, ++seq, 11, -1, NULL, true);
            cr_assert_eq(store_commit(s), 0);
            w.second_seq = seq - 1;
        }
    }
    store_close(&s);
}

/* Keys of the test below: ids that are prefixes of one another, and
 * '-', '.', '_', digits and both cases, which sort around each other
 * byte by byte (a scan's order is not the order of the lookup keys). */
static const char *const order_countries[] = {"AZ", "TJ"};
static const char *const order_parks[] = {"P", "P-1", "P.1", "P1", "P_1", "p", "P10"};
static const char *const order_ids[] = {"A",   "A-1", "A.1", "A1", "A_1", "Aa", "A-",
                                        "A10", "A1-", "a",   "_",  "-",   "0",  "A1.0"};
#define ORDER_PARKS 7
#define ORDER_IDS   14
#define ORDER_N     (2 * ORDER_PARKS * ORDER_IDS)

/* The key of resident i of the keys above; i + ORDER_N is i's with "x"
 * after its id (a resident with no row, below). */
static void order_key(unsigned i, const char **country, const char **park, char id[16])
{
    unsigned k = i % ORDER_N;
    *country = order_countries[k / (ORDER_PARKS * ORDER_IDS)];
    *park = order_parks[k / ORDER_IDS % ORDER_PARKS];
    snprintf(id, 16, "%s%s", order_ids[k % ORDER_IDS], i >= ORDER_N ? "x" : "");
}

/* Resident i of the keys above, investing cents, in the open batch. */
static void order_put(store_t *s, uint64_t *seq, unsigned i, int64_t cents)
{
    const char *country, *park;
    char id[16];
    order_key(i, &country, &park, id);
    money_resident(s, "AZ-MOE", ++*seq, country, park, id, cents);
}

/* What the snapshots below sent of each resident, against its latest. */
typedef struct order_seen {
    const int64_t *want;         /* investment of resident i; 0: none */
    unsigned times[2 * ORDER_N]; /* records sent of resident i */
} order_seen_t;

static void check_order(const Parksync__V1__Record *r, void *arg)
{
    order_seen_t *seen = arg;
    unsigned i = 0;

    cr_assert_not_null(r->resident);
    for (; i < 2 * ORDER_N; i++) {
        const char *country, *park;
        char id[16];
        order_key(i, &country, &park, id);
        if (strcmp(r->resident->country, country) == 0 && strcmp(r->resident->park_id, park) == 0 &&
            strcmp(r->resident->resident_id, id) == 0)
            break;
    }
    cr_assert_lt(i, 2 * ORDER_N, "%s/%s/%s is no resident of the test", r->resident->country,
                 r->resident->park_id, r->resident->resident_id);
    seen->times[i]++;
    cr_assert_eq(r->resident->investment_usd_cents, seen->want[i], "%s/%s/%s: not its latest",
                 r->resident->country, r->resident->park_id, r->resident->resident_id);
}

/* A snapshot passes over the rows of waiting residents in its scan and
 * sends them from the change log after it (cursor.c, waits), filtered
 * by country as the scan is. Residents of two countries and many parks,
 * keyed as above; all written, then a third of them waiting again and a
 * fifth more waiting with no row: a snapshot of all, and one of each
 * country, sends every resident of it once (not its stale row besides),
 * in its latest version. */
Test(store, waiting_residents_of_every_key_are_sent_once_by_country)
{
    int64_t want[2 * ORDER_N] = {0};
    uint64_t seq = 0;
    int err;
    store_t *s = open_db();

    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < ORDER_N; i++)
        order_put(s, &seq, i, want[i] = 1);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_settle(s), 0);
    cr_assert_eq(store_begin(s), 0);
    for (unsigned i = 0; i < 2 * ORDER_N; i++)
        if (i < ORDER_N ? i % 3 == 0 : i % 5 == 0)
            order_put(s, &seq, i, want[i] = 2);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_gt(store_deferred_rows(s), ORDER_N / 3, "%" PRIu64 " rows wait",
                 store_deferred_rows(s));

    for (int country = -1; country < 2; country++) {
        store_filter_t f = {.kind = K_RESIDENT};
        if (country >= 0)
            memcpy(f.country, order_countries[country], 3);
        store_cursor_t *c = store_snapshot_open(s, &f, &err);
        cr_assert_not_null(c, "snapshot_open: %d", err);
        order_seen_t seen = {.want = want};
        cursor_each(&c, check_order, &seen);
        for (unsigned i = 0; i < 2 * ORDER_N; i++) {
            const char *in_country, *park;
            char id[16];
            order_key(i, &in_country, &park, id);
            bool in = want[i] && (country < 0 || in_country == order_countries[country]);
            cr_assert_eq(seen.times[i], in ? 1 : 0, "%s/%s/%s sent %u times", in_country, park, id,
                         seen.times[i]);
        }
    }
    store_close(&s);
}

/* Issue 11, defect 4: 120 parks of 10^17 cents and parks whose residents
 * hold 100 * 10^17 and 100 * -10^17 (the store takes any int64; the wire
 * refuses negative money), all in one batch with another country's
 * updates: the batch commits, both countries' summaries refresh in it,
 * totals are exact and one beyond int64 shows the bound with `saturated`. */
Test(store, summaries_are_exact_beyond_int64_and_every_country_refreshes)
{
    char parks[120][16], rids[100][8];
    uint64_t seq = 0;
    store_t *s = open_db();

    for (int i = 0; i < 100; i++)
        snprintf(rids[i], sizeof(rids[i]), "R%03d", i);
    cr_assert_eq(store_begin(s), 0);
    for (int i = 0; i < 120; i++) {
        snprintf(parks[i], sizeof(parks[i]), "AZ-P%03d", i);
        money_park(s, "AZ-MOE", ++seq, "AZ", parks[i], 1, CENTS_MAX);
    }
    for (int i = 0; i < 100; i++) {
        money_resident(s, "AZ-MOE", ++seq, "AZ", parks[0], rids[i], CENTS_MAX);
        money_resident(s, "AZ-MOE", ++seq, "AZ", parks[1], rids[i], -CENTS_MAX);
    }
    money_park(s, "TJ-MINT", 1, "TJ", "TJ-P1", 1, 5);
    money_resident(s, "TJ-MINT", 2, "TJ", "TJ-P1", "R1", 7);
    cr_assert_eq(store_refresh_summaries(s), 2, "AZ's and TJ's, in the batch: %s", store_errmsg(s));
    cr_assert_eq(store_summary_failures(s), 0, "%s", store_summary_error(s));
    cr_assert_eq(store_commit(s), 0, "the batch was not committed: %s", store_errmsg(s));
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), seq);
    cr_assert_eq(sql_int("SELECT count(*) FROM park WHERE deleted = 0"), 121);

    Parksync__V1__Record *rec = get_summary(s, "AZ");
    const Parksync__V1__CountrySummary *sum = rec->summary;
    cr_assert_eq(sum->parks, 120);
    cr_assert_eq(sum->reported_residents, 120);
    cr_assert_eq(sum->reported_investment_usd_cents, INT64_MAX, "1.2 * 10^19 shows the bound");
    cr_assert(sum->has_saturated && sum->saturated);
    cr_assert_eq(sum->known_residents, 200);
    cr_assert_eq(sum->known_investment_usd_cents, 0, "10^19 - 10^19, exactly");
    cr_assert_eq(sum->n_mismatches, 120, "every park reports 1 resident");
    cr_assert_str_eq(sum->mismatches[0]->park_id, "AZ-P000");
    cr_assert_eq(sum->mismatches[0]->known_residents, 100);
    cr_assert_eq(sum->mismatches[0]->reported_investment_usd_cents, CENTS_MAX);
    cr_assert_eq(sum->mismatches[0]->known_investment_usd_cents, INT64_MAX);
    cr_assert_str_eq(sum->mismatches[1]->park_id, "AZ-P001");
    cr_assert_eq(sum->mismatches[1]->known_investment_usd_cents, INT64_MIN);
    cr_assert_eq(sum->mismatches[2]->known_investment_usd_cents, 0);
    parksync__v1__record__free_unpacked(rec, NULL);

    rec = get_summary(s, "TJ");
    cr_assert_eq(rec->summary->parks, 1);
    cr_assert_eq(rec->summary->reported_investment_usd_cents, 5);
    cr_assert_eq(rec->summary->known_investment_usd_cents, 7);
    cr_assert_not(rec->summary->has_saturated, "within range: no flag");
    parksync__v1__record__free_unpacked(rec, NULL);

    /* the park aggregates keep exact totals: 10^19 is 10 * 10^18 + 0 */
    cr_assert_eq(sql_int("SELECT investment_carry FROM resident_agg WHERE park_id = 'AZ-P000'"),
                 10);
    cr_assert_eq(sql_int("SELECT investment_cents FROM resident_agg WHERE park_id = 'AZ-P000'"), 0);
    cr_assert_eq(sql_int("SELECT investment_carry FROM resident_agg WHERE park_id = 'AZ-P001'"),
                 -10);

    /* 30 parks deleted and 91 residents of each side: 9 * 10^18 reported
     * and 9 * 10^17 known in either park, back within range and exact;
     * TJ's summary still follows its own changes */
    cr_assert_eq(store_begin(s), 0);
    for (int i = 90; i < 120; i++) {
        upd_t x;
        upd_init(&x, "AZ-MOE", ++seq, 200, PROVISIONAL);
        upd_park(&x, "AZ", parks[i]);
        upd_make_delete(&x);
        apply_in_batch(s, &x);
    }
    for (int i = 0; i < 91; i++)
        for (int side = 0; side < 2; side++) {
            upd_t x;
            upd_init(&x, "AZ-MOE", ++seq, 200, PROVISIONAL);
            upd_resident(&x, "AZ", parks[side], rids[i]);
            upd_make_delete(&x);
            apply_in_batch(s, &x);
        }
    money_park(s, "TJ-MINT", 3, "TJ", "TJ-P2", 1, 11);
    cr_assert_eq(store_refresh_summaries(s), 2);
    cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
    rec = get_summary(s, "AZ");
    sum = rec->summary;
    cr_assert_eq(sum->parks, 90);
    cr_assert_eq(sum->reported_investment_usd_cents, 9000000000000000000LL);
    cr_assert_eq(sum->known_residents, 18);
    cr_assert_eq(sum->mismatches[0]->known_investment_usd_cents, 900000000000000000LL);
    cr_assert_eq(sum->mismatches[1]->known_investment_usd_cents, -900000000000000000LL);
    cr_assert_not(sum->has_saturated, "every total within range again");
    parksync__v1__record__free_unpacked(rec, NULL);
    rec = get_summary(s, "TJ");
    cr_assert_eq(rec->summary->parks, 2);
    cr_assert_eq(rec->summary->reported_investment_usd_cents, 16);
    parksync__v1__record__free_unpacked(rec, NULL);
    cr_assert_eq(sql_int("SELECT investment_carry FROM resident_agg WHERE park_id = 'AZ-P000'"), 0);
    store_close(&s);
}

/* A country whose summary cannot be computed (here a damaged stored
 * record) keeps its old summary; the batch's updates commit, the other
 * countries refresh, the failure is counted, and the revisions stay
 * without holes. */
Test(store, a_failing_summary_keeps_its_old_one_and_stops_nothing)
{
    store_t *s = open_db();
    upd_t x;

    cr_assert_eq(store_begin(s), 0);
    money_park(s, "AZ-MOE", 1, "AZ", "AZ-P1", 1, 100);
    upd_init(&x, "AZ-MOE", 2, 100, PROVISIONAL);
    Parksync__V1__CountryReport *cr = upd_country(&x, "AZ", 2020, 1, 9);
    cr->has_parks_export_share_bp = 1;
    cr->parks_export_share_bp = 2030;
    apply_in_batch(s, &x);
    money_park(s, "TJ-MINT", 1, "TJ", "TJ-P1", 1, 100);
    cr_assert_eq(store_refresh_summaries(s), 2);
    cr_assert_eq(store_commit(s), 0);

    sql_exec("UPDATE country_report SET record = x'ffff' WHERE country = 'AZ'");
    cr_assert_eq(store_begin(s), 0);
    money_park(s, "AZ-MOE", 3, "AZ", "AZ-P2", 1, 100);
    money_park(s, "TJ-MINT", 2, "TJ", "TJ-P2", 1, 100);
    cr_assert_eq(store_refresh_summaries(s), 1, "TJ's changed, though AZ's failed: %s",
                 store_errmsg(s));
    cr_assert_eq(store_summary_failures(s), 1);
    cr_assert_not_null(strstr(store_summary_error(s), "summary of AZ"), "%s",
                       store_summary_error(s));
    cr_assert_not(store_summaries_dirty(s), "tried again when AZ next changes");
    cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));

    Parksync__V1__Record *rec = get_park(s, "AZ", "AZ-P2");
    cr_assert_not_null(rec, "the update was rolled back with the summary");
    parksync__v1__record__free_unpacked(rec, NULL);
    rec = get_summary(s, "TJ");
    cr_assert_eq(rec->summary->parks, 2);
    parksync__v1__record__free_unpacked(rec, NULL);
    rec = get_summary(s, "AZ");
    cr_assert_eq(rec->summary->parks, 1, "AZ's old summary stays");
    parksync__v1__record__free_unpacked(rec, NULL);
    cr_assert_eq(sql_int("SELECT max(revision) FROM changelog"), (int64_t)store_head(s));
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), (int64_t)store_head(s),
                 "a hole in the revisions");
    store_close(&s);
}

/* A summary that fails while it is written (after the row cache took it)
 * is undone with what counts it: the live summaries status reports stay
 * those the table holds. */
Test(store, a_summary_failing_at_its_write_leaves_the_counts_right)
{
    store_t *s = open_db();
    uint64_t n = 0;

    cr_assert_eq(store_begin(s), 0);
    money_park(s, "AZ-MOE", 1, "AZ", "AZ-P1", 1, 100);
    cr_assert_eq(store_refresh_summaries(s), 1);
    cr_assert_eq(store_commit(s), 0);
    sql_exec("CREATE TRIGGER no_kz BEFORE INSERT ON summary WHEN NEW.country = 'KZ'"
             " BEGIN SELECT RAISE(ABORT, 'no summary for KZ'); END");
    cr_assert_eq(store_begin(s), 0);
    money_park(s, "KZ-MIN", 1, "KZ", "KZ-P1", 1, 100);
    cr_assert_eq(store_refresh_summaries(s), 0, "%s", store_errmsg(s));
    cr_assert_eq(store_summary_failures(s), 1);
    cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
    cr_assert_eq(store_count_records(s, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY, &n), 0);
    cr_assert_eq((int64_t)n, sql_int("SELECT count(*) FROM summary WHERE deleted = 0"),
                 "status counts %" PRIu64 " summaries", n);
    store_close(&s);
}

/* The resident aggregates are rebuilt exactly when a database is
 * migrated: from before they existed (schema 3; the old migration 4 used
 * sum(), which failed with "integer overflow" and kept the database from
 * opening) and from schema 5, whose SQL additions turned an overflowing
 * total into an inexact REAL. */
Test(store, migration_sums_resident_aggregates_exactly)
{
    char rid[16];
    uint64_t seq = 0;
    store_t *s = open_db();
    for (int b = 0; b < 2; b++) {
        cr_assert_eq(store_begin(s), 0);
        for (int i = 0; i < 50; i++) {
            snprintf(rid, sizeof(rid), "R%03d", b * 50 + i);
            money_resident(s, "AZ-MOE", ++seq, "AZ", "AZ-P1", rid, CENTS_MAX);
        }
        cr_assert_eq(store_commit(s), 0);
    }
    cr_assert_eq(store_begin(s), 0);
    money_park(s, "TJ-MINT", 1, "TJ", "TJ-P1", 1, 5);
    cr_assert_eq(store_commit(s), 0);
    store_close(&s);

    for (int from = 3; from <= 5; from += 2) {
        if (from == 3)
            sql_exec("DROP TABLE resident_agg; DROP TABLE peer;"
                     " CREATE INDEX conflict_recorded ON conflict(recorded_us);"
                     " ALTER TABLE changelog DROP COLUMN stamps;" UNDO_10
                     " DELETE FROM meta WHERE key = 'state_from'; PRAGMA user_version = 3");
        else
            sql_exec("ALTER TABLE resident_agg DROP COLUMN investment_carry;"
                     " UPDATE resident_agg SET investment_cents = 1e19; DROP TABLE peer;"
                     " ALTER TABLE changelog DROP COLUMN stamps;" UNDO_10
                     " ALTER TABLE resident_agg DROP COLUMN revision;"
                     " DELETE FROM meta WHERE key = 'state_from'; PRAGMA user_version = 5");
        s = open_db();
        cr_assert_eq(sql_int("PRAGMA user_version"), 11);
        cr_assert_eq(sql_int("SELECT residents FROM resident_agg WHERE park_id = 'AZ-P1'"), 100);
        cr_assert_eq(sql_int("SELECT investment_cents FROM resident_agg WHERE park_id = 'AZ-P1'"),
                     0, "from schema %d", from);
        cr_assert_eq(sql_int("SELECT investment_carry FROM resident_agg WHERE park_id = 'AZ-P1'"),
                     10, "from schema %d", from);
        cr_assert_eq(sql_int("SELECT typeof(investment_cents) = 'integer' FROM resident_agg"
                             " WHERE park_id = 'AZ-P1'"),
                     1);
        cr_assert_eq(store_begin(s), 0);
        cr_assert_geq(store_refresh_summaries(s), 0);
        cr_assert_eq(store_commit(s), 0);
        Parksync__V1__Record *rec = get_summary(s, "AZ");
        cr_assert_eq(rec->summary->known_residents, 100);
        cr_assert_eq(rec->summary->known_investment_usd_cents, INT64_MAX);
        cr_assert(rec->summary->saturated);
        parksync__v1__record__free_unpacked(rec, NULL);
        store_close(&s);
    }
}

/* ---------------------------------------------------------------- filters */

Test(store, snapshot_filters_by_kind_and_country)
{
    upd_t x;
    store_t *s = open_db();
    upd_init(&x, "AZ-MOE", 1, 1, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-1");
    apply1(s, &x);
    upd_init(&x, "AZ-MOE", 2, 1, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-2");
    apply1(s, &x);
    upd_init(&x, "TJ-MINT", 1, 1, PROVISIONAL);
    upd_park(&x, "TJ", "TJ-1");
    apply1(s, &x);
    upd_init(&x, "TJ-MINT", 2, 1, PROVISIONAL);
    upd_resident(&x, "TJ", "TJ-1", "R1");
    apply1(s, &x);
    trade_report(s, "AZ-MOE", 3, "AZ", "KZ", EXPORTS, 10);
    trade_report(s, "TJ-MINT", 3, "TJ", "AZ", IMPORTS, 20); /* flow AZ -> TJ */

    recs_t rs;
    snapshot(s, K_PARK, "AZ", &rs);
    cr_assert_eq(rs.n, 2);
    cr_assert_str_eq(rs.r[0]->park->park_id, "AZ-1", "key order");
    cr_assert_str_eq(rs.r[1]->park->park_id, "AZ-2");
    recs_free(&rs);
    snapshot(s, K_PARK, NULL, &rs);
    cr_assert_eq(rs.n, 3);
    recs_free(&rs);
    snapshot(s, K_ALL, "TJ", &rs);
    cr_assert_eq(rs.n, 3, "TJ park, TJ resident, AZ->TJ flow");
    cr_assert_eq(rs.r[0]->body_case, PARKSYNC__V1__RECORD__BODY_PARK, "kind order");
    cr_assert_eq(rs.r[1]->body_case, PARKSYNC__V1__RECORD__BODY_RESIDENT);
    cr_assert_eq(rs.r[2]->body_case, PARKSYNC__V1__RECORD__BODY_TRADE);
    cr_assert_str_eq(rs.r[2]->trade->importer, "TJ");
    recs_free(&rs);
    snapshot(s, K_TRADE, "AZ", &rs);
    cr_assert_eq(rs.n, 2, "exporter or importer");
    cr_assert_str_eq(rs.r[0]->trade->importer, "KZ");
    recs_free(&rs);
    snapshot(s, K_TRADE, "KZ", &rs);
    cr_assert_eq(rs.n, 1);
    recs_free(&rs);
    snapshot(s, K_ALL, NULL, &rs);
    cr_assert_eq(rs.n, 6);
    recs_free(&rs);

    /* a cursor keeps its view while the store writes */
    store_filter_t f = {.kind = K_ALL};
    int err;
    store_cursor_t *c = store_snapshot_open(s, &f, &err);
    cr_assert_not_null(c);
    upd_init(&x, "AZ-MOE", 4, 1, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-3");
    apply1(s, &x);
    drain(c, &rs);
    store_cursor_close(&c);
    cr_assert_eq(rs.n, 6);
    cr_assert_eq(rs.revision, store_head(s) - 1);
    recs_free(&rs);
    store_close(&s);
}

/* ---------------------------------------------------------------- property */

#define PROP_UPDATES   200 /* updates per set */
#define PROP_ORDERS    200 /* delivery orders compared */
#define PROP_PRODUCERS 3   /* producers in the interleaving variant */

/* two ministries that own AZ and TJ, and KZ's, which owns neither: its
 * updates (all about AZ or TJ) are refused and kept as claims */
static const char *const prop_producers[PROP_PRODUCERS] = {"AZ-MOE", "TJ-MINT", "KZ-MOE"};
static const store_ministry_t prop_ministries[PROP_PRODUCERS] = {
    {.name = "AZ-MOE", .country = "AZ"},
    {.name = "TJ-MINT", .country = "TJ", .grants = {{K_TRADE, "AZ"}}, .n_grants = 1},
    {.name = "KZ-MOE", .country = "KZ"},
};
static store_member_t prop_members[PROP_UPDATES]; /* producer -> ministry of the set */
static size_t prop_n_members;                     /* entries used */
/* What one run left: compared across orders (digest, rows) and with the
 * same run without unknown fields (all of it). */
typedef struct prop_result {
    uint8_t digest[32]; /* store_digest: the live records */
    uint64_t rows;      /* every record row, tombstones too, without its revision */
    uint64_t stored;    /* every record row and change-log entry as stored */
    uint64_t head;      /* revisions handed out */
} prop_result_t;

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL; /* FNV-1a */
    return h;
}

/* Hashes the records of the database at dbpath as stored. */
static void prop_hash_rows(prop_result_t *r)
{
    /* tombstones of summaries depend on when summaries were refreshed
     * (a country may never have had one), so only live ones count in
     * `rows`; everything counts in `stored` */
    static const char *const sql[] = {
        "SELECT record, 1 FROM park ORDER BY country, park_id",
        "SELECT record, 1 FROM resident ORDER BY country, park_id, resident_id",
        "SELECT record, 1 FROM trade_flow ORDER BY exporter, importer, period_key",
        "SELECT record, 1 FROM country_report ORDER BY country, period_key",
        "SELECT record, deleted = 0 FROM summary ORDER BY country",
        "SELECT record, 0 FROM changelog ORDER BY revision",
        "SELECT prev, 0 FROM changelog ORDER BY revision",
    };
    sqlite3 *db;
    r->rows = r->stored = 1469598103934665603ULL;
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (size_t q = 0; q < sizeof(sql) / sizeof(sql[0]); q++) {
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, sql[q], -1, &st, NULL), SQLITE_OK, "%s",
                     sqlite3_errmsg(db));
        while (sqlite3_step(st) == SQLITE_ROW) {
            const uint8_t *b = sqlite3_column_blob(st, 0);
            size_t n = (size_t)sqlite3_column_bytes(st, 0), at = 0;
            r->stored = fnv(r->stored, &n, sizeof(n));
            r->stored = fnv(r->stored, b, n);
            if (!sqlite3_column_int(st, 1))
                continue;
            if (n > 0 && b[0] == 0x08) /* the revision, field 1, first */
                for (at = 1; at < n && (b[at++] & 0x80);)
                    ;
            n -= at;
            r->rows = fnv(r->rows, &n, sizeof(n));
            r->rows = fnv(r->rows, b + at, n);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

/* Applies ups[order[i]] in batches of random size, with or without their
 * unknown fields, and says what it left. */
static void prop_run(upd_t *ups, const size_t *order, uint64_t *st, prop_result_t *out,
                     uint64_t seed, int variant, bool unknowns)
{
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.synchronous_full = false;
    remove_db(dbpath);
    for (size_t i = 0; i < PROP_UPDATES; i++)
        upd_unknowns(&ups[i], unknowns);
    store_t *s = open_at(dbpath, &cfg);
    store_authority_t auth = {prop_ministries, PROP_PRODUCERS, prop_members, prop_n_members};
    cr_assert_eq(store_set_authority(s, &auth), 0);
    size_t i = 0;
    while (i < PROP_UPDATES) {
        size_t batch = 1 + rnd(st, 40);
        cr_assert_eq(store_begin(s), 0);
        for (size_t j = 0; j < batch && i < PROP_UPDATES; j++, i++) {
            store_outcome_t o;
            cr_assert_eq(store_apply(s, &ups[order[i]].u, &o), 0, "seed %" PRIu64, seed);
            /* an unlisted producer is not admitted, whatever the order */
            cr_assert(o == STORE_APPLIED || o == STORE_REJECTED || o == STORE_UNADMITTED,
                      "seed %" PRIu64 " variant %d: update %zu outcome %d", seed, variant, order[i],
                      (int)o);
        }
        if (rnd(st, 2))
            cr_assert_geq(store_refresh_summaries(s), 0);
        cr_assert_eq(store_commit(s), 0);
    }
    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_digest(s, out->digest), 0);
    cr_assert_eq(store_commit(s), 0);
    out->head = store_head(s);
    store_close(&s);
    /* the per-park resident aggregates, kept by deltas, equal a recount
     * once the store has written them all (at close) */
    static const char recount[] =
        "SELECT country, park_id, count(*), coalesce(sum(investment_cents), 0)"
        " FROM resident WHERE deleted = 0 GROUP BY country, park_id";
    static const char kept[] = "SELECT country, park_id, residents, investment_cents"
                               " FROM resident_agg WHERE residents <> 0 OR investment_cents <> 0";
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM (%s EXCEPT %s)", recount, kept);
    cr_assert_eq(sql_int(sql), 0, "seed %" PRIu64 ": resident_agg misses a recount row", seed);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM (%s EXCEPT %s)", kept, recount);
    cr_assert_eq(sql_int(sql), 0, "seed %" PRIu64 ": resident_agg has a wrong row", seed);
    prop_hash_rows(out);
}

static void shuffle(size_t *a, size_t n, uint64_t *st)
{
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rnd(st, (unsigned)i + 1);
        size_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* The same set of updates in any order (interleavings of three
 * producers, or any order of one-update producers), in batches of random
 * size, gives the same digest and the same stored bytes; the updates
 * carry unknown fields (envelope, bodies, Period, specializations), and
 * each order run again without them gives the same revisions and bytes,
 * change log included: unknown fields reach no stored record. */
Test(store, same_updates_in_any_order_give_same_digest)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    int64_t started = wire_monotonic_ms();
    const char *env = getenv("STORE_PROP_SEED");
    if (env)
        seed = strtoull(env, NULL, 10);
    if (!seed)
        seed = 1;
    cr_log_info("order-independence seed %" PRIu64 " (STORE_PROP_SEED to replay)", seed);
    uint64_t st = seed;
    static upd_t ups[PROP_UPDATES];
    size_t order[PROP_UPDATES], by_producer[PROP_PRODUCERS][PROP_UPDATES];
    size_t count[PROP_PRODUCERS] = {0};
    uint8_t empty[32];
    prop_result_t first, got, plain;

    /* an empty store's digest, to show the sets leave a real state */
    {
        store_t *s = open_db();
        cr_assert_eq(store_digest(s, empty), 0);
        store_close(&s);
    }

    for (int variant = 0; variant < 2; variant++) {
        /* variant 0: three producers, every interleaving keeps each one's
         * sequence order; variant 1: one producer per update, any order */
        memset(count, 0, sizeof(count));
        prop_n_members = 0;
        for (size_t i = 0; i < PROP_UPDATES; i++) {
            if (variant == 0) {
                unsigned p = rnd(&st, PROP_PRODUCERS);
                by_producer[p][count[p]] = i;
                count[p]++;
                prop_update(&ups[i], &st, prop_producers[p], count[p]);
                if (i < PROP_PRODUCERS) {
                    snprintf(prop_members[i].producer, sizeof(prop_members[i].producer), "%s",
                             prop_producers[i]);
                    prop_members[i].ministry = i;
                    prop_n_members++;
                }
            } else {
                /* one producer per update, each speaking for one of the
                 * three ministries; one in ten is listed nowhere (not
                 * admitted) */
                char id[16];
                snprintf(id, sizeof(id), "P%03zu", i);
                prop_update(&ups[i], &st, id, 1);
                if (i % 10 != 9) {
                    snprintf(prop_members[prop_n_members].producer,
                             sizeof(prop_members[0].producer), "%s", id);
                    prop_members[prop_n_members++].ministry = rnd(&st, PROP_PRODUCERS);
                }
            }
            order[i] = i;
        }
        for (int o = 0; o < PROP_ORDERS; o++) {
            if (o > 0 && variant == 0) {
                size_t labels[PROP_UPDATES], n = 0, next[PROP_PRODUCERS] = {0};
                for (unsigned p = 0; p < PROP_PRODUCERS; p++)
                    for (size_t k = 0; k < count[p]; k++)
                        labels[n++] = p;
                shuffle(labels, n, &st);
                for (size_t k = 0; k < n; k++)
                    order[k] = by_producer[labels[k]][next[labels[k]]++];
            } else if (o > 0) {
                shuffle(order, PROP_UPDATES, &st);
            }
            /* the same order and batches without the unknown fields */
            uint64_t again = st;
            prop_run(ups, order, &again, &plain, seed, variant, false);
            prop_run(ups, order, &st, o == 0 ? &first : &got, seed, variant, true);
            prop_result_t *r = o == 0 ? &first : &got;
            cr_assert_eq(r->head, plain.head,
                         "seed %" PRIu64 " variant %d: order %d: unknown fields changed the "
                         "revisions handed out (%" PRIu64 " against %" PRIu64 ")",
                         seed, variant, o, r->head, plain.head);
            cr_assert_eq(r->stored, plain.stored,
                         "seed %" PRIu64 " variant %d: order %d: unknown fields reached the "
                         "stored records (replay: STORE_PROP_SEED=%" PRIu64 ")",
                         seed, variant, o, seed);
            if (o == 0) {
                cr_assert_neq(memcmp(first.digest, empty, 32), 0, "seed %" PRIu64 ": empty state",
                              seed);
                /* the figures a change of the store's code must keep */
                char hex[65];
                for (int i = 0; i < 32; i++)
                    snprintf(hex + 2 * i, 3, "%02x", first.digest[i]);
                cr_log_info("seed %" PRIu64 " variant %d: digest %s rows %016" PRIx64
                            " stored %016" PRIx64 " head %" PRIu64,
                            seed, variant, hex, first.rows, first.stored, first.head);
                continue;
            }
            cr_assert_eq(memcmp(first.digest, got.digest, 32), 0,
                         "seed %" PRIu64 " variant %d: order %d gives another digest "
                         "(replay: STORE_PROP_SEED=%" PRIu64 ")",
                         seed, variant, o, seed);
            cr_assert_eq(first.rows, got.rows,
                         "seed %" PRIu64 " variant %d: order %d stores other bytes "
                         "(replay: STORE_PROP_SEED=%" PRIu64 ")",
                         seed, variant, o, seed);
        }
    }
    cr_log_info("order independence: 2 variants x %d orders x %d updates in %" PRId64 " ms",
                PROP_ORDERS, PROP_UPDATES, wire_monotonic_ms() - started);
}

/* A batch larger than the change log: nothing of it is pruned while it is
 * pinned as unpublished; once pinned past it, the next commit prunes down
 * to changelog_keep. */
Test(store, pinned_changes_outlive_changelog_keep)
{
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.changelog_keep = 10;
    store_t *s = open_at(dbpath, &cfg);
    store_pin_changes(s, 0); /* nothing published yet */
    cr_assert_eq(store_begin(s), 0);
    for (int i = 1; i <= 40; i++) {
        upd_t x;
        char id[16];
        store_outcome_t out;
        snprintf(id, sizeof(id), "P%d", i);
        upd_init(&x, "AZ-MOE", (uint64_t)i, i * 10, PROVISIONAL);
        upd_park(&x, "AZ", id);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
    }
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_head(s), 40);
    cr_assert_eq(store_oldest(s), 1, "unpublished revisions were pruned");

    cr_assert_not(store_prune_due(s), "the pin has not moved yet");
    store_pin_changes(s, 40); /* all published */
    cr_assert(store_prune_due(s), "an empty batch would prune now");
    upd_t x;
    upd_init(&x, "AZ-MOE", 41, 410, PROVISIONAL);
    upd_park(&x, "AZ", "P41");
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_eq(store_oldest(s), 32);
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), 10);
    store_close(&s);
}

/* ---------------------------------------------------------------- operations figures */

/* The conflicts by reason class as `parksync status` shows them. */
typedef struct reasons {
    char name[8][32]; /* class names, in the order given */
    uint64_t n[8];    /* their rows */
    size_t count;     /* classes given */
} reasons_t;

static int on_reason(void *arg, const char *reason_class, uint64_t n)
{
    reasons_t *r = arg;
    cr_assert_lt(r->count, 8);
    snprintf(r->name[r->count], sizeof(r->name[0]), "%s", reason_class);
    r->n[r->count++] = n;
    return 0;
}

/* The store's figures equal what counting the tables gives. */
static void check_figures(store_t *s, const char *when)
{
    static const char *const tables[] = {NULL,         "park",           "resident",
                                         "trade_flow", "country_report", "summary"};
    /* the classes as store.h defines them, counted the slow way */
    static const char classes[] =
        "SELECT CASE"
        " WHEN reason LIKE 'not authoritative%' THEN 'not_authoritative'"
        " WHEN reason LIKE 'unknown producer%' THEN 'unknown_producer'"
        " WHEN reason LIKE 'event time%' THEN 'future_event_time'"
        " WHEN reason LIKE 'stale%' THEN 'stale'"
        " WHEN reason LIKE 'overridden%' THEN 'overridden'"
        " WHEN reason LIKE 'invalid%' THEN 'invalid'"
        " ELSE 'other' END AS class, count(*) FROM conflict GROUP BY class ORDER BY class";
    char sql[96];
    reasons_t got = {0};
    uint64_t n, total;
    sqlite3 *db;
    sqlite3_stmt *st;
    size_t i = 0;

    /* the tables, read by another connection, once the deferred rows are in */
    cr_assert_eq(store_settle(s), 0, "%s", when);
    for (int k = 1; k < 6; k++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE deleted = 0", tables[k]);
        cr_assert_eq(store_count_records(s, (Parksync__V1__RecordKind)k, &n), 0);
        cr_assert_eq((int64_t)n, sql_int(sql), "%s: %s: store says %" PRIu64 ", the table %" PRId64,
                     when, tables[k], n, sql_int(sql));
    }
    cr_assert_eq(store_conflict_counts(s, &total, on_reason, &got), 0);
    cr_assert_eq((int64_t)total, sql_int("SELECT count(*) FROM conflict"), "%s: conflicts", when);
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, classes, -1, &st, NULL), SQLITE_OK);
    for (; sqlite3_step(st) == SQLITE_ROW; i++) {
        cr_assert_lt(i, got.count, "%s: class %s missing", when, sqlite3_column_text(st, 0));
        cr_assert_str_eq(got.name[i], (const char *)sqlite3_column_text(st, 0), "%s", when);
        cr_assert_eq((int64_t)got.n[i], sqlite3_column_int64(st, 1), "%s: %s", when, got.name[i]);
    }
    cr_assert_eq(i, got.count, "%s: extra classes", when);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Applies `n` random updates (deletes and refusals among them) in one batch. */
static void random_batch(store_t *s, uint64_t *st, uint64_t *seq, size_t n)
{
    upd_t x;
    store_outcome_t out;
    cr_assert_eq(store_begin(s), 0);
    for (size_t i = 0; i < n; i++) {
        unsigned p = rnd(st, PROP_PRODUCERS + 1);
        if (p == PROP_PRODUCERS) {
            /* refused before the merge: the classes "invalid" and "other" */
            upd_t bad;
            upd_init(&bad, "AZ-MOE", ++seq[0], 1, PROVISIONAL);
            upd_park(&bad, "AZ", "P-BAD");
            cr_assert_eq(
                store_reject(s, &bad.u, rnd(st, 2) ? "invalid: park.name" : "topic mismatch", &out),
                0);
            continue;
        }
        prop_update(&x, st, prop_producers[p], ++seq[p]);
        cr_assert_eq(store_apply(s, &x.u, &out), 0, "apply: %s", store_errmsg(s));
    }
    cr_assert_geq(store_refresh_summaries(s), 0);
}

/* Live records per kind and conflicts per reason are kept as the batches
 * go: after applies, deletes, a rollback and a reopen they equal what
 * counting the tables gives. */
Test(store, figures_equal_the_tables)
{
    uint64_t st = 7, seq[PROP_PRODUCERS] = {0};
    store_authority_t auth = {prop_ministries, PROP_PRODUCERS, prop_members, 1};
    snprintf(prop_members[0].producer, sizeof(prop_members[0].producer), "AZ-MOE");
    prop_members[0].ministry = 0;
    store_t *s = open_db();
    cr_assert_eq(store_set_authority(s, &auth), 0);
    check_figures(s, "empty");
    for (int b = 0; b < 20; b++) {
        random_batch(s, &st, seq, 1 + rnd(&st, 60));
        cr_assert_eq(store_commit(s), 0, "commit: %s", store_errmsg(s));
        check_figures(s, "after a commit");
    }

    uint64_t kept[PROP_PRODUCERS];
    memcpy(kept, seq, sizeof(kept));
    random_batch(s, &st, seq, 200);
    store_rollback(s);
    memcpy(seq, kept, sizeof(seq));
    check_figures(s, "after a rollback");

    random_batch(s, &st, seq, 100);
    cr_assert_eq(store_commit(s), 0, "commit: %s", store_errmsg(s));
    store_close(&s);
    s = open_db();
    check_figures(s, "after a reopen");
    cr_assert_eq(store_set_authority(s, &auth), 0);
    random_batch(s, &st, seq, 100);
    cr_assert_eq(store_commit(s), 0, "commit: %s", store_errmsg(s));
    check_figures(s, "after a commit on the reopened store");
    store_close(&s);
}

static void count_vm(void *arg)
{
    (*(uint64_t *)arg)++;
}

/* Work SQLite does for the store's figures, in virtual machine steps. */
static uint64_t figures_work(store_t *s, const uint64_t *vm)
{
    uint64_t n, total, before = *vm;
    for (int k = 1; k < 6; k++)
        cr_assert_eq(store_count_records(s, (Parksync__V1__RecordKind)k, &n), 0);
    cr_assert_eq(store_conflict_counts(s, &total, NULL, NULL), 0);
    return *vm - before;
}

/* `parksync status` and the metrics endpoint read these figures every
 * second on the writer's connection: they must cost the same whatever
 * the size of the tables, not a scan of every row. */
Test(store, figures_do_not_scan_the_tables)
{
    uint64_t vm = 0, seq = 0;
    store_seams_t seams = {.arg = &vm, .vm = count_vm};
    store_config_t cfg;
    store_outcome_t out;
    upd_t x;
    char id[16];
    uint64_t small, large;

    store_config_init(&cfg);
    cfg.synchronous_full = false;
    cfg.seams = &seams;
    store_t *s = open_at(dbpath, &cfg);
    for (int round = 0; round < 2; round++) {
        /* round 0: 10 residents and conflicts; round 1: 2,000 more */
        int n = round == 0 ? 10 : 2000;
        cr_assert_eq(store_begin(s), 0);
        for (int i = 0; i < n; i++) {
            upd_init(&x, "AZ-MOE", ++seq, 100, PROVISIONAL);
            snprintf(id, sizeof(id), "R%d-%d", round, i);
            upd_resident(&x, "AZ", "P1", id);
            cr_assert_eq(store_apply(s, &x.u, &out), 0);
            upd_init(&x, "AZ-MOE", ++seq, 100, PROVISIONAL);
            upd_resident(&x, "AZ", "P1", id);
            cr_assert_eq(store_reject(s, &x.u, "invalid: test", &out), 0);
        }
        cr_assert_eq(store_commit(s), 0);
        if (round == 0)
            small = figures_work(s, &vm);
        else
            large = figures_work(s, &vm);
    }
    cr_log_info("figures: %" PRIu64 " steps at 10 rows, %" PRIu64 " at 2,010", small, large);
    cr_assert_leq(large, small + 16,
                  "the figures cost %" PRIu64 " steps at 2,010 rows against %" PRIu64
                  " at 10: they scan the tables",
                  large, small);
    store_close(&s);
}

/* ---------------------------------------------------------------- faults */

/* Fails every read of `what` while armed. */
typedef struct fault {
    const char *what; /* which read fails */
    bool armed;       /* fail it now */
    int hits;         /* reads failed */
} fault_t;

static int inject(void *arg, const char *what)
{
    fault_t *f = arg;
    if (!f->armed || strcmp(what, f->what) != 0)
        return 0;
    f->hits++;
    return -EIO;
}

/* A rollback reloads the producers' positions from the database; when
 * that read fails the store must not go on from empty positions (a batch
 * would then commit a producer's position as 0): it refuses batches until
 * a reload succeeds. */
Test(store, failed_producer_reload_refuses_batches_until_it_loads)
{
    fault_t f = {.what = "producers"};
    store_seams_t seams = {.arg = &f, .fault = inject};
    store_config_t cfg;
    store_outcome_t out;
    upd_t x;

    store_config_init(&cfg);
    cfg.seams = &seams;
    store_t *s = open_at(dbpath, &cfg);
    for (uint64_t q = 1; q <= 3; q++) {
        upd_init(&x, "AZ-MOE", q, 100 * (int64_t)q, PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    }
    cr_assert_eq(store_begin(s), 0);
    upd_init(&x, "AZ-MOE", 4, 400, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    f.armed = true;
    store_rollback(s);
    cr_assert_eq(f.hits, 1);

    /* still failing: no batch, and the message says why */
    int rc = store_begin(s);
    cr_assert_lt(rc, 0, "a batch began with unknown producer positions");
    cr_assert_not_null(strstr(store_errmsg(s), "producer"), "errmsg: %s", store_errmsg(s));
    cr_assert_eq(f.hits, 2, "begin did not retry the reload");

    /* the read works again: the next begin reloads, and the position
     * goes on from 3 */
    f.armed = false;
    upd_init(&x, "AZ-MOE", 5, 500, PROVISIONAL);
    upd_park(&x, "AZ", "P1");
    cr_assert_eq(store_begin(s), 0, "begin: %s", store_errmsg(s));
    cr_assert_eq(store_apply(s, &x.u, &out), 0);
    cr_assert_eq(out, STORE_GAP, "sequence 5 after 3 is a gap");
    cr_assert_eq(store_commit(s), 0);
    int64_t kept = sql_int("SELECT last_sequence FROM producer WHERE producer_id = 'AZ-MOE'");
    cr_assert_eq(kept, 3, "a producer's position went backwards: 3, then %" PRId64 " committed",
                 kept);
    cr_assert_eq(store_producer_last(s, "AZ-MOE"), 3);
    x.u.sequence = 4;
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    store_close(&s);
}

/* ---------------------------------------------------------------- history work */

#define HISTORY_CHANGES 3000 /* versions of one park after the one looked at */

/* A snapshot at an old revision follows each changed record's links back
 * through the change log, one lookup per change; the daemon's loop reads
 * it a record at a time, so no one call of store_cursor_next may do all
 * of a long history: it stops after its share of lookups with -EAGAIN
 * and goes on where it stopped. */
Test(store, history_cursor_does_bounded_work_per_call)
{
    uint64_t vm = 0, seq = 0, first;
    store_seams_t seams = {.arg = &vm, .vm = count_vm};
    store_config_t cfg;
    store_outcome_t out;
    upd_t x;
    char name[32];

    store_config_init(&cfg);
    cfg.synchronous_full = false;
    cfg.seams = &seams;
    store_t *s = open_at(dbpath, &cfg);
    upd_init(&x, "AZ-MOE", ++seq, 1, PROVISIONAL);
    upd_park(&x, "AZ", "P0"); /* a park with no history, before and after */
    cr_assert_eq(apply1(s, &x), STORE_APPLIED);
    cr_assert_eq(store_begin(s), 0);
    for (int i = 0; i <= HISTORY_CHANGES; i++) {
        uint8_t digest[32];
        upd_init(&x, "AZ-MOE", ++seq, 100 + i, PROVISIONAL);
        upd_park(&x, "AZ", "P1");
        snprintf(name, sizeof(name), "v%d", i);
        park_name(&x, name);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
        if (i == 0)
            first = store_head(s);
        if (i % 500 == 499) {
            cr_assert_eq(store_commit(s), 0);
            cr_assert_eq(store_begin(s), 0);
        } else {
            cr_assert_eq(store_digest(s, digest), 0); /* a flush: a revision per change */
        }
    }
    cr_assert_eq(store_commit(s), 0);
    cr_assert_geq(store_head(s), first + HISTORY_CHANGES); /* summaries have some too */

    store_filter_t f = {.kind = K_PARK};
    int err = 1, rc, yields = 0, got = 0;
    const uint8_t *rec;
    size_t len;
    store_cursor_t *c = store_snapshot_at_open(s, &f, first, &err);
    cr_assert_not_null(c, "at %" PRIu64 ": %d", first, err);
    uint64_t total = 0, most = 0;
    do {
        uint64_t before = vm;
        rc = store_cursor_next(c, &rec, &len);
        uint64_t work = vm - before;
        total += work;
        most = work > most ? work : most;
        if (rc == -EAGAIN) {
            yields++;
        } else if (rc == 1) {
            Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
            cr_assert_not_null(r);
            if (strcmp(r->park->park_id, "P1") == 0)
                cr_assert_str_eq(r->park->name, "v0");
            parksync__v1__record__free_unpacked(r, NULL);
            got++;
        }
    } while (rc == 1 || rc == -EAGAIN);
    cr_assert_eq(rc, 0, "cursor: %d", rc);
    store_cursor_close(&c);
    cr_assert_eq(got, 2);
    cr_log_info("history of %d changes: %" PRIu64 " steps in all, at most %" PRIu64
                " in one call, %d yields",
                HISTORY_CHANGES, total, most, yields);
    /* STORE_CURSOR_STEPS lookups of the 3,000 are under a tenth of the
     * work: a fifth leaves room for the scan around them */
    cr_assert_leq(most, total / 5,
                  "one call did %" PRIu64 " of the %" PRIu64 " steps of a %d-change history", most,
                  total, HISTORY_CHANGES);
    cr_assert_geq(yields, HISTORY_CHANGES / STORE_CURSOR_STEPS - 1);
    store_close(&s);
}

/* ---------------------------------------------------------------- SQLite's words */

/* A cursor that SQLite refuses to open (here: its table was renamed
 * behind the store's back) leaves SQLite's message in store_errmsg, not
 * just an errno that reads "Input/output error". */
Test(store, failed_cursor_open_keeps_sqlite_message)
{
    sqlite3 *db;
    int err = 0;
    store_t *s = open_db();
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db, "ALTER TABLE country_report RENAME TO country_report_gone", 0, 0, 0),
        SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    store_filter_t f = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY};
    cr_assert_null(store_snapshot_open(s, &f, &err));
    cr_assert_lt(err, 0);
    cr_assert_not_null(strstr(store_errmsg(s), "no such table: country_report"), "errmsg: '%s'",
                       store_errmsg(s));
    store_close(&s);
}

/* A cursor step that meets a damaged page says what SQLite said. */
Test(store, failed_cursor_step_keeps_sqlite_message)
{
    upd_t x;
    store_outcome_t out;
    char id[16];
    store_t *s = open_db();
    cr_assert_eq(store_begin(s), 0);
    for (int i = 0; i < 500; i++) {
        upd_init(&x, "AZ-MOE", (uint64_t)i + 1, 100, PROVISIONAL);
        snprintf(id, sizeof(id), "R%d", i);
        upd_resident(&x, "AZ", "P1", id);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
    }
    cr_assert_eq(store_commit(s), 0);
    store_close(&s); /* the last connection folds the WAL into the file */
    s = open_db();

    /* break the page type of the resident table's root page */
    int64_t root = sql_int("SELECT rootpage FROM sqlite_schema WHERE name = 'resident'");
    int64_t size = sql_int("PRAGMA page_size");
    cr_assert_gt(root, 1);
    FILE *f = fopen(dbpath, "r+b");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, (long)((root - 1) * size), SEEK_SET), 0);
    cr_assert_eq(fputc(0x01, f), 0x01);
    cr_assert_eq(fclose(f), 0);

    store_filter_t filter = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT};
    const uint8_t *rec;
    size_t len;
    int err = 0;
    store_cursor_t *c = store_snapshot_open(s, &filter, &err);
    cr_assert_not_null(c, "open: %d %s", err, store_errmsg(s));
    cr_assert_lt(store_cursor_next(c, &rec, &len), 0);
    cr_assert_not_null(strstr(store_cursor_errmsg(c), "malformed"), "errmsg: '%s'",
                       store_cursor_errmsg(c));
    store_cursor_close(&c);
    store_close(&s);
}

/* ---------------------------------------------------------------- claims, retention */

static int64_t retention_now; /* the store's clock in the retention tests, us */

static int64_t retention_clock(void)
{
    return retention_now;
}

/* AZ-MOE owns AZ, TJ-MINT owns TJ: TJ-MINT's parks of AZ are refused
 * and kept as claims. */
static void az_tj(store_t *s)
{
    static const store_ministry_t m[2] = {{.name = "AZ-MOE", .country = "AZ"},
                                          {.name = "TJ-MINT", .country = "TJ"}};
    static const store_member_t mem[2] = {{"AZ-MOE", 0}, {"TJ-MINT", 1}};
    store_authority_t a = {m, 2, mem, 2};
    cr_assert_eq(store_set_authority(s, &a), 0);
}

/* n refusals by TJ-MINT from sequence *seq + 1 on, in one batch: each a
 * conflict row and a claim. */
static void refusals(store_t *s, uint64_t *seq, size_t n)
{
    store_outcome_t out;
    upd_t x;
    cr_assert_eq(store_begin(s), 0);
    for (size_t i = 0; i < n; i++) {
        upd_init(&x, "TJ-MINT", ++*seq, 100, PROVISIONAL);
        upd_park(&x, "AZ", "AZ-P1");
        cr_assert_eq(store_apply(s, &x.u, &out), 0, "%s", store_errmsg(s));
        cr_assert_eq(out, STORE_REJECTED);
    }
    cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
}

static void empty_batch(store_t *s)
{
    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
}

/* A refused update padded with fields the schema does not know, in its
 * envelope, body and specializations, is kept as a claim with its known
 * fields only: the bytes the same update without them packs to. */
Test(store, a_claim_keeps_known_fields_only)
{
    store_t *s = open_db();
    upd_t x;

    az_tj(s);
    upd_init(&x, "TJ-MINT", 1, 100, PROVISIONAL);
    upd_park(&x, "AZ", "AZ-P1");
    park_name(&x, "Sumgait");
    x.specs.n_values = 1;
    x.specs.values = x.spec_values;
    x.spec_values[0] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
    x.park.specializations = &x.specs;
    upd_unknown(&x, &x.u.base, 0x11111111ULL);
    upd_unknown(&x, &x.park.base, 0x22222222ULL);
    upd_unknown(&x, &x.specs.base, 0x33333333ULL);
    cr_assert(wire_has_unknown(&x.u.base));
    cr_assert_eq(apply1(s, &x), STORE_REJECTED);
    store_close(&s);

    upd_unknowns(&x, false);
    size_t len;
    uint8_t *want = wire_pack(&x.u.base, &len);
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT update_pb FROM claim", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    size_t got = (size_t)sqlite3_column_bytes(st, 0);
    bool same = got == len && memcmp(sqlite3_column_blob(st, 0), want, len) == 0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(want);
    cr_assert(same, "the claim holds %zu bytes, not the %zu of its known fields", got, len);
}

/* [store] conflicts_keep: each commit leaves the newest rows, and the
 * claims of the rows it drops go with them; the counts follow. */
Test(store, retention_keeps_the_newest_conflicts_and_their_claims)
{
    store_config_t cfg;
    store_pruned_t p;
    uint64_t seq = 0, total;
    store_config_init(&cfg);
    cfg.conflicts_keep = 10;
    store_t *s = open_at(dbpath, &cfg);

    az_tj(s);
    for (int b = 0; b < 25; b++) {
        refusals(s, &seq, 1);
        cr_assert_eq(sql_int("SELECT count(*) FROM conflict"), b < 10 ? b + 1 : 10);
        cr_assert_eq(sql_int("SELECT count(*) FROM claim"), b < 10 ? b + 1 : 10);
        cr_assert_not(store_prune_due(s));
    }
    cr_assert_eq(sql_int("SELECT min(sequence) FROM conflict"), 16, "the newest are kept");
    cr_assert_eq(sql_int("SELECT min(sequence) FROM claim"), 16);
    cr_assert_eq(sql_int("SELECT count(*) FROM claim JOIN conflict USING (producer_id, sequence)"),
                 10, "each claim left is listed by a conflict row left");
    cr_assert_eq(store_conflict_counts(s, &total, NULL, NULL), 0);
    cr_assert_eq(total, 10);
    check_figures(s, "after retention");
    store_pruned_counts(s, &p);
    cr_assert_eq(p.conflicts, 15);
    cr_assert_eq(p.claims, 15);

    /* a rolled-back prune is not counted and leaves the rows */
    cr_assert_eq(store_begin(s), 0);
    store_rollback(s);
    store_pruned_counts(s, &p);
    cr_assert_eq(p.conflicts, 15);
    store_close(&s);
    s = open_at(dbpath, &cfg);
    check_figures(s, "after a reopen");
    store_close(&s);
}

/* [store] conflicts_keep_days: rows older than the horizon go at the
 * next commit, an empty one included; younger rows stay. */
Test(store, retention_drops_conflicts_by_age)
{
    store_config_t cfg;
    store_pruned_t p;
    uint64_t seq = 0;
    store_config_init(&cfg);
    cfg.now_us = retention_clock;
    cfg.conflicts_keep_us = 100 * INT64_C(1000000);
    retention_now = 1000 * INT64_C(1000000);
    store_t *s = open_at(dbpath, &cfg);

    az_tj(s);
    refusals(s, &seq, 5);
    retention_now += 50 * INT64_C(1000000);
    refusals(s, &seq, 5);
    cr_assert_not(store_prune_due(s));
    retention_now += 70 * INT64_C(1000000); /* the first five are 120 s old */
    cr_assert(store_prune_due(s));
    empty_batch(s);
    cr_assert_not(store_prune_due(s));
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict"), 5);
    cr_assert_eq(sql_int("SELECT min(sequence) FROM claim"), 6);
    check_figures(s, "after the first five aged");

    /* the age is the store's clock at open too */
    store_close(&s);
    retention_now += 60 * INT64_C(1000000);
    s = open_at(dbpath, &cfg);
    cr_assert(store_prune_due(s));
    empty_batch(s);
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict"), 0);
    cr_assert_eq(sql_int("SELECT count(*) FROM claim"), 0);
    cr_assert_not(store_prune_due(s));
    store_pruned_counts(s, &p);
    cr_assert_eq(p.conflicts, 5, "counted since this open");
    check_figures(s, "all aged");
    store_close(&s);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Parks P1..Pn, or P(first + 1) to P(first + n), from AZ-MOE in one
 * batch, sequences from *seq on; residents R1.. of `park` instead when it
 * is not NULL. */
static void records_from(store_t *s, uint64_t *seq, int first, int n, const char *name,
                         const char *park)
{
    cr_assert_eq(store_begin(s), 0);
    for (int i = first + 1; i <= first + n; i++) {
        upd_t x;
        char id[16];
        store_outcome_t out;
        snprintf(id, sizeof(id), "%s%d", park ? "R" : "P", i);
        ++*seq;
        upd_init(&x, "AZ-MOE", *seq, (int64_t)*seq * 10, PROVISIONAL);
        if (park)
            upd_resident(&x, "AZ", park, id);
        else
            upd_park(&x, "AZ", id);
        if (name)
            park_name(&x, name);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
    }
    cr_assert_eq(store_commit(s), 0);
}

static void parks_from(store_t *s, uint64_t *seq, int first, int n, const char *name)
{
    records_from(s, seq, first, n, name, NULL);
}

static void parks_batch(store_t *s, uint64_t *seq, int n, const char *name)
{
    parks_from(s, seq, 0, n, name);
}

/* The change log keeps changelog_keep revisions. A commit drops what its
 * batch added beyond that and at most STORE_LOG_PRUNE_STEP (256) rows of
 * a backlog more, so no commit waits for a backlog whole; the rest is
 * due (store_prune_due) and goes with the next commits. (It used to wait
 * until the excess was 1 % of keep and drop it in one statement: 10,000
 * rows in one commit at the default keep.) */
Test(store, changelog_goes_in_bounded_steps)
{
    store_config_t cfg;
    uint64_t seq = 0;
    store_config_init(&cfg);
    cfg.changelog_keep = 0;
    store_t *s = open_at(dbpath, &cfg);
    parks_batch(s, &seq, 600, NULL);
    cr_assert_eq(store_head(s), 600);
    store_close(&s);

    cfg.changelog_keep = 10;
    s = open_at(dbpath, &cfg);
    const int64_t left[] = {600 - 256, 600 - 512, 10};
    for (size_t i = 0; i < 3; i++) {
        cr_assert(store_prune_due(s), "step %zu", i);
        empty_batch(s);
        cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), left[i], "step %zu", i);
    }
    cr_assert_not(store_prune_due(s));
    cr_assert_eq(store_oldest(s), 591);

    /* a batch of 300 changes drops 300: the log stays at keep */
    parks_batch(s, &seq, 300, "renamed");
    cr_assert_not(store_prune_due(s), "a batch drops at least what it added");
    cr_assert_eq(sql_int("SELECT count(*) FROM changelog"), 10);
    cr_assert_eq(store_oldest(s), store_head(s) - 9);
    store_close(&s);
}

/* WAL frames (pages) a one-update commit of a resident picked at random
 * among n writes, over `commits` commits: the WAL only grows, as nothing
 * checkpoints a store opened with background_checkpoint. */
static double frames_per_commit(store_t *s, uint64_t *seq, int n, int commits)
{
    char wal[sizeof dbpath + 4];
    struct stat before, after;
    uint64_t rng = 0x5eed;
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    cr_assert_eq(stat(wal, &before), 0);
    for (int c = 0; c < commits; c++) {
        upd_t x;
        char id[16];
        store_outcome_t out;
        bool changed;
        snprintf(id, sizeof(id), "R%u", 1 + rnd(&rng, (unsigned)n));
        ++*seq;
        upd_init(&x, "AZ-MOE", *seq, (int64_t)*seq * 10, PROVISIONAL);
        Parksync__V1__Resident *r = upd_resident(&x, "AZ", "P1", id);
        r->has_investment_usd_cents = true; /* the park's total moves */
        r->investment_usd_cents = (int64_t)*seq;
        uint64_t head = store_head(s);
        cr_assert_eq(store_begin(s), 0);
        cr_assert_eq(store_apply(s, &x.u, &out), 0);
        cr_assert_eq(store_commit(s), 0);
        changed = store_head(s) == head + 1;
        cr_assert(changed, "commit %d made no revision", c);
    }
    cr_assert_eq(stat(wal, &after), 0);
    return (double)(after.st_size - before.st_size) / (double)(sql_int("PRAGMA page_size") + 24) /
           commits;
}

/* A one-update commit writes four pages: the record's, the change log's,
 * the producer's and the park aggregate's. It used to write meta's head
 * too (the head is the change log's newest row), and once the change log
 * was full the log's oldest page for the one row it dropped: five, then
 * six pages, a fifth more bytes for the disk to take at each update. */
Test(store, a_one_update_commit_writes_four_pages)
{
    const uint64_t keeps[] = {0, 4096};
    for (size_t k = 0; k < 2; k++) {
        store_config_t cfg;
        uint64_t seq = 0;
        store_config_init(&cfg);
        cfg.changelog_keep = keeps[k];
        cfg.background_checkpoint = true;
        store_t *s = open_at(dbpath, &cfg);
        records_from(s, &seq, 0, 4200, NULL, "P1"); /* past keep: the log is full */
        double frames = frames_per_commit(s, &seq, 4200, 400);
        cr_log_info("changelog_keep %" PRIu64 ": %.2f pages per one-update commit", keeps[k],
                    frames);
        cr_assert_leq(frames, 4.5, "changelog_keep %" PRIu64 ": %.2f pages per one-update commit",
                      keeps[k], frames);
        /* and the head the log tells is the one a reopened store goes on from */
        uint64_t head = store_head(s);
        store_close(&s);
        s = open_at(dbpath, &cfg);
        cr_assert_eq(store_head(s), head);
        store_close(&s);
        remove_db(dbpath);
    }
}

/* A store that keeps its whole change log, with background checkpoints
 * and a checkpointer of its own in *c; name is filled with a long park
 * name. */
static store_t *open_checkpointed(store_checkpointer_t **c, char *name, size_t size)
{
    store_config_t cfg;
    char err[256];
    store_config_init(&cfg);
    cfg.changelog_keep = 0;
    cfg.background_checkpoint = true;
    store_t *s = open_at(dbpath, &cfg);
    *c = store_checkpointer_open(dbpath, err, sizeof err);
    cr_assert_not_null(*c, "%s", err);
    memset(name, 'n', size - 1);
    name[size - 1] = '\0';
    return s;
}

/* WAL frames past the point where the writer starts the WAL over
 * (STORE_WAL_RESET_FRAMES, 16,384) and past the 64 MiB the file was once
 * cut to when it did */
#define WAL_PAST_RESET 17000

/* The writer starts a long WAL over only once the checkpointer has copied
 * nearly all of it: what it copies itself, with two fsyncs, every update
 * arriving meanwhile waits for. Told of a checkpoint that left most of
 * the WAL behind it waits (0); after a checkpoint that caught up it
 * resets (1), and the next commit writes the WAL from its start. */
Test(store, wal_reset_waits_for_the_checkpointer)
{
    store_wal_t early, w;
    char name[200], wal[sizeof dbpath + 4];
    uint64_t seq = 0;
    int rounds;
    store_checkpointer_t *c;
    store_t *s = open_checkpointed(&c, name, sizeof name);

    parks_batch(s, &seq, 200, NULL);
    cr_assert_geq(store_checkpoint(c, &early), 0);
    cr_assert_eq(store_wal_reset(s, &early), 0, "nothing is due yet");
    snprintf(wal, sizeof wal, "%s-wal", dbpath);
    for (rounds = 0; rounds < 10000 && file_size(wal) < WAL_PAST_RESET * (4096 + 24); rounds++) {
        name[rounds % (sizeof name - 1)] = (char)('a' + rounds % 26); /* every record changes */
        parks_batch(s, &seq, 200, name);
    }
    cr_assert_geq(file_size(wal), WAL_PAST_RESET * (4096 + 24), "the WAL never grew past 64 MiB");
    cr_assert_eq(store_wal_reset(s, &early), 0, "it copied what the checkpointer had not");
    cr_assert_eq(store_wal_resets(s), 0, "waiting for the checkpointer is not a reset");
    cr_assert_eq(store_wal_reset(s, NULL), 1, "without a checkpointer it resets at once");
    cr_assert_eq(store_wal_resets(s), 1);
    parks_batch(s, &seq, 1, "one");
    cr_assert_eq(store_checkpoint(c, &w), 0);
    cr_assert_lt(w.frames, 1024, "the WAL did not start over: %lld frames", (long long)w.frames);

    /* once more (the file keeps its size: as many rounds), now with a
     * checkpointer that has caught up */
    for (int round = 0; round < rounds; round++) {
        name[round % (sizeof name - 1)] = (char)('A' + round % 26);
        parks_batch(s, &seq, 200, name);
    }
    cr_assert_eq(store_checkpoint(c, &w), 0, "a reader held part of the WAL");
    cr_assert_eq(w.backfilled, w.frames);
    cr_assert(store_wal_long(&w));
    cr_assert_eq(store_wal_reset(s, &w), 1);
    parks_batch(s, &seq, 1, "over");
    cr_assert_eq(store_checkpoint(c, &w), 0);
    cr_assert_lt(w.frames, 1024, "the WAL did not start over: %lld frames", (long long)w.frames);
    cr_assert_not(store_wal_long(&w));
    store_checkpointer_close(&c);
    store_close(&s);
}

/* open_checkpointed, then new parks until the WAL file holds `frames`
 * frames of 4 KiB pages; wal is filled with its path. */
static store_t *open_grown(store_checkpointer_t **c, uint64_t *seq, char *wal, int64_t frames)
{
    char name[200];
    store_t *s = open_checkpointed(c, name, sizeof name);
    snprintf(wal, sizeof dbpath + 4, "%s-wal", dbpath);
    for (int round = 0; round < 20000 && file_size(wal) < frames * (4096 + 24); round++)
        parks_from(s, seq, round * 200, 200, name); /* new rows: new pages */
    cr_assert_geq(file_size(wal), frames * (4096 + 24), "the WAL never grew to %lld frames",
                  (long long)frames);
    return s;
}

/* The WAL file keeps its size when it starts over, up to
 * STORE_WAL_LIMIT_BYTES. Under sustained ingest the writer lets the WAL
 * reach STORE_WAL_FORCE_FRAMES (128 MiB) before it forces a reset; a file
 * cut below that (it was 64 MiB) grew back after every reset, and the
 * file system allocated and zeroed its blocks anew each time. */
Test(store, a_wal_grown_under_load_keeps_its_size)
{
    store_wal_t w;
    char wal[sizeof dbpath + 4];
    uint64_t seq = 0;
    store_checkpointer_t *c;
    store_t *s = open_grown(&c, &seq, wal, WAL_PAST_RESET);
    int64_t size = file_size(wal);
    cr_assert_eq(store_wal_reset(s, NULL), 1, "without a checkpointer it resets at once");
    parks_batch(s, &seq, 1, "one"); /* the first commit of the new WAL: SQLite cuts it here */
    cr_assert_eq(store_checkpoint(c, &w), 0);
    cr_assert_lt(w.frames, 1024, "the WAL did not start over: %lld frames", (long long)w.frames);
    cr_assert_eq(file_size(wal), size, "the WAL was cut from %lld to %lld bytes", (long long)size,
                 (long long)file_size(wal));
    store_checkpointer_close(&c);
    store_close(&s);
}

/* A checkpoint that copies many pages syncs the database every 256 of
 * them, not once at its end: a commit's fsync (the disk's cache flush is
 * the same for every file) then never has megabytes of the checkpoint's
 * pages to write out first. */
Test(store, a_large_checkpoint_syncs_as_it_goes)
{
    store_wal_t w;
    char wal[sizeof dbpath + 4];
    uint64_t seq = 0;
    store_checkpointer_t *c;
    store_t *s = open_grown(&c, &seq, wal, 2000);
    unsigned long before = store_checkpoint_syncs();
    cr_assert_eq(store_checkpoint(c, &w), 0);
    cr_assert_geq(w.frames, 2000, "%lld frames", (long long)w.frames);
    unsigned long syncs = store_checkpoint_syncs() - before;
    cr_assert_geq(syncs, (unsigned long)(w.frames / 256 / 2),
                  "%lu syncs for a checkpoint of %lld frames: it synced once, at its end", syncs,
                  (long long)w.frames);
    store_checkpointer_close(&c);
    store_close(&s);
}

/* A backlog goes STORE_PRUNE_STEP (1024) rows a commit, so no commit
 * waits for it, while a batch that records many rows drops as many as it
 * recorded: retention keeps pace with ingest. */
Test(store, retention_goes_in_bounded_steps)
{
    store_config_t cfg;
    uint64_t seq = 0;
    store_config_init(&cfg);
    cfg.conflicts_keep = 0;
    store_t *s = open_at(dbpath, &cfg);
    az_tj(s);
    refusals(s, &seq, 3000);
    store_close(&s);

    cfg.conflicts_keep = 100;
    s = open_at(dbpath, &cfg);
    az_tj(s);
    const int64_t left[] = {3000 - 1024, 3000 - 2048, 100};
    for (size_t i = 0; i < 3; i++) {
        cr_assert(store_prune_due(s));
        empty_batch(s);
        cr_assert_eq(sql_int("SELECT count(*) FROM conflict"), left[i], "step %zu", i);
        cr_assert_eq(sql_int("SELECT count(*) FROM claim"), left[i], "step %zu", i);
    }
    cr_assert_not(store_prune_due(s));

    refusals(s, &seq, 2000);
    cr_assert_not(store_prune_due(s), "a batch drops at least what it recorded");
    cr_assert_eq(sql_int("SELECT count(*) FROM conflict"), 100);
    cr_assert_eq(sql_int("SELECT min(sequence) FROM conflict"), 3000 + 2000 - 99);
    check_figures(s, "after steps");
    store_close(&s);
}

/* With authority off, max_producers bounds the producers the database
 * takes: a new id beyond it is not admitted and leaves nothing, while
 * the known ones go on, across a reopen too. */
Test(store, max_producers_admits_no_new_id_beyond_it)
{
    static const char *const ids[4] = {"P-A", "P-B", "P-C", "P-D"};
    store_config_t cfg;
    store_producer_stats_t ps;
    upd_t x;
    store_config_init(&cfg);
    cfg.max_producers = 3;
    store_t *s = open_at(dbpath, &cfg);

    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < 4; i++) {
            upd_init(&x, ids[i], 1 + (uint64_t)round, 100, PROVISIONAL);
            upd_park(&x, "AZ", "AZ-P1");
            cr_assert_eq(apply1(s, &x), i < 3 ? STORE_APPLIED : STORE_UNADMITTED, "%s round %d",
                         ids[i], round);
        }
        cr_assert_eq(store_producer_stats(s, "P-D", &ps), -ENOENT);
        store_close(&s);
        cr_assert_eq(sql_int("SELECT count(*) FROM producer"), 3);
        s = open_at(dbpath, &cfg);
    }
    store_close(&s);
}

/* The store turns SQLite's allocation statistics off before its first
 * connection: each sqlite3_malloc and sqlite3_free would otherwise take
 * a global mutex to count bytes nothing reads. Counted, an open store
 * holds some; not counted, SQLite reports none. */
Test(store, sqlite_does_not_count_its_allocations)
{
    sqlite3_int64 used = -1, highest = -1;
    store_t *s = open_db();
    cr_assert_eq(sqlite3_status64(SQLITE_STATUS_MEMORY_USED, &used, &highest, 0), SQLITE_OK);
    cr_assert_eq(used, 0, "SQLite counts its allocations: %lld bytes in use", (long long)used);
    store_close(&s);
}

/* [store] cache_mib bounds the writer's page cache (store_config_t
 * cache_kib): 30,000 residents written through their table, some 5 MiB
 * of pages, leave a 1 MiB cache holding about 1 MiB (1.02 here) and fill
 * a 32 MiB one past 4 MiB (5.2). */
Test(store, the_page_cache_holds_what_cache_kib_allows)
{
    const size_t kib[2] = {1024, 32768};
    uint64_t held[2];

    for (int k = 0; k < 2; k++) {
        store_config_t cfg;
        uint64_t seq = 0;
        char id[16];

        store_config_init(&cfg);
        cfg.cache_kib = kib[k];
        cfg.defer_rows = 0; /* every commit writes its rows, through the cache */
        store_t *s = open_at(dbpath, &cfg);
        cr_assert_eq(store_begin(s), 0);
        for (int i = 1; i <= 30000; i++) {
            snprintf(id, sizeof id, "R%05d", i);
            money_resident(s, "AZ-MOE", ++seq, "AZ", "AZ-P1", id, i);
            if (i % 1000 == 0) {
                cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
                cr_assert_eq(store_begin(s), 0);
            }
        }
        cr_assert_eq(store_commit(s), 0, "%s", store_errmsg(s));
        held[k] = store_cache_bytes(s);
        store_close(&s);
        remove_db(dbpath);
    }
    cr_expect_gt(held[0], 0);
    cr_expect_leq(held[0], 1536 * 1024, "a 1 MiB cache holds %" PRIu64 " bytes", held[0]);
    cr_expect_gt(held[1], 4 * 1024 * 1024, "a 32 MiB cache holds %" PRIu64 " bytes", held[1]);
}
