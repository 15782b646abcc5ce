/*
 * schema.c - the database's schema and migrations, the statements the
 * store prepares once, and the check that a file is ours before anything
 * is written to it.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Migration i takes the schema from user_version i to i + 1. Append new
 * migrations; never edit a released one.
 */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES ('epoch', randomblob(16)), ('head', 0);"
    "CREATE TABLE park("
    " country TEXT NOT NULL, park_id TEXT NOT NULL, deleted INTEGER NOT NULL,"
    " revision INTEGER NOT NULL, reported_residents INTEGER,"
    " reported_investment_cents INTEGER, record BLOB NOT NULL, stamps BLOB NOT NULL,"
    " PRIMARY KEY (country, park_id)) WITHOUT ROWID;"
    "CREATE TABLE resident("
    " country TEXT NOT NULL, park_id TEXT NOT NULL, resident_id TEXT NOT NULL,"
    " deleted INTEGER NOT NULL, revision INTEGER NOT NULL, investment_cents INTEGER,"
    " record BLOB NOT NULL, stamps BLOB NOT NULL,"
    " PRIMARY KEY (country, park_id, resident_id)) WITHOUT ROWID;"
    "CREATE TABLE trade_flow("
    " exporter TEXT NOT NULL, importer TEXT NOT NULL, period_key TEXT NOT NULL,"
    " deleted INTEGER NOT NULL, revision INTEGER NOT NULL, exporter_cents INTEGER,"
    " importer_cents INTEGER, value_cents INTEGER, record BLOB NOT NULL,"
    " stamps BLOB NOT NULL, PRIMARY KEY (exporter, importer, period_key)) WITHOUT ROWID;"
    "CREATE INDEX trade_flow_importer ON trade_flow(importer);"
    "CREATE TABLE country_report("
    " country TEXT NOT NULL, period_key TEXT NOT NULL, deleted INTEGER NOT NULL,"
    " revision INTEGER NOT NULL, record BLOB NOT NULL, stamps BLOB NOT NULL,"
    " PRIMARY KEY (country, period_key)) WITHOUT ROWID;"
    "CREATE TABLE summary("
    " country TEXT PRIMARY KEY, deleted INTEGER NOT NULL, revision INTEGER NOT NULL,"
    " record BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE changelog("
    " revision INTEGER PRIMARY KEY, kind INTEGER NOT NULL, country TEXT,"
    " country2 TEXT, record BLOB NOT NULL);"
    "CREATE TABLE producer("
    " producer_id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL,"
    " applied INTEGER NOT NULL, duplicates INTEGER NOT NULL, gaps INTEGER NOT NULL,"
    " rejected INTEGER NOT NULL, last_seen_us INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE conflict("
    " id INTEGER PRIMARY KEY, recorded_us INTEGER NOT NULL, producer_id TEXT NOT NULL,"
    " sequence INTEGER NOT NULL, kind INTEGER NOT NULL, key TEXT, reason TEXT NOT NULL);",
    /* 2: reconciliation audit: conflict countries and event time, claims */
    "ALTER TABLE conflict ADD COLUMN country TEXT;"
    "ALTER TABLE conflict ADD COLUMN partner TEXT;"
    "ALTER TABLE conflict ADD COLUMN event_time_us INTEGER;"
    "ALTER TABLE conflict ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX conflict_recorded ON conflict(recorded_us);"
    "CREATE TABLE claim("
    " producer_id TEXT NOT NULL, sequence INTEGER NOT NULL, recorded_us INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, key TEXT, country TEXT, reason TEXT NOT NULL,"
    " update_pb BLOB NOT NULL, PRIMARY KEY (producer_id, sequence)) WITHOUT ROWID;",
    /* 3: history: each change keeps the record it replaced (NULL: none
     * published), so the state at an earlier revision can be rebuilt;
     * changes from before this migration have no prev, hence history_from */
    "ALTER TABLE changelog ADD COLUMN prev BLOB;"
    "INSERT INTO meta(key, value) SELECT 'history_from', value + 1 FROM meta"
    " WHERE key = 'head';",
    /* 4: live residents and their investment per park, kept up to date by
     * every resident change, so a country summary costs a few rows rather
     * than a scan of all its residents. It used to fill the table with
     * SQLite's sum(), which fails ("integer overflow") on a park whose
     * residents' investment exceeds int64 and so stopped the database from
     * opening; migration 6 fills it exactly instead, so it is left empty
     * here (every database that ran the old text is rebuilt by 6 too). */
    "CREATE TABLE resident_agg("
    " country TEXT NOT NULL, park_id TEXT NOT NULL, residents INTEGER NOT NULL,"
    " investment_cents INTEGER NOT NULL, PRIMARY KEY (country, park_id)) WITHOUT ROWID;",
    /* 5: no query reads conflicts by recorded_us (listing pages by id and
     * filters the time on the way), so its index only cost every conflict
     * row a second b-tree insert */
    "DROP INDEX conflict_recorded;",
    /* 6: a park's residents' investment is exact beyond int64: it is
     * investment_cents + investment_carry * 10^18 (agg_split). The table
     * is rebuilt from the live residents (migration_fns[5]): SQLite's +
     * turned an overflowing total into an inexact REAL. */
    "ALTER TABLE resident_agg ADD COLUMN investment_carry INTEGER NOT NULL DEFAULT 0;",
    /* 7: federation: per peer site, its epoch and the revision of it
     * pulled and merged through, stored with what was merged */
    "CREATE TABLE peer(name TEXT PRIMARY KEY, epoch BLOB NOT NULL,"
    " revision INTEGER NOT NULL) WITHOUT ROWID;",
    /* 8: the head revision is read from the change log (STORE_HEAD_SQL)
     * and commits no longer write meta's 'head'. Nothing changes in the
     * file; the version keeps an earlier build, which reads the head from
     * meta alone, from opening it and handing out revisions again. */
    "UPDATE meta SET value = (" STORE_HEAD_SQL ") WHERE key = 'head';",
    /* 9: deferred state (store_int.h, the row cache): a change keeps its
     * record's stamps, so that a row left unwritten at its commit can be
     * rebuilt from the log; the tables hold every change up to meta's
     * 'state_from', and the log after it is replayed at open */
    "ALTER TABLE changelog ADD COLUMN stamps BLOB;"
    "INSERT INTO meta(key, value) VALUES ('state_from', (" STORE_HEAD_SQL "));",
    /* 10: a commit that logged changes keeps what it moved besides its
     * records on its last change-log row, as JSON, not in their tables:
     * the producers' positions and counters (producers, producer.c) and
     * the parks' resident aggregates (aggregates, summary.c). The tables
     * take them when state_from moves (and the aggregates before a
     * summary reads them); the rows after state_from are read at open.
     * A park's row holds the revision it was written at, and a copy
     * applies only over an older row: a summary refreshed inside a batch
     * writes the table after the park moved, with no copy of its own.
     * An earlier build would read the tables alone and take producers
     * back to older positions; the version keeps it out. */
    "ALTER TABLE changelog ADD COLUMN producers TEXT;"
    "ALTER TABLE changelog ADD COLUMN aggregates TEXT;"
    "ALTER TABLE resident_agg ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;",
    /* 11: a change's prev may be kept as its difference from the change's
     * own record (prev_encode, key.h), a third of a random update's log
     * bytes. Rows logged before keep theirs whole, which reads the same.
     * Nothing changes in the file; the version keeps an earlier build,
     * which reads every prev as a whole record, from opening it. */
    "UPDATE meta SET value = value WHERE key = 'epoch';",
};

