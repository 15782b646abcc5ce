/*
 * control.c - see control.h.
 *
 * Sections: the socket; replies; handlers (one per request body); the
 * drain loop; deferred work (backup, reload, STATUS, metrics over HTTP).
 */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <zmq.h>

#include "log.h"
#include "metrics.h"
#include "wire.h"

#define CONTROL_BUDGET      64           /* requests answered per pass */
#define CONTROL_REPLY_MAX   (512 * 1024) /* bytes of conflicts in one reply, < WIRE_MAX_MSG */
#define CONTROL_ID_MAX      256          /* bytes of a routing id */
#define CONTROL_BACKUP_PATH 1024         /* bytes of a backup path, with NUL */
#define CONTROL_LINGER_MS   200          /* ms pending replies get on close */
#define CONTROL_WAITERS     8            /* `parksync reload` requests waiting at once */
#define CONTROL_MESSAGE_MAX 512          /* bytes of a reload message, with NUL */

/* Who gets a deferred reply. */
typedef struct waiter {
    uint8_t id[CONTROL_ID_MAX]; /* ROUTER routing id */
    size_t len;                 /* bytes of id */
    uint64_t request_id;        /* echoed in the reply */
} waiter_t;

struct control {
    void *sock;                          /* ROUTER, bound */
    store_t *store;                      /* borrowed */
    server_t *server;                    /* borrowed: counters and config */
    char path[256];                      /* the socket file, removed on destroy */
    log_ratelimit_t rl;                  /* bad requests */
    uint64_t bad_requests;               /* control requests dropped or refused as malformed */
    int64_t started_us;                  /* wall clock at start, us since 1970 UTC */
    void *monitor;                       /* PAIR reading the publish socket's connection events */
    uint64_t subscribers;                /* publish peers connected now */
    bool reload_pending;                 /* `parksync reload` waits for main to reload */
    waiter_t reloaders[CONTROL_WAITERS]; /* who asked for it */
    size_t n_reloaders;                  /* entries in reloaders */
    char reload_error[CONTROL_MESSAGE_MAX]; /* last reload's failure, "" after a good one */
    store_backup_t *backup;                 /* running backup, or NULL */
    waiter_t backup_for;                    /* who asked for it */
    char backup_path[CONTROL_BACKUP_PATH];  /* its destination */
    int64_t next_status_ms;                 /* monotonic ms of the next STATUS line */
    metrics_http_t *http;                   /* [metrics] http endpoint, or NULL */
    int64_t next_http_ms;                   /* monotonic ms of the next metrics snapshot */
};

static void reply_backup_error(control_t *c, const char *message);

/* ---------------------------------------------------------------- the socket */

