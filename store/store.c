/*
 * store.c - the consolidated picture in SQLite (contract: store.h).
 *
 * Sections: constants and types; errors and buffers; stamps; schema and
 * migrations; statements; producers; open and close; batches; rows and
 * the change log; merging (generic bodies, trade flows); apply; summaries;
 * reading; cursors; digest.
 *
 * Each record row keeps the encoded Record exactly as published (column
 * `record`) and the stamps of its fields (column `stamps`, a private
 * encoding described at stamps_encode). A field's value is the write with
 * the greatest stamp among the writes newer than the record's tombstone,
 * whatever order the writes arrive in; the record is live while some slot
 * (a body field, or the key slot that every upsert stamps) is newer than
 * the tombstone.
 *
 * Encoded Records start with their revision (field 1, protobuf-c packs in
 * field-number order), so the store compares and hashes records without
 * the revision by skipping that first field, and adds it by prepending it.
 */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

/* ---------------------------------------------------------------- constants */

#define STORE_BUSY_TIMEOUT_MS 5000      /* ms a connection waits for a lock */
#define STORE_MAX_SLOTS       16        /* stamp slots per record: key slot + body fields */
#define STORE_KEY_SLOT        0         /* slot (and stored field id) of the key stamp */
#define STORE_STAMPS_V1       1         /* first byte of a stamps blob: a stamp per slot */
#define STORE_STAMPS_VERSION  2         /* first byte of a stamps blob: shared stamps */
#define STORE_STAMP_CLEARED   0x80      /* vintage byte flag: the stamp is a cell's delete */
#define STORE_MAX_KEYS        3         /* key columns of a record kind */
#define STORE_PERIOD_TEXT     32        /* bytes of a period key ("2020-01..10"), with NUL */
#define STORE_COUNTRIES       (26 * 26) /* ISO alpha-2 codes: size of the dirty set */
#define STORE_KINDS           6         /* RecordKind values 0..5 */
#define STORE_PRUNE_SLACK     100       /* prune once the log exceeds keep by keep/100 */
#define STORE_PRUNE_STEP      1024      /* conflict rows a commit drops beyond those it added */
#define STORE_PRODUCERS_MIN   16        /* initial slots of the producer map */
#define STORE_KEY_TEXT        256       /* bytes of a key as text in a conflict row */
#define STORE_TAG_REVISION    0x08      /* Record field 1 (revision), wire type VARINT */
#define STORE_VARINT_MAX      10        /* bytes of the longest varint */
#define STORE_STAMP_MAX       (1 + 1 + 8 + STORE_VARINT_MAX + 1 + WIRE_MAX_ID) /* bytes */
#define STORE_REASONS         7 /* conflict reason classes (reason_classes) */

typedef Parksync__V1__RecordKind kind_t;

/*
 * Exact sums of money. Each amount is an int64 (|value| <= 10^17 once
 * validated), but a total over many parks or residents is not bounded:
 * totals are kept in 128 bits, which no count of rows a database can hold
 * overflows (2^127 cents is 10^19 rows of 2^63), and clamped to a field's
 * range only where a summary publishes them (wide_clamp).
 */
__extension__ typedef __int128 wide_t;
__extension__ typedef unsigned __int128 uwide_t;

#define WIDE_MAX       ((wide_t)(((uwide_t)1 << 127) - 1)) /* greatest wide_t */
#define WIDE_MIN       (-WIDE_MAX - 1)                     /* least wide_t */
#define WIDE_INT64_MIN ((wide_t)INT64_MIN)                 /* bounds of an int64 field */
#define WIDE_INT64_MAX ((wide_t)INT64_MAX)
#define AGG_CARRY_UNIT 1000000000000000000LL /* cents one resident_agg.investment_carry is */

/* ---------------------------------------------------------------- types */

/* Who wrote a value and when; compared by stamp_cmp. */
typedef struct stamp {
    bool set;                       /* false: no write (older than any write) */
    bool cleared;                   /* the write was a delete of this cell (a trade side) */
    uint8_t vintage;                /* Parksync__V1__Vintage of the write */
    int64_t time_us;                /* source's event time, us since 1970 UTC */
    uint64_t sequence;              /* producer's sequence number */
    char producer[WIRE_MAX_ID + 1]; /* producer id, NUL-terminated */
} stamp_t;

/* The stamps of one record. */
typedef struct stamps {
    stamp_t tomb;                  /* greatest delete seen (set = ever deleted) */
    stamp_t slot[STORE_MAX_SLOTS]; /* slot 0: key; generic i+1: field i; trade 1, 2: cells */
} stamps_t;

/* A growable byte buffer reused across updates. */
typedef struct buf {
    uint8_t *data; /* malloc'd, NULL when never used */
    size_t len;    /* bytes used */
    size_t cap;    /* bytes allocated */
} buf_t;

/* Last applied state of one producer, cached in memory. */
typedef struct producer {
    char id[WIRE_MAX_ID + 1]; /* producer id; "" marks a free slot */
    uint64_t last_sequence;   /* last applied or rejected sequence */
    uint64_t applied;         /* updates applied */
    uint64_t duplicates;      /* updates ignored as already applied */
    uint64_t gaps;            /* updates refused for a missing sequence */
    uint64_t rejected;        /* sequences consumed by store_reject */
    int64_t last_seen_us;     /* wall clock of its last update, us since 1970 */
    bool dirty;               /* changed in the open batch, written at commit */
} producer_t;

/* The key of one record, as its table's key columns. */
typedef struct rec_key {
    kind_t kind;                     /* record kind */
    const char *col[STORE_MAX_KEYS]; /* key column values, NUL-terminated */
    size_t ncols;                    /* key columns used */
    char period[STORE_PERIOD_TEXT];  /* storage of a period key column */
    const char *country;             /* topic country (trade: exporter) */
    const char *country2;            /* trade: importer; else NULL */
    const char *owner;               /* key country the update speaks for (trade: reporter) */
    const char *partner;             /* trade: the reporter's partner; else NULL */
} rec_key_t;

/* An optional integer column beside the record blob. */
typedef struct extra {
    bool set;  /* false: NULL */
    int64_t v; /* value (money in USD cents, counts) */
} extra_t;

#define STORE_MAX_EXTRAS 3 /* extra columns of a record kind */

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
    ST_BEGIN,          /* BEGIN IMMEDIATE */
    ST_COMMIT,         /* COMMIT */
    ST_ROLLBACK,       /* ROLLBACK */
    ST_META_GET,       /* value of a meta key */
    ST_META_SET,       /* sets a meta key */
    ST_PRODUCER_ALL,   /* every producer */
    ST_PRODUCER_PUT,   /* upsert of a producer */
    ST_CONFLICT_PUT,   /* new conflict row */
    ST_CONFLICT_LIST,  /* conflict rows by filter, in id order */
    ST_CONFLICT_PRUNE, /* drops the oldest conflict rows recorded before a time */
    ST_CONFLICT_FIRST, /* recorded_us of the oldest conflict row */
    ST_CLAIM_PUT,      /* a refused update kept as a claim */
    ST_CLAIM_DROP,     /* drops one claim */
    ST_LOG_PUT,        /* new change-log row */
    ST_LOG_OLDEST,     /* oldest revision in the change log */
    ST_LOG_PRUNE,      /* drops change-log rows up to a revision */
    ST_LOG_SINCE,      /* change-log rows after a revision */
    ST_SUM_PARKS,      /* live parks of a country with their resident aggregates */
    ST_SUM_RESIDENTS,  /* resident aggregates of a country, per park */
    ST_SUM_TRADE,      /* turnover per partner and period of a country */
    ST_SUM_INDICATORS, /* live country reports of a country */
    ST_DIRTY_ALL,      /* every country with records (marked dirty at open) */
    ST_AGG_GET,        /* a park's resident aggregates */
    ST_AGG_PUT,        /* sets a park's resident aggregates */
    ST_SAVEPOINT,      /* opens the savepoint of one country's summary */
    ST_RELEASE,        /* ends it, keeping what it did */
    ST_ROLLBACK_TO,    /* undoes what it did (RELEASE must follow) */
    ST_COUNT           /* number of statements */
};

/* How one park's live residents changed in the open batch; added to
 * resident_agg before summaries are computed and at commit. */
typedef struct agg_delta {
    char country[3];               /* the park's country */
    char park_id[WIRE_MAX_ID + 1]; /* the park */
    int64_t residents;             /* change in live residents */
    wide_t investment;             /* change in their investment, USD cents (exact) */
} agg_delta_t;

#define STORE_AGG_DELTAS 64 /* parks with pending deltas before an early flush */

/*
 * The row cache: rows read or written recently, as stored, so a record
 * updated again is merged without a read from SQLite. The rows a batch
 * changed are dirty until the batch is flushed (before summaries,
 * digests and the commit); a record changed several times between two
 * flushes is written once and gets one revision: no one can see the
 * versions in between, since the batch commits whole. Clean rows stay
 * after the commit, as the committed state; a rollback forgets them all,
 * and so does a batch that needs a row when the cache is full (after
 * writing its dirty rows). Only the cache writes record rows, so a
 * cached row is never older than its table row.
 */
#define STORE_PENDING_MAX 8192 /* rows cached; when full, the cache is flushed and emptied */
#define STORE_PENDING_KEY 160  /* bytes of a lookup key: kind and key columns */

typedef struct pending {
    char key[STORE_PENDING_KEY];               /* kind byte, then key columns joined by 0x1f */
    char col[STORE_MAX_KEYS][WIRE_MAX_ID + 1]; /* key column values */
    size_t ncols;                              /* key columns used */
    kind_t kind;                               /* record kind */
    char country[3];                           /* topic country */
    char country2[3];                          /* trade: importer; "" otherwise */
    bool found;                                /* a row exists (stored or to be written) */
    uint64_t revision;                         /* revision of blob (0: never published) */
    uint64_t batch_rev;                        /* revision given in this batch; 0: none */
    buf_t blob;                                /* the record as stored: Record with revision */
    buf_t stamps;                              /* its stamps (empty for summaries) */
    buf_t committed;                           /* record at the last flush, when published */
    bool deleted;                              /* blob is a tombstone */
    extra_t ex[STORE_MAX_EXTRAS];              /* extra columns */
    bool dirty;                                /* the row must be written */
} pending_t;
/* Page cache of the writing connection: -N is N KiB. SQLite's default
 * (2 MiB) makes every merge of a large database a read from the kernel. */
#define STORE_CACHE_PRAGMA "-32768"
/* Bytes the WAL file is truncated to after a checkpoint resets it. */
#define STORE_WAL_LIMIT_PRAGMA "67108864"
/* WIRE_EPOCH_BYTES as SQL text, for randomblob() */
#define STORE_EPOCH_SQL_BYTES "16"
/* PRAGMA application_id of a parksync database ("PSNC"), and as SQL text */
#define STORE_APPLICATION_ID     0x50534e43
#define STORE_APPLICATION_ID_SQL "1347636803"
/* findings of a quick_check kept for the message */
#define STORE_CHECK_FINDINGS "8"
/* meta key of the marker a backup leaves in its copy (see claim_copy) */
#define META_COPY "copy"

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
    bool prune_held;                              /* the last prune stopped at the pin */
    bool in_batch;                                /* a write transaction is open */
    bool producers_lost;                          /* a reload failed: positions unknown */
    producer_t *prod;                             /* producer map, open addressing */
    size_t prod_cap;                              /* slots in prod (power of two) */
    size_t prod_count;                            /* used slots in prod */
    uint8_t dirty[STORE_COUNTRIES / 8 + 1];       /* countries whose summary is stale */
    uint8_t dirty_begin[STORE_COUNTRIES / 8 + 1]; /* dirty when the batch began */
    buf_t body;                                   /* encoded Record without revision */
    buf_t out;                                    /* encoded Record with revision */
    buf_t old;                                    /* stored record of the row being merged */
    buf_t stamps;                                 /* encoded stamps of the row being merged */
    buf_t old_stamps;                             /* stored stamps of the row being merged */
    store_ministry_t *ministries;                 /* authority: ministries, owned; none = open */
    size_t n_ministries;                          /* entries in ministries */
    store_member_t *members;                      /* authority: producer -> ministry, owned */
    size_t n_members;                             /* entries in members */
    agg_delta_t agg[STORE_AGG_DELTAS];            /* resident aggregate changes of the batch */
    pending_t *pend;                              /* the row cache, in first-touched order */
    row_change_fn on_change;                      /* told of every row the cache stores */
    size_t n_pend;                                /* entries used in pend */
    size_t *pend_dirty;        /* entries changed since the last flush, in first-changed order */
    size_t n_dirty;            /* entries used in pend_dirty */
    size_t cap_pend;           /* entries allocated in pend */
    uint32_t *pend_index;      /* open addressing over pend: index + 1, 0 = empty */
    size_t cap_index;          /* slots in pend_index (power of two) */
    size_t *pend_log;          /* entries given a revision, in revision order */
    size_t n_log;              /* entries used in pend_log */
    size_t n_agg;              /* entries used in agg */
    uint64_t summary_failures; /* country summaries that could not be refreshed */
    char summary_err[256];     /* why the last of them failed */
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
    store_pruned_t pruned;         /* rows retention dropped since open (committed) */
    store_pruned_t pruned_batch;   /* rows the open batch's commit drops */
    char err[256];                 /* message of the last failure */
};

static int summary_on_change(store_t *s, const rec_key_t *key, const row_t *old,
                             const Parksync__V1__Record *now, bool published);

/* The batch's rows (defined with the row code below). */
static void pending_clear(store_t *s);
static void pending_free(store_t *s);
static int pending_flush(store_t *s);

struct store_cursor {
    sqlite3 *db;                     /* read-only connection of this view */
    bool provenance;                 /* fill Record.provenance from column 1 (stamps) */
    buf_t out;                       /* record re-encoded with its provenance */
    sqlite3_stmt *stmt[STORE_KINDS]; /* statements stepped one after the other */
    size_t n;                        /* statements in stmt */
    size_t at;                       /* statement being stepped */
    uint64_t revision;               /* head revision of the view (history: R) */
    bool history;                    /* state at `revision`, rebuilt from the change log */
    sqlite3_stmt *prev;              /* history: prev of a change-log row by revision */
    uint64_t chain;                  /* history: revision whose prev link is read next; 0: none */
    uint32_t steps;                  /* history: work since store_cursor_next last yielded */
    char err[256];                   /* SQLite's message for the last failure; "" when none */
};

/* ---------------------------------------------------------------- errors, buffers */

static int errno_from_sqlite(int rc)
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
static int db_fail(store_t *s, int rc)
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
static void seam_watch(const store_t *s, sqlite3 *db)
{
    if (s->cfg.seams && s->cfg.seams->vm)
        sqlite3_progress_handler(db, 1, seam_vm, (void *)s->cfg.seams);
}

/* A fault the test seams inject before reading `what`: 0 or a negative errno. */
static int seam_fault(store_t *s, const char *what)
{
    int rc = s->cfg.seams && s->cfg.seams->fault ? s->cfg.seams->fault(s->cfg.seams->arg, what) : 0;
    if (rc < 0)
        snprintf(s->err, sizeof(s->err), "%s: injected fault", what);
    return rc;
}

/* The store's clock: the config's seam, else the wall clock. */
static int64_t now_us(const store_t *s)
{
    return s->cfg.now_us ? s->cfg.now_us() : wire_now_us();
}

static int buf_reserve(buf_t *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_set(buf_t *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) < 0)
        return -ENOMEM;
    if (len)
        memcpy(b->data, data, len);
    b->len = len;
    return 0;
}

static void buf_free(buf_t *b)
{
    free(b->data);
    *b = (buf_t){0};
}

/* Packs msg into b. 0 or -ENOMEM. */
static int buf_pack(buf_t *b, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (buf_reserve(b, n ? n : 1) < 0)
        return -ENOMEM;
    b->len = protobuf_c_message_pack(msg, b->data);
    return 0;
}

