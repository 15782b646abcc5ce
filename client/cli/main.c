/*
 * main.c - the parksync command: dispatch to one command per verb.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* One verb. */
typedef struct command {
    const char *name;                  /* as typed */
    int (*run)(int argc, char **argv); /* entry point, argv[0] = name */
    const char *summary;               /* one line for --help */
} command_t;

static const command_t COMMANDS[] = {
    {"push", cmd_push, "send updates (JSON lines) to parksyncd and wait for acknowledgement"},
    {"snapshot", cmd_snapshot, "print the consolidated records as JSON lines"},
    {"watch", cmd_watch, "print the snapshot, then every change as it happens"},
    {"summary", cmd_summary, "print the consolidated summary per country"},
    {"conflicts", cmd_conflicts, "list refused, stale, overridden and non-authoritative updates"},
    {"producer", cmd_producer, "print what parksyncd counted for one producer (JSON)"},
    {"keygen", cmd_keygen, "write a CURVE key pair (NAME.key, NAME.pub) for [security] curve"},
    {"status", cmd_status, "print what parksyncd is doing (producers, subscribers, sizes, ...)"},
    {"metrics", cmd_metrics, "print parksyncd's metrics in the Prometheus text format"},
    {"backup", cmd_backup, "copy the live database to FILE (SQLite online backup, checked)"},
    {"check", cmd_check, "have parksyncd check its live database (SQLite quick_check)"},
    {"reload", cmd_reload, "re-read parksyncd's configuration and wait until it is applied"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: parksync COMMAND [OPTIONS]\n"
                 "       parksync COMMAND --help\n"
                 "       parksync --version\n\n"
                 "Client of parksyncd, the industrial parks synchronisation daemon.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\nExit status: 0 success, 1 daemon unreachable or runtime failure,\n"
                 "2 usage or input error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("parksync %s\n", PARKSYNC_VERSION);
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(argv[1], COMMANDS[i].name) == 0)
            return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "parksync: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
