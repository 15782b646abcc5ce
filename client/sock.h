/*
 * sock.h - the few ZeroMQ chores libparksync's producer and subscriber share.
 *
 * Internal to libparksync (not installed). Functions return 0 or a
 * negative errno, as the rest of the tree does; the public API converts.
 */
#ifndef PARKSYNC_CLIENT_SOCK_H
#define PARKSYNC_CLIENT_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"
#include "wire.h"

#define SOCK_LINGER_MS 200 /* ms a closing socket may spend flushing */

/* Opens a socket of ZeroMQ type `type`, caps incoming messages at
 * WIRE_MAX_MSG, sets the send high-water mark when sndhwm > 0, and
 * connects it to endpoint (NULL: the caller sets options and connects).
 * NULL with *err = -errno on failure. */
void *sock_open(void *ctx, int type, const char *endpoint, int sndhwm, int *err);

/* CURVE client keys for a socket, Z85 text; server_key NULL: plain. */
typedef struct sock_curve {
    const char *server_key; /* the daemon's public key */
    const char *public_key; /* ours; NULL: derived from secret_key */
    const char *secret_key; /* ours */
} sock_curve_t;

/* The keys of a ps_producer_options_t or ps_subscriber_options_t. */
#define SOCK_CURVE_OF(opts)                                                                        \
    (&(sock_curve_t){(opts)->server_public_key, (opts)->public_key, (opts)->secret_key})

/* Makes s a CURVE client when c and c->server_key are set (before
 * connecting). 0 (also when plain), -EINVAL when a key is missing or not
 * Z85, or another -errno. */
int sock_apply_curve(void *s, const sock_curve_t *c);

/* sock_open, with sock_apply_curve between creating and connecting. */
void *sock_open_curve(void *ctx, int type, const char *endpoint, int sndhwm, const sock_curve_t *c,
                      int *err);

/* Sets a short linger and closes *sp; NULL-safe, sets *sp = NULL. */
void sock_close(void **sp);

/* Sends [topic][payload] (topic NULL: only the payload) without blocking.
 * 0 or -errno. */
int sock_send(void *s, const char *topic, const void *payload, size_t len);

/* Receives one [topic][Publication] message without blocking, copies the
 * topic into topic (size bytes, NUL-terminated; NULL: not wanted) and
 * decodes the payload into arena (NULL: malloc'ed, for the caller to
 * free). A message received resets the arena first: it then holds that
 * message alone, whatever earlier ones were or left when refused (a
 * decode that fails leaves what it had cut). Returns 0 with *out,
 * -EAGAIN when nothing is waiting, -EPROTO for a malformed message (frame
 * count, topic size, or a payload that does not decode; consumed), or
 * another -errno. */
int sock_recv_publication(void *s, wire_arena_t *arena, char *topic, size_t size,
                          Parksync__V1__Publication **out);

/* The same for one [QueryReply] frame on a DEALER, decoded into arena
 * (reset first, as above; NULL: malloc'ed, for
 * parksync__v1__query_reply__free_unpacked). */
int sock_recv_reply(void *s, wire_arena_t *arena, Parksync__V1__QueryReply **out);

/* Waits up to timeout_us for a message to read on any of the n sockets
 * (zmq_poll's timeouts are whole milliseconds): on their ZMQ_FDs, which
 * only say that the socket has news, so ZMQ_EVENTS is asked before each
 * wait. 1 when one is readable, 0 at the timeout, -EINTR on a signal, or
 * another -errno. */
int sock_wait_us(void *const *socks, int n, int64_t timeout_us);

#endif /* PARKSYNC_CLIENT_SOCK_H */