static size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint from p[*at..len). false when truncated. */
static bool varint_get(const uint8_t *p, size_t len, size_t *at, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *at < len; shift += 7) {
        uint8_t c = p[(*at)++];
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* The encoded Record without its leading revision field. */
static void record_strip(const uint8_t *rec, size_t len, const uint8_t **body, size_t *blen)
{
    size_t at = 0;
    uint64_t v;
    if (len > 0 && rec[0] == STORE_TAG_REVISION) {
        at = 1;
        if (!varint_get(rec, len, &at, &v))
            at = 0;
    }
    *body = rec + at;
    *blen = len - at;
}

/* ---------------------------------------------------------------- exact sums */

/* a + b, saturating at the ends of wide_t: no count of valid amounts
 * comes near them, only the values of a corrupt database could */
static wide_t wide_add(wide_t a, wide_t b)
{
    wide_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? WIDE_MAX : WIDE_MIN;
    return r;
}

/* v clamped to [lo, hi]; sets *clamped when it was outside */
static wide_t wide_clamp(wide_t v, wide_t lo, wide_t hi, bool *clamped)
{
    if (v >= lo && v <= hi)
        return v;
    *clamped = true;
    return v < lo ? lo : hi;
}

/* A park's residents' investment from resident_agg's two columns:
 * investment_cents + investment_carry * 10^18 (at most 2^123 in size). */
static wide_t agg_compose(int64_t cents, int64_t carry)
{
    return (wide_t)carry * AGG_CARRY_UNIT + cents;
}

/* The columns of an exact investment v. A total within int64 is
 * investment_cents alone (carry 0), so the column reads as the total in
 * every ordinary case; a larger one keeps its remainder modulo 10^18
 * there. The carry is clamped only beyond 9 * 10^36 cents, which would
 * take 10^20 residents of 10^17: more rows than SQLite can store. */
static void agg_split(wide_t v, int64_t *cents, int64_t *carry)
{
    bool clamped = false;
    if (v >= WIDE_INT64_MIN && v <= WIDE_INT64_MAX) {
        *cents = (int64_t)v;
        *carry = 0;
        return;
    }
    *cents = (int64_t)(v % AGG_CARRY_UNIT);
    *carry = (int64_t)wide_clamp(v / AGG_CARRY_UNIT, WIDE_INT64_MIN, WIDE_INT64_MAX, &clamped);
}

/* ---------------------------------------------------------------- stamps */

static int stamp_cmp(const stamp_t *a, const stamp_t *b)
{
    if (a->set != b->set)
        return a->set ? 1 : -1;
    if (!a->set)
        return 0;
    int fa = a->vintage == PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    int fb = b->vintage == PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    if (fa != fb)
        return fa - fb;
    if (a->time_us != b->time_us)
        return a->time_us < b->time_us ? -1 : 1;
    int c = strcmp(a->producer, b->producer);
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (a->sequence != b->sequence)
        return a->sequence < b->sequence ? -1 : 1;
    return 0;
}

static void stamp_of_update(stamp_t *st, const Parksync__V1__Update *u)
{
    st->set = true;
    st->cleared = false;
    st->vintage = u->has_vintage ? (uint8_t)u->vintage : 0;
    st->time_us = u->event_time_us;
    st->sequence = u->sequence;
    snprintf(st->producer, sizeof(st->producer), "%s", u->producer_id);
}

static size_t stamp_put(uint8_t *p, const stamp_t *st)
{
    size_t n = 0;
    uint64_t t = (uint64_t)st->time_us;
    size_t plen = strlen(st->producer);
    p[n++] = (uint8_t)(st->vintage | (st->cleared ? STORE_STAMP_CLEARED : 0));
    for (int i = 7; i >= 0; i--)
        p[n++] = (uint8_t)(t >> (8 * i));
    n += varint_put(p + n, st->sequence);
    p[n++] = (uint8_t)plen;
    memcpy(p + n, st->producer, plen);
    return n + plen;
}

static bool stamp_get(const uint8_t *p, size_t len, size_t *at, stamp_t *st)
{
    if (len - *at < 9)
        return false;
    st->set = true;
    st->cleared = (p[*at] & STORE_STAMP_CLEARED) != 0;
    st->vintage = p[(*at)++] & (uint8_t)~STORE_STAMP_CLEARED;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = (t << 8) | p[(*at)++];
    st->time_us = (int64_t)t;
    if (!varint_get(p, len, at, &st->sequence) || *at >= len)
        return false;
    size_t plen = p[(*at)++];
    if (plen > WIRE_MAX_ID || len - *at < plen)
        return false;
    memcpy(st->producer, p + *at, plen);
    st->producer[plen] = '\0';
    *at += plen;
    return true;
}

static bool stamp_eq(const stamp_t *a, const stamp_t *b)
{
    return a->set == b->set && a->cleared == b->cleared && a->vintage == b->vintage &&
           a->time_us == b->time_us && a->sequence == b->sequence &&
           strcmp(a->producer, b->producer) == 0;
}

/*
 * Stamps blob, version 2: version byte; tombstone flag byte (1: a stamp
 * follows); the distinct stamps of the set slots, as a count varint and
 * the stamps in the order of their first slot; then the set slots, as a
 * count varint and per slot its field id varint (0 = key slot) and the
 * index of its stamp varint. A stamp: vintage byte, event time as 8 bytes
 * big-endian, sequence varint, producer id length byte and bytes.
 * ids[slot] gives each slot's field id.
 *
 * An update usually sets every field it carries with one stamp, so a
 * record mostly has one or two distinct stamps: kept once, they make the
 * blob about a fifth of version 1, which repeated the stamp in every
 * slot. Version 1 blobs are still read; a row is rewritten in version 2
 * when it next changes.
 */
static int stamps_encode(buf_t *b, const stamps_t *sp, const uint32_t *ids, size_t nslots)
{
    size_t uniq[STORE_MAX_SLOTS], nuniq = 0, which[STORE_MAX_SLOTS], count = 0;

    if (nslots > STORE_MAX_SLOTS ||
        buf_reserve(b, 2 + 2 * STORE_VARINT_MAX +
                           (nslots + 1) * (3 * STORE_VARINT_MAX + STORE_STAMP_MAX)) < 0)
        return nslots > STORE_MAX_SLOTS ? -EINVAL : -ENOMEM;
    for (size_t i = 0; i < nslots; i++) {
        if (!sp->slot[i].set)
            continue;
        size_t u = 0;
        while (u < nuniq && !stamp_eq(&sp->slot[uniq[u]], &sp->slot[i]))
            u++;
        if (u == nuniq)
            uniq[nuniq++] = i;
        which[i] = u;
        count++;
    }
    uint8_t *p = b->data;
    size_t n = 0;
    p[n++] = STORE_STAMPS_VERSION;
    p[n++] = sp->tomb.set ? 1 : 0;
    if (sp->tomb.set)
        n += stamp_put(p + n, &sp->tomb);
    n += varint_put(p + n, nuniq);
    for (size_t u = 0; u < nuniq; u++)
        n += stamp_put(p + n, &sp->slot[uniq[u]]);
    n += varint_put(p + n, count);
    for (size_t i = 0; i < nslots; i++) {
        if (!sp->slot[i].set)
            continue;
        n += varint_put(p + n, ids[i]);
        n += varint_put(p + n, which[i]);
    }
    b->len = n;
    return 0;
}

/* The slot of field `id`, or nslots when the kind has no such field. */
static size_t slot_of(const uint32_t *ids, size_t nslots, uint64_t id)
{
    size_t i = 0;
    while (i < nslots && ids[i] != id)
        i++;
    return i;
}

static int stamps_decode(stamps_t *sp, const uint8_t *p, size_t len, const uint32_t *ids,
                         size_t nslots)
{
    stamp_t uniq[STORE_MAX_SLOTS];
    size_t at = 2, i;
    uint64_t count, id, nuniq = 0, u;
    memset(sp, 0, sizeof(*sp));
    if (len == 0)
        return 0;
    if (len < 2 || (p[0] != STORE_STAMPS_VERSION && p[0] != STORE_STAMPS_V1))
        return -EBADMSG;
    if (p[1] && !stamp_get(p, len, &at, &sp->tomb))
        return -EBADMSG;
    if (p[0] == STORE_STAMPS_VERSION) {
        if (!varint_get(p, len, &at, &nuniq) || nuniq > STORE_MAX_SLOTS)
            return -EBADMSG;
        for (u = 0; u < nuniq; u++) {
            memset(&uniq[u], 0, sizeof(uniq[u]));
            if (!stamp_get(p, len, &at, &uniq[u]))
                return -EBADMSG;
        }
    }
    if (!varint_get(p, len, &at, &count))
        return -EBADMSG;
    for (uint64_t c = 0; c < count; c++) {
        stamp_t st = {0};
        if (!varint_get(p, len, &at, &id))
            return -EBADMSG;
        if (p[0] == STORE_STAMPS_V1) {
            if (!stamp_get(p, len, &at, &st))
                return -EBADMSG;
            if ((i = slot_of(ids, nslots, id)) < nslots)
                sp->slot[i] = st;
        } else {
            if (!varint_get(p, len, &at, &u) || u >= nuniq)
                return -EBADMSG;
            if ((i = slot_of(ids, nslots, id)) < nslots)
                sp->slot[i] = uniq[u];
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- schema */

/*
 * Migration i takes the schema from user_version i to i + 1. Append new
 * migrations; never edit a released one.
 */
static const char *const migrations[] = {
    /* 1: the initial schema */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "INSERT INTO meta(key, value) VALUES ('epoch', randomblob(16)), ('head', 0);"
    "CREATE TABLE park("
    " country TEXT NOT NULL, park_id TEXT NOT NULL, deleted INTEGER NOT NULL,"
    " revision INTEGER NOT NULL, reported_residents INTEGER,"
    " reported_investment_cents INTEGER, record BLOB NOT NULL, stamps BLOB NOT NULL,"
    " PRIMARY KEY (country, park_id)) WITHOUT ROWID;"
    "CREATE TABLE resident("
    " country TEXT NOT NULL, park_id TEXT NOT NULL, resident_id TEXT NOT NULL,"
    " deleted INTEGER NOT NULL, revision INTEGER NOT NULL, investment_cents INTEGER,"
    " record BLOB NOT NULL, stamps BLOB NOT NULL,"
    " PRIMARY KEY (country, park_id, resident_id)) WITHOUT ROWID;"
    "CREATE TABLE trade_flow("
    " exporter TEXT NOT NULL, importer TEXT NOT NULL, period_key TEXT NOT NULL,"
    " deleted INTEGER NOT NULL, revision INTEGER NOT NULL, exporter_cents INTEGER,"
    " importer_cents INTEGER, value_cents INTEGER, record BLOB NOT NULL,"
    " stamps BLOB NOT NULL, PRIMARY KEY (exporter, importer, period_key)) WITHOUT ROWID;"
    "CREATE INDEX trade_flow_importer ON trade_flow(importer);"
    "CREATE TABLE country_report("
    " country TEXT NOT NULL, period_key TEXT NOT NULL, deleted INTEGER NOT NULL,"
    " revision INTEGER NOT NULL, record BLOB NOT NULL, stamps BLOB NOT NULL,"
    " PRIMARY KEY (country, period_key)) WITHOUT ROWID;"
    "CREATE TABLE summary("
    " country TEXT PRIMARY KEY, deleted INTEGER NOT NULL, revision INTEGER NOT NULL,"
    " record BLOB NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE changelog("
    " revision INTEGER PRIMARY KEY, kind INTEGER NOT NULL, country TEXT,"
    " country2 TEXT, record BLOB NOT NULL);"
    "CREATE TABLE producer("
    " producer_id TEXT PRIMARY KEY, last_sequence INTEGER NOT NULL,"
    " applied INTEGER NOT NULL, duplicates INTEGER NOT NULL, gaps INTEGER NOT NULL,"
    " rejected INTEGER NOT NULL, last_seen_us INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE conflict("
    " id INTEGER PRIMARY KEY, recorded_us INTEGER NOT NULL, producer_id TEXT NOT NULL,"
    " sequence INTEGER NOT NULL, kind INTEGER NOT NULL, key TEXT, reason TEXT NOT NULL);",
    /* 2: reconciliation audit: conflict countries and event time, claims */
    "ALTER TABLE conflict ADD COLUMN country TEXT;"
    "ALTER TABLE conflict ADD COLUMN partner TEXT;"
    "ALTER TABLE conflict ADD COLUMN event_time_us INTEGER;"
    "ALTER TABLE conflict ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX conflict_recorded ON conflict(recorded_us);"
    "CREATE TABLE claim("
    " producer_id TEXT NOT NULL, sequence INTEGER NOT NULL, recorded_us INTEGER NOT NULL,"
    " kind INTEGER NOT NULL, key TEXT, country TEXT, reason TEXT NOT NULL,"
    " update_pb BLOB NOT NULL, PRIMARY KEY (producer_id, sequence)) WITHOUT ROWID;",
    /* 3: history: each change keeps the record it replaced (NULL: none
     * published), so the state at an earlier revision can be rebuilt;
     * changes from before this migration have no prev, hence history_from */
    "ALTER TABLE changelog ADD COLUMN prev BLOB;"
    "INSERT INTO meta(key, value) SELECT 'history_from', value + 1 FROM meta"
    " WHERE key = 'head';",
    /* 4: live residents and their investment per park, kept up to date by
     * every resident change, so a country summary costs a few rows rather
     * than a scan of all its residents. It used to fill the table with
     * SQLite's sum(), which fails ("integer overflow") on a park whose
     * residents' investment exceeds int64 and so stopped the database from
     * opening; migration 6 fills it exactly instead, so it is left empty
     * here (every database that ran the old text is rebuilt by 6 too). */
    "CREATE TABLE resident_agg("
    " country TEXT NOT NULL, park_id TEXT NOT NULL, residents INTEGER NOT NULL,"
    " investment_cents INTEGER NOT NULL, PRIMARY KEY (country, park_id)) WITHOUT ROWID;",
    /* 5: no query reads conflicts by recorded_us (listing pages by id and
     * filters the time on the way), so its index only cost every conflict
     * row a second b-tree insert */
    "DROP INDEX conflict_recorded;",
    /* 6: a park's residents' investment is exact beyond int64: it is
     * investment_cents + investment_carry * 10^18 (agg_split). The table
     * is rebuilt from the live residents (migration_fns[5]): SQLite's +
     * turned an overflowing total into an inexact REAL. */
    "ALTER TABLE resident_agg ADD COLUMN investment_carry INTEGER NOT NULL DEFAULT 0;",
};

#define STORE_SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int rebuild_resident_agg(store_t *s);

/* Work of migration i done in C after its SQL, in the same transaction. */
static int (*const migration_fns[STORE_SCHEMA_VERSION])(store_t *s) = {
    [5] = rebuild_resident_agg,
};

/* ---------------------------------------------------------------- statements */

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
    size_t ncols;             /* key columns */
    size_t nextras;           /* extra columns */
} kind_sql_t;

static const kind_sql_t kind_sql[STORE_KINDS] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] =
        {"park",
         "SELECT revision, record, stamps, deleted, reported_residents, reported_investment_cents"
         " FROM park WHERE country = ?1 AND park_id = ?2",
         "INSERT INTO park(country, park_id, deleted, revision, record, stamps,"
         " reported_residents, reported_investment_cents)"
         " VALUES (?1, ?2, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (country, park_id) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps, reported_residents = excluded.reported_residents,"
         " reported_investment_cents = excluded.reported_investment_cents",
         "SELECT record FROM park WHERE deleted = 0 ORDER BY country, park_id",
         "SELECT record FROM park WHERE deleted = 0 AND country = ?1 ORDER BY country, park_id", 2,
         2},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] =
        {"resident",
         "SELECT revision, record, stamps, deleted, investment_cents FROM resident"
         " WHERE country = ?1 AND park_id = ?2 AND resident_id = ?3",
         "INSERT INTO resident(country, park_id, resident_id, deleted, revision, record, stamps,"
         " investment_cents) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
         " ON CONFLICT (country, park_id, resident_id) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps, investment_cents = excluded.investment_cents",
         "SELECT record FROM resident WHERE deleted = 0 ORDER BY country, park_id, resident_id",
         "SELECT record FROM resident WHERE deleted = 0 AND country = ?1"
         " ORDER BY country, park_id, resident_id",
         3, 1},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE] =
        {"trade_flow",
         "SELECT revision, record, stamps, deleted, exporter_cents, importer_cents, value_cents"
         " FROM trade_flow WHERE exporter = ?1 AND importer = ?2 AND period_key = ?3",
         "INSERT INTO trade_flow(exporter, importer, period_key, deleted, revision, record,"
         " stamps, exporter_cents, importer_cents, value_cents)"
         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
         " ON CONFLICT (exporter, importer, period_key) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps, exporter_cents = excluded.exporter_cents,"
         " importer_cents = excluded.importer_cents, value_cents = excluded.value_cents",
         "SELECT record FROM trade_flow WHERE deleted = 0 ORDER BY exporter, importer, period_key",
         /* unary + keeps the scan in key order (streaming) rather than an OR
          * of two index lookups that would need a sorter */
         "SELECT record FROM trade_flow WHERE deleted = 0 AND (+exporter = ?1 OR +importer = ?1)"
         " ORDER BY exporter, importer, period_key",
         3, 3},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] =
        {"country_report",
         "SELECT revision, record, stamps, deleted FROM country_report"
         " WHERE country = ?1 AND period_key = ?2",
         "INSERT INTO country_report(country, period_key, deleted, revision, record, stamps)"
         " VALUES (?1, ?2, ?4, ?5, ?6, ?7) ON CONFLICT (country, period_key) DO UPDATE SET"
         " deleted = excluded.deleted, revision = excluded.revision, record = excluded.record,"
         " stamps = excluded.stamps",
         "SELECT record FROM country_report WHERE deleted = 0 ORDER BY country, period_key",
         "SELECT record FROM country_report WHERE deleted = 0 AND country = ?1"
         " ORDER BY country, period_key",
         2, 0},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY] =
        {"summary", "SELECT revision, record, NULL, deleted FROM summary WHERE country = ?1",
         "INSERT INTO summary(country, deleted, revision, record) VALUES (?1, ?4, ?5, ?6)"
         " ON CONFLICT (country) DO UPDATE SET deleted = excluded.deleted,"
         " revision = excluded.revision, record = excluded.record",
         "SELECT record FROM summary WHERE deleted = 0 ORDER BY country",
         "SELECT record FROM summary WHERE deleted = 0 AND country = ?1 ORDER BY country", 1, 0},
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "UPDATE meta SET value = ?2 WHERE key = ?1",
    [ST_PRODUCER_ALL] = "SELECT producer_id, last_sequence, applied, duplicates, gaps,"
                        " rejected, last_seen_us FROM producer",
    [ST_PRODUCER_PUT] = "INSERT INTO producer(producer_id, last_sequence, applied, duplicates,"
                        " gaps, rejected, last_seen_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                        " ON CONFLICT (producer_id) DO UPDATE SET"
                        " last_sequence = excluded.last_sequence, applied = excluded.applied,"
                        " duplicates = excluded.duplicates, gaps = excluded.gaps,"
                        " rejected = excluded.rejected, last_seen_us = excluded.last_seen_us",
    [ST_CONFLICT_PUT] = "INSERT INTO conflict(recorded_us, producer_id, sequence, kind, key,"
                        " reason, country, partner, event_time_us, claim)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_CONFLICT_LIST] = "SELECT id, recorded_us, producer_id, sequence, kind, key, country,"
                         " partner, reason, event_time_us, claim FROM conflict"
                         " WHERE id > ?1 AND (?2 = 0 OR kind = ?2)"
                         " AND (?3 = '' OR country = ?3 OR partner = ?3)"
                         " AND recorded_us >= ?4 ORDER BY id LIMIT ?5",
    /* ids grow with every row, so the oldest rows are a range of the
     * primary key: the subquery reads ?1 rows at most, and each row goes
     * by its rowid. RETURNING hands the counts and claims their rows. */
    [ST_CONFLICT_PRUNE] = "DELETE FROM conflict WHERE id IN"
                          " (SELECT id FROM conflict ORDER BY id LIMIT ?1) AND recorded_us < ?2"
                          " RETURNING reason, claim, producer_id, sequence",
    [ST_CONFLICT_FIRST] = "SELECT recorded_us FROM conflict ORDER BY id LIMIT 1",
    [ST_CLAIM_PUT] = "INSERT OR REPLACE INTO claim(producer_id, sequence, recorded_us, kind, key,"
                     " country, reason, update_pb) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_CLAIM_DROP] = "DELETE FROM claim WHERE producer_id = ?1 AND sequence = ?2",
    [ST_LOG_PUT] = "INSERT INTO changelog(revision, kind, country, country2, record, prev)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_LOG_OLDEST] = "SELECT min(revision) FROM changelog",
    [ST_LOG_PRUNE] = "DELETE FROM changelog WHERE revision <= ?1",
    [ST_LOG_SINCE] = "SELECT revision, kind, country, record FROM changelog"
                     " WHERE revision > ?1 ORDER BY revision",
    /* Summaries add money in C (wide_t): SQLite's sum() fails with
     * "integer overflow" past int64, which 93 parks of 10^17 cents reach. */
    [ST_SUM_PARKS] =
        "SELECT p.park_id, p.reported_residents, p.reported_investment_cents,"
        " coalesce(a.residents, 0), coalesce(a.investment_cents, 0),"
        " coalesce(a.investment_carry, 0)"
        " FROM park p LEFT JOIN resident_agg a ON a.country = p.country AND a.park_id = p.park_id"
        " WHERE p.country = ?1 AND p.deleted = 0 ORDER BY p.park_id",
    [ST_SUM_RESIDENTS] = "SELECT residents, investment_cents, investment_carry FROM resident_agg"
                         " WHERE country = ?1",
    /* A group (partner, period) holds at most the flow country -> partner
     * and the flow partner -> country (the primary key), so each CASE
     * picks one row at most: max() is that row's value, and nothing is
     * added that could overflow. */
    [ST_SUM_TRADE] =
        "SELECT CASE WHEN exporter = ?1 THEN importer ELSE exporter END AS partner, period_key,"
        " max(CASE WHEN exporter = ?1 THEN value_cents END),"
        " max(CASE WHEN importer = ?1 THEN value_cents END),"
        " max(CASE WHEN exporter = ?1 THEN exporter_cents END),"
        " max(CASE WHEN exporter = ?1 THEN importer_cents END),"
        " max(CASE WHEN importer = ?1 THEN importer_cents END),"
        " max(CASE WHEN importer = ?1 THEN exporter_cents END)"
        " FROM trade_flow WHERE deleted = 0 AND (exporter = ?1 OR importer = ?1)"
        " AND exporter <> importer GROUP BY partner, period_key ORDER BY partner, period_key",
    [ST_SUM_INDICATORS] = "SELECT record FROM country_report WHERE country = ?1 AND deleted = 0"
                          " ORDER BY period_key",
    [ST_AGG_GET] = "SELECT residents, investment_cents, investment_carry FROM resident_agg"
                   " WHERE country = ?1 AND park_id = ?2",
    [ST_AGG_PUT] = "INSERT INTO resident_agg(country, park_id, residents, investment_cents,"
                   " investment_carry) VALUES (?1, ?2, ?3, ?4, ?5)"
                   " ON CONFLICT (country, park_id) DO UPDATE SET residents = excluded.residents,"
                   " investment_cents = excluded.investment_cents,"
                   " investment_carry = excluded.investment_carry",
    [ST_SAVEPOINT] = "SAVEPOINT summary",
    [ST_RELEASE] = "RELEASE summary",
    [ST_ROLLBACK_TO] = "ROLLBACK TO summary",
    [ST_DIRTY_ALL] = "SELECT country FROM park UNION SELECT country FROM resident_agg"
                     " UNION SELECT exporter FROM trade_flow UNION SELECT importer FROM trade_flow"
                     " UNION SELECT country FROM country_report UNION SELECT country FROM summary",
};

