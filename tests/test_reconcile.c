/*
 * test_reconcile.c - the reconciliation rules one by one (authority,
 * future skew, last-writer-wins ties, tombstones, mirror trade rules,
 * cross-checks, vintages, provenance, the conflicts table), and an
 * integration test: two ministries configured, a non-owner pushes through
 * the CLI, `parksync conflicts` lists it and the record is unchanged.
 *
 * Property tests of order independence live in test_store.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "store.h"

#define K_PARK      PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK            /* shorthand */
#define K_TRADE     PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE           /* shorthand */
#define K_SUMMARY   PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY         /* shorthand */
#define EXPORTS     PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS /* shorthand */
#define IMPORTS     PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS /* shorthand */
#define FINAL       PARKSYNC__V1__VINTAGE__VINTAGE_FINAL                   /* shorthand */
#define PROVISIONAL PARKSYNC__V1__VINTAGE__VINTAGE_PROVISIONAL             /* shorthand */
#define NOW_US      1700000000000000LL /* the fixed clock of these tests */

/* ---------------------------------------------------------------- fixture */

static char dir[64];    /* this test's temporary directory */
static char dbpath[96]; /* the database in it */

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_reconcile.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dbpath, sizeof(dbpath), "%s/store.db", dir);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(reconcile, .init = setup, .fini = teardown);

static int64_t fixed_now(void)
{
    return NOW_US;
}

static store_t *open_cfg(store_config_t *cfg)
{
    char err[256];
    cfg->path = dbpath;
    cfg->synchronous_full = false;
    cfg->now_us = fixed_now;
    store_t *s = store_open(cfg, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    return s;
}

static store_t *open_default(void)
{
    store_config_t cfg;
    store_config_init(&cfg);
    return open_cfg(&cfg);
}

/* AZ-MOE speaks for AZ (producers AZ-MOE, AZ-MOE-2), TJ-MINT for TJ. */
static void two_ministries(store_t *s, bool tj_grant_park_az)
{
    store_ministry_t m[2] = {{.name = "AZ-MOE", .country = "AZ"},
                             {.name = "TJ-MINT", .country = "TJ"}};
    store_member_t mem[3] = {{"AZ-MOE", 0}, {"AZ-MOE-2", 0}, {"TJ-MINT", 1}};
    if (tj_grant_park_az) {
        m[1].grants[0] = (store_grant_t){K_PARK, "AZ"};
        m[1].n_grants = 1;
    }
    store_authority_t a = {m, 2, mem, 3};
    cr_assert_eq(store_set_authority(s, &a), 0);
    cr_assert(store_authority_on(s));
}

/* ---------------------------------------------------------------- updates */

typedef struct upd {
    Parksync__V1__Update u;          /* the update */
    Parksync__V1__Park park;         /* park body */
    Parksync__V1__Resident resident; /* resident body */
    Parksync__V1__TradeReport trade; /* trade body */
    Parksync__V1__Delete del;        /* delete body */
    Parksync__V1__Period period;     /* trade period */
} upd_t;

static void upd_init(upd_t *x, const char *producer, uint64_t seq, int64_t t)
{
    memset(x, 0, sizeof(*x));
    parksync__v1__update__init(&x->u);
    parksync__v1__park__init(&x->park);
    parksync__v1__resident__init(&x->resident);
    parksync__v1__trade_report__init(&x->trade);
    parksync__v1__delete__init(&x->del);
    parksync__v1__period__init(&x->period);
    x->u.has_version = x->u.has_sequence = x->u.has_event_time_us = 1;
    x->u.version = WIRE_VERSION;
    x->u.producer_id = (char *)producer;
    x->u.sequence = seq;
    x->u.event_time_us = t;
}

static void park(upd_t *x, const char *country, const char *id, const char *name, int residents,
                 int64_t investment)
{
    x->park.country = (char *)country;
    x->park.park_id = (char *)id;
    x->park.name = (char *)name;
    if (residents >= 0) {
        x->park.has_reported_residents = 1;
        x->park.reported_residents = (uint32_t)residents;
    }
    if (investment >= 0) {
        x->park.has_reported_investment_usd_cents = 1;
        x->park.reported_investment_usd_cents = investment;
    }
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    x->u.park = &x->park;
}

static void trade(upd_t *x, const char *reporter, const char *partner,
                  Parksync__V1__TradeDirection d, int64_t cents)
{
    x->period.has_year = x->period.has_first_month = x->period.has_last_month = 1;
    x->period.year = 2020;
    x->period.first_month = 1;
    x->period.last_month = 10;
    x->trade.reporter = (char *)reporter;
    x->trade.partner = (char *)partner;
    x->trade.has_direction = 1;
    x->trade.direction = d;
    x->trade.period = &x->period;
    x->trade.has_value_usd_cents = 1;
    x->trade.value_usd_cents = cents;
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
    x->u.trade = &x->trade;
}

static store_outcome_t apply(store_t *s, upd_t *x)
{
    store_outcome_t o;
    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_apply(s, &x->u, &o), 0, "%s", store_errmsg(s));
    cr_assert_geq(store_refresh_summaries(s), 0);
    cr_assert_eq(store_commit(s), 0);
    return o;
}

