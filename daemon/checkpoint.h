/*
 * checkpoint.h - WAL checkpoints and integrity checks on a thread of
 * their own.
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
 *
 * The same thread runs SQLite's quick_check when the loop asks (`parksync
 * check` on the live database, and every backup's copy before it takes
 * its name): it reads the whole file, seconds on a large one, which the
 * loop must not wait for. The answer comes back on the pipe; the loop
 * polls checkpoint_socket while checkpoint_checking.
 */
#ifndef PARKSYNCD_CHECKPOINT_H
#define PARKSYNCD_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

#define CHECKPOINT_PERIOD_MS 200  /* time between two checkpoints, ms */
#define CHECKPOINT_HURRY_MS  1    /* between two while the writer waits for them */
#define CHECKPOINT_HELD_MS   20   /* the same, while a reader holds part of the WAL */
#define CHECK_PATH_MAX       1100 /* bytes of a path to check, with NUL */

typedef struct checkpoint checkpoint_t;

/* The answer to a check: rc 0 (quick_check found nothing), -EUCLEAN
 * (findings in message) or another negative errno (why in message). */
typedef struct check_result {
    int rc;
    char message[400];
} check_result_t;

/* Opens a checkpoint connection on the database at path and starts the
 * thread. Returns it, or NULL after logging why. */
checkpoint_t *checkpoint_new(void *zctx, const char *path);

/* Wall-clock time (us since 1970 UTC) of the last checkpoint that copied
 * the whole WAL back (no reader held a frame); 0 before the first. Any
 * thread. */
int64_t checkpoint_last_complete_us(const checkpoint_t *c);

/* Where the last checkpoint left the WAL (store_wal_reset wants it);
 * zeros before the first. Any thread. */
void checkpoint_wal(const checkpoint_t *c, store_wal_t *w);

/* Checkpoints that failed (logged, rate-limited). Any thread. */
uint64_t checkpoint_failures(const checkpoint_t *c);

/* While checkpoints fail (the last one did): when the run of failures
 * began (us since 1970 UTC), with the last errno in *err; 0 otherwise.
 * Any thread. */
int64_t checkpoint_failing(const checkpoint_t *c, int *err);

/* The loop's side of a check. checkpoint_check asks for a quick_check of
 * the file at path (NULL: the live database): 0, -EBUSY while another is
 * running, -EINVAL for a path too long. checkpoint_check_result reads
 * the answer when it has come (true) without blocking; poll
 * checkpoint_socket for ZMQ_POLLIN while checkpoint_checking. */
int checkpoint_check(checkpoint_t *c, const char *path);
bool checkpoint_checking(const checkpoint_t *c);
void *checkpoint_socket(checkpoint_t *c);
bool checkpoint_check_result(checkpoint_t *c, check_result_t *r);

/* Stops the thread (after the checkpoint it may be running), closes its
 * connection. NULL-safe; sets *cp = NULL. */
void checkpoint_destroy(checkpoint_t **cp);

#endif /* PARKSYNCD_CHECKPOINT_H */
