/*
 * config_check.c - the rules of a whole config, checked after every
 * value has parsed: endpoints beyond loopback need CURVE or an explicit
 * insecure setting, endpoints and producers are not listed twice, each
 * CURVE key names one ministry, subscriber or peer, and the peers are
 * reached as safely as the daemon's own endpoints are. See config.h.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "config_int.h"
#include "listen_addr.h"

int config_remote_problem(const config_t *cfg)
{
    const char *eps[3] = {cfg->ingest, cfg->publish, cfg->query};

    if (cfg->curve || cfg->allow_insecure_remote)
        return -1;
    for (int i = 0; i < 3; i++)
        if (!config_endpoint_local(eps[i]))
            return i;
    return -1;
}

const char *const config_remote_names[3] = {"ingest", "publish", "query"};

/* The name a key is listed under (a key names one principal), or NULL. */
static const char *key_owner(const config_t *cfg, const char *key, const char **role)
{
    for (size_t i = 0; i < cfg->n_ministries; i++)
        for (size_t k = 0; k < cfg->ministries[i].n_keys; k++)
            if (strcmp(cfg->ministries[i].keys[k], key) == 0) {
                *role = "ministry";
                return cfg->ministries[i].name;
            }
    for (size_t i = 0; i < cfg->n_subscribers; i++)
        for (size_t k = 0; k < cfg->subscribers[i].n_keys; k++)
            if (strcmp(cfg->subscribers[i].keys[k], key) == 0) {
                *role = "subscriber";
                return cfg->subscribers[i].name;
            }
    for (size_t i = 0; i < cfg->n_peers; i++)
        if (strcmp(cfg->peers[i].key, key) == 0) {
            *role = "peer";
            return cfg->peers[i].name;
        }
    return NULL;
}

