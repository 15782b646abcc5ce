/*
 * test_prev.c - a change's prev kept as its difference from the change's
 * record (prev_encode, key.h) reads back byte for byte, is kept whole
 * when the difference is no shorter, and a difference that does not fit
 * its record is refused rather than read past the record's end.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "key.h"
#include "rng.h"

#define BODY_MAX 600

/* A record as stored: the revision field, then body. */
static size_t stored(uint8_t *out, uint64_t revision, const uint8_t *body, size_t n)
{
    size_t at = 0;
    out[at++] = STORE_TAG_REVISION;
    at += varint_put(out + at, revision);
    memcpy(out + at, body, n);
    return at + n;
}

/* Encodes prev against rec, decodes it back, checks it is prev; returns
 * what prev_encode said (1: kept as a difference) and the bytes logged. */
static int round_trip(const uint8_t *prev, size_t plen, const uint8_t *rec, size_t rlen,
                      size_t *logged)
{
    buf_t enc = {0}, dec = {0};
    int rc = prev_encode(&enc, prev, plen, rec, rlen);

    cr_assert_geq(rc, 0);
    const uint8_t *log = rc ? enc.data : prev;
    *logged = rc ? enc.len : plen;
    if (rc)
        cr_assert_eq(log[0], STORE_TAG_PREV_DELTA);
    cr_assert_eq(prev_decode(&dec, log, *logged, rec, rlen), 0);
    cr_assert_eq(dec.len, plen, "decoded %zu bytes of %zu", dec.len, plen);
    cr_assert_eq(memcmp(dec.data, prev, plen), 0, "the decoded prev differs");
    buf_free(&enc);
    buf_free(&dec);
    return rc;
}

/* Random bodies, and the next version made by rewriting, inserting or
 * deleting a few bytes anywhere (a field changed, a length prefix
 * grown), or everything: each prev reads back exactly. */
Test(prev, differences_read_back_exactly)
{
    static uint8_t a[BODY_MAX], b[BODY_MAX + 64], pa[BODY_MAX + 16], pb[BODY_MAX + 80];
    uint64_t r = 7;
    int deltas = 0;

    for (int i = 0; i < 20000; i++) {
        size_t na = rnd(&r, BODY_MAX), nb = 0;
        for (size_t k = 0; k < na; k++)
            a[k] = (uint8_t)rnd(&r, i % 3 ? 4 : 256); /* few symbols: long shared runs */
        size_t at = na ? rnd(&r, (unsigned)na + 1) : 0, cut = rnd(&r, 8), add = rnd(&r, 8);
        if (cut > na - at)
            cut = na - at;
        if (rnd(&r, 10) == 0) {
            nb = rnd(&r, BODY_MAX);
            for (size_t k = 0; k < nb; k++)
                b[k] = (uint8_t)rng_next(&r);
        } else {
            memcpy(b, a, at);
            for (size_t k = 0; k < add; k++)
                b[at + k] = (uint8_t)rng_next(&r);
            memcpy(b + at + add, a + at + cut, na - at - cut);
            nb = na - cut + add;
        }
        uint64_t ra = rng_next(&r) >> rnd(&r, 64), rb = ra + 1 + rnd(&r, 1000);
        size_t lp = stored(pa, ra, a, na), lr = stored(pb, rb, b, nb), logged;
        deltas += round_trip(pa, lp, pb, lr, &logged);
        cr_assert_leq(logged, lp, "a difference is never longer than the whole");
    }
    cr_assert_gt(deltas, 10000, "only %d of 20000 were kept as differences", deltas);
}

/* A resident's record of ~360 bytes whose investment changed: the
 * difference is a few bytes (that is the point of it). */
Test(prev, a_changed_field_logs_a_few_bytes)
{
    static uint8_t a[360], pa[400], pb[400];
    size_t logged;

    memset(a, 'x', sizeof a);
    size_t lp = stored(pa, 1000, a, sizeof a);
    a[300] = 'y';
    size_t lr = stored(pb, 1234567, a, sizeof a);
    cr_assert_eq(round_trip(pa, lp, pb, lr, &logged), 1);
    cr_assert_leq(logged, 12, "a one-byte change logged %zu bytes", logged);
}

/* Kept whole: a short record changed throughout (the difference would
 * be longer), a prev without a revision (no stored record lacks one,
 * but a prev never written as a difference reads the same), a record
 * without one. */
Test(prev, kept_whole_when_no_shorter)
{
    static const uint8_t body[] = "park P1", other[] = "QBSL!Q2";
    uint8_t p[32], q[32], out[64];
    buf_t enc = {0}, dec = {0};
    size_t lp = stored(p, 5, body, sizeof body), lq = stored(q, 6, other, sizeof other);

    cr_assert_eq(prev_encode(&enc, p, lp, q, lq), 0, "a short record changed throughout");
    memcpy(out, body, sizeof body); /* no revision field */
    cr_assert_eq(prev_encode(&enc, out, sizeof body, q, lq), 0);
    cr_assert_eq(prev_encode(&enc, p, lp, out, sizeof body), 0);
    cr_assert_eq(prev_decode(&dec, p, lp, out, sizeof body), 0, "whole: copied");
    cr_assert(dec.len == lp && memcmp(dec.data, p, lp) == 0);
    buf_free(&enc);
    buf_free(&dec);
}

