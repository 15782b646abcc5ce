/*
 * producer.c - ps_producer: numbered updates to parksyncd's ingest socket,
 * acknowledgements from its publish socket, go-back-N resends, and an
 * optional durable outbox.
 *
 * Sockets: PUB -> ingest (2 frames: topic = kind of update, Update),
 * SUB <- publish subscribed to "ack/<producer_id>/", DEALER -> query (only
 * at start, to learn the last applied sequence).
 *
 * The window holds every sent, unacknowledged update as encoded bytes, in
 * sequence order. An ack for S drops everything <= S. When no ack advances
 * for the current timeout, everything after the last ack is sent again and
 * the timeout doubles (up to PRODUCER_MAX_TIMEOUT_MS); an advancing ack
 * resets it. A repeated ack while updates are outstanding means the daemon
 * saw a gap or a duplicate: resend at once, at most every
 * PRODUCER_FAST_RESEND_MS.
 */
#include "parksync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "outbox.h"
#include "sock.h"
#include "wire.h"

#define PRODUCER_DEFAULT_WINDOW 1000      /* updates in flight */
#define PRODUCER_DEFAULT_ACK_MS 500       /* ms before the first resend */
#define PRODUCER_DEFAULT_CONNECT_MS 5000  /* ms ps_producer_new waits */
#define PRODUCER_MAX_TIMEOUT_MS 8000      /* ms: resend timeout ceiling */
#define PRODUCER_FAST_RESEND_MS 100       /* ms between resends triggered by repeated acks */
#define PRODUCER_STATE_RETRY_MS 1000      /* ms between ProducerStateRequests at start */
#define PRODUCER_POLL_SLICE_MS 100        /* ms: longest single wait inside a blocking call */
#define PRODUCER_DRAIN_BUDGET 10000       /* acks read per pass before doing other work */

/* One sent, unacknowledged update. */
typedef struct entry {
    uint64_t sequence; /* its sequence number */
    uint8_t *data;     /* encoded Update, owned */
    size_t len;        /* bytes of data */
    char topic[16];    /* ingest topic: the kind of the update */
} entry_t;

struct ps_producer {
    void *ctx;                       /* ZeroMQ context, owned */
    void *ingest;                    /* PUB -> daemon's ingest */
    void *acks;                      /* SUB <- daemon's publish, ack topic only */
    void *query;                     /* DEALER -> daemon's query */
    outbox_t *outbox;                /* durable outbox, NULL when in memory */
    char producer_id[WIRE_MAX_ID + 1]; /* our id */
    unsigned window;                 /* most updates in flight */
    int ack_timeout_ms;              /* ms: base resend timeout */
    int cur_timeout_ms;              /* ms: current resend timeout (doubles) */
    int64_t last_progress_ms;        /* monotonic ms of the last ack advance or resend */
    int64_t last_resend_ms;          /* monotonic ms of the last resend */
    uint64_t last_sent;              /* highest sequence assigned */
    uint64_t last_acked;             /* highest sequence acknowledged */
    uint64_t resends;                /* updates sent again */
    uint64_t bad_frames;             /* undecodable frames on the ack socket */
    entry_t *entries;                /* the window: entries[head..tail) */
    size_t head;                     /* first live entry */
    size_t tail;                     /* one past the last live entry */
    size_t cap;                      /* entries allocated */
    uint64_t next_request_id;        /* request ids on the query socket */
    char error[256];                 /* text of the last INVALID/REFUSED/OUTBOX error */
};

void ps_producer_options_init(ps_producer_options_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->ingest_endpoint = WIRE_DEFAULT_INGEST;
    opts->publish_endpoint = WIRE_DEFAULT_PUBLISH;
    opts->query_endpoint = WIRE_DEFAULT_QUERY;
    opts->window = PRODUCER_DEFAULT_WINDOW;
    opts->ack_timeout_ms = PRODUCER_DEFAULT_ACK_MS;
    opts->connect_timeout_ms = PRODUCER_DEFAULT_CONNECT_MS;
}

/* ---------------------------------------------------------------- window */

static size_t in_flight(const ps_producer_t *p)
{
    return p->tail - p->head;
}

