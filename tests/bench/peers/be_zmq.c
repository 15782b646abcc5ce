/*
 * be_zmq.c - the transport's floor: a ZeroMQ ROUTER that answers every
 * update with a one-byte ack at once, storing nothing, reached the way
 * libparksync reaches parksyncd (a DEALER over TCP loopback, a process of
 * its own, an I/O thread on each side). Whatever parksync's latency has
 * beyond this row is the daemon's; no server behind ZeroMQ can go below
 * it on this machine. The server is this program, started again with
 * --zmq-echo PORT (see peer_zmq_echo_main).
 */
#define _GNU_SOURCE /* ppoll */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "peers.h"

/* One client: a DEALER whose acks come back in the order of its puts. */
typedef struct zmq_conn {
    void *ctx;
    void *sock;
    uint64_t reported; /* acks seen: tags 0 .. reported-1 */
} zmq_conn_t;

/* No high-water mark: the cell keeps the window, and ZeroMQ must never
 * drop (ROUTER) or block (DEALER) on its own. */
static void unbounded(void *sock)
{
    int zero = 0;

    zmq_setsockopt(sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
}

int peer_zmq_echo_main(const char *port)
{
    void *ctx = zmq_ctx_new();
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    char endpoint[64];

    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%s", port);
    unbounded(router);
    if (zmq_bind(router, endpoint) != 0) {
        fprintf(stderr, "zmq echo: bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    for (;;) {
        zmq_msg_t id, part;
        int more = 0;
        size_t len = sizeof more;
        uint8_t ack = 1;

        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, router, 0) < 0) {
            zmq_msg_close(&id);
            if (zmq_errno() == EINTR)
                continue;
            return 1;
        }
        do { /* the update, one frame; more are read and dropped */
            zmq_msg_init(&part);
            zmq_msg_recv(&part, router, 0);
            zmq_getsockopt(router, ZMQ_RCVMORE, &more, &len);
            zmq_msg_close(&part);
        } while (more);
        zmq_msg_send(&id, router, ZMQ_SNDMORE);
        zmq_send(router, &ack, 1, 0);
    }
}

static int zmq_echo_start(peer_server_t *s)
{
    char port[16], log[300];

    if ((s->port = peer_free_port()) < 0)
        return -1;
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/zmq-echo.log", s->dir);
    char *argv[] = {"/proc/self/exe", "--zmq-echo", port, NULL};
    return peer_server_spawn(s, argv, log);
}

static void *zmq_echo_connect(peer_server_t *s, unsigned window)
{
    zmq_conn_t *c = calloc(1, sizeof *c);
    char endpoint[64];

    (void)window; /* the cell keeps the window */
    if (c == NULL)
        return NULL;
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", s->port);
    c->ctx = zmq_ctx_new();
    c->sock = c->ctx != NULL ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
    if (c->sock == NULL || (unbounded(c->sock), zmq_connect(c->sock, endpoint)) != 0) {
        fprintf(stderr, "peers: zmq connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        if (c->sock != NULL)
            zmq_close(c->sock);
        if (c->ctx != NULL)
            zmq_ctx_term(c->ctx);
        free(c);
        return NULL;
    }
    return c;
}

static int zmq_echo_put(void *cv, const peer_record_t *r, uint64_t tag)
{
    zmq_conn_t *c = cv;

    (void)tag;
    return zmq_send(c->sock, r->bytes, r->len, 0) == (int)r->len ? 0 : -1;
}

static int zmq_echo_kick(void *cv)
{
    (void)cv; /* every put is sent at once */
    return 0;
}

/* Takes the acks already queued: their count. */
static long take_acks(zmq_conn_t *c, peer_ack_fn *fn, void *arg)
{
    uint8_t ack;
    long n = 0;

    while (zmq_recv(c->sock, &ack, sizeof ack, ZMQ_DONTWAIT) >= 0)
        n++;
    if (n > 0)
        fn(arg, c->reported, (uint64_t)n);
    c->reported += (uint64_t)n;
    return n;
}

/* Waits as ps_producer_wait does: ppoll on ZMQ_FD, microsecond timeout,
 * ZMQ_EVENTS asked first (the descriptor only signals a change). */
static long zmq_echo_poll(void *cv, int64_t timeout_us, peer_ack_fn *fn, void *arg)
{
    zmq_conn_t *c = cv;
    long n = take_acks(c, fn, arg);
    int fd, events;
    size_t len = sizeof fd;

    if (n != 0)
        return n;
    if (zmq_getsockopt(c->sock, ZMQ_FD, &fd, &len) != 0)
        return -1;
    len = sizeof events;
    if (zmq_getsockopt(c->sock, ZMQ_EVENTS, &events, &len) == 0 && (events & ZMQ_POLLIN))
        return take_acks(c, fn, arg);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = timeout_us / 1000000, .tv_nsec = timeout_us % 1000000 * 1000};
    ppoll(&p, 1, &ts, NULL);
    return take_acks(c, fn, arg);
}

static void zmq_echo_close(void *cv)
{
    zmq_conn_t *c = cv;

    if (c == NULL)
        return;
    zmq_close(c->sock);
    zmq_ctx_term(c->ctx);
    free(c);
}

const peer_ops_t peer_zmq_echo = {
    .name = "zeromq",
    .start = zmq_echo_start,
    .connect = zmq_echo_connect,
    .put = zmq_echo_put,
    .kick = zmq_echo_kick,
    .poll = zmq_echo_poll,
    .close = zmq_echo_close,
};
