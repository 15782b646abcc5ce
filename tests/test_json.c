/*
 * test_json.c - the CLI's JSON <-> protobuf mapping (client/cli/json.c),
 * the demo data it reads, and the summary's number formatting.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "json.h"
#include "wire.h"

#define WHY_MAX 512 /* bytes of a reason buffer */

/* Parses one line and checks it as `parksync push` does. */
static Parksync__V1__Update *parse_ok(const char *line)
{
    Parksync__V1__Update *u = NULL;
    char why[WHY_MAX];

    int rc = json_to_update(line, strlen(line), &u, why, sizeof why);
    cr_assert_eq(rc, 0, "parse failed: %s\n  line: %s", why, line);
    cr_assert_not_null(u);
    rc = json_update_check(u, "TEST-1", why, sizeof why);
    cr_assert_eq(rc, 0, "validation failed: %s\n  line: %s", why, line);
    return u;
}

/* Calls fn(update, arg) for every update line of an example file and
 * returns how many there were. */
static int each_example(const char *file, void (*fn)(const Parksync__V1__Update *, void *),
                        void *arg)
{
    char path[512], *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int count = 0, lineno = 0;

    snprintf(path, sizeof path, "%s/%s", EXAMPLES_DIR, file);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t i = 0;
        while (i < (size_t)len && (line[i] == ' ' || line[i] == '\n' || line[i] == '\r'))
            i++;
        if (i == (size_t)len || line[i] == '#')
            continue;
        Parksync__V1__Update *u = NULL;
        char why[WHY_MAX];
        int rc = json_to_update(line, (size_t)len, &u, why, sizeof why);
        cr_assert_eq(rc, 0, "%s:%d: %s", file, lineno, why);
        rc = json_update_check(u, "TEST-1", why, sizeof why);
        cr_assert_eq(rc, 0, "%s:%d: %s", file, lineno, why);
        if (fn != NULL)
            fn(u, arg);
        parksync__v1__update__free_unpacked(u, NULL);
        count++;
    }
    free(line);
    fclose(f);
    return count;
}

Test(json, every_example_line_parses_and_validates)
{
    cr_assert_gt(each_example("az-moe.jsonl", NULL, NULL), 10);
    cr_assert_eq(each_example("tj-mint.jsonl", NULL, NULL), 2);
}

/* ---------------------------------------------------------------- demo totals */

/* What the demo files add up to. */
typedef struct totals {
    unsigned parks;           /* park updates */
    uint64_t residents;       /* sum of reported_residents */
    int64_t investment;       /* sum of reported_investment_usd_cents */
    int64_t az_exports_by_az; /* AZ -> TJ as AZ reports it */
    int64_t az_exports_by_tj; /* AZ -> TJ as TJ reports it (importer) */
    int64_t tj_exports_by_tj; /* TJ -> AZ as TJ reports it */
    int64_t tj_exports_by_az; /* TJ -> AZ as AZ reports it (importer) */
    unsigned illustrative;    /* resident records marked illustrative */
    bool indicators;          /* AZ's CountryReport seen with the published figures */
} totals_t;