static int window_push(ps_producer_t *p, uint64_t seq, const void *data, size_t len,
                       const char *topic)
{
    if (p->tail == p->cap) {
        if (p->head > 0) {
            memmove(p->entries, p->entries + p->head, in_flight(p) * sizeof *p->entries);
            p->tail -= p->head;
            p->head = 0;
        }
        if (p->tail == p->cap) {
            size_t ncap = p->cap ? p->cap * 2 : 64;
            entry_t *n = realloc(p->entries, ncap * sizeof *n);
            if (n == NULL)
                return -ENOMEM;
            p->entries = n;
            p->cap = ncap;
        }
    }
    entry_t *e = &p->entries[p->tail];
    e->data = malloc(len > 0 ? len : 1);
    if (e->data == NULL)
        return -ENOMEM;
    memcpy(e->data, data, len);
    e->len = len;
    e->sequence = seq;
    snprintf(e->topic, sizeof e->topic, "%s", topic);
    p->tail++;
    return 0;
}

static void entry_send(ps_producer_t *p, const entry_t *e)
{
    /* PUB never blocks: past the high-water mark it drops, and go-back-N
     * sends again what the daemon did not acknowledge. */
    sock_send(p->ingest, e->topic, e->data, e->len);
}

static void resend_all(ps_producer_t *p, int64_t now)
{
    for (size_t i = p->head; i < p->tail; i++) {
        entry_send(p, &p->entries[i]);
        p->resends++;
    }
    p->last_resend_ms = now;
    p->last_progress_ms = now;
}

/* ---------------------------------------------------------------- acks */

static ps_err_t on_ack(ps_producer_t *p, uint64_t acked, int64_t now)
{
    if (acked > p->last_acked) {
        /* The daemon is ahead of us only if another process used our id;
         * numbering must continue after what it applied. */
        if (acked > p->last_sent)
            p->last_sent = acked;
        while (p->head < p->tail && p->entries[p->head].sequence <= acked) {
            free(p->entries[p->head].data);
            p->head++;
        }
        if (p->head == p->tail)
            p->head = p->tail = 0;
        p->last_acked = acked;
        p->cur_timeout_ms = p->ack_timeout_ms;
        p->last_progress_ms = now;
        if (p->outbox != NULL && outbox_ack(p->outbox, acked) < 0) {
            snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
            return PS_ERR_OUTBOX;
        }
    } else if (acked == p->last_acked && in_flight(p) > 0 &&
               now - p->last_resend_ms >= PRODUCER_FAST_RESEND_MS) {
        resend_all(p, now);
    }
    return PS_OK;
}

/* Reads every waiting ack without blocking. */
static ps_err_t drain_acks(ps_producer_t *p)
{
    for (int i = 0; i < PRODUCER_DRAIN_BUDGET; i++) {
        zmq_msg_t msg;
        int rc = sock_recv_last(p->acks, 2, &msg);
        if (rc == -EAGAIN)
            return PS_OK;
        if (rc == -EINTR)
            return PS_ERR_INTERRUPTED;
        if (rc == -EPROTO) {
            p->bad_frames++;
            continue;
        }
        if (rc < 0)
            return PS_ERR_SOCKET;
        Parksync__V1__Publication *pub = NULL;
        const char *why = NULL;
        rc = wire_publication_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &pub, &why);
        zmq_msg_close(&msg);
        if (rc < 0) {
            p->bad_frames++;
            continue;
        }
        ps_err_t err = PS_OK;
        if (pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_ACK &&
            strcmp(pub->ack->producer_id, p->producer_id) == 0)
            err = on_ack(p, pub->ack->last_sequence, wire_monotonic_ms());
        parksync__v1__publication__free_unpacked(pub, NULL);
        if (err != PS_OK)
            return err;
    }
    return PS_OK;
}

/* One pass: wait up to wait_ms (or the resend deadline) for acks, read
 * them, resend when due. */
static ps_err_t pump(ps_producer_t *p, int wait_ms)
{
    int64_t now = wire_monotonic_ms();
    if (in_flight(p) > 0) {
        int64_t due = p->last_progress_ms + p->cur_timeout_ms - now;
        if (due < wait_ms)
            wait_ms = due < 0 ? 0 : (int)due;
    }
    zmq_pollitem_t item = {.socket = p->acks, .events = ZMQ_POLLIN};
    if (zmq_poll(&item, 1, wait_ms) < 0)
        return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
    ps_err_t err = drain_acks(p);
    if (err != PS_OK)
        return err;
    now = wire_monotonic_ms();
    if (in_flight(p) > 0 && now - p->last_progress_ms >= p->cur_timeout_ms) {
        resend_all(p, now);
        p->cur_timeout_ms = p->cur_timeout_ms * 2 > PRODUCER_MAX_TIMEOUT_MS
                                ? PRODUCER_MAX_TIMEOUT_MS
                                : p->cur_timeout_ms * 2;
    }
    return PS_OK;
}

