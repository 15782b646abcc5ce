/*
 * status.c - `parksync status`: what the daemon is doing, from its
 * control socket, as text or one JSON object.
 */
#include <getopt.h>
#include <stdbool.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "ctl.h"

#define STATUS_TIMEOUT_S 5 /* default --timeout */

const char CLI_STATUS_USAGE[] =
    "usage: parksync status [--json] [--producers-after ID] [--control EP] [--timeout SEC]\n"
    "\n"
    "Prints what parksyncd is doing: its health (ok, or degraded: why and since\n"
    "when, and the last commit that applied updates), version, uptime, head\n"
    "revision, live records per kind, each producer's last sequence, lag (time\n"
    "since its last update) and last seen time, connected subscribers, database\n"
    "and WAL size, resident rows waiting in the change log and the revisions a\n"
    "start after a crash would replay, the conflicts table by reason, inputs\n"
    "rejected before the store by reason, the loop's counters and why the last\n"
    "reload failed, if it did; this site's name, when it acknowledges\n"
    "(ack_after), each [peer] it pulls from (endpoint, connected, revision pulled\n"
    "of the peer's head, lag, records merged and refused, last error) and the\n"
    "sites that pull from it, with how far.\n"
    "\n"
    "Producers are listed by id, at most 256 of them, and all are counted; with\n"
    "more, --producers-after the last id listed gives the next ones.\n"
    "\n"
    "  --json          one JSON object instead of text\n"
    "  --producers-after ID  list the producers whose id sorts after ID\n" CTL_USAGE(
        "5") "\n"
             "Exit status: 0 printed, 1 daemon unreachable, 2 bad arguments.\n";

/* "2024-05-01T10:00:00Z" for us since 1970, "never" for 0. */
static const char *when(char *buf, size_t size, int64_t us)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (us <= 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "never");
    return buf;
}

/* "1d02h03m04s" */
static const char *span(char *buf, size_t size, int64_t us)
{
    int64_t s = us > 0 ? us / 1000000 : 0;

    if (s >= 86400)
        snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h%02" PRId64 "m%02" PRId64 "s", s / 86400,
                 s / 3600 % 24, s / 60 % 60, s % 60);
    else if (s >= 3600)
        snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m%02" PRId64 "s", s / 3600, s / 60 % 60,
                 s % 60);
    else if (s >= 60)
        snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else
        snprintf(buf, size, "%" PRId64 "s", s);
    return buf;
}

static const char *bytes(char *buf, size_t size, uint64_t n)
{
    if (n >= 1024ULL * 1024 * 1024)
        snprintf(buf, size, "%.1f GiB", (double)n / (1024.0 * 1024 * 1024));
    else if (n >= 1024 * 1024)
        snprintf(buf, size, "%.1f MiB", (double)n / (1024.0 * 1024));
    else if (n >= 1024)
        snprintf(buf, size, "%.1f KiB", (double)n / 1024.0);
    else
        snprintf(buf, size, "%" PRIu64 " B", n);
    return buf;
}

static uint64_t counter(const Parksync__V1__Status *st, const char *name)
{
    for (size_t i = 0; i < st->n_counters; i++)
        if (st->counters[i]->name && strcmp(st->counters[i]->name, name) == 0)
            return st->counters[i]->value;
    return 0;
}

/* The input rejections, by reason, before and in the store. */
static const char *const REJECTED[] = {"bad_frames",  "too_large", "undecodable", "invalid",
                                       "wrong_topic", "refused",   "unadmitted",  NULL};

