/*
 * peers.c - the puller: this site's side of replication (proto/README.md,
 * Replication; declared in server_int.h, its figures in peer_stats.h).
 *
 * One link per [peer NAME] with endpoints: a DEALER to the peer's query
 * socket that asks ReplicateRequest{since: the position stored for the
 * peer}, merges the chunks into the loop's batch (store_apply_replica),
 * grants one credit per chunk merged, and with the last chunk merges the
 * producers' positions and stores the peer's revision, all in the batch
 * the loop commits next. A request is sent only between batches, so the
 * since it carries is committed here: the peer may count it as safe
 * (ack_after = peers:N). A pull that finds nothing waits at the peer for
 * pull_wait_ms; silence for peer_timeout_ms beyond that closes the
 * connection and tries the peer's next endpoint.
 */
#include "server_int.h"

#include <stdarg.h>

#define PEER_CREDIT        8    /* chunks granted with a request */
#define PEER_CHUNK_RECORDS 512  /* records asked per chunk */
#define PEER_CHUNKS_PASS   8    /* chunks of one link merged per pass of the loop */
#define PEER_RETRY_MS      1000 /* a failed pull is asked again after this */

typedef struct link {
    size_t idx;          /* its [peer] section and peer_stats entry */
    void *sock;          /* DEALER to endpoints[endpoint], or NULL */
    size_t endpoint;     /* the endpoint in use */
    bool asked;          /* a pull is running */
    uint64_t request_id; /* of that pull */
    int64_t heard_ms;    /* monotonic ms of the request or the last reply */
    int64_t next_ms;     /* monotonic ms when an idle link asks again */
    bool full;           /* this pull brings the whole state */
    /* The last pull's Chunk.commit and instance, and the revision stored
     * with it: echoed to the peer once that revision is committed here,
     * so it counts this site for ack_after (acks.h). */
    bool got;
    uint64_t got_commit, got_revision;
    uint8_t got_instance[WIRE_INSTANCE_BYTES];
} link_t;

struct peers {
    link_t links[CONFIG_MAX_PEERS];
    size_t n;
    uint64_t next_request_id;
};

static peer_stats_t *stats_of(server_t *s, const link_t *l)
{
    return &s->peer_stats[l->idx];
}

static void link_close(link_t *l)
{
    if (l->sock)
        zmq_close(l->sock);
    l->sock = NULL;
    l->asked = false;
}

