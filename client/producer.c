/*
 * producer.c - ps_producer: numbered updates to parksyncd's ingest socket,
 * acknowledgements from its publish socket, go-back-N resends, flow
 * control, and an optional durable outbox.
 *
 * Sockets: XPUB -> ingest (2 frames: topic = kind of update, Update; XPUB
 * is PUB on the wire and also tells us when the daemon's SUB subscribes),
 * SUB <- publish subscribed to "ack/<producer_id>/" and then "hb/",
 * DEALER -> query (at start, to learn the last applied sequence).
 *
 * Slow joiner, both ways: ps_producer_new waits (bounded) for the daemon's
 * subscription on the XPUB, so the first updates are not sent into the
 * void, and for a heartbeat on the SUB: the daemon publishes one as soon
 * as it sees our "hb/" subscription, which we make after the ack
 * subscription, so a heartbeat proves that acks reach us. When the
 * daemon's subscription arrives again later (it restarted, or the
 * connection was re-made), whatever was queued on the old connection is
 * lost: everything unacknowledged is sent again at once.
 *
 * The window holds every unacknowledged update as encoded bytes, in
 * sequence order: entries[head..sent) are on the wire, entries[sent..tail)
 * are written to the open outbox batch and not yet sent. The batch is
 * committed, then sent, when it holds PRODUCER_BATCH updates, when the
 * window is full, and at every poll or flush: one outbox write per batch
 * rather than per update, and nothing on the wire before it is durable.
 * Without an outbox each update is sent at once.
 *
 * An ack for S drops everything <= S (the outbox delete is batched too).
 * When no ack advances for the current timeout, everything after the last
 * ack is sent again and the timeout doubles (up to
 * PRODUCER_MAX_TIMEOUT_MS); an advancing ack resets it to what the
 * daemon's pace says, never below ack_timeout_ms (learn_timeout). A
 * repeated ack while updates are outstanding means the daemon saw a gap:
 * resend at once, but only once per acknowledged position, so a slow
 * daemon that repeats the same ack for every queued gap does not set off
 * a storm.
 * At most `window` updates are unacknowledged: a full window blocks the
 * sender, which is how a producer slows down to the daemon's pace.
 *
 * Ahead of the database: the daemon's last sequence below the oldest
 * update we still hold minus one (at start, or an ack that goes back and
 * is repeated) means those sequences were acknowledged, by an earlier
 * database (a restored backup), and deleted here. Nothing can fill that
 * gap, so instead of resending until a timeout every call fails with
 * PS_ERR_AHEAD naming the range. A site that pulls from peers (its
 * heartbeat says so) is waited for instead: its pulls fill the gap.
 *
 * Files: producer.c (this one: starting, sending, the public calls),
 * producer_window.c (the window, acks, resends and the pump that waits
 * for them); producer_int.h holds the state they share.
 */
#include "parksync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "keys.h"
#include "outbox.h"
#include "producer_int.h"
#include "sock.h"
#include "wire.h"

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

/* ---------------------------------------------------------------- start */

/* Asks the query socket for a producer's state, retrying until the
 * deadline; request ids come from *next_id. Fills *out. errbuf gets the
 * text of a PS_ERR_REFUSED or PS_ERR_PROTOCOL. */
static ps_err_t query_state(void *query, uint64_t *next_id, const char *producer_id, int timeout_ms,
                            ps_producer_stats_t *out, char *errbuf, size_t errlen)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__ProducerStateRequest ps = PARKSYNC__V1__PRODUCER_STATE_REQUEST__INIT;
    int64_t deadline = wire_monotonic_ms() + timeout_ms, next_send = 0;
    uint64_t first_id = *next_id;

    ps.producer_id = (char *)producer_id;
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
            req.request_id = (*next_id)++;
            uint8_t *buf = wire_pack(&req.base, &len);
            if (buf == NULL)
                return PS_ERR_NOMEM;
            sock_send(query, NULL, buf, len);
            free(buf);
            next_send = now + PRODUCER_STATE_RETRY_MS;
        }
        int64_t wait = (next_send < deadline ? next_send : deadline) - now;
        zmq_pollitem_t item = {.socket = query, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, (long)wait) < 0) {
            if (zmq_errno() == EINTR)
                return PS_ERR_INTERRUPTED;
            return PS_ERR_SOCKET;
        }
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        Parksync__V1__QueryReply *rep;
        int rc = sock_recv_reply(query, NULL, &rep);
        if (rc == -EAGAIN || rc == -EPROTO)
            continue;
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        ps_err_t err = PS_ERR_PROTOCOL;
        if (rep->request_id < first_id || rep->request_id >= *next_id) {
            parksync__v1__query_reply__free_unpacked(rep, NULL); /* not ours */
            continue;
        }
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_PRODUCER_STATE) {
            const Parksync__V1__ProducerState *st = rep->producer_state;
            memset(out, 0, sizeof *out);
            out->last_sequence = st->has_last_sequence ? st->last_sequence : 0;
            out->applied = st->has_applied ? st->applied : 0;
            out->duplicates = st->has_duplicates ? st->duplicates : 0;
            out->gaps = st->has_gaps ? st->gaps : 0;
            out->rejected = st->has_rejected ? st->rejected : 0;
            out->last_seen_us = st->has_last_seen_us ? st->last_seen_us : 0;
            err = PS_OK;
        } else if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR) {
            snprintf(errbuf, errlen, "parksyncd refused the producer state request: %s",
                     rep->error->message != NULL ? rep->error->message : "no reason given");
            err = PS_ERR_REFUSED;
        } else {
            snprintf(errbuf, errlen, "unexpected reply to the producer state request");
        }
        parksync__v1__query_reply__free_unpacked(rep, NULL);
        return err;
    }
}

