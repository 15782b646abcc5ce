/*
 * config.c - see config.h.
 *
 * Sections: the option table; parsing one value; the INI reader; whole
 * checks; printing.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <sys/stat.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "keys.h"
#include "metrics.h"
#include "wire.h"

/* ---------------------------------------------------------------- the table */

typedef enum opt_type {
    OPT_PATH,     /* non-empty text, at most `size` - 1 bytes */
    OPT_ENDPOINT, /* a ZeroMQ endpoint the daemon can bind safely */
    OPT_ENUM,     /* one of `choices`, stored as int (size 4) or bool (size 1) */
    OPT_UINT,     /* decimal integer in [umin, umax], stored in `size` bytes */
    OPT_DOUBLE,   /* decimal number in [dmin, dmax] */
} opt_type_t;

typedef struct opt_choice {
    const char *name; /* as written in the file */
    int value;        /* stored value */
} opt_choice_t;

typedef struct config_option {
    const char *section;
    const char *key;
    opt_type_t type;
    size_t offset;               /* of the field in config_t */
    size_t size;                 /* of the field, bytes */
    const char *def;             /* default as the file spells it; NULL: computed */
    uint64_t umin, umax;         /* OPT_UINT bounds, inclusive */
    double dmin, dmax;           /* OPT_DOUBLE bounds, inclusive */
    const opt_choice_t *choices; /* OPT_ENUM, ended by a NULL name */
    int (*check)(const char *value, char *why, size_t whylen); /* extra rule or NULL */
    const char *help; /* one line for --check-config and docs */
} config_option_t;

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

#define FIELD(f) offsetof(config_t, f), sizeof(((config_t *)0)->f)

static const config_option_t options[] = {
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
     synchronous_choices, NULL, "full | normal (SQLite PRAGMA synchronous)"},
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
};

#define N_OPTIONS (sizeof options / sizeof options[0])

static const char *const sections[] = {"daemon", "endpoints", "store",  "trade",
                                       "limits", "security",  "metrics"};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

/* ---------------------------------------------------------------- one value */

