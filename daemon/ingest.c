/*
 * ingest.c - the ingest socket and the batch: updates read from producers
 * are applied in one store transaction per pass (group commit), which is
 * committed, published and acked, or rolled back on a storage failure
 * with nothing acked or counted (server_int.h).
 */
#include "server_int.h"

/* ---------------------------------------------------------------- the batch */

/*
 * A store call failed; what says what the daemon was doing, and errmsg
 * is SQLite's message. Logged (rate-limited: under a full disk every
 * resend fails again), and the health says so: a malformed database until
 * a check passes, a failure to write (write) until a batch commits.
 */
void server_store_failed(server_t *s, int rc, bool write, const char *what, const char *errmsg)
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

int batch_begin(server_t *s)
{
    int rc;

    if (s->batch_open)
        return 0;
    rc = store_begin(s->store);
    if (rc < 0) {
        server_store_failed(s, rc, true, "cannot start a transaction", store_errmsg(s->store));
        return rc;
    }
    s->batch_open = true;
    return 0;
}

void batch_abort(server_t *s, int rc, const char *what)
{
    server_store_failed(s, rc, true, what, store_errmsg(s->store));
    store_rollback(s->store);
    s->batch_open = false;
    strmap_clear(&s->touched);
    memset(&s->pend, 0, sizeof s->pend);
    s->n.store_errors++;
}

/* ---------------------------------------------------------------- durable */

/* The WAL could not be synced: what was written since the last sync
 * that returned is in an unknown state (the kernel may have dropped the
 * pages it failed to write), so nothing more is told to anyone and the
 * daemon stops with a failure. At the next start SQLite recovers the WAL
 * to its last whole commit, and producers resend what was not acked. */
static void durable_failed(server_t *s, int err)
{
    log_error("cannot sync the WAL %s: %s; nothing committed since the last sync is "
              "acknowledged or published, and the daemon stops (producers resend)",
              store_wal_path(s->store), strerror(-err));
    s->sync_failed = true;
}

static void durable_start(server_t *s)
{
    int rc;

    if (s->sync_failed)
        return; /* a later sync would not tell what the failed one lost */
    if ((rc = syncer_start(s->syncer)) < 0)
        durable_failed(s, rc);
}

/* The sync that covered gen[0] returned result: its commits are
 * published and acked, and the next generation's sync starts. */
static void durable_told(server_t *s, int result)
{
    struct durable_gen *g = &s->gen[0], next;

    if (result < 0) {
        durable_failed(s, result);
        return;
    }
    pause_add(&s->n.wal_sync, syncer_last_us(s->syncer));
    publish_changes(s, g->head);
    for (size_t i = 0; i < g->acks.cap; i++)
        if (g->acks.slots[i].key[0] != '\0')
            publish_ack_at(s, g->acks.slots[i].key, g->acks.slots[i].value);
    strmap_clear(&g->acks);
    g->any = false;
    next = s->gen[1];
    s->gen[1] = s->gen[0];
    s->gen[0] = next;
    if (s->gen[0].any)
        durable_start(s);
}

/* True when ingest has a message waiting for the loop. */
static bool ingest_waiting(server_t *s)
{
    int events = 0;
    size_t len = sizeof events;

    return zmq_getsockopt(s->ingest, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN);
}

/* After a commit with the syncer: the commit joins the generation of the
 * next sync. With none in flight that sync starts now: on the thread
 * when more input waits, which the loop then takes in meanwhile; here
 * when none does, since a hand-off to the thread and back would only
 * add two wake-ups to the ack (1,000 updates/s: p99 2.2-3.1 ms against
 * 1.0-1.5). */
static void durable_commit(server_t *s)
{
    struct durable_gen *g = &s->gen[syncer_busy(s->syncer) ? 1 : 0];

    for (size_t i = 0; !s->acks && i < s->touched.cap; i++) {
        const char *id = s->touched.slots[i].key;
        uint64_t *last;
        if (id[0] == '\0')
            continue;
        if ((last = strmap_upsert(&g->acks, id)) != NULL)
            *last = store_producer_last(s->store, id);
        else
            log_error("out of memory for the ack of %s: it waits for its next commit", id);
    }
    g->head = store_head(s->store);
    g->any = true;
    if (syncer_busy(s->syncer) || s->sync_failed)
        return;
    if (ingest_waiting(s))
        durable_start(s);
    else
        durable_told(s, syncer_sync_here(s->syncer));
}

/* The sync in flight ended (with wait: ends) and was told. False when it
 * is still in flight. */
static bool durable_end(server_t *s, bool wait)
{
    int result, rc = syncer_done(s->syncer, wait, &result);

    if (rc == 0)
        return false;
    durable_told(s, rc < 0 ? rc : result);
    return true;
}

void durable_poll(server_t *s)
{
    if (syncer_busy(s->syncer) && !s->sync_failed)
        durable_end(s, false);
}

void durable_wait(server_t *s)
{
    while (syncer_busy(s->syncer) && !s->sync_failed)
        durable_end(s, true);
}

/* Revisions committed and not yet published. */
static uint64_t durable_unpublished(const server_t *s)
{
    return store_head(s->store) - s->published_rev;
}

/* Commits the open batch (group commit: one transaction per pass), then
 * publishes what it changed and acks every producer it touched: at once,
 * or with the syncer once the WAL's sync has covered it. */
