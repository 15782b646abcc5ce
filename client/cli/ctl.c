/*
 * ctl.c - see ctl.h.
 */
#include "ctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "cli.h"
#include "rundir.h"
#include "wire.h"

int ctl_option(ctl_opts_t *o, int c, const char *arg)
{
    char *end = NULL;

    switch (c) {
    case 'C':
        o->control = arg;
        return 1;
    case 't':
        errno = 0;
        o->timeout_s = strtol(arg, &end, 10);
        if (errno != 0 || end == arg || *end != '\0' || o->timeout_s < 1 || o->timeout_s > 86400) {
            fprintf(stderr, "parksync %s: --timeout wants whole seconds 1..86400, got '%s'\n",
                    o->cmd, arg);
            return -1;
        }
        return 1;
    case 'i':
    case 'P':
    case 'q':
        return 1;
    default:
        return 0;
    }
}

int ctl_endpoint(const char *cmd, const char *control, char *buf, size_t size)
{
    char dir[256], name[256], why[1024];
    bool given = control != NULL;
    int rc;

    if (given) {
        snprintf(buf, size, "%s", control); /* the operator's choice, taken as given */
    } else if (wire_control_endpoint_default(buf, size) < 0) {
        fprintf(stderr, "parksync %s: the default control endpoint is too long; give --control\n",
                cmd);
        return CLI_USAGE;
    }
    if (rundir_split(buf, dir, sizeof dir, name, sizeof name) < 0) {
        if (!given) {
            fprintf(stderr,
                    "parksync %s: the default control endpoint is too long; give "
                    "--control\n",
                    cmd);
            return CLI_USAGE;
        }
        return CLI_OK; /* not ipc: libzmq says what it makes of it */
    }
    /* A socket found by the rule must be the daemon's, not one another
     * local user put in a directory they made first. */
    rc = given ? 0 : rundir_check_trusted(dir, why, sizeof why);
    if (rc < 0) {
        char denied[1024];
        /* a directory this user may not enter: say who may */
        if (rc == -EACCES && rundir_check_access(dir, name, denied, sizeof denied) == -EACCES)
            fprintf(stderr, "parksync %s: %s\n", cmd, denied);
        else
            fprintf(stderr, "parksync %s: %s %s: %s\n", cmd,
                    rc == -ENOENT ? "no control socket at" : "will not use", buf, why);
        return CLI_RUNTIME;
    }
    /* A socket this user may not connect to would only time out: say who
     * may. A given endpoint may still be on its way (a daemon starting). */
    rc = rundir_check_access(dir, name, why, sizeof why);
    if (rc == -EACCES || (rc < 0 && !given)) {
        fprintf(stderr, "parksync %s: %s%s\n", cmd,
                rc == -EACCES ? "" : "no control socket: ", why);
        return CLI_RUNTIME;
    }
    return CLI_OK;
}

int ctl_ask(const ctl_opts_t *o, Parksync__V1__ControlRequest *q,
            Parksync__V1__ControlReply__BodyCase want, Parksync__V1__ControlReply **out)
{
    char endpoint[256];
    uint8_t buf[WIRE_MAX_CONTROL];
    void *ctx = NULL, *sock = NULL;
    int linger = 0, status = CLI_RUNTIME;
    int64_t maxmsg = WIRE_MAX_MSG;
    const char *why = NULL;
    size_t len;

    *out = NULL;
    if ((status = ctl_endpoint(o->cmd, o->control, endpoint, sizeof endpoint)) != CLI_OK)
        return status;
    status = CLI_RUNTIME;
    q->has_version = q->has_request_id = true;
    q->version = WIRE_VERSION;
    q->request_id = 1;
    if (parksync__v1__control_request__get_packed_size(q) > sizeof buf) {
        fprintf(stderr, "parksync %s: the request is too large\n", o->cmd);
        return CLI_USAGE;
    }
    len = parksync__v1__control_request__pack(q, buf);
    cli_signals_install();
    ctx = zmq_ctx_new();
    sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    if (!sock) {
        fprintf(stderr, "parksync %s: cannot create a socket: %s\n", o->cmd, zmq_strerror(errno));
        goto out;
    }
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(sock, endpoint) < 0) {
        fprintf(stderr, "parksync %s: cannot connect to %s: %s\n", o->cmd, endpoint,
                zmq_strerror(errno));
        status = CLI_USAGE;
        goto out;
    }
    if (zmq_send(sock, buf, len, 0) < 0) {
        fprintf(stderr, "parksync %s: cannot send to %s: %s\n", o->cmd, endpoint,
                zmq_strerror(errno));
        goto out;
    }
    for (;;) {
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        zmq_msg_t m;
        int n = zmq_poll(&item, 1, o->timeout_s * 1000);

        if (n < 0 && errno == EINTR && !cli_stop)
            continue;
        if (n <= 0) {
            fprintf(stderr,
                    "parksync %s: no answer from %s within %ld s (is parksyncd "
                    "running, and is this its control socket?)\n",
                    o->cmd, endpoint, o->timeout_s);
            goto out;
        }
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            zmq_msg_close(&m);
            goto out;
        }
        int rc = wire_control_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), out, &why);
        zmq_msg_close(&m);
        if (rc < 0) {
            fprintf(stderr, "parksync %s: undecodable answer: %s\n", o->cmd, why ? why : "?");
            goto out;
        }
        if ((*out)->request_id == q->request_id)
            break;
        parksync__v1__control_reply__free_unpacked(*out, NULL); /* a stale answer */
        *out = NULL;
    }
    if ((*out)->body_case == PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR) {
        fprintf(stderr, "parksync %s: the daemon refused: %s\n", o->cmd,
                (*out)->error->message ? (*out)->error->message : "(no message)");
        parksync__v1__control_reply__free_unpacked(*out, NULL);
        *out = NULL;
        goto out;
    }
    if ((*out)->body_case != want) {
        fprintf(stderr, "parksync %s: unexpected answer from %s\n", o->cmd, endpoint);
        parksync__v1__control_reply__free_unpacked(*out, NULL);
        *out = NULL;
        goto out;
    }
    status = CLI_OK;
out:
    if (sock)
        zmq_close(sock);
    if (ctx)
        zmq_ctx_term(ctx);
    return status;
}