static int prepare(store_t *s, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc);
}

static int prepare_all(store_t *s)
{
    int rc;
    for (int i = 0; i < ST_COUNT; i++)
        if ((rc = prepare(s, stmt_sql[i], &s->st[i])) < 0)
            return rc;
    for (int k = 1; k < STORE_KINDS; k++) {
        if ((rc = prepare(s, kind_sql[k].select, &s->sel[k])) < 0 ||
            (rc = prepare(s, kind_sql[k].upsert, &s->put[k])) < 0 ||
            (rc = prepare(s, kind_sql[k].scan, &s->scan[k])) < 0)
            return rc;
    }
    return 0;
}

/* Steps a statement that returns no rows, then resets it. */
static int step_done(store_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : db_fail(s, rc);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

static void stmt_reset(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* ---------------------------------------------------------------- producers */

static uint64_t hash_str(const char *p)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a offset basis */
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return h;
}

static producer_t *producer_find(const store_t *s, const char *id)
{
    if (!s->prod_cap)
        return NULL;
    for (size_t i = hash_str(id) & (s->prod_cap - 1);; i = (i + 1) & (s->prod_cap - 1)) {
        if (!s->prod[i].id[0])
            return NULL;
        if (strcmp(s->prod[i].id, id) == 0)
            return &s->prod[i];
    }
}

static producer_t *producer_slot(producer_t *tab, size_t cap, const char *id)
{
    size_t i = hash_str(id) & (cap - 1);
    while (tab[i].id[0] && strcmp(tab[i].id, id) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

/* Finds or adds a producer. NULL when out of memory. */
static producer_t *producer_get(store_t *s, const char *id)
{
    producer_t *p = producer_find(s, id);
    if (p)
        return p;
    if ((s->prod_count + 1) * 2 > s->prod_cap) {
        size_t cap = s->prod_cap ? s->prod_cap * 2 : STORE_PRODUCERS_MIN;
        producer_t *tab = calloc(cap, sizeof(*tab));
        if (!tab)
            return NULL;
        for (size_t i = 0; i < s->prod_cap; i++)
            if (s->prod[i].id[0])
                *producer_slot(tab, cap, s->prod[i].id) = s->prod[i];
        free(s->prod);
        s->prod = tab;
        s->prod_cap = cap;
    }
    p = producer_slot(s->prod, s->prod_cap, id);
    snprintf(p->id, sizeof(p->id), "%s", id);
    s->prod_count++;
    return p;
}

/* Replaces the cache with what the database holds (at open, after a rollback). */
static int producers_load(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_ALL];
    int rc, ret = 0;
    if (s->prod)
        memset(s->prod, 0, s->prod_cap * sizeof(*s->prod));
    s->prod_count = 0;
    if ((ret = seam_fault(s, "producers")) < 0)
        return ret;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (!id || strlen(id) > WIRE_MAX_ID)
            continue;
        producer_t *p = producer_get(s, id);
        if (!p) {
            ret = -ENOMEM;
            goto reset;
        }
        p->last_sequence = (uint64_t)sqlite3_column_int64(st, 1);
        p->applied = (uint64_t)sqlite3_column_int64(st, 2);
        p->duplicates = (uint64_t)sqlite3_column_int64(st, 3);
        p->gaps = (uint64_t)sqlite3_column_int64(st, 4);
        p->rejected = (uint64_t)sqlite3_column_int64(st, 5);
        p->last_seen_us = sqlite3_column_int64(st, 6);
    }
    if (rc != SQLITE_DONE)
        ret = db_fail(s, rc);
reset:
    sqlite3_reset(st);
    return ret;
}

/* Reloads the producers after a rollback, or retries a reload that
 * failed. Until one succeeds their positions are unknown, and a batch
 * begun then would take every producer for new and could commit its
 * position as 0: store_begin refuses. */
static int producers_reload(store_t *s)
{
    int rc = producers_load(s);
    s->producers_lost = rc < 0;
    if (rc < 0) {
        char why[sizeof(s->err)];
        memcpy(why, s->err, sizeof(why));
        snprintf(s->err, sizeof(s->err),
                 "cannot reload the producers' positions (%.160s); no batch until they load", why);
    }
    return rc;
}

/* False while the producers' positions are unknown and cannot be reloaded. */
static bool producers_ready(store_t *s)
{
    return !s->producers_lost || producers_reload(s) == 0;
}

static int producers_flush(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_PRODUCER_PUT];
    for (size_t i = 0; i < s->prod_cap; i++) {
        producer_t *p = &s->prod[i];
        if (!p->id[0] || !p->dirty)
            continue;
        sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)p->last_sequence);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)p->applied);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)p->duplicates);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)p->gaps);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)p->rejected);
        sqlite3_bind_int64(st, 7, p->last_seen_us);
        int rc = step_done(s, st);
        if (rc < 0)
            return rc;
        p->dirty = false;
    }
    return 0;
}

static const store_ministry_t *ministry_of(const store_t *s, const char *producer);

/* Whether an update of producer id may cost anything durable (see
 * store_apply_as): a producer authority lists, or the ministry named;
 * with authority off, one known, or a new one within max_producers. */
static bool producer_admitted(const store_t *s, const char *ministry, const char *id)
{
    if (s->n_ministries > 0)
        return ministry != NULL || ministry_of(s, id) != NULL;
    return s->cfg.max_producers == 0 || s->prod_count < s->cfg.max_producers ||
           producer_find(s, id) != NULL;
}

/*
 * The admission and sequence rules shared by store_apply and
 * store_reject. Returns 0 with *outcome APPLIED when the caller should go
 * on (and then call producer_consume), UNADMITTED, DUPLICATE or GAP when
 * it must stop.
 */
static int producer_check(store_t *s, const char *ministry, const char *id, uint64_t seq,
                          producer_t **pp, store_outcome_t *outcome)
{
    if (!id || !id[0] || strlen(id) > WIRE_MAX_ID)
        return -EINVAL;
    if (!producer_admitted(s, ministry, id)) {
        *outcome = STORE_UNADMITTED;
        return 0;
    }
    producer_t *p = producer_get(s, id);
    if (!p)
        return -ENOMEM;
    p->last_seen_us = now_us(s);
    p->dirty = true;
    *pp = p;
    if (seq <= p->last_sequence) {
        p->duplicates++;
        *outcome = STORE_DUPLICATE;
    } else if (seq > p->last_sequence + 1) {
        p->gaps++;
        *outcome = STORE_GAP;
    } else {
        *outcome = STORE_APPLIED;
    }
    return 0;
}

/* ---------------------------------------------------------------- dirty countries */

static int country_index(const char *c)
{
    if (!c || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2])
        return -1;
    return (c[0] - 'A') * 26 + (c[1] - 'A');
}

static void mark_dirty(store_t *s, const char *country)
{
    int i = country_index(country);
    if (i >= 0)
        s->dirty[i / 8] |= (uint8_t)(1u << (i % 8));
}

static int mark_all_dirty(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_DIRTY_ALL];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        mark_dirty(s, (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, rc);
}

/* ---------------------------------------------------------------- operations figures */

/* Conflict reasons by class: the prefixes of the reasons this file and the
 * daemon write (see store_apply_as), in the order of their class names. */
static const struct reason_class {
    const char *name;   /* class as store_conflict_counts reports it */
    const char *prefix; /* reasons starting with this (ASCII case ignored); NULL: the rest */
} reason_classes[STORE_REASONS] = {
    {"future_event_time", "event time"},
    {"invalid", "invalid"},
    {"not_authoritative", "not authoritative"},
    {"other", NULL},
    {"overridden", "overridden"},
    {"stale", "stale"},
    {"unknown_producer", "unknown producer"},
};

static size_t reason_class_of(const char *reason)
{
    size_t other = 0;
    for (size_t i = 0; i < STORE_REASONS; i++) {
        const char *p = reason_classes[i].prefix;
        if (!p)
            other = i;
        else if (reason && strncasecmp(reason, p, strlen(p)) == 0)
            return i;
    }
    return other;
}

/* Reads when the oldest conflict row was recorded (at open, after a prune). */
static int conflict_oldest_load(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_CONFLICT_FIRST];
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_ROW)
        s->conflict_oldest_us = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        s->conflict_oldest_us = INT64_MAX;
    else
        ret = db_fail(s, rc);
    sqlite3_reset(st);
    return ret;
}

/* Counts the live records and the conflicts once, at open; from then on
 * the batches keep the counts. */
static int figures_load(store_t *s)
{
    sqlite3_stmt *st = NULL;
    char sql[96];
    int rc = SQLITE_OK;

    memset(s->live, 0, sizeof(s->live));
    memset(s->reasons, 0, sizeof(s->reasons));
    for (int k = 1; k < STORE_KINDS && rc == SQLITE_OK; k++) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE deleted = 0", kind_sql[k].table);
        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            s->live[k] = (uint64_t)sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    if (rc != SQLITE_OK)
        return db_fail(s, rc);
    rc = sqlite3_prepare_v2(s->db, "SELECT reason, count(*) FROM conflict GROUP BY reason", -1, &st,
                            NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        s->reasons[reason_class_of((const char *)sqlite3_column_text(st, 0))] +=
            (uint64_t)sqlite3_column_int64(st, 1);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(s, rc);
    return conflict_oldest_load(s);
}

/* ---------------------------------------------------------------- open, close */

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
    };
}

static int exec(store_t *s, const char *sql)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail(s, rc);
}

static int pragma_int(store_t *s, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc);
    rc = sqlite3_step(st);
    int ret = rc == SQLITE_ROW ? 0 : db_fail(s, rc);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return ret;
}

/* Rolls back a transaction of store_open after a failure, keeping the
 * failure's message. Returns rc. */
static int rollback_open(store_t *s, int rc)
{
    char keep[sizeof(s->err)];
    memcpy(keep, s->err, sizeof(keep));
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    memcpy(s->err, keep, sizeof(keep));
    return rc;
}

/* Writes one park's row of resident_agg (rebuild_resident_agg). */
static int agg_row_put(store_t *s, sqlite3_stmt *st, const char *country, const char *park_id,
                       int64_t residents, wide_t investment)
{
    int64_t cents, carry;
    agg_split(investment, &cents, &carry);
    sqlite3_bind_text(st, 1, country, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, park_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, residents);
    sqlite3_bind_int64(st, 4, cents);
    sqlite3_bind_int64(st, 5, carry);
    return step_done(s, st);
}

/* Migration 6: resident_agg again from the live residents, summed in C
 * (exact), one park after the other in key order. */
static int rebuild_resident_agg(store_t *s)
{
    sqlite3_stmt *rd = NULL, *wr = NULL;
    char *country = NULL, *park_id = NULL;
    int64_t residents = 0;
    wide_t investment = 0;
    int rc;

    if ((rc = exec(s, "DELETE FROM resident_agg")) < 0 ||
        (rc = sqlite3_prepare_v2(s->db,
                                 "SELECT country, park_id, investment_cents FROM resident"
                                 " WHERE deleted = 0 ORDER BY country, park_id",
                                 -1, &rd, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(s->db,
                                 "INSERT INTO resident_agg(country, park_id, residents,"
                                 " investment_cents, investment_carry) VALUES (?1, ?2, ?3, ?4, ?5)",
                                 -1, &wr, NULL)) != SQLITE_OK) {
        rc = rc < 0 ? rc : db_fail(s, rc);
        goto out;
    }
    while ((rc = sqlite3_step(rd)) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(rd, 0);
        const char *p = (const char *)sqlite3_column_text(rd, 1);
        c = c ? c : "";
        p = p ? p : "";
        if (!country || strcmp(country, c) != 0 || strcmp(park_id, p) != 0) {
            if (country && (rc = agg_row_put(s, wr, country, park_id, residents, investment)) < 0)
                goto out;
            free(country);
            free(park_id);
            country = strdup(c);
            park_id = strdup(p);
            if (!country || !park_id) {
                rc = -ENOMEM;
                goto out;
            }
            residents = 0;
            investment = 0;
        }
        residents++;
        investment = wide_add(investment, sqlite3_column_int64(rd, 2));
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(s, rc);
        goto out;
    }
    rc = country ? agg_row_put(s, wr, country, park_id, residents, investment) : 0;
out:
    sqlite3_finalize(rd);
    sqlite3_finalize(wr);
    free(country);
    free(park_id);
    return rc;
}

/*
 * Whose file this is, decided before anything is written to it: SQLite's
 * header holds an application id. Ours: go on. Zero in a file without a
 * schema: a new database, stamped now. Zero with a schema: a parksync
 * database made before the id was set (a user_version this build knows
 * and a meta table) is stamped too; anything else belongs to another
 * application and is refused rather than taken over.
 */
static int check_owner(store_t *s)
{
    int id = 0, version = 0, objects = 0, meta = 0, rc;

    if ((rc = pragma_int(s, "PRAGMA application_id", &id)) < 0)
        return rc;
    if (id == STORE_APPLICATION_ID)
        return 0;
    if (id != 0) {
        snprintf(s->err, sizeof(s->err),
                 "not a parksync database: its application_id is 0x%08x, parksync's is 0x%08x; "
                 "refusing to take it over (give [daemon] database another path)",
                 (unsigned)id, (unsigned)STORE_APPLICATION_ID);
        return -EPROTO;
    }
    if ((rc = pragma_int(s, "PRAGMA user_version", &version)) < 0 ||
        (rc = pragma_int(s, "SELECT count(*) FROM sqlite_master", &objects)) < 0 ||
        (rc = pragma_int(
             s, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
             &meta)) < 0)
        return rc;
    if (objects > 0 && (version < 1 || version > STORE_SCHEMA_VERSION || meta == 0)) {
        snprintf(s->err, sizeof(s->err),
                 "not a parksync database: it holds %d schema objects of another application "
                 "(application_id 0, user_version %d); refusing to take it over (give [daemon] "
                 "database another path)",
                 objects, version);
        return -EPROTO;
    }
    return exec(s, "PRAGMA application_id = " STORE_APPLICATION_ID_SQL);
}

static int migrate(store_t *s)
{
    int version = 0, rc;
    if ((rc = pragma_int(s, "PRAGMA user_version", &version)) < 0)
        return rc;
    if (version > STORE_SCHEMA_VERSION) {
        snprintf(s->err, sizeof(s->err), "schema version %d is newer than this build's %d", version,
                 STORE_SCHEMA_VERSION);
        return -EPROTO;
    }
    for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v + 1);
        if ((rc = exec(s, "BEGIN IMMEDIATE")) < 0)
            return rc;
        if ((rc = exec(s, migrations[v])) < 0 ||
            (migration_fns[v] && (rc = migration_fns[v](s)) < 0) || (rc = exec(s, bump)) < 0)
            return rollback_open(s, rc);
        if ((rc = exec(s, "COMMIT")) < 0)
            return rc;
    }
    return 0;
}

/*
 * A file store_backup_finish made carries the META_COPY marker. Opened as
 * a live database it starts another history (whatever the original did
 * after the backup is not in it), so it gets a new epoch and loses the
 * marker, in one transaction: each restore of one backup is a history of
 * its own, and a subscriber holding revisions of another sees the change.
 */
static int claim_copy(store_t *s)
{
    static const char sql[] = "UPDATE meta SET value = randomblob(" STORE_EPOCH_SQL_BYTES ")"
                              " WHERE key = 'epoch' AND EXISTS"
                              " (SELECT 1 FROM meta WHERE key = '" META_COPY "');"
                              "DELETE FROM meta WHERE key = '" META_COPY "';";
    int before, rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) < 0)
        return rc;
    before = sqlite3_total_changes(s->db);
    if ((rc = exec(s, sql)) < 0)
        return rollback_open(s, rc);
    if ((rc = exec(s, "COMMIT")) < 0)
        return rc;
    s->new_epoch = sqlite3_total_changes(s->db) != before;
    return 0;
}

static int load_meta(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_META_GET];
    int rc, ret = 0;
    sqlite3_bind_text(st, 1, "epoch", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || sqlite3_column_bytes(st, 0) != WIRE_EPOCH_BYTES) {
        ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? -EPROTO : db_fail(s, rc);
        if (ret == -EPROTO)
            snprintf(s->err, sizeof(s->err), "meta table has no valid epoch");
        goto reset;
    }
    memcpy(s->epoch, sqlite3_column_blob(st, 0), WIRE_EPOCH_BYTES);
    stmt_reset(st);
    sqlite3_bind_text(st, 1, "head", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        ret = rc == SQLITE_DONE ? -EPROTO : db_fail(s, rc);
        if (ret == -EPROTO)
            snprintf(s->err, sizeof(s->err), "meta table has no head revision");
        goto reset;
    }
    s->head = (uint64_t)sqlite3_column_int64(st, 0);
reset:
    stmt_reset(st);
    return ret;
}

static int load_oldest(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_LOG_OLDEST];
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc != SQLITE_ROW)
        ret = db_fail(s, rc);
    else if (sqlite3_column_type(st, 0) == SQLITE_NULL)
        s->oldest = s->head + 1;
    else
        s->oldest = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return ret;
}

store_t *store_open(const store_config_t *cfg, char *err, size_t errlen)
{
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
        exec(s, "PRAGMA cache_size = " STORE_CACHE_PRAGMA) < 0 ||
        exec(s, "PRAGMA journal_size_limit = " STORE_WAL_LIMIT_PRAGMA) < 0 ||
        (s->cfg.background_checkpoint && exec(s, "PRAGMA wal_autocheckpoint = 0") < 0) ||
        migrate(s) < 0 || claim_copy(s) < 0 || prepare_all(s) < 0 || load_meta(s) < 0 ||
        load_oldest(s) < 0 || producers_load(s) < 0 || mark_all_dirty(s) < 0 || figures_load(s) < 0)
        goto fail_msg;
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
    buf_free(&s->old);
    buf_free(&s->stamps);
    buf_free(&s->old_stamps);
    free(s->ministries);
    free(s->members);
    free(s->prod);
    pending_free(s);
    free(s->path);
    free(s);
    *sp = NULL;
}

const char *store_errmsg(const store_t *s)
{
    return s ? s->err : "no store";
}

/* ---------------------------------------------------------------- batches */

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
    s->head_begin = s->head;
    s->oldest_begin = s->oldest;
    memcpy(s->dirty_begin, s->dirty, sizeof(s->dirty));
    memcpy(s->live_begin, s->live, sizeof(s->live));
    memcpy(s->reasons_begin, s->reasons, sizeof(s->reasons));
    s->conflict_oldest_begin = s->conflict_oldest_us;
    s->conflicts_added = 0;
    s->pruned_batch = (store_pruned_t){0};
    return 0;
}

/* ---------------------------------------------------------------- resident aggregates */

/* Adds the batch's pending deltas to resident_agg, exactly: each park's
 * row is read, added to in C and written back (SQLite's + would turn a
 * total beyond int64 into an inexact REAL). */
