/*
 * ops.c - the operator's one-shot commands on the control socket:
 * `parksync metrics`, `parksync backup FILE`, `parksync check`,
 * `parksync reload` and `parksync digest`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "ctl.h"
#include "wire.h"

#define METRICS_TIMEOUT_S 5   /* default --timeout of metrics */
#define BACKUP_TIMEOUT_S  600 /* default --timeout of backup: a large database takes a while */
#define RELOAD_TIMEOUT_S  30  /* default --timeout of reload */
#define CHECK_TIMEOUT_S   600 /* default --timeout of check: it reads the whole file */
#define DIGEST_TIMEOUT_S  60  /* default --timeout of digest: it reads every live record */
#define DIGEST_BYTES      32  /* BLAKE2b-256 */

const char CLI_METRICS_USAGE[] =
    "usage: parksync metrics [--control EP] [--timeout SEC]\n"
    "\n"
    "Prints parksyncd's metrics in the Prometheus text exposition format (0.0.4).\n"
    "The daemon also serves them on http://HOST:PORT/metrics when [metrics] http\n"
    "is set (loopback addresses only).\n"
    "\n" CTL_USAGE("5") "\n"
                        "Exit status: 0 printed, 1 daemon unreachable, 2 bad arguments.\n";

const char CLI_BACKUP_USAGE[] =
    "usage: parksync backup [--control EP] [--timeout SEC] FILE\n"
    "\n"
    "Has parksyncd copy its database to FILE with SQLite's online backup API while\n"
    "it keeps running: the copy is consistent (the database as of one commit), built\n"
    "in FILE.tmp, fsynced and renamed. FILE must be an absolute path: the daemon\n"
    "writes it, as its own user, so it must be able to write its directory (under\n"
    "systemd: the state directory, e.g. /var/lib/parksync/backup.db). Prints\n"
    "{\"path\":FILE,\"bytes\":N,\"revision\":R} when the copy is complete.\n"
    "\n"
    "Before the copy takes its name the daemon runs SQLite's quick_check on it: a\n"
    "malformed copy (the live database is then malformed too) is removed, nothing\n"
    "is left at FILE, and the command fails saying what quick_check found.\n"
    "\n" CTL_USAGE(
        "600") "\n"
               "Exit status: 0 done, 1 daemon unreachable or the backup failed, 2 bad arguments.\n";

const char CLI_CHECK_USAGE[] =
    "usage: parksync check [--control EP] [--timeout SEC]\n"
    "\n"
    "Has parksyncd run SQLite's quick_check on its live database: every page of\n"
    "every table and index is read and its structure verified. It runs on a thread\n"
    "of the daemon's own, so ingest and queries go on; it takes about as long as\n"
    "reading the file. Prints {\"ok\":true,\"bytes\":N,\"seconds\":S} when nothing is\n"
    "wrong.\n"
    "\n"
    "A malformed database: the findings go to stderr, the exit status is 1, and the\n"
    "daemon reports itself degraded (`parksync status`, STATUS=, metrics) until a\n"
    "check passes. Stop it, restore the last good backup (each `parksync backup`\n"
    "is checked), start it, and push again from the producers' sources what came\n"
    "after that backup.\n"
    "\n" CTL_USAGE(
        "600") "\n"
               "Exit status: 0 sound, 1 malformed, daemon unreachable or the check could not\n"
               "run, 2 bad arguments.\n";

const char CLI_RELOAD_USAGE[] =
    "usage: parksync reload [--control EP] [--timeout SEC]\n"
    "\n"
    "Has parksyncd re-read its configuration file, as SIGHUP does, and answers once\n"
    "it is applied, or refused: an invalid file keeps the running configuration and\n"
    "the message says why (file:line). For ExecReload= in the systemd unit.\n"
    "\n" CTL_USAGE(
        "30") "\n"
              "Exit status: 0 reloaded, 1 daemon unreachable or the file was refused, 2 bad\n"
              "arguments.\n";

const char CLI_DIGEST_USAGE[] =
    "usage: parksync digest [--json] [--control EP] [--timeout SEC]\n"
    "\n"
    "Prints the digest of parksyncd's consolidated picture (BLAKE2b-256 over every\n"
    "live record, in key order), the head revision it was taken at and the site's\n"
    "name:\n"
    "\n"
    "  digest 3f1a...e0  head 1234  site az-baku-1\n"
    "\n"
    "Two sites with equal digests hold the same picture, whatever order their\n"
    "updates came in: run it on each to see that replication has converged. It\n"
    "reads every live record, between two batches of the daemon's loop.\n"
    "\n"
    "  --json          "
    "{\"digest\":HEX,\"head_revision\":N,\"epoch\":HEX,\"site\":NAME}\n" CTL_USAGE(
        "60") "\n"
              "Exit status: 0 printed, 1 daemon unreachable, 2 bad arguments.\n";

