/*
 * conflicts.c - `parksync conflicts`: the daemon's conflicts/audit table as
 * JSON lines, read page by page from the control socket.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "cli.h"
#include "ctl.h"
#include "json.h"
#include "wire.h"

#define CONFLICTS_DEFAULT_TIMEOUT_S 5   /* s to wait for each reply */
#define CONFLICTS_PAGE              500 /* entries asked per request */

const char CLI_CONFLICTS_USAGE[] =
    "usage: parksync conflicts [--kind KIND] [--country XX] [--since TIME] [--limit N]\n"
    "                          [--control EP] [--timeout SEC]\n"
    "\n"
    "Prints the daemon's conflicts/audit table, oldest first, one JSON object per line:\n"
    "  {\"id\":N,\"recorded_us\":T,\"producer_id\":\"TJ-MINT\",\"sequence\":S,\"kind\":\"park\",\n"
    "   \"key\":\"AZ/AZ-SUMGAIT-CHEM\",\"country\":\"AZ\",\"partner\":\"TJ\" (trade),\n"
    "   \"reason\":\"not authoritative: ...\",\"event_time_us\":T,\"claim_kept\":true}\n"
    "Reasons: not authoritative, unknown producer, event time in the future,\n"
    "stale (older than a delete), overridden (older than the current value), invalid.\n"
    "\n"
    "  --kind KIND     park, resident, trade or country\n"
    "  --country XX    entries about one country (trade: reporter or partner)\n"
    "  --since TIME    recorded at or after TIME: RFC 3339 (2020-10-31T00:00:00Z) or @SECONDS\n"
    "  --limit N       print at most N entries (default: all)\n"
    "  --control EP    daemon's control socket (default: the runtime directory's, as the\n"
    "                  daemon places it)\n"
    "  --timeout SEC   longest wait for each answer (default 5)\n"
    "  --ingest EP, --publish EP, --query EP  accepted for uniformity; not used\n" CLI_CONTEXT_HELP;

static int parse_since(const char *text, int64_t *us)
{
    if (text[0] == '@') {
        char *end = NULL;
        errno = 0;
        long long sec = strtoll(text + 1, &end, 10);
        if (errno != 0 || end == text + 1 || *end != '\0' || sec < 0 || sec > 9000000000LL)
            return -EINVAL;
        *us = (int64_t)sec * 1000000;
        return 0;
    }
    return json_parse_time(text, us);
}

static int print_conflict(const Parksync__V1__Conflict *c)
{
    json_t *o = json_object();
    const char *kind = c->has_kind ? wire_kind_name(c->kind) : NULL;
    int rc = -ENOMEM;

    if (o == NULL)
        return -ENOMEM;
    if (json_object_set_new(o, "id", json_integer((json_int_t)c->id)) < 0 ||
        json_object_set_new(o, "recorded_us", json_integer((json_int_t)c->recorded_us)) < 0 ||
        json_object_set_new(o, "producer_id",
                            c->producer_id ? json_string(c->producer_id) : json_null()) < 0 ||
        json_object_set_new(o, "sequence", json_integer((json_int_t)c->sequence)) < 0 ||
        json_object_set_new(o, "kind", kind ? json_string(kind) : json_null()) < 0 ||
        (c->key && json_object_set_new(o, "key", json_string(c->key)) < 0) ||
        (c->country && json_object_set_new(o, "country", json_string(c->country)) < 0) ||
        (c->partner && json_object_set_new(o, "partner", json_string(c->partner)) < 0) ||
        json_object_set_new(o, "reason", json_string(c->reason ? c->reason : "")) < 0 ||
        (c->has_event_time_us &&
         json_object_set_new(o, "event_time_us", json_integer((json_int_t)c->event_time_us)) < 0) ||
        json_object_set_new(o, "claim_kept", json_boolean(c->has_claim_kept && c->claim_kept)) < 0)
        goto out;
    rc = json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) < 0 || fputc('\n', stdout) == EOF
             ? -EIO
             : 0;
out:
    json_decref(o);
    return rc;
}

/* Sends one request and waits for its reply. 0, or the exit status. */
static int ask(void *sock, Parksync__V1__ControlRequest *q, int timeout_ms,
               Parksync__V1__ControlReply **out, const char *endpoint)
{
    uint8_t buf[WIRE_MAX_CONTROL];
    size_t len = parksync__v1__control_request__pack(q, buf);
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    const char *why = NULL;

    if (zmq_send(sock, buf, len, 0) < 0) {
        fprintf(stderr, "parksync conflicts: cannot send to %s: %s\n", endpoint,
                zmq_strerror(errno));
        return CLI_RUNTIME;
    }
    for (;;) {
        int n = zmq_poll(&item, 1, timeout_ms);
        if (n < 0 && errno == EINTR && !cli_stop)
            continue;
        if (n <= 0) {
            fprintf(stderr,
                    "parksync conflicts: no answer from %s within %d s (is parksyncd "
                    "running, and is this its control socket?)\n",
                    endpoint, timeout_ms / 1000);
            return CLI_RUNTIME;
        }
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            return CLI_RUNTIME;
        }
        int rc = wire_control_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), out, &why);
        zmq_msg_close(&m);
        if (rc < 0) {
            fprintf(stderr, "parksync conflicts: undecodable answer: %s\n", why ? why : "?");
            return CLI_RUNTIME;
        }
        if ((*out)->request_id == q->request_id)
            return CLI_OK;
        parksync__v1__control_reply__free_unpacked(*out, NULL); /* a stale answer */
        *out = NULL;
    }
}

