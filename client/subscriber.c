/*
 * subscriber.c - ps_subscriber: the consolidated picture as a snapshot,
 * then live (the ZeroMQ Guide's Clone pattern).
 *
 * The SUB socket connects and subscribes before the snapshot is asked for,
 * so every change after the snapshot's revision R is queued in it while
 * the snapshot streams from the query socket. Snapshot chunks are flow
 * controlled: SUBSCRIBER_CREDIT chunks are granted up front and one more
 * after each chunk is consumed, so memory stays bounded on both sides.
 * Live records with revision <= R are already in the snapshot and dropped.
 *
 * Slow joiner: a SUB's subscription reaches the daemon some time after
 * zmq_connect returns, and what is published before that is lost. So the
 * record topics are subscribed first and "hb/" last; the daemon answers a
 * new "hb/" subscription with a heartbeat at once, and since one peer's
 * subscriptions are applied in order, that heartbeat proves the record
 * subscriptions are active. Only then is the snapshot asked for.
 * Heartbeats are otherwise ignored.
 *
 * Trade flows are filed under the exporter's country; a country filter on
 * trade also wants flows the country imports, so for kind trade (or every
 * kind) with a country, the subscription and the snapshot ask for every
 * country and the filter runs here.
 */
#include "parksync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sock.h"
#include "wire.h"

#define SUBSCRIBER_DEFAULT_TIMEOUT_MS 5000 /* ms of daemon silence during a snapshot */
#define SUBSCRIBER_CREDIT 8                /* chunks granted when the snapshot starts */
#define SUBSCRIBER_RCVHWM 100000           /* live messages queued while the snapshot streams */

/* Where the subscriber is in its stream. */
typedef enum sub_state {
    SUB_SNAPSHOT = 0, /* reading snapshot chunks */
    SUB_LIVE,         /* snapshot delivered, following the publish socket */
    SUB_CLOSED,       /* snapshot delivered and not live, or failed */
} sub_state_t;

