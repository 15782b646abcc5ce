/*
 * store.h - the consolidated picture in SQLite.
 *
 * The one narrow interface the daemon uses: open, apply updates in a batch
 * transaction, read changes since a revision, stream a snapshot, digest.
 * No ZeroMQ in here; the store speaks protobuf-c messages and encoded
 * Records (see proto/wire.h).
 *
 * Model
 * - Records: park (country, park_id), resident (country, park_id,
 *   resident_id), trade flow (exporter, importer, period), country report
 *   (country, period), and the derived country summary (country).
 * - Every field carries a stamp (vintage is FINAL, event time, producer id,
 *   sequence), compared in that order: the greatest stamp wins, so the
 *   result does not depend on the order updates arrive in. A delete leaves
 *   a tombstone with its stamp; writes older than the tombstone are
 *   refused, so a late upsert cannot resurrect a record.
 * - A merge copies known fields only: keys are rebuilt from the key (a
 *   Period holds year and months, nothing else) and no unknown field of an
 *   update reaches a record, so a record's bytes depend only on the set of
 *   updates applied. A refused update kept as a claim keeps its known
 *   fields only too: nothing the store keeps holds a field the schema
 *   does not know.
 * - The conflicts table (and the claims its rows list) is bounded by
 *   conflicts_keep rows and conflicts_keep_us of age; each commit drops a
 *   bounded step of what is beyond (store_prune_due).
 * - Every record a batch changes gets the next global revision and a row
 *   in the change log holding the record as published and the version it
 *   replaced. A record changed several times in one batch gets one
 *   revision, for its final version: the batch commits whole, so the
 *   versions in between were never visible. Rows read or written by a
 *   batch are held in memory and written when it is flushed (before
 *   summaries, digests and the commit). The change log keeps
 *   changelog_keep revisions: a commit drops what lies beyond that once
 *   it is more than a slack of keep / 1024 (at most 64 rows), and a
 *   bounded step of any backlog (store_prune_due).
 * - Each producer's last applied sequence is stored in the same
 *   transaction as the changes it caused.
 *
 * Not thread-safe: one store per thread. Cursors use their own SQLite
 * connection and may be read while the store writes (WAL).
 */
#ifndef PARKSYNC_STORE_H
#define PARKSYNC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"
#include "wire.h"

typedef struct store store_t;
typedef struct store_cursor store_cursor_t;

/* Hooks for tests, behind one small table as SQLite's os_unix.c keeps its
 * system calls: production passes none. The table is borrowed and must
 * outlive the store and its cursors. */
typedef struct store_seams {
    void *arg; /* passed to every hook */
    /* SQLite's progress handler (period 1) on the writer's connection and
     * on every cursor's: called about once per virtual machine loop step,
     * a measure of work that does not depend on the machine. NULL: off. */
    void (*vm)(void *arg);
    /* Fault injection: called where the store is about to read `what`
     * ("producers"); a negative errno makes that read fail as a storage
     * error would. NULL: no faults. */
    int (*fault)(void *arg, const char *what);
} store_seams_t;

typedef struct store_config {
    const char *path;                   /* database file; created when missing */
    bool synchronous_full;              /* PRAGMA synchronous: FULL (true) or NORMAL */
    uint64_t changelog_keep;            /* revisions kept in the change log; 0 = all */
    uint64_t conflicts_keep;            /* newest conflict rows kept, with their claims; 0 = all */
    int64_t conflicts_keep_us;          /* conflict rows (and claims) older than this go, us;
                                           0 = kept whatever their age */
    uint64_t max_producers;             /* authority off: producers known at most (a new id
                                           beyond is not admitted); 0 = no limit */
    Parksync__V1__TradeRule trade_rule; /* how a flow's value is chosen */
    double trade_threshold_pct;         /* discrepancy above this flags a flow, percent */
    double cif_fob_factor;              /* importer's figure is compared with exporter's * this */
    int64_t max_future_skew_us;         /* event times further ahead of now are refused; 0 = off */
    int64_t (*now_us)(void);            /* clock seam, us since 1970 UTC; NULL = wire_now_us */
    bool background_checkpoint;         /* no automatic checkpoints on the writer: the caller
                                           runs a store_checkpointer on a thread of its own */
    size_t defer_rows;                  /* resident rows a commit may leave to the change log,
                                           written later together (store_settle); 0 = none */
    size_t cache_kib;                   /* the writer's page cache, KiB; 0 = 32 MiB */
    const store_seams_t *seams;         /* test hooks (borrowed); NULL in production */
} store_config_t;

