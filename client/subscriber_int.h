/*
 * subscriber_int.h - private to libparksync's subscriber files
 * (subscriber.c, subscriber_stream.c, subscriber_live.c): the state of a
 * ps_subscriber and the calls one file makes into another. Not installed.
 */
#ifndef PARKSYNC_SUBSCRIBER_INT_H
#define PARKSYNC_SUBSCRIBER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "parksync.h"
#include "sites.h"
#include "wire.h"

#define SUBSCRIBER_DEFAULT_TIMEOUT_MS 5000       /* ms of daemon silence during a stream */
#define SUBSCRIBER_CREDIT             64         /* chunks granted when a stream starts */
#define SUBSCRIBER_CREDIT_BATCH       16         /* chunks consumed before they are granted again */
#define SUBSCRIBER_CHUNK_RECORDS      1024       /* records per chunk asked for */
#define SUBSCRIBER_RCVHWM             100000     /* live messages queued while a stream runs */
#define SUBSCRIBER_MAX_PREFIXES       6          /* record subscriptions: one per kind at most */
#define SUBSCRIBER_ERR_MAX            256        /* bytes of the daemon's last error message */
#define SUBSCRIBER_DELIVERED_MAX      (1u << 20) /* revisions delivered above V before a resync */
#define SUBSCRIBER_BUSY_MIN_MS        50         /* first wait after a BUSY reply, ms */
#define SUBSCRIBER_BUSY_MAX_MS        2000       /* longest wait between two asks, ms */

/* ---------------------------------------------------------------- state */

/* Where the subscriber is in its stream. */
typedef enum sub_state {
    SUB_SNAPSHOT = 0, /* reading snapshot chunks */
    SUB_CHANGES,      /* reading changes chunks (catch-up or recovery) */
    SUB_LIVE,         /* following the publish socket */
    SUB_CLOSED,       /* snapshot delivered and not live, or failed */
} sub_state_t;

/* The last stream sequence seen on one record topic. */
typedef struct topic_seq {
    char topic[WIRE_MAX_TOPIC]; /* e.g. "rec/park/AZ/" */
    uint64_t seq;               /* last Publication.stream_sequence received or announced */
} topic_seq_t;

struct ps_subscriber {
    void *ctx;                     /* ZeroMQ context, owned */
    void *sub;                     /* SUB <- daemon's publish */
    void *query;                   /* DEALER -> daemon's query */
    Parksync__V1__RecordKind kind; /* UNSPECIFIED: every kind */
    char country[3];               /* "" when every country */
    bool live;                     /* follow live records after the snapshot */
    bool provenance;               /* ask snapshots for provenance */
    int timeout_ms;                /* ms of daemon silence allowed during a stream */
    uint64_t request_id;           /* the running stream's request */
    sub_state_t state;             /* see sub_state_t */
    bool recovering;               /* the running stream recovers (not the first) */
    bool pending_reset;            /* PS_EVENT_RESET is due before anything else */
    bool end_after_changes;        /* the catch-up (from_revision) ends with SNAPSHOT_END */
    bool has_at_revision;          /* the snapshot is history at at_revision */
    uint64_t at_revision;
    wire_arena_t *arena;             /* holds the reply last read, and nothing else */
    Parksync__V1__QueryReply *chunk; /* the chunk being delivered, in arena */
    size_t pos;                      /* next record in chunk */
    uint32_t owed;                   /* chunks consumed and not granted again yet */
    wire_arena_t *pub_arena;         /* holds the publication last read, and nothing else */
    Parksync__V1__Publication *pub;  /* the live record last delivered, in pub_arena */
    uint64_t revision;               /* V: every matching change up to here is delivered */
    uint64_t *delivered;             /* D: revisions delivered live above V, ascending, owned */
    size_t n_delivered, cap_delivered;
    int64_t last_heard_ms; /* monotonic ms of the last stream reply */
    int64_t retry_at_ms;   /* a stream refused BUSY is asked again then; 0: none */
    int busy_wait_ms;      /* the wait before that, doubled at each BUSY; 0 after a chunk */
    uint64_t rng;          /* xorshift64 state for the jitter of those waits */
    char prefixes[SUBSCRIBER_MAX_PREFIXES][WIRE_MAX_TOPIC]; /* record subscriptions */
    size_t n_prefixes;
    topic_seq_t *topics; /* sequences per subscribed topic, owned */
    size_t n_topics, cap_topics;
    size_t last_topic;                     /* index of the last topic looked up (cache) */
    bool has_epoch;                        /* epoch is known */
    uint8_t epoch[WIRE_EPOCH_BYTES];       /* the database's identity */
    bool has_instance;                     /* instance is known */
    uint8_t instance[WIRE_INSTANCE_BYTES]; /* the daemon's start identity */
    ps_subscriber_stats_t n;               /* counters */
    char last_error[SUBSCRIBER_ERR_MAX];   /* the daemon's last refusal */
    sites_t sites;                         /* the sites it may read from, one at a time */
    int64_t live_heard_ms;                 /* monotonic ms of the last publication heard */
};

/* ---------------------------------------------------------------- subscriber.c */

/* True when r is of the kind and country the subscriber asked for. */
bool subscriber_record_matches(const ps_subscriber_t *s, const Parksync__V1__Record *r);
/* Milliseconds to wait now given a caller deadline (-1: none) and an
 * optional silence deadline (-1: none); 0 when one has passed. */
long subscriber_wait_ms(int64_t deadline, int64_t silence_deadline);
/* Fills in the event handed to the caller. */
void subscriber_deliver(ps_event_t *ev, ps_event_kind_t kind, Parksync__V1__Record *r,
                        uint64_t revision, bool live);
/* True when revision was delivered: at or below V, or in D. */
bool subscriber_delivered(const ps_subscriber_t *s, uint64_t revision);
/* Appends a live revision to D; false when D is full or out of memory. */
bool subscriber_note_delivered(ps_subscriber_t *s, uint64_t revision);
/* V moves to revision (never back); D keeps only what lies above it. */
void subscriber_advance_watermark(ps_subscriber_t *s, uint64_t revision);
/* With several sites: the one in use fell silent for timeout_ms. Moves
 * to the next (another history: a reset, then its snapshot). */
ps_err_t subscriber_move(ps_subscriber_t *s);

/* ---------------------------------------------------------------- subscriber_stream.c */

ps_err_t subscriber_ask_snapshot(ps_subscriber_t *s);
ps_err_t subscriber_ask_changes(ps_subscriber_t *s);
/* Recovery (rule 4) after a loss or a restart: the changes since V. */
ps_err_t subscriber_resync(ps_subscriber_t *s);
/* Continuity is gone: announce a reset, then take a fresh snapshot. */
ps_err_t subscriber_restart_snapshot(ps_subscriber_t *s);
/* The next event of the running snapshot or changes stream; PS_OK with
 * ev->kind 0 when the stream ended without one. */
ps_err_t subscriber_stream_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline);

/* ---------------------------------------------------------------- subscriber_live.c */

/* The record prefixes to subscribe to; 0 or -EINVAL. */
int subscriber_make_prefixes(ps_subscriber_t *s);
/* Waits up to the timeout for the welcome heartbeat on the SUB. */
ps_err_t subscriber_wait_welcome(ps_subscriber_t *s);
/* The next live record, or PS_OK with ev->kind 0 when a recovery starts. */
ps_err_t subscriber_live_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline);

#endif /* PARKSYNC_SUBSCRIBER_INT_H */
