/*
 * test_merge.c - the reconciliation rules of store/merge.c alone, without
 * SQLite: the laws federation relies on, over random records, stamps and
 * updates (partial updates, deletes, equal event times and vintages,
 * both sides of a trade flow, unknown fields).
 *
 * A state is what the store keeps of one record: its stamps and its
 * encoded Record. merge() applies one update to a state exactly as
 * store_apply does (merge_stamps, then merge_record with the stored record
 * when asked for it). The laws:
 * - commutativity: a set of updates applied in any order leaves the same
 *   record bytes and stamps;
 * - grouping (associativity): replicas that each saw part of the updates
 *   (with overlap) and then take in each other's logs, grouped as
 *   (A + B) + C or A + (B + C), end equal to one that saw all of them;
 * - idempotence: applying an update a second time changes nothing;
 * - unknown fields: an update with fields the schema does not know leaves
 *   the same state as the same update without them;
 * - laziness: merge_record gives the same record whether it is handed the
 *   stored record always or only when merge_stamps asks for it.
 *
 * Seeded and reproducible: MERGE_PROP_SEED=N replays; every failure names
 * the seed and the case.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "key.h"
#include "merge.h"
#include "rng.h"
#include "stamp.h"
#include "store.h"

#define CASES     2000 /* random cases per law */
#define MAX_UPD   12   /* updates per case */
#define REC_MAX   2048 /* bytes of an encoded record */
#define PRODUCERS 3    /* producers writing one record */

/* ---------------------------------------------------------------- random */

static uint64_t seed_of_run(void)
{
    const char *env = getenv("MERGE_PROP_SEED");
    uint64_t seed =
        env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    seed = seed ? seed : 1;
    cr_log_info("merge property seed %" PRIu64 " (MERGE_PROP_SEED to replay)", seed);
    return seed;
}

/* ---------------------------------------------------------------- updates */

/* One update and the messages it points at. */
typedef struct upd {
    Parksync__V1__Update u;
    Parksync__V1__Park park;
    Parksync__V1__Resident resident;
    Parksync__V1__TradeReport trade;
    Parksync__V1__CountryReport country;
    Parksync__V1__Delete del;
    Parksync__V1__Period period;
    Parksync__V1__SpecializationList specs;
    Parksync__V1__Specialization spec_values[2];
    ProtobufCMessageUnknownField unknown;
    uint8_t unknown_bytes[4];
    char producer[8];
} upd_t;

static const char *const producers[PRODUCERS] = {"AZ-MOE", "TJ-MINT", "KZ-MOE"};
static const char *const names[3] = {"alpha", "beta", "gamma"};

static void period_set(Parksync__V1__Period *p)
{
    parksync__v1__period__init(p);
    p->has_year = p->has_first_month = p->has_last_month = 1;
    p->year = 2020;
    p->first_month = 1;
    p->last_month = 9;
}

/*
 * A random update of the record of `kind`. Event times and vintages come
 * from small ranges, so that equal times and ties broken by producer and
 * sequence are common; a producer's sequences grow, so two updates never
 * share a whole stamp (the store sees one update per sequence).
 */