/* What store_apply did with an update. */
typedef enum store_outcome {
    STORE_APPLIED = 0, /* sequence consumed; the update was merged (it may change nothing) */
    STORE_DUPLICATE,   /* sequence <= last applied: ignored, nothing changed */
    STORE_GAP,         /* sequence > last applied + 1: not applied */
    STORE_REJECTED,    /* sequence consumed, update refused and recorded as a conflict */
    STORE_UNADMITTED,  /* a producer the store does not admit (store_apply_as): nothing
                          changed and nothing kept, its sequence included */
} store_outcome_t;

/* Which records a cursor returns. kind UNSPECIFIED = all kinds; country
 * "" = all countries (trade flows match on exporter or importer). */
typedef struct store_filter {
    Parksync__V1__RecordKind kind;
    char country[3];
    bool provenance; /* snapshot: fill Record.provenance from the field stamps */
} store_filter_t;

/* ---------------------------------------------------------------- authority
 *
 * Who may write what. A ministry speaks for one country and by default
 * owns the parks, residents and country reports whose key country is its
 * country, and the trade reports whose reporter is its country (its own
 * side of each flow); grants add (kind, country) rights. Producers are
 * mapped to ministries here until authentication names the ministry
 * itself (store_apply_as). With no ministry at all, authority is open:
 * every producer may write everything.
 */
#define STORE_MAX_GRANTS 16 /* extra rights per ministry */

typedef struct store_grant {
    Parksync__V1__RecordKind kind; /* UNSPECIFIED: every kind */
    char country[3];               /* key country (trade: reporter) */
} store_grant_t;

typedef struct store_ministry {
    char name[WIRE_MAX_ID + 1];             /* e.g. "AZ-MOE" */
    char country[3];                        /* the country it speaks for */
    store_grant_t grants[STORE_MAX_GRANTS]; /* extra rights */
    size_t n_grants;                        /* grants used */
} store_ministry_t;

typedef struct store_member {
    char producer[WIRE_MAX_ID + 1]; /* producer id */
    size_t ministry;                /* index into store_authority_t.ministries */
} store_member_t;

typedef struct store_authority {
    const store_ministry_t *ministries; /* n_ministries entries; none: authority is open */
    size_t n_ministries;
    const store_member_t *members; /* which producer speaks for which ministry */
    size_t n_members;
} store_authority_t;

/* Defaults: synchronous FULL, keep 1,000,000 revisions, 1,000,000
 * conflict rows for at most 365 days, 1,000 producers, importer first,
 * threshold 10 %, factor 1.0. path is left NULL. */
void store_config_init(store_config_t *cfg);

/* Opens (creating and migrating as needed) the database at cfg->path in
 * WAL mode. Returns the store, or NULL with a message in err (which names
 * the file and SQLite's error). The config is copied. */
store_t *store_open(const store_config_t *cfg, char *err, size_t errlen);

/* Closes the store, rolling back an open batch. NULL-safe; sets *sp = NULL. */
void store_close(store_t **sp);

/* SQLite's message for the last failure on the store's connection. */
const char *store_errmsg(const store_t *s);

/* The path of the database's WAL file, as SQLite names it (its absolute
 * path, symbolic links resolved): valid until store_close. */
const char *store_wal_path(const store_t *s);

/* Replaces the authority rules (copied; NULL or no ministries: open).
 * Applies to updates applied from now on; what is merged stays. Returns 0,
 * -EINVAL (a member names no ministry) or -ENOMEM. */
int store_set_authority(store_t *s, const store_authority_t *a);

/* True when some ministry is configured (authority is enforced). */
bool store_authority_on(const store_t *s);

/* ---------------------------------------------------------------- batches */

