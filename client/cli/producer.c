/*
 * producer.c - `parksync producer ID`: what parksyncd counted for one
 * producer, as one JSON object.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "parksync.h"
#include "wire.h"

#define PRODUCER_TIMEOUT_MS 5000 /* ms to wait for the daemon's answer */

const char CLI_PRODUCER_USAGE[] =
    "usage: parksync producer [--query EP] [--server-key FILE --key FILE] ID\n"
    "\n"
    "Prints what parksyncd counted for producer ID as one JSON object:\n"
    "last_sequence (last applied), applied, duplicates (ignored, already\n"
    "applied), gaps (ahead of the next expected sequence, not applied),\n"
    "rejected (consumed but refused) and last_seen_us. A producer the daemon\n"
    "never heard from has last_sequence 0. (Resends are counted by the\n"
    "producer itself: `parksync push` prints them.)\n"
    "\n"
    "  --query EP      daemon's query endpoint (default " WIRE_DEFAULT_QUERY ")\n" CLI_CURVE_USAGE
    "\n"
    "Exit status: 0 printed, 1 daemon unreachable, 2 bad arguments.\n";

int cmd_producer(int argc, char **argv, const ps_profile_t *prof)
{
    static const struct option LONG[] = {{"query", required_argument, NULL, 'q'},
                                         {"ingest", required_argument, NULL, 'i'},
                                         {"publish", required_argument, NULL, 'P'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"control", required_argument, NULL, 'C'},
                                         CLI_CURVE_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    const char *query = prof->query.value[0] ? prof->query.value : WIRE_DEFAULT_QUERY;
    cli_curve_t curve = {0};
    ps_producer_options_t o;
    ps_producer_stats_t st;
    ps_err_t err;
    int c;

    cli_curve_defaults(&curve, prof);
    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        switch (c) {
        case 'q':
            query = optarg;
            break;
        case 'i': /* accepted for symmetry with the other commands; unused */
        case 'C':
        case 'P':
            break;
        case 'h':
            fputs(CLI_PRODUCER_USAGE, stdout);
            return CLI_OK;
        default:
            if (cli_curve_option(&curve, c, optarg))
                break;
            fputs(CLI_PRODUCER_USAGE, stderr);
            return CLI_USAGE;
        }
    }
    if (cli_curve_load(&curve) != CLI_OK)
        return CLI_USAGE;
    if (argc - optind != 1) {
        fprintf(stderr, "parksync producer: one producer id expected\n%s", CLI_PRODUCER_USAGE);
        return CLI_USAGE;
    }
    if (!wire_id_valid(argv[optind])) {
        fprintf(stderr, "parksync producer: '%s' is not 1..64 characters of [A-Za-z0-9._-]\n",
                argv[optind]);
        return CLI_USAGE;
    }
    ps_producer_options_init(&o);
    o.producer_id = argv[optind];
    o.query_endpoint = query;
    o.server_public_key = CLI_CURVE_SERVER(&curve);
    o.secret_key = CLI_CURVE_SECRET(&curve);
    err = ps_producer_query(&o, PRODUCER_TIMEOUT_MS, &st);
    if (err != PS_OK) {
        fprintf(stderr, "parksync producer: asking parksyncd at %s failed: %s\n", query,
                ps_strerror(err));
        return CLI_RUNTIME;
    }
    printf("{\"producer_id\":\"%s\",\"last_sequence\":%" PRIu64 ",\"applied\":%" PRIu64
           ",\"duplicates\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"rejected\":%" PRIu64
           ",\"last_seen_us\":%" PRId64 "}\n",
           argv[optind], st.last_sequence, st.applied, st.duplicates, st.gaps, st.rejected,
           st.last_seen_us);
    return CLI_OK;
}
