/*
 * metrics.c - see metrics.h.
 *
 * Sections: the snapshot; the text format; the HTTP endpoint.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "listen_addr.h"
#include "log.h"
#include "wire.h"

/* The bound on what HTTP peers may hold: METRICS_HTTP_CONNECTIONS sockets
 * and METRICS_HTTP_MEMORY bytes each (2 MiB in all). A connection that
 * sends nothing for METRICS_HTTP_TIMEOUT_S is closed, so peers that open
 * a connection, send half a request and wait hold their slot 3 s; one
 * scraper needs one slot, so a scrape is served at once unless a peer
 * keeps more than 127 connections busy, which no per-address limit would
 * prevent either: every peer of a loopback port is 127.0.0.1. */
#define METRICS_HTTP_CONNECTIONS 128         /* connections at once */
#define METRICS_HTTP_TIMEOUT_S   3           /* a connection silent this long is closed, s */
#define METRICS_HTTP_MEMORY      (16 * 1024) /* bytes per connection: request, reply headers */
#define METRICS_CONTENT_TYPE     "text/plain; version=0.0.4; charset=utf-8"

/* ---------------------------------------------------------------- the snapshot */

void metrics_snapshot_free(metrics_snapshot_t *m)
{
    if (!m)
        return;
    free(m->producers);
    m->producers = NULL;
    m->n_producers = 0;
}

/* ---------------------------------------------------------------- the text format */

/* A growing text buffer; `oom` sticks after the first failed allocation. */
typedef struct text {
    char *data; /* NUL-terminated */
    size_t len; /* bytes before the NUL */
    size_t cap; /* bytes allocated */
    bool oom;   /* an allocation failed: the text is incomplete */
} text_t;

__attribute__((format(printf, 2, 3))) static void put(text_t *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->oom)
        return;
    for (;;) {
        size_t room = t->cap - t->len;
        va_start(ap, fmt);
        n = vsnprintf(t->data ? t->data + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *d = realloc(t->data, cap);
        if (!d) {
            t->oom = true;
            return;
        }
        t->data = d;
        t->cap = cap;
    }
}

/* The HELP and TYPE lines of a family: once, before its samples. */
static void family(text_t *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped as the format requires. */
static void put_label_value(text_t *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\')
            put(t, "\\\\");
        else if (*v == '"')
            put(t, "\\\"");
        else if (*v == '\n')
            put(t, "\\n");
        else
            put(t, "%c", *v);
    }
}

static void sample(text_t *t, const char *name, const char *label, const char *value, uint64_t v)
{
    put(t, "%s", name);
    if (label) {
        put(t, "{%s=\"", label);
        put_label_value(t, value);
        put(t, "\"}");
    }
    put(t, " %" PRIu64 "\n", v);
}

static void counter(text_t *t, const char *name, const char *help, uint64_t v)
{
    family(t, name, "counter", help);
    sample(t, name, NULL, NULL, v);
}

/* A pause_hist_t as a histogram in seconds: cumulative buckets, then
 * _sum and _count. */
static void histogram(text_t *t, const char *name, const char *help, const pause_hist_t *h)
{
    uint64_t below = 0;

    family(t, name, "histogram", help);
    for (int b = 0; b < PAUSE_BUCKETS; b++) {
        below += h->n[b];
        if (b < PAUSE_BUCKETS - 1)
            put(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)pause_bounds_us[b] / 1e6,
                below);
        else
            put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, below);
    }
    put(t, "%s_sum %.6f\n", name, (double)h->sum_us / 1e6);
    put(t, "%s_count %" PRIu64 "\n", name, below);
}

static void gauge(text_t *t, const char *name, const char *help, uint64_t v)
{
    family(t, name, "gauge", help);
    sample(t, name, NULL, NULL, v);
}

const char *const metrics_socket_names[CONNS_SOCKETS] = {"ingest", "publish", "query"};