/* The peers this site pulls from, then the sites that pull from it. */
static void print_peers(const Parksync__V1__Status *st)
{
    char a[64], b[80], lag[96];

    printf("peers: %zu\n", st->n_peers);
    if (st->n_peers)
        printf("  %-20s %-28s %-5s %-21s %-18s %8s %8s  %s\n", "NAME", "ENDPOINT", "CONN",
               "REVISION/HEAD", "LAG", "RECORDS", "REFUSED", "LAST_ERROR");
    for (size_t i = 0; i < st->n_peers; i++) {
        const Parksync__V1__PeerStatus *p = st->peers[i];
        if (!p->has_connected) {
            printf("  %-20s not pulled (no endpoints): it may pull from this site\n",
                   p->name ? p->name : "?");
            continue;
        }
        snprintf(b, sizeof b, "%" PRIu64 "/%" PRIu64, p->revision, p->peer_head);
        if (p->has_lag_us && p->lag_us == 0 && p->lag_revisions == 0)
            snprintf(lag, sizeof lag, "caught up");
        else if (p->has_lag_us)
            snprintf(lag, sizeof lag, "%" PRIu64 " rev, %s", p->lag_revisions,
                     span(a, sizeof a, p->lag_us));
        else if (p->last_pull_us == 0)
            snprintf(lag, sizeof lag, "not yet pulled");
        else
            snprintf(lag, sizeof lag, "%" PRIu64 " rev, not caught up", p->lag_revisions);
        printf("  %-20s %-28s %-5s %-21s %-18s %8" PRIu64 " %8" PRIu64 "  %s\n",
               p->name ? p->name : "?", p->endpoint ? p->endpoint : "-",
               p->connected ? "yes" : "no", b, lag, p->records, p->refused,
               p->last_error ? p->last_error : "-");
    }
    printf("pulled by: %zu\n", st->n_pulled_by);
    for (size_t i = 0; i < st->n_pulled_by; i++) {
        const Parksync__V1__PullerStatus *p = st->pulled_by[i];
        printf("  %-20s through revision %" PRIu64 ", last asked %s (%s ago)\n",
               p->site ? p->site : "?", p->revision, when(a, sizeof a, p->last_us),
               span(b, sizeof b, st->now_us - p->last_us));
    }
}

static void print_text(const Parksync__V1__Status *st, const char *after)
{
    char a[64], b[64], c[64];

    const Parksync__V1__Health *h = st->health;

    printf("parksyncd %s, up %s (since %s)\n", st->version ? st->version : "?",
           span(a, sizeof a, st->now_us - st->started_us), when(b, sizeof b, st->started_us));
    if (h && h->degraded)
        printf("health: DEGRADED for %s (since %s): %s\n",
               span(a, sizeof a, st->now_us - h->since_us), when(b, sizeof b, h->since_us),
               h->reason ? h->reason : "?");
    else
        printf("health: ok\n");
    printf("last commit: %s%s%s%s\n",
           h && h->has_last_commit_us ? when(a, sizeof a, h->last_commit_us) : "none since start",
           h && h->has_last_commit_us ? " (" : "",
           h && h->has_last_commit_us ? span(b, sizeof b, st->now_us - h->last_commit_us) : "",
           h && h->has_last_commit_us ? " ago)" : "");
    printf("revision %" PRIu64 ", epoch ", st->head_revision);
    for (size_t i = 0; i < st->epoch.len; i++)
        printf("%02x", st->epoch.data[i]);
    printf(", %" PRIu64 " subscribers\n", st->subscribers);
    printf("site %s, acknowledges after %s\n", st->site ? st->site : "?",
           st->ack_after ? st->ack_after : "?");
    printf("database %s, WAL %s, last complete checkpoint %s, %" PRIu64
           " resident rows waiting in the change log (a start after a crash replays %" PRIu64
           " revisions)\n",
           bytes(a, sizeof a, st->database_bytes), bytes(b, sizeof b, st->wal_bytes),
           st->has_last_checkpoint_us ? when(c, sizeof c, st->last_checkpoint_us) : "none yet",
           st->deferred_rows, st->replay_revisions);
    printf("records:");
    for (size_t i = 0; i < st->n_records; i++)
        printf("%s %s %" PRIu64, i ? "," : "", st->records[i]->name ? st->records[i]->name : "?",
               st->records[i]->value);
    printf("\nconflicts: %" PRIu64, st->conflicts);
    for (size_t i = 0; i < st->n_conflicts_by_reason; i++)
        printf("%s%s %" PRIu64, i ? ", " : " (", st->conflicts_by_reason[i]->name,
               st->conflicts_by_reason[i]->value);
    printf("%s\nrejected inputs:", st->n_conflicts_by_reason ? ")" : "");
    for (int i = 0; REJECTED[i]; i++)
        printf("%s %s %" PRIu64, i ? "," : "", REJECTED[i], counter(st, REJECTED[i]));
    printf("\nproducers: %" PRIu64, st->producers_total);
    if (st->n_producers < st->producers_total)
        printf(" (listing %zu%s%s; the next: parksync status --producers-after %s)",
               st->n_producers, after ? " after " : "", after ? after : "",
               st->n_producers ? st->producers[st->n_producers - 1]->producer_id : "LAST-ID");
    printf("\n");
    if (st->n_producers)
        printf("  %-20s %12s %10s %8s %8s %8s  %-20s %s\n", "ID", "LAST_SEQ", "APPLIED", "DUPS",
               "GAPS", "REJECTED", "LAST_SEEN", "LAG");
    for (size_t i = 0; i < st->n_producers; i++) {
        const Parksync__V1__ProducerStatus *p = st->producers[i];
        printf("  %-20s %12" PRIu64 " %10" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64
               "  %-20s %s\n",
               p->producer_id ? p->producer_id : "?", p->last_sequence, p->applied, p->duplicates,
               p->gaps, p->rejected, when(a, sizeof a, p->last_seen_us),
               p->last_seen_us > 0 ? span(b, sizeof b, st->now_us - p->last_seen_us) : "-");
        if (p->has_missing_from && p->has_missing_to)
            printf("  %-20s ahead of this database: missing %" PRIu64 "..%" PRIu64
                   ", later updates not applied (a restored backup? see parksync(1))\n",
                   "", p->missing_from, p->missing_to);
    }
    print_peers(st);
    for (size_t i = 0; i < st->n_connections; i++) {
        const Parksync__V1__SocketConnections *sc = st->connections[i];
        printf("%s %s %" PRIu64 " open (%" PRIu64 " accepted, %" PRIu64
               " refused over the budget, %" PRIu64 " accept failures; handshakes failed:",
               i ? "," : "connections:", sc->socket ? sc->socket : "?", sc->open, sc->accepted,
               sc->refused, sc->accept_failed);
        for (size_t r = 0; r < sc->n_handshakes_failed; r++)
            printf(" %s %" PRIu64, sc->handshakes_failed[r]->name, sc->handshakes_failed[r]->value);
        printf(")");
    }
    if (st->n_connections)
        printf("\n");
    printf("counters:");
    for (size_t i = 0; i < st->n_counters; i++)
        printf("%s %s %" PRIu64, i ? "," : "", st->counters[i]->name, st->counters[i]->value);
    printf("\n");
    if (st->reload_error)
        printf("last reload failed: %s (running the previous configuration)\n", st->reload_error);
}

