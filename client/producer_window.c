/*
 * producer_window.c - ps_producer's go-back-N engine: the window of
 * unacknowledged updates, sending it as UpdateBatch messages, the outbox
 * batch committed before anything is sent, acks and heartbeats from the
 * publish socket, resends on timeout or a repeated ack, and the pump that
 * waits for all of it. See producer.c for the rules.
 */
#include "parksync.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "outbox.h"
#include "producer_int.h"
#include "sock.h"
#include "wire.h"

/* ---------------------------------------------------------------- window */

size_t producer_in_flight(const ps_producer_t *p)
{
    return p->tail - p->head;
}

/* Appends an update to the window, which takes `data` (malloc'd) over
 * when this succeeds. */
int producer_window_take(ps_producer_t *p, uint64_t seq, uint8_t *data, size_t len,
                         const char *topic)
{
    if (p->tail == p->cap) {
        if (p->head > 0) {
            memmove(p->entries, p->entries + p->head, producer_in_flight(p) * sizeof *p->entries);
            p->tail -= p->head;
            p->sent -= p->head;
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
    size_t tlen = strnlen(topic, sizeof e->topic - 1);
    e->data = data;
    e->len = len;
    e->sequence = seq;
    memcpy(e->topic, topic, tlen);
    e->topic[tlen] = '\0';
    p->tail++;
    return 0;
}

/* Appends a copy of an update to the window. */
int producer_window_push(ps_producer_t *p, uint64_t seq, const void *data, size_t len,
                         const char *topic)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, data, len);
    if (producer_window_take(p, seq, copy, len, topic) < 0) {
        free(copy);
        return -ENOMEM;
    }
    return 0;
}

/* Sends entries[from..to): runs of updates as UpdateBatch messages (one
 * message costs both ends' ZeroMQ threads about as much as a whole
 * batch's bytes), a lone update as itself. Never blocks: past the
 * high-water mark a message is dropped, and go-back-N sends again what
 * the daemon did not acknowledge. The high-water mark is sized above the
 * window, so in normal operation it drops nothing. */
static void send_entries(ps_producer_t *p, size_t from, size_t to)
{
    int64_t now = wire_monotonic_ms();

    for (size_t i = from; i < to; i++)
        p->entries[i].sent_ms = now;
    while (from < to) {
        const entry_t *e = &p->entries[from];
        size_t n = 0;

        wire_buf_reset(&p->batch);
        while (to - from > 1 && from + n < to && n < PRODUCER_BATCH_UPDATES &&
               p->batch.len + p->entries[from + n].len + 8 <= WIRE_MAX_BATCH_BYTES &&
               wire_buf_put_bytes(&p->batch, 1, p->entries[from + n].data,
                                  p->entries[from + n].len) == 0)
            n++;
        if (n <= 1) {
            sock_send(p->ingest, e->topic, e->data, e->len);
            n = 1;
        } else {
            sock_send(p->ingest, WIRE_TOPIC_BATCH, p->batch.data, p->batch.len);
        }
        from += n;
    }
}

/*
 * The resend timeout follows how long this daemon takes to acknowledge,
 * as TCP's follows the round trip (RFC 6298): each advance is a sample,
 * from the send of the first update it acknowledges anew to the ack,
 * except across a resend (which send did the ack answer?), and
 * unless acks were read within PRODUCER_POLL_SLICE_MS before (an ack that
 * waited for the caller to come back says how long the caller was away,
 * not how slow the daemon is). A
 * daemon whose commits take longer than ack_timeout_ms (a slow disk, a
 * large batch) would otherwise be sent its whole window again at each of
 * them, and take longer still. ack_timeout_ms stays the least.
 */
static void learn_timeout(ps_producer_t *p, int64_t waited_ms)
{
    int r = waited_ms > PRODUCER_MAX_TIMEOUT_MS ? PRODUCER_MAX_TIMEOUT_MS
            : waited_ms < 1                     ? 1
                                                : (int)waited_ms;
    if (p->srtt_ms == 0) {
        p->srtt_ms = r;
        p->rttvar_ms = r / 2;
        return;
    }
    p->rttvar_ms = (3 * p->rttvar_ms + abs(p->srtt_ms - r)) / 4;
    p->srtt_ms = (7 * p->srtt_ms + r) / 8;
}

/* The timeout after progress: ack_timeout_ms, or more when the daemon's
 * waits say so, up to PRODUCER_MAX_TIMEOUT_MS: srtt + 4 rttvar, with at
 * least half of ack_timeout_ms above srtt. A daemon that takes as long
 * every time (a pause of 800 ms at each commit) brings rttvar near 0,
 * and the timeout with it to the wait itself: a stall of a few ms more
 * then sent the whole window again. TCP's timer keeps such a floor too
 * (RFC 6298's clock granularity, Linux's rto_min). */
