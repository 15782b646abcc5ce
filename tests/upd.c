/*
 * upd.c - building updates for the store's tests, and chunks (upd.h).
 */
#include "upd.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void upd_init(upd_t *x, const char *producer, uint64_t seq, int64_t t, Parksync__V1__Vintage v)
{
    memset(x, 0, sizeof(*x));
    parksync__v1__update__init(&x->u);
    parksync__v1__park__init(&x->park);
    parksync__v1__resident__init(&x->resident);
    parksync__v1__trade_report__init(&x->trade);
    parksync__v1__country_report__init(&x->country);
    parksync__v1__delete__init(&x->del);
    parksync__v1__period__init(&x->period);
    parksync__v1__specialization_list__init(&x->specs);
    snprintf(x->producer, sizeof(x->producer), "%s", producer);
    x->u.has_version = 1;
    x->u.version = WIRE_VERSION;
    x->u.producer_id = x->producer;
    x->u.has_sequence = 1;
    x->u.sequence = seq;
    x->u.has_event_time_us = 1;
    x->u.event_time_us = t;
    x->u.has_vintage = v != 0;
    x->u.vintage = v;
}

void set_period(upd_t *x, uint32_t year, uint32_t first, uint32_t last)
{
    x->period.has_year = x->period.has_first_month = x->period.has_last_month = 1;
    x->period.year = year;
    x->period.first_month = first;
    x->period.last_month = last;
}

Parksync__V1__Park *upd_park(upd_t *x, const char *country, const char *id)
{
    x->park.country = (char *)country;
    x->park.park_id = (char *)id;
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    x->u.park = &x->park;
    return &x->park;
}

Parksync__V1__Resident *upd_resident(upd_t *x, const char *country, const char *park,
                                     const char *id)
{
    x->resident.country = (char *)country;
    x->resident.park_id = (char *)park;
    x->resident.resident_id = (char *)id;
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    x->u.resident = &x->resident;
    return &x->resident;
}

Parksync__V1__TradeReport *upd_trade(upd_t *x, const char *reporter, const char *partner,
                                     Parksync__V1__TradeDirection dir_, uint32_t year,
                                     uint32_t first, uint32_t last)
{
    set_period(x, year, first, last);
    x->trade.reporter = (char *)reporter;
    x->trade.partner = (char *)partner;
    x->trade.has_direction = 1;
    x->trade.direction = dir_;
    x->trade.period = &x->period;
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
    x->u.trade = &x->trade;
    return &x->trade;
}

Parksync__V1__CountryReport *upd_country(upd_t *x, const char *country, uint32_t year,
                                         uint32_t first, uint32_t last)
{
    set_period(x, year, first, last);
    x->country.country = (char *)country;
    x->country.period = &x->period;
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_COUNTRY;
    x->u.country = &x->country;
    return &x->country;
}

/* Turns a prepared body into a delete of that body's record (keys only). */
void upd_make_delete(upd_t *x)
{
    switch (x->u.body_case) {
    case PARKSYNC__V1__UPDATE__BODY_PARK:
        x->del.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
        x->del.park = &x->park;
        break;
    case PARKSYNC__V1__UPDATE__BODY_RESIDENT:
        x->del.target_case = PARKSYNC__V1__DELETE__TARGET_RESIDENT;
        x->del.resident = &x->resident;
        break;
    case PARKSYNC__V1__UPDATE__BODY_TRADE:
        x->trade.has_value_usd_cents = 0;
        x->del.target_case = PARKSYNC__V1__DELETE__TARGET_TRADE;
        x->del.trade = &x->trade;
        break;
    default:
        x->del.target_case = PARKSYNC__V1__DELETE__TARGET_COUNTRY;
        x->del.country = &x->country;
        break;
    }
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    x->u.delete_ = &x->del;
}

void park_name(upd_t *x, const char *name)
{
    snprintf(x->name, sizeof(x->name), "%s", name);
    x->park.name = x->name;
}

/* Gives message m of update x one unknown field: a field number the
 * schema does not know (900..999), length-delimited, with random bytes,
 * as a newer producer's update would carry. */
void upd_unknown(upd_t *x, ProtobufCMessage *m, uint64_t r)
{
    cr_assert_lt(x->n_unk, UPD_UNKNOWN);
    ProtobufCMessageUnknownField *f = &x->unk[x->n_unk];
    uint8_t *d = x->unk_data[x->n_unk];
    f->tag = 900 + (uint32_t)(r % 100);
    f->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    /* protobuf-c keeps what follows the tag: the length, then the bytes */
    d[0] = (uint8_t)(1 + (r >> 8) % 7);
    for (size_t i = 0; i < d[0]; i++)
        d[1 + i] = (uint8_t)(r >> (16 + 5 * i));
    f->len = 1 + (size_t)d[0];
    f->data = d;
    x->unk_in[x->n_unk++] = m;
    m->n_unknown_fields = 1;
    m->unknown_fields = f;
}

/* Turns the unknown fields upd_unknown gave x on or off. */
void upd_unknowns(upd_t *x, bool on)
{
    for (size_t i = 0; i < x->n_unk; i++)
        x->unk_in[i]->n_unknown_fields = on ? 1 : 0;
}

