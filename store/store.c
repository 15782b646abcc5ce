/*
 * store.c - the consolidated picture in SQLite (contract: store.h): open
 * and close, batches (begin, commit, rollback, change-log pruning), and
 * the way of one update through the store (store_apply): the row cache
 * loads the record's row, the merge (pure, merge.c) decides its stamps
 * and record, the row cache stores the result and tells the summaries.
 *
 * Each record row keeps the encoded Record exactly as published (column
 * `record`) and the stamps of its fields (column `stamps`, stamp.c).
 * Encoded Records start with their revision (field 1, protobuf-c packs in
 * field-number order), so the store compares and hashes records without
 * the revision by skipping that first field, and adds it by prepending it.
 *
 * The other files: schema.c, rowcache.c, producer.c, authority.c,
 * conflict.c, summary.c, cursor.c, admin.c (store_int.h), and the pure
 * key.c, stamp.c, merge.c, buf.c.
 */
#include "store_int.h"
#include "pcache.h"

#include <sodium.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int settle(store_t *s, bool complete);

/* The tables of a store that crashed with rows deferred (meta's
 * state_from behind the head) get them from the change log, in a
 * transaction of their own, before anything counts or reads them. */
static int replay_at_open(store_t *s)
{
    int rc;

    if (!s->replay_due)
        return 0;
    if ((rc = step_done(s, s->st[ST_BEGIN])) < 0)
        return rc;
    if ((rc = agg_replay(s)) < 0 || (rc = state_replay(s)) < 0 ||
        (rc = step_done(s, s->st[ST_COMMIT])) < 0) {
        sqlite3_step(s->st[ST_ROLLBACK]);
        sqlite3_reset(s->st[ST_ROLLBACK]);
        return rc;
    }
    s->replay_due = false;
    return 0;
}

int errno_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return -EINVAL;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EUCLEAN;
    default:
        return -EIO;
    }
}

const char *store_strerror(int err)
{
    return err == -EUCLEAN ? "database malformed" : strerror(err < 0 ? -err : err);
}

/* Keeps SQLite's message for store_errmsg and returns the errno. */
int db_fail(store_t *s, int rc)
{
    snprintf(s->err, sizeof(s->err), "%s", sqlite3_errmsg(s->db));
    return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
}

/* The test seams' work counter, as SQLite's progress handler. */
static int seam_vm(void *arg)
{
    const store_seams_t *t = arg;
    t->vm(t->arg);
    return 0; /* never interrupts */
}

/* Counts the work of connection db through the test seams, when asked. */
void seam_watch(const store_t *s, sqlite3 *db)
{
    if (s->cfg.seams && s->cfg.seams->vm)
        sqlite3_progress_handler(db, 1, seam_vm, (void *)s->cfg.seams);
}

/* A fault the test seams inject before reading `what`: 0 or a negative errno. */
int seam_fault(store_t *s, const char *what)
{
    int rc = s->cfg.seams && s->cfg.seams->fault ? s->cfg.seams->fault(s->cfg.seams->arg, what) : 0;
    if (rc < 0)
        snprintf(s->err, sizeof(s->err), "%s: injected fault", what);
    return rc;
}

/* The store's clock: the config's seam, else the wall clock. */
int64_t now_us(const store_t *s)
{
    return s->cfg.now_us ? s->cfg.now_us() : wire_now_us();
}

void store_config_init(store_config_t *cfg)
{
    *cfg = (store_config_t){
        .path = NULL,
        .synchronous_full = true,
        .changelog_keep = 1000000,
        .conflicts_keep = 1000000,
        .conflicts_keep_us = INT64_C(365) * 86400 * 1000000,
        .max_producers = 1000,
        .trade_rule = PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST,
        .trade_threshold_pct = 10.0,
        .cif_fob_factor = 1.0,
        .max_future_skew_us = 0,
        .now_us = NULL,
        .background_checkpoint = false,
        .defer_rows = STORE_DEFER_ROWS,
        .cache_kib = STORE_CACHE_KIB,
    };
}

