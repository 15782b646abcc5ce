/*
 * sweep.c - the deferred rows written back to their table, a key range
 * a flush (store_int.h, the row cache).
 *
 * A sweep writes every row that waited when it began, in key order, so
 * that rows sharing a leaf page are written in the same commit and the
 * page once. Finding and sorting them used to be one pass of the loop
 * at the sweep's start: a walk over every cache entry and a sort of
 * 26,000 keys took 2.7-6.5 ms at 20,000 updates/s (bpftrace), and every
 * update arriving meanwhile waited. Now rows are listed as they are
 * deferred (defer_list), and the sweep takes the list a chunk a flush,
 * sorting each chunk as a run of pend_sort; once the list is taken, the
 * runs are merged as the rows are written.
 *
 * An entry's position is listed when it is deferred and not listed
 * already (pending_t.listed, kept when the entry is reused for another
 * row, so a position is never listed twice). The sweep takes the
 * positions that were listed when it began; whatever is deferred after
 * that is listed after them, for the next sweep. A taken entry that no
 * longer waits (written by a write-back) is skipped.
 */
#include "store_int.h"
#include "keysort.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sweep_note(store_t *s, size_t pos)
{
    pending_t *p = &s->pend[pos];

    if (p->listed)
        return;
    p->listed = true;
    s->defer_list[s->n_listed++] = (uint32_t)pos;
}

/* Forgets the list and any sweep: every entry written (a write-back)
 * or forgotten (a rollback). */
void sweep_reset(store_t *s)
{
    for (size_t i = 0; i < s->n_listed; i++)
        s->pend[s->defer_list[i]].listed = false;
    s->n_listed = 0;
    s->list_end = s->list_taken = 0;
    s->sweep_phase = SWEEP_IDLE;
    s->sweep_n = s->sweep_runs = 0;
}

static int pending_key_cmp(const void *a, const void *b)
{
    return strcmp((*(pending_t *const *)a)->key, (*(pending_t *const *)b)->key);
}

/* Sorts pend_sort[from, from + n) by key (keysort.h; without memory for
 * its scratch, qsort). */
static void sort_range(store_t *s, size_t from, size_t n)
{
    pending_t **at = s->pend_sort + from;
    keysort_item_t *items;

    if (n < 2)
        return;
    items = malloc(2 * n * sizeof(*items));
    if (!items) {
        qsort(at, n, sizeof(*at), pending_key_cmp);
        return;
    }
    for (size_t i = 0; i < n; i++)
        items[i] = (keysort_item_t){.key = at[i]->key, .arg = at[i]};
    keysort(items, items + n, n);
    for (size_t i = 0; i < n; i++)
        at[i] = items[i].arg;
    free(items);
}

/* Takes the next chunk of the list into pend_sort as a sorted run. A
 * chunk is SWEEP_CHUNK rows, or more: enough for the list to make at
 * most SWEEP_RUNS runs, and 8 rows for each the flush changed (`work`),
 * so that a large batch takes the whole list at once, as its own rows
 * would otherwise reach defer_rows before the sweep writes any. */
static void take_chunk(store_t *s, size_t work)
{
    size_t chunk = (s->list_end + SWEEP_RUNS - 1) / SWEEP_RUNS;
    size_t from = s->sweep_n, end;

    if (chunk < SWEEP_CHUNK)
        chunk = SWEEP_CHUNK;
    if (work < SIZE_MAX / 8 && chunk < 8 * work)
        chunk = 8 * work;
    end = s->list_taken + chunk < s->list_end ? s->list_taken + chunk : s->list_end;
    for (; s->list_taken < end; s->list_taken++) {
        pending_t *p = &s->pend[s->defer_list[s->list_taken]];
        p->listed = false;
        if (p->deferred)
            s->pend_sort[s->sweep_n++] = p;
    }
    if (s->sweep_n > from) {
        sort_range(s, from, s->sweep_n - from);
        s->runs[s->sweep_runs++] = (sweep_run_t){from, s->sweep_n};
    }
    if (s->list_taken == s->list_end) {
        /* what was listed since the sweep began waits for the next one */
        s->n_listed -= s->list_end;
        if (s->n_listed > 0)
            memmove(s->defer_list, s->defer_list + s->list_end,
                    s->n_listed * sizeof(*s->defer_list));
        s->list_end = s->list_taken = 0;
        s->sweep_phase = SWEEP_WRITING;
    }
}

/* The sweep's next row in key order: the least of the runs' heads. NULL
 * when every run is written. */
