/*
 * streams.c - the query socket: pings, producer state, and the snapshot
 * and changes streams with their credit (server_int.h).
 *
 * The query ROUTER runs with ZMQ_ROUTER_MANDATORY and a high-water mark
 * of [limits] query_hwm replies per connection: credit says what a client
 * asks for, not what it reads, so only the transport can tell a client
 * that does not read. A chunk for a client whose queue is full is refused
 * with EAGAIN, kept by its stream and sent first once the client has
 * read; a stream that delivers nothing for stream_idle_ms, for lack of
 * credit or of a reader, is dropped with its read transaction. So a
 * client holds at most query_hwm chunks queued plus one held per stream,
 * in at most max_streams_per_client streams. The mark counts messages,
 * not bytes, and must leave room for the answers to a burst of pipelined
 * requests, so the chunks are what is kept small (CHUNK_MAX_BYTES): 32 KiB
 * streamed a million records as fast as the old 1 MiB chunks did, 16 KiB
 * a quarter slower (more passes and credits per record). A send to a
 * vanished client fails with EHOSTUNREACH and ends its stream at once.
 */
#include "server_int.h"

#include <math.h>

/* ---------------------------------------------------------------- streams */

void stream_close(stream_t *st)
{
    store_cursor_close(&st->cursor);
    wire_buf_free(&st->ahead);
    wire_buf_free(&st->held);
    memset(st, 0, sizeof *st);
}

/* A query connection ended: its streams go at once, so a client that
 * asks and hangs up holds no stream slot until stream_idle_ms. */
void on_query_closed(void *arg, int fd, uint32_t conn)
{
    server_t *s = arg;

    for (uint32_t i = 0; conn != 0 && i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        if (st->state != STREAM_FREE && st->peer.fd == fd && st->peer.conn == conn) {
            stream_close(st);
            s->n.streams_dropped++;
        }
    }
}

static stream_t *stream_find(server_t *s, const peer_t *peer, uint64_t request_id)
{
    for (uint32_t i = 0; i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        if (st->state != STREAM_FREE && st->request_id == request_id && st->peer.len == peer->len &&
            memcmp(st->peer.id, peer->id, peer->len) == 0)
            return st;
    }
    return NULL;
}

static void stream_fail(server_t *s, stream_t *st, Parksync__V1__ErrorCode code,
                        const char *message)
{
    server_reply_error(s, &st->peer, st->request_id, code, message);
    s->n.streams_dropped++;
    stream_close(st);
}

/* Opens the cursors of waiting streams; called right after a commit so a
 * snapshot covers everything published so far. */
/* A replicate stream that found nothing new waits for a commit that
 * makes something, or for the end of its wait_ms. */
static bool replica_waits(const server_t *s, const stream_t *st, int64_t now)
{
    return st->replica && st->wait_until_ms > now && store_head(s->store) == st->since &&
           s->commits == st->commit_asked; /* a commit moves positions, even without records */
}

bool streams_ready(const server_t *s, int64_t now)
{
    for (uint32_t i = 0; s->streams_waiting && i < s->n_streams; i++)
        if (s->streams[i].state == STREAM_WAITING && !replica_waits(s, &s->streams[i], now))
            return true;
    return false;
}

int64_t streams_wait_deadline(const server_t *s)
{
    int64_t t = INT64_MAX;
    for (uint32_t i = 0; s->streams_waiting && i < s->n_streams; i++)
        if (s->streams[i].state == STREAM_WAITING && s->streams[i].replica &&
            s->streams[i].wait_until_ms < t)
            t = s->streams[i].wait_until_ms;
    return t;
}