static int base_timeout(const ps_producer_t *p)
{
    int dev = 4 * p->rttvar_ms, t;
    if (dev < p->ack_timeout_ms / 2)
        dev = p->ack_timeout_ms / 2;
    t = p->srtt_ms + dev;
    if (t < p->ack_timeout_ms)
        t = p->ack_timeout_ms;
    return t > PRODUCER_MAX_TIMEOUT_MS ? PRODUCER_MAX_TIMEOUT_MS : t;
}

/* Sends again everything on the wire and unacknowledged. */
void producer_resend_all(ps_producer_t *p, int64_t now)
{
    send_entries(p, p->head, p->sent);
    p->resends += p->sent - p->head;
    p->resent = true;
    p->last_resend_ms = now;
    p->last_progress_ms = now;
}

/* Commits the outbox batch, then sends what it held: durable before it is
 * on the wire. */
ps_err_t producer_flush_pending(ps_producer_t *p)
{
    if (p->outbox != NULL && outbox_in_batch(p->outbox) && outbox_commit(p->outbox) < 0) {
        snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
        return PS_ERR_OUTBOX;
    }
    if (p->sent == p->tail)
        return PS_OK;
    if (p->sent == p->head)
        p->last_progress_ms = wire_monotonic_ms(); /* the resend timer starts now */
    send_entries(p, p->sent, p->tail);
    p->sent = p->tail;
    return PS_OK;
}

/* Deletes acknowledged updates from the outbox: inside the open batch when
 * there is one, else when enough have piled up or all are acked. */
ps_err_t producer_outbox_trim(ps_producer_t *p, bool force)
{
    if (p->outbox == NULL || p->last_acked <= p->outbox_deleted)
        return PS_OK;
    if (!force && !outbox_in_batch(p->outbox) &&
        p->last_acked - p->outbox_deleted < PRODUCER_BATCH && p->last_acked < p->last_sent)
        return PS_OK;
    if (outbox_ack(p->outbox, p->last_acked) < 0) {
        snprintf(p->error, sizeof p->error, "%s", outbox_errmsg(p->outbox));
        return PS_ERR_OUTBOX;
    }
    p->outbox_deleted = p->last_acked;
    return PS_OK;
}

/* ---------------------------------------------------------------- acks */

/* Marks the producer ahead of the daemon's database: from..to are gone. */
ps_err_t producer_set_ahead(ps_producer_t *p, uint64_t from, uint64_t to)
{
    p->missing_from = from;
    p->missing_to = to;
    snprintf(p->error, sizeof p->error,
             "producer %s is ahead of parksyncd's database: sequences %" PRIu64 "..%" PRIu64
             " are missing there (a restored backup?) and no longer held here",
             p->producer_id, from, to);
    return PS_ERR_AHEAD;
}

ps_err_t producer_acked(ps_producer_t *p, uint64_t acked, int64_t now)
{
    if (acked < p->last_acked && (p->behind_to != 0 || p->site_pulls)) {
        /* The site is catching up with its peers: we moved to it, or it
         * lost its disk and gets back what it acknowledged by pulling. */
        if (p->behind_to < p->last_acked)
            p->behind_to = p->last_acked;
        return PS_OK;
    }
    if (acked < p->last_acked) {
        /* The daemon went back (its database was replaced); once is
         * perhaps an old ack still on the way, twice the same is its
         * answer to our resends. */
        if (acked == p->back_ack)
            return producer_set_ahead(p, acked + 1, p->last_acked);
        p->back_ack = acked;
        return PS_OK;
    }
    if (acked >= p->behind_to)
        p->behind_to = 0;
    if (acked > p->last_acked) {
        if (p->sent > p->head && !p->resent && now - p->looked_ms <= PRODUCER_POLL_SLICE_MS)
            learn_timeout(p, now - p->entries[p->head].sent_ms);
        /* The daemon is ahead of us only if another process used our id;
         * numbering must continue after what it applied. */
        if (acked > p->last_sent)
            p->last_sent = acked;
        while (p->head < p->sent && p->entries[p->head].sequence <= acked) {
            free(p->entries[p->head].data);
            p->head++;
        }
        if (p->head == p->tail)
            p->head = p->sent = p->tail = 0;
        p->last_acked = acked;
        /* after a resend the backed-off timeout stays until a sample
         * (RFC 6298, 5.7): a daemon slower than every timeout so far
         * would else be resent to at every commit and never sampled */
        if (!p->resent)
            p->cur_timeout_ms = base_timeout(p);
        p->resent = false;
        p->last_progress_ms = now;
        return producer_outbox_trim(p, false);
    }
    if (acked == p->last_acked && p->sent > p->head && p->fast_resend_for != acked + 1 &&
        now - p->last_resend_ms >= PRODUCER_FAST_RESEND_MS) {
        /* A gap at the daemon: the next one was lost. Once per position;
         * the timeout covers a resend that is lost too. */
        p->fast_resend_for = acked + 1;
        producer_resend_all(p, now);
    }
    return PS_OK;
}

/* Reads the daemon's (un)subscriptions from the XPUB. A subscription after
 * the first means a new connection: what the old one held is gone. */
