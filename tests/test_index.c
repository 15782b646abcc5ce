/*
 * test_index.c - the store's hash index (store/index.c) on its own.
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "index.h"
#include "rng.h"

#define KEYS 5000

static char keys[KEYS][24];

static const char *key_at(const void *arg, uint32_t pos)
{
    (void)arg;
    return keys[pos];
}

static uint32_t find(const index_t *x, const char *k)
{
    uint32_t *slot = index_slot(x, k, key_at, NULL);

    return slot ? *slot : 0;
}

Test(index, finds_what_was_added_through_every_growth_and_nothing_else)
{
    index_t x = {0};

    cr_expect_null(index_slot(&x, "a", key_at, NULL), "an index without slots has no slot");
    for (uint32_t i = 0; i < KEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "AZ\x1fpark-%u", i);
        cr_assert_eq(index_fit(&x, i + 1, key_at, NULL), 0);
        cr_assert_geq(x.cap, 2 * (size_t)(i + 1), "more than half full at %u", i);
        uint32_t *slot = index_slot(&x, keys[i], key_at, NULL);
        cr_assert_not_null(slot);
        cr_assert_eq(*slot, 0, "%s present before it was added", keys[i]);
        *slot = i + 1;
    }
    for (uint32_t i = 0; i < KEYS; i++)
        cr_expect_eq(find(&x, keys[i]), i + 1, "%s", keys[i]);
    cr_expect_eq(find(&x, "AZ\x1fpark-"), 0);
    cr_expect_eq(find(&x, "AZ\x1fpark-50000"), 0);
    cr_expect_eq(find(&x, ""), 0);

    index_clear(&x);
    for (uint32_t i = 0; i < KEYS; i += 97)
        cr_expect_eq(find(&x, keys[i]), 0, "%s survived a clear", keys[i]);
    index_free(&x);
    cr_expect_eq(x.cap, 0);
}

Test(index, the_hash_is_fnv1a)
{
    /* the published FNV-1a 64 test vectors */
    cr_expect_eq(index_hash(""), UINT64_C(0xcbf29ce484222325));
    cr_expect_eq(index_hash("a"), UINT64_C(0xaf63dc4c8601ec8c));
    cr_expect_eq(index_hash("foobar"), UINT64_C(0x85944171f73967e8));
}

Test(index, removal_keeps_every_other_key_reachable)
{
    /* a small table run near half full: long probe runs that wrap around
     * the end, so every case of the backward shift happens */
    enum { LIVE = 31, ROUNDS = 20000 };
    index_t x = {0};
    bool present[KEYS] = {false};
    uint64_t rng = 7;

    for (uint32_t i = 0; i < KEYS; i++)
        snprintf(keys[i], sizeof keys[i], "TJ\x1fresident-%u", i);
    cr_assert_eq(index_fit(&x, LIVE + 1, key_at, NULL), 0);
    size_t live = 0;
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t k = rnd(&rng, 200);
        uint32_t *slot = index_slot(&x, keys[k], key_at, NULL);
        cr_assert_eq(*slot != 0, present[k], "round %d: %s found %d, expected %d", r, keys[k],
                     *slot != 0, present[k]);
        if (present[k]) {
            index_remove(&x, keys[k], key_at, NULL);
            present[k] = false;
            live--;
        } else if (live < LIVE) {
            *slot = k + 1;
            present[k] = true;
            live++;
        }
        for (uint32_t j = 0; j < 200; j++)
            cr_assert_eq(find(&x, keys[j]), present[j] ? j + 1 : 0, "round %d: %s after %s %s", r,
                         keys[j], present[k] ? "adding" : "removing", keys[k]);
    }
    index_remove(&x, "absent", key_at, NULL); /* a no-op, not a crash */
    index_free(&x);
}
