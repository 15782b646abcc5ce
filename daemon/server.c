/*
 * server.c - see server.h.
 *
 * Sections: sockets and sending; the loop; life cycle. The rest of the
 * loop's work lives in ingest.c, publish.c, streams.c and peers.c, and
 * a reload's in reload.c (server_int.h).
 *
 * Slow clients never block the loop: every send is ZMQ_DONTWAIT. The PUB
 * socket drops at its high-water mark (subscribers detect the gap from
 * stream sequences and heartbeats and recover with a changes request).
 */

#include "server_int.h"

#include <systemd/sd-daemon.h>

#include "peer_stats.h"

/* What the summary at stop calls each rate limit's messages, in RL_ order. */
static const char *const ratelimit_names[] = {
    "bad frames",  "too large",      "undecodable", "invalid", "wrong topic", "gap",
    "bad query",   "send",           "forged",      "refused", "summary",     "unadmitted",
    "stream busy", "stream stalled", "storage",     "peer"};
_Static_assert(sizeof ratelimit_names / sizeof *ratelimit_names == RL_COUNT,
               "a rate limit (RL_ in server_int.h) without its name in ratelimit_names");

/* ---------------------------------------------------------------- sockets */

/* Makes sock a CURVE server whose handshakes the ZAP handler decides, in
 * the domain of its role. 0, or -1 after logging. */
static int make_curve_server(server_t *s, void *sock, int type, const char *name)
{
    const char *domain = type == ZMQ_SUB    ? ZAP_DOMAIN_INGEST
                         : type == ZMQ_XPUB ? ZAP_DOMAIN_PUBLISH
                                            : ZAP_DOMAIN_QUERY;
    int on = 1;

    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof on) < 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, s->curve_secret, KEYS_Z85_LEN) < 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) < 0) {
        log_error("cannot make the %s socket a CURVE server: %s; exiting", name,
                  zmq_strerror(errno));
        return -1;
    }
    /* Fail closed should the handler ever be missing; the handler
     * thread is up before any server socket exists in any case. */
    if (zmq_setsockopt(sock, ZMQ_ZAP_ENFORCE_DOMAIN, &on, sizeof on) < 0)
        log_notice("this libzmq lacks ZMQ_ZAP_ENFORCE_DOMAIN (%s); relying on the ZAP "
                   "handler started before the %s socket",
                   zmq_strerror(errno), name);
    return 0;
}

/* Which of s->conns watches the socket of this type. */
static int conns_index(int type)
{
    return type == ZMQ_SUB ? 0 : type == ZMQ_XPUB ? 1 : 2;
}