/* Connections per socket, and failed handshakes per socket and reason. */
static void render_conns(text_t *t, const metrics_snapshot_t *m)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } per_socket[] = {
        {"parksync_connections", "gauge", "Connections open per socket.",
         offsetof(conns_stats_t, open)},
        {"parksync_connections_accepted_total", "counter", "Connections accepted per socket.",
         offsetof(conns_stats_t, accepted)},
        {"parksync_connections_refused_total", "counter",
         "Connections closed at once, over [limits] max_connections.",
         offsetof(conns_stats_t, refused)},
        {"parksync_accept_failures_total", "counter",
         "Connections the kernel could not hand over (out of descriptors, ...).",
         offsetof(conns_stats_t, accept_failed)},
    };

    for (size_t f = 0; f < sizeof per_socket / sizeof per_socket[0]; f++) {
        family(t, per_socket[f].name, per_socket[f].type, per_socket[f].help);
        for (int i = 0; i < CONNS_SOCKETS; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&m->conns[i] + per_socket[f].offset, sizeof v);
            sample(t, per_socket[f].name, "socket", metrics_socket_names[i], v);
        }
    }
    family(t, "parksync_handshakes_failed_total", "counter",
           "Handshakes that failed, per socket and reason.");
    for (int i = 0; i < CONNS_SOCKETS; i++)
        for (int r = 0; r < CONNS_REASONS; r++)
            put(t, "parksync_handshakes_failed_total{socket=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                metrics_socket_names[i], conns_reason_name((conns_reason_t)r),
                m->conns[i].handshakes_failed[r]);
}

/* Replication from each [peer] this site pulls from (a section without
 * endpoints, a site that only pulls from this one, has no series). */
static void render_peers(text_t *t, const metrics_snapshot_t *m)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset; /* of the uint64_t in metrics_peer_t */
    } per_peer[] = {
        {"parksync_peer_revision", "gauge", "The peer's revision pulled and stored through.",
         offsetof(metrics_peer_t, revision)},
        {"parksync_peer_lag_revisions", "gauge",
         "Revisions of the peer not pulled yet, as far as its last reply told.",
         offsetof(metrics_peer_t, lag_revisions)},
        {"parksync_peer_records_total", "counter", "Records merged from the peer since start.",
         offsetof(metrics_peer_t, records)},
        {"parksync_peer_refused_total", "counter",
         "Writes from the peer refused since start: a country its [peer] section does not name, "
         "invalid, or in a chunk larger than asked.",
         offsetof(metrics_peer_t, refused)},
        {"parksync_peer_pulls_total", "counter", "Pulls from the peer completed since start.",
         offsetof(metrics_peer_t, pulls)},
        {"parksync_peer_full_resyncs_total", "counter",
         "Pulls that brought the peer's whole state (another epoch, or older than its change "
         "log keeps).",
         offsetof(metrics_peer_t, full_resyncs)},
    };

    family(t, "parksync_peer_connected", "gauge",
           "1 while the peer's last reply came within [site] peer_timeout_ms, else 0.");
    for (size_t i = 0; i < m->n_peers; i++)
        sample(t, "parksync_peer_connected", "peer", m->peers[i].name, m->peers[i].connected);
    for (size_t f = 0; f < sizeof per_peer / sizeof per_peer[0]; f++) {
        family(t, per_peer[f].name, per_peer[f].type, per_peer[f].help);
        for (size_t i = 0; i < m->n_peers; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&m->peers[i] + per_peer[f].offset, sizeof v);
            sample(t, per_peer[f].name, "peer", m->peers[i].name, v);
        }
    }
    family(t, "parksync_peer_lag_seconds", "gauge",
           "0 when the last pull reached the peer's head, else the time since a pull last did; "
           "no sample until one has since start.");
    for (size_t i = 0; i < m->n_peers; i++) {
        if (!m->peers[i].has_lag)
            continue;
        put(t, "parksync_peer_lag_seconds{peer=\"");
        put_label_value(t, m->peers[i].name);
        put(t, "\"} %.6f\n", (double)m->peers[i].lag_us / 1e6);
    }
}

