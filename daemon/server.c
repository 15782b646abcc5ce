/*
 * server.c - see server.h.
 *
 * Sections: the context; sockets and sending; publishing (changes, acks,
 * heartbeats); the batch; ingest; streams; queries; the loop; life cycle.
 *
 * Slow clients never block the loop: every send is ZMQ_DONTWAIT. The PUB
 * socket drops at its high-water mark (subscribers detect the gap from
 * stream sequences and heartbeats and recover with a changes request).
 *
 * The query ROUTER runs with ZMQ_ROUTER_MANDATORY and a high-water mark
 * of [limits] query_hwm replies per connection: credit says what a client
 * asks for, not what it reads, so only the transport can tell a client
 * that does not read. A chunk for a client whose queue is full is refused
 * with EAGAIN, kept by its stream and sent first once the client has
 * read; a stream that delivers nothing for stream_idle_ms, for lack of
 * credit or of a reader, is dropped with its read transaction. So a
 * client holds at most query_hwm chunks queued plus one held per stream,
 * in at most max_streams_per_client streams. The mark counts messages,
 * not bytes, and must leave room for the answers to a burst of pipelined
 * requests, so the chunks are what is kept small (CHUNK_MAX_BYTES): 32 KiB
 * streamed a million records as fast as the old 1 MiB chunks did, 16 KiB
 * a quarter slower (more passes and credits per record). A send to a
 * vanished client fails with EHOSTUNREACH and ends its stream at once.
 */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <zmq.h>

#include "conns.h"
#include "control.h"
#include "keys.h"
#include "ahead.h"
#include "checkpoint.h"
#include "health.h"
#include "log.h"
#include "store.h"
#include "strmap.h"
#include "subscriptions.h"
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
/* Bytes of a frame a publish peer may send: its handshake (a CURVE
 * INITIATE is about 280 bytes, measured: 272 refused, 280 admitted) and
 * its subscriptions, which are at most 10 + 95 bytes (a ZMTP 3.1
 * SUBSCRIBE command, what libzmq 4.3.4's SUB sends, carries 10 bytes
 * besides the topic). libzmq closes the connection of a peer that sends
 * more; subscriptions_drain refuses anything longer than a topic. */
#define PUBLISH_MAXMSG      512
#define SUBSCRIPTION_BUDGET 1024 /* subscription messages read per pass */
/* Messages libzmq takes from one publish connection before the daemon has
 * read them. libzmq moves a connection's messages to the socket, and its
 * subscriptions into the trie, in one loop that runs for as long as its
 * I/O thread keeps it fed, inside whichever call the daemon made. Under a
 * flood of 200-byte subscriptions one zmq_msg_recv took, in 5 runs, up to
 * 1259 ms and 282 MB with the default 1000; up to 37 ms with 256; 1 ms
 * with 64. The rest waits in the kernel, within PUBLISH_RCVBUF on tcp
 * (the peer's send buffer on ipc). */
#define PUBLISH_RCVHWM 16
#define PUBLISH_RCVBUF (64 * 1024) /* bytes: a subscription is at most 105 */
#define WELCOME_MIN_MS 100         /* least time between a heartbeat and a welcome, ms */

/* ---------------------------------------------------------------- the context */

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
    uint8_t instance[WIRE_INSTANCE_BYTES]; /* random per start: stream sequences restart */
    int64_t next_republish_ms; /* monotonic ms of the next summary republication, 0: off */
    stream_t *streams;         /* cfg.max_streams slots */
    uint32_t n_streams;        /* slots allocated */
    bool streams_waiting;      /* some slot is STREAM_WAITING */
    bool streams_held;         /* some stream with credit holds a chunk its client refused */
    uint32_t stream_rr;        /* round-robin start for chunk sending */
    wire_chunk_t chunk;        /* chunk being built, reused */
    wire_buf_t pubbuf;         /* record publication being built, reused */
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
};

static void store_trouble(server_t *s, int rc, bool write, const char *what, const char *errmsg);

static const char *const ratelimit_names[RL_COUNT] = {
    "bad frames", "too large",  "undecodable", "invalid",        "wrong topic",
    "gap",        "bad query",  "send",        "forged",         "refused",
    "summary",    "unadmitted", "stream busy", "stream stalled", "storage"};

/* ---------------------------------------------------------------- sockets */

/* Makes sock a CURVE server whose handshakes the ZAP handler decides, in
 * the domain of its role. 0, or -1 after logging. */
static int make_curve_server(server_t *s, void *sock, int type, const char *name)
{
    const char *domain = type == ZMQ_SUB    ? ZAP_DOMAIN_INGEST
                         : type == ZMQ_XPUB ? ZAP_DOMAIN_PUBLISH
                                            : ZAP_DOMAIN_QUERY;
    int on = 1;

    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof on) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->curve_secret, KEYS_Z85_LEN) < 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) < 0) {
        log_error("cannot make the %s socket a CURVE server: %s; exiting", name,
                  zmq_strerror(errno));
        return -1;
    }
    /* Fail closed should the handler ever be missing; the handler
     * thread is up before any server socket exists in any case. */
    if (zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &on, sizeof on) < 0)
        log_notice("this libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN (%s); relying on the ZAP "
                   "handler started before the %s socket",
                   zmq_strerror(errno), name);
    return 0;
}

/* Which of s->conns watches the socket of this type. */
static int conns_index(int type)
{
    return type == ZMQ_SUB ? 0 : type == ZMQ_XPUB ? 1 : 2;
}

static void *make_socket(server_t *s, int type, const char *name, const char *endpoint)
{
    void *sock = zmq_socket(s->zctx, type);
    int64_t maxmsg = WIRE_MAX_MSG;
    int linger = LINGER_MS;
    int handshake = (int)s->cfg.handshake_timeout_ms;
    int hwm;

    if (!sock) {
        log_error("cannot create the %s socket: %s; exiting", name, zmq_strerror(errno));
        return NULL;
    }
    if (type == ZMQ_XPUB)
        maxmsg = PUBLISH_MAXMSG;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    /* a connection that never finishes its handshake holds a descriptor */
    zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake);
    if (strchr(endpoint, '[')) {
        int on = 1;
        zmq_setsockopt(sock, ZMQ_IPV6, &on, sizeof on);
    }
    switch (type) {
    case ZMQ_SUB:
        hwm = s->cfg.ingest_hwm > 0 ? (int)s->cfg.ingest_hwm : INGEST_RCVHWM;
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
        /* Everything: the topic is checked against each update's kind. */
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
        break;
    case ZMQ_XPUB: {
        /* XPUB is PUB on the wire. VERBOSER hands us every subscription
         * and unsubscription, repeats included, so that each is checked
         * and counted (subscriptions.h) and a new "hb/" subscriber gets a
         * welcome heartbeat (see drain_subscriptions). */
        int on = 1, rcvhwm = PUBLISH_RCVHWM, rcvbuf = PUBLISH_RCVBUF;
        hwm = s->cfg.publish_hwm > 0 ? (int)s->cfg.publish_hwm : PUBLISH_SNDHWM;
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(sock, ZMQ_XPUB_VERBOSER, &on, sizeof on);
        zmq_setsockopt(sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
        zmq_setsockopt(sock, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
        break;
    }
    case ZMQ_ROUTER: {
        /* Mandatory: a full queue answers EAGAIN rather than dropping,
         * which is how a stream learns its client does not read. */
        int zero = 0, on = 1;
        hwm = (int)s->cfg.query_hwm;
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(sock, ZMQ_SNDTIMEO, &zero, sizeof zero);
        zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
        break;
    }
    default:
        break;
    }
    if (s->zap && make_curve_server(s, sock, type, name) < 0) {
        zmq_close(sock);
        return NULL;
    }
    /* watched before it listens: every connection is seen accepted */
    s->conns[conns_index(type)] = conns_new(s->zctx, sock, name, s->cfg.max_connections);
    if (zmq_bind(sock, endpoint) < 0) {
        log_error("cannot bind the %s socket to %s: %s; exiting", name, endpoint,
                  zmq_strerror(errno));
        conns_destroy(&s->conns[conns_index(type)]);
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* Receives one whole multipart message without blocking. Keeps the first
 * `max` parts in parts[] (initialised here; the caller closes *kept of
 * them) and discards the rest; *total counts every part. Returns 0,
 * -EAGAIN when nothing is waiting, or a negative errno. */
static int recv_parts(void *sock, zmq_msg_t *parts, int max, int *kept, int *total)
{
    int more = 1;
    size_t more_len = sizeof more;

    *kept = 0;
    *total = 0;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *m = *kept < max ? &parts[*kept] : &scratch;

        zmq_msg_init(m);
        /* Parts of a multipart message arrive together: after the first
         * part the rest are there, so ZMQ_DONTWAIT never splits one. */
        if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
            int err = errno;
            zmq_msg_close(m);
            if (*total == 0)
                return -err;
            break;
        }
        (*total)++;
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len) < 0)
            more = 0;
        if (m == &scratch)
            zmq_msg_close(m);
        else
            (*kept)++;
    }
    return 0;
}

