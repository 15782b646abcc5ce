/*
 * acks.c - acknowledgement after N sites (acks.h).
 */
#include "acks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"
#include "wire.h"

/* One producer's acknowledgements. */
typedef struct held {
    char id[WIRE_MAX_ID + 1]; /* producer id */
    uint64_t safe;            /* last sequence it may be told */
    uint64_t seq[2];          /* commits not yet safe, older first: their sequences */
    uint64_t commit[2];       /* and numbers; 0: no entry */
} held_t;

struct acks {
    unsigned peers; /* sites that must have pulled a commit */
    strmap_t index; /* producer id -> entry + 1 in held */
    held_t *held;
    size_t count, cap;
};

acks_t *acks_new(unsigned peers)
{
    acks_t *a = calloc(1, sizeof *a);
    if (a)
        a->peers = peers;
    return a;
}

void acks_destroy(acks_t **ap)
{
    if (!ap || !*ap)
        return;
    strmap_free(&(*ap)->index);
    free((*ap)->held);
    free(*ap);
    *ap = NULL;
}

unsigned acks_peers(const acks_t *a)
{
    return a->peers;
}

static held_t *held_get(acks_t *a, const char *id)
{
    uint64_t *slot = strmap_upsert(&a->index, id);
    if (!slot)
        return NULL;
    if (*slot)
        return &a->held[*slot - 1];
    if (a->count == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        held_t *h = realloc(a->held, cap * sizeof *h);
        if (!h) {
            strmap_remove(&a->index, id);
            return NULL;
        }
        a->held = h;
        a->cap = cap;
    }
    held_t *h = &a->held[a->count++];
    memset(h, 0, sizeof *h);
    snprintf(h->id, sizeof h->id, "%s", id);
    *slot = a->count;
    return h;
}

int acks_commit(acks_t *a, const char *id, uint64_t seq, uint64_t commit)
{
    held_t *h = held_get(a, id);
    if (!h)
        return -ENOMEM;
    uint64_t newest = h->commit[1] ? h->seq[1] : h->commit[0] ? h->seq[0] : h->safe;
    if (seq <= newest)
        return 0;                      /* nothing newer than what is held already */
    int k = h->commit[0] == 0 ? 0 : 1; /* the newer slot is overwritten: later, never earlier */
    h->seq[k] = seq;
    h->commit[k] = commit;
    return 0;
}

void acks_release(acks_t *a, acks_safe_fn safe_of, void *safe_arg, acks_fn fn, void *arg)
{
    for (size_t i = 0; i < a->count; i++) {
        held_t *h = &a->held[i];
        bool moved = false;
        if (h->commit[0] == 0)
            continue; /* nothing held */
        uint64_t safe = safe_of(safe_arg, h->id);
        while (h->commit[0] != 0 && h->commit[0] <= safe) {
            h->safe = h->seq[0];
            h->seq[0] = h->seq[1];
            h->commit[0] = h->commit[1];
            h->seq[1] = h->commit[1] = 0;
            moved = true;
        }
        if (moved && fn)
            fn(arg, h->id, h->safe);
    }
}

uint64_t acks_safe(const acks_t *a, const char *id)
{
    uint64_t *slot = strmap_find(&a->index, id);
    return slot ? a->held[*slot - 1].safe : 0;
}

static int by_desc(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

uint64_t acks_nth_highest(uint64_t *commits, size_t n, unsigned peers)
{
    if (peers == 0 || n < peers)
        return 0;
    qsort(commits, n, sizeof *commits, by_desc);
    return commits[peers - 1];
}