/* Pumps until done(p) or the deadline (-1: none). */
static ps_err_t wait_until(ps_producer_t *p, bool (*done)(const ps_producer_t *), int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : wire_monotonic_ms() + timeout_ms;
    ps_err_t err = pump(p, 0);

    while (err == PS_OK && !done(p)) {
        int slice = PRODUCER_POLL_SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - wire_monotonic_ms();
            if (left <= 0)
                return PS_ERR_TIMEOUT;
            if (left < slice)
                slice = (int)left;
        }
        err = pump(p, slice);
    }
    return err;
}

static bool window_has_room(const ps_producer_t *p)
{
    return in_flight(p) < p->window;
}

static bool all_acked(const ps_producer_t *p)
{
    return p->last_acked >= p->last_sent;
}

/* ---------------------------------------------------------------- start */

/* Asks the daemon for our last applied sequence, retrying until deadline. */
static ps_err_t ask_state(ps_producer_t *p, int timeout_ms, uint64_t *last)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__ProducerStateRequest ps = PARKSYNC__V1__PRODUCER_STATE_REQUEST__INIT;
    int64_t deadline = wire_monotonic_ms() + timeout_ms, next_send = 0;
    uint64_t first_id = p->next_request_id;

    ps.producer_id = p->producer_id;
    req.has_version = 1;
    req.version = WIRE_VERSION;
    req.has_request_id = 1;
    req.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PRODUCER_STATE;
    req.producer_state = &ps;

    for (;;) {
        int64_t now = wire_monotonic_ms();
        if (now >= deadline)
            return PS_ERR_TIMEOUT;
        if (now >= next_send) {
            /* DEALER queues requests until it connects; asking again only
             * matters if the daemon restarted meanwhile, and any answer
             * to any of our asks is the same answer. */
            size_t len = 0;
            req.request_id = p->next_request_id++;
            uint8_t *buf = wire_pack(&req.base, &len);
            if (buf == NULL)
                return PS_ERR_NOMEM;
            sock_send(p->query, NULL, buf, len);
            free(buf);
            next_send = now + PRODUCER_STATE_RETRY_MS;
        }
        int64_t wait = (next_send < deadline ? next_send : deadline) - now;
        zmq_pollitem_t item = {.socket = p->query, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, (long)wait) < 0) {
            if (zmq_errno() == EINTR)
                return PS_ERR_INTERRUPTED;
            return PS_ERR_SOCKET;
        }
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t msg;
        int rc = sock_recv_last(p->query, 1, &msg);
        if (rc == -EAGAIN || rc == -EPROTO)
            continue;
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        Parksync__V1__QueryReply *rep = NULL;
        const char *why = NULL;
        rc = wire_query_reply_decode(zmq_msg_data(&msg), zmq_msg_size(&msg), &rep, &why);
        zmq_msg_close(&msg);
        if (rc < 0) {
            p->bad_frames++;
            continue;
        }
        ps_err_t err = PS_ERR_PROTOCOL;
        if (rep->request_id < first_id || rep->request_id >= p->next_request_id) {
            parksync__v1__query_reply__free_unpacked(rep, NULL); /* not ours */
            continue;
        }
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_PRODUCER_STATE) {
            *last = rep->producer_state->has_last_sequence ? rep->producer_state->last_sequence : 0;
            err = PS_OK;
        } else if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR) {
            snprintf(p->error, sizeof p->error, "parksyncd refused the producer state request: %s",
                     rep->error->message != NULL ? rep->error->message : "no reason given");
            err = PS_ERR_REFUSED;
        } else {
            snprintf(p->error, sizeof p->error, "unexpected reply to the producer state request");
        }
        parksync__v1__query_reply__free_unpacked(rep, NULL);
        return err;
    }
}

