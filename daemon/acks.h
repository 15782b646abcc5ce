/*
 * acks.h - when a producer hears that its updates are safe.
 *
 * With [site] ack_after = local (the default) an update is acknowledged
 * once it is committed here. With ack_after = peers:N it is acknowledged
 * once N other sites have pulled and stored the commit that applied it,
 * so wiping this site's disk loses nothing a producer was told is safe
 * (proto/README.md, Replication). A site has stored through revision R
 * when it asks to replicate since R: it asks only from what it has
 * committed. The revision safe at N sites is the N-th highest of them.
 *
 * Per producer, acks keeps the last sequence it may be told (`safe`) and
 * at most two commits not yet safe: a third replaces the newer of them,
 * which only delays acks, never tells one too early. So memory stays two
 * entries a producer whatever the peers' lag. At start every producer's
 * position counts as committed at the head: it is told nothing new until
 * the peers have pulled that far.
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

/* A commit at revision `rev` left producer `id` at sequence `seq`.
 * 0 or -ENOMEM. */
int acks_commit(acks_t *a, const char *id, uint64_t seq, uint64_t rev);

/* Everything through `safe_rev` is stored at enough sites: calls fn for
 * each producer whose safe sequence moved, with it. */
typedef void (*acks_fn)(void *arg, const char *id, uint64_t seq);
void acks_release(acks_t *a, uint64_t safe_rev, acks_fn fn, void *arg);

/* The sequence producer `id` may be told is safe (0: none yet). */
uint64_t acks_safe(const acks_t *a, const char *id);

/* The revision stored at `peers` of the sites in revs[0..n): the
 * peers-th highest, 0 when fewer sites than that. revs is reordered. */
uint64_t acks_safe_revision(uint64_t *revs, size_t n, unsigned peers);

#endif /* PARKSYNCD_ACKS_H */
