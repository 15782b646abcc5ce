/*
 * bench_layout.c - what the storage layout costs a random update, in raw
 * SQLite: the ceiling each layout sets on random-key ingest, before any
 * daemon work. Not a test: run it by hand from a Release build:
 *
 *   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-bench -j --target bench_layout
 *   build-bench/tests/bench/bench_layout
 *
 * Every layout does, per update, what the store must: read the record's
 * state by key (its revision and stamps, for the merge), write the new
 * state, and append a change-log row with the record and the version it
 * replaces. Rows are the daemon's: a resident keyed (country, park,
 * resident), a record of RECORD bytes (-b; 358 is a packed Update with a
 * 256-byte company name) and 32 bytes of stamps.
 *
 *   inplace  the store's layout today: the record and its stamps in a
 *            WITHOUT ROWID table, updated in place. A random update
 *            dirties the leaf of its key, a whole page for ~400 bytes.
 *   split    the state table keeps key, revision and stamps only; the
 *            record's bytes are in the change log alone (which already
 *            holds them). The leaves are ~6 times denser, so a batch's
 *            random updates share them more. Not modelled: keeping a
 *            live record's log row when the log is pruned.
 *   append   every write is an append (a log-structured layout): the
 *            state is appended to a heap with a rowid, found through an
 *            index in memory (not modelled). Not modelled either: the
 *            compaction that drops the versions superseded, a second
 *            append of what lives on.
 *
 * Each run: a fresh database (WAL, synchronous as -s says, the daemon's
 * cache and journal pragmas, SQLite's own checkpoints every 1,000
 * pages), KEYS records loaded, then UPDATES random updates in
 * transactions of TXN (the daemon's group commit), timed. Then what a
 * late joiner's snapshot costs each layout, timed too: every live record
 * read in key order on a new connection (a cold SQLite cache over the
 * kernel's warm one, as the daemon's snapshot cursors read). inplace
 * scans its table; split finds each record in the change log by its
 * revision; append is not measured (its index in memory is not
 * modelled). Rounds are interleaved across layouts; the table gives the
 * median of each and its ratio to inplace.
 *
 * Options: -k KEYS (100000), -n UPDATES (200000), -t TXN (4096), -b
 * RECORD bytes (358), -p PAGE_SIZE (4096, the store's), -s full|normal
 * (full), -r ROUNDS (3), -d DIR (a new directory under /tmp).
 */
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 9
#define STAMPS     32 /* bytes of stamps per record */
#define MAX_RECORD 4096
#define PRAGMAS                                                                                    \
    "PRAGMA journal_mode=WAL; PRAGMA cache_size=-32768; PRAGMA journal_size_limit=67108864;"

enum layout { INPLACE, SPLIT, APPEND, LAYOUTS };

static const char *const layout_name[LAYOUTS] = {"inplace", "split", "append"};