/*
 * SQLite starts the WAL over (writes it from its first frame again, and
 * journal_size_limit truncates the file) only when a write transaction
 * begins with every frame already copied back. The background
 * checkpointer copies what was committed when it began; with a commit
 * every few milliseconds the writer has always appended more by the time
 * it ends, so every checkpoint "completed" and the WAL never started over:
 * 3.2 GiB in 3 minutes at 800 commits/s, 111 MiB at 90. So the writer
 * notes, after each commit, a WAL longer than STORE_WAL_RESET_FRAMES, and
 * store_wal_reset runs a PASSIVE checkpoint on its own connection between
 * batches, which copies what the checkpointer has not, and the next write
 * transaction starts the WAL over.
 *
 * What it copies, the loop waits for: the pages, and two fsyncs (the WAL,
 * then the database). The checkpointer, on its period of 200 ms, left up
 * to 200 ms of commits behind: a reset then stalled ingest for 10-70 ms,
 * every 16 MiB of WAL, the largest part of the latency tail. So the
 * checkpointer hurries while the WAL is past the point of reset
 * (store_wal_long), and the writer resets only once it is within
 * STORE_WAL_TAIL_FRAMES of the end, or of twice the largest commit this WAL
 * holds: a pass ends behind by what was committed while it ran, so under
 * commits of 650 frames (a sweep's) none ever came within 256, and the WAL
 * reached 150-250 MiB before the writer forced it. Even so a reset's two
 * fsyncs take 5-40 ms on a busy disk, however little they copy, so the
 * point of reset sets how many such stalls there are: at 16 MiB, 20,000
 * random updates/s made 27 resets in 10 s, at 64 MiB 10, and the ack p99 at
 * FULL fell from 41 to 14 ms (bench_peers, medians of 9 rounds). A longer
 * WAL costs reads little (its index is searched 4,096 frames at a time).
 * While a snapshot streams, its reader keeps the WAL from being copied past
 * where it began; the WAL grows beyond the point of reset and is reset once
 * the checkpointer has caught up after it. Past STORE_WAL_FORCE_FRAMES (the
 * checkpointer cannot keep up: a CPU starved by other work), the writer
 * resets whatever is left, so the WAL stays bounded, and the checkpointer
 * steps back so that the writer finds the checkpoint lock free. (It once
 * forced only when a pass left more to copy than the one before:
 * back-to-back passes held the lock and each left a little less, and the
 * WAL reached 362 MiB.) A reader on an old snapshot can keep a reset from
 * completing; it is tried again each quarter of STORE_WAL_RESET_FRAMES the
 * WAL grows.
 */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    store_t *s = arg;

    (void)db;
    (void)name;
    if (frames < s->wal_frames) { /* it started over */
        s->wal_starts++;
        s->wal_commit_most = frames;
    } else if (frames - s->wal_frames > s->wal_commit_most) {
        s->wal_commit_most = frames - s->wal_frames;
    }
    s->wal_frames = frames;
    if (frames < STORE_WAL_RESET_FRAMES) {
        s->wal_next_reset = STORE_WAL_RESET_FRAMES;
        s->wal_reset_due = false;
    } else if (frames >= s->wal_next_reset) {
        s->wal_reset_due = true;
    }
    return SQLITE_OK;
}

uint64_t store_wal_resets(const store_t *s)
{
    return s->wal_resets;
}

uint64_t store_wal_starts(const store_t *s)
{
    return s->wal_starts;
}

bool store_wal_long(const store_wal_t *w)
{
    return w->frames >= STORE_WAL_RESET_FRAMES;
}

bool store_wal_forced(const store_wal_t *w)
{
    return w->frames >= STORE_WAL_FORCE_FRAMES;
}