static int agg_flush(store_t *s)
{
    sqlite3_stmt *get = s->st[ST_AGG_GET], *put = s->st[ST_AGG_PUT];
    int rc;

    for (size_t i = 0; i < s->n_agg; i++) {
        const agg_delta_t *d = &s->agg[i];
        wide_t residents = d->residents, investment = d->investment;
        int64_t cents, carry;
        bool clamped = false;
        if (d->residents == 0 && d->investment == 0)
            continue;
        sqlite3_bind_text(get, 1, d->country, -1, SQLITE_STATIC);
        sqlite3_bind_text(get, 2, d->park_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(get);
        if (rc == SQLITE_ROW) {
            residents = wide_add(residents, sqlite3_column_int64(get, 0));
            investment = wide_add(investment, agg_compose(sqlite3_column_int64(get, 1),
                                                          sqlite3_column_int64(get, 2)));
        } else if (rc != SQLITE_DONE) {
            rc = db_fail(s, rc);
            stmt_reset(get);
            return rc;
        }
        stmt_reset(get);
        agg_split(investment, &cents, &carry);
        sqlite3_bind_text(put, 1, d->country, -1, SQLITE_STATIC);
        sqlite3_bind_text(put, 2, d->park_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(
            put, 3, (int64_t)wide_clamp(residents, WIDE_INT64_MIN, WIDE_INT64_MAX, &clamped));
        sqlite3_bind_int64(put, 4, cents);
        sqlite3_bind_int64(put, 5, carry);
        if ((rc = step_done(s, put)) < 0)
            return rc;
    }
    s->n_agg = 0;
    return 0;
}

/* A resident record's part in its park's aggregates. */
static void resident_part(const Parksync__V1__Record *r, int64_t *count, int64_t *cents)
{
    *count = *cents = 0;
    if (r == NULL || r->deleted || r->body_case != PARKSYNC__V1__RECORD__BODY_RESIDENT ||
        r->resident == NULL)
        return;
    *count = 1;
    if (r->resident->has_investment_usd_cents)
        *cents = r->resident->investment_usd_cents;
}

/* Notes that a resident of (country, park) went from `old` (its stored
 * row: live unless deleted, investment_cents in ex[0]) to `now`. */
static int agg_note(store_t *s, const char *country, const char *park_id, const row_t *old,
                    const Parksync__V1__Record *now);

/* The summaries' watch on the row cache: a resident's change moves its
 * park's aggregates; a published change makes its countries' summaries
 * stale. */
static int summary_on_change(store_t *s, const rec_key_t *key, const row_t *old,
                             const Parksync__V1__Record *now, bool published)
{
    int rc;
    if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT &&
        (rc = agg_note(s, key->col[0], key->col[1], old, now)) < 0)
        return rc;
    if (published && key->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY) {
        mark_dirty(s, key->country);
        mark_dirty(s, key->country2);
    }
    return 0;
}

static int agg_note(store_t *s, const char *country, const char *park_id, const row_t *old,
                    const Parksync__V1__Record *now)
{
    int64_t oc = 0, oi = 0, nc, ni;
    agg_delta_t *d = NULL;
    int rc;

    if (old->found && !old->deleted) {
        oc = 1;
        oi = old->ex[0].set ? old->ex[0].v : 0;
    }
    resident_part(now, &nc, &ni);
    if (oc == nc && oi == ni)
        return 0;
    for (size_t i = 0; i < s->n_agg && d == NULL; i++)
        if (strcmp(s->agg[i].park_id, park_id) == 0 && strcmp(s->agg[i].country, country) == 0)
            d = &s->agg[i];
    if (d == NULL) {
        if (s->n_agg == STORE_AGG_DELTAS && (rc = agg_flush(s)) < 0)
            return rc;
        d = &s->agg[s->n_agg++];
        memset(d, 0, sizeof(*d));
        snprintf(d->country, sizeof(d->country), "%s", country);
        snprintf(d->park_id, sizeof(d->park_id), "%s", park_id);
    }
    d->residents += nc - oc; /* at most one per update of the batch */
    d->investment = wide_add(d->investment, (wide_t)ni - oi);
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
    memcpy(s->dirty, s->dirty_begin, sizeof(s->dirty));
    memcpy(s->live, s->live_begin, sizeof(s->live));
    memcpy(s->reasons, s->reasons_begin, sizeof(s->reasons));
    s->conflict_oldest_us = s->conflict_oldest_begin;
    s->n_agg = 0;
    pending_clear(s);
    /* the cache holds the batch's sequences: take back the committed ones */
    producers_reload(s);
}

/* Drops change-log rows beyond changelog_keep, once the excess is worth a
 * statement (1 % of keep), so pruning costs little per commit. */
static int prune(store_t *s)
{
    uint64_t keep = s->cfg.changelog_keep;
    if (keep == 0 || s->head < s->oldest ||
        s->head - s->oldest + 1 <= keep + keep / STORE_PRUNE_SLACK)
        return 0;
    uint64_t cut = s->head - keep; /* the last revision to go */
    s->prune_held = cut > s->pinned;
    if (cut > s->pinned)
        cut = s->pinned;
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

void store_pin_changes(store_t *s, uint64_t revision)
{
    s->pinned = revision;
}

bool store_prune_held(const store_t *s)
{
    return s->prune_held && !s->in_batch && s->pinned > s->oldest;
}

static uint64_t conflict_rows(const store_t *s)
{
    uint64_t n = 0;
    for (size_t i = 0; i < STORE_REASONS; i++)
        n += s->reasons[i];
    return n;
}

/* Conflict rows beyond conflicts_keep. */
static uint64_t conflicts_over(const store_t *s)
{
    uint64_t n = conflict_rows(s), keep = s->cfg.conflicts_keep;
    return keep > 0 && n > keep ? n - keep : 0;
}

/* Rows recorded before this are older than conflicts_keep_us; INT64_MIN
 * when age keeps every row. */
static int64_t conflicts_horizon(const store_t *s)
{
    return s->cfg.conflicts_keep_us > 0 ? now_us(s) - s->cfg.conflicts_keep_us : INT64_MIN;
}

/* Drops the oldest conflict rows, `limit` at most, of those recorded
 * before `before_us`, with the claims they list, and takes them out of
 * the counts. Returns the rows dropped or a negative errno. */
static int64_t conflicts_drop(store_t *s, uint64_t limit, int64_t before_us)
{
    sqlite3_stmt *st = s->st[ST_CONFLICT_PRUNE], *claim = s->st[ST_CLAIM_DROP];
    int64_t n = 0;
    int rc;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
    sqlite3_bind_int64(st, 2, before_us);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t c = reason_class_of((const char *)sqlite3_column_text(st, 0));
        if (s->reasons[c] > 0)
            s->reasons[c]--;
        n++;
        if (sqlite3_column_int(st, 1) == 0)
            continue;
        sqlite3_bind_text(claim, 1, (const char *)sqlite3_column_text(st, 2), -1, SQLITE_STATIC);
        sqlite3_bind_int64(claim, 2, sqlite3_column_int64(st, 3));
        if ((rc = step_done(s, claim)) < 0) {
            stmt_reset(st);
            return rc;
        }
        s->pruned_batch.claims += (uint64_t)sqlite3_changes(s->db);
    }
    stmt_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(s, rc);
    s->pruned_batch.conflicts += (uint64_t)n;
    return n;
}

/*
 * Retention of the conflicts table: the oldest rows beyond conflicts_keep
 * and those older than conflicts_keep_us go, with the claims they list.
 * A commit drops at most STORE_PRUNE_STEP rows more than its batch
 * recorded, so retention keeps pace with any ingest, yet no commit waits
 * for a large backlog (a lowered limit, a burst growing old): what
 * remains is due (store_prune_due) and goes with the next commits.
 */
static int conflicts_prune(store_t *s)
{
    uint64_t step = STORE_PRUNE_STEP + s->conflicts_added, over = conflicts_over(s);
    int64_t horizon = conflicts_horizon(s), n;
    uint64_t done = 0;

    if (over > 0) {
        if ((n = conflicts_drop(s, over < step ? over : step, INT64_MAX)) < 0)
            return (int)n;
        done = (uint64_t)n;
    }
    if (s->conflict_oldest_us < horizon && done < step) {
        if ((n = conflicts_drop(s, step - done, horizon)) < 0)
            return (int)n;
        done += (uint64_t)n;
    }
    return done > 0 ? conflict_oldest_load(s) : 0;
}

bool store_prune_due(store_t *s)
{
    if (s->in_batch)
        return false;
    return conflicts_over(s) > 0 || s->conflict_oldest_us < conflicts_horizon(s);
}

void store_pruned_counts(const store_t *s, store_pruned_t *out)
{
    *out = s->pruned;
}

int store_commit(store_t *s)
{
    int rc;
    if (!s->in_batch)
        return -EINVAL;
    if ((rc = pending_flush(s)) < 0 || (rc = producers_flush(s)) < 0 || (rc = agg_flush(s)) < 0)
        goto fail;
    if (s->head != s->head_begin) {
        sqlite3_stmt *st = s->st[ST_META_SET];
        sqlite3_bind_text(st, 1, "head", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)s->head);
        if ((rc = step_done(s, st)) < 0)
            goto fail;
    }
    if ((rc = prune(s)) < 0 || (rc = conflicts_prune(s)) < 0)
        goto fail;
    if ((rc = step_done(s, s->st[ST_COMMIT])) < 0)
        goto fail;
    s->in_batch = false;
    s->pruned.conflicts += s->pruned_batch.conflicts;
    s->pruned.claims += s->pruned_batch.claims;
    return 0;
fail:
    store_rollback(s);
    return rc;
}

/* ---------------------------------------------------------------- rows, change log */

static void bind_key(sqlite3_stmt *st, const rec_key_t *key)
{
    for (size_t i = 0; i < key->ncols; i++)
        sqlite3_bind_text(st, (int)i + 1, key->col[i], -1, SQLITE_STATIC);
}

/* ---------------------------------------------------------------- the batch's rows */

static void pending_clear(store_t *s)
{
    for (size_t i = 0; i < s->n_pend; i++) {
        buf_free(&s->pend[i].blob);
        buf_free(&s->pend[i].stamps);
        buf_free(&s->pend[i].committed);
    }
    s->n_pend = 0;
    s->n_log = 0;
    s->n_dirty = 0;
    if (s->pend_index)
        memset(s->pend_index, 0, s->cap_index * sizeof(*s->pend_index));
}

static void pending_free(store_t *s)
{
    pending_clear(s);
    free(s->pend);
    free(s->pend_index);
    free(s->pend_log);
    free(s->pend_dirty);
}

/* The lookup key of a record: its kind, then its key columns. */
static bool pending_key(const rec_key_t *key, char *out)
{
    size_t n = 0;
    out[n++] = (char)('0' + key->kind);
    for (size_t i = 0; i < key->ncols; i++) {
        size_t l = strlen(key->col[i]);
        if (n + l + 2 > STORE_PENDING_KEY || l > WIRE_MAX_ID)
            return false;
        out[n++] = '\x1f';
        memcpy(out + n, key->col[i], l);
        n += l;
    }
    out[n] = '\0';
    return true;
}

/* The slot of `k` in the index: where it is, or the empty slot for it. */
static uint32_t *pending_slot(store_t *s, const char *k)
{
    size_t mask = s->cap_index - 1;
    for (size_t i = (size_t)hash_str(k) & mask;; i = (i + 1) & mask) {
        uint32_t *slot = &s->pend_index[i];
        if (*slot == 0 || strcmp(s->pend[*slot - 1].key, k) == 0)
            return slot;
    }
}

static pending_t *pending_find(store_t *s, const char *k)
{
    if (s->n_pend == 0)
        return NULL;
    uint32_t *slot = pending_slot(s, k);
    return *slot ? &s->pend[*slot - 1] : NULL;
}

/* A new entry for key (not in the map), zeroed but for its key. */
static pending_t *pending_add(store_t *s, const rec_key_t *key, const char *k)
{
    if (s->cap_pend == 0) {
        s->pend = calloc(STORE_PENDING_MAX, sizeof(*s->pend));
        s->pend_log = calloc(STORE_PENDING_MAX, sizeof(*s->pend_log));
        s->pend_dirty = calloc(STORE_PENDING_MAX, sizeof(*s->pend_dirty));
        s->cap_index = 2 * STORE_PENDING_MAX; /* a power of two, never fuller than half */
        s->pend_index = calloc(s->cap_index, sizeof(*s->pend_index));
        if (!s->pend || !s->pend_log || !s->pend_dirty || !s->pend_index)
            return NULL;
        s->cap_pend = STORE_PENDING_MAX;
    }
    pending_t *p = &s->pend[s->n_pend];
    memset(p, 0, sizeof(*p));
    snprintf(p->key, sizeof(p->key), "%s", k);
    p->kind = key->kind;
    p->ncols = key->ncols;
    for (size_t i = 0; i < key->ncols; i++)
        snprintf(p->col[i], sizeof(p->col[i]), "%s", key->col[i]);
    snprintf(p->country, sizeof(p->country), "%s", key->country ? key->country : "");
    snprintf(p->country2, sizeof(p->country2), "%s", key->country2 ? key->country2 : "");
    *pending_slot(s, k) = (uint32_t)++s->n_pend;
    return p;
}

/* Writes the rows changed since the last flush and their change-log
 * entries, in revision order; the rows stay cached, clean. */
static int pending_flush(store_t *s)
{
    int rc = 0;

    for (size_t i = 0; i < s->n_dirty && rc == 0; i++) {
        pending_t *p = &s->pend[s->pend_dirty[i]];
        sqlite3_stmt *st = s->put[p->kind];
        for (size_t c = 0; c < p->ncols; c++)
            sqlite3_bind_text(st, (int)c + 1, p->col[c], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, p->deleted ? 1 : 0);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)p->revision);
        sqlite3_bind_blob(st, 6, p->blob.data, (int)p->blob.len, SQLITE_STATIC);
        if (p->kind != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY)
            sqlite3_bind_blob(st, 7, p->stamps.data, (int)p->stamps.len, SQLITE_STATIC);
        for (size_t e = 0; e < kind_sql[p->kind].nextras; e++)
            if (p->ex[e].set && !p->deleted)
                sqlite3_bind_int64(st, 8 + (int)e, p->ex[e].v);
        rc = step_done(s, st);
    }
    for (size_t i = 0; i < s->n_log && rc == 0; i++) {
        pending_t *p = &s->pend[s->pend_log[i]];
        sqlite3_stmt *st = s->st[ST_LOG_PUT];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)p->batch_rev);
        sqlite3_bind_int(st, 2, (int)p->kind);
        sqlite3_bind_text(st, 3, p->country, -1, SQLITE_STATIC);
        if (p->country2[0])
            sqlite3_bind_text(st, 4, p->country2, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, p->blob.data, (int)p->blob.len, SQLITE_STATIC);
        if (p->committed.len > 0)
            sqlite3_bind_blob(st, 6, p->committed.data, (int)p->committed.len, SQLITE_STATIC);
        rc = step_done(s, st);
    }
    if (rc < 0) {
        pending_clear(s); /* the transaction rolls back: forget what it held */
        return rc;
    }
    for (size_t i = 0; i < s->n_dirty; i++) {
        pending_t *p = &s->pend[s->pend_dirty[i]];
        p->dirty = false;
        p->batch_rev = 0;
    }
    s->n_dirty = 0;
    s->n_log = 0;
    return 0;
}

/* Reads the row of key: s->old holds the stored record bytes and
 * s->old_stamps their stamps, row->deleted and row->ex its columns; the
 * record itself is unpacked by row_unpack, only when a merge needs it.
 * The caller frees the row with row_free. */
static int row_load(store_t *s, const rec_key_t *key, row_t *row)
{
    sqlite3_stmt *st = s->sel[key->kind];
    int rc, ret = 0;
    char k[STORE_PENDING_KEY];
    pending_t *p = NULL;
    memset(row, 0, sizeof(*row));
    s->old.len = 0;
    s->old_stamps.len = 0;
    if (s->in_batch && pending_key(key, k)) {
        if ((p = pending_find(s, k)) != NULL) {
            /* cached: the version last read or written, not older than the table's */
            row->pend = (size_t)(p - s->pend) + 1;
            if (!p->found)
                return 0;
            row->found = true;
            row->revision = p->revision;
            row->deleted = p->deleted;
            memcpy(row->ex, p->ex, sizeof(row->ex));
            if (buf_set(&s->old, p->blob.data, p->blob.len) < 0 ||
                buf_set(&s->old_stamps, p->stamps.data, p->stamps.len) < 0)
                return -ENOMEM;
            return 0;
        }
        if (s->n_pend == STORE_PENDING_MAX) {
            if ((ret = pending_flush(s)) < 0)
                return ret;
            pending_clear(s);
        }
        if ((p = pending_add(s, key, k)) == NULL)
            return -ENOMEM;
        row->pend = (size_t)(p - s->pend) + 1;
    }
    bind_key(st, key);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        goto reset;
    if (rc != SQLITE_ROW) {
        ret = db_fail(s, rc);
        goto reset;
    }
    row->found = true;
    row->revision = (uint64_t)sqlite3_column_int64(st, 0);
    row->deleted = sqlite3_column_int(st, 3) != 0;
    for (size_t i = 0; i < kind_sql[key->kind].nextras; i++)
        if (sqlite3_column_type(st, 4 + (int)i) != SQLITE_NULL)
            row->ex[i] = (extra_t){true, sqlite3_column_int64(st, 4 + (int)i)};
    const void *rec = sqlite3_column_blob(st, 1);
    size_t rlen = (size_t)sqlite3_column_bytes(st, 1);
    const void *stp = sqlite3_column_blob(st, 2);
    size_t slen = (size_t)sqlite3_column_bytes(st, 2);
    if (buf_set(&s->old, rec, rlen) < 0 || buf_set(&s->old_stamps, stp, slen) < 0) {
        ret = -ENOMEM;
        goto reset;
    }
    if (p != NULL) {
        p->found = true;
        p->revision = row->revision;
        p->deleted = row->deleted;
        memcpy(p->ex, row->ex, sizeof(p->ex));
        if (buf_set(&p->blob, rec, rlen) < 0 || buf_set(&p->stamps, stp, slen) < 0) {
            ret = -ENOMEM;
            goto reset;
        }
    }
reset:
    stmt_reset(st);
    return ret;
}

/* Unpacks the record row_load read (s->old), once; none is no error. */
static int row_unpack(store_t *s, const rec_key_t *key, row_t *row)
{
    if (!row->found || row->rec)
        return 0;
    row->rec = parksync__v1__record__unpack(NULL, s->old.len, s->old.data);
    if (!row->rec) {
        snprintf(s->err, sizeof(s->err), "%s: stored record does not decode",
                 kind_sql[key->kind].table);
        return -EBADMSG;
    }
    return 0;
}

static void row_free(row_t *row)
{
    if (row->rec)
        parksync__v1__record__free_unpacked(row->rec, NULL);
    row->rec = NULL;
}

/* prev: the published record this change replaces (NULL: none). */
static int log_put(store_t *s, const rec_key_t *key, const uint8_t *rec, size_t len,
                   const uint8_t *prev, size_t prev_len)
{
    sqlite3_stmt *st = s->st[ST_LOG_PUT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->head);
    sqlite3_bind_int(st, 2, (int)key->kind);
    sqlite3_bind_text(st, 3, key->country, -1, SQLITE_STATIC);
    if (key->country2)
        sqlite3_bind_text(st, 4, key->country2, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, rec, (int)len, SQLITE_STATIC);
    if (prev)
        sqlite3_bind_blob(st, 6, prev, (int)prev_len, SQLITE_STATIC);
    return step_done(s, st);
}

/*
 * Stores the merged record `rec` (its revision unset) of `row`. When its
 * bytes differ from the stored record it gets the next revision and a
 * change-log row; a record that never existed and is born deleted stays
 * unpublished (revision 0). The row is written when the record or the
 * stamps (in s->stamps, unless stamps is false) changed, and then the
 * watcher (s->on_change) hears of it. *changed tells whether a revision
 * was handed out.
 */
