/*
 * server_int.h - what the files of parksyncd's loop share: the context
 * struct (server_t), the streams and the functions one file calls in
 * another. Only server.c, ingest.c, publish.c and streams.c include it.
 *
 *   server.c   the sockets and sending, the loop, life cycle, reload
 *   ingest.c   the batch (begin, commit, roll back) and the ingest socket
 *   publish.c  topics and stream sequences, changes, acks, heartbeats,
 *              summaries republished, subscriptions on the publish socket
 *   streams.c  the query socket: requests, snapshot and changes streams
 */
#ifndef PARKSYNCD_SERVER_INT_H
#define PARKSYNCD_SERVER_INT_H

#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <zmq.h>

#include "conns.h"
#include "control.h"
#include "keys.h"
#include "acks.h"
#include "ahead.h"
#include "checkpoint.h"
#include "health.h"
#include "log.h"
#include "peer_stats.h"
#include "store.h"
#include "strmap.h"
#include "subscriptions.h"
#include "syncer.h"
#include "wire.h"
#include "zap.h"

/* ZMQ_ZAP_ENFORCE_DOMAIN is a draft option in libzmq 4.3's header, but
 * the stable 4.3.4 library honours it (measured: a CURVE server with a
 * ZAP domain and this option refuses every client when no handler is
 * bound; without it, it admits any key). */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

#define POLL_MAX_MS           500         /* longest sleep: bounds signal latency, ms */
#define QUERY_BUDGET          256         /* query requests read per pass */
#define STREAM_CHUNK_BUDGET   32          /* chunks built per pass, all streams (1 MiB) */
#define STREAM_CHUNKS_EACH    8           /* chunks one stream may get per round */
#define STREAM_RETRY_MS       5           /* a held chunk is offered again this often, ms */
#define STREAM_DEFAULT_CREDIT 8           /* chunks granted when the request says none */
#define CHUNK_MAX_BYTES       (32 * 1024) /* record bytes per chunk, or one record */
#define ROUTING_ID_MAX        256         /* bytes of a ZeroMQ routing id */
#define LINGER_MS             500         /* on close, pending messages get this long, ms */
#define INGEST_RCVHWM         100000      /* updates queued in the SUB before ZeroMQ drops */
#define PUBLISH_SNDHWM        10000       /* publications queued per subscriber */
#define REPLY_MAX             2048        /* bytes of a non-chunk QueryReply */
#define ACK_IDLE_MS           600000      /* an ack topic unused 10..20 min is forgotten, ms */
/* Bytes of a frame a publish peer may send: its subscriptions, which are
 * at most 10 + 95 bytes (a ZMTP 3.1 SUBSCRIBE command, what libzmq
 * 4.3.4's SUB sends, carries 10 bytes besides the topic), and its
 * handshake: a NULL READY is a few dozen bytes, a CURVE INITIATE about
 * 280 (measured: 272 refused, 280 admitted). libzmq closes the connection
 * of a peer that sends more in its I/O thread, before any of it reaches
 * the subscription trie; subscriptions_drain refuses what is longer than
 * a topic only after libzmq has applied it. The bound is kept tight
 * because that cost is paid on the daemon's thread, where libzmq applies
 * every subscription a connection has in flight (a trie node per new
 * topic byte) and walks its whole trie, a heap allocation per node, each
 * time a connection ends: a peer replaying thousands of distinct 200-byte
 * subscriptions on every reconnection stalled the daemon under
 * AddressSanitizer for 0.5 s per ended connection, and those stalls
 * chained for over 5 s. */
#define PUBLISH_MAXMSG       128  /* bytes, without CURVE */
#define PUBLISH_MAXMSG_CURVE 512  /* bytes, with CURVE: room for the INITIATE */
#define SUBSCRIPTION_BUDGET  1024 /* subscription messages read per pass */
/* Messages libzmq queues from one publish connection before the daemon
 * has read them. libzmq moves a connection's messages to the socket, and
 * its subscriptions into the trie, in one loop that runs for as long as
 * its I/O thread keeps it fed, inside whichever call the daemon made. Under
 * a flood of 200-byte subscriptions one zmq_msg_recv took, in 5 runs, up
 * to 1259 ms and 282 MB with the default 1000; up to 37 ms with 256; 1 ms
 * with 64. This shortens the loop but does not bound what one connection
 * brings: the I/O thread refills the pipe while the loop drains it (one
 * connection cut at its first message still delivered 2,016), which is
 * why PUBLISH_MAXMSG keeps each of those messages short. The rest waits
 * in the kernel, within PUBLISH_RCVBUF on tcp (the peer's send buffer on
 * ipc). */
#define PUBLISH_RCVHWM 16
#define PUBLISH_RCVBUF (64 * 1024) /* bytes: a subscription is at most 105 */
#define WELCOME_MIN_MS 100         /* least time between a heartbeat and a welcome, ms */