#define STORE_SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int rebuild_resident_agg(store_t *s);

/* Work of migration i done in C after its SQL, in the same transaction. */
static int (*const migration_fns[STORE_SCHEMA_VERSION])(store_t *s) = {
    [5] = rebuild_resident_agg,
};

const kind_sql_t kind_sql[STORE_KINDS] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] =
        {"park",
         "SELECT revision, record, stamps, deleted, reported_residents, reported_investment_cents"
         " FROM park WHERE country = ?1 AND park_id = ?2",
         "INSERT INTO park(country, park_id, deleted, revision, record, stamps,"
         " reported_residents, reported_investment_cents)"
         " VALUES (?1, ?2, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (country, park_id) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps, reported_residents = excluded.reported_residents,"
         " reported_investment_cents = excluded.reported_investment_cents",
         "SELECT record FROM park WHERE deleted = 0 ORDER BY country, park_id",
         "SELECT record FROM park WHERE deleted = 0 AND country = ?1 ORDER BY country, park_id", 2},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] =
        {"resident",
         "SELECT revision, record, stamps, deleted, investment_cents FROM resident"
         " WHERE country = ?1 AND park_id = ?2 AND resident_id = ?3",
         "INSERT INTO resident(country, park_id, resident_id, deleted, revision, record, stamps,"
         " investment_cents) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
         " ON CONFLICT (country, park_id, resident_id) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps, investment_cents = excluded.investment_cents",
         "SELECT record FROM resident WHERE deleted = 0 ORDER BY country, park_id, resident_id",
         "SELECT record FROM resident WHERE deleted = 0 AND country = ?1"
         " ORDER BY country, park_id, resident_id",
         1},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE] =
        {"trade_flow",
         "SELECT revision, record, stamps, deleted, exporter_cents, importer_cents, value_cents"
         " FROM trade_flow WHERE exporter = ?1 AND importer = ?2 AND period_key = ?3",
         "INSERT INTO trade_flow(exporter, importer, period_key, deleted, revision, record,"
         " stamps, exporter_cents, importer_cents, value_cents)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
         " ON CONFLICT (exporter, importer, period_key) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps, exporter_cents = excluded.exporter_cents,"
         " importer_cents = excluded.importer_cents, value_cents = excluded.value_cents",
         "SELECT record FROM trade_flow WHERE deleted = 0 ORDER BY exporter, importer, period_key",
         /* unary + keeps the scan in key order (streaming) rather than an OR
          * of two index lookups that would need a sorter */
         "SELECT record FROM trade_flow WHERE deleted = 0 AND (+exporter = ?1 OR +importer = ?1)"
         " ORDER BY exporter, importer, period_key",
         3},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] =
        {"country_report",
         "SELECT revision, record, stamps, deleted FROM country_report"
         " WHERE country = ?1 AND period_key = ?2",
         "INSERT INTO country_report(country, period_key, deleted, revision, record, stamps)"
         " VALUES (?1, ?2, ?4, ?5, ?6, ?7) ON CONFLICT (country, period_key) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps",
         "SELECT record FROM country_report WHERE deleted = 0 ORDER BY country, period_key",
         "SELECT record FROM country_report WHERE deleted = 0 AND country = ?1"
         " ORDER BY country, period_key",
         0},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY] =
        {"summary", "SELECT revision, record, NULL, deleted FROM summary WHERE country = ?1",
         "INSERT INTO summary(country, deleted, revision, record) VALUES (?1, ?4, ?5, ?6)"
         " ON CONFLICT (country) DO UPDATE SET deleted = excluded.deleted,"
         " revision = excluded.revision, record = excluded.record",
         "SELECT record FROM summary WHERE deleted = 0 ORDER BY country",
         "SELECT record FROM summary WHERE deleted = 0 AND country = ?1 ORDER BY country", 0},
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_HEAD_GET] = STORE_HEAD_SQL,
    [ST_PRODUCER_ALL] = "SELECT producer_id, last_sequence, applied, duplicates, gaps,"
                        " rejected, last_seen_us FROM producer",
    [ST_LOG_EXTRAS] = "UPDATE changelog SET producers = ?1, aggregates = ?2 WHERE revision = ?3",
    [ST_AGG_LOGGED] = "SELECT c.revision, json_extract(j.value, '$[0]'),"
                      " json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),"
                      " json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]')"
                      " FROM changelog AS c, json_each(c.aggregates) AS j"
                      " WHERE c.revision > ?1 AND c.aggregates IS NOT NULL"
                      " ORDER BY c.revision, j.key",
    [ST_PRODUCER_LOGGED] = "SELECT c.revision, json_extract(j.value, '$[0]'),"
                           " json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),"
                           " json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'),"
                           " json_extract(j.value, '$[5]'), json_extract(j.value, '$[6]')"
                           " FROM changelog AS c, json_each(c.producers) AS j"
                           " WHERE c.revision > ?1 AND c.producers IS NOT NULL"
                           " ORDER BY c.revision, j.key",
    [ST_PRODUCER_PUT] = "INSERT INTO producer(producer_id, last_sequence, applied, duplicates,"
                        " gaps, rejected, last_seen_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                        " ON CONFLICT (producer_id) DO UPDATE SET"
                        " last_sequence = excluded.last_sequence, applied = excluded.applied,"
                        " duplicates = excluded.duplicates, gaps = excluded.gaps,"
                        " rejected = excluded.rejected, last_seen_us = excluded.last_seen_us",
    [ST_CONFLICT_PUT] = "INSERT INTO conflict(recorded_us, producer_id, sequence, kind, key,"
                        " reason, country, partner, event_time_us, claim)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_CONFLICT_LIST] = "SELECT id, recorded_us, producer_id, sequence, kind, key, country,"
                         " partner, reason, event_time_us, claim FROM conflict"
                         " WHERE id > ?1 AND (?2 = 0 OR kind = ?2)"
                         " AND (?3 = '' OR country = ?3 OR partner = ?3)"
                         " AND recorded_us >= ?4 ORDER BY id LIMIT ?5",
    /* ids grow with every row, so the oldest rows are a range of the
     * primary key: the subquery reads ?1 rows at most, and each row goes
     * by its rowid. RETURNING hands the counts and claims their rows. */
    [ST_CONFLICT_PRUNE] = "DELETE FROM conflict WHERE id IN"
                          " (SELECT id FROM conflict ORDER BY id LIMIT ?1) AND recorded_us < ?2"
                          " RETURNING reason, claim, producer_id, sequence",
    [ST_CONFLICT_FIRST] = "SELECT recorded_us FROM conflict ORDER BY id LIMIT 1",
    [ST_CLAIM_PUT] = "INSERT OR REPLACE INTO claim(producer_id, sequence, recorded_us, kind, key,"
                     " country, reason, update_pb) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_CLAIM_DROP] = "DELETE FROM claim WHERE producer_id = ?1 AND sequence = ?2",
    [ST_LOG_PUT] = "INSERT INTO changelog(revision, kind, country, country2, record, prev, stamps)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_LOG_OLDEST] = "SELECT min(revision) FROM changelog",
    [ST_LOG_PRUNE] = "DELETE FROM changelog WHERE revision <= ?1",
    [ST_LOG_SINCE] = "SELECT revision, kind, country, record FROM changelog"
                     " WHERE revision > ?1 ORDER BY revision",
    /* Summaries add money in C (wide_t): SQLite's sum() fails with
     * "integer overflow" past int64, which 93 parks of 10^17 cents reach. */
    [ST_SUM_PARKS] =
        "SELECT p.park_id, p.reported_residents, p.reported_investment_cents,"
        " coalesce(a.residents, 0), coalesce(a.investment_cents, 0),"
        " coalesce(a.investment_carry, 0)"
        " FROM park p LEFT JOIN resident_agg a ON a.country = p.country AND a.park_id = p.park_id"
        " WHERE p.country = ?1 AND p.deleted = 0 ORDER BY p.park_id",
    [ST_SUM_RESIDENTS] = "SELECT residents, investment_cents, investment_carry FROM resident_agg"
                         " WHERE country = ?1",
    /* A group (partner, period) holds at most the flow country -> partner
     * and the flow partner -> country (the primary key), so each CASE
     * picks one row at most: max() is that row's value, and nothing is
     * added that could overflow. */
    [ST_SUM_TRADE] =
        "SELECT CASE WHEN exporter = ?1 THEN importer ELSE exporter END AS partner, period_key,"
        " max(CASE WHEN exporter = ?1 THEN value_cents END),"
        " max(CASE WHEN importer = ?1 THEN value_cents END),"
        " max(CASE WHEN exporter = ?1 THEN exporter_cents END),"
        " max(CASE WHEN exporter = ?1 THEN importer_cents END),"
        " max(CASE WHEN importer = ?1 THEN importer_cents END),"
        " max(CASE WHEN importer = ?1 THEN exporter_cents END)"
        " FROM trade_flow WHERE deleted = 0 AND (exporter = ?1 OR importer = ?1)"
        " AND exporter <> importer GROUP BY partner, period_key ORDER BY partner, period_key",
    [ST_SUM_INDICATORS] = "SELECT record FROM country_report WHERE country = ?1 AND deleted = 0"
                          " ORDER BY period_key",
    [ST_AGG_GET] = "SELECT residents, investment_cents, investment_carry FROM resident_agg"
                   " WHERE country = ?1 AND park_id = ?2",
    /* over an older row only (migration 10): the table's writes are at
     * the head, a copy from the log may be older */
    [ST_AGG_PUT] = "INSERT INTO resident_agg(country, park_id, residents, investment_cents,"
                   " investment_carry, revision) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                   " ON CONFLICT (country, park_id) DO UPDATE SET residents = excluded.residents,"
                   " investment_cents = excluded.investment_cents,"
                   " investment_carry = excluded.investment_carry, revision = excluded.revision"
                   " WHERE excluded.revision >= resident_agg.revision",
    [ST_STATE_FROM_PUT] = "UPDATE meta SET value = ?1 WHERE key = 'state_from'",
    [ST_LOG_REPLAY] = "SELECT revision, record, stamps FROM changelog WHERE revision > ?1"
                      " AND kind = ?2 ORDER BY revision",
    [ST_LOG_AT] = "SELECT revision, record, stamps FROM changelog WHERE revision = ?1",
    [ST_SAVEPOINT] = "SAVEPOINT summary",
    [ST_RELEASE] = "RELEASE summary",
    [ST_ROLLBACK_TO] = "ROLLBACK TO summary",
    [ST_DIRTY_ALL] = "SELECT country FROM park UNION SELECT country FROM resident_agg"
                     " UNION SELECT exporter FROM trade_flow UNION SELECT importer FROM trade_flow"
                     " UNION SELECT country FROM country_report UNION SELECT country FROM summary",
};

