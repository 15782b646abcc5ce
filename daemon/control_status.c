/*
 * control_status.c - `parksync status`, `metrics`, `digest` and
 * `conflicts`: a snapshot of the daemon's figures taken between batches,
 * as a Status, the Prometheus text, the digest of the live records, or
 * pages of the conflicts table.
 */
#include "control_int.h"

#include "peer_stats.h"

/* ---------------------------------------------------------------- handlers */

/* A page of conflicts being built. Strings are copied: the store's are
 * valid only during its callback. */
typedef struct page {
    Parksync__V1__Conflict *items; /* n entries, strings owned */
    Parksync__V1__Conflict **ptrs; /* pointers into items */
    size_t n;                      /* entries */
    size_t cap;                    /* allocated */
    size_t bytes;                  /* encoded size so far */
    uint32_t limit;                /* entries wanted */
    bool more;                     /* a row beyond the page exists */
    bool oom;                      /* out of memory */
} page_t;

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void page_free(page_t *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->items[i].producer_id);
        free(p->items[i].key);
        free(p->items[i].country);
        free(p->items[i].partner);
        free(p->items[i].reason);
    }
    free(p->items);
    free(p->ptrs);
}

static int on_conflict(void *arg, const store_conflict_t *sc)
{
    page_t *p = arg;
    Parksync__V1__Conflict *c;

    if (p->n == p->limit || p->bytes > CONTROL_REPLY_MAX) {
        p->more = true; /* the store gave one row beyond the page */
        return 1;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 32;
        Parksync__V1__Conflict *n = realloc(p->items, cap * sizeof *n);
        if (!n) {
            p->oom = true;
            return 1;
        }
        p->items = n;
        p->cap = cap;
    }
    c = &p->items[p->n];
    parksync__v1__conflict__init(c);
    c->has_id = c->has_recorded_us = c->has_sequence = c->has_kind = c->has_claim_kept = true;
    c->id = sc->id;
    c->recorded_us = sc->recorded_us;
    c->sequence = sc->sequence;
    c->kind = sc->kind;
    c->claim_kept = sc->claim_kept;
    c->has_event_time_us = sc->has_event_time;
    c->event_time_us = sc->event_time_us;
    c->producer_id = dup_or_null(sc->producer_id);
    c->key = dup_or_null(sc->key);
    c->country = dup_or_null(sc->country);
    c->partner = dup_or_null(sc->partner);
    c->reason = dup_or_null(sc->reason);
    p->n++;
    p->bytes += protobuf_c_message_get_packed_size(&c->base) + 8;
    return 0;
}

void control_handle_conflicts(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                              const Parksync__V1__ConflictsRequest *q)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__ConflictList list = PARKSYNC__V1__CONFLICT_LIST__INIT;
    store_conflict_filter_t f = {0};
    page_t p = {0};
    int rc;

    if (q->country && !wire_country_valid(q->country)) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                      "country must be two upper-case letters");
        return;
    }
    if (q->has_kind && q->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED &&
        !wire_kind_name(q->kind)) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                      "unknown kind");
        return;
    }
    f.kind = q->has_kind ? q->kind : PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    if (q->country)
        memcpy(f.country, q->country, 3);
    f.since_us = q->has_since_us ? q->since_us : INT64_MIN;
    f.after_id = q->has_after_id ? q->after_id : 0;
    p.limit = !q->has_limit || q->limit == 0 ? CONTROL_DEFAULT_LIMIT
              : q->limit > CONTROL_MAX_LIMIT ? CONTROL_MAX_LIMIT
                                             : q->limit;
    f.limit = p.limit + 1; /* one more tells whether there is a next page */
    rc = store_conflicts(c->store, &f, on_conflict, &p);
    if (rc < 0 || p.oom) {
        log_error("cannot list conflicts: %s (%s)", strerror(rc < 0 ? -rc : ENOMEM),
                  store_errmsg(c->store));
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "cannot read the conflicts table; see the daemon's log");
        goto out;
    }
    if (p.n && !(p.ptrs = calloc(p.n, sizeof *p.ptrs))) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "out of memory");
        goto out;
    }
    for (size_t i = 0; i < p.n; i++)
        p.ptrs[i] = &p.items[i];
    list.n_conflicts = p.n;
    list.conflicts = p.ptrs;
    list.has_more = true;
    list.more = p.more;
    list.has_next_after_id = true;
    list.next_after_id = p.n ? p.items[p.n - 1].id : f.after_id;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_CONFLICTS;
    r.conflicts = &list;
    control_reply(c, id, request_id, &r);