static pending_t *next_row(store_t *s)
{
    sweep_run_t *best = NULL;

    for (size_t r = 0; r < s->sweep_runs; r++) {
        sweep_run_t *run = &s->runs[r];
        if (run->pos < run->end &&
            (!best || strcmp(s->pend_sort[run->pos]->key, s->pend_sort[best->pos]->key) < 0))
            best = run;
    }
    return best ? s->pend_sort[best->pos++] : NULL;
}

static bool rows_left(const store_t *s)
{
    for (size_t r = 0; r < s->sweep_runs; r++)
        if (s->runs[r].pos < s->runs[r].end)
            return true;
    return false;
}

/* Writes up to `most` of the sweep's rows that still wait; when none is
 * left, the tables hold everything up to the sweep's start. */
static int sweep_step(store_t *s, size_t most)
{
    pending_t *p;
    int rc = 0;

    while (most > 0 && rc == 0 && (p = next_row(s)) != NULL) {
        if (!p->deferred)
            continue;
        rc = pending_put(s, p);
        p->deferred = false;
        s->n_deferred--;
        most--;
    }
    if (rc == 0 && !rows_left(s)) {
        s->sweep_phase = SWEEP_IDLE;
        s->sweep_n = s->sweep_runs = 0;
        if (s->sweep_from > s->state_from)
            rc = state_from_put(s, s->sweep_from);
    }
    return rc;
}

int sweep_write_all(store_t *s)
{
    size_t n = 0;

    sweep_reset(s);
    for (size_t i = 0; i < s->n_pend; i++)
        if (s->pend[i].deferred)
            s->pend_sort[n++] = &s->pend[i];
    sort_range(s, 0, n);
    s->sweep_n = n;
    s->runs[0] = (sweep_run_t){0, n};
    s->sweep_runs = 1;
    s->sweep_phase = SWEEP_WRITING;
    s->sweep_from = s->head;
    return sweep_step(s, SIZE_MAX);
}

/*
 * Whether a sweep begins: two thirds of defer_rows wait, or the log is
 * five eighths of its bound past state_from. As late as the bounds allow,
 * since a sweep's cost is its pages more than its rows: the waiting rows
 * are spread over the whole table, so a sweep rewrites most of its leaf
 * pages however many rows it writes, and the fewer sweeps, the fewer
 * rewrites. (Writing only the rows that waited longest, so that recent
 * ones take more changes first, writes a sixth fewer rows in a model of
 * the run below, and measured 7 % slower: more sweeps, fewer rows a
 * page.) The bounds still hold: while the sweep takes its list, more
 * rows wait by at most an eighth of it (a chunk is 8 rows for each a
 * flush changes), and then it writes twice as many as each flush defers,
 * so about 3/4 of defer_rows wait at most; and it ends within a quarter
 * of defer_revs once it has its list, by 7/8 and what the taking logged.
 * Begun at half of each, over 100,000 residents updated at random
 * (bench_peers cell 1, normal, 1,000,000 updates), ingest was 1.07 times
 * slower.
 */
static bool sweep_due(const store_t *s)
{
    return (uint64_t)s->n_deferred * 3 >= (uint64_t)s->cfg.defer_rows * 2 ||
           (s->head - s->state_from) * 8 >= defer_revs(s) * 5;
}

/* A flush's share of the sweep, begun when sweep_due. While the sweep
 * takes its list, a chunk a flush, it writes nothing. Then: twice the
 * rows the flush deferred (fresh), so that the sweep outruns them before
 * defer_rows wait; and its part of the sweep for the revisions it logged
 * (revs), so that the sweep ends within a quarter of defer_revs even
 * when every update lands on a waiting row. Nothing more: a share of 512
 * rows a flush made the sweep's commits a burst (the p99 latency at
 * 20,000 updates/s 58 to 231 ms), and one of at least 64 gave each
 * commit of a single update, at 1,000/s, 64 random rows to write. */
int sweep_pace(store_t *s, size_t fresh, size_t revs)
{
    uint64_t quarter = defer_revs(s) / 4 > 0 ? defer_revs(s) / 4 : 1;
    size_t most, paced;

    if (s->sweep_phase == SWEEP_IDLE) {
        if (!sweep_due(s))
            return 0;
        s->sweep_phase = SWEEP_COLLECTING;
        s->list_end = s->n_listed;
        s->list_taken = 0;
        s->sweep_n = s->sweep_runs = 0;
        s->sweep_from = s->head;
    }
    if (s->sweep_phase == SWEEP_COLLECTING) {
        take_chunk(s, fresh + revs);
        if (s->sweep_phase == SWEEP_COLLECTING)
            return 0;
    }
    paced = (size_t)(((uint64_t)s->sweep_n * revs + quarter - 1) / quarter);
    most = 2 * fresh > paced ? 2 * fresh : paced;
    return sweep_step(s, most);
}