/* Context for restoring the outbox into the window. */
typedef struct restore {
    ps_producer_t *p; /* the producer being restored */
    uint64_t applied; /* daemon's last applied sequence: skip up to it */
    int rc;           /* first failure */
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
    if ((r->rc = producer_window_push(r->p, seq, payload, len, topic)) < 0)
        return 1;
    return 0;
}

ps_producer_t *ps_producer_new(const ps_producer_options_t *opts, ps_err_t *err)
{
    ps_producer_t *p = NULL;
    ps_err_t e = PS_ERR_INVALID;
    char topic[WIRE_MAX_TOPIC];
    int rc, on = 1;
    ps_producer_stats_t state;
    sock_curve_t curve;
    const char *why = NULL;

    if (opts == NULL || opts->producer_id == NULL || !wire_id_valid(opts->producer_id))
        goto fail;
    curve = (sock_curve_t){opts->server_public_key, opts->public_key, opts->secret_key};
    if (curve.server_key && (!keys_z85_valid(curve.server_key) || !curve.secret_key ||
                             !keys_z85_valid(curve.secret_key) ||
                             (curve.public_key && !keys_z85_valid(curve.public_key))))
        goto fail;
    e = PS_ERR_NOMEM;
    if ((p = calloc(1, sizeof *p)) == NULL)
        goto fail;
    snprintf(p->producer_id, sizeof p->producer_id, "%s", opts->producer_id);
    p->window = opts->window > 0 ? opts->window : PRODUCER_DEFAULT_WINDOW;
    p->ack_timeout_ms = opts->ack_timeout_ms > 0 ? opts->ack_timeout_ms : PRODUCER_DEFAULT_ACK_MS;
    p->cur_timeout_ms = p->ack_timeout_ms;
    p->next_request_id = 1;
    int connect_ms =
        opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : PRODUCER_DEFAULT_CONNECT_MS;
    p->silence_ms = connect_ms;
    const char *lists[SITES_LISTS] = {
        opts->ingest_endpoint ? opts->ingest_endpoint : WIRE_DEFAULT_INGEST,
        opts->publish_endpoint ? opts->publish_endpoint : WIRE_DEFAULT_PUBLISH,
        opts->query_endpoint ? opts->query_endpoint : WIRE_DEFAULT_QUERY};
    if ((rc = sites_parse(&p->sites, lists, &why)) < 0) {
        e = rc == -ENOMEM ? PS_ERR_NOMEM : PS_ERR_INVALID;
        if (why)
            snprintf(p->error, sizeof p->error, "endpoints: %s", why);
        goto fail;
    }
    e = PS_ERR_SOCKET;
    if ((p->ctx = zmq_ctx_new()) == NULL)
        goto fail;
    /* Room for the whole window twice over, so a resend burst is not
     * dropped by our own high-water mark; opts->sndhwm (tests) overrides. */
    int hwm = opts->sndhwm > 0                            ? opts->sndhwm
              : p->window > (PRODUCER_MAX_HWM - 1024) / 2 ? PRODUCER_MAX_HWM
                                                          : (int)p->window * 2 + 1024;
    p->ingest = sock_open(p->ctx, ZMQ_XPUB, NULL, hwm, &rc);
    if (p->ingest == NULL || sock_apply_curve(p->ingest, &curve) < 0 ||
        zmq_setsockopt(p->ingest, ZMQ_XPUB_VERBOSE, &on, sizeof on) < 0 ||
        zmq_connect(p->ingest, sites_endpoint(&p->sites, 0)) < 0)
        goto fail;
    p->acks = sock_open(p->ctx, ZMQ_SUB, NULL, 0, &rc);
    if (p->acks == NULL || sock_apply_curve(p->acks, &curve) < 0)
        goto fail;
    /* The ack topic first, "hb/" last: the daemon's welcome heartbeat
     * then proves both subscriptions are active. */
    if (wire_topic_ack(topic, sizeof topic, p->producer_id) < 0 ||
        zmq_setsockopt(p->acks, ZMQ_SUBSCRIBE, topic, strlen(topic)) < 0 ||
        zmq_setsockopt(p->acks, ZMQ_SUBSCRIBE, WIRE_TOPIC_HEARTBEAT, strlen(WIRE_TOPIC_HEARTBEAT)) <
            0 ||
        zmq_connect(p->acks, sites_endpoint(&p->sites, 1)) < 0)
        goto fail;
    p->query = sock_open_curve(p->ctx, ZMQ_DEALER, sites_endpoint(&p->sites, 2), 0, &curve, &rc);
    if (p->query == NULL)
        goto fail;
    if (opts->outbox_path != NULL) {
        p->outbox = outbox_new(opts->outbox_path, p->producer_id, &rc, p->error, sizeof p->error);
        if (p->outbox == NULL) {
            e = PS_ERR_OUTBOX;
            goto fail;
        }
    }
    /* the first site that answers; each gets connect_timeout_ms */
    for (size_t k = 0; k < p->sites.n; k++) {
        e = query_state(p->query, &p->next_request_id, p->producer_id, connect_ms, &state, p->error,
                        sizeof p->error);
        if (e != PS_ERR_TIMEOUT || k + 1 == p->sites.n)
            break;
        if (sites_next(&p->sites, (void *const[SITES_LISTS]){p->ingest, p->acks, p->query}) < 0) {
            e = PS_ERR_SOCKET;
            break;
        }
    }
    if (e != PS_OK)
        goto fail;
    /* The daemon is up; give the subscriptions a moment so the first
     * updates and acks are not lost to the slow joiner. Go-back-N covers
     * the rest, so this wait is bounded and not an error. */
    if ((e = producer_wait_until(p, producer_connected, PRODUCER_HANDSHAKE_MS)) != PS_OK &&
        e != PS_ERR_TIMEOUT)
        goto fail;

    p->last_acked = state.last_sequence;
    p->last_sent = state.last_sequence;
    p->outbox_deleted = 0;
    if (p->outbox != NULL) {
        restore_t r = {.p = p, .applied = state.last_sequence, .rc = 0};
        if (outbox_load(p->outbox, restore_row, &r) < 0 ||
            outbox_ack(p->outbox, state.last_sequence) < 0) {
            snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
            e = PS_ERR_OUTBOX;
            goto fail;
        }
        if (r.rc < 0) {
            e = PS_ERR_NOMEM;
            goto fail;
        }
        p->outbox_deleted = state.last_sequence;
        if (outbox_last_sequence(p->outbox) > p->last_sent)
            p->last_sent = outbox_last_sequence(p->outbox);
        p->sent = p->tail;
        if (producer_in_flight(p) > 0)
            producer_resend_all(p, wire_monotonic_ms());
        uint64_t oldest =
            producer_in_flight(p) > 0 ? p->entries[p->head].sequence : p->last_sent + 1;
        if (oldest > state.last_sequence + 1) {
            if (p->site_pulls)
                p->behind_to = oldest - 1; /* its pulls bring the rest: wait for them */
            else
                producer_set_ahead(p, state.last_sequence + 1, oldest - 1);
        }
    }
    p->last_progress_ms = p->heard_ms = wire_monotonic_ms();
    *err = PS_OK;
    return p;
fail:
    *err = e;
    ps_producer_destroy(&p);
    return NULL;
}

