/*
 * be_nats.c - NATS JetStream 2.9 key-value store, file storage, paired
 * with parksync NORMAL: JetStream 2.9 acknowledges a message once it is
 * written to its file, and fsyncs on a timer, not per message.
 *
 * kvStore_Put is a publish to $KV.<bucket>.<key> that waits for the
 * stream's ack; this client makes the same publishes asynchronously
 * (js_PublishAsync) so that a window of them is in flight, as parksync's
 * producer keeps one. The ack handler runs on a libnats thread and only
 * counts; acks of one connection to one stream come back in order.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nats/nats.h>

#include "peers.h"

#define BUCKET    "PARKS"           /* the key-value bucket */
#define SUBJECT   "$KV." BUCKET "." /* kvStore_Put's subject prefix */
#define SNAP_WAIT 30000             /* ms of silence that ends a snapshot */

/* One JetStream publisher. */
typedef struct nats_conn {
    natsConnection *nc;   /* the connection */
    jsCtx *js;            /* its JetStream context */
    kvStore *kv;          /* the bucket */
    pthread_mutex_t lock; /* guards acked, failed */
    pthread_cond_t cond;  /* signalled with each ack */
    uint64_t acked;       /* acks counted by the handler */
    uint64_t failed;      /* negative acks */
    uint64_t reported;    /* acks reported: tags 0 .. reported-1 */
} nats_conn_t;

static int nats_start(peer_server_t *s)
{
    char port[16], store[300], log[300];

    if ((s->port = peer_free_port()) < 0)
        return -1;
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(store, sizeof store, "%s/jetstream", s->dir);
    snprintf(log, sizeof log, "%s/nats.log", s->dir);
    char *argv[] = {
        "/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", store, NULL};
    return peer_server_spawn(s, argv, log);
}

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    nats_conn_t *c = closure;

    (void)js;
    (void)pa;
    pthread_mutex_lock(&c->lock);
    c->acked++;
    if (pae != NULL)
        c->failed++;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    natsMsg_Destroy(msg);
}

/* Connects and opens (or makes) the bucket: NATS_OK or the failure. */
static natsStatus nats_open(nats_conn_t *c, const peer_server_t *s, unsigned window)
{
    char url[64];
    jsOptions jo;
    kvConfig kc;
    natsStatus st;

    snprintf(url, sizeof url, "nats://127.0.0.1:%d", s->port);
    if ((st = natsConnection_ConnectTo(&c->nc, url)) != NATS_OK)
        return st;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = window;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = c;
    if ((st = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK)
        return st;
    kvConfig_Init(&kc);
    kc.Bucket = BUCKET;
    kc.History = 1;
    kc.StorageType = js_FileStorage;
    /* JetStream may still be starting when the port already answers. */
    for (int i = 0; i < 100; i++) {
        if ((st = js_CreateKeyValue(&c->kv, c->js, &kc)) == NATS_OK)
            break;
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    return st;
}

static void nats_close(void *cv)
{
    nats_conn_t *c = cv;

    if (c == NULL)
        return;
    kvStore_Destroy(c->kv);
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void *nats_connect(peer_server_t *s, unsigned window)
{
    nats_conn_t *c = calloc(1, sizeof *c);
    natsStatus st;

    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    if ((st = nats_open(c, s, window)) != NATS_OK) {
        fprintf(stderr, "peers: nats: %s\n", natsStatus_GetText(st));
        nats_close(c);
        return NULL;
    }
    return c;
}

static int nats_put(void *cv, const peer_record_t *r, uint64_t tag)
{
    nats_conn_t *c = cv;
    char subject[sizeof SUBJECT + PEER_KEY_MAX];
    natsStatus st;

    (void)tag;
    snprintf(subject, sizeof subject, SUBJECT "%s", r->key);
    if ((st = js_PublishAsync(c->js, subject, r->bytes, (int)r->len, NULL)) != NATS_OK) {
        fprintf(stderr, "peers: nats publish: %s\n", natsStatus_GetText(st));
        return -1;
    }
    return 0;
}

static int nats_kick(void *cv)
{
    (void)cv; /* libnats's flusher thread writes what was published */
    return 0;
}

static long nats_poll(void *cv, int64_t timeout_us, peer_ack_fn *fn, void *arg)
{
    nats_conn_t *c = cv;
    struct timespec until;
    long n;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(timeout_us % 1000000) * 1000;
    until.tv_sec += timeout_us / 1000000 + until.tv_nsec / 1000000000;
    until.tv_nsec %= 1000000000;
    pthread_mutex_lock(&c->lock);
    while (c->acked == c->reported && c->failed == 0)
        if (pthread_cond_timedwait(&c->cond, &c->lock, &until) != 0)
            break;
    n = (long)(c->acked - c->reported);
    bool failed = c->failed > 0;
    pthread_mutex_unlock(&c->lock);
    if (failed) {
        fprintf(stderr, "peers: nats: a publish was refused\n");
        return -1;
    }
    if (n > 0)
        fn(arg, c->reported, (uint64_t)n);
    c->reported += (uint64_t)n;
    return n;
}

/* A watch of every key delivers each one's last value, then a NULL entry
 * once it has caught up. */
static long nats_snapshot(peer_server_t *s, uint64_t expect)
{
    nats_conn_t *c = nats_connect(s, 1);
    kvWatcher *w = NULL;
    kvEntry *e = NULL;
    natsStatus st;
    long n = 0;

    if (c == NULL)
        return -1;
    if ((st = kvStore_WatchAll(&w, c->kv, NULL)) == NATS_OK) {
        while ((uint64_t)n < expect && (st = kvWatcher_Next(&e, w, SNAP_WAIT)) == NATS_OK &&
               e != NULL) {
            n += kvEntry_ValueLen(e) > 0;
            kvEntry_Destroy(e);
        }
    }
    if (st != NATS_OK) {
        fprintf(stderr, "peers: nats snapshot: %s\n", natsStatus_GetText(st));
        n = -1;
    }
    kvWatcher_Destroy(w);
    nats_close(c);
    return n;
}

const peer_ops_t peer_nats = {
    .name = "nats",
    .start = nats_start,
    .connect = nats_connect,
    .put = nats_put,
    .kick = nats_kick,
    .poll = nats_poll,
    .snapshot = nats_snapshot,
    .close = nats_close,
};
