/*
 * conns.h - the connections of one bound socket: counted, budgeted, and
 * closed on demand.
 *
 * libzmq accepts every connection a listener sees and offers no way to
 * refuse one or to close one peer. What it does offer is a monitor: an
 * inproc PAIR that reports, per connection, the descriptor it accepted
 * (ZMQ_EVENT_ACCEPTED), its end (ZMQ_EVENT_DISCONNECTED) and why a
 * handshake failed. From those events this module keeps the set of open
 * descriptors of one socket, and acts on the descriptor itself:
 *
 *   - over the budget (max_connections), a new connection is shut down
 *     at once (shutdown(2), never close(2): the descriptor stays libzmq's,
 *     which sees end of stream and closes it as for any peer that left);
 *   - conns_close_all shuts every open connection down, so each client
 *     reconnects and passes the handshake again (key revocation).
 *
 * A descriptor is shut down only after checking that it is still a
 * connected socket of this listener (same local port or path, not the
 * listener itself): the event is read a moment after the accept, and
 * the number may have been reused since.
 *
 * Running out of descriptors must never reach libzmq: its ipc listener
 * aborts the process on EMFILE. The budget keeps the open connections
 * far below RLIMIT_NOFILE (main raises the soft limit at start and
 * lowers an impossible budget with a warning, conns_fit_nofile).
 */
#ifndef PARKSYNCD_CONNS_H
#define PARKSYNCD_CONNS_H

#include <stdbool.h>
#include <stdint.h>

#define CONNS_FD_RESERVE 256 /* descriptors kept for the database, backups, control, HTTP */
#define CONNS_SOCKETS    3   /* ingest, publish, query each have a budget */

/* Why handshakes failed, as the monitor reports them. */
typedef enum conns_reason {
    CONNS_MECHANISM,  /* the peer offered another security mechanism (NULL, PLAIN, CURVE) */
    CONNS_CRYPTO,     /* CURVE failed: wrong server key or a bad box */
    CONNS_MALFORMED,  /* a ZMTP protocol error */
    CONNS_DENIED,     /* the ZAP handler refused the key */
    CONNS_INCOMPLETE, /* the peer left or timed out before finishing (incl. budget refusals) */
    CONNS_REASONS,
} conns_reason_t;

/* What one socket's connections did since start. */
typedef struct conns_stats {
    uint64_t open;                             /* connections open now */
    uint64_t accepted;                         /* connections accepted */
    uint64_t refused;                          /* shut down at once: over max_connections */
    uint64_t accept_failed;                    /* accept(2) failures (EMFILE, ENFILE, ...) */
    uint64_t handshakes_failed[CONNS_REASONS]; /* by reason */
} conns_stats_t;

typedef struct conns conns_t;

/* Monitors sock (a bound ZeroMQ socket of zctx) under name ("ingest",
 * "publish", "query"), allowing max open connections (0: no budget).
 * Returns NULL after logging one line; the daemon then runs without
 * the budget for that socket. */
conns_t *conns_new(void *zctx, void *sock, const char *name, uint32_t max);

/* The monitor's PAIR, for zmq_poll (ZMQ_POLLIN). */
void *conns_socket(const conns_t *c);

/* Reads every waiting event: counts, refuses over the budget, logs
 * (rate-limited). Never blocks. */
void conns_drain(conns_t *c);

/* Sets the budget (reload); open connections over a lower budget stay. */
void conns_set_max(conns_t *c, uint32_t max);

/* Shuts down every open connection; returns how many. Their clients
 * reconnect and are authenticated again. */
uint32_t conns_close_all(conns_t *c);

/* Called when the connection on fd ends; conn is its accept number. */
typedef void (*conns_close_fn)(void *arg, int fd, uint32_t conn);

/* Tells fn about every connection that ends from now on, and starts
 * numbering accepted connections (conns_number). Returns 0 or -ENOMEM. */
int conns_on_close(conns_t *c, conns_close_fn fn, void *arg);

/* The accept number of the connection open on fd (a descriptor from
 * ZMQ_SRCFD), which no later connection on the same descriptor shares;
 * 0 when unknown. With conns_on_close only. */
uint32_t conns_number(const conns_t *c, int fd);

/* The counters so far. */
const conns_stats_t *conns_stats(const conns_t *c);

/* Name of a reason as status and metrics show it ("mechanism", ...). */
const char *conns_reason_name(conns_reason_t r);

/* Raises the soft RLIMIT_NOFILE as far as the hard limit allows and
 * needed by CONNS_SOCKETS budgets of *max plus CONNS_FD_RESERVE; when
 * even the hard limit is too low, lowers *max to what fits (logged).
 * Returns the soft limit in force. */
uint64_t conns_fit_nofile(uint32_t *max);

/* Stops the monitor, reads what it queued (telling no conns_on_close
 * callback), closes it. Call before the monitored socket is closed.
 * NULL-safe; sets *cp = NULL. */
void conns_destroy(conns_t **cp);

#endif /* PARKSYNCD_CONNS_H */