/* Per layout: schema, the read of a key's state, the write of it. */
static const char *const layout_sql[LAYOUTS][3] = {
    [INPLACE] = {"CREATE TABLE r(c TEXT NOT NULL, p TEXT NOT NULL, k TEXT NOT NULL,"
                 " deleted INTEGER NOT NULL, revision INTEGER NOT NULL, inv INTEGER,"
                 " record BLOB NOT NULL, stamps BLOB NOT NULL, PRIMARY KEY (c, p, k))"
                 " WITHOUT ROWID",
                 "SELECT revision, record, stamps FROM r WHERE c = ?1 AND p = ?2 AND k = ?3",
                 "INSERT INTO r VALUES (?1, ?2, ?3, 0, ?4, 5, ?5, ?6) ON CONFLICT (c, p, k)"
                 " DO UPDATE SET deleted = excluded.deleted, revision = excluded.revision,"
                 " inv = excluded.inv, record = excluded.record, stamps = excluded.stamps"},
    [SPLIT] = {"CREATE TABLE r(c TEXT NOT NULL, p TEXT NOT NULL, k TEXT NOT NULL,"
               " deleted INTEGER NOT NULL, revision INTEGER NOT NULL, inv INTEGER,"
               " stamps BLOB NOT NULL, PRIMARY KEY (c, p, k)) WITHOUT ROWID",
               "SELECT revision, stamps FROM r WHERE c = ?1 AND p = ?2 AND k = ?3",
               "INSERT INTO r VALUES (?1, ?2, ?3, 0, ?4, 5, ?6) ON CONFLICT (c, p, k)"
               " DO UPDATE SET deleted = excluded.deleted, revision = excluded.revision,"
               " inv = excluded.inv, stamps = excluded.stamps"},
    [APPEND] = {"CREATE TABLE r(id INTEGER PRIMARY KEY, c TEXT, p TEXT, k TEXT,"
                " revision INTEGER, record BLOB, stamps BLOB)",
                NULL, /* the state is found in memory */
                "INSERT INTO r(c, p, k, revision, record, stamps)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
};

/* Layouts whose snapshot read_all measures. */
static const bool sql_read[LAYOUTS] = {[INPLACE] = true, [SPLIT] = true};

static uint64_t n_keys = 100000, n_updates = 200000;
static unsigned txn = 4096, record_len = 358, rounds = 3, page_size = 4096;
static bool sync_full = true;
static char dir[256];

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench_layout: %s: %s\n", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static int step(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "bench_layout: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

/* count updates (random keys when random, else keys 0..count-1) in
 * transactions of txn; 0 or -1. */
static int run_updates(sqlite3 *db, sqlite3_stmt *get, sqlite3_stmt *put, sqlite3_stmt *log,
                       uint64_t count, bool random, uint64_t *revision, unsigned *seed)
{
    static uint8_t record[MAX_RECORD], stamps[STAMPS];
    memset(record, 'r', record_len);
    memset(stamps, 's', sizeof stamps);
    for (uint64_t i = 0; i < count; i += txn) {
        if (exec(db, "BEGIN") < 0)
            return -1;
        for (uint64_t j = i; j < i + txn && j < count; j++) {
            char key[24];
            uint64_t k = random ? (uint64_t)rand_r(seed) % n_keys : j;
            snprintf(key, sizeof key, "R%07" PRIu64, k);
            ++*revision;
            if (get) {
                sqlite3_bind_text(get, 1, "AZ", -1, SQLITE_STATIC);
                sqlite3_bind_text(get, 2, "BENCH-PARK", -1, SQLITE_STATIC);
                sqlite3_bind_text(get, 3, key, -1, SQLITE_TRANSIENT);
                if (step(db, get) < 0)
                    return -1;
            }
            sqlite3_bind_text(put, 1, "AZ", -1, SQLITE_STATIC);
            sqlite3_bind_text(put, 2, "BENCH-PARK", -1, SQLITE_STATIC);
            sqlite3_bind_text(put, 3, key, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(put, 4, (sqlite3_int64)*revision);
            sqlite3_bind_blob(put, 5, record, (int)record_len, SQLITE_STATIC);
            sqlite3_bind_blob(put, 6, stamps, sizeof stamps, SQLITE_STATIC);
            sqlite3_bind_int64(log, 1, (sqlite3_int64)*revision);
            sqlite3_bind_blob(log, 2, record, (int)record_len, SQLITE_STATIC);
            if (step(db, put) < 0 || step(db, log) < 0)
                return -1;
        }
        if (exec(db, "COMMIT") < 0)
            return -1;
    }
    return 0;
}

/* The live records in key order, as a snapshot reads them: records/s,
 * or -1. The bytes are summed so that the read is not optimised away. */
static double read_all(const char *path, enum layout l)
{
    static const char *const sql[LAYOUTS] = {
        [INPLACE] = "SELECT record FROM r ORDER BY c, p, k",
        [SPLIT] = "SELECT l.record FROM r JOIN changelog l ON l.revision = r.revision"
                  " ORDER BY r.c, r.p, r.k",
    };
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    uint64_t n = 0, bytes = 0;
    double t0 = now_s(), rate = -1;
    int rc;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        exec(db, "PRAGMA cache_size=-32768") < 0 ||
        sqlite3_prepare_v2(db, sql[l], -1, &st, NULL) != SQLITE_OK)
        goto out;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        bytes += (uint64_t)sqlite3_column_bytes(st, 0);
        n++;
    }
    if (rc == SQLITE_DONE && n == n_keys && bytes == n * record_len)
        rate = (double)n / (now_s() - t0);
out:
    if (rate < 0)
        fprintf(stderr, "bench_layout: read of %s: %s\n", layout_name[l], sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rate;
}

/* One run of a layout: updates/s of the timed part and, in *read, the
 * snapshot's records/s (0: not measured); -1 on a failure. */
static double run(enum layout l, unsigned seed, double *read)
{
    char path[300], side[310];
    sqlite3 *db = NULL;
    sqlite3_stmt *get = NULL, *put = NULL, *log = NULL;
    uint64_t revision = 0;
    double rate = -1;

    char pragma[64];
    snprintf(path, sizeof path, "%s/%s.db", dir, layout_name[l]);
    snprintf(pragma, sizeof pragma, "PRAGMA page_size=%u", page_size);
    if (sqlite3_open(path, &db) != SQLITE_OK || exec(db, pragma) < 0 || exec(db, PRAGMAS) < 0 ||
        exec(db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL") < 0 ||
        exec(db, layout_sql[l][0]) < 0 ||
        exec(db, "CREATE TABLE changelog(revision INTEGER PRIMARY KEY, kind INTEGER NOT NULL,"
                 " country TEXT, record BLOB NOT NULL, prev BLOB)") < 0)
        goto out;
    if ((layout_sql[l][1] && sqlite3_prepare_v2(db, layout_sql[l][1], -1, &get, NULL)) ||
        sqlite3_prepare_v2(db, layout_sql[l][2], -1, &put, NULL) ||
        sqlite3_prepare_v2(db, "INSERT INTO changelog VALUES (?1, 1, 'AZ', ?2, ?2)", -1, &log,
                           NULL)) {
        fprintf(stderr, "bench_layout: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    if (run_updates(db, get, put, log, n_keys, false, &revision, &seed) < 0)
        goto out;
    double t0 = now_s();
    if (run_updates(db, get, put, log, n_updates, true, &revision, &seed) < 0)
        goto out;
    rate = (double)n_updates / (now_s() - t0);
    *read = 0;
    if (sql_read[l] && (*read = read_all(path, l)) < 0)
        rate = -1;
out:
    sqlite3_finalize(get);
    sqlite3_finalize(put);
    sqlite3_finalize(log);
    sqlite3_close(db);
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return rate;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_layout [-k KEYS] [-n UPDATES] [-t TXN] [-b RECORD_BYTES]"
                    " [-p PAGE_SIZE] [-s full|normal] [-r ROUNDS] [-d DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    double rate[LAYOUTS][MAX_ROUNDS], read[LAYOUTS][MAX_ROUNDS];
    bool own_dir = true;
    int c;

    while ((c = getopt(argc, argv, "k:n:t:b:p:s:r:d:")) != -1) {
        switch (c) {
        case 'k':
            n_keys = strtoull(optarg, NULL, 10);
            break;
        case 'n':
            n_updates = strtoull(optarg, NULL, 10);
            break;
        case 't':
            txn = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'b':
            record_len = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'p':
            page_size = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rounds = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'd':
            snprintf(dir, sizeof dir, "%s", optarg);
            own_dir = false;
            break;
        case 's':
            if (strcmp(optarg, "full") != 0 && strcmp(optarg, "normal") != 0)
                usage();
            sync_full = strcmp(optarg, "full") == 0;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || n_keys == 0 || n_keys > INT32_MAX || n_updates == 0 || txn == 0 ||
        record_len == 0 || record_len > MAX_RECORD || rounds == 0 || rounds > MAX_ROUNDS ||
        page_size < 512 || page_size > 65536 || (page_size & (page_size - 1)) != 0)
        usage();
    if (own_dir) {
        snprintf(dir, sizeof dir, "/tmp/bench-layout-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("bench_layout: mkdtemp");
            return 1;
        }
    }
    printf("bench_layout: %" PRIu64 " keys, %" PRIu64
           " random updates in transactions of %u, %u-byte records, %u-byte pages,"
           " synchronous %s, %u rounds\n",
           n_keys, n_updates, txn, record_len, page_size, sync_full ? "FULL" : "NORMAL", rounds);
    for (unsigned r = 0; r < rounds; r++)
        for (int i = 0; i < LAYOUTS; i++) {
            /* each round starts with another layout: none always runs first */
            enum layout l = (enum layout)((i + (int)r) % LAYOUTS);
            if ((rate[l][r] = run(l, 7u + r, &read[l][r])) < 0)
                return 1;
        }
    double base = median(rate[INPLACE], rounds), read_base = median(read[INPLACE], rounds);
    printf("%-8s %12s %8s %16s %8s\n", "layout", "updates/s", "ratio", "snapshot rec/s", "ratio");
    for (int l = 0; l < LAYOUTS; l++) {
        double m = median(rate[l], rounds), rm = median(read[l], rounds);
        if (sql_read[l])
            printf("%-8s %12.0f %7.2fx %16.0f %7.2fx\n", layout_name[l], m, m / base, rm,
                   rm / read_base);
        else
            printf("%-8s %12.0f %7.2fx %16s %8s\n", layout_name[l], m, m / base, "-", "-");
    }
    if (own_dir)
        rmdir(dir);
    return 0;
}