/* mkdir -p of path's directory, the last level 0700. */
static int make_dir_of(const char *path)
{
    char dir[256];
    char *slash;

    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

control_t *control_new(void *zctx, const char *endpoint, store_t *store, server_t *server)
{
    control_t *c = calloc(1, sizeof *c);
    int64_t maxmsg = WIRE_MAX_MSG; /* as every socket; the decoder caps requests lower */
    int linger = CONTROL_LINGER_MS, zero = 0, rc;
    const config_t *cfg = server_config(server);
    char monitor_ep[64];

    if (!c) {
        log_error("out of memory for the control socket; exiting");
        return NULL;
    }
    c->store = store;
    c->server = server;
    c->started_us = wire_now_us();
    c->next_status_ms = wire_monotonic_ms() + 1000; /* the first live STATUS soon after READY */
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        snprintf(c->path, sizeof c->path, "%s", endpoint + 6);
        if ((rc = make_dir_of(c->path)) < 0) {
            log_error("cannot create the directory of the control socket %s: %s; exiting", endpoint,
                      strerror(-rc));
            goto fail;
        }
    }
    c->sock = zmq_socket(zctx, ZMQ_ROUTER);
    if (!c->sock) {
        log_error("cannot create the control socket: %s; exiting", zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &zero, sizeof zero);
    if (zmq_bind(c->sock, endpoint) < 0) {
        log_error("cannot bind the control socket to %s: %s; exiting", endpoint,
                  zmq_strerror(errno));
        goto fail;
    }
    /* operator only: the socket file is the access control */
    if (c->path[0] && chmod(c->path, 0600) < 0)
        log_warning("cannot make the control socket %s private: %s", c->path, strerror(errno));
    /* subscribers = connections accepted minus connections lost on publish */
    snprintf(monitor_ep, sizeof monitor_ep, "inproc://parksync-publish-monitor-%p", (void *)c);
    if (zmq_socket_monitor(server_publish_socket(server), monitor_ep,
                           ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) < 0 ||
        !(c->monitor = zmq_socket(zctx, ZMQ_PAIR)) || zmq_connect(c->monitor, monitor_ep) < 0)
        log_warning("cannot monitor the publish socket: %s; status will show 0 subscribers",
                    zmq_strerror(errno));
    if (strcmp(cfg->metrics_http, "off") != 0) {
        c->http = metrics_http_new(cfg->metrics_http);
        if (!c->http)
            goto fail;
    }
    return c;
fail:
    c->path[0] = '\0'; /* not ours to remove */
    control_destroy(&c);
    return NULL;
}

void *control_socket(const control_t *c)
{
    return c->sock;
}

static void drain_monitor(control_t *c);

void control_destroy(control_t **cp)
{
    control_t *c;

    if (!cp || !*cp)
        return;
    c = *cp;
    if (c->backup) {
        store_backup_abort(&c->backup);
        log_warning("backup to %s abandoned: the daemon is stopping", c->backup_path);
        reply_backup_error(c, "the daemon stopped before the backup was complete");
    }
    metrics_http_destroy(&c->http);
    if (c->monitor) {
        /* Stop the events before their reader goes, and read what is
         * queued: an event sent to a reader already closed stays in
         * libzmq's pipe, never freed. */
        zmq_socket_monitor(server_publish_socket(c->server), NULL, 0);
        drain_monitor(c);
        zmq_close(c->monitor);
    }
    if (c->sock)
        zmq_close(c->sock);
    if (c->path[0])
        unlink(c->path);
    free(c);
    *cp = NULL;
}

/* ---------------------------------------------------------------- replies */

static void send_reply_to(control_t *c, const void *id, size_t id_len, uint64_t request_id,
                          Parksync__V1__ControlReply *r)
{
    size_t len;
    uint8_t *buf;

    r->has_version = true;
    r->version = WIRE_VERSION;
    r->has_request_id = true;
    r->request_id = request_id;
    buf = wire_pack(&r->base, &len);
    if (!buf) {
        log_error("out of memory packing a control reply; dropping it");
        return;
    }
    if (zmq_send(c->sock, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0)
        log_warning("cannot send a control reply: %s; dropping it", zmq_strerror(errno));
    free(buf);
}

static void send_reply(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                       Parksync__V1__ControlReply *r)
{
    send_reply_to(c, zmq_msg_data((zmq_msg_t *)id), zmq_msg_size((zmq_msg_t *)id), request_id, r);
}

static void send_error(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                       Parksync__V1__ErrorCode code, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = code;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR;
    r.error = &e;
    send_reply(c, id, request_id, &r);
}

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

static void handle_conflicts(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                             const Parksync__V1__ConflictsRequest *q)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__ConflictList list = PARKSYNC__V1__CONFLICT_LIST__INIT;
    store_conflict_filter_t f = {0};
    page_t p = {0};
    int rc;

    if (q->country && !wire_country_valid(q->country)) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "country must be two upper-case letters");
        return;
    }
    if (q->has_kind && q->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED &&
        !wire_kind_name(q->kind)) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
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
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                   "cannot read the conflicts table; see the daemon's log");
        goto out;
    }
    if (p.n && !(p.ptrs = calloc(p.n, sizeof *p.ptrs))) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
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
    send_reply(c, id, request_id, &r);