void open_waiting_streams(server_t *s, int64_t now)
{
    s->streams_waiting = false;
    for (uint32_t i = 0; i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        char msg[200];
        int err = 0;

        if (st->state != STREAM_WAITING)
            continue;
        if (replica_waits(s, st, now)) {
            s->streams_waiting = true;
            continue;
        }
        st->commit_open = s->commits; /* every commit up to it is in the view */
        if (st->replica)
            st->cursor = store_replica_open(s->store, st->has_epoch ? st->epoch : NULL, st->since,
                                            &st->full, &err);
        else if (st->changes)
            st->cursor = store_changes_open(s->store, st->since, &st->filter, &err);
        else if (st->history)
            st->cursor = store_snapshot_at_open(s->store, &st->filter, st->since, &err);
        else
            st->cursor = store_snapshot_open(s->store, &st->filter, &err);
        if (!st->cursor && err == -EINVAL && st->changes) {
            /* a revision of another history (a restored backup, a
             * recreated database): nothing here continues it */
            snprintf(msg, sizeof msg,
                     "revision %" PRIu64 " is beyond this database's head (%" PRIu64
                     "): it belongs to another history; take a snapshot",
                     st->since, store_head(s->store));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD, msg);
            continue;
        }
        if (!st->cursor && err == -EINVAL && st->history) {
            snprintf(msg, sizeof msg, "revision %" PRIu64 " is beyond the head (%" PRIu64 ")",
                     st->since, store_head(s->store));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, msg);
            continue;
        }
        if (!st->cursor && err == -ERANGE) {
            snprintf(msg, sizeof msg,
                     "revision %" PRIu64 " is older than the change log "
                     "keeps (oldest %" PRIu64 "); take a snapshot",
                     st->since, store_oldest(s->store));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD, msg);
            continue;
        }
        if (!st->cursor) {
            err = err < 0 ? err : -EIO;
            server_store_failed(s, err, false,
                                st->changes ? "cannot open a changes cursor"
                                            : "cannot open a snapshot cursor",
                                store_errmsg(s->store));
            snprintf(msg, sizeof msg, "cannot read the store: %s; see the daemon's log",
                     store_strerror(err));
            stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, msg);
            continue;
        }
        st->revision = store_cursor_revision(st->cursor);
        st->state = STREAM_RUNNING;
        st->active_ms = now;
        s->n.streams_opened++;
        log_debug("%s stream %" PRIu64 " opened at revision %" PRIu64,
                  st->replica   ? (st->full ? "replicate (whole state)" : "replicate")
                  : st->changes ? "changes"
                                : "snapshot",
                  st->request_id, st->revision);
    }
}

/* Steps the cursor, keeping the record read in st->ahead. 1 read, 0 end,
 * -EAGAIN when the cursor has done its share of work for this turn, or a
 * negative errno. */
static int stream_read_ahead(stream_t *st)
{
    const uint8_t *rec;
    size_t len;
    int rc = store_cursor_next(st->cursor, &rec, &len);

    if (rc <= 0) {
        if (rc == 0)
            st->at_end = true;
        return rc;
    }
    wire_buf_reset(&st->ahead);
    if (st->ahead.cap < len) {
        uint8_t *p = realloc(st->ahead.data, len);
        if (!p)
            return -ENOMEM;
        st->ahead.data = p;
        st->ahead.cap = len;
    }
    memcpy(st->ahead.data, rec, len);
    st->ahead.len = len;
    st->has_ahead = true;
    return 1;
}

/* Ends a stream whose chunk could not be built or queued: counted and
 * logged; its client, if still there, times out and asks again. */
static void stream_abort(server_t *s, stream_t *st, int rc)
{
    log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                    "cannot send a chunk of stream %" PRIu64 ": %s; ending the stream",
                    st->request_id, server_send_failure(rc));
    s->n.streams_dropped++;
    stream_close(st);
}

/* Hands a finished chunk (in buf) to ZeroMQ for the stream's client.
 * When the client's queue is full the chunk stays with the stream, in
 * st->held (buffers are swapped, not copied), and goes first at its next
 * turn: nothing is lost or sent twice, and credit is spent only on what
 * was queued. Returns true when the chunk is held; false when it was
 * queued or the stream has ended (complete, or its client is gone). */
