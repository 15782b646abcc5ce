/*
 * producer.c - producers' positions and counters: a map in memory,
 * loaded at open and after a rollback, written at commit; admission and
 * the sequence rules of store_apply and store_reject.
 *
 * A commit that logged changes does not write the producer table: the
 * producers it moved go onto its last change-log row (column producers),
 * a page the commit writes anyway. A table row costs a page of its own,
 * which was a third of what a commit of one update wrote (13 KiB), and
 * of the time its fsync took. The table catches up when state_from
 * moves (producers_write), so the log after state_from, which the store
 * keeps until then and replays at open, always holds what the table
 * lacks (producers_load).
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *producer_key(const void *arg, uint32_t pos)
{
    return ((const store_t *)arg)->prod[pos].id;
}

producer_t *producer_find(const store_t *s, const char *id)
{
    uint32_t *slot = index_slot(&s->prod_index, id, producer_key, s);

    return slot && *slot ? &s->prod[*slot - 1] : NULL;
}

/* Finds or adds a producer. NULL when out of memory. */
static producer_t *producer_get(store_t *s, const char *id)
{
    producer_t *p = producer_find(s, id);
    if (p)
        return p;
    if (s->prod_count == s->prod_cap) {
        size_t cap = s->prod_cap ? s->prod_cap * 2 : STORE_PRODUCERS_MIN;
        producer_t *tab = realloc(s->prod, cap * sizeof(*tab));
        if (!tab)
            return NULL;
        s->prod = tab;
        s->prod_cap = cap;
    }
    if (index_fit(&s->prod_index, s->prod_count + 1, producer_key, s) < 0)
        return NULL;
    p = &s->prod[s->prod_count];
    memset(p, 0, sizeof(*p));
    snprintf(p->id, sizeof(p->id), "%s", id);
    *index_slot(&s->prod_index, id, producer_key, s) = (uint32_t)++s->prod_count;
    return p;
}

/* A producer's version: every update it sent that the store took in
 * (applied, duplicate, gap, refused) adds one, so the larger of two
 * copies is the later. */
static uint64_t producer_version(const producer_t *p)
{
    return p->applied + p->duplicates + p->gaps + p->rejected;
}

/* The producers a commit moved, as the changelog's producers column
 * keeps them: JSON text, an array of [id, last_sequence, applied,
 * duplicates, gaps, rejected, last_seen_us], so that SQLite reads it
 * back (json_each) and so can an operator's sqlite3. Ids are wire ids
 * (letters, digits, '.', '_', '-'); anything else is escaped all the same. */
static int producers_encode(store_t *s)
{
    buf_t *b = &s->prod_blob;

    b->len = 0;
    for (size_t i = 0; i < s->prod_count; i++) {
        const producer_t *p = &s->prod[i];
        size_t room = 2 + 6 * strlen(p->id) + 6 * 21 + 8;
        if (!p->dirty)
            continue;
        if (buf_reserve(b, b->len + room + 2) < 0)
            return -ENOMEM;
        char *o = (char *)b->data + b->len;
        *o++ = b->len == 0 ? '[' : ',';
        *o++ = '[';
        o += json_put_str(o, p->id);
        o += sprintf(o, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRId64 "]",
                     p->last_sequence, p->applied, p->duplicates, p->gaps, p->rejected,
                     p->last_seen_us);
        b->len = (size_t)(o - (char *)b->data);
    }
    if (b->len > 0)
        b->data[b->len++] = ']';
    return 0;
}

/* Takes a producer kept on the change log when it is later than the one
 * in the cache, marking it logged. */
static int producer_take(store_t *s, sqlite3_stmt *st)
{
    const char *id = (const char *)sqlite3_column_text(st, 1);
    uint64_t v[6];
    producer_t *p;

    if (!id || !id[0] || strlen(id) > WIRE_MAX_ID)
        return -EBADMSG;
    for (int f = 0; f < 6; f++) {
        if (sqlite3_column_type(st, 2 + f) != SQLITE_INTEGER)
            return -EBADMSG;
        v[f] = (uint64_t)sqlite3_column_int64(st, 2 + f);
    }
    if (!(p = producer_get(s, id)))
        return -ENOMEM;
    producer_t copy = {.applied = v[1], .duplicates = v[2], .gaps = v[3], .rejected = v[4]};
    if (producer_version(&copy) <= producer_version(p) && v[0] <= p->last_sequence)
        return 0; /* the table has it already (a peer's position moves only the sequence) */
    p->last_sequence = v[0];
    p->applied = v[1];
    p->duplicates = v[2];
    p->gaps = v[3];
    p->rejected = v[4];
    p->last_seen_us = (int64_t)v[5];
    s->prod_logged += !p->logged;
    p->logged = true;
    return 0;
}

