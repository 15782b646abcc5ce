/*
 * syncer.h - the WAL's fdatasync on a thread of its own, so that the loop
 * takes in, merges and commits the next batch while the disk makes the
 * last one durable.
 *
 * With [store] synchronous = full the writer's connection runs SQLite's
 * NORMAL: a commit writes its WAL frames and returns without a sync (the
 * file stays consistent across a crash; SQLite syncs the WAL itself
 * before every checkpoint). This thread then syncs the WAL through a
 * descriptor of its own on the same file, and only once that sync has
 * returned does the loop tell anyone about the commits it covers: acks,
 * publications, snapshots, the producers' positions (server_int.h,
 * "durable"). A commit is acknowledged after an fsync exactly as under
 * SQLite's FULL; the loop no longer waits for it. At 20,000 updates/s,
 * 79 % of the loop's time was spent in commits, nearly all of it in the
 * sync.
 *
 * The thread shares no memory with the loop but the request and the
 * answer, which travel over an inproc PAIR (the CZMQ actor pattern, as
 * checkpoint.h). One sync is in flight at a time; it covers every frame
 * written before it began.
 */
#ifndef PARKSYNCD_SYNCER_H
#define PARKSYNCD_SYNCER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct syncer syncer_t;

/* Starts the thread for the WAL at path (store_wal_path: SQLite's own
 * name for it, which a link to the database does not change), opened at
 * the first sync. Returns it, or NULL after logging why. */
syncer_t *syncer_new(void *zctx, const char *wal);

/* The PAIR the loop polls for ZMQ_POLLIN: a sync ended. */
void *syncer_socket(const syncer_t *y);

/* Begins a sync of everything written to the WAL so far. 0, or -errno
 * (-EBUSY: one is in flight). */
int syncer_start(syncer_t *y);

/* Syncs the WAL on the caller's thread, when none is in flight: 0 or
 * -errno (-EBUSY: one is). */
int syncer_sync_here(syncer_t *y);

/* True while a sync is in flight. */
bool syncer_busy(const syncer_t *y);

/* The end of the sync in flight: 1 when it ended (its outcome, 0 or
 * -errno, in *result), 0 when it goes on (only when !wait). With wait,
 * blocks until it ends. -EINVAL when none is in flight. */
int syncer_done(syncer_t *y, bool wait, int *result);

/* How long the last sync that ended took, us. */
int64_t syncer_last_us(const syncer_t *y);

/* Stops the thread (after the sync in flight) and frees it. NULL-safe;
 * sets *yp = NULL. */
void syncer_destroy(syncer_t **yp);

#endif /* PARKSYNCD_SYNCER_H */