static json_t *counters_json(Parksync__V1__Counter **c, size_t n)
{
    json_t *o = json_object();

    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, c[i]->name ? c[i]->name : "?",
                            json_integer((json_int_t)c[i]->value));
    return o;
}

/* {"ingest": {"open": N, ..., "handshakes_failed": {"mechanism": N, ...}}, ...} */
static json_t *connections_json(const Parksync__V1__Status *st)
{
    json_t *o = json_object();

    for (size_t i = 0; o && i < st->n_connections; i++) {
        const Parksync__V1__SocketConnections *sc = st->connections[i];
        json_object_set_new(
            o, sc->socket ? sc->socket : "?",
            json_pack("{s:I, s:I, s:I, s:I, s:o}", "open", (json_int_t)sc->open, "accepted",
                      (json_int_t)sc->accepted, "refused", (json_int_t)sc->refused, "accept_failed",
                      (json_int_t)sc->accept_failed, "handshakes_failed",
                      counters_json(sc->handshakes_failed, sc->n_handshakes_failed)));
    }
    return o;
}

/* {"state": "ok"|"degraded", "reason": ..., "since_us": ..., "last_commit_us": ...};
 * reason and since_us null when ok, last_commit_us null before the first. */
static json_t *health_json(const Parksync__V1__Health *h)
{
    bool bad = h && h->degraded;

    return json_pack("{s:s, s:o, s:o, s:o}", "state", bad ? "degraded" : "ok", "reason",
                     bad && h->reason ? json_string(h->reason) : json_null(), "since_us",
                     bad ? json_integer((json_int_t)h->since_us) : json_null(), "last_commit_us",
                     h && h->has_last_commit_us ? json_integer((json_int_t)h->last_commit_us)
                                                : json_null());
}

