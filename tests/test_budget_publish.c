/*
 * test_budget_publish.c - what a peer of the publish socket can make the
 * daemon hold: subscriptions (bounded in length, number and grammar) and
 * welcome heartbeats (coalesced).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "wire.h"

/* ---------------------------------------------------------------- the grammar */

Test(budget_publish, only_prefixes_of_publish_topics_are_subscriptions)
{
    static const struct {
        const char *topic;
        bool valid;
    } cases[] = {
        {"", true},
        {"h", true},
        {"hb/", true},
        {"hb/x", false},
        {"hbx", false},
        {"r", true},
        {"rec/", true},
        {"rec/p", true},
        {"rec/park", true},
        {"rec/park/", true},
        {"rec/park/A", true},
        {"rec/park/AZ", true},
        {"rec/park/AZ/", true},
        {"rec/park/AZ/x", false},
        {"rec/park/Az/", false},
        {"rec/park/AZT/", false},
        {"rec/parks/", false},
        {"rec/pork", false},
        {"rec/summary/TJ/", true},
        {"rec/resident/", true},
        {"rec//", false},
        {"a", true},
        {"ack/", true},
        {"ack/AZ-MOE", true},
        {"ack/AZ-MOE/", true},
        {"ack/AZ-MOE//", false},
        {"ack//", false},
        {"ack/AZ MOE/", false},
        {"ack/0123456789012345678901234567890123456789012345678901234567890123/", true},
        {"ack/01234567890123456789012345678901234567890123456789012345678901234/", false},
        {"x", false},
        {"batch", false},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(wire_subscription_valid(cases[i].topic, strlen(cases[i].topic)),
                     cases[i].valid, "\"%s\"", cases[i].topic);
    cr_expect_not(wire_subscription_valid("hb\0", 3), "a NUL is no topic byte");
    cr_expect_not(wire_subscription_valid("ack/A\0/", 7), "a NUL is no topic byte");
}
