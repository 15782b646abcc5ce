/*
 * subscriber.c - ps_subscriber: the consolidated picture as a snapshot,
 * then live, with loss detection and recovery (the ZeroMQ Guide's Clone
 * pattern, plus what it lacks: resuming, and telling a loss on a filtered
 * stream).
 *
 * Sections: state; topics and sequences; requests; streams (snapshot and
 * changes chunks); live; the public calls.
 *
 * Ordering. The SUB socket connects and subscribes before anything is
 * asked of the query socket, so every change after the snapshot's (or
 * changes stream's) revision R is queued in it while the stream runs.
 * Streams are flow controlled: SUBSCRIBER_CREDIT chunks granted up front
 * and one more after each chunk is consumed, so memory stays bounded on
 * both sides. Live records with revision <= the newest delivered are
 * dropped: they are covered already, or they are the second copy of a
 * trade flow (published on the exporter's and on the importer's topic).
 *
 * Slow joiner. A SUB's subscription reaches the daemon some time after
 * zmq_connect returns. The record topics are subscribed first and "hb/"
 * last; the daemon answers a new "hb/" subscription with a heartbeat at
 * once, and since one peer's subscriptions are applied in order, that
 * heartbeat proves the record subscriptions are active. Its topic
 * sequences are where this subscriber's streams start.
 *
 * Loss. Each record topic carries stream_sequence 1, 2, 3, ... per daemon
 * instance, and every heartbeat lists the last sequence of every record
 * topic. A loss on one topic may show only at the next heartbeat, after
 * records of other topics with higher revisions were delivered. So the
 * subscriber keeps a watermark V (every matching change up to V is
 * delivered) apart from the revisions delivered live above it (D), and
 * moves V only where the stream proves nothing was lost: at a heartbeat
 * whose sequences all match (V = its head revision) and at the end of a
 * stream. A loss that may lie above V is recovered with the changes since
 * V, delivering only what is not in D. A heartbeat with a new instance id
 * (a restart: sequences begin again) also triggers that resync. TOO_OLD
 * (the change log no longer reaches back) or a new database epoch:
 * PS_EVENT_RESET, then a fresh snapshot. proto/README.md, "Subscribers",
 * has the rules; the functions below follow them by number.
 */
#include "parksync.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "keys.h"
#include "sock.h"
#include "wire.h"

#define SUBSCRIBER_DEFAULT_TIMEOUT_MS 5000       /* ms of daemon silence during a stream */
#define SUBSCRIBER_CREDIT             8          /* chunks granted when a stream starts */
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
    Parksync__V1__QueryReply *chunk; /* the chunk being delivered, owned */
    size_t pos;                      /* next record in chunk */
    Parksync__V1__Publication *pub;  /* the live record last delivered, owned */
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
};

void ps_subscriber_options_init(ps_subscriber_options_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->publish_endpoint = WIRE_DEFAULT_PUBLISH;
    opts->query_endpoint = WIRE_DEFAULT_QUERY;
    opts->kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    opts->live = true;
    opts->timeout_ms = SUBSCRIBER_DEFAULT_TIMEOUT_MS;
}

static bool record_matches(const ps_subscriber_t *s, const Parksync__V1__Record *r)
{
    Parksync__V1__RecordKind k = wire_record_kind(r);
    if (s->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED && k != s->kind)
        return false;
    if (s->country[0] == '\0')
        return true;
    const char *c = wire_record_country(r);
    if (c != NULL && strcmp(c, s->country) == 0)
        return true;
    return k == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE && r->trade->importer != NULL &&
           strcmp(r->trade->importer, s->country) == 0;
}

/* ---------------------------------------------------------------- topics and sequences */

/* The record prefixes to subscribe to: pure prefix filtering at the
 * daemon, trade flows included (they go out under both countries). */