static int row_store(store_t *s, const rec_key_t *key, const row_t *row,
                     const Parksync__V1__Record *rec, bool stamps, const extra_t *ex, bool *changed)
{
    const uint8_t *old_body = NULL;
    size_t old_len = 0;
    const uint8_t *blob;
    size_t blen;
    uint64_t revision = row->revision;
    pending_t *p = row->pend ? &s->pend[row->pend - 1] : NULL;
    int rc;

    *changed = false;
    if ((rc = buf_pack(&s->body, &rec->base)) < 0)
        return rc;
    if (row->found)
        record_strip(s->old.data, s->old.len, &old_body, &old_len);
    bool same =
        row->found && old_len == s->body.len && memcmp(old_body, s->body.data, old_len) == 0;
    bool same_stamps = !stamps || (row->found && s->old_stamps.len == s->stamps.len &&
                                   memcmp(s->old_stamps.data, s->stamps.data, s->stamps.len) == 0);
    if (same && same_stamps)
        return 0;
    /* the row is written: a rollback puts the count back with the row */
    if (row->found && !row->deleted && rec->deleted)
        s->live[key->kind]--;
    else if (!(row->found && !row->deleted) && !rec->deleted)
        s->live[key->kind]++;
    if (same) {
        blob = s->old.data;
        blen = s->old.len;
    } else if (!row->found && rec->deleted) {
        revision = 0;
        blob = s->body.data;
        blen = s->body.len;
    } else {
        revision = p && p->batch_rev ? p->batch_rev : s->head + 1;
        if (buf_reserve(&s->out, 1 + STORE_VARINT_MAX + s->body.len) < 0)
            return -ENOMEM;
        s->out.data[0] = STORE_TAG_REVISION;
        s->out.len = 1 + varint_put(s->out.data + 1, revision);
        memcpy(s->out.data + s->out.len, s->body.data, s->body.len);
        s->out.len += s->body.len;
        blob = s->out.data;
        blen = s->out.len;
    }

    if (p != NULL) {
        /* the row is written when the batch is flushed; the change log
         * keeps the version it replaces, the one the last flush left */
        if (revision != row->revision && revision != 0 && p->batch_rev == 0) {
            p->committed.len = 0;
            if (row->revision && buf_set(&p->committed, s->old.data, s->old.len) < 0)
                return -ENOMEM;
        }
        if (!p->dirty) {
            p->dirty = true;
            s->pend_dirty[s->n_dirty++] = (size_t)(p - s->pend);
        }
        if (buf_set(&p->blob, blob, blen) < 0 ||
            (stamps && buf_set(&p->stamps, s->stamps.data, s->stamps.len) < 0))
            return -ENOMEM;
        p->found = true;
        p->revision = revision;
        p->deleted = rec->deleted;
        for (size_t i = 0; i < kind_sql[key->kind].nextras; i++)
            p->ex[i] = ex[i];
    } else {
        sqlite3_stmt *st = s->put[key->kind];
        bind_key(st, key);
        sqlite3_bind_int(st, 4, rec->deleted ? 1 : 0);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)revision);
        sqlite3_bind_blob(st, 6, blob, (int)blen, SQLITE_STATIC);
        if (stamps)
            sqlite3_bind_blob(st, 7, s->stamps.data, (int)s->stamps.len, SQLITE_STATIC);
        for (size_t i = 0; i < kind_sql[key->kind].nextras; i++)
            if (ex[i].set && !rec->deleted)
                sqlite3_bind_int64(st, 8 + (int)i, ex[i].v);
        if ((rc = step_done(s, st)) < 0)
            return rc;
    }
    bool published = revision != row->revision && revision != 0;
    if (published) {
        s->head = revision;
        if (p != NULL) {
            /* one change-log entry per record and batch, written at the flush */
            p->batch_rev = revision;
            s->pend_log[s->n_log++] = (size_t)(p - s->pend);
        } else if ((rc = log_put(s, key, blob, blen, row->revision ? s->old.data : NULL,
                                 row->revision ? s->old.len : 0)) < 0) {
            return rc;
        }
    }
    *changed = published;
    return s->on_change ? s->on_change(s, key, row, rec, published) : 0;
}

/* The key columns joined by '/', truncated to size - 1 bytes. */
static void key_text(const rec_key_t *key, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < key->ncols && n + 1 < size; i++) {
        if (i > 0)
            out[n++] = '/';
        size_t l = strnlen(key->col[i], size - 1 - n);
        memcpy(out + n, key->col[i], l);
        n += l;
    }
    out[n] = '\0';
}

/* One conflict row. u (may be NULL) gives the event time; claim tells
 * that the update is kept in the claim table. */
static int conflict_put(store_t *s, const char *producer, uint64_t seq, kind_t kind,
                        const rec_key_t *key, const char *reason, const Parksync__V1__Update *u,
                        bool claim)
{
    char text[STORE_KEY_TEXT] = "";
    sqlite3_stmt *st = s->st[ST_CONFLICT_PUT];
    int64_t now = now_us(s);
    if (key)
        key_text(key, text, sizeof(text));
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, producer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)seq);
    sqlite3_bind_int(st, 4, (int)kind);
    /* text and reason outlive the step: no copies */
    if (key)
        sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, reason, -1, SQLITE_STATIC);
    if (key && key->owner)
        sqlite3_bind_text(st, 7, key->owner, -1, SQLITE_STATIC);
    if (key && key->partner)
        sqlite3_bind_text(st, 8, key->partner, -1, SQLITE_STATIC);
    if (u && u->has_event_time_us)
        sqlite3_bind_int64(st, 9, u->event_time_us);
    sqlite3_bind_int(st, 10, claim ? 1 : 0);
    int rc = step_done(s, st);
    if (rc == 0) {
        s->reasons[reason_class_of(reason)]++;
        s->conflicts_added++;
        if (s->conflict_oldest_us == INT64_MAX)
            s->conflict_oldest_us = now;
    }
    return rc;
}

/* Keeps a refused update as a claim: the encoded Update, who, why. Its
 * known fields only, as a merge keeps of an applied one: a refused update
 * padded with fields the schema does not know would otherwise cost the
 * database its whole size (up to WIRE_MAX_UPDATE) for every refusal. */
static int claim_put(store_t *s, const Parksync__V1__Update *u, kind_t kind, const rec_key_t *key,
                     const char *reason)
{
    char text[STORE_KEY_TEXT] = "";
    sqlite3_stmt *st = s->st[ST_CLAIM_PUT];
    int rc;
    if (wire_has_unknown(&u->base)) {
        ProtobufCMessage *known = wire_copy_known(&u->base);
        if (!known)
            return -ENOMEM;
        rc = buf_pack(&s->body, known);
        protobuf_c_message_free_unpacked(known, NULL);
    } else {
        rc = buf_pack(&s->body, &u->base);
    }
    if (rc < 0)
        return rc;
    key_text(key, text, sizeof(text));
    sqlite3_bind_text(st, 1, u->producer_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)u->sequence);
    sqlite3_bind_int64(st, 3, now_us(s));
    sqlite3_bind_int(st, 4, (int)kind);
    sqlite3_bind_text(st, 5, text, -1, SQLITE_TRANSIENT);
    if (key->owner)
        sqlite3_bind_text(st, 6, key->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 8, s->body.data, (int)s->body.len, SQLITE_STATIC);
    return step_done(s, st);
}

/* ---------------------------------------------------------------- merging */

/* Result of merging one update into one record. */
typedef struct merge {
    bool stale;      /* some write was older than the tombstone */
    bool overridden; /* some write lost to a newer value */
} merge_t;

/* A body kind whose record body is the update body, merged per field. */
typedef struct generic_kind {
    const ProtobufCMessageDescriptor *desc; /* body message type */
    uint32_t keys[STORE_MAX_KEYS];          /* field ids of the key fields */
    size_t nkeys;                           /* key fields */
} generic_kind_t;

static const generic_kind_t generic_kinds[STORE_KINDS] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] = {&parksync__v1__park__descriptor, {1, 2}, 2},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] = {&parksync__v1__resident__descriptor,
                                                         {1, 2, 3},
                                                         3},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] = {&parksync__v1__country_report__descriptor,
                                                        {1, 2},
                                                        2},
};

static bool is_key(const generic_kind_t *g, uint32_t id)
{
    for (size_t i = 0; i < g->nkeys; i++)
        if (g->keys[i] == id)
            return true;
    return false;
}

static size_t field_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

/* Pointer-typed singular fields have no has_ flag: NULL means absent. */
static bool field_is_pointer(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
}

static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(const void *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(const void *)(base + f->quantifier_offset) == f->id;
    if (field_is_pointer(f))
        return *(void *const *)(const void *)(base + f->offset) != NULL;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        return *(const protobuf_c_boolean *)(const void *)(base + f->quantifier_offset);
    return true;
}

/* Shallow copy of one field (value and presence) from src to dst: dst
 * then points at src's strings and sub-messages and must not be freed. */
static void field_copy(ProtobufCMessage *dst, const ProtobufCMessage *src,
                       const ProtobufCFieldDescriptor *f)
{
    char *d = (char *)dst;
    const char *sp = (const char *)src;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        memcpy(d + f->quantifier_offset, sp + f->quantifier_offset, sizeof(size_t));
        memcpy(d + f->offset, sp + f->offset, sizeof(void *));
        return;
    }
    memcpy(d + f->offset, sp + f->offset, field_size(f));
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        memcpy(d + f->quantifier_offset, sp + f->quantifier_offset, sizeof(uint32_t));
    else if (!field_is_pointer(f) && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        memcpy(d + f->quantifier_offset, sp + f->quantifier_offset, sizeof(protobuf_c_boolean));
}

/* Storage for a body's sub-messages, copied without unknown fields. */
typedef union sub_storage {
    Parksync__V1__Period period;                      /* a period */
    Parksync__V1__SpecializationList specializations; /* a park's specializations */
} sub_storage_t;

/*
 * field_copy of known fields only: a sub-message is copied into `sub`
 * with its fields (shallowly) and none of its unknown fields, so nothing
 * an update carried beyond the schema reaches a stored record and the
 * record's bytes depend on the known values alone. Body sub-messages are
 * flat (Period, SpecializationList), and bodies have no repeated message
 * fields, so no unknown field hides further down. false when the
 * sub-message does not fit sub_storage_t (a schema change this code does
 * not know yet).
 */
static bool field_copy_known(ProtobufCMessage *dst, const ProtobufCMessage *src,
                             const ProtobufCFieldDescriptor *f, sub_storage_t *sub)
{
    field_copy(dst, src, f);
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
        return true;
    void **slot = (void **)(void *)((char *)dst + f->offset);
    const ProtobufCMessage *m = *slot;
    const ProtobufCMessageDescriptor *md = f->descriptor;
    if (m == NULL)
        return true;
    if (md->sizeof_message > sizeof(*sub))
        return false;
    memcpy(sub, m, md->sizeof_message);
    ((ProtobufCMessage *)(void *)sub)->n_unknown_fields = 0;
    ((ProtobufCMessage *)(void *)sub)->unknown_fields = NULL;
    *slot = sub;
    return true;
}

static bool period_parse(const char *text, Parksync__V1__Period *p);

/* The body of a Record of a generic kind, or NULL. */
static const ProtobufCMessage *record_body(const Parksync__V1__Record *r)
{
    if (!r)
        return NULL;
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        return &r->park->base;
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        return &r->resident->base;
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        return &r->trade->base;
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        return &r->country->base;
    case PARKSYNC__V1__RECORD__BODY_SUMMARY:
        return &r->summary->base;
    default:
        return NULL;
    }
}

static void record_set_body(Parksync__V1__Record *r, kind_t kind, ProtobufCMessage *body)
{
    switch (kind) {
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK:
        r->body_case = PARKSYNC__V1__RECORD__BODY_PARK;
        r->park = (Parksync__V1__Park *)body;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT:
        r->body_case = PARKSYNC__V1__RECORD__BODY_RESIDENT;
        r->resident = (Parksync__V1__Resident *)body;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE:
        r->body_case = PARKSYNC__V1__RECORD__BODY_TRADE;
        r->trade = (Parksync__V1__TradeFlow *)body;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY:
        r->body_case = PARKSYNC__V1__RECORD__BODY_COUNTRY;
        r->country = (Parksync__V1__CountryReport *)body;
        break;
    default:
        r->body_case = PARKSYNC__V1__RECORD__BODY_SUMMARY;
        r->summary = (Parksync__V1__CountrySummary *)body;
        break;
    }
}

/*
 * The order-independent rules for one slot: an upsert's write (when
 * present) takes the slot if newer than the tombstone and the slot's
 * stamp. Returns true when it does.
 */
static bool slot_write(stamps_t *sp, size_t slot, const stamp_t *w, merge_t *m)
{
    if (sp->tomb.set && stamp_cmp(w, &sp->tomb) < 0) {
        m->stale = true;
        return false;
    }
    if (stamp_cmp(w, &sp->slot[slot]) <= 0) {
        m->overridden = true;
        return false;
    }
    sp->slot[slot] = *w;
    return true;
}

/* Every upsert stamps the key slot, so that an upsert of key fields alone
 * makes a live record; losing that slot to a newer upsert is no conflict. */
static void key_write(stamps_t *sp, const stamp_t *w, merge_t *m)
{
    merge_t km = {0};
    slot_write(sp, STORE_KEY_SLOT, w, &km);
    m->stale |= km.stale;
}

/* A delete: raises the tombstone and clears every slot older than it. */
static void stamps_delete(stamps_t *sp, size_t nslots, const stamp_t *w)
{
    if (stamp_cmp(w, &sp->tomb) > 0)
        sp->tomb = *w;
    for (size_t i = 0; i < nslots; i++)
        if (sp->slot[i].set && stamp_cmp(&sp->slot[i], &sp->tomb) < 0)
            sp->slot[i] = (stamp_t){0};
}

static bool stamps_live(const stamps_t *sp, size_t nslots)
{
    for (size_t i = 0; i < nslots; i++)
        if (sp->slot[i].set)
            return true;
    return false;
}

/* Field ids of a generic kind's slots: 0 (key), then each field's id. */
static size_t generic_ids(const generic_kind_t *g, uint32_t *ids)
{
    ids[0] = STORE_KEY_SLOT;
    for (unsigned i = 0; i < g->desc->n_fields && i + 1 < STORE_MAX_SLOTS; i++)
        ids[i + 1] = g->desc->fields[i].id;
    return g->desc->n_fields + 1 < STORE_MAX_SLOTS ? g->desc->n_fields + 1 : STORE_MAX_SLOTS;
}

/* Body buffer big enough for any record body the merge builds. */
typedef union body_storage {
    Parksync__V1__Park park;             /* park body */
    Parksync__V1__Resident resident;     /* resident body */
    Parksync__V1__CountryReport country; /* country report body */
    Parksync__V1__TradeFlow flow;        /* trade flow body */
} body_storage_t;

/* One update as the merge sees it. */
typedef struct merge_update {
    const rec_key_t *key; /* the record it names */
    stamp_t stamp;        /* its stamp (stamp_of_update) */
    const void *body;     /* its body, or its delete's target */
    bool is_delete;       /* a delete */
    bool exporter_side;   /* trade: it speaks for the exporter's cell */
} merge_update_t;

/* A merged record, built shallowly: it points into itself, the update
 * and the stored record, so pack it before either is freed. */
typedef struct merge_out {
    Parksync__V1__Record rec;           /* the record, revision unset */
    body_storage_t body;                /* its body */
    sub_storage_t sub[STORE_MAX_SLOTS]; /* the body's sub-messages, known fields only */
    Parksync__V1__Period period;        /* the key's period (trade, country report) */
    extra_t ex[STORE_MAX_EXTRAS];       /* the kind's extra columns */
    const char *why;                    /* on failure: what is wrong */
} merge_out_t;

static const uint32_t trade_ids[3] = {STORE_KEY_SLOT, 4, 5}; /* key, exporter, importer cells */

/* The field ids of a kind's stamp slots, in ids; returns how many (0 for
 * a kind without stamps: summaries). */
static size_t merge_slots(kind_t kind, uint32_t *ids)
{
    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE) {
        memcpy(ids, trade_ids, sizeof(trade_ids));
        return 3;
    }
    if (kind > 0 && kind < STORE_KINDS && generic_kinds[kind].desc)
        return generic_ids(&generic_kinds[kind], ids);
    return 0;
}

/* The name of the field a slot stamps, or NULL (the key slot). */
static const char *merge_slot_name(kind_t kind, size_t slot)
{
    static const char *const trade_names[3] = {NULL, "exporter_reported_usd_cents",
                                               "importer_reported_usd_cents"};
    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
        return slot < 3 ? trade_names[slot] : NULL;
    if (slot == 0 || kind <= 0 || kind >= STORE_KINDS || !generic_kinds[kind].desc ||
        slot > generic_kinds[kind].desc->n_fields)
        return NULL;
    return generic_kinds[kind].desc->fields[slot - 1].name;
}

/*
 * The first step of a merge: the update's write goes into the stamps
 * (sp, the stored record's, updated in place) under the order-independent
 * rules, and m says what lost. Returns true when the second step needs
 * the stored record: some field's value is not this update's.
 */
static bool merge_stamps(const merge_update_t *up, stamps_t *sp, merge_t *m)
{
    kind_t kind = up->key->kind;
    const stamp_t *w = &up->stamp;

    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE) {
        const Parksync__V1__TradeReport *t = up->body;
        size_t cell = up->exporter_side ? 1 : 2;
        if (up->is_delete) {
            /* A ministry withdraws its own figure only: the delete is a
             * write of "no value" into its side's cell, compared like any
             * write, so the other ministry's figure stays and the order
             * of arrival does not matter. */
            stamp_t d = *w;
            d.cleared = true;
            slot_write(sp, cell, &d, m);
        } else {
            if (t->has_value_usd_cents)
                slot_write(sp, cell, w, m);
            key_write(sp, w, m);
        }
        return true;
    }
    const generic_kind_t *g = &generic_kinds[kind];
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots = generic_ids(g, ids);
    if (up->is_delete) {
        stamps_delete(sp, nslots, w);
    } else {
        for (unsigned i = 0; i + 1 < nslots; i++) {
            const ProtobufCFieldDescriptor *f = &g->desc->fields[i];
            if (!is_key(g, f->id) && field_present(up->body, f))
                slot_write(sp, i + 1, w, m);
        }
        key_write(sp, w, m);
    }
    /* an update that sets every field never needs the stored record */
    bool live = stamps_live(sp, nslots);
    for (unsigned i = 0; live && i + 1 < nslots; i++)
        if (!is_key(g, g->desc->fields[i].id) && sp->slot[i + 1].set &&
            (up->is_delete || stamp_cmp(&sp->slot[i + 1], w) != 0))
            return true;
    return false;
}

/*
 * The record of a generic kind from its merged stamps: each field the
 * value of the write its slot holds, from this update or the stored
 * record (known fields only: the record keeps no unknown field of any
 * update); keys rebuilt from the key.
 */
