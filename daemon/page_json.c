/*
 * page_json.c - the country summaries as the JSON the page reads
 * (page_int.h): the fields of CountrySummary by their proto names, money
 * in US cents as JSON integers, absent figures as null, and for each
 * direction of trade with both mirror figures their discrepancy and
 * whether it is flagged, by the rule the store flags trade flows with
 * ([trade] threshold_pct and cif_fob_factor).
 *
 * Lists are cut at PAGE_MAX_* entries (the JSON gives each list's whole
 * count) and countries that would pass `max` bytes are left out, so the
 * page's memory has a bound whatever the ministries send.
 */
#include "page_int.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static json_t *opt_int(protobuf_c_boolean has, int64_t v)
{
    return has ? json_integer((json_int_t)v) : json_null();
}

static json_t *opt_uint(protobuf_c_boolean has, uint64_t v)
{
    return has ? json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v) : json_null();
}

static json_t *period(const Parksync__V1__Period *p)
{
    if (!p)
        return json_null();
    return json_pack("{s:o,s:o,s:o}", "year", opt_uint(p->has_year, p->year), "first_month",
                     opt_uint(p->has_first_month, p->first_month), "last_month",
                     opt_uint(p->has_last_month, p->last_month));
}

/* One direction's mirror figures: the importer's (CIF) figure minus the
 * exporter's (FOB) times the factor, as a share of the larger. */
static json_t *direction(const page_trade_t *rules, protobuf_c_boolean has_chosen, int64_t chosen,
                         protobuf_c_boolean has_exporter, int64_t exporter,
                         protobuf_c_boolean has_importer, int64_t importer)
{
    json_t *d =
        json_pack("{s:o,s:o,s:o}", "chosen", opt_int(has_chosen, chosen), "exporter",
                  opt_int(has_exporter, exporter), "importer", opt_int(has_importer, importer));

    if (d && has_exporter && has_importer) {
        long double adj = (long double)exporter * (long double)rules->cif_fob_factor;
        long double disc = (long double)importer - adj;
        long double larger = (long double)importer > adj ? (long double)importer : adj;
        double pct = larger > 0 ? (double)((disc < 0 ? -disc : disc) / larger * 100.0L) : 0.0;
        json_object_set_new(d, "discrepancy_pct", json_real(pct));
        json_object_set_new(d, "flagged", json_boolean(pct > rules->threshold_pct));
    }
    return d;
}

static json_t *turnover(const page_trade_t *rules, const Parksync__V1__PartnerTurnover *t)
{
    /* exports: the country exports, the partner imports; imports the reverse */
    return json_pack(
        "{s:s?,s:o,s:o,s:o,s:o}", "partner", t->partner, "period", period(t->period), "exports",
        direction(
            rules, t->has_exports_usd_cents, t->exports_usd_cents,
            t->has_exports_reported_by_country_usd_cents, t->exports_reported_by_country_usd_cents,
            t->has_exports_reported_by_partner_usd_cents, t->exports_reported_by_partner_usd_cents),
        "imports",
        direction(
            rules, t->has_imports_usd_cents, t->imports_usd_cents,
            t->has_imports_reported_by_partner_usd_cents, t->imports_reported_by_partner_usd_cents,
            t->has_imports_reported_by_country_usd_cents, t->imports_reported_by_country_usd_cents),
        "turnover_usd_cents", opt_int(t->has_turnover_usd_cents, t->turnover_usd_cents));
}

static json_t *indicator(const Parksync__V1__CountryReport *r)
{
    return json_pack(
        "{s:o,s:o,s:o}", "period", period(r->period), "parks_non_oil_production_share_bp",
        opt_uint(r->has_parks_non_oil_production_share_bp, r->parks_non_oil_production_share_bp),
        "parks_export_share_bp", opt_uint(r->has_parks_export_share_bp, r->parks_export_share_bp));
}

static json_t *mismatch(const Parksync__V1__ParkCheck *m)
{
    return json_pack(
        "{s:s?,s:o,s:o,s:o,s:o}", "park_id", m->park_id, "reported_residents",
        opt_uint(m->has_reported_residents, m->reported_residents), "known_residents",
        opt_uint(m->has_known_residents, m->known_residents), "reported_investment_usd_cents",
        opt_int(m->has_reported_investment_usd_cents, m->reported_investment_usd_cents),
        "known_investment_usd_cents",
        opt_int(m->has_known_investment_usd_cents, m->known_investment_usd_cents));
}

/* Sets key to the first `cap` entries of a list (and key_total to its
 * length). */
#define SET_LIST(obj, key, items, n, cap, make)                                                    \
    do {                                                                                           \
        json_t *list_ = json_array();                                                              \
        for (size_t i_ = 0; list_ && i_ < (n) && i_ < (cap); i_++)                                 \
            json_array_append_new(list_, make);                                                    \
        json_object_set_new(obj, key, list_);                                                      \
        json_object_set_new(obj, key "_total", json_integer((json_int_t)(n)));                     \
    } while (0)

static json_t *country(const page_trade_t *rules, const Parksync__V1__CountrySummary *cs)
{
    json_t *c = json_pack(
        "{s:s?,s:o,s:o,s:o,s:o,s:o,s:b}", "country", cs->country, "parks",
        opt_uint(cs->has_parks, cs->parks), "reported_residents",
        opt_uint(cs->has_reported_residents, cs->reported_residents), "known_residents",
        opt_uint(cs->has_known_residents, cs->known_residents), "reported_investment_usd_cents",
        opt_int(cs->has_reported_investment_usd_cents, cs->reported_investment_usd_cents),
        "known_investment_usd_cents",
        opt_int(cs->has_known_investment_usd_cents, cs->known_investment_usd_cents), "saturated",
        cs->has_saturated && cs->saturated);

    if (!c)
        return NULL;
    SET_LIST(c, "indicators", cs->indicators, cs->n_indicators, PAGE_MAX_INDICATORS,
             indicator(cs->indicators[i_]));
    SET_LIST(c, "turnover", cs->turnover, cs->n_turnover, PAGE_MAX_TURNOVER,
             turnover(rules, cs->turnover[i_]));
    SET_LIST(c, "mismatches", cs->mismatches, cs->n_mismatches, PAGE_MAX_MISMATCHES,
             mismatch(cs->mismatches[i_]));
    return c;
}

char *page_json_render(const page_trade_t *rules, Parksync__V1__CountrySummary *const *items,
                       size_t n, uint64_t revision, size_t max, size_t *len)
{
    json_t *root = json_object(), *list = json_array();
    size_t used = 64; /* the envelope: revision, the list's brackets, truncated */
    bool truncated = false;
    char *text = NULL;

    if (!root || !list)
        goto out;
    for (size_t i = 0; i < n; i++) {
        json_t *c = country(rules, items[i]);
        size_t size = c ? json_dumpb(c, NULL, 0, JSON_COMPACT) : 0;
        if (!c || used + size + 1 > max) {
            json_decref(c);
            truncated = true;
            break;
        }
        used += size + 1;
        json_array_append_new(list, c);
    }
    json_object_set_new(root, "revision", json_integer((json_int_t)revision));
    json_object_set(root, "countries", list);
    json_object_set_new(root, "truncated", json_boolean(truncated));
    json_object_set_new(root, "threshold_pct", json_real(rules->threshold_pct));
    text = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (text)
        *len = strlen(text);
out:
    json_decref(list);
    json_decref(root);
    return text;
}
