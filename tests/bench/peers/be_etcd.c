/*
 * be_etcd.c - etcd 3.4 through its JSON gateway (grpc-gateway, /v3/kv),
 * paired with parksync FULL: etcd acknowledges a put once raft has
 * fsynced its log entry (and bbolt commits on its own schedule).
 *
 * Updates go in transactions of up to 128 puts (etcd's --max-txn-ops
 * default), base64 keys and values. A transaction may not name a key
 * twice, so a repeated key closes the batch early. Several transactions
 * are in flight at once (libcurl multi), up to the cell's window of
 * updates, so that etcd can commit them as a group as parksync does.
 * A late joiner reads with paginated ranges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "peers.h"

#define TXN_OPS   128                          /* puts per transaction: etcd's --max-txn-ops */
#define PAGE      5000                         /* keys per range request of a snapshot */
#define B64_KEY   (PEER_KEY_MAX / 3 * 4 + 8)   /* base64 of a key, with NUL */
#define B64_VALUE (PEER_VALUE_MAX / 3 * 4 + 8) /* base64 of a value, with NUL */
#define PUT_JSON  (B64_KEY + B64_VALUE + 48)   /* one {"requestPut": ...} */

/* One transaction: the request being built or in flight. */
typedef struct txn {
    CURL *easy;                       /* its handle, kept for reuse */
    struct txn *next;                 /* free list */
    char *body;                       /* {"success":[...]} */
    size_t len;                       /* bytes of body */
    char keys[TXN_OPS][PEER_KEY_MAX]; /* keys in it */
    unsigned ops;                     /* puts in it */
    uint64_t first;                   /* tag of its first put */
    char reply[512];                  /* the start of the answer */
    size_t reply_len;                 /* bytes of reply */
} txn_t;

/* One HTTP client. */
typedef struct etcd_conn {
    CURLM *multi;           /* requests in flight */
    char url[64];           /* http://127.0.0.1:PORT/v3/kv/txn */
    struct curl_slist *hdr; /* Content-Type */
    txn_t *open;            /* the transaction being filled, NULL when none */
    txn_t *spare;           /* finished transactions for reuse */
} etcd_conn_t;

static int etcd_start(peer_server_t *s)
{
    char data[300], log[300], client[48], peer[48], cluster[64];

    if ((s->port = peer_free_port()) < 0 || (s->port2 = peer_free_port()) < 0)
        return -1;
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/etcd.log", s->dir);
    snprintf(client, sizeof client, "http://127.0.0.1:%d", s->port);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", s->port2);
    snprintf(cluster, sizeof cluster, "bench=%s", peer);
    /* 8 GiB quota: the 2 GiB default is too small for a million records
     * with their history before compaction. */
    char *argv[] = {"/usr/bin/etcd",
                    "--name",
                    "bench",
                    "--data-dir",
                    data,
                    "--listen-client-urls",
                    client,
                    "--advertise-client-urls",
                    client,
                    "--listen-peer-urls",
                    peer,
                    "--initial-advertise-peer-urls",
                    peer,
                    "--initial-cluster",
                    cluster,
                    "--quota-backend-bytes",
                    "8589934592",
                    "--logger",
                    "zap",
                    "--log-level",
                    "warn",
                    NULL};
    return peer_server_spawn(s, argv, log);
}

static size_t keep_reply(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    txn_t *t = userdata;
    size_t n = size * nmemb, room = sizeof t->reply - 1 - t->reply_len;

    memcpy(t->reply + t->reply_len, ptr, n < room ? n : room);
    t->reply_len += n < room ? n : room;
    t->reply[t->reply_len] = '\0';
    return n;
}

static void txn_free(txn_t *t)
{
    if (t == NULL)
        return;
    curl_easy_cleanup(t->easy);
    free(t->body);
    free(t);
}

/* A transaction to fill, reused when one is spare; NULL without memory. */
static txn_t *txn_take(etcd_conn_t *c, uint64_t first)
{
    txn_t *t = c->spare;

    if (t != NULL)
        c->spare = t->next;
    else if ((t = calloc(1, sizeof *t)) == NULL ||
             (t->body = malloc(TXN_OPS * PUT_JSON + 32)) == NULL ||
             (t->easy = curl_easy_init()) == NULL) {
        txn_free(t);
        return NULL;
    }
    t->len = (size_t)sprintf(t->body, "{\"success\":[");
    t->ops = 0;
    t->first = first;
    t->reply_len = 0;
    return t;
}