int store_wal_reset(store_t *s, const store_wal_t *checkpointed)
{
    int log = 0, done = 0, rc;
    int64_t tail = 0, near = STORE_WAL_TAIL_FRAMES;
    bool held = false;

    if (!s->wal_reset_due || s->in_batch)
        return 0;
    /* The checkpointer's figures belong to this WAL unless it has since
     * started over (and is shorter than what the checkpointer saw). A
     * pass that a reader stopped short says the writer's own checkpoint
     * would stop at the same reader. */
    if (checkpointed) {
        tail = checkpointed->frames <= s->wal_frames ? s->wal_frames - checkpointed->backfilled
                                                     : s->wal_frames;
        held = checkpointed->backfilled < checkpointed->frames;
    }
    if (near < 2 * (int64_t)s->wal_commit_most)
        near = 2 * (int64_t)s->wal_commit_most; /* a pass cannot end nearer */
    if (tail > near && (s->wal_frames < STORE_WAL_FORCE_FRAMES || held))
        return 0; /* the checkpointer is catching up; after a later commit */
    rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
    if (rc == SQLITE_BUSY)
        return 0; /* the checkpointer is running; after the next commit */
    if (rc != SQLITE_OK)
        return db_fail(s, rc);
    s->wal_resets++;
    s->wal_reset_due = false;
    s->wal_next_reset = log + STORE_WAL_RESET_FRAMES / 4;
    return log >= 0 && done == log;
}

/* SQLite's process-wide settings, made once before its first use. Its
 * allocation statistics are off: each sqlite3_malloc and sqlite3_free
 * otherwise takes a global mutex to count them (3 % of the loop's samples
 * under random-key ingest), for figures nothing here reads. Its page
 * cache is told when a commit's truncation has nothing to drop
 * (pcache.h). When the process already used SQLite, the calls are
 * refused and change nothing. */
static void sqlite_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    (void)pcache_setup();
}

store_t *store_open(const store_config_t *cfg, char *err, size_t errlen)
{
    static pthread_once_t setup = PTHREAD_ONCE_INIT;
    char wal_limit[64], cache_size[64];
    snprintf(wal_limit, sizeof(wal_limit), "PRAGMA journal_size_limit = %d", STORE_WAL_LIMIT_BYTES);
    snprintf(cache_size, sizeof(cache_size), "PRAGMA cache_size = -%zu",
             cfg->cache_kib > 0 ? cfg->cache_kib : (size_t)STORE_CACHE_KIB);
    store_t *s = NULL;
    int rc;
    if (err && errlen)
        err[0] = '\0';
    if (!cfg || !cfg->path) {
        if (err)
            snprintf(err, errlen, "store: no database path");
        return NULL;
    }
    if (sodium_init() < 0) {
        if (err)
            snprintf(err, errlen, "%s: libsodium failed to initialise", cfg->path);
        return NULL;
    }
    (void)pthread_once(&setup, sqlite_setup);
    s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(cfg->path))) {
        if (err)
            snprintf(err, errlen, "%s: out of memory", cfg->path);
        goto fail;
    }
    s->cfg = *cfg;
    s->cfg.path = s->path;
    s->pinned = UINT64_MAX;
    s->on_change = summary_on_change;
    rc = sqlite3_open_v2(s->path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (s->db)
            db_fail(s, rc);
        else
            snprintf(s->err, sizeof(s->err), "out of memory");
        goto fail_msg;
    }
    sqlite3_extended_result_codes(s->db, 0);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
    seam_watch(s, s->db);
    if (check_owner(s) < 0 || exec(s, "PRAGMA journal_mode = WAL") < 0 ||
        exec(s, s->cfg.synchronous_full ? "PRAGMA synchronous = FULL"
                                        : "PRAGMA synchronous = NORMAL") < 0 ||
        exec(s, cache_size) < 0 || exec(s, wal_limit) < 0 ||
        (s->cfg.background_checkpoint && exec(s, "PRAGMA wal_autocheckpoint = 0") < 0) ||
        migrate(s) < 0 || claim_copy(s) < 0 || prepare_all(s) < 0 || load_meta(s) < 0 ||
        load_oldest(s) < 0 || producers_load(s) < 0 || replay_at_open(s) < 0 ||
        mark_all_dirty(s) < 0 || figures_load(s) < 0)
        goto fail_msg;
    s->opened = true;
    if (s->cfg.background_checkpoint) {
        s->wal_next_reset = STORE_WAL_RESET_FRAMES;
        s->wal_frames = 0;
        sqlite3_wal_hook(s->db, wal_hook, s); /* after wal_autocheckpoint, which sets it too */
    }
    return s;

