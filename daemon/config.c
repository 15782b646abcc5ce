/*
 * config.c - the option table and what walks it: parsing one value into
 * its field, the endpoint rules of single values, defaults, config_set
 * and printing the effective config. The INI file is read in
 * config_file.c, the whole-config rules are in config_check.c; see
 * config.h.
 *
 * Sections: the option table; parsing one value; printing.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_int.h"
#include "metrics.h"
#include "page.h"
#include "wire.h"

/* ---------------------------------------------------------------- the table */

static const opt_choice_t log_level_choices[] = {
    {"error", LOG_LEVEL_ERROR}, {"warning", LOG_LEVEL_WARNING}, {"notice", LOG_LEVEL_NOTICE},
    {"info", LOG_LEVEL_INFO},   {"debug", LOG_LEVEL_DEBUG},     {NULL, 0},
};

static const opt_choice_t synchronous_choices[] = {
    {"full", 1},
    {"normal", 0},
    {NULL, 0},
};

static const opt_choice_t rule_choices[] = {
    {"importer-first", PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST},
    {"exporter-first", PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST},
    {"mean", PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN},
    {NULL, 0},
};

static const opt_choice_t on_off_choices[] = {
    {"on", 1},
    {"off", 0},
    {NULL, 0},
};

static const opt_choice_t yes_no_choices[] = {
    {"yes", 1},
    {"no", 0},
    {NULL, 0},
};

static int check_endpoint(const char *value, char *why, size_t whylen);
static int check_control(const char *value, char *why, size_t whylen);
static int check_site(const char *value, char *why, size_t whylen);

#define FIELD(f) offsetof(config_t, f), sizeof(((config_t *)0)->f)