/* ---------------------------------------------------------------- moving */

ps_err_t producer_move(ps_producer_t *p, int64_t now)
{
    ps_producer_stats_t state;
    size_t from = p->sites.at;

    /* no heartbeat while the caller was away proves nothing: ask first */
    ps_err_t e = query_state(p->query, &p->next_request_id, p->producer_id, PRODUCER_MOVE_STATE_MS,
                             &state, p->error, sizeof p->error);
    if (e != PS_ERR_TIMEOUT) {
        p->heard_ms = wire_monotonic_ms();
        return e == PS_OK ? PS_OK : e;
    }
    if (sites_next(&p->sites, (void *const[SITES_LISTS]){p->ingest, p->acks, p->query}) < 0)
        return PS_ERR_SOCKET;
    p->subscribed = p->heard = p->site_pulls = false;
    p->heard_ms = now;             /* the next site gets a silence of its own, */
    p->srtt_ms = p->rttvar_ms = 0; /* and a resend timeout learnt anew, */
    p->looked_ms = 0;              /* with no sample from its state */
    p->cur_timeout_ms = p->ack_timeout_ms;
    e = query_state(p->query, &p->next_request_id, p->producer_id, PRODUCER_MOVE_STATE_MS, &state,
                    p->error, sizeof p->error);
    if (e == PS_ERR_TIMEOUT)
        return PS_OK; /* silent too: its silence moves on */
    if (e != PS_OK)
        return e;
    snprintf(p->error, sizeof p->error,
             "site %zu (%s) fell silent for %d ms; moved to site %zu (%s), which applied "
             "through %" PRIu64,
             from + 1, p->sites.ep[0][from], p->silence_ms, p->sites.at + 1,
             sites_endpoint(&p->sites, 0), state.last_sequence);
    if (state.last_sequence < p->last_acked)
        p->behind_to = p->last_acked; /* it catches up by pulling from its peers */
    else if ((e = producer_acked(p, state.last_sequence, now)) != PS_OK)
        return e;
    if (p->sent > p->head)
        producer_resend_all(p, now);
    return PS_OK;
}