static void close_parts(zmq_msg_t *parts, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

/* Sends [topic][payload] on the PUB socket. PUB drops rather than block. */
static void publish(server_t *s, const char *topic, const void *data, size_t len)
{
    if (zmq_send(s->publish, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(s->publish, data, len, ZMQ_DONTWAIT) < 0)
        log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                        "cannot publish on %s: %s; subscribers will see a gap", topic,
                        zmq_strerror(errno));
}

/* Sends [id][""][reply] (or [id][reply]) to a query client. 0 or -errno:
 * -EAGAIN when the client's queue is full (nothing was queued: ZeroMQ
 * checks the mark at the first frame and counts whole messages),
 * -EHOSTUNREACH when it has gone. */
static int send_reply(server_t *s, const peer_t *peer, const void *data, size_t len)
{
    if (zmq_send(s->query, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    if (peer->delimiter && zmq_send(s->query, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    if (zmq_send(s->query, data, len, ZMQ_DONTWAIT) < 0)
        return -errno;
    return 0;
}

/* Why send_reply failed, for a log line. */
static const char *send_failure(int rc)
{
    if (rc == -EAGAIN)
        return "the client's queue is full (query_hwm), it does not read";
    if (rc == -EHOSTUNREACH)
        return "the client has gone";
    return rc == -ENOMEM ? "out of memory" : zmq_strerror(-rc);
}

/* Packs a small QueryReply (everything but chunks) and sends it. */
static void reply(server_t *s, const peer_t *peer, uint64_t request_id, Parksync__V1__QueryReply *r)
{
    uint8_t buf[REPLY_MAX];
    size_t len;
    int rc;

    r->has_version = true;
    r->version = WIRE_VERSION;
    r->has_request_id = true;
    r->request_id = request_id;
    if (protobuf_c_message_get_packed_size(&r->base) > sizeof buf) {
        log_error("query reply too large to send (%zu bytes); dropping",
                  protobuf_c_message_get_packed_size(&r->base));
        return;
    }
    len = protobuf_c_message_pack(&r->base, buf);
    rc = send_reply(s, peer, buf, len);
    if (rc < 0)
        log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                        "cannot send a reply to request %" PRIu64 ": %s; dropping it", request_id,
                        send_failure(rc));
}

static void reply_error(server_t *s, const peer_t *peer, uint64_t request_id,
                        Parksync__V1__ErrorCode code, const char *message)
{
    Parksync__V1__QueryReply r = PARKSYNC__V1__QUERY_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = code;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_ERROR;
    r.error = &e;
    reply(s, peer, request_id, &r);
}

/* ---------------------------------------------------------------- publishing */

/* Next stream_sequence of a topic: 1, 2, 3, ... from daemon start. */
static uint64_t next_sequence(server_t *s, const char *topic)
{
    uint64_t *seq = strmap_upsert(&s->topic_seq, topic);

    if (!seq) {
        log_error("out of memory tracking topic %s; sending stream sequence 0", topic);
        return 0;
    }
    return ++*seq;
}

/* Next stream_sequence of an ack topic. Acks are not counted in
 * topic_seq, which no heartbeat lists them from and which would keep
 * one entry for every producer ever acknowledged: they live in two
 * generations instead, and a topic acknowledged in neither of the last
 * two ACK_IDLE_MS periods is forgotten (its sequence starts again at 1,
 * as after a restart; the ack's last_sequence is what a producer reads). */
static uint64_t next_ack_sequence(server_t *s, const char *topic)
{
    uint64_t *seq = strmap_find(&s->ack_seq[0], topic), *old;

    if (seq)
        return ++*seq;
    old = strmap_find(&s->ack_seq[1], topic);
    seq = strmap_upsert(&s->ack_seq[0], topic);
    if (!seq) {
        log_error("out of memory tracking topic %s; sending stream sequence 0", topic);
        return 0;
    }
    *seq = old ? *old : 0;
    return ++*seq;
}

/* Once per ACK_IDLE_MS: the older generation of ack topics goes. */
static void age_ack_topics(server_t *s, int64_t now)
{
    if (now < s->next_ack_age_ms)
        return;
    strmap_free(&s->ack_seq[1]);
    s->ack_seq[1] = s->ack_seq[0];
    s->ack_seq[0] = (strmap_t){0};
    s->next_ack_age_ms = now + ACK_IDLE_MS;
}

/* A trade flow concerns two countries: it goes out on the exporter's
 * topic and, with the same revision, on the importer's, so that a
 * country's subscriber needs nothing but prefix filtering. */
static void publish_importer_copy(server_t *s, uint64_t revision, const char *exporter,
                                  const uint8_t *record, size_t len)
{
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, record);
    char topic[WIRE_MAX_TOPIC];

    if (!r || r->body_case != PARKSYNC__V1__RECORD__BODY_TRADE || !r->trade->importer) {
        log_error("revision %" PRIu64 " is a trade flow without an importer; published on "
                  "the exporter's topic only",
                  revision);
    } else if (exporter && strcmp(exporter, r->trade->importer) == 0) {
        /* one country: the one topic has it */
    } else if (wire_topic_record(topic, sizeof topic, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE,
                                 r->trade->importer) < 0 ||
               wire_publication_record(&s->pubbuf, next_sequence(s, topic), record, len) < 0) {
        log_error("cannot publish revision %" PRIu64 " on the importer's topic; its "
                  "subscribers will see a gap",
                  revision);
    } else {
        publish(s, topic, s->pubbuf.data, s->pubbuf.len);
        s->n.published++;
    }
    if (r)
        parksync__v1__record__free_unpacked(r, NULL);
}

static int on_change(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                     const char *country, const uint8_t *record, size_t len)
{
    server_t *s = arg;
    char topic[WIRE_MAX_TOPIC];

    if (wire_topic_record(topic, sizeof topic, kind, country) < 0) {
        log_error("revision %" PRIu64 " has no valid topic (kind %d, country %s); "
                  "not publishing it",
                  revision, (int)kind, country ? country : "-");
    } else if (wire_publication_record(&s->pubbuf, next_sequence(s, topic), record, len) < 0) {
        log_error("out of memory publishing revision %" PRIu64 "; subscribers will see "
                  "a gap",
                  revision);
    } else {
        publish(s, topic, s->pubbuf.data, s->pubbuf.len);
        s->n.published++;
        if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
            publish_importer_copy(s, revision, country, record, len);
    }
    s->published_rev = revision;
    return 0;
}

/* Revisions that can no longer be published must not pass silently:
 * every record topic skips one stream sequence, so each subscriber sees a
 * loss at its next record or heartbeat and recovers from the change log
 * (TOO_OLD when it no longer reaches back). */
static void announce_loss(server_t *s)
{
    size_t rec = strlen(WIRE_TOPIC_RECORDS);

    for (size_t i = 0; i < s->topic_seq.cap; i++)
        if (strncmp(s->topic_seq.slots[i].key, WIRE_TOPIC_RECORDS, rec) == 0)
            s->topic_seq.slots[i].value++;
}

/* Publishes every committed change not yet published. */
static void publish_changes(server_t *s)
{
    int rc = store_changes(s->store, s->published_rev, on_change, s);

    if (rc == -ERANGE) {
        log_warning("changes after revision %" PRIu64 " left the change log before they "
                    "were published; skipping to revision %" PRIu64 " and announcing a "
                    "loss on every topic",
                    s->published_rev, store_head(s->store));
        s->published_rev = store_head(s->store);
        announce_loss(s);
    } else if (rc < 0) {
        char what[96];
        snprintf(what, sizeof what,
                 "cannot read the change log after revision %" PRIu64 " to publish it",
                 s->published_rev);
        store_trouble(s, rc, false, what, store_errmsg(s->store));
    }
    /* what is not published yet stays in the change log */
    store_pin_changes(s->store, s->published_rev);
}

static void publish_small(server_t *s, const char *topic, uint64_t sequence,
                          Parksync__V1__Publication *p)
{
    uint8_t buf[REPLY_MAX];
    size_t len;

    p->has_version = true;
    p->version = WIRE_VERSION;
    p->has_stream_sequence = true;
    p->stream_sequence = sequence;
    if (protobuf_c_message_get_packed_size(&p->base) > sizeof buf)
        return; /* cannot happen: ids are at most WIRE_MAX_ID bytes */
    len = protobuf_c_message_pack(&p->base, buf);
    publish(s, topic, buf, len);
}

static void publish_ack(server_t *s, const char *producer_id)
{
    Parksync__V1__Publication p = PARKSYNC__V1__PUBLICATION__INIT;
    Parksync__V1__Ack ack = PARKSYNC__V1__ACK__INIT;
    char topic[WIRE_MAX_TOPIC];

    if (wire_topic_ack(topic, sizeof topic, producer_id) < 0)
        return;
    ack.producer_id = (char *)producer_id;
    ack.has_last_sequence = true;
    ack.last_sequence = store_producer_last(s->store, producer_id);
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_ACK;
    p.ack = &ack;
    publish_small(s, topic, next_ack_sequence(s, topic), &p);
    s->n.acks++;
}

/* The heartbeat carries the epoch, the head, this start's instance id and
 * the last stream sequence of every record topic, so a subscriber can
 * tell a lost record even on a topic that has gone quiet. */
/* The checkpoint thread's failures, as a condition of the health. */
static void health_of_checkpoints(server_t *s)
{
    int err = 0;

    if (checkpoint_failing(s->checkpoint, &err) == 0)
        health_clear(&s->health, HEALTH_CHECKPOINT);
    else if (s->health.cond[HEALTH_CHECKPOINT].since_us == 0)
        health_raise(&s->health, HEALTH_CHECKPOINT, "%s; the WAL grows until one works",
                     store_strerror(-err));
}

static void publish_heartbeat(server_t *s)
{
    Parksync__V1__Publication p = PARKSYNC__V1__PUBLICATION__INIT;
    Parksync__V1__Heartbeat hb = PARKSYNC__V1__HEARTBEAT__INIT;
    Parksync__V1__Health health;
    char reason[HEALTH_REASON * HEALTH_CONDITIONS];
    Parksync__V1__TopicSequence *ts = NULL, **tsp = NULL;
    size_t n = 0, len;
    uint8_t *buf;

    /* The heartbeat's own sequence first: taking it may insert "hb/" and
     * move the table, and the topic list below points into that table. */
    p.has_stream_sequence = true;
    p.stream_sequence = next_sequence(s, WIRE_TOPIC_HEARTBEAT);
    if (s->topic_seq.count > 0) {
        ts = calloc(s->topic_seq.count, sizeof *ts);
        tsp = calloc(s->topic_seq.count, sizeof *tsp);
    }
    for (size_t i = 0; ts && tsp && i < s->topic_seq.cap && n < WIRE_MAX_HB_TOPICS; i++) {
        const strmap_entry_t *e = &s->topic_seq.slots[i];
        if (strncmp(e->key, WIRE_TOPIC_RECORDS, strlen(WIRE_TOPIC_RECORDS)) != 0)
            continue; /* acks and heartbeats: nobody checks their sequence */
        parksync__v1__topic_sequence__init(&ts[n]);
        ts[n].topic = (char *)e->key;
        ts[n].has_sequence = true;
        ts[n].sequence = e->value;
        tsp[n] = &ts[n];
        n++;
    }
    hb.n_topics = n;
    hb.topics = tsp;
    hb.has_instance = true;
    hb.instance.data = s->instance;
    hb.instance.len = WIRE_INSTANCE_BYTES;
    hb.has_epoch = true;
    hb.epoch.data = (uint8_t *)store_epoch(s->store);
    hb.epoch.len = WIRE_EPOCH_BYTES;
    /* What was published, not what was committed: a subscriber whose
     * topics are all complete at this heartbeat has every revision up to
     * head_revision (proto/README.md, Subscribers, rule 3). */
    hb.has_head_revision = true;
    hb.head_revision = s->published_rev;
    hb.has_time_us = true;
    hb.time_us = wire_now_us();
    if (health_degraded(&s->health)) { /* producers waiting for acks learn why */
        health_to_proto(&s->health, &health, reason, sizeof reason);
        hb.health = &health;
    }
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT;
    p.heartbeat = &hb;
    p.has_version = true;
    p.version = WIRE_VERSION;
    len = protobuf_c_message_get_packed_size(&p.base);
    if (len <= WIRE_MAX_MSG && (buf = malloc(len)) != NULL) {
        protobuf_c_message_pack(&p.base, buf);
        publish(s, WIRE_TOPIC_HEARTBEAT, buf, len);
        free(buf);
        s->n.heartbeats++;
    } else {
        log_error("cannot build a heartbeat of %zu bytes; skipping it", len);
    }
    free(ts);
    free(tsp);
}

static int on_summary(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                      const char *country, const uint8_t *record, size_t len);

/* Publishes every live country summary again, marked as a repeat (same
 * revision): a dashboard that only listens gets the whole picture within
 * summary_republish_s, and subscribers that track revisions drop it. */
static void republish_summaries(server_t *s)
{
    store_filter_t f = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY};
    store_cursor_t *c;
    const uint8_t *rec;
    size_t len;
    int err = 0, rc;

    c = store_snapshot_open(s->store, &f, &err);
    if (!c) {
        log_warning("cannot read the summaries to publish them again: %s (%s); retrying at the "
                    "next interval",
                    strerror(err < 0 ? -err : EIO), store_errmsg(s->store));
        return;
    }
    while ((rc = store_cursor_next(c, &rec, &len)) == 1)
        on_summary(s, 0, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY, NULL, rec, len);
    if (rc < 0)
        log_warning("reading the summaries failed: %s (%s)", strerror(-rc), store_cursor_errmsg(c));
    store_cursor_close(&c);
}

static int on_summary(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                      const char *country, const uint8_t *record, size_t len)
{
    server_t *s = arg;
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, record);
    char topic[WIRE_MAX_TOPIC];

    (void)revision;
    (void)country;
    if (r && r->body_case == PARKSYNC__V1__RECORD__BODY_SUMMARY &&
        wire_topic_record(topic, sizeof topic, kind, r->summary->country) >= 0 &&
        wire_publication_repeat(&s->pubbuf, next_sequence(s, topic), record, len) == 0) {
        publish(s, topic, s->pubbuf.data, s->pubbuf.len);
        s->n.published++;
    }
    if (r)
        parksync__v1__record__free_unpacked(r, NULL);
    return 0;
}

/* Applies (or refuses) the subscriptions waiting on the publish XPUB. A
 * subscription that covers "hb/" asks for a welcome heartbeat: ZeroMQ
 * hands over one peer's subscriptions in order, so a client that
 * subscribes to "hb/" last knows, when a heartbeat arrives after it, that
 * all its earlier subscriptions are active (no slow joiner). Any
 * heartbeat sent once the drain has caught up will do, so welcomes are
 * coalesced: at most one per WELCOME_MIN_MS however many subscriptions
 * ask (each is a broadcast of every record topic's sequence). A SUB that
 * subscribed before connecting sends its subscriptions in byte order,
 * "hb/" before "rec/...", all at once: waiting until nothing is left
 * waiting covers those too. */
static void drain_subscriptions(server_t *s)
{
    const subscriptions_stats_t *st;
    bool welcome = false;

    s->subs_backlog = subscriptions_drain(s->subs, SUBSCRIPTION_BUDGET, &welcome) == 0;
    s->welcome_wanted |= welcome;
    st = subscriptions_stats(s->subs);
    s->n.subscriptions_refused = st->refused;
    s->n.subscribers_dropped = st->cut;
}

static bool welcome_due(const server_t *s, int64_t now)
{
    return s->welcome_wanted && !s->subs_backlog && now >= s->last_heartbeat_ms + WELCOME_MIN_MS;
}

/* ---------------------------------------------------------------- the batch */

/*
 * A store call failed; what says what the daemon was doing, and errmsg
 * is SQLite's message. Logged (rate-limited: under a full disk every
 * resend fails again), and the health says so: a malformed database until
 * a check passes, a failure to write (write) until a batch commits.
 */
static void store_trouble(server_t *s, int rc, bool write, const char *what, const char *errmsg)
{
    if (rc == -EUCLEAN)
        health_raise(&s->health, HEALTH_MALFORMED, "%s: %s", what, errmsg);
    else if (write)
        health_raise(&s->health, HEALTH_COMMIT, "%s: %s", what, errmsg[0] ? errmsg : strerror(-rc));
    log_ratelimited(&s->rl[RL_STORAGE], LOG_LEVEL_ERROR, "%s: %s (%s)%s", what, store_strerror(rc),
                    errmsg,
                    write ? "; the batch is rolled back and nothing of it acknowledged: producers "
                            "resend"
                          : "");
}

static int batch_begin(server_t *s)
{
    int rc;

    if (s->batch_open)
        return 0;
    rc = store_begin(s->store);
    if (rc < 0) {
        store_trouble(s, rc, true, "cannot start a transaction", store_errmsg(s->store));
        return rc;
    }
    s->batch_open = true;
    return 0;
}

/* Abandons the batch after a storage failure: nothing of it is kept,
 * counted or acked, so the producers resend. */
static void batch_abort(server_t *s, int rc, const char *what)
{
    store_trouble(s, rc, true, what, store_errmsg(s->store));
    store_rollback(s->store);
    s->batch_open = false;
    strmap_clear(&s->touched);
    memset(&s->pend, 0, sizeof s->pend);
    s->n.store_errors++;
}

/* Commits the open batch (group commit: one transaction per pass), then
 * publishes what it changed and acks every producer it touched. */
static void batch_finish(server_t *s)
{
    int rc;

    if (!s->batch_open)
        return;
    s->batch_open = false;
    rc = store_commit(s->store);
    if (rc < 0) {
        s->batch_open = true;
        batch_abort(s, rc, "commit failed");
        return;
    }
    s->n.commits++;
    s->n.applied += s->pend.applied;
    s->n.duplicates += s->pend.duplicates;
    s->n.gaps += s->pend.gaps;
    s->n.refused += s->pend.refused;
    memset(&s->pend, 0, sizeof s->pend);
    if (s->touched.count > 0) { /* a batch that moved producers: ingest works */
        s->health.last_commit_us = wire_now_us();
        health_clear(&s->health, HEALTH_COMMIT);
    }
    publish_changes(s);
    for (size_t i = 0; i < s->touched.cap; i++)
        if (s->touched.slots[i].key[0] != '\0')
            publish_ack(s, s->touched.slots[i].key);
    strmap_clear(&s->touched);
    /* A batch larger than the change log was kept whole until published;
     * now it is, trim the log at once rather than at the next commit.
     * The empty batch changes nothing, so it publishes nothing and this
     * runs once. */
    if (store_prune_held(s->store) && batch_begin(s) == 0)
        batch_finish(s);
}

/* One step of retention in an empty batch, when commits left conflict
 * rows beyond the limits (store_prune_due). True when it committed and
 * more remain: the loop then goes on without sleeping, a step a pass,
 * between the passes that ingest and answer. */
static bool prune_step(server_t *s)
{
    uint64_t errors = s->n.store_errors;

    if (s->batch_open || !store_prune_due(s->store) || batch_begin(s) < 0)
        return false;
    batch_finish(s);
    return s->n.store_errors == errors && store_prune_due(s->store);
}

static bool summaries_due(server_t *s, int64_t now)
{
    return store_summaries_dirty(s->store) &&
           now - s->last_refresh_ms >= (int64_t)s->cfg.summary_interval_ms;
}

/* Refreshes the summaries of the countries that changed, in the open
 * batch. A country whose summary fails keeps its old one and the others
 * go on (the store refreshes each apart): counted and logged, never a
 * rollback of the updates in hand. Only a storage failure of the batch
 * itself rolls it back. */
static void refresh_summaries(server_t *s, int64_t now)
{
    uint64_t failed = store_summary_failures(s->store);
    int rc;

    if (batch_begin(s) < 0)
        return;
    s->last_refresh_ms = now;
    rc = store_refresh_summaries(s->store);
    if (store_summary_failures(s->store) != failed) {
        uint64_t n = store_summary_failures(s->store) - failed;
        s->n.summary_failures += n;
        log_ratelimited(&s->rl[RL_SUMMARY], LOG_LEVEL_WARNING,
                        "%" PRIu64 " country summar%s kept as %s, refreshed again when the "
                        "country next changes; the last: %s",
                        n, n == 1 ? "y" : "ies", n == 1 ? "it was" : "they were",
                        store_summary_error(s->store));
    }
    if (rc < 0)
        batch_abort(s, rc, "cannot refresh the country summaries");
}

/* ---------------------------------------------------------------- ingest */

/* With CURVE on: the ministry this update comes from, by the User-Id the
 * ZAP handler gave its connection (never by a field of the message). The
 * update's producer id must be one of that ministry's producers; if not
 * it is refused without touching that producer's sequence (else one
 * ministry could skip or stall another's updates), counted, logged and
 * recorded as a conflict. Returns the ministry's name, or NULL when the
 * update must be dropped. */
static const char *authenticated_ministry(server_t *s, zmq_msg_t *payload,
                                          const Parksync__V1__Update *u)
{
    const char *user = zmq_msg_gets(payload, "User-Id");
    const size_t plen = strlen(ZAP_USER_MINISTRY);
    const config_ministry_t *m = NULL;
    char reason[200];
    int rc;

    if (user && strncmp(user, ZAP_USER_MINISTRY, plen) == 0)
        for (size_t i = 0; i < s->cfg.n_ministries && !m; i++)
            if (strcmp(s->cfg.ministries[i].name, user + plen) == 0)
                m = &s->cfg.ministries[i];
    if (!m) {
        /* the ZAP handler admits ministries only on ingest: a ministry
         * removed by a reload whose connection is still open */
        s->n.forged++;
        log_ratelimited(&s->rl[RL_FORGED], LOG_LEVEL_WARNING,
                        "update %s#%" PRIu64 " comes from '%s', which is no configured "
                        "ministry; dropping",
                        u->producer_id, u->sequence, user ? user : "?");
        return NULL;
    }
    for (size_t i = 0; i < m->n_producers; i++)
        if (strcmp(m->producers[i], u->producer_id) == 0)
            return m->name;
    s->n.forged++;
    log_ratelimited(&s->rl[RL_FORGED], LOG_LEVEL_WARNING,
                    "ministry %s sent update %s#%" PRIu64 " as producer %s, which is not one "
                    "of its producers; refused, sequence untouched, recorded as a conflict",
                    m->name, u->producer_id, u->sequence, u->producer_id);
    snprintf(reason, sizeof reason, "not authoritative: %s does not speak for producer %s", m->name,
             u->producer_id);
    if (batch_begin(s) == 0 && (rc = store_note_conflict(s->store, u, reason)) < 0)
        batch_abort(s, rc, "cannot record a conflict");
    return NULL;
}

/* One encoded update, from its own message (topic: the message's topic
 * frame, which must name the update's kind) or from an UpdateBatch (topic
 * NULL). payload is the message's frame, which tells who sent it. */
static void handle_update(server_t *s, const char *topic, size_t tlen, const void *data, size_t len,
                          zmq_msg_t *payload)
{
    Parksync__V1__Update *u = NULL;
    const char *why = NULL, *ministry = NULL;
    char expect[WIRE_MAX_TOPIC], shown[WIRE_MAX_TOPIC], reason[WIRE_MAX_TOPIC * 2 + 128] = "";
    store_outcome_t outcome;
    int rc;

    rc = wire_update_decode(data, len, &u, &why);
    if (rc == -EMSGSIZE) {
        s->n.too_large++;
        log_ratelimited(&s->rl[RL_TOO_LARGE], LOG_LEVEL_WARNING,
                        "update of %zu bytes is over the %d-byte limit, dropping", len,
                        WIRE_MAX_UPDATE);
        return;
    }
    if (rc < 0 && !u) {
        if (rc == -EINVAL) {
            s->n.invalid++;
            log_ratelimited(&s->rl[RL_INVALID], LOG_LEVEL_WARNING,
                            "invalid update (%zu bytes): %s; its envelope is unusable, "
                            "dropping",
                            len, why ? why : "?");
        } else {
            s->n.undecodable++;
            log_ratelimited(&s->rl[RL_UNDECODABLE], LOG_LEVEL_WARNING,
                            "failed to decode an update (%zu bytes): %s, dropping", len,
                            why ? why : strerror(-rc));
        }
        return;
    }
    if (s->zap && !(ministry = authenticated_ministry(s, payload, u)))
        goto out;
    if (rc < 0) {
        /* Sound envelope, bad body: consume the sequence so the producer
         * is acked and moves on, and record why. */
        s->n.invalid++;
        snprintf(reason, sizeof reason, "invalid: %s", why ? why : "?");
        log_ratelimited(&s->rl[RL_INVALID], LOG_LEVEL_WARNING,
                        "%s#%" PRIu64 " %s; recording it as rejected", u->producer_id, u->sequence,
                        reason);
    } else if (topic != NULL) {
        int n = wire_topic_ingest(expect, sizeof expect, wire_update_kind(u));

        if (n < 0 || tlen != (size_t)n || memcmp(topic, expect, tlen) != 0) {
            s->n.wrong_topic++;
            snprintf(reason, sizeof reason,
                     "invalid: topic: '%s' for an update that belongs on '%s'",
                     log_printable(shown, sizeof shown, topic, tlen), n < 0 ? "?" : expect);
            log_ratelimited(&s->rl[RL_WRONG_TOPIC], LOG_LEVEL_WARNING,
                            "update %s#%" PRIu64 ": %s; recording it as rejected", u->producer_id,
                            u->sequence, reason);
        }
    }
    if (batch_begin(s) < 0)
        goto out; /* not applied, not acked: the producer resends */
    if (reason[0])
        rc = store_reject(s->store, u, reason, &outcome);
    else if (ministry)
        rc = store_apply_as(s->store, ministry, u, &outcome);
    else
        rc = store_apply(s->store, u, &outcome);
    if (rc < 0) {
        batch_abort(s, rc, "cannot apply an update");
        goto out;
    }
    if (outcome == STORE_APPLIED || outcome == STORE_REJECTED)
        ahead_clear(&s->ahead, u->producer_id); /* its sequence moved */
    switch (outcome) {
    case STORE_APPLIED:
        s->pend.applied++;
        break;
    case STORE_DUPLICATE:
        s->pend.duplicates++;
        break;
    case STORE_GAP:
        s->pend.gaps++;
        log_ratelimited(&s->rl[RL_GAP], LOG_LEVEL_INFO,
                        "update %s#%" PRIu64 " is beyond the next expected sequence; not "
                        "applied, acking the last applied one",
                        u->producer_id, u->sequence);
        ahead_gap(&s->ahead, u->producer_id, store_producer_last(s->store, u->producer_id),
                  u->sequence, wire_monotonic_ms());
        break;
    case STORE_UNADMITTED:
        s->n.unadmitted++;
        log_ratelimited(&s->rl[RL_UNADMITTED], LOG_LEVEL_WARNING,
                        "update %s#%" PRIu64 " comes from a producer %s; not applied, nothing "
                        "kept, not acknowledged",
                        u->producer_id, u->sequence,
                        store_authority_on(s->store)
                            ? "no [ministry] lists (add it to producers = and reload)"
                            : "beyond [limits] max_producers (authority is off)");
        goto out; /* no ack: it would cost an ack topic, and nothing moved */
    case STORE_REJECTED:
        s->pend.refused++;
        if (!reason[0]) /* store_reject's reasons were logged above */
            log_ratelimited(&s->rl[RL_REFUSED], LOG_LEVEL_WARNING,
                            "update %s#%" PRIu64 "%s%s refused by the store (authority, unknown "
                            "producer or event time); kept and listed by `parksync conflicts`",
                            u->producer_id, u->sequence, ministry ? " from ministry " : "",
                            ministry ? ministry : "");
        break;
    }
    /* Duplicates and gaps are acked too: that is how a producer learns
     * where to resume. */
    if (!strmap_upsert(&s->touched, u->producer_id))
        log_error("out of memory noting producer %s; its ack waits for its next update",
                  u->producer_id);
out:
    parksync__v1__update__free_unpacked(u, NULL);
}

/* An UpdateBatch: every update in it, in order, as if each had come in
 * its own message. Broken framing or too many updates drop the whole
 * message before any of it is applied. Returns the updates handled. */
static unsigned handle_batch(server_t *s, zmq_msg_t *payload)
{
    const void *data = zmq_msg_data(payload), *update;
    size_t len = zmq_msg_size(payload), at = 0, ulen;
    unsigned count = 0;
    int rc;

    if (len > WIRE_MAX_BATCH_BYTES) {
        s->n.too_large++;
        log_ratelimited(&s->rl[RL_TOO_LARGE], LOG_LEVEL_WARNING,
                        "update batch of %zu bytes is over the %d-byte limit, dropping", len,
                        WIRE_MAX_BATCH_BYTES);
        return 0;
    }
    while ((rc = wire_batch_next(data, len, &at, &update, &ulen)) == 1) {
        if (count == WIRE_MAX_BATCH) {
            s->n.too_large++;
            log_ratelimited(&s->rl[RL_TOO_LARGE], LOG_LEVEL_WARNING,
                            "update batch holds more than %d updates, dropping all of it",
                            WIRE_MAX_BATCH);
            return 0;
        }
        s->batch[count].data = update;
        s->batch[count++].len = ulen;
    }
    if (rc < 0) {
        s->n.undecodable++;
        log_ratelimited(&s->rl[RL_UNDECODABLE], LOG_LEVEL_WARNING,
                        "update batch of %zu bytes is not a valid UpdateBatch encoding at byte "
                        "%zu, dropping all of it",
                        len, at);
        return 0;
    }
    for (unsigned i = 0; i < count; i++)
        handle_update(s, NULL, 0, s->batch[i].data, s->batch[i].len, payload);
    return count;
}

/* Reads ingest messages into the batch until about batch_max updates
 * (a message of an UpdateBatch counts its updates). */
static void drain_ingest(server_t *s)
{
    for (uint32_t n = 0; n < s->cfg.batch_max;) {
        zmq_msg_t parts[2];
        int kept, total, rc;

        rc = recv_parts(s->ingest, parts, 2, &kept, &total);
        if (rc == -EAGAIN || rc == -EINTR)
            return;
        if (rc < 0) {
            log_error("cannot receive on the ingest socket: %s", zmq_strerror(-rc));
            return;
        }
        s->n.received++;
        if (total != 2) {
            s->n.bad_frames++;
            log_ratelimited(&s->rl[RL_BAD_FRAMES], LOG_LEVEL_WARNING,
                            "ingest message has %d frames instead of [topic][update], "
                            "dropping",
                            total);
        } else {
            const char *topic = zmq_msg_data(&parts[0]);
            size_t tlen = zmq_msg_size(&parts[0]);

            /* A trailing NUL on the topic frame is tolerated. */
            if (tlen > 0 && topic[tlen - 1] == '\0')
                tlen--;
            if (tlen == strlen(WIRE_TOPIC_BATCH) && memcmp(topic, WIRE_TOPIC_BATCH, tlen) == 0)
                n += handle_batch(s, &parts[1]);
            else
                handle_update(s, topic, tlen, zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]),
                              &parts[1]);
        }
        n++;
        close_parts(parts, kept);
    }
}

