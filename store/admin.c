/*
 * admin.c - what operators read and run: record counts, the digest,
 * online backups, quick_check, and the checkpointer's connection.
 */
#include "store_int.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Counts the live records and the conflicts once, at open; from then on
 * the batches keep the counts. */
int figures_load(store_t *s)
{
    sqlite3_stmt *st = NULL;
    char sql[96];
    int rc = SQLITE_OK;

    memset(s->live, 0, sizeof(s->live));
    memset(s->reasons, 0, sizeof(s->reasons));
    for (int k = 1; k < STORE_KINDS && rc == SQLITE_OK; k++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE deleted = 0", kind_sql[k].table);
        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            s->live[k] = (uint64_t)sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_OK)
        return db_fail(s, rc);
    rc = sqlite3_prepare_v2(s->db, "SELECT reason, count(*) FROM conflict GROUP BY reason", -1, &st,
                            NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        s->reasons[reason_class_of((const char *)sqlite3_column_text(st, 0))] +=
            (uint64_t)sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(s, rc);
    return conflict_oldest_load(s);
}

int store_count_records(store_t *s, Parksync__V1__RecordKind kind, uint64_t *n)
{
    *n = 0;
    if (kind <= PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED || kind >= STORE_KINDS ||
        !kind_sql[kind].table)
        return -EINVAL;
    *n = s->live[kind];
    return 0;
}

int store_digest(store_t *s, uint8_t out[32])
{
    crypto_generichash_state h;
    int rc;
    if (s->in_batch && store_summaries_dirty(s) && (rc = store_refresh_summaries(s)) < 0)
        return rc;
    if (s->in_batch) {
        s->write_back = true; /* the scan below reads the tables */
        rc = pending_flush(s);
        s->write_back = false;
        if (rc < 0)
            return rc;
    } else if ((rc = store_settle(s)) < 0) {
        return rc;
    }
    crypto_generichash_init(&h, NULL, 0, 32);
    for (int k = 1; k < STORE_KINDS; k++) {
        sqlite3_stmt *st = s->scan[k];
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const uint8_t *body;
            size_t blen;
            uint8_t head[9];
            record_strip(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), &body,
                         &blen);
            head[0] = (uint8_t)k;
            for (int i = 0; i < 8; i++)
                head[1 + i] = (uint8_t)((uint64_t)blen >> (8 * i));
            crypto_generichash_update(&h, head, sizeof(head));
            crypto_generichash_update(&h, body, blen);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return db_fail(s, rc);
    }
    crypto_generichash_final(&h, out, 32);
    return 0;
}

#define BACKUP_PATH_MAX 4096 /* bytes of a backup path, with NUL */

struct store_backup {
    store_t *store;     /* borrowed: the source */
    sqlite3 *dst;       /* connection to the temporary copy */
    sqlite3_backup *bk; /* SQLite's backup handle */
    char *path;         /* final name, owned */
    char *tmp;          /* path + ".tmp", owned */
    uint64_t revision;  /* head revision the copy holds (store_backup_seal) */
    bool sealed;        /* the copy is complete and closed */
};

void store_backup_abort(store_backup_t **bp)
{
    store_backup_t *b;

    if (!bp || !*bp)
        return;
    b = *bp;
    if (b->bk)
        sqlite3_backup_finish(b->bk);
    if (b->dst)
        sqlite3_close_v2(b->dst);
    if (b->tmp) {
        char side[BACKUP_PATH_MAX];
        unlink(b->tmp);
        snprintf(side, sizeof(side), "%s-journal", b->tmp);
        unlink(side);
    }
    free(b->path);
    free(b->tmp);
    free(b);
    *bp = NULL;
}

