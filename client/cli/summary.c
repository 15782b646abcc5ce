/*
 * summary.c - `parksync summary`: the consolidated picture per country, for
 * people. Reads the daemon's CountrySummary records through the subscriber
 * API (a snapshot of kind summary) and prints them.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "format.h"
#include "parksync.h"
#include "wire.h"

const char CLI_SUMMARY_USAGE[] =
    "usage: parksync summary [--country XX] [--query EP] [--timeout SEC]\n"
    "\n"
    "Prints the consolidated summary per country: parks, residents reported\n"
    "and known, the reported investment portfolio, the parks' share of\n"
    "non-oil production and exports, trade turnover per partner and period\n"
    "(both ministries' figures, the chosen one and their discrepancy), and\n"
    "parks whose reported figures disagree with their resident records.\n"
    "\n"
    "  --country XX    one country only\n"
    "  --query EP      daemon's query endpoint (default " WIRE_DEFAULT_QUERY ")\n"
    "  --timeout SEC   longest daemon silence (default 5)\n"
    "  --publish EP, --ingest EP, --control EP  accepted for uniformity; not "
    "used\n" CLI_CURVE_USAGE;

/* The summaries read from the snapshot. */
typedef struct summaries {
    Parksync__V1__CountrySummary **items; /* deep copies, owned */
    size_t count;                         /* used */
    size_t cap;                           /* allocated */
    uint64_t revision;                    /* the snapshot's revision */
} summaries_t;

static void summaries_free(summaries_t *s)
{
    for (size_t i = 0; i < s->count; i++)
        protobuf_c_message_free_unpacked(&s->items[i]->base, NULL);
    free(s->items);
    memset(s, 0, sizeof *s);
}

