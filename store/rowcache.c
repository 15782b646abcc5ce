/*
 * rowcache.c - the rows a batch reads and writes: loaded from SQLite or
 * the cache, stored back with a revision and a change-log entry when a
 * record's bytes change, written when the batch is flushed. What changed
 * is told to the watcher (store.on_change), not to any module by name.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pending_clear(store_t *s)
{
    for (size_t i = 0; i < s->n_pend; i++) {
        buf_free(&s->pend[i].blob);
        buf_free(&s->pend[i].stamps);
        buf_free(&s->pend[i].committed);
    }
    s->n_pend = 0;
    s->n_log = 0;
    s->n_dirty = 0;
    s->n_deferred = 0; /* what they held is in the change log: state_replay */
    sweep_reset(s);
    s->pend_hand = 0;
    index_clear(&s->pend_index);
}

void pending_free(store_t *s)
{
    pending_clear(s);
    free(s->pend);
    index_free(&s->pend_index);
    free(s->pend_log);
    free(s->pend_dirty);
    free(s->pend_sort);
    free(s->defer_list);
}

bool pending_key(const rec_key_t *key, char *out)
{
    size_t n = 0;
    out[n++] = (char)('0' + key->kind);
    for (size_t i = 0; i < key->ncols; i++) {
        size_t l = strlen(key->col[i]);
        if (n + l + 2 > STORE_PENDING_KEY || l > WIRE_MAX_ID)
            return false;
        out[n++] = '\x1f';
        memcpy(out + n, key->col[i], l);
        n += l;
    }
    out[n] = '\0';
    return true;
}

static const char *pending_key_at(const void *arg, uint32_t pos)
{
    return ((const store_t *)arg)->pend[pos].key;
}

/* The slot of `k` in the index: where it is, or the empty slot for it. */
static uint32_t *pending_slot(store_t *s, const char *k)
{
    return index_slot(&s->pend_index, k, pending_key_at, s);
}

static pending_t *pending_find(store_t *s, const char *k)
{
    if (s->n_pend == 0)
        return NULL;
    uint32_t *slot = pending_slot(s, k);
    return *slot ? &s->pend[*slot - 1] : NULL;
}

/*
 * The position of a clean entry taken out of the index, to be used for
 * another row (the cache is full). The clock: the hand passes entries in
 * turn, gives one that was used since its last pass another round, and
 * takes the first clean one that was not. When every entry is dirty or
 * deferred, they are all written (they stay, clean) and the hand goes
 * round again. A negative errno when that write fails.
 */
static int pending_evict(store_t *s, size_t *pos)
{
    int rc;

    for (int round = 0; round < 2; round++) {
        for (size_t n = 0; n < 2 * s->n_pend; n++) {
            pending_t *p = &s->pend[s->pend_hand];
            size_t at = s->pend_hand;
            s->pend_hand = (s->pend_hand + 1) % s->n_pend;
            if (p->dirty || p->deferred)
                continue;
            if (p->used) {
                p->used = false;
                continue;
            }
            index_remove(&s->pend_index, p->key, pending_key_at, s);
            *pos = at;
            return 0;
        }
        s->write_back = true; /* deferred rows too: every entry comes out clean */
        rc = pending_flush(s);
        s->write_back = false;
        if (rc < 0)
            return rc;
    }
    return -EDEADLK; /* unreachable: a write-back leaves every entry clean */
}

/* A new entry for key (not in the map), zeroed but for its key and the
 * buffers of the row it replaces, kept for reuse. */