const char *const prop_countries[2] = {"AZ", "TJ"};
const char *const prop_ids[3] = {"P1", "P2", "P3"};
const char *const prop_names[4] = {"alpha", "beta", "gamma", "delta"};

/* Unknown fields, as a newer producer's updates carry them: in the
 * envelope, the body (or the delete and its target), the key's Period and
 * the specializations, each update its own. None may reach a stored
 * record: the same updates without them must give the same bytes. */
void prop_unknowns(upd_t *x, uint64_t *st)
{
    bool del = x->u.body_case == PARKSYNC__V1__UPDATE__BODY_DELETE;
    ProtobufCMessage *body = &x->country.base;

    if (x->u.body_case == PARKSYNC__V1__UPDATE__BODY_PARK ||
        (del && x->del.target_case == PARKSYNC__V1__DELETE__TARGET_PARK))
        body = &x->park.base;
    else if (x->u.body_case == PARKSYNC__V1__UPDATE__BODY_RESIDENT ||
             (del && x->del.target_case == PARKSYNC__V1__DELETE__TARGET_RESIDENT))
        body = &x->resident.base;
    else if (x->u.body_case == PARKSYNC__V1__UPDATE__BODY_TRADE ||
             (del && x->del.target_case == PARKSYNC__V1__DELETE__TARGET_TRADE))
        body = &x->trade.base;
    if (rnd(st, 4))
        upd_unknown(x, &x->u.base, rng_next(st));
    if (rnd(st, 4))
        upd_unknown(x, body, rng_next(st));
    if (del && rnd(st, 4))
        upd_unknown(x, &x->del.base, rng_next(st));
    if ((body == &x->trade.base || body == &x->country.base) && rnd(st, 4))
        upd_unknown(x, &x->period.base, rng_next(st));
    if (body == &x->park.base && x->park.specializations && rnd(st, 4))
        upd_unknown(x, &x->specs.base, rng_next(st));
}

/* One random update on a small key space so that writes overlap. */
void prop_update(upd_t *x, uint64_t *st, const char *producer, uint64_t seq)
{
    upd_init(x, producer, seq, (int64_t)rnd(st, 12), (Parksync__V1__Vintage)rnd(st, 4));
    const char *c = prop_countries[rnd(st, 2)];
    switch (rnd(st, 4)) {
    case 0: {
        Parksync__V1__Park *p = upd_park(x, c, prop_ids[rnd(st, 3)]);
        if (rnd(st, 2))
            park_name(x, prop_names[rnd(st, 4)]);
        if (rnd(st, 2)) {
            p->has_reported_residents = 1;
            p->reported_residents = rnd(st, 30);
        }
        if (rnd(st, 2)) {
            p->has_reported_investment_usd_cents = 1;
            p->reported_investment_usd_cents = (int64_t)rnd(st, 1000) * 100000;
        }
        if (rnd(st, 3) == 0) {
            x->specs.n_values = rnd(st, 3);
            x->specs.values = x->spec_values;
            x->spec_values[0] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
            x->spec_values[1] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_FOOD;
            p->specializations = &x->specs;
        }
        break;
    }
    case 1: {
        Parksync__V1__Resident *r = upd_resident(x, c, prop_ids[rnd(st, 3)], prop_ids[rnd(st, 2)]);
        if (rnd(st, 2)) {
            r->has_investment_usd_cents = 1;
            r->investment_usd_cents = (int64_t)rnd(st, 1000) * 1000;
        }
        if (rnd(st, 2)) {
            r->has_jobs = 1;
            r->jobs = rnd(st, 500);
        }
        break;
    }
    case 2: {
        Parksync__V1__TradeReport *t =
            upd_trade(x, c, prop_countries[c[0] == 'A'], rnd(st, 2) ? EXPORTS : IMPORTS, 2020, 1,
                      rnd(st, 2) ? 10 : 12);
        if (rnd(st, 4)) {
            t->has_value_usd_cents = 1;
            t->value_usd_cents = (int64_t)rnd(st, 100) * 1000001;
        }
        break;
    }
    default: {
        Parksync__V1__CountryReport *cr = upd_country(x, c, 2020, 1, 9);
        if (rnd(st, 2)) {
            cr->has_parks_export_share_bp = 1;
            cr->parks_export_share_bp = rnd(st, 5000);
        }
        break;
    }
    }
    if (rnd(st, 5) == 0)
        upd_make_delete(x);
    prop_unknowns(x, st);
}

int64_t sql_int_at(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t v = -1;
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

void upd_chunk_parks(wire_chunk_t *c, int first, int n, const char *country)
{
    for (int i = first; i < first + n; i++) {
        Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
        Parksync__V1__Park p = PARKSYNC__V1__PARK__INIT;
        char id[16];
        size_t len;
        uint8_t *buf;

        snprintf(id, sizeof(id), "AZ-P%d", i);
        p.park_id = id;
        p.country = (char *)country;
        p.name = "Sumgait Chemical Industrial Park, the park of a long name";
        r.has_revision = 1;
        r.revision = 100 + (uint64_t)i;
        r.body_case = PARKSYNC__V1__RECORD__BODY_PARK;
        r.park = &p;
        buf = wire_pack(&r.base, &len);
        cr_assert_not_null(buf);
        cr_assert_eq(wire_chunk_add(c, buf, len), 0);
        free(buf);
    }
}
