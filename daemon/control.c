/*
 * control.c - see control.h.
 *
 * Sections: the socket; replies; handlers (one per request body); the
 * drain loop; deferred work (backup, reload, STATUS, metrics over HTTP).
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <zmq.h>

#include "log.h"
#include "metrics.h"
#include "rundir.h"
#include "wire.h"
#include "zap.h"

#define CONTROL_BUDGET      64           /* requests answered per pass */
#define CONTROL_REPLY_MAX   (512 * 1024) /* bytes of conflicts in one reply, < WIRE_MAX_MSG */
#define CONTROL_ID_MAX      256          /* bytes of a routing id */
#define CONTROL_BACKUP_PATH 1024         /* bytes of a backup path, with NUL */
#define CONTROL_LINGER_MS   200          /* ms pending replies get on close */
#define CONTROL_WAITERS     8            /* `parksync reload` requests waiting at once */
#define CONTROL_MESSAGE_MAX 512          /* bytes of a reload message, with NUL */
#define CONTROL_PATH_MAX    256          /* bytes of the socket's directory or name, with NUL */

/* Who gets a deferred reply. */
typedef struct waiter {
    uint8_t id[CONTROL_ID_MAX]; /* ROUTER routing id */
    size_t len;                 /* bytes of id */
    uint64_t request_id;        /* echoed in the reply */
} waiter_t;

struct control {
    void *sock;                             /* ROUTER, bound */
    store_t *store;                         /* borrowed */
    control_view_t view;                    /* the daemon's state it reads (control.h) */
    int dirfd;                              /* the checked directory of the socket, or -1 */
    char name[CONTROL_PATH_MAX];            /* the socket's file name in it; "": not ours */
    log_ratelimit_t rl;                     /* bad requests */
    uint64_t bad_requests;                  /* control requests dropped or refused as malformed */
    int64_t started_us;                     /* wall clock at start, us since 1970 UTC */
    bool reload_pending;                    /* `parksync reload` waits for main to reload */
    waiter_t reloaders[CONTROL_WAITERS];    /* who asked for it */
    size_t n_reloaders;                     /* entries in reloaders */
    char reload_error[CONTROL_MESSAGE_MAX]; /* last reload's failure, "" after a good one */
    store_backup_t *backup;                 /* running backup, or NULL */
    bool backup_sealed;                     /* its copy is complete: checked, then renamed */
    waiter_t backup_for;                    /* who asked for it */
    char backup_path[CONTROL_BACKUP_PATH];  /* its destination */
    enum { CHECK_NONE, CHECK_LIVE, CHECK_COPY } checking; /* what the thread checks */
    waiter_t check_for;                                   /* who asked for the live check */
    int64_t check_started_ms;                             /* monotonic ms it began */
    int64_t next_status_ms;                               /* monotonic ms of the next STATUS line */
    metrics_http_t *http;                                 /* [metrics] http endpoint, or NULL */
    int64_t next_http_ms;    /* monotonic ms of the next metrics snapshot */
    uint64_t http_dropped;   /* metrics HTTP drops already logged */
    log_ratelimit_t http_rl; /* lines about them */
};

static void reply_backup_error(control_t *c, const char *message);
static void reply_error_to(control_t *c, const waiter_t *w, const char *message);
static void check_done(control_t *c, bool ok, bool malformed, const char *findings);

/* ---------------------------------------------------------------- the socket */

/* Binds the control socket into its directory as checked through a
 * descriptor (rundir.h), not merely into whatever the path names by then. */