out:
    page_free(&p);
}

/* ---------------------------------------------------------------- status and metrics */

/* Producers being gathered from the store. */
typedef struct gather {
    metrics_snapshot_t *m; /* where they go */
    size_t cap;            /* allocated entries */
    bool oom;              /* out of memory */
} gather_t;

static int on_producer(void *arg, const char *id, const store_producer_stats_t *st)
{
    gather_t *g = arg;
    metrics_snapshot_t *m = g->m;

    if (m->n_producers == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        metrics_producer_t *n = realloc(m->producers, cap * sizeof *n);
        if (!n) {
            g->oom = true;
            return 1;
        }
        m->producers = n;
        g->cap = cap;
    }
    snprintf(m->producers[m->n_producers].id, sizeof m->producers[0].id, "%s", id);
    m->producers[m->n_producers++].st = *st;
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

/* Takes a snapshot between batches; `light` skips the file sizes and the
 * store's figures (records and conflicts) for the periodic STATUS line. Returns 0 or a negative
 * errno (logged); the snapshot must be freed either way. */
static int collect(control_t *c, metrics_snapshot_t *m, bool light)
{
    const config_t *cfg = server_config(c->server);
    gather_t g = {m, 0, false};
    int rc;

    memset(m, 0, sizeof *m);
    m->n = *server_counters(c->server);
    m->bad_control = c->bad_requests;
    m->started_us = c->started_us;
    m->now_us = wire_now_us();
    m->head_revision = store_head(c->store);
    m->subscribers = c->subscribers;
    m->subscriptions = server_subscriptions(c->server);
    store_producers(c->store, on_producer, &g);
    if (g.oom)
        return -ENOMEM;
    if (m->n_producers > 1)
        qsort(m->producers, m->n_producers, sizeof *m->producers, by_id);
    if (light)
        return 0;
    m->database_bytes = file_size(cfg->database, "");
    m->wal_bytes = file_size(cfg->database, "-wal");
    for (int k = 1; k < METRICS_KINDS; k++) {
        rc = store_count_records(c->store, (Parksync__V1__RecordKind)k, &m->records[k]);
        if (rc < 0)
            goto fail;
    }
    rc = store_conflict_counts(c->store, &m->conflicts, on_reason, m);
    if (rc < 0)
        goto fail;
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
    COUNTER(streams_dropped),
    COUNTER(forged),
    COUNTER(subscriptions_refused),
    COUNTER(subscribers_dropped),
};
#undef COUNTER
#define N_COUNTER_FIELDS (sizeof counter_fields / sizeof counter_fields[0])

static void handle_status(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Status st = PARKSYNC__V1__STATUS__INIT;
    Parksync__V1__Counter rec[METRICS_KINDS], *recp[METRICS_KINDS];
    Parksync__V1__Counter cnt[N_COUNTER_FIELDS + 1], *cntp[N_COUNTER_FIELDS + 1];
    Parksync__V1__Counter why[METRICS_REASONS], *whyp[METRICS_REASONS];
    Parksync__V1__ProducerStatus *ps = NULL, **psp = NULL;
    metrics_snapshot_t m;

    if (collect(c, &m, false) < 0 ||
        (m.n_producers && (!(ps = calloc(m.n_producers, sizeof *ps)) ||
                           !(psp = calloc(m.n_producers, sizeof *psp))))) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
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
    for (int k = 1; k < METRICS_KINDS; k++) {
        parksync__v1__counter__init(&rec[st.n_records]);
        rec[st.n_records].name = (char *)wire_kind_name((Parksync__V1__RecordKind)k);
        rec[st.n_records].has_value = true;
        rec[st.n_records].value = m.records[k];
        recp[st.n_records] = &rec[st.n_records];
        st.n_records++;
    }
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
        ps[i].has_missing_from = ps[i].has_missing_to = ahead_missing(
            server_ahead(c->server), ps[i].producer_id, &ps[i].missing_from, &ps[i].missing_to);
        psp[i] = &ps[i];
    }
    st.n_producers = m.n_producers;
    st.producers = psp;
    for (size_t i = 0; i < N_COUNTER_FIELDS; i++) {
        parksync__v1__counter__init(&cnt[i]);
        cnt[i].name = (char *)counter_fields[i].name;
        cnt[i].has_value = true;
        memcpy(&cnt[i].value, (const char *)&m.n + counter_fields[i].offset, sizeof(uint64_t));
        cntp[i] = &cnt[i];
    }
    /* the control socket's own rejections, counted here rather than in the loop */
    parksync__v1__counter__init(&cnt[N_COUNTER_FIELDS]);
    cnt[N_COUNTER_FIELDS].name = "bad_control";
    cnt[N_COUNTER_FIELDS].has_value = true;
    cnt[N_COUNTER_FIELDS].value = m.bad_control;
    cntp[N_COUNTER_FIELDS] = &cnt[N_COUNTER_FIELDS];
    st.n_counters = N_COUNTER_FIELDS + 1;
    st.counters = cntp;
    st.has_subscribers = st.has_database_bytes = st.has_wal_bytes = st.has_conflicts = true;
    st.subscribers = m.subscribers;
    st.database_bytes = m.database_bytes;
    st.wal_bytes = m.wal_bytes;
    st.conflicts = m.conflicts;
    for (size_t i = 0; i < m.n_reasons; i++) {
        parksync__v1__counter__init(&why[i]);
        why[i].name = m.reasons[i].name;
        why[i].has_value = true;
        why[i].value = m.reasons[i].n;
        whyp[i] = &why[i];
    }
    st.n_conflicts_by_reason = m.n_reasons;
    st.conflicts_by_reason = whyp;
    if (c->reload_error[0])
        st.reload_error = c->reload_error;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_STATUS;
    r.status = &st;
    send_reply(c, id, request_id, &r);
out:
    free(ps);
    free(psp);
    metrics_snapshot_free(&m);
}

