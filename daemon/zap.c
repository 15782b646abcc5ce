/*
 * zap.c - see zap.h.
 *
 * Sections: the table; the handler thread; the loop's side.
 *
 * The pipe is an inproc PAIR. Loop to thread: a whole zap_table_t (a new
 * table) or ZAP_STOP. Thread to loop: ZAP_READY or ZAP_FAIL once at
 * start, then one zap_notice_t per refusal, sent without blocking (when
 * the loop falls behind, notices are dropped; the atomic counter still
 * counts every refusal).
 */
#include "zap.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "log.h"

#define ZAP_ENDPOINT         "inproc://zeromq.zap.01" /* RFC 27: fixed by libzmq */
#define ZAP_STOP             "STOP"                   /* loop -> thread: end */
#define ZAP_READY            "READY"                  /* thread -> loop: bound, answering */
#define ZAP_FAIL             "FAIL"                   /* thread -> loop: could not bind */
#define ZAP_FRAMES           8                        /* request frames kept; more is malformed */
#define ZAP_START_TIMEOUT_MS 5000                     /* zap_new waits this long for READY */
#define ZAP_NOTICE_BUDGET    64                       /* notices logged per zap_drain */
#define ZAP_PIPE_HWM         1000                     /* notices queued before dropping */

/* One refusal, reported to the loop. */
typedef struct zap_notice {
    char domain[32];            /* the socket's ZAP domain */
    char address[64];           /* the peer's IP address */
    char key[KEYS_Z85_LEN + 1]; /* its public key, Z85; "" when none */
    char why[64];               /* the status text sent */
} zap_notice_t;

struct zap {
    void *pipe;             /* loop's end of the PAIR */
    void *zctx;             /* borrowed */
    char pipe_endpoint[64]; /* inproc://parksync-zap-<address> */
    pthread_t thread;
    bool running;             /* the thread was started and not joined */
    zap_table_t *start_table; /* handed to the thread at start; once `running`, the
                                 thread owns it and the loop never touches it */
    zap_table_t *table;       /* the loop's copy of the table in force (zap_table) */
    _Atomic uint64_t allowed; /* handshakes admitted */
    _Atomic uint64_t denied;  /* handshakes refused */
    log_ratelimit_t rl;       /* denial lines (loop side) */
};

/* ---------------------------------------------------------------- the table */

static void add_entries(zap_table_t *t, const char (*keys)[CONFIG_KEY_LEN], size_t n,
                        zap_role_t role, const char *name)
{
    for (size_t k = 0; k < n && t->n < ZAP_MAX_ENTRIES; k++) {
        zap_entry_t *e = &t->entries[t->n];
        if (!keys_z85_valid(keys[k]) || zmq_z85_decode(e->key, keys[k]) == NULL)
            continue; /* cannot happen: config checked it */
        e->role = role;
        snprintf(e->name, sizeof e->name, "%s", name);
        t->n++;
    }
}

void zap_table_from_config(zap_table_t *t, const config_t *cfg)
{
    memset(t, 0, sizeof *t);
    t->subscriber_auth = cfg->subscriber_auth;
    for (size_t i = 0; i < cfg->n_ministries; i++)
        add_entries(t, cfg->ministries[i].keys, cfg->ministries[i].n_keys, ZAP_ROLE_MINISTRY,
                    cfg->ministries[i].name);
    for (size_t i = 0; i < cfg->n_subscribers; i++)
        add_entries(t, cfg->subscribers[i].keys, cfg->subscribers[i].n_keys, ZAP_ROLE_SUBSCRIBER,
                    cfg->subscribers[i].name);
    for (size_t i = 0; i < cfg->n_peers; i++)
        if (cfg->peers[i].key[0])
            add_entries(t, &cfg->peers[i].key, 1, ZAP_ROLE_PEER, cfg->peers[i].name);
}

static const zap_entry_t *table_find(const zap_table_t *t, const uint8_t *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (memcmp(t->entries[i].key, key, KEYS_BIN_LEN) == 0)
            return &t->entries[i];
    return NULL;
}

