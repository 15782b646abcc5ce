/*
 * config_file.c - reading parksyncd.conf: a line reader for inih that
 * counts lines and refuses what inih would misread, the fixed sections
 * through the option table, the [ministry NAME], [subscriber NAME] and
 * [peer NAME] sections, and config_load, which reports the first error
 * as file:line. See config.h.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ini.h>

#include "config_int.h"
#include "keys.h"
#include "wire.h"

#define INI_SECTION_MAX 50 /* inih's buffer for a section name, with NUL (MAX_SECTION in ini.c) */

static const char *const peer_keys[] = {"endpoints", "key", "countries"}; /* of [peer NAME] */
#define PEER_KEYS (sizeof peer_keys / sizeof peer_keys[0])

typedef struct parse_ctx {
    const char *path;
    FILE *file;
    config_t *cfg;
    int line;           /* physical line being parsed, 1-based */
    bool at_line_start; /* the next read starts a new physical line */
    bool indented;      /* that line starts with blanks before text: a continuation to inih */
    int error_line;     /* line of the first error; 0 when none */
    char error[512];    /* the first error, without "file:line: " */
    int seen[CONFIG_MAX_OPTIONS]; /* line where each option was set; 0: not yet */
    int header_line;              /* line of the last [section] header read */
    int section_header; /* header_line when the last key was handled: a new one starts a section */
    int peer_line[CONFIG_MAX_PEERS];            /* line of each [peer]'s first key */
    int peer_seen[CONFIG_MAX_PEERS][PEER_KEYS]; /* line where each of its keys was set */
} parse_ctx_t;

__attribute__((format(printf, 2, 3))) static void parse_error(parse_ctx_t *p, const char *fmt, ...)
{
    va_list ap;

    if (p->error_line != 0)
        return; /* the first error is the one reported */
    p->error_line = p->line;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof p->error, fmt, ap);
    va_end(ap);
}

/* fgets for inih that counts physical lines and refuses lines that do not
 * fit inih's buffer (inih would silently parse the rest as a new line). */
static char *reader(char *str, int num, void *stream)
{
    parse_ctx_t *p = stream;
    char *s = fgets(str, num, p->file);
    bool starts = p->at_line_start;
    const char *open, *close;
    size_t len;

    if (!s)
        return NULL;
    if (starts) {
        p->line++;
        p->indented = (s[0] == ' ' || s[0] == '\t') && s[strspn(s, " \t\r\n")] != '\0';
    }
    len = strlen(s);
    p->at_line_start = len > 0 && s[len - 1] == '\n';
    if (!p->at_line_start && !feof(p->file)) {
        parse_error(p, "line too long (at most %d bytes)", num - 3);
        str[0] = '\0'; /* inih sees an empty line */
        return s;
    }
    open = s + strspn(s, " \t"); /* inih skips these too */
    if (!starts || *open != '[')
        return s;
    p->header_line = p->line;
    /* inih cuts a longer section name to its buffer: [ministry NAME]
     * with a long NAME would quietly become another section */
    close = strchr(open, ']');
    if (close && (size_t)(close - open - 1) >= INI_SECTION_MAX) {
        parse_error(p, "section name too long (at most %d bytes between [ and ])",
                    INI_SECTION_MAX - 1);
        str[0] = '\0';
    }
    return s;
}

#define MINISTRY_PREFIX "ministry " /* [ministry NAME] */

static const char *const grant_kinds[] = {"park", "resident", "trade", "country", NULL};