/* The Prometheus text now, or NULL (logged). Caller frees. */
static char *render_now(control_t *c, size_t *len)
{
    metrics_snapshot_t m;
    char *text = NULL;

    if (collect(c, &m, false) == 0 && !(text = metrics_render(&m, len)))
        log_error("out of memory rendering the metrics");
    metrics_snapshot_free(&m);
    return text;
}

static void handle_metrics(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Metrics mt = PARKSYNC__V1__METRICS__INIT;
    size_t len = 0;
    char *text = render_now(c, &len);

    if (!text) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                   "cannot gather the metrics; see the daemon's log");
        return;
    }
    mt.text = text;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_METRICS;
    r.metrics = &mt;
    send_reply(c, id, request_id, &r);
    free(text);
}

/* ---------------------------------------------------------------- backup and reload */

static void keep_waiter(waiter_t *w, const zmq_msg_t *id, uint64_t request_id)
{
    size_t len = zmq_msg_size((zmq_msg_t *)id);

    w->len = len < sizeof w->id ? len : sizeof w->id;
    memcpy(w->id, zmq_msg_data((zmq_msg_t *)id), w->len);
    w->request_id = request_id;
}

static void reply_backup_error(control_t *c, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR;
    r.error = &e;
    send_reply_to(c, c->backup_for.id, c->backup_for.len, c->backup_for.request_id, &r);
}

