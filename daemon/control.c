/*
 * control.c - see control.h.
 *
 * Sections: the socket; replies; handlers (one per request body); the
 * drain loop.
 */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"
#include "wire.h"

#define CONTROL_BUDGET 64               /* requests answered per pass */
#define CONTROL_REPLY_MAX (512 * 1024)  /* bytes of conflicts in one reply, < WIRE_MAX_MSG */
#define CONTROL_ID_MAX 256              /* bytes of a routing id */
#define CONTROL_LINGER_MS 200           /* ms pending replies get on close */

struct control {
    void *sock;                  /* ROUTER, bound */
    store_t *store;              /* borrowed */
    char path[256];              /* the socket file, removed on destroy */
    log_ratelimit_t rl;          /* bad requests */
};

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

control_t *control_new(void *zctx, const char *endpoint, store_t *store)
{
    control_t *c = calloc(1, sizeof *c);
    int64_t maxmsg = WIRE_MAX_CONTROL;
    int linger = CONTROL_LINGER_MS, zero = 0, rc;

    if (!c) {
        log_error("out of memory for the control socket; exiting");
        return NULL;
    }
    c->store = store;
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        snprintf(c->path, sizeof c->path, "%s", endpoint + 6);
        if ((rc = make_dir_of(c->path)) < 0) {
            log_error("cannot create the directory of the control socket %s: %s; exiting",
                      endpoint, strerror(-rc));
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

void control_destroy(control_t **cp)
{
    control_t *c;

    if (!cp || !*cp)
        return;
    c = *cp;
    if (c->sock)
        zmq_close(c->sock);
    if (c->path[0])
        unlink(c->path);
    free(c);
    *cp = NULL;
}

/* ---------------------------------------------------------------- replies */

static void send_reply(control_t *c, const zmq_msg_t *id, uint64_t request_id,
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
    if (zmq_send(c->sock, zmq_msg_data((zmq_msg_t *)id), zmq_msg_size((zmq_msg_t *)id),
                 ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(c->sock, buf, len, ZMQ_DONTWAIT) < 0)
        log_warning("cannot send a control reply: %s; dropping it", zmq_strerror(errno));
    free(buf);
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
              : q->limit > CONTROL_MAX_LIMIT ? CONTROL_MAX_LIMIT : q->limit;
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

/* ---------------------------------------------------------------- the drain loop */

static void handle(control_t *c, const zmq_msg_t *id, const zmq_msg_t *body)
{
    Parksync__V1__ControlRequest *q = NULL;
    const char *why = NULL;
    int rc = wire_control_request_decode(zmq_msg_data((zmq_msg_t *)body),
                                         zmq_msg_size((zmq_msg_t *)body), &q, &why);

    if (rc < 0) {
        log_ratelimited(&c->rl, LOG_LEVEL_WARNING, "dropping a control request (%zu bytes): %s",
                        zmq_msg_size((zmq_msg_t *)body), why ? why : strerror(-rc));
        return;
    }
    switch (q->body_case) {
    case PARKSYNC__V1__CONTROL_REQUEST__BODY_CONFLICTS:
        handle_conflicts(c, id, q->request_id, q->conflicts);
        break;
    default:
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
            log_ratelimited(&c->rl, LOG_LEVEL_WARNING,
                            "control message has more than one frame, dropping");
        } else {
            handle(c, &id, &body);
        }
        zmq_msg_close(&body);
        zmq_msg_close(&id);
    }
}