static int make_prefixes(ps_subscriber_t *s)
{
    const char *cc = s->country[0] != '\0' ? s->country : NULL;
    int rc;

    s->n_prefixes = 0;
    if (s->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED && cc != NULL) {
        for (int k = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
             k <= PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY; k++) {
            rc = wire_topic_record(s->prefixes[s->n_prefixes], WIRE_MAX_TOPIC,
                                   (Parksync__V1__RecordKind)k, cc);
            if (rc < 0)
                return rc;
            s->n_prefixes++;
        }
        return 0;
    }
    rc = wire_topic_record(s->prefixes[0], WIRE_MAX_TOPIC, s->kind, cc);
    if (rc < 0)
        return rc;
    s->n_prefixes = 1;
    return 0;
}

static bool topic_subscribed(const ps_subscriber_t *s, const char *topic)
{
    for (size_t i = 0; i < s->n_prefixes; i++)
        if (strncmp(topic, s->prefixes[i], strlen(s->prefixes[i])) == 0)
            return true;
    return false;
}

/* The sequence slot of topic, added (at 0) when missing; NULL when out of
 * memory. */
static uint64_t *topic_slot(ps_subscriber_t *s, const char *topic)
{
    if (s->last_topic < s->n_topics && strcmp(s->topics[s->last_topic].topic, topic) == 0)
        return &s->topics[s->last_topic].seq;
    for (size_t i = 0; i < s->n_topics; i++) {
        if (strcmp(s->topics[i].topic, topic) == 0) {
            s->last_topic = i;
            return &s->topics[i].seq;
        }
    }
    if (s->n_topics == s->cap_topics) {
        size_t cap = s->cap_topics ? 2 * s->cap_topics : 16;
        topic_seq_t *t = realloc(s->topics, cap * sizeof *t);
        if (t == NULL)
            return NULL;
        s->topics = t;
        s->cap_topics = cap;
    }
    topic_seq_t *t = &s->topics[s->n_topics];
    snprintf(t->topic, sizeof t->topic, "%s", topic);
    t->seq = 0;
    s->last_topic = s->n_topics++;
    return &t->seq;
}

/* ---------------------------------------------------------------- requests */

static ps_err_t send_request(ps_subscriber_t *s, Parksync__V1__QueryRequest *req)
{
    size_t len = 0;
    req->has_version = 1;
    req->version = WIRE_VERSION;
    req->has_request_id = 1;
    req->request_id = s->request_id;
    uint8_t *buf = wire_pack(&req->base, &len);
    if (buf == NULL)
        return PS_ERR_NOMEM;
    int rc = sock_send(s->query, NULL, buf, len);
    free(buf);
    /* DEALER queues while the daemon is away (EAGAIN only at its HWM). */
    return rc < 0 && rc != -EAGAIN ? PS_ERR_SOCKET : PS_OK;
}

static void fill_filter(const ps_subscriber_t *s, Parksync__V1__Filter *filter)
{
    if (s->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED) {
        filter->has_kind = 1;
        filter->kind = s->kind;
    }
    if (s->country[0] != '\0')
        filter->country = (char *)s->country;
}

/* Drops whatever the previous stream left and starts a new request id, so
 * late replies of the old stream are ignored. */
static void stream_reset(ps_subscriber_t *s)
{
    if (s->chunk != NULL)
        parksync__v1__query_reply__free_unpacked(s->chunk, NULL);
    s->chunk = NULL;
    s->pos = 0;
    s->request_id++;
    s->last_heard_ms = wire_monotonic_ms();
}

static ps_err_t ask_snapshot(ps_subscriber_t *s)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__SnapshotRequest snap = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
    Parksync__V1__Filter filter = PARKSYNC__V1__FILTER__INIT;

    stream_reset(s);
    fill_filter(s, &filter);
    snap.filter = &filter;
    snap.has_credit = 1;
    snap.credit = SUBSCRIBER_CREDIT;
    snap.has_chunk_records = 1;
    snap.chunk_records = SUBSCRIBER_CHUNK_RECORDS;
    if (s->provenance) {
        snap.has_provenance = 1;
        snap.provenance = 1;
    }
    if (s->has_at_revision) {
        snap.has_at_revision = 1;
        snap.at_revision = s->at_revision;
    }
    req.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
    req.snapshot = &snap;
    s->state = SUB_SNAPSHOT;
    s->n.snapshots++;
    return send_request(s, &req);
}

