/*
 * store_int.h - what the store's files share (private to store/): the
 * store struct, the statement tables and the functions one file offers
 * the others, by file. The pure parts (key.h, stamp.h, merge.h) know
 * nothing of this header.
 *
 * Layers, each using only those below it:
 *   store.c     open, close, batches, store_apply's orchestration
 *   summary.c   summaries and resident aggregates (watches the row cache)
 *   replica.c   merging what peer sites send, their positions
 *   cursor.c admin.c conflict.c producer.c authority.c
 *   rowcache.c  the batch's rows, loads and stores, the change log
 *               (sweep.c writes the deferred rows, replay.c the log's tail)
 *   schema.c    migrations, statements, the owner check
 *   merge.c stamp.c key.c buf.c wide.h   (pure)
 */
#ifndef PARKSYNC_STORE_INT_H
#define PARKSYNC_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "buf.h"
#include "index.h"
#include "key.h"
#include "merge.h"
#include "stamp.h"
#include "store.h"
#include "wide.h"

#define STORE_BUSY_TIMEOUT_MS 5000 /* ms a connection waits for a lock */
#define STORE_PRUNE_STEP      1024 /* conflict rows a commit drops beyond those it added */
#define STORE_LOG_PRUNE_STEP  256  /* change-log rows a commit drops beyond those it added */
#define STORE_LOG_SLACK_MAX   64   /* change-log rows beyond keep left for a later commit */
#define STORE_PACE_PAGES      64   /* database pages a checkpoint copies between two syncs */
#define STORE_PRODUCERS_MIN   16   /* initial slots of the producer map */
#define STORE_WAL_RESET_FRAMES                                                                     \
    16384 /* WAL frames (64 MiB of 4 KiB pages) that make the writer checkpoint so                 \
             that the WAL starts over (store_wal_reset) */
#define STORE_WAL_TAIL_FRAMES                                                                      \
    256 /* frames the writer's reset copies at most while the checkpointer keeps up */
#define STORE_WAL_FORCE_FRAMES                                                                     \
    (2 * STORE_WAL_RESET_FRAMES) /* beyond, the writer resets whatever is left to copy, and the    \
                                    checkpointer steps back to let it */
#define STORE_REASONS 7          /* conflict reason classes (reason_classes) */

/* Last applied state of one producer, cached in memory. */
typedef struct producer {
    char id[WIRE_MAX_ID + 1]; /* producer id */
    uint64_t last_sequence;   /* last applied or rejected sequence */
    uint64_t applied;         /* updates applied */
    uint64_t duplicates;      /* updates ignored as already applied */
    uint64_t gaps;            /* updates refused for a missing sequence */
    uint64_t rejected;        /* sequences consumed by store_reject */
    int64_t last_seen_us;     /* wall clock of its last update, us since 1970 */
    bool dirty;               /* changed in the open batch, written at commit */
    bool logged;              /* its table row is older than a copy on a change-log row
                                 after state_from (producers_flush) */
} producer_t;

/* A record row as read before a merge. */
typedef struct row {
    bool found;                   /* a row exists */
    uint64_t revision;            /* its revision (0: never published) */
    bool deleted;                 /* its record is a tombstone */
    extra_t ex[STORE_MAX_EXTRAS]; /* its extra columns (set: not NULL) */
    Parksync__V1__Record *rec;    /* its record once row_unpack ran; NULL before, or none */
    size_t pend;                  /* its entry in the batch's rows, + 1; 0: none */
} row_t;

/* What the row cache tells its watcher after it stored a row: the row as
 * it was (old), the record now, and whether it got a revision. Returns 0
 * or a negative errno (the batch must then be rolled back). */
typedef int (*row_change_fn)(store_t *s, const rec_key_t *key, const row_t *old,
                             const Parksync__V1__Record *now, bool published);