/* Puts the open transaction on the wire. 0 or -1. */
static int txn_send(etcd_conn_t *c)
{
    txn_t *t = c->open;

    if (t == NULL)
        return 0;
    c->open = NULL;
    t->len += (size_t)sprintf(t->body + t->len - 1, "]}") - 1; /* over the last comma */
    curl_easy_reset(t->easy);
    curl_easy_setopt(t->easy, CURLOPT_URL, c->url);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, (long)t->len);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, keep_reply);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    return curl_multi_add_handle(c->multi, t->easy) == CURLM_OK ? 0 : -1;
}

static void *etcd_connect(peer_server_t *s, unsigned window)
{
    etcd_conn_t *c = calloc(1, sizeof *c);

    (void)window; /* the cell keeps the window; transactions follow it */
    if (c == NULL || (c->multi = curl_multi_init()) == NULL) {
        free(c);
        return NULL;
    }
    snprintf(c->url, sizeof c->url, "http://127.0.0.1:%d/v3/kv/txn", s->port);
    c->hdr = curl_slist_append(NULL, "Content-Type: application/json");
    /* No "Expect: 100-continue" round trip before bodies over 1 KiB. */
    c->hdr = curl_slist_append(c->hdr, "Expect:");
    /* HTTP/1.1: one request per connection at a time, so several
     * connections (a gRPC client would multiplex on one). Without
     * PIPE_NOTHING curl queues every request behind the first
     * connection in case it could multiplex. */
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L);
    return c;
}

/* True when key is in the open transaction. */
static bool txn_has(const txn_t *t, const char *key)
{
    for (unsigned i = 0; i < t->ops; i++)
        if (strcmp(t->keys[i], key) == 0)
            return true;
    return false;
}

static int etcd_put(void *cv, const peer_record_t *r, uint64_t tag)
{
    etcd_conn_t *c = cv;
    char key[B64_KEY], value[B64_VALUE];

    if (c->open != NULL && txn_has(c->open, r->key) && txn_send(c) < 0)
        return -1;
    if (c->open == NULL && (c->open = txn_take(c, tag)) == NULL)
        return -1;
    txn_t *t = c->open;
    peer_base64(key, (const uint8_t *)r->key, strlen(r->key));
    peer_base64(value, r->bytes, r->len);
    t->len += (size_t)sprintf(t->body + t->len,
                              "{\"requestPut\":{\"key\":\"%s\",\"value\":\"%s\"}},", key, value);
    snprintf(t->keys[t->ops++], PEER_KEY_MAX, "%s", r->key);
    if (t->ops == TXN_OPS && txn_send(c) < 0)
        return -1;
    curl_multi_perform(c->multi, &(int){0});
    return 0;
}

static int etcd_kick(void *cv)
{
    etcd_conn_t *c = cv;
    int running;

    if (txn_send(c) < 0)
        return -1;
    return curl_multi_perform(c->multi, &running) == CURLM_OK ? 0 : -1;
}

/* Reports the transactions that finished: their updates, or -1 when one
 * failed. */
static long take_done(etcd_conn_t *c, peer_ack_fn *fn, void *arg)
{
    CURLMsg *m;
    long n = 0;
    int left;

    while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
        txn_t *t;
        long status = 0;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(c->multi, m->easy_handle);
        if (m->data.result != CURLE_OK || status != 200) {
            fprintf(stderr, "peers: etcd txn: %s, HTTP %ld: %s\n",
                    curl_easy_strerror(m->data.result), status, t->reply);
            txn_free(t);
            return -1;
        }
        fn(arg, t->first, t->ops);
        n += t->ops;
        t->next = c->spare;
        c->spare = t;
    }
    return n;
}

/* Waits up to timeout_us for curl's sockets. curl_multi_poll counts in
 * whole milliseconds, and at 20,000 updates/s the next send is 50 us
 * away: rounding down would spin, rounding up would send late. */