const config_option_t config_options[] = {
    {"daemon", "database", OPT_PATH, FIELD(database), NULL, 0, 0, 0, 0, NULL, NULL,
     "SQLite database file; default $STATE_DIRECTORY/parksync.db, else ./parksync.db"},
    {"daemon", "log_level", OPT_ENUM, FIELD(log_level), "info", 0, 0, 0, 0, log_level_choices, NULL,
     "error | warning | notice | info | debug"},
    {"endpoints", "ingest", OPT_ENDPOINT, FIELD(ingest), WIRE_DEFAULT_INGEST, 0, 0, 0, 0, NULL,
     check_endpoint, "producers connect PUB here (daemon SUB binds)"},
    {"endpoints", "publish", OPT_ENDPOINT, FIELD(publish), WIRE_DEFAULT_PUBLISH, 0, 0, 0, 0, NULL,
     check_endpoint, "subscribers connect SUB here (daemon PUB binds)"},
    {"endpoints", "query", OPT_ENDPOINT, FIELD(query), WIRE_DEFAULT_QUERY, 0, 0, 0, 0, NULL,
     check_endpoint, "clients connect DEALER here (daemon ROUTER binds)"},
    {"endpoints", "control", OPT_ENDPOINT, FIELD(control), NULL, 0, 0, 0, 0, NULL, check_control,
     "operator CLI connects here (ipc:// only); default $RUNTIME_DIRECTORY/control, "
     "else /run/parksync/control, else $XDG_RUNTIME_DIR/parksync/control, "
     "else /tmp/parksync-UID/control"},
    {"store", "synchronous", OPT_ENUM, FIELD(synchronous_full), "full", 0, 0, 0, 0,
     synchronous_choices, NULL,
     "full | normal: full syncs the WAL before each ack (power loss safe), normal at checkpoints"},
    {"store", "changelog_keep", OPT_UINT, FIELD(changelog_keep), "1000000", 0,
     UINT64_C(1000000000000), 0, 0, NULL, NULL, "revisions kept in the change log; 0 = all"},
    {"store", "max_future_skew_s", OPT_UINT, FIELD(max_future_skew_s), "86400", 0,
     UINT64_C(315360000), 0, 0, NULL, NULL,
     "updates whose event time is further ahead of the clock are refused, s; 0 = off"},
    {"store", "conflicts_keep", OPT_UINT, FIELD(conflicts_keep), "1000000", 0,
     UINT64_C(1000000000000), 0, 0, NULL, NULL,
     "newest rows kept in the conflicts table, with the refused updates (claims) they list; "
     "0 = all"},
    {"store", "conflicts_keep_days", OPT_UINT, FIELD(conflicts_keep_days), "365", 0, 36500, 0, 0,
     NULL, NULL,
     "conflict rows and their claims older than this are dropped, days (0: kept whatever their "
     "age, 1..36500)"},
    {"store", "defer_rows", OPT_UINT, FIELD(defer_rows), "131072", 0, 1000000, 0, 0, NULL, NULL,
     "resident rows a commit may leave in the change log, written later together in key order "
     "(about 0.8 KiB of memory each); 0 = every commit writes its rows (0..1000000)"},
    {"store", "cache_mib", OPT_UINT, FIELD(cache_mib), "32", 1, 65536, 0, 0, NULL, NULL,
     "SQLite's page cache for the writer, MiB: a database larger than it is read from the "
     "kernel at each update of a row not cached (1..65536)"},
    {"trade", "rule", OPT_ENUM, FIELD(trade_rule), "importer-first", 0, 0, 0, 0, rule_choices, NULL,
     "importer-first | exporter-first | mean: which mirror figure is chosen"},
    {"trade", "threshold_pct", OPT_DOUBLE, FIELD(threshold_pct), "10", 0, 0, 0, 1000, NULL, NULL,
     "a discrepancy above this percentage flags a flow (0..1000)"},
    {"trade", "cif_fob_factor", OPT_DOUBLE, FIELD(cif_fob_factor), "1.0", 0, 0, 0.5, 2.0, NULL,
     NULL, "importer's CIF figure is compared with exporter's FOB * this (0.5..2.0)"},
    {"limits", "batch_max", OPT_UINT, FIELD(batch_max), "8192", 1, 100000, 0, 0, NULL, NULL,
     "updates per transaction (1..100000)"},
    {"limits", "summary_interval_ms", OPT_UINT, FIELD(summary_interval_ms), "250", 0, 60000, 0, 0,
     NULL, NULL, "least time between summary refreshes, ms (0..60000)"},
    {"limits", "heartbeat_ms", OPT_UINT, FIELD(heartbeat_ms), "1000", 100, 60000, 0, 0, NULL, NULL,
     "heartbeat period on the publish socket, ms (100..60000)"},
    {"limits", "summary_republish_s", OPT_UINT, FIELD(summary_republish_s), "60", 0, 86400, 0, 0,
     NULL, NULL,
     "every country summary is published again (repeat) this often, s "
     "(0: off, 1..86400)"},
    {"limits", "max_streams", OPT_UINT, FIELD(max_streams), "16", 1, 1024, 0, 0, NULL, NULL,
     "concurrent snapshot/changes streams (1..1024)"},
    {"limits", "max_streams_per_client", OPT_UINT, FIELD(max_streams_per_client), "4", 1, 1024, 0,
     0, NULL, NULL,
     "concurrent streams of one query connection (1..1024; at most max_streams - 1 "
     "whatever is set, so one client never holds every stream)"},
    {"limits", "stream_idle_ms", OPT_UINT, FIELD(stream_idle_ms), "60000", 100, 3600000, 0, 0, NULL,
     NULL,
     "a stream that delivers nothing this long (no credit, or its client does not read) "
     "is dropped, ms (100..3600000)"},
    {"limits", "query_hwm", OPT_UINT, FIELD(query_hwm), "128", 16, 10000, 0, 0, NULL, NULL,
     "replies queued per query connection, a chunk at most 32 KiB of records (16..10000)"},
    {"limits", "publish_hwm", OPT_UINT, FIELD(publish_hwm), "10000", 1, 10000000, 0, 0, NULL, NULL,
     "publications queued per subscriber before ZeroMQ drops: what a subscriber that stops "
     "reading can hold (1..10000000)"},
    {"limits", "max_subscriptions", OPT_UINT, FIELD(max_subscriptions), "4096", 1, 1000000, 0, 0,
     NULL, NULL,
     "subscriptions applied on the publish socket, all connections together; a connection "
     "asking beyond is closed (1..1000000)"},
    {"limits", "ingest_hwm", OPT_UINT, FIELD(ingest_hwm), "100000", 1, 10000000, 0, 0, NULL, NULL,
     "updates queued on the ingest socket before ZeroMQ drops (1..10000000; "
     "small values only for tests)"},
    {"limits", "max_connections", OPT_UINT, FIELD(max_connections), "1024", 1, 1000000, 0, 0, NULL,
     NULL,
     "connections open at once on each of ingest, publish and query; a newer one is closed "
     "at once (1..1000000; LimitNOFILE must hold 3 times this)"},
    {"limits", "handshake_timeout_ms", OPT_UINT, FIELD(handshake_timeout_ms), "10000", 100, 600000,
     0, 0, NULL, NULL,
     "a connection that has not finished its ZeroMQ/CURVE handshake this long is closed, "
     "ms (100..600000)"},
    {"limits", "max_producers", OPT_UINT, FIELD(max_producers), "1000", 0, 1000000, 0, 0, NULL,
     NULL,
     "with no [ministry] (authority off): producer ids the database takes; updates of a new id "
     "beyond are not applied, kept or acknowledged (0: no limit, 1..1000000)"},
    {"security", "curve", OPT_ENUM, FIELD(curve), "off", 0, 0, 0, 0, on_off_choices, NULL,
     "on | off: CURVE encryption and ZAP authentication on ingest, publish and query"},
    {"security", "secret_key_file", OPT_PATH, FIELD(secret_key_file), "/etc/parksync/daemon.key", 0,
     0, 0, 0, NULL, NULL, "the daemon's Z85 secret key (parksync keygen), read when curve = on"},
    {"security", "subscriber_auth", OPT_ENUM, FIELD(subscriber_auth), NULL, 0, 0, 0, 0,
     on_off_choices, NULL,
     "on | off: publish and query admit only [ministry] and [subscriber] keys; default "
     "on when curve = on (off lets any CURVE key read, warned), else off"},
    {"security", "allow_insecure_remote", OPT_ENUM, FIELD(allow_insecure_remote), "no", 0, 0, 0, 0,
     yes_no_choices, NULL,
     "yes | no: listen beyond loopback without CURVE (warned at "
     "every start)"},
    {"metrics", "http", OPT_PATH, FIELD(metrics_http), "off", 0, 0, 0, 0, NULL, metrics_http_check,
     "off, or a loopback HOST:PORT (127.0.0.1:9464, [::1]:9464) serving "
     "Prometheus text on /metrics"},
    {"http", "listen", OPT_PATH, FIELD(http_listen), "off", 0, 0, 0, 0, NULL, page_listen_check,
     "off, or IP:PORT (127.0.0.1:8080, [::1]:8080) serving the live web page of the "
     "consolidated picture; beyond loopback only with allow_remote = yes"},
    {"http", "allow_remote", OPT_ENUM, FIELD(http_allow_remote), "no", 0, 0, 0, 0, yes_no_choices,
     NULL,
     "yes | no: serve the page on a non-loopback listen address, to anyone who reaches it "
     "(no authentication; warned at every start)"},
    {"site", "name", OPT_PATH, FIELD(site), NULL, 0, 0, 0, 0, NULL, check_site,
     "this site's name, as its peers see it: 1..64 of [A-Za-z0-9._-]; default: the host "
     "name up to its first other character, else parksync"},
    {"site", "ack_after", OPT_ACK, FIELD(ack_after_peers), "local", 1, CONFIG_MAX_PEERS, 0, 0, NULL,
     NULL,
     "local | peers:N: an update is acknowledged once committed here, or once N sites that "
     "pull from this one (N 1..16) have also stored it"},
    {"site", "pull_wait_ms", OPT_UINT, FIELD(pull_wait_ms), "1000", 0, 30000, 0, 0, NULL, NULL,
     "a pull that finds nothing new waits this long at the peer for a change, ms (0..30000)"},
    {"site", "peer_timeout_ms", OPT_UINT, FIELD(peer_timeout_ms), "5000", 100, 600000, 0, 0, NULL,
     NULL,
     "a peer silent this long is taken as gone: its next endpoint is tried, ms (100..600000, "
     "more than pull_wait_ms)"},
};