/* Statements on the store's connection, prepared once at open. */
enum stmt_id {
    ST_BEGIN,           /* BEGIN IMMEDIATE */
    ST_COMMIT,          /* COMMIT */
    ST_ROLLBACK,        /* ROLLBACK */
    ST_META_GET,        /* value of a meta key */
    ST_HEAD_GET,        /* the head revision (STORE_HEAD_SQL) */
    ST_PRODUCER_ALL,    /* every producer */
    ST_PRODUCER_PUT,    /* upsert of a producer */
    ST_LOG_EXTRAS,      /* producers and aggregates a commit moved, onto its last change */
    ST_AGG_LOGGED,      /* the aggregates kept on change-log rows after a revision */
    ST_PRODUCER_LOGGED, /* those kept on change-log rows after a revision */
    ST_CONFLICT_PUT,    /* new conflict row */
    ST_CONFLICT_LIST,   /* conflict rows by filter, in id order */
    ST_CONFLICT_PRUNE,  /* drops the oldest conflict rows recorded before a time */
    ST_CONFLICT_FIRST,  /* recorded_us of the oldest conflict row */
    ST_CLAIM_PUT,       /* a refused update kept as a claim */
    ST_CLAIM_DROP,      /* drops one claim */
    ST_LOG_PUT,         /* new change-log row */
    ST_LOG_OLDEST,      /* oldest revision in the change log */
    ST_LOG_PRUNE,       /* drops change-log rows up to a revision */
    ST_LOG_SINCE,       /* change-log rows after a revision */
    ST_SUM_PARKS,       /* live parks of a country with their resident aggregates */
    ST_SUM_RESIDENTS,   /* resident aggregates of a country, per park */
    ST_SUM_TRADE,       /* turnover per partner and period of a country */
    ST_SUM_INDICATORS,  /* live country reports of a country */
    ST_DIRTY_ALL,       /* every country with records (marked dirty at open) */
    ST_AGG_GET,         /* a park's resident aggregates */
    ST_AGG_PUT,         /* sets a park's resident aggregates */
    ST_SAVEPOINT,       /* opens the savepoint of one country's summary */
    ST_RELEASE,         /* ends it, keeping what it did */
    ST_ROLLBACK_TO,     /* undoes what it did (RELEASE must follow) */
    ST_STATE_FROM_PUT,  /* sets meta's 'state_from' */
    ST_LOG_REPLAY,      /* change-log rows of kind ?2 after revision ?1, with stamps */
    ST_LOG_AT,          /* the change-log row of revision ?1, as ST_LOG_REPLAY reads it */
    ST_COUNT            /* number of statements */
};

/*
 * Per-kind row statements share one parameter layout: ?1..?3 key columns,
 * ?4 deleted, ?5 revision, ?6 record, ?7 stamps, ?8..?10 extra columns.
 */
typedef struct kind_sql {
    const char *table;        /* table name */
    const char *select;       /* revision, record, stamps, deleted, extras of a row by key */
    const char *upsert;       /* insert or replace a row */
    const char *scan;         /* live records in key order */
    const char *scan_country; /* live records of country ?1 in key order */
    size_t nextras;           /* extra columns */
} kind_sql_t;

/* The per-kind statements (schema.c). */
extern const kind_sql_t kind_sql[STORE_KINDS];

/* How one park's live residents changed since resident_agg last took
 * its deltas (summary.c). */
typedef struct agg_delta {
    char country[3];               /* the park's country */
    char park_id[WIRE_MAX_ID + 1]; /* the park */
    int64_t residents;             /* change in live residents */
    wide_t investment;             /* change in their investment, USD cents (exact) */
    bool moved;                    /* changed in the open batch (agg_commit) */
} agg_delta_t;

#define STORE_AGG_DELTAS 64 /* parks with pending deltas before an early flush */

