/*
 * page_int.h - what the files of the web page share.
 *
 *   page.c       life cycle; the events (summaries, heartbeats) the loop
 *                makes and the ring the event streams read them from
 *   page_http.c  the HTTP thread: routes, event streams, bounds, counting
 *   page_json.c  country summaries as JSON (pure: values in, text out)
 *   page_assets.c  generated at build time from daemon/page/ (the HTML,
 *                CSS and JavaScript of the page)
 *
 * Threads: the loop calls page.c; libmicrohttpd's thread calls
 * page_http.c. Everything in struct page below `lock` is guarded by it;
 * the counters are atomics either side may read.
 */
#ifndef PARKSYNCD_PAGE_INT_H
#define PARKSYNCD_PAGE_INT_H

#include "page.h"

#include <pthread.h>
#include <stdatomic.h>

#include "listen_addr.h"
#include "log.h"
#include "parksync.pb-c.h"

/* The bound on what HTTP peers may hold, as for [metrics] http: at most
 * PAGE_CONNECTIONS sockets of PAGE_MEMORY bytes (request headers and the
 * reply being written) and PAGE_SNDBUF kernel bytes each, plus, for an
 * event stream, the one event it is writing (shared, at most
 * PAGE_JSON_MAX). */
#define PAGE_CONNECTIONS      64          /* connections at once; more are refused */
#define PAGE_MEMORY           (16 * 1024) /* bytes per connection: request headers, reply buffer */
#define PAGE_TIMEOUT_S        3           /* a connection silent this long is closed, s */
#define PAGE_STREAM_TIMEOUT_S 10 /* an event stream that takes nothing this long is cut, s */
#define PAGE_SNDBUF           (64 * 1024) /* kernel send buffer per connection, bytes */
#define PAGE_BLOCK            4096        /* bytes of an event stream handed over at a time */
#define PAGE_HEARTBEAT_MS     2000        /* a heartbeat event this often, ms */
#define PAGE_RETRY_MS         1000        /* EventSource reconnects after this, ms */
/* Events kept for streams that are behind: a stream whose next event
 * left the ring is cut. The ring holds the newest PAGE_RING_EVENTS
 * events within PAGE_BACKLOG bytes, so a reader may lag that much. */
#define PAGE_RING_EVENTS 256
#define PAGE_BACKLOG     (1024 * 1024)
/* Bytes of the summaries' JSON; countries beyond are left out (and the
 * JSON says so), so that two whole pictures always fit the backlog. */
#define PAGE_JSON_MAX (PAGE_BACKLOG / 2)
/* Entries of one country's lists on the page; the JSON counts the rest. */
#define PAGE_MAX_TURNOVER   64
#define PAGE_MAX_INDICATORS 32
#define PAGE_MAX_MISMATCHES 50

/* How the store flags a trade flow ([trade] threshold_pct,
 * cif_fob_factor), so the page flags the same discrepancies. */
typedef struct page_trade {
    double threshold_pct;  /* a discrepancy above this percentage is flagged */
    double cif_fob_factor; /* the importer's figure is compared with the exporter's times this */
} page_trade_t;

/* One encoded event or JSON body, shared by the ring and the streams
 * writing it; freed when the last holder lets go (under the lock). */
typedef struct page_frame {
    unsigned refs; /* holders: the ring, `summary`, streams */
    size_t len;    /* bytes of data */
    char data[];   /* the bytes, not NUL-terminated */
} page_frame_t;

/* One event stream (GET /events) of the HTTP thread. */
typedef struct page_stream {
    page_t *page;                /* its page */
    bool used;                   /* the slot serves a connection */
    bool suspended;              /* caught up: libmicrohttpd waits until an event comes */
    struct MHD_Connection *conn; /* its connection */
    page_frame_t *cur;           /* the event being written, or NULL */
    size_t off;                  /* bytes of cur written */
    uint64_t next;               /* sequence of the next event to write */
} page_stream_t;

struct page {
    struct MHD_Daemon *mhd;               /* libmicrohttpd, own polling thread */
    page_trade_t rules;                   /* for the discrepancies' flags */
    _Atomic uint64_t requests;            /* see page_stats_t */
    _Atomic uint64_t refused;             /* over PAGE_CONNECTIONS */
    _Atomic uint64_t dropped;             /* closed before a whole request */
    _Atomic uint64_t cut;                 /* event streams cut */
    _Atomic uint64_t n_streams;           /* event streams open */
    _Atomic uint64_t events;              /* events made */
    uint32_t open;                        /* connections open (HTTP thread only) */
    int64_t next_heartbeat_ms;            /* loop: monotonic ms of the next heartbeat */
    uint64_t logged[3];                   /* loop: refused, dropped, cut already logged */
    log_ratelimit_t rl[3];                /* loop: their lines */
    pthread_mutex_t lock;                 /* guards what follows */
    bool closing;                         /* the server stops: streams end */
    page_frame_t *summary;                /* the last summary event; a new stream starts with it */
    page_frame_t *json;                   /* the same summaries, the body of /summary.json */
    page_frame_t *ring[PAGE_RING_EVENTS]; /* events by sequence % PAGE_RING_EVENTS */
    uint64_t first;                       /* sequence of the oldest event in the ring */
    uint64_t next;                        /* sequence of the next event made */
    size_t ring_bytes;                    /* bytes of the events in the ring */
    page_stream_t streams[PAGE_CONNECTIONS]; /* event streams */
};

/* ---- page.c (callers hold the lock) */

/* A new frame holding len bytes of data, refs 1; NULL when out of memory. */
page_frame_t *page_frame_new(const char *data, size_t len);
/* Lets go of *fp (frees it with its last holder); sets *fp = NULL. */
void page_frame_drop(page_frame_t **fp);
/* The event of sequence seq, or NULL when it left the ring or is not made yet. */
page_frame_t *page_event(page_t *p, uint64_t seq);

/* ---- page_http.c */

/* Starts libmicrohttpd on a. 0, or -1 after logging. */
int page_http_start(page_t *p, const listen_addr_t *a, const char *listen);

/* ---- page_json.c */

/* The summaries (sorted by country) as one line of JSON:
 * {"revision":R,"countries":[...],"truncated":false,"threshold_pct":T},
 * trade discrepancies flagged by rules; at most max bytes
 * (countries that do not fit are left out and truncated is true).
 * Returns the text (NUL-terminated, length in *len), NULL when out of
 * memory. Caller owns it and must free it with free(). */
char *page_json_render(const page_trade_t *rules, Parksync__V1__CountrySummary *const *items,
                       size_t n, uint64_t revision, size_t max, size_t *len);

/* ---- page_assets.c (generated) */

/* One file of daemon/page/. */
typedef struct page_asset {
    const char *path;          /* as requested: "/", "/page.js", ... */
    const char *content_type;  /* its Content-Type */
    const unsigned char *data; /* its bytes */
    size_t len;                /* bytes of data */
} page_asset_t;

extern const page_asset_t page_assets[]; /* ended by a NULL path */

#endif /* PARKSYNCD_PAGE_INT_H */
