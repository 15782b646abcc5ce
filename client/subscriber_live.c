/*
 * subscriber_live.c - ps_subscriber's live side: the record prefixes it
 * subscribes to, the stream sequence of every topic, the welcome and the
 * later heartbeats, and the live records with their loss checks. See
 * subscriber.c for the rules.
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

/* ---------------------------------------------------------------- topics and sequences */

/* The record prefixes to subscribe to: pure prefix filtering at the
 * daemon, trade flows included (they go out under both countries). */
int subscriber_make_prefixes(ps_subscriber_t *s)
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
        return subscriber_restart_snapshot(s);
    }
    if (hb->has_instance && hb->instance.len == WIRE_INSTANCE_BYTES &&
        (!s->has_instance || memcmp(hb->instance.data, s->instance, WIRE_INSTANCE_BYTES) != 0)) {
        bool known = s->has_instance;
        adopt_identity(s, hb);
        adopt_sequences(s, hb);
        if (!known)
            return PS_OK; /* no welcome heartbeat came: start from this one */
        s->n.restarts++;
        return subscriber_resync(s);
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
        subscriber_advance_watermark(s, head);
        return PS_OK;
    }
    s->n.gaps++;
    if (hb->has_head_revision && head <= s->revision)
        return PS_OK; /* everything lost lies at or below V: delivered already */
    return subscriber_resync(s);
}

/* ---------------------------------------------------------------- receiving */

/* Waits up to timeout_ms for the welcome heartbeat on the SUB (see the
 * top). Records before it are covered by the coming snapshot. A daemon
 * that stays silent is not an error here; the stream request times out. */
ps_err_t subscriber_wait_welcome(ps_subscriber_t *s)
{
    int64_t deadline = wire_monotonic_ms() + s->timeout_ms;

    for (;;) {
        Parksync__V1__Publication *pub;
        int rc = sock_recv_publication(s->sub, s->pub_arena, NULL, 0, &pub);
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
        if (hb)
            return PS_OK;
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

ps_err_t subscriber_live_next(ps_subscriber_t *s, ps_event_t *ev, int64_t deadline)
{
    for (;;) {
        Parksync__V1__Publication *pub;
        char topic[WIRE_MAX_TOPIC];
        int rc = sock_recv_publication(s->sub, s->pub_arena, topic, sizeof topic, &pub);
        if (rc == -EAGAIN) {
            /* with several sites, silence (no heartbeat) moves to the next */
            int64_t silence = s->sites.n > 1 ? s->live_heard_ms + s->timeout_ms : -1;
            if (silence >= 0 && wire_monotonic_ms() >= silence) {
                ps_err_t e = subscriber_move(s);
                return e != PS_OK ? e : PS_OK; /* the caller runs the snapshot */
            }
            long w = subscriber_wait_ms(deadline, silence);
            if (w == 0 && (deadline < 0 || wire_monotonic_ms() < deadline))
                continue; /* the silence deadline: looked at above */
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
        s->live_heard_ms = wire_monotonic_ms();
        if (pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT) {
            ps_err_t e = live_heartbeat(s, pub->heartbeat);
            if (e != PS_OK)
                return e;
            if (s->state != SUB_LIVE)
                return PS_OK; /* the caller runs the recovery stream */
            continue;
        }
        if (pub->body_case != PARKSYNC__V1__PUBLICATION__BODY_RECORD)
            continue;
        if (!sequence_ok(s, topic, pub)) {
            s->n.gaps++;
            if (pub->record->revision > s->revision) {
                /* rule 2: what was lost lies below this record, maybe
                 * above V; this record and the lost ones come in the
                 * changes since V */
                return subscriber_resync(s);
            }
            /* lost below this record, at or below V: delivered already */
        }
        if (pub->has_repeat && pub->repeat) {
            s->n.repeats++;
            continue;
        }
        bool dup = subscriber_delivered(s, pub->record->revision);
        if (dup || !subscriber_record_matches(s, pub->record)) {
            if (dup)
                s->n.duplicates++;
            continue;
        }
        if (!subscriber_note_delivered(s, pub->record->revision)) {
            /* D is full (no clean heartbeat for a long while): recover,
             * which moves V past everything delivered */
            return subscriber_resync(s);
        }
        s->pub = pub;
        subscriber_deliver(ev, PS_EVENT_RECORD, pub->record, pub->record->revision, true);
        return PS_OK;
    }
}