out:
    page_free(&p);
}

/* ---------------------------------------------------------------- status and metrics */

/*
 * Producers being gathered from the store: however many it knows (a
 * database that took every id a producer made up), status and metrics
 * list the METRICS_PRODUCERS first by id and count the rest. The store
 * gives them in no order, so m->producers is a max-heap by id while they
 * come: a smaller id than its top replaces it.
 */
typedef struct gather {
    metrics_snapshot_t *m; /* where they go */
    const char *after;     /* only ids sorting after this; NULL: from the first */
} gather_t;

static void producer_swap(metrics_producer_t *a, metrics_producer_t *b)
{
    metrics_producer_t t = *a;
    *a = *b;
    *b = t;
}

static void heap_up(metrics_producer_t *h, size_t i)
{
    for (; i > 0 && strcmp(h[(i - 1) / 2].id, h[i].id) < 0; i = (i - 1) / 2)
        producer_swap(&h[(i - 1) / 2], &h[i]);
}

static void heap_down(metrics_producer_t *h, size_t n, size_t i)
{
    for (;;) {
        size_t top = i, l = 2 * i + 1, r = l + 1;
        if (l < n && strcmp(h[l].id, h[top].id) > 0)
            top = l;
        if (r < n && strcmp(h[r].id, h[top].id) > 0)
            top = r;
        if (top == i)
            return;
        producer_swap(&h[i], &h[top]);
        i = top;
    }
}

static int on_producer(void *arg, const char *id, const store_producer_stats_t *st)
{
    gather_t *g = arg;
    metrics_snapshot_t *m = g->m;
    metrics_producer_t *h = m->producers;

    m->producers_total++;
    if (g->after && strcmp(id, g->after) <= 0)
        return 0;
    if (m->n_producers < METRICS_PRODUCERS) {
        snprintf(h[m->n_producers].id, sizeof h->id, "%s", id);
        h[m->n_producers].st = *st;
        heap_up(h, m->n_producers++);
    } else if (strcmp(id, h[0].id) < 0) {
        snprintf(h[0].id, sizeof h->id, "%s", id);
        h[0].st = *st;
        heap_down(h, m->n_producers, 0);
    }
    return 0;
}

static int on_reason(void *arg, const char *name, uint64_t n)
{
    metrics_snapshot_t *m = arg;

    if (m->n_reasons < METRICS_REASONS) {
        snprintf(m->reasons[m->n_reasons].name, METRICS_REASON_MAX, "%s", name);
        m->reasons[m->n_reasons++].n = n;
    }
    return 0;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const metrics_producer_t *)a)->id, ((const metrics_producer_t *)b)->id);
}

static uint64_t file_size(const char *path, const char *suffix)
{
    char name[CONFIG_PATH_MAX + 8];
    struct stat st;

    snprintf(name, sizeof name, "%s%s", path, suffix);
    return stat(name, &st) == 0 ? (uint64_t)st.st_size : 0;
}

_Static_assert(METRICS_PEERS >= CONFIG_MAX_PEERS, "a series for every [peer] section");

/* The series of the peers this site pulls from. */
static void collect_peers(control_t *c, metrics_snapshot_t *m)
{
    for (size_t i = 0; i < *c->view.n_peer_stats && i < CONFIG_MAX_PEERS; i++) {
        const peer_stats_t *p = &c->view.peer_stats[i];
        metrics_peer_t *mp = &m->peers[m->n_peers];

        if (!p->pulling)
            continue;
        snprintf(mp->name, sizeof mp->name, "%.*s", (int)sizeof p->name - 1, p->name);
        mp->connected = p->connected;
        mp->revision = p->revision;
        mp->has_lag = peer_stats_lag(p, m->now_us, &mp->lag_revisions, &mp->lag_us);
        mp->records = p->records;
        mp->refused = p->refused;
        mp->pulls = p->pulls;
        mp->full_resyncs = p->full_resyncs;
        m->n_peers++;
    }
}

/* Takes a snapshot between batches, listing the producers after
 * producers_after (NULL: from the first); `light` skips the file sizes
 * and the store's figures (records and conflicts) for the periodic STATUS
 * line. Returns 0 or a negative errno (logged); the snapshot must be
 * freed either way. */