static bool stream_deliver(server_t *s, stream_t *st, wire_buf_t *buf, bool last, int64_t now)
{
    int rc = server_send_reply(s, &st->peer, buf->data, buf->len);

    if (rc == -EAGAIN) {
        if (buf != &st->held) {
            wire_buf_t spare = st->held;
            st->held = *buf;
            *buf = spare;
        }
        st->held_last = last;
        return true;
    }
    if (rc < 0) {
        stream_abort(s, st, rc);
        return false;
    }
    wire_buf_reset(&st->held);
    s->n.chunks++;
    st->credit--;
    st->active_ms = now;
    if (last) {
        log_debug("stream %" PRIu64 " complete at revision %" PRIu64, st->request_id, st->revision);
        stream_close(st);
    }
    return false;
}

static int add_position(void *arg, const char *producer_id, uint64_t last_sequence)
{
    wire_chunk_t *c = arg;
    return wire_chunk_add_position(c, producer_id, last_sequence);
}

/* What a replicate chunk carries besides records: the mark of a whole
 * state, and on the last one the producers' positions as of the view. */
static int replica_extras(server_t *s, stream_t *st, wire_chunk_t *c, bool last)
{
    int rc = st->full ? wire_chunk_set_full(c) : 0;
    if (rc == 0 && last)
        rc = wire_chunk_set_commit(c, st->commit_open, s->instance);
    if (rc == 0 && last) {
        rc = store_cursor_producers(st->cursor, add_position, c);
        if (rc < 0)
            log_error("replicate stream %" PRIu64 ": cannot read the producers' positions: %s",
                      st->request_id, store_cursor_errmsg(st->cursor));
    }
    return rc;
}

/* Builds and sends the stream's next chunk, or offers the held one
 * again. Returns true when the stream's turn is over until the loop has
 * gone round: its client's queue is full, or the cursor yielded (a
 * history snapshot spent its share of work; the chunk holds what was read
 * by then, or is not sent when empty). */
static bool stream_send_chunk(server_t *s, stream_t *st, int64_t now)
{
    wire_chunk_t *c = &s->chunk;
    const uint8_t *msg;
    size_t len;
    bool last, yielded = false;
    int rc = 0;

    if (st->held.len > 0)
        return stream_deliver(s, st, &st->held, st->held_last, now);
    wire_chunk_reset(c);
    if (!st->has_ahead && !st->at_end)
        rc = stream_read_ahead(st);
    while (rc >= 0 && st->has_ahead && c->count < st->chunk_records) {
        if (c->count > 0 && c->records.len + st->ahead.len + 16 > CHUNK_MAX_BYTES)
            break; /* the read-ahead record opens the next chunk */
        rc = wire_chunk_add(c, st->ahead.data, st->ahead.len);
        if (rc < 0)
            break;
        st->has_ahead = false;
        rc = stream_read_ahead(st);
    }
    if (rc == -EAGAIN) {
        /* ingest and the other streams go first; the cursor goes on later */
        yielded = true;
        rc = 0;
        if (c->count == 0) {
            st->active_ms = now; /* working through the change log is progress */
            return yielded;
        }
    }
    if (rc < 0) {
        char what[64], why[128];
        snprintf(what, sizeof what, "stream %" PRIu64 " failed, ending it", st->request_id);
        server_store_failed(s, rc, false, what, store_cursor_errmsg(st->cursor));
        snprintf(why, sizeof why, "reading the store failed: %s; see the daemon's log",
                 store_strerror(rc));
        stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL, why);
        return false;
    }
    last = st->at_end && !st->has_ahead;
    if (st->replica && (rc = replica_extras(s, st, c, last)) < 0) {
        stream_fail(s, st, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_INTERNAL,
                    "cannot read the producers' positions; see the daemon's log");
        return false;
    }
    rc =
        wire_chunk_finish(c, st->request_id, last, st->revision, store_epoch(s->store), &msg, &len);
    if (rc < 0) {
        stream_abort(s, st, rc);
        return false;
    }
    return stream_deliver(s, st, &c->out, last, now) || yielded;
}

