/*
 * summary.c - country summaries and the resident aggregates they read:
 * which countries are stale, the aggregates' deltas (from the row cache's
 * reports), and each country's summary refreshed in a savepoint of its
 * own.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mark_dirty(store_t *s, const char *country)
{
    int i = country_index(country);
    if (i >= 0)
        s->dirty[i / 8] |= (uint8_t)(1u << (i % 8));
}

int mark_all_dirty(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_DIRTY_ALL];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        mark_dirty(s, (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, rc);
}

/*
 * The resident aggregates (resident_agg) move with every resident change;
 * a park's deltas wait in s->agg, across commits, until the table takes
 * them: before a summary reads it, when state_from moves, and when more
 * than STORE_AGG_DELTAS parks wait. A commit that logged changes keeps
 * the totals of the parks it moved on its last change-log row instead
 * (column aggregates, JSON [[country, park_id, residents,
 * investment_cents, investment_carry], ...]): the table's page was a
 * third of what a commit of one update wrote. At open the rows after
 * state_from give the table its latest totals (agg_replay), each over
 * a row written at an older revision only: a flush inside a batch (a
 * summary refresh) writes a park after its last copy, with no copy of
 * its own.
 */

/* A park's total: its row in resident_agg plus the delta that waits,
 * exactly (SQLite's + would turn a total beyond int64 into an inexact
 * REAL), as the table's columns. */
static int agg_total(store_t *s, const agg_delta_t *d, int64_t *residents, int64_t *cents,
                     int64_t *carry)
{
    sqlite3_stmt *get = s->st[ST_AGG_GET];
    wide_t count = d->residents, investment = d->investment;
    bool clamped = false;
    int rc;

    sqlite3_bind_text(get, 1, d->country, -1, SQLITE_STATIC);
    sqlite3_bind_text(get, 2, d->park_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(get);
    if (rc == SQLITE_ROW) {
        count = wide_add(count, sqlite3_column_int64(get, 0));
        investment = wide_add(
            investment, agg_compose(sqlite3_column_int64(get, 1), sqlite3_column_int64(get, 2)));
    }
    stmt_reset(get);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, rc);
    *residents = (int64_t)wide_clamp(count, WIDE_INT64_MIN, WIDE_INT64_MAX, &clamped);
    agg_split(investment, cents, carry);
    return 0;
}

/* Writes a park's row as of revision, unless the row is of a later one. */
static int agg_put(store_t *s, const char *country, const char *park_id, int64_t residents,
                   int64_t cents, int64_t carry, uint64_t revision)
{
    sqlite3_stmt *put = s->st[ST_AGG_PUT];

    sqlite3_bind_text(put, 1, country, -1, SQLITE_STATIC);
    sqlite3_bind_text(put, 2, park_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(put, 3, residents);
    sqlite3_bind_int64(put, 4, cents);
    sqlite3_bind_int64(put, 5, carry);
    sqlite3_bind_int64(put, 6, (sqlite3_int64)revision);
    return step_done(s, put);
}

/* Adds the deltas that wait to resident_agg. */
int agg_flush(store_t *s)
{
    int64_t residents, cents, carry;
    int rc;

    for (size_t i = 0; i < s->n_agg; i++) {
        const agg_delta_t *d = &s->agg[i];
        if (d->residents == 0 && d->investment == 0)
            continue;
        if ((rc = agg_total(s, d, &residents, &cents, &carry)) < 0 ||
            (rc = agg_put(s, d->country, d->park_id, residents, cents, carry, s->head)) < 0)
            return rc;
    }
    s->n_agg = 0;
    return 0;
}

/* At commit: the totals of the parks the batch moved go into s->agg_blob,
 * for the change-log row of the head, when the batch logged changes
 * (store_commit writes it there); else the table takes every delta. */
int agg_commit(store_t *s)
{
    buf_t *b = &s->agg_blob;
    int64_t residents, cents, carry;
    bool any = false;
    int rc;

    b->len = 0;
    for (size_t i = 0; i < s->n_agg && !any; i++)
        any = s->agg[i].moved;
    if (!any)
        return 0;
    if (s->head == s->head_begin)
        return agg_flush(s);
    for (size_t i = 0; i < s->n_agg; i++) {
        agg_delta_t *d = &s->agg[i];
        if (!d->moved)
            continue;
        if ((rc = agg_total(s, d, &residents, &cents, &carry)) < 0)
            return rc;
        if (buf_reserve(b, b->len + 6 * (sizeof d->country + sizeof d->park_id) + 3 * 21 + 8) < 0)
            return -ENOMEM;
        char *o = (char *)b->data + b->len;
        *o++ = b->len == 0 ? '[' : ',';
        *o++ = '[';
        o += json_put_str(o, d->country);
        *o++ = ',';
        o += json_put_str(o, d->park_id);
        o += sprintf(o, ",%" PRId64 ",%" PRId64 ",%" PRId64 "]", residents, cents, carry);
        b->len = (size_t)(o - (char *)b->data);
        d->moved = false;
    }
    b->data[b->len++] = ']';
    return 0;
}

/* At open, after a crash: resident_agg takes the latest totals the change
 * log keeps after state_from. 0, or -EUCLEAN when one does not read. */
int agg_replay(store_t *s)
{
    sqlite3_stmt *st = s->st[ST_AGG_LOGGED];
    int rc, ret = 0;

    sqlite3_bind_int64(st, 1, (sqlite3_int64)s->state_from);
    while (ret == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *country = (const char *)sqlite3_column_text(st, 1);
        const char *park_id = (const char *)sqlite3_column_text(st, 2);
        bool ok =
            country && park_id && wire_country_valid(country) && strlen(park_id) <= WIRE_MAX_ID;
        for (int c = 3; c <= 5 && ok; c++)
            ok = sqlite3_column_type(st, c) == SQLITE_INTEGER;
        if (!ok) {
            snprintf(s->err, sizeof(s->err),
                     "the aggregates kept on change %" PRId64 " of the change log do not read",
                     (int64_t)sqlite3_column_int64(st, 0));
            ret = -EUCLEAN;
            break;
        }
        ret = agg_put(s, country, park_id, sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4),
                      sqlite3_column_int64(st, 5), (uint64_t)sqlite3_column_int64(st, 0));
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_fail(s, rc);
    stmt_reset(st);
    return ret;
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
int summary_on_change(store_t *s, const rec_key_t *key, const row_t *old,
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
    d->moved = true;
    return 0;
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