int control_collect(control_t *c, metrics_snapshot_t *m, bool light, const char *producers_after)
{
    const config_t *cfg = c->view.cfg;
    gather_t g = {m, producers_after};
    int rc;

    memset(m, 0, sizeof *m);
    if (!(m->producers = calloc(METRICS_PRODUCERS, sizeof *m->producers))) {
        log_error("out of memory listing the producers");
        return -ENOMEM;
    }
    m->n = *c->view.counters;
    m->bad_control = c->bad_requests;
    m->http_dropped = metrics_http_dropped(c->http);
    page_stats(c->page, &m->page);
    m->handshakes_admitted = zap_allowed(c->view.zap);
    m->last_checkpoint_us = checkpoint_last_complete_us(c->view.checkpoint);
    m->checkpoint_failures = checkpoint_failures(c->view.checkpoint);
    m->health = *c->view.health;
    m->handshakes_refused = zap_denied(c->view.zap);
    m->started_us = c->started_us;
    m->now_us = wire_now_us();
    m->head_revision = *c->view.published; /* HTTP metrics too: nothing unsynced */
    for (int i = 0; i < CONNS_SOCKETS; i++) {
        const conns_stats_t *cs = c->view.conns[i] ? conns_stats(c->view.conns[i]) : NULL;
        if (cs)
            m->conns[i] = *cs;
    }
    m->subscribers = m->conns[1].open;
    m->subscriptions = subscriptions_stats(c->view.subs)->in_use;
    collect_peers(c, m);
    store_producers(c->store, on_producer, &g);
    if (m->n_producers > 1)
        qsort(m->producers, m->n_producers, sizeof *m->producers, by_id);
    if (light)
        return 0;
    m->database_bytes = file_size(cfg->database, "");
    m->wal_bytes = file_size(cfg->database, "-wal");
    m->wal_starts = store_wal_starts(c->store);
    m->deferred_rows = store_deferred_rows(c->store);
    m->cache_bytes = store_cache_bytes(c->store);
    m->replay_revisions = store_replay_revisions(c->store);
    for (int k = 1; k < METRICS_KINDS; k++) {
        rc = store_count_records(c->store, (Parksync__V1__RecordKind)k, &m->records[k]);
        if (rc < 0)
            goto fail;
    }
    rc = store_conflict_counts(c->store, &m->conflicts, on_reason, m);
    if (rc < 0)
        goto fail;
    store_pruned_counts(c->store, &m->pruned);
    return 0;
fail:
    log_error("cannot read the database's figures: %s (%s)", strerror(-rc), store_errmsg(c->store));
    return rc;
}

/* One name = value pair of server_counters_t. */
typedef struct counter_field {
    const char *name; /* as listed in Status.counters */
    size_t offset;    /* of the uint64_t in server_counters_t */
} counter_field_t;

#define COUNTER(f)                                                                                 \
    {                                                                                              \
#f, offsetof(server_counters_t, f)                                                         \
    }
static const counter_field_t counter_fields[] = {
    COUNTER(received),
    COUNTER(applied),
    COUNTER(duplicates),
    COUNTER(gaps),
    COUNTER(refused),
    COUNTER(bad_frames),
    COUNTER(too_large),
    COUNTER(undecodable),
    COUNTER(invalid),
    COUNTER(wrong_topic),
    COUNTER(store_errors),
    COUNTER(summary_failures),
    COUNTER(commits),
    COUNTER(published),
    COUNTER(acks),
    COUNTER(heartbeats),
    COUNTER(queries),
    COUNTER(bad_queries),
    COUNTER(chunks),
    COUNTER(streams_opened),
    COUNTER(streams_refused),
    COUNTER(forged),
    COUNTER(streams_dropped),
    COUNTER(streams_stalled),
    COUNTER(unadmitted),
    COUNTER(subscriptions_refused),
    COUNTER(subscribers_dropped),
};
#undef COUNTER
#define N_COUNTER_FIELDS (sizeof counter_fields / sizeof counter_fields[0])

/* Fills one name = value pair of a Status and points *cp at it. */
static void set_counter(Parksync__V1__Counter *c, Parksync__V1__Counter **cp, const char *name,
                        uint64_t value)
{
    parksync__v1__counter__init(c);
    c->name = (char *)name;
    c->has_value = true;
    c->value = value;
    *cp = c;
}

