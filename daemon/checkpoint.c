/*
 * checkpoint.c - WAL checkpoints on a thread of their own; see checkpoint.h.
 */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <zmq.h>

#include "log.h"
#include "store.h"
#include "wire.h"

struct checkpoint {
    void *pipe;                  /* PAIR, the loop's end; a message means stop */
    void *peer;                  /* PAIR, the thread's end */
    store_checkpointer_t *store; /* the thread's own connection */
    pthread_t thread;
    char endpoint[64];                /* inproc name of the pipe */
    _Atomic int64_t last_complete_us; /* see checkpoint_last_complete_us */
    _Atomic uint64_t failures;        /* checkpoints that failed */
};

static void *checkpoint_main(void *arg)
{
    checkpoint_t *c = arg;
    zmq_pollitem_t item = {c->peer, 0, ZMQ_POLLIN, 0};

    prctl(PR_SET_NAME, "ps-checkpoint"); /* as top -H and perf name the thread */
    for (;;) {
        int n = zmq_poll(&item, 1, CHECKPOINT_PERIOD_MS);
        if (n > 0 || (n < 0 && zmq_errno() != EINTR))
            break; /* told to stop, or the context is going away */
        int rc = store_checkpoint(c->store);
        if (rc == 0) {
            c->last_complete_us = wire_now_us();
        } else if (rc < 0) {
            c->failures++;
            log_warning("WAL checkpoint failed: %s (%s); trying again in %d ms", strerror(-rc),
                        store_checkpointer_errmsg(c->store), CHECKPOINT_PERIOD_MS);
        }
    }
    return NULL;
}

checkpoint_t *checkpoint_new(void *zctx, const char *path)
{
    checkpoint_t *c = calloc(1, sizeof(*c));
    char err[512];
    int linger = 0;

    if (c == NULL) {
        log_error("out of memory for the checkpoint thread");
        return NULL;
    }
    snprintf(c->endpoint, sizeof(c->endpoint), "inproc://parksyncd-checkpoint-%p", (void *)c);
    c->store = store_checkpointer_open(path, err, sizeof(err));
    if (c->store == NULL) {
        log_error("cannot open the database for checkpoints: %s", err);
        goto fail;
    }
    c->pipe = zmq_socket(zctx, ZMQ_PAIR);
    c->peer = zmq_socket(zctx, ZMQ_PAIR);
    if (c->pipe == NULL || c->peer == NULL || zmq_bind(c->pipe, c->endpoint) != 0 ||
        zmq_connect(c->peer, c->endpoint) != 0) {
        log_error("cannot make the checkpoint pipe: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zmq_setsockopt(c->pipe, ZMQ_LINGER, &linger, sizeof(linger));
    zmq_setsockopt(c->peer, ZMQ_LINGER, &linger, sizeof(linger));
    if ((errno = pthread_create(&c->thread, NULL, checkpoint_main, c)) != 0) {
        log_error("cannot start the checkpoint thread: %s", strerror(errno));
        goto fail;
    }
    return c;
fail:
    if (c->pipe)
        zmq_close(c->pipe);
    if (c->peer)
        zmq_close(c->peer);
    store_checkpointer_close(&c->store);
    free(c);
    return NULL;
}

int64_t checkpoint_last_complete_us(const checkpoint_t *c)
{
    return c ? c->last_complete_us : 0;
}

uint64_t checkpoint_failures(const checkpoint_t *c)
{
    return c ? c->failures : 0;
}

void checkpoint_destroy(checkpoint_t **cp)
{
    checkpoint_t *c;

    if (cp == NULL || *cp == NULL)
        return;
    c = *cp;
    zmq_send(c->pipe, "", 0, 0);
    pthread_join(c->thread, NULL);
    zmq_close(c->pipe);
    zmq_close(c->peer);
    store_checkpointer_close(&c->store);
    free(c);
    *cp = NULL;
}