/* Drops a stream that has delivered nothing for stream_idle_ms, which
 * also ends its read transaction (it pins the WAL). The client hears
 * nothing; a credit it sends later gets UNKNOWN_REQUEST. */
static void stream_stalled(server_t *s, stream_t *st)
{
    log_ratelimited(&s->rl[RL_STREAM_STALLED], LOG_LEVEL_WARNING,
                    "stream %" PRIu64 " delivered nothing for %" PRIu32 " ms (stream_idle_ms): %s; "
                    "dropping it",
                    st->request_id, s->cfg.stream_idle_ms,
                    st->held.len > 0 ? "its client does not read" : "its client grants no credit");
    s->n.streams_stalled++;
    s->n.streams_dropped++;
    stream_close(st);
}

/* Sends chunks to streams with credit, round-robin, at most
 * STREAM_CHUNK_BUDGET per pass so ingest is never starved, and drops the
 * stalled ones. Returns true when some stream could take more right
 * away; s->streams_held says whether one waits for its client to read. */
bool pump_streams(server_t *s, int64_t now)
{
    uint32_t budget = STREAM_CHUNK_BUDGET;
    bool more = false;

    for (uint32_t k = 0; k < s->n_streams && budget > 0; k++) {
        stream_t *st = &s->streams[(s->stream_rr + k) % s->n_streams];
        for (int j = 0; j < STREAM_CHUNKS_EACH && budget > 0; j++) {
            if (st->state != STREAM_RUNNING || st->credit == 0)
                break;
            budget--;
            if (stream_send_chunk(s, st, now))
                break;
        }
    }
    s->stream_rr = s->n_streams ? (s->stream_rr + 1) % s->n_streams : 0;
    s->streams_held = false;
    for (uint32_t i = 0; i < s->n_streams; i++) {
        stream_t *st = &s->streams[i];
        if (st->state != STREAM_RUNNING)
            continue;
        if (now - st->active_ms > (int64_t)s->cfg.stream_idle_ms) {
            stream_stalled(s, st);
            continue;
        }
        if (st->credit > 0 && st->held.len > 0)
            s->streams_held = true;
        else if (st->credit > 0)
            more = true;
    }
    return more;
}

/* ---------------------------------------------------------------- queries */

static uint32_t clamp_u32(bool has, uint32_t v, uint32_t def, uint32_t max)
{
    if (!has || v == 0)
        return def;
    return v > max ? max : v;
}

/* Cancel: ends the stream with a final chunk, `last` and no records,
 * so the client knows nothing more of it follows and may reuse the
 * request_id. */
static void end_stream(server_t *s, stream_t *st)
{
    uint64_t revision = st->state == STREAM_RUNNING ? st->revision : store_head(s->store);
    const uint8_t *msg;
    size_t len;
    int rc;

    wire_chunk_reset(&s->chunk);
    rc = wire_chunk_finish(&s->chunk, st->request_id, true, revision, store_epoch(s->store), &msg,
                           &len);
    if (rc == 0)
        rc = server_send_reply(s, &st->peer, msg, len);
    if (rc < 0)
        log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                        "cannot send the end of cancelled stream %" PRIu64 ": %s", st->request_id,
                        server_send_failure(rc));
    stream_close(st);
}

/* One connection's share of the streams: never every slot, so one client
 * alone cannot leave the others BUSY (unless max_streams is 1). */
uint32_t streams_per_client(const server_t *s)
{
    uint32_t cap = s->n_streams > 1 ? s->n_streams - 1 : 1;

    return s->cfg.max_streams_per_client < cap ? s->cfg.max_streams_per_client : cap;
}

