/*
 * acks.h - when a producer hears that its updates are safe.
 *
 * With [site] ack_after = local (the default) an update is acknowledged
 * once it is committed here. With ack_after = peers:N it is acknowledged
 * once N other sites have stored a pull whose view opened after the
 * commit that applied it, so wiping this site's disk loses nothing a
 * producer was told is safe (proto/README.md, Replication). Commits are
 * numbered from 1 at start; a pull's last chunk says after which commit
 * its view opened (Chunk.commit), and the pulling site says, when it asks
 * again, which one it has stored. That view held the records and the
 * producers' positions of every commit up to it, those of updates that
 * changed no record included. A site counts for a producer only when it
 * takes every country the producer writes for (the caller's safe_of
 * decides). The commit safe at N sites is the N-th highest they stored.
 *
 * Per producer, acks keeps the last sequence it may be told (`safe`) and
 * at most two commits not yet safe: a third replaces the newer of them,
 * which only delays acks, never tells one too early. So memory stays two
 * entries a producer whatever the peers' lag. At start every producer's
 * position counts as commit 1: it is told nothing new until N sites have
 * stored a pull opened since this start.
 */
#ifndef PARKSYNCD_ACKS_H
#define PARKSYNCD_ACKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct acks acks_t;

/* Acks after `peers` sites (1 or more). NULL when out of memory. */
acks_t *acks_new(unsigned peers);
void acks_destroy(acks_t **ap);

/* The sites this site counts for acks. */
unsigned acks_peers(const acks_t *a);

/* Commit number `commit` left producer `id` at sequence `seq`. 0 or
 * -ENOMEM. */
int acks_commit(acks_t *a, const char *id, uint64_t seq, uint64_t commit);

/* For each producer with commits held, every commit up to
 * safe_of(safe_arg, id) is stored at enough sites: calls fn (NULL: none)
 * for each producer whose safe sequence moved, with it. */
typedef uint64_t (*acks_safe_fn)(void *arg, const char *id);
typedef void (*acks_fn)(void *arg, const char *id, uint64_t seq);
void acks_release(acks_t *a, acks_safe_fn safe_of, void *safe_arg, acks_fn fn, void *arg);

/* The sequence producer `id` may be told is safe (0: none yet). */
uint64_t acks_safe(const acks_t *a, const char *id);

/* The commit stored at `peers` of the sites in commits[0..n): the
 * peers-th highest, 0 when fewer sites than that. commits is reordered. */
uint64_t acks_nth_highest(uint64_t *commits, size_t n, unsigned peers);

#endif /* PARKSYNCD_ACKS_H */