#define N_OPTIONS (sizeof config_options / sizeof config_options[0])
const size_t config_n_options = N_OPTIONS;
_Static_assert(N_OPTIONS <= CONFIG_MAX_OPTIONS, "raise CONFIG_MAX_OPTIONS in config_int.h");
static const char *const sections[] = {"daemon",   "endpoints", "store", "trade", "limits",
                                       "security", "metrics",   "http",  "site"};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

/* ---------------------------------------------------------------- one value */

__attribute__((format(printf, 3, 4))) void config_say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!buf || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void store_int(void *field, size_t size, uint64_t v)
{
    switch (size) {
    case 1:
        *(bool *)field = v != 0;
        break;
    case 4:
        *(uint32_t *)field = (uint32_t)v;
        break;
    case 8:
        *(uint64_t *)field = v;
        break;
    default:
        abort(); /* a table row with an impossible size */
    }
}

static uint64_t load_int(const void *field, size_t size)
{
    switch (size) {
    case 1:
        return *(const bool *)field;
    case 4:
        return *(const uint32_t *)field;
    case 8:
        return *(const uint64_t *)field;
    default:
        abort();
    }
}

static void describe_choices(const opt_choice_t *c, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; c[i].name; i++) {
        const char *sep = i == 0 ? "" : c[i + 1].name ? ", " : " or ";
        int n = snprintf(buf + used, len - used, "%s%s", sep, c[i].name);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
}