static int pending_add(store_t *s, const rec_key_t *key, const char *k, pending_t **out)
{
    size_t pos = s->n_pend;
    int rc;

    if (s->cap_pend == 0) {
        size_t cap = s->cfg.defer_rows + STORE_PENDING_MAX;
        s->pend = calloc(cap, sizeof(*s->pend));
        s->pend_log = calloc(cap, sizeof(*s->pend_log));
        s->pend_dirty = calloc(cap, sizeof(*s->pend_dirty));
        s->pend_sort = calloc(cap, sizeof(*s->pend_sort));
        s->defer_list = calloc(cap, sizeof(*s->defer_list));
        if (!s->pend || !s->pend_log || !s->pend_dirty || !s->pend_sort || !s->defer_list ||
            index_fit(&s->pend_index, cap, pending_key_at, s) < 0)
            return -ENOMEM;
        s->cap_pend = cap;
    }
    if (s->n_pend == s->cap_pend && (rc = pending_evict(s, &pos)) < 0)
        return rc;
    pending_t *p = &s->pend[pos];
    buf_t blob = p->blob, stamps = p->stamps, committed = p->committed;
    bool listed = p->listed; /* the position stays in the sweep's list */
    memset(p, 0, sizeof(*p));
    p->listed = listed;
    p->blob = (buf_t){blob.data, 0, blob.cap};
    p->stamps = (buf_t){stamps.data, 0, stamps.cap};
    p->committed = (buf_t){committed.data, 0, committed.cap};
    snprintf(p->key, sizeof(p->key), "%s", k);
    p->kind = key->kind;
    p->ncols = key->ncols;
    for (size_t i = 0, at = 1; i < key->ncols; i++) {
        /* k is pending_key's: each value follows a 0x1f */
        p->col_at[i] = (uint8_t)(at + 1);
        p->col_len[i] = (uint8_t)strlen(key->col[i]);
        at += 1 + p->col_len[i];
    }
    snprintf(p->country, sizeof(p->country), "%s", key->country ? key->country : "");
    snprintf(p->country2, sizeof(p->country2), "%s", key->country2 ? key->country2 : "");
    *pending_slot(s, k) = (uint32_t)pos + 1;
    if (pos == s->n_pend)
        s->n_pend++;
    *out = p;
    return 0;
}

/* Whether the row of p may stay unwritten past its commit. */
static bool pending_defers(const store_t *s, const pending_t *p)
{
    return s->cfg.defer_rows > 0 && p->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
}

/* Revisions the tables may lag the change log by: retention must be able
 * to drop what changelog_keep leaves (prune stops at state_from). */
uint64_t defer_revs(const store_t *s)
{
    uint64_t keep = s->cfg.changelog_keep;

    if (keep == 0 || keep / 2 >= STORE_DEFER_REVS)
        return STORE_DEFER_REVS;
    return keep / 2 > 0 ? keep / 2 : 1;
}

/* Writes the row of a cache entry into its table. */
int pending_put(store_t *s, const pending_t *p)
{
    sqlite3_stmt *st = s->put[p->kind];
    for (size_t c = 0; c < p->ncols; c++)
        sqlite3_bind_text(st, (int)c + 1, p->key + p->col_at[c], p->col_len[c], SQLITE_STATIC);
    sqlite3_bind_int(st, 4, p->deleted ? 1 : 0);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)p->revision);
    sqlite3_bind_blob(st, 6, p->blob.data, (int)p->blob.len, SQLITE_STATIC);
    if (p->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY)
        sqlite3_bind_blob(st, 7, p->stamps.data, (int)p->stamps.len, SQLITE_STATIC);
    for (size_t e = 0; e < kind_sql[p->kind].nextras; e++)
        if (p->ex[e].set && !p->deleted)
            sqlite3_bind_int64(st, 8 + (int)e, p->ex[e].v);
    return step_done(s, st);
}

/* Moves state_from; the producer and aggregate tables first take what
 * the log after it would no longer hold (producers_flush, agg_commit). */
int state_from_put(store_t *s, uint64_t revision)
{
    sqlite3_stmt *st = s->st[ST_STATE_FROM_PUT];
    int rc;

    if ((s->prod_logged > 0 && (rc = producers_write(s, true)) < 0) ||
        (s->n_agg > 0 && (rc = agg_flush(s)) < 0))
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)revision);
    if ((rc = step_done(s, st)) < 0)
        return rc;
    s->state_from = revision;
    return 0;
}

/* Binds the change log's prev (parameter 6) of a change to rec: the
 * record it replaced, as a difference from rec when that is shorter. */
static int bind_prev(store_t *s, sqlite3_stmt *st, const uint8_t *prev, size_t plen,
                     const uint8_t *rec, size_t rlen)
{
    int rc = prev_encode(&s->prev, prev, plen, rec, rlen);

    if (rc < 0)
        return rc;
    if (rc > 0)
        sqlite3_bind_blob(st, 6, s->prev.data, (int)s->prev.len, SQLITE_STATIC);
    else
        sqlite3_bind_blob(st, 6, prev, (int)plen, SQLITE_STATIC);
    return 0;
}

/*
 * Writes the rows changed since the last flush and their change-log
 * entries, in revision order; the rows stay cached, clean. A resident's
 * row is deferred instead (store_int.h, the row cache): its change-log
 * entry holds all it is. A sweep writes the deferred rows a key range a
 * flush; all of them are written when there are defer_rows of them, when
 * the tables lag the log by defer_revs, or when s->write_back asks.
 */