static void add_up(const Parksync__V1__Update *u, void *arg)
{
    totals_t *t = arg;

    if (u->body_case == PARKSYNC__V1__UPDATE__BODY_PARK) {
        cr_assert_str_eq(u->park->country, "AZ");
        cr_assert(u->park->has_status);
        cr_assert_eq(u->park->status, PARKSYNC__V1__PARK_STATUS__PARK_STATUS_OPERATING);
        t->parks++;
        t->residents += u->park->reported_residents;
        t->investment += u->park->reported_investment_usd_cents;
    } else if (u->body_case == PARKSYNC__V1__UPDATE__BODY_RESIDENT) {
        if (u->resident->has_illustrative && u->resident->illustrative)
            t->illustrative++;
    } else if (u->body_case == PARKSYNC__V1__UPDATE__BODY_COUNTRY) {
        const Parksync__V1__CountryReport *c = u->country;
        t->indicators = strcmp(c->country, "AZ") == 0 && c->period->year == 2020 &&
                        c->period->first_month == 1 && c->period->last_month == 9 &&
                        c->parks_non_oil_production_share_bp == 1060 &&
                        c->parks_export_share_bp == 2030;
    } else if (u->body_case == PARKSYNC__V1__UPDATE__BODY_TRADE) {
        const Parksync__V1__TradeReport *r = u->trade;
        cr_assert_eq(r->period->year, 2020);
        cr_assert_eq(r->period->first_month, 1);
        cr_assert_eq(r->period->last_month, 10);
        bool exports = r->direction == PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS;
        bool az = strcmp(r->reporter, "AZ") == 0;
        if (az && exports)
            t->az_exports_by_az = r->value_usd_cents;
        else if (az)
            t->tj_exports_by_az = r->value_usd_cents;
        else if (exports)
            t->tj_exports_by_tj = r->value_usd_cents;
        else
            t->az_exports_by_tj = r->value_usd_cents;
    }
}

Test(json, demo_files_add_up_to_the_published_figures)
{
    totals_t t = {0};

    each_example("az-moe.jsonl", add_up, &t);
    each_example("tj-mint.jsonl", add_up, &t);
    cr_assert_eq(t.parks, 5);
    cr_assert_eq(t.residents, 50);
    cr_assert_eq(t.investment, 380000000000LL, "investment %lld", (long long)t.investment);
    cr_assert_geq(t.illustrative, 1);
    cr_assert(t.indicators);
    /* Importer's figure first: TJ's imports for AZ->TJ, AZ's imports for TJ->AZ. */
    cr_assert_eq(t.az_exports_by_tj + t.tj_exports_by_az, 290000000LL);
    /* The mirror figures differ, as real ones do, by a few percent. */
    cr_assert_neq(t.az_exports_by_az, t.az_exports_by_tj);
    cr_assert_neq(t.tj_exports_by_tj, t.tj_exports_by_az);
    cr_assert_lt(llabs(t.az_exports_by_az - t.az_exports_by_tj) * 100, t.az_exports_by_tj * 10);
    cr_assert_lt(llabs(t.tj_exports_by_tj - t.tj_exports_by_az) * 100, t.tj_exports_by_tj * 10);
}

/* ---------------------------------------------------------------- accepted forms */

Test(json, fills_fields_enums_money_and_time)
{
    Parksync__V1__Update *u =
        parse_ok("{\"event_time\":\"2020-10-31T00:00:00Z\",\"vintage\":\"final\",\"park\":{"
                 "\"park_id\":\"AZ-SUMGAIT-CHEM\",\"country\":\"AZ\",\"name\":\"Sumqay\\u0131t\","
                 "\"specializations\":[\"SPECIALIZATION_CHEMISTRY\",\"Light_Industry\"],"
                 "\"status\":\"park_status_operating\",\"area_ha\":511.5,"
                 "\"reported_investment_usd_cents\":\"380000000000\",\"reported_residents\":50}}");

    cr_assert_eq(u->body_case, PARKSYNC__V1__UPDATE__BODY_PARK);
    cr_assert(u->has_event_time_us);
    cr_assert_eq(u->event_time_us, 1604102400000000LL);
    cr_assert(u->has_vintage);
    cr_assert_eq(u->vintage, PARKSYNC__V1__VINTAGE__VINTAGE_FINAL);
    const Parksync__V1__Park *p = u->park;
    cr_assert_str_eq(p->name, "Sumqay\xc4\xb1t");
    cr_assert_not_null(p->specializations);
    cr_assert_eq(p->specializations->n_values, 2);
    cr_assert_eq(p->specializations->values[0],
                 PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY);
    cr_assert_eq(p->specializations->values[1],
                 PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_LIGHT_INDUSTRY);
    cr_assert(p->has_status);
    cr_assert_eq(p->status, PARKSYNC__V1__PARK_STATUS__PARK_STATUS_OPERATING);
    cr_assert(p->has_area_ha);
    cr_assert_float_eq(p->area_ha, 511.5, 1e-9);
    cr_assert(p->has_reported_investment_usd_cents);
    cr_assert_eq(p->reported_investment_usd_cents, 380000000000LL);
    cr_assert(p->has_reported_residents);
    cr_assert_eq(p->reported_residents, 50);
    cr_assert_null(p->region, "absent fields stay absent");
    parksync__v1__update__free_unpacked(u, NULL);
}