/*
 * The row cache: rows read or written recently, as stored, so a record
 * updated again is merged without a read from SQLite. The rows a batch
 * changed are dirty until the batch is flushed (before summaries,
 * digests and the commit); a record changed several times between two
 * flushes is written once and gets one revision: no one can see the
 * versions in between, since the batch commits whole. Clean rows stay
 * after the commit, as the committed state; a rollback forgets them all.
 * When the cache is full, a row read makes room by evicting one clean
 * row in clock order (a row read again since the hand last passed it
 * gets another round); only when every row is dirty are the batch's rows
 * written first. Emptying the whole cache instead made every 8,192nd
 * update pay for thousands of reads. Only the cache writes record rows,
 * so a cached row is never older than its table row.
 *
 * Deferred state. A resident's row is not written when its batch is
 * flushed: the change-log row written with it holds the record and its
 * stamps, which is all the row is, and the row stays in the cache,
 * deferred. Once two thirds of defer_rows wait (or the change log is 5/8
 * of its bound past state_from: sweep_due), a sweep takes them, sorted by
 * key a chunk a
 * flush, and the next flushes write them a key range at a time: twice as
 * many as each flush defers, and enough for the sweep to end within a
 * quarter of the bound (sweep.c); writing them all in one commit stalled
 * ingest for a third of a second. All of them are written at once when
 * defer_rows wait (the config), when the change log is STORE_DEFER_REVS
 * (or half of changelog_keep) past state_from, before a reader that
 * needs the table whole opens (store_settle: history, whole pulls,
 * digest, backup) and at close. Snapshots and pulls of the change log
 * read the waiting rows' latest entries from the log instead (cursor.c,
 * deferred_set_t). A
 * random update to a large table then costs a sequential append at its
 * commit, and its leaf page is written once for every deferred row it
 * holds rather than once for each commit (rowcache.c, pending_flush).
 * Everything after state_from in the change log may be missing from the
 * tables: a store opened after a crash, or a rollback that forgot the
 * deferred rows, replays it (state_replay). Only residents are deferred:
 * the summaries read the other kinds' tables with SQL, and residents are
 * the bulk.
 *
 * The bounds trade memory and the replay after a crash for writes: a
 * row that waits is written once however often it changes meanwhile, so
 * the tables are written less the longer they may lag. Over 100,000
 * residents updated at random (bench_peers, cell 1), 65,536 rows and as
 * many revisions ingested 98,000 updates/s; 131,072 rows and 262,144
 * revisions 143,000 (1.45x), for 17 MiB more peak memory. Over 1,000,000
 * such updates, where sweeps recur, 524,288 revisions (500,000 with the
 * default changelog_keep) and the later start of sweep_due ingested
 * 1.15x as fast, for the same memory. A crash replays up to that many
 * revisions at open: each resident's latest change, in key order
 * (replay.c; 300,000 revisions over 100,000 residents in 1.0 s).
 */
#define STORE_DEFER_ROWS  131072 /* default defer_rows: rows a commit may leave unwritten */
#define STORE_DEFER_REVS  524288 /* revisions the tables may lag the change log by */
#define STORE_PENDING_MAX 8192   /* rows cached beyond the deferred ones */
#define STORE_PENDING_KEY 160    /* bytes of a lookup key: kind and key columns */
_Static_assert(STORE_PENDING_KEY <= 256, "a cached row finds its key columns by a byte offset");

typedef struct pending {
    char key[STORE_PENDING_KEY];     /* kind byte, then key columns joined by 0x1f */
    uint8_t col_at[STORE_MAX_KEYS];  /* where each key column's value starts in key */
    uint8_t col_len[STORE_MAX_KEYS]; /* and its bytes */
    size_t ncols;                    /* key columns used */
    kind_t kind;                     /* record kind */
    char country[3];                 /* topic country */
    char country2[3];                /* trade: importer; "" otherwise */
    bool found;                      /* a row exists (stored or to be written) */
    uint64_t revision;               /* revision of blob (0: never published) */
    uint64_t batch_rev;              /* revision given in this batch; 0: none */
    buf_t blob;                      /* the record as stored: Record with revision */
    buf_t stamps;                    /* its stamps (empty for summaries) */
    buf_t committed;                 /* record at the last flush, when published */
    bool deleted;                    /* blob is a tombstone */
    extra_t ex[STORE_MAX_EXTRAS];    /* extra columns */
    bool dirty;                      /* the row must be written */
    bool deferred;                   /* committed, not yet in its table */
    bool used;                       /* read again since the clock hand passed */
    bool listed;                     /* its position is in defer_list (sweep.c) */
} pending_t;