/* Status.connections: one entry per socket, handshake failures by reason. */
typedef struct status_conns {
    Parksync__V1__SocketConnections sc[CONNS_SOCKETS], *scp[CONNS_SOCKETS];
    Parksync__V1__Counter why[CONNS_SOCKETS][CONNS_REASONS];
    Parksync__V1__Counter *whyp[CONNS_SOCKETS][CONNS_REASONS];
} status_conns_t;

static void fill_conns(status_conns_t *o, const metrics_snapshot_t *m, Parksync__V1__Status *st)
{
    for (int i = 0; i < CONNS_SOCKETS; i++) {
        Parksync__V1__SocketConnections *sc = &o->sc[i];
        const conns_stats_t *cs = &m->conns[i];

        parksync__v1__socket_connections__init(sc);
        sc->socket = (char *)metrics_socket_names[i];
        sc->has_open = sc->has_accepted = sc->has_refused = sc->has_accept_failed = true;
        sc->open = cs->open;
        sc->accepted = cs->accepted;
        sc->refused = cs->refused;
        sc->accept_failed = cs->accept_failed;
        for (int r = 0; r < CONNS_REASONS; r++)
            set_counter(&o->why[i][r], &o->whyp[i][r], conns_reason_name((conns_reason_t)r),
                        cs->handshakes_failed[r]);
        sc->n_handshakes_failed = CONNS_REASONS;
        sc->handshakes_failed = o->whyp[i];
        o->scp[i] = sc;
    }
    st->n_connections = CONNS_SOCKETS;
    st->connections = o->scp;
}

/* Status.site, ack_after, peers and pulled_by: copies of the loop's
 * figures, whose text is kept terminated, and what points into them. */
typedef struct status_peers {
    peer_stats_t peers[CONFIG_MAX_PEERS];
    Parksync__V1__PeerStatus ps[CONFIG_MAX_PEERS], *psp[CONFIG_MAX_PEERS];
    puller_stats_t pullers[PEERS_MAX_PULLERS];
    Parksync__V1__PullerStatus pl[PEERS_MAX_PULLERS], *plp[PEERS_MAX_PULLERS];
    char ack_after[24]; /* "local" or "peers:N" */
} status_peers_t;

/* One PeerStatus of o->peers[i]. A peer this site does not pull from (its
 * section has no endpoints) has its name only. */
static void fill_peer(status_peers_t *o, size_t i, int64_t now_us)
{
    peer_stats_t *p = &o->peers[i];
    Parksync__V1__PeerStatus *ps = &o->ps[i];

    p->name[sizeof p->name - 1] = p->endpoint[sizeof p->endpoint - 1] = '\0';
    p->last_error[sizeof p->last_error - 1] = '\0';
    parksync__v1__peer_status__init(ps);
    o->psp[i] = ps;
    ps->name = p->name;
    if (!p->pulling)
        return;
    ps->endpoint = p->endpoint[0] ? p->endpoint : NULL;
    ps->has_connected = true;
    ps->connected = p->connected;
    ps->has_epoch = p->has_epoch;
    ps->epoch.data = p->epoch;
    ps->epoch.len = p->has_epoch ? WIRE_EPOCH_BYTES : 0;
    ps->has_revision = ps->has_peer_head = ps->has_lag_revisions = true;
    ps->revision = p->revision;
    ps->peer_head = p->peer_head;
    ps->has_lag_us = peer_stats_lag(p, now_us, &ps->lag_revisions, &ps->lag_us);
    ps->has_last_pull_us = true;
    ps->last_pull_us = p->last_pull_us;
    ps->last_error = p->last_error[0] ? p->last_error : NULL;
    ps->has_records = ps->has_refused = ps->has_pulls = ps->has_full_resyncs = true;
    ps->records = p->records;
    ps->refused = p->refused;
    ps->pulls = p->pulls;
    ps->full_resyncs = p->full_resyncs;
}

