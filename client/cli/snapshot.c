/*
 * snapshot.c - `parksync snapshot` and `parksync watch`: consolidated
 * records as JSON lines (one Record per line, the shape json_from_record
 * documents), from a snapshot and then, for watch, live; snapshot also as
 * CSV or a table (csv_out.c).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "csv.h"
#include "json.h"
#include "parksync.h"
#include "wire.h"

#define WATCH_SLICE_MS 500 /* ms between checks for a stop signal while watching */

#define FILTER_HELP                                                                                \
    "  --kind KIND     park, resident, trade, country or summary (default: every kind)\n"          \
    "  --country XX    records of one country (trade: flows it exports or imports)\n"              \
    "  --provenance    include where each field's value came from\n"                               \
    "  --query EP      daemon's query endpoint (default " WIRE_DEFAULT_QUERY ")\n"                 \
    "  --publish EP    daemon's publish endpoint (default " WIRE_DEFAULT_PUBLISH ")\n"             \
    "                  Both may list several sites, comma-separated, in the same order:\n"         \
    "                  a site silent for --timeout is left for the next (a reset, then\n"          \
    "                  its snapshot)\n"                                                            \
    "  --timeout SEC   longest daemon silence during the snapshot (default 5)\n"                   \
    "  --ingest EP, --control EP  accepted for uniformity; not used\n" CLI_CURVE_USAGE

const char CLI_SNAPSHOT_USAGE[] =
    "usage: parksync snapshot [--kind KIND] [--country XX] [--provenance]\n"
    "                         [--at-revision R] [--format jsonl|csv|table]\n"
    "                         [--query EP] [--publish EP] [--timeout SEC]\n"
    "\n"
    "Prints the consolidated records as JSON lines, one record per line:\n"
    "  {\"revision\":N,\"kind\":\"park\",\"deleted\":true (tombstones only),\n"
    "   \"park\":{...fields as in parksync.proto...},\"provenance\":[...] (if asked)}\n"
    "Money is an integer number of US cents, enums are full proto names.\n"
    "  --at-revision R the picture as it was at revision R (while the daemon's\n"
    "                  change log reaches back that far; no --provenance)\n"
    "  --format F      jsonl (default); csv: one kind (give --kind), a header row,\n"
    "                  nested fields dotted (period.year), lists joined by ';',\n"
    "                  enums by short name, beside each *_usd_cents a *_usd column\n"
    "                  in dollars; table: the same columns aligned for people, one\n"
    "                  table per kind, columns empty in every row left out\n"
    "\n" FILTER_HELP;

const char CLI_WATCH_USAGE[] =
    "usage: parksync watch [--kind KIND] [--country XX] [--provenance]\n"
    "                      [--from-revision R] [--query EP] [--publish EP]\n"
    "                      [--timeout SEC]\n"
    "\n"
    "Prints the snapshot like `parksync snapshot`, then every change as it is\n"
    "published, one JSON line each, until interrupted (SIGINT or SIGTERM).\n"
    "Lost messages are recovered by the library; when continuity cannot be\n"
    "kept (the change log no longer reaches back, or the database was\n"
    "replaced) it prints {\"reset\":true}: drop everything read so far, a\n"
    "fresh snapshot follows.\n"
    "When stopped it says up to which revision every change was printed (a\n"
    "lost message's recovery can print a record below the last one printed):\n"
    "resume from there.\n"
    "  --from-revision R  instead of a snapshot, the changes after revision R\n"
    "                     (a reset and a snapshot when the log no longer has them)\n"
    "\n" FILTER_HELP;

/* Parses the options snapshot and watch share. CLI_OK, or the exit status
 * to return (help printed: *done set). */
static int parse_revision(const char *cmd, const char *flag, const char *arg, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || arg[0] == '-') {
        fprintf(stderr, "parksync %s: %s wants a revision number, got '%s'\n", cmd, flag, arg);
        return CLI_USAGE;
    }
    *out = (uint64_t)v;
    return CLI_OK;
}