struct ps_subscriber {
    void *ctx;                        /* ZeroMQ context, owned */
    void *sub;                        /* SUB <- daemon's publish */
    void *query;                      /* DEALER -> daemon's query */
    Parksync__V1__RecordKind kind;    /* UNSPECIFIED: every kind */
    char country[3];                  /* "" when every country */
    bool live;                        /* follow live records after the snapshot */
    int timeout_ms;                   /* ms of daemon silence allowed during the snapshot */
    uint64_t request_id;              /* our snapshot request */
    sub_state_t state;                /* see sub_state_t */
    Parksync__V1__QueryReply *chunk;  /* the chunk being delivered, owned */
    size_t pos;                       /* next record in chunk */
    Parksync__V1__Publication *pub;   /* the live record last delivered, owned */
    uint64_t snapshot_revision;       /* R: the snapshot's revision */
    uint64_t revision;                /* newest revision delivered (R at first) */
    int64_t last_heard_ms;            /* monotonic ms of the last snapshot reply */
    uint64_t bad_frames;              /* undecodable or unexpected frames skipped */
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

/* True when the country filter must run here rather than at the daemon. */
static bool filter_locally(const ps_subscriber_t *s)
{
    return s->country[0] != '\0' &&
           (s->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED ||
            s->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE);
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

static ps_err_t ask_snapshot(ps_subscriber_t *s, bool provenance)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__SnapshotRequest snap = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
    Parksync__V1__Filter filter = PARKSYNC__V1__FILTER__INIT;

    if (s->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED) {
        filter.has_kind = 1;
        filter.kind = s->kind;
    }
    if (s->country[0] != '\0' && !filter_locally(s))
        filter.country = s->country;
    snap.filter = &filter;
    snap.has_credit = 1;
    snap.credit = SUBSCRIBER_CREDIT;
    snap.has_chunk_records = 1;
    snap.chunk_records = WIRE_DEFAULT_CHUNK_RECORDS;
    if (provenance) {
        snap.has_provenance = 1;
        snap.provenance = 1;
    }
    req.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
    req.snapshot = &snap;
    return send_request(s, &req);
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

/* Waits up to timeout_ms for a heartbeat on the SUB (see the top). Live
 * records that arrive meanwhile are newer than the coming snapshot is
 * not, so they can be dropped: the snapshot covers them. A daemon that
 * stays silent is not an error here; the snapshot request times out. */
static ps_err_t wait_welcome(ps_subscriber_t *s)
{
    int64_t deadline = wire_monotonic_ms() + s->timeout_ms;

    for (;;) {
        zmq_msg_t msg;
        int rc = sock_recv_last(s->sub, 2, &msg);
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
        Parksync__V1__Publication *pub = NULL;
        const char *why = NULL;
        rc = wire_publication_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &pub, &why);
        zmq_msg_close(&msg);
        if (rc < 0)
            continue;
        bool hb = pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT;
        parksync__v1__publication__free_unpacked(pub, NULL);
        if (hb)
            return PS_OK;
    }
}

ps_subscriber_t *ps_subscriber_new(const ps_subscriber_options_t *opts, ps_err_t *err)
{
    ps_subscriber_t *s = NULL;
    ps_err_t e = PS_ERR_INVALID;
    char topic[WIRE_MAX_TOPIC];
    int rc, hwm = SUBSCRIBER_RCVHWM;

    if (opts == NULL || (opts->country != NULL && !wire_country_valid(opts->country)))
        goto fail;
    if (opts->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED &&
        wire_kind_name(opts->kind) == NULL)
        goto fail;
    e = PS_ERR_NOMEM;
    if ((s = calloc(1, sizeof *s)) == NULL)
        goto fail;
    s->kind = opts->kind;
    if (opts->country != NULL)
        snprintf(s->country, sizeof s->country, "%s", opts->country);
    s->live = opts->live;
    s->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : SUBSCRIBER_DEFAULT_TIMEOUT_MS;
    s->request_id = (uint64_t)wire_now_us(); /* distinct across runs, for the daemon's logs */
    e = PS_ERR_SOCKET;
    if ((s->ctx = zmq_ctx_new()) == NULL)
        goto fail;
    if (s->live) {
        /* Subscribe first: the Clone pattern's ordering. */
        if ((s->sub = zmq_socket(s->ctx, ZMQ_SUB)) == NULL)
            goto fail;
        int64_t maxmsg = WIRE_MAX_MSG;
        if (zmq_setsockopt(s->sub, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0 ||
            zmq_setsockopt(s->sub, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0)
            goto fail;
        rc = wire_topic_record(topic, sizeof topic, s->kind,
                               s->country[0] != '\0' && !filter_locally(s) ? s->country : NULL);
        if (rc < 0 || zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, topic, strlen(topic)) < 0 ||
            zmq_setsockopt(s->sub, ZMQ_SUBSCRIBE, WIRE_TOPIC_HEARTBEAT,
                           strlen(WIRE_TOPIC_HEARTBEAT)) < 0 ||
            zmq_connect(s->sub, opts->publish_endpoint ? opts->publish_endpoint
                                                       : WIRE_DEFAULT_PUBLISH) < 0)
            goto fail;
        if ((e = wait_welcome(s)) != PS_OK)
            goto fail;
        e = PS_ERR_SOCKET;
    }
    s->query = sock_open(s->ctx, ZMQ_DEALER,
                         opts->query_endpoint ? opts->query_endpoint : WIRE_DEFAULT_QUERY, 0, &rc);
    if (s->query == NULL)
        goto fail;
    if ((e = ask_snapshot(s, opts->provenance)) != PS_OK)
        goto fail;
    s->last_heard_ms = wire_monotonic_ms();
    s->state = SUB_SNAPSHOT;
    *err = PS_OK;
    return s;
fail:
    *err = e;
    ps_subscriber_destroy(&s);
    return NULL;
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

/* Waits for the next snapshot reply; PS_OK with s->chunk set. */
static ps_err_t next_chunk(ps_subscriber_t *s, int64_t deadline)
{
    for (;;) {
        int64_t now = wire_monotonic_ms(), silence = s->last_heard_ms + s->timeout_ms;
        if (now >= silence || (deadline >= 0 && now >= deadline))
            return PS_ERR_TIMEOUT;
        long w = wait_ms(deadline, silence);
        zmq_pollitem_t item = {.socket = s->query, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, w) < 0)
            return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t msg;
        int rc = sock_recv_last(s->query, 1, &msg);
        if (rc == -EAGAIN)
            continue;
        if (rc == -EPROTO) {
            s->bad_frames++;
            continue;
        }
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        Parksync__V1__QueryReply *rep = NULL;
        const char *why = NULL;
        rc = wire_query_reply_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &rep, &why);
        zmq_msg_close(&msg);
        if (rc < 0) {
            s->bad_frames++;
            continue;
        }
        if (rep->request_id != s->request_id) {
            parksync__v1__query_reply__free_unpacked(rep, NULL);
            continue;
        }
        s->last_heard_ms = wire_monotonic_ms();
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK) {
            s->chunk = rep;
            s->pos = 0;
            return PS_OK;
        }
        ps_err_t e = rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR ? PS_ERR_REFUSED
                                                                            : PS_ERR_PROTOCOL;
        parksync__v1__query_reply__free_unpacked(rep, NULL);
        if (e == PS_ERR_PROTOCOL) {
            s->bad_frames++;
            continue; /* a pong or the like: not for this stream */
        }
        s->state = SUB_CLOSED;
        return e;
    }
}