/* Lower-case hex of bytes, or JSON null when there are none. */
static json_t *hex_json(const ProtobufCBinaryData *b, bool has)
{
    char hex[2 * 32 + 1] = "";

    if (!has || b->len == 0)
        return json_null();
    for (size_t i = 0; i < b->len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", b->data[i]);
    return json_string(hex);
}

/* [{"name": ..., "pulling": true, "endpoint": ..., ...}, ...]: a peer this
 * site does not pull from has its name and "pulling": false only. */
static json_t *peers_json(const Parksync__V1__Status *st)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < st->n_peers; i++) {
        const Parksync__V1__PeerStatus *p = st->peers[i];
        json_t *o =
            json_pack("{s:s, s:b}", "name", p->name ? p->name : "", "pulling", p->has_connected);
        if (o && p->has_connected) {
            json_object_set_new(o, "endpoint",
                                p->endpoint ? json_string(p->endpoint) : json_null());
            json_object_set_new(o, "connected", json_boolean(p->connected));
            json_object_set_new(o, "epoch", hex_json(&p->epoch, p->has_epoch));
            json_object_set_new(o, "revision", json_integer((json_int_t)p->revision));
            json_object_set_new(o, "peer_head", json_integer((json_int_t)p->peer_head));
            json_object_set_new(o, "lag_revisions", json_integer((json_int_t)p->lag_revisions));
            /* null: no pull has reached the peer's head since the daemon started */
            json_object_set_new(o, "lag_us",
                                p->has_lag_us ? json_integer((json_int_t)p->lag_us) : json_null());
            json_object_set_new(o, "last_pull_us",
                                p->last_pull_us ? json_integer((json_int_t)p->last_pull_us)
                                                : json_null());
            json_object_set_new(o, "last_error",
                                p->last_error ? json_string(p->last_error) : json_null());
            json_object_set_new(o, "records", json_integer((json_int_t)p->records));
            json_object_set_new(o, "refused", json_integer((json_int_t)p->refused));
            json_object_set_new(o, "pulls", json_integer((json_int_t)p->pulls));
            json_object_set_new(o, "full_resyncs", json_integer((json_int_t)p->full_resyncs));
        }
        json_array_append_new(a, o);
    }
    return a;
}

/* [{"site": ..., "revision": N, "last_us": T}, ...] */
static json_t *pulled_by_json(const Parksync__V1__Status *st)
{
    json_t *a = json_array();

    for (size_t i = 0; a && i < st->n_pulled_by; i++) {
        const Parksync__V1__PullerStatus *p = st->pulled_by[i];
        json_array_append_new(a, json_pack("{s:s, s:I, s:I}", "site", p->site ? p->site : "",
                                           "revision", (json_int_t)p->revision, "last_us",
                                           (json_int_t)p->last_us));
    }
    return a;
}

