/*
 * cli.h - the parksync CLI's commands, one function per command.
 *
 * Each takes the command's own argv (argv[0] is the command name) and the
 * client profile in effect (PARKSYNC_* environment and the chosen
 * context; the key files are named there, not read), whose settings its
 * own flags override, and returns the process exit status: CLI_OK, CLI_RUNTIME (the daemon was
 * unreachable, a timeout, a failure while running) or CLI_USAGE (bad
 * arguments or bad input). Messages go to stderr, data to stdout.
 */
#ifndef PARKSYNC_CLI_H
#define PARKSYNC_CLI_H

#include <signal.h>

#include "parksync.h"

#define CLI_OK      0 /* exit status: success */
#define CLI_RUNTIME 1 /* exit status: daemon unreachable, timeout, runtime failure */
#define CLI_USAGE   2 /* exit status: usage or input error */

/* Set by SIGINT/SIGTERM once cli_signals_install ran. */
extern volatile sig_atomic_t cli_stop;

/* Installs SIGINT/SIGTERM handlers that set cli_stop and interrupt waits. */
void cli_signals_install(void);

int cmd_push(int argc, char **argv, const ps_profile_t *prof);
int cmd_snapshot(int argc, char **argv, const ps_profile_t *prof);
int cmd_watch(int argc, char **argv, const ps_profile_t *prof);
int cmd_summary(int argc, char **argv, const ps_profile_t *prof);
int cmd_conflicts(int argc, char **argv, const ps_profile_t *prof);
int cmd_producer(int argc, char **argv, const ps_profile_t *prof);
int cmd_keygen(int argc, char **argv, const ps_profile_t *prof);
int cmd_status(int argc, char **argv, const ps_profile_t *prof);
int cmd_metrics(int argc, char **argv, const ps_profile_t *prof);
int cmd_backup(int argc, char **argv, const ps_profile_t *prof);
int cmd_reload(int argc, char **argv, const ps_profile_t *prof);
int cmd_check(int argc, char **argv, const ps_profile_t *prof);
int cmd_digest(int argc, char **argv, const ps_profile_t *prof);

/* `parksync context`: context is --context's NAME or NULL. It resolves
 * what it shows itself, so that `use` can repair a broken default. */
int cmd_context(int argc, char **argv, const char *context);

/* Usage text of each command, for `parksync COMMAND --help` and errors. */
extern const char CLI_PUSH_USAGE[];
extern const char CLI_SNAPSHOT_USAGE[];
extern const char CLI_WATCH_USAGE[];
extern const char CLI_SUMMARY_USAGE[];
extern const char CLI_CONFLICTS_USAGE[];
extern const char CLI_PRODUCER_USAGE[];
extern const char CLI_KEYGEN_USAGE[];
extern const char CLI_STATUS_USAGE[];
extern const char CLI_METRICS_USAGE[];
extern const char CLI_BACKUP_USAGE[];
extern const char CLI_RELOAD_USAGE[];
extern const char CLI_CHECK_USAGE[];
extern const char CLI_DIGEST_USAGE[];
extern const char CLI_CONTEXT_USAGE[];

/* CURVE keys read from the files of --server-key and --key (curve.c). */
typedef struct cli_curve {
    const char *server_file; /* --server-key FILE, or NULL */
    const char *key_file;    /* --key FILE, or NULL */
    char server[41];         /* the daemon's public key, Z85; "" when plain */
    char secret[41];         /* our secret key, Z85 */
} cli_curve_t;

/* The options every networked command takes, for getopt_long tables. */
#define CLI_CURVE_OPTIONS                                                                          \
    {"server-key", required_argument, NULL, 0x5301},                                               \
    {                                                                                              \
        "key", required_argument, NULL, 0x5302                                                     \
    }
#define CLI_CURVE_USAGE                                                                            \
    "  --server-key FILE  the daemon's public key file (NAME.pub): use CURVE\n"                    \
    "  --key FILE         our secret key file (NAME.key), with --server-key\n" CLI_CONTEXT_HELP

/* --context, which main.c takes for every command: its help line. */
#define CLI_CONTEXT_HELP                                                                           \
    "  --context NAME     endpoints, keys and producer of a client context, under\n"               \
    "                     the flags and PARKSYNC_* variables (parksync context --help)\n"

/* Handles getopt's value c when it is one of CLI_CURVE_OPTIONS (records
 * arg in *cv, zero-initialised by the caller) and returns 1; 0 for any
 * other option. */
int cli_curve_option(cli_curve_t *cv, int c, const char *arg);

/* Starts cv with the key files the profile names (server_key, key), for
 * --server-key and --key to override. */
void cli_curve_defaults(cli_curve_t *cv, const ps_profile_t *prof);

/* Reads the files the options (or the profile) named into cv->server and
 * cv->secret. With neither the keys stay "" (plain). Returns CLI_OK, or
 * CLI_USAGE after printing why (a file unreadable, a secret key open to
 * others, one file without the other). */
int cli_curve_load(cli_curve_t *cv);

/* The keys for libparksync's options: NULL when plain. */
#define CLI_CURVE_SERVER(cv) ((cv)->server[0] ? (cv)->server : NULL)
#define CLI_CURVE_SECRET(cv) ((cv)->secret[0] ? (cv)->secret : NULL)

#endif /* PARKSYNC_CLI_H */
