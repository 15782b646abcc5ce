/*
 * sock.c - ZeroMQ socket chores shared by the producer and the subscriber.
 */
#define _GNU_SOURCE /* ppoll */
#include "sock.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "keys.h"
#include "wire.h"

void *sock_open(void *ctx, int type, const char *endpoint, int sndhwm, int *err)
{
    void *s = zmq_socket(ctx, type);
    int64_t maxmsg = WIRE_MAX_MSG;
    int linger = SOCK_LINGER_MS;

    if (s == NULL) {
        *err = -zmq_errno();
        return NULL;
    }
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0 ||
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) < 0 ||
        (sndhwm > 0 && zmq_setsockopt(s, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm) < 0) ||
        (endpoint != NULL && zmq_connect(s, endpoint) < 0)) {
        *err = -zmq_errno();
        zmq_close(s);
        return NULL;
    }
    *err = 0;
    return s;
}

int sock_apply_curve(void *s, const sock_curve_t *c)
{
    char pub[KEYS_Z85_LEN + 1];

    if (c == NULL || c->server_key == NULL)
        return 0;
    if (!keys_z85_valid(c->server_key) || c->secret_key == NULL || !keys_z85_valid(c->secret_key) ||
        (c->public_key && !keys_z85_valid(c->public_key)))
        return -EINVAL;
    if (c->public_key)
        memcpy(pub, c->public_key, sizeof pub);
    else if (zmq_curve_public(pub, c->secret_key) < 0)
        return -zmq_errno();
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server_key, KEYS_Z85_LEN) < 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, KEYS_Z85_LEN) < 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->secret_key, KEYS_Z85_LEN) < 0)
        return -zmq_errno();
    return 0;
}

void *sock_open_curve(void *ctx, int type, const char *endpoint, int sndhwm, const sock_curve_t *c,
                      int *err)
{
    void *s = sock_open(ctx, type, NULL, sndhwm, err);

    if (s == NULL)
        return NULL;
    if ((*err = sock_apply_curve(s, c)) < 0 ||
        (endpoint != NULL && zmq_connect(s, endpoint) < 0 && (*err = -zmq_errno()) < 0)) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

void sock_close(void **sp)
{
    int linger = SOCK_LINGER_MS;

    if (sp == NULL || *sp == NULL)
        return;
    zmq_setsockopt(*sp, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(*sp);
    *sp = NULL;
}

int sock_send(void *s, const char *topic, const void *payload, size_t len)
{
    if (topic != NULL) {
        size_t tlen = 0;
        while (topic[tlen] != '\0')
            tlen++;
        if (zmq_send(s, topic, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return -zmq_errno();
    }
    if (zmq_send(s, payload, len, ZMQ_DONTWAIT) < 0)
        return -zmq_errno();
    return 0;
}

/* Receives one whole multipart message without blocking and keeps its
 * last frame, which every parksync message carries the protobuf in.
 * Returns 0 and fills *msgp (caller closes it), -EAGAIN when nothing is
 * waiting, -EPROTO when the frame count is not `frames` (the message is
 * consumed), or another -errno. */
static int sock_recv_last(void *s, int frames, void *msgp)
{
    zmq_msg_t *msg = msgp;
    int count = 0;
    bool more = true;

    zmq_msg_init(msg);
    while (more) {
        if (count > 0) {
            /* The previous frame was not the last: replace it. */
            zmq_msg_close(msg);
            zmq_msg_init(msg);
        }
        if (zmq_msg_recv(msg, s, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(msg);
            /* EAGAIN mid-message cannot happen: parts arrive atomically. */
            return -e;
        }
        count++;
        more = zmq_msg_more(msg);
    }
    if (count != frames) {
        zmq_msg_close(msg);
        return -EPROTO;
    }
    return 0;
}

int sock_recv_publication(void *s, wire_arena_t *arena, char *topic, size_t size,
                          Parksync__V1__Publication **out)
{
    zmq_msg_t msg;
    const char *why;
    int frames = 1, rc;

    *out = NULL;
    zmq_msg_init(&msg);
    if (zmq_msg_recv(&msg, s, ZMQ_DONTWAIT) < 0) {
        rc = -zmq_errno();
        zmq_msg_close(&msg);
        return rc;
    }
    size_t tlen = zmq_msg_size(&msg);
    bool ok = zmq_msg_more(&msg) && (topic == NULL || tlen < size);
    if (ok && topic != NULL) {
        memcpy(topic, zmq_msg_data(&msg), tlen);
        topic[tlen] = '\0';
    }
    while (zmq_msg_more(&msg)) {
        /* parts arrive atomically: the rest is there */
        zmq_msg_close(&msg);
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s, 0) < 0) {
            rc = -zmq_errno();
            zmq_msg_close(&msg);
            return rc;
        }
        frames++;
    }
    wire_arena_reset(arena); /* the last message, and what a refused one left */
    rc = ok && frames == 2
             ? wire_publication_decode_in(arena, zmq_msg_data(&msg), zmq_msg_size(&msg), out, &why)
             : -EPROTO;
    zmq_msg_close(&msg);
    return rc < 0 && rc != -EPROTO ? -EPROTO : rc;
}

int sock_recv_reply(void *s, wire_arena_t *arena, Parksync__V1__QueryReply **out)
{
    zmq_msg_t msg;
    const char *why;
    int rc = sock_recv_last(s, 1, &msg);

    *out = NULL;
    if (rc < 0)
        return rc;
    wire_arena_reset(arena); /* the last message, and what a refused one left */
    rc = wire_query_reply_decode_in(arena, zmq_msg_data(&msg), zmq_msg_size(&msg), out, &why);
    zmq_msg_close(&msg);
    return rc < 0 ? -EPROTO : 0;
}

int sock_wait_us(void *const *socks, int n, int64_t timeout_us)
{
    struct pollfd fds[4];
    struct timespec now;
    int64_t deadline;

    if (n < 1 || n > (int)(sizeof fds / sizeof fds[0]))
        return -EINVAL;
    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    deadline = timeout_us > INT64_MAX - deadline ? INT64_MAX : deadline + timeout_us;
    for (;;) {
        for (int i = 0; i < n; i++) {
            int events = 0;
            size_t len = sizeof events;
            if (zmq_getsockopt(socks[i], ZMQ_EVENTS, &events, &len) < 0)
                return -errno;
            if (events & ZMQ_POLLIN)
                return 1;
            len = sizeof fds[i].fd;
            if (zmq_getsockopt(socks[i], ZMQ_FD, &fds[i].fd, &len) < 0)
                return -errno;
            fds[i].events = POLLIN;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t left = deadline - ((int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000);
        if (left <= 0)
            return 0;
        struct timespec ts = {(time_t)(left / 1000000), (long)(left % 1000000) * 1000};
        if (ppoll(fds, (nfds_t)n, &ts, NULL) < 0)
            return -errno;
    }
}