/* Strict decimal: digits only, no sign, no blanks, no trailing junk. */
static int parse_uint(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    if (*s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*end != '\0')
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    double v;

    if (*s == '\0' || *s == ' ' || *s == '\t')
        return -EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v))
        return -EINVAL;
    if (errno == ERANGE)
        return -ERANGE;
    *out = v;
    return 0;
}

/* Parses value into cfg's field for opt. why gets "[s] k = v: reason". */
int config_set_option(config_t *cfg, const config_option_t *opt, const char *value, char *why,
                      size_t whylen)
{
    void *field = (char *)cfg + opt->offset;
    char buf[256];
    uint64_t u;
    double d;
    int rc;

    switch (opt->type) {
    case OPT_PATH:
    case OPT_ENDPOINT:
        if (value[0] == '\0') {
            config_say(why, whylen, "[%s] %s is empty", opt->section, opt->key);
            return -EINVAL;
        }
        if (strlen(value) >= opt->size) {
            config_say(why, whylen, "[%s] %s is too long (at most %zu bytes)", opt->section,
                       opt->key, opt->size - 1);
            return -EINVAL;
        }
        if (opt->check && opt->check(value, buf, sizeof buf) < 0) {
            config_say(why, whylen, "[%s] %s = %s: %s", opt->section, opt->key, value, buf);
            return -EINVAL;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case OPT_ENUM:
        for (size_t i = 0; opt->choices[i].name; i++) {
            if (strcmp(value, opt->choices[i].name) == 0) {
                if (opt->size == sizeof(int))
                    *(int *)field = opt->choices[i].value;
                else
                    store_int(field, opt->size, (uint64_t)opt->choices[i].value);
                return 0;
            }
        }
        describe_choices(opt->choices, buf, sizeof buf);
        config_say(why, whylen, "[%s] %s = %s: expected %s", opt->section, opt->key, value, buf);
        return -EINVAL;
    case OPT_UINT:
        rc = parse_uint(value, &u);
        if (rc == -EINVAL) {
            config_say(why, whylen,
                       "[%s] %s = %s: not a whole number (expected %" PRIu64 "..%" PRIu64 ")",
                       opt->section, opt->key, value, opt->umin, opt->umax);
            return -EINVAL;
        }
        if (rc < 0 || u < opt->umin || u > opt->umax) {
            config_say(why, whylen, "[%s] %s = %s is out of range (%" PRIu64 "..%" PRIu64 ")",
                       opt->section, opt->key, value, opt->umin, opt->umax);
            return -EINVAL;
        }
        store_int(field, opt->size, u);
        return 0;
    case OPT_DOUBLE:
        rc = parse_double(value, &d);
        if (rc == -EINVAL) {
            config_say(why, whylen, "[%s] %s = %s: not a number (expected %g..%g)", opt->section,
                       opt->key, value, opt->dmin, opt->dmax);
            return -EINVAL;
        }
        if (rc < 0 || d < opt->dmin || d > opt->dmax) {
            config_say(why, whylen, "[%s] %s = %s is out of range (%g..%g)", opt->section, opt->key,
                       value, opt->dmin, opt->dmax);
            return -EINVAL;
        }
        *(double *)field = d;
        return 0;
    case OPT_ACK:
        if (strcmp(value, "local") == 0) {
            store_int(field, opt->size, 0);
            return 0;
        }
        rc = strncmp(value, "peers:", 6) == 0 ? parse_uint(value + 6, &u) : -EINVAL;
        if (rc == -EINVAL) {
            config_say(why, whylen,
                       "[%s] %s = %s: expected local or peers:N (N %" PRIu64 "..%" PRIu64 ")",
                       opt->section, opt->key, value, opt->umin, opt->umax);
            return -EINVAL;
        }
        if (rc < 0 || u < opt->umin || u > opt->umax) { /* rc: beyond uint64 */
            config_say(why, whylen, "[%s] %s = %s is out of range (peers:%" PRIu64 "..%" PRIu64 ")",
                       opt->section, opt->key, value, opt->umin, opt->umax);
            return -EINVAL;
        }
        store_int(field, opt->size, u);
        return 0;
    }
    abort();
}

/* True when libzmq can bind to host (len bytes): '*', an IPv4 or a
 * bracketed IPv6 address, or the name of an interface of this machine. It
 * resolves no host names when binding, so tcp://localhost:P would pass a
 * syntax check and then fail at start. */
static bool bindable_host(const char *host, size_t len)
{
    char name[INET6_ADDRSTRLEN + 2];
    unsigned char addr[sizeof(struct in6_addr)];

    if (len == 0 || len >= sizeof name)
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    if (strcmp(name, "*") == 0 || inet_pton(AF_INET, name, addr) == 1)
        return true;
    if (len > 2 && name[0] == '[' && name[len - 1] == ']') {
        name[len - 1] = '\0';
        return inet_pton(AF_INET6, name + 1, addr) == 1;
    }
    return if_nametoindex(name) != 0;
}

/* The syntax of an endpoint the daemon may bind: tcp://HOST:PORT, ipc or
 * inproc. Whether a tcp endpoint may be beyond loopback depends on
 * [security] (config_remote_problem, config_check.c). */
static int check_endpoint(const char *value, char *why, size_t whylen)
{
    const char *host, *colon;

    if (strncmp(value, "ipc://", 6) == 0 || strncmp(value, "inproc://", 9) == 0) {
        if (value[value[0] == 'i' && value[1] == 'p' ? 6 : 9] == '\0') {
            config_say(why, whylen, "the address after :// is empty");
            return -EINVAL;
        }
        return 0;
    }
    if (strncmp(value, "tcp://", 6) != 0) {
        config_say(why, whylen, "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME");
        return -EINVAL;
    }
    host = value + 6;
    colon = strrchr(host, ':');
    if (!colon || colon == host || colon[1] == '\0') {
        config_say(why, whylen, "expected tcp://HOST:PORT");
        return -EINVAL;
    }
    if (strcmp(colon + 1, "*") != 0) {
        uint64_t port;
        if (parse_uint(colon + 1, &port) < 0 || port < 1 || port > 65535) {
            config_say(why, whylen, "port must be 1..65535 or *");
            return -EINVAL;
        }
    }
    if (!bindable_host(host, (size_t)(colon - host))) {
        config_say(why, whylen,
                   "%.*s is neither an address nor an interface of this machine; libzmq binds to "
                   "those, not to host names (for localhost write 127.0.0.1)",
                   (int)(colon - host), host);
        return -EINVAL;
    }
    /* Beyond loopback needs CURVE or an explicit insecure setting: a rule
     * of the whole config (config_remote_problem). */
    return 0;
}

bool config_endpoint_local(const char *value)
{
    const char *host, *colon;
    size_t hostlen;

    if (strncmp(value, "ipc://", 6) == 0 || strncmp(value, "inproc://", 9) == 0)
        return true;
    if (strncmp(value, "tcp://", 6) != 0)
        return false;
    host = value + 6;
    colon = strrchr(host, ':');
    if (!colon)
        return false;
    hostlen = (size_t)(colon - host);
    return (hostlen >= 4 && strncmp(host, "127.", 4) == 0) ||
           (hostlen == 5 && strncmp(host, "[::1]", 5) == 0) ||
           (hostlen == 2 && strncmp(host, "lo", 2) == 0);
}

/* A site's name travels in ReplicateRequest.site and labels metrics: an id. */
static int check_site(const char *value, char *why, size_t whylen)
{
    if (!wire_id_valid(value)) {
        config_say(why, whylen, "expected 1..64 of [A-Za-z0-9._-]");
        return -EINVAL;
    }
    return 0;
}

/* The control socket is for the local operator only: ipc://, whose file
 * permissions are its access control. */
static int check_control(const char *value, char *why, size_t whylen)
{
    if (strncmp(value, "ipc://", 6) != 0 || value[6] == '\0') {
        config_say(why, whylen, "expected ipc://PATH (the control socket is local only)");
        return -EINVAL;
    }
    return 0;
}

const config_option_t *config_find_option(const char *section, const char *key)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(config_options[i].section, section) == 0 &&
            strcmp(config_options[i].key, key) == 0)
            return &config_options[i];
    return NULL;
}

