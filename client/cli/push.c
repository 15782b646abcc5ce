/*
 * push.c - `parksync push`: JSON lines (or CSV rows) in, updates to
 * parksyncd, acked.
 *
 * Every line (row) is parsed and validated before anything is sent, so a
 * file with one bad line changes nothing at the daemon. A CSV row becomes
 * the JSON object a line would be (csv_in.c), so both follow one set of
 * rules.
 *
 * With --outbox, a push that is killed can be run again with the same
 * outbox and input and carries on where it stopped: before the first
 * update the outbox gets notes naming the input (a hash of its bytes and
 * its size), the sequence before its first update and its update count.
 * Update k of the input then has sequence base + k, so a restarted push
 * skips the updates whose sequence the outbox already holds (they are
 * resent by the library if unacknowledged) and enqueues the rest. When
 * every update is acknowledged the notes are removed, and a note
 * "push.done:IDENTITY" remembers that this input went through: the same
 * input pushed again with the same outbox sends nothing and says so
 * (--force sends it again, as new updates). An outbox holding another
 * input's unfinished progress is refused.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "csv.h"
#include "json.h"
#include "parksync.h"
#include "wire.h"

#define PUSH_DEFAULT_TIMEOUT_S 30           /* s to wait for every ack */
#define PUSH_MAX_TIMEOUT_S     86400        /* s: longest --timeout accepted */
#define PUSH_SITE_SILENCE_MS   5000         /* ms of silence that moves to the next site */
#define PUSH_MAX_LINE          (256 * 1024) /* bytes of one input line */
#define PUSH_MAX_WINDOW        1000000      /* most --window accepted */
#define PUSH_NOTE_INPUT        "push.input" /* outbox note: identity of the input */
#define PUSH_NOTE_NAME         "push.name"  /* outbox note: the input's name, for messages */
#define PUSH_NOTE_BASE         "push.base" /* outbox note: sequence before the input's first update */
#define PUSH_NOTE_COUNT        "push.count" /* outbox note: updates in the input */
#define PUSH_NOTE_DONE         "push.done:" /* outbox note prefix: an input pushed whole */

const char CLI_PUSH_USAGE[] =
    "usage: parksync push [--producer ID] [--ingest EP] [--publish EP] [--query EP]\n"
    "                     [--outbox FILE] [--window N] [--timeout SEC]\n"
    "                     [--format jsonl|csv --kind KIND]\n"
    "                     [--server-key FILE --key FILE] [FILE|-]\n"
    "\n"
    "Reads updates as JSON lines (one object per line; blank lines and lines\n"
    "starting with # are skipped), validates all of them, then sends them to\n"
    "parksyncd and waits until every one is acknowledged.\n"
    "\n"
    "  --format csv    read CSV (RFC 4180, UTF-8, with or without a byte order\n"
    "                  mark) instead: a header row naming the fields of --kind as\n"
    "                  a JSON line would (nested ones dotted: period.year; also\n"
    "                  event_time, event_time_us, vintage), then one update per\n"
    "                  row; a list is one cell, items separated by ';'; an empty\n"
    "                  cell leaves the field out. A bad row is reported as\n"
    "                  FILE:LINE: row R, column C (NAME): reason (the header is\n"
    "                  row 1, as in a spreadsheet), and nothing is sent\n"
    "  --kind KIND     with --format csv: park, resident, trade, country or delete\n"
    "\n"
    "  --producer ID   producer id (default: $PARKSYNC_PRODUCER, else the context's)\n"
    "  --ingest EP     daemon's ingest endpoint (default " WIRE_DEFAULT_INGEST ")\n"
    "  --publish EP    daemon's publish endpoint, for acks (default " WIRE_DEFAULT_PUBLISH ")\n"
    "  --query EP      daemon's query endpoint (default " WIRE_DEFAULT_QUERY ")\n"
    "                  Each may list several sites, comma-separated, in the same order\n"
    "                  (--ingest tcp://a:7101,tcp://b:7101 ...): the push moves to the\n"
    "                  next site when the one in use is silent for 5 s\n"
    "  --outbox FILE   durable outbox (SQLite); unacknowledged updates survive a restart,\n"
    "                  and the same push run again resumes after what was enqueued\n"
    "  --window N      most unacknowledged updates in flight (default 32768)\n"
    "  --timeout SEC   give up after SEC seconds (default 30)\n"
    "  --force         send an input the outbox has already pushed whole once more, as\n"
    "                  new updates (without it, such a rerun sends nothing)\n" CLI_CURVE_USAGE "\n"
    "Exit status: 0 all acknowledged, 1 daemon unreachable, timeout, or the producer\n"
    "ahead of the daemon's database (see parksync(1)), 2 bad input\n"
    "(or an outbox holding another input's unfinished push).\n";