/* ---------------------------------------------------------------- send */

/* After a failed outbox commit: the batch is gone, so its updates are
 * forgotten (never sent) and numbering resumes after the last durable one. */
static void drop_pending(ps_producer_t *p)
{
    for (size_t i = p->sent; i < p->tail; i++)
        free(p->entries[i].data);
    p->tail = p->sent;
    p->last_sent = p->sent > p->head ? p->entries[p->sent - 1].sequence : p->last_acked;
    if (p->outbox != NULL && outbox_last_sequence(p->outbox) > p->last_sent)
        p->last_sent = outbox_last_sequence(p->outbox);
}

ps_err_t ps_producer_send(ps_producer_t *p, const Parksync__V1__Update *update, uint64_t *sequence,
                          int timeout_ms)
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
    if (p->missing_to > 0)
        return PS_ERR_AHEAD;
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
    if (!producer_window_has_room(p) &&
        (err = producer_wait_until(p, producer_window_has_room, timeout_ms)) != PS_OK) {
        if (err == PS_ERR_OUTBOX)
            drop_pending(p);
        return err;
    }
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
    /* Durable before it is on the wire: into the outbox batch now, sent
     * when the batch commits. */
    if (p->outbox != NULL) {
        if ((outbox_begin(p->outbox) < 0 || outbox_add(p->outbox, u.sequence, buf, len) < 0)) {
            snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
            outbox_rollback(p->outbox);
            drop_pending(p);
            err = PS_ERR_OUTBOX;
            goto free_buf;
        }
    }
    if (producer_window_take(p, u.sequence, buf, len, topic) < 0) {
        err = PS_ERR_NOMEM;
        goto free_buf;
    }
    buf = NULL; /* the window's now */
    p->last_sent = u.sequence;
    if (sequence != NULL)
        *sequence = u.sequence;
    err = PS_OK;
    if (p->outbox == NULL || p->tail - p->sent >= PRODUCER_BATCH || !producer_window_has_room(p)) {
        if ((err = producer_flush_pending(p)) != PS_OK) {
            drop_pending(p);
            goto free_buf;
        }
    }
    if (++p->unserviced >= PRODUCER_SERVICE_EVERY || !producer_window_has_room(p))
        err = producer_service(p);
free_buf:
    free(buf);
    return err;
}

ps_err_t ps_producer_flush(ps_producer_t *p, int timeout_ms)
{
    ps_err_t err;

    if (p == NULL)
        return PS_ERR_INVALID;
    if (p->missing_to > 0)
        return PS_ERR_AHEAD;
    err = producer_wait_until(p, producer_all_acked, timeout_ms);
    if (err == PS_OK)
        err = producer_outbox_trim(p, true);
    else if (err == PS_ERR_OUTBOX)
        drop_pending(p);
    return err;
}

ps_err_t ps_producer_poll(ps_producer_t *p)
{
    return ps_producer_wait(p, 0);
}