store_backup_t *store_backup_start(store_t *s, const char *path, int *err)
{
    store_backup_t *b;
    int rc;

    if (!path || path[0] != '/' || strlen(path) + 16 > BACKUP_PATH_MAX) {
        *err = -EINVAL;
        return NULL;
    }
    if (s->in_batch) {
        *err = -EBUSY;
        return NULL;
    }
    if ((*err = store_settle(s)) < 0) /* a copy that needs no replay to be read */
        return NULL;
    b = calloc(1, sizeof(*b));
    if (!b || !(b->path = strdup(path)) || !(b->tmp = malloc(strlen(path) + 5))) {
        *err = -ENOMEM;
        goto fail;
    }
    b->store = s;
    snprintf(b->tmp, strlen(path) + 5, "%s.tmp", path);
    unlink(b->tmp); /* a leftover of an interrupted backup */
    rc = sqlite3_open_v2(b->tmp, &b->dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(s->err, sizeof(s->err), "%s: %s", b->tmp,
                 b->dst ? sqlite3_errmsg(b->dst) : sqlite3_errstr(rc));
        *err = errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
        goto fail;
    }
    b->bk = sqlite3_backup_init(b->dst, "main", s->db, "main");
    if (!b->bk) {
        snprintf(s->err, sizeof(s->err), "%s: %s", b->tmp, sqlite3_errmsg(b->dst));
        *err = -EIO;
        goto fail;
    }
    return b;
fail:
    store_backup_abort(&b);
    return NULL;
}

int store_backup_step(store_backup_t *b, int pages)
{
    int rc = sqlite3_backup_step(b->bk, pages);

    if (rc == SQLITE_DONE)
        return 1;
    if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return 0; /* busy/locked: try again on the next step */
    snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->tmp, sqlite3_errstr(rc));
    return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
}

/* fsync of a file or directory by name. 0 or -errno. */
static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

int store_backup_seal(store_backup_t *b)
{
    int rc;

    if (b->sealed)
        return 0;
    b->revision = store_head(b->store);
    rc = sqlite3_backup_finish(b->bk);
    b->bk = NULL;
    /* marks the copy: restored, it is another history (see claim_copy);
     * and its meta tells the head it holds, as the change log does */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(b->dst,
                          "INSERT OR REPLACE INTO meta(key, value) VALUES ('" META_COPY "', 1);"
                          "UPDATE meta SET value = (" STORE_HEAD_SQL ") WHERE key = 'head'",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(b->dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->tmp,
                 sqlite3_errmsg(b->dst));
        return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    rc = sqlite3_close(b->dst);
    b->dst = NULL;
    if (rc != SQLITE_OK) {
        snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->tmp,
                 sqlite3_errstr(rc));
        return -EIO;
    }
    b->sealed = true;
    return 0;
}

const char *store_backup_copy_path(const store_backup_t *b)
{
    return b->tmp;
}

int store_backup_finish(store_backup_t **bp, uint64_t *bytes, uint64_t *revision)
{
    store_backup_t *b = *bp;
    char dir[BACKUP_PATH_MAX];
    struct stat sb;
    char *slash;
    int rc;

    *bytes = 0;
    *revision = 0;
    if ((rc = store_backup_seal(b)) < 0)
        goto fail;
    *revision = b->revision;
    /* durability: the copy's bytes, then its name, then the directory entry */
    if ((rc = fsync_path(b->tmp, O_RDONLY)) < 0)
        goto fail_errno;
    if (rename(b->tmp, b->path) < 0) {
        rc = -errno;
        goto fail_errno;
    }
    snprintf(dir, sizeof(dir), "%s", b->path);
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if ((rc = fsync_path(dir, O_RDONLY | O_DIRECTORY)) < 0) {
        snprintf(b->store->err, sizeof(b->store->err), "fsync of %.200s: %s", dir, strerror(-rc));
        free(b->tmp);
        b->tmp = NULL; /* renamed: nothing to remove */
        goto fail;
    }
    if (stat(b->path, &sb) == 0)
        *bytes = (uint64_t)sb.st_size;
    free(b->tmp);
    b->tmp = NULL;
    store_backup_abort(bp);
    return 0;
fail_errno:
    snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->path, strerror(-rc));
