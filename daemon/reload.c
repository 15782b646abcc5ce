/*
 * reload.c - SIGHUP and `parksync reload`: what a new configuration
 * changes in a running server (server_reconfigure), and what waits for a
 * restart.
 */
#include "server_int.h"

/* Closes every connection of the three sockets: each client reconnects
 * at once and its key is judged again by the table now in force. libzmq
 * cannot close one peer's connection, nor tell which descriptor carries
 * which key, so a revocation costs every client one reconnection. */
static void revoke_connections(server_t *s)
{
    uint32_t n = 0;

    for (int i = 0; i < CONNS_SOCKETS; i++)
        n += conns_close_all(s->conns[i]);
    log_notice("keys were removed: closed %" PRIu32 " connections; their clients reconnect and "
               "are admitted by the new keys",
               n);
}

/* Hands the reloaded keys to the ZAP handler: new handshakes use them.
 * When a key lost its admission, open connections are closed before the
 * reload is answered (revoke_connections); updates already queued from
 * a removed ministry are still dropped by authenticated_ministry. What
 * was admitted is the handler's table in force, not the running config:
 * [peer] keys are admitted at once although the rest of a [peer] section
 * waits for a restart. */
static void reconfigure_keys(server_t *s, const config_t *cfg)
{
    config_t *run = &s->cfg;
    zap_table_t *t;
    bool revokes;
    int rc;

    if (run->curve != cfg->curve || strcmp(run->secret_key_file, cfg->secret_key_file) != 0)
        log_notice("[security] curve or secret_key_file changed in the file; it takes effect "
                   "at the next restart");
    if (!s->zap)
        return;
    if (!(t = malloc(sizeof *t))) {
        log_error("out of memory for the key table; keeping the old keys");
        return;
    }
    zap_table_from_config(t, cfg);
    /* A file that turns CURVE off defaults subscriber_auth to off too; while
     * CURVE still runs until the restart, readers stay as restricted as they are. */
    if (run->curve != cfg->curve)
        t->subscriber_auth = run->subscriber_auth;
    revokes = zap_table_revokes(zap_table(s->zap), t);
    rc = zap_update(s->zap, t);
    if (rc < 0) {
        log_error("cannot hand the new keys to the ZAP handler: %s; keeping the old keys",
                  zmq_strerror(-rc));
    } else {
        memcpy(run->subscribers, cfg->subscribers, sizeof run->subscribers);
        run->n_subscribers = cfg->n_subscribers;
        run->subscriber_auth = t->subscriber_auth;
        log_info("keys reloaded: %zu keys admitted", t->n);
        if (revokes)
            revoke_connections(s);
    }
    free(t);
}

/* The connection budget and the handshake timeout; both apply to the
 * connections that arrive from now on. */
static void reconfigure_connections(server_t *s, const config_t *cfg)
{
    void *socks[CONNS_SOCKETS] = {s->ingest, s->publish, s->query};
    int ivl = (int)cfg->handshake_timeout_ms;

    s->cfg.max_connections = cfg->max_connections;
    s->cfg.handshake_timeout_ms = cfg->handshake_timeout_ms;
    for (int i = 0; i < CONNS_SOCKETS; i++) {
        zmq_setsockopt(socks[i], ZMQ_HANDSHAKE_IVL, &ivl, sizeof ivl);
        if (s->conns[i])
            conns_set_max(s->conns[i], cfg->max_connections);
    }
}