/* Points st into o, which must outlive the reply. */
static void fill_peers(status_peers_t *o, const control_view_t *v, int64_t now_us,
                       Parksync__V1__Status *st)
{
    size_t n = *v->n_peer_stats < CONFIG_MAX_PEERS ? *v->n_peer_stats : CONFIG_MAX_PEERS;

    st->site = (char *)v->cfg->site;
    if (v->cfg->ack_after_peers == 0)
        snprintf(o->ack_after, sizeof o->ack_after, "local");
    else
        snprintf(o->ack_after, sizeof o->ack_after, "peers:%" PRIu32, v->cfg->ack_after_peers);
    st->ack_after = o->ack_after;
    memcpy(o->peers, v->peer_stats, n * sizeof *o->peers);
    for (size_t i = 0; i < n; i++)
        fill_peer(o, i, now_us);
    st->n_peers = n;
    st->peers = o->psp;
    n = *v->n_pullers < PEERS_MAX_PULLERS ? *v->n_pullers : PEERS_MAX_PULLERS;
    memcpy(o->pullers, v->pullers, n * sizeof *o->pullers);
    for (size_t i = 0; i < n; i++) {
        Parksync__V1__PullerStatus *pl = &o->pl[i];

        o->pullers[i].site[sizeof o->pullers[i].site - 1] = '\0';
        parksync__v1__puller_status__init(pl);
        o->plp[i] = pl;
        pl->site = o->pullers[i].site;
        pl->has_revision = pl->has_last_us = true;
        pl->revision = o->pullers[i].revision;
        pl->last_us = o->pullers[i].last_us;
    }
    st->n_pulled_by = n;
    st->pulled_by = o->plp;
}

/* A counter kept outside server_counters_t. */
typedef struct counter_value {
    const char *name; /* as listed in Status.counters */
    uint64_t value;
} counter_value_t;
/* bad_control, handshakes admitted and refused, HTTP drops, rows retention
 * dropped, failed checkpoints */
#define N_EXTRA_COUNTERS 10

void control_handle_status(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                           const Parksync__V1__StatusRequest *q)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Status st = PARKSYNC__V1__STATUS__INIT;
    Parksync__V1__Counter rec[METRICS_KINDS], *recp[METRICS_KINDS];
    Parksync__V1__Counter cnt[N_COUNTER_FIELDS + N_EXTRA_COUNTERS];
    Parksync__V1__Counter *cntp[N_COUNTER_FIELDS + N_EXTRA_COUNTERS];
    Parksync__V1__Counter why[METRICS_REASONS], *whyp[METRICS_REASONS];
    Parksync__V1__ProducerStatus *ps = NULL, **psp = NULL;
    status_conns_t conns;
    status_peers_t peers;
    metrics_snapshot_t m;
    Parksync__V1__Health health;
    char reason[HEALTH_REASON * HEALTH_CONDITIONS];
    const char *after = q->producers_after && q->producers_after[0] ? q->producers_after : NULL;

    if (after && !wire_id_valid(after)) {
        c->bad_requests++;
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                      "producers_after must be a producer id");
        return;
    }
    if (control_collect(c, &m, false, after) < 0 ||
        (m.n_producers && (!(ps = calloc(m.n_producers, sizeof *ps)) ||
                           !(psp = calloc(m.n_producers, sizeof *psp))))) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "cannot gather the status; see the daemon's log");
        goto out;
    }
    st.version = (char *)PARKSYNC_VERSION;
    st.has_started_us = st.has_head_revision = st.has_epoch = st.has_now_us = true;
    st.started_us = m.started_us;
    st.now_us = m.now_us;
    st.head_revision = m.head_revision;
    st.epoch.data = (uint8_t *)store_epoch(c->store);
    st.epoch.len = WIRE_EPOCH_BYTES;
    for (int k = 1; k < METRICS_KINDS; k++, st.n_records++)
        set_counter(&rec[st.n_records], &recp[st.n_records],
                    wire_kind_name((Parksync__V1__RecordKind)k), m.records[k]);
    st.records = recp;
    for (size_t i = 0; i < m.n_producers; i++) {
        const store_producer_stats_t *s = &m.producers[i].st;
        parksync__v1__producer_status__init(&ps[i]);
        ps[i].producer_id = m.producers[i].id;
        ps[i].has_last_sequence = ps[i].has_applied = ps[i].has_duplicates = true;
        ps[i].has_gaps = ps[i].has_rejected = ps[i].has_last_seen_us = true;
        ps[i].last_sequence = s->last_sequence;
        ps[i].applied = s->applied;
        ps[i].duplicates = s->duplicates;
        ps[i].gaps = s->gaps;
        ps[i].rejected = s->rejected;
        ps[i].last_seen_us = s->last_seen_us;
        ps[i].has_missing_from = ps[i].has_missing_to =
            ahead_missing(c->view.ahead, ps[i].producer_id, &ps[i].missing_from, &ps[i].missing_to);
        psp[i] = &ps[i];
    }
    st.n_producers = m.n_producers;
    st.producers = psp;
    st.has_producers_total = true;
    st.producers_total = m.producers_total;
    st.has_last_checkpoint_us = m.last_checkpoint_us > 0;
    st.last_checkpoint_us = m.last_checkpoint_us;
    health_to_proto(c->view.health, &health, reason, sizeof reason);
    st.health = &health;
    for (size_t i = 0; i < N_COUNTER_FIELDS; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&m.n + counter_fields[i].offset, sizeof v);
        set_counter(&cnt[i], &cntp[i], counter_fields[i].name, v);
    }
    /* counted outside the loop: by the control socket, the ZAP handler's
     * thread, the metrics and page HTTP threads and the store's retention */
    const counter_value_t extra[N_EXTRA_COUNTERS] = {
        {"bad_control", m.bad_control},
        {"handshakes_admitted", m.handshakes_admitted},
        {"handshakes_refused", m.handshakes_refused},
        {"metrics_http_dropped", m.http_dropped},
        {"page_http_refused", m.page.refused},
        {"page_http_dropped", m.page.dropped},
        {"page_http_cut", m.page.cut},
        {"pruned_conflicts", m.pruned.conflicts},
        {"pruned_claims", m.pruned.claims},
        {"checkpoint_failures", m.checkpoint_failures},
    };
    for (size_t i = 0; i < N_EXTRA_COUNTERS; i++)
        set_counter(&cnt[N_COUNTER_FIELDS + i], &cntp[N_COUNTER_FIELDS + i], extra[i].name,
                    extra[i].value);
    st.n_counters = N_COUNTER_FIELDS + N_EXTRA_COUNTERS;
    st.counters = cntp;
    st.has_subscribers = st.has_database_bytes = st.has_wal_bytes = st.has_conflicts = true;
    st.has_deferred_rows = true;
    st.deferred_rows = m.deferred_rows;
    st.has_replay_revisions = true;
    st.replay_revisions = m.replay_revisions;
    st.subscribers = m.subscribers;
    st.database_bytes = m.database_bytes;
    st.wal_bytes = m.wal_bytes;
    st.conflicts = m.conflicts;
    for (size_t i = 0; i < m.n_reasons; i++)
        set_counter(&why[i], &whyp[i], m.reasons[i].name, m.reasons[i].n);
    fill_conns(&conns, &m, &st);
    fill_peers(&peers, &c->view, m.now_us, &st);
    st.n_conflicts_by_reason = m.n_reasons;
    st.conflicts_by_reason = whyp;
    if (c->reload_error[0])
        st.reload_error = c->reload_error;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_STATUS;
    r.status = &st;
    control_reply(c, id, request_id, &r);