static int prepare(store_t *s, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc);
}

int prepare_all(store_t *s)
{
    int rc;
    for (int i = 0; i < ST_COUNT; i++)
        if ((rc = prepare(s, stmt_sql[i], &s->st[i])) < 0)
            return rc;
    for (int k = 1; k < STORE_KINDS; k++) {
        if ((rc = prepare(s, kind_sql[k].select, &s->sel[k])) < 0 ||
            (rc = prepare(s, kind_sql[k].upsert, &s->put[k])) < 0 ||
            (rc = prepare(s, kind_sql[k].scan, &s->scan[k])) < 0)
            return rc;
    }
    return 0;
}

/* Steps a statement that returns no rows, then resets it. */
int step_done(store_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : db_fail(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

void stmt_reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

void bind_key(sqlite3_stmt *st, const rec_key_t *key)
{
    for (size_t i = 0; i < key->ncols; i++)
        sqlite3_bind_text(st, (int)i + 1, key->col[i], -1, SQLITE_STATIC);
}

int exec(store_t *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc);
}

static int pragma_int(store_t *s, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc);
    rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 0 : db_fail(s, rc);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return ret;
}

/* Rolls back a transaction of store_open after a failure, keeping the
 * failure's message. Returns rc. */
static int rollback_open(store_t *s, int rc)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    memcpy(s->err, keep, sizeof(keep));
    return rc;
}

