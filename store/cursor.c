/*
 * cursor.c - reading the consolidated picture: changes since a revision,
 * snapshots (with provenance), history at a revision, and what a site
 * replicating this one lacks, each on a read-only connection of its own.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct store_cursor {
    sqlite3 *db;                     /* read-only connection of this view */
    bool provenance;                 /* fill Record.provenance from column 1 (stamps) */
    buf_t out;                       /* record re-encoded with its provenance */
    sqlite3_stmt *stmt[STORE_KINDS]; /* statements stepped one after the other */
    size_t n;                        /* statements in stmt */
    size_t at;                       /* statement being stepped */
    uint64_t revision;               /* head revision of the view (history: R) */
    bool history;                    /* state at `revision`, rebuilt from the change log */
    sqlite3_stmt *prev;              /* history: prev and record of a change-log row */
    uint64_t chain;                  /* history: revision whose prev link is read next; 0: none */
    uint32_t steps;                  /* history, replica: work since the last yield */
    bool replica;                    /* records with their stamps (store_replica_open) */
    sqlite3_stmt *row[STORE_KINDS];  /* replica since a revision: a row's revision and stamps */
    position_t *positions;           /* replica: the producers' positions of the view */
    size_t n_positions;              /* entries in positions */
    deferred_set_t deferred;         /* snapshot of residents, replica since a revision:
                                        rows the writer had not written when the view
                                        began (store_int.h) */
    size_t keyed;                    /* snapshot: stmt[keyed - 1] scans the residents, with
                                        their key columns last, to pass over those waiting;
                                        0: none wait */
    sqlite3_stmt *waiting;           /* snapshot: a waiting resident's change-log entry */
    uint64_t *waiting_rev;           /* snapshot: the live waiting residents' revisions, sorted */
    uint32_t n_waiting;              /* snapshot: entries of waiting_rev */
    uint32_t waiting_at;             /* snapshot: the next of waiting_rev to send */
    char country[3];                 /* snapshot: the filter's country; "" all */
    char err[256];                   /* SQLite's message for the last failure; "" when none */
};

/* Whether the writer's change log holds every revision after `since` (a
 * since at or beyond the head needs none); cursor_log_reaches asks a
 * view the same. */
static bool log_reaches(store_t *s, uint64_t since)
{
    return since >= s->head || since + 1 >= store_oldest(s);
}