char *metrics_render(const metrics_snapshot_t *m, size_t *len)
{
    const server_counters_t *n = &m->n;
    text_t t = {0};

    family(&t, "parksync_build_info", "gauge", "Version of parksyncd (always 1).");
    sample(&t, "parksync_build_info", "version", PARKSYNC_VERSION, 1);
    family(&t, "parksync_start_time_seconds", "gauge",
           "Start time of parksyncd, seconds since 1970 UTC.");
    put(&t, "parksync_start_time_seconds %.6f\n", (double)m->started_us / 1e6);
    gauge(&t, "parksync_head_revision",
          "Highest revision published (committed; with synchronous = full, synced too).",
          m->head_revision);
    family(&t, "parksync_records", "gauge", "Live (not deleted) records per kind.");
    for (int k = 1; k < METRICS_KINDS; k++) {
        const char *kn = wire_kind_name((Parksync__V1__RecordKind)k);
        if (kn)
            sample(&t, "parksync_records", "kind", kn, m->records[k]);
    }
    gauge(&t, "parksync_subscribers", "Peers connected to the publish socket.", m->subscribers);
    gauge(&t, "parksync_subscriptions",
          "Subscriptions applied on the publish socket (of [limits] max_subscriptions).",
          m->subscriptions);
    gauge(&t, "parksync_database_bytes", "Size of the SQLite database file.", m->database_bytes);
    gauge(&t, "parksync_wal_bytes", "Size of the SQLite write-ahead log.", m->wal_bytes);
    counter(&t, "parksync_wal_starts_total",
            "Times the write-ahead log started over from its beginning, after the writer's "
            "reset (parksync_wal_reset_seconds) or a checkpoint that copied all of it.",
            m->wal_starts);
    gauge(&t, "parksync_deferred_rows",
          "Resident rows committed to the change log, not yet written to their table "
          "([store] defer_rows).",
          m->deferred_rows);
    gauge(&t, "parksync_cache_bytes",
          "Bytes in the writer's SQLite page cache ([store] cache_mib is its bound).",
          m->cache_bytes);
    gauge(&t, "parksync_replay_revisions",
          "Change-log revisions past the tables' last complete write: what a start after a "
          "crash replays.",
          m->replay_revisions);
    family(&t, "parksync_conflicts", "gauge",
           "Rows in the conflicts/audit table by reason class (rows kept now; see "
           "parksync_pruned_total).");
    for (size_t i = 0; i < m->n_reasons; i++)
        sample(&t, "parksync_conflicts", "reason", m->reasons[i].name, m->reasons[i].n);

    counter(&t, "parksync_ingest_messages_total", "Messages read on the ingest socket.",
            n->received);
    family(&t, "parksync_updates_total", "counter", "Updates that reached the store, by outcome.");
    sample(&t, "parksync_updates_total", "outcome", "applied", n->applied);
    sample(&t, "parksync_updates_total", "outcome", "duplicate", n->duplicates);
    sample(&t, "parksync_updates_total", "outcome", "gap", n->gaps);
    sample(&t, "parksync_updates_total", "outcome", "refused", n->refused);
    sample(&t, "parksync_updates_total", "outcome", "unadmitted", n->unadmitted);
    family(&t, "parksync_ingest_rejected_total", "counter",
           "Ingest messages dropped before the store, by reason.");
    sample(&t, "parksync_ingest_rejected_total", "reason", "bad_frames", n->bad_frames);
    sample(&t, "parksync_ingest_rejected_total", "reason", "too_large", n->too_large);
    sample(&t, "parksync_ingest_rejected_total", "reason", "undecodable", n->undecodable);
    sample(&t, "parksync_ingest_rejected_total", "reason", "invalid", n->invalid);
    sample(&t, "parksync_ingest_rejected_total", "reason", "wrong_topic", n->wrong_topic);
    counter(&t, "parksync_commits_total", "Batches committed.", n->commits);
    histogram(&t, "parksync_commit_seconds",
              "Time the loop spent committing a batch, failed commits too; updates arriving "
              "meanwhile wait.",
              &n->commit);
    histogram(&t, "parksync_wal_sync_seconds",
              "With synchronous = full, each sync of the WAL, on the sync thread while the loop "
              "goes on, or on the loop when nothing else waits; the commits it covers wait for "
              "it to be acknowledged.",
              &n->wal_sync);
    histogram(&t, "parksync_wal_reset_seconds",
              "Pauses of the loop to copy the rest of the WAL back so that it starts over "
              "(about every 64 MiB written); updates arriving meanwhile wait.",
              &n->wal_reset);
    histogram(&t, "parksync_loop_pass_seconds",
              "Passes of the loop, from waking up to waiting again: reading, committing, "
              "publishing, answering; updates arriving meanwhile wait.",
              &n->pass);
    counter(&t, "parksync_store_errors_total", "Batches rolled back on a storage failure.",
            n->store_errors);
    counter(&t, "parksync_summary_failures_total",
            "Country summaries not refreshed; the old one was kept.", n->summary_failures);
    counter(&t, "parksync_published_total", "Records published.", n->published);
    counter(&t, "parksync_acks_total", "Acks published.", n->acks);
    counter(&t, "parksync_heartbeats_total", "Heartbeats published.", n->heartbeats);
    counter(&t, "parksync_queries_total", "Query requests read.", n->queries);
    counter(&t, "parksync_bad_queries_total", "Query requests dropped or refused as malformed.",
            n->bad_queries);
    counter(&t, "parksync_bad_control_requests_total",
            "Control requests dropped or refused as malformed.", m->bad_control);
    counter(&t, "parksync_forged_total",
            "Updates dropped: producer not the authenticated ministry's.", n->forged);
    family(&t, "parksync_pruned_total", "counter",
           "Rows dropped by retention ([store] conflicts_keep, conflicts_keep_days), by table.");
    sample(&t, "parksync_pruned_total", "table", "conflict", m->pruned.conflicts);
    sample(&t, "parksync_pruned_total", "table", "claim", m->pruned.claims);
    counter(&t, "parksync_subscriptions_refused_total",
            "Publish messages refused: no topic prefix, over max_subscriptions, no subscription.",
            n->subscriptions_refused);
    counter(&t, "parksync_subscribers_dropped_total",
            "Publish connections closed for a refused message.", n->subscribers_dropped);
    counter(&t, "parksync_chunks_total", "Snapshot and changes chunks sent.", n->chunks);
    counter(&t, "parksync_streams_opened_total", "Snapshot and changes streams started.",
            n->streams_opened);
    counter(&t, "parksync_streams_refused_total",
            "Stream requests answered BUSY (max_streams or max_streams_per_client).",
            n->streams_refused);
    counter(&t, "parksync_streams_dropped_total", "Streams ended early.", n->streams_dropped);
    counter(&t, "parksync_streams_stalled_total",
            "Streams dropped for delivering nothing for stream_idle_ms.", n->streams_stalled);
    family(&t, "parksync_handshakes_total", "counter",
           "CURVE handshakes on ingest, publish and query, by the ZAP handler's answer.");
    sample(&t, "parksync_handshakes_total", "outcome", "admitted", m->handshakes_admitted);
    sample(&t, "parksync_handshakes_total", "outcome", "refused", m->handshakes_refused);
    family(&t, "parksync_last_checkpoint_seconds", "gauge",
           "Time of the last WAL checkpoint that copied the whole log back, seconds since "
           "1970 UTC (0: none yet).");
    put(&t, "parksync_last_checkpoint_seconds %.6f\n", (double)m->last_checkpoint_us / 1e6);
    counter(&t, "parksync_checkpoint_failures_total", "WAL checkpoints that failed.",
            m->checkpoint_failures);
    family(&t, "parksync_degraded", "gauge",
           "1 while the condition degrades the daemon (parksync status says why), else 0.");
    for (int c = 0; c < HEALTH_CONDITIONS; c++)
        sample(&t, "parksync_degraded", "condition", health_names[c],
               m->health.cond[c].since_us != 0);
    family(&t, "parksync_degraded_since_seconds", "gauge",
           "When the condition began, seconds since 1970 UTC; 0 while it is not raised.");
    for (int c = 0; c < HEALTH_CONDITIONS; c++)
        put(&t, "parksync_degraded_since_seconds{condition=\"%s\"} %.6f\n", health_names[c],
            (double)m->health.cond[c].since_us / 1e6);
    family(&t, "parksync_last_commit_seconds", "gauge",
           "Time of the last commit that applied updates, seconds since 1970 UTC (0: none "
           "since start).");
    put(&t, "parksync_last_commit_seconds %.6f\n", (double)m->health.last_commit_us / 1e6);
    counter(&t, "parksync_metrics_http_dropped_total",
            "Metrics HTTP connections closed before a whole request (slow, idle, malformed).",
            m->http_dropped);

    family(&t, "parksync_page_http_total", "counter",
           "Web page ([http] listen) requests answered, and connections refused (over the "
           "connection limit), dropped (before a whole request: silent, oversized headers, "
           "malformed) and event streams cut (fell behind, or took nothing).");
    sample(&t, "parksync_page_http_total", "outcome", "answered", m->page.requests);
    sample(&t, "parksync_page_http_total", "outcome", "refused", m->page.refused);
    sample(&t, "parksync_page_http_total", "outcome", "dropped", m->page.dropped);
    sample(&t, "parksync_page_http_total", "outcome", "cut", m->page.cut);
    gauge(&t, "parksync_page_streams", "Web page event streams open.", m->page.streams);
    counter(&t, "parksync_page_events_total",
            "Web page events made: summaries and heartbeats, each offered to every stream.",
            m->page.events);

    render_conns(&t, m);

    /* one series per producer would let whoever makes up producer ids
     * make the page as large as they like: the first by id, then a count */
    gauge(&t, "parksync_producers",
          "Producers the database knows; the per-producer series list the first ones by id "
          "(parksync status --producers-after pages through all).",
          m->producers_total);
    family(&t, "parksync_producer_last_sequence", "gauge",
           "Last sequence applied or rejected per producer.");
    for (size_t i = 0; i < m->n_producers; i++)
        sample(&t, "parksync_producer_last_sequence", "producer", m->producers[i].id,
               m->producers[i].st.last_sequence);
    family(&t, "parksync_producer_last_seen_seconds", "gauge",
           "Time of the last update per producer, seconds since 1970 UTC.");
    for (size_t i = 0; i < m->n_producers; i++) {
        put(&t, "parksync_producer_last_seen_seconds{producer=\"");
        put_label_value(&t, m->producers[i].id);
        put(&t, "\"} %.6f\n", (double)m->producers[i].st.last_seen_us / 1e6);
    }
    family(&t, "parksync_producer_updates_total", "counter",
           "Updates per producer and outcome (since the database was made).");
    for (size_t i = 0; i < m->n_producers; i++) {
        static const char *const outcome[4] = {"applied", "duplicate", "gap", "rejected"};
        const store_producer_stats_t *st = &m->producers[i].st;
        uint64_t v[4] = {st->applied, st->duplicates, st->gaps, st->rejected};
        for (int o = 0; o < 4; o++) {
            put(&t, "parksync_producer_updates_total{producer=\"");
            put_label_value(&t, m->producers[i].id);
            put(&t, "\",outcome=\"%s\"} %" PRIu64 "\n", outcome[o], v[o]);
        }
    }
    render_peers(&t, m);
    if (t.oom || !t.data) {
        free(t.data);
        return NULL;
    }
    *len = t.len;
    return t.data;
}