/* Writes one park's row of resident_agg (rebuild_resident_agg). */
static int agg_row_put(store_t *s, sqlite3_stmt *st, const char *country, const char *park_id,
                       int64_t residents, wide_t investment)
{
    int64_t cents, carry;
    agg_split(investment, &cents, &carry);
    sqlite3_bind_text(st, 1, country, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, park_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, residents);
    sqlite3_bind_int64(st, 4, cents);
    sqlite3_bind_int64(st, 5, carry);
    return step_done(s, st);
}

/* Migration 6: resident_agg again from the live residents, summed in C
 * (exact), one park after the other in key order. */
static int rebuild_resident_agg(store_t *s)
{
    sqlite3_stmt *rd = NULL, *wr = NULL;
    char *country = NULL, *park_id = NULL;
    int64_t residents = 0;
    wide_t investment = 0;
    int rc;

    if ((rc = exec(s, "DELETE FROM resident_agg")) < 0 ||
        (rc = sqlite3_prepare_v2(s->db,
                                 "SELECT country, park_id, investment_cents FROM resident"
                                 " WHERE deleted = 0 ORDER BY country, park_id",
                                 -1, &rd, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(s->db,
                                 "INSERT INTO resident_agg(country, park_id, residents,"
                                 " investment_cents, investment_carry) VALUES (?1, ?2, ?3, ?4, ?5)",
                                 -1, &wr, NULL)) != SQLITE_OK) {
        rc = rc < 0 ? rc : db_fail(s, rc);
        goto out;
    }
    while ((rc = sqlite3_step(rd)) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(rd, 0);
        const char *p = (const char *)sqlite3_column_text(rd, 1);
        c = c ? c : "";
        p = p ? p : "";
        if (!country || strcmp(country, c) != 0 || strcmp(park_id, p) != 0) {
            if (country && (rc = agg_row_put(s, wr, country, park_id, residents, investment)) < 0)
                goto out;
            free(country);
            free(park_id);
            country = strdup(c);
            park_id = strdup(p);
            if (!country || !park_id) {
                rc = -ENOMEM;
                goto out;
            }
            residents = 0;
            investment = 0;
        }
        residents++;
        investment = wide_add(investment, sqlite3_column_int64(rd, 2));
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc);
        goto out;
    }
    rc = country ? agg_row_put(s, wr, country, park_id, residents, investment) : 0;
out:
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    free(country);
    free(park_id);
    return rc;
}

