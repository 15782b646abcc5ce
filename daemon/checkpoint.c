/*
 * checkpoint.c - WAL checkpoints on a thread of their own; see checkpoint.h.
 */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include <zmq.h>

#include "log.h"
#include "pair.h"
#include "store.h"
#include "wire.h"

struct checkpoint {
    pair_t pair;                      /* the thread, and the loop's pipe to it */
    store_checkpointer_t *store;      /* the thread's own connection */
    _Atomic int64_t last_complete_us; /* see checkpoint_last_complete_us */
    _Atomic uint64_t failures;        /* checkpoints that failed */
    _Atomic int64_t failing_since_us; /* see checkpoint_failing */
    _Atomic int failing_errno;        /* the last failure's errno while failing */
    _Atomic uint64_t wal;             /* see checkpoint_wal: frames << 32 | backfilled */
    uint64_t failures_before;         /* the thread's: failures when the run began */
    bool checking;                    /* the loop's: a check was asked, its result not read */
};

/* One quick_check the loop asked for: "L" the live database, "F" + path
 * a file. The answer is a check_result_t on the pipe. */
static void run_check(checkpoint_t *c, const char *ask, size_t len)
{
    check_result_t r = {0};
    char path[CHECK_PATH_MAX];

    if (len >= 1 && ask[0] == 'L') {
        r.rc = store_checkpointer_check(c->store, r.message, sizeof r.message);
    } else if (len >= 2 && len - 1 < sizeof path && ask[0] == 'F') {
        memcpy(path, ask + 1, len - 1);
        path[len - 1] = '\0';
        r.rc = store_check_file(path, r.message, sizeof r.message);
    } else {
        r.rc = -EINVAL;
        snprintf(r.message, sizeof r.message, "malformed check request");
    }
    zmq_send(c->pair.peer, &r, sizeof r, 0);
}

/* One checkpoint; a run of failures is logged when it starts and ends,
 * and rate-limited between (every 200 ms while a disk is full). Returns
 * the time until the next one, ms. While the WAL is long enough that the
 * writer waits for this thread to catch up (see store_wal_reset) and
 * commits still come, that is CHECKPOINT_HURRY_MS, or CHECKPOINT_HELD_MS
 * while a reader keeps part of the WAL from being copied (a snapshot
 * streaming): copying more has to wait for it to end anyway. Past the
 * length at which the writer copies the rest itself, it is the period
 * again, or that copy would keep finding this thread at work. */
static int run_checkpoint(checkpoint_t *c, log_ratelimit_t *rl)
{
    store_wal_t w;
    int rc = store_checkpoint(c->store, &w);
    uint64_t before = c->wal;
    int next = CHECKPOINT_PERIOD_MS;

    if (rc >= 0 && w.frames < 0) {
        next = CHECKPOINT_HURRY_MS; /* the writer was resetting it */
    } else if (rc >= 0) {
        c->wal = (uint64_t)w.frames << 32 | (uint64_t)w.backfilled;
        if (store_wal_long(&w) && c->wal != before)
            next = rc > 0 ? CHECKPOINT_HELD_MS : CHECKPOINT_HURRY_MS;
        if (rc == 0 && store_wal_forced(&w))
            next = CHECKPOINT_PERIOD_MS; /* the writer takes it over */
    }
    if (rc >= 0 && c->failing_since_us != 0) {
        log_notice("WAL checkpoints work again after %" PRIu64 " failures in a row",
                   c->failures - c->failures_before);
        c->failing_since_us = 0;
    }
    if (rc == 0) {
        c->last_complete_us = wire_now_us();
    } else if (rc < 0) {
        if (c->failing_since_us == 0) {
            c->failures_before = c->failures;
            c->failing_since_us = wire_now_us();
        }
        c->failing_errno = -rc;
        c->failures++;
        log_ratelimited(
            rl, LOG_LEVEL_WARNING, "WAL checkpoint failed: %s (%s); trying again every %d ms",
            store_strerror(rc), store_checkpointer_errmsg(c->store), CHECKPOINT_PERIOD_MS);
    }
    return next;
}