Test(json, partial_update_and_delete_carry_only_what_is_given)
{
    Parksync__V1__Update *u =
        parse_ok("{\"park\":{\"park_id\":\"AZ-X\",\"country\":\"AZ\",\"specializations\":[]}}");
    cr_assert_not_null(u->park->specializations, "an empty list is a value");
    cr_assert_eq(u->park->specializations->n_values, 0);
    cr_assert(!u->park->has_status);
    cr_assert(!u->has_vintage);
    parksync__v1__update__free_unpacked(u, NULL);

    u = parse_ok("{\"event_time_us\":1608710400000000,\"delete\":{\"resident\":{"
                 "\"park_id\":\"AZ-X\",\"resident_id\":\"R-1\",\"country\":\"AZ\"}}}");
    cr_assert_eq(u->body_case, PARKSYNC__V1__UPDATE__BODY_DELETE);
    cr_assert_eq(u->delete_->target_case, PARKSYNC__V1__DELETE__TARGET_RESIDENT);
    cr_assert_eq(u->event_time_us, 1608710400000000LL);
    cr_assert_eq(wire_update_kind(u), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT);
    parksync__v1__update__free_unpacked(u, NULL);
}

Test(json, parses_rfc3339_times)
{
    int64_t us = 0;

    cr_assert_eq(json_parse_time("1970-01-01T00:00:00Z", &us), 0);
    cr_assert_eq(us, 0);
    cr_assert_eq(json_parse_time("2020-12-23T10:00:01.5Z", &us), 0);
    cr_assert_eq(us, 1608717601500000LL);
    cr_assert_eq(json_parse_time("2020-12-23T14:00:01+04:00", &us), 0);
    cr_assert_eq(us, 1608717601000000LL);
    cr_assert_eq(json_parse_time("2020-02-29T00:00:00Z", &us), 0);
    cr_assert_eq(json_parse_time("2021-02-29T00:00:00Z", &us), -EINVAL);
    cr_assert_eq(json_parse_time("2020-12-23 10:00:00Z", &us), -EINVAL);
    cr_assert_eq(json_parse_time("2020-12-23T10:00:00", &us), -EINVAL);
    cr_assert_eq(json_parse_time("2020-12-23T10:00:00Zjunk", &us), -EINVAL);
    cr_assert_eq(json_parse_time("", &us), -EINVAL);
}

/* ---------------------------------------------------------------- rejections */

/* One line that must be refused, and a word the reason must contain. */
typedef struct bad_case {
    const char *line; /* input */
    const char *want; /* substring of the reason */
} bad_case_t;

