/*
 * metrics.h - parksyncd's numbers: one snapshot struct that `parksync
 * status` and `parksync metrics` both read, its rendering in the
 * Prometheus text exposition format (0.0.4), and the optional loopback
 * HTTP endpoint ([metrics] http) that serves the last rendering.
 *
 * The HTTP endpoint is libmicrohttpd with its own polling thread. That
 * thread shares exactly one thing with the loop: a mutex-protected copy
 * of the text, which the loop replaces (metrics_http_update) about once a
 * second, and an atomic count of the connections it dropped. It never
 * touches the store or the server.
 *
 * Bound: 128 connections at once, 16 KiB each; a connection that sends
 * nothing for 3 s is closed (metrics.c says why that keeps scrapes
 * answered).
 */
#ifndef PARKSYNCD_METRICS_H
#define PARKSYNCD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conns.h"
#include "counters.h"
#include "health.h"
#include "page.h"
#include "store.h"

#define METRICS_KINDS      6  /* RecordKind values 0..5; [0] unused */
#define METRICS_REASONS    8  /* conflict reason classes (store_conflict_counts) */
#define METRICS_REASON_MAX 32 /* bytes of a reason class, with NUL */
/* producers listed one by one in status and metrics; the rest are only counted */
#define METRICS_PRODUCERS WIRE_MAX_STATUS_PRODUCERS

/* One producer as the store counts it. */
typedef struct metrics_producer {
    char id[WIRE_MAX_ID + 1];  /* producer id */
    store_producer_stats_t st; /* its counters */
} metrics_producer_t;

#define METRICS_PEERS 16 /* peers with series: the [peer] sections (CONFIG_MAX_PEERS) */

/* One [peer] this site pulls from, as its series show it. */
typedef struct metrics_peer {
    char name[WIRE_MAX_ID + 1]; /* its section's NAME */
    bool connected;             /* its last reply came within [site] peer_timeout_ms */
    uint64_t revision;          /* the peer's revision pulled and stored through */
    uint64_t lag_revisions;     /* the peer's head less revision, 0 when not behind */
    bool has_lag;               /* a pull has reached the peer's head since start */
    int64_t lag_us;             /* with has_lag: 0 when the last pull did, else us since one did */
    uint64_t records;           /* records merged from it since start */
    uint64_t refused;           /* its writes refused since start (country not named) */
    uint64_t pulls;             /* pulls completed since start */
    uint64_t full_resyncs;      /* pulls that brought its whole state */
} metrics_peer_t;

/* One conflict reason class and its rows. */
typedef struct metrics_reason {
    char name[METRICS_REASON_MAX]; /* e.g. "not_authoritative" */
    uint64_t n;                    /* rows */
} metrics_reason_t;

/* Everything status and metrics report, taken at one moment between
 * batches. */
typedef struct metrics_snapshot {
    server_counters_t n;             /* the loop's counters since start */
    uint64_t bad_control;            /* control requests dropped or refused as malformed */
    uint64_t http_dropped;           /* metrics HTTP connections closed before a request */
    page_stats_t page;               /* the web page's HTTP side ([http] listen) */
    uint64_t handshakes_admitted;    /* CURVE handshakes the ZAP handler admitted */
    uint64_t handshakes_refused;     /* and refused (unlisted key, wrong role) */
    int64_t last_checkpoint_us;      /* last complete WAL checkpoint, us since 1970; 0: none */
    uint64_t checkpoint_failures;    /* WAL checkpoints that failed */
    health_t health;                 /* conditions that degrade the daemon, last commit */
    int64_t started_us;              /* wall clock at start, us since 1970 UTC */
    int64_t now_us;                  /* wall clock when taken */
    uint64_t head_revision;          /* highest revision committed */
    uint64_t records[METRICS_KINDS]; /* live records per RecordKind */
    uint64_t subscribers;            /* peers connected to the publish socket (conns[1].open) */
    uint64_t subscriptions;          /* (connection, topic) pairs applied on publish */
    uint64_t database_bytes;         /* size of the database file */
    uint64_t wal_bytes;              /* size of its -wal file (0: none) */
    uint64_t wal_starts;             /* times the WAL started over (store_wal_starts) */
    uint64_t deferred_rows;          /* resident rows not yet in their table (store) */
    uint64_t cache_bytes;            /* the writer's page cache now (store) */
    uint64_t replay_revisions;       /* change log past the tables' last complete write */
    uint64_t conflicts;              /* rows in the conflicts table */
    metrics_reason_t reasons[METRICS_REASONS]; /* rows by reason class */
    store_pruned_t pruned;                     /* rows retention dropped since start */
    size_t n_reasons;                          /* entries in reasons */
    conns_stats_t conns[CONNS_SOCKETS];        /* ingest, publish, query connections */
    metrics_producer_t *producers;             /* n_producers entries, owned, sorted by id */
    size_t n_producers;                        /* entries in producers, METRICS_PRODUCERS at most:
                                                  the first ids (after a status page's last) */
    uint64_t producers_total;                  /* producers the store knows, listed or not */
    metrics_peer_t peers[METRICS_PEERS]; /* the [peer]s this site pulls from, in config order */
    size_t n_peers;                      /* entries in peers */
} metrics_snapshot_t;

/* Names of the sockets of metrics_snapshot_t.conns: "ingest", "publish", "query". */
extern const char *const metrics_socket_names[CONNS_SOCKETS];

/* Frees what the snapshot owns (not the struct). NULL-safe. */
void metrics_snapshot_free(metrics_snapshot_t *m);

/* Renders m in the Prometheus text exposition format. Returns the text
 * (NUL-terminated, length in *len), or NULL when out of memory. Caller
 * owns the text and must free it with free(). */
char *metrics_render(const metrics_snapshot_t *m, size_t *len);

typedef struct metrics_http metrics_http_t;

/* Checks an [metrics] http value: "off", or HOST:PORT with HOST a
 * loopback address (127.x.y.z, [::1], localhost). 0, or -EINVAL with a
 * reason in why. */
int metrics_http_check(const char *listen, char *why, size_t whylen);

/* Starts serving GET /metrics on listen (as metrics_http_check accepts;
 * "off" is not a valid argument). Returns NULL after logging one line
 * naming the address. */
metrics_http_t *metrics_http_new(const char *listen);

/* Replaces the text served (copied). */
void metrics_http_update(metrics_http_t *h, const char *text, size_t len);

/* Connections closed before they sent one whole request (silent for
 * the timeout, or malformed) since start; 0 for NULL. Any thread. */
uint64_t metrics_http_dropped(const metrics_http_t *h);

/* Stops the server and its thread. NULL-safe; sets *hp = NULL. */
void metrics_http_destroy(metrics_http_t **hp);

#endif /* PARKSYNCD_METRICS_H */