/* A sorted run of pend_sort that the sweep merges (sweep.c). */
typedef struct sweep_run {
    size_t pos; /* its next entry */
    size_t end; /* past its last */
} sweep_run_t;

#define SWEEP_RUNS  16   /* most runs a sweep's rows are sorted in */
#define SWEEP_CHUNK 4096 /* fewest rows a flush takes into a run */

enum sweep_phase { SWEEP_IDLE, SWEEP_COLLECTING, SWEEP_WRITING };
/* Default page cache of the writing connection, KiB ([store] cache_mib).
 * SQLite's default (2 MiB) makes every merge of a large database a read
 * from the kernel. */
#define STORE_CACHE_KIB 32768
/* Bytes the WAL file keeps when it starts over (journal_size_limit; cut
 * only beyond). Under sustained ingest the writer lets the WAL reach
 * STORE_WAL_FORCE_FRAMES before it forces a reset, and commits go on
 * meanwhile; a file cut below that grows back after every reset, and
 * each time the file system allocates and zeroes its blocks anew (64
 * MiB cost random-key ingest 7 %, bench_ingest -l b). So it is twice
 * the forced size in pages (the assertion asks for half as much again,
 * frame headers counted), and bounds only a WAL that a reader let grow. */
#define STORE_WAL_LIMIT_BYTES 268435456
_Static_assert(STORE_WAL_LIMIT_BYTES >= 15 * (STORE_WAL_FORCE_FRAMES * (4096 + 24) / 10),
               "a WAL the writer lets grow must not be cut when it starts over");
/* WIRE_EPOCH_BYTES as SQL text, for randomblob() */
#define STORE_EPOCH_SQL_BYTES "16"
/* PRAGMA application_id of a parksync database ("PSNC"), and as SQL text */
#define STORE_APPLICATION_ID     0x50534e43
#define STORE_APPLICATION_ID_SQL "1347636803"
/* findings of a quick_check kept for the message */
#define STORE_CHECK_FINDINGS "8"
/* meta key of the marker a backup leaves in its copy (see claim_copy) */
#define META_COPY "copy"
/*
 * The head revision: the change log's newest row. Every revision gets a
 * change-log row in its own transaction, and retention always leaves the
 * newest (changelog_keep is at least 1, or 0 for all), so the log tells
 * the head without meta's 'head' being written by each commit: that was
 * a page more in each (five for a one-update commit, four without). Meta
 * keeps the head the log last told (migration 8, a backup's copy) and
 * counts for a log still empty.
 */
#define STORE_HEAD_SQL                                                                             \
    "SELECT max(value, coalesce((SELECT max(revision) FROM changelog), 0)) FROM meta"              \
    " WHERE key = 'head'"