static void drain_subscriptions(ps_producer_t *p, int64_t now)
{
    for (int i = 0; i < PRODUCER_DRAIN_BUDGET; i++) {
        uint8_t buf[WIRE_MAX_TOPIC];
        int n = zmq_recv(p->ingest, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0)
            return;
        if (n < 1 || buf[0] != 1)
            continue; /* an unsubscription: the connection went away */
        if (p->subscribed && p->sent > p->head)
            producer_resend_all(p, now);
        p->subscribed = true;
    }
}

/* A heartbeat: our ack subscription is live, and it says whether the
 * daemon is degraded (why acks may not come) and whether it pulls from
 * peers (why its acks may trail ours for a while). */
static void on_heartbeat(ps_producer_t *p, const Parksync__V1__Heartbeat *hb)
{
    const Parksync__V1__Health *h = hb->health;

    p->heard = true;
    p->site_pulls = hb->has_pulls && hb->pulls;
    if (h && h->degraded) {
        snprintf(p->health, sizeof p->health, "%s", h->reason ? h->reason : "(no reason given)");
        p->health_since_us = h->since_us;
    } else {
        p->health[0] = '\0';
        p->health_since_us = 0;
    }
}

/* Reads every waiting ack without blocking. */
static ps_err_t drain_acks(ps_producer_t *p)
{
    for (int i = 0; i < PRODUCER_DRAIN_BUDGET; i++) {
        Parksync__V1__Publication *pub;
        int rc = sock_recv_publication(p->acks, NULL, NULL, 0, &pub);
        if (rc == -EAGAIN)
            return PS_OK;
        if (rc == -EPROTO) {
            p->bad_frames++;
            continue;
        }
        if (rc < 0)
            return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
        ps_err_t err = PS_OK;
        p->heard_ms = wire_monotonic_ms(); /* the site in use is alive */
        if (pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_ACK &&
            strcmp(pub->ack->producer_id, p->producer_id) == 0)
            err = producer_acked(p, pub->ack->last_sequence, wire_monotonic_ms());
        else if (pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT)
            on_heartbeat(p, pub->heartbeat);
        parksync__v1__publication__free_unpacked(pub, NULL);
        if (err != PS_OK)
            return err;
    }
    return PS_OK;
}

/* Reads acks and subscriptions without blocking, then resends when due. */
ps_err_t producer_service(ps_producer_t *p)
{
    p->unserviced = 0;
    ps_err_t err = drain_acks(p);
    p->looked_ms = wire_monotonic_ms();
    if (err != PS_OK)
        return err;
    int64_t now = wire_monotonic_ms();
    if (p->sites.n > 1 && now - p->heard_ms > p->silence_ms &&
        (err = producer_move(p, now)) != PS_OK)
        return err;
    drain_subscriptions(p, now);
    if (p->sent > p->head && now - p->last_progress_ms >= p->cur_timeout_ms) {
        producer_resend_all(p, now);
        p->cur_timeout_ms = p->cur_timeout_ms * 2 > PRODUCER_MAX_TIMEOUT_MS
                                ? PRODUCER_MAX_TIMEOUT_MS
                                : p->cur_timeout_ms * 2;
    }
    return PS_OK;
}

/* One pass: commit and send the outbox batch, wait up to wait_us (or
 * the resend deadline) for acks, read them, resend when due. */
ps_err_t producer_pump(ps_producer_t *p, int64_t wait_us)
{
    ps_err_t err = producer_flush_pending(p);
    if (err != PS_OK)
        return err;
    if (p->sent > p->head) {
        int64_t due = (p->last_progress_ms + p->cur_timeout_ms - wire_monotonic_ms()) * 1000;
        if (due < wait_us)
            wait_us = due < 0 ? 0 : due;
    }
    void *const socks[2] = {p->acks, p->ingest};
    int rc = sock_wait_us(socks, 2, wait_us);
    if (rc < 0)
        return rc == -EINTR ? PS_ERR_INTERRUPTED : PS_ERR_SOCKET;
    return producer_service(p);
}

/* Pumps until done(p) or the deadline (-1: none). */
ps_err_t producer_wait_until(ps_producer_t *p, bool (*done)(const ps_producer_t *), int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : wire_monotonic_ms() + timeout_ms;
    ps_err_t err = producer_pump(p, 0);

    while (err == PS_OK && !done(p)) {
        int slice = PRODUCER_POLL_SLICE_MS;
        if (deadline >= 0) {
            int64_t left = deadline - wire_monotonic_ms();
            if (left <= 0)
                return PS_ERR_TIMEOUT;
            if (left < slice)
                slice = (int)left;
        }
        err = producer_pump(p, (int64_t)slice * 1000);
    }
    return err;
}

bool producer_window_has_room(const ps_producer_t *p)
{
    return producer_in_flight(p) < p->window;
}

bool producer_all_acked(const ps_producer_t *p)
{
    return p->last_acked >= p->last_sent;
}

bool producer_connected(const ps_producer_t *p)
{
    return p->subscribed && p->heard;
}