/* ---------------------------------------------------------------- streams */

static void stream_close(stream_t *st)
{
    store_cursor_close(&st->cursor);
    wire_buf_free(&st->ahead);
    wire_buf_free(&st->held);
    memset(st, 0, sizeof *st);
}

/* A query connection ended: its streams go at once, so a client that
 * asks and hangs up holds no stream slot until stream_idle_ms. */
static void on_query_closed(void *arg, int fd, uint32_t conn)
{
    server_t *s = arg;

    for (uint32_t i = 0; conn != 0 && i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        if (st->state != STREAM_FREE && st->peer.fd == fd && st->peer.conn == conn) {
            stream_close(st);
            s->n.streams_dropped++;
        }
    }
}

static stream_t *stream_find(server_t *s, const peer_t *peer, uint64_t request_id)
{
    for (uint32_t i = 0; i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        if (st->state != STREAM_FREE && st->request_id == request_id && st->peer.len == peer->len &&
            memcmp(st->peer.id, peer->id, peer->len) == 0)
            return st;
    }
    return NULL;
}

static void stream_fail(server_t *s, stream_t *st, Parksync__V1__ErrorCode code,
                        const char *message)
{
    reply_error(s, &st->peer, st->request_id, code, message);
    s->n.streams_dropped++;
    stream_close(st);
}