static void link_fail(server_t *s, link_t *l, int64_t now, bool reconnect, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Connects to the link's current endpoint, with CURVE when the peer has a
 * key and this site has one. 0 or -1 (logged; the link retries later). */
static int link_connect(server_t *s, link_t *l)
{
    const config_peer_t *p = &s->cfg.peers[l->idx];
    const char *ep = p->endpoints[l->endpoint];
    int linger = 0, hwm = 2 * PEER_CREDIT; /* a peer that ignores credit queues no more */
    int64_t max = WIRE_MAX_MSG;
    char pub[KEYS_Z85_LEN + 1];

    peer_stats_t *st = stats_of(s, l);
    size_t n = strnlen(ep, sizeof st->endpoint - 1); /* ep is in s too: no snprintf */
    memcpy(st->endpoint, ep, n);
    st->endpoint[n] = '\0';
    l->sock = zmq_socket(s->zctx, ZMQ_DEALER);
    if (!l->sock || zmq_setsockopt(l->sock, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        zmq_setsockopt(l->sock, ZMQ_MAXMSGSIZE, &max, sizeof max) < 0 ||
        zmq_setsockopt(l->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) < 0)
        goto fail;
    if (s->cfg.curve && p->key[0] &&
        (zmq_curve_public(pub, s->curve_secret) < 0 ||
         zmq_setsockopt(l->sock, ZMQ_CURVE_SERVERKEY, p->key, KEYS_Z85_LEN) < 0 ||
         zmq_setsockopt(l->sock, ZMQ_CURVE_PUBLICKEY, pub, KEYS_Z85_LEN) < 0 ||
         zmq_setsockopt(l->sock, ZMQ_CURVE_SECRETKEY, s->curve_secret, KEYS_Z85_LEN) < 0))
        goto fail;
    if (zmq_connect(l->sock, ep) < 0)
        goto fail;
    return 0;
fail:
    link_fail(s, l, wire_monotonic_ms(), true, "cannot connect to %s: %s", st->endpoint,
              zmq_strerror(errno));
    return -1;
}

peers_t *peers_new(server_t *s)
{
    peers_t *ps = calloc(1, sizeof *ps);

    if (!ps)
        return NULL;
    ps->next_request_id = 1;
    for (size_t i = 0; i < s->n_peer_stats; i++) { /* peer_stats_init named them */
        const config_peer_t *p = &s->cfg.peers[i];
        peer_stats_t *st = &s->peer_stats[i];
        if (store_peer_get(s->store, p->name, st->epoch, &st->has_epoch, &st->revision) < 0)
            log_warning("peer %s: cannot read its position: %s; it is read again before each "
                        "pull",
                        p->name, store_errmsg(s->store));
        if (!st->pulling)
            continue;
        ps->links[ps->n++] = (link_t){.idx = i};
        log_info("peer %s: pulling from %s (%zu endpoint%s), since revision %" PRIu64
                 "; it may bring %s",
                 p->name, p->endpoints[0], p->n_endpoints, p->n_endpoints == 1 ? "" : "s",
                 st->revision, p->all_countries ? "every country" : "the countries listed");
    }
    return ps;
}

bool peers_pulling(const server_t *s)
{
    return s->peers && s->peers->n > 0;
}

void peers_destroy(peers_t **pp)
{
    if (!pp || !*pp)
        return;
    for (size_t i = 0; i < (*pp)->n; i++)
        link_close(&(*pp)->links[i]);
    free(*pp);
    *pp = NULL;
}

int peers_poll_items(const peers_t *ps, zmq_pollitem_t *items, int max)
{
    int n = 0;
    for (size_t i = 0; ps && i < ps->n && n < max; i++)
        if (ps->links[i].sock)
            items[n++] = (zmq_pollitem_t){ps->links[i].sock, 0, ZMQ_POLLIN, 0};
    return n;
}

/* Sends a QueryRequest on the link (version and request_id filled in). */
static int link_send(link_t *l, Parksync__V1__QueryRequest *q)
{
    uint8_t buf[WIRE_MAX_QUERY];
    q->has_version = q->has_request_id = 1;
    q->version = WIRE_VERSION;
    q->request_id = l->request_id;
    size_t len = parksync__v1__query_request__get_packed_size(q);
    if (len > sizeof buf)
        return -EMSGSIZE;
    parksync__v1__query_request__pack(q, buf);
    return zmq_send(l->sock, buf, len, ZMQ_DONTWAIT) < 0 ? -errno : 0;
}

/* Asks for what the peer changed since the position committed here. */
static void link_ask(server_t *s, link_t *l, int64_t now)
{
    const config_peer_t *p = &s->cfg.peers[l->idx];
    peer_stats_t *st = stats_of(s, l);
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__ReplicateRequest r = PARKSYNC__V1__REPLICATE_REQUEST__INIT;
    int rc;

    /* what it says it stored may ack the peer's producers (ack_after =
     * peers:N): only what a power loss here keeps */
    durable_wait(s);
    if (store_peer_get(s->store, p->name, st->epoch, &st->has_epoch, &st->revision) < 0) {
        snprintf(st->last_error, sizeof st->last_error, "cannot read its position: %s",
                 store_errmsg(s->store));
        l->next_ms = now + PEER_RETRY_MS;
        return;
    }
    if (!l->sock && link_connect(s, l) < 0) {
        l->next_ms = now + PEER_RETRY_MS;
        return;
    }
    r.site = s->cfg.site;
    r.has_all_countries = 1;
    r.all_countries = p->all_countries;
    char *countries[CONFIG_PEER_COUNTRIES];
    for (size_t i = 0; i < p->n_countries && i < WIRE_MAX_COUNTRIES; i++)
        countries[r.n_countries++] = (char *)p->countries[i];
    r.countries = countries;
    if (l->got && st->has_epoch && st->revision == l->got_revision) {
        r.has_stored_commit = r.has_stored_instance = 1;
        r.stored_commit = l->got_commit;
        r.stored_instance.data = l->got_instance;
        r.stored_instance.len = WIRE_INSTANCE_BYTES;
    }
    r.has_epoch = st->has_epoch;
    r.epoch.data = st->epoch;
    r.epoch.len = WIRE_EPOCH_BYTES;
    r.has_since_revision = r.has_credit = r.has_chunk_records = r.has_wait_ms = 1;
    r.since_revision = st->has_epoch ? st->revision : 0;
    r.credit = PEER_CREDIT;
    r.chunk_records = PEER_CHUNK_RECORDS;
    r.wait_ms = s->cfg.pull_wait_ms;
    r.has_trade_rule = r.has_trade_threshold_pct = r.has_trade_cif_fob_factor = 1;
    r.trade_rule = s->cfg.trade_rule; /* a peer with other ones refuses: flows would differ */
    r.trade_threshold_pct = s->cfg.threshold_pct;
    r.trade_cif_fob_factor = s->cfg.cif_fob_factor;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_REPLICATE;
    q.replicate = &r;
    l->request_id = s->peers->next_request_id++;
    if ((rc = link_send(l, &q)) < 0) {
        snprintf(st->last_error, sizeof st->last_error, "cannot send a pull: %s",
                 zmq_strerror(-rc));
        l->next_ms = now + PEER_RETRY_MS;
        return;
    }
    l->asked = true;
    l->full = false;
    l->heard_ms = now;
}

/* A pull failed: said in the status, logged, and asked again later (a
 * stream the peer still runs ends with the connection). */
static void link_fail(server_t *s, link_t *l, int64_t now, bool reconnect, const char *fmt, ...)
{
    peer_stats_t *st = stats_of(s, l);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->last_error, sizeof st->last_error, fmt, ap);
    va_end(ap);
    log_ratelimited(&s->rl[RL_PEER], LOG_LEVEL_WARNING, "peer %s: %s", st->name, st->last_error);
    if (reconnect)
        link_close(l);
    l->asked = false;
    l->next_ms = now + PEER_RETRY_MS;
}

/* Merges one chunk into the loop's batch; the last one also brings the
 * producers' positions and the peer's revision. */
static void link_chunk(server_t *s, link_t *l, const Parksync__V1__Chunk *c, int64_t now)
{
    const config_peer_t *p = &s->cfg.peers[l->idx];
    peer_stats_t *st = stats_of(s, l);
    store_trust_t trust = {.peer = p->name,
                           .all = p->all_countries,
                           .countries = (const char(*)[3])p->countries,
                           .n = p->n_countries};
    int rc;

    /* the batch keeps room for one chunk of what was asked
     * (peers_chunk_changes), and the protocol promises no more */
    if (c->n_records > PEER_CHUNK_RECORDS) {
        st->refused += c->n_records;
        s->n.peer_refused += c->n_records;
        link_fail(s, l, now, true, "a chunk of %zu records, more than the %d asked", c->n_records,
                  PEER_CHUNK_RECORDS);
        return;
    }
    if (batch_begin(s) < 0) {
        link_fail(s, l, now, true, "cannot start a transaction to merge its records");
        return;
    }
    l->full |= c->has_full && c->full;
    for (size_t i = 0; i < c->n_records; i++) {
        store_replica_result_t res;
        if ((rc = store_apply_replica(s->store, &trust, c->records[i], &res)) < 0) {
            batch_abort(s, rc, "merging a peer's record failed");
            link_fail(s, l, now, true, "merging its records failed: %s", store_strerror(rc));
            return;
        }
        st->records++;
        if (res.refused + res.invalid > 0) {
            st->refused += res.refused + res.invalid;
            s->n.peer_refused += res.refused + res.invalid;
            log_ratelimited(&s->rl[RL_PEER], LOG_LEVEL_WARNING, "peer %s: %s", p->name, res.why);
        }
    }
    if (!c->last) {
        Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
        Parksync__V1__Credit cr = PARKSYNC__V1__CREDIT__INIT;
        cr.has_chunks = 1;
        cr.chunks = 1;
        q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT;
        q.credit = &cr;
        if ((rc = link_send(l, &q)) < 0)
            link_fail(s, l, now, true, "cannot grant credit: %s", zmq_strerror(-rc));
        return;
    }
    if (!c->has_epoch || c->epoch.len != WIRE_EPOCH_BYTES || !c->has_revision) {
        link_fail(s, l, now, true, "its last chunk has no epoch or revision");
        return;
    }
    for (size_t i = 0; i < c->n_producers; i++)
        if ((rc = store_merge_position(s->store, c->producers[i]->producer_id,
                                       c->producers[i]->last_sequence)) < 0) {
            batch_abort(s, rc, "merging a peer's producer positions failed");
            link_fail(s, l, now, true, "merging its positions failed: %s", store_strerror(rc));
            return;
        }
    if ((rc = store_peer_set(s->store, p->name, c->epoch.data, c->revision)) < 0) {
        batch_abort(s, rc, "storing a peer's position failed");
        link_fail(s, l, now, true, "storing its position failed: %s", store_strerror(rc));
        return;
    }
    l->got = c->has_commit && c->has_instance && c->instance.len == WIRE_INSTANCE_BYTES;
    if (l->got) {
        l->got_commit = c->commit;
        l->got_revision = c->revision;
        memcpy(l->got_instance, c->instance.data, WIRE_INSTANCE_BYTES);
    }
    st->peer_head = c->revision;
    st->pulls++;
    st->full_resyncs += l->full;
    st->last_pull_us = wire_now_us();
    st->caught_up_us = st->last_pull_us; /* the peer's head when the stream opened */
    st->last_error[0] = '\0';
    l->asked = false;
    l->next_ms = now; /* at once: the peer holds it until something changes */
}

uint64_t peers_chunk_changes(const server_t *s)
{
    return s->peers ? 2 * PEER_CHUNK_RECORDS * (uint64_t)s->peers->n : 0;
}

/* Reads what a link's peer sent, up to PEER_CHUNKS_PASS chunks: the
 * first whatever the batch holds, the others while it has room for
 * their changes (batch_changes_full). */
static void link_drain(server_t *s, link_t *l, int64_t now)
{
    for (int k = 0; l->sock && k < PEER_CHUNKS_PASS && (k == 0 || !batch_changes_full(s)); k++) {
        Parksync__V1__QueryReply *r = NULL;
        const char *why = NULL;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, l->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        bool more = zmq_msg_more(&m);
        int rc = wire_query_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, &why);
        zmq_msg_close(&m);
        if (more || rc < 0) {
            if (r)
                parksync__v1__query_reply__free_unpacked(r, NULL);
            link_fail(s, l, now, true, "a reply that does not decode: %s",
                      more  ? "more than one frame"
                      : why ? why
                            : "invalid");
            return;
        }
        if (!l->asked || r->request_id != l->request_id) {
            parksync__v1__query_reply__free_unpacked(r, NULL);
            continue; /* of a pull given up */
        }
        l->heard_ms = now;
        stats_of(s, l)->connected = true;
        if (r->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK)
            link_chunk(s, l, r->chunk, now);
        else if (r->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_ERROR)
            link_fail(s, l, now, false, "it refused the pull: %s",
                      r->error->message ? r->error->message : "no reason given");
        else
            link_fail(s, l, now, true, "it answered a pull with something else");
        parksync__v1__query_reply__free_unpacked(r, NULL);
    }
}