struct store {
    store_config_t cfg;                           /* copy of the config (path points at path) */
    char *path;                                   /* database file, owned */
    sqlite3 *db;                                  /* the writing connection */
    sqlite3_stmt *st[ST_COUNT];                   /* general statements */
    sqlite3_stmt *sel[STORE_KINDS];               /* row by key, per kind */
    sqlite3_stmt *put[STORE_KINDS];               /* row upsert, per kind */
    sqlite3_stmt *scan[STORE_KINDS];              /* live rows in key order, per kind */
    uint8_t epoch[WIRE_EPOCH_BYTES];              /* identity of this database's history */
    bool new_epoch;                               /* a backup's copy: store_open renewed epoch */
    uint64_t head;                                /* highest revision handed out */
    uint64_t head_begin;                          /* head when the batch began */
    uint64_t oldest;                              /* oldest revision in the change log */
    uint64_t oldest_begin;                        /* oldest when the batch began */
    uint64_t pinned;                              /* kept in the log above it; UINT64_MAX: none */
    int wal_next_reset;                           /* WAL frames that make a reset due */
    int wal_frames;                               /* WAL frames after the last commit */
    int wal_commit_most;                          /* most frames a commit added to this WAL */
    uint64_t wal_resets;                          /* checkpoints store_wal_reset ran */
    uint64_t wal_starts;                          /* commits that found the WAL started over */
    bool wal_reset_due;                           /* a commit left the WAL that long */
    bool in_batch;                                /* a write transaction is open */
    bool producers_lost;                          /* a reload failed: positions unknown */
    producer_t *prod;                             /* the producers, prod_count of them */
    size_t prod_cap;                              /* entries allocated in prod */
    size_t prod_count;                            /* producers in prod */
    size_t prod_logged;                           /* of those, logged (producer_t) */
    buf_t prod_blob;                              /* producers_flush's encoding */
    index_t prod_index;                           /* prod by id */
    uint8_t dirty[STORE_COUNTRIES / 8 + 1];       /* countries whose summary is stale */
    uint8_t dirty_begin[STORE_COUNTRIES / 8 + 1]; /* dirty when the batch began */
    buf_t body;                                   /* encoded Record without revision */
    buf_t out;                                    /* encoded Record with revision */
    buf_t prev;                                   /* a change's prev as logged (prev_encode) */
    buf_t old;                                    /* stored record of the row being merged */
    buf_t stamps;                                 /* encoded stamps of the row being merged */
    buf_t old_stamps;                             /* stored stamps of the row being merged */
    store_ministry_t *ministries;                 /* authority: ministries, owned; none = open */
    size_t n_ministries;                          /* entries in ministries */
    store_member_t *members;                      /* authority: producer -> ministry, owned */
    size_t n_members;                             /* entries in members */
    agg_delta_t agg[STORE_AGG_DELTAS];            /* resident aggregate changes that wait */
    agg_delta_t agg_begin[STORE_AGG_DELTAS];      /* agg when the batch began */
    size_t n_agg_begin;                           /* entries in agg_begin */
    buf_t agg_blob;                               /* agg_commit's encoding */
    pending_t *pend;                              /* the row cache, in first-touched order */
    row_change_fn on_change;                      /* told of every row the cache stores */
    size_t n_pend;                                /* entries used in pend */
    size_t *pend_dirty;        /* entries changed since the last flush, in first-changed order */
    size_t n_dirty;            /* entries used in pend_dirty */
    size_t cap_pend;           /* entries allocated in pend */
    index_t pend_index;        /* pend by key */
    size_t pend_hand;          /* the clock hand: the next entry eviction looks at */
    size_t *pend_log;          /* entries given a revision, in revision order */
    pending_t **pend_sort;     /* the entries a write-back or sweep writes, in sorted runs */
    size_t n_deferred;         /* entries deferred (committed, not in their table) */
    uint64_t state_from;       /* the tables hold every change up to it (meta 'state_from') */
    uint64_t state_from_begin; /* state_from when the batch began */
    bool write_back;           /* the next flush writes every deferred row */
    bool replay_due;           /* the tables may lack changes after state_from */
    bool opened;               /* store_open completed: store_close may write */
    size_t n_log;              /* entries used in pend_log */
    size_t n_agg;              /* entries used in agg */
    uint64_t summary_failures; /* country summaries that could not be refreshed */
    char summary_err[256];     /* why the last of them failed */

