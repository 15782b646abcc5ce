/*
 * outbox.c - the producer's durable outbox in SQLite.
 */
#include "outbox.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_BUSY_MS 2000 /* ms to wait for a lock held by another process */

struct outbox {
    sqlite3 *db;            /* the open database */
    sqlite3_stmt *put;      /* INSERT OR REPLACE one update */
    sqlite3_stmt *meta;     /* UPDATE meta.last_sequence */
    sqlite3_stmt *ack;      /* DELETE up to a sequence */
    sqlite3_stmt *begin;    /* BEGIN IMMEDIATE */
    sqlite3_stmt *commit;   /* COMMIT */
    sqlite3_stmt *rollback; /* ROLLBACK */
    sqlite3_stmt *note_get; /* SELECT a note */
    sqlite3_stmt *note_put; /* INSERT OR REPLACE a note */
    sqlite3_stmt *note_del; /* DELETE a note */
    bool in_batch;          /* a batch transaction is open */
    uint64_t batch_max;     /* highest sequence added to the open batch */
    uint64_t last_sequence; /* meta.last_sequence, cached */
    char errmsg[256];       /* last error, for outbox_errmsg */
};

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=NORMAL;"
    "CREATE TABLE IF NOT EXISTS outbox(sequence INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(producer_id TEXT NOT NULL, last_sequence INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS note(key TEXT PRIMARY KEY, value TEXT NOT NULL);";

static int db_fail(outbox_t *o, const char *what)
{
    snprintf(o->errmsg, sizeof o->errmsg, "%s: %s", what, sqlite3_errmsg(o->db));
    return -EIO;
}

static int step_done(outbox_t *o, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return db_fail(o, what);
    return 0;
}

/* Reads or creates the meta row; -EEXIST when it names another producer. */
static int meta_init(outbox_t *o, const char *producer_id)
{
    sqlite3_stmt *st = NULL;
    int rc = -EIO;

    if (sqlite3_prepare_v2(o->db, "SELECT producer_id, last_sequence FROM meta LIMIT 1", -1, &st,
                           NULL) != SQLITE_OK) {
        db_fail(o, "reading meta");
        goto finalize;
    }
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        const char *owner = (const char *)sqlite3_column_text(st, 0);
        if (owner == NULL || strcmp(owner, producer_id) != 0) {
            snprintf(o->errmsg, sizeof o->errmsg, "outbox belongs to producer '%.64s', not '%.64s'",
                     owner != NULL ? owner : "", producer_id);
            rc = -EEXIST;
            goto finalize;
        }
        o->last_sequence = (uint64_t)sqlite3_column_int64(st, 1);
        rc = 0;
        goto finalize;
    }
    if (s != SQLITE_DONE) {
        db_fail(o, "reading meta");
        goto finalize;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(o->db, "INSERT INTO meta(producer_id, last_sequence) VALUES(?, 0)", -1,
                           &st, NULL) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, producer_id, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE) {
        db_fail(o, "writing meta");
        goto finalize;
    }
    o->last_sequence = 0;
    rc = 0;
finalize:
    sqlite3_finalize(st);
    return rc;
}