static void *checkpoint_main(void *arg)
{
    checkpoint_t *c = arg;
    zmq_pollitem_t item = {c->pair.peer, 0, ZMQ_POLLIN, 0};
    log_ratelimit_t rl = {0};
    int wait = CHECKPOINT_PERIOD_MS;

    prctl(PR_SET_NAME, "ps-checkpoint"); /* as top -H and perf name the thread */
    for (;;) {
        int n = zmq_poll(&item, 1, wait);
        if (n < 0 && zmq_errno() != EINTR)
            break; /* the context is going away */
        if (n > 0) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->pair.peer, 0) < 0 || zmq_msg_size(&m) == 0) {
                zmq_msg_close(&m);
                break; /* told to stop */
            }
            run_check(c, zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
        }
        wait = run_checkpoint(c, &rl);
    }
    return NULL;
}

checkpoint_t *checkpoint_new(void *zctx, const char *path)
{
    checkpoint_t *c = calloc(1, sizeof(*c));
    char err[512];

    if (c == NULL) {
        log_error("out of memory for the checkpoint thread");
        return NULL;
    }
    c->store = store_checkpointer_open(path, err, sizeof(err));
    if (c->store == NULL) {
        log_error("cannot open the database for checkpoints: %s", err);
        goto fail;
    }
    if (pair_start(&c->pair, zctx, "checkpoint", checkpoint_main, c) < 0)
        goto fail;
    return c;
fail:
    store_checkpointer_close(&c->store);
    free(c);
    return NULL;
}

int64_t checkpoint_last_complete_us(const checkpoint_t *c)
{
    return c ? c->last_complete_us : 0;
}

void checkpoint_wal(const checkpoint_t *c, store_wal_t *w)
{
    uint64_t wal = c->wal;

    w->frames = (int64_t)(wal >> 32);
    w->backfilled = (int64_t)(wal & UINT32_MAX);
}

uint64_t checkpoint_failures(const checkpoint_t *c)
{
    return c ? c->failures : 0;
}

int64_t checkpoint_failing(const checkpoint_t *c, int *err)
{
    if (c == NULL || c->failing_since_us == 0)
        return 0;
    *err = c->failing_errno;
    return c->failing_since_us;
}

int checkpoint_check(checkpoint_t *c, const char *path)
{
    char ask[CHECK_PATH_MAX + 1];
    size_t len;

    if (c->checking)
        return -EBUSY;
    if (path == NULL) {
        ask[0] = 'L';
        len = 1;
    } else {
        len = strlen(path);
        if (len == 0 || len >= CHECK_PATH_MAX)
            return -EINVAL;
        ask[0] = 'F';
        memcpy(ask + 1, path, len);
        len++;
    }
    if (zmq_send(c->pair.pipe, ask, len, 0) < 0)
        return -zmq_errno();
    c->checking = true;
    return 0;
}

void *checkpoint_socket(checkpoint_t *c)
{
    return c->pair.pipe;
}

bool checkpoint_checking(const checkpoint_t *c)
{
    return c != NULL && c->checking;
}

bool checkpoint_check_result(checkpoint_t *c, check_result_t *r)
{
    int n;

    if (!c->checking)
        return false;
    n = zmq_recv(c->pair.pipe, r, sizeof *r, ZMQ_DONTWAIT);
    if (n != (int)sizeof *r)
        return false;
    r->message[sizeof r->message - 1] = '\0';
    c->checking = false;
    return true;
}

void checkpoint_destroy(checkpoint_t **cp)
{
    checkpoint_t *c;

    if (cp == NULL || *cp == NULL)
        return;
    c = *cp;
    pair_stop(&c->pair);
    store_checkpointer_close(&c->store);
    free(c);
    *cp = NULL;
}