static uint32_t streams_of(const server_t *s, const peer_t *peer)
{
    uint32_t n = 0;

    for (uint32_t i = 0; i < s->n_streams; i++) {
        const stream_t *st = &s->streams[i];
        if (st->state != STREAM_FREE && st->peer.len == peer->len &&
            memcmp(st->peer.id, peer->id, peer->len) == 0)
            n++;
    }
    return n;
}

/* Answers a stream request that finds no room with BUSY: message names
 * the limit. Counted and logged (rate-limited). */
static void refuse_stream(server_t *s, const peer_t *peer, uint64_t request_id, const char *message)
{
    s->n.streams_refused++;
    log_ratelimited(&s->rl[RL_STREAM_BUSY], LOG_LEVEL_WARNING,
                    "refusing stream request %" PRIu64 ": %s", request_id, message);
    server_reply_error(s, peer, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BUSY, message);
}

static void start_stream(server_t *s, const peer_t *peer, uint64_t request_id, bool changes,
                         const Parksync__V1__Filter *filter, uint64_t since, bool has_credit,
                         uint32_t credit, bool has_chunk, uint32_t chunk)
{
    stream_t *st = stream_find(s, peer, request_id);
    uint32_t mine;
    char msg[160];

    if (st) /* the same request again: it replaces the old stream */
        stream_close(st);
    /* The routing id is the connection (ZeroMQ gives each its own), so
     * this bounds a connection, not a key: many connections are bounded
     * by max_streams. */
    mine = streams_of(s, peer);
    if (mine >= streams_per_client(s)) {
        snprintf(msg, sizeof msg,
                 "this connection runs %" PRIu32 " streams (max_streams_per_client); retry when "
                 "one ends",
                 mine);
        refuse_stream(s, peer, request_id, msg);
        return;
    }
    for (uint32_t i = 0; !st && i < s->n_streams; i++)
        if (s->streams[i].state == STREAM_FREE)
            st = &s->streams[i];
    if (!st) {
        snprintf(msg, sizeof msg, "%" PRIu32 " streams are running (max_streams); retry later",
                 s->n_streams);
        refuse_stream(s, peer, request_id, msg);
        return;
    }
    /* wire_query_request_decode validated the filter: country is NULL or
     * two letters */
    memset(st, 0, sizeof *st);
    st->state = STREAM_WAITING;
    st->changes = changes;
    st->peer = *peer;
    st->request_id = request_id;
    st->filter.kind = filter && filter->has_kind
                          ? filter->kind
                          : PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    if (filter && filter->country)
        memcpy(st->filter.country, filter->country, 3);
    st->since = since;
    st->credit = clamp_u32(has_credit, credit, STREAM_DEFAULT_CREDIT, WIRE_MAX_CREDIT);
    st->chunk_records =
        clamp_u32(has_chunk, chunk, WIRE_DEFAULT_CHUNK_RECORDS, WIRE_MAX_CHUNK_RECORDS);
    s->streams_waiting = true;
}

/* Remembers how far a site has pulled: it asks from what it has stored,
 * so everything up to since_revision of this epoch is safe there. */