static int merge_generic(const merge_update_t *up, const stamps_t *sp,
                         const Parksync__V1__Record *stored, merge_out_t *out)
{
    const rec_key_t *key = up->key;
    const generic_kind_t *g = &generic_kinds[key->kind];
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots = generic_ids(g, ids);
    ProtobufCMessage *body = (ProtobufCMessage *)(void *)&out->body;
    const ProtobufCMessage *in = up->body;
    bool known = true;

    protobuf_c_message_init(g->desc, body);
    bool live = stamps_live(sp, nslots);
    const ProtobufCMessage *old = record_body(stored);
    if (old && old->descriptor != g->desc)
        old = NULL;
    for (unsigned i = 0; i + 1 < nslots; i++) {
        const ProtobufCFieldDescriptor *f = &g->desc->fields[i];
        if (is_key(g, f->id))
            known &= field_copy_known(body, in, f, &out->sub[i]);
        else if (!live || !sp->slot[i + 1].set)
            continue;
        else if (!up->is_delete && stamp_cmp(&sp->slot[i + 1], &up->stamp) == 0)
            known &= field_copy_known(body, in, f, &out->sub[i]);
        else if (old)
            known &= field_copy_known(body, old, f, &out->sub[i]);
    }
    if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY) {
        /* the key's period as the key says it, whichever update brought it */
        if (!period_parse(key->period, &out->period)) {
            out->why = "unreadable period key";
            return -EBADMSG;
        }
        ((Parksync__V1__CountryReport *)body)->period = &out->period;
    }
    if (!known) {
        out->why = "a sub-message has no storage";
        return -EPROTO;
    }
    if (!live) {
        out->rec.has_deleted = 1;
        out->rec.deleted = 1;
    }
    record_set_body(&out->rec, key->kind, body);
    if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK) {
        const Parksync__V1__Park *p = &out->body.park;
        out->ex[0] = (extra_t){p->has_reported_residents, p->reported_residents};
        out->ex[1] =
            (extra_t){p->has_reported_investment_usd_cents, p->reported_investment_usd_cents};
    } else if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT) {
        const Parksync__V1__Resident *r = &out->body.resident;
        out->ex[0] = (extra_t){r->has_investment_usd_cents, r->investment_usd_cents};
    }
    return 0;
}

static Parksync__V1__Vintage vintage_rank(uint8_t v)
{
    return v == PARKSYNC__V1__VINTAGE__VINTAGE_UNSPECIFIED
               ? PARKSYNC__V1__VINTAGE__VINTAGE_PROVISIONAL
               : (Parksync__V1__Vintage)v;
}

/* Mean of two amounts, rounded half away from zero (within int64 for
 * any two int64 amounts). */
static int64_t mean_cents(int64_t a, int64_t b)
{
    wide_t sum = (wide_t)a + b; /* no overflow, whatever the amounts */
    wide_t q = sum / 2;
    if (sum % 2 != 0)
        q += sum > 0 ? 1 : -1;
    return (int64_t)q;
}

/*
 * The derived fields of a flow from its two cells: the chosen value under
 * the configured rule (recorded in `rule`), the vintage of the figures
 * used, and when both figures are present the discrepancy importer -
 * round(exporter * factor) (half away from zero), its percentage of the
 * larger of importer and exporter * factor, and the flag.
 */
static void trade_derive(const store_config_t *cfg, Parksync__V1__TradeFlow *f, const stamps_t *sp)
{
    bool he = f->has_exporter_reported_usd_cents, hi = f->has_importer_reported_usd_cents;
    int64_t e = f->exporter_reported_usd_cents, i = f->importer_reported_usd_cents;
    Parksync__V1__TradeRule rule = cfg->trade_rule;
    bool use_e, use_i;

    if (rule != PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST &&
        rule != PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN)
        rule = PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST;
    if (!he && !hi)
        return;
    switch (rule) {
    case PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST:
        use_e = he;
        use_i = !he;
        break;
    case PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN:
        use_e = he;
        use_i = hi;
        break;
    default:
        use_i = hi;
        use_e = !hi;
        break;
    }
    f->has_value_usd_cents = 1;
    f->value_usd_cents = use_e && use_i ? mean_cents(e, i) : use_e ? e : i;
    f->has_rule = 1;
    f->rule = rule;
    Parksync__V1__Vintage v = PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    if (use_e && vintage_rank(sp->slot[1].vintage) < v)
        v = vintage_rank(sp->slot[1].vintage);
    if (use_i && vintage_rank(sp->slot[2].vintage) < v)
        v = vintage_rank(sp->slot[2].vintage);
    f->has_vintage = 1;
    f->vintage = v;
    if (he && hi) {
        /* long double holds every cent of |e| <= WIRE_MAX_CENTS exactly;
         * amounts beyond the wire's bounds (the store does not check
         * them) are clamped rather than overflow */
        long double adj = (long double)e * (long double)cfg->cif_fob_factor;
        bool clamped = false;
        if (!(adj < 0x1p100L))
            adj = 0x1p100L;
        if (!(adj > -0x1p100L))
            adj = -0x1p100L;
        wide_t rounded = (wide_t)(adj >= 0 ? adj + 0.5L : adj - 0.5L);
        int64_t disc =
            (int64_t)wide_clamp((wide_t)i - rounded, WIDE_INT64_MIN, WIDE_INT64_MAX, &clamped);
        long double larger = (long double)i > adj ? (long double)i : adj;
        long double mag = disc < 0 ? -(long double)disc : (long double)disc;
        f->has_discrepancy_usd_cents = 1;
        f->discrepancy_usd_cents = disc;
        f->has_discrepancy_pct = 1;
        f->discrepancy_pct = larger > 0 ? (double)(mag / larger * 100.0L) : 0.0;
        f->has_flagged = 1;
        f->flagged = f->discrepancy_pct > cfg->trade_threshold_pct;
    }
}
/* The flow from its merged stamps: each cell the figure of the write it
 * holds, from this update or the stored flow; then the derived fields. */
static int merge_trade(const store_config_t *cfg, const merge_update_t *up, const stamps_t *sp,
                       const Parksync__V1__Record *stored, merge_out_t *out)
{
    const rec_key_t *key = up->key;
    const Parksync__V1__TradeReport *t = up->body;
    const Parksync__V1__TradeFlow *old = NULL;
    Parksync__V1__TradeFlow *flow = &out->body.flow;
    size_t cell = up->exporter_side ? 1 : 2;

    if (stored && stored->body_case == PARKSYNC__V1__RECORD__BODY_TRADE)
        old = stored->trade;
    bool took =
        !up->is_delete && t->has_value_usd_cents && stamp_cmp(&sp->slot[cell], &up->stamp) == 0;
    bool has_exp = sp->slot[1].set && !sp->slot[1].cleared;
    bool has_imp = sp->slot[2].set && !sp->slot[2].cleared;
    bool live = has_exp || has_imp;
    parksync__v1__trade_flow__init(flow);
    flow->exporter = (char *)key->col[0];
    flow->importer = (char *)key->col[1];
    /* the key's period as the key says it: never the update's Period with
     * whatever unknown fields it carried */
    if (!period_parse(key->period, &out->period)) {
        out->why = "unreadable period key";
        return -EBADMSG;
    }
    flow->period = &out->period;
    if (live) {
        if (has_exp) {
            flow->has_exporter_reported_usd_cents = 1;
            flow->exporter_reported_usd_cents = took && cell == 1 ? t->value_usd_cents
                                                : old             ? old->exporter_reported_usd_cents
                                                                  : 0;
        }
        if (has_imp) {
            flow->has_importer_reported_usd_cents = 1;
            flow->importer_reported_usd_cents = took && cell == 2 ? t->value_usd_cents
                                                : old             ? old->importer_reported_usd_cents
                                                                  : 0;
        }
        trade_derive(cfg, flow, sp);
    } else {
        out->rec.has_deleted = 1;
        out->rec.deleted = 1;
    }
    record_set_body(&out->rec, key->kind, &flow->base);
    out->ex[0] =
        (extra_t){flow->has_exporter_reported_usd_cents, flow->exporter_reported_usd_cents};
    out->ex[1] =
        (extra_t){flow->has_importer_reported_usd_cents, flow->importer_reported_usd_cents};
    out->ex[2] = (extra_t){flow->has_value_usd_cents, flow->value_usd_cents};
    return 0;
}

/*
 * The second step of a merge: the record `up` leaves, from the stamps
 * merge_stamps made, the update and the stored record (NULL: none, or
 * not needed). Returns 0, or -EBADMSG / -EPROTO with out->why.
 */
