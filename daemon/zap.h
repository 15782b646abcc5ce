/*
 * zap.h - the daemon's ZAP handler (ZeroMQ RFC 27): who may connect.
 *
 * With [security] curve = on, every CURVE handshake on ingest, publish
 * and query asks this handler, which runs in its own thread on a REP
 * socket bound to inproc://zeromq.zap.01 in the daemon's ZeroMQ context.
 * It admits only the public keys the config lists, each mapped to one
 * name, and answers 400 to anything else. The admitted connection's
 * User-Id says who it is, with its role, so roles cannot be confused:
 *   "ministry:AZ-MOE"   a key of [ministry AZ-MOE]
 *   "subscriber:dash1"  a key of [subscriber dash1]
 *   "peer:tj-dushanbe"  the key of [peer tj-dushanbe], another site
 *   "anonymous"         any other key, on publish and query only, when
 *                       the config says subscriber_auth = off (the default
 *                       with CURVE is on; off is warned at start and reload)
 * Domains, one per server socket (ZMQ_ZAP_DOMAIN), carry the role rules:
 *   parksync.ingest     ministries only
 *   parksync.publish    ministries (acks), subscribers and peers
 *   parksync.query      ministries (producer state), subscribers and peers
 *                       (which pull from it)
 *
 * Fail closed: zap_new returns only once the handler is bound and
 * answering, and the server sockets are created after it and set
 * ZMQ_ZAP_ENFORCE_DOMAIN, so a handler that is gone refuses everyone.
 *
 * Threads share no mutable memory: the loop hands a new key table over
 * an inproc PAIR (zap_update), and the handler reports denials back over
 * the same pipe (zap_drain logs them, rate-limited, in the loop). The
 * counters are atomics.
 */
#ifndef PARKSYNCD_ZAP_H
#define PARKSYNCD_ZAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "keys.h"

#define ZAP_DOMAIN_INGEST   "parksync.ingest"  /* ZMQ_ZAP_DOMAIN of the ingest SUB */
#define ZAP_DOMAIN_PUBLISH  "parksync.publish" /* of the publish XPUB */
#define ZAP_DOMAIN_QUERY    "parksync.query"   /* of the query ROUTER */
#define ZAP_USER_MINISTRY   "ministry:"        /* User-Id prefix of a ministry */
#define ZAP_USER_SUBSCRIBER "subscriber:"      /* User-Id prefix of a subscriber */
#define ZAP_USER_PEER       "peer:"            /* User-Id prefix of a peer site */
#define ZAP_USER_ANONYMOUS  "anonymous"        /* User-Id of an unlisted reader */
#define ZAP_MAX_ENTRIES                                                                            \
    ((CONFIG_MAX_MINISTRIES + CONFIG_MAX_SUBSCRIBERS) * CONFIG_MAX_KEYS + CONFIG_MAX_PEERS)

typedef enum zap_role {
    ZAP_ROLE_MINISTRY = 1,   /* may publish updates, read acks and state */
    ZAP_ROLE_SUBSCRIBER = 2, /* may read */
    ZAP_ROLE_PEER = 3,       /* may read, and pull (replicate) */
} zap_role_t;

/* One admitted key. */
typedef struct zap_entry {
    uint8_t key[KEYS_BIN_LEN]; /* CURVE public key */
    zap_role_t role;
    char name[CONFIG_ID_MAX]; /* ministry, subscriber or peer name */
} zap_entry_t;

/* Everything the handler decides with; copied whole into the thread. */
typedef struct zap_table {
    bool subscriber_auth; /* publish/query admit listed keys only */
    size_t n;             /* entries used */
    zap_entry_t entries[ZAP_MAX_ENTRIES];
} zap_table_t;

/* True when a connection admitted under `old` might not be admitted
 * under `now`: a key removed or given another role or name, or
 * subscriber_auth turned on. */
bool zap_table_revokes(const zap_table_t *old, const zap_table_t *now);

typedef struct zap zap_t;

/* Builds the table from the [ministry], [subscriber] and [peer] keys. */
void zap_table_from_config(zap_table_t *t, const config_t *cfg);

/* Starts the handler thread in zctx and waits until it is bound and
 * answering. Returns it, or NULL after logging one line (e.g. another
 * handler is bound in this context). The table is copied. */
zap_t *zap_new(void *zctx, const zap_table_t *table);

/* Hands a new table to the handler; requests after this call use it.
 * 0 or a negative errno (the old table stays). */
int zap_update(zap_t *z, const zap_table_t *table);

/* The table in force: the one zap_new or the last good zap_update was
 * given. Valid until the next zap_update. */
const zap_table_t *zap_table(const zap_t *z);

/* Logs (rate-limited) the denials reported since the last call. Call from
 * the loop; never blocks. */
void zap_drain(zap_t *z);

/* Handshakes admitted and refused since start. */
uint64_t zap_allowed(const zap_t *z);
uint64_t zap_denied(const zap_t *z);

/* Stops the thread and closes its sockets; call before zmq_ctx_term.
 * NULL-safe; sets *zp = NULL. */
void zap_destroy(zap_t **zp);

#endif /* PARKSYNCD_ZAP_H */