/* The one live record of a kind (and country), unpacked; NULL when none. */
static Parksync__V1__Record *only(store_t *s, Parksync__V1__RecordKind kind, const char *country,
                                  bool provenance)
{
    store_filter_t f = {.kind = kind, .provenance = provenance};
    const uint8_t *rec;
    size_t len;
    int err;
    if (country)
        memcpy(f.country, country, 3);
    store_cursor_t *c = store_snapshot_open(s, &f, &err);
    cr_assert_not_null(c, "cursor: %d", err);
    Parksync__V1__Record *r = NULL;
    if (store_cursor_next(c, &rec, &len) == 1)
        r = parksync__v1__record__unpack(NULL, len, rec);
    store_cursor_close(&c);
    return r;
}

/* Collects conflict rows. */
typedef struct rows {
    char reason[8][160];  /* reasons */
    char producer[8][65]; /* producers */
    bool claim[8];        /* claim kept */
    uint64_t id[8];       /* ids */
    size_t n;             /* rows */
} rows_t;

static int collect(void *arg, const store_conflict_t *c)
{
    rows_t *r = arg;
    if (r->n < 8) {
        snprintf(r->reason[r->n], sizeof(r->reason[0]), "%s", c->reason);
        snprintf(r->producer[r->n], sizeof(r->producer[0]), "%s", c->producer_id);
        r->claim[r->n] = c->claim_kept;
        r->id[r->n] = c->id;
    }
    r->n++;
    return 0;
}

static rows_t conflicts(store_t *s, const store_conflict_filter_t *f)
{
    rows_t r = {0};
    cr_assert_eq(store_conflicts(s, f, collect, &r), 0);
    return r;
}

/* ---------------------------------------------------------------- authority */

Test(reconcile, owner_applies_non_owner_is_kept_as_claim_and_record_unchanged)
{
    store_t *s = open_default();
    upd_t x;
    two_ministries(s, false);

    upd_init(&x, "AZ-MOE-2", 1, 100); /* a second producer of AZ-MOE */
    park(&x, "AZ", "AZ-SUMGAIT-CHEM", "Sumgait", 22, -1);
    cr_assert_eq(apply(s, &x), STORE_APPLIED);
    uint64_t head = store_head(s);

    upd_init(&x, "TJ-MINT", 1, 200); /* newer, but TJ-MINT does not own AZ's parks */
    park(&x, "AZ", "AZ-SUMGAIT-CHEM", "Renamed by TJ", 99, -1);
    cr_assert_eq(apply(s, &x), STORE_REJECTED);
    cr_assert_eq(store_producer_last(s, "TJ-MINT"), 1, "the sequence is consumed");
    cr_assert_eq(store_head(s), head, "nothing changed");

    Parksync__V1__Record *r = only(s, K_PARK, "AZ", false);
    cr_assert_not_null(r);
    cr_assert_str_eq(r->park->name, "Sumgait");
    cr_assert_eq(r->park->reported_residents, 22);
    parksync__v1__record__free_unpacked(r, NULL);

    rows_t c = conflicts(s, NULL);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.reason[0], "not authoritative: TJ-MINT does not own park AZ");
    cr_assert_str_eq(c.producer[0], "TJ-MINT");
    cr_assert(c.claim[0]);
    store_close(&s);
}