bool zap_table_revokes(const zap_table_t *old, const zap_table_t *now)
{
    if (!old->subscriber_auth && now->subscriber_auth)
        return true; /* anonymous readers are no longer admitted */
    for (size_t i = 0; i < old->n; i++) {
        const zap_entry_t *e = table_find(now, old->entries[i].key);
        if (!e || e->role != old->entries[i].role || strcmp(e->name, old->entries[i].name) != 0)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- the handler thread */

static bool frame_is(zmq_msg_t *m, const char *text)
{
    size_t n = strlen(text);

    return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), text, n) == 0;
}

static void frame_text(char *buf, size_t size, zmq_msg_t *m)
{
    size_t n = zmq_msg_size(m) < size - 1 ? zmq_msg_size(m) : size - 1;
    const unsigned char *p = zmq_msg_data(m);

    for (size_t i = 0; i < n; i++)
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    buf[n] = '\0';
}

/* Decides one request. Returns true to admit; user gets the User-Id. */
static bool decide(const zap_table_t *t, zmq_msg_t *f, int total, char *user, size_t ulen,
                   const char **why)
{
    const zap_entry_t *e;
    bool ingest, reader;

    if (total < 7 || total > ZAP_FRAMES || !frame_is(&f[0], "1.0")) {
        *why = "malformed ZAP request";
        return false;
    }
    if (!frame_is(&f[5], "CURVE") || total != 7 || zmq_msg_size(&f[6]) != KEYS_BIN_LEN) {
        *why = "only CURVE is accepted";
        return false;
    }
    ingest = frame_is(&f[2], ZAP_DOMAIN_INGEST);
    reader = frame_is(&f[2], ZAP_DOMAIN_PUBLISH) || frame_is(&f[2], ZAP_DOMAIN_QUERY);
    if (!ingest && !reader) {
        *why = "unknown domain";
        return false;
    }
    e = table_find(t, zmq_msg_data(&f[6]));
    if (e && e->role == ZAP_ROLE_MINISTRY) {
        snprintf(user, ulen, "%s%s", ZAP_USER_MINISTRY, e->name);
        return true;
    }
    if (ingest) {
        *why = e ? "not a ministry's key" : "unknown key";
        return false;
    }
    if (e) {
        snprintf(user, ulen, "%s%s", e->role == ZAP_ROLE_PEER ? ZAP_USER_PEER : ZAP_USER_SUBSCRIBER,
                 e->name);
        return true;
    }
    if (!t->subscriber_auth) {
        snprintf(user, ulen, "%s", ZAP_USER_ANONYMOUS);
        return true;
    }
    *why = "unknown key";
    return false;
}

static void send_frame(void *sock, const void *data, size_t len, bool more)
{
    zmq_send(sock, data, len, more ? ZMQ_SNDMORE : 0);
}

