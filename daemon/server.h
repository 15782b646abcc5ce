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
 * drain ingest up to batch_max updates into one store batch; refresh
 * summaries when due; commit, publish the changes, ack the producers;
 * answer queries; open the snapshot/changes streams that wait; send
 * stream chunks within a per-pass budget; heartbeat and watchdog.
 */
#ifndef PARKSYNCD_SERVER_H
#define PARKSYNCD_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "ahead.h"
#include "checkpoint.h"
#include "config.h"
#include "conns.h"
#include "health.h"
#include "parksync.pb-c.h"
#include "zap.h"

typedef struct server server_t;

/* Counters, all since start. */
typedef struct server_counters {
    uint64_t received;         /* ingest messages read */
    uint64_t applied;          /* updates merged (STORE_APPLIED) */
    uint64_t duplicates;       /* updates at or below the producer's last sequence */
    uint64_t gaps;             /* updates beyond last sequence + 1, not applied */
    uint64_t refused;          /* updates consumed but refused by the store (authority, ...) */
    uint64_t unadmitted;       /* updates of producers not admitted (not listed by authority,
                                  or beyond max_producers): nothing kept, not acked */
    uint64_t bad_frames;       /* ingest messages not exactly [topic][payload] */
    uint64_t too_large;        /* payloads over WIRE_MAX_UPDATE */
    uint64_t undecodable;      /* payloads that are not an Update */
    uint64_t invalid;          /* Updates failing validation */
    uint64_t wrong_topic;      /* Updates whose topic is not their kind's */
    uint64_t store_errors;     /* batches rolled back on a storage failure */
    uint64_t summary_failures; /* country summaries not refreshed (the old one kept) */
    uint64_t commits;          /* batches committed */
    uint64_t published;        /* records published */
    uint64_t acks;             /* acks published */
    uint64_t heartbeats;       /* heartbeats published */
    uint64_t queries;          /* query requests read */
    uint64_t bad_queries;      /* query requests dropped or refused as malformed */
    uint64_t chunks;           /* stream chunks sent */
    uint64_t streams_opened;   /* snapshot and changes streams started */
    uint64_t streams_refused;  /* stream requests answered BUSY (either stream limit) */
    uint64_t streams_dropped;  /* streams ended early (stalled, client gone, failure) */
    uint64_t streams_stalled;  /* of those, dropped for delivering nothing for stream_idle_ms */
    uint64_t forged;           /* CURVE on: updates whose producer is not the authenticated
                                  ministry's (or with no ministry identity), dropped */
    uint64_t subscriptions_refused; /* publish messages refused: no topic prefix, over
                                       max_subscriptions, no subscription (subscriptions.h) */
    uint64_t subscribers_dropped;   /* publish connections closed for a refused message */
} server_counters_t;

/* Opens the store and binds every socket. Returns the server, or NULL
 * after logging one line naming the file or endpoint that failed. The
 * config is copied. */
server_t *server_new(const config_t *cfg);

/* Why server_run returned. */
typedef enum server_exit {
    SERVER_EXIT_STOP = 0,   /* *stop was set: shut down */
    SERVER_EXIT_RELOAD = 1, /* *reload was set (and cleared): reload, run again */
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

/* ---------------------------------------------------------------- for control.c */

/* The running configuration (valid until the next server_reconfigure). */
const config_t *server_config(const server_t *s);

/* Producers whose gap does not close (ahead of the database), for status. */
const ahead_t *server_ahead(const server_t *s);

/* The connections of ingest (0), publish (1) or query (2); NULL when
 * that socket is not monitored. */
const conns_stats_t *server_conns(const server_t *s, int socket);

/* The ZAP handler, for its counters; NULL when CURVE is off. */
const zap_t *server_zap(const server_t *s);

/* The WAL checkpoint thread, for its figures and checks. */
checkpoint_t *server_checkpoint(const server_t *s);

/* The daemon's health as the protocol reports it (proto Health); the
 * reason points into buf. */
void server_health(const server_t *s, Parksync__V1__Health *h, char *buf, size_t size);

/* The health itself (conditions, last commit). */
const health_t *server_health_state(const server_t *s);

/* A quick_check of the live database ended: ok clears a malformed
 * database's condition; malformed raises it with the findings. */
void server_check_done(server_t *s, bool ok, bool malformed, const char *findings);

/* (connection, topic) pairs applied on the publish socket now. */
uint64_t server_subscriptions(const server_t *s);

/* Tells the operators who asked for this reload (`parksync reload`) how it
 * went and keeps a failure's message for STATUS and `parksync status`.
 * main calls it after handling each SERVER_EXIT_RELOAD. message is one
 * line (copied). */
void server_reload_done(server_t *s, bool ok, const char *message);

#endif /* PARKSYNCD_SERVER_H */
