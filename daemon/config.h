/*
 * config.h - parksyncd's configuration: defaults, the INI file, checks.
 *
 * Every option is one row of a declarative table in config.c (section,
 * key, type, default, bounds, validator, help). Loading parses a file
 * into a fresh struct that starts from the defaults, then validates the
 * struct as a whole; the caller's struct is written only on success, so an
 * invalid reload keeps the running config.
 *
 * The file (README.md documents it):
 *   [daemon]    database, log_level
 *   [endpoints] ingest, publish, query, control
 *   [store]     synchronous, changelog_keep, max_future_skew_s, conflicts_keep,
 *               conflicts_keep_days, defer_rows, cache_mib
 *   [trade]     rule, threshold_pct, cif_fob_factor
 *   [limits]    batch_max, summary_interval_ms, heartbeat_ms, summary_republish_s,
 *               max_streams, max_streams_per_client, stream_idle_ms, query_hwm,
 *               publish_hwm, ingest_hwm, max_connections, handshake_timeout_ms,
 *               max_producers, max_subscriptions
 *   [security]  curve, secret_key_file, subscriber_auth, allow_insecure_remote
 *   [ministry NAME] country, producers, grants, keys (any number, one per ministry)
 *   [metrics]   http
 *   [http]      listen, allow_remote
 *   [subscriber NAME] keys                        (any number; CURVE clients that
 *                                                   are not ministries)
 *   [site]      name, ack_after, pull_wait_ms, peer_timeout_ms
 *   [peer NAME] endpoints, key, countries          (any number; other sites: what
 *                                                   this one pulls, who may pull)
 */
#ifndef PARKSYNCD_CONFIG_H
#define PARKSYNCD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "parksync.pb-c.h"

#define CONFIG_PATH_MAX        4096             /* bytes of the database path, with NUL */
#define CONFIG_ENDPOINT_MAX    256              /* bytes of an endpoint, with NUL */
#define CONFIG_FILE_NAME       "parksyncd.conf" /* looked up in $CONFIGURATION_DIRECTORY */
#define CONFIG_ID_MAX          65               /* bytes of a ministry or producer id, with NUL */
#define CONFIG_MAX_MINISTRIES  16               /* [ministry NAME] sections */
#define CONFIG_MAX_PRODUCERS   16               /* producer ids per ministry */
#define CONFIG_MAX_GRANTS      16               /* grants per ministry */
#define CONFIG_MAX_KEYS        8                /* CURVE public keys per ministry or subscriber */
#define CONFIG_MAX_SUBSCRIBERS 64               /* [subscriber NAME] sections */
#define CONFIG_KEY_LEN         41               /* bytes of a Z85 public key, with NUL */
#define CONFIG_MAX_PEERS       16               /* [peer NAME] sections */
#define CONFIG_PEER_ENDPOINTS  4                /* endpoints of one peer, tried in turn */
#define CONFIG_PEER_COUNTRIES  32               /* countries one peer may bring */

/* One extra right of a ministry: records of `kind` (UNSPECIFIED: every
 * kind) whose key country (trade: reporter) is `country`. */
typedef struct config_grant {
    Parksync__V1__RecordKind kind; /* UNSPECIFIED: park, resident, trade and country */
    char country[3];               /* ISO 3166-1 alpha-2 */
} config_grant_t;

/* [ministry NAME]: who speaks for a country. */
typedef struct config_ministry {
    char name[CONFIG_ID_MAX];                            /* NAME of the section */
    char country[3];                                     /* country = XX */
    char producers[CONFIG_MAX_PRODUCERS][CONFIG_ID_MAX]; /* producers = A, B */
    size_t n_producers;                                  /* default: the NAME itself */
    config_grant_t grants[CONFIG_MAX_GRANTS];            /* grants = TJ, park:KZ */
    size_t n_grants;                                     /* grants used */
    char keys[CONFIG_MAX_KEYS][CONFIG_KEY_LEN];          /* keys = Z85 or FILE.pub, ... */
    size_t n_keys;                                       /* keys used */
} config_ministry_t;

/* [subscriber NAME]: a CURVE client that reads (publish, query) but is no
 * ministry. */
typedef struct config_subscriber {
    char name[CONFIG_ID_MAX];                   /* NAME of the section */
    char keys[CONFIG_MAX_KEYS][CONFIG_KEY_LEN]; /* keys = Z85 or FILE.pub, ... */
    size_t n_keys;                              /* keys used */
} config_subscriber_t;

/* [peer NAME]: another site. This one pulls from its query socket at
 * `endpoints` (none: it only pulls from us), and admits it, by `key`, on
 * its own query socket. */
typedef struct config_peer {
    char name[CONFIG_ID_MAX];                                   /* NAME of the section */
    char endpoints[CONFIG_PEER_ENDPOINTS][CONFIG_ENDPOINT_MAX]; /* endpoints = a, b */
    size_t n_endpoints;                                         /* none: not pulled */
    char key[CONFIG_KEY_LEN];                                   /* key = Z85 or FILE.pub; "" */
    char countries[CONFIG_PEER_COUNTRIES][3];                   /* countries = AZ, TJ */
    size_t n_countries;                                         /* none: it brings nothing */
    bool all_countries;                                         /* countries = * */
} config_peer_t;

