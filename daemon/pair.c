/*
 * pair.c - a thread and the pipe the loop talks to it over; see pair.h.
 */
#include "pair.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "log.h"

static void pair_close(pair_t *p)
{
    if (p->pipe)
        zmq_close(p->pipe);
    if (p->peer)
        zmq_close(p->peer);
    p->pipe = p->peer = NULL;
}

int pair_start(pair_t *p, void *zctx, const char *what, void *(*run)(void *), void *arg)
{
    char endpoint[96];
    int linger = 0, rc;

    snprintf(endpoint, sizeof endpoint, "inproc://parksyncd-%s-%p", what, (void *)p);
    p->pipe = zmq_socket(zctx, ZMQ_PAIR);
    p->peer = zmq_socket(zctx, ZMQ_PAIR);
    if (p->pipe == NULL || p->peer == NULL || zmq_bind(p->pipe, endpoint) != 0 ||
        zmq_connect(p->peer, endpoint) != 0) {
        log_error("cannot make the %s pipe: %s", what, zmq_strerror(zmq_errno()));
        pair_close(p);
        return -1;
    }
    zmq_setsockopt(p->pipe, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(p->peer, ZMQ_LINGER, &linger, sizeof linger);
    if ((rc = pthread_create(&p->thread, NULL, run, arg)) != 0) {
        log_error("cannot start the %s thread: %s", what, strerror(rc));
        pair_close(p);
        return -1;
    }
    return 0;
}

void pair_stop(pair_t *p)
{
    if (p->pipe == NULL)
        return;
    zmq_send(p->pipe, "", 0, 0);
    pthread_join(p->thread, NULL);
    pair_close(p);
}