/*
 * Whose file this is, decided before anything is written to it: SQLite's
 * header holds an application id. Ours: go on. Zero in a file without a
 * schema: a new database, stamped now. Zero with a schema: a parksync
 * database made before the id was set (a user_version this build knows
 * and a meta table) is stamped too; anything else belongs to another
 * application and is refused rather than taken over.
 */
int check_owner(store_t *s)
{
    int id = 0, version = 0, objects = 0, meta = 0, rc;

    if ((rc = pragma_int(s, "PRAGMA application_id", &id)) < 0)
        return rc;
    if (id == STORE_APPLICATION_ID)
        return 0;
    if (id != 0) {
        snprintf(s->err, sizeof(s->err),
                 "not a parksync database: its application_id is 0x%08x, parksync's is 0x%08x; "
                 "refusing to take it over (give [daemon] database another path)",
                 (unsigned)id, (unsigned)STORE_APPLICATION_ID);
        return -EPROTO;
    }
    if ((rc = pragma_int(s, "PRAGMA user_version", &version)) < 0 ||
        (rc = pragma_int(s, "SELECT count(*) FROM sqlite_master", &objects)) < 0 ||
        (rc = pragma_int(
             s, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
             &meta)) < 0)
        return rc;
    if (objects > 0 && (version < 1 || version > STORE_SCHEMA_VERSION || meta == 0)) {
        snprintf(s->err, sizeof(s->err),
                 "not a parksync database: it holds %d schema objects of another application "
                 "(application_id 0, user_version %d); refusing to take it over (give [daemon] "
                 "database another path)",
                 objects, version);
        return -EPROTO;
    }
    return exec(s, "PRAGMA application_id = " STORE_APPLICATION_ID_SQL);
}