/* ---------------------------------------------------------------- the HTTP endpoint */

struct metrics_http {
    struct MHD_Daemon *mhd;   /* libmicrohttpd, own polling thread */
    pthread_mutex_t lock;     /* guards text and len */
    char *text;               /* last rendering, owned */
    size_t len;               /* bytes of text */
    _Atomic uint64_t dropped; /* connections closed before one whole request */
};

/* What the HTTP thread knows of one connection (its socket context). */
typedef struct http_conn {
    bool answered; /* a whole request reached on_request */
} http_conn_t;

/* Parses a [metrics] http value: metrics are served on loopback only. */
static int parse_listen(const char *listen, listen_addr_t *out, char *why, size_t whylen)
{
    int rc = listen_addr_parse(listen, out, why, whylen);

    if (rc == 0 && !out->loopback) {
        snprintf(why, whylen,
                 "'%s' is not a loopback address; metrics are served on loopback "
                 "only (put a reverse proxy in front to export them)",
                 listen);
        rc = -EINVAL;
    }
    return rc;
}

int metrics_http_check(const char *listen, char *why, size_t whylen)
{
    listen_addr_t a;

    if (strcmp(listen, "off") == 0)
        return 0;
    return parse_listen(listen, &a, why, whylen);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    metrics_http_t *h = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct MHD_Response *r;
    unsigned int status = MHD_HTTP_OK;
    enum MHD_Result ret;

    if (ci && ci->socket_context)
        ((http_conn_t *)ci->socket_context)->answered = true;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static char msg[] = "only GET\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (strcmp(url, "/metrics") != 0 && strcmp(url, "/") != 0) {
        static char msg[] = "see /metrics\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    } else {
        pthread_mutex_lock(&h->lock);
        r = MHD_create_response_from_buffer(h->len, h->text ? h->text : (char *)"",
                                            MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock(&h->lock);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            status == MHD_HTTP_OK ? METRICS_CONTENT_TYPE : "text/plain");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Counts connections that end without a whole request: slow, idle or
 * malformed peers (the loop logs them, rate-limited). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    metrics_http_t *h = cls;
    http_conn_t *hc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        *socket_context = calloc(1, sizeof(http_conn_t)); /* NULL: not counted */
        return;
    }
    if (hc && !hc->answered)
        atomic_fetch_add(&h->dropped, 1);
    free(hc);
    *socket_context = NULL;
}