/* Context for restoring the outbox into the window. */
typedef struct restore {
    ps_producer_t *p;  /* the producer being restored */
    uint64_t applied;  /* daemon's last applied sequence: skip up to it */
    int rc;            /* first failure */
} restore_t;

static int restore_row(void *arg, uint64_t seq, const void *payload, size_t len)
{
    restore_t *r = arg;
    char topic[WIRE_MAX_TOPIC];
    Parksync__V1__Update *u;

    if (seq <= r->applied)
        return 0;
    u = parksync__v1__update__unpack(NULL, len, payload);
    if (u == NULL || wire_topic_ingest(topic, sizeof topic, wire_update_kind(u)) < 0) {
        /* Our own bytes, so this is corruption; keep the sequence moving
         * with the park topic so the daemon consumes and rejects it. */
        snprintf(topic, sizeof topic, "park");
    }
    if (u != NULL)
        parksync__v1__update__free_unpacked(u, NULL);
    if ((r->rc = window_push(r->p, seq, payload, len, topic)) < 0)
        return 1;
    return 0;
}

ps_producer_t *ps_producer_new(const ps_producer_options_t *opts, ps_err_t *err)
{
    ps_producer_t *p = NULL;
    ps_err_t e = PS_ERR_INVALID;
    char topic[WIRE_MAX_TOPIC];
    int rc;
    uint64_t applied = 0;

    if (opts == NULL || opts->producer_id == NULL || !wire_id_valid(opts->producer_id))
        goto fail;
    e = PS_ERR_NOMEM;
    if ((p = calloc(1, sizeof *p)) == NULL)
        goto fail;
    snprintf(p->producer_id, sizeof p->producer_id, "%s", opts->producer_id);
    p->window = opts->window > 0 ? opts->window : PRODUCER_DEFAULT_WINDOW;
    p->ack_timeout_ms = opts->ack_timeout_ms > 0 ? opts->ack_timeout_ms : PRODUCER_DEFAULT_ACK_MS;
    p->cur_timeout_ms = p->ack_timeout_ms;
    p->next_request_id = 1;
    int connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                  : PRODUCER_DEFAULT_CONNECT_MS;
    e = PS_ERR_SOCKET;
    if ((p->ctx = zmq_ctx_new()) == NULL)
        goto fail;
    /* Room for the whole window twice over, so a resend burst is not
     * dropped by our own high-water mark. */
    int hwm = p->window > 100000 ? 200000 + 1024 : (int)p->window * 2 + 1024;
    p->ingest = sock_open(p->ctx, ZMQ_PUB,
                          opts->ingest_endpoint ? opts->ingest_endpoint : WIRE_DEFAULT_INGEST,
                          hwm, &rc);
    if (p->ingest == NULL)
        goto fail;
    p->acks = sock_open(p->ctx, ZMQ_SUB,
                        opts->publish_endpoint ? opts->publish_endpoint : WIRE_DEFAULT_PUBLISH,
                        0, &rc);
    if (p->acks == NULL)
        goto fail;
    if (wire_topic_ack(topic, sizeof topic, p->producer_id) < 0 ||
        zmq_setsockopt(p->acks, ZMQ_SUBSCRIBE, topic, strlen(topic)) < 0)
        goto fail;
    p->query = sock_open(p->ctx, ZMQ_DEALER,
                         opts->query_endpoint ? opts->query_endpoint : WIRE_DEFAULT_QUERY, 0, &rc);
    if (p->query == NULL)
        goto fail;
    if (opts->outbox_path != NULL) {
        p->outbox = outbox_new(opts->outbox_path, p->producer_id, &rc, p->error, sizeof p->error);
        if (p->outbox == NULL) {
            e = PS_ERR_OUTBOX;
            goto fail;
        }
    }
    if ((e = ask_state(p, connect_ms, &applied)) != PS_OK)
        goto fail;

    p->last_acked = applied;
    p->last_sent = applied;
    if (p->outbox != NULL) {
        restore_t r = {.p = p, .applied = applied, .rc = 0};
        if (outbox_load(p->outbox, restore_row, &r) < 0 || outbox_ack(p->outbox, applied) < 0) {
            e = PS_ERR_OUTBOX;
            goto fail;
        }
        if (r.rc < 0) {
            e = PS_ERR_NOMEM;
            goto fail;
        }
        if (outbox_last_sequence(p->outbox) > p->last_sent)
            p->last_sent = outbox_last_sequence(p->outbox);
        if (in_flight(p) > 0)
            resend_all(p, wire_monotonic_ms());
    }
    p->last_progress_ms = wire_monotonic_ms();
    *err = PS_OK;
    return p;
fail:
    *err = e;
    ps_producer_destroy(&p);
    return NULL;
}