/* ---------------------------------------------------------------- the context */

typedef struct peers peers_t; /* the links this site pulls by (peers.c) */

/* Which rate limiter a log line about peer input uses. */
enum {
    RL_BAD_FRAMES,
    RL_TOO_LARGE,
    RL_UNDECODABLE,
    RL_INVALID,
    RL_WRONG_TOPIC,
    RL_GAP,
    RL_BAD_QUERY,
    RL_SEND,
    RL_FORGED,
    RL_REFUSED,
    RL_SUMMARY,
    RL_UNADMITTED,
    RL_STREAM_BUSY,
    RL_STREAM_STALLED,
    RL_STORAGE,
    RL_PEER,
    RL_COUNT,
};

/* Where a query reply goes: the ROUTER routing id, and whether the client
 * put an empty delimiter frame before its request (REQ-style), which the
 * reply mirrors. */
typedef struct peer {
    uint8_t id[ROUTING_ID_MAX]; /* routing id bytes */
    size_t len;                 /* bytes of id */
    bool delimiter;             /* send an empty frame after the id */
    int fd;                     /* its connection's descriptor (ZMQ_SRCFD), -1: unknown */
    const char *user_id;        /* ZAP User-Id of its connection, or NULL; valid while its
                                   request is handled, never in a stream's copy */
    uint32_t conn;              /* that connection's accept number (conns_number), 0: unknown */
} peer_t;

typedef enum stream_state {
    STREAM_FREE = 0, /* slot unused */
    STREAM_WAITING,  /* asked for; the cursor opens after the next commit */
    STREAM_RUNNING,  /* cursor open, chunks flow while credit lasts */
} stream_state_t;

/* One snapshot or changes stream, keyed by (peer, request_id). */
typedef struct stream {
    stream_state_t state;
    bool changes; /* changes since `since` (else a snapshot) */
    bool history; /* snapshot: the state at `since` (at_revision) */
    peer_t peer;
    uint64_t request_id;
    store_filter_t filter;
    uint64_t since;         /* changes: revisions > since */
    uint32_t credit;        /* chunks the client can take now */
    uint32_t chunk_records; /* records per chunk */
    bool replica;           /* replicate: records with stamps, positions at the end */
    bool full;              /* replicate: the whole state (store_replica_open says) */
    bool has_epoch;         /* replicate: `epoch` is the one `since` belongs to */
    uint8_t epoch[WIRE_EPOCH_BYTES];
    int64_t wait_until_ms; /* replicate with nothing new: opens at a commit or then; 0 now */
    uint64_t commit_asked; /* replicate: s->commits when asked (a commit ends the wait) */
    uint64_t commit_open;  /* replicate: s->commits when the view opened (Chunk.commit) */
    store_cursor_t *cursor;
    uint64_t revision; /* the cursor's head revision */
    wire_buf_t ahead;  /* one record read ahead of the chunk (to know "last") */
    bool has_ahead;    /* `ahead` holds a record */
    bool at_end;       /* the cursor is exhausted */
    wire_buf_t held;   /* a finished chunk the client's full queue refused; len 0: none */
    bool held_last;    /* `held` is the stream's last chunk */
    int64_t active_ms; /* monotonic ms of the last progress: opened, chunk queued, cursor step */
} stream_t;

struct server {
    config_t cfg;          /* running configuration */
    void *zctx;            /* ZeroMQ context, owned */
    void *ingest;          /* SUB, bound */
    void *publish;         /* XPUB, bound: PUB on the wire, subscriptions readable */
    subscriptions_t *subs; /* what publish's peers may subscribe to */
    void *query;           /* ROUTER, bound */
    control_t *control;    /* operator's control ROUTER (ipc), bound */

    conns_t *conns[CONNS_SOCKETS]; /* connections of ingest, publish, query; NULL: unmonitored */