/* The validated updates of one input. */
typedef struct batch {
    Parksync__V1__Update **items; /* owned */
    long *lines;                  /* input line of each item */
    size_t count;                 /* used */
    size_t cap;                   /* allocated */
} batch_t;

static void batch_free(batch_t *b)
{
    for (size_t i = 0; i < b->count; i++)
        parksync__v1__update__free_unpacked(b->items[i], NULL);
    free(b->items);
    free(b->lines);
    memset(b, 0, sizeof *b);
}

static int batch_add(batch_t *b, Parksync__V1__Update *u, long line)
{
    if (b->count == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 64;
        Parksync__V1__Update **n = realloc(b->items, ncap * sizeof *n);
        if (n == NULL)
            return -ENOMEM;
        b->items = n;
        long *l = realloc(b->lines, ncap * sizeof *l);
        if (l == NULL)
            return -ENOMEM;
        b->lines = l;
        b->cap = ncap;
    }
    b->lines[b->count] = line;
    b->items[b->count++] = u;
    return 0;
}

static bool skippable(const char *line, size_t len)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
        i++;
    return i == len || line[i] == '#';
}

/* Reads and validates every line. Returns the number of bad lines (each
 * reported as FILE:LINE: reason), or -1 when the input cannot be read. */
static long read_updates(FILE *in, const char *name, const char *producer_id, batch_t *b,
                         uint64_t *hash, uint64_t *bytes)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, bad = 0;
    char why[512];

    *hash = 1469598103934665603ULL; /* FNV-1a 64 offset basis */
    *bytes = 0;
    while ((len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        for (ssize_t i = 0; i < len; i++)
            *hash = (*hash ^ (uint8_t)line[i]) * 1099511628211ULL;
        *bytes += (uint64_t)len;
        if (skippable(line, (size_t)len))
            continue;
        if (len > PUSH_MAX_LINE) {
            fprintf(stderr, "%s:%ld: line too long (%zd bytes, at most %d)\n", name, lineno, len,
                    PUSH_MAX_LINE);
            bad++;
            continue;
        }
        Parksync__V1__Update *u = NULL;
        if (json_to_update(line, (size_t)len, &u, why, sizeof why) < 0 ||
            json_update_check(u, producer_id, why, sizeof why) < 0) {
            fprintf(stderr, "%s:%ld: %s\n", name, lineno, why);
            bad++;
            if (u != NULL)
                parksync__v1__update__free_unpacked(u, NULL);
            continue;
        }
        if (batch_add(b, u, lineno) < 0) {
            parksync__v1__update__free_unpacked(u, NULL);
            fprintf(stderr, "%s:%ld: out of memory\n", name, lineno);
            free(line);
            return -1;
        }
    }
    free(line);
    if (ferror(in)) {
        fprintf(stderr, "parksync push: cannot read %s: %s\n", name, strerror(errno));
        return -1;
    }
    return bad;
}

/* The whole input in memory, hashed as read_updates hashes it (the
 * outbox knows an input by its bytes). NULL after saying why. */