/* Starts a batch: one write transaction. -EBUSY if one is open; -EIO
 * (with store_errmsg saying so) while the producers' positions are
 * unknown because reloading them after a rollback failed: each begin
 * retries the reload, and no batch runs until it succeeds, so a position
 * never goes backwards. */
int store_begin(store_t *s);

/* Commits the batch. Returns 0 or a negative errno; on failure the batch
 * is rolled back and nothing of it is kept (the caller must not ack). */
int store_commit(store_t *s);
/* Writes the rows commits left deferred (store_int.h, the row cache), in
 * a transaction of its own, so that another connection reading the
 * tables sees everything committed. A cursor that needs the resident
 * table whole (history, a whole pull), the digest and a backup do it
 * when they begin, and store_close; a snapshot and a pull of changes
 * read the waiting rows from the change log instead. The daemon need
 * not call it. 0,
 * -EBUSY inside a batch (with rows deferred), or a negative errno. */
int store_settle(store_t *s);

/* Abandons the batch and reloads the producers' committed positions
 * (when that fails, see store_begin). NULL-safe on a store without one. */
void store_rollback(store_t *s);

/* Applies one update inside the open batch. The update must have passed
 * wire_update_validate. Sets *outcome. Returns 0, or a negative errno on a
 * storage failure, after which the batch must be rolled back. */
int store_apply(store_t *s, const Parksync__V1__Update *u, store_outcome_t *outcome);

/* store_apply for an update whose ministry is known from authentication:
 * `ministry` names a configured ministry and replaces the producer-id
 * lookup; NULL behaves as store_apply.
 *
 * A producer costs nothing durable until it is admitted: with authority
 * on, an update whose producer no ministry lists (and no ministry is
 * named) is STORE_UNADMITTED; with authority off, so is one from a new
 * producer id while max_producers are known. Nothing of it is kept,
 * not even its sequence: once admitted (a reload that lists it), the
 * producer's updates apply from where it stands.
 *
 * Refusals (STORE_REJECTED, the sequence consumed, a conflict row, the
 * update's known fields kept as a claim):
 * - authority on and the ministry named unknown: "unknown producer";
 * - the ministry does not own the record: "not authoritative: <ministry>
 *   does not own <kind> <country>";
 * - event time more than max_future_skew_us ahead of the clock:
 *   "event time N s in the future".
 * Refusals depend only on the update, the rules and the clock, never on
 * the order updates arrive in. */
int store_apply_as(store_t *s, const char *ministry, const Parksync__V1__Update *u,
                   store_outcome_t *outcome);

/* Consumes the sequence of an update that failed validation (its
 * envelope is sound): the producer's last sequence advances as for an
 * applied update, nothing else changes, and a conflict with `reason` is
 * recorded, with the update's kind, its event time and, when its key
 * fields are well-formed, its key. Duplicate, gap and admission rules as
 * for store_apply. Returns 0 or a negative errno. */
int store_reject(store_t *s, const Parksync__V1__Update *u, const char *reason,
                 store_outcome_t *outcome);

/* Records a conflict about an update without applying it and without
 * touching any producer's sequence: for an update refused before the
 * store may act on it (its producer id is not one of the authenticated
 * ministry's, so consuming that producer's sequence would let a ministry
 * stall or skip another's updates). Returns 0 or a negative errno. */
int store_note_conflict(store_t *s, const Parksync__V1__Update *u, const char *reason);

/* Recomputes the summaries of countries touched since the last refresh,
 * inside the open batch; a summary that changed gets a revision like any
 * record. Totals are exact; one beyond its field's range is clamped to it
 * and the summary marked `saturated` (proto/README.md, Bounds). Each
 * country is refreshed apart (a savepoint): when one fails, what it did
 * is undone, its old summary stays, store_summary_failures counts it and
 * store_summary_error says why, and the others and the batch's updates
 * go on; it is tried again when the country next changes. Returns the
 * number of summaries that changed, or a negative errno when the batch's
 * own rows cannot be written (the batch must then be rolled back). */
int store_refresh_summaries(store_t *s);

/* Country summaries store_refresh_summaries could not refresh, since the
 * store was opened. */
uint64_t store_summary_failures(const store_t *s);