int pending_flush(store_t *s)
{
    size_t fresh = 0;
    int rc = 0;

    for (size_t i = 0; i < s->n_dirty; i++) {
        const pending_t *p = &s->pend[s->pend_dirty[i]];
        fresh += pending_defers(s, p) && !p->deferred;
    }
    bool all = s->write_back ||
               (s->cfg.defer_rows > 0 && s->n_deferred + fresh >= s->cfg.defer_rows) ||
               s->head - s->state_from >= defer_revs(s);
    for (size_t i = 0; i < s->n_dirty && rc == 0; i++) {
        pending_t *p = &s->pend[s->pend_dirty[i]];
        if (pending_defers(s, p)) {
            if (!p->deferred) {
                s->n_deferred++;
                p->deferred = true;
                sweep_note(s, s->pend_dirty[i]);
            }
            continue;
        }
        rc = pending_put(s, p);
    }
    for (size_t i = 0; i < s->n_log && rc == 0; i++) {
        pending_t *p = &s->pend[s->pend_log[i]];
        sqlite3_stmt *st = s->st[ST_LOG_PUT];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)p->batch_rev);
        sqlite3_bind_int(st, 2, (int)p->kind);
        sqlite3_bind_text(st, 3, p->country, -1, SQLITE_STATIC);
        if (p->country2[0])
            sqlite3_bind_text(st, 4, p->country2, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, p->blob.data, (int)p->blob.len, SQLITE_STATIC);
        if (p->committed.len > 0 && (rc = bind_prev(s, st, p->committed.data, p->committed.len,
                                                    p->blob.data, p->blob.len)) < 0) {
            stmt_reset(st);
            break;
        }
        if (p->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY)
            sqlite3_bind_blob(st, 7, p->stamps.data, (int)p->stamps.len, SQLITE_STATIC);
        rc = step_done(s, st);
    }
    if (rc == 0)
        rc = all ? sweep_write_all(s) : sweep_pace(s, fresh, s->n_log);
    if (rc < 0) {
        pending_clear(s); /* the transaction rolls back: forget what it held */
        return rc;
    }
    /* the version each change replaced is in the log now: a row that
     * waits or stays cached keeps only its own (about 0.5 KiB less a row) */
    for (size_t i = 0; i < s->n_log; i++)
        buf_free(&s->pend[s->pend_log[i]].committed);
    for (size_t i = 0; i < s->n_dirty; i++) {
        pending_t *p = &s->pend[s->pend_dirty[i]];
        p->dirty = false;
        p->batch_rev = 0;
    }
    s->n_dirty = 0;
    s->n_log = 0;
    return 0;
}

static const char *deferred_key_at(const void *arg, uint32_t pos)
{
    const deferred_set_t *d = arg;
    return d->keys + d->at[pos];
}

int deferred_copy(const store_t *s, deferred_set_t *d)
{
    size_t bytes = 0, n = 0, off = 0;

    memset(d, 0, sizeof(*d));
    if (s->n_deferred == 0)
        return 0;
    for (size_t i = 0; i < s->n_pend; i++)
        if (s->pend[i].deferred)
            bytes += strlen(s->pend[i].key) + 1;
    d->keys = malloc(bytes);
    d->at = malloc(s->n_deferred * sizeof(*d->at));
    d->revision = malloc(s->n_deferred * sizeof(*d->revision));
    d->deleted = malloc(s->n_deferred * sizeof(*d->deleted));
    if (!d->keys || !d->at || !d->revision || !d->deleted ||
        index_fit(&d->index, s->n_deferred, deferred_key_at, d) < 0) {
        deferred_free(d);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->n_pend && n < s->n_deferred; i++) {
        const pending_t *p = &s->pend[i];
        size_t len = strlen(p->key) + 1;
        if (!p->deferred)
            continue;
        memcpy(d->keys + off, p->key, len);
        d->at[n] = (uint32_t)off;
        d->revision[n] = p->revision;
        d->deleted[n] = p->deleted;
        *index_slot(&d->index, p->key, deferred_key_at, d) = (uint32_t)++n;
        off += len;
    }
    d->n = (uint32_t)n;
    return 0;
}

uint64_t deferred_find(const deferred_set_t *d, const char *k)
{
    const uint32_t *slot = d->index.cap ? index_slot(&d->index, k, deferred_key_at, d) : NULL;
    return slot && *slot ? d->revision[*slot - 1] : 0;
}

void deferred_free(deferred_set_t *d)
{
    free(d->keys);
    free(d->at);
    free(d->revision);
    free(d->deleted);
    index_free(&d->index);
    memset(d, 0, sizeof(*d));
}

