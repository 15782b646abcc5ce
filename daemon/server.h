/*
 * server.h - parksyncd's event loop and everything it owns.
 *
 * One thread around zmq_poll with one context struct, server_t: the ZeroMQ
 * context and sockets (ingest SUB, publish PUB, query ROUTER), the store,
 * the snapshot/changes streams, the publish topic sequences and the
 * counters. Nothing lives at file scope, so two servers can run in one
 * process (on different endpoints and databases).
 *
 * Each pass of server_run: poll (timeout = time to the next deadline);
 * drain ingest up to batch_max updates (fewer when their changes would
 * overfill a subscriber's queue) into one store batch; refresh
 * summaries when due; commit, publish the changes, ack the producers;
 * answer queries; open the snapshot/changes streams that wait; send
 * stream chunks within a per-pass budget; heartbeat and watchdog.
 */
#ifndef PARKSYNCD_SERVER_H
#define PARKSYNCD_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "counters.h"

typedef struct server server_t;

/* Opens the store and binds every socket. Returns the server, or NULL
 * after logging one line naming the file or endpoint that failed. The
 * config is copied. */
server_t *server_new(const config_t *cfg);

/* Why server_run returned. */
typedef enum server_exit {
    SERVER_EXIT_STOP = 0,   /* *stop was set: shut down */
    SERVER_EXIT_RELOAD = 1, /* *reload was set (and cleared): reload, run again */
    SERVER_EXIT_FAILED = 2, /* the WAL could not be synced (syncer.h): exit failing */
} server_exit_t;

/* Runs the loop until *stop or *reload becomes non-zero (set by signal
 * handlers). May be called again after SERVER_EXIT_RELOAD. On stop, the
 * batch in hand is committed and its acks published before returning. */
server_exit_t server_run(server_t *s, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

/* Applies what can change without a restart (log level, batch_max,
 * summary_interval_ms, heartbeat_ms, max_subscriptions, ...) and logs a
 * notice for every other changed option, which keeps its running value. */
void server_reconfigure(server_t *s, const config_t *cfg);

/* The counters so far. */
const server_counters_t *server_counters(const server_t *s);

/* Ends every stream, closes the sockets (linger <= 1 s) and the store,
 * logs the counters. NULL-safe; sets *sp = NULL. */
void server_destroy(server_t **sp);

/* Tells the operators who asked for this reload (`parksync reload`) how it
 * went and keeps a failure's message for STATUS and `parksync status`.
 * main calls it after handling each SERVER_EXIT_RELOAD. message is one
 * line (copied). */
void server_reload_done(server_t *s, bool ok, const char *message);

#endif /* PARKSYNCD_SERVER_H */
