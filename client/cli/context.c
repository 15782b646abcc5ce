/*
 * context.c - `parksync context list|show [NAME]|use NAME`: the client
 * contexts of client.conf, through libparksync's ps_profile_* calls (the
 * one reader of those files).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "wire.h"

const char CLI_CONTEXT_USAGE[] =
    "usage: parksync context list\n"
    "       parksync context show [NAME]\n"
    "       parksync context use NAME\n"
    "\n"
    "A context names a daemon's endpoints, key files and producer id, so that\n"
    "commands need no flags. Contexts are [context NAME] sections of\n"
    "$XDG_CONFIG_HOME/parksync/client.conf (default ~/.config/parksync/client.conf),\n"
    "then of /etc/parksync/client.conf:\n"
    "\n"
    "  current = az-prod\n"
    "  [context az-prod]\n"
    "  ingest = tcp://10.0.0.5:7101\n"
    "  publish = tcp://10.0.0.5:7102\n"
    "  query = tcp://10.0.0.5:7103\n"
    "  control = ipc:///run/parksync/control\n"
    "  server_key = daemon.pub     ; relative to the file's folder\n"
    "  key = az-moe.key\n"
    "  producer = AZ-MOE\n"
    "\n"
    "Every command uses --context NAME, else $PARKSYNC_CONTEXT, else current.\n"
    "Each setting: the command's flag, else PARKSYNC_INGEST, PARKSYNC_PUBLISH,\n"
    "PARKSYNC_QUERY, PARKSYNC_CONTROL, PARKSYNC_SERVER_KEY, PARKSYNC_KEY or\n"
    "PARKSYNC_PRODUCER, else the context, else the built-in default.\n"
    "\n"
    "  list       the contexts, * marking the one used by default\n"
    "  show NAME  what a command would use with that context (default: the\n"
    "             chosen one), and where each setting comes from\n"
    "  use NAME   write current = NAME into the user's file (other lines kept)\n"
    "\n"
    "Exit status: 0 done, 2 unknown context, bad file line or unreadable key file.\n";

static int print_context(void *arg, const char *name, const char *file, int line, bool current)
{
    int *count = arg;

    printf("%s %-20s %s:%d\n", current ? "*" : " ", name, file, line);
    (*count)++;
    return 0;
}

static int list(void)
{
    char err[2048];
    int count = 0;

    if (ps_profile_list(print_context, &count, err, sizeof err) != PS_OK) {
        fprintf(stderr, "parksync context list: %s\n", err);
        return CLI_USAGE;
    }
    if (count == 0)
        fprintf(stderr, "parksync context list: no contexts in ~/.config/parksync/client.conf "
                        "or /etc/parksync/client.conf (see parksync context --help)\n");
    return CLI_OK;
}

/* One line of `show`: the value in effect and where it comes from. */
static void show_value(const ps_profile_t *p, const char *key, const char *env,
                       const ps_profile_value_t *v, const char *fallback)
{
    if (v->origin == PS_ORIGIN_ENV)
        printf("%-11s %s (%s)\n", key, v->value, env);
    else if (v->origin == PS_ORIGIN_CONTEXT)
        printf("%-11s %s (%s:%d)\n", key, v->value, p->file, v->line);
    else
        printf("%-11s %s\n", key, fallback);
}

static int show(const char *name)
{
    ps_profile_t p;
    char err[2048];

    if (ps_profile_resolve(name, &p, err, sizeof err) != PS_OK) {
        fprintf(stderr, "parksync context show: %s\n", err);
        return CLI_USAGE;
    }
    if (p.context[0] != '\0')
        printf("%-11s %s (%s)\n", "context", p.context, p.file);
    else
        printf("%-11s (none: the environment and the defaults)\n", "context");
    show_value(&p, "ingest", "PARKSYNC_INGEST", &p.ingest, WIRE_DEFAULT_INGEST " (default)");
    show_value(&p, "publish", "PARKSYNC_PUBLISH", &p.publish, WIRE_DEFAULT_PUBLISH " (default)");
    show_value(&p, "query", "PARKSYNC_QUERY", &p.query, WIRE_DEFAULT_QUERY " (default)");
    show_value(&p, "control", "PARKSYNC_CONTROL", &p.control,
               "(default: the runtime directory's, as the daemon places it)");
    show_value(&p, "server_key", "PARKSYNC_SERVER_KEY", &p.server_key, "(none: no CURVE)");
    show_value(&p, "key", "PARKSYNC_KEY", &p.key, "(none: no CURVE)");
    show_value(&p, "producer", "PARKSYNC_PRODUCER", &p.producer, "(none: push wants --producer)");
    /* The key files are read only by the commands that use them; say now
     * whether they would work. */
    if (ps_profile_load(name, &p, err, sizeof err) != PS_OK) {
        fprintf(stderr, "parksync context show: %s\n", err);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static int use(const char *name)
{
    char err[2048];
    const char *env = getenv("PARKSYNC_CONTEXT");

    if (ps_profile_use(name, err, sizeof err) != PS_OK) {
        fprintf(stderr, "parksync context use: %s\n", err);
        return CLI_USAGE;
    }
    fprintf(stderr, "parksync context use: the default context is now %s\n", name);
    if (env != NULL && env[0] != '\0' && strcmp(env, name) != 0)
        fprintf(stderr,
                "parksync context use: but PARKSYNC_CONTEXT=%s is set in this environment "
                "and comes first\n",
                env);
    return CLI_OK;
}

int cmd_context(int argc, char **argv, const char *context)
{
    const char *verb = argc > 1 ? argv[1] : "";

    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0) {
        fputs(CLI_CONTEXT_USAGE, stdout);
        return CLI_OK;
    }
    if (strcmp(verb, "list") == 0 && argc == 2)
        return list();
    if (strcmp(verb, "show") == 0 && argc <= 3)
        return show(argc == 3 ? argv[2] : context);
    if (strcmp(verb, "use") == 0 && argc == 3)
        return use(argv[2]);
    fprintf(stderr, "parksync context: expected list, show [NAME] or use NAME\n%s",
            CLI_CONTEXT_USAGE);
    return CLI_USAGE;
}
