/*
 * test_peer_stats.c - the [peer] sections as status and metrics list
 * them before any pull, and the lag their figures say.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "peer_stats.h"

Test(peer_stats, init_lists_every_section_and_pulls_from_those_with_endpoints)
{
    peer_stats_t stats[CONFIG_MAX_PEERS];
    config_t cfg;
    size_t n = 99;

    config_init(&cfg);
    cfg.n_peers = 2;
    snprintf(cfg.peers[0].name, sizeof cfg.peers[0].name, "tj-dushanbe");
    snprintf(cfg.peers[0].endpoints[0], CONFIG_ENDPOINT_MAX, "tcp://10.0.0.7:7103");
    snprintf(cfg.peers[0].endpoints[1], CONFIG_ENDPOINT_MAX, "tcp://10.0.1.7:7103");
    cfg.peers[0].n_endpoints = 2;
    snprintf(cfg.peers[1].name, sizeof cfg.peers[1].name, "replica");
    memset(stats, 0x5a, sizeof stats);
    peer_stats_init(stats, &n, &cfg);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(stats[0].name, "tj-dushanbe");
    cr_expect(stats[0].pulling && !stats[0].connected && !stats[0].has_epoch);
    cr_expect_str_eq(stats[0].endpoint, "tcp://10.0.0.7:7103", "the first is tried first");
    cr_expect_eq(stats[0].revision, 0);
    cr_expect_eq(stats[0].caught_up_us, 0);
    cr_expect_str_eq(stats[0].last_error, "");
    cr_expect_str_eq(stats[1].name, "replica");
    cr_expect(!stats[1].pulling);
    cr_expect_str_eq(stats[1].endpoint, "");
    cr_expect_str_eq(stats[2].name, "", "the rest cleared");
}

Test(peer_stats, lag_in_revisions_and_in_time)
{
    static const struct {
        uint64_t revision, peer_head;
        int64_t caught_up_us, last_pull_us, now_us;
        bool known;         /* a lag in time */
        uint64_t revisions; /* lag_revisions */
        int64_t us;         /* lag_us, when known */
    } cases[] = {
        {0, 0, 0, 0, 5000, false, 0, 0},            /* never pulled */
        {0, 40, 0, 1000, 5000, false, 40, 0},       /* pulled, never reached the head */
        {40, 40, 1000, 1000, 5000, true, 0, 0},     /* the last pull reached it */
        {40, 55, 1000, 3000, 5000, true, 15, 4000}, /* fell behind since */
        {55, 40, 1000, 1000, 5000, true, 0, 0},     /* the peer's head went back (new epoch) */
        {40, 40, 6000, 3000, 5000, true, 0, 0},     /* the clock went back: never negative */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        peer_stats_t p;
        uint64_t revisions = 99;
        int64_t us = -1;

        memset(&p, 0, sizeof p);
        p.revision = cases[i].revision;
        p.peer_head = cases[i].peer_head;
        p.caught_up_us = cases[i].caught_up_us;
        p.last_pull_us = cases[i].last_pull_us;
        cr_expect_eq(peer_stats_lag(&p, cases[i].now_us, &revisions, &us), cases[i].known,
                     "case %zu", i);
        cr_expect_eq(revisions, cases[i].revisions, "case %zu", i);
        if (cases[i].known)
            cr_expect_eq(us, cases[i].us, "case %zu: %lld", i, (long long)us);
        else
            cr_expect_eq(us, -1, "case %zu: set though unknown", i);
    }
}