    store_t *store;
    bool batch_open;                       /* a store batch is open */
    strmap_t touched;                      /* producers with an update in the open batch */
    strmap_t topic_seq;                    /* last stream_sequence per record topic, hb/ */
    strmap_t ack_seq[2];                   /* per ack topic: [0] this period, [1] the last */
    int64_t next_ack_age_ms;               /* monotonic ms when ack_seq[1] goes */
    ahead_t ahead;                         /* producers whose gap does not close */
    uint64_t published_rev;                /* highest revision published */
    bool summaries_published;              /* a summary changed since the web page read them */
    uint8_t instance[WIRE_INSTANCE_BYTES]; /* random per start: stream sequences restart */
    int64_t next_republish_ms; /* monotonic ms of the next summary republication, 0: off */
    stream_t *streams;         /* cfg.max_streams slots */
    uint32_t n_streams;        /* slots allocated */
    bool streams_waiting;      /* some slot is STREAM_WAITING */
    bool streams_held;         /* some stream with credit holds a chunk its client refused */
    uint32_t stream_rr;        /* round-robin start for chunk sending */
    wire_chunk_t chunk;        /* chunk being built, reused */
    wire_buf_t pubbuf;         /* record publication being built, reused */
    wire_arena_t *upd_arena;   /* the update being handled is decoded into it; NULL: malloc */
    struct {
        const void *data;      /* an update of the UpdateBatch being handled */
        size_t len;            /* its bytes */
    } batch[WIRE_MAX_BATCH];   /* handle_batch: the updates, found in one walk */
    int64_t last_refresh_ms;   /* monotonic ms of the last summary refresh */
    int64_t next_heartbeat_ms; /* monotonic ms of the next heartbeat */
    int64_t last_heartbeat_ms; /* monotonic ms of the last heartbeat sent */
    bool welcome_wanted;       /* a subscription covering "hb/" awaits a heartbeat */
    bool subs_backlog;         /* the last drain left subscriptions waiting */
    int64_t watchdog_ms;       /* systemd watchdog ping period, 0: none */
    int64_t next_watchdog_ms;  /* monotonic ms of the next ping */
    log_ratelimit_t rl[RL_COUNT];
    server_counters_t n;                             /* counters */
    struct {                                         /* the open batch's outcomes, counted in n */
        uint64_t applied, duplicates, gaps, refused; /* when it commits */
    } pend;
    health_t health;                     /* ok, or what degrades the daemon */
    zap_t *zap;                          /* ZAP handler thread; NULL when CURVE is off */
    checkpoint_t *checkpoint;            /* WAL checkpoint thread */
    char curve_secret[KEYS_Z85_LEN + 1]; /* the daemon's secret key, Z85 (CURVE on) */
    /* federation (peer_stats.h): written by peers.c and streams.c, read by status, metrics */
    peer_stats_t peer_stats[CONFIG_MAX_PEERS]; /* one per [peer NAME], in config order */
    size_t n_peer_stats;                       /* entries used */
    peers_t *peers;                            /* the links this site pulls by (peers.c) */
    acks_t *acks;                              /* ack_after = peers:N; NULL: local */
    /* synchronous = full: the WAL is synced on a thread of its own
     * (syncer.h), and the commits it has not yet covered are told to
     * nobody. gen[0] holds what the sync in flight covers, gen[1] what
     * was committed since it began; per producer, its position at its
     * last commit in the generation (ack_after = local). */
    syncer_t *syncer; /* NULL: SQLite syncs each commit itself, or NORMAL */
    bool sync_failed; /* a sync failed: the loop stops, telling nothing more */
    struct durable_gen {
        strmap_t acks; /* producer id -> last sequence to acknowledge */
        uint64_t head; /* head revision after the generation's last commit */
        bool any;      /* a commit is in the generation */
    } gen[2];
    uint64_t commits;                          /* commits since start, from 1 (acks.h) */
    puller_stats_t pullers[PEERS_MAX_PULLERS]; /* sites that pulled from this one */
    size_t n_pullers;                          /* entries used */
};

/* ---- server.c: sockets and sending (every send is ZMQ_DONTWAIT) */

/* Receives one message of up to max parts (the rest are read and
 * dropped): 0 with *kept parts in parts and *total counted, or -errno. */
int server_recv_parts(void *sock, zmq_msg_t *parts, int max, int *kept, int *total);
void server_close_parts(zmq_msg_t *parts, int n);
/* Sends [topic][data] on the publish socket. */
void server_publish(server_t *s, const char *topic, const void *data, size_t len);
/* Sends data to a query peer: 0 or -errno (-EAGAIN: its queue is full). */
int server_send_reply(server_t *s, const peer_t *peer, const void *data, size_t len);
/* Words for a failed server_send_reply, for the log. */
const char *server_send_failure(int rc);
/* Packs and sends a QueryReply (version and request_id filled in). */
void server_reply(server_t *s, const peer_t *peer, uint64_t request_id,
                  Parksync__V1__QueryReply *r);
void server_reply_error(server_t *s, const peer_t *peer, uint64_t request_id,
                        Parksync__V1__ErrorCode code, const char *message);

/* ---- server.c: life cycle */

/* Hands the [ministry] sections to the store, which decides who may
 * write what. 0, or -1 after logging. */
int apply_authority(server_t *s, const config_t *cfg);

/* ---- ingest.c: the batch and the ingest socket */

/* Opens the loop's batch unless it is open: 0, or a negative errno
 * (logged, the health raised). */
int batch_begin(server_t *s);
/* Abandons the batch after a storage failure: nothing of it is kept,
 * counted or acked, so the producers resend. */