__attribute__((format(printf, 3, 4))) static void say(char *buf, size_t len, const char *fmt, ...)
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
static int set_option(config_t *cfg, const config_option_t *opt, const char *value, char *why,
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
            say(why, whylen, "[%s] %s is empty", opt->section, opt->key);
            return -EINVAL;
        }
        if (strlen(value) >= opt->size) {
            say(why, whylen, "[%s] %s is too long (at most %zu bytes)", opt->section, opt->key,
                opt->size - 1);
            return -EINVAL;
        }
        if (opt->check && opt->check(value, buf, sizeof buf) < 0) {
            say(why, whylen, "[%s] %s = %s: %s", opt->section, opt->key, value, buf);
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
        say(why, whylen, "[%s] %s = %s: expected %s", opt->section, opt->key, value, buf);
        return -EINVAL;
    case OPT_UINT:
        rc = parse_uint(value, &u);
        if (rc == -EINVAL) {
            say(why, whylen, "[%s] %s = %s: not a whole number (expected %" PRIu64 "..%" PRIu64 ")",
                opt->section, opt->key, value, opt->umin, opt->umax);
            return -EINVAL;
        }
        if (rc < 0 || u < opt->umin || u > opt->umax) {
            say(why, whylen, "[%s] %s = %s is out of range (%" PRIu64 "..%" PRIu64 ")",
                opt->section, opt->key, value, opt->umin, opt->umax);
            return -EINVAL;
        }
        store_int(field, opt->size, u);
        return 0;
    case OPT_DOUBLE:
        rc = parse_double(value, &d);
        if (rc == -EINVAL) {
            say(why, whylen, "[%s] %s = %s: not a number (expected %g..%g)", opt->section, opt->key,
                value, opt->dmin, opt->dmax);
            return -EINVAL;
        }
        if (rc < 0 || d < opt->dmin || d > opt->dmax) {
            say(why, whylen, "[%s] %s = %s is out of range (%g..%g)", opt->section, opt->key, value,
                opt->dmin, opt->dmax);
            return -EINVAL;
        }
        *(double *)field = d;
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
 * [security] (remote_problem). */
static int check_endpoint(const char *value, char *why, size_t whylen)
{
    const char *host, *colon;

    if (strncmp(value, "ipc://", 6) == 0 || strncmp(value, "inproc://", 9) == 0) {
        if (value[value[0] == 'i' && value[1] == 'p' ? 6 : 9] == '\0') {
            say(why, whylen, "the address after :// is empty");
            return -EINVAL;
        }
        return 0;
    }
    if (strncmp(value, "tcp://", 6) != 0) {
        say(why, whylen, "expected tcp://HOST:PORT, ipc://PATH or inproc://NAME");
        return -EINVAL;
    }
    host = value + 6;
    colon = strrchr(host, ':');
    if (!colon || colon == host || colon[1] == '\0') {
        say(why, whylen, "expected tcp://HOST:PORT");
        return -EINVAL;
    }
    if (strcmp(colon + 1, "*") != 0) {
        uint64_t port;
        if (parse_uint(colon + 1, &port) < 0 || port < 1 || port > 65535) {
            say(why, whylen, "port must be 1..65535 or *");
            return -EINVAL;
        }
    }
    if (!bindable_host(host, (size_t)(colon - host))) {
        say(why, whylen,
            "%.*s is neither an address nor an interface of this machine; libzmq binds to "
            "those, not to host names (for localhost write 127.0.0.1)",
            (int)(colon - host), host);
        return -EINVAL;
    }
    /* Beyond loopback needs CURVE or an explicit insecure setting: a rule
     * of the whole config (remote_problem). */
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

/* Index of the first of ingest, publish, query that listens beyond
 * loopback although CURVE is off and insecure remote access is not
 * allowed; -1 when none. */
static int remote_problem(const config_t *cfg)
{
    const char *eps[3] = {cfg->ingest, cfg->publish, cfg->query};

    if (cfg->curve || cfg->allow_insecure_remote)
        return -1;
    for (int i = 0; i < 3; i++)
        if (!config_endpoint_local(eps[i]))
            return i;
    return -1;
}

static const char *const remote_names[3] = {"ingest", "publish", "query"};
#define REMOTE_WHY                                                                                 \
    "not a loopback address, and [security] curve = off: turn CURVE on "                           \
    "(see README, Security) or set [security] allow_insecure_remote = yes"

/* The control socket is for the local operator only: ipc://, whose file
 * permissions are its access control. */
static int check_control(const char *value, char *why, size_t whylen)
{
    if (strncmp(value, "ipc://", 6) != 0 || value[6] == '\0') {
        say(why, whylen, "expected ipc://PATH (the control socket is local only)");
        return -EINVAL;
    }
    return 0;
}

static const config_option_t *find_option(const char *section, const char *key)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].section, section) == 0 && strcmp(options[i].key, key) == 0)
            return &options[i];
    return NULL;
}

static bool known_section(const char *section)
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

void config_init(config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        /* The defaults are written as the file would write them and go
         * through the same parser: they cannot disagree with the bounds. */
        if (options[i].def && set_option(cfg, &options[i], options[i].def, NULL, 0) < 0)
            abort();
    }
    default_database(cfg->database, sizeof cfg->database);
    if (wire_control_endpoint_default(cfg->control, sizeof cfg->control) < 0)
        snprintf(cfg->control, sizeof cfg->control, "ipc:///tmp/parksync-control");
}

int config_set(config_t *cfg, const char *section, const char *key, const char *value, char *err,
               size_t errlen)
{
    const config_option_t *opt = find_option(section, key);

    if (!opt) {
        say(err, errlen, "unknown option [%s] %s", section, key);
        return -ENOENT;
    }
    return set_option(cfg, opt, value, err, errlen);
}