static void note_puller(server_t *s, const Parksync__V1__ReplicateRequest *r, const char *user_id,
                        int64_t now_us)
{
    bool ours = r->has_epoch && memcmp(r->epoch.data, store_epoch(s->store), WIRE_EPOCH_BYTES) == 0;
    uint64_t revision = ours && r->since_revision <= store_head(s->store) ? r->since_revision : 0;
    puller_stats_t *p = NULL;

    for (size_t i = 0; !p && i < s->n_pullers; i++)
        if (strcmp(s->pullers[i].site, r->site) == 0)
            p = &s->pullers[i];
    if (!p && s->n_pullers < PEERS_MAX_PULLERS)
        p = &s->pullers[s->n_pullers++];
    if (!p) { /* full: the longest silent goes */
        p = &s->pullers[0];
        for (size_t i = 1; i < s->n_pullers; i++)
            if (s->pullers[i].last_us < p->last_us)
                p = &s->pullers[i];
    }
    snprintf(p->site, sizeof p->site, "%s", r->site);
    p->revision = revision;
    p->last_us = now_us;
    /* the commit whose pull it has stored, when counted by this instance */
    p->commit = r->has_stored_commit && r->has_stored_instance &&
                        memcmp(r->stored_instance.data, s->instance, WIRE_INSTANCE_BYTES) == 0 &&
                        r->stored_commit <= s->commits
                    ? r->stored_commit
                    : 0;
    p->all_countries = r->has_all_countries && r->all_countries;
    p->n_countries = 0;
    for (size_t i = 0; i < r->n_countries && i < WIRE_MAX_COUNTRIES; i++)
        memcpy(p->countries[p->n_countries++], r->countries[i], 3);
    p->counts = false;
    for (size_t i = 0; i < s->cfg.n_peers; i++)
        if (strcmp(s->cfg.peers[i].name, r->site) == 0)
            p->counts = !s->cfg.curve ||
                        (user_id && strncmp(user_id, ZAP_USER_PEER, strlen(ZAP_USER_PEER)) == 0 &&
                         strcmp(user_id + strlen(ZAP_USER_PEER), r->site) == 0);
    if (s->acks)
        acks_after_pull(s);
}

static void start_replica(server_t *s, const peer_t *peer, uint64_t request_id,
                          const Parksync__V1__ReplicateRequest *r)
{
    note_puller(s, r, peer->user_id, wire_now_us());
    start_stream(s, peer, request_id, false, NULL, r->since_revision, r->has_credit, r->credit,
                 r->has_chunk_records, r->chunk_records);
    stream_t *st = stream_find(s, peer, request_id);
    if (!st || st->state != STREAM_WAITING)
        return; /* refused: BUSY */
    st->replica = true;
    st->commit_asked = s->commits;
    st->has_epoch = r->has_epoch;
    if (r->has_epoch)
        memcpy(st->epoch, r->epoch.data, WIRE_EPOCH_BYTES);
    if (r->has_wait_ms && r->wait_ms > 0 && r->has_epoch &&
        memcmp(st->epoch, store_epoch(s->store), WIRE_EPOCH_BYTES) == 0 &&
        r->since_revision == store_head(s->store))
        st->wait_until_ms = wire_monotonic_ms() + r->wait_ms;
}

/* Answers a request that cannot be served with BAD_REQUEST: why names
 * the field and the rule. Counted and logged (rate-limited). */
static void refuse_query(server_t *s, const peer_t *peer, uint64_t request_id, size_t len,
                         const char *why)
{
    s->n.bad_queries++;
    log_ratelimited(&s->rl[RL_BAD_QUERY], LOG_LEVEL_WARNING,
                    "refusing query request %" PRIu64 " (%zu bytes): %s", request_id, len, why);
    server_reply_error(s, peer, request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, why);
}

/* True, with why, when a pull comes from a site whose [trade] settings
 * differ from this one's: each would derive other values for the same
 * flows, so the two could never hold the same picture. The request is
 * validated: a rule it names is known, its numbers are finite. */