/* Why the last of them failed ("summary of AZ not refreshed: ..."), or "". */
const char *store_summary_error(const store_t *s);

/* True when some country's summary is out of date. */
bool store_summaries_dirty(const store_t *s);

/* ---------------------------------------------------------------- reading */

/* Last applied sequence of a producer (inside the batch if one is open);
 * 0 for an unknown producer, or while the positions cannot be reloaded
 * (see store_begin). */
uint64_t store_producer_last(store_t *s, const char *producer_id);

/* Highest revision given out (committed, or inside the open batch). */
uint64_t store_head(const store_t *s);

/* The open batch's changes, each counted once per country it concerns
 * (a trade flow twice): what its commit gives the daemon to publish.
 * 0 outside a batch. */
uint64_t store_batch_changes(const store_t *s);

/* Resident rows committed to the change log and not yet written to
 * their table (store_config_t.defer_rows). */
uint64_t store_deferred_rows(const store_t *s);
/* Bytes the writer's page cache holds now (store_config_t.cache_kib is
 * its bound, give or take SQLite's headers). */
uint64_t store_cache_bytes(const store_t *s);
/* Revisions of the change log after the tables' last complete write
 * (state_from): what a store opened after a crash replays into them. At
 * most STORE_DEFER_REVS (or half of changelog_keep). */
uint64_t store_replay_revisions(const store_t *s);

/* Oldest revision the change log still holds (head + 1 when empty). */
uint64_t store_oldest(store_t *s);

/* Keeps every revision above `revision` in the change log, whatever
 * changelog_keep says, until pinned again: the daemon pins what it has
 * not published yet, so a batch larger than the change log cannot lose
 * changes before subscribers see them. UINT64_MAX (the default) pins
 * nothing. */
void store_pin_changes(store_t *s, uint64_t revision);

/* Where a checkpoint left the WAL, in frames (pages): how long it was, and
 * how much of it had been copied back into the database. */
typedef struct store_wal {
    int64_t frames;     /* frames in the WAL */
    int64_t backfilled; /* of those, copied back */
} store_wal_t;

/* With cfg.background_checkpoint: when a commit left the WAL longer than
 * about 64 MiB, a PASSIVE checkpoint on the writer's connection, so that
 * the WAL starts over at the next transaction (the background checkpoints
 * alone never let it under steady commits). Call between batches, after
 * publishing, with where the checkpointer's last checkpoint left the WAL
 * (NULL: there is none, reset at once): it runs only once that is within a
 * few hundred frames of the end, or two of the largest commits, so the loop
 * waits for little more than two fsyncs, unless the WAL has grown to 128
 * MiB. Returns 1 when it ran and copied everything, 0 when nothing was due,
 * it must wait for the checkpointer, or a reader kept part of the WAL, or a
 * negative errno (store_errmsg says why). */
int store_wal_reset(store_t *s, const store_wal_t *checkpointed);

/* Checkpoints store_wal_reset ran on the writer's connection since open
 * (whether or not a reader kept part of the WAL): a caller that times the
 * call tells a pause of the writer from a call that had nothing to do. */
uint64_t store_wal_resets(const store_t *s);

/* Times a commit found the WAL started over from its beginning since
 * open: after store_wal_reset, or after the checkpointer copied all of it
 * while no transaction was open. Both bound the WAL; only the first makes
 * the writer wait. */
uint64_t store_wal_starts(const store_t *s);

/* True when the WAL is long enough that the writer waits for the
 * checkpointer to catch up before it resets it: checkpoint again soon. */
bool store_wal_long(const store_wal_t *w);

/* True when the WAL is so long that the writer resets it at its next
 * commit whatever is left to copy: a checkpoint now would only make that
 * reset find the checkpoint lock taken. */
bool store_wal_forced(const store_wal_t *w);

/* The database's epoch: WIRE_EPOCH_BYTES random bytes made when the
 * database was created; a recreated database has another, and so has a
 * backup's copy opened by store_open (each time it is restored). */
const uint8_t *store_epoch(const store_t *s);

/* True when store_open found a backup's copy and gave it a new epoch. */
bool store_epoch_is_new(const store_t *s);