static int parse_filter(int argc, char **argv, const char *usage, const ps_profile_t *prof,
                        ps_subscriber_options_t *opts, int *format, bool *done)
{
    static const struct option LONG[] = {{"at-revision", required_argument, NULL, 'A'},
                                         {"from-revision", required_argument, NULL, 'F'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"kind", required_argument, NULL, 'k'},
                                         {"country", required_argument, NULL, 'c'},
                                         {"provenance", no_argument, NULL, 'v'},
                                         {"query", required_argument, NULL, 'q'},
                                         {"publish", required_argument, NULL, 'P'},
                                         {"ingest", required_argument, NULL, 'i'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"control", required_argument, NULL, 'C'},
                                         CLI_CURVE_OPTIONS,
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    /* The keys must outlive this call (opts points into them); one
     * command runs per process. */
    static cli_curve_t curve;
    int c;

    *done = false;
    ps_profile_subscriber_options(prof, opts);
    cli_curve_defaults(&curve, prof);
    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        switch (c) {
        case 'k':
            opts->kind = wire_kind_from_name(optarg);
            if (opts->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED) {
                fprintf(stderr,
                        "parksync %s: unknown --kind '%s' (expected park, resident, trade, "
                        "country or summary)\n",
                        argv[0], optarg);
                return CLI_USAGE;
            }
            break;
        case 'c':
            if (!wire_country_valid(optarg)) {
                fprintf(stderr,
                        "parksync %s: --country wants an ISO 3166-1 alpha-2 code such as AZ, "
                        "got '%s'\n",
                        argv[0], optarg);
                return CLI_USAGE;
            }
            opts->country = optarg;
            break;
        case 'v':
            opts->provenance = true;
            break;
        case 'f':
            if (usage != CLI_SNAPSHOT_USAGE) {
                fprintf(stderr, "parksync %s: --format is for `parksync snapshot`\n", argv[0]);
                return CLI_USAGE;
            }
            *format = strcmp(optarg, "csv") == 0     ? CSV_STYLE_CSV
                      : strcmp(optarg, "table") == 0 ? CSV_STYLE_TABLE
                      : strcmp(optarg, "jsonl") == 0 ? 0
                                                     : -1;
            if (*format < 0) {
                fprintf(stderr, "parksync %s: --format wants jsonl, csv or table, got '%s'\n",
                        argv[0], optarg);
                return CLI_USAGE;
            }
            break;
        case 'A':
            if (usage != CLI_SNAPSHOT_USAGE) {
                fprintf(stderr, "parksync %s: --at-revision is for `parksync snapshot`\n", argv[0]);
                return CLI_USAGE;
            }
            if (parse_revision(argv[0], "--at-revision", optarg, &opts->at_revision) != CLI_OK)
                return CLI_USAGE;
            opts->has_at_revision = true;
            break;
        case 'F':
            if (usage != CLI_WATCH_USAGE) {
                fprintf(stderr, "parksync %s: --from-revision is for `parksync watch`\n", argv[0]);
                return CLI_USAGE;
            }
            if (parse_revision(argv[0], "--from-revision", optarg, &opts->from_revision) != CLI_OK)
                return CLI_USAGE;
            opts->has_from_revision = true;
            break;
        case 'q':
            opts->query_endpoint = optarg;
            break;
        case 'P':
            opts->publish_endpoint = optarg;
            break;
        case 'i':
        case 'C':
            break; /* accepted so one set of endpoint flags fits every command */
        case 't': {
            char *end = NULL;
            errno = 0;
            long s = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || s < 1 || s > 3600) {
                fprintf(stderr, "parksync %s: --timeout wants whole seconds 1..3600, got '%s'\n",
                        argv[0], optarg);
                return CLI_USAGE;
            }
            opts->timeout_ms = (int)s * 1000;
            break;
        }
        case 'h':
            fputs(usage, stdout);
            *done = true;
            return CLI_OK;
        default:
            if (cli_curve_option(&curve, c, optarg))
                break;
            fputs(usage, stderr);
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "parksync %s: unexpected argument '%s'\n%s", argv[0], argv[optind], usage);
        return CLI_USAGE;
    }
    if (cli_curve_load(&curve) != CLI_OK)
        return CLI_USAGE;
    opts->server_public_key = CLI_CURVE_SERVER(&curve);
    opts->secret_key = CLI_CURVE_SECRET(&curve);
    if (*format == CSV_STYLE_CSV &&
        opts->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED) {
        fprintf(stderr,
                "parksync %s: --format csv writes one kind (one header row): give --kind "
                "park, resident, trade, country or summary\n",
                argv[0]);
        return CLI_USAGE;
    }
    if (*format != 0 && opts->provenance) {
        fprintf(stderr, "parksync %s: --provenance goes with --format jsonl only\n", argv[0]);
        return CLI_USAGE;
    }
    if (opts->has_at_revision && opts->provenance) {
        fprintf(stderr,
                "parksync %s: --at-revision and --provenance do not go together: "
                "provenance is kept for the current picture only\n",
                argv[0]);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int print_record(const Parksync__V1__Record *r)
{
    json_t *j = json_from_record(r);
    if (j == NULL)
        return -ENOMEM;
    int rc = json_dumpf(j, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) < 0 ? -EIO : 0;
    json_decref(j);
    if (rc == 0 && (fputc('\n', stdout) == EOF || fflush(stdout) == EOF))
        rc = -EIO;
    return rc;
}

static int run(int argc, char **argv, const ps_profile_t *prof, bool live)
{
    ps_subscriber_options_t opts;
    ps_subscriber_t *s = NULL;
    ps_event_t ev;
    ps_err_t err;
    bool done, snapshot_done = false, reset = false;
    uint64_t records = 0;
    int status, format = 0;
    csv_out_t *table = NULL;

    ps_subscriber_options_init(&opts);
    status = parse_filter(argc, argv, live ? CLI_WATCH_USAGE : CLI_SNAPSHOT_USAGE, prof, &opts,
                          &format, &done);
    if (status != CLI_OK || done)
        return status;
    if (format != 0 && (table = csv_out_new(stdout, (csv_style_t)format, opts.kind)) == NULL) {
        fprintf(stderr, "parksync %s: out of memory\n", argv[0]);
        return CLI_RUNTIME;
    }
    opts.live = live;
    cli_signals_install();
    if (!live)
        opts.has_from_revision = false;
    s = ps_subscriber_new(&opts, &err);
    if (s == NULL) {
        fprintf(stderr, "parksync %s: cannot subscribe: %s\n", argv[0], ps_strerror(err));
        return err == PS_ERR_INVALID ? CLI_USAGE : CLI_RUNTIME;
    }
    status = CLI_RUNTIME;
    while (!cli_stop) {
        /* During the snapshot the library's silence limit (--timeout)
         * decides; once live, silence is normal and we only wake to check
         * for a stop signal. */
        err = ps_subscriber_next(s, &ev, snapshot_done ? WATCH_SLICE_MS : -1);
        if (err == PS_ERR_CLOSED) {
            status = CLI_OK;
            if (table != NULL && csv_out_finish(table) < 0) {
                fprintf(stderr, "parksync %s: cannot write to stdout: %s\n", argv[0],
                        strerror(errno));
                status = CLI_RUNTIME;
            }
            break;
        }
        if (err == PS_ERR_INTERRUPTED || (err == PS_ERR_TIMEOUT && snapshot_done))
            continue;
        if (err == PS_ERR_REFUSED) {
            fprintf(stderr, "parksync %s: the daemon refused: %s\n", argv[0],
                    ps_subscriber_last_error(s));
            break;
        }
        if (err != PS_OK) {
            fprintf(stderr, "parksync %s: %s%s\n", argv[0], ps_strerror(err),
                    err == PS_ERR_TIMEOUT ? " (is parksyncd running at the query endpoint?)" : "");
            break;
        }
        if (ev.kind == PS_EVENT_SNAPSHOT_END) {
            snapshot_done = true;
            if (live)
                fprintf(stderr,
                        "parksync %s: %s at revision %" PRIu64 " (%" PRIu64
                        " records); following live changes\n",
                        argv[0],
                        opts.has_from_revision && !reset ? "caught up" : "snapshot complete",
                        ev.revision, records);
            continue;
        }
        if (ev.kind == PS_EVENT_RESET && table != NULL) {
            /* rows already written cannot be taken back */
            fprintf(stderr,
                    "parksync %s: the daemon's database was replaced during the snapshot; "
                    "run it again\n",
                    argv[0]);
            break;
        }
        if (ev.kind == PS_EVENT_RESET) {
            const char *why = ps_subscriber_last_error(s);
            fprintf(stderr, "parksync %s: continuity lost (%s); a fresh snapshot follows\n",
                    argv[0], why[0] ? why : "the database was replaced");
            if (fputs("{\"reset\":true}\n", stdout) == EOF || fflush(stdout) == EOF) {
                fprintf(stderr, "parksync %s: cannot write to stdout: %s\n", argv[0],
                        strerror(errno));
                break;
            }
            snapshot_done = false;
            reset = true; /* what follows is a snapshot, not the changes asked for */
            records = 0;
            continue;
        }
        if (table != NULL) {
            int rc = csv_out_record(table, ev.record);
            if (rc < 0) {
                fprintf(stderr,
                        "parksync %s: cannot write the record of revision %" PRIu64 ": %s\n",
                        argv[0], ev.revision, strerror(-rc));
                break;
            }
        } else if (print_record(ev.record) < 0) {
            fprintf(stderr, "parksync %s: cannot write to stdout: %s\n", argv[0], strerror(errno));
            break;
        }
        records++;
    }
    if (cli_stop && live) {
        status = CLI_OK;
        if (snapshot_done)
            fprintf(stderr,
                    "parksync %s: stopped; every change up to revision %" PRIu64
                    " was printed (resume with --from-revision %" PRIu64 ")\n",
                    argv[0], ps_subscriber_revision(s), ps_subscriber_revision(s));
    }
    ps_subscriber_destroy(&s);
    csv_out_destroy(&table);
    return status;
}

int cmd_snapshot(int argc, char **argv, const ps_profile_t *prof)
{
    return run(argc, argv, prof, false);
}

int cmd_watch(int argc, char **argv, const ps_profile_t *prof)
{
    return run(argc, argv, prof, true);
}