static int validate_security(const config_t *cfg, char *err, size_t errlen)
{
    int r = config_remote_problem(cfg);

    if (r >= 0) {
        const char *eps[3] = {cfg->ingest, cfg->publish, cfg->query};
        config_say(err, errlen, "[endpoints] %s = %s: " REMOTE_WHY, config_remote_names[r], eps[r]);
        return -EINVAL;
    }
    if (cfg->subscriber_auth && !cfg->curve) {
        config_say(err, errlen, "[security] subscriber_auth = on needs curve = on");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_subscribers; i++) {
        for (size_t j = 0; j < cfg->n_ministries; j++) {
            if (strcmp(cfg->subscribers[i].name, cfg->ministries[j].name) == 0) {
                config_say(err, errlen,
                           "[subscriber %s] has the name of a ministry; names must "
                           "differ",
                           cfg->subscribers[i].name);
                return -EINVAL;
            }
        }
    }
    /* Each key names exactly one principal: count the keys whose first
     * owner is not where they are listed. */
    for (size_t i = 0; i < cfg->n_ministries; i++) {
        const config_ministry_t *m = &cfg->ministries[i];
        for (size_t k = 0; k < m->n_keys; k++) {
            const char *role, *owner = key_owner(cfg, m->keys[k], &role);
            for (size_t k2 = k + 1; k2 < m->n_keys; k2++)
                if (strcmp(m->keys[k], m->keys[k2]) == 0)
                    owner = NULL;
            if (!owner || strcmp(role, "ministry") != 0 || strcmp(owner, m->name) != 0) {
                config_say(err, errlen,
                           "key %s is listed twice ([ministry %s] and elsewhere); a "
                           "key names one ministry or subscriber",
                           m->keys[k], m->name);
                return -EINVAL;
            }
        }
    }
    for (size_t i = 0; i < cfg->n_peers; i++) {
        const config_peer_t *p = &cfg->peers[i];
        const char *role, *owner = p->key[0] ? key_owner(cfg, p->key, &role) : NULL;
        if (p->key[0] && (strcmp(role, "peer") != 0 || strcmp(owner, p->name) != 0)) {
            config_say(err, errlen,
                       "key %s is listed twice ([peer %s] and [%s %s]); a key names one "
                       "ministry, subscriber or peer",
                       p->key, p->name, role, owner);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < cfg->n_subscribers; i++) {
        const config_subscriber_t *sub = &cfg->subscribers[i];
        for (size_t k = 0; k < sub->n_keys; k++) {
            const char *role, *owner = key_owner(cfg, sub->keys[k], &role);
            for (size_t k2 = k + 1; k2 < sub->n_keys; k2++)
                if (strcmp(sub->keys[k], sub->keys[k2]) == 0)
                    owner = NULL;
            if (!owner || strcmp(role, "subscriber") != 0 || strcmp(owner, sub->name) != 0) {
                config_say(err, errlen,
                           "key %s is listed twice ([subscriber %s] and elsewhere); a "
                           "key names one ministry or subscriber",
                           sub->keys[k], sub->name);
                return -EINVAL;
            }
        }
    }
    return 0;
}

/* A peer's endpoint is on this machine: the daemon's own rule, plus the
 * host name localhost, which connecting (unlike binding) resolves. */
static bool peer_endpoint_local(const char *ep)
{
    return config_endpoint_local(ep) || strncmp(ep, "tcp://localhost:", 16) == 0;
}

/* [site] and [peer NAME]: names apart, pulls answered before they time
 * out, and what travels beyond loopback encrypted unless the file says
 * otherwise, as for the daemon's own endpoints. */
static int validate_peers(const config_t *cfg, char *err, size_t errlen)
{
    if (cfg->peer_timeout_ms <= cfg->pull_wait_ms) {
        config_say(err, errlen,
                   "[site] peer_timeout_ms = %" PRIu32 " must be more than pull_wait_ms = %" PRIu32
                   ": a peer holds a pull that finds nothing for pull_wait_ms before it answers",
                   cfg->peer_timeout_ms, cfg->pull_wait_ms);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_peers; i++) {
        const config_peer_t *p = &cfg->peers[i];
        if (strcmp(p->name, cfg->site) == 0) {
            config_say(err, errlen,
                       "[peer %s] has this site's own name ([site] name); a site does not "
                       "pull from itself, and names must differ",
                       p->name);
            return -EINVAL;
        }
        for (size_t e = 0; e < p->n_endpoints; e++) {
            const char *ep = p->endpoints[e];
            if (strcmp(ep, cfg->query) == 0) {
                config_say(err, errlen,
                           "[peer %s] endpoints: %s is this site's own query endpoint; a site "
                           "does not pull from itself",
                           p->name, ep);
                return -EINVAL;
            }
            if (peer_endpoint_local(ep))
                continue;
            if (cfg->curve && !p->key[0]) {
                config_say(err, errlen,
                           "[peer %s] endpoints: %s is not a loopback address and the peer has "
                           "no key; with [security] curve = on a site beyond loopback is "
                           "pulled over CURVE: key = its public key (Z85 or FILE.pub)",
                           p->name, ep);
                return -EINVAL;
            }
            if (!cfg->curve && !cfg->allow_insecure_remote) {
                config_say(err, errlen, "[peer %s] endpoints: %s: " REMOTE_WHY, p->name, ep);
                return -EINVAL;
            }
        }
    }
    return 0;
}

bool config_peers_equal(const config_t *a, const config_t *b)
{
    if (a->n_peers != b->n_peers)
        return false;
    for (size_t i = 0; i < a->n_peers; i++) {
        const config_peer_t *p = &a->peers[i], *q = &b->peers[i];
        if (strcmp(p->name, q->name) != 0 || strcmp(p->key, q->key) != 0 ||
            p->n_endpoints != q->n_endpoints || p->n_countries != q->n_countries ||
            p->all_countries != q->all_countries)
            return false;
        for (size_t e = 0; e < p->n_endpoints; e++)
            if (strcmp(p->endpoints[e], q->endpoints[e]) != 0)
                return false;
        for (size_t c = 0; c < p->n_countries; c++)
            if (strcmp(p->countries[c], q->countries[c]) != 0)
                return false;
    }
    return true;
}

int config_validate(const config_t *cfg, char *err, size_t errlen)
{
    const char *eps[4] = {cfg->ingest, cfg->publish, cfg->query, cfg->control};
    const char *names[4] = {"ingest", "publish", "query", "control"};

    if (cfg->database[0] == '\0') {
        config_say(err, errlen, "[daemon] database is empty");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_ministries; i++) {
        const config_ministry_t *m = &cfg->ministries[i];
        if (!m->country[0]) {
            config_say(err, errlen, "[ministry %s] has no country = XX", m->name);
            return -EINVAL;
        }
        for (size_t a = 0; a < m->n_producers; a++) {
            for (size_t j = i; j < cfg->n_ministries; j++) {
                const config_ministry_t *o = &cfg->ministries[j];
                for (size_t b = j == i ? a + 1 : 0; b < o->n_producers; b++) {
                    if (strcmp(m->producers[a], o->producers[b]) == 0) {
                        config_say(err, errlen,
                                   "producer %s is listed twice ([ministry %s] and "
                                   "[ministry %s]); a producer speaks for one ministry",
                                   m->producers[a], m->name, o->name);
                        return -EINVAL;
                    }
                }
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        for (int j = i + 1; j < 4; j++) {
            if (strcmp(eps[i], eps[j]) == 0) {
                config_say(err, errlen, "[endpoints] %s and %s are both %s; each needs its own",
                           names[i], names[j], eps[i]);
                return -EINVAL;
            }
        }
    }
    if (strcmp(cfg->http_listen, "off") != 0 && !cfg->http_allow_remote) {
        listen_addr_t a;
        if (listen_addr_parse(cfg->http_listen, &a, NULL, 0) == 0 && !a.loopback) {
            config_say(err, errlen,
                       "[http] listen = %s: not a loopback address; the page has no "
                       "authentication, so serving it beyond loopback needs [http] "
                       "allow_remote = yes (or a reverse proxy on loopback)",
                       cfg->http_listen);
            return -EINVAL;
        }
    }
    if (validate_peers(cfg, err, errlen) < 0)
        return -EINVAL;
    return validate_security(cfg, err, errlen);
}