static void wait_sockets(etcd_conn_t *c, int64_t timeout_us)
{
    fd_set r, w, e;
    int maxfd = -1;
    long curl_ms = -1;
    struct timeval tv;

    /* curl also has timers of its own (connects): wake for them too. */
    curl_multi_timeout(c->multi, &curl_ms);
    if (curl_ms >= 0 && curl_ms * 1000 < timeout_us)
        timeout_us = curl_ms * 1000;
    tv = (struct timeval){.tv_sec = timeout_us / 1000000, .tv_usec = timeout_us % 1000000};
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_ZERO(&e);
    curl_multi_fdset(c->multi, &r, &w, &e, &maxfd);
    if (maxfd < 0) {
        /* Nothing to wait on (every request done): just wait. */
        nanosleep(&(struct timespec){.tv_sec = tv.tv_sec, .tv_nsec = tv.tv_usec * 1000}, NULL);
        return;
    }
    select(maxfd + 1, &r, &w, &e, &tv);
}

static long etcd_poll(void *cv, int64_t timeout_us, peer_ack_fn *fn, void *arg)
{
    etcd_conn_t *c = cv;
    int running;
    long n;

    curl_multi_perform(c->multi, &running);
    if ((n = take_done(c, fn, arg)) != 0)
        return n;
    wait_sockets(c, timeout_us);
    curl_multi_perform(c->multi, &running);
    return take_done(c, fn, arg);
}

static void etcd_close(void *cv)
{
    etcd_conn_t *c = cv;

    if (c == NULL)
        return;
    txn_free(c->open);
    while (c->spare != NULL) {
        txn_t *t = c->spare;
        c->spare = t->next;
        txn_free(t);
    }
    curl_multi_cleanup(c->multi);
    curl_slist_free_all(c->hdr);
    free(c);
}

/* A growing buffer for one range answer. */
typedef struct buf {
    char *data; /* bytes, NUL-terminated */
    size_t len; /* bytes used */
} buf_t;

static size_t grow(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buf_t *b = userdata;
    size_t n = size * nmemb;
    char *d = realloc(b->data, b->len + n + 1);

    if (d == NULL)
        return 0;
    memcpy(d + b->len, ptr, n);
    b->data = d;
    b->len += n;
    d[b->len] = '\0';
    return n;
}

/* One page from key (base64) onward: its records counted into *n, the
 * key after its last into next (base64); returns 1 when more follow, 0 at
 * the end, -1 on failure. */
static int range_page(CURL *easy, const char *url, const char *key, char *next, long *n)
{
    char body[B64_KEY + 96];
    buf_t b = {0};
    json_t *root = NULL, *kvs;
    int rc = -1;

    /* range_end "\0" (AA==): every key from key on. */
    snprintf(body, sizeof body, "{\"key\":\"%s\",\"range_end\":\"AA==\",\"limit\":%d}", key, PAGE);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, grow);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(easy) != CURLE_OK || b.data == NULL ||
        (root = json_loads(b.data, 0, NULL)) == NULL)
        goto out;
    kvs = json_object_get(root, "kvs");
    size_t count = json_array_size(kvs);
    *n += (long)count;
    if (count > 0) {
        const char *last =
            json_string_value(json_object_get(json_array_get(kvs, count - 1), "key"));
        uint8_t raw[PEER_KEY_MAX + 1];
        long len = last != NULL ? peer_unbase64(raw, sizeof raw - 1, last, strlen(last)) : -1;
        if (len < 0)
            goto out;
        raw[len] = '\0'; /* the smallest key after last */
        peer_base64(next, raw, (size_t)len + 1);
    }
    rc = json_is_true(json_object_get(root, "more")) ? 1 : 0;
out:
    if (rc < 0)
        fprintf(stderr, "peers: etcd range: %.200s\n", b.data != NULL ? b.data : "no answer");
    json_decref(root);
    free(b.data);
    return rc;
}

static long etcd_snapshot(peer_server_t *s, uint64_t expect)
{
    CURL *easy = curl_easy_init();
    char url[64], key[B64_KEY] = "AA==", next[B64_KEY];
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    long n = 0;
    int more;

    (void)expect;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v3/kv/range", s->port);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdr);
    while ((more = range_page(easy, url, key, next, &n)) == 1)
        memcpy(key, next, sizeof key);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(easy);
    return more < 0 ? -1 : n;
}

const peer_ops_t peer_etcd = {
    .name = "etcd",
    .start = etcd_start,
    .connect = etcd_connect,
    .put = etcd_put,
    .kick = etcd_kick,
    .poll = etcd_poll,
    .snapshot = etcd_snapshot,
    .close = etcd_close,
};
