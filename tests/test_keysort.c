/*
 * test_keysort.c - keysort orders keys as strcmp does: the row cache's
 * sweep writes waiting rows in that order.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keysort.h"
#include "rng.h"

#define KEYS 20000

static int by_strcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts keys[0..n) with keysort and checks it against qsort + strcmp,
 * and that each key's arg rode along. */
static void check(char **keys, size_t n)
{
    keysort_item_t *items = calloc(2 * n + 1, sizeof(*items));
    char **want = malloc((n + 1) * sizeof(*want));

    cr_assert(items && want);
    for (size_t i = 0; i < n; i++)
        items[i] = (keysort_item_t){.key = keys[i], .arg = keys[i]};
    memcpy(want, keys, n * sizeof(*want));
    qsort(want, n, sizeof(*want), by_strcmp);
    keysort(items, items + n, n);
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(items[i].key, want[i], "position %zu of %zu", i, n);
        cr_assert_eq(items[i].arg, (void *)items[i].key, "position %zu: its arg did not follow", i);
    }
    free(items);
    free(want);
}

/* The row cache's keys: a kind byte, then columns joined by 0x1f; a
 * long prefix shared by all, ids that are prefixes of one another,
 * lengths that end inside and past the 8 bytes keysort looks at. */
Test(keysort, orders_row_keys_as_strcmp_does)
{
    static char buf[KEYS][64];
    char *keys[KEYS];
    uint64_t r = 42;
    size_t n = 0;

    for (; n < KEYS; n++) {
        unsigned park = rnd(&r, 7), res = rnd(&r, 100000);
        switch (rnd(&r, 4)) {
        case 0:
            snprintf(buf[n], sizeof buf[n],
                     "\x02"
                     "AZ\x1f"
                     "BENCH-PARK\x1f"
                     "R%07u",
                     res);
            break;
        case 1:
            snprintf(buf[n], sizeof buf[n],
                     "\x02"
                     "AZ\x1f"
                     "P%u\x1f"
                     "R%u",
                     park, res);
            break;
        case 2:
            snprintf(buf[n], sizeof buf[n],
                     "\x02"
                     "AZ\x1f"
                     "P%u",
                     park);
            break;
        default:
            snprintf(buf[n], sizeof buf[n],
                     "\x02"
                     "AZ\x1f"
                     "P%u\x1f"
                     "r-%u.x_%u",
                     park, res % 50, res);
        }
        keys[n] = buf[n];
    }
    check(keys, n);
}

Test(keysort, orders_keys_without_a_common_prefix)
{
    char *keys[] = {"b",
                    "a",
                    "ab",
                    "abc",
                    "\x7f",
                    "\x01",
                    "aaaaaaaaaaaaaaaaz",
                    "aaaaaaaaaaaaaaaa",
                    "aaaaaaaab",
                    "aaaaaaaa",
                    "z\x1fy"};
    check(keys, sizeof keys / sizeof keys[0]);
}

Test(keysort, orders_keys_that_are_all_alike_but_at_the_end)
{
    static char buf[1000][40];
    char *keys[1000];

    for (int i = 0; i < 1000; i++) {
        /* the same 30 bytes, then what decides; some stop at the prefix */
        snprintf(buf[i], sizeof buf[i], "%s%.*d", "0123456789abcdefghijklmnopqrst", i % 5,
                 (i * 7919) % 1000);
        keys[i] = buf[i];
    }
    check(keys, 1000);
}

Test(keysort, leaves_zero_and_one_key_alone)
{
    keysort_item_t one = {.key = "only", .arg = NULL};

    keysort(NULL, NULL, 0);
    keysort(&one, NULL, 1);
    cr_assert_str_eq(one.key, "only");
}