/* Parses the common options, and --json when json is not NULL (it is
 * set then), and checks the operands: none when operand is NULL, else
 * exactly one, named so in the message. Returns -1 to go on, else the
 * exit status. *rest is the first operand. */
static int parse(int argc, char **argv, ctl_opts_t *o, const char *usage, const char *operand,
                 int *rest, bool *json)
{
    static const struct option LONG[] = {CTL_OPTIONS, {NULL, 0, NULL, 0}};
    static const struct option LONG_JSON[] = {
        {"json", no_argument, NULL, 'j'}, CTL_OPTIONS, {NULL, 0, NULL, 0}};
    int c, rc;

    optind = 0;
    while ((c = getopt_long(argc, argv, "+h", json ? LONG_JSON : LONG, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return CLI_OK;
        }
        if (c == 'j' && json) {
            *json = true;
            continue;
        }
        if ((rc = ctl_option(o, c, optarg)) < 0)
            return CLI_USAGE;
        if (rc == 0) {
            fputs(usage, stderr);
            return CLI_USAGE;
        }
    }
    *rest = optind;
    if (!operand && optind < argc) {
        fprintf(stderr, "parksync %s: unexpected argument '%s'\n%s", o->cmd, argv[optind], usage);
        return CLI_USAGE;
    }
    if (operand && argc - optind != 1) {
        fprintf(stderr, "parksync %s: one %s expected\n%s", o->cmd, operand, usage);
        return CLI_USAGE;
    }
    return -1;
}

/* Prints j on one line and frees it. */
static int print_json(json_t *j)
{
    int rc = j ? json_dumpf(j, stdout, JSON_COMPACT) : -1;

    json_decref(j);
    if (rc < 0 || putchar('\n') == EOF || fflush(stdout) != 0) {
        fprintf(stderr, "parksync: cannot write the answer\n");
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

int cmd_metrics(int argc, char **argv, const ps_profile_t *prof)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__MetricsRequest mr = PARKSYNC__V1__METRICS_REQUEST__INIT;
    Parksync__V1__ControlReply *r = NULL;
    ctl_opts_t o = {"metrics", CTL_PROFILE_CONTROL(prof), METRICS_TIMEOUT_S};
    int rest, status = parse(argc, argv, &o, CLI_METRICS_USAGE, NULL, &rest, NULL);

    if (status >= 0)
        return status;
    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_METRICS;
    q.metrics = &mr;
    if ((status = ctl_ask(&o, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_METRICS, &r)) != CLI_OK)
        return status;
    if (!r->metrics->text) {
        fprintf(stderr, "parksync metrics: unexpected answer\n");
        status = CLI_RUNTIME;
    } else {
        fputs(r->metrics->text, stdout);
        status = fflush(stdout) == 0 ? CLI_OK : CLI_RUNTIME;
    }
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return status;
}

int cmd_backup(int argc, char **argv, const ps_profile_t *prof)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__BackupRequest br = PARKSYNC__V1__BACKUP_REQUEST__INIT;
    Parksync__V1__ControlReply *r = NULL;
    ctl_opts_t o = {"backup", CTL_PROFILE_CONTROL(prof), BACKUP_TIMEOUT_S};
    int rest, status = parse(argc, argv, &o, CLI_BACKUP_USAGE, "FILE", &rest, NULL);

    if (status >= 0)
        return status;
    if (argv[rest][0] != '/') {
        fprintf(stderr,
                "parksync backup: FILE must be an absolute path (the daemon writes "
                "it, in its own working directory otherwise), got '%s'\n",
                argv[rest]);
        return CLI_USAGE;
    }
    br.path = argv[rest];
    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_BACKUP;
    q.backup = &br;
    if ((status = ctl_ask(&o, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_BACKUP, &r)) != CLI_OK)
        return status;
    status = print_json(
        json_pack("{s:s, s:I, s:I}", "path", r->backup->path ? r->backup->path : br.path, "bytes",
                  (json_int_t)r->backup->bytes, "revision", (json_int_t)r->backup->revision));
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return status;
}

int cmd_check(int argc, char **argv, const ps_profile_t *prof)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__CheckRequest cr = PARKSYNC__V1__CHECK_REQUEST__INIT;
    Parksync__V1__ControlReply *r = NULL;
    ctl_opts_t o = {"check", CTL_PROFILE_CONTROL(prof), CHECK_TIMEOUT_S};
    int rest, status = parse(argc, argv, &o, CLI_CHECK_USAGE, NULL, &rest, NULL);

    if (status >= 0)
        return status;
    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_CHECK;
    q.check = &cr;
    if ((status = ctl_ask(&o, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_CHECK, &r)) != CLI_OK)
        return status;
    if (!r->check->ok) {
        fprintf(stderr,
                "parksync check: database malformed: %s\n"
                "parksync check: parksyncd reports itself degraded until a check passes; stop "
                "it, restore the last good backup, start it, and push again what came after "
                "that backup\n",
                r->check->findings ? r->check->findings : "(no findings)");
        status = CLI_RUNTIME;
    } else {
        status =
            print_json(json_pack("{s:b, s:I, s:f}", "ok", 1, "bytes", (json_int_t)r->check->bytes,
                                 "seconds", (double)r->check->took_us / 1e6));
    }
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return status;
}