/* A producer no ministry lists costs nothing durable: its updates are
 * not admitted, not kept as claims, and its sequence is not consumed, so
 * that once a reload lists it they apply from its first. */
Test(reconcile, grant_gives_a_right_and_unknown_producer_is_not_admitted)
{
    store_t *s = open_default();
    upd_t x;
    two_ministries(s, true);

    upd_init(&x, "TJ-MINT", 1, 100);
    park(&x, "AZ", "AZ-PARK", "Granted", -1, -1);
    cr_assert_eq(apply(s, &x), STORE_APPLIED, "grants = park:AZ");

    upd_init(&x, "OBSERVER", 1, 100);
    park(&x, "AZ", "AZ-PARK", "Nobody's", -1, -1);
    cr_assert_eq(apply(s, &x), STORE_UNADMITTED);
    upd_init(&x, "OBSERVER", 2, 100);
    park(&x, "AZ", "AZ-PARK", "Nobody's", -1, -1);
    cr_assert_eq(apply(s, &x), STORE_UNADMITTED);
    rows_t c = conflicts(s, NULL);
    cr_assert_eq(c.n, 0, "no conflict row");
    store_producer_stats_t ps;
    cr_assert_eq(store_producer_stats(s, "OBSERVER", &ps), -ENOENT, "no producer row");

    /* authentication names the ministry: it replaces the producer lookup,
     * and the producer starts from its first update */
    store_outcome_t o;
    upd_init(&x, "OBSERVER", 1, 100);
    park(&x, "AZ", "AZ-PARK", "Via AZ-MOE", -1, -1);
    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_apply_as(s, "AZ-MOE", &x.u, &o), 0);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(o, STORE_APPLIED);
    store_close(&s);
}

Test(reconcile, each_ministry_owns_its_own_side_of_trade)
{
    store_t *s = open_default();
    upd_t x;
    two_ministries(s, false);

    upd_init(&x, "TJ-MINT", 1, 100);
    trade(&x, "TJ", "AZ", IMPORTS, 1000); /* TJ's imports from AZ: its side of AZ->TJ */
    cr_assert_eq(apply(s, &x), STORE_APPLIED);
    upd_init(&x, "TJ-MINT", 2, 100);
    trade(&x, "AZ", "TJ", EXPORTS, 1000); /* AZ's exports: AZ's side */
    cr_assert_eq(apply(s, &x), STORE_REJECTED);
    rows_t c = conflicts(s, &(store_conflict_filter_t){.kind = K_TRADE, .country = "TJ"});
    cr_assert_eq(c.n, 1, "the refused report is about AZ and TJ");
    cr_assert_str_eq(c.reason[0], "not authoritative: TJ-MINT does not own trade AZ");
    store_close(&s);
}

/* Turns x (a trade report) into the delete of that report. */
static void as_delete(upd_t *x)
{
    x->trade.has_value_usd_cents = 0;
    x->del.target_case = PARKSYNC__V1__DELETE__TARGET_TRADE;
    x->del.trade = &x->trade;
    x->u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    x->u.delete_ = &x->del;
}

/* A ministry that withdraws its report of a flow withdraws its own figure,
 * not its partner's, in whichever order the updates arrive; the flow is
 * gone once both figures are. */
