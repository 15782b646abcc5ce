/*
 * index.c - see index.h.
 */
#include "index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t index_hash(const char *key)
{
    uint64_t h = UINT64_C(14695981039346656037); /* FNV-1a offset basis */

    for (; *key; key++)
        h = (h ^ (uint8_t)*key) * UINT64_C(1099511628211);
    return h;
}

static uint32_t *probe(uint32_t *slots, size_t cap, const char *key, index_key_fn key_of,
                       const void *arg)
{
    size_t mask = cap - 1;

    for (size_t i = (size_t)index_hash(key) & mask;; i = (i + 1) & mask)
        if (slots[i] == 0 || strcmp(key_of(arg, slots[i] - 1), key) == 0)
            return &slots[i];
}

uint32_t *index_slot(const index_t *x, const char *key, index_key_fn key_of, const void *arg)
{
    return x->cap ? probe(x->slots, x->cap, key, key_of, arg) : NULL;
}

int index_fit(index_t *x, size_t n, index_key_fn key_of, const void *arg)
{
    size_t cap = x->cap ? x->cap : 16;
    uint32_t *slots;

    while (cap < 2 * n)
        cap *= 2;
    if (cap == x->cap)
        return 0;
    if (!(slots = calloc(cap, sizeof(*slots))))
        return -ENOMEM;
    for (size_t i = 0; i < x->cap; i++)
        if (x->slots[i])
            *probe(slots, cap, key_of(arg, x->slots[i] - 1), key_of, arg) = x->slots[i];
    free(x->slots);
    x->slots = slots;
    x->cap = cap;
    return 0;
}

void index_remove(index_t *x, const char *key, index_key_fn key_of, const void *arg)
{
    uint32_t *slot = index_slot(x, key, key_of, arg);

    if (slot == NULL || *slot == 0)
        return;
    size_t mask = x->cap - 1, hole = (size_t)(slot - x->slots);
    for (size_t i = (hole + 1) & mask; x->slots[i] != 0; i = (i + 1) & mask) {
        size_t home = (size_t)index_hash(key_of(arg, x->slots[i] - 1)) & mask;
        /* the entry at i may fill the hole when its home is not in the
         * cyclic range (hole, i]: probing from home passes the hole */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            x->slots[hole] = x->slots[i];
            hole = i;
        }
    }
    x->slots[hole] = 0;
}

void index_clear(index_t *x)
{
    if (x->slots)
        memset(x->slots, 0, x->cap * sizeof(*x->slots));
}

void index_free(index_t *x)
{
    free(x->slots);
    x->slots = NULL;
    x->cap = 0;
}