static int print_json(const Parksync__V1__Status *st)
{
    json_t *o = json_object(), *producers = json_array(), *rejected = json_object();
    char epoch[2 * 32 + 1] = "";
    int rc;

    for (size_t i = 0; i < st->epoch.len && i < 32; i++)
        snprintf(epoch + 2 * i, 3, "%02x", st->epoch.data[i]);
    for (int i = 0; REJECTED[i]; i++)
        json_object_set_new(rejected, REJECTED[i],
                            json_integer((json_int_t)counter(st, REJECTED[i])));
    for (size_t i = 0; i < st->n_producers; i++) {
        const Parksync__V1__ProducerStatus *p = st->producers[i];
        bool ahead = p->has_missing_from && p->has_missing_to;
        json_t *po = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "producer_id",
            p->producer_id ? p->producer_id : "", "last_sequence", (json_int_t)p->last_sequence,
            "applied", (json_int_t)p->applied, "duplicates", (json_int_t)p->duplicates, "gaps",
            (json_int_t)p->gaps, "rejected", (json_int_t)p->rejected, "last_seen_us",
            (json_int_t)p->last_seen_us, "lag_us",
            (json_int_t)(p->last_seen_us > 0 ? st->now_us - p->last_seen_us : 0));
        /* null unless the producer is ahead of the database (see parksync(1)) */
        json_object_set_new(po, "missing_from",
                            ahead ? json_integer((json_int_t)p->missing_from) : json_null());
        json_object_set_new(po, "missing_to",
                            ahead ? json_integer((json_int_t)p->missing_to) : json_null());
        json_array_append_new(producers, po);
    }
    json_object_set_new(o, "version", json_string(st->version ? st->version : ""));
    json_object_set_new(o, "health", health_json(st->health));
    json_object_set_new(o, "started_us", json_integer((json_int_t)st->started_us));
    json_object_set_new(o, "uptime_s",
                        json_integer((json_int_t)((st->now_us - st->started_us) / 1000000)));
    json_object_set_new(o, "head_revision", json_integer((json_int_t)st->head_revision));
    json_object_set_new(o, "epoch", json_string(epoch));
    json_object_set_new(o, "records", counters_json(st->records, st->n_records));
    json_object_set_new(o, "producers", producers);
    json_object_set_new(o, "producers_total", json_integer((json_int_t)st->producers_total));
    json_object_set_new(o, "subscribers", json_integer((json_int_t)st->subscribers));
    json_object_set_new(o, "database_bytes", json_integer((json_int_t)st->database_bytes));
    json_object_set_new(o, "wal_bytes", json_integer((json_int_t)st->wal_bytes));
    json_object_set_new(o, "deferred_rows", json_integer((json_int_t)st->deferred_rows));
    json_object_set_new(o, "replay_revisions", json_integer((json_int_t)st->replay_revisions));
    json_object_set_new(o, "last_checkpoint_us",
                        st->has_last_checkpoint_us
                            ? json_integer((json_int_t)st->last_checkpoint_us)
                            : json_null());
    json_object_set_new(o, "conflicts", json_integer((json_int_t)st->conflicts));
    json_object_set_new(o, "conflicts_by_reason",
                        counters_json(st->conflicts_by_reason, st->n_conflicts_by_reason));
    json_object_set_new(o, "rejected", rejected);
    json_object_set_new(o, "counters", counters_json(st->counters, st->n_counters));
    json_object_set_new(o, "connections", connections_json(st));
    json_object_set_new(o, "reload_error",
                        st->reload_error ? json_string(st->reload_error) : json_null());
    json_object_set_new(o, "site", st->site ? json_string(st->site) : json_null());
    json_object_set_new(o, "ack_after", st->ack_after ? json_string(st->ack_after) : json_null());
    json_object_set_new(o, "peers", peers_json(st));
    json_object_set_new(o, "pulled_by", pulled_by_json(st));
    rc = json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) < 0 || fputc('\n', stdout) == EOF
             ? -1
             : 0;
    json_decref(o);
    return rc;
}

int cmd_status(int argc, char **argv, const ps_profile_t *prof)
{
    static const struct option LONG[] = {{"json", no_argument, NULL, 'j'},
                                         {"producers-after", required_argument, NULL, 'a'},
                                         CTL_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__StatusRequest sr = PARKSYNC__V1__STATUS_REQUEST__INIT;
    Parksync__V1__ControlReply *r = NULL;
    ctl_opts_t o = {"status", CTL_PROFILE_CONTROL(prof), STATUS_TIMEOUT_S};
    bool json = false;
    int c, rc, status;

    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        if (c == 'j') {
            json = true;
            continue;
        }
        if (c == 'a') {
            sr.producers_after = optarg;
            continue;
        }
        if (c == 'h') {
            fputs(CLI_STATUS_USAGE, stdout);
            return CLI_OK;
        }
        if ((rc = ctl_option(&o, c, optarg)) < 0)
            return CLI_USAGE;
        if (rc == 0) {
            fputs(CLI_STATUS_USAGE, stderr);
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "parksync status: unexpected argument '%s'\n%s", argv[optind],
                CLI_STATUS_USAGE);
        return CLI_USAGE;
    }
    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_STATUS;
    q.status = &sr;
    if ((status = ctl_ask(&o, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_STATUS, &r)) != CLI_OK)
        return status;
    if (json) {
        status = print_json(r->status) < 0 ? CLI_RUNTIME : CLI_OK;
    } else {
        print_text(r->status, sr.producers_after);
        status = fflush(stdout) == 0 ? CLI_OK : CLI_RUNTIME;
    }
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return status;
}
