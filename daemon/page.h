/*
 * page.h - the live web page ([http] listen): a read-only view of the
 * consolidated picture, the same country summaries `parksync summary`
 * prints, with charts the page draws itself as SVG.
 *
 *   GET /              the page (HTML, CSS and JavaScript are compiled
 *                      into the daemon: no CDN, works offline)
 *   GET /summary.json  the summaries and the revision they were read at
 *   GET /events        Server-Sent Events: the summaries at once, again
 *                      whenever the publish path commits a changed one,
 *                      and a heartbeat every PAGE_HEARTBEAT_MS so the page
 *                      can tell a live stream from a stopped one
 *
 * libmicrohttpd serves it from its own thread, as [metrics] http does.
 * That thread shares with the loop only what page_int.h puts under one
 * mutex: the encoded events and the open event streams. The loop feeds
 * it (page_summaries after a commit that changed a summary, page_tick
 * each pass); it never touches the store or the server.
 *
 * Bounds: PAGE_CONNECTIONS connections, PAGE_MEMORY bytes of request
 * each (headers beyond are refused), a connection silent for
 * PAGE_TIMEOUT_S is closed; an event stream that falls PAGE_BACKLOG
 * bytes behind, or takes nothing for PAGE_STREAM_TIMEOUT_S, is cut.
 * Every refusal is counted (page_stats) and logged, rate-limited.
 */
#ifndef PARKSYNCD_PAGE_H
#define PARKSYNCD_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* What the page's HTTP side counted since start (metrics). */
typedef struct page_stats {
    uint64_t requests; /* requests answered, any status */
    uint64_t refused;  /* connections closed at once: PAGE_CONNECTIONS were open */
    uint64_t dropped;  /* connections closed before a whole request: silent, oversized, malformed */
    uint64_t cut;      /* event streams cut: fell PAGE_BACKLOG behind, or took nothing in time */
    uint64_t streams;  /* event streams open now */
    uint64_t events;   /* events offered to the streams: summaries and heartbeats */
} page_stats_t;

typedef struct page page_t;

/* Checks an [http] listen value: "off", or IP:PORT ([IPV6]:PORT,
 * localhost:PORT). Whether a non-loopback address is allowed is the
 * whole config's rule ([http] allow_remote). 0, or -EINVAL with a reason
 * in why. */
int page_listen_check(const char *listen, char *why, size_t whylen);

/* Starts serving on listen (as page_listen_check accepts; not "off").
 * Trade discrepancies are flagged as the store flags them: above
 * threshold_pct, the exporter's figure times cif_fob_factor against the
 * importer's. Returns NULL after logging one line naming the address. */
page_t *page_new(const char *listen, double threshold_pct, double cif_fob_factor);

/* Reads the live country summaries from the store (a snapshot of kind
 * summary) and hands them to the page and every event stream, as of
 * revision upto at the latest (what was published). False, with the page
 * left as it was, when a summary is newer than upto: call again once it
 * is published. A failed read is logged and keeps what the page shows.
 * Call between batches. */
bool page_summaries(page_t *p, store_t *store, uint64_t upto);

/* Sends the heartbeat when due (revision: the head committed) and logs
 * what the HTTP side refused since the last call, rate-limited. now is
 * monotonic ms. NULL-safe. */
void page_tick(page_t *p, uint64_t revision, int64_t now);

/* The counters so far; zeros for NULL. Any thread. */
void page_stats(const page_t *p, page_stats_t *out);

/* Stops the server and its thread. NULL-safe; sets *pp = NULL. */
void page_destroy(page_t **pp);

#endif /* PARKSYNCD_PAGE_H */
