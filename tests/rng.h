/*
 * rng.h - the seeded generator of the property tests (test_store,
 * test_merge): xorshift64*, so that a run is reproduced from the seed it
 * prints.
 */
#ifndef PARKSYNC_TEST_RNG_H
#define PARKSYNC_TEST_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 2685821657736338717ULL;
}

/* 0..n-1 */
static inline unsigned rnd(uint64_t *st, unsigned n)
{
    return (unsigned)(rng_next(st) % n);
}

#endif /* PARKSYNC_TEST_RNG_H */