static int bind_private(control_t *c, const char *endpoint)
{
    char dir[CONTROL_PATH_MAX], why[1024];
    struct stat st;

    if (rundir_split(endpoint, dir, sizeof dir, c->name, sizeof c->name) < 0) {
        log_error("[endpoints] control = %s: expected ipc://DIRECTORY/NAME; exiting", endpoint);
        return -EINVAL;
    }
    c->dirfd = rundir_open_private(dir, why, sizeof why);
    if (c->dirfd < 0) {
        log_error("refusing to start: the control socket %s: %s", endpoint, why);
        return c->dirfd;
    }
    /* A socket a crash left behind goes first: libzmq unlinks it too, but by
     * path, and then the check after binding would find the old one. */
    if (unlinkat(c->dirfd, c->name, 0) < 0 && errno != ENOENT) {
        log_error("cannot remove the old control socket %s/%s: %s; exiting", dir, c->name,
                  strerror(errno));
        return -errno;
    }
    if (zmq_bind(c->sock, endpoint) < 0) {
        int err = zmq_errno();
        log_error("cannot bind the control socket to %s: %s; exiting", endpoint, zmq_strerror(err));
        c->name[0] = '\0'; /* not ours to remove */
        return -err;
    }
    /* Only this user (and root) can make an entry in the directory: if the
     * socket is not there, the path led elsewhere while binding. */
    if (fstatat(c->dirfd, c->name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode) ||
        st.st_uid != geteuid()) {
        log_error("refusing to start: the control socket %s did not appear in the directory "
                  "%s that was checked (was the path changed while binding?)",
                  endpoint, dir);
        c->name[0] = '\0';
        return -EPERM;
    }
    /* The daemon's user and its group, the operators': the directory
     * decides whether the group reaches it at all (0700 or 0750, rundir.h). */
    if (fchmodat(c->dirfd, c->name, 0660, 0) < 0)
        log_warning("cannot set the control socket %s to mode 0660: %s", endpoint, strerror(errno));
    return 0;
}

control_t *control_new(void *zctx, const char *endpoint, store_t *store, const control_view_t *view)
{
    control_t *c = calloc(1, sizeof *c);
    int64_t maxmsg = WIRE_MAX_MSG; /* as every socket; the decoder caps requests lower */
    int linger = CONTROL_LINGER_MS, zero = 0;
    const config_t *cfg = view->cfg;

    if (!c) {
        log_error("out of memory for the control socket; exiting");
        return NULL;
    }
    c->store = store;
    c->view = *view;
    c->started_us = wire_now_us();
    c->next_status_ms = wire_monotonic_ms() + 1000; /* the first live STATUS soon after READY */
    c->dirfd = -1;
    c->sock = zmq_socket(zctx, ZMQ_ROUTER);
    if (!c->sock) {
        log_error("cannot create the control socket: %s; exiting", zmq_strerror(errno));
        goto fail;
    }
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &zero, sizeof zero);
    if (bind_private(c, endpoint) < 0)
        goto fail;
    if (strcmp(cfg->metrics_http, "off") != 0) {
        c->http = metrics_http_new(cfg->metrics_http);
        if (!c->http)
            goto fail;
    }
    return c;
fail:
    control_destroy(&c);
    return NULL;
}

void *control_socket(const control_t *c)
{
    return c->sock;
}

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
    if (c->checking == CHECK_LIVE)
        reply_error_to(c, &c->check_for, "the daemon stopped before the check was complete");
    metrics_http_destroy(&c->http);
    if (c->sock)
        zmq_close(c->sock);
    if (c->dirfd >= 0) {
        if (c->name[0])
            unlinkat(c->dirfd, c->name, 0);
        close(c->dirfd);
    }
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

/* Takes a snapshot between batches, listing the producers after
 * producers_after (NULL: from the first); `light` skips the file sizes
 * and the store's figures (records and conflicts) for the periodic STATUS
 * line. Returns 0 or a negative errno (logged); the snapshot must be
 * freed either way. */