/* ---------------------------------------------------------------- send */

ps_err_t ps_producer_send(ps_producer_t *p, const Parksync__V1__Update *update,
                          uint64_t *sequence, int timeout_ms)
{
    Parksync__V1__Update u;
    const char *why = NULL;
    char topic[WIRE_MAX_TOPIC];
    uint8_t *buf = NULL;
    size_t len = 0;
    ps_err_t err;

    if (p == NULL || update == NULL) {
        if (p != NULL)
            snprintf(p->error, sizeof p->error, "no update given");
        return PS_ERR_INVALID;
    }
    /* A shallow copy with our envelope: the caller's update is untouched. */
    u = *update;
    u.has_version = 1;
    u.version = WIRE_VERSION;
    u.producer_id = p->producer_id;
    u.has_sequence = 1;
    u.sequence = p->last_sent + 1;
    if (!u.has_event_time_us || u.event_time_us == 0) {
        u.has_event_time_us = 1;
        u.event_time_us = wire_now_us();
    }
    if (wire_update_validate(&u, &why) < 0) {
        snprintf(p->error, sizeof p->error, "invalid update: %s", why != NULL ? why : "rejected");
        return PS_ERR_INVALID;
    }
    if (wire_topic_ingest(topic, sizeof topic, wire_update_kind(&u)) < 0) {
        snprintf(p->error, sizeof p->error, "invalid update: no body");
        return PS_ERR_INVALID;
    }
    if ((err = wait_until(p, window_has_room, timeout_ms)) != PS_OK)
        return err;
    /* The window may have moved the numbering (an ack from the future). */
    u.sequence = p->last_sent + 1;
    if ((buf = wire_pack(&u.base, &len)) == NULL)
        return PS_ERR_NOMEM;
    if (len > WIRE_MAX_UPDATE) {
        snprintf(p->error, sizeof p->error, "invalid update: %zu bytes encoded, at most %d", len,
                 WIRE_MAX_UPDATE);
        err = PS_ERR_INVALID;
        goto free_buf;
    }
    /* Durable before it is on the wire. */
    if (p->outbox != NULL && outbox_put(p->outbox, u.sequence, buf, len) < 0) {
        snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
        err = PS_ERR_OUTBOX;
        goto free_buf;
    }
    if (window_push(p, u.sequence, buf, len, topic) < 0) {
        err = PS_ERR_NOMEM;
        goto free_buf;
    }
    if (in_flight(p) == 1)
        p->last_progress_ms = wire_monotonic_ms(); /* the resend timer starts now */
    p->last_sent = u.sequence;
    entry_send(p, &p->entries[p->tail - 1]);
    if (sequence != NULL)
        *sequence = u.sequence;
    err = pump(p, 0);
free_buf:
    free(buf);
    return err;
}

ps_err_t ps_producer_flush(ps_producer_t *p, int timeout_ms)
{
    if (p == NULL)
        return PS_ERR_INVALID;
    return wait_until(p, all_acked, timeout_ms);
}

ps_err_t ps_producer_poll(ps_producer_t *p)
{
    if (p == NULL)
        return PS_ERR_INVALID;
    return pump(p, 0);
}

uint64_t ps_producer_last_sent(const ps_producer_t *p)
{
    return p->last_sent;
}

uint64_t ps_producer_last_acked(const ps_producer_t *p)
{
    return p->last_acked;
}

uint64_t ps_producer_resends(const ps_producer_t *p)
{
    return p->resends;
}

const char *ps_producer_last_error(const ps_producer_t *p)
{
    return p->error;
}

void ps_producer_destroy(ps_producer_t **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    ps_producer_t *p = *pp;
    for (size_t i = p->head; i < p->tail; i++)
        free(p->entries[i].data);
    free(p->entries);
    outbox_destroy(&p->outbox);
    sock_close(&p->ingest);
    sock_close(&p->acks);
    sock_close(&p->query);
    if (p->ctx != NULL)
        zmq_ctx_term(p->ctx);
    free(p);
    *pp = NULL;
}