/* Opens the cursors of waiting streams; called right after a commit so a
 * snapshot covers everything published so far. */
static void open_waiting_streams(server_t *s, int64_t now)
{
    s->streams_waiting = false;
    for (uint32_t i = 0; i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        char msg[200];
        int err = 0;

        if (st->state != STREAM_WAITING)
            continue;
        if (st->changes)
            st->cursor = store_changes_open(s->store, st->since, &st->filter, &err);
        else if (st->history)
            st->cursor = store_snapshot_at_open(s->store, &st->filter, st->since, &err);
        else
            st->cursor = store_snapshot_open(s->store, &st->filter, &err);
        if (!st->cursor && err == -EINVAL && st->changes) {
            /* a revision of another history (a restored backup, a
             * recreated database): nothing here continues it */
            snprintf(msg, sizeof msg,
                     "revision %" PRIu64 " is beyond this database's head (%" PRIu64
                     "): it belongs to another history; take a snapshot",
                     st->since, store_head(s->store));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD, msg);
            continue;
        }
        if (!st->cursor && err == -EINVAL && st->history) {
            snprintf(msg, sizeof msg, "revision %" PRIu64 " is beyond the head (%" PRIu64 ")",
                     st->since, store_head(s->store));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, msg);
            continue;
        }
        if (!st->cursor && err == -ERANGE) {
            snprintf(msg, sizeof msg,
                     "revision %" PRIu64 " is older than the change log "
                     "keeps (oldest %" PRIu64 "); take a snapshot",
                     st->since, store_oldest(s->store));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD, msg);
            continue;
        }
        if (!st->cursor) {
            err = err < 0 ? err : -EIO;
            store_trouble(s, err, false,
                          st->changes ? "cannot open a changes cursor"
                                      : "cannot open a snapshot cursor",
                          store_errmsg(s->store));
            snprintf(msg, sizeof msg, "cannot read the store: %s; see the daemon's log",
                     store_strerror(err));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, msg);
            continue;
        }
        st->revision = store_cursor_revision(st->cursor);
        st->state = STREAM_RUNNING;
        st->active_ms = now;
        s->n.streams_opened++;
        log_debug("%s stream %" PRIu64 " opened at revision %" PRIu64,
                  st->changes ? "changes" : "snapshot", st->request_id, st->revision);
    }
}