int cmd_conflicts(int argc, char **argv, const ps_profile_t *prof)
{
    static const struct option LONG[] = {{"kind", required_argument, NULL, 'k'},
                                         {"country", required_argument, NULL, 'c'},
                                         {"since", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'n'},
                                         {"control", required_argument, NULL, 'C'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"ingest", required_argument, NULL, 'i'},
                                         {"publish", required_argument, NULL, 'P'},
                                         {"query", required_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    Parksync__V1__ConflictsRequest cr = PARKSYNC__V1__CONFLICTS_REQUEST__INIT;
    char endpoint[256] = "";
    const char *control = CTL_PROFILE_CONTROL(prof);
    unsigned long long limit = 0, printed = 0;
    long timeout_s = CONFLICTS_DEFAULT_TIMEOUT_S;
    int c, status = CLI_RUNTIME;

    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'k':
            cr.kind = wire_kind_from_name(optarg);
            if (cr.kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED ||
                cr.kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY) {
                fprintf(stderr,
                        "parksync conflicts: unknown --kind '%s' (expected park, "
                        "resident, trade or country)\n",
                        optarg);
                return CLI_USAGE;
            }
            cr.has_kind = true;
            break;
        case 'c':
            if (!wire_country_valid(optarg)) {
                fprintf(stderr,
                        "parksync conflicts: --country wants an ISO 3166-1 alpha-2 "
                        "code such as AZ, got '%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            cr.country = optarg;
            break;
        case 's':
            if (parse_since(optarg, &cr.since_us) < 0) {
                fprintf(stderr,
                        "parksync conflicts: --since wants RFC 3339 "
                        "(2020-10-31T00:00:00Z) or @SECONDS, got '%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            cr.has_since_us = true;
            break;
        case 'n':
            errno = 0;
            limit = strtoull(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-' || limit == 0) {
                fprintf(stderr,
                        "parksync conflicts: --limit wants a whole number >= 1, got "
                        "'%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            break;
        case 'C':
            control = optarg;
            break;
        case 't':
            errno = 0;
            timeout_s = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || timeout_s < 1 || timeout_s > 3600) {
                fprintf(stderr,
                        "parksync conflicts: --timeout wants whole seconds 1..3600, "
                        "got '%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            break;
        case 'i':
        case 'P':
        case 'q':
            break; /* accepted so one set of endpoint flags fits every command */
        case 'h':
            fputs(CLI_CONFLICTS_USAGE, stdout);
            return CLI_OK;
        default:
            fputs(CLI_CONFLICTS_USAGE, stderr);
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "parksync conflicts: unexpected argument '%s'\n%s", argv[optind],
                CLI_CONFLICTS_USAGE);
        return CLI_USAGE;
    }
    if ((status = ctl_endpoint("conflicts", control, endpoint, sizeof endpoint)) != CLI_OK)
        return status;
    status = CLI_RUNTIME;

    cli_signals_install();
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    int64_t maxmsg = WIRE_MAX_MSG;
    if (!sock) {
        fprintf(stderr, "parksync conflicts: cannot create a socket: %s\n", zmq_strerror(errno));
        goto out;
    }
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(sock, endpoint) < 0) {
        fprintf(stderr, "parksync conflicts: cannot connect to %s: %s\n", endpoint,
                zmq_strerror(errno));
        status = CLI_USAGE;
        goto out;
    }
    for (uint64_t request_id = 1; !cli_stop; request_id++) {
        Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
        Parksync__V1__ControlReply *r = NULL;
        q.has_version = q.has_request_id = true;
        q.version = WIRE_VERSION;
        q.request_id = request_id;
        q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_CONFLICTS;
        q.conflicts = &cr;
        cr.has_limit = true;
        cr.limit = limit && limit - printed < CONFLICTS_PAGE ? (uint32_t)(limit - printed)
                                                             : CONFLICTS_PAGE;
        if ((status = ask(sock, &q, (int)timeout_s * 1000, &r, endpoint)) != CLI_OK)
            goto out;
        if (r->body_case == PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR) {
            fprintf(stderr, "parksync conflicts: the daemon refused: %s\n",
                    r->error->message ? r->error->message : "(no message)");
            parksync__v1__control_reply__free_unpacked(r, NULL);
            status = CLI_RUNTIME;
            goto out;
        }
        if (r->body_case != PARKSYNC__V1__CONTROL_REPLY__BODY_CONFLICTS) {
            fprintf(stderr, "parksync conflicts: unexpected answer from %s\n", endpoint);
            parksync__v1__control_reply__free_unpacked(r, NULL);
            status = CLI_RUNTIME;
            goto out;
        }
        const Parksync__V1__ConflictList *l = r->conflicts;
        for (size_t i = 0; i < l->n_conflicts; i++) {
            if (print_conflict(l->conflicts[i]) < 0) {
                fprintf(stderr, "parksync conflicts: cannot write to stdout\n");
                parksync__v1__control_reply__free_unpacked(r, NULL);
                status = CLI_RUNTIME;
                goto out;
            }
            printed++;
        }
        bool more = l->more && l->n_conflicts > 0 && (!limit || printed < limit);
        cr.has_after_id = true;
        cr.after_id = l->next_after_id;
        parksync__v1__control_reply__free_unpacked(r, NULL);
        if (!more)
            break;
    }
    fflush(stdout);
    status = cli_stop ? CLI_RUNTIME : CLI_OK;
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return status;
}
