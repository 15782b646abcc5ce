/*
 * pair.c - the pipe between the loop and a thread of its own; see pair.h.
 */
#include "pair.h"

#include <stdio.h>

#include <zmq.h>

#include "log.h"

int pair_open(void *zctx, const char *what, const void *owner, void **pipe, void **peer)
{
    char endpoint[96];
    int linger = 0;

    snprintf(endpoint, sizeof endpoint, "inproc://parksyncd-%s-%p", what, owner);
    *pipe = zmq_socket(zctx, ZMQ_PAIR);
    *peer = zmq_socket(zctx, ZMQ_PAIR);
    if (*pipe == NULL || *peer == NULL || zmq_bind(*pipe, endpoint) != 0 ||
        zmq_connect(*peer, endpoint) != 0) {
        log_error("cannot make the %s pipe: %s", what, zmq_strerror(zmq_errno()));
        pair_close(pipe, peer);
        return -1;
    }
    zmq_setsockopt(*pipe, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(*peer, ZMQ_LINGER, &linger, sizeof linger);
    return 0;
}

void pair_close(void **pipe, void **peer)
{
    if (*pipe)
        zmq_close(*pipe);
    if (*peer)
        zmq_close(*peer);
    *pipe = *peer = NULL;
}