static void handle_backup(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                          const Parksync__V1__BackupRequest *q)
{
    char msg[CONTROL_BACKUP_PATH + 256];
    int err = 0;

    if (!q->path || q->path[0] != '/') {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "the backup path must be absolute: the daemon writes it, as its own user");
        return;
    }
    if (strlen(q->path) >= CONTROL_BACKUP_PATH - 8) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "the backup path is too long");
        return;
    }
    if (c->backup) {
        snprintf(msg, sizeof msg, "a backup to %s is running; try again when it is done",
                 c->backup_path);
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY, msg);
        return;
    }
    c->backup = store_backup_start(c->store, q->path, &err);
    if (!c->backup) {
        snprintf(msg, sizeof msg, "cannot start a backup to %s: %s (%s)", q->path, strerror(-err),
                 store_errmsg(c->store));
        log_warning("%s", msg);
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, msg);
        return;
    }
    snprintf(c->backup_path, sizeof c->backup_path, "%s", q->path);
    keep_waiter(&c->backup_for, id, request_id);
    log_info("backup to %s started", c->backup_path);
}

/* Copies the next pages of the running backup; answers when done. */
static void step_backup(control_t *c)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Backup b = PARKSYNC__V1__BACKUP__INIT;
    char msg[CONTROL_BACKUP_PATH + 256];
    uint64_t bytes = 0, revision = 0;
    int rc = store_backup_step(c->backup, CONTROL_BACKUP_PAGES);

    if (rc == 0)
        return;
    if (rc > 0)
        rc = store_backup_finish(&c->backup, &bytes, &revision);
    else
        store_backup_abort(&c->backup);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "backup to %s failed: %s (%s); nothing was written there",
                 c->backup_path, strerror(-rc), store_errmsg(c->store));
        log_error("%s", msg);
        reply_backup_error(c, msg);
        return;
    }
    log_info("backup to %s done: %" PRIu64 " bytes at revision %" PRIu64, c->backup_path, bytes,
             revision);
    b.path = c->backup_path;
    b.has_bytes = b.has_revision = true;
    b.bytes = bytes;
    b.revision = revision;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_BACKUP;
    r.backup = &b;
    send_reply_to(c, c->backup_for.id, c->backup_for.len, c->backup_for.request_id, &r);
}

static void handle_reload(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    if (c->n_reloaders == CONTROL_WAITERS) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY,
                   "too many reload requests waiting");
        return;
    }
    keep_waiter(&c->reloaders[c->n_reloaders++], id, request_id);
    c->reload_pending = true;
    log_info("reload requested on the control socket");
}

bool control_reload_pending(const control_t *c)
{
    return c->reload_pending;
}

void control_reload_done(control_t *c, bool ok, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Reload rl = PARKSYNC__V1__RELOAD__INIT;

    if (ok)
        c->reload_error[0] = '\0';
    else
        snprintf(c->reload_error, sizeof c->reload_error, "%s", message);
    rl.has_ok = true;
    rl.ok = ok;
    rl.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_RELOAD;
    r.reload = &rl;
    for (size_t i = 0; i < c->n_reloaders; i++)
        send_reply_to(c, c->reloaders[i].id, c->reloaders[i].len, c->reloaders[i].request_id, &r);
    c->n_reloaders = 0;
    c->reload_pending = false;
    c->next_status_ms = 0; /* say it in STATUS at once */
}

/* ---------------------------------------------------------------- the drain loop */

static void handle(control_t *c, const zmq_msg_t *id, const zmq_msg_t *body)
{
    Parksync__V1__ControlRequest *q = NULL;
    const char *why = NULL;
    int rc = wire_control_request_decode(zmq_msg_data((zmq_msg_t *)body),
                                         zmq_msg_size((zmq_msg_t *)body), &q, &why);

    if (rc < 0) {
        c->bad_requests++;
        log_ratelimited(&c->rl, LOG_LEVEL_WARNING, "dropping a control request (%zu bytes): %s",
                        zmq_msg_size((zmq_msg_t *)body), why ? why : strerror(-rc));
        return;
    }
    switch (q->body_case) {
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_CONFLICTS:
        handle_conflicts(c, id, q->request_id, q->conflicts);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_STATUS:
        handle_status(c, id, q->request_id);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_METRICS:
        handle_metrics(c, id, q->request_id);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_BACKUP:
        handle_backup(c, id, q->request_id, q->backup);
        break;
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_RELOAD:
        handle_reload(c, id, q->request_id);
        break;
    default:
        c->bad_requests++;
        send_error(c, id, q->request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "this daemon does not answer that control request yet");
        break;
    }
    parksync__v1__control_request__free_unpacked(q, NULL);
}