static char *slurp_input(FILE *in, const char *name, size_t *len, uint64_t *hash)
{
    size_t cap = 0, n;
    char *data = NULL;

    *len = 0;
    *hash = 1469598103934665603ULL; /* FNV-1a 64 offset basis */
    do {
        if (*len + 65536 > cap) {
            char *more = realloc(data, cap = cap * 2 + 65536);
            if (more == NULL) {
                fprintf(stderr, "parksync push: %s: out of memory\n", name);
                free(data);
                return NULL;
            }
            data = more;
        }
        n = fread(data + *len, 1, cap - *len, in);
        for (size_t i = 0; i < n; i++)
            *hash = (*hash ^ (uint8_t)data[*len + i]) * 1099511628211ULL;
        *len += n;
    } while (n > 0);
    if (ferror(in)) {
        fprintf(stderr, "parksync push: cannot read %s: %s\n", name, strerror(errno));
        free(data);
        return NULL;
    }
    return data;
}

/* read_updates for CSV: the header row resolved against kind, then one
 * update per row (blank rows skipped). Returns the bad rows (each
 * reported as FILE:LINE: row R, column C (NAME): reason), or -1. */
static long read_csv_updates(FILE *in, const char *name, const char *kind, const char *producer_id,
                             batch_t *b, uint64_t *hash, uint64_t *bytes)
{
    csv_header_t h = {0};
    csv_reader_t *r = NULL;
    csv_row_t row;
    size_t len = 0, col;
    long bad = 0;
    char why[1024];
    int rc;
    char *data = slurp_input(in, name, &len, hash);
    FILE *mem = NULL;

    *bytes = len;
    if (data == NULL)
        return -1;
    if (len == 0 || (mem = fmemopen(data, len, "r")) == NULL || (r = csv_reader_new(mem)) == NULL) {
        fprintf(stderr, "%s: %s\n", name, len == 0 ? "empty: no header row" : "out of memory");
        bad = len == 0 ? 1 : -1;
        goto out;
    }
    if ((rc = csv_next(r, &row, why, sizeof why)) <= 0 ||
        csv_header_parse(&h, kind, &row, why, sizeof why) < 0) {
        fprintf(stderr, "%s:%ld: header row: %s\n", name, rc > 0 ? row.line : 1,
                rc == 0 ? "missing" : why);
        bad = 1;
        goto out;
    }
    while ((rc = csv_next(r, &row, why, sizeof why)) != 0) {
        Parksync__V1__Update *u = NULL;
        if (rc < 0) {
            fprintf(stderr, "%s: %s\n", name, why); /* the reader cannot go on */
            bad++;
            break;
        }
        if (row.count == 1 && row.fields[0][0] == '\0')
            continue;
        if (csv_row_to_update(&h, &row, &u, &col, why, sizeof why) < 0 ||
            json_update_check(u, producer_id, why, sizeof why) < 0) {
            if (col > 0)
                fprintf(stderr, "%s:%ld: row %ld, column %zu (%s): %s\n", name, row.line,
                        row.number, col, h.names[col - 1], why);
            else
                fprintf(stderr, "%s:%ld: row %ld: %s\n", name, row.line, row.number, why);
            bad++;
            if (u != NULL)
                parksync__v1__update__free_unpacked(u, NULL);
            continue;
        }
        if (batch_add(b, u, row.line) < 0) {
            parksync__v1__update__free_unpacked(u, NULL);
            fprintf(stderr, "%s:%ld: out of memory\n", name, row.line);
            bad = -1;
            break;
        }
    }
out:
    csv_header_free(&h);
    csv_reader_destroy(&r);
    if (mem != NULL)
        fclose(mem);
    free(data);
    return bad;
}