/* Steps the cursor, keeping the record read in st->ahead. 1 read, 0 end,
 * -EAGAIN when the cursor has done its share of work for this turn, or a
 * negative errno. */
static int stream_read_ahead(stream_t *st)
{
    const uint8_t *rec;
    size_t len;
    int rc = store_cursor_next(st->cursor, &rec, &len);

    if (rc <= 0) {
        if (rc == 0)
            st->at_end = true;
        return rc;
    }
    wire_buf_reset(&st->ahead);
    if (st->ahead.cap < len) {
        uint8_t *p = realloc(st->ahead.data, len);
        if (!p)
            return -ENOMEM;
        st->ahead.data = p;
        st->ahead.cap = len;
    }
    memcpy(st->ahead.data, rec, len);
    st->ahead.len = len;
    st->has_ahead = true;
    return 1;
}

/* Ends a stream whose chunk could not be built or queued: counted and
 * logged; its client, if still there, times out and asks again. */
static void stream_abort(server_t *s, stream_t *st, int rc)
{
    log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                    "cannot send a chunk of stream %" PRIu64 ": %s; ending the stream",
                    st->request_id, send_failure(rc));
    s->n.streams_dropped++;
    stream_close(st);
}

/* Hands a finished chunk (in buf) to ZeroMQ for the stream's client.
 * When the client's queue is full the chunk stays with the stream, in
 * st->held (buffers are swapped, not copied), and goes first at its next
 * turn: nothing is lost or sent twice, and credit is spent only on what
 * was queued. Returns true when the chunk is held; false when it was
 * queued or the stream has ended (complete, or its client is gone). */
static bool stream_deliver(server_t *s, stream_t *st, wire_buf_t *buf, bool last, int64_t now)
{
    int rc = send_reply(s, &st->peer, buf->data, buf->len);

    if (rc == -EAGAIN) {
        if (buf != &st->held) {
            wire_buf_t spare = st->held;
            st->held = *buf;
            *buf = spare;
        }
        st->held_last = last;
        return true;
    }
    if (rc < 0) {
        stream_abort(s, st, rc);
        return false;
    }
    wire_buf_reset(&st->held);
    s->n.chunks++;
    st->credit--;
    st->active_ms = now;
    if (last) {
        log_debug("stream %" PRIu64 " complete at revision %" PRIu64, st->request_id, st->revision);
        stream_close(st);
    }
    return false;
}

/* Builds and sends the stream's next chunk, or offers the held one
 * again. Returns true when the stream's turn is over until the loop has
 * gone round: its client's queue is full, or the cursor yielded (a
 * history snapshot spent its share of work; the chunk holds what was read
 * by then, or is not sent when empty). */
static bool stream_send_chunk(server_t *s, stream_t *st, int64_t now)
{
    wire_chunk_t *c = &s->chunk;
    const uint8_t *msg;
    size_t len;
    bool last, yielded = false;
    int rc = 0;

    if (st->held.len > 0)
        return stream_deliver(s, st, &st->held, st->held_last, now);
    wire_chunk_reset(c);
    if (!st->has_ahead && !st->at_end)
        rc = stream_read_ahead(st);
    while (rc >= 0 && st->has_ahead && c->count < st->chunk_records) {
        if (c->count > 0 && c->records.len + st->ahead.len + 16 > CHUNK_MAX_BYTES)
            break; /* the read-ahead record opens the next chunk */
        rc = wire_chunk_add(c, st->ahead.data, st->ahead.len);
        if (rc < 0)
            break;
        st->has_ahead = false;
        rc = stream_read_ahead(st);
    }
    if (rc == -EAGAIN) {
        /* ingest and the other streams go first; the cursor goes on later */
        yielded = true;
        rc = 0;
        if (c->count == 0) {
            st->active_ms = now; /* working through the change log is progress */
            return yielded;
        }
    }
    if (rc < 0) {
        char what[64], why[128];
        snprintf(what, sizeof what, "stream %" PRIu64 " failed, ending it", st->request_id);
        store_trouble(s, rc, false, what, store_cursor_errmsg(st->cursor));
        snprintf(why, sizeof why, "reading the store failed: %s; see the daemon's log",
                 store_strerror(rc));
        stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, why);
        return false;
    }
    last = st->at_end && !st->has_ahead;
    rc =
        wire_chunk_finish(c, st->request_id, last, st->revision, store_epoch(s->store), &msg, &len);
    if (rc < 0) {
        stream_abort(s, st, rc);
        return false;
    }
    return stream_deliver(s, st, &c->out, last, now) || yielded;
}

/* Drops a stream that has delivered nothing for stream_idle_ms, which
 * also ends its read transaction (it pins the WAL). The client hears
 * nothing; a credit it sends later gets UNKNOWN_REQUEST. */
static void stream_stalled(server_t *s, stream_t *st)
{
    log_ratelimited(&s->rl[RL_STREAM_STALLED], LOG_LEVEL_WARNING,
                    "stream %" PRIu64 " delivered nothing for %" PRIu32 " ms (stream_idle_ms): %s; "
                    "dropping it",
                    st->request_id, s->cfg.stream_idle_ms,
                    st->held.len > 0 ? "its client does not read" : "its client grants no credit");
    s->n.streams_stalled++;
    s->n.streams_dropped++;
    stream_close(st);
}

/* Sends chunks to streams with credit, round-robin, at most
 * STREAM_CHUNK_BUDGET per pass so ingest is never starved, and drops the
 * stalled ones. Returns true when some stream could take more right
 * away; s->streams_held says whether one waits for its client to read. */
static bool pump_streams(server_t *s, int64_t now)
{
    uint32_t budget = STREAM_CHUNK_BUDGET;
    bool more = false;

    for (uint32_t k = 0; k < s->n_streams && budget > 0; k++) {
        stream_t *st = &s->streams[(s->stream_rr + k) % s->n_streams];
        for (int j = 0; j < STREAM_CHUNKS_EACH && budget > 0; j++) {
            if (st->state != STREAM_RUNNING || st->credit == 0)
                break;
            budget--;
            if (stream_send_chunk(s, st, now))
                break;
        }
    }
    s->stream_rr = s->n_streams ? (s->stream_rr + 1) % s->n_streams : 0;
    s->streams_held = false;
    for (uint32_t i = 0; i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        if (st->state != STREAM_RUNNING)
            continue;
        if (now - st->active_ms > (int64_t)s->cfg.stream_idle_ms) {
            stream_stalled(s, st);
            continue;
        }
        if (st->credit > 0 && st->held.len > 0)
            s->streams_held = true;
        else if (st->credit > 0)
            more = true;
    }
    return more;
}

/* ---------------------------------------------------------------- queries */

static uint32_t clamp_u32(bool has, uint32_t v, uint32_t def, uint32_t max)
{
    if (!has || v == 0)
        return def;
    return v > max ? max : v;
}

/* Cancel: ends the stream with a final chunk, `last` and no records,
 * so the client knows nothing more of it follows and may reuse the
 * request_id. */
static void end_stream(server_t *s, stream_t *st)
{
    uint64_t revision = st->state == STREAM_RUNNING ? st->revision : store_head(s->store);
    const uint8_t *msg;
    size_t len;
    int rc;

    wire_chunk_reset(&s->chunk);
    rc = wire_chunk_finish(&s->chunk, st->request_id, true, revision, store_epoch(s->store), &msg,
                           &len);
    if (rc == 0)
        rc = send_reply(s, &st->peer, msg, len);
    if (rc < 0)
        log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                        "cannot send the end of cancelled stream %" PRIu64 ": %s", st->request_id,
                        send_failure(rc));
    stream_close(st);
}

/* One connection's share of the streams: never every slot, so one client
 * alone cannot leave the others BUSY (unless max_streams is 1). */
static uint32_t streams_per_client(const server_t *s)
{
    uint32_t cap = s->n_streams > 1 ? s->n_streams - 1 : 1;

    return s->cfg.max_streams_per_client < cap ? s->cfg.max_streams_per_client : cap;
}

static uint32_t streams_of(const server_t *s, const peer_t *peer)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < s->n_streams; i++) {
        const stream_t *st = &s->streams[i];
        if (st->state != STREAM_FREE && st->peer.len == peer->len &&
            memcmp(st->peer.id, peer->id, peer->len) == 0)
            n++;
    }
    return n;
}

/* Answers a stream request that finds no room with BUSY: message names
 * the limit. Counted and logged (rate-limited). */
static void refuse_stream(server_t *s, const peer_t *peer, uint64_t request_id, const char *message)
{
    s->n.streams_refused++;
    log_ratelimited(&s->rl[RL_STREAM_BUSY], LOG_LEVEL_WARNING,
                    "refusing stream request %" PRIu64 ": %s", request_id, message);
    reply_error(s, peer, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY, message);
}