fail_msg:
    if (err)
        snprintf(err, errlen, "%s: %s", cfg->path, s->err[0] ? s->err : "cannot open");
fail:
    store_close(&s);
    return NULL;
}

void store_close(store_t **sp)
{
    if (!sp || !*sp)
        return;
    store_t *s = *sp;
    if (s->in_batch)
        store_rollback(s);
    if (s->opened)
        settle(s, true); /* a failure leaves the change log to replay at open */
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    for (int k = 0; k < STORE_KINDS; k++) {
        sqlite3_finalize(s->sel[k]);
        sqlite3_finalize(s->put[k]);
        sqlite3_finalize(s->scan[k]);
    }
    sqlite3_close_v2(s->db);
    buf_free(&s->body);
    buf_free(&s->out);
    buf_free(&s->prev);
    buf_free(&s->old);
    buf_free(&s->stamps);
    buf_free(&s->old_stamps);
    buf_free(&s->prod_blob);
    buf_free(&s->agg_blob);
    free(s->ministries);
    free(s->members);
    free(s->prod);
    index_free(&s->prod_index);
    pending_free(s);
    free(s->path);
    free(s);
    *sp = NULL;
}

const char *store_errmsg(const store_t *s)
{
    return s ? s->err : "no store";
}

const char *store_wal_path(const store_t *s)
{
    return sqlite3_filename_wal(sqlite3_db_filename(s->db, "main"));
}

int store_begin(store_t *s)
{
    if (s->in_batch)
        return -EBUSY;
    if (!producers_ready(s))
        return -EIO;
    int rc = step_done(s, s->st[ST_BEGIN]);
    if (rc < 0)
        return rc;
    s->in_batch = true;
    s->state_from_begin = s->state_from;
    s->head_begin = s->head;
    s->oldest_begin = s->oldest;
    memcpy(s->dirty_begin, s->dirty, sizeof(s->dirty));
    memcpy(s->live_begin, s->live, sizeof(s->live));
    memcpy(s->reasons_begin, s->reasons, sizeof(s->reasons));
    s->conflict_oldest_begin = s->conflict_oldest_us;
    memcpy(s->agg_begin, s->agg, s->n_agg * sizeof(*s->agg));
    s->n_agg_begin = s->n_agg;
    s->conflicts_added = 0;
    s->batch_changes = 0;
    s->pruned_batch = (store_pruned_t){0};
    if (s->replay_due && (rc = state_replay(s)) < 0) {
        store_rollback(s);
        return rc;
    }
    return 0;
}

void store_rollback(store_t *s)
{
    if (!s || !s->in_batch)
        return;
    sqlite3_step(s->st[ST_ROLLBACK]);
    sqlite3_reset(s->st[ST_ROLLBACK]);
    s->in_batch = false;
    s->head = s->head_begin;
    s->oldest = s->oldest_begin;
    s->state_from = s->state_from_begin;
    memcpy(s->dirty, s->dirty_begin, sizeof(s->dirty));
    memcpy(s->live, s->live_begin, sizeof(s->live));
    memcpy(s->reasons, s->reasons_begin, sizeof(s->reasons));
    s->conflict_oldest_us = s->conflict_oldest_begin;
    memcpy(s->agg, s->agg_begin, s->n_agg_begin * sizeof(*s->agg)); /* the table went back too */
    s->n_agg = s->n_agg_begin;
    pending_clear(s);
    s->replay_due = s->state_from < s->head; /* deferred rows were forgotten */
    /* the cache holds the batch's sequences: take back the committed ones */
    producers_reload(s);
}

