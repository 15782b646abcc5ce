/*
 * peer_stats.h - the [peer NAME] sections as status and metrics see
 * them (peer_stats_t, peers.h) from the start, before any pull, and the
 * lag their figures say.
 *
 * server.c lists every configured peer here at start, so that a site
 * shows whom it pulls from even while it has reached no one; peers.c
 * fills the figures in as it pulls.
 */
#ifndef PARKSYNCD_PEER_STATS_H
#define PARKSYNCD_PEER_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "peers.h"

/* Fills stats[0..cfg->n_peers) with one entry per [peer NAME] of cfg, in
 * config order, and sets *n to their number: the name, `pulling` when
 * the section has endpoints and then `endpoint`, the first one, which is
 * tried first; everything else zero (not connected, nothing pulled). */
void peer_stats_init(peer_stats_t stats[CONFIG_MAX_PEERS], size_t *n, const config_t *cfg);

/* The lag of one peer at now_us (us since 1970 UTC). *lag_revisions is
 * peer_head - revision, 0 when not behind. *lag_us is 0 when the last
 * completed pull reached the peer's head, else the time since a pull
 * last did. Returns false, *lag_us left as it was, when no pull has
 * reached the peer's head since start: the lag in time is unknown. */
bool peer_stats_lag(const peer_stats_t *p, int64_t now_us, uint64_t *lag_revisions,
                    int64_t *lag_us);

#endif /* PARKSYNCD_PEER_STATS_H */
