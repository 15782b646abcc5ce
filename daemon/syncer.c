/*
 * syncer.c - the WAL's fdatasync on a thread of its own; see syncer.h.
 */
#include "syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"
#include "pair.h"
#include "wire.h"

struct syncer {
    pair_t pair;        /* the thread, and the loop's pipe to it */
    char wal[PATH_MAX]; /* the WAL's path */
    int fd;             /* the thread's (or syncer_sync_here's): the WAL, -1 until opened */
    bool busy;          /* the loop's: a sync was asked, its answer not read */
    int64_t last_us;    /* the loop's: how long the last sync that ended took */
};

/* The thread's answer to a request: a sync's outcome and its time. */
typedef struct sync_answer {
    int rc;     /* 0 or -errno */
    int64_t us; /* how long it took */
} sync_answer_t;

/* The directory that holds path, synced once: SQLite syncs it when it
 * first syncs a WAL it created, which under NORMAL its own connection
 * may never do, and without it a new WAL's name could be lost. */
static int sync_dir(const char *path)
{
    char copy[PATH_MAX];
    int fd, rc = 0;

    snprintf(copy, sizeof copy, "%s", path);
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* One sync of the WAL: 0 or -errno. The file is opened at the first, and
 * again if it was removed since (it is not while the writer's connection
 * is open; a new one would then be a new file). */
static int sync_wal(syncer_t *y)
{
    struct stat st;
    int rc;

    if (y->fd >= 0 && (fstat(y->fd, &st) != 0 || st.st_nlink == 0)) {
        close(y->fd);
        y->fd = -1;
    }
    if (y->fd < 0) {
        if ((y->fd = open(y->wal, O_RDONLY | O_CLOEXEC)) < 0)
            return -errno;
        if ((rc = sync_dir(y->wal)) < 0)
            return rc;
    }
    return fdatasync(y->fd) == 0 ? 0 : -errno;
}

/* sync_wal, timed. */
static sync_answer_t sync_timed(syncer_t *y)
{
    int64_t t0 = wire_monotonic_us();
    sync_answer_t a = {.rc = sync_wal(y)};

    a.us = wire_monotonic_us() - t0;
    return a;
}

static void *syncer_main(void *arg)
{
    syncer_t *y = arg;

    prctl(PR_SET_NAME, "ps-sync"); /* as top -H and perf name the thread */
    for (;;) {
        char ask;
        sync_answer_t a;
        if (zmq_recv(y->pair.peer, &ask, 1, 0) != 1) {
            if (zmq_errno() == EINTR)
                continue;
            break; /* told to stop (an empty message), or the context ends */
        }
        a = sync_timed(y);
        if (zmq_send(y->pair.peer, &a, sizeof a, 0) < 0)
            break;
    }
    if (y->fd >= 0)
        close(y->fd);
    return NULL;
}

syncer_t *syncer_new(void *zctx, const char *wal)
{
    syncer_t *y = calloc(1, sizeof *y);

    if (y == NULL) {
        log_error("out of memory for the sync thread");
        return NULL;
    }
    y->fd = -1;
    if ((size_t)snprintf(y->wal, sizeof y->wal, "%s", wal) >= sizeof y->wal) {
        log_error("the WAL's path is too long: %s", wal);
        free(y);
        return NULL;
    }
    if (pair_start(&y->pair, zctx, "sync", syncer_main, y) < 0) {
        free(y);
        return NULL;
    }
    return y;
}

void *syncer_socket(const syncer_t *y)
{
    return y->pair.pipe;
}

int syncer_start(syncer_t *y)
{
    if (y->busy)
        return -EBUSY;
    if (zmq_send(y->pair.pipe, "s", 1, 0) != 1)
        return -zmq_errno();
    y->busy = true;
    return 0;
}

int syncer_sync_here(syncer_t *y)
{
    if (y->busy)
        return -EBUSY;
    /* the thread waits for a request: the file is the caller's */
    sync_answer_t a = sync_timed(y);

    y->last_us = a.us;
    return a.rc;
}

bool syncer_busy(const syncer_t *y)
{
    return y && y->busy;
}

int syncer_done(syncer_t *y, bool wait, int *result)
{
    sync_answer_t a;

    if (!y->busy)
        return -EINVAL;
    for (;;) {
        int n = zmq_recv(y->pair.pipe, &a, sizeof a, wait ? 0 : ZMQ_DONTWAIT);
        if (n == (int)sizeof a)
            break;
        if (n < 0 && zmq_errno() == EAGAIN)
            return 0;
        if (n < 0 && zmq_errno() != EINTR)
            return -zmq_errno();
    }
    y->busy = false;
    y->last_us = a.us;
    *result = a.rc;
    return 1;
}

int64_t syncer_last_us(const syncer_t *y)
{
    return y->last_us;
}

void syncer_destroy(syncer_t **yp)
{
    syncer_t *y;
    int rc;

    if (!yp || !*yp)
        return;
    y = *yp;
    if (y->busy)
        syncer_done(y, true, &rc);
    pair_stop(&y->pair);
    free(y);
    *yp = NULL;
}