static bool trade_differs(const server_t *s, const Parksync__V1__ReplicateRequest *r, char *why,
                          size_t size)
{
    const config_t *c = &s->cfg;
    char pct[32] = "not given", factor[32] = "not given";

    if ((!r->has_trade_rule || r->trade_rule == c->trade_rule) &&
        (!r->has_trade_threshold_pct || !islessgreater(r->trade_threshold_pct, c->threshold_pct)) &&
        (!r->has_trade_cif_fob_factor ||
         !islessgreater(r->trade_cif_fob_factor, c->cif_fob_factor)))
        return false;
    /* a pull may carry some of them: what it left out is not compared */
    if (r->has_trade_threshold_pct)
        snprintf(pct, sizeof pct, "%g", r->trade_threshold_pct);
    if (r->has_trade_cif_fob_factor)
        snprintf(factor, sizeof factor, "%g", r->trade_cif_fob_factor);
    snprintf(why, size,
             "replicate: the pulling site's [trade] settings (rule = %s, threshold_pct = %s, "
             "cif_fob_factor = %s) differ from this site's (rule = %s, threshold_pct = %g, "
             "cif_fob_factor = %g): sites that pull from each other must run the same, or their "
             "flows never agree",
             r->has_trade_rule ? config_trade_rule_name(r->trade_rule) : "not given", pct, factor,
             config_trade_rule_name(c->trade_rule), c->threshold_pct, c->cif_fob_factor);
    return true;
}

