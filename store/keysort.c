/*
 * keysort.c - strings into strcmp order (keysort.h).
 */
#define _GNU_SOURCE /* qsort_r */
#include "keysort.h"

#include <stdlib.h>
#include <string.h>

/* Bytes every key shares at its start. */
static size_t common_prefix(const keysort_item_t *items, size_t n)
{
    size_t len = strlen(items[0].key);

    for (size_t i = 1; i < n && len > 0; i++) {
        size_t j = 0;
        while (j < len && items[i].key[j] == items[0].key[j])
            j++;
        len = j;
    }
    return len;
}

/* The 8 bytes of key at off, big-endian, zeros past its end: integers
 * that order as the bytes do. */
static uint64_t bytes_at(const char *key, size_t off)
{
    uint64_t k = 0;
    size_t i = 0;

    key += off;
    for (; i < 8 && key[i] != '\0'; i++)
        k = k << 8 | (unsigned char)key[i];
    return i == 0 ? 0 : i == 8 ? k : k << (8 * (8 - i));
}

/* qsort_r: arg points to the offset of what follows the 8 bytes. */
static int by_tail(const void *a, const void *b, void *arg)
{
    const char *x = ((const keysort_item_t *)a)->key, *y = ((const keysort_item_t *)b)->key;
    size_t tail_at = *(const size_t *)arg;

    /* equal 8 bytes: both keys reach past them, or they are the same key */
    if (strlen(x) < tail_at || strlen(y) < tail_at)
        return strcmp(x, y);
    return strcmp(x + tail_at, y + tail_at);
}

#define KEYSORT_SMALL 32 /* keys alike in 8 bytes sorted by comparisons, below this */
#define KEYSORT_DEPTH 24 /* rounds of 8 bytes past a shared prefix, at most */

static void sort_from(keysort_item_t *items, keysort_item_t *tmp, size_t n, int depth)
{
    keysort_item_t *from = items, *to = tmp;
    size_t prefix;

    if (n < 2)
        return;
    prefix = common_prefix(items, n);
    for (size_t i = 0; i < n; i++)
        items[i].k = bytes_at(items[i].key, prefix);
    /* least significant byte first; a byte the same in every key moves
     * nothing and is skipped */
    for (int shift = 0; shift < 64; shift += 8) {
        size_t count[256] = {0}, at = 0;

        for (size_t i = 0; i < n; i++)
            count[(from[i].k >> shift) & 0xff]++;
        if (count[(from[0].k >> shift) & 0xff] == n)
            continue;
        for (int b = 0; b < 256; b++) {
            size_t c = count[b];
            count[b] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            to[count[(from[i].k >> shift) & 0xff]++] = from[i];
        keysort_item_t *t = from;
        from = to;
        to = t;
    }
    if (from != items)
        memcpy(items, from, n * sizeof(*items));
    /* keys alike in those 8 bytes: the rest decides. Many of them (the
     * residents of one park) share a longer prefix: sorted the same way,
     * past it; a few, by comparing what follows the 8 bytes. */
    size_t tail_at = prefix + 8;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && items[j].k == items[i].k; j++)
            ;
        if (j - i > KEYSORT_SMALL && depth < KEYSORT_DEPTH && strlen(items[i].key) > tail_at)
            sort_from(items + i, tmp + i, j - i, depth + 1);
        else if (j - i > 1)
            qsort_r(items + i, j - i, sizeof(*items), by_tail, &tail_at);
    }
}

void keysort(keysort_item_t *items, keysort_item_t *tmp, size_t n)
{
    sort_from(items, tmp, n, 0);
}