/* A change to three fields of a 360-byte record, spread apart (the
 * benchmark's resident: a counter in its name, its investment, its
 * jobs): three operations, not the record again. */
Test(prev, scattered_changes_log_only_themselves)
{
    static uint8_t a[360], pa[400], pb[400];
    size_t logged;

    memset(a, 'x', sizeof a);
    size_t lp = stored(pa, 1000, a, sizeof a);
    memcpy(a + 20, "12345", 5);
    a[330] = 'y';
    a[331] = 'z';
    a[350] = 'w';
    size_t lr = stored(pb, 1234567, a, sizeof a);
    cr_assert_eq(round_trip(pa, lp, pb, lr, &logged), 1);
    cr_assert_leq(logged, 30, "three changed runs logged %zu bytes", logged);
}

/* A varint that grew by a byte deep in the record (a count passing
 * 127), and the length of the message around it with it: the bodies
 * differ in length, and still only the changed bytes are logged, either
 * way round. */
Test(prev, a_field_grown_by_a_byte_logs_only_itself)
{
    static uint8_t a[361], b[361], pa[400], pb[400];
    size_t logged;

    for (size_t i = 0; i < sizeof a; i++)
        a[i] = (uint8_t)('a' + i % 23);
    memcpy(b, a, 300);
    b[1] = (uint8_t)(a[1] + 1); /* the enclosing length */
    b[300] = 0x80;              /* 127 -> 128: one byte more */
    b[301] = 0x01;
    memcpy(b + 302, a + 301, 59);
    size_t la = stored(pa, 70, a, 360), lb = stored(pb, 71, b, 361);
    cr_assert_eq(round_trip(pa, la, pb, lb, &logged), 1);
    cr_assert_leq(logged, 24, "prev shorter by a byte logged %zu bytes", logged);
    la = stored(pa, 72, a, 360);
    lb = stored(pb, 71, b, 361);
    cr_assert_eq(round_trip(pb, lb, pa, la, &logged), 1);
    cr_assert_leq(logged, 24, "prev longer by a byte logged %zu bytes", logged);
}

/* Operations that take more of the record than it has, literal bytes
 * past the end, a varint cut short, a record without a revision:
 * -EBADMSG, and no read beyond either (AddressSanitizer watches the heap
 * copies). */
Test(prev, a_difference_that_does_not_fit_is_refused)
{
    static const uint8_t body[40] = {1, 2, 3};
    uint8_t rec[64], d[64];
    size_t rl = stored(rec, 9, body, sizeof body);
    uint8_t *heap_rec = malloc(rl);
    buf_t dec = {0};
    struct {
        uint64_t copy, skip, lit;
    } bad[] = {{41, 0, 0},         {0, 41, 0},         {20, 21, 0},       {0, 0, 1},
               {UINT64_MAX, 0, 0}, {1, UINT64_MAX, 0}, {0, 0, UINT64_MAX}};

    memcpy(heap_rec, rec, rl);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t n = 0;
        d[n++] = STORE_TAG_PREV_DELTA;
        n += varint_put(d + n, 8);
        n += varint_put(d + n, 10); /* a good operation first */
        n += varint_put(d + n, 0);
        n += varint_put(d + n, 0);
        n += varint_put(d + n, bad[i].copy);
        n += varint_put(d + n, bad[i].skip);
        n += varint_put(d + n, bad[i].lit);
        uint8_t *heap_d = malloc(n);
        memcpy(heap_d, d, n);
        cr_assert_eq(prev_decode(&dec, heap_d, n, heap_rec, rl), -EBADMSG, "case %zu", i);
        free(heap_d);
    }
    /* cut inside the revision, or inside an operation (after 3 bytes
     * it is whole: no operation, an empty body) */
    static const size_t at[] = {1, 2, 4, 5};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        size_t cut = at[i];
        uint8_t *heap_d = malloc(cut);
        static const uint8_t cuts[] = {STORE_TAG_PREV_DELTA, 0x88, 0x01, 0x05, 0x80, 0x01};
        memcpy(heap_d, cuts, cut);
        int rc = prev_decode(&dec, heap_d, cut, heap_rec, rl);
        cr_assert_eq(rc, -EBADMSG, "cut after %zu bytes: %d", cut, rc);
        free(heap_d);
    }
    d[0] = STORE_TAG_PREV_DELTA;
    d[1] = 8;
    cr_assert_eq(prev_decode(&dec, d, 2, body, sizeof body), -EBADMSG, "no revision");
    cr_assert_eq(prev_decode(&dec, d, 2, heap_rec, rl), 0, "no operation: an empty body");
    cr_assert_eq(dec.len, 2, "the revision field alone");
    free(heap_rec);
    buf_free(&dec);
}