/* Reads the row of key: s->old holds the stored record bytes and
 * s->old_stamps their stamps, row->deleted and row->ex its columns; the
 * record itself is unpacked by row_unpack, only when a merge needs it.
 * The caller frees the row with row_free. */
int row_load(store_t *s, const rec_key_t *key, row_t *row)
{
    sqlite3_stmt *st = s->sel[key->kind];
    int rc, ret = 0;
    char k[STORE_PENDING_KEY];
    pending_t *p = NULL;
    memset(row, 0, sizeof(*row));
    s->old.len = 0;
    s->old_stamps.len = 0;
    if (s->in_batch && pending_key(key, k)) {
        if ((p = pending_find(s, k)) != NULL) {
            /* cached: the version last read or written, not older than the table's */
            row->pend = (size_t)(p - s->pend) + 1;
            p->used = true;
            if (!p->found)
                return 0;
            row->found = true;
            row->revision = p->revision;
            row->deleted = p->deleted;
            memcpy(row->ex, p->ex, sizeof(row->ex));
            if (buf_set(&s->old, p->blob.data, p->blob.len) < 0 ||
                buf_set(&s->old_stamps, p->stamps.data, p->stamps.len) < 0)
                return -ENOMEM;
            return 0;
        }
        if ((ret = pending_add(s, key, k, &p)) < 0)
            return ret;
        row->pend = (size_t)(p - s->pend) + 1;
    }
    bind_key(st, key);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        goto reset;
    if (rc != SQLITE_ROW) {
        ret = db_fail(s, rc);
        goto reset;
    }
    row->found = true;
    row->revision = (uint64_t)sqlite3_column_int64(st, 0);
    row->deleted = sqlite3_column_int(st, 3) != 0;
    for (size_t i = 0; i < kind_sql[key->kind].nextras; i++)
        if (sqlite3_column_type(st, 4 + (int)i) != SQLITE_NULL)
            row->ex[i] = (extra_t){true, sqlite3_column_int64(st, 4 + (int)i)};
    const void *rec = sqlite3_column_blob(st, 1);
    size_t rlen = (size_t)sqlite3_column_bytes(st, 1);
    const void *stp = sqlite3_column_blob(st, 2);
    size_t slen = (size_t)sqlite3_column_bytes(st, 2);
    if (buf_set(&s->old, rec, rlen) < 0 || buf_set(&s->old_stamps, stp, slen) < 0) {
        ret = -ENOMEM;
        goto reset;
    }
    if (p != NULL) {
        p->found = true;
        p->revision = row->revision;
        p->deleted = row->deleted;
        memcpy(p->ex, row->ex, sizeof(p->ex));
        if (buf_set(&p->blob, rec, rlen) < 0 || buf_set(&p->stamps, stp, slen) < 0) {
            ret = -ENOMEM;
            goto reset;
        }
    }
reset:
    stmt_reset(st);
    return ret;
}

/* Unpacks the record row_load read (s->old), once; none is no error. */
int row_unpack(store_t *s, const rec_key_t *key, row_t *row)
{
    if (!row->found || row->rec)
        return 0;
    row->rec = parksync__v1__record__unpack(NULL, s->old.len, s->old.data);
    if (!row->rec) {
        snprintf(s->err, sizeof(s->err), "%s: stored record does not decode",
                 kind_sql[key->kind].table);
        return -EBADMSG;
    }
    return 0;
}

void row_free(row_t *row)
{
    if (row->rec)
        parksync__v1__record__free_unpacked(row->rec, NULL);
    row->rec = NULL;
}

/* prev: the published record this change replaces (NULL: none); the
 * record's stamps are in s->stamps when stamps is true. */
static int log_put(store_t *s, const rec_key_t *key, const uint8_t *rec, size_t len,
                   const uint8_t *prev, size_t prev_len, bool stamps)
{
    sqlite3_stmt *st = s->st[ST_LOG_PUT];
    int rc;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->head);
    sqlite3_bind_int(st, 2, (int)key->kind);
    sqlite3_bind_text(st, 3, key->country, -1, SQLITE_STATIC);
    if (key->country2)
        sqlite3_bind_text(st, 4, key->country2, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, rec, (int)len, SQLITE_STATIC);
    if (prev && (rc = bind_prev(s, st, prev, prev_len, rec, len)) < 0) {
        stmt_reset(st);
        return rc;
    }
    if (stamps)
        sqlite3_bind_blob(st, 7, s->stamps.data, (int)s->stamps.len, SQLITE_STATIC);
    return step_done(s, st);
}