    /* The sweep (sweep.c). */
    uint32_t *defer_list;         /* entries deferred since the sweep last took the list */
    size_t n_listed;              /* entries used in defer_list */
    size_t list_end;              /* while a sweep takes the list: its length when it began */
    size_t list_taken;            /* of those, taken so far */
    enum sweep_phase sweep_phase; /* idle, taking the list, or writing */
    uint64_t sweep_from;          /* the head when the sweep began */
    size_t sweep_n;               /* entries of the sweep in pend_sort */
    size_t sweep_runs;            /* runs used in runs */
    sweep_run_t runs[SWEEP_RUNS]; /* the sorted runs of pend_sort */
    /* What status and metrics read every second, kept as rows change so
     * reading them scans nothing: counted at open, then moved by
     * row_store and conflict_put, and put back by a rollback. */
    uint64_t live[STORE_KINDS];            /* live (not deleted) records per kind */
    uint64_t live_begin[STORE_KINDS];      /* live when the batch began */
    uint64_t reasons[STORE_REASONS];       /* conflict rows per reason class */
    uint64_t reasons_begin[STORE_REASONS]; /* reasons when the batch began */
    /* Retention of the conflicts table (conflicts_prune). */
    int64_t conflict_oldest_us;    /* recorded_us of its oldest row; INT64_MAX: empty */
    int64_t conflict_oldest_begin; /* conflict_oldest_us when the batch began */
    uint64_t conflicts_added;      /* rows the open batch recorded */
    uint64_t batch_changes;        /* see store_batch_changes */
    store_pruned_t pruned;         /* rows retention dropped since open (committed) */
    store_pruned_t pruned_batch;   /* rows the open batch's commit drops */
    char err[256];                 /* message of the last failure */
};

/* ---------------------------------------------------------------- store.c */

/* The errno of an SQLite result code (0 for OK, ROW, DONE). */
int errno_from_sqlite(int rc);
/* Keeps SQLite's message for store_errmsg and returns the errno. */
int db_fail(store_t *s, int rc);
/* Counts the work of connection db through the test seams, when asked. */
void seam_watch(const store_t *s, sqlite3 *db);
/* A fault the test seams inject before reading `what`: 0 or a negative errno. */
int seam_fault(store_t *s, const char *what);
/* The store's clock: the config's seam, else the wall clock. */
int64_t now_us(const store_t *s);
/* Merges one update's write into its record's row (store_apply_as after
 * its checks, store_apply_replica); m says what lost. 0 or -errno. */
int apply_merge(store_t *s, const merge_update_t *up, merge_t *m);

/* ---------------------------------------------------------------- schema.c */

int exec(store_t *s, const char *sql);
int step_done(store_t *s, sqlite3_stmt *st);
void stmt_reset(sqlite3_stmt *st);
void bind_key(sqlite3_stmt *st, const rec_key_t *key);
int prepare_all(store_t *s);
int check_owner(store_t *s);
int migrate(store_t *s);
int claim_copy(store_t *s);
int load_meta(store_t *s);
int load_oldest(store_t *s);

/* ---------------------------------------------------------------- rowcache.c */

/* rowcache.c, for the sweep */
uint64_t defer_revs(const store_t *s);
int pending_put(store_t *s, const pending_t *p);
int state_from_put(store_t *s, uint64_t revision);
/* sweep.c */
void sweep_note(store_t *s, size_t pos);
void sweep_reset(store_t *s);
int sweep_write_all(store_t *s);
int sweep_pace(store_t *s, size_t fresh, size_t revs);
void pending_clear(store_t *s);
void pending_free(store_t *s);
int pending_flush(store_t *s);
int row_load(store_t *s, const rec_key_t *key, row_t *row);
int row_unpack(store_t *s, const rec_key_t *key, row_t *row);
void row_free(row_t *row);
int row_store(store_t *s, const rec_key_t *key, const row_t *row, const Parksync__V1__Record *rec,
              bool stamps, const extra_t *ex, bool *changed);
/* Writes the changes after state_from into the tables, in the open
 * batch: each resident's latest, in key order (replay.c). */
