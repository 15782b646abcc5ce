/*
 * stamp.c - field stamps, their order and their blob codec (stamp.h).
 */
#include "stamp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define STORE_STAMPS_V1      1    /* first byte of a stamps blob: a stamp per slot */
#define STORE_STAMPS_VERSION 2    /* first byte of a stamps blob: shared stamps */
#define STORE_STAMP_CLEARED  0x80 /* vintage byte flag: the stamp is a cell's delete */
#define STORE_STAMP_MAX      (1 + 1 + 8 + STORE_VARINT_MAX + 1 + WIRE_MAX_ID) /* bytes */

int stamp_cmp(const stamp_t *a, const stamp_t *b)
{
    if (a->set != b->set)
        return a->set ? 1 : -1;
    if (!a->set)
        return 0;
    int fa = a->vintage == PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    int fb = b->vintage == PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    if (fa != fb)
        return fa - fb;
    if (a->time_us != b->time_us)
        return a->time_us < b->time_us ? -1 : 1;
    int c = strcmp(a->producer, b->producer);
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (a->sequence != b->sequence)
        return a->sequence < b->sequence ? -1 : 1;
    return 0;
}

void stamp_of_update(stamp_t *st, const Parksync__V1__Update *u)
{
    st->set = true;
    st->cleared = false;
    st->vintage = u->has_vintage ? (uint8_t)u->vintage : 0;
    st->time_us = u->event_time_us;
    st->sequence = u->sequence;
    snprintf(st->producer, sizeof(st->producer), "%s", u->producer_id);
}

static size_t stamp_put(uint8_t *p, const stamp_t *st)
{
    size_t n = 0;
    uint64_t t = (uint64_t)st->time_us;
    size_t plen = strlen(st->producer);
    p[n++] = (uint8_t)(st->vintage | (st->cleared ? STORE_STAMP_CLEARED : 0));
    for (int i = 7; i >= 0; i--)
        p[n++] = (uint8_t)(t >> (8 * i));
    n += varint_put(p + n, st->sequence);
    p[n++] = (uint8_t)plen;
    memcpy(p + n, st->producer, plen);
    return n + plen;
}

static bool stamp_get(const uint8_t *p, size_t len, size_t *at, stamp_t *st)
{
    if (len - *at < 9)
        return false;
    st->set = true;
    st->cleared = (p[*at] & STORE_STAMP_CLEARED) != 0;
    st->vintage = p[(*at)++] & (uint8_t)~STORE_STAMP_CLEARED;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = (t << 8) | p[(*at)++];
    st->time_us = (int64_t)t;
    if (!varint_get(p, len, at, &st->sequence) || *at >= len)
        return false;
    size_t plen = p[(*at)++];
    if (plen > WIRE_MAX_ID || len - *at < plen)
        return false;
    memcpy(st->producer, p + *at, plen);
    st->producer[plen] = '\0';
    *at += plen;
    return true;
}

static bool stamp_eq(const stamp_t *a, const stamp_t *b)
{
    return a->set == b->set && a->cleared == b->cleared && a->vintage == b->vintage &&
           a->time_us == b->time_us && a->sequence == b->sequence &&
           strcmp(a->producer, b->producer) == 0;
}

/*
 * Stamps blob, version 2: version byte; tombstone flag byte (1: a stamp
 * follows); the distinct stamps of the set slots, as a count varint and
 * the stamps in the order of their first slot; then the set slots, as a
 * count varint and per slot its field id varint (0 = key slot) and the
 * index of its stamp varint. A stamp: vintage byte, event time as 8 bytes
 * big-endian, sequence varint, producer id length byte and bytes.
 * ids[slot] gives each slot's field id.
 *
 * An update usually sets every field it carries with one stamp, so a
 * record mostly has one or two distinct stamps: kept once, they make the
 * blob about a fifth of version 1, which repeated the stamp in every
 * slot. Version 1 blobs are still read; a row is rewritten in version 2
 * when it next changes.
 */