/* Splits a comma-separated list in place; calls fn per trimmed item. */
static int each_item(char *list, int (*fn)(void *, const char *, char *, size_t), void *arg,
                     char *why, size_t whylen)
{
    for (char *save = NULL, *item = strtok_r(list, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        size_t n = strlen(item);
        while (n > 0 && (item[n - 1] == ' ' || item[n - 1] == '\t'))
            item[--n] = '\0';
        if (n == 0) {
            config_say(why, whylen, "empty entry in the list");
            return -EINVAL;
        }
        int rc = fn(arg, item, why, whylen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int add_producer(void *arg, const char *id, char *why, size_t whylen)
{
    config_ministry_t *m = arg;

    if (!wire_id_valid(id)) {
        config_say(why, whylen, "producer id '%s' is not 1..64 of [A-Za-z0-9._-]", id);
        return -EINVAL;
    }
    if (m->n_producers == CONFIG_MAX_PRODUCERS) {
        config_say(why, whylen, "more than %d producers", CONFIG_MAX_PRODUCERS);
        return -EINVAL;
    }
    snprintf(m->producers[m->n_producers++], CONFIG_ID_MAX, "%s", id);
    return 0;
}

/* "XX" (every kind) or "KIND:XX". */
static int add_grant(void *arg, const char *text, char *why, size_t whylen)
{
    config_ministry_t *m = arg;
    const char *colon = strchr(text, ':');
    const char *country = colon ? colon + 1 : text;
    config_grant_t g = {PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED, ""};

    if (colon) {
        size_t i;
        for (i = 0; grant_kinds[i]; i++)
            if (strlen(grant_kinds[i]) == (size_t)(colon - text) &&
                strncmp(grant_kinds[i], text, (size_t)(colon - text)) == 0)
                break;
        if (!grant_kinds[i]) {
            config_say(why, whylen,
                       "grant '%s': expected XX or park:XX, resident:XX, trade:XX, "
                       "country:XX",
                       text);
            return -EINVAL;
        }
        g.kind = wire_kind_from_name(grant_kinds[i]);
    }
    if (!wire_country_valid(country)) {
        config_say(why, whylen, "grant '%s': '%s' is not an ISO 3166-1 alpha-2 code", text,
                   country);
        return -EINVAL;
    }
    if (m->n_grants == CONFIG_MAX_GRANTS) {
        config_say(why, whylen, "more than %d grants", CONFIG_MAX_GRANTS);
        return -EINVAL;
    }
    memcpy(g.country, country, 3);
    m->grants[m->n_grants++] = g;
    return 0;
}

/* Where add_key puts a public key. */
typedef struct key_list {
    char (*keys)[CONFIG_KEY_LEN]; /* CONFIG_MAX_KEYS entries */
    size_t *n;                    /* entries used */
} key_list_t;

/* A Z85 public key, or the path of a file holding one. */
static int add_key(void *arg, const char *text, char *why, size_t whylen)
{
    key_list_t *kl = arg;
    char z85[KEYS_Z85_LEN + 1], err[300];
    int rc = keys_parse_public(text, z85, err, sizeof err);

    if (rc < 0) {
        config_say(why, whylen, "%s", err);
        return -EINVAL;
    }
    if (*kl->n == CONFIG_MAX_KEYS) {
        config_say(why, whylen, "more than %d keys", CONFIG_MAX_KEYS);
        return -EINVAL;
    }
    memcpy(kl->keys[(*kl->n)++], z85, CONFIG_KEY_LEN);
    return 0;
}

#define SUBSCRIBER_PREFIX "subscriber " /* [subscriber NAME] */

/* One key of a [subscriber NAME] section. Returns 1 (inih: go on) or 0. */
static int subscriber_key(parse_ctx_t *p, const char *name, const char *key, const char *value)
{
    config_t *cfg = p->cfg;
    config_subscriber_t *sub = NULL;
    char list[1024], why[400] = "";
    key_list_t kl;

    if (!wire_id_valid(name)) {
        parse_error(p, "[subscriber %s]: the name must be 1..64 of [A-Za-z0-9._-]", name);
        return 0;
    }
    for (size_t i = 0; i < cfg->n_subscribers; i++)
        if (strcmp(cfg->subscribers[i].name, name) == 0)
            sub = &cfg->subscribers[i];
    if (!sub) {
        if (cfg->n_subscribers == CONFIG_MAX_SUBSCRIBERS) {
            parse_error(p, "more than %d [subscriber] sections", CONFIG_MAX_SUBSCRIBERS);
            return 0;
        }
        sub = &cfg->subscribers[cfg->n_subscribers++];
        memset(sub, 0, sizeof *sub);
        snprintf(sub->name, sizeof sub->name, "%s", name);
    }
    if (strcmp(key, "keys") != 0 && strcmp(key, "key") != 0) {
        parse_error(p, "unknown key '%s' in [subscriber %s] (keys: keys)", key, name);
        return 0;
    }
    if (strlen(value) >= sizeof list) {
        parse_error(p, "[subscriber %s] %s is too long", name, key);
        return 0;
    }
    snprintf(list, sizeof list, "%s", value);
    kl.keys = sub->keys;
    kl.n = &sub->n_keys;
    if (each_item(list, add_key, &kl, why, sizeof why) < 0) {
        parse_error(p, "[subscriber %s] %s: %s", name, key, why);
        return 0;
    }
    return 1;
}

/* One key of a [ministry NAME] section. Returns 1 (inih: go on) or 0. */
static int ministry_key(parse_ctx_t *p, const char *name, const char *key, const char *value)
{
    config_t *cfg = p->cfg;
    config_ministry_t *m = NULL;
    char list[1024], why[400] = "";
    int rc = 0;

    if (!wire_id_valid(name)) {
        parse_error(p, "[ministry %s]: the name must be 1..64 of [A-Za-z0-9._-]", name);
        return 0;
    }
    for (size_t i = 0; i < cfg->n_ministries; i++)
        if (strcmp(cfg->ministries[i].name, name) == 0)
            m = &cfg->ministries[i];
    if (!m) {
        if (cfg->n_ministries == CONFIG_MAX_MINISTRIES) {
            parse_error(p, "more than %d [ministry] sections", CONFIG_MAX_MINISTRIES);
            return 0;
        }
        m = &cfg->ministries[cfg->n_ministries++];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", name);
    }
    if (strlen(value) >= sizeof list) {
        parse_error(p, "[ministry %s] %s is too long", name, key);
        return 0;
    }
    snprintf(list, sizeof list, "%s", value);
    if (strcmp(key, "country") == 0) {
        if (!wire_country_valid(value)) {
            parse_error(p,
                        "[ministry %s] country = %s: expected an ISO 3166-1 alpha-2 code "
                        "such as AZ",
                        name, value);
            return 0;
        }
        if (m->country[0]) {
            parse_error(p, "[ministry %s] country is set twice", name);
            return 0;
        }
        memcpy(m->country, value, 3);
        return 1;
    }
    if (strcmp(key, "producers") == 0)
        rc = each_item(list, add_producer, m, why, sizeof why);
    else if (strcmp(key, "grants") == 0)
        rc = each_item(list, add_grant, m, why, sizeof why);
    else if (strcmp(key, "keys") == 0 || strcmp(key, "key") == 0) {
        key_list_t kl = {m->keys, &m->n_keys};
        rc = each_item(list, add_key, &kl, why, sizeof why);
    } else {
        parse_error(p,
                    "unknown key '%s' in [ministry %s] (keys: country, producers, grants, "
                    "keys)",
                    key, name);
        return 0;
    }
    if (rc < 0) {
        parse_error(p, "[ministry %s] %s: %s", name, key, why);
        return 0;
    }
    return 1;
}

#define PEER_PREFIX "peer " /* [peer NAME] */

/* tcp://HOST:PORT as this site connects to it: HOST a name, an IPv4 or a
 * bracketed IPv6 address (libzmq resolves names when it connects). */
static int check_peer_tcp(const char *ep, char *why, size_t whylen)
{
    const char *host = ep + strlen("tcp://"), *colon = strrchr(host, ':');
    unsigned char addr[sizeof(struct in6_addr)];
    char v6[INET6_ADDRSTRLEN + 2];
    size_t hostlen = colon ? (size_t)(colon - host) : 0;
    uint64_t port = 0;
    char *end = NULL;

    if (hostlen == 0) {
        config_say(why, whylen, "'%s': expected tcp://HOST:PORT", ep);
        return -EINVAL;
    }
    errno = 0;
    if (colon[1] >= '0' && colon[1] <= '9')
        port = strtoull(colon + 1, &end, 10);
    if (!end || *end != '\0' || errno != 0 || port < 1 || port > 65535) {
        config_say(why, whylen, "'%s': the port must be 1..65535", ep);
        return -EINVAL;
    }
    if (host[0] != '[') {
        if (strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-") ==
            hostlen)
            return 0;
        config_say(why, whylen, "'%s': '%.*s' is not a host name or an address", ep, (int)hostlen,
                   host);
        return -EINVAL;
    }
    if (hostlen > 2 && hostlen < sizeof v6 && host[hostlen - 1] == ']') {
        memcpy(v6, host + 1, hostlen - 2);
        v6[hostlen - 2] = '\0';
        if (inet_pton(AF_INET6, v6, addr) == 1)
            return 0;
    }
    config_say(why, whylen, "'%s': '%.*s' is not an IPv6 address in brackets", ep, (int)hostlen,
               host);
    return -EINVAL;
}

/* An endpoint of a peer's query socket: tcp:// (check_peer_tcp) or
 * ipc://PATH, at most once each. */
static int add_peer_endpoint(void *arg, const char *ep, char *why, size_t whylen)
{
    config_peer_t *peer = arg;

    if (strlen(ep) >= CONFIG_ENDPOINT_MAX) {
        config_say(why, whylen, "'%s' is too long (at most %d bytes)", ep, CONFIG_ENDPOINT_MAX - 1);
        return -EINVAL;
    }
    if (strncmp(ep, "ipc://", 6) == 0) {
        if (ep[6] == '\0') {
            config_say(why, whylen, "'%s': the path after ipc:// is empty", ep);
            return -EINVAL;
        }
    } else if (strncmp(ep, "tcp://", 6) == 0) {
        if (check_peer_tcp(ep, why, whylen) < 0)
            return -EINVAL;
    } else {
        config_say(why, whylen, "'%s': expected tcp://HOST:PORT or ipc://PATH", ep);
        return -EINVAL;
    }
    for (size_t i = 0; i < peer->n_endpoints; i++) {
        if (strcmp(peer->endpoints[i], ep) == 0) {
            config_say(why, whylen, "'%s' is listed twice", ep);
            return -EINVAL;
        }
    }
    if (peer->n_endpoints == CONFIG_PEER_ENDPOINTS) {
        config_say(why, whylen, "more than %d endpoints", CONFIG_PEER_ENDPOINTS);
        return -EINVAL;
    }
    snprintf(peer->endpoints[peer->n_endpoints++], CONFIG_ENDPOINT_MAX, "%s", ep);
    return 0;
}

/* A country whose records the peer may bring, or '*' alone: every one. */
static int add_peer_country(void *arg, const char *cc, char *why, size_t whylen)
{
    config_peer_t *peer = arg;

    if (strcmp(cc, "*") == 0 || peer->all_countries) {
        if (peer->n_countries > 0 || peer->all_countries) {
            config_say(why, whylen, "'*' means every country and stands alone");
            return -EINVAL;
        }
        peer->all_countries = true;
        return 0;
    }
    if (!wire_country_valid(cc)) {
        config_say(why, whylen, "'%s' is not an ISO 3166-1 alpha-2 code such as AZ, nor *", cc);
        return -EINVAL;
    }
    for (size_t i = 0; i < peer->n_countries; i++) {
        if (strcmp(peer->countries[i], cc) == 0) {
            config_say(why, whylen, "%s is listed twice", cc);
            return -EINVAL;
        }
    }
    if (peer->n_countries == CONFIG_PEER_COUNTRIES) {
        config_say(why, whylen, "more than %d countries (write * for every one)",
                   CONFIG_PEER_COUNTRIES);
        return -EINVAL;
    }
    memcpy(peer->countries[peer->n_countries++], cc, 3);
    return 0;
}

/* One key of a [peer NAME] section. Returns 1 (inih: go on) or 0. */
static int peer_key(parse_ctx_t *p, const char *name, const char *key, const char *value,
                    bool new_section)
{
    config_t *cfg = p->cfg;
    config_peer_t *peer = NULL;
    char list[1024], why[400] = "", z85[KEYS_Z85_LEN + 1];
    size_t i, k;
    int rc;

    if (!wire_id_valid(name)) {
        parse_error(p, "[peer %s]: the name must be 1..64 of [A-Za-z0-9._-]", name);
        return 0;
    }
    for (i = 0; i < cfg->n_peers; i++)
        if (strcmp(cfg->peers[i].name, name) == 0)
            peer = &cfg->peers[i];
    if (peer && new_section) {
        parse_error(p, "[peer %s] appears twice (first on line %d); one section per peer", name,
                    p->peer_line[peer - cfg->peers]);
        return 0;
    }
    if (!peer) {
        if (cfg->n_peers == CONFIG_MAX_PEERS) {
            parse_error(p, "more than %d [peer] sections", CONFIG_MAX_PEERS);
            return 0;
        }
        p->peer_line[cfg->n_peers] = p->line;
        peer = &cfg->peers[cfg->n_peers++];
        memset(peer, 0, sizeof *peer);
        snprintf(peer->name, sizeof peer->name, "%s", name);
    }
    for (k = 0; k < PEER_KEYS; k++)
        if (strcmp(key, peer_keys[k]) == 0)
            break;
    if (k == PEER_KEYS) {
        parse_error(p, "unknown key '%s' in [peer %s] (keys: endpoints, key, countries)", key,
                    name);
        return 0;
    }
    i = (size_t)(peer - cfg->peers);
    if (p->peer_seen[i][k] != 0) {
        parse_error(p, "[peer %s] %s is set twice (first on line %d)", name, key,
                    p->peer_seen[i][k]);
        return 0;
    }
    p->peer_seen[i][k] = p->line;
    if (value[0] == '\0' || strlen(value) >= sizeof list) {
        parse_error(p, "[peer %s] %s is %s", name, key, value[0] ? "too long" : "empty");
        return 0;
    }
    snprintf(list, sizeof list, "%s", value);
    if (strcmp(key, "endpoints") == 0) {
        rc = each_item(list, add_peer_endpoint, peer, why, sizeof why);
    } else if (strcmp(key, "countries") == 0) {
        rc = each_item(list, add_peer_country, peer, why, sizeof why);
    } else if ((rc = keys_parse_public(value, z85, why, sizeof why)) == 0) {
        memcpy(peer->key, z85, CONFIG_KEY_LEN);
    }
    if (rc < 0) {
        parse_error(p, "[peer %s] %s: %s", name, key, why);
        return 0;
    }
    return 1;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse_ctx_t *p = user;
    const config_option_t *opt;
    char why[400];
    bool new_section;
    size_t idx;

    /* inih reads an indented line as more of the value above and hands
     * it over under the same key: say that, not "set twice". */
    if (p->indented) {
        parse_error(p,
                    "the line is indented; remove the indentation (an indented line "
                    "continues the value above it: here %s's)",
                    key);
        return 0;
    }
    /* inih knows ';' after a value as a comment, not '#': refused by name
     * rather than read as part of the value */
    if (strstr(value, " #") || strstr(value, "\t#")) {
        parse_error(p,
                    "%s = %s: '#' starts a comment only at the start of a line; after a "
                    "value, write '; comment'",
                    key, value);
        return 0;
    }
    if (section[0] == '\0') {
        parse_error(p, "%s = %s is outside of any [section]", key, value);
        return 0;
    }
    new_section = p->header_line != p->section_header;
    p->section_header = p->header_line;
    if (strncmp(section, MINISTRY_PREFIX, strlen(MINISTRY_PREFIX)) == 0)
        return ministry_key(p, section + strlen(MINISTRY_PREFIX), key, value);
    if (strncmp(section, SUBSCRIBER_PREFIX, strlen(SUBSCRIBER_PREFIX)) == 0)
        return subscriber_key(p, section + strlen(SUBSCRIBER_PREFIX), key, value);
    if (strncmp(section, PEER_PREFIX, strlen(PEER_PREFIX)) == 0)
        return peer_key(p, section + strlen(PEER_PREFIX), key, value, new_section);
    if (!config_known_section(section)) {
        parse_error(p,
                    "unknown section [%s] (sections: daemon, endpoints, store, trade, "
                    "limits, security, metrics, http, site, ministry NAME, subscriber NAME, "
                    "peer NAME)",
                    section);
        return 0;
    }
    opt = config_find_option(section, key);
    if (!opt) {
        char known[256] = "";
        for (size_t i = 0; i < config_n_options; i++) {
            if (strcmp(config_options[i].section, section) != 0)
                continue;
            if (known[0])
                strncat(known, ", ", sizeof known - strlen(known) - 1);
            strncat(known, config_options[i].key, sizeof known - strlen(known) - 1);
        }
        parse_error(p, "unknown key '%s' in [%s] (keys: %s)", key, section, known);
        return 0;
    }
    idx = (size_t)(opt - config_options);
    if (p->seen[idx] != 0) {
        parse_error(p, "[%s] %s is set twice (first on line %d)", section, key, p->seen[idx]);
        return 0;
    }
    p->seen[idx] = p->line;
    if (config_set_option(p->cfg, opt, value, why, sizeof why) < 0) {
        parse_error(p, "%s", why);
        return 0;
    }
    return 1;
}

int config_load(const char *path, config_t *out, char *err, size_t errlen)
{
    parse_ctx_t p;
    config_t cfg;
    struct stat st;
    char why[512];
    int rc;

    config_init(&cfg);
    memset(&p, 0, sizeof p);
    if (path) {
        p.path = path;
        p.cfg = &cfg;
        p.at_line_start = true;
        p.file = fopen(path, "re");
        if (!p.file) {
            rc = -errno;
            config_say(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            return rc;
        }
        if (fstat(fileno(p.file), &st) == 0 && S_ISDIR(st.st_mode)) {
            config_say(err, errlen,
                       "%s is a directory; -c wants the config file (e.g. %s/parksyncd.conf)", path,
                       path);
            fclose(p.file);
            return -EISDIR;
        }
        rc = ini_parse_stream(reader, &p, handler, &p);
        if (ferror(p.file)) {
            config_say(err, errlen, "%s: read error", path);
            fclose(p.file);
            return -EIO;
        }
        fclose(p.file);
        if (p.error_line != 0) {
            config_say(err, errlen, "%s:%d: %s", path, p.error_line, p.error);
            return -EINVAL;
        }
        if (rc > 0) {
            config_say(err, errlen, "%s:%d: syntax error: expected [section] or key = value", path,
                       rc);
            return -EINVAL;
        }
        if (rc < 0) {
            config_say(err, errlen, "%s: cannot parse (%d)", path, rc);
            return -ENOMEM;
        }
        if ((rc = config_remote_problem(&cfg)) >= 0) {
            const config_option_t *opt = config_find_option("endpoints", config_remote_names[rc]);
            const char *ep = (const char *)&cfg + opt->offset;
            config_say(err, errlen, "%s:%d: [endpoints] %s = %s: " REMOTE_WHY, path,
                       p.seen[opt - config_options], config_remote_names[rc], ep);
            return -EINVAL;
        }
    }
    if (p.seen[config_find_option("security", "subscriber_auth") - config_options] == 0)
        cfg.subscriber_auth = cfg.curve; /* with CURVE, listed readers only unless told */
    for (size_t i = 0; i < cfg.n_ministries; i++) {
        /* a ministry without producers = speaks through a producer of its own name */
        config_ministry_t *m = &cfg.ministries[i];
        if (m->n_producers == 0)
            memcpy(m->producers[m->n_producers++], m->name, sizeof(m->name));
    }
    if (config_validate(&cfg, why, sizeof why) < 0) {
        config_say(err, errlen, "%s: %s", path ? path : "defaults", why);
        return -EINVAL;
    }
    *out = cfg;
    return 0;
}