/* Calls fn for each change-log entry with revision > since, in revision
 * order, on the store's own connection (use between batches, e.g. to
 * publish what a commit changed). record/len is the encoded Record as
 * published; country is the record's topic country. fn returns 0 to go on,
 * non-zero to stop. Returns 0, -ERANGE when `since` is older than the log
 * keeps (since + 1 < store_oldest), or a negative errno. */
typedef int (*store_change_fn)(void *arg, uint64_t revision, Parksync__V1__RecordKind kind,
                               const char *country, const uint8_t *record, size_t len);
int store_changes(store_t *s, uint64_t since, store_change_fn fn, void *arg);

/* Opens a consistent view of the live records matching filter (deleted
 * ones are left out), on a new read-only connection. Returns the cursor or
 * NULL with *err set to a negative errno. */
store_cursor_t *store_snapshot_open(store_t *s, const store_filter_t *filter, int *err);

/* Opens a view of the live records matching filter as they were at
 * `revision` (history; provenance is not available), on a new read-only
 * connection: current rows with revision <= `revision`, and for rows
 * changed since, the version the change log kept (Record.revision is
 * the version's own). store_cursor_revision returns `revision`. NULL
 * with *err = -ERANGE when the change log (or its history, which starts
 * with schema 3) no longer reaches back to revision + 1, -EINVAL when
 * `revision` is beyond the head, or another negative errno. */
store_cursor_t *store_snapshot_at_open(store_t *s, const store_filter_t *filter, uint64_t revision,
                                       int *err);

/* Opens a view of change-log entries with revision > since matching
 * filter, in revision order, on a new read-only connection. NULL with
 * *err = -ERANGE when since is older than the log keeps, -EINVAL when
 * since is beyond the head (a revision of another history). */
store_cursor_t *store_changes_open(store_t *s, uint64_t since, const store_filter_t *filter,
                                   int *err);

/* SQLite's message for the cursor's last failure ("database disk image
 * is malformed", ...); "" when none. A cursor that cannot be opened
 * leaves its message in store_errmsg instead. */
const char *store_cursor_errmsg(const store_cursor_t *c);

/* The head revision of the cursor's view. */
uint64_t store_cursor_revision(const store_cursor_t *c);

/* Work a history cursor (store_snapshot_at_open) does between two
 * -EAGAIN returns of store_cursor_next: change-log lookups, and rows read
 * but left out. An old revision of a much-changed record would otherwise
 * cost one lookup per change in one call. */
#define STORE_CURSOR_STEPS 256

/* Steps the cursor. Returns 1 and points *record and *len at the next encoded
 * Record (valid until the next call), 0 at the end, -EAGAIN when a history
 * cursor has done STORE_CURSOR_STEPS steps since it last returned -EAGAIN
 * (nothing is lost: call again, e.g. on the next turn of a loop), or
 * another negative errno. */
int store_cursor_next(store_cursor_t *c, const uint8_t **record, size_t *len);

/* Ends the view and closes its connection. NULL-safe; sets *cp = NULL. */
void store_cursor_close(store_cursor_t **cp);

/* ---------------------------------------------------------------- replication
 *
 * Sites pull from each other (proto/README.md, Replication). The merge
 * state of a record is its body and its stamps; a site sends it whole and
 * the pulling site merges it under the same rules as updates, one
 * synthetic update per distinct stamp, so the result does not depend on
 * the order or the number of times states are exchanged.
 */

/* Opens a view of what a site lacks that stored this one's revisions
 * through `since` of `epoch` (NULL: none): the records changed after
 * since, in revision order; or, on a first pull (epoch NULL), for a
 * position of another epoch, beyond
 * the head or older than the change log keeps, every record (*full =
 * true, in key order). Deleted records are included, summaries left out;
 * each is an encoded Record with Record.stamps and Record.tombstone. The
 * view's revision (store_cursor_revision) is where the pulling site
 * stands once it has merged them all. Cursor steps over passed-over log
 * entries yield -EAGAIN like history's. NULL with *err on failure. */
store_cursor_t *store_replica_open(store_t *s, const uint8_t *epoch, uint64_t since, bool *full,
                                   int *err);

