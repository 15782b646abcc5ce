/*
 * wide.h - exact sums of money in 128 bits (private to store/).
 */
#ifndef PARKSYNC_STORE_WIDE_H
#define PARKSYNC_STORE_WIDE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Exact sums of money. Each amount is an int64 (|value| <= 10^17 once
 * validated), but a total over many parks or residents is not bounded:
 * totals are kept in 128 bits, which no count of rows a database can hold
 * overflows (2^127 cents is 10^19 rows of 2^63), and clamped to a field's
 * range only where a summary publishes them (wide_clamp).
 */
__extension__ typedef __int128 wide_t;
__extension__ typedef unsigned __int128 uwide_t;

#define WIDE_MAX       ((wide_t)(((uwide_t)1 << 127) - 1)) /* greatest wide_t */
#define WIDE_MIN       (-WIDE_MAX - 1)                     /* least wide_t */
#define WIDE_INT64_MIN ((wide_t)INT64_MIN)                 /* bounds of an int64 field */
#define WIDE_INT64_MAX ((wide_t)INT64_MAX)
#define AGG_CARRY_UNIT 1000000000000000000LL /* cents one resident_agg.investment_carry is */

/* a + b, saturating at the ends of wide_t: no count of valid amounts
 * comes near them, only the values of a corrupt database could */
static inline wide_t wide_add(wide_t a, wide_t b)
{
    wide_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? WIDE_MAX : WIDE_MIN;
    return r;
}

/* v clamped to [lo, hi]; sets *clamped when it was outside */
static inline wide_t wide_clamp(wide_t v, wide_t lo, wide_t hi, bool *clamped)
{
    if (v >= lo && v <= hi)
        return v;
    *clamped = true;
    return v < lo ? lo : hi;
}

/* A park's residents' investment from resident_agg's two columns:
 * investment_cents + investment_carry * 10^18 (at most 2^123 in size). */
static inline wide_t agg_compose(int64_t cents, int64_t carry)
{
    return (wide_t)carry * AGG_CARRY_UNIT + cents;
}

/* The columns of an exact investment v. A total within int64 is
 * investment_cents alone (carry 0), so the column reads as the total in
 * every ordinary case; a larger one keeps its remainder modulo 10^18
 * there. The carry is clamped only beyond 9 * 10^36 cents, which would
 * take 10^20 residents of 10^17: more rows than SQLite can store. */
static inline void agg_split(wide_t v, int64_t *cents, int64_t *carry)
{
    bool clamped = false;
    if (v >= WIDE_INT64_MIN && v <= WIDE_INT64_MAX) {
        *cents = (int64_t)v;
        *carry = 0;
        return;
    }
    *cents = (int64_t)(v % AGG_CARRY_UNIT);
    *carry = (int64_t)wide_clamp(v / AGG_CARRY_UNIT, WIDE_INT64_MIN, WIDE_INT64_MAX, &clamped);
}

#endif /* PARKSYNC_STORE_WIDE_H */
