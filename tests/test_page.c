/*
 * test_page.c - the web page's JSON (daemon/page_json.c) on its own: the
 * summaries' figures by their proto names, discrepancies flagged by the
 * store's rule, lists cut with their totals, countries left out rather
 * than the page passing its size.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "page_int.h"

static const page_trade_t rules = {.threshold_pct = 10.0, .cif_fob_factor = 1.0};

/* AZ's figures of the examples: exports 1.72 M (AZ) vs 1.80 M (TJ). */
static void az(Parksync__V1__CountrySummary *cs, Parksync__V1__PartnerTurnover *t,
               Parksync__V1__PartnerTurnover **tp, Parksync__V1__Period *per)
{
    parksync__v1__country_summary__init(cs);
    parksync__v1__partner_turnover__init(t);
    parksync__v1__period__init(per);
    per->has_year = per->has_first_month = per->has_last_month = 1;
    per->year = 2020;
    per->first_month = 1;
    per->last_month = 10;
    cs->country = "AZ";
    cs->has_parks = 1;
    cs->parks = 5;
    cs->has_reported_investment_usd_cents = 1;
    cs->reported_investment_usd_cents = 380000000000;
    t->partner = "TJ";
    t->period = per;
    t->has_exports_reported_by_country_usd_cents = 1;
    t->exports_reported_by_country_usd_cents = 172000000;
    t->has_exports_reported_by_partner_usd_cents = 1;
    t->exports_reported_by_partner_usd_cents = 180000000;
    t->has_imports_reported_by_country_usd_cents = 1;
    t->imports_reported_by_country_usd_cents = 100000000; /* TJ said 115: 13 % apart */
    t->has_imports_reported_by_partner_usd_cents = 1;
    t->imports_reported_by_partner_usd_cents = 115000000;
    tp[0] = t;
    cs->n_turnover = 1;
    cs->turnover = tp;
}

static json_t *render(Parksync__V1__CountrySummary **items, size_t n, size_t max)
{
    size_t len = 0;
    char *text = page_json_render(&rules, items, n, 42, max, &len);
    json_error_t e;
    json_t *j;

    cr_assert_not_null(text);
    cr_assert_eq(strlen(text), len);
    cr_assert_null(strchr(text, '\n'), "an event's data line must hold no newline");
    j = json_loads(text, 0, &e);
    cr_assert_not_null(j, "%s: %s", e.text, text);
    free(text);
    return j;
}

Test(page, figures_and_flags_as_the_store_reckons_them)
{
    Parksync__V1__CountrySummary cs, *items[1] = {&cs};
    Parksync__V1__PartnerTurnover t, *tp[1];
    Parksync__V1__Period per;
    json_t *j, *c, *tr;

    az(&cs, &t, tp, &per);
    j = render(items, 1, PAGE_JSON_MAX);
    cr_assert_eq(json_integer_value(json_object_get(j, "revision")), 42);
    cr_assert(json_is_false(json_object_get(j, "truncated")));
    c = json_array_get(json_object_get(j, "countries"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(c, "country")), "AZ");
    cr_assert_eq(json_integer_value(json_object_get(c, "reported_investment_usd_cents")),
                 380000000000);
    cr_assert(json_is_null(json_object_get(c, "known_residents")), "absent is null, not 0");
    tr = json_array_get(json_object_get(c, "turnover"), 0);
    /* exports: AZ exports (exporter), TJ imports (importer): 4.44 %, not flagged */
    json_t *x = json_object_get(tr, "exports");
    cr_assert_eq(json_integer_value(json_object_get(x, "exporter")), 172000000);
    cr_assert_eq(json_integer_value(json_object_get(x, "importer")), 180000000);
    cr_assert_float_eq(json_real_value(json_object_get(x, "discrepancy_pct")), 4.4444, 1e-3);
    cr_assert(json_is_false(json_object_get(x, "flagged")));
    /* imports: TJ exports 115, AZ imports 100: 13.04 % of the larger, flagged */
    json_t *m = json_object_get(tr, "imports");
    cr_assert_eq(json_integer_value(json_object_get(m, "exporter")), 115000000);
    cr_assert_eq(json_integer_value(json_object_get(m, "importer")), 100000000);
    cr_assert_float_eq(json_real_value(json_object_get(m, "discrepancy_pct")), 13.0435, 1e-3);
    cr_assert(json_is_true(json_object_get(m, "flagged")));
    json_decref(j);
}

Test(page, long_lists_are_cut_and_counted)
{
    Parksync__V1__CountrySummary cs, *items[1] = {&cs};
    Parksync__V1__PartnerTurnover t, *tp[1];
    Parksync__V1__Period per;
    Parksync__V1__ParkCheck checks[PAGE_MAX_MISMATCHES + 7], *cp[PAGE_MAX_MISMATCHES + 7];
    json_t *j, *c;

    az(&cs, &t, tp, &per);
    for (size_t i = 0; i < PAGE_MAX_MISMATCHES + 7; i++) {
        parksync__v1__park_check__init(&checks[i]);
        checks[i].park_id = "AZ-X";
        cp[i] = &checks[i];
    }
    cs.n_mismatches = PAGE_MAX_MISMATCHES + 7;
    cs.mismatches = cp;
    j = render(items, 1, PAGE_JSON_MAX);
    c = json_array_get(json_object_get(j, "countries"), 0);
    cr_assert_eq(json_array_size(json_object_get(c, "mismatches")), PAGE_MAX_MISMATCHES);
    cr_assert_eq(json_integer_value(json_object_get(c, "mismatches_total")),
                 PAGE_MAX_MISMATCHES + 7);
    json_decref(j);
}

Test(page, countries_beyond_the_size_are_left_out_and_said)
{
    Parksync__V1__CountrySummary a, b, *items[2] = {&a, &b};
    Parksync__V1__PartnerTurnover ta, tb, *tpa[1], *tpb[1];
    Parksync__V1__Period pa, pb;
    json_t *j;

    az(&a, &ta, tpa, &pa);
    az(&b, &tb, tpb, &pb);
    b.country = "TJ";
    j = render(items, 2, 900); /* room for one country, not two */
    cr_assert_eq(json_array_size(json_object_get(j, "countries")), 1);
    cr_assert(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
}
