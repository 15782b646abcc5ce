/*
 * peers.h - federation: this site pulls the records its peers changed,
 * with their stamps, and merges them like updates (proto/README.md,
 * Replication).
 *
 * For each [peer NAME] with endpoints, one DEALER connection to the
 * peer's query socket asks ReplicateRequest{since: the revision of the
 * peer stored with the last merge}, merges the chunks it streams in store
 * batches of the loop and stores the peer's revision and producers'
 * positions with the last one. A pull that finds nothing waits at the
 * peer (wait_ms) for the next change, so lag is one round trip. Silence
 * for peer_timeout_ms moves to the peer's next endpoint.
 *
 * The other way round, the query side (streams.c) remembers which sites
 * pulled how far (pullers), for `ack_after = peers:N` and status.
 */
#ifndef PARKSYNCD_PEERS_H
#define PARKSYNCD_PEERS_H

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
} puller_stats_t;

#define PEERS_MAX_PULLERS 64 /* distinct sites remembered as pulling */

#endif /* PARKSYNCD_PEERS_H */