/* Delivers the next snapshot record or the snapshot's end. */
static ps_err_t snapshot_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline)
{
    for (;;) {
        if (s->chunk == NULL) {
            ps_err_t e = next_chunk(s, deadline);
            if (e != PS_OK)
                return e;
        }
        Parksync__V1__Chunk *c = s->chunk->chunk;
        while (s->pos < c->n_records) {
            Parksync__V1__Record *r = c->records[s->pos++];
            if (!record_matches(s, r))
                continue;
            ev->kind = PS_EVENT_RECORD;
            ev->record = r;
            ev->revision = r->revision;
            ev->live = false;
            return PS_OK;
        }
        bool last = c->has_last && c->last;
        uint64_t revision = c->has_revision ? c->revision : 0;
        parksync__v1__query_reply__free_unpacked(s->chunk, NULL);
        s->chunk = NULL;
        if (last) {
            s->snapshot_revision = revision;
            if (revision > s->revision)
                s->revision = revision;
            s->state = s->live ? SUB_LIVE : SUB_CLOSED;
            ev->kind = PS_EVENT_SNAPSHOT_END;
            ev->record = NULL;
            ev->revision = revision;
            ev->live = false;
            return PS_OK;
        }
        ps_err_t e = grant_credit(s);
        if (e != PS_OK)
            return e;
    }
}

static ps_err_t live_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline)
{
    for (;;) {
        zmq_msg_t msg;
        int rc = sock_recv_last(s->sub, 2, &msg);
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
            s->bad_frames++;
            continue;
        }
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        Parksync__V1__Publication *pub = NULL;
        const char *why = NULL;
        rc = wire_publication_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &pub, &why);
        zmq_msg_close(&msg);
        if (rc < 0) {
            s->bad_frames++;
            continue;
        }
        if (pub->body_case != PARKSYNC__V1__PUBLICATION__BODY_RECORD ||
            pub->record->revision <= s->snapshot_revision || !record_matches(s, pub->record)) {
            parksync__v1__publication__free_unpacked(pub, NULL);
            continue;
        }
        s->pub = pub;
        if (pub->record->revision > s->revision)
            s->revision = pub->record->revision;
        ev->kind = PS_EVENT_RECORD;
        ev->record = pub->record;
        ev->revision = pub->record->revision;
        ev->live = true;
        return PS_OK;
    }
}

ps_err_t ps_subscriber_next(ps_subscriber_t *s, ps_event_t *ev, int timeout_ms)
{
    if (s == NULL || ev == NULL)
        return PS_ERR_INVALID;
    memset(ev, 0, sizeof *ev);
    if (s->pub != NULL)
        parksync__v1__publication__free_unpacked(s->pub, NULL);
    s->pub = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : wire_monotonic_ms() + timeout_ms;
    switch (s->state) {
    case SUB_SNAPSHOT:
        return snapshot_next(s, ev, deadline);
    case SUB_LIVE:
        return live_next(s, ev, deadline);
    case SUB_CLOSED:
        break;
    }
    return PS_ERR_CLOSED;
}

uint64_t ps_subscriber_revision(const ps_subscriber_t *s)
{
    return s->revision;
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
    free(s);
    *sp = NULL;
}