/*
 * Change-log rows to drop: those beyond changelog_keep, once they are
 * more than the slack; 0 when it keeps everything. Dropping the oldest
 * row writes the oldest page: a commit that dropped one row for each it
 * added wrote that page every time, a fifth of a one-update commit's
 * pages. With a slack of keep / 1024 (at most STORE_LOG_SLACK_MAX) the
 * rows go a page or more at a time, and the log holds at most 0.1 % more
 * than it keeps.
 */
static uint64_t log_over(const store_t *s)
{
    uint64_t keep = s->cfg.changelog_keep, slack = keep / 1024;

    if (slack > STORE_LOG_SLACK_MAX)
        slack = STORE_LOG_SLACK_MAX;
    if (keep == 0 || s->head < s->oldest || s->head - s->oldest + 1 <= keep + slack)
        return 0;
    return s->head - s->oldest + 1 - keep;
}

/*
 * Drops change-log rows beyond changelog_keep: at most as many as the
 * batch added and STORE_LOG_PRUNE_STEP more, and none the daemon has not
 * published (store_pin_changes). It used to wait until the excess was 1 %
 * of keep and drop that in one statement: at the default keep of a
 * million, every 10,000th revision's commit deleted 10,000 rows, about
 * 40 ms with a cold cache, which every update arriving meanwhile waited
 * for (at 1,000 updates/s, 0.4 % of them: the p99.9 latency). A step per
 * commit costs the same in all, spread evenly; a backlog (keep lowered)
 * goes with the next commits (store_prune_due).
 */
static int prune(store_t *s)
{
    uint64_t over = log_over(s), step = STORE_LOG_PRUNE_STEP + (s->head - s->head_begin);
    uint64_t cut;

    if (over == 0)
        return 0;
    cut = s->oldest - 1 + (over < step ? over : step); /* the last revision to go */
    if (cut > s->pinned)
        cut = s->pinned;
    if ((s->n_deferred > 0 || s->prod_logged > 0 || s->n_agg > 0) && cut > s->state_from)
        cut = s->state_from; /* the tables lack changes after it: replay reads them */
    if (cut < s->oldest)
        return 0;
    sqlite3_stmt *st = s->st[ST_LOG_PRUNE];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)cut);
    int rc = step_done(s, st);
    if (rc < 0)
        return rc;
    s->oldest = cut + 1;
    return 0;
}

bool store_prune_due(store_t *s)
{
    if (s->in_batch)
        return false;
    return (log_over(s) > 0 && s->oldest <= s->pinned) || conflicts_prune_due(s);
}

void store_pin_changes(store_t *s, uint64_t revision)
{
    s->pinned = revision;
}

/* What the commit moved besides its records (producers_flush,
 * agg_commit), onto the change-log row of the head. */
static int log_extras(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_LOG_EXTRAS];
    const buf_t *bufs[2] = {&s->prod_blob, &s->agg_blob};
    int rc;

    if (s->prod_blob.len == 0 && s->agg_blob.len == 0)
        return 0;
    for (int i = 0; i < 2; i++)
        if (bufs[i]->len > 0)
            sqlite3_bind_text(st, i + 1, (const char *)bufs[i]->data, (int)bufs[i]->len,
                              SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)s->head);
    if ((rc = step_done(s, st)) < 0)
        return rc;
    if (sqlite3_changes(s->db) != 1) {
        snprintf(s->err, sizeof(s->err), "change %" PRIu64 " of the batch is not in the log",
                 s->head);
        return -EIO;
    }
    return 0;
}