/* ---------------------------------------------------------------- the INI reader */

typedef struct parse_ctx {
    const char *path;
    FILE *file;
    config_t *cfg;
    int line;            /* physical line being parsed, 1-based */
    bool at_line_start;  /* the next read starts a new physical line */
    bool indented;       /* that line starts with blanks before text: a continuation to inih */
    int error_line;      /* line of the first error; 0 when none */
    char error[512];     /* the first error, without "file:line: " */
    int seen[N_OPTIONS]; /* line where each option was set; 0: not yet */
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
    size_t len;

    if (!s)
        return NULL;
    if (p->at_line_start) {
        p->line++;
        p->indented = (s[0] == ' ' || s[0] == '\t') && s[strspn(s, " \t\r\n")] != '\0';
    }
    len = strlen(s);
    p->at_line_start = len > 0 && s[len - 1] == '\n';
    if (!p->at_line_start && !feof(p->file)) {
        parse_error(p, "line too long (at most %d bytes)", num - 3);
        str[0] = '\0'; /* inih sees an empty line */
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
            say(why, whylen, "empty entry in the list");
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
        say(why, whylen, "producer id '%s' is not 1..64 of [A-Za-z0-9._-]", id);
        return -EINVAL;
    }
    if (m->n_producers == CONFIG_MAX_PRODUCERS) {
        say(why, whylen, "more than %d producers", CONFIG_MAX_PRODUCERS);
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
            say(why, whylen,
                "grant '%s': expected XX or park:XX, resident:XX, trade:XX, "
                "country:XX",
                text);
            return -EINVAL;
        }
        g.kind = wire_kind_from_name(grant_kinds[i]);
    }
    if (!wire_country_valid(country)) {
        say(why, whylen, "grant '%s': '%s' is not an ISO 3166-1 alpha-2 code", text, country);
        return -EINVAL;
    }
    if (m->n_grants == CONFIG_MAX_GRANTS) {
        say(why, whylen, "more than %d grants", CONFIG_MAX_GRANTS);
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
        say(why, whylen, "%s", err);
        return -EINVAL;
    }
    if (*kl->n == CONFIG_MAX_KEYS) {
        say(why, whylen, "more than %d keys", CONFIG_MAX_KEYS);
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

static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse_ctx_t *p = user;
    const config_option_t *opt;
    char why[400];
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
    if (strncmp(section, MINISTRY_PREFIX, strlen(MINISTRY_PREFIX)) == 0)
        return ministry_key(p, section + strlen(MINISTRY_PREFIX), key, value);
    if (strncmp(section, SUBSCRIBER_PREFIX, strlen(SUBSCRIBER_PREFIX)) == 0)
        return subscriber_key(p, section + strlen(SUBSCRIBER_PREFIX), key, value);
    if (!known_section(section)) {
        parse_error(p,
                    "unknown section [%s] (sections: daemon, endpoints, store, trade, "
                    "limits, security, ministry NAME, subscriber NAME)",
                    section);
        return 0;
    }
    opt = find_option(section, key);
    if (!opt) {
        char known[256] = "";
        for (size_t i = 0; i < N_OPTIONS; i++) {
            if (strcmp(options[i].section, section) != 0)
                continue;
            if (known[0])
                strncat(known, ", ", sizeof known - strlen(known) - 1);
            strncat(known, options[i].key, sizeof known - strlen(known) - 1);
        }
        parse_error(p, "unknown key '%s' in [%s] (keys: %s)", key, section, known);
        return 0;
    }
    idx = (size_t)(opt - options);
    if (p->seen[idx] != 0) {
        parse_error(p, "[%s] %s is set twice (first on line %d)", section, key, p->seen[idx]);
        return 0;
    }
    p->seen[idx] = p->line;
    if (set_option(p->cfg, opt, value, why, sizeof why) < 0) {
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
            say(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            return rc;
        }
        if (fstat(fileno(p.file), &st) == 0 && S_ISDIR(st.st_mode)) {
            say(err, errlen, "%s is a directory; -c wants the config file (e.g. %s/parksyncd.conf)",
                path, path);
            fclose(p.file);
            return -EISDIR;
        }
        rc = ini_parse_stream(reader, &p, handler, &p);
        if (ferror(p.file)) {
            say(err, errlen, "%s: read error", path);
            fclose(p.file);
            return -EIO;
        }
        fclose(p.file);
        if (p.error_line != 0) {
            say(err, errlen, "%s:%d: %s", path, p.error_line, p.error);
            return -EINVAL;
        }
        if (rc > 0) {
            say(err, errlen, "%s:%d: syntax error: expected [section] or key = value", path, rc);
            return -EINVAL;
        }
        if (rc < 0) {
            say(err, errlen, "%s: cannot parse (%d)", path, rc);
            return -ENOMEM;
        }
        if ((rc = remote_problem(&cfg)) >= 0) {
            const config_option_t *opt = find_option("endpoints", remote_names[rc]);
            const char *ep = (const char *)&cfg + opt->offset;
            say(err, errlen, "%s:%d: [endpoints] %s = %s: " REMOTE_WHY, path, p.seen[opt - options],
                remote_names[rc], ep);
            return -EINVAL;
        }
    }
    if (p.seen[find_option("security", "subscriber_auth") - options] == 0)
        cfg.subscriber_auth = cfg.curve; /* with CURVE, listed readers only unless told */
    for (size_t i = 0; i < cfg.n_ministries; i++) {
        /* a ministry without producers = speaks through a producer of its own name */
        config_ministry_t *m = &cfg.ministries[i];
        if (m->n_producers == 0)
            memcpy(m->producers[m->n_producers++], m->name, sizeof(m->name));
    }
    if (config_validate(&cfg, why, sizeof why) < 0) {
        say(err, errlen, "%s: %s", path ? path : "defaults", why);
        return -EINVAL;
    }
    *out = cfg;
    return 0;
}

