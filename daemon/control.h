/*
 * control.h - the operator's control socket: a ROUTER on ipc:// in the
 * runtime directory, spoken to by `parksync status|conflicts|metrics|
 * backup|reload`.
 *
 * One request frame (ControlRequest), one reply frame (ControlReply), in
 * the daemon's loop. The socket file is 0600 in a 0700 directory: file
 * permissions are the access control. Each request body has one handler
 * in control.c. Two answers are deferred: a backup is answered when its
 * last page is copied (steps run in control_tick), a reload when main has
 * applied (or refused) the file (server_reload_done).
 *
 * The control socket also owns the operator-facing extras of the loop:
 * the connection monitor that counts subscribers, the periodic systemd
 * STATUS line, the optional [metrics] http endpoint (metrics.h) and the
 * optional web page ([http] listen, page.h).
 */
#ifndef PARKSYNCD_CONTROL_H
#define PARKSYNCD_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "ahead.h"
#include "checkpoint.h"
#include "config.h"
#include "conns.h"
#include "counters.h"
#include "health.h"
#include "page.h"
#include "peer_stats.h"
#include "store.h"
#include "subscriptions.h"
#include "zap.h"

#define CONTROL_DEFAULT_LIMIT 100  /* conflicts per page when the request says none */
#define CONTROL_MAX_LIMIT     1000 /* conflicts per page at most */
#define CONTROL_STATUS_MS     5000 /* ms between systemd STATUS lines */
#define CONTROL_HTTP_MS       1000 /* ms between metrics snapshots for [metrics] http */
#define CONTROL_BACKUP_PAGES  2048 /* database pages copied per loop pass */

typedef struct control control_t;

/* What the control socket reads and touches of the running daemon,
 * handed over by the loop's owner: control never sees the server. Every
 * pointer is the owner's and outlives the control socket. */
typedef struct control_view {
    const config_t *cfg;               /* running configuration, updated in place on reload */
    const server_counters_t *counters; /* the loop's counters */
    health_t *health;                  /* checks raise and clear its conditions too */
    const ahead_t *ahead;              /* producers ahead of the database */
    const zap_t *zap;                  /* the ZAP handler; NULL when CURVE is off */
    checkpoint_t *checkpoint;          /* the thread that runs the checks */
    conns_t *const *conns;             /* CONNS_SOCKETS entries; NULL: not monitored */
    const subscriptions_t *subs;       /* subscriptions applied on the publish socket */
    const peer_stats_t *peer_stats;    /* CONFIG_MAX_PEERS entries: the [peer] sections */
    const size_t *n_peer_stats;        /* entries of peer_stats used */
    const puller_stats_t *pullers;     /* PEERS_MAX_PULLERS entries: sites pulling from this one */
    const size_t *n_pullers;           /* entries of pullers used */
    const uint64_t *published;         /* the head revision published (synced, at full) */
} control_view_t;

/* Creates the ROUTER in zctx and binds it to endpoint (an ipc:// path
 * whose directory is created 0700 when missing) and starts the [metrics]
 * http endpoint and the web page when configured. The store and what view points to are
 * borrowed for the lifetime of the control socket; view is copied.
 * Returns NULL after logging one line naming the endpoint. */
control_t *control_new(void *zctx, const char *endpoint, store_t *store,
                       const control_view_t *view);

/* The web page, or NULL when [http] listen is off: the loop hands it
 * the summaries it publishes. */
page_t *control_page(const control_t *c);

/* The ZeroMQ socket, for zmq_poll. */
void *control_socket(const control_t *c);

/* Answers every waiting request (up to a budget) without blocking. Call
 * between store batches. */
void control_drain(control_t *c);

/* Work due between batches: backup steps, subscriber events, the STATUS
 * line (every CONTROL_STATUS_MS), the metrics snapshot for HTTP (every
 * CONTROL_HTTP_MS) and the web page's heartbeat. now is monotonic ms. Returns true while a backup
 * is running (the loop should not sleep). */
bool control_tick(control_t *c, int64_t now);

/* The checkpoint thread answered a check (its socket is readable): the
 * backup whose copy it checked, or the `parksync check` that asked for
 * it, gets its reply. */
void control_check_done(control_t *c);

/* True when `parksync reload` asked for a reload that has not been done:
 * the loop returns SERVER_EXIT_RELOAD as for SIGHUP. */
bool control_reload_pending(const control_t *c);

/* Answers every waiting `parksync reload` with ok and message, clears the
 * pending flag and keeps a failure's message for STATUS and status
 * replies until a reload succeeds. */
void control_reload_done(control_t *c, bool ok, const char *message);

/* Closes the socket and removes its file; a running backup is abandoned
 * (its requester is told). NULL-safe; sets *cp = NULL. */
void control_destroy(control_t **cp);

#endif /* PARKSYNCD_CONTROL_H */