static void upd_random(upd_t *x, Parksync__V1__RecordKind kind, uint64_t *st, uint64_t *seqs)
{
    unsigned p = rnd(st, PRODUCERS);

    memset(x, 0, sizeof(*x));
    parksync__v1__update__init(&x->u);
    snprintf(x->producer, sizeof(x->producer), "%s", producers[p]);
    x->u.producer_id = x->producer;
    x->u.has_sequence = x->u.has_event_time_us = 1;
    x->u.sequence = ++seqs[p];
    x->u.event_time_us = rnd(st, 4);
    if (rnd(st, 3)) {
        x->u.has_vintage = 1;
        x->u.vintage = (Parksync__V1__Vintage)rnd(st, 4);
    }
    switch (kind) {
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK:
        parksync__v1__park__init(&x->park);
        x->park.country = "AZ";
        x->park.park_id = "P1";
        if (rnd(st, 2))
            x->park.name = (char *)names[rnd(st, 3)];
        if (rnd(st, 2)) {
            x->park.has_reported_residents = 1;
            x->park.reported_residents = rnd(st, 30);
        }
        if (rnd(st, 2)) {
            x->park.has_reported_investment_usd_cents = 1;
            x->park.reported_investment_usd_cents = (int64_t)rnd(st, 1000) * 100000;
        }
        if (rnd(st, 3) == 0) {
            parksync__v1__specialization_list__init(&x->specs);
            x->spec_values[0] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
            x->spec_values[1] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_FOOD;
            x->specs.n_values = rnd(st, 3);
            x->specs.values = x->spec_values;
            x->park.specializations = &x->specs;
        }
        x->u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
        x->u.park = &x->park;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT:
        parksync__v1__resident__init(&x->resident);
        x->resident.country = "AZ";
        x->resident.park_id = "P1";
        x->resident.resident_id = "R1";
        if (rnd(st, 2)) {
            x->resident.has_investment_usd_cents = 1;
            x->resident.investment_usd_cents = (int64_t)rnd(st, 1000) * 1000;
        }
        if (rnd(st, 2)) {
            x->resident.has_jobs = 1;
            x->resident.jobs = rnd(st, 500);
        }
        if (rnd(st, 3) == 0)
            x->resident.company_name = (char *)names[rnd(st, 3)];
        x->u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
        x->u.resident = &x->resident;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE: {
        /* the flow AZ -> TJ, reported by either side */
        bool exporter = rnd(st, 2);
        parksync__v1__trade_report__init(&x->trade);
        period_set(&x->period);
        x->trade.reporter = exporter ? "AZ" : "TJ";
        x->trade.partner = exporter ? "TJ" : "AZ";
        x->trade.has_direction = 1;
        x->trade.direction = exporter ? PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS
                                      : PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS;
        x->trade.period = &x->period;
        if (rnd(st, 4)) {
            x->trade.has_value_usd_cents = 1;
            x->trade.value_usd_cents = (int64_t)rnd(st, 100) * 1000001;
        }
        x->u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
        x->u.trade = &x->trade;
        break;
    }
    default:
        parksync__v1__country_report__init(&x->country);
        period_set(&x->period);
        x->country.country = "AZ";
        x->country.period = &x->period;
        if (rnd(st, 2)) {
            x->country.has_parks_export_share_bp = 1;
            x->country.parks_export_share_bp = rnd(st, 5000);
        }
        if (rnd(st, 2)) {
            x->country.has_parks_non_oil_production_share_bp = 1;
            x->country.parks_non_oil_production_share_bp = rnd(st, 5000);
        }
        x->u.body_case = PARKSYNC__V1__UPDATE__BODY_COUNTRY;
        x->u.country = &x->country;
        break;
    }
    if (rnd(st, 5) == 0) {
        /* a delete naming the same record */
        parksync__v1__delete__init(&x->del);
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
    /* an unknown field (number 900, length-delimited) on the body or the
     * key's Period, off until upd_unknown switches it on */
    x->unknown.tag = 900;
    x->unknown.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    x->unknown.len = sizeof(x->unknown_bytes);
    x->unknown.data = x->unknown_bytes;
    for (size_t i = 0; i < sizeof(x->unknown_bytes); i++)
        x->unknown_bytes[i] = (uint8_t)rnd(st, 256);
}

/* Switches the update's unknown field on (its body, or its Period). */
static void upd_unknown(upd_t *x, bool on)
{
    ProtobufCMessage *m = x->park.base.descriptor       ? &x->park.base
                          : x->resident.base.descriptor ? &x->resident.base
                          : x->trade.base.descriptor    ? &x->trade.base
                                                        : &x->country.base;
    if (x->period.base.descriptor && (x->unknown_bytes[0] & 1))
        m = &x->period.base;
    m->n_unknown_fields = on ? 1 : 0;
    m->unknown_fields = on ? &x->unknown : NULL;
}

/* ---------------------------------------------------------------- states */

/* What the store keeps of one record. */
typedef struct state {
    stamps_t sp;          /* its stamps */
    uint8_t rec[REC_MAX]; /* its encoded Record (without revision) */
    size_t len;           /* bytes in rec; 0: no record yet */
} state_t;

/* Applies update x to st as store_apply does; `eager` hands the stored
 * record to merge_record whether it asked for it or not. */
static void merge(state_t *st, const upd_t *x, const store_config_t *cfg, bool eager,
                  const char *ctx)
{
    Parksync__V1__RecordKind kind;
    bool is_delete, exporter_side = false;
    rec_key_t key;
    const void *body = update_target(&x->u, &kind, &is_delete);

    cr_assert(body && key_of(&key, kind, body, &exporter_side), "%s: no key", ctx);
    merge_update_t up = {
        .key = &key, .body = body, .is_delete = is_delete, .exporter_side = exporter_side};
    merge_t m = {0};
    merge_out_t out;
    stamp_of_update(&up.stamp, &x->u);
    bool need = merge_stamps(&up, &st->sp, &m);
    Parksync__V1__Record *old = NULL;
    if ((need || eager) && st->len > 0) {
        old = parksync__v1__record__unpack(NULL, st->len, st->rec);
        cr_assert_not_null(old, "%s: stored record does not decode", ctx);
    }
    merge_rules_t rules = {cfg->trade_rule, cfg->trade_threshold_pct, cfg->cif_fob_factor};
    cr_assert_eq(merge_record(&rules, &up, &st->sp, old, &out), 0, "%s: merge_record: %s", ctx,
                 out.why ? out.why : "?");
    size_t n = protobuf_c_message_get_packed_size(&out.rec.base);
    cr_assert_leq(n, sizeof(st->rec), "%s: record of %zu bytes", ctx, n);
    st->len = protobuf_c_message_pack(&out.rec.base, st->rec);
    if (old)
        parksync__v1__record__free_unpacked(old, NULL);
}

/* True when a and b hold the same record bytes and stamps (as encoded). */
static bool state_eq(const state_t *a, const state_t *b, Parksync__V1__RecordKind kind)
{
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots = merge_slots(kind, ids);
    buf_t ea = {0}, eb = {0};
    cr_assert_eq(stamps_encode(&ea, &a->sp, ids, nslots), 0);
    cr_assert_eq(stamps_encode(&eb, &b->sp, ids, nslots), 0);
    bool eq = a->len == b->len && memcmp(a->rec, b->rec, a->len) == 0 && ea.len == eb.len &&
              memcmp(ea.data, eb.data, ea.len) == 0;
    buf_free(&ea);
    buf_free(&eb);
    return eq;
}

static void shuffle(size_t *v, size_t n, uint64_t *st)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd(st, (unsigned)i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static const Parksync__V1__RecordKind kinds[4] = {
    PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT,
    PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY};

/* One random case: a kind, a config, and n updates of its record. */
typedef struct prop_case {
    Parksync__V1__RecordKind kind;
    store_config_t cfg;
    upd_t ups[MAX_UPD];
    size_t n;
    char ctx[96]; /* seed and case, for failure messages */
} prop_case_t;

static void case_random(prop_case_t *c, uint64_t *st, uint64_t seed, int k, size_t *order)
{
    uint64_t seqs[PRODUCERS] = {0};
    c->kind = kinds[rnd(st, 4)];
    store_config_init(&c->cfg);
    c->cfg.trade_rule = (Parksync__V1__TradeRule)(1 + rnd(st, 3));
    c->n = 1 + rnd(st, MAX_UPD);
    for (size_t i = 0; i < c->n; i++) {
        upd_random(&c->ups[i], c->kind, st, seqs);
        order[i] = i;
    }
    snprintf(c->ctx, sizeof(c->ctx), "seed %" PRIu64 " case %d (MERGE_PROP_SEED=%" PRIu64 ")", seed,
             k, seed);
}

/* The state of the case's updates applied in `order`. */
static void run(const prop_case_t *c, const size_t *order, size_t n, state_t *st, bool eager,
                const char *ctx)
{
    memset(st, 0, sizeof(*st));
    for (size_t i = 0; i < n; i++)
        merge(st, &c->ups[order[i]], &c->cfg, eager, ctx);
}

/* ---------------------------------------------------------------- laws */

#define ORDERS 12 /* orders compared per case */

Test(merge, commutative_any_order_same_record_and_stamps)
{
    uint64_t seed = seed_of_run(), st = seed;
    static prop_case_t c;
    size_t order[MAX_UPD], runs = 0;
    state_t first, got;
    const char *ctx = c.ctx;

    for (int k = 0; k < CASES; k++) {
        case_random(&c, &st, seed, k, order);
        run(&c, order, c.n, &first, false, ctx);
        for (int o = 1; o < ORDERS; o++) {
            shuffle(order, c.n, &st);
            run(&c, order, c.n, &got, o % 2 == 0, ctx);
            runs++;
            cr_assert(state_eq(&first, &got, c.kind),
                      "%s: order %d of %zu updates of kind %d gives another record or stamps", ctx,
                      o, c.n, (int)c.kind);
        }
    }
    cr_log_info("commutativity: %d cases, %zu orders compared", CASES, runs);
}

Test(merge, idempotent_a_second_application_changes_nothing)
{
    uint64_t seed = seed_of_run(), st = seed;
    static prop_case_t c;
    size_t order[MAX_UPD], checks = 0;
    state_t s, again;
    const char *ctx = c.ctx;

    for (int k = 0; k < CASES; k++) {
        case_random(&c, &st, seed, k, order);
        shuffle(order, c.n, &st);
        memset(&s, 0, sizeof(s));
        for (size_t i = 0; i < c.n; i++) {
            merge(&s, &c.ups[order[i]], &c.cfg, false, ctx);
            again = s;
            merge(&again, &c.ups[order[i]], &c.cfg, false, ctx);
            checks++;
            cr_assert(state_eq(&s, &again, c.kind),
                      "%s: update %zu applied twice changes the state", ctx, order[i]);
        }
        /* and every update of the set once more, in another order */
        shuffle(order, c.n, &st);
        again = s;
        for (size_t i = 0; i < c.n; i++)
            merge(&again, &c.ups[order[i]], &c.cfg, false, ctx);
        checks++;
        cr_assert(state_eq(&s, &again, c.kind), "%s: the set applied twice changes the state", ctx);
    }
    cr_log_info("idempotence: %d cases, %zu re-applications", CASES, checks);
}

/*
 * Three replicas each see a random part of the updates (every update at
 * least one, some several), in an order of their own; then they exchange
 * what they saw, grouped as (A + B) + C, (B + C) + A, (C + A) + B and
 * A + (B + C), where X + Y is X's state taking in Y's log. Each must equal
 * one replica that saw all.
 */
Test(merge, grouping_of_replicas_does_not_matter)
{
    uint64_t seed = seed_of_run(), st = seed;
    static prop_case_t c;
    size_t log[3][MAX_UPD], nlog[3], all[MAX_UPD], cases = 0;
    const char *ctx = c.ctx;

    for (int k = 0; k < CASES; k++) {
        case_random(&c, &st, seed, k, all);
        memset(nlog, 0, sizeof(nlog));
        for (size_t i = 0; i < c.n; i++) {
            unsigned mask = 1 + rnd(&st, 7); /* a non-empty set of replicas */
            for (int r = 0; r < 3; r++)
                if (mask & (1u << r))
                    log[r][nlog[r]++] = i;
        }
        for (int r = 0; r < 3; r++)
            shuffle(log[r], nlog[r], &st);
        state_t rep[3], whole;
        for (int r = 0; r < 3; r++)
            run(&c, log[r], nlog[r], &rep[r], false, ctx);
        shuffle(all, c.n, &st);
        run(&c, all, c.n, &whole, false, ctx);
        /* (X + Y) + Z for X = A, B, C: X's state takes in Y's log, then Z's */
        for (int x = 0; x < 3; x++) {
            int y = (x + 1) % 3, z = (x + 2) % 3;
            state_t g = rep[x];
            for (size_t i = 0; i < nlog[y]; i++)
                merge(&g, &c.ups[log[y][i]], &c.cfg, false, ctx);
            for (size_t i = 0; i < nlog[z]; i++)
                merge(&g, &c.ups[log[z][i]], &c.cfg, false, ctx);
            cr_assert(state_eq(&g, &whole, c.kind),
                      "%s: (%c + %c) + %c differs from one replica that saw all", ctx, 'A' + x,
                      'A' + y, 'A' + z);
        }
        /* X + (Y + Z): Y's state takes in Z's log, then that state is the
         * one X's log goes into */
        state_t yz = rep[1];
        for (size_t i = 0; i < nlog[2]; i++)
            merge(&yz, &c.ups[log[2][i]], &c.cfg, false, ctx);
        for (size_t i = 0; i < nlog[0]; i++)
            merge(&yz, &c.ups[log[0][i]], &c.cfg, false, ctx);
        cr_assert(state_eq(&yz, &whole, c.kind), "%s: A + (B + C) differs from all", ctx);
        cases++;
    }
    cr_log_info("grouping: %zu cases of three replicas, four groupings each", cases);
}

Test(merge, unknown_fields_leave_the_same_state)
{
    uint64_t seed = seed_of_run(), st = seed;
    static prop_case_t c;
    size_t order[MAX_UPD];
    state_t plain, with;
    const char *ctx = c.ctx;

    for (int k = 0; k < CASES; k++) {
        case_random(&c, &st, seed, k, order);
        shuffle(order, c.n, &st);
        run(&c, order, c.n, &plain, false, ctx);
        for (size_t i = 0; i < c.n; i++)
            upd_unknown(&c.ups[i], rnd(&st, 4) != 0);
        run(&c, order, c.n, &with, false, ctx);
        cr_assert(state_eq(&plain, &with, c.kind), "%s: unknown fields changed the state", ctx);
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, with.len, with.rec);
        cr_assert_not_null(r, "%s", ctx);
        parksync__v1__record__free_unpacked(r, NULL);
    }
    cr_log_info("unknown fields: %d cases", CASES);
}

/* Stamps of equal event time and vintage are ordered by producer, then
 * sequence: the greater producer id wins a field, whichever came first. */
Test(merge, equal_times_break_ties_by_producer_then_sequence)
{
    uint64_t st = 7, seqs[PRODUCERS] = {0};
    store_config_t cfg;
    upd_t a, b;
    state_t ab, ba;

    store_config_init(&cfg);
    do
        upd_random(&a, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT, &st, seqs);
    while (a.u.body_case != PARKSYNC__V1__UPDATE__BODY_RESIDENT);
    b = a;
    b.u.resident = &b.resident;
    b.u.producer_id = "TJ-MINT"; /* > "AZ-MOE" */
    a.u.producer_id = "AZ-MOE";
    a.resident.has_jobs = b.resident.has_jobs = 1;
    a.resident.jobs = 10;
    b.resident.jobs = 20;
    memset(&ab, 0, sizeof(ab));
    memset(&ba, 0, sizeof(ba));
    merge(&ab, &a, &cfg, false, "ab");
    merge(&ab, &b, &cfg, false, "ab");
    merge(&ba, &b, &cfg, false, "ba");
    merge(&ba, &a, &cfg, false, "ba");
    cr_assert(state_eq(&ab, &ba, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT));
    Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, ab.len, ab.rec);
    cr_assert_not_null(r);
    cr_assert_eq(r->resident->jobs, 20);
    parksync__v1__record__free_unpacked(r, NULL);
}