static void handle_query(server_t *s, const peer_t *peer, const void *data, size_t len)
{
    Parksync__V1__QueryRequest *q = NULL;
    Parksync__V1__QueryReply r = PARKSYNC__V1__QUERY_REPLY__INIT;
    Parksync__V1__Health health;
    char reason[HEALTH_REASON * HEALTH_CONDITIONS];
    const char *why = NULL;
    stream_t *st;
    int rc;

    s->n.queries++;
    rc = wire_query_request_decode(data, len, &q, &why);
    if (rc < 0) {
        uint64_t id;
        /* Never silence: a client must tell "refused" or "unsupported"
         * from "daemon down", so even what does not decode is answered,
         * with the request_id when one can be read. */
        if (rc == -EMSGSIZE)
            why = "request: larger than 4096 bytes";
        else if (rc != -EINVAL)
            why = "request: not a valid QueryRequest encoding";
        wire_query_request_id(data, len, &id);
        refuse_query(s, peer, id, len, why ? why : "request: invalid");
        return;
    }
    switch (q->body_case) {
    case PARKSYNC__V1__QUERY_REQUEST__BODY_PING: {
        Parksync__V1__Pong pong = PARKSYNC__V1__PONG__INIT;
        pong.has_epoch = true;
        pong.epoch.data = (uint8_t *)store_epoch(s->store);
        pong.epoch.len = WIRE_EPOCH_BYTES;
        pong.has_head_revision = true;
        pong.head_revision = store_head(s->store);
        pong.has_time_us = true;
        pong.time_us = wire_now_us();
        health_to_proto(&s->health, &health, reason, sizeof reason);
        pong.health = &health;
        r.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_PONG;
        r.pong = &pong;
        server_reply(s, peer, q->request_id, &r);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_PRODUCER_STATE: {
        Parksync__V1__ProducerState ps = PARKSYNC__V1__PRODUCER_STATE__INIT;
        const char *id = q->producer_state->producer_id; /* validated by the decode */
        /* No batch is open here: the answer is what is committed. */
        ps.producer_id = (char *)id;
        ps.has_last_sequence = true;
        ps.last_sequence = ack_value(s, id); /* what it may delete from its outbox */
        store_producer_stats_t stats;
        if (store_producer_stats(s->store, id, &stats) == 0) {
            ps.has_applied = ps.has_duplicates = ps.has_gaps = true;
            ps.has_rejected = ps.has_last_seen_us = true;
            ps.applied = stats.applied;
            ps.duplicates = stats.duplicates;
            ps.gaps = stats.gaps;
            ps.rejected = stats.rejected;
            ps.last_seen_us = stats.last_seen_us;
        }
        r.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_PRODUCER_STATE;
        r.producer_state = &ps;
        server_reply(s, peer, q->request_id, &r);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT: {
        const Parksync__V1__SnapshotRequest *sr = q->snapshot;
        if (sr->has_at_revision && sr->has_provenance && sr->provenance) {
            server_reply_error(s, peer, q->request_id,
                               PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                               "provenance is not kept for history; ask at_revision without it");
            break;
        }
        start_stream(s, peer, q->request_id, false, sr->filter,
                     sr->has_at_revision ? sr->at_revision : 0, sr->has_credit, sr->credit,
                     sr->has_chunk_records, sr->chunk_records);
        st = stream_find(s, peer, q->request_id);
        if (st && st->state == STREAM_WAITING) {
            st->filter.provenance = sr->has_provenance && sr->provenance;
            st->history = sr->has_at_revision;
        }
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES: {
        const Parksync__V1__ChangesRequest *cr = q->changes;
        start_stream(s, peer, q->request_id, true, cr->filter,
                     cr->has_since_revision ? cr->since_revision : 0, cr->has_credit, cr->credit,
                     cr->has_chunk_records, cr->chunk_records);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_REPLICATE: {
        char differ[512];
        if (trade_differs(s, q->replicate, differ, sizeof differ))
            refuse_query(s, peer, q->request_id, len, differ);
        else
            start_replica(s, peer, q->request_id, q->replicate);
        break;
    }
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT:
        st = stream_find(s, peer, q->request_id);
        if (!st) {
            server_reply_error(s, peer, q->request_id,
                               PARKSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_REQUEST,
                               "no stream is running for this request_id");
            break;
        }
        /* Not progress: a client may grant credit and never read. */
        if (q->credit->has_chunks) {
            uint64_t c = (uint64_t)st->credit + q->credit->chunks;
            st->credit = c > WIRE_MAX_CREDIT ? WIRE_MAX_CREDIT : (uint32_t)c;
        }
        break;
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CANCEL:
        st = stream_find(s, peer, q->request_id);
        if (!st) {
            server_reply_error(s, peer, q->request_id,
                               PARKSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_REQUEST,
                               "no stream is running for this request_id");
            break;
        }
        end_stream(s, st);
        break;
    default:
        s->n.bad_queries++;
        server_reply_error(s, peer, q->request_id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
                           "the request has no body this daemon knows");
        break;
    }
    parksync__v1__query_request__free_unpacked(q, NULL);
}

void drain_queries(server_t *s)
{
    for (int i = 0; i < QUERY_BUDGET; i++) {
        zmq_msg_t parts[3];
        int kept, total, rc;
        peer_t peer;
        zmq_msg_t *body = NULL;

        rc = server_recv_parts(s->query, parts, 3, &kept, &total);
        if (rc == -EAGAIN || rc == -EINTR)
            return;
        if (rc < 0) {
            log_error("cannot receive on the query socket: %s", zmq_strerror(-rc));
            return;
        }
        /* [id][request] or, from REQ-style clients, [id][""][request]. */
        if (total == 2)
            body = &parts[1];
        else if (total == 3 && zmq_msg_size(&parts[1]) == 0)
            body = &parts[2];
        if (zmq_msg_size(&parts[0]) > ROUTING_ID_MAX) {
            /* cannot happen: ZeroMQ routing ids are at most 255 bytes */
            s->n.queries++;
            s->n.bad_queries++;
        } else {
            peer.len = zmq_msg_size(&parts[0]);
            memcpy(peer.id, zmq_msg_data(&parts[0]), peer.len);
            peer.delimiter = body && total == 3;
            peer.fd = zmq_msg_get(&parts[kept - 1], ZMQ_SRCFD);
            peer.user_id = zmq_msg_gets(&parts[kept - 1], "User-Id");
            peer.conn = conns_number(s->conns[2], peer.fd);
            if (body) {
                handle_query(s, &peer, zmq_msg_data(body), zmq_msg_size(body));
            } else {
                s->n.queries++;
                refuse_query(s, &peer, 0, 0,
                             "request: must be one frame, [request] or [\"\"][request]");
            }
        }
        server_close_parts(parts, kept);
    }
}
