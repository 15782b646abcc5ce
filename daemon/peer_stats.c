/*
 * peer_stats.c - see peer_stats.h.
 */
#include "peer_stats.h"

#include <stdio.h>
#include <string.h>

void peer_stats_init(peer_stats_t stats[CONFIG_MAX_PEERS], size_t *n, const config_t *cfg)
{
    memset(stats, 0, CONFIG_MAX_PEERS * sizeof *stats);
    for (size_t i = 0; i < cfg->n_peers; i++) {
        const config_peer_t *peer = &cfg->peers[i];
        snprintf(stats[i].name, sizeof stats[i].name, "%s", peer->name);
        stats[i].pulling = peer->n_endpoints > 0;
        if (stats[i].pulling)
            snprintf(stats[i].endpoint, sizeof stats[i].endpoint, "%s", peer->endpoints[0]);
    }
    *n = cfg->n_peers;
}

bool peer_stats_lag(const peer_stats_t *p, int64_t now_us, uint64_t *lag_revisions, int64_t *lag_us)
{
    *lag_revisions = p->peer_head > p->revision ? p->peer_head - p->revision : 0;
    if (p->caught_up_us == 0)
        return false;
    if (p->caught_up_us == p->last_pull_us)
        *lag_us = 0; /* the last pull ended at the peer's head */
    else
        *lag_us = now_us > p->caught_up_us ? now_us - p->caught_up_us : 0;
    return true;
}