void control_drain(control_t *c)
{
    for (int i = 0; i < CONTROL_BUDGET; i++) {
        zmq_msg_t id, body;
        int more = 0;
        size_t more_len = sizeof more;

        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return;
        }
        zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len);
        if (!more) {
            c->bad_requests++; /* a routing id with no request */
            zmq_msg_close(&id);
            continue;
        }
        zmq_msg_init(&body);
        zmq_msg_recv(&body, c->sock, 0);
        zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len);
        if (more) {
            /* [id][request] only; drain and drop anything longer */
            while (more) {
                zmq_msg_t rest;
                zmq_msg_init(&rest);
                zmq_msg_recv(&rest, c->sock, 0);
                zmq_msg_close(&rest);
                zmq_getsockopt(c->sock, ZMQ_RCVMORE, &more, &more_len);
            }
            c->bad_requests++;
            log_ratelimited(&c->rl, LOG_LEVEL_WARNING,
                            "control message has more than one frame, dropping");
        } else {
            handle(c, &id, &body);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&id);
    }
}

/* ---------------------------------------------------------------- deferred work */

/* Counts publish connections from the monitor's events: [event+value][address]. */
static void drain_monitor(control_t *c)
{
    for (int i = 0; i < CONTROL_BUDGET && c->monitor; i++) {
        zmq_msg_t ev, addr;
        uint16_t event = 0;

        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, c->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        if (zmq_msg_size(&ev) >= sizeof event)
            memcpy(&event, zmq_msg_data(&ev), sizeof event);
        if (zmq_msg_more(&ev)) {
            zmq_msg_init(&addr);
            zmq_msg_recv(&addr, c->monitor, 0);
            zmq_msg_close(&addr);
        }
        zmq_msg_close(&ev);
        if (event == ZMQ_EVENT_ACCEPTED)
            c->subscribers++;
        else if (event == ZMQ_EVENT_DISCONNECTED && c->subscribers > 0)
            c->subscribers--;
    }
}

static void send_status_line(control_t *c)
{
    metrics_snapshot_t m;
    const server_counters_t *n = &m.n;

    if (collect(c, &m, true) == 0)
        sd_notifyf(0,
                   "STATUS=%s%s%srevision %" PRIu64 ", %zu producers, %" PRIu64
                   " subscribers, %" PRIu64 " updates applied, %" PRIu64 " rejected",
                   c->reload_error[0] ? "reload failed: " : "", c->reload_error,
                   c->reload_error[0] ? "; running the previous configuration; " : "",
                   m.head_revision, m.n_producers, m.subscribers, n->applied,
                   n->refused + n->invalid + n->undecodable + n->too_large + n->bad_frames +
                       n->wrong_topic);
    metrics_snapshot_free(&m);
}

bool control_tick(control_t *c, int64_t now)
{
    drain_monitor(c);
    if (c->backup)
        step_backup(c);
    if (now >= c->next_status_ms) {
        send_status_line(c);
        c->next_status_ms = now + CONTROL_STATUS_MS;
    }
    if (c->http && now >= c->next_http_ms) {
        size_t len = 0;
        char *text = render_now(c, &len);
        if (text)
            metrics_http_update(c->http, text, len);
        free(text);
        c->next_http_ms = now + CONTROL_HTTP_MS;
    }
    return c->backup != NULL;
}