static const bad_case_t BAD[] = {
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"colour\":\"red\"}}",
     "unknown field 'colour'"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"},\"planet\":1}", "unknown field 'planet'"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"},\"trade\":{\"reporter\":\"AZ\"}}",
     "cannot both be given"},
    {"{\"delete\":{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"},\"resident\":{}}}",
     "cannot both be given"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"status\":\"running\"}}",
     "unknown ParkStatus value 'running'"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"specializations\":[\"cooking\"]}}",
     "specializations"},
    {"{\"vintage\":\"VINTAGE_MAYBE\",\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"}}", "vintage"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"}", "invalid JSON"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"}} {}", "invalid JSON"},
    {"not json", "invalid JSON"},
    {"", "invalid JSON"},
    {"[1,2]", "expected a JSON object"},
    {"{\"park\":{\"park_id\":\"A\",\"park_id\":\"B\",\"country\":\"AZ\"}}", "invalid JSON"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":\"\\ud800\"}}", "invalid JSON"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":\"a\\u0000b\"}}", "invalid JSON"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"reported_residents\":\"ten\"}}",
     "expected an integer"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"reported_residents\":1.5}}",
     "expected an integer"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"reported_residents\":-1}}", "out of range"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"reported_residents\":4294967296}}",
     "out of range"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"reported_investment_usd_cents\":"
     "\"99999999999999999999\"}}",
     "out of range"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"area_ha\":\"big\"}}", "expected a number"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":7}}", "expected a string"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":null}}", "null"},
    {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"specializations\":\"chemistry\"}}",
     "expected an array"},
    {"{\"park\":[1]}", "expected an object"},
    {"{\"park\":\"AZ-X\"}", "expected an object"},
    {"{\"resident\":{\"park_id\":\"A\",\"resident_id\":\"R\",\"country\":\"AZ\","
     "\"illustrative\":\"yes\"}}",
     "expected true or false"},
    {"{\"trade\":{\"reporter\":\"AZ\",\"partner\":\"TJ\",\"direction\":\"exports\","
     "\"period\":2020,\"value_usd_cents\":1}}",
     "expected an object"},
    {"{\"trade\":{\"reporter\":\"AZ\",\"partner\":\"TJ\",\"direction\":\"exports\","
     "\"period\":{\"year\":2020,\"quarter\":1},\"value_usd_cents\":1}}",
     "unknown field 'quarter'"},
    {"{\"event_time\":\"yesterday\",\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"}}", "RFC 3339"},
    {"{\"event_time\":\"2020-12-23T00:00:00Z\",\"event_time_us\":1,\"park\":{\"park_id\":\"A\","
     "\"country\":\"AZ\"}}",
     "not both"},
    {"{\"producer_id\":\"X\",\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"}}",
     "set by the producer"},
    {"{\"sequence\":9,\"park\":{\"park_id\":\"A\",\"country\":\"AZ\"}}", "set by the producer"},
    {"{}", "no body"},
    {"{\"vintage\":\"final\"}", "no body"},
};

Test(json, rejects_bad_lines_with_a_reason)
{
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        Parksync__V1__Update *u = (Parksync__V1__Update *)0x1;
        char why[WHY_MAX];
        int rc = json_to_update(BAD[i].line, strlen(BAD[i].line), &u, why, sizeof why);
        cr_expect_eq(rc, -EINVAL, "accepted: %s", BAD[i].line);
        cr_expect_null(u, "output set on failure: %s", BAD[i].line);
        cr_expect_not_null(strstr(why, BAD[i].want), "reason '%s' lacks '%s' for %s", why,
                           BAD[i].want, BAD[i].line);
        if (rc == 0 && u != NULL)
            parksync__v1__update__free_unpacked(u, NULL);
    }
}

Test(json, rejects_strings_and_lists_beyond_the_wire_limits)
{
    char line[2048], name[WIRE_MAX_TEXT + 2], why[WHY_MAX];
    Parksync__V1__Update *u = NULL;

    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    snprintf(line, sizeof line, "{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":\"%s\"}}",
             name);
    cr_assert_eq(json_to_update(line, strlen(line), &u, why, sizeof why), -EINVAL);
    cr_assert_not_null(strstr(why, "string too long"), "%s", why);

    name[WIRE_MAX_TEXT] = '\0'; /* exactly at the limit: fine */
    snprintf(line, sizeof line, "{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":\"%s\"}}",
             name);
    cr_assert_eq(json_to_update(line, strlen(line), &u, why, sizeof why), 0, "%s", why);
    parksync__v1__update__free_unpacked(u, NULL);

    size_t n = (size_t)snprintf(
        line, sizeof line, "{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"specializations\":[");
    for (int i = 0; i <= WIRE_MAX_SPECIALIZATIONS; i++)
        n += (size_t)snprintf(line + n, sizeof line - n, "%s\"food\"", i ? "," : "");
    snprintf(line + n, sizeof line - n, "]}}");
    cr_assert_eq(json_to_update(line, strlen(line), &u, why, sizeof why), -EINVAL);
    cr_assert_not_null(strstr(why, "too many"), "%s", why);
}

