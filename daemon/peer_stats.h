/*
 * peer_stats.h - federation as status and metrics see it: each [peer
 * NAME] this site pulls from (peer_stats_t), from the start, before any
 * pull, and the lag their figures say; and the sites that pull from this
 * one (puller_stats_t).
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
#include "wire.h"

/* What status and metrics show of one [peer NAME] (PeerStatus). */
typedef struct peer_stats {
    char name[CONFIG_ID_MAX];           /* section name */
    char endpoint[CONFIG_ENDPOINT_MAX]; /* endpoint in use or last tried; "" none */
    bool pulling;                       /* it has endpoints: this site pulls from it */
    bool connected;                     /* its last reply came within peer_timeout_ms */
    uint8_t epoch[WIRE_EPOCH_BYTES];    /* the peer's epoch of `revision` */
    bool has_epoch;                     /* a pull has completed once */
    uint64_t revision;                  /* pulled and stored through */
    uint64_t peer_head;                 /* the peer's head as last heard */
    int64_t caught_up_us;               /* when a pull last reached the peer's head; 0 never */
    int64_t last_pull_us;               /* when the last pull completed; 0 never */
    char last_error[200];               /* "" after a good pull */
    uint64_t records;                   /* records merged from it since start */
    uint64_t refused;                   /* writes refused: country not trusted */
    uint64_t pulls;                     /* pulls completed since start */
    uint64_t full_resyncs;              /* pulls that brought the whole state */
} peer_stats_t;

/* A site that pulls from this one (PullerStatus). */
typedef struct puller_stats {
    char site[CONFIG_ID_MAX]; /* ReplicateRequest.site */
    uint64_t revision;        /* it has stored through this revision of ours */
    int64_t last_us;          /* when it last asked */
    bool counts;              /* a [peer] of that name (authenticated as it with CURVE):
                                 counted for ack_after = peers:N */
    uint64_t commit;          /* our commit whose pull it has stored (acks.h); 0: none */
    bool all_countries;       /* it takes every country from us */
    char countries[WIRE_MAX_COUNTRIES][3]; /* else these, n_countries of them */
    size_t n_countries;
} puller_stats_t;

#define PEERS_MAX_PULLERS 64 /* distinct sites remembered as pulling */

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