/* Calls fn for every producer with a position in the cursor's view,
 * as of its revision. fn returns non-zero to stop. 0 or a negative errno. */
typedef int (*store_position_fn)(void *arg, const char *producer_id, uint64_t last_sequence);
int store_cursor_producers(store_cursor_t *c, store_position_fn fn, void *arg);

/* Which countries a peer may bring records of. */
typedef struct store_trust {
    const char *peer;           /* its name, for conflict rows */
    bool all;                   /* every country */
    const char (*countries)[3]; /* else these, n of them */
    size_t n;
} store_trust_t;

/* What store_apply_replica did with one record. */
typedef struct store_replica_result {
    uint32_t writes;  /* distinct stamps merged */
    uint32_t refused; /* writes for a country the peer may not bring (conflict rows) */
    uint32_t invalid; /* writes that fail the rules an update must pass (conflict rows) */
    char why[200];    /* the first refusal's reason; "" when none */
} store_replica_result_t;

/* Merges a replicated record (from a replica cursor, decoded) inside the
 * open batch: each distinct stamp becomes the update that wrote it (the
 * fields it holds, or a delete), validated as an update is and merged
 * without touching any producer's sequence and without conflict rows
 * for values that lose. A write for a country the trust does not name
 * is refused, as is one that fails validation: each gets a conflict row
 * and is counted in *res. Returns 0, or a negative errno on a storage
 * failure (roll the batch back). */
int store_apply_replica(store_t *s, const store_trust_t *trust, const Parksync__V1__Record *r,
                        store_replica_result_t *res);

/* Raises a producer's position to last_sequence, inside the open batch,
 * as a replicated position: what a peer applied of it is merged here
 * (its updates' effects came with the records), so it resumes here
 * without a gap. A lower position changes nothing. A new producer is
 * taken without the authority rules (its updates were admitted where
 * they were applied), while fewer than max_producers are known (0: any),
 * whatever authority says: a peer cannot grow the table without bound.
 * 0 or a negative errno. */
int store_merge_position(store_t *s, const char *producer_id, uint64_t last_sequence);

/* Where this site stands with peer `name`: the peer's epoch and the
 * revision of it pulled and stored through. *has = false (and revision
 * 0) before the first pull. 0 or a negative errno. */
int store_peer_get(store_t *s, const char *name, uint8_t epoch[WIRE_EPOCH_BYTES], bool *has,
                   uint64_t *revision);

/* Stores that position inside the open batch, with the records it
 * merged, so a crash keeps both or neither. 0 or a negative errno. */
int store_peer_set(store_t *s, const char *name, const uint8_t epoch[WIRE_EPOCH_BYTES],
                   uint64_t revision);

/* ---------------------------------------------------------------- conflicts */

/* Which conflict rows store_conflicts returns. Zero fields match all. */
typedef struct store_conflict_filter {
    Parksync__V1__RecordKind kind; /* UNSPECIFIED: every kind */
    char country[3];               /* "": every country; else country or partner */
    int64_t since_us;              /* recorded at or after, us since 1970 UTC */
    uint64_t after_id;             /* rows with id > after_id */
    uint32_t limit;                /* rows at most; 0 = no limit */
} store_conflict_filter_t;

/* One row of the conflicts/audit table; strings valid during the callback. */
typedef struct store_conflict {
    uint64_t id;                   /* grows with every row */
    int64_t recorded_us;           /* store's clock when recorded */
    const char *producer_id;       /* whose update or value */
    uint64_t sequence;             /* its sequence */
    Parksync__V1__RecordKind kind; /* UNSPECIFIED: the update named no record */
    const char *key;               /* record key as text, or NULL */
    const char *country;           /* key country (trade: reporter), or NULL */
    const char *partner;           /* trade: the other country, or NULL */
    const char *reason;            /* why */
    bool has_event_time;           /* event_time_us is known */
    int64_t event_time_us;         /* the update's event time */
    bool claim_kept;               /* the update is kept in the claim table */
} store_conflict_t;

typedef int (*store_conflict_fn)(void *arg, const store_conflict_t *c);