bool config_known_section(const char *section)
{
    for (size_t i = 0; i < N_SECTIONS; i++)
        if (strcmp(sections[i], section) == 0)
            return true;
    return false;
}

static void default_database(char *buf, size_t size)
{
    const char *dir = getenv("STATE_DIRECTORY");

    if (dir && dir[0] != '\0') {
        /* systemd passes a ':'-separated list when several are configured. */
        size_t len = strcspn(dir, ":");
        snprintf(buf, size, "%.*s/parksync.db", (int)len, dir);
    } else {
        snprintf(buf, size, "./parksync.db");
    }
}

/* The host name up to its first character an id may not hold, at most
 * an id's length: "db1.example.org" stays whole, "my host" is "my". */
static void default_site(char *buf, size_t size)
{
    char host[256] = "";
    size_t n;

    if (gethostname(host, sizeof host - 1) < 0)
        host[0] = '\0';
    n = strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
    if (n > WIRE_MAX_ID)
        n = WIRE_MAX_ID;
    if (n == 0)
        snprintf(buf, size, "parksync");
    else
        snprintf(buf, size, "%.*s", (int)n, host);
}

void config_init(config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        /* The defaults are written as the file would write them and go
         * through the same parser: they cannot disagree with the bounds. */
        if (config_options[i].def &&
            config_set_option(cfg, &config_options[i], config_options[i].def, NULL, 0) < 0)
            abort();
    }
    default_database(cfg->database, sizeof cfg->database);
    default_site(cfg->site, sizeof cfg->site);
    if (wire_control_endpoint_default(cfg->control, sizeof cfg->control) < 0)
        snprintf(cfg->control, sizeof cfg->control, "ipc:///tmp/parksync-control");
}