ps_err_t ps_producer_wait(ps_producer_t *p, int64_t timeout_us)
{
    ps_err_t err;

    if (p == NULL || timeout_us < 0)
        return PS_ERR_INVALID;
    if (p->missing_to > 0)
        return PS_ERR_AHEAD;
    err = producer_pump(p, timeout_us);
    if (err == PS_ERR_OUTBOX)
        drop_pending(p);
    return err;
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

bool ps_producer_missing(const ps_producer_t *p, uint64_t *from, uint64_t *to)
{
    if (p == NULL || p->missing_to == 0)
        return false;
    *from = p->missing_from;
    *to = p->missing_to;
    return true;
}

const char *ps_producer_daemon_health(const ps_producer_t *p, int64_t *since_us)
{
    if (since_us)
        *since_us = p->health_since_us;
    return p->health[0] ? p->health : NULL;
}

const char *ps_producer_last_error(const ps_producer_t *p)
{
    return p->error;
}

ps_err_t ps_producer_note(ps_producer_t *p, const char *key, char *buf, size_t size)
{
    if (p == NULL || key == NULL || buf == NULL || size == 0)
        return PS_ERR_INVALID;
    buf[0] = '\0';
    if (p->outbox == NULL)
        return PS_ERR_CLOSED;
    int rc = outbox_note_get(p->outbox, key, buf, size);
    if (rc == -ENOENT)
        return PS_ERR_CLOSED;
    if (rc < 0) {
        snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
        return PS_ERR_OUTBOX;
    }
    return PS_OK;
}

ps_err_t ps_producer_set_note(ps_producer_t *p, const char *key, const char *value)
{
    if (p == NULL || key == NULL || p->outbox == NULL)
        return PS_ERR_INVALID;
    /* Pending updates first, so a note never claims more than is durable. */
    ps_err_t err = producer_flush_pending(p);
    if (err != PS_OK) {
        drop_pending(p);
        return err;
    }
    if (outbox_note_set(p->outbox, key, value) < 0) {
        snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
        return PS_ERR_OUTBOX;
    }
    return PS_OK;
}

ps_err_t ps_producer_query(const ps_producer_options_t *opts, int timeout_ms,
                           ps_producer_stats_t *out)
{
    const char *producer_id = opts ? opts->producer_id : NULL;
    char errbuf[256];
    uint64_t next_id = (uint64_t)wire_now_us();
    void *ctx, *query;
    int rc;
    ps_err_t err;

    if (producer_id == NULL || !wire_id_valid(producer_id) || out == NULL)
        return PS_ERR_INVALID;
    sites_t sites;
    const char *why,
        *lists[SITES_LISTS] = {NULL, NULL,
                               opts->query_endpoint ? opts->query_endpoint : WIRE_DEFAULT_QUERY};
    if ((rc = sites_parse(&sites, lists, &why)) < 0)
        return rc == -ENOMEM ? PS_ERR_NOMEM : PS_ERR_INVALID;
    if ((ctx = zmq_ctx_new()) == NULL) {
        sites_free(&sites);
        return PS_ERR_SOCKET;
    }
    query =
        sock_open_curve(ctx, ZMQ_DEALER, sites_endpoint(&sites, 2), 0, SOCK_CURVE_OF(opts), &rc);
    err = query ? PS_ERR_TIMEOUT : PS_ERR_SOCKET;
    /* the first site that answers, each within timeout_ms */
    for (size_t k = 0; query && k < sites.n && err == PS_ERR_TIMEOUT; k++) {
        if (k > 0 && sites_next(&sites, (void *const[SITES_LISTS]){NULL, NULL, query}) < 0)
            err = PS_ERR_SOCKET;
        else
            err = query_state(query, &next_id, producer_id, timeout_ms > 0 ? timeout_ms : 5000, out,
                              errbuf, sizeof errbuf);
    }
    sock_close(&query);
    zmq_ctx_term(ctx);
    sites_free(&sites);
    return err;
}

void ps_producer_destroy(ps_producer_t **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    ps_producer_t *p = *pp;
    /* What send accepted is kept: commit the batch (not sent), and drop
     * what is acknowledged. Errors have nowhere to go here. */
    if (p->outbox != NULL) {
        if (outbox_commit(p->outbox) < 0)
            outbox_rollback(p->outbox);
        producer_outbox_trim(p, true);
    }
    for (size_t i = p->head; i < p->tail; i++)
        free(p->entries[i].data);
    free(p->entries);
    wire_buf_free(&p->batch);
    outbox_destroy(&p->outbox);
    sock_close(&p->ingest);
    sock_close(&p->acks);
    sock_close(&p->query);
    if (p->ctx != NULL)
        zmq_ctx_term(p->ctx);
    sites_free(&p->sites);
    free(p);
    *pp = NULL;
}