/* What the mapping lets through, validation refuses, and `parksync push`
 * says why: the field and the rule, not only the field. */
Test(json, validation_catches_what_the_mapping_lets_through)
{
    static const struct {
        const char *line, *why;
    } CASES[] = {
        {"{\"park\":{\"park_id\":\"bad id!\",\"country\":\"AZ\"}}",
         "invalid update: park.park_id: must be 1..64 bytes of [A-Za-z0-9._-]"},
        {"{\"park\":{\"park_id\":\"A\",\"country\":\"Azerbaijan\"}}",
         "invalid update: park.country: must be two upper-case letters (ISO 3166-1 alpha-2)"},
        {"{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"status\":\"unspecified\"}}",
         "invalid update: park.status: unknown value"},
        {"{\"trade\":{\"reporter\":\"AZ\",\"partner\":\"AZ\",\"direction\":\"exports\","
         "\"period\":{\"year\":2020,\"first_month\":1,\"last_month\":10},\"value_usd_cents\":1}}",
         "invalid update: trade.partner: same as reporter"},
        {"{\"trade\":{\"reporter\":\"AZ\",\"partner\":\"TJ\",\"direction\":\"exports\","
         "\"period\":{\"year\":2020,\"first_month\":11,\"last_month\":10},\"value_usd_cents\":1}}",
         "invalid update: trade.period: missing, or not a year 1990..2200 with months first..last "
         "in 1..12"},
        {"{\"delete\":{\"park\":{\"park_id\":\"A\",\"country\":\"AZ\",\"name\":\"x\"}}}",
         "invalid update: delete.park: non-key field"},
        {"{\"resident\":{\"park_id\":\"A\",\"resident_id\":\"R\",\"country\":\"AZ\","
         "\"registered_on\":\"2020-02-30\"}}",
         "invalid update: resident.registered_on: must be a date YYYY-MM-DD"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        Parksync__V1__Update *u = NULL;
        char why[WHY_MAX];
        cr_assert_eq(json_to_update(CASES[i].line, strlen(CASES[i].line), &u, why, sizeof why), 0,
                     "%s: %s", CASES[i].line, why);
        cr_expect_eq(json_update_check(u, "TEST-1", why, sizeof why), -EINVAL, "accepted %s",
                     CASES[i].line);
        cr_expect_str_eq(why, CASES[i].why);
        parksync__v1__update__free_unpacked(u, NULL);
    }
}

Test(json, survives_mangled_input)
{
    /* Every prefix and a spread of byte flips of a real line: whatever the
     * outcome, no crash, no leak (ASan), and *out set only on success. */
    const char *line = "{\"event_time\":\"2020-12-23T09:00:00Z\",\"park\":{\"park_id\":\"AZ-X\","
                       "\"country\":\"AZ\",\"specializations\":[\"chemistry\"],\"area_ha\":1.5,"
                       "\"reported_investment_usd_cents\":\"12\"}}";
    size_t len = strlen(line);
    char buf[512], why[WHY_MAX];

    for (size_t cut = 0; cut <= len; cut++) {
        Parksync__V1__Update *u = NULL;
        if (json_to_update(line, cut, &u, why, sizeof why) == 0)
            parksync__v1__update__free_unpacked(u, NULL);
        else
            cr_assert_null(u);
    }
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(buf, line, len);
            buf[i] = (char)(buf[i] ^ (1 << bit));
            Parksync__V1__Update *u = NULL;
            if (json_to_update(buf, len, &u, why, sizeof why) == 0)
                parksync__v1__update__free_unpacked(u, NULL);
        }
    }
    Parksync__V1__Update *u = NULL;
    cr_assert_eq(json_to_update(NULL, 0, &u, why, sizeof why), -EINVAL);
    cr_assert_eq(json_to_update("{}", 2, &u, why, 0), -EINVAL, "a zero-size reason buffer is fine");
}

/* ---------------------------------------------------------------- records out */