/* Calls fn for each matching row in id order on the store's connection
 * (between batches or inside one). fn returns 0 to go on, non-zero to
 * stop. Returns 0 or a negative errno. */
int store_conflicts(store_t *s, const store_conflict_filter_t *f, store_conflict_fn fn, void *arg);

/* BLAKE2b-256 over every live record's body (without revision), in key
 * order: equal digests mean the same consolidated state. Summaries are
 * refreshed first when dirty and a batch is open; otherwise the digest
 * covers them as stored. Returns 0 or a negative errno. */
int store_digest(store_t *s, uint8_t out[32]);

/* ---------------------------------------------------------------- producer stats */

/* What the store counted for one producer since the database was made. */
typedef struct store_producer_stats {
    uint64_t last_sequence; /* last applied or rejected sequence; 0: unknown */
    uint64_t applied;       /* updates applied */
    uint64_t duplicates;    /* updates ignored as already applied */
    uint64_t gaps;          /* updates beyond last_sequence + 1, not applied */
    uint64_t rejected;      /* sequences consumed but refused */
    int64_t last_seen_us;   /* wall-clock us of its last update; 0: never */
} store_producer_stats_t;

/* Fills *out for producer_id (inside the batch if one is open). Returns 0,
 * or -ENOENT (and zeroes *out) for an unknown producer or while the
 * positions cannot be reloaded (see store_begin). */
int store_producer_stats(store_t *s, const char *producer_id, store_producer_stats_t *out);

/* ---------------------------------------------------------------- operations
 * What `parksync status|metrics|backup` read. Call between batches.
 */

/* Sets *n to the number of live (not deleted) records of kind (PARK ..
 * SUMMARY), inside the batch if one is open. The store keeps the count as
 * rows change (a rollback restores it), so this reads no table. Returns
 * 0, or -EINVAL for another kind. */
int store_count_records(store_t *s, Parksync__V1__RecordKind kind, uint64_t *n);

/* Calls fn for every known producer (in no particular order) with its
 * counters; id and stats are valid during the call. fn returns 0 to go
 * on, non-zero to stop. Returns 0, or -EIO while the positions cannot be
 * reloaded (see store_begin). */
typedef int (*store_producer_fn)(void *arg, const char *producer_id,
                                 const store_producer_stats_t *stats);
int store_producers(store_t *s, store_producer_fn fn, void *arg);

/* Counts the conflicts/audit table by reason class: "not_authoritative",
 * "unknown_producer", "future_event_time", "invalid", "stale",
 * "overridden", "other" (classes without rows are left out), in the
 * order of their names; fn may be NULL. Sets *total to all rows. These
 * are the rows stored now: retention takes the rows it drops out of
 * them (store_pruned_counts counts those). Kept as conflicts are
 * recorded and dropped, like store_count_records: reads no table.
 * Returns 0. */
typedef int (*store_reason_fn)(void *arg, const char *reason_class, uint64_t n);
int store_conflict_counts(store_t *s, uint64_t *total, store_reason_fn fn, void *arg);

/* What retention dropped. */
typedef struct store_pruned {
    uint64_t conflicts; /* conflict rows beyond conflicts_keep or older than conflicts_keep_us */
    uint64_t claims;    /* claims listed by those rows */
} store_pruned_t;

/* Fills *out with what retention dropped since the store was opened (by
 * committed batches). */
void store_pruned_counts(const store_t *s, store_pruned_t *out);

/* True, between batches, when change-log or conflict rows beyond the
 * retention limits remain because a commit drops a bounded step of them
 * at a time (a limit lowered, a burst of rows grown old, a batch larger
 * than the change log): an empty batch (begin, commit) drops the next
 * step. Reads no table. */
bool store_prune_due(store_t *s);

/* An online backup in progress (SQLite's backup API on the store's own
 * connection: pages the store writes while it runs are copied into it
 * too, so the finished copy is the database as of the last commit). */
typedef struct store_backup store_backup_t;

/* Starts copying the database to path, which must be absolute; the copy
 * is built in "path.tmp" and renamed over path by store_backup_finish.
 * Returns the backup, or NULL with *err = -EINVAL (relative path), -EBUSY
 * (a batch is open) or a negative errno (with store_errmsg set). */
