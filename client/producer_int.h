/*
 * producer_int.h - private to libparksync's producer files (producer.c,
 * producer_window.c): the state of a ps_producer and the window calls
 * producer.c makes. Not installed.
 */
#ifndef PARKSYNC_PRODUCER_INT_H
#define PARKSYNC_PRODUCER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outbox.h"
#include "parksync.h"
#include "sites.h"
#include "wire.h"

#define PRODUCER_DEFAULT_WINDOW     32768 /* updates in flight */
#define PRODUCER_DEFAULT_ACK_MS     500   /* ms before the first resend */
#define PRODUCER_DEFAULT_CONNECT_MS 5000  /* ms ps_producer_new waits */
#define PRODUCER_MAX_TIMEOUT_MS     8000  /* ms: resend timeout ceiling */
#define PRODUCER_FAST_RESEND_MS     100   /* ms between resends triggered by repeated acks */
#define PRODUCER_STATE_RETRY_MS     1000  /* ms between ProducerStateRequests at start */
#define PRODUCER_POLL_SLICE_MS      100   /* ms: longest single wait inside a blocking call */
#define PRODUCER_DRAIN_BUDGET       10000 /* acks read per pass before doing other work */
#define PRODUCER_BATCH              256   /* updates per outbox transaction */
#define PRODUCER_HANDSHAKE_MS       2000  /* ms waited for subscriptions once the state is known */
#define PRODUCER_MAX_HWM            1000000 /* messages: ceiling of the ingest SNDHWM */
#define PRODUCER_MOVE_STATE_MS      1000    /* ms a move to the next site waits for its state */

/* Sends between two reads of acks and subscriptions. A read that finds
 * nothing costs libzmq a poll(2) and a getpid(2); acks come a batch at a
 * time, so reading them after every send would mostly find nothing. */
#define PRODUCER_SERVICE_EVERY 64
/* Updates in one UpdateBatch message: an outbox batch at most. */
#define PRODUCER_BATCH_UPDATES 256

/* One sent, unacknowledged update. */
typedef struct entry {
    uint64_t sequence; /* its sequence number */
    uint8_t *data;     /* encoded Update, owned */
    size_t len;        /* bytes of data */
    char topic[16];    /* ingest topic: the kind of the update */
    int64_t sent_ms;   /* when it last went on the wire */
} entry_t;

struct ps_producer {
    void *ctx;                         /* ZeroMQ context, owned */
    void *ingest;                      /* XPUB -> daemon's ingest */
    void *acks;                        /* SUB <- daemon's publish, ack topic only */
    void *query;                       /* DEALER -> daemon's query */
    outbox_t *outbox;                  /* durable outbox, NULL when in memory */
    char producer_id[WIRE_MAX_ID + 1]; /* our id */
    unsigned window;                   /* most updates in flight */
    int ack_timeout_ms;                /* ms: the least resend timeout */
    int cur_timeout_ms;                /* ms: current resend timeout (doubles) */
    int srtt_ms;                       /* ms: smoothed wait for progress; 0: no sample yet */
    int rttvar_ms;                     /* ms: its mean deviation */
    bool resent;                       /* a resend since the last progress: no sample */
    int64_t looked_ms;                 /* monotonic ms acks were last read (0: a move) */
    int64_t last_progress_ms;          /* monotonic ms of the last ack advance or resend */
    int64_t last_resend_ms;            /* monotonic ms of the last resend */
    uint64_t last_sent;                /* highest sequence assigned */
    uint64_t last_acked;               /* highest sequence acknowledged */
    uint64_t resends;                  /* updates sent again */
    uint64_t fast_resend_for;          /* last_acked at the last repeated-ack resend */
    uint64_t outbox_deleted;           /* acked updates deleted from the outbox up to here */
    bool subscribed;                   /* the daemon's SUB has subscribed to our XPUB */
    bool heard;                        /* a heartbeat arrived: our ack subscription is live */
    uint64_t bad_frames;               /* undecodable frames on the ack socket */
    unsigned unserviced;               /* sends since acks were last read */
    wire_buf_t batch;                  /* UpdateBatch being built by send_entries */
    entry_t *entries;                  /* the window: entries[head..tail) */
    size_t head;                       /* first live entry */
    size_t sent;                       /* first entry not yet sent (head <= sent <= tail) */
    size_t tail;                       /* one past the last live entry */
    size_t cap;                        /* entries allocated */
    uint64_t next_request_id;          /* request ids on the query socket */
    uint64_t missing_from;             /* ahead: the daemon misses missing_from..missing_to, */
    uint64_t missing_to;               /* which we no longer hold; 0: not ahead */
    uint64_t back_ack;                 /* last ack below last_acked, 0: none */
    char error[256];                   /* text of the last INVALID/REFUSED/OUTBOX error */
    char health[512];                  /* the last heartbeat's degraded reason; "": ok */
    int64_t health_since_us;           /* degraded since, per that heartbeat */
    sites_t sites;                     /* the sites it may talk to, one at a time */
    int64_t heard_ms;                  /* monotonic ms of the last ack or heartbeat heard */
    int silence_ms;                    /* silence that moves it to the next site */
    uint64_t behind_to;                /* a site that acked less (we moved to it, or it lost
                                          its disk): its acks may lag up to here while it
                                          pulls from its peers; 0: none */
    bool site_pulls;                   /* the site's heartbeat says it pulls from peers */
};