/* Reads one request (always answered: REP must reply to go on). */
static void handle_request(zap_t *z, void *rep, void *pipe, const zap_table_t *t)
{
    zmq_msg_t f[ZAP_FRAMES];
    int kept = 0, total = 0, more = 1;
    char user[CONFIG_ID_MAX + 16] = "";
    const char *why = "";
    bool ok;

    while (more) {
        zmq_msg_t scratch, *m = kept < ZAP_FRAMES ? &f[kept] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, rep, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        total++;
        more = zmq_msg_more(m);
        if (m == &scratch)
            zmq_msg_close(m);
        else
            kept++;
    }
    if (total == 0)
        return;
    ok = decide(t, f, total > ZAP_FRAMES ? ZAP_FRAMES + 1 : total, user, sizeof user, &why);
    send_frame(rep, "1.0", 3, true);
    if (kept > 1)
        send_frame(rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), true);
    else
        send_frame(rep, "", 0, true);
    send_frame(rep, ok ? "200" : "400", 3, true);
    send_frame(rep, ok ? "OK" : why, strlen(ok ? "OK" : why), true);
    send_frame(rep, user, strlen(user), true);
    send_frame(rep, "", 0, false);
    if (ok) {
        atomic_fetch_add(&z->allowed, 1);
    } else {
        zap_notice_t n;
        memset(&n, 0, sizeof n);
        atomic_fetch_add(&z->denied, 1);
        if (kept > 2)
            frame_text(n.domain, sizeof n.domain, &f[2]);
        if (kept > 3)
            frame_text(n.address, sizeof n.address, &f[3]);
        if (kept > 6 && zmq_msg_size(&f[6]) == KEYS_BIN_LEN)
            zmq_z85_encode(n.key, zmq_msg_data(&f[6]), KEYS_BIN_LEN);
        snprintf(n.why, sizeof n.why, "%s", why);
        zmq_send(pipe, &n, sizeof n, ZMQ_DONTWAIT); /* dropped when the loop lags */
    }
    for (int i = 0; i < kept; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_thread(void *arg)
{
    zap_t *z = arg;
    zap_table_t *t = z->start_table; /* ours from now on */
    void *pipe = zmq_socket(z->zctx, ZMQ_PAIR);
    void *rep = zmq_socket(z->zctx, ZMQ_REP);
    int zero = 0, hwm = ZAP_PIPE_HWM;

    if (!pipe || zmq_connect(pipe, z->pipe_endpoint) < 0)
        goto out; /* zap_new times out and reports */
    zmq_setsockopt(pipe, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (!rep || zmq_setsockopt(rep, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
        zmq_bind(rep, ZAP_ENDPOINT) < 0) {
        int err = zmq_errno();
        zmq_send(pipe, ZAP_FAIL, strlen(ZAP_FAIL), 0);
        zmq_send(pipe, &err, sizeof err, 0);
        goto out;
    }
    zmq_send(pipe, ZAP_READY, strlen(ZAP_READY), 0);
    for (;;) {
        zmq_pollitem_t items[2] = {{rep, 0, ZMQ_POLLIN, 0}, {pipe, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, -1) < 0) {
            if (zmq_errno() == ETERM)
                break;
            continue; /* EINTR */
        }
        if (items[1].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, pipe, 0) >= 0) {
                if (zmq_msg_size(&m) == sizeof *t) {
                    memcpy(t, zmq_msg_data(&m), sizeof *t);
                } else if (frame_is(&m, ZAP_STOP)) {
                    zmq_msg_close(&m);
                    break;
                }
            }
            zmq_msg_close(&m);
        }
        if (items[0].revents & ZMQ_POLLIN)
            handle_request(z, rep, pipe, t);
    }
out:
    if (rep)
        zmq_close(rep);
    if (pipe) {
        zmq_setsockopt(pipe, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(pipe);
    }
    free(t);
    return NULL;
}

/* ---------------------------------------------------------------- the loop's side */

/* An operator who wrote subscriber_auth = off hears, at every start and
 * reload, that CURVE then encrypts reads without restricting them. */
static void warn_open_readers(const zap_table_t *t)
{
    if (!t->subscriber_auth)
        log_warning("[security] subscriber_auth = off: any CURVE key may read publish and "
                    "query (snapshots, changes, live records); only ingest checks keys");
}

zap_t *zap_new(void *zctx, const zap_table_t *table)
{
    zap_t *z = calloc(1, sizeof *z);
    int timeout = ZAP_START_TIMEOUT_MS, zero = 0, err;
    char buf[16];
    int n;

    if (!z || !(z->start_table = malloc(sizeof *z->start_table)) ||
        !(z->table = malloc(sizeof *z->table))) {
        log_error("out of memory for the ZAP handler; exiting");
        if (z)
            free(z->start_table);
        free(z);
        return NULL;
    }
    memcpy(z->start_table, table, sizeof *table);
    memcpy(z->table, table, sizeof *table);
    z->zctx = zctx;
    snprintf(z->pipe_endpoint, sizeof z->pipe_endpoint, "inproc://parksync-zap-%p", (void *)z);
    z->pipe = zmq_socket(zctx, ZMQ_PAIR);
    if (!z->pipe || zmq_setsockopt(z->pipe, ZMQ_RCVTIMEO, &timeout, sizeof timeout) < 0 ||
        zmq_setsockopt(z->pipe, ZMQ_LINGER, &zero, sizeof zero) < 0 ||
        zmq_bind(z->pipe, z->pipe_endpoint) < 0) {
        log_error("cannot create the ZAP handler's pipe: %s; exiting", zmq_strerror(zmq_errno()));
        goto fail;
    }
    if ((err = pthread_create(&z->thread, NULL, zap_thread, z)) != 0) {
        log_error("cannot start the ZAP handler thread: %s; exiting", strerror(err));
        goto fail;
    }
    z->running = true;
    n = zmq_recv(z->pipe, buf, sizeof buf, 0);
    if (n == (int)strlen(ZAP_READY) && memcmp(buf, ZAP_READY, (size_t)n) == 0) {
        timeout = 0;
        zmq_setsockopt(z->pipe, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        log_info("ZAP handler bound to %s: %zu keys admitted%s", ZAP_ENDPOINT, table->n,
                 table->subscriber_auth ? ", subscribers authenticated" : "");
        warn_open_readers(table);
        return z;
    }
    err = 0;
    if (n == (int)strlen(ZAP_FAIL))
        zmq_recv(z->pipe, &err, sizeof err, 0);
    log_error("cannot bind the ZAP handler to %s: %s; refusing to start without "
              "authentication",
              ZAP_ENDPOINT, err ? zmq_strerror(err) : "no answer");
fail:
    zap_destroy(&z);
    return NULL;
}

int zap_update(zap_t *z, const zap_table_t *table)
{
    if (zmq_send(z->pipe, table, sizeof *table, ZMQ_DONTWAIT) < 0)
        return -zmq_errno();
    memcpy(z->table, table, sizeof *table);
    warn_open_readers(table);
    return 0;
}

const zap_table_t *zap_table(const zap_t *z)
{
    return z->table;
}

void zap_drain(zap_t *z)
{
    if (!z)
        return;
    for (int i = 0; i < ZAP_NOTICE_BUDGET; i++) {
        zap_notice_t n;
        int got = zmq_recv(z->pipe, &n, sizeof n, ZMQ_DONTWAIT);
        if (got < 0)
            return;
        if (got != (int)sizeof n)
            continue;
        n.domain[sizeof n.domain - 1] = n.address[sizeof n.address - 1] = '\0';
        n.key[KEYS_Z85_LEN] = n.why[sizeof n.why - 1] = '\0';
        log_ratelimited(
            &z->rl, LOG_LEVEL_WARNING,
            "refused a CURVE handshake on %s from %s: %s (key %s); %" PRIu64 " refused since start",
            n.domain, n.address[0] ? n.address : "?", n.why, n.key[0] ? n.key : "-", zap_denied(z));
    }
}

uint64_t zap_allowed(const zap_t *z)
{
    return z ? atomic_load(&((zap_t *)z)->allowed) : 0;
}

uint64_t zap_denied(const zap_t *z)
{
    return z ? atomic_load(&((zap_t *)z)->denied) : 0;
}

void zap_destroy(zap_t **zp)
{
    zap_t *z;

    if (!zp || !*zp)
        return;
    z = *zp;
    if (z->running) {
        int timeout = ZAP_START_TIMEOUT_MS;
        zmq_setsockopt(z->pipe, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
        if (zmq_send(z->pipe, ZAP_STOP, strlen(ZAP_STOP), 0) >= 0) {
            pthread_join(z->thread, NULL);
        } else {
            /* The thread is gone or stuck; it ends when the context
             * terminates (zmq_poll fails with ETERM). */
            log_warning("the ZAP handler did not take its stop message: %s",
                        zmq_strerror(zmq_errno()));
            pthread_detach(z->thread);
        }
    }
    if (z->pipe)
        zmq_close(z->pipe);
    if (!z->running)
        free(z->start_table);
    free(z->table);
    free(z);
    *zp = NULL;
}