typedef struct config {
    /* [daemon] */
    char database[CONFIG_PATH_MAX]; /* SQLite file */
    log_level_t log_level;          /* most verbose level written */
    /* [endpoints] */
    char ingest[CONFIG_ENDPOINT_MAX];  /* SUB binds here */
    char publish[CONFIG_ENDPOINT_MAX]; /* PUB binds here */
    char query[CONFIG_ENDPOINT_MAX];   /* ROUTER binds here */
    char control[CONFIG_ENDPOINT_MAX]; /* operator ROUTER binds here (ipc only) */
    /* [store] */
    bool synchronous_full;        /* PRAGMA synchronous FULL (true) or NORMAL */
    uint64_t changelog_keep;      /* revisions kept in the change log; 0 = all */
    uint64_t max_future_skew_s;   /* event times further ahead are refused, s; 0 = off */
    uint64_t conflicts_keep;      /* newest conflict rows kept, with their claims; 0 = all */
    uint32_t conflicts_keep_days; /* older conflict rows (and claims) are dropped, days; 0 = off */
    uint64_t defer_rows;          /* resident rows a commit may leave to the change log; 0 = none */
    uint64_t cache_mib;           /* the writer's SQLite page cache, MiB */
    /* [trade] */
    Parksync__V1__TradeRule trade_rule; /* how a flow's value is chosen */
    double threshold_pct;               /* discrepancy flag threshold, percent */
    double cif_fob_factor;              /* importer's figure vs exporter's * this */
    /* [limits] */
    uint32_t batch_max;              /* updates per transaction */
    uint32_t summary_interval_ms;    /* least time between summary refreshes, ms */
    uint32_t heartbeat_ms;           /* heartbeat period, ms */
    uint32_t summary_republish_s;    /* summaries published again this often, s; 0 = off */
    uint32_t max_streams;            /* concurrent snapshot/changes streams */
    uint32_t max_streams_per_client; /* streams of one query connection (<= max_streams - 1) */
    uint32_t stream_idle_ms;         /* a stream delivering nothing this long is dropped, ms */
    uint32_t query_hwm;              /* replies queued per query connection (ZMQ_SNDHWM) */
    uint32_t ingest_hwm;             /* updates queued in the ingest SUB before ZeroMQ drops */
    uint32_t publish_hwm;            /* publications queued per subscriber before ZeroMQ drops */
    uint32_t max_connections;        /* open connections per data socket */
    uint32_t handshake_timeout_ms;   /* ZMQ_HANDSHAKE_IVL of the data sockets, ms */
    uint32_t max_producers;          /* authority off: producer ids the database takes; 0 = any */
    uint32_t max_subscriptions;      /* (connection, topic) pairs applied on publish, daemon-wide */
    /* [ministry NAME]; none: authority is off (every producer writes everything) */
    config_ministry_t ministries[CONFIG_MAX_MINISTRIES];
    size_t n_ministries; /* sections used */
    /* [security] */
    bool curve;                            /* CURVE + ZAP on ingest, publish and query */
    char secret_key_file[CONFIG_PATH_MAX]; /* the daemon's Z85 secret key (curve on) */
    bool subscriber_auth;                  /* publish and query admit listed keys only;
                                              unless the file says, = curve */
    bool allow_insecure_remote;            /* non-loopback endpoints without CURVE (warned) */
    /* [subscriber NAME] */
    config_subscriber_t subscribers[CONFIG_MAX_SUBSCRIBERS];
    size_t n_subscribers; /* sections used */
    /* [metrics] */
    char metrics_http[CONFIG_ENDPOINT_MAX]; /* "off" or loopback HOST:PORT serving /metrics */
    /* [http] */
    char http_listen[CONFIG_ENDPOINT_MAX]; /* "off" or IP:PORT serving the web page */
    bool http_allow_remote;                /* http_listen may be beyond loopback (warned) */
    /* [site] */
    char site[CONFIG_ID_MAX]; /* this site's name, as peers see it; default: the host name */
    uint32_t ack_after_peers; /* ack_after = peers:N (N); 0: local */
    uint32_t pull_wait_ms;    /* a pull that finds nothing waits this long for a change */
    uint32_t peer_timeout_ms; /* no reply this long: the peer's next endpoint */
    /* [peer NAME] */
    config_peer_t peers[CONFIG_MAX_PEERS];
    size_t n_peers; /* sections used */
} config_t;

/* Fills cfg with the built-in defaults. The database defaults to
 * $STATE_DIRECTORY/parksync.db (first directory of the list) when
 * STATE_DIRECTORY is set, else ./parksync.db. */
void config_init(config_t *cfg);

/* Loads path (NULL: defaults only) over the defaults into a fresh struct,
 * validates it as a whole and only then copies it to *out. Returns 0, or
 * -ENOENT/-EACCES/... when the file cannot be read, -EINVAL when it is
 * invalid; err then holds one line such as
 * "parksyncd.conf:7: [limits] batch_max = 0 is out of range (1..100000)". */
int config_load(const char *path, config_t *out, char *err, size_t errlen);

/* Sets one option from its text as the file would (used for command-line
 * overrides). Returns 0, or -EINVAL / -ENOENT (unknown option) with a
 * message "[section] key ..." in err. */
int config_set(config_t *cfg, const char *section, const char *key, const char *value, char *err,
               size_t errlen);

/* Checks the struct as a whole (what no single option can check). Returns
 * 0 or -EINVAL with a message in err. */
int config_validate(const config_t *cfg, char *err, size_t errlen);

/* Writes the effective configuration as an INI file that config_load
 * reads back to the same struct: every option, with its help as a
 * comment. Returns 0 or -EIO. */
int config_print(const config_t *cfg, FILE *out);

/* True when a and b have the same [peer] sections in the same order:
 * names, endpoints, key and countries. */
bool config_peers_equal(const config_t *a, const config_t *b);

/* True when endpoint is ipc://, inproc:// or tcp:// on a loopback address. */
bool config_endpoint_local(const char *endpoint);

/* Text of the trade rule as the file spells it ("importer-first", ...). */
const char *config_trade_rule_name(Parksync__V1__TradeRule rule);

#endif /* PARKSYNCD_CONFIG_H */