/* ---------------------------------------------------------------- whole checks */

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
    int r = remote_problem(cfg);

    if (r >= 0) {
        const char *eps[3] = {cfg->ingest, cfg->publish, cfg->query};
        say(err, errlen, "[endpoints] %s = %s: " REMOTE_WHY, remote_names[r], eps[r]);
        return -EINVAL;
    }
    if (cfg->subscriber_auth && !cfg->curve) {
        say(err, errlen, "[security] subscriber_auth = on needs curve = on");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_subscribers; i++) {
        for (size_t j = 0; j < cfg->n_ministries; j++) {
            if (strcmp(cfg->subscribers[i].name, cfg->ministries[j].name) == 0) {
                say(err, errlen,
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
                say(err, errlen,
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
                say(err, errlen,
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
        say(err, errlen, "[daemon] database is empty");
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->n_ministries; i++) {
        const config_ministry_t *m = &cfg->ministries[i];
        if (!m->country[0]) {
            say(err, errlen, "[ministry %s] has no country = XX", m->name);
            return -EINVAL;
        }
        for (size_t a = 0; a < m->n_producers; a++) {
            for (size_t j = i; j < cfg->n_ministries; j++) {
                const config_ministry_t *o = &cfg->ministries[j];
                for (size_t b = j == i ? a + 1 : 0; b < o->n_producers; b++) {
                    if (strcmp(m->producers[a], o->producers[b]) == 0) {
                        say(err, errlen,
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
                say(err, errlen, "[endpoints] %s and %s are both %s; each needs its own", names[i],
                    names[j], eps[i]);
                return -EINVAL;
            }
        }
    }
    return validate_security(cfg, err, errlen);
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

int config_print(const config_t *cfg, FILE *out)
{
    const char *section = NULL;
    char value[CONFIG_PATH_MAX + 32];

    fprintf(out, "# parksyncd effective configuration\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const config_option_t *opt = &options[i];
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
    fflush(out);
    return ferror(out) ? -EIO : 0;
}
