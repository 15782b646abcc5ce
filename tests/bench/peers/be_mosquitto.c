/*
 * be_mosquitto.c - Mosquitto 2.0, for reference only: retained QoS 1
 * publishes are acknowledged (PUBACK) with nothing on disk (persistence
 * false), so it pairs with no parksync setting. A late joiner subscribes
 * to '#' and receives every retained message.
 *
 * libmosquitto is driven from this thread (no loop thread): each poll
 * waits on its socket, then lets it read and write.
 */
#define _GNU_SOURCE /* ppoll */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#include "peers.h"

#define MAX_INFLIGHT 60000      /* below 65,536 message ids: a mid maps to one tag */
#define SNAP_WAIT_US 30000000LL /* silence that ends a snapshot */

/* One MQTT client. */
typedef struct mqtt_conn {
    struct mosquitto *m; /* the client */
    bool connected;      /* CONNACK seen */
    uint64_t *tag_of;    /* per message id: the tag of its update */
    peer_ack_fn *fn;     /* during a poll: where acks go */
    void *arg;           /* its argument */
    long acked;          /* acks in this poll */
    uint64_t received;   /* snapshot: messages received */
} mqtt_conn_t;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

static int mqtt_start(peer_server_t *s)
{
    char conf[300], log[300];
    FILE *f;

    if ((s->port = peer_free_port()) < 0)
        return -1;
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", s->dir);
    snprintf(log, sizeof log, "%s/mosquitto.log", s->dir);
    if ((f = fopen(conf, "w")) == NULL)
        return -1;
    /* No limits on queued or in-flight messages: a late joiner's '#'
     * must receive every retained message, and the publisher's window
     * is the cell's. user root: it would drop to "mosquitto", which
     * cannot write here. */
    fprintf(f,
            "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 0\nuser root\nlog_dest stderr\n",
            s->port);
    fclose(f);
    char *argv[] = {"/usr/sbin/mosquitto", "-c", conf, NULL};
    return peer_server_spawn(s, argv, log);
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)m;
    ((mqtt_conn_t *)obj)->connected = rc == 0;
}

static void on_publish(struct mosquitto *m, void *obj, int mid)
{
    mqtt_conn_t *c = obj;

    (void)m;
    c->fn(c->arg, c->tag_of[(uint16_t)mid], 1);
    c->acked++;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    ((mqtt_conn_t *)obj)->received += msg->payloadlen > 0;
}

/* Waits up to timeout_us on the socket, then reads and writes what it
 * can. 0 or -1 (connection lost). */
static int pump(mqtt_conn_t *c, int64_t timeout_us)
{
    struct pollfd p = {.fd = mosquitto_socket(c->m), .events = POLLIN};
    struct timespec ts = {.tv_sec = timeout_us / 1000000, .tv_nsec = timeout_us % 1000000 * 1000};
    int rc = MOSQ_ERR_SUCCESS;

    if (mosquitto_want_write(c->m))
        p.events |= POLLOUT;
    if (ppoll(&p, 1, &ts, NULL) > 0) {
        if (p.revents & (POLLIN | POLLERR | POLLHUP))
            rc = mosquitto_loop_read(c->m, 1);
        if (rc == MOSQ_ERR_SUCCESS && (p.revents & POLLOUT))
            rc = mosquitto_loop_write(c->m, 1);
    }
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_loop_misc(c->m);
    if (rc != MOSQ_ERR_SUCCESS)
        fprintf(stderr, "peers: mosquitto: %s\n", mosquitto_strerror(rc));
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static void mqtt_close(void *cv)
{
    mqtt_conn_t *c = cv;

    if (c == NULL)
        return;
    if (c->m != NULL) {
        mosquitto_disconnect(c->m);
        mosquitto_destroy(c->m);
    }
    free(c->tag_of);
    free(c);
}

static void *mqtt_connect(peer_server_t *s, unsigned window)
{
    mqtt_conn_t *c = calloc(1, sizeof *c);
    int64_t deadline = peer_now_us() + 10000000;

    pthread_once(&lib_once, lib_init);
    if (c == NULL || (c->tag_of = calloc(65536, sizeof *c->tag_of)) == NULL ||
        (c->m = mosquitto_new(NULL, true, c)) == NULL)
        goto fail;
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_max_inflight_messages_set(c->m, window < MAX_INFLIGHT ? window : MAX_INFLIGHT);
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_message_callback_set(c->m, on_message);
    if (mosquitto_connect(c->m, "127.0.0.1", s->port, 60) != MOSQ_ERR_SUCCESS)
        goto fail;
    while (!c->connected && peer_now_us() < deadline)
        if (pump(c, 100000) < 0)
            goto fail;
    if (c->connected)
        return c;
fail:
    fprintf(stderr, "peers: mosquitto: cannot connect to port %d\n", s->port);
    mqtt_close(c);
    return NULL;
}

static int mqtt_put(void *cv, const peer_record_t *r, uint64_t tag)
{
    mqtt_conn_t *c = cv;
    int mid, rc;

    rc = mosquitto_publish(c->m, &mid, r->key, (int)r->len, r->bytes, 1, true);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "peers: mosquitto publish: %s\n", mosquitto_strerror(rc));
        return -1;
    }
    c->tag_of[(uint16_t)mid] = tag;
    return 0;
}

static int mqtt_kick(void *cv)
{
    mqtt_conn_t *c = cv;
    int rc = mosquitto_want_write(c->m) ? mosquitto_loop_write(c->m, 1) : MOSQ_ERR_SUCCESS;
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

static long mqtt_poll(void *cv, int64_t timeout_us, peer_ack_fn *fn, void *arg)
{
    mqtt_conn_t *c = cv;

    c->fn = fn;
    c->arg = arg;
    c->acked = 0;
    if (pump(c, timeout_us) < 0)
        return -1;
    return c->acked;
}

static long mqtt_snapshot(peer_server_t *s, uint64_t expect)
{
    mqtt_conn_t *c = mqtt_connect(s, 1);
    int64_t last = peer_now_us();
    uint64_t seen = 0;
    long n = -1;

    if (c == NULL)
        return -1;
    if (mosquitto_subscribe(c->m, NULL, "#", 0) != MOSQ_ERR_SUCCESS)
        goto out;
    while (c->received < expect && peer_now_us() - last < SNAP_WAIT_US) {
        if (pump(c, 100000) < 0)
            goto out;
        if (c->received > seen) {
            seen = c->received;
            last = peer_now_us();
        }
    }
    n = (long)c->received;
out:
    mqtt_close(c);
    return n;
}

/* With more in flight its retained QoS 1 ingest collapses: 5.6k/s at
 * 32,768, 19.6k at 8,192, 55k at 2,048, 83-87k at 512-1,024 (100,000
 * random keys, one run each, 2-CPU VM). */
const peer_ops_t peer_mosquitto = {
    .name = "mosquitto",
    .window_max = 1024,
    .start = mqtt_start,
    .connect = mqtt_connect,
    .put = mqtt_put,
    .kick = mqtt_kick,
    .poll = mqtt_poll,
    .snapshot = mqtt_snapshot,
    .close = mqtt_close,
};