Test(reconcile, deleting_a_trade_report_withdraws_only_that_side)
{
    uint8_t digest[2][32];

    for (int order = 0; order < 2; order++) {
        unlink(dbpath);
        store_t *s = open_default();
        upd_t az, tj, del;
        two_ministries(s, false);
        upd_init(&az, "AZ-MOE", 1, 100);
        trade(&az, "AZ", "TJ", EXPORTS, 1720000);
        upd_init(&tj, "TJ-MINT", 1, 100);
        trade(&tj, "TJ", "AZ", IMPORTS, 1800000);
        upd_init(&del, "TJ-MINT", 2, 200);
        trade(&del, "TJ", "AZ", IMPORTS, 0);
        as_delete(&del);
        upd_t *seq[3] = {&az, &tj, &del};
        if (order == 1) { /* the delete overtakes the AZ report it does not touch */
            seq[0] = &tj;
            seq[1] = &del;
            seq[2] = &az;
        }
        for (int i = 0; i < 3; i++)
            cr_assert_eq(apply(s, seq[i]), STORE_APPLIED, "order %d, update %d", order, i);

        Parksync__V1__Record *r = only(s, K_TRADE, NULL, false);
        cr_assert_not_null(r, "order %d: the flow is gone with AZ's figure in it", order);
        cr_assert_not(r->deleted);
        cr_assert(r->trade->has_exporter_reported_usd_cents);
        cr_assert_eq(r->trade->exporter_reported_usd_cents, 1720000);
        cr_assert_not(r->trade->has_importer_reported_usd_cents, "TJ's figure is withdrawn");
        cr_assert_eq(r->trade->value_usd_cents, 1720000, "the exporter's figure is all there is");
        parksync__v1__record__free_unpacked(r, NULL);
        cr_assert_eq(store_begin(s), 0);
        cr_assert_eq(store_digest(s, digest[order]), 0);
        cr_assert_eq(store_commit(s), 0);

        upd_init(&del, "AZ-MOE", 2, 300);
        trade(&del, "AZ", "TJ", EXPORTS, 0);
        as_delete(&del);
        cr_assert_eq(apply(s, &del), STORE_APPLIED);
        cr_assert_null(only(s, K_TRADE, NULL, false), "both figures withdrawn: no flow");
        store_close(&s);
    }
    cr_assert_eq(memcmp(digest[0], digest[1], 32), 0, "the order changed the state");
}

Test(reconcile, no_ministry_means_open_authority)
{
    store_t *s = open_default();
    upd_t x;
    cr_assert_not(store_authority_on(s));
    upd_init(&x, "ANYONE", 1, 100);
    park(&x, "AZ", "AZ-PARK", "Open", -1, -1);
    cr_assert_eq(apply(s, &x), STORE_APPLIED);
    store_close(&s);
}

/* ---------------------------------------------------------------- future skew */

Test(reconcile, event_time_too_far_in_the_future_is_refused)
{
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.max_future_skew_us = 60 * 1000000LL;
    store_t *s = open_cfg(&cfg);
    upd_t x;

    upd_init(&x, "AZ-MOE", 1, NOW_US + 61 * 1000000LL);
    park(&x, "AZ", "AZ-PARK", "Tomorrow", -1, -1);
    cr_assert_eq(apply(s, &x), STORE_REJECTED);
    upd_init(&x, "AZ-MOE", 2, NOW_US + 59 * 1000000LL);
    park(&x, "AZ", "AZ-PARK", "Soon", -1, -1);
    cr_assert_eq(apply(s, &x), STORE_APPLIED);
    rows_t c = conflicts(s, NULL);
    cr_assert_eq(c.n, 1);
    cr_assert(strstr(c.reason[0], "event time 61 s in the future") != NULL, "%s", c.reason[0]);
    Parksync__V1__Record *r = only(s, K_PARK, NULL, false);
    cr_assert_str_eq(r->park->name, "Soon");
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
}

/* ---------------------------------------------------------------- merge rules */

static const char *name_after(const char *p1, uint64_t q1, int64_t t1, const char *p2, uint64_t q2,
                              int64_t t2, char *buf, size_t size)
{
    store_t *s = open_default();
    upd_t x;
    upd_init(&x, p1, q1, t1);
    park(&x, "AZ", "AZ-PARK", p1, -1, -1);
    apply(s, &x);
    upd_init(&x, p2, q2, t2);
    park(&x, "AZ", "AZ-PARK", p2, -1, -1);
    apply(s, &x);
    Parksync__V1__Record *r = only(s, K_PARK, NULL, false);
    snprintf(buf, size, "%s", r->park->name);
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
    unlink(dbpath);
    return buf;
}

Test(reconcile, equal_event_times_are_broken_by_producer_then_sequence)
{
    char a[32], b[32];
    cr_assert_str_eq(name_after("AZ-A", 5, 100, "AZ-B", 1, 100, a, sizeof a), "AZ-B");
    cr_assert_str_eq(name_after("AZ-B", 1, 100, "AZ-A", 5, 100, b, sizeof b), "AZ-B");
    cr_assert_str_eq(name_after("AZ-B", 1, 200, "AZ-A", 5, 100, b, sizeof b), "AZ-B", "time first");
}