out:
    free(ps);
    free(psp);
    metrics_snapshot_free(&m);
}

/* The digest of the live records, with the head it was taken at: the
 * loop is between batches, so both describe the same commit. */
void control_handle_digest(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Digest d = PARKSYNC__V1__DIGEST__INIT;
    uint8_t digest[32];
    int rc = store_digest(c->store, digest);

    if (rc < 0) {
        log_error("cannot compute the digest: %s (%s)", strerror(-rc), store_errmsg(c->store));
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "cannot compute the digest; see the daemon's log");
        return;
    }
    d.has_digest = d.has_head_revision = d.has_epoch = true;
    d.digest.data = digest;
    d.digest.len = sizeof digest;
    d.head_revision = store_head(c->store);
    d.epoch.data = (uint8_t *)store_epoch(c->store);
    d.epoch.len = WIRE_EPOCH_BYTES;
    d.site = (char *)c->view.cfg->site;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_DIGEST;
    r.digest = &d;
    control_reply(c, id, request_id, &r);
}

/* The Prometheus text now, or NULL (logged). Caller frees. */
char *control_render(control_t *c, size_t *len)
{
    metrics_snapshot_t m;
    char *text = NULL;

    if (control_collect(c, &m, false, NULL) == 0 && !(text = metrics_render(&m, len)))
        log_error("out of memory rendering the metrics");
    metrics_snapshot_free(&m);
    return text;
}

void control_handle_metrics(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Metrics mt = PARKSYNC__V1__METRICS__INIT;
    size_t len = 0;
    char *text = control_render(c, &len);

    if (!text) {
        control_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                      "cannot gather the metrics; see the daemon's log");
        return;
    }
    mt.text = text;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_METRICS;
    r.metrics = &mt;
    control_reply(c, id, request_id, &r);
    free(text);
}