static void start_stream(server_t *s, const peer_t *peer, uint64_t request_id, bool changes,
                         const Parksync__V1__Filter *filter, uint64_t since, bool has_credit,
                         uint32_t credit, bool has_chunk, uint32_t chunk)
{
    stream_t *st = stream_find(s, peer, request_id);
    uint32_t mine;
    char msg[160];

    if (st) /* the same request again: it replaces the old stream */
        stream_close(st);
    /* The routing id is the connection (ZeroMQ gives each its own), so
     * this bounds a connection, not a key: many connections are bounded
     * by max_streams. */
    mine = streams_of(s, peer);
    if (mine >= streams_per_client(s)) {
        snprintf(msg, sizeof msg,
                 "this connection runs %" PRIu32 " streams (max_streams_per_client); retry when "
                 "one ends",
                 mine);
        refuse_stream(s, peer, request_id, msg);
        return;
    }
    for (uint32_t i = 0; !st && i < s->n_streams; i++)
        if (s->streams[i].state == STREAM_FREE)
            st = &s->streams[i];
    if (!st) {
        snprintf(msg, sizeof msg, "%" PRIu32 " streams are running (max_streams); retry later",
                 s->n_streams);
        refuse_stream(s, peer, request_id, msg);
        return;
    }
    /* wire_query_request_decode validated the filter: country is NULL or
     * two letters */
    memset(st, 0, sizeof *st);
    st->state = STREAM_WAITING;
    st->changes = changes;
    st->peer = *peer;
    st->request_id = request_id;
    st->filter.kind = filter && filter->has_kind
                          ? filter->kind
                          : PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    if (filter && filter->country)
        memcpy(st->filter.country, filter->country, 3);
    st->since = since;
    st->credit = clamp_u32(has_credit, credit, STREAM_DEFAULT_CREDIT, WIRE_MAX_CREDIT);
    st->chunk_records =
        clamp_u32(has_chunk, chunk, WIRE_DEFAULT_CHUNK_RECORDS, WIRE_MAX_CHUNK_RECORDS);
    s->streams_waiting = true;
}

/* Answers a request that cannot be served with BAD_REQUEST: why names
 * the field and the rule. Counted and logged (rate-limited). */
static void refuse_query(server_t *s, const peer_t *peer, uint64_t request_id, size_t len,
                         const char *why)
{
    s->n.bad_queries++;
    log_ratelimited(&s->rl[RL_BAD_QUERY], LOG_LEVEL_WARNING,
                    "refusing query request %" PRIu64 " (%zu bytes): %s", request_id, len, why);
    reply_error(s, peer, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, why);
}

