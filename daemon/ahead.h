/*
 * ahead.h - producers ahead of the database: updates that keep arriving
 * beyond last + 1 while last + 1 itself never comes.
 *
 * A gap is normal for a moment: PUB/SUB dropped an update and the
 * producer sends everything after its last ack again within its resend
 * timeout, so last + 1 arrives. When the lowest sequence seen beyond
 * last + 1 is still above it AHEAD_GRACE_MS after the first such gap, the
 * producer is ahead of this database: last + 1 .. lowest - 1 are missing,
 * most likely acknowledged by an earlier database (a restored backup) and
 * deleted from the producer's outbox, so they will never come. The loop
 * logs that once per producer (ahead_due) and `parksync status` shows
 * the range (ahead_missing) until the producer's sequence moves again.
 *
 * Memory is bounded: at most AHEAD_MAX producers are followed at once
 * (more are not tracked, and counted); entries go when the sequence moves.
 */
#ifndef PARKSYNCD_AHEAD_H
#define PARKSYNCD_AHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define AHEAD_GRACE_MS 3000 /* ms a gap may last before the producer counts as ahead */
#define AHEAD_MAX      1024 /* producers followed at once */

/* One producer with a gap. */
typedef struct ahead_entry {
    char id[WIRE_MAX_ID + 1]; /* producer id */
    uint64_t last;            /* its last applied sequence when the gap was seen */
    uint64_t low;             /* lowest sequence seen beyond last + 1 since */
    int64_t since_ms;         /* monotonic ms of the first such gap */
    bool declared;            /* ahead: logged, shown by status */
} ahead_entry_t;

typedef struct ahead {
    ahead_entry_t *e;   /* n entries, unordered */
    size_t n;           /* entries used */
    size_t cap;         /* entries allocated */
    uint64_t untracked; /* gaps not followed: the table was full or out of memory */
} ahead_t;

/* Notes an update `seq` of producer id refused as a gap while its last
 * applied sequence is `last` (seq > last + 1). */
void ahead_gap(ahead_t *a, const char *id, uint64_t last, uint64_t seq, int64_t now_ms);

/* Forgets producer id: its sequence moved (an update was applied or
 * consumed), so whatever gap it had is closed. */
void ahead_clear(ahead_t *a, const char *id);

/* Called with each producer that has just become ahead: missing from..to. */
typedef void (*ahead_fn)(void *arg, const char *id, uint64_t from, uint64_t to);

/* Declares the producers whose gap has lasted AHEAD_GRACE_MS, calling fn
 * once for each (once per gap, however long it lasts). */
void ahead_due(ahead_t *a, int64_t now_ms, ahead_fn fn, void *arg);

/* True when producer id is declared ahead, with the missing sequences in
 * *from..*to. */
bool ahead_missing(const ahead_t *a, const char *id, uint64_t *from, uint64_t *to);

/* Releases the memory; a is left empty and reusable. */
void ahead_free(ahead_t *a);

#endif /* PARKSYNCD_AHEAD_H */