Test(json, record_to_json_and_back_keeps_key_fields)
{
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    Parksync__V1__TradeFlow flow = PARKSYNC__V1__TRADE_FLOW__INIT;
    Parksync__V1__Period period = PARKSYNC__V1__PERIOD__INIT;

    period.has_year = period.has_first_month = period.has_last_month = 1;
    period.year = 2020;
    period.first_month = 1;
    period.last_month = 10;
    flow.exporter = "AZ";
    flow.importer = "TJ";
    flow.period = &period;
    flow.has_exporter_reported_usd_cents = 1;
    flow.exporter_reported_usd_cents = 172000000;
    flow.has_importer_reported_usd_cents = 1;
    flow.importer_reported_usd_cents = 180000000;
    flow.has_value_usd_cents = 1;
    flow.value_usd_cents = 180000000;
    flow.has_rule = 1;
    flow.rule = PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST;
    flow.has_discrepancy_pct = 1;
    flow.discrepancy_pct = 4.44;
    r.has_revision = 1;
    r.revision = 42;
    r.body_case = PARKSYNC__V1__RECORD__BODY_TRADE;
    r.trade = &flow;

    json_t *j = json_from_record(&r);
    cr_assert_not_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    cr_assert_not_null(text);
    cr_assert_eq(strncmp(text, "{\"revision\":42,\"kind\":\"trade\",\"trade\":{", 39), 0, "%s",
                 text);
    cr_assert_null(json_object_get(j, "deleted"), "live records carry no deleted key");
    json_t *t = json_object_get(j, "trade");
    cr_assert_str_eq(json_string_value(json_object_get(t, "exporter")), "AZ");
    cr_assert_str_eq(json_string_value(json_object_get(t, "rule")), "TRADE_RULE_IMPORTER_FIRST");
    cr_assert_eq(json_integer_value(json_object_get(t, "value_usd_cents")), 180000000);
    cr_assert_null(json_object_get(t, "flagged"), "absent fields are left out");

    /* Back through the generic mapping: the same record. */
    ProtobufCMessage *back = NULL;
    char why[WHY_MAX];
    json_object_del(j, "kind"); /* output-only */
    cr_assert_eq(json_to_message(j, &parksync__v1__record__descriptor, &back, why, sizeof why), 0,
                 "%s", why);
    Parksync__V1__Record *r2 = (Parksync__V1__Record *)back;
    cr_assert_eq(r2->revision, 42);
    cr_assert_eq(r2->body_case, PARKSYNC__V1__RECORD__BODY_TRADE);
    cr_assert_str_eq(r2->trade->exporter, "AZ");
    cr_assert_str_eq(r2->trade->importer, "TJ");
    cr_assert_eq(r2->trade->period->last_month, 10);
    cr_assert_eq(r2->trade->value_usd_cents, 180000000);
    cr_assert_eq(r2->trade->importer_reported_usd_cents, 180000000);
    cr_assert_float_eq(r2->trade->discrepancy_pct, 4.44, 1e-12);
    size_t l1 = protobuf_c_message_get_packed_size(&r.base);
    size_t l2 = protobuf_c_message_get_packed_size(back);
    cr_assert_eq(l1, l2, "re-encoded sizes differ");
    protobuf_c_message_free_unpacked(back, NULL);
    free(text);
    json_decref(j);
}

Test(json, park_record_shows_specializations_as_an_array_and_tombstones)
{
    Parksync__V1__Update *u = parse_ok(
        "{\"park\":{\"park_id\":\"AZ-X\",\"country\":\"AZ\",\"specializations\":[\"chemistry\","
        "\"food\"],\"reported_investment_usd_cents\":\"380000000000\"}}");
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    r.has_revision = 1;
    r.revision = 7;
    r.has_deleted = 1;
    r.deleted = 1;
    r.body_case = PARKSYNC__V1__RECORD__BODY_PARK;
    r.park = u->park;

    json_t *j = json_from_record(&r);
    cr_assert_not_null(j);
    cr_assert(json_is_true(json_object_get(j, "deleted")));
    json_t *p = json_object_get(j, "park");
    json_t *specs = json_object_get(p, "specializations");
    cr_assert(json_is_array(specs));
    cr_assert_eq(json_array_size(specs), 2);
    cr_assert_str_eq(json_string_value(json_array_get(specs, 1)), "SPECIALIZATION_FOOD");
    cr_assert_eq(json_integer_value(json_object_get(p, "reported_investment_usd_cents")),
                 380000000000LL);
    json_decref(j);
    parksync__v1__update__free_unpacked(u, NULL);
}