int migrate(store_t *s)
{
    int version = 0, rc;
    if ((rc = pragma_int(s, "PRAGMA user_version", &version)) < 0)
        return rc;
    if (version > STORE_SCHEMA_VERSION) {
        snprintf(s->err, sizeof(s->err), "schema version %d is newer than this build's %d", version,
                 STORE_SCHEMA_VERSION);
        return -EPROTO;
    }
    for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
        if ((rc = exec(s, "BEGIN IMMEDIATE")) < 0)
            return rc;
        if ((rc = exec(s, migrations[v])) < 0 ||
            (migration_fns[v] && (rc = migration_fns[v](s)) < 0) || (rc = exec(s, bump)) < 0)
            return rollback_open(s, rc);
        if ((rc = exec(s, "COMMIT")) < 0)
            return rc;
    }
    return 0;
}

/*
 * A file store_backup_finish made carries the META_COPY marker. Opened as
 * a live database it starts another history (whatever the original did
 * after the backup is not in it), so it gets a new epoch and loses the
 * marker, in one transaction: each restore of one backup is a history of
 * its own, and a subscriber holding revisions of another sees the change.
 */
int claim_copy(store_t *s)
{
    static const char sql[] = "UPDATE meta SET value = randomblob(" STORE_EPOCH_SQL_BYTES ")"
                              " WHERE key = 'epoch' AND EXISTS"
                              " (SELECT 1 FROM meta WHERE key = '" META_COPY "');"
                              "DELETE FROM meta WHERE key = '" META_COPY "';";
    int before, rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) < 0)
        return rc;
    before = sqlite3_total_changes(s->db);
    if ((rc = exec(s, sql)) < 0)
        return rollback_open(s, rc);
    if ((rc = exec(s, "COMMIT")) < 0)
        return rc;
    s->new_epoch = sqlite3_total_changes(s->db) != before;
    return 0;
}

