/*
 * producer.c - producers' positions and counters: a map in memory,
 * loaded at open and after a rollback, written at commit; admission and
 * the sequence rules of store_apply and store_reject.
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

/* Replaces the cache with what the database holds (at open, after a rollback). */
int producers_load(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_ALL];
    int rc, ret = 0;
    s->prod_count = 0;
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

int producers_flush(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_PUT];
    for (size_t i = 0; i < s->prod_count; i++) {
        producer_t *p = &s->prod[i];
        if (!p->dirty)
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