static int summaries_add(summaries_t *s, const Parksync__V1__CountrySummary *cs)
{
    if (s->count == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        Parksync__V1__CountrySummary **n = realloc(s->items, ncap * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        s->items = n;
        s->cap = ncap;
    }
    ProtobufCMessage *copy = wire_copy(&cs->base);
    if (copy == NULL)
        return -ENOMEM;
    s->items[s->count++] = (Parksync__V1__CountrySummary *)copy;
    return 0;
}

static int by_country(const void *a, const void *b)
{
    const Parksync__V1__CountrySummary *x = *(Parksync__V1__CountrySummary *const *)a;
    const Parksync__V1__CountrySummary *y = *(Parksync__V1__CountrySummary *const *)b;
    return strcmp(x->country ? x->country : "", y->country ? y->country : "");
}

/* "USD 3,800,000,000.00 (USD 3.8 billion)" */
static const char *usd(char *buf, size_t size, int64_t cents)
{
    char full[FMT_MONEY_MAX], brief[FMT_MONEY_MAX];
    fmt_money(full, sizeof full, cents);
    fmt_money_short(brief, sizeof brief, cents);
    if (strcmp(full, brief) == 0)
        snprintf(buf, size, "USD %s", full);
    else
        snprintf(buf, size, "USD %s (USD %s)", full, brief);
    return buf;
}

/* One direction of trade: chosen figure, both reports, discrepancy
 * (importer's minus exporter's, as a share of the larger figure). */
static void print_direction(const char *label, const char *country, const char *partner,
                            protobuf_c_boolean has_chosen, int64_t chosen,
                            protobuf_c_boolean has_by_country, int64_t by_country_v,
                            protobuf_c_boolean has_by_partner, int64_t by_partner_v,
                            bool country_is_importer)
{
    char a[FMT_MONEY_MAX], b[FMT_MONEY_MAX], d[FMT_MONEY_MAX], chosen_s[96];

    printf("      %-17s %s\n", label,
           has_chosen ? usd(chosen_s, sizeof chosen_s, chosen) : "no figure");
    printf("        %s reported %s; %s reported %s", country,
           has_by_country ? fmt_money(a, sizeof a, by_country_v) : "nothing", partner,
           has_by_partner ? fmt_money(b, sizeof b, by_partner_v) : "nothing");
    if (has_by_country && has_by_partner) {
        int64_t importer = country_is_importer ? by_country_v : by_partner_v;
        int64_t exporter = country_is_importer ? by_partner_v : by_country_v;
        int64_t diff = importer - exporter;
        int64_t larger = importer > exporter ? importer : exporter;
        double pct = larger > 0 ? 100.0 * (double)(diff < 0 ? -diff : diff) / (double)larger : 0.0;
        printf("; discrepancy %s%s (%.2f%%, importer's minus exporter's)", diff > 0 ? "+" : "",
               fmt_money(d, sizeof d, diff), pct);
    }
    printf("\n");
}

static void print_summary(const Parksync__V1__CountrySummary *cs)
{
    const char *cc = cs->country ? cs->country : "??";
    char buf[128], per[64], p1[16], p2[16];

    printf("%s (%s)\n", fmt_country(cc), cc);
    printf("  Industrial parks:     %" PRIu32 "\n", cs->has_parks ? cs->parks : 0);
    printf("  Residents:            %" PRIu64 " reported by the ministry, %" PRIu64
           " known as resident records\n",
           cs->has_reported_residents ? cs->reported_residents : 0,
           cs->has_known_residents ? cs->known_residents : 0);
    printf("  Investment portfolio: %s reported\n",
           usd(buf, sizeof buf,
               cs->has_reported_investment_usd_cents ? cs->reported_investment_usd_cents : 0));
    printf("                        %s in resident records\n",
           usd(buf, sizeof buf,
               cs->has_known_investment_usd_cents ? cs->known_investment_usd_cents : 0));
    if (cs->has_saturated && cs->saturated)
        printf("  (a total beyond what its field holds shows the field's limit: read it as "
               "\"at least\")\n");

    printf("  Indicators:\n");
    if (cs->n_indicators == 0)
        printf("    none reported\n");
    for (size_t i = 0; i < cs->n_indicators; i++) {
        const Parksync__V1__CountryReport *r = cs->indicators[i];
        printf("    %s: parks made %s of non-oil production and %s of exports\n",
               fmt_period(per, sizeof per, r->period),
               r->has_parks_non_oil_production_share_bp
                   ? fmt_bp(p1, sizeof p1, r->parks_non_oil_production_share_bp)
                   : "(not reported)",
               r->has_parks_export_share_bp ? fmt_bp(p2, sizeof p2, r->parks_export_share_bp)
                                            : "(not reported)");
    }

    printf("  Trade turnover:\n");
    if (cs->n_turnover == 0)
        printf("    none reported\n");
    for (size_t i = 0; i < cs->n_turnover; i++) {
        const Parksync__V1__PartnerTurnover *t = cs->turnover[i];
        const char *partner = t->partner ? t->partner : "??";
        char lab_x[32], lab_m[32];
        printf("    with %s (%s), %s:\n", fmt_country(partner), partner,
               fmt_period(per, sizeof per, t->period));
        snprintf(lab_x, sizeof lab_x, "exports to %s:", partner);
        snprintf(lab_m, sizeof lab_m, "imports from %s:", partner);
        print_direction(lab_x, cc, partner, t->has_exports_usd_cents, t->exports_usd_cents,
                        t->has_exports_reported_by_country_usd_cents,
                        t->exports_reported_by_country_usd_cents,
                        t->has_exports_reported_by_partner_usd_cents,
                        t->exports_reported_by_partner_usd_cents, false);
        print_direction(lab_m, cc, partner, t->has_imports_usd_cents, t->imports_usd_cents,
                        t->has_imports_reported_by_country_usd_cents,
                        t->imports_reported_by_country_usd_cents,
                        t->has_imports_reported_by_partner_usd_cents,
                        t->imports_reported_by_partner_usd_cents, true);
        printf("      %-17s %s\n", "turnover:",
               t->has_turnover_usd_cents ? usd(buf, sizeof buf, t->turnover_usd_cents)
                                         : "no figure");
    }

    printf("  Cross-checks:\n");
    if (cs->n_mismatches == 0)
        printf("    %s\n", cs->has_parks && cs->parks > 0
                               ? "every park's reported figures match its resident records"
                               : "no parks reported");
    for (size_t i = 0; i < cs->n_mismatches; i++) {
        const Parksync__V1__ParkCheck *m = cs->mismatches[i];
        char a[FMT_MONEY_MAX], b[FMT_MONEY_MAX];
        printf(
            "    %s: %" PRIu32 " residents reported, %" PRIu32
            " known; investment USD %s reported, USD %s known\n",
            m->park_id ? m->park_id : "??", m->has_reported_residents ? m->reported_residents : 0,
            m->has_known_residents ? m->known_residents : 0,
            fmt_money(a, sizeof a,
                      m->has_reported_investment_usd_cents ? m->reported_investment_usd_cents : 0),
            fmt_money(b, sizeof b,
                      m->has_known_investment_usd_cents ? m->known_investment_usd_cents : 0));
    }
}

int cmd_summary(int argc, char **argv, const ps_profile_t *prof)
{
    static const struct option LONG[] = {{"country", required_argument, NULL, 'c'},
                                         {"query", required_argument, NULL, 'q'},
                                         {"publish", required_argument, NULL, 'P'},
                                         {"ingest", required_argument, NULL, 'i'},
                                         {"control", required_argument, NULL, 'C'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_CURVE_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    cli_curve_t curve = {0};
    ps_subscriber_options_t opts;
    ps_subscriber_t *s = NULL;
    summaries_t all = {0};
    ps_event_t ev;
    ps_err_t err;
    int c, status = CLI_RUNTIME;

    ps_subscriber_options_init(&opts);
    opts.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY;
    opts.live = false;
    ps_profile_subscriber_options(prof, &opts);
    cli_curve_defaults(&curve, prof);
    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (!wire_country_valid(optarg)) {
                fprintf(stderr,
                        "parksync summary: --country wants an ISO 3166-1 alpha-2 code "
                        "such as AZ, got '%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            opts.country = optarg;
            break;
        case 'q':
            opts.query_endpoint = optarg;
            break;
        case 'P':
            opts.publish_endpoint = optarg;
            break;
        case 'i':
        case 'C':
            break; /* accepted so one set of endpoint flags fits every command */
        case 't': {
            char *end = NULL;
            errno = 0;
            long sec = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || sec < 1 || sec > 3600) {
                fprintf(stderr,
                        "parksync summary: --timeout wants whole seconds 1..3600, "
                        "got '%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            opts.timeout_ms = (int)sec * 1000;
            break;
        }
        case 'h':
            fputs(CLI_SUMMARY_USAGE, stdout);
            return CLI_OK;
        default:
            if (cli_curve_option(&curve, c, optarg))
                break;
            fputs(CLI_SUMMARY_USAGE, stderr);
            return CLI_USAGE;
        }
    }
    if (cli_curve_load(&curve) != CLI_OK)
        return CLI_USAGE;
    opts.server_public_key = CLI_CURVE_SERVER(&curve);
    opts.secret_key = CLI_CURVE_SECRET(&curve);
    if (optind < argc) {
        fprintf(stderr, "parksync summary: unexpected argument '%s'\n%s", argv[optind],
                CLI_SUMMARY_USAGE);
        return CLI_USAGE;
    }
    cli_signals_install();
    s = ps_subscriber_new(&opts, &err);
    if (s == NULL) {
        fprintf(stderr, "parksync summary: cannot ask parksyncd: %s\n", ps_strerror(err));
        return CLI_RUNTIME;
    }
    for (;;) {
        err = ps_subscriber_next(s, &ev, -1);
        if (err == PS_ERR_CLOSED)
            break;
        if (err != PS_OK) {
            fprintf(stderr, "parksync summary: %s%s; no summary printed\n", ps_strerror(err),
                    err == PS_ERR_TIMEOUT ? " (is parksyncd running at the query endpoint?)" : "");
            goto done;
        }
        if (ev.kind == PS_EVENT_SNAPSHOT_END) {
            all.revision = ev.revision;
            continue;
        }
        if (ev.record->has_deleted && ev.record->deleted)
            continue;
        if (ev.record->body_case == PARKSYNC__V1__RECORD__BODY_SUMMARY &&
            summaries_add(&all, ev.record->summary) < 0) {
            fprintf(stderr, "parksync summary: out of memory\n");
            goto done;
        }
    }
    if (all.count > 0)
        qsort(all.items, all.count, sizeof all.items[0], by_country);
    printf("Consolidated industrial parks summary (revision %" PRIu64 ")\n", all.revision);
    if (all.count == 0)
        printf("\nNo consolidated data%s%s yet.\n", opts.country ? " for " : "",
               opts.country ? opts.country : "");
    for (size_t i = 0; i < all.count; i++) {
        printf("\n");
        print_summary(all.items[i]);
    }
    status = fflush(stdout) == 0 ? CLI_OK : CLI_RUNTIME;
done:
    summaries_free(&all);
    ps_subscriber_destroy(&s);
    return status;
}