Test(reconcile, delete_tombstone_refuses_older_upsert_with_a_stale_conflict)
{
    store_t *s = open_default();
    upd_t x;
    upd_init(&x, "AZ-MOE", 1, 100);
    park(&x, "AZ", "AZ-PARK", "Old", -1, -1);
    apply(s, &x);
    upd_init(&x, "AZ-MOE", 2, 300);
    x.park.country = "AZ";
    x.park.park_id = "AZ-PARK";
    x.del.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
    x.del.park = &x.park;
    x.u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    x.u.delete_ = &x.del;
    apply(s, &x);
    upd_init(&x, "AZ-MOE-2", 1, 200); /* older than the delete, arriving later */
    park(&x, "AZ", "AZ-PARK", "Late", -1, -1);
    apply(s, &x);
    cr_assert_null(only(s, K_PARK, NULL, false), "no resurrection");
    rows_t c = conflicts(s, NULL);
    cr_assert_eq(c.n, 1);
    cr_assert_str_eq(c.reason[0], "stale: older than delete");
    store_close(&s);
}

Test(reconcile, final_is_not_replaced_by_a_later_provisional)
{
    store_t *s = open_default();
    upd_t x;
    upd_init(&x, "AZ-MOE", 1, 100);
    x.u.has_vintage = 1;
    x.u.vintage = FINAL;
    park(&x, "AZ", "AZ-PARK", "Final", -1, -1);
    apply(s, &x);
    upd_init(&x, "AZ-MOE", 2, 900);
    x.u.has_vintage = 1;
    x.u.vintage = PROVISIONAL;
    park(&x, "AZ", "AZ-PARK", "Provisional", -1, -1);
    apply(s, &x);
    Parksync__V1__Record *r = only(s, K_PARK, NULL, false);
    cr_assert_str_eq(r->park->name, "Final");
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
}

Test(reconcile, snapshot_with_provenance_names_producer_and_update_per_field)
{
    store_t *s = open_default();
    upd_t x;
    upd_init(&x, "AZ-MOE", 1, 100);
    park(&x, "AZ", "AZ-PARK", "First", 5, -1);
    apply(s, &x);
    upd_init(&x, "AZ-MOE-2", 1, 200); /* partial: the name only */
    x.park.country = "AZ";
    x.park.park_id = "AZ-PARK";
    x.park.name = "Second";
    x.u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    x.u.park = &x.park;
    cr_assert_eq(apply(s, &x), STORE_APPLIED);

    Parksync__V1__Record *plain = only(s, K_PARK, NULL, false);
    cr_assert_eq(plain->n_provenance, 0, "only when asked");
    cr_assert_eq(plain->park->reported_residents, 5, "a partial update keeps other fields");
    parksync__v1__record__free_unpacked(plain, NULL);
    Parksync__V1__Record *r = only(s, K_PARK, NULL, true);
    cr_assert_eq(r->n_provenance, 2);
    cr_assert_str_eq(r->provenance[0]->field, "name");
    cr_assert_str_eq(r->provenance[0]->producer_id, "AZ-MOE-2");
    cr_assert_eq(r->provenance[0]->sequence, 1);
    cr_assert_eq(r->provenance[0]->event_time_us, 200);
    cr_assert_str_eq(r->provenance[1]->field, "reported_residents");
    cr_assert_str_eq(r->provenance[1]->producer_id, "AZ-MOE");
    cr_assert_eq(r->provenance[1]->vintage, PROVISIONAL);
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
}

/* ---------------------------------------------------------------- trade */

static Parksync__V1__Record *flow(Parksync__V1__TradeRule rule, double factor, double threshold,
                                  int64_t exp, int64_t imp)
{
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.trade_rule = rule;
    cfg.cif_fob_factor = factor;
    cfg.trade_threshold_pct = threshold;
    unlink(dbpath);
    store_t *s = open_cfg(&cfg);
    upd_t x;
    upd_init(&x, "AZ-MOE", 1, 100);
    trade(&x, "AZ", "TJ", EXPORTS, exp);
    apply(s, &x);
    upd_init(&x, "TJ-MINT", 1, 100);
    trade(&x, "TJ", "AZ", IMPORTS, imp);
    apply(s, &x);
    Parksync__V1__Record *r = only(s, K_TRADE, NULL, false);
    store_close(&s);
    return r;
}

