/*
 * pair.h - a thread of the daemon's own and the pipe between it and the
 * loop: two connected inproc PAIR sockets (the CZMQ actor pattern), the
 * loop's end and the thread's. The checkpoint and sync threads run on
 * one; they share no other memory with the loop but their atomics.
 */
#ifndef PARKSYNCD_PAIR_H
#define PARKSYNCD_PAIR_H

#include <pthread.h>

typedef struct pair {
    void *pipe;       /* PAIR, the loop's end */
    void *peer;       /* PAIR, the thread's end */
    pthread_t thread; /* valid while pipe is open */
} pair_t;

/* Makes the pipe (named after what, for the log, and p's address) and
 * runs run(arg) on a thread of its own, which reads p->peer until it
 * gets an empty message. 0, or -1 after logging (nothing left open). */
int pair_start(pair_t *p, void *zctx, const char *what, void *(*run)(void *), void *arg);

/* Tells the thread to stop (an empty message), waits for it and closes
 * both ends. A no-op on a pair that did not start. */
void pair_stop(pair_t *p);

#endif /* PARKSYNCD_PAIR_H */
