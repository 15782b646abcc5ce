/*
 * outbox.h - a producer's durable outbox: updates written before they are
 * sent, deleted once the daemon acknowledges them.
 *
 * Internal to libparksync. One SQLite file per producer (WAL journal,
 * synchronous NORMAL: a commit survives a process crash without an fsync
 * per update; a power loss may drop the last commits, and the daemon's
 * acknowledged state plus go-back-N cover what is left):
 *   outbox(sequence INTEGER PRIMARY KEY, payload BLOB)   encoded Updates
 *   meta(producer_id TEXT, last_sequence INTEGER)        one row
 * Functions return 0 or a negative errno; outbox_errmsg says more.
 */
#ifndef PARKSYNC_CLIENT_OUTBOX_H
#define PARKSYNC_CLIENT_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

typedef struct outbox outbox_t;

/* Called per stored update, in ascending sequence. Non-zero stops. */
typedef int (*outbox_row_fn)(void *arg, uint64_t sequence, const void *payload, size_t len);

/* Opens or creates the outbox at path for producer_id. Fails with -EEXIST
 * when the file belongs to another producer id, -EIO for SQLite errors.
 * NULL on failure with *err set; msg (when not NULL, size msglen) gets a
 * description. */
outbox_t *outbox_new(const char *path, const char *producer_id, int *err, char *msg,
                     size_t msglen);

/* Highest sequence ever written (meta.last_sequence), 0 when none. */
uint64_t outbox_last_sequence(const outbox_t *o);

/* Visits every stored update in ascending sequence. 0 or -EIO. */
int outbox_load(outbox_t *o, outbox_row_fn fn, void *arg);

/* Stores one update and advances meta.last_sequence, in one transaction.
 * 0 or -EIO. */
int outbox_put(outbox_t *o, uint64_t sequence, const void *payload, size_t len);

/* Deletes every update up to and including sequence. 0 or -EIO. */
int outbox_ack(outbox_t *o, uint64_t sequence);

/* The last SQLite error message. */
const char *outbox_errmsg(const outbox_t *o);

/* Closes; NULL-safe; sets *op = NULL. */
void outbox_destroy(outbox_t **op);

#endif /* PARKSYNC_CLIENT_OUTBOX_H */
