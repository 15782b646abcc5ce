/*
 * control.h - the operator's control socket: a ROUTER on ipc:// in the
 * runtime directory, spoken to by `parksync status|conflicts|...`.
 *
 * One request frame (ControlRequest), one reply frame (ControlReply), in
 * the daemon's loop. The socket file is 0600 in a 0700 directory: file
 * permissions are the access control. Each request body has one handler
 * in control.c's table; status, metrics, backup and reload slot in there.
 */
#ifndef PARKSYNCD_CONTROL_H
#define PARKSYNCD_CONTROL_H

#include "store.h"

#define CONTROL_DEFAULT_LIMIT 100  /* conflicts per page when the request says none */
#define CONTROL_MAX_LIMIT 1000     /* conflicts per page at most */

typedef struct control control_t;

/* Creates the ROUTER in zctx and binds it to endpoint (an ipc:// path
 * whose directory is created 0700 when missing). The store is borrowed
 * for the lifetime of the control socket. Returns NULL after logging one
 * line naming the endpoint. */
control_t *control_new(void *zctx, const char *endpoint, store_t *store);

/* The ZeroMQ socket, for zmq_poll. */
void *control_socket(const control_t *c);

/* Answers every waiting request (up to a budget) without blocking. Call
 * between store batches. */
void control_drain(control_t *c);

/* Closes the socket and removes its file. NULL-safe; sets *cp = NULL. */
void control_destroy(control_t **cp);

#endif /* PARKSYNCD_CONTROL_H */