void batch_finish(server_t *s)
{
    store_wal_t wal;
    uint64_t resets;
    int64_t t0;
    int rc;

    if (!s->batch_open)
        return;
    s->batch_open = false;
    t0 = wire_monotonic_us();
    rc = store_commit(s->store);
    pause_add(&s->n.commit, wire_monotonic_us() - t0);
    if (rc < 0) {
        s->batch_open = true;
        batch_abort(s, rc, "commit failed");
        return;
    }
    s->n.commits++;
    s->commits++;
    s->n.applied += s->pend.applied;
    s->n.duplicates += s->pend.duplicates;
    s->n.gaps += s->pend.gaps;
    s->n.refused += s->pend.refused;
    memset(&s->pend, 0, sizeof s->pend);
    if (s->touched.count > 0) { /* a batch that moved producers: ingest works */
        s->health.last_commit_us = wire_now_us();
        health_clear(&s->health, HEALTH_COMMIT);
    }
    if (s->syncer)
        durable_commit(s);
    else
        publish_changes(s, UINT64_MAX);
    for (size_t i = 0; s->acks && i < s->touched.cap; i++) {
        const char *id = s->touched.slots[i].key;
        if (id[0] != '\0' &&
            acks_commit(s->acks, id, store_producer_last(s->store, id), s->commits) < 0)
            log_error("out of memory for the acks held for %s: it is told nothing new", id);
    }
    if (s->acks)
        acks_after_commit(s);
    /* with the syncer, ack_after = local acks wait for the sync; peers:N
     * acks are of views that opened after one */
    for (size_t i = 0; (s->acks || !s->syncer) && i < s->touched.cap; i++)
        if (s->touched.slots[i].key[0] != '\0')
            publish_ack(s, s->touched.slots[i].key);
    strmap_clear(&s->touched);
    checkpoint_wal(s->checkpoint, &wal);
    resets = store_wal_resets(s->store);
    t0 = wire_monotonic_us();
    if ((rc = store_wal_reset(s->store, &wal)) < 0)
        server_store_failed(s, rc, false, "WAL checkpoint after a commit", store_errmsg(s->store));
    if (store_wal_resets(s->store) != resets)
        pause_add(&s->n.wal_reset, wire_monotonic_us() - t0);
}

/* One step of retention in an empty batch, when commits left change-log
 * or conflict rows beyond the limits (store_prune_due): a backlog, or a
 * batch larger than the change log, kept whole until it was published
 * (batch_finish, just before, publishes it). True when it committed and
 * more remain: the loop then goes on without sleeping, a step a pass,
 * between the passes that ingest and answer. */
bool prune_step(server_t *s)
{
    uint64_t errors = s->n.store_errors;

    if (s->batch_open || !store_prune_due(s->store) || batch_begin(s) < 0)
        return false;
    batch_finish(s);
    return s->n.store_errors == errors && store_prune_due(s->store);
}

bool summaries_due(server_t *s, int64_t now)
{
    return store_summaries_dirty(s->store) &&
           now - s->last_refresh_ms >= (int64_t)s->cfg.summary_interval_ms;
}

/* Refreshes the summaries of the countries that changed, in the open
 * batch. A country whose summary fails keeps its old one and the others
 * go on (the store refreshes each apart): counted and logged, never a
 * rollback of the updates in hand. Only a storage failure of the batch
 * itself rolls it back. */
void refresh_summaries(server_t *s, int64_t now)
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

/* What a refresh of the summaries adds to a batch at most: a summary for
 * each country code. */
#define SUMMARY_CHANGES_MAX (26 * 26)

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

    /* what the last update left there, decoded or refused, goes first */
    wire_arena_reset(s->upd_arena);
    rc = wire_update_decode_in(s->upd_arena, data, len, &u, &why);
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
    if (!s->upd_arena) /* else the next update's reset frees it */
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

/*
 * A commit publishes its batch's changes all at once (with the syncer,
 * the end of a sync those of every commit it covered, so the revisions
 * committed and not yet published count too), and beyond publish_hwm
 * messages a subscriber's queue drops them however fast it reads. So the
 * batch takes nothing more once its changes leave room
 * only for what is admitted past that point in one pass of the loop:
 * the message ingest was reading (an UpdateBatch, two publications an
 * update at most), each peer's first chunk (peers_chunk_changes), which
 * a link takes whatever the batch holds so that ingest at full speed
 * cannot starve a pull, and the summaries' refresh. A publish_hwm no
 * larger than that cannot be kept by any batch: batch_max alone bounds
 * it then, rather than a commit for every message (each with its ack,
 * which such a queue drops the more often).
 */
bool batch_changes_full(server_t *s)
{
    uint64_t hwm = s->cfg.publish_hwm,
             past = 2 * WIRE_MAX_BATCH + SUMMARY_CHANGES_MAX + peers_chunk_changes(s);

    return hwm > past && durable_unpublished(s) + store_batch_changes(s->store) + past >= hwm;
}

/* Whether the batch takes no more ingest messages: batch_max updates, or
 * changes enough to fill a subscriber's queue (one message at least). */
static bool batch_full(server_t *s, uint32_t n)
{
    return n >= s->cfg.batch_max || (n > 0 && batch_changes_full(s));
}

/* Reads ingest messages into the batch until it is full (batch_full; a
 * message of an UpdateBatch counts its updates). */
void drain_ingest(server_t *s)
{
    /* commits waiting for their sync count against the queue too; the
     * first message of a pass must find room */
    if (syncer_busy(s->syncer) && batch_changes_full(s))
        durable_wait(s);
    for (uint32_t n = 0; !batch_full(s, n);) {
        zmq_msg_t parts[2];
        int kept, total, rc;

        rc = server_recv_parts(s->ingest, parts, 2, &kept, &total);
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
        server_close_parts(parts, kept);
    }
}
