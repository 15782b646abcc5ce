/*
 * index.h - a hash index from string keys to the positions of entries in
 * an array its user owns, which also holds the keys: open addressing,
 * linear probing, FNV-1a, never more than half full. The index stores a
 * position (plus one) per slot and nothing else, so an entry is written
 * once, in its array, and the index of 8,192 row-cache entries is 64 KiB.
 *
 * The store's two maps use it: producers by id (producer.c) and the row
 * cache by record key (rowcache.c). Pure: no SQLite, no store.
 */
#ifndef PARKSYNC_STORE_INDEX_H
#define PARKSYNC_STORE_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct index {
    uint32_t *slots; /* position + 1 of an entry; 0: free */
    size_t cap;      /* slots, a power of two; 0 before the first index_fit */
} index_t;

/* The key of the entry at pos in the user's array. */
typedef const char *(*index_key_fn)(const void *arg, uint32_t pos);

/* FNV-1a of a NUL-terminated string. */
uint64_t index_hash(const char *key);

/* The slot of key: *slot is its position + 1 when present, else 0, and
 * storing pos + 1 there adds it. NULL while the index has no slots. */
uint32_t *index_slot(const index_t *x, const char *key, index_key_fn key_of, const void *arg);

/* Makes room for n entries (at most half full), rehashing the present
 * ones through key_of. 0, or -ENOMEM with the index unchanged. */
int index_fit(index_t *x, size_t n, index_key_fn key_of, const void *arg);

/* Removes key, when present, so every other key stays reachable: the
 * entries after it in its probe run move back (no tombstones, so a
 * cache that evicts an entry per miss never fills with them). */
void index_remove(index_t *x, const char *key, index_key_fn key_of, const void *arg);

/* Empties every slot, keeping the memory. */
void index_clear(index_t *x);

void index_free(index_t *x);

#endif /* PARKSYNC_STORE_INDEX_H */