static ps_err_t ask_changes(ps_subscriber_t *s)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__ChangesRequest ch = PARKSYNC__V1__CHANGES_REQUEST__INIT;
    Parksync__V1__Filter filter = PARKSYNC__V1__FILTER__INIT;

    stream_reset(s);
    fill_filter(s, &filter);
    ch.filter = &filter;
    ch.has_since_revision = 1;
    ch.since_revision = s->revision;
    ch.has_credit = 1;
    ch.credit = SUBSCRIBER_CREDIT;
    ch.has_chunk_records = 1;
    ch.chunk_records = SUBSCRIBER_CHUNK_RECORDS;
    req.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES;
    req.changes = &ch;
    s->state = SUB_CHANGES;
    return send_request(s, &req);
}

/* ---------------------------------------------------------------- delivered above V */

/* True when revision was delivered: at or below V, or in D. */
static bool delivered(const ps_subscriber_t *s, uint64_t revision)
{
    size_t lo = 0, hi = s->n_delivered;

    if (revision <= s->revision)
        return true;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->delivered[mid] < revision)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n_delivered && s->delivered[lo] == revision;
}

/* Appends a live revision to D (live records come in revision order).
 * False when D is full or out of memory: the caller recovers instead. */
static bool note_delivered(ps_subscriber_t *s, uint64_t revision)
{
    if (s->n_delivered == s->cap_delivered) {
        size_t cap = s->cap_delivered ? 2 * s->cap_delivered : 1024;
        if (cap > SUBSCRIBER_DELIVERED_MAX)
            return false;
        uint64_t *d = realloc(s->delivered, cap * sizeof *d);
        if (d == NULL)
            return false;
        s->delivered = d;
        s->cap_delivered = cap;
    }
    s->delivered[s->n_delivered++] = revision;
    return true;
}

/* V moves to revision (never back); D keeps only what lies above it. */
static void advance_watermark(ps_subscriber_t *s, uint64_t revision)
{
    size_t keep = 0;

    if (revision > s->revision)
        s->revision = revision;
    for (size_t i = 0; i < s->n_delivered; i++)
        if (s->delivered[i] > s->revision)
            s->delivered[keep++] = s->delivered[i];
    s->n_delivered = keep;
}

/* Recovery (rule 4) after a loss or a restart: the changes since V. */
static ps_err_t resync(ps_subscriber_t *s)
{
    s->n.resyncs++;
    s->recovering = true;
    return ask_changes(s);
}

/* Continuity is gone: announce a reset, then take a fresh snapshot. */
static ps_err_t restart_snapshot(ps_subscriber_t *s)
{
    s->pending_reset = true;
    s->recovering = true;
    s->revision = 0;
    s->n_delivered = 0;
    return ask_snapshot(s);
}

static ps_err_t grant_credit(ps_subscriber_t *s)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__Credit credit = PARKSYNC__V1__CREDIT__INIT;

    credit.has_chunks = 1;
    credit.chunks = 1;
    req.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT;
    req.credit = &credit;
    return send_request(s, &req);
}

/* ---------------------------------------------------------------- heartbeats */

/* Takes the sequences of a heartbeat as where our topics stand (welcome,
 * or a new instance). */
static void adopt_sequences(ps_subscriber_t *s, const Parksync__V1__Heartbeat *hb)
{
    s->n_topics = 0;
    s->last_topic = 0;
    for (size_t i = 0; i < hb->n_topics; i++) {
        const Parksync__V1__TopicSequence *t = hb->topics[i];
        uint64_t *seq;
        if (topic_subscribed(s, t->topic) && (seq = topic_slot(s, t->topic)) != NULL)
            *seq = t->sequence;
    }
}

static void adopt_identity(ps_subscriber_t *s, const Parksync__V1__Heartbeat *hb)
{
    if (hb->has_epoch && hb->epoch.len == WIRE_EPOCH_BYTES) {
        memcpy(s->epoch, hb->epoch.data, WIRE_EPOCH_BYTES);
        s->has_epoch = true;
    }
    if (hb->has_instance && hb->instance.len == WIRE_INSTANCE_BYTES) {
        memcpy(s->instance, hb->instance.data, WIRE_INSTANCE_BYTES);
        s->has_instance = true;
    }
}