/*
 * Stores the merged record `rec` (its revision unset) of `row`. When its
 * bytes or its stamps (in s->stamps, unless stamps is false) differ from
 * the stored ones, the row is written, gets the next revision and a
 * change-log row, and the watcher (s->on_change) hears of it: a stamp is
 * state replication carries (proto/README.md, Replication), so a newer
 * write of an equal value, or a delete of a record never seen, is a
 * change too. *changed tells whether a revision was handed out.
 */
int row_store(store_t *s, const rec_key_t *key, const row_t *row, const Parksync__V1__Record *rec,
              bool stamps, const extra_t *ex, bool *changed)
{
    const uint8_t *old_body = NULL;
    size_t old_len = 0;
    const uint8_t *blob;
    size_t blen;
    uint64_t revision = row->revision;
    pending_t *p = row->pend ? &s->pend[row->pend - 1] : NULL;
    int rc;

    *changed = false;
    if ((rc = buf_pack(&s->body, &rec->base)) < 0)
        return rc;
    if (row->found)
        record_strip(s->old.data, s->old.len, &old_body, &old_len);
    bool same =
        row->found && old_len == s->body.len && memcmp(old_body, s->body.data, old_len) == 0;
    bool same_stamps = !stamps || (row->found && s->old_stamps.len == s->stamps.len &&
                                   memcmp(s->old_stamps.data, s->stamps.data, s->stamps.len) == 0);
    if (same && same_stamps)
        return 0;
    /* the row is written: a rollback puts the count back with the row */
    if (row->found && !row->deleted && rec->deleted)
        s->live[key->kind]--;
    else if (!(row->found && !row->deleted) && !rec->deleted)
        s->live[key->kind]++;
    {
        /* a new revision whatever changed, the record or only its stamps,
         * and for a tombstone of a record never seen: a site pulling this
         * one must learn every change of the merge state, or it would keep
         * an older stamp and merge later writes differently */
        revision = p && p->batch_rev ? p->batch_rev : s->head + 1;
        if (buf_reserve(&s->out, 1 + STORE_VARINT_MAX + s->body.len) < 0)
            return -ENOMEM;
        s->out.data[0] = STORE_TAG_REVISION;
        s->out.len = 1 + varint_put(s->out.data + 1, revision);
        memcpy(s->out.data + s->out.len, s->body.data, s->body.len);
        s->out.len += s->body.len;
        blob = s->out.data;
        blen = s->out.len;
    }

    if (p != NULL) {
        /* the row is written when the batch is flushed; the change log
         * keeps the version it replaces, the one the last flush left */
        if (revision != row->revision && revision != 0 && p->batch_rev == 0) {
            p->committed.len = 0;
            if (row->revision && buf_set(&p->committed, s->old.data, s->old.len) < 0)
                return -ENOMEM;
        }
        if (!p->dirty) {
            p->dirty = true;
            s->pend_dirty[s->n_dirty++] = (size_t)(p - s->pend);
        }
        if (buf_set(&p->blob, blob, blen) < 0 ||
            (stamps && buf_set(&p->stamps, s->stamps.data, s->stamps.len) < 0))
            return -ENOMEM;
        p->found = true;
        p->revision = revision;
        p->deleted = rec->deleted;
        for (size_t i = 0; i < kind_sql[key->kind].nextras; i++)
            p->ex[i] = ex[i];
    } else {
        sqlite3_stmt *st = s->put[key->kind];
        bind_key(st, key);
        sqlite3_bind_int(st, 4, rec->deleted ? 1 : 0);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)revision);
        sqlite3_bind_blob(st, 6, blob, (int)blen, SQLITE_STATIC);
        if (stamps)
            sqlite3_bind_blob(st, 7, s->stamps.data, (int)s->stamps.len, SQLITE_STATIC);
        for (size_t i = 0; i < kind_sql[key->kind].nextras; i++)
            if (ex[i].set && !rec->deleted)
                sqlite3_bind_int64(st, 8 + (int)i, ex[i].v);
        if ((rc = step_done(s, st)) < 0)
            return rc;
    }
    bool published = revision != row->revision && revision != 0;
    if (published) {
        s->head = revision;
        s->batch_changes += key->country2 ? 2 : 1;
        if (p != NULL) {
            /* one change-log entry per record and batch, written at the flush */
            p->batch_rev = revision;
            s->pend_log[s->n_log++] = (size_t)(p - s->pend);
        } else if ((rc = log_put(s, key, blob, blen, row->revision ? s->old.data : NULL,
                                 row->revision ? s->old.len : 0, stamps)) < 0) {
            return rc;
        }
    }
    *changed = published;
    return s->on_change ? s->on_change(s, key, row, rec, published) : 0;
}