static int collect(control_t *c, metrics_snapshot_t *m, bool light, const char *producers_after)
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
    m->handshakes_admitted = zap_allowed(c->view.zap);
    m->last_checkpoint_us = checkpoint_last_complete_us(c->view.checkpoint);
    m->checkpoint_failures = checkpoint_failures(c->view.checkpoint);
    m->health = *c->view.health;
    m->handshakes_refused = zap_denied(c->view.zap);
    m->started_us = c->started_us;
    m->now_us = wire_now_us();
    m->head_revision = store_head(c->store);
    for (int i = 0; i < CONNS_SOCKETS; i++) {
        const conns_stats_t *cs = c->view.conns[i] ? conns_stats(c->view.conns[i]) : NULL;
        if (cs)
            m->conns[i] = *cs;
    }
    m->subscribers = m->conns[1].open;
    m->subscriptions = subscriptions_stats(c->view.subs)->in_use;
    store_producers(c->store, on_producer, &g);
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

/* A counter kept outside server_counters_t. */
typedef struct counter_value {
    const char *name; /* as listed in Status.counters */
    uint64_t value;
} counter_value_t;
/* bad_control, handshakes admitted and refused, HTTP drops, rows retention
 * dropped, failed checkpoints */
#define N_EXTRA_COUNTERS 7

static void handle_status(control_t *c, const zmq_msg_t *id, uint64_t request_id,
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
    metrics_snapshot_t m;
    Parksync__V1__Health health;
    char reason[HEALTH_REASON * HEALTH_CONDITIONS];
    const char *after = q->producers_after && q->producers_after[0] ? q->producers_after : NULL;

    if (after && !wire_id_valid(after)) {
        c->bad_requests++;
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                   "producers_after must be a producer id");
        return;
    }
    if (collect(c, &m, false, after) < 0 ||
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
     * thread, the metrics HTTP thread and the store's retention */
    const counter_value_t extra[N_EXTRA_COUNTERS] = {
        {"bad_control", m.bad_control},
        {"handshakes_admitted", m.handshakes_admitted},
        {"handshakes_refused", m.handshakes_refused},
        {"metrics_http_dropped", m.http_dropped},
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
    st.subscribers = m.subscribers;
    st.database_bytes = m.database_bytes;
    st.wal_bytes = m.wal_bytes;
    st.conflicts = m.conflicts;
    for (size_t i = 0; i < m.n_reasons; i++)
        set_counter(&why[i], &whyp[i], m.reasons[i].name, m.reasons[i].n);
    fill_conns(&conns, &m, &st);
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

    if (collect(c, &m, false, NULL) == 0 && !(text = metrics_render(&m, len)))
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

static void reply_error_to(control_t *c, const waiter_t *w, const char *message)
{
    Parksync__V1__ControlReply r = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR;
    r.error = &e;
    send_reply_to(c, w->id, w->len, w->request_id, &r);
}

static void reply_backup_error(control_t *c, const char *message)
{
    reply_error_to(c, &c->backup_for, message);
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
        snprintf(msg, sizeof msg, "cannot start a backup to %s: %s (%s)", q->path,
                 store_strerror(err), store_errmsg(c->store));
        log_warning("%s", msg);
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, msg);
        return;
    }
    c->backup_sealed = false;
    snprintf(c->backup_path, sizeof c->backup_path, "%s", q->path);
    keep_waiter(&c->backup_for, id, request_id);
    log_info("backup to %s started", c->backup_path);
}

/* Ends the running backup without a file: its temporary copy goes. */
static void backup_failed(control_t *c, const char *why)
{
    char msg[CONTROL_BACKUP_PATH + 600];

    store_backup_abort(&c->backup);
    snprintf(msg, sizeof msg, "backup to %s failed: %s; nothing was written there", c->backup_path,
             why);
    log_error("%s", msg);
    reply_backup_error(c, msg);
}

/* The copy is complete: the checkpoint thread checks it before it takes
 * its name, unless a live check runs (then control_check_done asks). */
