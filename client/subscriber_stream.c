/*
 * subscriber_stream.c - ps_subscriber's requests to the query socket and
 * the snapshot and changes streams they start: flow control by credit,
 * asking again after BUSY or silence, recovery (the changes since V) and
 * the fresh snapshot after a reset. See subscriber.c for the rules.
 */
#include "parksync.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sock.h"
#include "subscriber_int.h"
#include "wire.h"

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
    wire_arena_reset(s->arena);
    s->chunk = NULL;
    s->pos = 0;
    s->owed = 0;
    s->request_id++;
    s->last_heard_ms = wire_monotonic_ms();
}

ps_err_t subscriber_ask_snapshot(ps_subscriber_t *s)
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

ps_err_t subscriber_ask_changes(ps_subscriber_t *s)
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

/* Recovery (rule 4) after a loss or a restart: the changes since V. */
ps_err_t subscriber_resync(ps_subscriber_t *s)
{
    s->n.resyncs++;
    s->recovering = true;
    return subscriber_ask_changes(s);
}

/* Continuity is gone: announce a reset, then take a fresh snapshot. */
ps_err_t subscriber_restart_snapshot(ps_subscriber_t *s)
{
    s->pending_reset = true;
    s->recovering = true;
    s->revision = 0;
    s->n_delivered = 0;
    return subscriber_ask_snapshot(s);
}

/* Grants the chunks consumed since the last grant, if any. */
static ps_err_t grant_owed(ps_subscriber_t *s)
{
    Parksync__V1__QueryRequest req = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__Credit credit = PARKSYNC__V1__CREDIT__INIT;

    if (s->owed == 0)
        return PS_OK;
    credit.has_chunks = 1;
    credit.chunks = s->owed;
    s->owed = 0;
    req.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT;
    req.credit = &credit;
    return send_request(s, &req);
}

/* Counts a consumed chunk and grants the consumed ones again once
 * SUBSCRIBER_CREDIT_BATCH have gathered: one message for many chunks,
 * while the daemon still holds credit for the rest of the window.
 * next_chunk grants them before it waits, so a daemon that granted the
 * stream less than a batch is never left without. */
static ps_err_t grant_credit(ps_subscriber_t *s)
{
    return ++s->owed < SUBSCRIBER_CREDIT_BATCH ? PS_OK : grant_owed(s);
}

/* ---------------------------------------------------------------- streams */

/* Handles an error reply to the running stream. PS_OK when the
 * subscriber recovers by itself (a fresh snapshot follows). */
static ps_err_t stream_error(ps_subscriber_t *s, const Parksync__V1__Error *e)
{
    snprintf(s->last_error, sizeof s->last_error, "%s",
             e->message ? e->message : "refused by the daemon");
    if (e->code == PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD && s->state == SUB_CHANGES) {
        s->n.too_old++;
        s->end_after_changes = false;
        return subscriber_restart_snapshot(s);
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
    return s->state == SUB_CHANGES ? subscriber_ask_changes(s) : subscriber_ask_snapshot(s);
}

/* Waits for the next reply of the running stream; PS_OK with s->chunk
 * set, or PS_OK with no chunk when the stream was replaced (recovery). */
static ps_err_t next_chunk(ps_subscriber_t *s, int64_t deadline)
{
    for (;;) {
        int64_t now = wire_monotonic_ms(), silence = s->last_heard_ms + s->timeout_ms;
        bool waiting = s->retry_at_ms > 0; /* after BUSY: no request out */
        if (waiting ? now >= s->retry_at_ms : now >= silence) {
            if (!waiting && s->sites.n > 1)
                return subscriber_move(s); /* the next site's snapshot */
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
            if (zmq_poll(NULL, 0, subscriber_wait_ms(deadline, s->retry_at_ms)) < 0 &&
                zmq_errno() == EINTR)
                return PS_ERR_INTERRUPTED;
            continue;
        }
        /* look before giving up: a timeout of 0 still takes what is there */
        long w = subscriber_wait_ms(deadline, silence);
        zmq_pollitem_t item = {.socket = s->query, .events = ZMQ_POLLIN};
        if (s->owed > 0) {
            /* nothing to read: the credit owed goes before the wait */
            if (zmq_poll(&item, 1, 0) < 0)
                return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
            ps_err_t e = item.revents & ZMQ_POLLIN ? PS_OK : grant_owed(s);
            if (e != PS_OK)
                return e;
        }
        if (!(item.revents & ZMQ_POLLIN) && zmq_poll(&item, 1, w) < 0)
            return zmq_errno() == EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        if (!(item.revents & ZMQ_POLLIN)) {
            if (deadline >= 0 && wire_monotonic_ms() >= deadline)
                return PS_ERR_TIMEOUT;
            continue;
        }
        Parksync__V1__QueryReply *rep;
        int rc = sock_recv_reply(s->query, s->arena, &rep);
        if (rc == -EAGAIN)
            continue;
        if (rc == -EPROTO) {
            s->n.bad_frames++;
            continue;
        }
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        if (rep->request_id != s->request_id)
            continue; /* a stream we gave up */
        s->last_heard_ms = wire_monotonic_ms();
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK) {
            const Parksync__V1__Chunk *c = rep->chunk;
            if (c->has_epoch && c->epoch.len == WIRE_EPOCH_BYTES) {
                bool other = s->has_epoch && memcmp(c->epoch.data, s->epoch, WIRE_EPOCH_BYTES);
                memcpy(s->epoch, c->epoch.data, WIRE_EPOCH_BYTES);
                s->has_epoch = true;
                if (other && (s->state == SUB_CHANGES || s->recovering)) {
                    /* another database: our revision means nothing there */
                    wire_arena_reset(s->arena);
                    s->n.epoch_changes++;
                    s->end_after_changes = false;
                    return subscriber_restart_snapshot(s);
                }
            }
            s->chunk = rep;
            s->pos = 0;
            s->busy_wait_ms = 0;
            return PS_OK;
        }
        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR) {
            ps_err_t e = stream_error(s, rep->error);
            wire_arena_reset(s->arena);
            return e;
        }
        s->n.bad_frames++; /* a pong or the like: not for this stream */
    }
}

/* Delivers the next record of the running snapshot or changes stream, or
 * the snapshot's end. PS_ERR_AGAIN-like: returns PS_OK with ev->kind 0
 * when the stream ended without an event (a recovery went back to live). */
ps_err_t subscriber_stream_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline)
{
    for (;;) {
        if (s->pending_reset) {
            s->pending_reset = false;
            subscriber_deliver(ev, PS_EVENT_RESET, NULL, 0, false);
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
            if (!subscriber_record_matches(s, r))
                continue;
            if (changes && subscriber_delivered(s, r->revision))
                continue;
            subscriber_deliver(ev, PS_EVENT_RECORD, r, r->revision, false);
            return PS_OK;
        }
        bool last = c->has_last && c->last;
        uint64_t revision = c->has_revision ? c->revision : 0;
        wire_arena_reset(s->arena);
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
            subscriber_deliver(ev, PS_EVENT_SNAPSHOT_END, NULL, revision, false);
            return PS_OK;
        }
        /* every matching change up to the stream's head is delivered */
        subscriber_advance_watermark(s, revision);
        if (s->end_after_changes) {
            s->end_after_changes = false;
            subscriber_deliver(ev, PS_EVENT_SNAPSHOT_END, NULL, s->revision, false);
            return PS_OK;
        }
        return PS_OK; /* back to live, no event */
    }
}