static void *make_socket(server_t *s, int type, const char *name, const char *endpoint)
{
    void *sock = zmq_socket(s->zctx, type);
    int64_t maxmsg = WIRE_MAX_MSG;
    int linger = LINGER_MS;
    int handshake = (int)s->cfg.handshake_timeout_ms;
    int hwm;

    if (!sock) {
        log_error("cannot create the %s socket: %s; exiting", name, zmq_strerror(errno));
        return NULL;
    }
    if (type == ZMQ_XPUB)
        maxmsg = s->zap ? PUBLISH_MAXMSG_CURVE : PUBLISH_MAXMSG;
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    /* a connection that never finishes its handshake holds a descriptor */
    zmq_setsockopt(sock, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake);
    if (strchr(endpoint, '[')) {
        int on = 1;
        zmq_setsockopt(sock, ZMQ_IPV6, &on, sizeof on);
    }
    switch (type) {
    case ZMQ_SUB:
        hwm = s->cfg.ingest_hwm > 0 ? (int)s->cfg.ingest_hwm : INGEST_RCVHWM;
        zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
        /* Everything: the topic is checked against each update's kind. */
        zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
        break;
    case ZMQ_XPUB: {
        /* XPUB is PUB on the wire. VERBOSER hands us every subscription
         * and unsubscription, repeats included, so that each is checked
         * and counted (subscriptions.h) and a new "hb/" subscriber gets a
         * welcome heartbeat (see drain_subscriptions). */
        int on = 1, rcvhwm = PUBLISH_RCVHWM, rcvbuf = PUBLISH_RCVBUF;
        hwm = s->cfg.publish_hwm > 0 ? (int)s->cfg.publish_hwm : PUBLISH_SNDHWM;
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(sock, ZMQ_XPUB_VERBOSER, &on, sizeof on);
        zmq_setsockopt(sock, ZMQ_RCVHWM, &rcvhwm, sizeof rcvhwm);
        zmq_setsockopt(sock, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
        break;
    }
    case ZMQ_ROUTER: {
        /* Mandatory: a full queue answers EAGAIN rather than dropping,
         * which is how a stream learns its client does not read. */
        int zero = 0, on = 1;
        hwm = (int)s->cfg.query_hwm;
        zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(sock, ZMQ_SNDTIMEO, &zero, sizeof zero);
        zmq_setsockopt(sock, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
        break;
    }
    default:
        break;
    }
    if (s->zap && make_curve_server(s, sock, type, name) < 0) {
        zmq_close(sock);
        return NULL;
    }
    /* watched before it listens: every connection is seen accepted */
    s->conns[conns_index(type)] = conns_new(s->zctx, sock, name, s->cfg.max_connections);
    if (zmq_bind(sock, endpoint) < 0) {
        log_error("cannot bind the %s socket to %s: %s; exiting", name, endpoint,
                  zmq_strerror(errno));
        conns_destroy(&s->conns[conns_index(type)]);
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

/* Receives one whole multipart message without blocking. Keeps the first
 * `max` parts in parts[] (initialised here; the caller closes *kept of
 * them) and discards the rest; *total counts every part. Returns 0,
 * -EAGAIN when nothing is waiting, or a negative errno. */
int server_recv_parts(void *sock, zmq_msg_t *parts, int max, int *kept, int *total)
{
    int more = 1;
    size_t more_len = sizeof more;

    *kept = 0;
    *total = 0;
    while (more) {
        zmq_msg_t scratch;
        zmq_msg_t *m = *kept < max ? &parts[*kept] : &scratch;

        zmq_msg_init(m);
        /* Parts of a multipart message arrive together: after the first
         * part the rest are there, so ZMQ_DONTWAIT never splits one. */
        if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
            int err = errno;
            zmq_msg_close(m);
            if (*total == 0)
                return -err;
            break;
        }
        (*total)++;
        if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &more_len) < 0)
            more = 0;
        if (m == &scratch)
            zmq_msg_close(m);
        else
            (*kept)++;
    }
    return 0;
}

void server_close_parts(zmq_msg_t *parts, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

/* Sends [topic][payload] on the PUB socket. PUB drops rather than block. */
void server_publish(server_t *s, const char *topic, const void *data, size_t len)
{
    if (zmq_send(s->publish, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(s->publish, data, len, ZMQ_DONTWAIT) < 0)
        log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                        "cannot publish on %s: %s; subscribers will see a gap", topic,
                        zmq_strerror(errno));
}

/* Sends [id][""][reply] (or [id][reply]) to a query client. 0 or -errno:
 * -EAGAIN when the client's queue is full (nothing was queued: ZeroMQ
 * checks the mark at the first frame and counts whole messages),
 * -EHOSTUNREACH when it has gone. */
int server_send_reply(server_t *s, const peer_t *peer, const void *data, size_t len)
{
    if (zmq_send(s->query, peer->id, peer->len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    if (peer->delimiter && zmq_send(s->query, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -errno;
    if (zmq_send(s->query, data, len, ZMQ_DONTWAIT) < 0)
        return -errno;
    return 0;
}

/* Why server_send_reply failed, for a log line. */
const char *server_send_failure(int rc)
{
    if (rc == -EAGAIN)
        return "the client's queue is full (query_hwm), it does not read";
    if (rc == -EHOSTUNREACH)
        return "the client has gone";
    return rc == -ENOMEM ? "out of memory" : zmq_strerror(-rc);
}

/* Packs a small QueryReply (everything but chunks) and sends it. */
void server_reply(server_t *s, const peer_t *peer, uint64_t request_id, Parksync__V1__QueryReply *r)
{
    uint8_t buf[REPLY_MAX];
    size_t len;
    int rc;

    r->has_version = true;
    r->version = WIRE_VERSION;
    r->has_request_id = true;
    r->request_id = request_id;
    if (protobuf_c_message_get_packed_size(&r->base) > sizeof buf) {
        log_error("query reply too large to send (%zu bytes); dropping",
                  protobuf_c_message_get_packed_size(&r->base));
        return;
    }
    len = protobuf_c_message_pack(&r->base, buf);
    rc = server_send_reply(s, peer, buf, len);
    if (rc < 0)
        log_ratelimited(&s->rl[RL_SEND], LOG_LEVEL_WARNING,
                        "cannot send a reply to request %" PRIu64 ": %s; dropping it", request_id,
                        server_send_failure(rc));
}

void server_reply_error(server_t *s, const peer_t *peer, uint64_t request_id,
                        Parksync__V1__ErrorCode code, const char *message)
{
    Parksync__V1__QueryReply r = PARKSYNC__V1__QUERY_REPLY__INIT;
    Parksync__V1__Error e = PARKSYNC__V1__ERROR__INIT;

    e.has_code = true;
    e.code = code;
    e.message = (char *)message;
    r.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_ERROR;
    r.error = &e;
    server_reply(s, peer, request_id, &r);
}

/* ---------------------------------------------------------------- the loop */

static void warn_ahead(void *arg, const char *id, uint64_t from, uint64_t to)
{
    if (peers_pulling(arg)) { /* a peer may bring them: the producer waits */
        log_warning("producer %s is ahead of this site: sequences %" PRIu64 "..%" PRIu64
                    " are missing; its later updates apply once a pull from a peer brings them "
                    "(peer status: parksync status)",
                    id, from, to);
        return;
    }
    log_warning("producer %s is ahead of this database: sequences %" PRIu64 "..%" PRIu64
                " are missing (acknowledged by an earlier database? restored backup?) and "
                "its later updates are not applied; re-push them from the source, or reset "
                "the producer (a new outbox: see parksync(1))",
                id, from, to);
}

static long poll_timeout(server_t *s, int64_t now, bool busy)
{
    int64_t t = POLL_MAX_MS;

    if (busy || s->subs_backlog)
        return 0;
    if (s->next_heartbeat_ms - now < t)
        t = s->next_heartbeat_ms - now;
    if (s->welcome_wanted && s->last_heartbeat_ms + WELCOME_MIN_MS - now < t)
        t = s->last_heartbeat_ms + WELCOME_MIN_MS - now;
    if (s->watchdog_ms > 0 && s->next_watchdog_ms - now < t)
        t = s->next_watchdog_ms - now;
    if (streams_wait_deadline(s) - now < t)
        t = streams_wait_deadline(s) - now;
    if (peers_deadline(s) - now < t)
        t = peers_deadline(s) - now;
    if (s->streams_held && STREAM_RETRY_MS < t)
        t = STREAM_RETRY_MS; /* ZeroMQ cannot say when one client's queue has room */
    if (s->next_republish_ms > 0 && s->next_republish_ms - now < t)
        t = s->next_republish_ms - now;
    if (store_summaries_dirty(s->store) &&
        s->last_refresh_ms + (int64_t)s->cfg.summary_interval_ms - now < t)
        t = s->last_refresh_ms + (int64_t)s->cfg.summary_interval_ms - now;
    return t < 0 ? 0 : (long)t;
}

server_exit_t server_run(server_t *s, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    bool busy = false, pruning;

    while (!*stop) {
        zmq_pollitem_t items[6 + CONNS_SOCKETS + CONFIG_MAX_PEERS] = {
            {s->ingest, 0, ZMQ_POLLIN, 0},
            {s->query, 0, ZMQ_POLLIN, 0},
            {s->publish, 0, ZMQ_POLLIN, 0},
            {control_socket(s->control), 0, ZMQ_POLLIN, 0},
            {checkpoint_socket(s->checkpoint), 0, 0, 0}, /* a check's answer */
        };
        int n_items = 5, synced = -1;
        int64_t now;

        if (s->sync_failed)
            return SERVER_EXIT_FAILED;
        if (checkpoint_checking(s->checkpoint))
            items[4].events = ZMQ_POLLIN;
        if (syncer_busy(s->syncer)) { /* a sync ends */
            synced = n_items;
            items[n_items++] = (zmq_pollitem_t){syncer_socket(s->syncer), 0, ZMQ_POLLIN, 0};
        }
        /* first in the pass: a connection over the budget goes at once */
        for (int i = 0; i < CONNS_SOCKETS; i++)
            if (s->conns[i])
                items[n_items++] = (zmq_pollitem_t){conns_socket(s->conns[i]), 0, ZMQ_POLLIN, 0};
        n_items += peers_poll_items(s->peers, items + n_items, CONFIG_MAX_PEERS);

        if (*reload || control_reload_pending(s->control)) {
            *reload = 0;
            return SERVER_EXIT_RELOAD;
        }
        now = wire_monotonic_ms();
        if (zmq_poll(items, n_items, poll_timeout(s, now, busy)) < 0) {
            if (errno != EINTR)
                log_error("zmq_poll failed: %s", zmq_strerror(errno));
            continue; /* a signal: the flags are checked at the top */
        }
        if (*stop)
            break; /* stop taking input */
        int64_t woke_us = wire_monotonic_us();
        now = woke_us / 1000;
        for (int i = 0; i < CONNS_SOCKETS; i++)
            conns_drain(s->conns[i]);
        if (synced >= 0 && (items[synced].revents & ZMQ_POLLIN))
            durable_poll(s); /* acks and publications first */
        if (items[0].revents & ZMQ_POLLIN)
            drain_ingest(s);
        peers_drain(s, now); /* into the same batch */
        if (summaries_due(s, now))
            refresh_summaries(s, now);
        batch_finish(s);
        pruning = prune_step(s);
        peers_tick(s, now); /* between batches: a pull asks from what is committed */
        if (items[1].revents & ZMQ_POLLIN) {
            durable_wait(s); /* positions and heads that a power loss keeps */
            drain_queries(s);
        }
        if ((items[2].revents & ZMQ_POLLIN) || s->subs_backlog)
            drain_subscriptions(s);
        if (items[3].revents & ZMQ_POLLIN) {
            durable_wait(s);
            control_drain(s->control); /* between batches: reads what is committed */
        }
        if (items[4].revents & ZMQ_POLLIN)
            control_check_done(s->control);
        if (streams_ready(s, now)) {
            /* A snapshot includes fresh summaries and everything published. */
            if (store_summaries_dirty(s->store))
                refresh_summaries(s, now);
            batch_finish(s);
            durable_wait(s); /* a view holds nothing a power loss takes back */
            open_waiting_streams(s, now);
        }
        busy = pump_streams(s, now) || pruning;
        if (now >= s->next_heartbeat_ms || welcome_due(s, now)) {
            publish_heartbeat(s);
            s->last_heartbeat_ms = now;
            if (!s->subs_backlog)
                s->welcome_wanted = false;
            if (now >= s->next_heartbeat_ms) {
                s->next_heartbeat_ms = now + s->cfg.heartbeat_ms;
                subscriptions_sweep(s->subs); /* connections whose end it missed */
            }
        }
        if (s->next_republish_ms > 0 && now >= s->next_republish_ms) {
            republish_summaries(s);
            s->next_republish_ms = now + (int64_t)s->cfg.summary_republish_s * 1000;
        }
        zap_drain(s->zap); /* log refused handshakes, rate-limited */
        health_of_checkpoints(s);
        ahead_due(&s->ahead, now, warn_ahead, s);
        age_ack_topics(s, now);
        if (s->watchdog_ms > 0 && now >= s->next_watchdog_ms) {
            sd_notify(0, "WATCHDOG=1");
            s->next_watchdog_ms = now + s->watchdog_ms;
        }
        if (control_tick(s->control, now)) /* backup steps, STATUS, metrics snapshot */
            busy = true;
        pause_add(&s->n.pass, wire_monotonic_us() - woke_us);
    }
    /* Commit what is in hand and ack it before the sockets close. */
    batch_finish(s);
    durable_wait(s);
    return s->sync_failed ? SERVER_EXIT_FAILED : SERVER_EXIT_STOP;
}

/* ---------------------------------------------------------------- life cycle */

static int hold_at_start(void *arg, const char *producer_id, const store_producer_stats_t *st)
{
    server_t *s = arg;
    return acks_commit(s->acks, producer_id, st->last_sequence, s->commits);
}

/* ack_after = peers:N: every producer's position counts as commit 1, so
 * nothing applied before this start is told safe until N sites have
 * stored a pull opened since. 0, or -1 after logging. */
static int start_acks(server_t *s, unsigned peers)
{
    int rc;
    s->acks = acks_new(peers);
    if (!s->acks) {
        log_error("out of memory for the acks; exiting");
        return -1;
    }
    if ((rc = store_producers(s->store, hold_at_start, s)) != 0) {
        log_error("cannot read the producers' positions: %s; exiting",
                  rc < 0 ? store_strerror(rc) : "out of memory");
        return -1;
    }
    log_info("acknowledging after %u site%s pulled each commit ([site] ack_after = peers:%u)",
             peers, peers == 1 ? "" : "s", peers);
    return 0;
}

/* Hands the [ministry] sections to the store, which decides who may
 * write what. 0, or -1 after logging. */
int apply_authority(server_t *s, const config_t *cfg)
{
    store_ministry_t ms[CONFIG_MAX_MINISTRIES];
    store_member_t mem[CONFIG_MAX_MINISTRIES * CONFIG_MAX_PRODUCERS];
    store_authority_t a = {ms, cfg->n_ministries, mem, 0};
    int rc;

    memset(ms, 0, sizeof ms);
    for (size_t i = 0; i < cfg->n_ministries; i++) {
        const config_ministry_t *m = &cfg->ministries[i];
        snprintf(ms[i].name, sizeof ms[i].name, "%s", m->name);
        memcpy(ms[i].country, m->country, 3);
        for (size_t g = 0; g < m->n_grants && g < STORE_MAX_GRANTS; g++) {
            ms[i].grants[g].kind = m->grants[g].kind;
            memcpy(ms[i].grants[g].country, m->grants[g].country, 3);
            ms[i].n_grants++;
        }
        for (size_t p = 0; p < m->n_producers; p++) {
            snprintf(mem[a.n_members].producer, sizeof mem[a.n_members].producer, "%s",
                     m->producers[p]);
            mem[a.n_members++].ministry = i;
        }
    }
    if ((rc = store_set_authority(s->store, &a)) < 0) {
        log_error("cannot set the authority rules: %s", strerror(-rc));
        return -1;
    }
    if (cfg->n_ministries == 0)
        log_warning("no [ministry] section in the configuration: authority is off, every "
                    "producer may write every record");
    else
        log_info("authority: %zu ministries, %zu producers; updates from others are kept "
                 "as claims and listed by `parksync conflicts`",
                 a.n_ministries, a.n_members);
    return 0;
}

/* CURVE on: reads the daemon's secret key and starts the ZAP handler,
 * which must answer before any server socket exists. CURVE off: warns
 * when an endpoint is beyond loopback (allow_insecure_remote). 0, or -1
 * after logging. */
static int start_security(server_t *s, const config_t *cfg)
{
    const char *eps[3] = {cfg->ingest, cfg->publish, cfg->query};
    char err[400] = "", pub[KEYS_Z85_LEN + 1];
    zap_table_t *t;
    int rc;

    if (!cfg->curve) {
        for (int i = 0; i < 3; i++)
            if (!config_endpoint_local(eps[i]))
                log_warning("INSECURE: %s listens beyond loopback without CURVE "
                            "([security] allow_insecure_remote = yes): anyone who reaches it "
                            "can read, and write as any producer",
                            eps[i]);
        return 0;
    }
    if (!zmq_has("curve")) {
        log_error("[security] curve = on, but this libzmq has no CURVE support; exiting");
        return -1;
    }
    rc = keys_read_file(cfg->secret_key_file, true, s->curve_secret, err, sizeof err);
    if (rc < 0) {
        log_error("[security] secret_key_file: %s; exiting", err);
        return -1;
    }
    if (zmq_curve_public(pub, s->curve_secret) < 0) {
        log_error("cannot derive the public key from %s: %s; exiting", cfg->secret_key_file,
                  zmq_strerror(errno));
        return -1;
    }
    if (!(t = malloc(sizeof *t))) {
        log_error("out of memory for the key table; exiting");
        return -1;
    }
    zap_table_from_config(t, cfg);
    s->zap = zap_new(s->zctx, t);
    free(t);
    if (!s->zap)
        return -1;
    log_info("CURVE on: server public key %s; ingest admits ministries' keys, publish and "
             "query %s",
             pub, cfg->subscriber_auth ? "ministries', subscribers' and peers' keys" : "any key");
    return 0;
}

server_t *server_new(const config_t *cfg)
{
    server_t *s = calloc(1, sizeof *s);
    store_config_t sc;
    char err[512] = "";
    uint64_t usec = 0;

    if (!s) {
        log_error("out of memory; exiting");
        return NULL;
    }
    s->cfg = *cfg;
    s->upd_arena = wire_arena_new(); /* NULL: updates are decoded with malloc */
    store_config_init(&sc);
    sc.path = cfg->database;
    /* full: SQLite's NORMAL, and the syncer syncs every commit before it
     * is told (syncer.h) */
    sc.synchronous_full = false;
    sc.changelog_keep = cfg->changelog_keep;
    sc.conflicts_keep = cfg->conflicts_keep;
    sc.conflicts_keep_us = (int64_t)cfg->conflicts_keep_days * 86400 * 1000000;
    sc.max_producers = cfg->max_producers;
    sc.trade_rule = cfg->trade_rule;
    sc.trade_threshold_pct = cfg->threshold_pct;
    sc.cif_fob_factor = cfg->cif_fob_factor;
    sc.max_future_skew_us = (int64_t)cfg->max_future_skew_s * 1000000;
    sc.defer_rows = (size_t)cfg->defer_rows;
    sc.cache_kib = (size_t)cfg->cache_mib * 1024;
    sc.background_checkpoint = true; /* the checkpoint thread does it */
    s->store = store_open(&sc, err, sizeof err);
    if (!s->store) {
        log_error("cannot open the database %s: %s; exiting", cfg->database,
                  err[0] ? err : "unknown error");
        goto fail;
    }
    if (store_epoch_is_new(s->store))
        log_notice("the database %s is a restored backup (head revision %" PRIu64
                   "): it starts a new history with a new epoch; subscribers resync",
                   cfg->database, store_head(s->store));
    if (apply_authority(s, cfg) < 0)
        goto fail;
    peer_stats_init(s->peer_stats, &s->n_peer_stats, cfg); /* shown before any pull */
    s->zctx = zmq_ctx_new();
    if (!s->zctx) {
        log_error("cannot create a ZeroMQ context: %s; exiting", zmq_strerror(errno));
        goto fail;
    }
    s->checkpoint = checkpoint_new(s->zctx, cfg->database);
    if (!s->checkpoint)
        goto fail;
    if (cfg->synchronous_full && !(s->syncer = syncer_new(s->zctx, store_wal_path(s->store))))
        goto fail;
    if (start_security(s, cfg) < 0)
        goto fail; /* before any server socket: fail closed */
    s->ingest = make_socket(s, ZMQ_SUB, "ingest", cfg->ingest);
    if (!s->ingest)
        goto fail;
    s->publish = make_socket(s, ZMQ_XPUB, "publish", cfg->publish);
    if (!s->publish)
        goto fail;
    s->subs = subscriptions_new(s->publish, cfg->max_subscriptions);
    if (!s->subs) {
        log_error("out of memory for the subscription ledger; exiting");
        goto fail;
    }
    s->query = make_socket(s, ZMQ_ROUTER, "query", cfg->query);
    if (!s->query)
        goto fail;
    if (s->conns[2] && conns_on_close(s->conns[2], on_query_closed, s) < 0)
        log_warning("out of memory for query connection numbers; a client that hangs up keeps "
                    "its streams until stream_idle_ms");
    control_view_t view = {
        .cfg = &s->cfg,
        .counters = &s->n,
        .health = &s->health,
        .ahead = &s->ahead,
        .zap = s->zap,
        .checkpoint = s->checkpoint,
        .conns = s->conns,
        .subs = s->subs,
        .peer_stats = s->peer_stats,
        .n_peer_stats = &s->n_peer_stats,
        .pullers = s->pullers,
        .n_pullers = &s->n_pullers,
        .published = &s->published_rev,
    };
    s->control = control_new(s->zctx, cfg->control, s->store, &view);
    if (!s->control)
        goto fail;
    s->commits = 1; /* what is stored at start counts as commit 1 (acks.h) */
    if (cfg->ack_after_peers > 0 && start_acks(s, cfg->ack_after_peers) < 0)
        goto fail;
    s->peers = peers_new(s);
    if (!s->peers) {
        log_error("out of memory for the peers' links; exiting");
        goto fail;
    }
    s->n_streams = cfg->max_streams;
    s->streams = calloc(s->n_streams, sizeof *s->streams);
    if (!s->streams) {
        log_error("out of memory for %" PRIu32 " streams; exiting", s->n_streams);
        goto fail;
    }
    if (cfg->max_streams_per_client > streams_per_client(s))
        log_notice("[limits] max_streams_per_client = %" PRIu32 " is more than max_streams - 1; "
                   "serving at most %" PRIu32 " streams per connection, so that one client "
                   "cannot take them all",
                   cfg->max_streams_per_client, streams_per_client(s));
    s->published_rev = store_head(s->store);
    store_pin_changes(s->store, s->published_rev);
    if (getrandom(s->instance, sizeof s->instance, 0) != (ssize_t)sizeof s->instance) {
        /* not secret, only distinct per start: time and pid will do */
        int64_t t = wire_now_us();
        pid_t pid = getpid();
        memcpy(s->instance, &t, sizeof t);
        memcpy(s->instance + sizeof t, &pid, sizeof pid);
    }
    s->next_heartbeat_ms = wire_monotonic_ms();
    s->next_ack_age_ms = wire_monotonic_ms() + ACK_IDLE_MS;
    if (cfg->summary_republish_s > 0)
        s->next_republish_ms = wire_monotonic_ms() + (int64_t)cfg->summary_republish_s * 1000;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec >= 2000) {
        /* a quarter of WatchdogSec: a ping at least every half even after a long pass */
        s->watchdog_ms = (int64_t)(usec / 4000);
        s->next_watchdog_ms = wire_monotonic_ms();
    }
    log_info("parksyncd %s started: database %s, ingest %s, publish %s, query %s, "
             "head revision %" PRIu64,
             PARKSYNC_VERSION, cfg->database, cfg->ingest, cfg->publish, cfg->query,
             s->published_rev);
    return s;
fail:
    server_destroy(&s);
    return NULL;
}

const server_counters_t *server_counters(const server_t *s)
{
    return &s->n;
}

void server_destroy(server_t **sp)
{
    server_t *s;

    if (!sp || !*sp)
        return;
    s = *sp;
    for (uint32_t i = 0; s->streams && i < s->n_streams; i++)
        stream_close(&s->streams[i]);
    free(s->streams);
    s->streams = NULL;
    s->n_streams = 0;
    control_destroy(&s->control);
    peers_destroy(&s->peers);
    acks_destroy(&s->acks);
    for (int i = 0; i < CONNS_SOCKETS; i++)
        conns_destroy(&s->conns[i]); /* before the sockets they monitor */
    if (s->ingest)
        zmq_close(s->ingest);
    subscriptions_destroy(&s->subs); /* its kept messages, before the context ends */
    if (s->publish)
        zmq_close(s->publish);
    if (s->query)
        zmq_close(s->query);
    if (s->zap || s->n.forged > 0)
        log_info("security: %" PRIu64 " handshakes admitted, %" PRIu64 " refused; %" PRIu64
                 " updates dropped for a forged producer or identity",
                 zap_allowed(s->zap), zap_denied(s->zap), s->n.forged);
    zap_destroy(&s->zap); /* its sockets must close before the context ends */
    checkpoint_destroy(&s->checkpoint);
    syncer_destroy(&s->syncer);
    wire_arena_free(&s->upd_arena);
    for (int i = 0; i < 2; i++)
        strmap_free(&s->gen[i].acks);
    if (s->zctx)
        zmq_ctx_term(s->zctx); /* waits at most LINGER_MS for pending sends */
    if (s->store) {
        const server_counters_t *n = &s->n;
        log_info("stopped at revision %" PRIu64 ": received %" PRIu64 ", applied %" PRIu64
                 ", duplicates %" PRIu64 ", gaps %" PRIu64 ", refused by the store %" PRIu64
                 "; dropped: bad frames %" PRIu64 ", too large %" PRIu64 ", undecodable %" PRIu64
                 ", invalid %" PRIu64 ", wrong topic %" PRIu64 "; commits %" PRIu64
                 ", storage failures %" PRIu64 ", published %" PRIu64 ", acks %" PRIu64
                 ", queries %" PRIu64 " (bad %" PRIu64 "), chunks %" PRIu64 ", streams %" PRIu64
                 " (refused %" PRIu64 ", dropped %" PRIu64 ", of them stalled %" PRIu64 ")",
                 store_head(s->store), n->received, n->applied, n->duplicates, n->gaps, n->refused,
                 n->bad_frames, n->too_large, n->undecodable, n->invalid, n->wrong_topic,
                 n->commits, n->store_errors, n->published, n->acks, n->queries, n->bad_queries,
                 n->chunks, n->streams_opened, n->streams_refused, n->streams_dropped,
                 n->streams_stalled);
        for (int i = 0; i < RL_COUNT; i++)
            if (s->rl[i].suppressed > 0)
                log_info("%" PRIu64 " '%s' messages were suppressed at the end",
                         s->rl[i].suppressed, ratelimit_names[i]);
    }
    store_close(&s->store);
    strmap_free(&s->touched);
    strmap_free(&s->topic_seq);
    strmap_free(&s->ack_seq[0]);
    strmap_free(&s->ack_seq[1]);
    ahead_free(&s->ahead);
    wire_chunk_free(&s->chunk);
    wire_buf_free(&s->pubbuf);
    free(s);
    *sp = NULL;
}