static void check_copy(control_t *c)
{
    char why[300];
    int rc;

    if (c->checking != CHECK_NONE)
        return;
    rc = checkpoint_check(c->view.checkpoint, store_backup_copy_path(c->backup));
    if (rc < 0) {
        snprintf(why, sizeof why, "cannot check the copy: %s", strerror(-rc));
        backup_failed(c, why);
        return;
    }
    c->checking = CHECK_COPY;
}

/* Copies the next pages of the running backup; once the copy is whole,
 * seals it and has it checked. */
static void step_backup(control_t *c)
{
    char why[300];
    int rc = store_backup_step(c->backup, CONTROL_BACKUP_PAGES);

    if (rc == 0)
        return;
    if (rc > 0)
        rc = store_backup_seal(c->backup);
    if (rc < 0) {
        snprintf(why, sizeof why, "%s (%s)", store_strerror(rc), store_errmsg(c->store));
        backup_failed(c, why);
        return;
    }
    c->backup_sealed = true;
    check_copy(c);
}

/* The copy's check answered: a sound copy takes its name, a malformed
 * one goes, and says what that means for the live database. */
static void copy_checked(control_t *c, const check_result_t *r)
{
    Parksync__V1__ControlReply reply = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Backup b = PARKSYNC__V1__BACKUP__INIT;
    char why[600];
    uint64_t bytes = 0, revision = 0;
    int rc;

    if (r->rc == -EUCLEAN) {
        check_done(c, false, true, r->message);
        snprintf(why, sizeof why,
                 "the copy is malformed (quick_check: %.400s), and so is the live database, "
                 "most likely: run `parksync check`",
                 r->message);
        backup_failed(c, why);
        return;
    }
    if (r->rc < 0) {
        snprintf(why, sizeof why, "cannot check the copy: %s (%.400s)", strerror(-r->rc),
                 r->message);
        backup_failed(c, why);
        return;
    }
    rc = store_backup_finish(&c->backup, &bytes, &revision);
    if (rc < 0) {
        snprintf(why, sizeof why, "%s (%s)", store_strerror(rc), store_errmsg(c->store));
        backup_failed(c, why);
        return;
    }
    log_info("backup to %s done: %" PRIu64 " bytes at revision %" PRIu64 ", quick_check ok",
             c->backup_path, bytes, revision);
    b.path = c->backup_path;
    b.has_bytes = b.has_revision = true;
    b.bytes = bytes;
    b.revision = revision;
    reply.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_BACKUP;
    reply.backup = &b;
    send_reply_to(c, c->backup_for.id, c->backup_for.len, c->backup_for.request_id, &reply);
}

/* ---------------------------------------------------------------- check */

/* A quick_check ended: a pass clears a malformed database's condition, a
 * finding raises it. */
static void check_done(control_t *c, bool ok, bool malformed, const char *findings)
{
    if (ok)
        health_clear(c->view.health, HEALTH_MALFORMED);
    else if (malformed)
        health_raise(c->view.health, HEALTH_MALFORMED, "quick_check: %s", findings);
}

static void handle_check(control_t *c, const zmq_msg_t *id, uint64_t request_id)
{
    int rc;

    if (c->checking != CHECK_NONE) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY,
                   c->checking == CHECK_LIVE ? "a check of the database is running; try again "
                                               "when it is done"
                                             : "a backup's copy is being checked; try again in "
                                               "a moment");
        return;
    }
    rc = checkpoint_check(c->view.checkpoint, NULL);
    if (rc < 0) {
        send_error(c, id, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                   "cannot start the check; see the daemon's log");
        log_error("cannot start a check of the database: %s", strerror(-rc));
        return;
    }
    c->checking = CHECK_LIVE;
    c->check_started_ms = wire_monotonic_ms();
    keep_waiter(&c->check_for, id, request_id);
    log_info("check of the database started (quick_check, on the checkpoint thread)");
}