/* A heartbeat while live (rules 3, 5, 6): a new epoch means a new history
 * (reset), a new instance a restart (resync). Otherwise it proves, when
 * every subscribed topic is where we are, that nothing published before
 * it was lost: V moves to its head. A topic ahead of us is a loss of
 * records at or below its head: covered when that is at or below V. */
static ps_err_t live_heartbeat(ps_subscriber_t *s, const Parksync__V1__Heartbeat *hb)
{
    if (hb->has_epoch && hb->epoch.len == WIRE_EPOCH_BYTES && s->has_epoch &&
        memcmp(hb->epoch.data, s->epoch, WIRE_EPOCH_BYTES) != 0) {
        s->n.epoch_changes++;
        adopt_identity(s, hb);
        adopt_sequences(s, hb);
        return restart_snapshot(s);
    }
    if (hb->has_instance && hb->instance.len == WIRE_INSTANCE_BYTES &&
        (!s->has_instance || memcmp(hb->instance.data, s->instance, WIRE_INSTANCE_BYTES) != 0)) {
        bool known = s->has_instance;
        adopt_identity(s, hb);
        adopt_sequences(s, hb);
        if (!known)
            return PS_OK; /* no welcome heartbeat came: start from this one */
        s->n.restarts++;
        return resync(s);
    }
    adopt_identity(s, hb);
    bool lost = false;
    for (size_t i = 0; i < hb->n_topics; i++) {
        const Parksync__V1__TopicSequence *t = hb->topics[i];
        if (!topic_subscribed(s, t->topic))
            continue;
        uint64_t *seq = topic_slot(s, t->topic);
        if (seq == NULL)
            return PS_ERR_NOMEM;
        if (t->sequence > *seq) {
            *seq = t->sequence;
            lost = true;
        }
    }
    uint64_t head = hb->has_head_revision ? hb->head_revision : 0;
    if (!lost) {
        advance_watermark(s, head);
        return PS_OK;
    }
    s->n.gaps++;
    if (hb->has_head_revision && head <= s->revision)
        return PS_OK; /* everything lost lies at or below V: delivered already */
    return resync(s);
}

/* ---------------------------------------------------------------- receiving */

/* Waits up to timeout_ms for the welcome heartbeat on the SUB (see the
 * top). Records before it are covered by the coming snapshot. A daemon
 * that stays silent is not an error here; the stream request times out. */
static ps_err_t wait_welcome(ps_subscriber_t *s)
{
    int64_t deadline = wire_monotonic_ms() + s->timeout_ms;

    for (;;) {
        Parksync__V1__Publication *pub;
        int rc = sock_recv_publication(s->sub, NULL, 0, &pub);
        if (rc == -EAGAIN) {
            int64_t left = deadline - wire_monotonic_ms();
            if (left <= 0)
                return PS_OK;
            zmq_pollitem_t item = {.socket = s->sub, .events = ZMQ_POLLIN};
            if (zmq_poll(&item, 1, (long)left) < 0)
                return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
            continue;
        }
        if (rc == -EPROTO)
            continue;
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        bool hb = pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT;
        if (hb) {
            adopt_identity(s, pub->heartbeat);
            adopt_sequences(s, pub->heartbeat);
        }
        parksync__v1__publication__free_unpacked(pub, NULL);
        if (hb)
            return PS_OK;
    }
}

/* Milliseconds to wait now given a caller deadline (-1: none) and an
 * optional silence deadline (-1: none); 0 when one has passed. */
static long wait_ms(int64_t deadline, int64_t silence_deadline)
{
    int64_t now = wire_monotonic_ms(), d = deadline;
    if (silence_deadline >= 0 && (d < 0 || silence_deadline < d))
        d = silence_deadline;
    if (d < 0)
        return -1;
    return d > now ? (long)(d - now) : 0;
}

/* Handles an error reply to the running stream. PS_OK when the
 * subscriber recovers by itself (a fresh snapshot follows). */