int store_changes(store_t *s, uint64_t since, store_change_fn fn, void *arg)
{
    sqlite3_stmt *st = s->st[ST_LOG_SINCE];
    int rc, ret = 0;
    if (!log_reaches(s, since))
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

void store_cursor_close(store_cursor_t **cp)
{
    if (!cp || !*cp)
        return;
    store_cursor_t *c = *cp;
    for (size_t i = 0; i < c->n; i++)
        sqlite3_finalize(c->stmt[i]);
    for (size_t k = 0; k < STORE_KINDS; k++)
        sqlite3_finalize(c->row[k]);
    sqlite3_finalize(c->prev);
    sqlite3_finalize(c->waiting);
    deferred_free(&c->deferred);
    free(c->waiting_rev);
    free(c->positions);
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

/* A read-only connection inside a read transaction, and its head. One
 * that reads the resident table (residents) first has the rows the
 * writer deferred written (store_settle). */
static store_cursor_t *cursor_new(store_t *s, bool residents, int *err)
{
    store_cursor_t *c;
    bool null;
    int64_t head = 0;
    int rc;
    if (residents && (*err = store_settle(s)) < 0)
        return NULL;
    if (!(c = calloc(1, sizeof(*c)))) {
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
    if ((*err = cursor_int(c, STORE_HEAD_SQL, &null, &head)) < 0)
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

static int by_revision(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The revisions of the live waiting residents in c->deferred, in order:
 * the change log is read forward, a page once, rather than a lookup at
 * random for each (tombstones are not read at all). 0 or -ENOMEM. */
static int waiting_sort(store_cursor_t *c)
{
    const deferred_set_t *d = &c->deferred;

    if (d->n == 0)
        return 0;
    if (!(c->waiting_rev = malloc(d->n * sizeof(*c->waiting_rev))))
        return -ENOMEM;
    for (uint32_t i = 0; i < d->n; i++)
        if (!d->deleted[i])
            c->waiting_rev[c->n_waiting++] = d->revision[i];
    qsort(c->waiting_rev, c->n_waiting, sizeof(*c->waiting_rev), by_revision);
    return 0;
}

/*
 * A snapshot; one of residents either has the rows the writer deferred
 * written first (settle: history, which follows the tables' rows back),
 * or passes over them in the scan and sends them afterwards from their
 * latest change-log entries, as they were when the view began: writing
 * 32,768 of them stalled ingest for a third of a second.
 */
static store_cursor_t *snapshot_open(store_t *s, const store_filter_t *filter, bool settle,
                                     int *err)
{
    int dummy;
    err = err ? err : &dummy;
    *err = 0;
    kind_t want = filter ? filter->kind : PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    bool residents = want == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED ||
                     want == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    bool waiting = residents && !settle && !s->replay_due && s->n_deferred > 0;
    if (waiting && s->in_batch) {
        snprintf(s->err, sizeof(s->err), "the resident table is read inside a batch");
        *err = -EBUSY; /* the cache holds revisions not committed */
        return NULL;
    }
    store_cursor_t *c = cursor_new(s, residents && !waiting, err);
    if (!c)
        return NULL;
    if (waiting && ((*err = deferred_copy(s, &c->deferred)) < 0 || (*err = waiting_sort(c)) < 0 ||
                    (*err = cursor_prepare(c,
                                           "SELECT record, stamps, country FROM changelog"
                                           " WHERE revision = ?1",
                                           &c->waiting)) < 0))
        goto fail;
    bool by_country = filter && filter->country[0];
    if (by_country)
        memcpy(c->country, filter->country, sizeof(c->country));
    c->provenance = filter && filter->provenance;
    for (int k = 1; k < STORE_KINDS; k++) {
        if (want != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED && want != (kind_t)k)
            continue;
        sqlite3_stmt **st = &c->stmt[c->n];
        const char *sql = by_country ? kind_sql[k].scan_country : kind_sql[k].scan;
        bool keyed = waiting && k == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
        char wider[512];
        if (c->provenance || keyed) {
            /* the same scan with the stamps as column 1 (summaries have
             * none), and a waiting resident's key columns after */
            static const char head[] = "SELECT record";
            snprintf(wider, sizeof(wider), "SELECT record, %s%s%s",
                     c->provenance && k != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY ? "stamps"
                                                                                          : "NULL",
                     keyed ? ", country, park_id, resident_id" : "", sql + sizeof(head) - 1);
            sql = wider;
        }
        if ((*err = cursor_prepare(c, sql, st)) < 0)
            goto fail;
        c->n++;
        if (keyed)
            c->keyed = c->n;
        if (by_country)
            sqlite3_bind_text(*st, 1, filter->country, -1, SQLITE_TRANSIENT);
    }
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

store_cursor_t *store_snapshot_open(store_t *s, const store_filter_t *filter, int *err)
{
    return snapshot_open(s, filter, false, err);
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
    store_cursor_t *c = snapshot_open(s, &f, true, err);
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
    if ((*err = cursor_prepare(c, "SELECT prev, record FROM changelog WHERE revision = ?1",
                               &c->prev)) < 0)
        goto fail;
    c->history = true;
    c->revision = revision;
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

/* Whether the view's change log holds every revision after `since` (a
 * since at or beyond the head needs none). 0 or a negative errno. */
static int cursor_log_reaches(store_cursor_t *c, uint64_t since, bool *reaches)
{
    bool null;
    int64_t oldest;
    int rc = cursor_int(c, "SELECT min(revision) FROM changelog", &null, &oldest);
    if (rc < 0)
        return rc;
    if (null)
        oldest = (int64_t)c->revision + 1;
    *reaches = since >= c->revision || since + 1 >= (uint64_t)oldest;
    return 0;
}

store_cursor_t *store_changes_open(store_t *s, uint64_t since, const store_filter_t *filter,
                                   int *err)
{
    int dummy;
    bool reaches;
    err = err ? err : &dummy;
    *err = 0;
    store_cursor_t *c = cursor_new(s, false, err); /* the change log alone */
    if (!c)
        return NULL;
    if (since > c->revision) {
        *err = -EINVAL;
        goto fail;
    }
    if ((*err = cursor_log_reaches(c, since, &reaches)) < 0)
        goto fail;
    if (!reaches) {
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

/* A stamp as the wire carries it: for provenance with the vintage as
 * published, for replication exactly as stored. */
static void stamp_wire(Parksync__V1__FieldProvenance *fp, const stamp_t *st, bool exact)
{
    parksync__v1__field_provenance__init(fp);
    fp->producer_id = (char *)st->producer;
    fp->has_sequence = fp->has_event_time_us = 1;
    fp->sequence = st->sequence;
    fp->event_time_us = st->time_us;
    fp->has_vintage = !exact || st->vintage != 0;
    fp->vintage = exact ? (Parksync__V1__Vintage)st->vintage : vintage_rank(st->vintage);
    fp->has_cleared = exact && st->cleared;
    fp->cleared = st->cleared;
}

/*
 * Re-encodes a stored record with its stamps, into c->out. For a snapshot
 * with provenance: Record.provenance, one entry per field slot holding a
 * value (the key slot is not a field), in field order. For a replica:
 * Record.stamps, every set slot as stored (the key slot as field_id 0,
 * cleared cells too), and Record.tombstone.
 */
static int cursor_stamps(store_cursor_t *c, const uint8_t *rec, size_t len, const uint8_t *stp,
                         size_t slen)
{
    Parksync__V1__FieldProvenance fp[STORE_MAX_SLOTS], tomb;
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
    for (size_t i = c->replica ? 0 : 1; i < nslots; i++) {
        if (!sp.slot[i].set || (!c->replica && sp.slot[i].cleared))
            continue;
        stamp_wire(&fp[n], &sp.slot[i], c->replica);
        fp[n].field = (char *)merge_slot_name(kind, i);
        if (c->replica) {
            fp[n].has_field_id = 1;
            fp[n].field_id = ids[i];
        }
        pp[n] = &fp[n];
        n++;
    }
    if (c->replica) {
        r->has_revision = 1; /* rows of before schema 7 may have none: 0 */
        r->n_stamps = n;
        r->stamps = pp;
        if (nslots && sp.tomb.set) {
            stamp_wire(&tomb, &sp.tomb, true);
            r->tombstone = &tomb;
        }
    } else {
        r->n_provenance = n;
        r->provenance = pp;
    }
    rc = buf_pack(&c->out, &r->base);
    /* the entries live on this stack, not in r */
    r->n_provenance = r->n_stamps = 0;
    r->provenance = r->stamps = NULL;
    r->tombstone = NULL;
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
        rc = prev_decode(&c->out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                         sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1));
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

/*
 * A replica since a revision: the change log's entries after it, each
 * sent when its row still holds that revision (a later entry sends the
 * row otherwise), with the row's stamps. A resident whose row the writer
 * had not written when the view began (deferred state, c->deferred) is
 * sent from the entry of its latest revision, as the log holds it with
 * its stamps; its earlier entries are passed over.
 * Entries passed over count as work: after STORE_CURSOR_STEPS of them,
 * -EAGAIN.
 */
static int replica_next(store_cursor_t *c, const uint8_t **record, size_t *len)
{
    sqlite3_stmt *log = c->stmt[0];
    int rc;

    while ((rc = sqlite3_step(log)) == SQLITE_ROW) {
        uint64_t rev = (uint64_t)sqlite3_column_int64(log, 0);
        Parksync__V1__Record *r = parksync__v1__record__unpack(
            NULL, (size_t)sqlite3_column_bytes(log, 1), sqlite3_column_blob(log, 1));
        Parksync__V1__TradeReport tr;
        rec_key_t key;
        if (!r)
            return -EBADMSG;
        if (!key_of_record(&key, r, &tr)) {
            parksync__v1__record__free_unpacked(r, NULL);
            return -EBADMSG;
        }
        char k[STORE_PENDING_KEY];
        uint64_t latest = pending_key(&key, k) ? deferred_find(&c->deferred, k) : 0;
        if (latest > 0) {
            /* its row waits in the writer: the log holds the latest */
            parksync__v1__record__free_unpacked(r, NULL);
            if (latest < rev || sqlite3_column_type(log, 2) == SQLITE_NULL)
                return -EPROTO;
            if (latest == rev) {
                if ((rc = cursor_stamps(
                         c, sqlite3_column_blob(log, 1), (size_t)sqlite3_column_bytes(log, 1),
                         sqlite3_column_blob(log, 2), (size_t)sqlite3_column_bytes(log, 2))) < 0)
                    return rc;
                *record = c->out.data;
                *len = c->out.len;
                return 1;
            }
            if (++c->steps >= STORE_CURSOR_STEPS) {
                c->steps = 0;
                return -EAGAIN;
            }
            continue;
        }
        sqlite3_stmt *st = c->row[key.kind];
        bind_key(st, &key); /* points into r: stepped before r is freed */
        rc = sqlite3_step(st);
        parksync__v1__record__free_unpacked(r, NULL);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(st);
            return rc == SQLITE_DONE ? -EPROTO : cursor_fail(c, rc);
        }
        if ((uint64_t)sqlite3_column_int64(st, 0) == rev) {
            rc = cursor_stamps(c, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1),
                               sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2));
            sqlite3_reset(st);
            if (rc < 0)
                return rc;
            *record = c->out.data;
            *len = c->out.len;
            return 1;
        }
        sqlite3_reset(st);
        if (++c->steps >= STORE_CURSOR_STEPS) {
            c->steps = 0;
            return -EAGAIN;
        }
    }
    return rc == SQLITE_DONE ? 0 : cursor_fail(c, rc);
}

/* Whether the resident on the scan's row waits in the writer (its key
 * columns are the statement's last three). */
static bool waits(const store_cursor_t *c, sqlite3_stmt *st)
{
    rec_key_t key = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT, .ncols = 3};
    char k[STORE_PENDING_KEY];
    int at = sqlite3_column_count(st) - 3;

    for (int i = 0; i < 3; i++)
        key.col[i] = (const char *)sqlite3_column_text(st, at + i);
    return key.col[0] && key.col[1] && key.col[2] && pending_key(&key, k) &&
           deferred_find(&c->deferred, k) > 0;
}

/* A snapshot's live residents that waited in the writer when the view
 * began, each from the change-log entry of its latest revision, in
 * revision order (waiting_sort), with its stamps for provenance; other
 * countries' are passed over. */
static int waiting_next(store_cursor_t *c, const uint8_t **record, size_t *len)
{
    sqlite3_stmt *st = c->waiting;

    while (c->waiting_at < c->n_waiting) {
        int rc;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)c->waiting_rev[c->waiting_at++]);
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            return rc == SQLITE_DONE ? -EPROTO : cursor_fail(c, rc); /* the view holds it */
        const char *country = (const char *)sqlite3_column_text(st, 2);
        if (c->country[0] && (!country || strcmp(country, c->country) != 0))
            continue;
        const uint8_t *rec = sqlite3_column_blob(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        *record = rec;
        *len = n;
        if (c->provenance) {
            if (sqlite3_column_type(st, 1) == SQLITE_NULL)
                return -EPROTO; /* every deferred row's entry has its stamps */
            if ((rc = cursor_stamps(c, rec, n, sqlite3_column_blob(st, 1),
                                    (size_t)sqlite3_column_bytes(st, 1))) < 0)
                return rc;
            *record = c->out.data;
            *len = c->out.len;
        }
        return 1;
    }
    return 0;
}

int store_cursor_next(store_cursor_t *c, const uint8_t **record, size_t *len)
{
    if (c->replica && c->row[PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK])
        return replica_next(c, record, len);
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
        /* the residents' scan ended once waiting ones are being sent */
        rc =
            c->keyed == c->at + 1 && c->waiting_at > 0 ? SQLITE_DONE : sqlite3_step(c->stmt[c->at]);
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
        if (rc == SQLITE_ROW && c->keyed == c->at + 1 && waits(c, c->stmt[c->at]))
            continue; /* sent from the change log at the end */
        if (rc == SQLITE_ROW) {
            sqlite3_stmt *st = c->stmt[c->at];
            *record = sqlite3_column_blob(st, 0);
            *len = (size_t)sqlite3_column_bytes(st, 0);
            if (c->provenance && sqlite3_column_type(st, 1) != SQLITE_NULL) {
                if ((rc = cursor_stamps(c, *record, *len, sqlite3_column_blob(st, 1),
                                        (size_t)sqlite3_column_bytes(st, 1))) < 0)
                    return rc;
                *record = c->out.data;
                *len = c->out.len;
            }
            return 1;
        }
        if (rc != SQLITE_DONE)
            return cursor_fail(c, rc);
        if (c->keyed == c->at + 1 && (rc = waiting_next(c, record, len)) != 0)
            return rc; /* the scan of residents is done: those that wait, in kind order */
        c->at++;
    }
    return 0;
}

store_cursor_t *store_replica_open(store_t *s, const uint8_t *epoch, uint64_t since, bool *full,
                                   int *err)
{
    int dummy;
    bool reaches;
    err = err ? err : &dummy;
    *err = 0;
    /* a first pull (no epoch) is whole: tombstones made before schema 7
     * have no revision, so only a scan of the tables finds them. A whole
     * pull has the deferred rows written first; a pull of the change log
     * learns which rows wait and sends their latest entries instead. */
    bool whole = !epoch || memcmp(epoch, s->epoch, WIRE_EPOCH_BYTES) != 0 || since > s->head ||
                 !log_reaches(s, since);
    store_cursor_t *c = cursor_new(s, whole || s->replay_due, err);
    if (!c)
        return NULL;
    c->replica = true;
    if ((*err = producers_copy(s, &c->positions, &c->n_positions)) < 0 ||
        (*err = cursor_log_reaches(c, since, &reaches)) < 0)
        goto fail;
    *full =
        !epoch || memcmp(epoch, s->epoch, WIRE_EPOCH_BYTES) != 0 || since > c->revision || !reaches;
    if (*full && !whole && s->n_deferred > 0) {
        *err = -EBUSY; /* a view that is not the store's committed state: in a batch */
        goto fail;
    }
    if (!*full && (*err = deferred_copy(s, &c->deferred)) < 0)
        goto fail;
    if (*full) {
        c->provenance = true; /* the scan's column 1, re-encoded by cursor_stamps */
        for (int k = 1; k < STORE_KINDS; k++) {
            char sql[128];
            if (k == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY)
                continue; /* derived: every site makes its own */
            snprintf(sql, sizeof(sql), "SELECT record, stamps FROM %s", kind_sql[k].table);
            if ((*err = cursor_prepare(c, sql, &c->stmt[c->n])) < 0)
                goto fail;
            c->n++;
        }
        return c;
    }
    if ((*err = cursor_prepare(c,
                               "SELECT revision, record, stamps FROM changelog WHERE revision > ?1"
                               " AND kind != 5 ORDER BY revision",
                               &c->stmt[0])) < 0)
        goto fail;
    c->n = 1;
    sqlite3_bind_int64(c->stmt[0], 1, (sqlite3_int64)since);
    for (int k = 1; k < STORE_KINDS; k++)
        if (k != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY &&
            (*err = cursor_prepare(c, kind_sql[k].select, &c->row[k])) < 0)
            goto fail;
    return c;
fail:
    cursor_abandon(s, &c);
    return NULL;
}

int store_cursor_producers(store_cursor_t *c, store_position_fn fn, void *arg)
{
    for (size_t i = 0; i < c->n_positions; i++)
        if (fn(arg, c->positions[i].id, c->positions[i].sequence) != 0)
            break;
    return 0;
}
