/*
 * counters.h - what the loop counts, since start: read by the control
 * socket (status, metrics, STATUS=) and logged when the daemon stops.
 */
#ifndef PARKSYNCD_COUNTERS_H
#define PARKSYNCD_COUNTERS_H

#include <stdint.h>

#define PAUSE_BUCKETS 11 /* buckets of a pause histogram */

/* Upper bounds of a pause histogram's buckets, us; the last bucket holds
 * the longer pauses. */
static const int64_t pause_bounds_us[PAUSE_BUCKETS - 1] = {500,   1000,  2000,   5000,   10000,
                                                           20000, 50000, 100000, 250000, 1000000};

/* How long the loop spent in one kind of call, as a histogram: the ack of
 * every update that arrived meanwhile waited that long. */
typedef struct pause_hist {
    uint64_t n[PAUSE_BUCKETS]; /* calls per bucket (not cumulative) */
    uint64_t sum_us;           /* their total time */
} pause_hist_t;

static inline void pause_add(pause_hist_t *h, int64_t us)
{
    int b = 0;

    if (us < 0)
        us = 0;
    while (b < PAUSE_BUCKETS - 1 && us > pause_bounds_us[b])
        b++;
    h->n[b]++;
    h->sum_us += (uint64_t)us;
}

/* Counters, all since start. */
typedef struct server_counters {
    uint64_t received;         /* ingest messages read */
    uint64_t applied;          /* updates merged (STORE_APPLIED) */
    uint64_t duplicates;       /* updates at or below the producer's last sequence */
    uint64_t gaps;             /* updates beyond last sequence + 1, not applied */
    uint64_t refused;          /* updates consumed but refused by the store (authority, ...) */
    uint64_t peer_refused;     /* writes from peer sites refused (country not trusted, invalid) */
    uint64_t unadmitted;       /* updates of producers not admitted (not listed by authority,
                                  or beyond max_producers): nothing kept, not acked */
    uint64_t bad_frames;       /* ingest messages not exactly [topic][payload] */
    uint64_t too_large;        /* payloads over WIRE_MAX_UPDATE */
    uint64_t undecodable;      /* payloads that are not an Update */
    uint64_t invalid;          /* Updates failing validation */
    uint64_t wrong_topic;      /* Updates whose topic is not their kind's */
    uint64_t store_errors;     /* batches rolled back on a storage failure */
    uint64_t summary_failures; /* country summaries not refreshed (the old one kept) */
    uint64_t commits;          /* batches committed */
    uint64_t published;        /* records published */
    uint64_t acks;             /* acks published */
    uint64_t heartbeats;       /* heartbeats published */
    uint64_t queries;          /* query requests read */
    uint64_t bad_queries;      /* query requests dropped or refused as malformed */
    uint64_t chunks;           /* stream chunks sent */
    uint64_t streams_opened;   /* snapshot and changes streams started */
    uint64_t streams_refused;  /* stream requests answered BUSY (either stream limit) */
    uint64_t streams_dropped;  /* streams ended early (stalled, client gone, failure) */
    uint64_t streams_stalled;  /* of those, dropped for delivering nothing for stream_idle_ms */
    uint64_t forged;           /* CURVE on: updates whose producer is not the authenticated
                                  ministry's (or with no ministry identity), dropped */
    uint64_t subscriptions_refused; /* publish messages refused: no topic prefix, over
                                       max_subscriptions, no subscription (subscriptions.h) */
    uint64_t subscribers_dropped;   /* publish connections closed for a refused message */
    pause_hist_t commit;            /* store_commit of a batch (synchronous = normal: its fsync) */
    pause_hist_t wal_sync;          /* synchronous = full: each sync of the WAL (syncer.h) */
    pause_hist_t wal_reset;         /* store_wal_reset's checkpoints (the WAL starting over) */
    pause_hist_t pass;              /* each pass of the loop, from its wake-up to its next wait */
} server_counters_t;

#endif /* PARKSYNCD_COUNTERS_H */