static int merge_record(const store_config_t *cfg, const merge_update_t *up, const stamps_t *sp,
                        const Parksync__V1__Record *stored, merge_out_t *out)
{
    parksync__v1__record__init(&out->rec);
    memset(out->ex, 0, sizeof(out->ex));
    out->why = NULL;
    if (up->key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
        return merge_trade(cfg, up, sp, stored, out);
    return merge_generic(up, sp, stored, out);
}

/* ---------------------------------------------------------------- apply */

static bool id_ok(const char *p)
{
    return p && p[0] && strlen(p) <= WIRE_MAX_ID;
}

static bool period_key(rec_key_t *key, const Parksync__V1__Period *p)
{
    return p && wire_period_key(key->period, sizeof(key->period), p) > 0;
}

/* The record an update or delete target names. false when a key is missing. */
static bool key_of(rec_key_t *key, kind_t kind, const void *body, bool *exporter_side)
{
    memset(key, 0, sizeof(*key));
    key->kind = kind;
    key->ncols = kind_sql[kind].ncols;
    switch (kind) {
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK: {
        const Parksync__V1__Park *p = body;
        key->col[0] = p->country;
        key->col[1] = p->park_id;
        key->country = key->owner = p->country;
        return country_index(p->country) >= 0 && id_ok(p->park_id);
    }
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT: {
        const Parksync__V1__Resident *r = body;
        key->col[0] = r->country;
        key->col[1] = r->park_id;
        key->col[2] = r->resident_id;
        key->country = key->owner = r->country;
        return country_index(r->country) >= 0 && id_ok(r->park_id) && id_ok(r->resident_id);
    }
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE: {
        const Parksync__V1__TradeReport *t = body;
        if (!t->has_direction || country_index(t->reporter) < 0 || country_index(t->partner) < 0)
            return false;
        if (t->direction == PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS) {
            key->col[0] = t->reporter;
            key->col[1] = t->partner;
            *exporter_side = true;
        } else if (t->direction == PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS) {
            key->col[0] = t->partner;
            key->col[1] = t->reporter;
            *exporter_side = false;
        } else {
            return false;
        }
        key->col[2] = key->period;
        key->country = key->col[0];
        key->country2 = key->col[1];
        key->owner = t->reporter;
        key->partner = t->partner;
        return period_key(key, t->period);
    }
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY: {
        const Parksync__V1__CountryReport *c = body;
        key->col[0] = c->country;
        key->col[1] = key->period;
        key->country = key->owner = c->country;
        return country_index(c->country) >= 0 && period_key(key, c->period);
    }
    default:
        return false;
    }
}

/* The kind and body an update names; is_delete for a delete's target. */
static const void *update_target(const Parksync__V1__Update *u, kind_t *kind, bool *is_delete)
{
    *is_delete = false;
    switch (u->body_case) {
    case PARKSYNC__V1__UPDATE__BODY_PARK:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
        return u->park;
    case PARKSYNC__V1__UPDATE__BODY_RESIDENT:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
        return u->resident;
    case PARKSYNC__V1__UPDATE__BODY_TRADE:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
        return u->trade;
    case PARKSYNC__V1__UPDATE__BODY_COUNTRY:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
        return u->country;
    case PARKSYNC__V1__UPDATE__BODY_DELETE:
        break;
    default:
        return NULL;
    }
    if (!u->delete_)
        return NULL;
    *is_delete = true;
    switch (u->delete_->target_case) {
    case PARKSYNC__V1__DELETE__TARGET_PARK:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
        return u->delete_->park;
    case PARKSYNC__V1__DELETE__TARGET_RESIDENT:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
        return u->delete_->resident;
    case PARKSYNC__V1__DELETE__TARGET_TRADE:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
        return u->delete_->trade;
    case PARKSYNC__V1__DELETE__TARGET_COUNTRY:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
        return u->delete_->country;
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------- authority */

int store_set_authority(store_t *s, const store_authority_t *a)
{
    size_t nm = a ? a->n_ministries : 0, nmem = nm ? a->n_members : 0;
    store_ministry_t *m = NULL;
    store_member_t *mem = NULL;

    for (size_t i = 0; i < nmem; i++)
        if (a->members[i].ministry >= nm)
            return -EINVAL;
    if ((nm && !(m = calloc(nm, sizeof(*m)))) || (nmem && !(mem = calloc(nmem, sizeof(*mem))))) {
        free(m);
        return -ENOMEM;
    }
    if (nm)
        memcpy(m, a->ministries, nm * sizeof(*m));
    if (nmem)
        memcpy(mem, a->members, nmem * sizeof(*mem));
    free(s->ministries);
    free(s->members);
    s->ministries = m;
    s->n_ministries = nm;
    s->members = mem;
    s->n_members = nmem;
    return 0;
}

bool store_authority_on(const store_t *s)
{
    return s->n_ministries > 0;
}

static const store_ministry_t *ministry_named(const store_t *s, const char *name)
{
    for (size_t i = 0; i < s->n_ministries; i++)
        if (strcmp(s->ministries[i].name, name) == 0)
            return &s->ministries[i];
    return NULL;
}

static const store_ministry_t *ministry_of(const store_t *s, const char *producer)
{
    for (size_t i = 0; i < s->n_members; i++)
        if (strcmp(s->members[i].producer, producer) == 0)
            return &s->ministries[s->members[i].ministry];
    return NULL;
}

/* A ministry owns its own country's records (trade: its own side) and
 * whatever its grants add. */
static bool ministry_owns(const store_ministry_t *m, kind_t kind, const char *country)
{
    if (!country)
        return false;
    if (strcmp(m->country, country) == 0)
        return true;
    for (size_t i = 0; i < m->n_grants; i++) {
        const store_grant_t *g = &m->grants[i];
        if ((g->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED || g->kind == kind) &&
            strcmp(g->country, country) == 0)
            return true;
    }
    return false;
}

/* Why the store refuses a well-formed update, or "" when it does not:
 * authority, then future skew. Depends on the update, the rules and the
 * clock only, never on what was applied before. */
static void refusal(const store_t *s, const char *ministry, const Parksync__V1__Update *u,
                    kind_t kind, const rec_key_t *key, char *why, size_t size)
{
    why[0] = '\0';
    if (s->n_ministries > 0) {
        const store_ministry_t *m =
            ministry ? ministry_named(s, ministry) : ministry_of(s, u->producer_id);
        if (!m) {
            snprintf(why, size, "unknown producer: %s is not listed under any ministry",
                     ministry ? ministry : u->producer_id);
            return;
        }
        if (!ministry_owns(m, kind, key->owner)) {
            snprintf(why, size, "not authoritative: %s does not own %s %s", m->name,
                     wire_kind_name(kind), key->owner ? key->owner : "?");
            return;
        }
    }
    int64_t now = now_us(s), skew = s->cfg.max_future_skew_us;
    /* event_time > now > 0 first, so the difference cannot overflow */
    if (skew > 0 && u->event_time_us > now && u->event_time_us - now > skew)
        snprintf(why, size,
                 "event time %" PRId64 " s in the future (max_future_skew_s %" PRId64 ")",
                 (u->event_time_us - now) / 1000000, skew / 1000000);
}

/*
 * One update's way through the store: the row cache loads the record's
 * row, the merge (pure) decides its stamps and its record, and the row
 * cache stores the result, telling its watcher (the summaries) what
 * changed.
 */
static int apply_merge(store_t *s, const merge_update_t *up, merge_t *m)
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
    if ((rc = merge_record(&s->cfg, up, &sp, row.rec, &out)) < 0) {
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

/* ---------------------------------------------------------------- summaries */

/* Parses a period key made by wire_period_key back into a Period, and
 * checks the round trip so a change of that format cannot go unnoticed. */
static bool period_parse(const char *text, Parksync__V1__Period *p)
{
    unsigned y, a, b;
    char again[STORE_PERIOD_TEXT];
    if (!text || sscanf(text, "%u-%u..%u", &y, &a, &b) != 3)
        return false;
    parksync__v1__period__init(p);
    p->has_year = p->has_first_month = p->has_last_month = 1;
    p->year = y;
    p->first_month = a;
    p->last_month = b;
    return wire_period_key(again, sizeof(again), p) > 0 && strcmp(again, text) == 0;
}

/* Arrays owned by a summary being built. */
typedef struct summary_parts {
    Parksync__V1__PartnerTurnover *turnover; /* n_turnover entries */
    Parksync__V1__Period *periods;           /* one per turnover entry */
    Parksync__V1__PartnerTurnover **tp;      /* pointers into turnover */
    char (*partners)[3];                     /* partner codes of turnover */
    Parksync__V1__Record **reports;          /* unpacked country reports */
    Parksync__V1__CountryReport *ind;        /* their known fields: the indicators */
    sub_storage_t *ind_sub;                  /* their sub-messages, one per field */
    Parksync__V1__CountryReport **ip;        /* pointers into ind */
    size_t n_reports;                        /* entries in reports */
    Parksync__V1__ParkCheck *checks;         /* mismatching parks */
    Parksync__V1__ParkCheck **cp;            /* pointers into checks */
    char **park_ids;                         /* owned copies of their park ids */
    size_t n_checks;                         /* entries in checks */
    bool saturated;                          /* some total was clamped to its field's range */
} summary_parts_t;

/* Exact totals of one country's parks and residents. */
typedef struct summary_totals {
    wide_t parks;               /* live parks */
    wide_t reported_residents;  /* the parks' reported residents */
    wide_t reported_investment; /* the parks' reported investment, USD cents */
    wide_t known_residents;     /* live resident records */
    wide_t known_investment;    /* their investment, USD cents */
} summary_totals_t;

static void summary_parts_free(summary_parts_t *sp)
{
    for (size_t i = 0; i < sp->n_reports; i++)
        parksync__v1__record__free_unpacked(sp->reports[i], NULL);
    for (size_t i = 0; i < sp->n_checks; i++)
        free(sp->park_ids[i]);
    free(sp->turnover);
    free(sp->periods);
    free(sp->tp);
    free(sp->partners);
    free(sp->reports);
    free(sp->ind);
    free(sp->ind_sub);
    free(sp->ip);
    free(sp->checks);
    free(sp->cp);
    free(sp->park_ids);
    memset(sp, 0, sizeof(*sp));
}

/* Grows *arr (elements of elem bytes, n used) to hold n + 1 entries. */
static int grow(void **arr, size_t elem, size_t n)
{
    /* grow by powers of two: summaries have few entries */
    if (n & (n - 1))
        return 0;
    void *p = realloc(*arr, elem * (n ? n * 2 : 1));
    if (!p)
        return -ENOMEM;
    *arr = p;
    return 0;
}

static void col_money(sqlite3_stmt *st, int col, protobuf_c_boolean *has, int64_t *v)
{
    *has = sqlite3_column_type(st, col) != SQLITE_NULL;
    *v = *has ? sqlite3_column_int64(st, col) : 0;
}

/* v as an int64 field: clamped, and the summary marked saturated, when
 * the exact value is beyond int64 */
static int64_t summary_int64(wide_t v, summary_parts_t *sp)
{
    return (int64_t)wide_clamp(v, WIDE_INT64_MIN, WIDE_INT64_MAX, &sp->saturated);
}

/* v as a count field of at most `max`: clamped likewise */
static uint64_t summary_count(wide_t v, uint64_t max, summary_parts_t *sp)
{
    return (uint64_t)wide_clamp(v, 0, (wide_t)max, &sp->saturated);
}

static int summary_turnover(store_t *s, const char *country, Parksync__V1__CountrySummary *sum,
                            summary_parts_t *sp)
{
    sqlite3_stmt *st = s->st[ST_SUM_TRADE];
    int rc, ret = 0;
    size_t n = 0;
    sqlite3_bind_text(st, 1, country, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow((void **)&sp->turnover, sizeof(*sp->turnover), n) < 0 ||
            grow((void **)&sp->periods, sizeof(*sp->periods), n) < 0 ||
            grow((void **)&sp->partners, sizeof(*sp->partners), n) < 0) {
            ret = -ENOMEM;
            goto reset;
        }
        Parksync__V1__PartnerTurnover *t = &sp->turnover[n];
        parksync__v1__partner_turnover__init(t);
        if (!period_parse((const char *)sqlite3_column_text(st, 1), &sp->periods[n])) {
            snprintf(s->err, sizeof(s->err), "trade_flow: unreadable period key");
            ret = -EBADMSG;
            goto reset;
        }
        snprintf(sp->partners[n], sizeof(sp->partners[n]), "%s",
                 (const char *)sqlite3_column_text(st, 0));
        col_money(st, 2, &t->has_exports_usd_cents, &t->exports_usd_cents);
        col_money(st, 3, &t->has_imports_usd_cents, &t->imports_usd_cents);
        col_money(st, 4, &t->has_exports_reported_by_country_usd_cents,
                  &t->exports_reported_by_country_usd_cents);
        col_money(st, 5, &t->has_exports_reported_by_partner_usd_cents,
                  &t->exports_reported_by_partner_usd_cents);
        col_money(st, 6, &t->has_imports_reported_by_country_usd_cents,
                  &t->imports_reported_by_country_usd_cents);
        col_money(st, 7, &t->has_imports_reported_by_partner_usd_cents,
                  &t->imports_reported_by_partner_usd_cents);
        t->has_turnover_usd_cents = 1;
        t->turnover_usd_cents =
            summary_int64((wide_t)t->exports_usd_cents + t->imports_usd_cents, sp);
        n++;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc);
        goto reset;
    }
    if (n) {
        sp->tp = calloc(n, sizeof(*sp->tp));
        if (!sp->tp) {
            ret = -ENOMEM;
            goto reset;
        }
        for (size_t i = 0; i < n; i++) {
            /* pointers are fixed only now that the arrays stopped moving */
            sp->turnover[i].partner = sp->partners[i];
            sp->turnover[i].period = &sp->periods[i];
            sp->tp[i] = &sp->turnover[i];
        }
    }
    sum->n_turnover = n;
    sum->turnover = sp->tp;
reset:
    stmt_reset(st);
    return ret;
}

/* The live country reports, as indicators: their known fields only (a
 * report stored before merges dropped unknown fields may still hold
 * some). */
static int summary_indicators(store_t *s, const char *country, Parksync__V1__CountrySummary *sum,
                              summary_parts_t *sp)
{
    const ProtobufCMessageDescriptor *d = &parksync__v1__country_report__descriptor;
    sqlite3_stmt *st = s->st[ST_SUM_INDICATORS];
    int rc, ret = 0;
    size_t n;
    sqlite3_bind_text(st, 1, country, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n = sp->n_reports;
        if (grow((void **)&sp->reports, sizeof(*sp->reports), n) < 0) {
            ret = -ENOMEM;
            goto reset;
        }
        Parksync__V1__Record *r = parksync__v1__record__unpack(
            NULL, (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_blob(st, 0));
        if (!r || r->body_case != PARKSYNC__V1__RECORD__BODY_COUNTRY) {
            if (r)
                parksync__v1__record__free_unpacked(r, NULL);
            snprintf(s->err, sizeof(s->err), "country_report: stored record does not decode");
            ret = -EBADMSG;
            goto reset;
        }
        sp->reports[n] = r;
        sp->n_reports++;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc);
        goto reset;
    }
    n = sp->n_reports;
    if (n) {
        sp->ind = calloc(n, sizeof(*sp->ind));
        sp->ind_sub = calloc(n * d->n_fields, sizeof(*sp->ind_sub));
        sp->ip = calloc(n, sizeof(*sp->ip));
        if (!sp->ind || !sp->ind_sub || !sp->ip) {
            ret = -ENOMEM;
            goto reset;
        }
        for (size_t i = 0; i < n; i++) {
            parksync__v1__country_report__init(&sp->ind[i]);
            for (unsigned f = 0; f < d->n_fields; f++) {
                if (!field_copy_known(&sp->ind[i].base, &sp->reports[i]->country->base,
                                      &d->fields[f], &sp->ind_sub[i * d->n_fields + f])) {
                    snprintf(s->err, sizeof(s->err),
                             "country_report: a sub-message has no storage");
                    ret = -EPROTO;
                    goto reset;
                }
            }
            sp->ip[i] = &sp->ind[i];
        }
    }
    sum->n_indicators = n;
    sum->indicators = sp->ip;
reset:
    stmt_reset(st);
    return ret;
}

/* The live parks of a country: their exact totals, and the parks whose
 * reported figures disagree with their resident records (mismatches). */
static int summary_parks(store_t *s, const char *country, summary_totals_t *tot,
                         Parksync__V1__CountrySummary *sum, summary_parts_t *sp)
{
    sqlite3_stmt *st = s->st[ST_SUM_PARKS];
    int rc, ret = 0;
    sqlite3_bind_text(st, 1, country, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bool has_rr = sqlite3_column_type(st, 1) != SQLITE_NULL;
        bool has_ri = sqlite3_column_type(st, 2) != SQLITE_NULL;
        int64_t rr = sqlite3_column_int64(st, 1), ri = sqlite3_column_int64(st, 2);
        wide_t kr = sqlite3_column_int64(st, 3);
        wide_t ki = agg_compose(sqlite3_column_int64(st, 4), sqlite3_column_int64(st, 5));
        tot->parks = wide_add(tot->parks, 1);
        if (has_rr)
            tot->reported_residents = wide_add(tot->reported_residents, rr);
        if (has_ri)
            tot->reported_investment = wide_add(tot->reported_investment, ri);
        if (!(has_rr && rr != kr) && !(has_ri && ri != ki))
            continue;
        size_t n = sp->n_checks;
        if (grow((void **)&sp->checks, sizeof(*sp->checks), n) < 0 ||
            grow((void **)&sp->park_ids, sizeof(*sp->park_ids), n) < 0) {
            ret = -ENOMEM;
            goto reset;
        }
        char *id = strdup((const char *)sqlite3_column_text(st, 0));
        if (!id) {
            ret = -ENOMEM;
            goto reset;
        }
        Parksync__V1__ParkCheck *c = &sp->checks[n];
        parksync__v1__park_check__init(c);
        sp->park_ids[n] = id;
        c->has_reported_residents = has_rr;
        c->reported_residents = (uint32_t)summary_count(rr, UINT32_MAX, sp);
        c->has_known_residents = 1;
        c->known_residents = (uint32_t)summary_count(kr, UINT32_MAX, sp);
        c->has_reported_investment_usd_cents = has_ri;
        c->reported_investment_usd_cents = ri;
        c->has_known_investment_usd_cents = 1;
        c->known_investment_usd_cents = summary_int64(ki, sp);
        sp->n_checks++;
    }
    if (rc != SQLITE_DONE) {
        ret = db_fail(s, rc);
        goto reset;
    }
    if (sp->n_checks) {
        sp->cp = calloc(sp->n_checks, sizeof(*sp->cp));
        if (!sp->cp) {
            ret = -ENOMEM;
            goto reset;
        }
        for (size_t i = 0; i < sp->n_checks; i++) {
            sp->checks[i].park_id = sp->park_ids[i];
            sp->cp[i] = &sp->checks[i];
        }
    }
    sum->n_mismatches = sp->n_checks;
    sum->mismatches = sp->cp;
reset:
    stmt_reset(st);
    return ret;
}

/* The resident aggregates of a country's parks, summed exactly. */
static int summary_residents(store_t *s, const char *country, summary_totals_t *tot)
{
    sqlite3_stmt *st = s->st[ST_SUM_RESIDENTS];
    int rc, ret = 0;
    sqlite3_bind_text(st, 1, country, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        tot->known_residents = wide_add(tot->known_residents, sqlite3_column_int64(st, 0));
        tot->known_investment =
            wide_add(tot->known_investment,
                     agg_compose(sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2)));
    }
    if (rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(st);
    return ret;
}

/* Recomputes one country's summary. *changed: it got a revision. */
static int summary_refresh(store_t *s, const char *country, bool *changed)
{
    Parksync__V1__CountrySummary sum = PARKSYNC__V1__COUNTRY_SUMMARY__INIT;
    Parksync__V1__Record rec = PARKSYNC__V1__RECORD__INIT;
    summary_parts_t parts = {0};
    summary_totals_t tot = {0};
    rec_key_t key = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY,
                     .col = {country},
                     .ncols = 1,
                     .country = country};
    row_t row = {0};
    int rc;

    *changed = false;
    if ((rc = summary_parks(s, country, &tot, &sum, &parts)) < 0 ||
        (rc = summary_residents(s, country, &tot)) < 0 ||
        (rc = summary_turnover(s, country, &sum, &parts)) < 0 ||
        (rc = summary_indicators(s, country, &sum, &parts)) < 0)
        goto free_parts;
    sum.country = (char *)country;
    bool empty =
        tot.parks == 0 && tot.known_residents == 0 && sum.n_turnover == 0 && sum.n_indicators == 0;
    if (!empty) {
        sum.has_parks = sum.has_reported_residents = sum.has_known_residents = 1;
        sum.has_reported_investment_usd_cents = sum.has_known_investment_usd_cents = 1;
        sum.parks = (uint32_t)summary_count(tot.parks, UINT32_MAX, &parts);
        sum.reported_residents = summary_count(tot.reported_residents, UINT64_MAX, &parts);
        sum.reported_investment_usd_cents = summary_int64(tot.reported_investment, &parts);
        sum.known_residents = summary_count(tot.known_residents, UINT64_MAX, &parts);
        sum.known_investment_usd_cents = summary_int64(tot.known_investment, &parts);
        /* absent unless set: summaries within range keep their bytes */
        if (parts.saturated)
            sum.has_saturated = sum.saturated = 1;
    } else {
        /* nothing left in this country: the summary is gone too, so the
         * state does not depend on whether one was ever computed */
        sum.n_turnover = sum.n_indicators = sum.n_mismatches = 0;
        rec.has_deleted = 1;
        rec.deleted = 1;
    }
    record_set_body(&rec, key.kind, &sum.base);
    if ((rc = row_load(s, &key, &row)) < 0)
        goto free_row;
    if (!row.found && empty)
        goto free_row;
    rc = row_store(s, &key, &row, &rec, false, NULL, changed);
free_row:
    row_free(&row);
free_parts:
    summary_parts_free(&parts);
    return rc;
}

/*
 * Refreshes one country's summary apart from the others: inside a
 * savepoint, written with its change-log entry before the savepoint ends.
 * When anything fails, what this country did is undone (in SQLite and in
 * memory), its old summary stays, the failure is counted and described
 * in summary_err, and 0 is returned: the other countries and the batch's
 * updates go on. A negative errno only when the undoing itself fails,
 * which loses the transaction anyway.
 */
static int summary_refresh_apart(store_t *s, const char *country, bool *changed)
{
    uint64_t head = s->head, live = s->live[PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY];
    int rc;

    *changed = false;
    if ((rc = step_done(s, s->st[ST_SAVEPOINT])) < 0)
        return rc;
    rc = summary_refresh(s, country, changed);
    if (rc == 0)
        rc = pending_flush(s);
    if (rc == 0)
        return step_done(s, s->st[ST_RELEASE]);
    s->summary_failures++;
    snprintf(s->summary_err, sizeof(s->summary_err), "summary of %s not refreshed: %s (%.160s)",
             country, strerror(-rc), s->err);
    *changed = false;
    /* everything else the row cache held was flushed before the
     * savepoint, so forgetting it all forgets only this country's rows */
    pending_clear(s);
    s->head = head;
    s->live[PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY] = live; /* as the row went back */
    if ((rc = step_done(s, s->st[ST_ROLLBACK_TO])) < 0 ||
        (rc = step_done(s, s->st[ST_RELEASE])) < 0)
        return rc;
    return 0;
}

int store_refresh_summaries(store_t *s)
{
    int count = 0, rc;
    if (!s->in_batch)
        return -EINVAL;
    /* the aggregates below read the tables: everything of the batch
     * first (a failure here is the batch's own: its updates cannot be
     * written) */
    if ((rc = pending_flush(s)) < 0 || (rc = agg_flush(s)) < 0)
        return rc;
    for (int i = 0; i < STORE_COUNTRIES; i++) {
        if (!(s->dirty[i / 8] & (1u << (i % 8))))
            continue;
        char country[3] = {(char)('A' + i / 26), (char)('A' + i % 26), '\0'};
        bool changed;
        if ((rc = summary_refresh_apart(s, country, &changed)) < 0)
            return rc;
        /* refreshed, or failed and counted: tried again when the country
         * next changes (or the store is opened again) */
        s->dirty[i / 8] &= (uint8_t) ~(1u << (i % 8));
        count += changed;
    }
    return count;
}

uint64_t store_summary_failures(const store_t *s)
{
    return s->summary_failures;
}

const char *store_summary_error(const store_t *s)
{
    return s->summary_err;
}

bool store_summaries_dirty(const store_t *s)
{
    for (size_t i = 0; i < sizeof(s->dirty); i++)
        if (s->dirty[i])
            return true;
    return false;
}

/* ---------------------------------------------------------------- reading */

uint64_t store_producer_last(store_t *s, const char *producer_id)
{
    const producer_t *p = producer_id && producers_ready(s) ? producer_find(s, producer_id) : NULL;
    return p ? p->last_sequence : 0;
}

uint64_t store_head(const store_t *s)
{
    return s->head;
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

int store_changes(store_t *s, uint64_t since, store_change_fn fn, void *arg)
{
    sqlite3_stmt *st = s->st[ST_LOG_SINCE];
    int rc, ret = 0;
    if (since < s->head && since + 1 < store_oldest(s))
        return -ERANGE;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)since);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (fn(arg, (uint64_t)sqlite3_column_int64(st, 0),
               (Parksync__V1__RecordKind)sqlite3_column_int(st, 1),
               (const char *)sqlite3_column_text(st, 2), sqlite3_column_blob(st, 3),
               (size_t)sqlite3_column_bytes(st, 3)) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(st);
    return ret;
}

/* ---------------------------------------------------------------- cursors */

void store_cursor_close(store_cursor_t **cp)
{
    if (!cp || !*cp)
        return;
    store_cursor_t *c = *cp;
    for (size_t i = 0; i < c->n; i++)
        sqlite3_finalize(c->stmt[i]);
    sqlite3_finalize(c->prev);
    if (c->db) {
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
        sqlite3_close_v2(c->db);
    }
    buf_free(&c->out);
    free(c);
    *cp = NULL;
}

/* Keeps SQLite's message for store_cursor_errmsg and returns the errno. */
static int cursor_fail(store_cursor_t *c, int rc)
{
    snprintf(c->err, sizeof(c->err), "%s", c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
}

/* A cursor that could not be opened: its message becomes the store's
 * (store_errmsg), then it is closed. */
static void cursor_abandon(store_t *s, store_cursor_t **cp)
{
    if (*cp && (*cp)->err[0])
        snprintf(s->err, sizeof(s->err), "%s", (*cp)->err);
    store_cursor_close(cp);
}

/* Reads one integer with a one-off statement on a cursor's connection. */
static int cursor_int(store_cursor_t *c, const char *sql, bool *null, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *null = sqlite3_column_type(st, 0) == SQLITE_NULL;
        *v = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    int ret = rc == SQLITE_OK ? 0 : cursor_fail(c, rc);
    sqlite3_finalize(st);
    return ret;
}

/* A read-only connection inside a read transaction, and its head. */
static store_cursor_t *cursor_new(store_t *s, int *err)
{
    store_cursor_t *c = calloc(1, sizeof(*c));
    bool null;
    int64_t head = 0;
    int rc;
    if (!c) {
        *err = -ENOMEM;
        return NULL;
    }
    rc = sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(c->db, STORE_BUSY_TIMEOUT_MS);
        seam_watch(s, c->db);
        rc = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        *err = cursor_fail(c, rc);
        goto fail;
    }
    /* the first read starts the view; the head is read inside it */
    if ((*err = cursor_int(c, "SELECT value FROM meta WHERE key = 'head'", &null, &head)) < 0)
        goto fail;
    c->revision = (uint64_t)head;
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

static int cursor_prepare(store_cursor_t *c, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(c->db, sql, -1, out, NULL);
    return rc == SQLITE_OK ? 0 : cursor_fail(c, rc);
}

store_cursor_t *store_snapshot_open(store_t *s, const store_filter_t *filter, int *err)
{
    int dummy;
    err = err ? err : &dummy;
    *err = 0;
    store_cursor_t *c = cursor_new(s, err);
    if (!c)
        return NULL;
    kind_t want = filter ? filter->kind : PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    bool by_country = filter && filter->country[0];
    c->provenance = filter && filter->provenance;
    for (int k = 1; k < STORE_KINDS; k++) {
        if (want != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED && want != (kind_t)k)
            continue;
        sqlite3_stmt **st = &c->stmt[c->n];
        const char *sql = by_country ? kind_sql[k].scan_country : kind_sql[k].scan;
        char with_stamps[512];
        if (c->provenance) {
            /* the same scan with the stamps as column 1 (summaries have none) */
            static const char head[] = "SELECT record";
            snprintf(with_stamps, sizeof(with_stamps), "SELECT record, %s%s",
                     k == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY ? "NULL" : "stamps",
                     sql + sizeof(head) - 1);
            sql = with_stamps;
        }
        if ((*err = cursor_prepare(c, sql, st)) < 0)
            goto fail;
        c->n++;
        if (by_country)
            sqlite3_bind_text(*st, 1, filter->country, -1, SQLITE_TRANSIENT);
    }
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

store_cursor_t *store_snapshot_at_open(store_t *s, const store_filter_t *filter, uint64_t revision,
                                       int *err)
{
    int dummy;
    bool null;
    int64_t oldest, from;
    err = err ? err : &dummy;
    store_filter_t f = filter ? *filter : (store_filter_t){0};
    f.provenance = false;
    store_cursor_t *c = store_snapshot_open(s, &f, err);
    if (!c)
        return NULL;
    if (revision > c->revision) {
        *err = -EINVAL;
        goto fail;
    }
    if ((*err = cursor_int(c, "SELECT min(revision) FROM changelog", &null, &oldest)) < 0)
        goto fail;
    if (null)
        oldest = (int64_t)c->revision + 1;
    if ((*err = cursor_int(c, "SELECT value FROM meta WHERE key = 'history_from'", &null, &from)) <
        0)
        goto fail;
    if (!null && from > oldest)
        oldest = from;
    if (revision + 1 < (uint64_t)oldest) {
        *err = -ERANGE;
        goto fail;
    }
    /* the same scans, over deleted rows too, with revision and deleted */
    for (size_t i = 0; i < c->n; i++) {
        const char *sql = sqlite3_sql(c->stmt[i]);
        const char *live = strstr(sql, "deleted = 0");
        char at[640];
        if (!live || strncmp(sql, "SELECT record", 13) != 0) {
            *err = -EINVAL;
            goto fail;
        }
        snprintf(at, sizeof(at), "SELECT record, revision, deleted%.*s1%s", (int)(live - sql - 13),
                 sql + 13, live + strlen("deleted = 0"));
        sqlite3_stmt *st = NULL;
        if ((*err = cursor_prepare(c, at, &st)) < 0)
            goto fail;
        if (sqlite3_bind_parameter_count(st) > 0)
            sqlite3_bind_text(st, 1, f.country, -1, SQLITE_TRANSIENT);
        sqlite3_finalize(c->stmt[i]);
        c->stmt[i] = st;
    }
    if ((*err = cursor_prepare(c, "SELECT prev FROM changelog WHERE revision = ?1", &c->prev)) < 0)
        goto fail;
    c->history = true;
    c->revision = revision;
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

store_cursor_t *store_changes_open(store_t *s, uint64_t since, const store_filter_t *filter,
                                   int *err)
{
    int dummy;
    bool null;
    int64_t oldest;
    err = err ? err : &dummy;
    *err = 0;
    store_cursor_t *c = cursor_new(s, err);
    if (!c)
        return NULL;
    if ((*err = cursor_int(c, "SELECT min(revision) FROM changelog", &null, &oldest)) < 0)
        goto fail;
    if (since > c->revision) {
        *err = -EINVAL;
        goto fail;
    }
    if (null)
        oldest = (int64_t)c->revision + 1;
    if (since < c->revision && since + 1 < (uint64_t)oldest) {
        *err = -ERANGE;
        goto fail;
    }
    if ((*err = cursor_prepare(c,
                               "SELECT record FROM changelog WHERE revision > ?1"
                               " AND (?2 = 0 OR kind = ?2)"
                               " AND (?3 = '' OR country = ?3 OR country2 = ?3)"
                               " ORDER BY revision",
                               &c->stmt[0])) < 0)
        goto fail;
    c->n = 1;
    sqlite3_bind_int64(c->stmt[0], 1, (sqlite3_int64)since);
    sqlite3_bind_int(c->stmt[0], 2, filter ? (int)filter->kind : 0);
    sqlite3_bind_text(c->stmt[0], 3, filter ? filter->country : "", -1, SQLITE_TRANSIENT);
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

uint64_t store_cursor_revision(const store_cursor_t *c)
{
    return c->revision;
}

const char *store_cursor_errmsg(const store_cursor_t *c)
{
    return c ? c->err : "no cursor";
}

/*
 * Re-encodes a stored record with Record.provenance filled from its
 * stamps: one entry per set field slot (the key slot is not a field),
 * in field order. The result is in c->out.
 */
static int cursor_provenance(store_cursor_t *c, const uint8_t *rec, size_t len, const uint8_t *stp,
                             size_t slen)
{
    Parksync__V1__FieldProvenance fp[STORE_MAX_SLOTS];
    Parksync__V1__FieldProvenance *pp[STORE_MAX_SLOTS];
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots, n = 0;
    stamps_t sp;
    int rc = 0;

    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
    if (!r)
        return -EBADMSG;
    kind_t kind = wire_record_kind(r);
    nslots = merge_slots(kind, ids);
    if (nslots && stamps_decode(&sp, stp, slen, ids, nslots) < 0) {
        rc = -EBADMSG;
        goto out;
    }
    for (size_t i = 1; i < nslots; i++) {
        if (!sp.slot[i].set || sp.slot[i].cleared)
            continue;
        parksync__v1__field_provenance__init(&fp[n]);
        fp[n].field = (char *)merge_slot_name(kind, i);
        fp[n].producer_id = sp.slot[i].producer;
        fp[n].has_sequence = fp[n].has_event_time_us = fp[n].has_vintage = 1;
        fp[n].sequence = sp.slot[i].sequence;
        fp[n].event_time_us = sp.slot[i].time_us;
        fp[n].vintage = vintage_rank(sp.slot[i].vintage);
        pp[n] = &fp[n];
        n++;
    }
    r->n_provenance = n;
    r->provenance = pp;
    rc = buf_pack(&c->out, &r->base);
    r->n_provenance = 0; /* the entries live on this stack, not in r */
    r->provenance = NULL;
out:
    parksync__v1__record__free_unpacked(r, NULL);
    return rc;
}

/*
 * History: the version at c->revision of the record whose row (or a later
 * version of it) is at revision c->chain (> c->revision), found by
 * following the change log's prev links back, one lookup a step. 1 with
 * the record in c->out when it was live then, 0 when it did not exist or
 * was deleted, -EAGAIN when the cursor's steps are spent (c->chain is
 * where to go on), or a negative errno. c->chain is 0 unless -EAGAIN.
 */
static int cursor_history(store_cursor_t *c)
{
    int ret = 0;
    while (c->chain > c->revision) {
        if (c->steps >= STORE_CURSOR_STEPS)
            return -EAGAIN;
        c->steps++;
        sqlite3_stmt *st = c->prev;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)c->chain);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(st);
            /* the view was checked to hold every revision > c->revision */
            ret = rc == SQLITE_DONE ? -EPROTO : cursor_fail(c, rc);
            break;
        }
        if (sqlite3_column_type(st, 0) == SQLITE_NULL) {
            sqlite3_reset(st);
            break;
        }
        rc = buf_set(&c->out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
        sqlite3_reset(st);
        if (rc < 0) {
            ret = rc;
            break;
        }
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, c->out.len, c->out.data);
        if (!r) {
            ret = -EBADMSG;
            break;
        }
        bool deleted = r->deleted;
        uint64_t prev_rev = r->revision;
        parksync__v1__record__free_unpacked(r, NULL);
        if (prev_rev >= c->chain) {
            ret = -EPROTO; /* links must go back */
            break;
        }
        if (prev_rev <= c->revision) {
            ret = deleted ? 0 : 1;
            break;
        }
        c->chain = prev_rev;
    }
    c->chain = 0;
    return ret;
}

int store_cursor_next(store_cursor_t *c, const uint8_t **record, size_t *len)
{
    while (c->at < c->n) {
        int rc;
        if (c->history && c->steps >= STORE_CURSOR_STEPS) {
            c->steps = 0; /* spent: yield; the next call has a fresh share */
            return -EAGAIN;
        }
        if (c->history && c->chain) {
            /* the history of the row the scan stands on, begun or to go on */
            if ((rc = cursor_history(c)) == -EAGAIN)
                continue;
            if (rc < 0)
                return rc;
            if (rc == 0)
                continue;
            *record = c->out.data;
            *len = c->out.len;
            return 1;
        }
        rc = sqlite3_step(c->stmt[c->at]);
        if (rc == SQLITE_ROW && c->history) {
            sqlite3_stmt *st = c->stmt[c->at];
            uint64_t rev = (uint64_t)sqlite3_column_int64(st, 1);
            if (rev > c->revision) {
                c->chain = rev; /* changed since R: its history, next round */
                continue;
            }
            if (sqlite3_column_int(st, 2) != 0) {
                c->steps++; /* deleted at or before R: skipped, work all the same */
                continue;
            }
            *record = sqlite3_column_blob(st, 0);
            *len = (size_t)sqlite3_column_bytes(st, 0);
            return 1;
        }
        if (rc == SQLITE_ROW) {
            sqlite3_stmt *st = c->stmt[c->at];
            *record = sqlite3_column_blob(st, 0);
            *len = (size_t)sqlite3_column_bytes(st, 0);
            if (c->provenance && sqlite3_column_type(st, 1) != SQLITE_NULL) {
                if ((rc = cursor_provenance(c, *record, *len, sqlite3_column_blob(st, 1),
                                            (size_t)sqlite3_column_bytes(st, 1))) < 0)
                    return rc;
                *record = c->out.data;
                *len = c->out.len;
            }
            return 1;
        }
        if (rc != SQLITE_DONE)
            return cursor_fail(c, rc);
        c->at++;
    }
    return 0;
}

/* ---------------------------------------------------------------- conflicts */

static const char *col_text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

int store_conflicts(store_t *s, const store_conflict_filter_t *f, store_conflict_fn fn, void *arg)
{
    sqlite3_stmt *st = s->st[ST_CONFLICT_LIST];
    int rc, ret = 0;
    sqlite3_bind_int64(st, 1, f ? (sqlite3_int64)f->after_id : 0);
    sqlite3_bind_int(st, 2, f ? (int)f->kind : 0);
    sqlite3_bind_text(st, 3, f ? f->country : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, f ? f->since_us : INT64_MIN);
    sqlite3_bind_int64(st, 5, f && f->limit ? (sqlite3_int64)f->limit : -1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_conflict_t c = {
            .id = (uint64_t)sqlite3_column_int64(st, 0),
            .recorded_us = sqlite3_column_int64(st, 1),
            .producer_id = col_text(st, 2),
            .sequence = (uint64_t)sqlite3_column_int64(st, 3),
            .kind = (kind_t)sqlite3_column_int(st, 4),
            .key = col_text(st, 5),
            .country = col_text(st, 6),
            .partner = col_text(st, 7),
            .reason = col_text(st, 8),
            .has_event_time = sqlite3_column_type(st, 9) != SQLITE_NULL,
            .event_time_us = sqlite3_column_int64(st, 9),
            .claim_kept = sqlite3_column_int(st, 10) != 0,
        };
        if (fn(arg, &c) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(st);
    return ret;
}

/* ---------------------------------------------------------------- digest */

int store_digest(store_t *s, uint8_t out[32])
{
    crypto_generichash_state h;
    int rc;
    if (s->in_batch && store_summaries_dirty(s) && (rc = store_refresh_summaries(s)) < 0)
        return rc;
    if (s->in_batch && (rc = pending_flush(s)) < 0)
        return rc;
    crypto_generichash_init(&h, NULL, 0, 32);
    for (int k = 1; k < STORE_KINDS; k++) {
        sqlite3_stmt *st = s->scan[k];
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const uint8_t *body;
            size_t blen;
            uint8_t head[9];
            record_strip(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), &body,
                         &blen);
            head[0] = (uint8_t)k;
            for (int i = 0; i < 8; i++)
                head[1 + i] = (uint8_t)((uint64_t)blen >> (8 * i));
            crypto_generichash_update(&h, head, sizeof(head));
            crypto_generichash_update(&h, body, blen);
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return db_fail(s, rc);
    }
    crypto_generichash_final(&h, out, 32);
    return 0;
}

/* ---------------------------------------------------------------- producer stats */

int store_producer_stats(store_t *s, const char *producer_id, store_producer_stats_t *out)
{
    const producer_t *p = producer_id && producers_ready(s) ? producer_find(s, producer_id) : NULL;

    memset(out, 0, sizeof(*out));
    if (!p)
        return -ENOENT;
    out->last_sequence = p->last_sequence;
    out->applied = p->applied;
    out->duplicates = p->duplicates;
    out->gaps = p->gaps;
    out->rejected = p->rejected;
    out->last_seen_us = p->last_seen_us;
    return 0;
}

/* ---------------------------------------------------------------- operations */

#define BACKUP_PATH_MAX 4096 /* bytes of a backup path, with NUL */

int store_count_records(store_t *s, Parksync__V1__RecordKind kind, uint64_t *n)
{
    *n = 0;
    if (kind <= PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED || kind >= STORE_KINDS ||
        !kind_sql[kind].table)
        return -EINVAL;
    *n = s->live[kind];
    return 0;
}

int store_producers(store_t *s, store_producer_fn fn, void *arg)
{
    if (!producers_ready(s))
        return -EIO;
    for (size_t i = 0; i < s->prod_cap; i++) {
        const producer_t *p = &s->prod[i];
        store_producer_stats_t st;

        if (p->id[0] == '\0')
            continue;
        st.last_sequence = p->last_sequence;
        st.applied = p->applied;
        st.duplicates = p->duplicates;
        st.gaps = p->gaps;
        st.rejected = p->rejected;
        st.last_seen_us = p->last_seen_us;
        if (fn(arg, p->id, &st) != 0)
            break;
    }
    return 0;
}

int store_conflict_counts(store_t *s, uint64_t *total, store_reason_fn fn, void *arg)
{
    bool go_on = fn != NULL;

    *total = 0;
    for (size_t i = 0; i < STORE_REASONS; i++) {
        uint64_t n = s->reasons[i];
        *total += n;
        if (n > 0 && go_on && fn(arg, reason_classes[i].name, n) != 0)
            go_on = false;
    }
    return 0;
}

struct store_backup {
    store_t *store;     /* borrowed: the source */
    sqlite3 *dst;       /* connection to the temporary copy */
    sqlite3_backup *bk; /* SQLite's backup handle */
    char *path;         /* final name, owned */
    char *tmp;          /* path + ".tmp", owned */
    uint64_t revision;  /* head revision the copy holds (store_backup_seal) */
    bool sealed;        /* the copy is complete and closed */
};

void store_backup_abort(store_backup_t **bp)
{
    store_backup_t *b;

    if (!bp || !*bp)
        return;
    b = *bp;
    if (b->bk)
        sqlite3_backup_finish(b->bk);
    if (b->dst)
        sqlite3_close_v2(b->dst);
    if (b->tmp) {
        char side[BACKUP_PATH_MAX];
        unlink(b->tmp);
        snprintf(side, sizeof(side), "%s-journal", b->tmp);
        unlink(side);
    }
    free(b->path);
    free(b->tmp);
    free(b);
    *bp = NULL;
}

store_backup_t *store_backup_start(store_t *s, const char *path, int *err)
{
    store_backup_t *b;
    int rc;

    if (!path || path[0] != '/' || strlen(path) + 16 > BACKUP_PATH_MAX) {
        *err = -EINVAL;
        return NULL;
    }
    if (s->in_batch) {
        *err = -EBUSY;
        return NULL;
    }
    b = calloc(1, sizeof(*b));
    if (!b || !(b->path = strdup(path)) || !(b->tmp = malloc(strlen(path) + 5))) {
        *err = -ENOMEM;
        goto fail;
    }
    b->store = s;
    snprintf(b->tmp, strlen(path) + 5, "%s.tmp", path);
    unlink(b->tmp); /* a leftover of an interrupted backup */
    rc = sqlite3_open_v2(b->tmp, &b->dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(s->err, sizeof(s->err), "%s: %s", b->tmp,
                 b->dst ? sqlite3_errmsg(b->dst) : sqlite3_errstr(rc));
        *err = errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
        goto fail;
    }
    b->bk = sqlite3_backup_init(b->dst, "main", s->db, "main");
    if (!b->bk) {
        snprintf(s->err, sizeof(s->err), "%s: %s", b->tmp, sqlite3_errmsg(b->dst));
        *err = -EIO;
        goto fail;
    }
    return b;
fail:
    store_backup_abort(&b);
    return NULL;
}

int store_backup_step(store_backup_t *b, int pages)
{
    int rc = sqlite3_backup_step(b->bk, pages);

    if (rc == SQLITE_DONE)
        return 1;
    if (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return 0; /* busy/locked: try again on the next step */
    snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->tmp, sqlite3_errstr(rc));
    return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
}

/* fsync of a file or directory by name. 0 or -errno. */
static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

int store_backup_seal(store_backup_t *b)
{
    int rc;

    if (b->sealed)
        return 0;
    b->revision = store_head(b->store);
    rc = sqlite3_backup_finish(b->bk);
    b->bk = NULL;
    /* marks the copy: restored, it is another history (see claim_copy) */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(b->dst,
                          "INSERT OR REPLACE INTO meta(key, value) VALUES ('" META_COPY "', 1)",
                          NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(b->dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->tmp,
                 sqlite3_errmsg(b->dst));
        return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    rc = sqlite3_close(b->dst);
    b->dst = NULL;
    if (rc != SQLITE_OK) {
        snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->tmp,
                 sqlite3_errstr(rc));
        return -EIO;
    }
    b->sealed = true;
    return 0;
}

const char *store_backup_copy_path(const store_backup_t *b)
{
    return b->tmp;
}

int store_backup_finish(store_backup_t **bp, uint64_t *bytes, uint64_t *revision)
{
    store_backup_t *b = *bp;
    char dir[BACKUP_PATH_MAX];
    struct stat sb;
    char *slash;
    int rc;

    *bytes = 0;
    *revision = 0;
    if ((rc = store_backup_seal(b)) < 0)
        goto fail;
    *revision = b->revision;
    /* durability: the copy's bytes, then its name, then the directory entry */
    if ((rc = fsync_path(b->tmp, O_RDONLY)) < 0)
        goto fail_errno;
    if (rename(b->tmp, b->path) < 0) {
        rc = -errno;
        goto fail_errno;
    }
    snprintf(dir, sizeof(dir), "%s", b->path);
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    if ((rc = fsync_path(dir, O_RDONLY | O_DIRECTORY)) < 0) {
        snprintf(b->store->err, sizeof(b->store->err), "fsync of %.200s: %s", dir, strerror(-rc));
        free(b->tmp);
        b->tmp = NULL; /* renamed: nothing to remove */
        goto fail;
    }
    if (stat(b->path, &sb) == 0)
        *bytes = (uint64_t)sb.st_size;
    free(b->tmp);
    b->tmp = NULL;
    store_backup_abort(bp);
    return 0;
fail_errno:
    snprintf(b->store->err, sizeof(b->store->err), "backup to %s: %s", b->path, strerror(-rc));
fail:
    store_backup_abort(bp);
    return rc;
}

int store_backup(store_t *s, const char *path)
{
    uint64_t bytes, revision;
    char findings[200] = "";
    int err = 0, rc;
    store_backup_t *b = store_backup_start(s, path, &err);

    if (!b)
        return err;
    while ((rc = store_backup_step(b, -1)) == 0)
        ;
    if (rc < 0 || (rc = store_backup_seal(b)) < 0 ||
        (rc = store_check_file(b->tmp, findings, sizeof findings)) < 0) {
        if (findings[0])
            snprintf(s->err, sizeof(s->err), "the copy fails its check: %s", findings);
        store_backup_abort(&b);
        return rc;
    }
    return store_backup_finish(&b, &bytes, &revision);
}

/* ---------------------------------------------------------------- checks */

/* PRAGMA quick_check on db: 0 when it finds nothing; -EUCLEAN with its
 * first findings in msg; another negative errno, with SQLite's message in
 * msg, when it cannot run. */
static int quick_check(sqlite3 *db, char *msg, size_t len)
{
    sqlite3_stmt *st = NULL;
    size_t at = 0;
    int rc, ret = 0;

    msg[0] = '\0';
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(" STORE_CHECK_FINDINGS ")", -1, &st, NULL);
    if (rc == SQLITE_OK)
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            if (t && strcmp(t, "ok") == 0)
                continue;
            ret = -EUCLEAN;
            if (at < len)
                at += (size_t)snprintf(msg + at, len - at, "%s%s", at ? "; " : "", t ? t : "?");
        }
    if (rc != SQLITE_DONE) {
        snprintf(msg, len, "%s", sqlite3_errmsg(db));
        ret = errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    sqlite3_finalize(st);
    return ret;
}

int store_check_file(const char *path, char *msg, size_t len)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);

    if (rc != SQLITE_OK) {
        snprintf(msg, len, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    rc = quick_check(db, msg, len);
    sqlite3_close(db);
    return rc;
}

/* ---------------------------------------------------------------- checkpoints */

struct store_checkpointer {
    sqlite3 *db;   /* connection used for checkpoints only */
    char err[256]; /* SQLite's message for the last failure */
};

store_checkpointer_t *store_checkpointer_open(const char *path, char *err, size_t errlen)
{
    store_checkpointer_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, c->db ? sqlite3_errmsg(c->db) : "cannot open");
        store_checkpointer_close(&c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, STORE_BUSY_TIMEOUT_MS);
    /* A connection learns that the file is in WAL mode only when it
     * first reads it; until then a checkpoint is a no-op that reports
     * success (log and done -1), and the WAL grows without end. */
    if (sqlite3_exec(c->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(c->db));
        store_checkpointer_close(&c);
        return NULL;
    }
    return c;
}

int store_checkpoint(store_checkpointer_t *c)
{
    int log = 0, done = 0;
    int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);

    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        snprintf(c->err, sizeof(c->err), "%s", sqlite3_errmsg(c->db));
        return errno_from_sqlite(rc) ? errno_from_sqlite(rc) : -EIO;
    }
    if (rc == SQLITE_OK && log < 0) {
        snprintf(c->err, sizeof(c->err), "the database is not in WAL mode");
        return -EINVAL;
    }
    return log > done ? log - done : 0;
}

int store_checkpointer_check(store_checkpointer_t *c, char *msg, size_t len)
{
    return quick_check(c->db, msg, len);
}

const char *store_checkpointer_errmsg(const store_checkpointer_t *c)
{
    return c ? c->err : "no checkpointer";
}

void store_checkpointer_close(store_checkpointer_t **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    sqlite3_close((*cp)->db);
    free(*cp);
    *cp = NULL;
}