fail:
    store_backup_abort(bp);
    return rc;
}

int store_backup(store_t *s, const char *path)
{
    uint64_t bytes, revision;
    char findings[200] = "";
    int err = 0, rc;
    store_backup_t *b = store_backup_start(s, path, &err);

    if (!b)
        return err;
    while ((rc = store_backup_step(b, -1)) == 0)
        ;
    if (rc < 0 || (rc = store_backup_seal(b)) < 0 ||
        (rc = store_check_file(b->tmp, findings, sizeof findings)) < 0) {
        if (findings[0])
            snprintf(s->err, sizeof(s->err), "the copy fails its check: %s", findings);
        store_backup_abort(&b);
        return rc;
    }
    return store_backup_finish(&b, &bytes, &revision);
}

/* PRAGMA quick_check on db: 0 when it finds nothing; -EUCLEAN with its
 * first findings in msg; another negative errno, with SQLite's message in
 * msg, when it cannot run. */
static int quick_check(sqlite3 *db, char *msg, size_t len)
{
    sqlite3_stmt *st = NULL;
    size_t at = 0;
    int rc, ret = 0;

    msg[0] = '\0';
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(" STORE_CHECK_FINDINGS ")", -1, &st, NULL);
    if (rc == SQLITE_OK)
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            if (t && strcmp(t, "ok") == 0)
                continue;
            ret = -EUCLEAN;
            if (at < len)
                at += (size_t)snprintf(msg + at, len - at, "%s%s", at ? "; " : "", t ? t : "?");
        }
    if (rc != SQLITE_DONE) {
        snprintf(msg, len, "%s", sqlite3_errmsg(db));
        ret = errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    sqlite3_finalize(st);
    return ret;
}

int store_check_file(const char *path, char *msg, size_t len)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);

    if (rc != SQLITE_OK) {
        snprintf(msg, len, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    rc = quick_check(db, msg, len);
    sqlite3_close(db);
    return rc;
}

struct store_checkpointer {
    sqlite3 *db;   /* connection used for checkpoints only */
    char err[256]; /* SQLite's message for the last failure */
};

store_checkpointer_t *store_checkpointer_open(const char *path, char *err, size_t errlen)
{
    store_checkpointer_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE, paced_vfs_name()) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, c->db ? sqlite3_errmsg(c->db) : "cannot open");
        store_checkpointer_close(&c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, STORE_BUSY_TIMEOUT_MS);
    /* A connection learns that the file is in WAL mode only when it
     * first reads it; until then a checkpoint is a no-op that reports
     * success (log and done -1), and the WAL grows without end. */
    if (sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(c->db));
        store_checkpointer_close(&c);
        return NULL;
    }
    return c;
}

int store_checkpoint(store_checkpointer_t *c, store_wal_t *w)
{
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);

    if (rc == SQLITE_BUSY) { /* the writer is resetting the WAL: not copied by this one */
        w->frames = w->backfilled = -1;
        return 1;
    }
    w->frames = log > 0 ? log : 0;
    w->backfilled = done > 0 ? done : 0;
    if (rc != SQLITE_OK) {
        snprintf(c->err, sizeof(c->err), "%s", sqlite3_errmsg(c->db));
        return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    if (log < 0) {
        snprintf(c->err, sizeof(c->err), "the database is not in WAL mode");
        return -EINVAL;
    }
    return log > done ? log - done : 0;
}

int store_checkpointer_check(store_checkpointer_t *c, char *msg, size_t len)
{
    return quick_check(c->db, msg, len);
}

const char *store_checkpointer_errmsg(const store_checkpointer_t *c)
{
    return c ? c->err : "no checkpointer";
}

void store_checkpointer_close(store_checkpointer_t **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    sqlite3_close((*cp)->db);
    free(*cp);
    *cp = NULL;
}
