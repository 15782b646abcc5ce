/*
 * ahead.c - producers ahead of the database (see ahead.h).
 *
 * A linear table: it holds only producers with an open gap, which is
 * none at all in normal operation, so every lookup is a scan of a few
 * entries at most.
 */
#include "ahead.h"

#include <stdlib.h>
#include <string.h>

static ahead_entry_t *find(const ahead_t *a, const char *id)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->e[i].id, id) == 0)
            return &a->e[i];
    return NULL;
}

static ahead_entry_t *add(ahead_t *a, const char *id)
{
    if (strlen(id) > WIRE_MAX_ID || a->n == AHEAD_MAX)
        return NULL;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        ahead_entry_t *e = realloc(a->e, cap * sizeof *e);
        if (!e)
            return NULL;
        a->e = e;
        a->cap = cap;
    }
    ahead_entry_t *e = &a->e[a->n++];
    memset(e, 0, sizeof *e);
    strcpy(e->id, id);
    return e;
}

void ahead_gap(ahead_t *a, const char *id, uint64_t last, uint64_t seq, int64_t now_ms)
{
    ahead_entry_t *e = find(a, id);

    if (!e && !(e = add(a, id))) {
        a->untracked++;
        return;
    }
    if (e->since_ms == 0 || e->last != last) {
        /* a new gap: the sequence moved since the last one */
        e->last = last;
        e->low = seq;
        e->since_ms = now_ms;
        e->declared = false;
    } else if (seq < e->low) {
        e->low = seq;
    }
}

void ahead_clear(ahead_t *a, const char *id)
{
    ahead_entry_t *e = a->n ? find(a, id) : NULL;

    if (e)
        *e = a->e[--a->n];
}

void ahead_due(ahead_t *a, int64_t now_ms, ahead_fn fn, void *arg)
{
    for (size_t i = 0; i < a->n; i++) {
        ahead_entry_t *e = &a->e[i];
        if (e->declared || e->low <= e->last + 1 || now_ms - e->since_ms < AHEAD_GRACE_MS)
            continue;
        e->declared = true;
        fn(arg, e->id, e->last + 1, e->low - 1);
    }
}

bool ahead_missing(const ahead_t *a, const char *id, uint64_t *from, uint64_t *to)
{
    const ahead_entry_t *e = find(a, id);

    if (!e || !e->declared)
        return false;
    *from = e->last + 1;
    *to = e->low - 1;
    return true;
}

void ahead_free(ahead_t *a)
{
    free(a->e);
    memset(a, 0, sizeof *a);
}
