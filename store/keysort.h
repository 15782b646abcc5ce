/*
 * keysort.h - strings into strcmp order, fast when they share a long
 * prefix.
 *
 * The sweep (sweep.c) writes waiting rows in key order, and sorted
 * them with qsort through pointers into the row cache: 16,384 keys took
 * 3.5-5 ms of the loop, once a second at 20,000 updates/s, and every
 * update arriving meanwhile waited. Keys share most of their bytes (kind,
 * country, park), so each comparison walked the same prefix in another
 * cache line. keysort finds the prefix all keys share, takes the next 8
 * bytes of each as an integer, radix-sorts those, and compares the rest
 * of a key only among keys whose 8 bytes are equal.
 */
#ifndef PARKSYNC_STORE_KEYSORT_H
#define PARKSYNC_STORE_KEYSORT_H

#include <stddef.h>
#include <stdint.h>

typedef struct keysort_item {
    const char *key; /* NUL-terminated; the caller's, unchanged */
    void *arg;       /* rides along */
    uint64_t k;      /* keysort's own */
} keysort_item_t;

/* Sorts items[0..n) by key in strcmp order, with tmp (n items) as
 * scratch. Equal keys keep no particular order. */
void keysort(keysort_item_t *items, keysort_item_t *tmp, size_t n);

#endif /* PARKSYNC_STORE_KEYSORT_H */