static ps_err_t stream_error(ps_subscriber_t *s, const Parksync__V1__Error *e)
{
    snprintf(s->last_error, sizeof s->last_error, "%s",
             e->message ? e->message : "refused by the daemon");
    if (e->code == PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD && s->state == SUB_CHANGES) {
        s->n.too_old++;
        s->end_after_changes = false;
        return restart_snapshot(s);
    }
    if (e->code == PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY) {
        /* Every stream slot is taken: ask again later, waiting longer
         * each time, with jitter, so that many clients started at once
         * (or a daemon just restarted) spread out instead of failing or
         * asking in a tight loop. */
        s->busy_wait_ms = s->busy_wait_ms == 0                           ? SUBSCRIBER_BUSY_MIN_MS
                          : s->busy_wait_ms * 2 > SUBSCRIBER_BUSY_MAX_MS ? SUBSCRIBER_BUSY_MAX_MS
                                                                         : s->busy_wait_ms * 2;
        s->rng ^= s->rng << 13;
        s->rng ^= s->rng >> 7;
        s->rng ^= s->rng << 17;
        s->retry_at_ms = wire_monotonic_ms() + s->busy_wait_ms / 2 +
                         (int64_t)(s->rng % (uint64_t)(s->busy_wait_ms / 2 + 1));
        return PS_OK;
    }
    s->state = SUB_CLOSED;
    return PS_ERR_REFUSED;
}

/* Asks the daemon again for the running stream (a new request). */
static ps_err_t ask_again(ps_subscriber_t *s)
{
    return s->state == SUB_CHANGES ? ask_changes(s) : ask_snapshot(s);
}

/* Waits for the next reply of the running stream; PS_OK with s->chunk
 * set, or PS_OK with no chunk when the stream was replaced (recovery). */
static ps_err_t next_chunk(ps_subscriber_t *s, int64_t deadline)
{
    for (;;) {
        int64_t now = wire_monotonic_ms(), silence = s->last_heard_ms + s->timeout_ms;
        bool waiting = s->retry_at_ms > 0; /* after BUSY: no request out */
        if (waiting ? now >= s->retry_at_ms : now >= silence) {
            if (!waiting && !s->recovering)
                return PS_ERR_TIMEOUT;
            /* the BUSY wait is over, or the daemon may have restarted
             * and forgotten the stream: ask again */
            s->retry_at_ms = 0;
            ps_err_t e = ask_again(s);
            if (e != PS_OK)
                return e;
            continue;
        }
        if (waiting) {
            if (deadline >= 0 && now >= deadline)
                return PS_ERR_TIMEOUT;
            if (zmq_poll(NULL, 0, wait_ms(deadline, s->retry_at_ms)) < 0 && zmq_errno() == EINTR)
                return PS_ERR_INTERRUPTED;
            continue;
        }
        /* look before giving up: a timeout of 0 still takes what is there */
        long w = wait_ms(deadline, silence);
        zmq_pollitem_t item = {.socket = s->query, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, w) < 0)
            return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        if (!(item.revents & ZMQ_POLLIN)) {
            if (deadline >= 0 && wire_monotonic_ms() >= deadline)
                return PS_ERR_TIMEOUT;
            continue;
        }
        Parksync__V1__QueryReply *rep;
        int rc = sock_recv_reply(s->query, &rep);
        if (rc == -EAGAIN)
            continue;
        if (rc == -EPROTO) {
            s->n.bad_frames++;
            continue;
        }
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        if (rep->request_id != s->request_id) {
            parksync__v1__query_reply__free_unpacked(rep, NULL);
            continue; /* a stream we gave up */
        }
        s->last_heard_ms = wire_monotonic_ms();
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK) {
            const Parksync__V1__Chunk *c = rep->chunk;
            if (c->has_epoch && c->epoch.len == WIRE_EPOCH_BYTES) {
                bool other = s->has_epoch && memcmp(c->epoch.data, s->epoch, WIRE_EPOCH_BYTES);
                memcpy(s->epoch, c->epoch.data, WIRE_EPOCH_BYTES);
                s->has_epoch = true;
                if (other && (s->state == SUB_CHANGES || s->recovering)) {
                    /* another database: our revision means nothing there */
                    parksync__v1__query_reply__free_unpacked(rep, NULL);
                    s->n.epoch_changes++;
                    s->end_after_changes = false;
                    return restart_snapshot(s);
                }
            }
            s->chunk = rep;
            s->pos = 0;
            s->busy_wait_ms = 0;
            return PS_OK;
        }
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR) {
            ps_err_t e = stream_error(s, rep->error);
            parksync__v1__query_reply__free_unpacked(rep, NULL);
            return e;
        }
        parksync__v1__query_reply__free_unpacked(rep, NULL);
        s->n.bad_frames++; /* a pong or the like: not for this stream */
    }
}