/* Takes the producers kept on change-log rows after state_from. 0,
 * -ENOMEM, or -EUCLEAN when one does not read (the database is damaged). */
static int producers_load_logged(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_LOGGED];
    int rc, ret = 0;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->state_from);
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((ret = producer_take(s, st)) == -EBADMSG) {
            snprintf(s->err, sizeof(s->err),
                     "the producers kept on change %" PRId64 " of the change log do not read",
                     (int64_t)sqlite3_column_int64(st, 0));
            ret = -EUCLEAN;
        }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(st);
    return ret;
}

int producers_copy(store_t *s, position_t **out, size_t *n)
{
    position_t *at;

    *out = NULL;
    *n = 0;
    if (s->in_batch) {
        snprintf(s->err, sizeof(s->err), "a view of the producers is opened inside a batch");
        return -EBUSY; /* the cache holds positions not committed */
    }
    if (!producers_ready(s))
        return -EIO;
    if (s->prod_count == 0)
        return 0;
    if (!(at = malloc(s->prod_count * sizeof(*at))))
        return -ENOMEM;
    for (size_t i = 0; i < s->prod_count; i++) {
        if (s->prod[i].last_sequence == 0)
            continue;
        memcpy(at[*n].id, s->prod[i].id, sizeof(at[*n].id));
        at[(*n)++].sequence = s->prod[i].last_sequence;
    }
    *out = at;
    return 0;
}

/* Replaces the cache with what the database holds (at open, after a
 * rollback): the producer table, then the later copies on the change log
 * after state_from. */
int producers_load(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_ALL];
    int rc, ret = 0;
    s->prod_count = 0;
    s->prod_logged = 0;
    index_clear(&s->prod_index);
    if ((ret = seam_fault(s, "producers")) < 0)
        return ret;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!id || strlen(id) > WIRE_MAX_ID)
            continue;
        producer_t *p = producer_get(s, id);
        if (!p) {
            ret = -ENOMEM;
            goto reset;
        }
        p->last_sequence = (uint64_t)sqlite3_column_int64(st, 1);
        p->applied = (uint64_t)sqlite3_column_int64(st, 2);
        p->duplicates = (uint64_t)sqlite3_column_int64(st, 3);
        p->gaps = (uint64_t)sqlite3_column_int64(st, 4);
        p->rejected = (uint64_t)sqlite3_column_int64(st, 5);
        p->last_seen_us = sqlite3_column_int64(st, 6);
    }
    if (rc != SQLITE_DONE)
        ret = db_fail(s, rc);
reset:
    sqlite3_reset(st);
    if (ret == 0)
        ret = producers_load_logged(s);
    return ret;
}

/* Reloads the producers after a rollback, or retries a reload that
 * failed. Until one succeeds their positions are unknown, and a batch
 * begun then would take every producer for new and could commit its
 * position as 0: store_begin refuses. */
int producers_reload(store_t *s)
{
    int rc = producers_load(s);
    s->producers_lost = rc < 0;
    if (rc < 0) {
        char why[sizeof(s->err)];
        memcpy(why, s->err, sizeof(why));
        snprintf(s->err, sizeof(s->err),
                 "cannot reload the producers' positions (%.160s); no batch until they load", why);
    }
    return rc;
}

/* False while the producers' positions are unknown and cannot be reloaded. */
bool producers_ready(store_t *s)
{
    return !s->producers_lost || producers_reload(s) == 0;
}

/* Writes the table rows of the producers the batch moved and, with
 * logged, of those logged: the table then holds every producer as the
 * cache does. */
int producers_write(store_t *s, bool logged)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_PUT];
    for (size_t i = 0; i < s->prod_count; i++) {
        producer_t *p = &s->prod[i];
        if (!p->dirty && !(logged && p->logged))
            continue;
        sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)p->last_sequence);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)p->applied);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)p->duplicates);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)p->gaps);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)p->rejected);
        sqlite3_bind_int64(st, 7, p->last_seen_us);
        int rc = step_done(s, st);
        if (rc < 0)
            return rc;
        s->prod_logged -= p->logged;
        p->dirty = false;
        p->logged = false;
    }
    return 0;
}

