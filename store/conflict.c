/*
 * conflict.c - the conflicts/audit table and the claims it lists:
 * recording, retention, listing and counting by reason class.
 */
#include "store_int.h"

#include <strings.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Conflict reasons by class: the prefixes of the reasons the store and the
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

size_t reason_class_of(const char *reason)
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
int conflict_oldest_load(store_t *s)
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
int conflicts_prune(store_t *s)
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

bool conflicts_prune_due(store_t *s)
{
    return conflicts_over(s) > 0 || s->conflict_oldest_us < conflicts_horizon(s);
}

void store_pruned_counts(const store_t *s, store_pruned_t *out)
{
    *out = s->pruned;
}

/* One conflict row. u (may be NULL) gives the event time; claim tells
 * that the update is kept in the claim table. */
int conflict_put(store_t *s, const char *producer, uint64_t seq, kind_t kind, const rec_key_t *key,
                 const char *reason, const Parksync__V1__Update *u, bool claim)
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
int claim_put(store_t *s, const Parksync__V1__Update *u, kind_t kind, const rec_key_t *key,
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