static void live_checked(control_t *c, const check_result_t *r)
{
    Parksync__V1__ControlReply reply = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Check k = PARKSYNC__V1__CHECK__INIT;
    const config_t *cfg = c->view.cfg;
    int64_t took_ms = wire_monotonic_ms() - c->check_started_ms;
    char msg[sizeof r->message + 64];
    struct stat sb;

    if (r->rc < 0 && r->rc != -EUCLEAN) {
        snprintf(msg, sizeof msg, "cannot check the database: %s", r->message);
        log_error("%s", msg);
        reply_error_to(c, &c->check_for, msg);
        return;
    }
    check_done(c, r->rc == 0, r->rc == -EUCLEAN, r->message);
    if (r->rc == 0)
        log_notice("check of the database: quick_check found nothing wrong in %.1f s",
                   (double)took_ms / 1000);
    k.has_ok = k.has_took_us = true;
    k.ok = r->rc == 0;
    k.took_us = took_ms * 1000;
    if (r->rc != 0)
        k.findings = (char *)r->message;
    if (stat(cfg->database, &sb) == 0) {
        k.has_bytes = true;
        k.bytes = (uint64_t)sb.st_size;
    }
    reply.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_CHECK;
    reply.check = &k;
    send_reply_to(c, c->check_for.id, c->check_for.len, c->check_for.request_id, &reply);
}

void control_check_done(control_t *c)
{
    check_result_t r;
    int what = c->checking;

    if (!checkpoint_check_result(c->view.checkpoint, &r))
        return;
    c->checking = CHECK_NONE;
    if (what == CHECK_COPY && c->backup)
        copy_checked(c, &r);
    else if (what == CHECK_LIVE)
        live_checked(c, &r);
    if (c->backup && c->backup_sealed)
        check_copy(c); /* it waited for the live check */
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
        handle_status(c, id, q->request_id, q->status);
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
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_CHECK:
        handle_check(c, id, q->request_id);
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

static void send_status_line(control_t *c)
{
    metrics_snapshot_t m;
    const server_counters_t *n = &m.n;
    char health[HEALTH_REASON * HEALTH_CONDITIONS], since[32] = "";
    int64_t since_us = health_report(c->view.health, health, sizeof health);

    if (since_us != 0) {
        time_t t = (time_t)(since_us / 1000000);
        struct tm tm;
        strftime(since, sizeof since, " since %Y-%m-%d %H:%M:%S UTC", gmtime_r(&t, &tm));
    }
    if (collect(c, &m, true, NULL) == 0)
        sd_notifyf(0,
                   "STATUS=%s%s%s%s%s%s%s%srevision %" PRIu64 ", %" PRIu64 " producers, %" PRIu64
                   " subscribers, %" PRIu64 " updates applied, %" PRIu64 " rejected",
                   since_us ? "DEGRADED" : "", since, since_us ? ": " : "", since_us ? health : "",
                   since_us ? "; " : "", c->reload_error[0] ? "reload failed: " : "",
                   c->reload_error,
                   c->reload_error[0] ? "; running the previous configuration; " : "",
                   m.head_revision, m.producers_total, m.subscribers, n->applied,
                   n->refused + n->invalid + n->undecodable + n->too_large + n->bad_frames +
                       n->wrong_topic);
    metrics_snapshot_free(&m);
}

bool control_tick(control_t *c, int64_t now)
{
    if (c->backup && !c->backup_sealed)
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
        uint64_t dropped = metrics_http_dropped(c->http);
        if (dropped > c->http_dropped)
            log_ratelimited(&c->http_rl, LOG_LEVEL_WARNING,
                            "metrics HTTP: closed %" PRIu64 " connections before a whole "
                            "request (silent too long, or malformed); %" PRIu64 " since start",
                            dropped - c->http_dropped, dropped);
        c->http_dropped = dropped;
        c->next_http_ms = now + CONTROL_HTTP_MS;
    }
    return c->backup != NULL && !c->backup_sealed; /* copying: no sleep between steps */
}