void server_reconfigure(server_t *s, const config_t *cfg)
{
    config_t *run = &s->cfg;

#define KEEP(cond, name)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            log_notice("%s changed in the file; it takes effect at the next restart", name);       \
    } while (0)
    KEEP(strcmp(run->database, cfg->database) != 0, "[daemon] database");
    KEEP(strcmp(run->ingest, cfg->ingest) != 0, "[endpoints] ingest");
    KEEP(strcmp(run->publish, cfg->publish) != 0, "[endpoints] publish");
    KEEP(strcmp(run->query, cfg->query) != 0, "[endpoints] query");
    KEEP(run->synchronous_full != cfg->synchronous_full, "[store] synchronous");
    KEEP(run->changelog_keep != cfg->changelog_keep, "[store] changelog_keep");
    KEEP(run->conflicts_keep != cfg->conflicts_keep, "[store] conflicts_keep");
    KEEP(run->conflicts_keep_days != cfg->conflicts_keep_days, "[store] conflicts_keep_days");
    KEEP(run->defer_rows != cfg->defer_rows, "[store] defer_rows");
    KEEP(run->cache_mib != cfg->cache_mib, "[store] cache_mib");
    KEEP(run->trade_rule != cfg->trade_rule, "[trade] rule");
    KEEP(run->threshold_pct != cfg->threshold_pct, "[trade] threshold_pct");
    KEEP(run->cif_fob_factor != cfg->cif_fob_factor, "[trade] cif_fob_factor");
    KEEP(run->max_streams != cfg->max_streams, "[limits] max_streams");
    KEEP(strcmp(run->control, cfg->control) != 0, "[endpoints] control");
    KEEP(run->max_future_skew_s != cfg->max_future_skew_s, "[store] max_future_skew_s");
    KEEP(run->ingest_hwm != cfg->ingest_hwm, "[limits] ingest_hwm");
    KEEP(strcmp(run->metrics_http, cfg->metrics_http) != 0, "[metrics] http");
    KEEP(strcmp(run->http_listen, cfg->http_listen) != 0 ||
             run->http_allow_remote != cfg->http_allow_remote,
         "[http] listen or allow_remote");
    KEEP(run->publish_hwm != cfg->publish_hwm, "[limits] publish_hwm");
    KEEP(run->max_producers != cfg->max_producers, "[limits] max_producers");
    KEEP(run->query_hwm != cfg->query_hwm, "[limits] query_hwm");
    KEEP(strcmp(run->site, cfg->site) != 0, "[site] name");
    KEEP(run->ack_after_peers != cfg->ack_after_peers, "[site] ack_after");
    KEEP(run->pull_wait_ms != cfg->pull_wait_ms, "[site] pull_wait_ms");
    KEEP(run->peer_timeout_ms != cfg->peer_timeout_ms, "[site] peer_timeout_ms");
    KEEP(!config_peers_equal(run, cfg), "what this site pulls from whom ([peer] sections; "
                                        "their keys are admitted at once)");
#undef KEEP
    run->log_level = cfg->log_level;
    log_set_level(cfg->log_level);
    /* authority applies from the next update on; a failure keeps the old rules */
    if (apply_authority(s, cfg) == 0) {
        memcpy(run->ministries, cfg->ministries, sizeof run->ministries);
        run->n_ministries = cfg->n_ministries;
    }
    reconfigure_keys(s, cfg); /* [peer] keys too: admitted or revoked at once */
    reconfigure_connections(s, cfg);
    run->batch_max = cfg->batch_max;
    run->max_streams_per_client = cfg->max_streams_per_client; /* new streams from now on */
    run->stream_idle_ms = cfg->stream_idle_ms;
    run->summary_interval_ms = cfg->summary_interval_ms;
    run->max_subscriptions = cfg->max_subscriptions;
    subscriptions_set_max(s->subs, cfg->max_subscriptions);
    if (run->summary_republish_s != cfg->summary_republish_s) {
        run->summary_republish_s = cfg->summary_republish_s;
        s->next_republish_ms = cfg->summary_republish_s > 0
                                   ? wire_monotonic_ms() + (int64_t)cfg->summary_republish_s * 1000
                                   : 0;
    }
    if (run->heartbeat_ms != cfg->heartbeat_ms) {
        run->heartbeat_ms = cfg->heartbeat_ms;
        s->next_heartbeat_ms = wire_monotonic_ms();
    }
    log_info("configuration reloaded: log_level %s, batch_max %" PRIu32
             ", summary_interval_ms %" PRIu32 ", heartbeat_ms %" PRIu32
             ", max_subscriptions %" PRIu32,
             log_level_name(run->log_level), run->batch_max, run->summary_interval_ms,
             run->heartbeat_ms, run->max_subscriptions);
}

void server_reload_done(server_t *s, bool ok, const char *message)
{
    control_reload_done(s->control, ok, message);
}
