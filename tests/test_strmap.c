/*
 * test_strmap.c - the daemon's string map: lookups, growth, removal, and the
 * promise that an upsert of a present key never moves the table (the
 * heartbeat points into it while it takes its own sequence).
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "strmap.h"

Test(strmap, insert_find_and_clear)
{
    strmap_t m = {0};
    char key[32];

    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "rec/park/%03d/", i);
        uint64_t *v = strmap_upsert(&m, key);
        cr_assert_not_null(v);
        *v = (uint64_t)i + 1;
    }
    cr_assert_eq(m.count, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "rec/park/%03d/", i);
        uint64_t *v = strmap_find(&m, key);
        cr_assert_not_null(v, "%s lost", key);
        cr_assert_eq(*v, (uint64_t)i + 1);
    }
    cr_assert_null(strmap_find(&m, "rec/park/XX/"));
    strmap_clear(&m);
    cr_assert_eq(m.count, 0);
    cr_assert_null(strmap_find(&m, "rec/park/001/"));
    strmap_free(&m);
}

Test(strmap, refuses_empty_and_long_keys)
{
    strmap_t m = {0};
    char key[STRMAP_KEY_MAX + 1];

    memset(key, 'a', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    cr_assert_null(strmap_upsert(&m, ""));
    cr_assert_null(strmap_upsert(&m, key));
    key[STRMAP_KEY_MAX - 1] = '\0';
    cr_assert_not_null(strmap_upsert(&m, key));
    strmap_free(&m);
}

/* At every fill level, including the one where the next insertion grows
 * the table, updating a present key keeps slots where they are. */
Test(strmap, upsert_of_a_present_key_never_moves_the_table)
{
    strmap_t m = {0};
    char key[32];

    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "ack/P-%d/", i);
        cr_assert_not_null(strmap_upsert(&m, key));
        strmap_entry_t *before = m.slots;
        size_t cap = m.cap;
        for (int j = 0; j <= i; j++) {
            snprintf(key, sizeof key, "ack/P-%d/", j);
            uint64_t *v = strmap_upsert(&m, key);
            cr_assert_not_null(v);
            ++*v;
            cr_assert_eq(m.slots, before, "updating %s at count %zu moved the table", key, m.count);
            cr_assert_eq(m.cap, cap);
        }
    }
    strmap_free(&m);
}

/* Removal keeps every other key findable: a model (present[]) against the
 * map through random inserts and removals, with keys that collide in
 * small tables, so that backward shifts cross the end of the table. */
Test(strmap, remove_keeps_every_other_key)
{
    strmap_t m = {0};
    bool present[300] = {false};
    size_t count = 0;
    unsigned seed = 7;
    char key[32];

    for (int step = 0; step < 20000; step++) {
        seed = seed * 1103515245u + 12345u;
        int k = (int)((seed >> 8) % 300);
        snprintf(key, sizeof key, "ack/%d/", k);
        if ((seed >> 20) & 1) {
            cr_assert_not_null(strmap_upsert(&m, key));
            count += !present[k];
            present[k] = true;
        } else {
            strmap_remove(&m, key);
            count -= present[k];
            present[k] = false;
        }
        cr_assert_eq(m.count, count);
    }
    for (int k = 0; k < 300; k++) {
        snprintf(key, sizeof key, "ack/%d/", k);
        cr_assert_eq(strmap_find(&m, key) != NULL, present[k], "%s", key);
    }
    strmap_remove(&m, "ack/absent/");
    cr_assert_eq(m.count, count);
    strmap_free(&m);
    strmap_remove(&m, "ack/1/"); /* an empty map */
}
