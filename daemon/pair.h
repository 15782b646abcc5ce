/*
 * pair.h - the pipe between the loop and a thread of its own: two
 * connected inproc PAIR sockets (the CZMQ actor pattern), the loop's end
 * and the thread's. The checkpoint and sync threads talk over one; they
 * share no other memory with the loop but their atomics.
 */
#ifndef PARKSYNCD_PAIR_H
#define PARKSYNCD_PAIR_H

/* Makes the pipe named after what (for the log) and owner (a unique
 * address): *pipe for the loop, *peer for the thread, both with linger 0.
 * 0, or -1 after logging (nothing left open). */
int pair_open(void *zctx, const char *what, const void *owner, void **pipe, void **peer);

/* Closes both ends; NULL-safe. */
void pair_close(void **pipe, void **peer);

#endif /* PARKSYNCD_PAIR_H */
