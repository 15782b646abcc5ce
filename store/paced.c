/*
 * paced.c - the checkpointer's VFS: SQLite's default one, except that a
 * database file written through it is synced every STORE_PACE_PAGES
 * pages.
 *
 * A checkpoint copies pages into the database file and syncs it once, at
 * its end. After a snapshot has held the WAL (its reader keeps every
 * checkpoint short of where it began), the first checkpoint after it
 * copies tens of thousands of pages. The disk's cache flush is the same
 * for every file: each commit's fsync then had to write out whatever of
 * that the checkpoint had written so far, and the loop waited up to half
 * a second (measured: 402 ms in blkdev_issue_flush under the writer's
 * fdatasync, 22,000 pages copied just before). Synced every 256 KiB, a
 * copy never leaves a commit's sync more than that to flush. It was 1
 * MiB while the loop synced its own commits; with the WAL synced on a
 * thread of its own, ahead of the next commit, the flush of a copy's
 * last MiB was what a sync at 20,000 updates/s waited for: p99 of the
 * ack went from 3.6 to 2.6 ms (medians of 4 interleaved runs), ingest
 * the same. A sync more than SQLite asks for is always safe.
 */
#include "store_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define PACED_VFS "parksync-paced"

typedef struct paced_file {
    sqlite3_file base;  /* methods: paced_methods */
    sqlite3_file *real; /* the default VFS's file, right after this struct */
    bool main_db;       /* the database file (paced); others are not */
    int unsynced;       /* pages written since the last sync */
} paced_file_t;

static sqlite3_vfs paced_vfs;
static sqlite3_vfs *real_vfs;
static atomic_ulong paced_syncs;

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((paced_file_t *)f)->real;
}

static int paced_close(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xClose(r);
}

static int paced_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xRead(r, buf, n, off);
}

static int paced_sync(sqlite3_file *f, int flags)
{
    paced_file_t *p = (paced_file_t *)f;
    int rc = p->real->pMethods->xSync(p->real, flags);

    if (rc == SQLITE_OK && p->main_db) {
        p->unsynced = 0;
        atomic_fetch_add(&paced_syncs, 1);
    }
    return rc;
}

static int paced_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    paced_file_t *p = (paced_file_t *)f;
    int rc = p->real->pMethods->xWrite(p->real, buf, n, off);

    if (rc == SQLITE_OK && p->main_db && ++p->unsynced >= STORE_PACE_PAGES)
        rc = paced_sync(f, SQLITE_SYNC_NORMAL);
    return rc;
}

static int paced_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xTruncate(r, size);
}

static int paced_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFileSize(r, size);
}

static int paced_lock(sqlite3_file *f, int level)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xLock(r, level);
}

static int paced_unlock(sqlite3_file *f, int level)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xUnlock(r, level);
}

static int paced_check_reserved(sqlite3_file *f, int *out)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xCheckReservedLock(r, out);
}

static int paced_file_control(sqlite3_file *f, int op, void *arg)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFileControl(r, op, arg);
}

static int paced_sector_size(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xSectorSize(r);
}

static int paced_device_characteristics(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xDeviceCharacteristics(r);
}

static int paced_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **pp)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xShmMap(r, region, size, extend, pp);
}

static int paced_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xShmLock(r, offset, n, flags);
}

static void paced_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = real_of(f);
    r->pMethods->xShmBarrier(r);
}

static int paced_shm_unmap(sqlite3_file *f, int delete_flag)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xShmUnmap(r, delete_flag);
}

static int paced_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xFetch(r, off, n, pp);
}

static int paced_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = real_of(f);
    return r->pMethods->xUnfetch(r, off, p);
}

static const sqlite3_io_methods paced_methods = {
    .iVersion = 3,
    .xClose = paced_close,
    .xRead = paced_read,
    .xWrite = paced_write,
    .xTruncate = paced_truncate,
    .xSync = paced_sync,
    .xFileSize = paced_file_size,
    .xLock = paced_lock,
    .xUnlock = paced_unlock,
    .xCheckReservedLock = paced_check_reserved,
    .xFileControl = paced_file_control,
    .xSectorSize = paced_sector_size,
    .xDeviceCharacteristics = paced_device_characteristics,
    .xShmMap = paced_shm_map,
    .xShmLock = paced_shm_lock,
    .xShmBarrier = paced_shm_barrier,
    .xShmUnmap = paced_shm_unmap,
    .xFetch = paced_fetch,
    .xUnfetch = paced_unfetch,
};

static int paced_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    paced_file_t *p = (paced_file_t *)f;
    int rc;

    (void)vfs;
    memset(p, 0, sizeof(*p));
    p->real = (sqlite3_file *)&p[1];
    rc = real_vfs->xOpen(real_vfs, name, p->real, flags, out);
    if (p->real->pMethods == NULL)
        return rc;                         /* nothing opened: SQLite calls no method of f */
    if (p->real->pMethods->iVersion < 3) { /* a default VFS without WAL support */
        p->real->pMethods->xClose(p->real);
        return SQLITE_CANTOPEN;
    }
    p->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
    p->base.pMethods = &paced_methods;
    return rc;
}

/* The default VFS with another name, size of file and xOpen: its other
 * methods see this struct, which carries the same pAppData. */
static void paced_register(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    if (real_vfs == NULL)
        return;
    paced_vfs = *real_vfs;
    paced_vfs.pNext = NULL;
    paced_vfs.zName = PACED_VFS;
    paced_vfs.szOsFile = (int)sizeof(paced_file_t) + real_vfs->szOsFile;
    paced_vfs.xOpen = paced_open;
    if (sqlite3_vfs_register(&paced_vfs, 0) != SQLITE_OK)
        real_vfs = NULL;
}

const char *paced_vfs_name(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;

    pthread_once(&once, paced_register);
    return real_vfs ? PACED_VFS : NULL;
}

unsigned long store_checkpoint_syncs(void)
{
    return atomic_load(&paced_syncs);
}
