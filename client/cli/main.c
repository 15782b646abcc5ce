/*
 * main.c - the parksync command: takes out --context NAME (before or
 * after the verb), resolves the client profile once, and dispatches to
 * one command per verb.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* One verb. */
typedef struct command {
    const char *name;                                            /* as typed */
    int (*run)(int argc, char **argv, const ps_profile_t *prof); /* entry point, argv[0] = name */
    const char *summary;                                         /* one line for --help */
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
    {"digest", cmd_digest, "print the digest of parksyncd's consolidated picture (sites agree?)"},
    {"context", NULL, "list, show or choose the client contexts (endpoints and keys by name)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: parksync [--context NAME] COMMAND [OPTIONS]\n"
                 "       parksync COMMAND --help\n"
                 "       parksync --version\n\n"
                 "Client of parksyncd, the industrial parks synchronisation daemon.\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\nEvery command takes --context NAME, before or after it: the endpoints\n"
                 "and keys of a context of ~/.config/parksync/client.conf or\n"
                 "/etc/parksync/client.conf (default: $PARKSYNC_CONTEXT, else the files'\n"
                 "current). Flags override PARKSYNC_* variables, which override the context.\n"
                 "\nExit status: 0 success, 1 daemon unreachable or runtime failure,\n"
                 "2 usage or input error.\n");
}

/* Removes --context NAME and --context=NAME from argv[1..] (up to a
 * "--"), so every command takes it without knowing it. Returns the new
 * argc, or -1 after saying that NAME is missing. */
static int take_context(int argc, char **argv, const char **context)
{
    int out = 1, i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--context") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "parksync: --context wants a context name\n");
                return -1;
            }
            *context = argv[++i];
        } else if (strncmp(argv[i], "--context=", 10) == 0) {
            *context = argv[i] + 10;
        } else {
            argv[out++] = argv[i];
        }
    }
    while (i < argc)
        argv[out++] = argv[i++];
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    const char *context = NULL;
    ps_profile_t prof;
    char err[2048];

    if ((argc = take_context(argc, argv, &context)) < 0)
        return CLI_USAGE;
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
    if (strcmp(argv[1], "context") == 0)
        return cmd_context(argc - 1, argv + 1, context);
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (strcmp(argv[1], COMMANDS[i].name) != 0)
            continue;
        /* keygen talks to no daemon: a broken profile must not stop it */
        if (COMMANDS[i].run == cmd_keygen) {
            memset(&prof, 0, sizeof prof);
        } else if (ps_profile_resolve(context, &prof, err, sizeof err) != PS_OK) {
            fprintf(stderr, "parksync %s: %s\n", argv[1], err);
            return CLI_USAGE;
        }
        return COMMANDS[i].run(argc - 1, argv + 1, &prof);
    }
    fprintf(stderr, "parksync: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