int cmd_reload(int argc, char **argv, const ps_profile_t *prof)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__ReloadRequest rr = PARKSYNC__V1__RELOAD_REQUEST__INIT;
    Parksync__V1__ControlReply *r = NULL;
    ctl_opts_t o = {"reload", CTL_PROFILE_CONTROL(prof), RELOAD_TIMEOUT_S};
    int rest, status = parse(argc, argv, &o, CLI_RELOAD_USAGE, NULL, &rest, NULL);

    if (status >= 0)
        return status;
    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_RELOAD;
    q.reload = &rr;
    if ((status = ctl_ask(&o, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_RELOAD, &r)) != CLI_OK)
        return status;
    if (r->reload->ok) {
        printf("%s\n", r->reload->message ? r->reload->message : "reloaded");
        status = CLI_OK;
    } else {
        fprintf(stderr,
                "parksync reload: refused: %s; the daemon keeps running with the "
                "previous configuration\n",
                r->reload->message ? r->reload->message : "(no message)");
        status = CLI_RUNTIME;
    }
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return status;
}

/* Lower-case hex of b into buf (2 * len + 1 bytes). */
static void hex(char *buf, const ProtobufCBinaryData *b)
{
    for (size_t i = 0; i < b->len; i++)
        snprintf(buf + 2 * i, 3, "%02x", b->data[i]);
    buf[2 * b->len] = '\0';
}

int cmd_digest(int argc, char **argv, const ps_profile_t *prof)
{
    Parksync__V1__ControlRequest q = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__DigestRequest dr = PARKSYNC__V1__DIGEST_REQUEST__INIT;
    Parksync__V1__ControlReply *r = NULL;
    const Parksync__V1__Digest *d;
    ctl_opts_t o = {"digest", CTL_PROFILE_CONTROL(prof), DIGEST_TIMEOUT_S};
    char digest[2 * DIGEST_BYTES + 1], epoch[2 * WIRE_EPOCH_BYTES + 1] = "";
    bool json = false;
    int rest, status = parse(argc, argv, &o, CLI_DIGEST_USAGE, NULL, &rest, &json);

    if (status >= 0)
        return status;
    q.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_DIGEST;
    q.digest = &dr;
    if ((status = ctl_ask(&o, &q, PARKSYNC__V1__CONTROL_REPLY__BODY_DIGEST, &r)) != CLI_OK)
        return status;
    d = r->digest;
    if (!d->has_digest || d->digest.len != DIGEST_BYTES || !d->has_head_revision ||
        (d->has_epoch && d->epoch.len != WIRE_EPOCH_BYTES) ||
        (d->site && !wire_id_valid(d->site))) {
        fprintf(stderr, "parksync digest: unexpected answer (no 32-byte digest, or a malformed "
                        "field)\n");
        parksync__v1__control_reply__free_unpacked(r, NULL);
        return CLI_RUNTIME;
    }
    hex(digest, &d->digest);
    if (d->has_epoch)
        hex(epoch, &d->epoch);
    if (json) {
        status = print_json(json_pack("{s:s, s:I, s:o, s:o}", "digest", digest, "head_revision",
                                      (json_int_t)d->head_revision, "epoch",
                                      d->has_epoch ? json_string(epoch) : json_null(), "site",
                                      d->site ? json_string(d->site) : json_null()));
    } else {
        printf("digest %s  head %" PRIu64 "  site %s\n", digest, d->head_revision,
               d->site ? d->site : "-");
        status = fflush(stdout) == 0 ? CLI_OK : CLI_RUNTIME;
    }
    parksync__v1__control_reply__free_unpacked(r, NULL);
    return status;
}