int state_replay(store_t *s);
/* The row cache's lookup key of a record (kind, then key columns);
 * false when it is too long to be cached (its row is never deferred). */
bool pending_key(const rec_key_t *key, char *out);

/* The deferred rows as a snapshot or a pull of the change log finds them
 * (cursor.c): their lookup keys and latest revisions, copied when it
 * opens, by key. */
typedef struct deferred_set {
    uint32_t n;         /* entries */
    char *keys;         /* the keys, NUL-terminated one after the other */
    uint32_t *at;       /* entry i's key begins at keys + at[i] */
    uint64_t *revision; /* entry i's latest revision */
    bool *deleted;      /* entry i's latest revision is a tombstone */
    index_t index;      /* entries by key */
} deferred_set_t;
/* Copies the deferred rows into d (empty when none). 0 or -ENOMEM. */
int deferred_copy(const store_t *s, deferred_set_t *d);
/* The latest revision of the deferred row of key k in d; 0 when none. */
uint64_t deferred_find(const deferred_set_t *d, const char *k);
void deferred_free(deferred_set_t *d);

/* ---------------------------------------------------------------- producer.c */

producer_t *producer_find(const store_t *s, const char *id);
int producers_load(store_t *s);
int producers_reload(store_t *s);
bool producers_ready(store_t *s);
int producers_flush(store_t *s);
int producers_write(store_t *s, bool logged);
/* A producer's position, as a view keeps it. */
typedef struct position {
    char id[WIRE_MAX_ID + 1]; /* producer id */
    uint64_t sequence;        /* its last sequence */
} position_t;
/* Copies the positions of every producer with one (*n of them, into
 * *out, malloc'd; NULL when none): between batches, what a view begun
 * now reads. Its table lags (producers_flush), so a view takes them from
 * the cache, at no cost to the loop later. 0, -EBUSY inside a batch,
 * -EIO while the positions are unknown, or -ENOMEM. */
int producers_copy(store_t *s, position_t **out, size_t *n);
int producer_check(store_t *s, const char *ministry, const char *id, uint64_t seq, producer_t **pp,
                   store_outcome_t *outcome);

/* ---------------------------------------------------------------- authority.c */

const store_ministry_t *ministry_of(const store_t *s, const char *producer);
void refusal(const store_t *s, const char *ministry, const Parksync__V1__Update *u, kind_t kind,
             const rec_key_t *key, char *why, size_t size);
/* The future-skew part of refusal alone (replicated writes): "" or why. */
void skew_refusal(const store_t *s, const Parksync__V1__Update *u, char *why, size_t size);

/* ---------------------------------------------------------------- conflict.c */

size_t reason_class_of(const char *reason);
int conflict_oldest_load(store_t *s);
int conflict_put(store_t *s, const char *producer, uint64_t seq, kind_t kind, const rec_key_t *key,
                 const char *reason, const Parksync__V1__Update *u, bool claim);
int claim_put(store_t *s, const Parksync__V1__Update *u, kind_t kind, const rec_key_t *key,
              const char *reason);
int conflicts_prune(store_t *s);
bool conflicts_prune_due(store_t *s); /* rows beyond the limits remain */

/* ---------------------------------------------------------------- summary.c */

void mark_dirty(store_t *s, const char *country);
int mark_all_dirty(store_t *s);
int agg_flush(store_t *s);
int agg_commit(store_t *s);
int agg_replay(store_t *s);
int summary_on_change(store_t *s, const rec_key_t *key, const row_t *old,
                      const Parksync__V1__Record *now, bool published);

/* ---------------------------------------------------------------- paced.c */

/* The name of the checkpointer's VFS (registered at the first call), or
 * NULL when SQLite has no default VFS to build it on. */
const char *paced_vfs_name(void);

/* ---------------------------------------------------------------- admin.c */

int figures_load(store_t *s);

#endif /* PARKSYNC_STORE_INT_H */
