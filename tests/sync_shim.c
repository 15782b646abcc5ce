/*
 * sync_shim.c - an LD_PRELOAD library for test_durable: a disk whose
 * fsync of a WAL (a file whose name ends in "-wal") the test controls.
 *
 * While the file named by $SYNC_SHIM_HOLD exists, such a sync waits; while
 * the one named by $SYNC_SHIM_FAIL exists, it fails with EIO, as a disk
 * that lost the pages would. Each leaves a mark the test can wait for:
 * HOLD.waiting.THREAD, FAIL.failed.THREAD, THREAD the name of the thread
 * that synced ("parksyncd" for the loop that commits, "ps-sync" for the
 * daemon's sync thread, "ps-checkpoint"). With $SYNC_SHIM_THREAD set, only
 * that thread's syncs are held or failed. Every other sync, and every other
 * file, goes to the C library untouched. Built without sanitizers: it is
 * loaded before their runtime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int fdatasync(int fd);
int fsync(int fd);

static bool is_wal(int fd)
{
    char link[64], path[4096];
    ssize_t n;

    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    n = readlink(link, path, sizeof path - 1);
    if (n < 4)
        return false;
    path[n] = '\0';
    return strcmp(path + n - 4, "-wal") == 0;
}

/* Creates FLAG.WHAT.THREAD (the calling thread's name): what the test
 * waits for, to know which thread's sync was held or failed. */
static void mark(const char *flag, const char *what)
{
    char name[16] = "", path[4096];
    FILE *f;

    prctl(PR_GET_NAME, name);
    snprintf(path, sizeof path, "%s.%s.%s", flag, what, name);
    if ((f = fopen(path, "w")) != NULL)
        fclose(f);
}

/* Whether $SYNC_SHIM_THREAD, when set, names the calling thread. */
static bool this_thread(void)
{
    const char *only = getenv("SYNC_SHIM_THREAD");
    char name[16] = "";

    if (!only || !only[0])
        return true;
    prctl(PR_GET_NAME, name);
    return strcmp(name, only) == 0;
}

/* 0: sync it; -1: fail it (errno set). */
static int gate(int fd)
{
    const char *hold = getenv("SYNC_SHIM_HOLD"), *fail = getenv("SYNC_SHIM_FAIL");
    bool held = false;

    if (!is_wal(fd) || !this_thread())
        return 0;
    while (hold && access(hold, F_OK) == 0) {
        if (!held)
            mark(hold, "waiting");
        held = true;
        usleep(1000);
    }
    if (fail && access(fail, F_OK) == 0) {
        mark(fail, "failed");
        errno = EIO;
        return -1;
    }
    return 0;
}

int fdatasync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");

    return gate(fd) < 0 ? -1 : real(fd);
}

int fsync(int fd)
{
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");

    return gate(fd) < 0 ? -1 : real(fd);
}