store_backup_t *store_backup_start(store_t *s, const char *path, int *err);

/* Copies up to `pages` pages (-1: all). Call between batches. Returns 1
 * when the copy is complete, 0 when pages remain, or a negative errno. */
int store_backup_step(store_backup_t *b, int pages);

/* Completes the copy of a backup whose last step returned 1, in
 * "path.tmp": marks it as a copy (store_open gives it a new epoch when it
 * is restored), switches it to a rollback journal (one self-contained
 * file) and closes it, so that it can be checked (store_check_file on
 * store_backup_copy_path) before it takes the final name. Returns 0 or a
 * negative errno (with store_errmsg set). Idempotent. */
int store_backup_seal(store_backup_t *b);

/* The temporary file the copy is built in ("path.tmp"). */
const char *store_backup_copy_path(const store_backup_t *b);

/* Seals the copy if that is not done yet, fsyncs it, renames it to path
 * and fsyncs the directory. Sets *bytes to its size and *revision to the
 * head revision it holds. Returns 0 or a negative errno (the temporary
 * file is then removed). Frees the backup and sets *bp = NULL. */
int store_backup_finish(store_backup_t **bp, uint64_t *bytes, uint64_t *revision);

/* Abandons a backup and removes its temporary file. NULL-safe; sets *bp = NULL. */
void store_backup_abort(store_backup_t **bp);

/* The whole backup in one go (start, step all, seal, check, finish).
 * Returns 0 or a negative errno: -EUCLEAN when the copy fails its check
 * (nothing is left at path). */
int store_backup(store_t *s, const char *path);

/* ---------------------------------------------------------------- checks
 *
 * SQLite's PRAGMA quick_check: every page of every table and index is
 * read and its structure verified (not the contents of indexes against
 * their tables), O(size of the file). Corruption anywhere a store call
 * reads surfaces as -EUCLEAN, which store_strerror calls "database
 * malformed".
 */

/* Checks the database file at path, opened read-only. Returns 0 when
 * quick_check finds nothing, -EUCLEAN with its first findings in msg, or
 * another negative errno with SQLite's message in msg. */
int store_check_file(const char *path, char *msg, size_t len);

/* strerror for the store's errors: "database malformed" for -EUCLEAN. */
const char *store_strerror(int err);

/* ---------------------------------------------------------------- checkpoints
 *
 * A WAL checkpoint copies committed pages back into the database file and
 * syncs it; on a large database that takes hundreds of milliseconds, which
 * SQLite's automatic checkpoint makes the writer wait for after a commit.
 * With cfg.background_checkpoint the writer never checkpoints; a
 * checkpointer, on its own connection and its own thread, runs PASSIVE
 * checkpoints instead, which never block the writer or readers.
 */
typedef struct store_checkpointer store_checkpointer_t;

/* Opens a connection for checkpoints of the database at path. Returns it,
 * or NULL with a message in err. Use it from one thread only. */
store_checkpointer_t *store_checkpointer_open(const char *path, char *err, size_t errlen);

/* Runs one PASSIVE checkpoint, and says in *w where it left the WAL (both
 * -1 when another connection was checkpointing, and this one did not).
 * Returns the WAL frames not yet copied back (readers may hold them; 1
 * when it did not run) or a negative errno. */
int store_checkpoint(store_checkpointer_t *c, store_wal_t *w);

/* Syncs of the database file that checkpointers' connections made in
 * this process: one at the end of each checkpoint that copied pages, and
 * one every 256 pages within it, so that a large copy never leaves a
 * commit's fsync megabytes of pages to flush. */
unsigned long store_checkpoint_syncs(void);

/* quick_check of the live database on the checkpointer's connection, as
 * store_check_file. */
int store_checkpointer_check(store_checkpointer_t *c, char *msg, size_t len);

/* SQLite's message for the last failed checkpoint. */
const char *store_checkpointer_errmsg(const store_checkpointer_t *c);

/* NULL-safe; sets *cp = NULL. */
void store_checkpointer_close(store_checkpointer_t **cp);

#endif /* PARKSYNC_STORE_H */
