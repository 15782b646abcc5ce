/*
 * ctl.h - one request and its reply on parksyncd's control socket, shared
 * by the operator commands (status, metrics, backup, reload).
 *
 * The control socket is ipc:// only; with no --control the CLI finds it by
 * the rule the daemon used to place it (wire_control_endpoint_default),
 * and uses it only in a directory it can trust (rundir.h).
 */
#ifndef PARKSYNC_CLI_CTL_H
#define PARKSYNC_CLI_CTL_H

#include <getopt.h>
#include <stddef.h>

#include "parksync.pb-c.h"

/* The options every operator command accepts, for getopt_long tables:
 * --control EP, --timeout SEC, --help, and --ingest/--publish/--query
 * accepted (and ignored) so one set of endpoint flags fits every command. */
#define CTL_OPTIONS                                                                                \
    {"control", required_argument, NULL, 'C'}, {"timeout", required_argument, NULL, 't'},          \
        {"ingest", required_argument, NULL, 'i'}, {"publish", required_argument, NULL, 'P'},       \
        {"query", required_argument, NULL, 'q'},                                                   \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

/* The options' help; timeout is the command's default --timeout, a
 * string literal ("5"), so it is said under --timeout. */
#define CTL_USAGE(timeout)                                                                         \
    "  --control EP    daemon's control socket (default: the runtime directory's, as\n"            \
    "                  the daemon places it: $RUNTIME_DIRECTORY, /run/parksync,\n"                 \
    "                  $XDG_RUNTIME_DIR/parksync, /tmp/parksync-UID)\n"                            \
    "  --timeout SEC   longest wait for the answer (default " timeout ")\n"                        \
    "  --ingest EP, --publish EP, --query EP  accepted for uniformity; not used\n"                 \
    "  --context NAME  the control socket of a client context, under the flag and\n"               \
    "                  PARKSYNC_CONTROL (parksync context --help)\n"

/* The control socket the client profile names (PARKSYNC_CONTROL or the
 * context's control), to start ctl_opts_t.control with: NULL when unset. */
#define CTL_PROFILE_CONTROL(prof) ((prof)->control.value[0] ? (prof)->control.value : NULL)

/* Parsed common options. */
typedef struct ctl_opts {
    const char *cmd;     /* command name, for messages */
    const char *control; /* --control (else the profile's), or NULL: the default rule */
    long timeout_s;      /* --timeout, seconds */
} ctl_opts_t;

/* Handles getopt's value c for one of CTL_OPTIONS except 'h'. Returns 1
 * when handled, 0 when c is not one of them, -1 after printing a usage
 * error (exit with CLI_USAGE). */
int ctl_option(ctl_opts_t *o, int c, const char *arg);

/* The control endpoint for command cmd into buf: control (--control) as
 * given, else the default rule's, whose directory must be trusted
 * (rundir_check_trusted) and hold the socket. Either way an ipc:// socket
 * this user may not connect to is refused at once (rundir_check_access).
 * Returns CLI_OK, or the exit status after printing why ("parksync status:
 * will not use ipc:///tmp/...: ...", "parksync status: permission denied
 * on /run/parksync/control: run as root or join group parksync ..."). */
int ctl_endpoint(const char *cmd, const char *control, char *buf, size_t size);

/* Sends q (version and request_id are filled in) and waits for the reply.
 * An Error reply is printed ("parksync CMD: the daemon refused: ...") and
 * gives CLI_RUNTIME, and so does a reply of another kind than want.
 * Returns CLI_OK with *out set (caller frees with
 * parksync__v1__control_reply__free_unpacked), or the exit status. */
int ctl_ask(const ctl_opts_t *o, Parksync__V1__ControlRequest *q,
            Parksync__V1__ControlReply__BodyCase want, Parksync__V1__ControlReply **out);

#endif /* PARKSYNC_CLI_CTL_H */