/* Reads an unsigned outbox note; false when absent or malformed. */
static bool note_u64(ps_producer_t *p, const char *key, uint64_t *v)
{
    char buf[32], *end = NULL;

    if (ps_producer_note(p, key, buf, sizeof buf) != PS_OK)
        return false;
    errno = 0;
    unsigned long long x = strtoull(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\0')
        return false;
    *v = (uint64_t)x;
    return true;
}

/* Decides where a push with an outbox starts. Returns the index of the
 * first update to enqueue, or -1 after printing why it must not go on
 * (another input's unfinished progress), or -2 on an outbox failure. */
static long resume_point(ps_producer_t *p, const char *outbox, const char *name,
                         const char *identity, const batch_t *b)
{
    char have[128], prev[256] = "?";
    uint64_t base = 0, count = 0, last = ps_producer_last_sent(p);
    char num[32];

    if (ps_producer_note(p, PUSH_NOTE_INPUT, have, sizeof have) == PS_OK &&
        note_u64(p, PUSH_NOTE_BASE, &base) && note_u64(p, PUSH_NOTE_COUNT, &count)) {
        uint64_t done = last > base ? last - base : 0;
        if (done > count)
            done = count;
        if (strcmp(have, identity) == 0 && count == b->count) {
            if (done > 0)
                fprintf(stderr,
                        "resuming %s after line %ld (%" PRIu64 " of %zu updates were "
                        "already enqueued)\n",
                        name, b->lines[done - 1], done, b->count);
            return (long)done;
        }
        if (ps_producer_last_acked(p) < base + count) {
            ps_producer_note(p, PUSH_NOTE_NAME, prev, sizeof prev);
            fprintf(stderr,
                    "parksync push: the outbox %s holds the unfinished push of another "
                    "input (%s: %" PRIu64 " of %" PRIu64 " updates enqueued, "
                    "acknowledged up to sequence %" PRIu64 "); finish that push with "
                    "its own input first, or use another outbox; nothing was sent\n",
                    outbox, prev, done, count, ps_producer_last_acked(p));
            return -1;
        }
    }
    snprintf(num, sizeof num, "%" PRIu64, last);
    if (ps_producer_set_note(p, PUSH_NOTE_INPUT, identity) != PS_OK ||
        ps_producer_set_note(p, PUSH_NOTE_NAME, name) != PS_OK ||
        ps_producer_set_note(p, PUSH_NOTE_BASE, num) != PS_OK)
        return -2;
    snprintf(num, sizeof num, "%zu", b->count);
    if (ps_producer_set_note(p, PUSH_NOTE_COUNT, num) != PS_OK)
        return -2;
    return 0;
}

/* Why acknowledgements did not come, when the daemon's heartbeats said
 * it is degraded: "; parksyncd reports: REASON (since T)", else "". */
static const char *daemon_says(const ps_producer_t *p, char *buf, size_t size)
{
    int64_t since_us = 0;
    const char *why = ps_producer_daemon_health(p, &since_us);
    time_t t = (time_t)(since_us / 1000000);
    char when[32] = "?";
    struct tm tm;

    if (why == NULL)
        return "";
    if (since_us > 0 && gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(buf, size, "; parksyncd reports itself degraded since %s: %s", when, why);
    return buf;
}

/* The producer is ahead of the daemon's database (it was restored from a
 * backup): its lost sequences can only come from the source again. */
static void report_ahead(ps_producer_t *p, const char *outbox)
{
    uint64_t from = 0, to = 0;

    ps_producer_missing(p, &from, &to);
    fprintf(stderr, "parksync push: %s\n", ps_producer_last_error(p));
    if (outbox != NULL)
        fprintf(stderr,
                "parksync push: the outbox %s holds only updates after sequence %" PRIu64
                ", which the daemon will never apply; move it aside and push the data again "
                "from its source (what was pushed since the backup) with a new outbox: "
                "numbering then resumes at %" PRIu64 "; nothing more was sent\n",
                outbox, to, from);
    else
        fprintf(stderr,
                "parksync push: push the data of sequences %" PRIu64 "..%" PRIu64
                " again from its source; a new push numbers after what the daemon holds\n",
                from, to);
}

/* True when the outbox remembers this input as pushed whole; says so. */
static bool already_pushed(ps_producer_t *p, const char *outbox, const char *name,
                           const char *identity)
{
    char key[192], what[320];

    if (ps_producer_note(p, PUSH_NOTE_INPUT, what, sizeof what) == PS_OK &&
        strcmp(what, identity) == 0)
        return false; /* a push of it (--force) was cut short: it resumes */
    snprintf(key, sizeof key, "%s%s", PUSH_NOTE_DONE, identity);
    if (ps_producer_note(p, key, what, sizeof what) != PS_OK)
        return false;
    fprintf(stderr,
            "parksync push: %s is already pushed, whole, with the outbox %s (%s); nothing "
            "was sent (--force sends it again as new updates)\n",
            name, outbox, what);
    return true;
}

/* Remembers in the outbox that this input went through, whole. */
static void remember_pushed(ps_producer_t *p, const char *name, const char *identity, uint64_t base,
                            uint64_t last)
{
    char key[192], what[320];

    snprintf(key, sizeof key, "%s%s", PUSH_NOTE_DONE, identity);
    snprintf(what, sizeof what, "as %s, sequences %" PRIu64 "..%" PRIu64, name, base + 1, last);
    if (ps_producer_set_note(p, key, what) != PS_OK)
        fprintf(stderr,
                "parksync push: every update is acknowledged, but the outbox could not "
                "remember it: %s; running this push again would send it again\n",
                ps_producer_last_error(p));
}

static int64_t remaining_ms(int64_t deadline)
{
    int64_t left = deadline - wire_monotonic_ms();
    return left > 0 ? left : 0;
}

int cmd_push(int argc, char **argv, const ps_profile_t *prof)
{
    static const struct option LONG[] = {{"producer", required_argument, NULL, 'p'},
                                         {"ingest", required_argument, NULL, 'i'},
                                         {"publish", required_argument, NULL, 'P'},
                                         {"query", required_argument, NULL, 'q'},
                                         {"outbox", required_argument, NULL, 'o'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"window", required_argument, NULL, 'w'},
                                         {"force", no_argument, NULL, 'f'},
                                         {"format", required_argument, NULL, 'F'},
                                         {"kind", required_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {"control", required_argument, NULL, 'C'},
                                         CLI_CURVE_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    cli_curve_t curve = {0};
    ps_producer_options_t opts;
    ps_producer_t *p = NULL;
    batch_t batch = {0};
    FILE *in = NULL;
    const char *name = "-";
    long timeout_s = PUSH_DEFAULT_TIMEOUT_S;
    int status = CLI_USAGE, c;
    uint64_t hash = 0, bytes = 0;
    long first = 0;
    char identity[64], says[640];
    bool force = false, csv = false;
    const char *kind = NULL;
    uint64_t base = 0;
    ps_err_t err;

    ps_producer_options_init(&opts);
    ps_profile_producer_options(prof, &opts);
    cli_curve_defaults(&curve, prof);
    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        switch (c) {
        case 'p':
            opts.producer_id = optarg;
            break;
        case 'i':
            opts.ingest_endpoint = optarg;
            break;
        case 'P':
            opts.publish_endpoint = optarg;
            break;
        case 'q':
            opts.query_endpoint = optarg;
            break;
        case 'o':
            opts.outbox_path = optarg;
            break;
        case 'C':
            break; /* accepted so one set of endpoint flags fits every command */
        case 't': {
            char *end = NULL;
            errno = 0;
            timeout_s = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || timeout_s < 1 ||
                timeout_s > PUSH_MAX_TIMEOUT_S) {
                fprintf(stderr, "parksync push: --timeout wants whole seconds 1..%d, got '%s'\n",
                        PUSH_MAX_TIMEOUT_S, optarg);
                return CLI_USAGE;
            }
            break;
        }
        case 'f':
            force = true;
            break;
        case 'F':
            if (strcmp(optarg, "csv") != 0 && strcmp(optarg, "jsonl") != 0) {
                fprintf(stderr, "parksync push: --format wants jsonl or csv, got '%s'\n", optarg);
                return CLI_USAGE;
            }
            csv = strcmp(optarg, "csv") == 0;
            break;
        case 'k':
            kind = optarg;
            break;
        case 'w': {
            char *end = NULL;
            errno = 0;
            long w = strtol(optarg, &end, 10);
            if (errno != 0 || end == optarg || *end != '\0' || w < 1 || w > PUSH_MAX_WINDOW) {
                fprintf(stderr, "parksync push: --window wants a count 1..%d, got '%s'\n",
                        PUSH_MAX_WINDOW, optarg);
                return CLI_USAGE;
            }
            opts.window = (unsigned)w;
            break;
        }
        case 'h':
            fputs(CLI_PUSH_USAGE, stdout);
            return CLI_OK;
        default:
            if (cli_curve_option(&curve, c, optarg))
                break;
            fputs(CLI_PUSH_USAGE, stderr);
            return CLI_USAGE;
        }
    }
    if (cli_curve_load(&curve) != CLI_OK)
        return CLI_USAGE;
    opts.server_public_key = CLI_CURVE_SERVER(&curve);
    opts.secret_key = CLI_CURVE_SECRET(&curve);
    if (argc - optind > 1) {
        fprintf(stderr, "parksync push: one input file at most\n%s", CLI_PUSH_USAGE);
        return CLI_USAGE;
    }
    if (csv != (kind != NULL)) {
        fprintf(stderr, "parksync push: %s; nothing was sent\n",
                csv ? "--format csv needs --kind (park, resident, trade, country or delete): "
                      "every row of a CSV file is one kind"
                    : "--kind goes with --format csv (a JSON line names its own kind)");
        return CLI_USAGE;
    }
    if (opts.producer_id == NULL || opts.producer_id[0] == '\0') {
        fprintf(stderr, "parksync push: no producer id: give --producer ID or set "
                        "PARKSYNC_PRODUCER; nothing was sent\n");
        return CLI_USAGE;
    }
    if (!wire_id_valid(opts.producer_id)) {
        fprintf(stderr,
                "parksync push: producer id '%s' is not 1..64 characters of "
                "[A-Za-z0-9._-]; nothing was sent\n",
                opts.producer_id);
        return CLI_USAGE;
    }
    if (optind < argc && strcmp(argv[optind], "-") != 0) {
        name = argv[optind];
        in = fopen(name, "r");
        if (in == NULL) {
            fprintf(stderr, "parksync push: cannot open %s: %s; nothing was sent\n", name,
                    strerror(errno));
            return CLI_USAGE;
        }
    } else {
        in = stdin;
    }

    long bad = csv ? read_csv_updates(in, name, kind, opts.producer_id, &batch, &hash, &bytes)
                   : read_updates(in, name, opts.producer_id, &batch, &hash, &bytes);
    if (bad != 0) {
        if (bad > 0)
            fprintf(stderr, "parksync push: %ld bad %s%s in %s; nothing was sent\n", bad,
                    csv ? "row" : "line", bad == 1 ? "" : "s", name);
        status = CLI_USAGE;
        goto close_input;
    }

    int64_t deadline = wire_monotonic_ms() + timeout_s * 1000;
    opts.connect_timeout_ms = (int)remaining_ms(deadline);
    if (opts.query_endpoint && strchr(opts.query_endpoint, ',') &&
        opts.connect_timeout_ms > PUSH_SITE_SILENCE_MS)
        opts.connect_timeout_ms = PUSH_SITE_SILENCE_MS; /* several sites: each gets this */
    cli_signals_install();
    p = ps_producer_new(&opts, &err);
    if (p == NULL) {
        if (err == PS_ERR_TIMEOUT)
            fprintf(stderr,
                    "parksync push: parksyncd did not answer at %s within %ld s; "
                    "nothing was sent\n",
                    opts.query_endpoint, timeout_s);
        else if (err == PS_ERR_OUTBOX)
            fprintf(stderr,
                    "parksync push: cannot use the outbox %s (unreadable, or kept by "
                    "another producer id than %s); nothing was sent\n",
                    opts.outbox_path, opts.producer_id);
        else
            fprintf(stderr, "parksync push: cannot start producer %s: %s; nothing was sent\n",
                    opts.producer_id, ps_strerror(err));
        status = err == PS_ERR_INVALID ? CLI_USAGE : CLI_RUNTIME;
        goto close_input;
    }
    status = CLI_RUNTIME;
    if (ps_producer_missing(p, &(uint64_t){0}, &(uint64_t){0})) {
        report_ahead(p, opts.outbox_path);
        goto destroy;
    }
    if (opts.outbox_path != NULL) {
        snprintf(identity, sizeof identity, "fnv1a64:%016" PRIx64 ":%" PRIu64, hash, bytes);
        if (!force && already_pushed(p, opts.outbox_path, name, identity)) {
            status = CLI_OK;
            goto destroy;
        }
        first = resume_point(p, opts.outbox_path, name, identity, &batch);
        if (first == -1) {
            status = CLI_USAGE;
            goto destroy;
        }
        if (first < 0) {
            fprintf(stderr,
                    "parksync push: cannot write to the outbox %s: %s; nothing was "
                    "sent\n",
                    opts.outbox_path, ps_producer_last_error(p));
            goto destroy;
        }
    }
    for (size_t i = (size_t)first; i < batch.count; i++) {
        err = ps_producer_send(p, batch.items[i], NULL, (int)remaining_ms(deadline));
        if (err == PS_ERR_AHEAD) {
            report_ahead(p, opts.outbox_path);
            goto destroy;
        }
        if (err != PS_OK) {
            fprintf(stderr,
                    "parksync push: sending update %zu of %zu failed: %s%s%s%s; "
                    "%" PRIu64 " acknowledged so far%s\n",
                    i + 1, batch.count, ps_strerror(err), err == PS_ERR_INVALID ? ": " : "",
                    err == PS_ERR_INVALID ? ps_producer_last_error(p) : "",
                    daemon_says(p, says, sizeof says), ps_producer_last_acked(p),
                    opts.outbox_path ? ", the rest stays in the outbox" : "");
            goto destroy;
        }
    }
    err = ps_producer_flush(p, (int)remaining_ms(deadline));
    if (err == PS_ERR_AHEAD) {
        report_ahead(p, opts.outbox_path);
        goto destroy;
    }
    if (err != PS_OK) {
        fprintf(stderr,
                "parksync push: waiting for acknowledgements: %s%s; last sequence sent %" PRIu64
                ", last acknowledged %" PRIu64 "%s\n",
                ps_strerror(err), daemon_says(p, says, sizeof says), ps_producer_last_sent(p),
                ps_producer_last_acked(p),
                opts.outbox_path
                    ? "; unacknowledged updates stay in the outbox and are resent "
                      "by the next push with it"
                    : "; running the push again re-sends the same values, which is harmless");
        goto destroy;
    }
    if (opts.outbox_path != NULL) {
        note_u64(p, PUSH_NOTE_BASE, &base);
        remember_pushed(p, name, identity, base, ps_producer_last_sent(p));
    }
    if (opts.outbox_path != NULL && (ps_producer_set_note(p, PUSH_NOTE_INPUT, NULL) != PS_OK ||
                                     ps_producer_set_note(p, PUSH_NOTE_NAME, NULL) != PS_OK ||
                                     ps_producer_set_note(p, PUSH_NOTE_BASE, NULL) != PS_OK ||
                                     ps_producer_set_note(p, PUSH_NOTE_COUNT, NULL) != PS_OK))
        fprintf(stderr,
                "parksync push: every update is acknowledged, but clearing the "
                "outbox notes failed: %s\n",
                ps_producer_last_error(p));
    fprintf(stderr, "pushed %zu update%s, last sequence %" PRIu64 ", %" PRIu64 " resent\n",
            batch.count, batch.count == 1 ? "" : "s", ps_producer_last_sent(p),
            ps_producer_resends(p));
    status = CLI_OK;
destroy:
    ps_producer_destroy(&p);
close_input:
    batch_free(&batch);
    if (in != stdin)
        fclose(in);
    return status;
}