/* -EPROTO, saying the meta table has no `what`. */
static int meta_missing(store_t *s, const char *what)
{
    snprintf(s->err, sizeof(s->err), "meta table has no %s", what);
    return -EPROTO;
}

/* Steps st to its row: 0, meta_missing when it has none, or SQLite's
 * error. */
static int meta_row(store_t *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? meta_missing(s, what) : db_fail(s, rc);
}

int load_meta(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_META_GET];
    int ret;
    sqlite3_bind_text(st, 1, "epoch", -1, SQLITE_STATIC);
    if ((ret = meta_row(s, st, "valid epoch")) == 0 &&
        sqlite3_column_bytes(st, 0) != WIRE_EPOCH_BYTES)
        ret = meta_missing(s, "valid epoch");
    if (ret == 0)
        memcpy(s->epoch, sqlite3_column_blob(st, 0), WIRE_EPOCH_BYTES);
    stmt_reset(st);
    if (ret < 0)
        return ret;
    st = s->st[ST_HEAD_GET];
    if ((ret = meta_row(s, st, "head revision")) == 0)
        s->head = (uint64_t)sqlite3_column_int64(st, 0);
    stmt_reset(st);
    if (ret < 0)
        return ret;
    st = s->st[ST_META_GET];
    sqlite3_bind_text(st, 1, "state_from", -1, SQLITE_STATIC);
    if ((ret = meta_row(s, st, "state_from")) == 0)
        s->state_from = (uint64_t)sqlite3_column_int64(st, 0);
    stmt_reset(st);
    s->replay_due = s->state_from < s->head;
    return ret;
}

int load_oldest(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_LOG_OLDEST];
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_ROW)
        ret = db_fail(s, rc);
    else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
        s->oldest = s->head + 1;
    else
        s->oldest = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return ret;
}