void batch_abort(server_t *s, int rc, const char *what);
/* A store call failed: logged (rate-limited), and the health raised. */
void server_store_failed(server_t *s, int rc, bool write, const char *what, const char *errmsg);
/* Commits the open batch, publishes what it changed, acks its producers
 * (with the syncer: once the WAL's sync covers the commit). */
void batch_finish(server_t *s);
/* With the syncer: a sync that ended is told (durable_poll, when its
 * socket is readable), or every commit is waited for and told
 * (durable_wait: before anything reads the store for a peer or an
 * operator, so that nobody sees a commit a power loss could take back).
 * No-ops without it. */
void durable_poll(server_t *s);
void durable_wait(server_t *s);
/* One step of conflict retention in an empty batch; true when more remain. */
bool prune_step(server_t *s);
bool summaries_due(server_t *s, int64_t now);
void refresh_summaries(server_t *s, int64_t now);
/* Reads ingest messages into the batch until batch_max updates, or
 * changes enough to fill a subscriber's queue (publish_hwm). */
void drain_ingest(server_t *s);
/* Whether the open batch's changes leave no room for more input: its
 * commit publishes them at once, within a subscriber's queue. */
bool batch_changes_full(server_t *s);

/* ---- publish.c: the publish socket */

/* Forgets ack topics unused for ACK_IDLE_MS. */
void age_ack_topics(server_t *s, int64_t now);
/* Publishes every committed change after published_rev, up to revision
 * upto. */
void publish_changes(server_t *s, uint64_t upto);
/* Publishes the producer's ack: what ack_value says, when it says anything. */
void publish_ack(server_t *s, const char *producer_id);
/* Publishes an ack of the producer through sequence last. */
void publish_ack_at(server_t *s, const char *producer_id, uint64_t last);
/* The last sequence a producer may be told is safe: committed here, or
 * with ack_after = peers:N, pulled by N sites. */
uint64_t ack_value(server_t *s, const char *producer_id);
/* A site pulled: acks whose commits are now stored at N sites go out. */
void acks_after_pull(server_t *s);
/* After a commit: what is safe already (a commit that changed nothing
 * new for a producer) is released; the caller publishes the acks. */
void acks_after_commit(server_t *s);
/* The checkpoint thread's failures, as a condition of the health. */
void health_of_checkpoints(server_t *s);
void publish_heartbeat(server_t *s);
void republish_summaries(server_t *s);
/* Applies (or refuses) what peers of the publish socket sent. */
void drain_subscriptions(server_t *s);
/* A subscription covering "hb/" waits for its welcome heartbeat. */
bool welcome_due(const server_t *s, int64_t now);

/* ---- peers.c: pulling from the [peer] sites */

/* The links of the [peer] sections with endpoints; every peer's stats
 * (s->peer_stats, from peer_stats_init) get its stored position. NULL:
 * out of memory. */
peers_t *peers_new(server_t *s);
void peers_destroy(peers_t **pp);
/* True when this site pulls from a peer: a producer's position here may
 * trail what it was acknowledged until a pull brings it. */
bool peers_pulling(const server_t *s);
/* Adds the links' sockets to a poll set of at most max: how many. */
int peers_poll_items(const peers_t *ps, zmq_pollitem_t *items, int max);
/* Merges what the peers sent into the loop's batch. */
void peers_drain(server_t *s, int64_t now);
/* The most changes the peers' first chunks of a pass can add to a batch
 * (a trade flow counts twice): 0 without peers. */
uint64_t peers_chunk_changes(const server_t *s);
/* Between batches: asks idle links, gives up on silent ones. */
void peers_tick(server_t *s, int64_t now);
/* The monotonic ms of the next thing peers_tick must do; INT64_MAX: none. */
int64_t peers_deadline(const server_t *s);

/* ---- streams.c: the query socket */

void stream_close(stream_t *st);
/* conns_on_close callback: a query connection went; its streams end. */
void on_query_closed(void *arg, int fd, uint32_t conn);
/* Opens the cursors of waiting streams (after a commit). */
void open_waiting_streams(server_t *s, int64_t now);
/* A waiting stream may open now (a replicate stream waits for a change). */
bool streams_ready(const server_t *s, int64_t now);
/* The earliest end of a replicate stream's wait; INT64_MAX: none. */
int64_t streams_wait_deadline(const server_t *s);
/* Sends chunks within the pass's budget; true when there is more to do. */
bool pump_streams(server_t *s, int64_t now);
/* Streams one client may run: max_streams_per_client, at most max_streams - 1. */
uint32_t streams_per_client(const server_t *s);
/* Answers the query requests waiting, up to QUERY_BUDGET. */
void drain_queries(server_t *s);

#endif /* PARKSYNCD_SERVER_INT_H */