/* ---------------------------------------------------------------- producer_window.c */

/* Updates in the window (sent or not, unacknowledged). */
size_t producer_in_flight(const ps_producer_t *p);
/* Appends an update to the window, which takes `data` (malloc'd) over
 * when this succeeds. 0 or -ENOMEM. */
int producer_window_take(ps_producer_t *p, uint64_t seq, uint8_t *data, size_t len,
                         const char *topic);
/* Appends a copy of an update to the window. 0 or -ENOMEM. */
int producer_window_push(ps_producer_t *p, uint64_t seq, const void *data, size_t len,
                         const char *topic);
/* Sends again everything on the wire and unacknowledged. */
void producer_resend_all(ps_producer_t *p, int64_t now);
/* Commits the outbox batch, then sends what it held. */
ps_err_t producer_flush_pending(ps_producer_t *p);
/* Deletes acknowledged updates from the outbox (always when force). */
ps_err_t producer_outbox_trim(ps_producer_t *p, bool force);
/* Marks the producer ahead of the daemon's database: from..to are gone.
 * Returns PS_ERR_AHEAD. */
ps_err_t producer_set_ahead(ps_producer_t *p, uint64_t from, uint64_t to);
/* An ack of everything up to `acked` from the site in use. */
ps_err_t producer_acked(ps_producer_t *p, uint64_t acked, int64_t now);
/* Reads acks and subscriptions without blocking, then resends when due;
 * with several sites, moves to the next after silence_ms of silence. */
ps_err_t producer_service(ps_producer_t *p);
/* Moves to the next site (producer.c), unless the site in use answers a
 * producer_state within PRODUCER_MOVE_STATE_MS after all: asks the next
 * one where this producer stands, takes what it applied as
 * acknowledged, sends the rest again. */
ps_err_t producer_move(ps_producer_t *p, int64_t now);
/* One pass: commit and send, wait up to wait_ms for acks, read them. */
ps_err_t producer_pump(ps_producer_t *p, int64_t wait_us);
/* Pumps until done(p) or the deadline (-1: none). */
ps_err_t producer_wait_until(ps_producer_t *p, bool (*done)(const ps_producer_t *), int timeout_ms);
/* Conditions for producer_wait_until. */
bool producer_window_has_room(const ps_producer_t *p);
bool producer_all_acked(const ps_producer_t *p);
bool producer_connected(const ps_producer_t *p); /* subscribed and heard */

#endif /* PARKSYNC_PRODUCER_INT_H */