Test(reconcile, mirror_reports_differing_by_12_percent_are_flagged_at_10)
{
    Parksync__V1__Record *r =
        flow(PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST, 1.0, 10.0, 10000000, 8800000);
    Parksync__V1__TradeFlow *f = r->trade;
    cr_assert_eq(f->exporter_reported_usd_cents, 10000000);
    cr_assert_eq(f->importer_reported_usd_cents, 8800000);
    cr_assert_eq(f->value_usd_cents, 8800000, "importer first");
    cr_assert_eq(f->discrepancy_usd_cents, -1200000);
    cr_assert_float_eq(f->discrepancy_pct, 12.0, 1e-9);
    cr_assert(f->flagged);
    parksync__v1__record__free_unpacked(r, NULL);
    r = flow(PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST, 1.0, 15.0, 10000000, 8800000);
    cr_assert_not(r->trade->flagged, "not above a 15 %% threshold");
    parksync__v1__record__free_unpacked(r, NULL);
}

Test(reconcile, rules_exporter_first_mean_and_cif_fob_factor)
{
    Parksync__V1__Record *r =
        flow(PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST, 1.0, 10.0, 1000, 1100);
    cr_assert_eq(r->trade->value_usd_cents, 1000);
    cr_assert_eq(r->trade->rule, PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST);
    parksync__v1__record__free_unpacked(r, NULL);
    r = flow(PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN, 1.0, 10.0, 1000, 1101);
    cr_assert_eq(r->trade->value_usd_cents, 1051, "mean, half away from zero");
    parksync__v1__record__free_unpacked(r, NULL);
    /* CIF imports = FOB exports * 1.1: no discrepancy left */
    r = flow(PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST, 1.1, 5.0, 1000, 1100);
    cr_assert_eq(r->trade->discrepancy_usd_cents, 0);
    cr_assert_not(r->trade->flagged);
    parksync__v1__record__free_unpacked(r, NULL);
}

/* ---------------------------------------------------------------- cross-checks */

Test(reconcile, summary_flags_parks_whose_reports_disagree_with_residents)
{
    store_t *s = open_default();
    upd_t x;
    upd_init(&x, "AZ-MOE", 1, 100);
    park(&x, "AZ", "AZ-PARK", "Park", 3, 5000);
    apply(s, &x);
    for (int i = 0; i < 2; i++) {
        char id[8];
        snprintf(id, sizeof id, "R%d", i);
        upd_init(&x, "AZ-MOE", 2 + (uint64_t)i, 100);
        x.resident.country = "AZ";
        x.resident.park_id = "AZ-PARK";
        x.resident.resident_id = id;
        x.resident.has_investment_usd_cents = 1;
        x.resident.investment_usd_cents = 1000;
        x.u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
        x.u.resident = &x.resident;
        apply(s, &x);
    }
    Parksync__V1__Record *r = only(s, K_SUMMARY, "AZ", false);
    cr_assert_not_null(r);
    cr_assert_eq(r->summary->n_mismatches, 1);
    Parksync__V1__ParkCheck *c = r->summary->mismatches[0];
    cr_assert_eq(c->reported_residents, 3);
    cr_assert_eq(c->known_residents, 2);
    cr_assert_eq(c->reported_investment_usd_cents, 5000);
    cr_assert_eq(c->known_investment_usd_cents, 2000);
    parksync__v1__record__free_unpacked(r, NULL);
    store_close(&s);
}

/* ---------------------------------------------------------------- conflicts table */