static void deliver(ps_event_t *ev, ps_event_kind_t kind, Parksync__V1__Record *r,
                    uint64_t revision, bool live)
{
    ev->kind = kind;
    ev->record = r;
    ev->revision = revision;
    ev->live = live;
}

/* Delivers the next record of the running snapshot or changes stream, or
 * the snapshot's end. PS_ERR_AGAIN-like: returns PS_OK with ev->kind 0
 * when the stream ended without an event (a recovery went back to live). */
static ps_err_t stream_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline)
{
    for (;;) {
        if (s->pending_reset) {
            s->pending_reset = false;
            deliver(ev, PS_EVENT_RESET, NULL, 0, false);
            return PS_OK;
        }
        if (s->state != SUB_SNAPSHOT && s->state != SUB_CHANGES)
            return PS_OK; /* an error reply closed it, or the caller goes live */
        if (s->chunk == NULL) {
            ps_err_t e = next_chunk(s, deadline);
            if (e != PS_OK)
                return e;
            if (s->chunk == NULL)
                continue; /* replaced by a recovery stream */
        }
        Parksync__V1__Chunk *c = s->chunk->chunk;
        bool changes = s->state == SUB_CHANGES;
        while (s->pos < c->n_records) {
            Parksync__V1__Record *r = c->records[s->pos++];
            if (!record_matches(s, r))
                continue;
            if (changes && delivered(s, r->revision))
                continue;
            deliver(ev, PS_EVENT_RECORD, r, r->revision, false);
            return PS_OK;
        }
        bool last = c->has_last && c->last;
        uint64_t revision = c->has_revision ? c->revision : 0;
        parksync__v1__query_reply__free_unpacked(s->chunk, NULL);
        s->chunk = NULL;
        if (!last) {
            ps_err_t e = grant_credit(s);
            if (e != PS_OK)
                return e;
            continue;
        }
        s->recovering = false;
        s->state = s->live ? SUB_LIVE : SUB_CLOSED;
        if (!changes) {
            s->revision = revision;
            s->n_delivered = 0;
            deliver(ev, PS_EVENT_SNAPSHOT_END, NULL, revision, false);
            return PS_OK;
        }
        /* every matching change up to the stream's head is delivered */
        advance_watermark(s, revision);
        if (s->end_after_changes) {
            s->end_after_changes = false;
            deliver(ev, PS_EVENT_SNAPSHOT_END, NULL, s->revision, false);
            return PS_OK;
        }
        return PS_OK; /* back to live, no event */
    }
}

/* Checks a record's stream sequence on its topic. True when it follows
 * the last one; false when something was lost in between (or the daemon
 * restarted). */
static bool sequence_ok(ps_subscriber_t *s, const char *topic, const Parksync__V1__Publication *p)
{
    uint64_t *seq = topic_slot(s, topic);
    if (seq == NULL || !p->has_stream_sequence)
        return true; /* cannot track: rely on heartbeats */
    bool ok = p->stream_sequence == *seq + 1;
    *seq = p->stream_sequence;
    return ok;
}