static void handle_query(server_t *s, const peer_t *peer, const void *data, size_t len)
{
    Parksync__V1__QueryRequest *q = NULL;
    Parksync__V1__QueryReply r = PARKSYNC__V1__QUERY_REPLY__INIT;
    Parksync__V1__Health health;
    char reason[HEALTH_REASON * HEALTH_CONDITIONS];
    const char *why = NULL;
    stream_t *st;
    int rc;

    s->n.queries++;
    rc = wire_query_request_decode(data, len, &q, &why);
    if (rc < 0) {
        uint64_t id;
        /* Never silence: a client must tell "refused" or "unsupported"
         * from "daemon down", so even what does not decode is answered,
         * with the request_id when one can be read. */
        if (rc == -EMSGSIZE)
            why = "request: larger than 4096 bytes";
        else if (rc != -EINVAL)
            why = "request: not a valid QueryRequest encoding";
        wire_query_request_id(data, len, &id);
        refuse_query(s, peer, id, len, why ? why : "request: invalid");
        return;
    }
    switch (q->body_case) {
    case PARKSYNC__V1__QUERY_REQUEST__BODY_PING: {
        Parksync__V1__Pong pong = PARKSYNC__V1__PONG__INIT;
        pong.has_epoch = true;
        pong.epoch.data = (uint8_t *)store_epoch(s->store);
        pong.epoch.len = WIRE_EPOCH_BYTES;
        pong.has_head_revision = true;
        pong.head_revision = store_head(s->store);
        pong.has_time_us = true;
        pong.time_us = wire_now_us();
        health_to_proto(&s->health, &health, reason, sizeof reason);
        pong.health = &health;
        r.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_PONG;
        r.pong = &pong;
        reply(s, peer, q->request_id, &r);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_PRODUCER_STATE: {
        Parksync__V1__ProducerState ps = PARKSYNC__V1__PRODUCER_STATE__INIT;
        const char *id = q->producer_state->producer_id; /* validated by the decode */
        /* No batch is open here: the answer is what is committed. */
        ps.producer_id = (char *)id;
        ps.has_last_sequence = true;
        ps.last_sequence = store_producer_last(s->store, id);
        store_producer_stats_t stats;
        if (store_producer_stats(s->store, id, &stats) == 0) {
            ps.has_applied = ps.has_duplicates = ps.has_gaps = true;
            ps.has_rejected = ps.has_last_seen_us = true;
            ps.applied = stats.applied;
            ps.duplicates = stats.duplicates;
            ps.gaps = stats.gaps;
            ps.rejected = stats.rejected;
            ps.last_seen_us = stats.last_seen_us;
        }
        r.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_PRODUCER_STATE;
        r.producer_state = &ps;
        reply(s, peer, q->request_id, &r);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT: {
        const Parksync__V1__SnapshotRequest *sr = q->snapshot;
        if (sr->has_at_revision && sr->has_provenance && sr->provenance) {
            reply_error(s, peer, q->request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                        "provenance is not kept for history; ask at_revision without it");
            break;
        }
        start_stream(s, peer, q->request_id, false, sr->filter,
                     sr->has_at_revision ? sr->at_revision : 0, sr->has_credit, sr->credit,
                     sr->has_chunk_records, sr->chunk_records);
        st = stream_find(s, peer, q->request_id);
        if (st && st->state == STREAM_WAITING) {
            st->filter.provenance = sr->has_provenance && sr->provenance;
            st->history = sr->has_at_revision;
        }
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES: {
        const Parksync__V1__ChangesRequest *cr = q->changes;
        start_stream(s, peer, q->request_id, true, cr->filter,
                     cr->has_since_revision ? cr->since_revision : 0, cr->has_credit, cr->credit,
                     cr->has_chunk_records, cr->chunk_records);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT:
        st = stream_find(s, peer, q->request_id);
        if (!st) {
            reply_error(s, peer, q->request_id,
                        PARKSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_REQUEST,
                        "no stream is running for this request_id");
            break;
        }
        /* Not progress: a client may grant credit and never read. */
        if (q->credit->has_chunks) {
            uint64_t c = (uint64_t)st->credit + q->credit->chunks;
            st->credit = c > WIRE_MAX_CREDIT ? WIRE_MAX_CREDIT : (uint32_t)c;
        }
        break;
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CANCEL:
        st = stream_find(s, peer, q->request_id);
        if (!st) {
            reply_error(s, peer, q->request_id,
                        PARKSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_REQUEST,
                        "no stream is running for this request_id");
            break;
        }
        end_stream(s, st);
        break;
    default:
        s->n.bad_queries++;
        reply_error(s, peer, q->request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                    "the request has no body this daemon knows");
        break;
    }
    parksync__v1__query_request__free_unpacked(q, NULL);
}

static void drain_queries(server_t *s)
{
    for (int i = 0; i < QUERY_BUDGET; i++) {
        zmq_msg_t parts[3];
        int kept, total, rc;
        peer_t peer;
        zmq_msg_t *body = NULL;

        rc = recv_parts(s->query, parts, 3, &kept, &total);
        if (rc == -EAGAIN || rc == -EINTR)
            return;
        if (rc < 0) {
            log_error("cannot receive on the query socket: %s", zmq_strerror(-rc));
            return;
        }
        /* [id][request] or, from REQ-style clients, [id][""][request]. */
        if (total == 2)
            body = &parts[1];
        else if (total == 3 && zmq_msg_size(&parts[1]) == 0)
            body = &parts[2];
        if (zmq_msg_size(&parts[0]) > ROUTING_ID_MAX) {
            /* cannot happen: ZeroMQ routing ids are at most 255 bytes */
            s->n.queries++;
            s->n.bad_queries++;
        } else {
            peer.len = zmq_msg_size(&parts[0]);
            memcpy(peer.id, zmq_msg_data(&parts[0]), peer.len);
            peer.delimiter = body && total == 3;
            peer.fd = zmq_msg_get(&parts[kept - 1], ZMQ_SRCFD);
            peer.conn = conns_number(s->conns[2], peer.fd);
            if (body) {
                handle_query(s, &peer, zmq_msg_data(body), zmq_msg_size(body));
            } else {
                s->n.queries++;
                refuse_query(s, &peer, 0, 0,
                             "request: must be one frame, [request] or [\"\"][request]");
            }
        }
        close_parts(parts, kept);
    }
}

/* ---------------------------------------------------------------- the loop */

static void warn_ahead(void *arg, const char *id, uint64_t from, uint64_t to)
{
    (void)arg;
    log_warning("producer %s is ahead of this database: sequences %" PRIu64 "..%" PRIu64
                " are missing (acknowledged by an earlier database? restored backup?) and "
                "its later updates are not applied; re-push them from the source, or reset "
                "the producer (a new outbox: see parksync(1))",
                id, from, to);
}

static long poll_timeout(server_t *s, int64_t now, bool busy)
{
    int64_t t = POLL_MAX_MS;

    if (busy || s->subs_backlog)
        return 0;
    if (s->next_heartbeat_ms - now < t)
        t = s->next_heartbeat_ms - now;
    if (s->welcome_wanted && s->last_heartbeat_ms + WELCOME_MIN_MS - now < t)
        t = s->last_heartbeat_ms + WELCOME_MIN_MS - now;
    if (s->watchdog_ms > 0 && s->next_watchdog_ms - now < t)
        t = s->next_watchdog_ms - now;
    if (s->streams_held && STREAM_RETRY_MS < t)
        t = STREAM_RETRY_MS; /* ZeroMQ cannot say when one client's queue has room */
    if (s->next_republish_ms > 0 && s->next_republish_ms - now < t)
        t = s->next_republish_ms - now;
    if (store_summaries_dirty(s->store) &&
        s->last_refresh_ms + (int64_t)s->cfg.summary_interval_ms - now < t)
        t = s->last_refresh_ms + (int64_t)s->cfg.summary_interval_ms - now;
    return t < 0 ? 0 : (long)t;
}

server_exit_t server_run(server_t *s, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    bool busy = false, pruning;

    while (!*stop) {
        zmq_pollitem_t items[5 + CONNS_SOCKETS] = {
            {s->ingest, 0, ZMQ_POLLIN, 0},
            {s->query, 0, ZMQ_POLLIN, 0},
            {s->publish, 0, ZMQ_POLLIN, 0},
            {control_socket(s->control), 0, ZMQ_POLLIN, 0},
            {checkpoint_socket(s->checkpoint), 0, 0, 0}, /* a check's answer */
        };
        int n_items = 5;
        int64_t now;

        if (checkpoint_checking(s->checkpoint))
            items[4].events = ZMQ_POLLIN;
        /* first in the pass: a connection over the budget goes at once */
        for (int i = 0; i < CONNS_SOCKETS; i++)
            if (s->conns[i])
                items[n_items++] = (zmq_pollitem_t){conns_socket(s->conns[i]), 0, ZMQ_POLLIN, 0};

        if (*reload || control_reload_pending(s->control)) {
            *reload = 0;
            return SERVER_EXIT_RELOAD;
        }
        now = wire_monotonic_ms();
        if (zmq_poll(items, n_items, poll_timeout(s, now, busy)) < 0) {
            if (errno != EINTR)
                log_error("zmq_poll failed: %s", zmq_strerror(errno));
            continue; /* a signal: the flags are checked at the top */
        }
        if (*stop)
            break; /* stop taking input */
        now = wire_monotonic_ms();
        for (int i = 0; i < CONNS_SOCKETS; i++)
            conns_drain(s->conns[i]);
        if (items[0].revents & ZMQ_POLLIN)
            drain_ingest(s);
        if (summaries_due(s, now))
            refresh_summaries(s, now);
        batch_finish(s);
        pruning = prune_step(s);
        if (items[1].revents & ZMQ_POLLIN)
            drain_queries(s);
        if ((items[2].revents & ZMQ_POLLIN) || s->subs_backlog)
            drain_subscriptions(s);
        if (items[3].revents & ZMQ_POLLIN)
            control_drain(s->control); /* between batches: reads what is committed */
        if (items[4].revents & ZMQ_POLLIN)
            control_check_done(s->control);
        if (s->streams_waiting) {
            /* A snapshot includes fresh summaries and everything published. */
            if (store_summaries_dirty(s->store))
                refresh_summaries(s, now);
            batch_finish(s);
            open_waiting_streams(s, now);
        }
        busy = pump_streams(s, now) || pruning;
        if (now >= s->next_heartbeat_ms || welcome_due(s, now)) {
            publish_heartbeat(s);
            s->last_heartbeat_ms = now;
            if (!s->subs_backlog)
                s->welcome_wanted = false;
            if (now >= s->next_heartbeat_ms) {
                s->next_heartbeat_ms = now + s->cfg.heartbeat_ms;
                subscriptions_sweep(s->subs); /* connections whose end it missed */
            }
        }
        if (s->next_republish_ms > 0 && now >= s->next_republish_ms) {
            republish_summaries(s);
            s->next_republish_ms = now + (int64_t)s->cfg.summary_republish_s * 1000;
        }
        zap_drain(s->zap); /* log refused handshakes, rate-limited */
        health_of_checkpoints(s);
        ahead_due(&s->ahead, now, warn_ahead, s);
        age_ack_topics(s, now);
        if (s->watchdog_ms > 0 && now >= s->next_watchdog_ms) {
            sd_notify(0, "WATCHDOG=1");
            s->next_watchdog_ms = now + s->watchdog_ms;
        }
        if (control_tick(s->control, now)) /* backup steps, STATUS, metrics snapshot */
            busy = true;
    }
    /* Commit what is in hand and ack it before the sockets close. */
    batch_finish(s);
    return SERVER_EXIT_STOP;
}

/* ---------------------------------------------------------------- life cycle */

/* Hands the [ministry] sections to the store, which decides who may
 * write what. 0, or -1 after logging. */
static int apply_authority(server_t *s, const config_t *cfg)
{
    store_ministry_t ms[CONFIG_MAX_MINISTRIES];
    store_member_t mem[CONFIG_MAX_MINISTRIES * CONFIG_MAX_PRODUCERS];
    store_authority_t a = {ms, cfg->n_ministries, mem, 0};
    int rc;

    memset(ms, 0, sizeof ms);
    for (size_t i = 0; i < cfg->n_ministries; i++) {
        const config_ministry_t *m = &cfg->ministries[i];
        snprintf(ms[i].name, sizeof ms[i].name, "%s", m->name);
        memcpy(ms[i].country, m->country, 3);
        for (size_t g = 0; g < m->n_grants && g < STORE_MAX_GRANTS; g++) {
            ms[i].grants[g].kind = m->grants[g].kind;
            memcpy(ms[i].grants[g].country, m->grants[g].country, 3);
            ms[i].n_grants++;
        }
        for (size_t p = 0; p < m->n_producers; p++) {
            snprintf(mem[a.n_members].producer, sizeof mem[a.n_members].producer, "%s",
                     m->producers[p]);
            mem[a.n_members++].ministry = i;
        }
    }
    if ((rc = store_set_authority(s->store, &a)) < 0) {
        log_error("cannot set the authority rules: %s", strerror(-rc));
        return -1;
    }
    if (cfg->n_ministries == 0)
        log_warning("no [ministry] section in the configuration: authority is off, every "
                    "producer may write every record");
    else
        log_info("authority: %zu ministries, %zu producers; updates from others are kept "
                 "as claims and listed by `parksync conflicts`",
                 a.n_ministries, a.n_members);
    return 0;
}

/* CURVE on: reads the daemon's secret key and starts the ZAP handler,
 * which must answer before any server socket exists. CURVE off: warns
 * when an endpoint is beyond loopback (allow_insecure_remote). 0, or -1
 * after logging. */
static int start_security(server_t *s, const config_t *cfg)
{
    const char *eps[3] = {cfg->ingest, cfg->publish, cfg->query};
    char err[400] = "", pub[KEYS_Z85_LEN + 1];
    zap_table_t *t;
    int rc;

    if (!cfg->curve) {
        for (int i = 0; i < 3; i++)
            if (!config_endpoint_local(eps[i]))
                log_warning("INSECURE: %s listens beyond loopback without CURVE "
                            "([security] allow_insecure_remote = yes): anyone who reaches it "
                            "can read, and write as any producer",
                            eps[i]);
        return 0;
    }
    if (!zmq_has("curve")) {
        log_error("[security] curve = on, but this libzmq has no CURVE support; exiting");
        return -1;
    }
    rc = keys_read_file(cfg->secret_key_file, true, s->curve_secret, err, sizeof err);
    if (rc < 0) {
        log_error("[security] secret_key_file: %s; exiting", err);
        return -1;
    }
    if (zmq_curve_public(pub, s->curve_secret) < 0) {
        log_error("cannot derive the public key from %s: %s; exiting", cfg->secret_key_file,
                  zmq_strerror(errno));
        return -1;
    }
    if (!(t = malloc(sizeof *t))) {
        log_error("out of memory for the key table; exiting");
        return -1;
    }
    zap_table_from_config(t, cfg);
    s->zap = zap_new(s->zctx, t);
    free(t);
    if (!s->zap)
        return -1;
    log_info("CURVE on: server public key %s; ingest admits ministries' keys, publish and "
             "query %s",
             pub, cfg->subscriber_auth ? "ministries' and subscribers' keys" : "any key");
    return 0;
}

server_t *server_new(const config_t *cfg)
{
    server_t *s = calloc(1, sizeof *s);
    store_config_t sc;
    char err[512] = "";
    uint64_t usec = 0;

    if (!s) {
        log_error("out of memory; exiting");
        return NULL;
    }
    s->cfg = *cfg;
    store_config_init(&sc);
    sc.path = cfg->database;
    sc.synchronous_full = cfg->synchronous_full;
    sc.changelog_keep = cfg->changelog_keep;
    sc.conflicts_keep = cfg->conflicts_keep;
    sc.conflicts_keep_us = (int64_t)cfg->conflicts_keep_days * 86400 * 1000000;
    sc.max_producers = cfg->max_producers;
    sc.trade_rule = cfg->trade_rule;
    sc.trade_threshold_pct = cfg->threshold_pct;
    sc.cif_fob_factor = cfg->cif_fob_factor;
    sc.max_future_skew_us = (int64_t)cfg->max_future_skew_s * 1000000;
    sc.background_checkpoint = true; /* the checkpoint thread does it */
    s->store = store_open(&sc, err, sizeof err);
    if (!s->store) {
        log_error("cannot open the database %s: %s; exiting", cfg->database,
                  err[0] ? err : "unknown error");
        goto fail;
    }
    if (store_epoch_is_new(s->store))
        log_notice("the database %s is a restored backup (head revision %" PRIu64
                   "): it starts a new history with a new epoch; subscribers resync",
                   cfg->database, store_head(s->store));
    if (apply_authority(s, cfg) < 0)
        goto fail;
    s->zctx = zmq_ctx_new();
    if (!s->zctx) {
        log_error("cannot create a ZeroMQ context: %s; exiting", zmq_strerror(errno));
        goto fail;
    }
    s->checkpoint = checkpoint_new(s->zctx, cfg->database);
    if (!s->checkpoint)
        goto fail;
    if (start_security(s, cfg) < 0)
        goto fail; /* before any server socket: fail closed */
    s->ingest = make_socket(s, ZMQ_SUB, "ingest", cfg->ingest);
    if (!s->ingest)
        goto fail;
    s->publish = make_socket(s, ZMQ_XPUB, "publish", cfg->publish);
    if (!s->publish)
        goto fail;
    s->subs = subscriptions_new(s->publish, cfg->max_subscriptions);
    if (!s->subs) {
        log_error("out of memory for the subscription ledger; exiting");
        goto fail;
    }
    s->query = make_socket(s, ZMQ_ROUTER, "query", cfg->query);
    if (!s->query)
        goto fail;
    if (s->conns[2] && conns_on_close(s->conns[2], on_query_closed, s) < 0)
        log_warning("out of memory for query connection numbers; a client that hangs up keeps "
                    "its streams until stream_idle_ms");
    control_view_t view = {
        .cfg = &s->cfg,
        .counters = &s->n,
        .health = &s->health,
        .ahead = &s->ahead,
        .zap = s->zap,
        .checkpoint = s->checkpoint,
        .conns = s->conns,
        .subs = s->subs,
    };
    s->control = control_new(s->zctx, cfg->control, s->store, &view);
    if (!s->control)
        goto fail;
    s->n_streams = cfg->max_streams;
    s->streams = calloc(s->n_streams, sizeof *s->streams);
    if (!s->streams) {
        log_error("out of memory for %" PRIu32 " streams; exiting", s->n_streams);
        goto fail;
    }
    if (cfg->max_streams_per_client > streams_per_client(s))
        log_notice("[limits] max_streams_per_client = %" PRIu32 " is more than max_streams - 1; "
                   "serving at most %" PRIu32 " streams per connection, so that one client "
                   "cannot take them all",
                   cfg->max_streams_per_client, streams_per_client(s));
    s->published_rev = store_head(s->store);
    store_pin_changes(s->store, s->published_rev);
    if (getrandom(s->instance, sizeof s->instance, 0) != (ssize_t)sizeof s->instance) {
        /* not secret, only distinct per start: time and pid will do */
        int64_t t = wire_now_us();
        pid_t pid = getpid();
        memcpy(s->instance, &t, sizeof t);
        memcpy(s->instance + sizeof t, &pid, sizeof pid);
    }
    s->next_heartbeat_ms = wire_monotonic_ms();
    s->next_ack_age_ms = wire_monotonic_ms() + ACK_IDLE_MS;
    if (cfg->summary_republish_s > 0)
        s->next_republish_ms = wire_monotonic_ms() + (int64_t)cfg->summary_republish_s * 1000;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
        /* a quarter of WatchdogSec: a ping at least every half even after a long pass */
        s->watchdog_ms = (int64_t)(usec / 4000);
        s->next_watchdog_ms = wire_monotonic_ms();
    }
    log_info("parksyncd %s started: database %s, ingest %s, publish %s, query %s, "
             "head revision %" PRIu64,
             PARKSYNC_VERSION, cfg->database, cfg->ingest, cfg->publish, cfg->query,
             s->published_rev);
    return s;
fail:
    server_destroy(&s);
    return NULL;
}

/* Closes every connection of the three sockets: each client reconnects
 * at once and its key is judged again by the table now in force. libzmq
 * cannot close one peer's connection, nor tell which descriptor carries
 * which key, so a revocation costs every client one reconnection. */
static void revoke_connections(server_t *s)
{
    uint32_t n = 0;

    for (int i = 0; i < CONNS_SOCKETS; i++)
        n += conns_close_all(s->conns[i]);
    log_notice("keys were removed: closed %" PRIu32 " connections; their clients reconnect and "
               "are admitted by the new keys",
               n);
}

/* Hands the reloaded keys to the ZAP handler: new handshakes use them.
 * When a key lost its admission, open connections are closed before the
 * reload is answered (revoke_connections); updates already queued from
 * a removed ministry are still dropped by authenticated_ministry. old is
 * the configuration before this reload; NULL when it could not be kept
 * (out of memory), and then every connection is closed. */
static void reconfigure_keys(server_t *s, const config_t *old, const config_t *cfg)
{
    config_t *run = &s->cfg;
    zap_table_t *t, *was;
    int rc;

    if (run->curve != cfg->curve || strcmp(run->secret_key_file, cfg->secret_key_file) != 0)
        log_notice("[security] curve or secret_key_file changed in the file; it takes effect "
                   "at the next restart");
    if (!s->zap)
        return;
    if (!(t = malloc(sizeof *t))) {
        log_error("out of memory for the key table; keeping the old keys");
        return;
    }
    zap_table_from_config(t, cfg);
    /* A file that turns CURVE off defaults subscriber_auth to off too; while
     * CURVE still runs until the restart, readers stay as restricted as they are. */
    if (run->curve != cfg->curve)
        t->subscriber_auth = run->subscriber_auth;
    rc = zap_update(s->zap, t);
    if (rc < 0) {
        log_error("cannot hand the new keys to the ZAP handler: %s; keeping the old keys",
                  zmq_strerror(-rc));
    } else {
        memcpy(run->subscribers, cfg->subscribers, sizeof run->subscribers);
        run->n_subscribers = cfg->n_subscribers;
        run->subscriber_auth = t->subscriber_auth;
        log_info("keys reloaded: %zu keys admitted", t->n);
        if (old && (was = malloc(sizeof *was)) != NULL) {
            zap_table_from_config(was, old);
            if (zap_table_revokes(was, t))
                revoke_connections(s);
            free(was);
        } else {
            revoke_connections(s); /* cannot tell: fail closed */
        }
    }
    free(t);
}

/* The connection budget and the handshake timeout; both apply to the
 * connections that arrive from now on. */
static void reconfigure_connections(server_t *s, const config_t *cfg)
{
    void *socks[CONNS_SOCKETS] = {s->ingest, s->publish, s->query};
    int ivl = (int)cfg->handshake_timeout_ms;

    s->cfg.max_connections = cfg->max_connections;
    s->cfg.handshake_timeout_ms = cfg->handshake_timeout_ms;
    for (int i = 0; i < CONNS_SOCKETS; i++) {
        zmq_setsockopt(socks[i], ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl);
        if (s->conns[i])
            conns_set_max(s->conns[i], cfg->max_connections);
    }
}

void server_reconfigure(server_t *s, const config_t *cfg)
{
    config_t *run = &s->cfg;
    config_t *old = malloc(sizeof *old); /* the keys in force until now */

#define KEEP(cond, name)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            log_notice("%s changed in the file; it takes effect at the next restart", name);       \
    } while (0)
    KEEP(strcmp(run->database, cfg->database) != 0, "[daemon] database");
    KEEP(strcmp(run->ingest, cfg->ingest) != 0, "[endpoints] ingest");
    KEEP(strcmp(run->publish, cfg->publish) != 0, "[endpoints] publish");
    KEEP(strcmp(run->query, cfg->query) != 0, "[endpoints] query");
    KEEP(run->synchronous_full != cfg->synchronous_full, "[store] synchronous");
    KEEP(run->changelog_keep != cfg->changelog_keep, "[store] changelog_keep");
    KEEP(run->conflicts_keep != cfg->conflicts_keep, "[store] conflicts_keep");
    KEEP(run->conflicts_keep_days != cfg->conflicts_keep_days, "[store] conflicts_keep_days");
    KEEP(run->trade_rule != cfg->trade_rule, "[trade] rule");
    KEEP(run->threshold_pct != cfg->threshold_pct, "[trade] threshold_pct");
    KEEP(run->cif_fob_factor != cfg->cif_fob_factor, "[trade] cif_fob_factor");
    KEEP(run->max_streams != cfg->max_streams, "[limits] max_streams");
    KEEP(strcmp(run->control, cfg->control) != 0, "[endpoints] control");
    KEEP(run->max_future_skew_s != cfg->max_future_skew_s, "[store] max_future_skew_s");
    KEEP(run->ingest_hwm != cfg->ingest_hwm, "[limits] ingest_hwm");
    KEEP(strcmp(run->metrics_http, cfg->metrics_http) != 0, "[metrics] http");
    KEEP(run->publish_hwm != cfg->publish_hwm, "[limits] publish_hwm");
    KEEP(run->max_producers != cfg->max_producers, "[limits] max_producers");
    KEEP(run->query_hwm != cfg->query_hwm, "[limits] query_hwm");
#undef KEEP
    if (old)
        *old = *run;
    run->log_level = cfg->log_level;
    log_set_level(cfg->log_level);
    /* authority applies from the next update on; a failure keeps the old rules */
    if (apply_authority(s, cfg) == 0) {
        memcpy(run->ministries, cfg->ministries, sizeof run->ministries);
        run->n_ministries = cfg->n_ministries;
    }
    reconfigure_keys(s, old, cfg); /* NULL: the old keys are unknown, revoke */
    free(old);
    reconfigure_connections(s, cfg);
    run->batch_max = cfg->batch_max;
    run->max_streams_per_client = cfg->max_streams_per_client; /* new streams from now on */
    run->stream_idle_ms = cfg->stream_idle_ms;
    run->summary_interval_ms = cfg->summary_interval_ms;
    run->max_subscriptions = cfg->max_subscriptions;
    subscriptions_set_max(s->subs, cfg->max_subscriptions);
    if (run->summary_republish_s != cfg->summary_republish_s) {
        run->summary_republish_s = cfg->summary_republish_s;
        s->next_republish_ms = cfg->summary_republish_s > 0
                                   ? wire_monotonic_ms() + (int64_t)cfg->summary_republish_s * 1000
                                   : 0;
    }
    if (run->heartbeat_ms != cfg->heartbeat_ms) {
        run->heartbeat_ms = cfg->heartbeat_ms;
        s->next_heartbeat_ms = wire_monotonic_ms();
    }
    log_info("configuration reloaded: log_level %s, batch_max %" PRIu32
             ", summary_interval_ms %" PRIu32 ", heartbeat_ms %" PRIu32
             ", max_subscriptions %" PRIu32,
             log_level_name(run->log_level), run->batch_max, run->summary_interval_ms,
             run->heartbeat_ms, run->max_subscriptions);
}

const server_counters_t *server_counters(const server_t *s)
{
    return &s->n;
}

void server_destroy(server_t **sp)
{
    server_t *s;

    if (!sp || !*sp)
        return;
    s = *sp;
    for (uint32_t i = 0; s->streams && i < s->n_streams; i++)
        stream_close(&s->streams[i]);
    free(s->streams);
    s->streams = NULL;
    s->n_streams = 0;
    control_destroy(&s->control);
    for (int i = 0; i < CONNS_SOCKETS; i++)
        conns_destroy(&s->conns[i]); /* before the sockets they monitor */
    if (s->ingest)
        zmq_close(s->ingest);
    subscriptions_destroy(&s->subs); /* its kept messages, before the context ends */
    if (s->publish)
        zmq_close(s->publish);
    if (s->query)
        zmq_close(s->query);
    if (s->zap || s->n.forged > 0)
        log_info("security: %" PRIu64 " handshakes admitted, %" PRIu64 " refused; %" PRIu64
                 " updates dropped for a forged producer or identity",
                 zap_allowed(s->zap), zap_denied(s->zap), s->n.forged);
    zap_destroy(&s->zap); /* its sockets must close before the context ends */
    checkpoint_destroy(&s->checkpoint);
    if (s->zctx)
        zmq_ctx_term(s->zctx); /* waits at most LINGER_MS for pending sends */
    if (s->store) {
        const server_counters_t *n = &s->n;
        log_info("stopped at revision %" PRIu64 ": received %" PRIu64 ", applied %" PRIu64
                 ", duplicates %" PRIu64 ", gaps %" PRIu64 ", refused by the store %" PRIu64
                 "; dropped: bad frames %" PRIu64 ", too large %" PRIu64 ", undecodable %" PRIu64
                 ", invalid %" PRIu64 ", wrong topic %" PRIu64 "; commits %" PRIu64
                 ", storage failures %" PRIu64 ", published %" PRIu64 ", acks %" PRIu64
                 ", queries %" PRIu64 " (bad %" PRIu64 "), chunks %" PRIu64 ", streams %" PRIu64
                 " (refused %" PRIu64 ", dropped %" PRIu64 ", of them stalled %" PRIu64 ")",
                 store_head(s->store), n->received, n->applied, n->duplicates, n->gaps, n->refused,
                 n->bad_frames, n->too_large, n->undecodable, n->invalid, n->wrong_topic,
                 n->commits, n->store_errors, n->published, n->acks, n->queries, n->bad_queries,
                 n->chunks, n->streams_opened, n->streams_refused, n->streams_dropped,
                 n->streams_stalled);
        for (int i = 0; i < RL_COUNT; i++)
            if (s->rl[i].suppressed > 0)
                log_info("%" PRIu64 " '%s' messages were suppressed at the end",
                         s->rl[i].suppressed, ratelimit_names[i]);
    }
    store_close(&s->store);
    strmap_free(&s->touched);
    strmap_free(&s->topic_seq);
    strmap_free(&s->ack_seq[0]);
    strmap_free(&s->ack_seq[1]);
    ahead_free(&s->ahead);
    wire_chunk_free(&s->chunk);
    wire_buf_free(&s->pubbuf);
    free(s);
    *sp = NULL;
}

void server_reload_done(server_t *s, bool ok, const char *message)
{
    control_reload_done(s->control, ok, message);
}