/* ---------------------------------------------------------------- summary figures */

Test(format, money_percent_and_period)
{
    char buf[64];
    Parksync__V1__Period p = PARKSYNC__V1__PERIOD__INIT;

    cr_assert_str_eq(fmt_money(buf, sizeof buf, 380000000000LL), "3,800,000,000.00");
    cr_assert_str_eq(fmt_money(buf, sizeof buf, 290000000), "2,900,000.00");
    cr_assert_str_eq(fmt_money(buf, sizeof buf, 5), "0.05");
    cr_assert_str_eq(fmt_money(buf, sizeof buf, -8000000), "-80,000.00");
    cr_assert_str_eq(fmt_money(buf, sizeof buf, INT64_MIN), "-92,233,720,368,547,758.08");
    cr_assert_str_eq(fmt_money_short(buf, sizeof buf, 380000000000LL), "3.8 billion");
    cr_assert_str_eq(fmt_money_short(buf, sizeof buf, 290000000), "2.9 million");
    cr_assert_str_eq(fmt_money_short(buf, sizeof buf, 100000000000LL), "1 billion");
    cr_assert_str_eq(fmt_money_short(buf, sizeof buf, 95000), "950.00");
    cr_assert_str_eq(fmt_bp(buf, sizeof buf, 1060), "10.60%");
    cr_assert_str_eq(fmt_bp(buf, sizeof buf, 2030), "20.30%");
    p.has_year = p.has_first_month = p.has_last_month = 1;
    p.year = 2020;
    p.first_month = 1;
    p.last_month = 9;
    cr_assert_str_eq(fmt_period(buf, sizeof buf, &p), "January-September 2020");
    p.first_month = 10;
    p.last_month = 10;
    cr_assert_str_eq(fmt_period(buf, sizeof buf, &p), "October 2020");
    cr_assert_str_eq(fmt_period(buf, sizeof buf, NULL), "(no period)");
    cr_assert_str_eq(fmt_country("TJ"), "Tajikistan");
    cr_assert_str_eq(fmt_country("ZZ"), "ZZ");
}

Test(json, generic_mapping_frees_partial_repeated_messages)
{
    static const char *const DOCS[] = {
        "{\"summary\":{\"country\":\"AZ\",\"turnover\":[{\"partner\":\"TJ\"},1]}}",
        "{\"summary\":{\"country\":\"AZ\",\"turnover\":[{\"partner\":\"TJ\"},{\"partner\":5}]}}",
        "{\"summary\":{\"country\":\"AZ\",\"mismatches\":[null]}}",
        "{\"provenance\":[{\"field\":\"name\"},{\"field\":\"x\",\"vintage\":\"sometimes\"}]}",
        "{\"park\":{\"park_id\":\"A\"},\"trade\":{\"exporter\":\"AZ\"}}",
    };
    for (size_t i = 0; i < sizeof DOCS / sizeof DOCS[0]; i++) {
        json_error_t jerr;
        json_t *j = json_loads(DOCS[i], 0, &jerr);
        cr_assert_not_null(j, "%s", jerr.text);
        ProtobufCMessage *m = (ProtobufCMessage *)0x1;
        char why[WHY_MAX];
        cr_expect_eq(json_to_message(j, &parksync__v1__record__descriptor, &m, why, sizeof why),
                     -EINVAL, "accepted %s", DOCS[i]);
        cr_expect_null(m);
        json_decref(j);
    }
}