int store_commit(store_t *s)
{
    int rc;
    if (!s->in_batch)
        return -EINVAL;
    if ((rc = pending_flush(s)) < 0 || (rc = producers_flush(s)) < 0 || (rc = agg_commit(s)) < 0 ||
        (rc = log_extras(s)) < 0)
        goto fail;
    if ((rc = prune(s)) < 0 || (rc = conflicts_prune(s)) < 0)
        goto fail;
    if ((rc = step_done(s, s->st[ST_COMMIT])) < 0)
        goto fail;
    s->in_batch = false;
    s->replay_due = false;
    s->pruned.conflicts += s->pruned_batch.conflicts;
    s->pruned.claims += s->pruned_batch.claims;
    return 0;
fail:
    store_rollback(s);
    return rc;
}

/* store_settle; complete also records that the tables hold everything
 * (state_from = head), so that the next open replays nothing. */
static int settle(store_t *s, bool complete)
{
    int rc;

    if (s->n_deferred == 0 && !s->replay_due && (!complete || s->state_from == s->head))
        return 0;
    if (s->in_batch) {
        snprintf(s->err, sizeof(s->err), "the resident table is read inside a batch");
        return -EBUSY;
    }
    if ((rc = store_begin(s)) < 0)
        return rc;
    s->write_back = true;
    rc = store_commit(s);
    s->write_back = false;
    return rc;
}

int store_settle(store_t *s)
{
    return settle(s, false);
}

/*
 * One update's way through the store: the row cache loads the record's
 * row, the merge (pure) decides its stamps and its record, and the row
 * cache stores the result, telling its watcher (the summaries) what
 * changed.
 */
int apply_merge(store_t *s, const merge_update_t *up, merge_t *m)
{
    const rec_key_t *key = up->key;
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots = merge_slots(key->kind, ids);
    merge_out_t out;
    stamps_t sp;
    row_t row;
    bool changed;
    int rc;

    if ((rc = row_load(s, key, &row)) < 0)
        goto free_row;
    if (stamps_decode(&sp, s->old_stamps.data, s->old_stamps.len, ids, nslots) < 0) {
        snprintf(s->err, sizeof(s->err), "%s: stored stamps do not decode",
                 kind_sql[key->kind].table);
        rc = -EBADMSG;
        goto free_row;
    }
    if (merge_stamps(up, &sp, m) && (rc = row_unpack(s, key, &row)) < 0)
        goto free_row;
    merge_rules_t rules = {s->cfg.trade_rule, s->cfg.trade_threshold_pct, s->cfg.cif_fob_factor};
    if ((rc = merge_record(&rules, up, &sp, row.rec, &out)) < 0) {
        snprintf(s->err, sizeof(s->err), "%s: %s", kind_sql[key->kind].table, out.why);
        goto free_row;
    }
    if ((rc = stamps_encode(&s->stamps, &sp, ids, nslots)) < 0)
        goto free_row;
    rc = row_store(s, key, &row, &out.rec, true, out.ex, &changed);
free_row:
    row_free(&row);
    return rc;
}

int store_apply(store_t *s, const Parksync__V1__Update *u, store_outcome_t *outcome)
{
    return store_apply_as(s, NULL, u, outcome);
}