metrics_http_t *metrics_http_new(const char *listen)
{
    metrics_http_t *h;
    listen_addr_t a;
    char why[256];

    if (parse_listen(listen, &a, why, sizeof why) < 0) {
        log_error("[metrics] http: %s; exiting", why);
        return NULL;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        log_error("out of memory for the metrics endpoint; exiting");
        return NULL;
    }
    pthread_mutex_init(&h->lock, NULL);
    /* One polling thread serves every connection as its bytes arrive, so a
     * slow peer delays nobody else; the options bound what peers hold. */
    h->mhd =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | (a.v6 ? MHD_USE_IPv6 : 0),
                         0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &a.sa,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_HTTP_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_HTTP_TIMEOUT_S,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)METRICS_HTTP_MEMORY,
                         MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    if (!h->mhd) {
        log_error("cannot serve metrics on http://%s/metrics (address in use?); exiting", listen);
        metrics_http_destroy(&h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    log_info("metrics served on http://%s/metrics (port %u)", listen,
             info ? (unsigned)info->port : 0u);
    return h;
}

void metrics_http_update(metrics_http_t *h, const char *text, size_t len)
{
    char *copy = malloc(len + 1);

    if (!copy)
        return; /* keep serving the previous text */
    memcpy(copy, text, len);
    copy[len] = '\0';
    pthread_mutex_lock(&h->lock);
    free(h->text);
    h->text = copy;
    h->len = len;
    pthread_mutex_unlock(&h->lock);
}

uint64_t metrics_http_dropped(const metrics_http_t *h)
{
    return h ? atomic_load(&((metrics_http_t *)h)->dropped) : 0;
}

void metrics_http_destroy(metrics_http_t **hp)
{
    metrics_http_t *h;

    if (!hp || !*hp)
        return;
    h = *hp;
    if (h->mhd)
        MHD_stop_daemon(h->mhd); /* joins its thread */
    pthread_mutex_destroy(&h->lock);
    free(h->text);
    free(h);
    *hp = NULL;
}
