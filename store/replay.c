/*
 * replay.c - the change log after state_from written into the tables
 * (store_int.h, deferred state): after a crash, or a rollback that
 * forgot the deferred rows.
 *
 * Each resident's latest change only, in key order. The log is read
 * once for its keys, into a map from key to latest revision; then the
 * rows are written sorted by key, each from its log row, so that rows
 * sharing a leaf page are written together, as a sweep writes them.
 * Replaying every change in revision order wrote a random leaf page a
 * change: over 1,000,000 residents, about 18 us a change, and the bound
 * on the log's lag (defer_revs) is half a million changes.
 */
#include "store_int.h"
#include "keysort.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Residents' latest revisions by key. */
typedef struct latest {
    char *keys;         /* the keys, NUL-terminated one after the other */
    size_t bytes;       /* used of keys */
    size_t cap_bytes;   /* allocated of keys */
    uint32_t *at;       /* entry i's key begins at keys + at[i] */
    uint64_t *revision; /* entry i's latest revision */
    size_t n;           /* entries */
    size_t cap;         /* entries allocated */
    index_t index;      /* entries by key */
} latest_t;

static const char *latest_key_at(const void *arg, uint32_t pos)
{
    const latest_t *l = arg;
    return l->keys + l->at[pos];
}

static void latest_free(latest_t *l)
{
    free(l->keys);
    free(l->at);
    free(l->revision);
    index_free(&l->index);
}

/* Makes key's latest revision `revision` (the log is read in revision
 * order). 0 or -ENOMEM. */
static int latest_put(latest_t *l, const char *key, uint64_t revision)
{
    size_t len = strlen(key) + 1;
    uint32_t *slot = l->index.cap ? index_slot(&l->index, key, latest_key_at, l) : NULL;

    if (slot && *slot) {
        l->revision[*slot - 1] = revision;
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        uint32_t *at;
        uint64_t *rev;
        if (cap > UINT32_MAX / 2)
            return -ENOMEM;
        if ((at = realloc(l->at, cap * sizeof(*at))) != NULL)
            l->at = at;
        if ((rev = realloc(l->revision, cap * sizeof(*rev))) != NULL)
            l->revision = rev;
        if (!at || !rev || index_fit(&l->index, cap, latest_key_at, l) < 0)
            return -ENOMEM;
        l->cap = cap;
    }
    if (l->bytes + len > l->cap_bytes) {
        size_t cap = l->cap_bytes ? 2 * l->cap_bytes : 64 * 1024;
        char *keys;
        while (cap < l->bytes + len)
            cap *= 2;
        if (cap > UINT32_MAX || (keys = realloc(l->keys, cap)) == NULL)
            return -ENOMEM;
        l->keys = keys;
        l->cap_bytes = cap;
    }
    memcpy(l->keys + l->bytes, key, len);
    l->at[l->n] = (uint32_t)l->bytes;
    l->revision[l->n] = revision;
    l->bytes += len;
    *index_slot(&l->index, key, latest_key_at, l) = (uint32_t)++l->n;
    return 0;
}

/* Writes change `revision` of key, its record `rec` (unpacked: r) and
 * stamps, over an older row only, so that replaying twice is harmless. */
static int replay_put(store_t *s, const rec_key_t *key, uint64_t revision,
                      const Parksync__V1__Record *r, const void *rec, int rlen, const void *stp,
                      int slen)
{
    sqlite3_stmt *sel = s->sel[key->kind];
    int rc, ret = 0;

    bind_key(sel, key);
    rc = sqlite3_step(sel);
    bool newer = rc == SQLITE_DONE ||
                 (rc == SQLITE_ROW && (uint64_t)sqlite3_column_int64(sel, 0) < revision);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(sel);
    if (ret < 0 || !newer)
        return ret;
    sqlite3_stmt *put = s->put[key->kind];
    bind_key(put, key);
    sqlite3_bind_int(put, 4, r->deleted ? 1 : 0);
    sqlite3_bind_int64(put, 5, (sqlite3_int64)revision);
    sqlite3_bind_blob(put, 6, rec, rlen, SQLITE_STATIC);
    sqlite3_bind_blob(put, 7, stp, slen, SQLITE_STATIC);
    if (!r->deleted && r->resident && r->resident->has_investment_usd_cents)
        sqlite3_bind_int64(put, 8, r->resident->investment_usd_cents);
    return step_done(s, put);
}

/* The resident of the change at st's row (columns: revision, record,
 * stamps). With `latest`, its key goes there; without, or when the key
 * is too long for one (never cached, so written at its commit), the
 * change is written now. */
static int replay_row(store_t *s, sqlite3_stmt *st, latest_t *latest)
{
    const kind_t kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    uint64_t revision = (uint64_t)sqlite3_column_int64(st, 0);
    const void *rec = sqlite3_column_blob(st, 1);
    int rlen = sqlite3_column_bytes(st, 1);
    const void *stp = sqlite3_column_blob(st, 2);
    int slen = sqlite3_column_bytes(st, 2);
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, (size_t)rlen, rec);
    Parksync__V1__TradeReport tr;
    char k[STORE_PENDING_KEY];
    rec_key_t key;
    int ret;

    if (!r || sqlite3_column_type(st, 2) == SQLITE_NULL || !key_of_record(&key, r, &tr) ||
        key.kind != kind) {
        snprintf(s->err, sizeof(s->err),
                 "change %" PRIu64 " of the change log cannot be replayed: %s", revision,
                 r ? "no stamps or no key" : "its record does not decode");
        ret = -EBADMSG;
    } else if (latest && pending_key(&key, k)) {
        ret = latest_put(latest, k, revision);
    } else {
        ret = replay_put(s, &key, revision, r, rec, rlen, stp, slen);
    }
    if (r)
        parksync__v1__record__free_unpacked(r, NULL);
    return ret;
}

/* Writes the change each entry of l names, in key order. */
static int replay_latest(store_t *s, const latest_t *l)
{
    sqlite3_stmt *st = s->st[ST_LOG_AT];
    keysort_item_t *items = malloc(2 * l->n * sizeof(*items));
    int rc, ret = 0;

    if (!items)
        return -ENOMEM;
    for (size_t i = 0; i < l->n; i++)
        items[i] = (keysort_item_t){.key = l->keys + l->at[i], .arg = &l->revision[i]};
    keysort(items, items + l->n, l->n);
    for (size_t i = 0; i < l->n && ret == 0; i++) {
        uint64_t revision = *(const uint64_t *)items[i].arg;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)revision);
        if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            ret = replay_row(s, st, NULL);
        } else if (rc == SQLITE_DONE) {
            snprintf(s->err, sizeof(s->err), "change %" PRIu64 " left the change log", revision);
            ret = -EPROTO;
        } else {
            ret = db_fail(s, rc);
        }
        stmt_reset(st);
    }
    free(items);
    return ret;
}

/*
 * Writes into the tables what the change log holds after state_from and
 * they may lack. A change is written only over an older row (a row holds
 * the revision it was written at), so replaying twice is harmless. In
 * the open batch; the row cache holds nothing deferred when it runs.
 */
int state_replay(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_LOG_REPLAY];
    latest_t latest = {0};
    int rc, ret = 0;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->state_from);
    sqlite3_bind_int(st, 2, (int)PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT);
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ret = replay_row(s, st, &latest);
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(st);
    if (ret == 0 && latest.n > 0)
        ret = replay_latest(s, &latest);
    latest_free(&latest);
    if (ret == 0 && s->state_from != s->head)
        ret = state_from_put(s, s->head);
    return ret;
}
