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
 *   note(key TEXT PRIMARY KEY, value TEXT)               the application's notes
 *
 * Writes are batched: outbox_begin opens one transaction, outbox_add
 * stores updates in it, outbox_commit makes them durable together (and
 * advances meta.last_sequence). outbox_put is the one-update shorthand.
 * Functions return 0 or a negative errno; outbox_errmsg says more.
 */
#ifndef PARKSYNC_CLIENT_OUTBOX_H
#define PARKSYNC_CLIENT_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outbox outbox_t;

/* Called per stored update, in ascending sequence. Non-zero stops. */
typedef int (*outbox_row_fn)(void *arg, uint64_t sequence, const void *payload, size_t len);

/* Opens or creates the outbox at path for producer_id. Fails with -EEXIST
 * when the file belongs to another producer id, -EIO for SQLite errors.
 * NULL on failure with *err set; msg (when not NULL, size msglen) gets a
 * description. */
outbox_t *outbox_new(const char *path, const char *producer_id, int *err, char *msg, size_t msglen);

/* Highest sequence ever committed (meta.last_sequence), 0 when none. */
uint64_t outbox_last_sequence(const outbox_t *o);

/* Visits every stored update in ascending sequence. 0 or -EIO. */
int outbox_load(outbox_t *o, outbox_row_fn fn, void *arg);

/* Opens the write transaction of a batch; a no-op when one is open.
 * 0 or -EIO. */
int outbox_begin(outbox_t *o);

/* True while a batch transaction is open. */
bool outbox_in_batch(const outbox_t *o);

/* Stores one update in the open batch. 0, -EINVAL when no batch is open,
 * or -EIO (the batch must then be rolled back). */
int outbox_add(outbox_t *o, uint64_t sequence, const void *payload, size_t len);

/* Advances meta.last_sequence to the highest sequence added and commits
 * the batch. 0, or -EIO after which the batch is rolled back. A no-op
 * when no batch is open. */
int outbox_commit(outbox_t *o);

/* Abandons the open batch; a no-op when none is open. */
void outbox_rollback(outbox_t *o);

/* Stores one update and advances meta.last_sequence, in one transaction
 * of its own (or in the open batch). 0 or -EIO. */
int outbox_put(outbox_t *o, uint64_t sequence, const void *payload, size_t len);

/* Deletes every update up to and including sequence (inside the open
 * batch when there is one). 0 or -EIO. */
int outbox_ack(outbox_t *o, uint64_t sequence);

/* Copies the note stored under key into buf (NUL-terminated, truncated to
 * size). 0, -ENOENT when there is none, or -EIO. */
int outbox_note_get(outbox_t *o, const char *key, char *buf, size_t size);

/* Stores value under key (NULL deletes it), durably (inside the open
 * batch when there is one). 0 or -EIO. */
int outbox_note_set(outbox_t *o, const char *key, const char *value);

/* The last SQLite error message. */
const char *outbox_errmsg(const outbox_t *o);

/* Closes, rolling back an open batch; NULL-safe; sets *op = NULL. */
void outbox_destroy(outbox_t **op);

#endif /* PARKSYNC_CLIENT_OUTBOX_H */
