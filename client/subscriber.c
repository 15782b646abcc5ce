/*
 * subscriber.c - ps_subscriber: the consolidated picture as a snapshot,
 * then live, with loss detection and recovery (the ZeroMQ Guide's Clone
 * pattern, plus what it lacks: resuming, and telling a loss on a filtered
 * stream).
 *
 * Files: subscriber.c (this one: what was delivered, and the public
 * calls), subscriber_stream.c (requests, and the snapshot and changes
 * streams), subscriber_live.c (topics and their sequences, heartbeats,
 * the live records); subscriber_int.h holds the state they share.
 *
 * Ordering. The SUB socket connects and subscribes before anything is
 * asked of the query socket, so every change after the snapshot's (or
 * changes stream's) revision R is queued in it while the stream runs.
 * Streams are flow controlled: SUBSCRIBER_CREDIT chunks granted up front
 * and the consumed ones granted again SUBSCRIBER_CREDIT_BATCH at a time,
 * so memory stays bounded on both sides. Live records with revision <=
 * the newest delivered are dropped: they are covered already, or they are
 * the second copy of a trade flow (published on the exporter's and on the
 * importer's topic).
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
#include "subscriber_int.h"
#include "wire.h"

void ps_subscriber_options_init(ps_subscriber_options_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->publish_endpoint = WIRE_DEFAULT_PUBLISH;
    opts->query_endpoint = WIRE_DEFAULT_QUERY;
    opts->kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    opts->live = true;
    opts->timeout_ms = SUBSCRIBER_DEFAULT_TIMEOUT_MS;
}

bool subscriber_record_matches(const ps_subscriber_t *s, const Parksync__V1__Record *r)
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

/* ---------------------------------------------------------------- delivering */

/* Milliseconds to wait now given a caller deadline (-1: none) and an
 * optional silence deadline (-1: none); 0 when one has passed. */
long subscriber_wait_ms(int64_t deadline, int64_t silence_deadline)
{
    int64_t now = wire_monotonic_ms(), d = deadline;
    if (silence_deadline >= 0 && (d < 0 || silence_deadline < d))
        d = silence_deadline;
    if (d < 0)
        return -1;
    return d > now ? (long)(d - now) : 0;
}

void subscriber_deliver(ps_event_t *ev, ps_event_kind_t kind, Parksync__V1__Record *r,
                        uint64_t revision, bool live)
{
    ev->kind = kind;
    ev->record = r;
    ev->revision = revision;
    ev->live = live;
}

/* ---------------------------------------------------------------- delivered above V */

/* True when revision was delivered: at or below V, or in D. */
bool subscriber_delivered(const ps_subscriber_t *s, uint64_t revision)
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
bool subscriber_note_delivered(ps_subscriber_t *s, uint64_t revision)
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
void subscriber_advance_watermark(ps_subscriber_t *s, uint64_t revision)
{
    size_t keep = 0;

    if (revision > s->revision)
        s->revision = revision;
    for (size_t i = 0; i < s->n_delivered; i++)
        if (s->delivered[i] > s->revision)
            s->delivered[keep++] = s->delivered[i];
    s->n_delivered = keep;
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
    if ((s = calloc(1, sizeof *s)) == NULL || (s->arena = wire_arena_new()) == NULL ||
        (s->pub_arena = wire_arena_new()) == NULL)
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
    if (subscriber_make_prefixes(s) < 0)
        goto fail;
    const char *why = NULL,
               *lists[SITES_LISTS] = {
                   NULL, opts->publish_endpoint ? opts->publish_endpoint : WIRE_DEFAULT_PUBLISH,
                   opts->query_endpoint ? opts->query_endpoint : WIRE_DEFAULT_QUERY};
    if ((rc = sites_parse(&s->sites, lists, &why)) < 0) {
        if (why)
            snprintf(s->last_error, sizeof s->last_error, "endpoints: %s", why);
        e = rc == -ENOMEM ? PS_ERR_NOMEM : PS_ERR_INVALID;
        goto fail;
    }
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
            zmq_connect(s->sub, sites_endpoint(&s->sites, 1)) < 0)
            goto fail;
    }
    s->query = sock_open_curve(s->ctx, ZMQ_DEALER, sites_endpoint(&s->sites, 2), 0, &curve, &rc);
    if (s->query == NULL)
        goto fail;
    /* the first site whose welcome heartbeat comes; each gets timeout_ms */
    for (size_t k = 0; s->live && k < s->sites.n; k++) {
        if ((e = subscriber_wait_welcome(s)) != PS_ERR_TIMEOUT || k + 1 == s->sites.n)
            break;
        if (sites_next(&s->sites, (void *const[SITES_LISTS]){NULL, s->sub, s->query}) < 0) {
            e = PS_ERR_SOCKET;
            break;
        }
    }
    if (s->live && e != PS_OK)
        goto fail;
    s->live_heard_ms = wire_monotonic_ms();
    if (opts->has_from_revision) {
        s->revision = opts->from_revision;
        s->end_after_changes = true;
        e = subscriber_ask_changes(s);
    } else {
        e = subscriber_ask_snapshot(s);
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
    wire_arena_reset(s->pub_arena); /* the record the last call delivered */
    s->pub = NULL;
    int64_t deadline = timeout_ms < 0 ? -1 : wire_monotonic_ms() + timeout_ms;
    for (;;) {
        ps_err_t e;
        memset(ev, 0, sizeof *ev);
        switch (s->state) {
        case SUB_SNAPSHOT:
        case SUB_CHANGES:
            e = subscriber_stream_next(s, ev, deadline);
            break;
        case SUB_LIVE:
            e = subscriber_live_next(s, ev, deadline);
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

ps_err_t subscriber_move(ps_subscriber_t *s)
{
    size_t from = s->sites.at;

    if (sites_next(&s->sites, (void *const[SITES_LISTS]){NULL, s->sub, s->query}) < 0)
        return PS_ERR_SOCKET;
    /* what the old site queued is of another history: dropped */
    for (Parksync__V1__Publication *pub;
         s->sub && sock_recv_publication(s->sub, s->pub_arena, NULL, 0, &pub) != -EAGAIN;)
        continue;
    /* the next site's heartbeats, topics and sequences are its own */
    s->has_epoch = s->has_instance = false;
    s->n_topics = s->last_topic = 0;
    s->live_heard_ms = wire_monotonic_ms();
    s->n.epoch_changes++; /* another site is another history */
    snprintf(s->last_error, sizeof s->last_error,
             "site %zu (%s) fell silent for %d ms; moved to site %zu (%s)", from + 1,
             s->sites.ep[1][from], s->timeout_ms, s->sites.at + 1, sites_endpoint(&s->sites, 1));
    return subscriber_restart_snapshot(s);
}

void ps_subscriber_destroy(ps_subscriber_t **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    ps_subscriber_t *s = *sp;
    wire_arena_free(&s->arena); /* and the chunk in it */
    wire_arena_free(&s->pub_arena);
    sock_close(&s->sub);
    sock_close(&s->query);
    if (s->ctx != NULL)
        zmq_ctx_term(s->ctx);
    free(s->topics);
    free(s->delivered);
    sites_free(&s->sites);
    free(s);
    *sp = NULL;
}
