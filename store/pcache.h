/*
 * pcache.h - SQLite's own page cache, told when a truncation has
 * nothing to drop.
 *
 * Every commit ends with the pager truncating its page cache to the
 * database's size (pager_end_transaction), which costs SQLite's default
 * cache nothing unless it once held a page beyond that size: then it
 * scans every hash bucket and every page it holds. A B-tree balance that
 * renumbers its new pages passes one through a page number past 1 GiB
 * (the lock-byte page) for a moment, so after any commit that split or
 * merged pages, the next truncation scanned the whole cache: 8,192
 * buckets and about as many pages with the store's 32 MiB cache, about
 * a tenth of the loop's samples at 20,000 updates/s.
 *
 * pcache_setup installs, process-wide, SQLite's default page cache
 * behind a thin layer that keeps, for each cache, an upper bound of the
 * page numbers created in it and the few pages renumbered beyond that
 * bound, and passes a truncation on only when a page at or beyond the
 * limit may be there. Every other call goes straight to the default
 * cache.
 */
#ifndef PARKSYNC_STORE_PCACHE_H
#define PARKSYNC_STORE_PCACHE_H

#include <stdbool.h>
#include <stdint.h>

/* Installs the layer. Only before SQLite's first use in the process (its
 * configuration is refused after); false when it was not installed, and
 * SQLite's cache then works alone, as it always can. A second call finds
 * it installed and changes nothing. */
bool pcache_setup(void);

/* What the layer saw since the process started, over all its caches
 * (tests and benchmarks). */
typedef struct pcache_counts {
    uint64_t truncations; /* asked of the layer */
    uint64_t passed;      /* of those, passed on to SQLite's cache */
    uint64_t renumbered;  /* pages renumbered beyond their cache's bound */
} pcache_counts_t;

void pcache_counts(pcache_counts_t *out);

#endif /* PARKSYNC_STORE_PCACHE_H */