void peers_drain(server_t *s, int64_t now)
{
    for (size_t i = 0; s->peers && i < s->peers->n; i++)
        link_drain(s, &s->peers->links[i], now);
}

void peers_tick(server_t *s, int64_t now)
{
    for (size_t i = 0; s->peers && i < s->peers->n; i++) {
        link_t *l = &s->peers->links[i];
        const config_peer_t *p = &s->cfg.peers[l->idx];
        if (l->asked && now - l->heard_ms > (int64_t)s->cfg.peer_timeout_ms + s->cfg.pull_wait_ms) {
            stats_of(s, l)->connected = false;
            link_fail(s, l, now, true, "no reply from %s in %" PRIu32 " ms",
                      p->endpoints[l->endpoint], s->cfg.peer_timeout_ms + s->cfg.pull_wait_ms);
            l->endpoint = (l->endpoint + 1) % p->n_endpoints;
            l->next_ms = now; /* the next endpoint at once */
        }
        if (!l->asked && now >= l->next_ms && !s->batch_open)
            link_ask(s, l, now);
    }
}

int64_t peers_deadline(const server_t *s)
{
    int64_t t = INT64_MAX;
    for (size_t i = 0; s->peers && i < s->peers->n; i++) {
        const link_t *l = &s->peers->links[i];
        int64_t d = l->asked
                        ? l->heard_ms + (int64_t)s->cfg.peer_timeout_ms + s->cfg.pull_wait_ms + 1
                        : l->next_ms;
        if (d < t)
            t = d;
    }
    return t;
}