Test(reconcile, conflicts_filter_by_kind_country_since_and_page)
{
    store_t *s = open_default();
    upd_t x;
    two_ministries(s, false);
    for (uint64_t i = 1; i <= 3; i++) {
        upd_init(&x, "TJ-MINT", i, 100);
        park(&x, "AZ", "AZ-PARK", "X", -1, -1);
        apply(s, &x);
    }
    upd_init(&x, "TJ-MINT", 4, 100);
    trade(&x, "AZ", "TJ", EXPORTS, 5);
    apply(s, &x);
    cr_assert_eq(conflicts(s, NULL).n, 4);
    cr_assert_eq(conflicts(s, &(store_conflict_filter_t){.kind = K_PARK}).n, 3);
    cr_assert_eq(conflicts(s, &(store_conflict_filter_t){.country = "TJ"}).n, 1);
    cr_assert_eq(conflicts(s, &(store_conflict_filter_t){.since_us = NOW_US + 1}).n, 0);
    rows_t page = conflicts(s, &(store_conflict_filter_t){.limit = 2});
    cr_assert_eq(page.n, 2);
    cr_assert_eq(conflicts(s, &(store_conflict_filter_t){.after_id = page.id[1]}).n, 2);
    store_close(&s);
}

/* ---------------------------------------------------------------- integration */

static bool has_line_with(const char *text, const char *a, const char *b)
{
    for (const char *p = text; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), p);
        if (strstr(line, a) && strstr(line, b))
            return true;
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

Test(reconcile_e2e, non_owner_push_shows_in_conflicts_and_leaves_the_record)
{
    harness_t h;
    char path[HARNESS_PATH + 16];
    char *out = NULL, *err = NULL;
    FILE *f;

    cr_assert_eq(harness_init(&h, "[ministry AZ-MOE]\ncountry = AZ\nproducers = AZ-MOE\n\n"
                                  "[ministry TJ-MINT]\ncountry = TJ\n"),
                 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; see %s", h.log);

    snprintf(path, sizeof path, "%s/az.jsonl", h.dir);
    cr_assert_not_null(f = fopen(path, "w"));
    fprintf(f, "{\"event_time\": \"2020-12-23T09:00:00Z\", \"park\": {\"park_id\": "
               "\"AZ-SUMGAIT-CHEM\", \"country\": \"AZ\", \"name\": \"Sumgait\"}}\n");
    fclose(f);
    const char *az[] = {"push", "--producer", "AZ-MOE", path, NULL};
    cr_assert_eq(harness_cli(&h, az, NULL, NULL, &err), 0, "%s", err);
    free(err);

    snprintf(path, sizeof path, "%s/tj.jsonl", h.dir);
    cr_assert_not_null(f = fopen(path, "w"));
    fprintf(f, "{\"event_time\": \"2020-12-24T09:00:00Z\", \"park\": {\"park_id\": "
               "\"AZ-SUMGAIT-CHEM\", \"country\": \"AZ\", \"name\": \"Renamed by TJ\"}}\n");
    fclose(f);
    const char *tj[] = {"push", "--producer", "TJ-MINT", path, NULL};
    cr_assert_eq(harness_cli(&h, tj, NULL, NULL, &err), 0, "acked although refused: %s", err);
    free(err);

    const char *list[] = {"conflicts", "--kind", "park", "--country", "AZ", NULL};
    cr_assert_eq(harness_cli(&h, list, NULL, &out, &err), 0, "%s", err);
    cr_assert(has_line_with(out, "\"producer_id\":\"TJ-MINT\"",
                            "\"reason\":\"not authoritative: TJ-MINT does not own park AZ\""),
              "%s", out);
    cr_assert(strstr(out, "\"claim_kept\":true") != NULL, "%s", out);
    free(out);
    free(err);

    const char *none[] = {"conflicts", "--kind", "trade", NULL};
    cr_assert_eq(harness_cli(&h, none, NULL, &out, &err), 0, "%s", err);
    cr_assert_str_eq(out, "");
    free(out);
    free(err);

    const char *snap[] = {"snapshot", "--kind", "park", "--provenance", NULL};
    cr_assert_eq(harness_cli(&h, snap, NULL, &out, &err), 0, "%s", err);
    cr_assert(strstr(out, "\"name\":\"Sumgait\"") != NULL, "record changed: %s", out);
    cr_assert(strstr(out, "Renamed") == NULL, "%s", out);
    cr_assert(strstr(out, "\"provenance\"") != NULL && strstr(out, "\"AZ-MOE\"") != NULL, "%s",
              out);
    free(out);
    free(err);

    char *log = harness_slurp(h.log);
    cr_assert(log && strstr(log, "authority: 2 ministries") != NULL, "%s", log);
    free(log);
    cr_assert_eq(harness_stop(&h), 0);
    harness_cleanup(&h);
}
