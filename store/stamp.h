/*
 * stamp.h - field stamps: who wrote a value and when, their total order,
 * and the blob the store keeps them in (private to store/). Pure: no
 * SQLite, no store.
 */
#ifndef PARKSYNC_STORE_STAMP_H
#define PARKSYNC_STORE_STAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "parksync.pb-c.h"
#include "wire.h"

#define STORE_MAX_SLOTS 16 /* stamp slots per record: key slot + body fields */
#define STORE_KEY_SLOT  0  /* slot (and stored field id) of the key stamp */

/* Who wrote a value and when; compared by stamp_cmp. */
typedef struct stamp {
    bool set;                       /* false: no write (older than any write) */
    bool cleared;                   /* the write was a delete of this cell (a trade side) */
    uint8_t vintage;                /* Parksync__V1__Vintage of the write */
    int64_t time_us;                /* source's event time, us since 1970 UTC */
    uint64_t sequence;              /* producer's sequence number */
    char producer[WIRE_MAX_ID + 1]; /* producer id, NUL-terminated */
} stamp_t;

/* The stamps of one record. */
typedef struct stamps {
    stamp_t tomb;                  /* greatest delete seen (set = ever deleted) */
    stamp_t slot[STORE_MAX_SLOTS]; /* slot 0: key; generic i+1: field i; trade 1, 2: cells */
} stamps_t;

/* The total order of stamps: unset < set; then FINAL vintage above the
 * others, event time, producer id, sequence. <0, 0 or >0. */
int stamp_cmp(const stamp_t *a, const stamp_t *b);
/* The stamp of an update's writes. */
void stamp_of_update(stamp_t *st, const Parksync__V1__Update *u);
/* Encodes the stamps of nslots slots (field ids in ids) into b (see
 * stamp.c). 0, -EINVAL (too many slots) or -ENOMEM. */
int stamps_encode(buf_t *b, const stamps_t *sp, const uint32_t *ids, size_t nslots);
/* Decodes a stamps blob of version 1 or 2 (empty: no stamps); stamps of
 * fields not in ids are dropped. 0 or -EBADMSG. */
int stamps_decode(stamps_t *sp, const uint8_t *p, size_t len, const uint32_t *ids, size_t nslots);
/* A stamp's vintage as published: UNSPECIFIED counts as PROVISIONAL. */
Parksync__V1__Vintage vintage_rank(uint8_t v);

#endif /* PARKSYNC_STORE_STAMP_H */
