/*
 * config_check.c - the rules of a whole config, checked after every
 * value has parsed: endpoints beyond loopback need CURVE or an explicit
 * insecure setting, endpoints and producers are not listed twice, and
 * each CURVE key names one ministry or subscriber. See config.h.
 */
#include "config.h"

#include <errno.h>
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
    return validate_security(cfg, err, errlen);
}
