/*
 * curve.c - the --server-key and --key options every networked command
 * takes: file names in, Z85 keys for libparksync's options out.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "keys.h"

int cli_curve_option(cli_curve_t *cv, int c, const char *arg)
{
    if (c == 0x5301)
        cv->server_file = arg;
    else if (c == 0x5302)
        cv->key_file = arg;
    else
        return 0;
    return 1;
}

void cli_curve_defaults(cli_curve_t *cv, const ps_profile_t *prof)
{
    cv->server_file = prof->server_key.value[0] ? prof->server_key.value : NULL;
    cv->key_file = prof->key.value[0] ? prof->key.value : NULL;
}

int cli_curve_load(cli_curve_t *cv)
{
    char err[400];

    cv->server[0] = cv->secret[0] = '\0';
    if (!cv->server_file && !cv->key_file)
        return CLI_OK;
    if (!cv->server_file || !cv->key_file) {
        fprintf(stderr,
                "parksync: --server-key and --key go together, as PARKSYNC_SERVER_KEY "
                "and PARKSYNC_KEY or a context's server_key and key do (CURVE needs "
                "the daemon's public key and our secret key; given: %s)\n",
                cv->server_file ? cv->server_file : cv->key_file);
        return CLI_USAGE;
    }
    if (keys_read_file(cv->server_file, false, cv->server, err, sizeof err) < 0 ||
        keys_read_file(cv->key_file, true, cv->secret, err, sizeof err) < 0) {
        fprintf(stderr, "parksync: %s\n", err);
        cv->server[0] = cv->secret[0] = '\0';
        return CLI_USAGE;
    }
    return CLI_OK;
}