int stamps_encode(buf_t *b, const stamps_t *sp, const uint32_t *ids, size_t nslots)
{
    size_t uniq[STORE_MAX_SLOTS], nuniq = 0, which[STORE_MAX_SLOTS], count = 0;

    if (nslots > STORE_MAX_SLOTS ||
        buf_reserve(b, 2 + 2 * STORE_VARINT_MAX +
                           (nslots + 1) * (3 * STORE_VARINT_MAX + STORE_STAMP_MAX)) < 0)
        return nslots > STORE_MAX_SLOTS ? -EINVAL : -ENOMEM;
    for (size_t i = 0; i < nslots; i++) {
        if (!sp->slot[i].set)
            continue;
        size_t u = 0;
        while (u < nuniq && !stamp_eq(&sp->slot[uniq[u]], &sp->slot[i]))
            u++;
        if (u == nuniq)
            uniq[nuniq++] = i;
        which[i] = u;
        count++;
    }
    uint8_t *p = b->data;
    size_t n = 0;
    p[n++] = STORE_STAMPS_VERSION;
    p[n++] = sp->tomb.set ? 1 : 0;
    if (sp->tomb.set)
        n += stamp_put(p + n, &sp->tomb);
    n += varint_put(p + n, nuniq);
    for (size_t u = 0; u < nuniq; u++)
        n += stamp_put(p + n, &sp->slot[uniq[u]]);
    n += varint_put(p + n, count);
    for (size_t i = 0; i < nslots; i++) {
        if (!sp->slot[i].set)
            continue;
        n += varint_put(p + n, ids[i]);
        n += varint_put(p + n, which[i]);
    }
    b->len = n;
    return 0;
}

/* The slot of field `id`, or nslots when the kind has no such field. */
static size_t slot_of(const uint32_t *ids, size_t nslots, uint64_t id)
{
    size_t i = 0;
    while (i < nslots && ids[i] != id)
        i++;
    return i;
}

int stamps_decode(stamps_t *sp, const uint8_t *p, size_t len, const uint32_t *ids, size_t nslots)
{
    stamp_t uniq[STORE_MAX_SLOTS];
    size_t at = 2, i;
    uint64_t count, id, nuniq = 0, u;
    memset(sp, 0, sizeof(*sp));
    if (len == 0)
        return 0;
    if (len < 2 || (p[0] != STORE_STAMPS_VERSION && p[0] != STORE_STAMPS_V1))
        return -EBADMSG;
    if (p[1] && !stamp_get(p, len, &at, &sp->tomb))
        return -EBADMSG;
    if (p[0] == STORE_STAMPS_VERSION) {
        if (!varint_get(p, len, &at, &nuniq) || nuniq > STORE_MAX_SLOTS)
            return -EBADMSG;
        for (u = 0; u < nuniq; u++) {
            memset(&uniq[u], 0, sizeof(uniq[u]));
            if (!stamp_get(p, len, &at, &uniq[u]))
                return -EBADMSG;
        }
    }
    if (!varint_get(p, len, &at, &count))
        return -EBADMSG;
    for (uint64_t c = 0; c < count; c++) {
        stamp_t st = {0};
        if (!varint_get(p, len, &at, &id))
            return -EBADMSG;
        if (p[0] == STORE_STAMPS_V1) {
            if (!stamp_get(p, len, &at, &st))
                return -EBADMSG;
            if ((i = slot_of(ids, nslots, id)) < nslots)
                sp->slot[i] = st;
        } else {
            if (!varint_get(p, len, &at, &u) || u >= nuniq)
                return -EBADMSG;
            if ((i = slot_of(ids, nslots, id)) < nslots)
                sp->slot[i] = uniq[u];
        }
    }
    return 0;
}

Parksync__V1__Vintage vintage_rank(uint8_t v)
{
    return v == PARKSYNC__V1__VINTAGE__VINTAGE_UNSPECIFIED
               ? PARKSYNC__V1__VINTAGE__VINTAGE_PROVISIONAL
               : (Parksync__V1__Vintage)v;
}