int config_set(config_t *cfg, const char *section, const char *key, const char *value, char *err,
               size_t errlen)
{
    const config_option_t *opt = config_find_option(section, key);

    if (!opt) {
        config_say(err, errlen, "unknown option [%s] %s", section, key);
        return -ENOENT;
    }
    return config_set_option(cfg, opt, value, err, errlen);
}

/* ---------------------------------------------------------------- printing */

const char *config_trade_rule_name(Parksync__V1__TradeRule rule)
{
    for (size_t i = 0; rule_choices[i].name; i++)
        if (rule_choices[i].value == (int)rule)
            return rule_choices[i].name;
    return NULL;
}

/* The shortest text strtod reads back to exactly v. */
static void format_double(char *buf, size_t size, double v)
{
    if (v == trunc(v) && fabs(v) < 1e15) {
        snprintf(buf, size, "%.1f", v); /* 10.0, 1.0: plainly a number with a fraction */
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* keys = ..., as Z85 (files are read at load). */
static void print_keys(FILE *out, const char (*keys)[CONFIG_KEY_LEN], size_t n)
{
    if (n == 0)
        return;
    fprintf(out, "# CURVE public keys (Z85) that authenticate as this name\nkeys = ");
    for (size_t j = 0; j < n; j++)
        fprintf(out, "%s%s", j ? ", " : "", keys[j]);
    fprintf(out, "\n");
}

/* A [peer NAME] section. The parser refuses empty values, so every
 * section it made sets one key at least and reads back. */
static void print_peer(FILE *out, const config_peer_t *p)
{
    fprintf(out, "\n[peer %s]\n", p->name);
    if (p->n_endpoints > 0) {
        fprintf(out, "# its query endpoints, tried in turn: this site pulls from it\nendpoints = ");
        for (size_t j = 0; j < p->n_endpoints; j++)
            fprintf(out, "%s%s", j ? ", " : "", p->endpoints[j]);
        fprintf(out, "\n");
    } else {
        fprintf(out, "# no endpoints: this site does not pull from it\n");
    }
    if (p->key[0])
        fprintf(out,
                "# its CURVE public key (Z85): the server key pulls from it use, and the key "
                "it is admitted by\nkey = %s\n",
                p->key);
    if (p->all_countries) {
        fprintf(out, "# the countries whose records it may bring\ncountries = *\n");
    } else if (p->n_countries > 0) {
        fprintf(out, "# the countries whose records it may bring\ncountries = ");
        for (size_t j = 0; j < p->n_countries; j++)
            fprintf(out, "%s%s", j ? ", " : "", p->countries[j]);
        fprintf(out, "\n");
    }
}

int config_print(const config_t *cfg, FILE *out)
{
    const char *section = NULL;
    char value[CONFIG_PATH_MAX + 32];

    fprintf(out, "# parksyncd effective configuration\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option_t *opt = &config_options[i];
        const void *field = (const char *)cfg + opt->offset;

        if (!section || strcmp(section, opt->section) != 0) {
            section = opt->section;
            fprintf(out, "\n[%s]\n", section);
        }
        switch (opt->type) {
        case OPT_PATH:
        case OPT_ENDPOINT:
            snprintf(value, sizeof value, "%s", (const char *)field);
            break;
        case OPT_ENUM: {
            int v =
                opt->size == sizeof(int) ? *(const int *)field : (int)load_int(field, opt->size);
            snprintf(value, sizeof value, "?");
            for (size_t c = 0; opt->choices[c].name; c++)
                if (opt->choices[c].value == v)
                    snprintf(value, sizeof value, "%s", opt->choices[c].name);
            break;
        }
        case OPT_UINT:
            snprintf(value, sizeof value, "%" PRIu64, load_int(field, opt->size));
            break;
        case OPT_DOUBLE:
            format_double(value, sizeof value, *(const double *)field);
            break;
        case OPT_ACK: {
            uint64_t n = load_int(field, opt->size);
            if (n == 0)
                snprintf(value, sizeof value, "local");
            else
                snprintf(value, sizeof value, "peers:%" PRIu64, n);
            break;
        }
        }
        fprintf(out, "# %s\n%s = %s\n", opt->help, opt->key, value);
    }
    if (cfg->n_ministries == 0)
        fprintf(out, "\n# no [ministry NAME] section: authority is off, every producer may "
                     "write everything\n");
    for (size_t i = 0; i < cfg->n_ministries; i++) {
        const config_ministry_t *m = &cfg->ministries[i];
        fprintf(out,
                "\n[ministry %s]\n# owns the parks, residents and country reports of "
                "its country and its side of trade\ncountry = %s\n",
                m->name, m->country);
        fprintf(out, "# producer ids that speak for this ministry\nproducers = ");
        for (size_t j = 0; j < m->n_producers; j++)
            fprintf(out, "%s%s", j ? ", " : "", m->producers[j]);
        fprintf(out, "\n");
        if (m->n_grants > 0) {
            fprintf(out, "# extra rights: XX (every kind) or KIND:XX\ngrants = ");
            for (size_t j = 0; j < m->n_grants; j++) {
                const config_grant_t *g = &m->grants[j];
                const char *kn = wire_kind_name(g->kind);
                fprintf(out, "%s%s%s%s", j ? ", " : "", kn ? kn : "", kn ? ":" : "", g->country);
            }
            fprintf(out, "\n");
        }
        print_keys(out, m->keys, m->n_keys);
    }
    for (size_t i = 0; i < cfg->n_subscribers; i++) {
        const config_subscriber_t *sub = &cfg->subscribers[i];
        fprintf(out, "\n[subscriber %s]\n", sub->name);
        print_keys(out, sub->keys, sub->n_keys);
    }
    if (cfg->n_peers == 0)
        fprintf(out, "\n# no [peer NAME] section: this site pulls from no other site, and "
                     "none is known by name\n");
    for (size_t i = 0; i < cfg->n_peers; i++)
        print_peer(out, &cfg->peers[i]);
    fflush(out);
    return ferror(out) ? -EIO : 0;
}
