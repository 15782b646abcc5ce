/*
 * cli.h - the parksync CLI's commands, one function per command.
 *
 * Each takes the command's own argv (argv[0] is the command name) and
 * returns the process exit status: CLI_OK, CLI_RUNTIME (the daemon was
 * unreachable, a timeout, a failure while running) or CLI_USAGE (bad
 * arguments or bad input). Messages go to stderr, data to stdout.
 */
#ifndef PARKSYNC_CLI_H
#define PARKSYNC_CLI_H

#include <signal.h>

#define CLI_OK 0      /* exit status: success */
#define CLI_RUNTIME 1 /* exit status: daemon unreachable, timeout, runtime failure */
#define CLI_USAGE 2   /* exit status: usage or input error */

/* Set by SIGINT/SIGTERM once cli_signals_install ran. */
extern volatile sig_atomic_t cli_stop;

/* Installs SIGINT/SIGTERM handlers that set cli_stop and interrupt waits. */
void cli_signals_install(void);

int cmd_push(int argc, char **argv);
int cmd_snapshot(int argc, char **argv);
int cmd_watch(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_conflicts(int argc, char **argv);
int cmd_producer(int argc, char **argv);

/* Usage text of each command, for `parksync COMMAND --help` and errors. */
extern const char CLI_PUSH_USAGE[];
extern const char CLI_SNAPSHOT_USAGE[];
extern const char CLI_WATCH_USAGE[];
extern const char CLI_SUMMARY_USAGE[];
extern const char CLI_CONFLICTS_USAGE[];
extern const char CLI_PRODUCER_USAGE[];

#endif /* PARKSYNC_CLI_H */
