/*
 * strmap.h - a small open-addressing hash map from short strings to uint64.
 *
 * The daemon keeps them for the last stream sequence of every record
 * topic, of every ack topic acknowledged lately (two generations, see
 * server.c), for the set of producers touched by the current batch, and
 * for each publish connection's subscriptions. Keys are copied (at most
 * STRMAP_KEY_MAX - 1 bytes); the table grows as needed.
 */
#ifndef PARKSYNCD_STRMAP_H
#define PARKSYNCD_STRMAP_H

#include <stddef.h>
#include <stdint.h>

#define STRMAP_KEY_MAX 96 /* bytes of a key, with NUL (= WIRE_MAX_TOPIC) */

typedef struct strmap_entry {
    char key[STRMAP_KEY_MAX]; /* "" marks a free slot */
    uint64_t value;
} strmap_entry_t;

typedef struct strmap {
    strmap_entry_t *slots; /* cap entries */
    size_t cap;            /* power of two, 0 when empty */
    size_t count;          /* keys present */
} strmap_t;

/* Returns a pointer to key's value, inserting it with value 0 when
 * missing; NULL when out of memory or the key is empty or too long. The
 * pointer, and every key and value in slots, stay valid until the next
 * insertion of a new key: an upsert of a present key never moves the
 * table. */
uint64_t *strmap_upsert(strmap_t *m, const char *key);

/* Returns key's value or NULL. */
uint64_t *strmap_find(const strmap_t *m, const char *key);

/* Removes key when present. Entries after it in its probe run move up, so
 * pointers into the table are invalid afterwards. */
void strmap_remove(strmap_t *m, const char *key);

/* Removes every key, keeping the memory. */
void strmap_clear(strmap_t *m);

/* Releases the memory; m is left empty and reusable. */
void strmap_free(strmap_t *m);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key[0]) ... */

#endif /* PARKSYNCD_STRMAP_H */
