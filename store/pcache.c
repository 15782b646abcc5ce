/*
 * pcache.c - SQLite's own page cache, told when a truncation has
 * nothing to drop (pcache.h).
 *
 * Each cache keeps this invariant: every page it holds has a number at
 * most `bound`, or is one of `high` (pages renumbered past the bound,
 * with their numbers). A truncation to `limit` drops the pages numbered
 * limit and above, so it has nothing to do when bound < limit and every
 * high page is below limit. Pages the default cache recycles on its own
 * leave the bound an overestimate, never an underestimate; when more
 * pages are renumbered high than `high` holds, the bound rises to cover
 * them. SQLite calls a cache's methods from one thread at a time (the
 * connection's), so a cache's fields need no lock; the counts are
 * shared by every connection of the process.
 */
#include "pcache.h"

#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>

#define HIGH_MAX 8 /* renumbered pages tracked; a balance uses one at a time */

typedef struct high_page {
    sqlite3_pcache_page *page;
    unsigned key;
} high_page_t;

typedef struct cache {
    sqlite3_pcache *inner;      /* the default cache's */
    unsigned bound;             /* no page but the high ones is numbered above */
    unsigned n_high;            /* entries of high in use */
    high_page_t high[HIGH_MAX]; /* pages numbered above bound */
} cache_t;

static sqlite3_pcache_methods2 inner_methods; /* SQLite's default */
static atomic_uint_fast64_t truncations, passed, renumbered;

static sqlite3_pcache *cache_inner(sqlite3_pcache *p)
{
    return ((cache_t *)p)->inner;
}

/* Takes page out of high, when it is there. */
static void high_forget(cache_t *c, const sqlite3_pcache_page *page)
{
    for (unsigned i = 0; i < c->n_high; i++)
        if (c->high[i].page == page) {
            c->high[i] = c->high[--c->n_high];
            return;
        }
}

static int layer_init(void *arg)
{
    (void)arg;
    return inner_methods.xInit(inner_methods.pArg);
}

static void layer_shutdown(void *arg)
{
    (void)arg;
    if (inner_methods.xShutdown)
        inner_methods.xShutdown(inner_methods.pArg);
}

static sqlite3_pcache *layer_create(int page_size, int extra_size, int purgeable)
{
    cache_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->inner = inner_methods.xCreate(page_size, extra_size, purgeable);
    if (!c->inner) {
        free(c);
        return NULL;
    }
    return (sqlite3_pcache *)c;
}

static void layer_cachesize(sqlite3_pcache *p, int pages)
{
    inner_methods.xCachesize(cache_inner(p), pages);
}

static int layer_pagecount(sqlite3_pcache *p)
{
    return inner_methods.xPagecount(cache_inner(p));
}

static sqlite3_pcache_page *layer_fetch(sqlite3_pcache *p, unsigned key, int create)
{
    cache_t *c = (cache_t *)p;
    sqlite3_pcache_page *page = inner_methods.xFetch(c->inner, key, create);

    if (page && key > c->bound)
        c->bound = key; /* created, or one of high found by its number */
    return page;
}

static void layer_unpin(sqlite3_pcache *p, sqlite3_pcache_page *page, int discard)
{
    cache_t *c = (cache_t *)p;

    if (discard)
        high_forget(c, page);
    inner_methods.xUnpin(c->inner, page, discard);
}

static void layer_rekey(sqlite3_pcache *p, sqlite3_pcache_page *page, unsigned old_key,
                        unsigned new_key)
{
    cache_t *c = (cache_t *)p;

    high_forget(c, page);
    if (new_key > c->bound) {
        atomic_fetch_add_explicit(&renumbered, 1, memory_order_relaxed);
        if (c->n_high < HIGH_MAX)
            c->high[c->n_high++] = (high_page_t){page, new_key};
        else
            c->bound = new_key;
    }
    inner_methods.xRekey(c->inner, page, old_key, new_key);
}

static void layer_truncate(sqlite3_pcache *p, unsigned limit)
{
    cache_t *c = (cache_t *)p;
    bool reaches = c->bound >= limit;

    for (unsigned i = 0; i < c->n_high && !reaches; i++)
        reaches = c->high[i].key >= limit;
    atomic_fetch_add_explicit(&truncations, 1, memory_order_relaxed);
    if (!reaches)
        return;
    atomic_fetch_add_explicit(&passed, 1, memory_order_relaxed);
    inner_methods.xTruncate(c->inner, limit);
    /* nothing at limit or beyond is left */
    if (limit > 0 && c->bound >= limit)
        c->bound = limit - 1;
    for (unsigned i = 0; i < c->n_high;)
        if (c->high[i].key >= limit)
            c->high[i] = c->high[--c->n_high];
        else
            i++;
}

static void layer_destroy(sqlite3_pcache *p)
{
    cache_t *c = (cache_t *)p;

    inner_methods.xDestroy(c->inner);
    free(c);
}

static void layer_shrink(sqlite3_pcache *p)
{
    if (inner_methods.xShrink)
        inner_methods.xShrink(cache_inner(p));
}

bool pcache_setup(void)
{
    static const sqlite3_pcache_methods2 layer = {
        .iVersion = 1,
        .xInit = layer_init,
        .xShutdown = layer_shutdown,
        .xCreate = layer_create,
        .xCachesize = layer_cachesize,
        .xPagecount = layer_pagecount,
        .xFetch = layer_fetch,
        .xUnpin = layer_unpin,
        .xRekey = layer_rekey,
        .xTruncate = layer_truncate,
        .xDestroy = layer_destroy,
        .xShrink = layer_shrink,
    };

    sqlite3_pcache_methods2 now;

    if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &now) != SQLITE_OK || now.xCreate == NULL ||
        now.xInit == NULL)
        return false;
    if (now.xCreate == layer_create)
        return true; /* installed already: the layer must not wrap itself */
    inner_methods = now;
    return sqlite3_config(SQLITE_CONFIG_PCACHE2, &layer) == SQLITE_OK;
}

void pcache_counts(pcache_counts_t *out)
{
    out->truncations = atomic_load_explicit(&truncations, memory_order_relaxed);
    out->passed = atomic_load_explicit(&passed, memory_order_relaxed);
    out->renumbered = atomic_load_explicit(&renumbered, memory_order_relaxed);
}
