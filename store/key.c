/*
 * key.c - record kinds, keys and bodies (key.h).
 */
#include "key.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"

/* Key columns of each kind's table. */
static const size_t key_columns[STORE_KINDS] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] = 2,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] = 3,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE] = 3,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] = 2,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY] = 1,
};

/* The encoded Record without its leading revision field. */
void record_strip(const uint8_t *rec, size_t len, const uint8_t **body, size_t *blen)
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

int country_index(const char *c)
{
    if (!c || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2])
        return -1;
    return (c[0] - 'A') * 26 + (c[1] - 'A');
}

static bool id_ok(const char *p)
{
    return p && p[0] && strlen(p) <= WIRE_MAX_ID;
}

static bool period_key(rec_key_t *key, const Parksync__V1__Period *p)
{
    return p && wire_period_key(key->period, sizeof(key->period), p) > 0;
}

/* The record an update or delete target names. false when a key is missing. */
bool key_of(rec_key_t *key, kind_t kind, const void *body, bool *exporter_side)
{
    memset(key, 0, sizeof(*key));
    key->kind = kind;
    key->ncols = kind < STORE_KINDS ? key_columns[kind] : 0;
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
const void *update_target(const Parksync__V1__Update *u, kind_t *kind, bool *is_delete)
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

/* The key columns joined by '/', truncated to size - 1 bytes. */
void key_text(const rec_key_t *key, char *out, size_t size)
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

/* Parses a period key made by wire_period_key back into a Period, and
 * checks the round trip so a change of that format cannot go unnoticed. */
bool period_parse(const char *text, Parksync__V1__Period *p)
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

/* The body of a Record of a generic kind, or NULL. */
const ProtobufCMessage *record_body(const Parksync__V1__Record *r)
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

void record_set_body(Parksync__V1__Record *r, kind_t kind, ProtobufCMessage *body)
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

/* The key of a Record of a kind with stamps; a trade flow is read as the
 * exporter's report of it, built in *tr (which the key then points into).
 * false when the record has no such body or a key is missing. */
bool key_of_record(rec_key_t *key, const Parksync__V1__Record *r, Parksync__V1__TradeReport *tr)
{
    bool exporter_side;
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        return key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, r->park, &exporter_side);
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        return key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT, r->resident,
                      &exporter_side);
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        return key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY, r->country,
                      &exporter_side);
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        parksync__v1__trade_report__init(tr);
        tr->reporter = r->trade->exporter;
        tr->partner = r->trade->importer;
        tr->has_direction = 1;
        tr->direction = PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS;
        tr->period = r->trade->period;
        return tr->reporter && tr->partner &&
               key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE, tr, &exporter_side);
    default:
        return false;
    }
}