/* At commit: the producers the batch moved go into s->prod_blob, for the
 * change-log row of the head, when the batch logged changes (store_commit
 * writes it there); else into their table rows. */
int producers_flush(store_t *s)
{
    int rc;
    bool any = false;

    s->prod_blob.len = 0;
    for (size_t i = 0; i < s->prod_count && !any; i++)
        any = s->prod[i].dirty;
    if (!any)
        return 0;
    if (s->head == s->head_begin)
        return producers_write(s, false);
    if ((rc = producers_encode(s)) < 0)
        return rc;
    for (size_t i = 0; i < s->prod_count; i++) {
        producer_t *p = &s->prod[i];
        if (!p->dirty)
            continue;
        s->prod_logged += !p->logged;
        p->logged = true;
        p->dirty = false;
    }
    return 0;
}

/* Whether an update of producer id may cost anything durable (see
 * store_apply_as): a producer authority lists, or the ministry named;
 * with authority off, one known, or a new one within max_producers. */
static bool producer_admitted(const store_t *s, const char *ministry, const char *id)
{
    if (s->n_ministries > 0)
        return ministry != NULL || ministry_of(s, id) != NULL;
    return s->cfg.max_producers == 0 || s->prod_count < s->cfg.max_producers ||
           producer_find(s, id) != NULL;
}

/*
 * The admission and sequence rules shared by store_apply and
 * store_reject. Returns 0 with *outcome APPLIED when the caller should go
 * on (and then call producer_consume), UNADMITTED, DUPLICATE or GAP when
 * it must stop.
 */
int producer_check(store_t *s, const char *ministry, const char *id, uint64_t seq, producer_t **pp,
                   store_outcome_t *outcome)
{
    if (!id || !id[0] || strlen(id) > WIRE_MAX_ID)
        return -EINVAL;
    if (!producer_admitted(s, ministry, id)) {
        *outcome = STORE_UNADMITTED;
        return 0;
    }
    producer_t *p = producer_get(s, id);
    if (!p)
        return -ENOMEM;
    p->last_seen_us = now_us(s);
    p->dirty = true;
    *pp = p;
    if (seq <= p->last_sequence) {
        p->duplicates++;
        *outcome = STORE_DUPLICATE;
    } else if (seq > p->last_sequence + 1) {
        p->gaps++;
        *outcome = STORE_GAP;
    } else {
        *outcome = STORE_APPLIED;
    }
    return 0;
}

uint64_t store_producer_last(store_t *s, const char *producer_id)
{
    const producer_t *p = producer_id && producers_ready(s) ? producer_find(s, producer_id) : NULL;
    return p ? p->last_sequence : 0;
}

/* A producer's counters as store_producer_stats reports them. */
static store_producer_stats_t stats_of(const producer_t *p)
{
    return (store_producer_stats_t){
        .last_sequence = p->last_sequence,
        .applied = p->applied,
        .duplicates = p->duplicates,
        .gaps = p->gaps,
        .rejected = p->rejected,
        .last_seen_us = p->last_seen_us,
    };
}

int store_producer_stats(store_t *s, const char *producer_id, store_producer_stats_t *out)
{
    const producer_t *p = producer_id && producers_ready(s) ? producer_find(s, producer_id) : NULL;

    memset(out, 0, sizeof(*out));
    if (!p)
        return -ENOENT;
    *out = stats_of(p);
    return 0;
}

int store_producers(store_t *s, store_producer_fn fn, void *arg)
{
    if (!producers_ready(s))
        return -EIO;
    for (size_t i = 0; i < s->prod_count; i++) {
        const producer_t *p = &s->prod[i];
        store_producer_stats_t st = stats_of(p);
        if (fn(arg, p->id, &st) != 0)
            break;
    }
    return 0;
}

int store_merge_position(store_t *s, const char *producer_id, uint64_t last_sequence)
{
    if (!s->in_batch || !producer_id || !wire_id_valid(producer_id))
        return -EINVAL;
    if (!producers_ready(s))
        return -EIO;
    producer_t *p = producer_find(s, producer_id);
    if (p && p->last_sequence >= last_sequence)
        return 0;
    if (!p && s->cfg.max_producers > 0 && s->prod_count >= s->cfg.max_producers)
        return 0; /* a peer cannot grow the table without bound */
    if (!p && !(p = producer_get(s, producer_id)))
        return -ENOMEM;
    p->last_sequence = last_sequence;
    p->dirty = true;
    return 0;
}
