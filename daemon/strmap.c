/*
 * strmap.c - see strmap.h. Linear probing, FNV-1a, grows at 1/2 full.
 */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static strmap_entry_t *probe(strmap_entry_t *slots, size_t cap, const char *key)
{
    size_t i = (size_t)hash(key) & (cap - 1);

    while (slots[i].key[0] != '\0' && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(strmap_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    strmap_entry_t *slots = calloc(cap, sizeof *slots);

    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key[0] != '\0')
            *probe(slots, cap, m->slots[i].key) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

uint64_t *strmap_upsert(strmap_t *m, const char *key)
{
    strmap_entry_t *e;
    size_t len = strlen(key);

    if (len == 0 || len >= STRMAP_KEY_MAX)
        return NULL;
    if (m->cap > 0) {
        e = probe(m->slots, m->cap, key);
        if (e->key[0] != '\0')
            return &e->value; /* present: the table must not move */
    }
    if ((m->count + 1) * 2 > m->cap && grow(m) < 0)
        return NULL;
    e = probe(m->slots, m->cap, key);
    memcpy(e->key, key, len + 1);
    e->value = 0;
    m->count++;
    return &e->value;
}

uint64_t *strmap_find(const strmap_t *m, const char *key)
{
    strmap_entry_t *e;

    if (m->cap == 0 || key[0] == '\0' || strlen(key) >= STRMAP_KEY_MAX)
        return NULL;
    e = probe(m->slots, m->cap, key);
    return e->key[0] != '\0' ? &e->value : NULL;
}

void strmap_remove(strmap_t *m, const char *key)
{
    strmap_entry_t *e = strmap_find(m, key) ? probe(m->slots, m->cap, key) : NULL;
    size_t hole, i;

    if (!e)
        return;
    /* Backward-shift deletion: linear probing has no tombstones, so every
     * entry of the run after the hole that may live there moves into it. */
    hole = (size_t)(e - m->slots);
    for (i = (hole + 1) & (m->cap - 1); m->slots[i].key[0] != '\0'; i = (i + 1) & (m->cap - 1)) {
        size_t home = (size_t)hash(m->slots[i].key) & (m->cap - 1);
        /* slot i may move to the hole when its home is not in (hole, i] */
        if (((i - home) & (m->cap - 1)) >= ((i - hole) & (m->cap - 1))) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    m->slots[hole].key[0] = '\0';
    m->count--;
}

void strmap_clear(strmap_t *m)
{
    if (m->count == 0)
        return;
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].key[0] = '\0';
    m->count = 0;
}

void strmap_free(strmap_t *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = 0;
    m->count = 0;
}