static ps_err_t live_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline)
{
    for (;;) {
        Parksync__V1__Publication *pub;
        char topic[WIRE_MAX_TOPIC];
        int rc = sock_recv_publication(s->sub, topic, sizeof topic, &pub);
        if (rc == -EAGAIN) {
            long w = wait_ms(deadline, -1);
            if (w == 0)
                return PS_ERR_TIMEOUT;
            zmq_pollitem_t item = {.socket = s->sub, .events = ZMQ_POLLIN};
            if (zmq_poll(&item, 1, w) < 0)
                return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
            continue;
        }
        if (rc == -EPROTO) {
            s->n.bad_frames++;
            continue;
        }
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        if (pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT) {
            ps_err_t e = live_heartbeat(s, pub->heartbeat);
            parksync__v1__publication__free_unpacked(pub, NULL);
            if (e != PS_OK)
                return e;
            if (s->state != SUB_LIVE)
                return PS_OK; /* the caller runs the recovery stream */
            continue;
        }
        if (pub->body_case != PARKSYNC__V1__PUBLICATION__BODY_RECORD) {
            parksync__v1__publication__free_unpacked(pub, NULL);
            continue;
        }
        if (!sequence_ok(s, topic, pub)) {
            s->n.gaps++;
            if (pub->record->revision > s->revision) {
                /* rule 2: what was lost lies below this record, maybe
                 * above V; this record and the lost ones come in the
                 * changes since V */
                parksync__v1__publication__free_unpacked(pub, NULL);
                return resync(s);
            }
            /* lost below this record, at or below V: delivered already */
        }
        if (pub->has_repeat && pub->repeat) {
            s->n.repeats++;
            parksync__v1__publication__free_unpacked(pub, NULL);
            continue;
        }
        bool dup = delivered(s, pub->record->revision);
        if (dup || !record_matches(s, pub->record)) {
            if (dup)
                s->n.duplicates++;
            parksync__v1__publication__free_unpacked(pub, NULL);
            continue;
        }
        if (!note_delivered(s, pub->record->revision)) {
            /* D is full (no clean heartbeat for a long while): recover,
             * which moves V past everything delivered */
            parksync__v1__publication__free_unpacked(pub, NULL);
            return resync(s);
        }
        s->pub = pub;
        deliver(ev, PS_EVENT_RECORD, pub->record, pub->record->revision, true);
        return PS_OK;
    }
}

/* ---------------------------------------------------------------- the public calls */

ps_subscriber_t *ps_subscriber_new(const ps_subscriber_options_t *opts, ps_err_t *err)
{
    ps_subscriber_t *s = NULL;
    ps_err_t e = PS_ERR_INVALID;
    int rc, hwm;
    sock_curve_t curve;

    if (opts == NULL || (opts->country != NULL && !wire_country_valid(opts->country)))
        goto fail;
    curve = (sock_curve_t){opts->server_public_key, opts->public_key, opts->secret_key};
    if (curve.server_key && (!keys_z85_valid(curve.server_key) || !curve.secret_key ||
                             !keys_z85_valid(curve.secret_key) ||
                             (curve.public_key && !keys_z85_valid(curve.public_key))))
        goto fail;
    if (opts->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED &&
        wire_kind_name(opts->kind) == NULL)
        goto fail;
    if (opts->has_at_revision && (opts->live || opts->has_from_revision || opts->provenance))
        goto fail; /* history is a one-off snapshot */
    if (opts->has_from_revision && !opts->live)
        goto fail;
    e = PS_ERR_NOMEM;
    if ((s = calloc(1, sizeof *s)) == NULL)
        goto fail;
    /* distinct per client, not secret: it only spreads retries */
    s->rng = (uint64_t)wire_now_us() ^ ((uint64_t)(uintptr_t)s << 16) ^ (uint64_t)getpid();
    if (s->rng == 0)
        s->rng = 1;
    s->kind = opts->kind;
    if (opts->country != NULL)
        snprintf(s->country, sizeof s->country, "%s", opts->country);
    s->live = opts->live;
    s->provenance = opts->provenance;
    s->has_at_revision = opts->has_at_revision;
    s->at_revision = opts->at_revision;
    s->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : SUBSCRIBER_DEFAULT_TIMEOUT_MS;
    s->request_id = (uint64_t)wire_now_us(); /* distinct across runs, for the daemon's logs */
    hwm = opts->rcvhwm > 0 ? opts->rcvhwm : SUBSCRIBER_RCVHWM;
    e = PS_ERR_INVALID;
    if (make_prefixes(s) < 0)
        goto fail;
    e = PS_ERR_SOCKET;
    if ((s->ctx = zmq_ctx_new()) == NULL)
        goto fail;
    if (s->live) {
        /* Subscribe first: the Clone pattern's ordering; "hb/" last. */
        if ((s->sub = zmq_socket(s->ctx, ZMQ_SUB)) == NULL)
            goto fail;
        int64_t maxmsg = WIRE_MAX_MSG;
        if (zmq_setsockopt(s->sub, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0 ||
            zmq_setsockopt(s->sub, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0 ||
            sock_apply_curve(s->sub, &curve) < 0)
            goto fail;
        for (size_t i = 0; i < s->n_prefixes; i++)
            if (zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, s->prefixes[i], strlen(s->prefixes[i])) < 0)
                goto fail;
        if (zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, WIRE_TOPIC_HEARTBEAT,
                           strlen(WIRE_TOPIC_HEARTBEAT)) < 0 ||
            zmq_connect(s->sub,
                        opts->publish_endpoint ? opts->publish_endpoint : WIRE_DEFAULT_PUBLISH) < 0)
            goto fail;
        if ((e = wait_welcome(s)) != PS_OK)
            goto fail;
        e = PS_ERR_SOCKET;
    }
    s->query = sock_open_curve(s->ctx, ZMQ_DEALER,
                               opts->query_endpoint ? opts->query_endpoint : WIRE_DEFAULT_QUERY, 0,
                               &curve, &rc);
    if (s->query == NULL)
        goto fail;
    if (opts->has_from_revision) {
        s->revision = opts->from_revision;
        s->end_after_changes = true;
        e = ask_changes(s);
    } else {
        e = ask_snapshot(s);
    }
    if (e != PS_OK)
        goto fail;
    *err = PS_OK;
    return s;
fail:
    *err = e;
    ps_subscriber_destroy(&s);
    return NULL;
}