int store_apply_as(store_t *s, const char *ministry, const Parksync__V1__Update *u,
                   store_outcome_t *outcome)
{
    producer_t *p;
    rec_key_t key;
    kind_t kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    bool is_delete, exporter_side = false;
    merge_t m = {0};
    char why[STORE_KEY_TEXT];
    int rc;

    if (!s->in_batch || !u || !u->has_sequence || !outcome)
        return -EINVAL;
    if ((rc = producer_check(s, ministry, u->producer_id, u->sequence, &p, outcome)) < 0)
        return rc;
    if (*outcome != STORE_APPLIED)
        return 0;
    const void *body = update_target(u, &kind, &is_delete);
    if (!body || !u->has_event_time_us || !key_of(&key, kind, body, &exporter_side)) {
        /* validation should have refused it; consume it rather than stall */
        if ((rc = conflict_put(s, u->producer_id, u->sequence, kind, NULL,
                               "invalid: update names no record", u, false)) < 0)
            return rc;
        p->last_sequence = u->sequence;
        p->rejected++;
        *outcome = STORE_REJECTED;
        return 0;
    }
    refusal(s, ministry, u, kind, &key, why, sizeof(why));
    if (why[0]) {
        /* not applied: kept as a claim, recorded, and the sequence
         * consumed so the producer does not stall */
        if ((rc = claim_put(s, u, kind, &key, why)) < 0 ||
            (rc = conflict_put(s, u->producer_id, u->sequence, kind, &key, why, u, true)) < 0)
            return rc;
        p->last_sequence = u->sequence;
        p->rejected++;
        *outcome = STORE_REJECTED;
        return 0;
    }
    merge_update_t up = {
        .key = &key, .body = body, .is_delete = is_delete, .exporter_side = exporter_side};
    stamp_of_update(&up.stamp, u);
    if ((rc = apply_merge(s, &up, &m)) < 0)
        return rc;
    if (m.stale || m.overridden) {
        rc = conflict_put(s, u->producer_id, u->sequence, kind, &key,
                          m.stale ? "stale: older than delete"
                                  : "overridden: older than the current value",
                          u, false);
        if (rc < 0)
            return rc;
    }
    p->last_sequence = u->sequence;
    p->applied++;
    return 0;
}

int store_reject(store_t *s, const Parksync__V1__Update *u, const char *reason,
                 store_outcome_t *outcome)
{
    producer_t *p;
    rec_key_t key;
    kind_t kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    bool is_delete, exporter_side = false, keyed;
    const void *body;
    int rc;
    if (!s->in_batch || !u || !u->producer_id || !outcome)
        return -EINVAL;
    if ((rc = producer_check(s, NULL, u->producer_id, u->sequence, &p, outcome)) < 0)
        return rc;
    if (*outcome != STORE_APPLIED)
        return 0;
    /* the record it names, when its key fields are sound, so that
     * `parksync conflicts` can filter and show it */
    body = update_target(u, &kind, &is_delete);
    keyed = body && key_of(&key, kind, body, &exporter_side);
    rc = conflict_put(s, u->producer_id, u->sequence, kind, keyed ? &key : NULL,
                      reason ? reason : "rejected", u, false);
    if (rc < 0)
        return rc;
    p->last_sequence = u->sequence;
    p->rejected++;
    *outcome = STORE_REJECTED;
    return 0;
}

int store_note_conflict(store_t *s, const Parksync__V1__Update *u, const char *reason)
{
    rec_key_t key;
    kind_t kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    bool is_delete, exporter_side = false, keyed;
    const void *body;

    if (!s->in_batch || !u || !u->producer_id || !reason)
        return -EINVAL;
    body = update_target(u, &kind, &is_delete);
    keyed = body && key_of(&key, kind, body, &exporter_side);
    return conflict_put(s, u->producer_id, u->sequence, kind, keyed ? &key : NULL, reason, u,
                        false);
}

uint64_t store_head(const store_t *s)
{
    return s->head;
}

uint64_t store_batch_changes(const store_t *s)
{
    return s->in_batch ? s->batch_changes : 0;
}

uint64_t store_deferred_rows(const store_t *s)
{
    return s->n_deferred;
}

uint64_t store_cache_bytes(const store_t *s)
{
    int now = 0, high = 0;

    if (sqlite3_db_status(s->db, SQLITE_DBSTATUS_CACHE_USED, &now, &high, 0) != SQLITE_OK)
        return 0;
    return now > 0 ? (uint64_t)now : 0;
}

uint64_t store_replay_revisions(const store_t *s)
{
    return s->head > s->state_from ? s->head - s->state_from : 0;
}

uint64_t store_oldest(store_t *s)
{
    return s->oldest <= s->head ? s->oldest : s->head + 1;
}

const uint8_t *store_epoch(const store_t *s)
{
    return s->epoch;
}

bool store_epoch_is_new(const store_t *s)
{
    return s->new_epoch;
}
