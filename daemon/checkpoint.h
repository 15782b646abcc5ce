/*
 * checkpoint.h - WAL checkpoints on a thread of their own.
 *
 * A checkpoint of a large database can take hundreds of milliseconds; if
 * the loop ran it (SQLite's automatic checkpoint runs after a commit, on
 * the committing connection) every publication and ack behind it would
 * wait: measured here, p99 latency at 1,000 updates/s went from 114 ms to
 * 1.1 ms once the writer stopped checkpointing. The store is opened with
 * background_checkpoint, and this thread runs PASSIVE checkpoints on its
 * own connection every CHECKPOINT_PERIOD_MS. It shares no memory with the
 * loop: it is told to stop over an inproc PAIR (the CZMQ actor pattern),
 * and its figures for status are atomics.
 */
#ifndef PARKSYNCD_CHECKPOINT_H
#define PARKSYNCD_CHECKPOINT_H

#include <stdint.h>

#define CHECKPOINT_PERIOD_MS 200 /* time between two checkpoints, ms */

typedef struct checkpoint checkpoint_t;

/* Opens a checkpoint connection on the database at path and starts the
 * thread. Returns it, or NULL after logging why. */
checkpoint_t *checkpoint_new(void *zctx, const char *path);

/* Wall-clock time (us since 1970 UTC) of the last checkpoint that copied
 * the whole WAL back (no reader held a frame); 0 before the first. Any
 * thread. */
int64_t checkpoint_last_complete_us(const checkpoint_t *c);

/* Checkpoints that failed (each logged). Any thread. */
uint64_t checkpoint_failures(const checkpoint_t *c);

/* Stops the thread (after the checkpoint it may be running), closes its
 * connection. NULL-safe; sets *cp = NULL. */
void checkpoint_destroy(checkpoint_t **cp);

#endif /* PARKSYNCD_CHECKPOINT_H */