ps_err_t ps_subscriber_next(ps_subscriber_t *s, ps_event_t *ev, int timeout_ms)
{
    if (s == NULL || ev == NULL)
        return PS_ERR_INVALID;
    if (s->pub != NULL)
        parksync__v1__publication__free_unpacked(s->pub, NULL);
    s->pub = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : wire_monotonic_ms() + timeout_ms;
    for (;;) {
        ps_err_t e;
        memset(ev, 0, sizeof *ev);
        switch (s->state) {
        case SUB_SNAPSHOT:
        case SUB_CHANGES:
            e = stream_next(s, ev, deadline);
            break;
        case SUB_LIVE:
            e = live_next(s, ev, deadline);
            break;
        case SUB_CLOSED:
        default:
            if (s->pending_reset) /* cannot happen: resets come with a stream */
                s->pending_reset = false;
            return PS_ERR_CLOSED;
        }
        if (e != PS_OK || ev->kind != 0)
            return e;
        /* a recovery started or ended without an event: go on */
    }
}

ps_err_t ps_subscriber_run(ps_subscriber_t *s, ps_subscriber_fn fn, void *arg, int timeout_ms)
{
    ps_event_t ev;

    if (s == NULL || fn == NULL)
        return PS_ERR_INVALID;
    for (;;) {
        ps_err_t e = ps_subscriber_next(s, &ev, timeout_ms);
        if (e != PS_OK)
            return e;
        if (fn(arg, &ev) != 0)
            return PS_OK;
    }
}

uint64_t ps_subscriber_revision(const ps_subscriber_t *s)
{
    return s->revision;
}

void ps_subscriber_stats(const ps_subscriber_t *s, ps_subscriber_stats_t *out)
{
    *out = s->n;
}

const char *ps_subscriber_last_error(const ps_subscriber_t *s)
{
    return s->last_error;
}

void ps_subscriber_destroy(ps_subscriber_t **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    ps_subscriber_t *s = *sp;
    if (s->chunk != NULL)
        parksync__v1__query_reply__free_unpacked(s->chunk, NULL);
    if (s->pub != NULL)
        parksync__v1__publication__free_unpacked(s->pub, NULL);
    sock_close(&s->sub);
    sock_close(&s->query);
    if (s->ctx != NULL)
        zmq_ctx_term(s->ctx);
    free(s->topics);
    free(s->delivered);
    free(s);
    *sp = NULL;
}