outbox_t *outbox_new(const char *path, const char *producer_id, int *err, char *msg, size_t msglen)
{
    outbox_t *o = calloc(1, sizeof *o);
    int rc = -EIO;

    if (o == NULL) {
        *err = -ENOMEM;
        return NULL;
    }
    if (sqlite3_open_v2(path, &o->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        db_fail(o, "opening the outbox");
        goto fail;
    }
    sqlite3_busy_timeout(o->db, OUTBOX_BUSY_MS);
    if (sqlite3_exec(o->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
        db_fail(o, "creating the outbox schema");
        goto fail;
    }
    if ((rc = meta_init(o, producer_id)) < 0)
        goto fail;
    rc = -EIO;
    if (sqlite3_prepare_v2(o->db, "INSERT OR REPLACE INTO outbox(sequence, payload) VALUES(?, ?)",
                           -1, &o->put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "UPDATE meta SET last_sequence = max(last_sequence, ?)", -1,
                           &o->meta, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "DELETE FROM outbox WHERE sequence <= ?", -1, &o->ack, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "BEGIN IMMEDIATE", -1, &o->begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "COMMIT", -1, &o->commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "ROLLBACK", -1, &o->rollback, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "SELECT value FROM note WHERE key = ?", -1, &o->note_get, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "INSERT OR REPLACE INTO note(key, value) VALUES(?, ?)", -1,
                           &o->note_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(o->db, "DELETE FROM note WHERE key = ?", -1, &o->note_del, NULL) !=
            SQLITE_OK) {
        db_fail(o, "preparing outbox statements");
        goto fail;
    }
    *err = 0;
    return o;
fail:
    if (msg != NULL && msglen > 0)
        snprintf(msg, msglen, "%s", o->errmsg);
    *err = rc;
    outbox_destroy(&o);
    return NULL;
}

uint64_t outbox_last_sequence(const outbox_t *o)
{
    return o->last_sequence;
}

int outbox_load(outbox_t *o, outbox_row_fn fn, void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc = 0, s;

    if (sqlite3_prepare_v2(o->db, "SELECT sequence, payload FROM outbox ORDER BY sequence", -1, &st,
                           NULL) != SQLITE_OK)
        return db_fail(o, "reading the outbox");
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        const void *data = sqlite3_column_blob(st, 1);
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        if (fn(arg, (uint64_t)sqlite3_column_int64(st, 0), data, len) != 0)
            break;
    }
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        rc = db_fail(o, "reading the outbox");
    sqlite3_finalize(st);
    return rc;
}

int outbox_begin(outbox_t *o)
{
    int rc;

    if (o->in_batch)
        return 0;
    if ((rc = step_done(o, o->begin, "starting an outbox transaction")) < 0)
        return rc;
    o->in_batch = true;
    o->batch_max = 0;
    return 0;
}

bool outbox_in_batch(const outbox_t *o)
{
    return o->in_batch;
}

int outbox_add(outbox_t *o, uint64_t sequence, const void *payload, size_t len)
{
    int rc;

    if (!o->in_batch)
        return -EINVAL;
    sqlite3_bind_int64(o->put, 1, (sqlite3_int64)sequence);
    sqlite3_bind_blob(o->put, 2, payload, (int)len, SQLITE_STATIC);
    if ((rc = step_done(o, o->put, "writing to the outbox")) < 0)
        return rc;
    if (sequence > o->batch_max)
        o->batch_max = sequence;
    return 0;
}

int outbox_commit(outbox_t *o)
{
    int rc;

    if (!o->in_batch)
        return 0;
    if (o->batch_max > o->last_sequence) {
        sqlite3_bind_int64(o->meta, 1, (sqlite3_int64)o->batch_max);
        if ((rc = step_done(o, o->meta, "writing outbox meta")) < 0)
            goto rollback;
    }
    /* WAL + synchronous=NORMAL: the commit appends to the WAL without an
     * fsync, so a batch is safe from a process crash before it is on the
     * wire, at the cost of one write for the whole batch. */
    if ((rc = step_done(o, o->commit, "committing the outbox")) < 0)
        goto rollback;
    o->in_batch = false;
    if (o->batch_max > o->last_sequence)
        o->last_sequence = o->batch_max;
    return 0;
rollback:
    outbox_rollback(o);
    return rc;
}

void outbox_rollback(outbox_t *o)
{
    if (!o->in_batch)
        return;
    step_done(o, o->rollback, "rolling back the outbox");
    o->in_batch = false;
}

int outbox_put(outbox_t *o, uint64_t sequence, const void *payload, size_t len)
{
    bool own = !o->in_batch;
    int rc;

    if ((rc = outbox_begin(o)) < 0)
        return rc;
    if ((rc = outbox_add(o, sequence, payload, len)) < 0) {
        if (own)
            outbox_rollback(o);
        return rc;
    }
    return own ? outbox_commit(o) : 0;
}

int outbox_note_get(outbox_t *o, const char *key, char *buf, size_t size)
{
    int rc = -ENOENT;

    sqlite3_bind_text(o->note_get, 1, key, -1, SQLITE_STATIC);
    int s = sqlite3_step(o->note_get);
    if (s == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(o->note_get, 0);
        snprintf(buf, size, "%s", v != NULL ? v : "");
        rc = 0;
    } else if (s != SQLITE_DONE) {
        rc = db_fail(o, "reading an outbox note");
    }
    sqlite3_reset(o->note_get);
    sqlite3_clear_bindings(o->note_get);
    return rc;
}

int outbox_note_set(outbox_t *o, const char *key, const char *value)
{
    if (value == NULL) {
        sqlite3_bind_text(o->note_del, 1, key, -1, SQLITE_STATIC);
        return step_done(o, o->note_del, "deleting an outbox note");
    }
    sqlite3_bind_text(o->note_put, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(o->note_put, 2, value, -1, SQLITE_STATIC);
    return step_done(o, o->note_put, "writing an outbox note");
}

int outbox_ack(outbox_t *o, uint64_t sequence)
{
    sqlite3_bind_int64(o->ack, 1, (sqlite3_int64)sequence);
    return step_done(o, o->ack, "deleting acknowledged updates");
}

const char *outbox_errmsg(const outbox_t *o)
{
    return o->errmsg;
}

void outbox_destroy(outbox_t **op)
{
    if (op == NULL || *op == NULL)
        return;
    outbox_t *o = *op;
    outbox_rollback(o);
    sqlite3_finalize(o->note_get);
    sqlite3_finalize(o->note_put);
    sqlite3_finalize(o->note_del);
    sqlite3_finalize(o->put);
    sqlite3_finalize(o->meta);
    sqlite3_finalize(o->ack);
    sqlite3_finalize(o->begin);
    sqlite3_finalize(o->commit);
    sqlite3_finalize(o->rollback);
    sqlite3_close(o->db);
    free(o);
    *op = NULL;
}
