/*
 * test_replica.c - replication between sites in the store: the replica
 * cursor, store_apply_replica, producers' and peers' positions. Sites are
 * stores on files of their own in one process; what the daemon adds (the
 * query stream, the puller) is tested in test_federation.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rng.h"
#include "store.h"
#include "upd.h"

#define SITES       3   /* sites of the property test */
#define PROP_SETS   12  /* update sets, each exchanged in its own random way */
#define PROP_SIZE   150 /* updates per set */
#define EXCHANGES   12  /* random pulls before the sites settle */
#define RECORDS_MAX 512 /* records a replica cursor may hold in these tests */

static char dir[64]; /* this test's temporary directory */

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/test_replica.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(replica, .init = setup, .fini = teardown);

typedef struct site {
    char name[16];  /* as peers know it */
    char path[128]; /* its database */
    store_t *s;
} site_t;

/* Opens site `name` with cfg (NULL: the defaults, synchronous NORMAL). */
static void site_open_with(site_t *x, const char *name, store_config_t *cfg)
{
    store_config_t local;
    char err[256];
    if (!cfg) {
        store_config_init(&local);
        local.synchronous_full = false;
        cfg = &local;
    }
    snprintf(x->name, sizeof(x->name), "%s", name);
    snprintf(x->path, sizeof(x->path), "%s/%s.db", dir, name);
    cfg->path = x->path;
    x->s = store_open(cfg, err, sizeof(err));
    cr_assert_not_null(x->s, "store_open: %s", err);
}

static void site_open(site_t *x, const char *name)
{
    site_open_with(x, name, NULL);
}

static store_outcome_t apply1(store_t *s, const upd_t *x)
{
    store_outcome_t out = STORE_GAP;
    cr_assert_eq(store_begin(s), 0, "begin: %s", store_errmsg(s));
    cr_assert_eq(store_apply(s, &x->u, &out), 0, "apply: %s", store_errmsg(s));
    cr_assert_eq(store_commit(s), 0, "commit: %s", store_errmsg(s));
    return out;
}

static const store_trust_t trust_all = {.peer = "peer", .all = true};

/* What a pull did. */
typedef struct pulled {
    bool full;           /* the whole state came */
    size_t records;      /* records merged */
    uint32_t refused;    /* writes refused (trust) */
    uint32_t invalid;    /* writes refused (validation) */
    uint64_t head_after; /* the pulling site's head afterwards */
} pulled_t;

typedef struct positions {
    char id[256][WIRE_MAX_ID + 1]; /* producers */
    uint64_t seq[256];             /* their positions */
    size_t n;                      /* entries used */
} positions_t;

static int on_position(void *arg, const char *id, uint64_t seq)
{
    positions_t *p = arg;
    cr_assert_lt(p->n, 256);
    snprintf(p->id[p->n], sizeof(p->id[0]), "%s", id);
    p->seq[p->n++] = seq;
    return 0;
}

/* One pull of `to` from `from`, as the daemon does it: from the position
 * stored for that peer (or the whole state), the records merged in
 * batches of random size (st NULL: one), and the position stored with
 * the last of them. */
static pulled_t pull(site_t *to, site_t *from, const store_trust_t *trust, uint64_t *st)
{
    uint8_t epoch[WIRE_EPOCH_BYTES];
    bool has, full = false;
    uint64_t since;
    int err = 0;
    pulled_t out = {0};
    positions_t pos = {.n = 0};
    store_trust_t t = *trust;
    t.peer = from->name;

    cr_assert_eq(store_peer_get(to->s, from->name, epoch, &has, &since), 0);
    store_cursor_t *c = store_replica_open(from->s, has ? epoch : NULL, since, &full, &err);
    cr_assert_not_null(c, "replica_open: %d %s", err, store_errmsg(from->s));
    out.full = full;
    cr_assert_eq(store_cursor_producers(c, on_position, &pos), 0, "%s", store_cursor_errmsg(c));
    cr_assert_eq(store_begin(to->s), 0);
    const uint8_t *rec;
    size_t len, in_batch = 0, batch = st ? 1 + rnd(st, 30) : SIZE_MAX;
    int rc;
    while ((rc = store_cursor_next(c, &rec, &len)) == 1 || rc == -EAGAIN) {
        if (rc == -EAGAIN)
            continue;
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
        cr_assert_not_null(r);
        store_replica_result_t res;
        cr_assert_eq(store_apply_replica(to->s, &t, r, &res), 0, "%s", store_errmsg(to->s));
        out.refused += res.refused;
        out.invalid += res.invalid;
        out.records++;
        parksync__v1__record__free_unpacked(r, NULL);
        if (++in_batch == batch) {
            /* a commit in the middle: what is merged stays, the position
             * does not move until the end */
            cr_assert_geq(store_refresh_summaries(to->s), 0);
            cr_assert_eq(store_commit(to->s), 0);
            cr_assert_eq(store_begin(to->s), 0);
            in_batch = 0;
            batch = 1 + rnd(st, 30);
        }
    }
    cr_assert_eq(rc, 0, "cursor_next: %d", rc);
    for (size_t i = 0; i < pos.n; i++)
        cr_assert_eq(store_merge_position(to->s, pos.id[i], pos.seq[i]), 0);
    cr_assert_eq(store_peer_set(to->s, from->name, store_epoch(from->s), store_cursor_revision(c)),
                 0);
    cr_assert_geq(store_refresh_summaries(to->s), 0);
    cr_assert_eq(store_commit(to->s), 0, "%s", store_errmsg(to->s));
    store_cursor_close(&c);
    out.head_after = store_head(to->s);
    return out;
}

/* A pull of the property test: nothing refused, every site trusted. */
static pulled_t pull_all(site_t *to, site_t *from, uint64_t *st)
{
    pulled_t p = pull(to, from, &trust_all, st);
    cr_assert_eq(p.refused + p.invalid, 0, "a peer trusted with everything saw writes refused");
    return p;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL; /* FNV-1a */
    return h;
}

/* A hash of every record row of a site, tombstones too, as stored but
 * for its revision, with its stamps: two sites with equal hashes hold
 * the same merge state byte for byte. */
static uint64_t state_hash(const site_t *x)
{
    static const char *const sql[] = {
        "SELECT record, stamps FROM park ORDER BY country, park_id",
        "SELECT record, stamps FROM resident ORDER BY country, park_id, resident_id",
        "SELECT record, stamps FROM trade_flow ORDER BY exporter, importer, period_key",
        "SELECT record, stamps FROM country_report ORDER BY country, period_key",
    };
    uint64_t h = 1469598103934665603ULL;
    sqlite3 *db;
    /* another connection reads the tables once the deferred rows are in */
    cr_assert_eq(store_settle(x->s), 0);
    cr_assert_eq(sqlite3_open_v2(x->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    for (size_t q = 0; q < sizeof(sql) / sizeof(sql[0]); q++) {
        sqlite3_stmt *st;
        cr_assert_eq(sqlite3_prepare_v2(db, sql[q], -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const uint8_t *b = sqlite3_column_blob(st, 0);
            size_t n = (size_t)sqlite3_column_bytes(st, 0), at = 0;
            if (n > 0 && b[0] == 0x08) /* the revision, field 1, first */
                for (at = 1; at < n && (b[at++] & 0x80);)
                    ;
            h = fnv(h, b + at, n - at);
            h = fnv(h, "|", 1);
            h = fnv(h, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1));
            h = fnv(h, "\n", 1);
        }
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return h;
}

/* On a difference: the first row two sites hold differently, on stderr,
 * for the failure's reader. */
static void state_diff(const site_t *a, const site_t *b)
{
    char sql[1024];
    sqlite3 *db;
    sqlite3_stmt *st;
    cr_assert_eq(sqlite3_open_v2(a->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    snprintf(sql, sizeof(sql), "ATTACH '%s' AS b", b->path);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    static const char *const tables[] = {"park", "resident", "trade_flow", "country_report"};
    static const char *const keys[] = {
        "country || '/' || park_id", "country || '/' || park_id || '/' || resident_id",
        "exporter || '/' || importer || '/' || period_key", "country || '/' || period_key"};
    for (size_t t = 0; t < 4; t++) {
        /* rows whose stamps differ (a record's bytes follow its stamps) */
        snprintf(sql, sizeof(sql),
                 "SELECT * FROM (SELECT 'a', %s, hex(stamps), deleted FROM main.%s EXCEPT"
                 " SELECT 'a', %s, hex(stamps), deleted FROM b.%s) UNION ALL"
                 " SELECT * FROM (SELECT 'b', %s, hex(stamps), deleted FROM b.%s EXCEPT"
                 " SELECT 'b', %s, hex(stamps), deleted FROM main.%s)",
                 keys[t], tables[t], keys[t], tables[t], keys[t], tables[t], keys[t], tables[t]);
        cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s",
                     sqlite3_errmsg(db));
        for (int n = 0; n < 6 && sqlite3_step(st) == SQLITE_ROW; n++)
            fprintf(stderr, "%s %s %s: stamps %s deleted %d\n", tables[t],
                    sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
                    sqlite3_column_text(st, 2), sqlite3_column_int(st, 3));
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
}

static void digest_of(store_t *s, uint8_t out[32])
{
    cr_assert_eq(store_begin(s), 0);
    cr_assert_eq(store_digest(s, out), 0);
    cr_assert_eq(store_commit(s), 0);
}

/*
 * The CRDT property: a set of updates, each applied at one of three sites
 * (a producer pushing where it likes), then pulls between random pairs in
 * random batchings, some repeated, some of the whole state; once every
 * site has pulled from every other, every site holds the merge state of
 * a site that applied every update itself, byte for byte, stamps
 * included; and one more round of pulls changes nothing anywhere (no
 * revision: no ping-pong).
 */
Test(replica, states_exchanged_in_any_order_converge_byte_for_byte, .timeout = 120)
{
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *env = getenv("STORE_PROP_SEED");
    if (env)
        seed = strtoull(env, NULL, 10);
    if (!seed)
        seed = 1;
    cr_log_info("replica convergence seed %" PRIu64 " (STORE_PROP_SEED to replay)", seed);
    uint64_t st = seed;
    static upd_t ups[PROP_SIZE];

    for (int set = 0; set < PROP_SETS; set++) {
        site_t sites[SITES], all;
        char name[16];
        for (int i = 0; i < SITES; i++) {
            snprintf(name, sizeof(name), "s%d-%d", set, i);
            site_open(&sites[i], name);
        }
        snprintf(name, sizeof(name), "all-%d", set);
        site_open(&all, name);
        /* one producer per update, so any site may take any of them */
        for (size_t i = 0; i < PROP_SIZE; i++) {
            char id[16];
            snprintf(id, sizeof(id), "P%03zu", i);
            /* updates as the ingest socket lets them through: valid ones */
            const char *why;
            do {
                prop_update(&ups[i], &st, id, 1);
                ups[i].u.event_time_us++; /* 1..12: positive */
            } while (wire_update_validate(&ups[i].u, &why) < 0);
            cr_assert_eq(apply1(all.s, &ups[i]), STORE_APPLIED);
        }
        /* the updates reach the sites in random order, with pulls between */
        size_t order[PROP_SIZE];
        for (size_t i = 0; i < PROP_SIZE; i++)
            order[i] = i;
        for (size_t i = PROP_SIZE - 1; i > 0; i--) {
            size_t j = rnd(&st, (unsigned)i + 1), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        for (size_t i = 0; i < PROP_SIZE; i++) {
            cr_assert_eq(apply1(sites[rnd(&st, SITES)].s, &ups[order[i]]), STORE_APPLIED);
            if (rnd(&st, PROP_SIZE / EXCHANGES) == 0) {
                int a = (int)rnd(&st, SITES), b = (int)((a + 1 + rnd(&st, SITES - 1)) % SITES);
                pull_all(&sites[a], &sites[b], &st);
            }
        }
        /* settle: every site pulls from every other, twice round */
        for (int round = 0; round < 2; round++)
            for (int a = 0; a < SITES; a++)
                for (int b = 0; b < SITES; b++)
                    if (a != b)
                        pull_all(&sites[a], &sites[b], &st);
        uint64_t want = state_hash(&all);
        uint8_t dwant[32], dgot[32];
        digest_of(all.s, dwant);
        uint64_t heads[SITES];
        for (int i = 0; i < SITES; i++) {
            if (state_hash(&sites[i]) != want)
                state_diff(&sites[i], &all);
            cr_assert_eq(state_hash(&sites[i]), want,
                         "seed %" PRIu64 " set %d: site %d differs from the site that applied "
                         "every update",
                         seed, set, i);
            digest_of(sites[i].s, dgot);
            cr_assert_arr_eq(dgot, dwant, 32, "seed %" PRIu64 " set %d: site %d's digest", seed,
                             set, i);
            heads[i] = store_head(sites[i].s);
        }
        /* settled: pulls again, whole states too, change nothing */
        for (int a = 0; a < SITES; a++)
            for (int b = 0; b < SITES; b++) {
                if (a == b)
                    continue;
                pulled_t p = pull_all(&sites[a], &sites[b], &st);
                cr_assert_eq(p.head_after, heads[a],
                             "seed %" PRIu64 " set %d: a settled pull %d<-%d made revisions", seed,
                             set, a, b);
                cr_assert_eq(p.records, 0, "a settled pull %d<-%d sent %zu records", a, b,
                             p.records);
            }
        for (int i = 0; i < SITES; i++) {
            /* the whole state of another site merges as a no-op too */
            site_t *from = &sites[(i + 1) % SITES];
            int err;
            bool full;
            store_cursor_t *c = store_replica_open(from->s, NULL, 0, &full, &err);
            cr_assert_not_null(c);
            cr_assert(full);
            const uint8_t *rec;
            size_t len;
            cr_assert_eq(store_begin(sites[i].s), 0);
            while (store_cursor_next(c, &rec, &len) == 1) {
                Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
                store_replica_result_t res;
                cr_assert_eq(store_apply_replica(sites[i].s, &trust_all, r, &res), 0);
                parksync__v1__record__free_unpacked(r, NULL);
            }
            cr_assert_eq(store_commit(sites[i].s), 0);
            store_cursor_close(&c);
            cr_assert_eq(store_head(sites[i].s), heads[i], "a whole state made revisions");
        }
        for (int i = 0; i < SITES; i++)
            store_close(&sites[i].s);
        store_close(&all.s);
    }
}

static void park_write(site_t *x, const char *producer, uint64_t seq, int64_t t,
                       const char *country, const char *id, const char *name)
{
    upd_t u;
    upd_init(&u, producer, seq, t, PARKSYNC__V1__VINTAGE__VINTAGE_PROVISIONAL);
    upd_park(&u, country, id);
    park_name(&u, name);
    cr_assert_eq(apply1(x->s, &u), STORE_APPLIED);
}

static int64_t sql_at(const site_t *x, const char *sql)
{
    return sql_int_at(x->path, sql);
}

/* Trust is per country: a peer trusted with AZ brings AZ's records, and
 * every write it sends for TJ is refused, recorded as a conflict, and
 * changes nothing. */
Test(replica, a_peer_brings_only_the_countries_it_is_trusted_with)
{
    site_t a, b;
    site_open(&a, "a");
    site_open(&b, "b");
    park_write(&a, "AZ-MOE", 1, 100, "AZ", "AZ-SUMGAIT", "Sumgait");
    park_write(&a, "TJ-MINT", 1, 100, "TJ", "TJ-DANGARA", "Dangara");
    static const char only_az[][3] = {"AZ"};
    store_trust_t t = {.countries = only_az, .n = 1};
    pulled_t p = pull(&b, &a, &t, NULL);
    cr_assert_eq(p.records, 2);
    cr_assert_eq(p.refused, 1, "writes refused: %u", p.refused);
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM park WHERE country = 'AZ' AND deleted = 0"), 1);
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM park WHERE country = 'TJ'"), 0,
                 "an untrusted country's record reached the store");
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM conflict WHERE reason ="
                            " 'not authoritative: peer a may not bring park TJ'"
                            " AND producer_id = 'TJ-MINT' AND key = 'TJ/TJ-DANGARA'"),
                 1);
    store_close(&a.s);
    store_close(&b.s);
}

/* A pull from the stored position brings only what changed since; one
 * from another epoch, from 0, or from before what the change log keeps
 * brings the whole state, tombstones included. */
Test(replica, a_pull_brings_what_changed_since_or_the_whole_state)
{
    site_t a, b;
    store_config_t cfg;
    site_open(&b, "b");
    store_config_init(&cfg);
    cfg.changelog_keep = 4;
    site_open_with(&a, "a", &cfg);

    park_write(&a, "AZ-MOE", 1, 100, "AZ", "P1", "one");
    park_write(&a, "AZ-MOE", 2, 100, "AZ", "P2", "two");
    pulled_t p = pull(&b, &a, &trust_all, NULL);
    cr_assert(p.full, "the first pull is of the whole state");
    cr_assert_eq(p.records, 2);
    p = pull(&b, &a, &trust_all, NULL);
    cr_assert_not(p.full);
    cr_assert_eq(p.records, 0, "nothing changed, yet %zu records came", p.records);
    park_write(&a, "AZ-MOE", 3, 200, "AZ", "P1", "one again");
    upd_t del;
    upd_init(&del, "AZ-MOE", 4, 300, 0);
    upd_park(&del, "AZ", "P9"); /* never seen: a tombstone all the same */
    upd_make_delete(&del);
    cr_assert_eq(apply1(a.s, &del), STORE_APPLIED);
    p = pull(&b, &a, &trust_all, NULL);
    cr_assert_not(p.full);
    cr_assert_eq(p.records, 2, "changed since: P1 and P9's tombstone, got %zu", p.records);
    cr_assert_eq(sql_at(&b, "SELECT deleted FROM park WHERE park_id = 'P9'"), 1);

    /* beyond what the change log keeps: the whole state */
    for (uint64_t i = 0; i < 6; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%" PRIu64, i);
        park_write(&a, "AZ-MOE", 5 + i, 400 + (int64_t)i, "AZ", "P2", name);
    }
    p = pull(&b, &a, &trust_all, NULL);
    cr_assert(p.full, "a position older than the change log keeps was served as changes");
    cr_assert_eq(p.records, 3);
    /* another epoch's position: the whole state */
    cr_assert_eq(store_begin(b.s), 0);
    uint8_t other[WIRE_EPOCH_BYTES] = {1, 2, 3};
    cr_assert_eq(store_peer_set(b.s, "a", other, store_head(a.s)), 0);
    cr_assert_eq(store_commit(b.s), 0);
    uint64_t head = store_head(b.s);
    p = pull(&b, &a, &trust_all, NULL);
    cr_assert(p.full, "a position of another epoch was served as changes");
    cr_assert_eq(p.head_after, head, "the same state again made revisions");
    store_close(&a.s);
    store_close(&b.s);
}

/* Resident R<i> of AZ/P1 at site x, named `name`, in a commit of its own. */
static void resident_write(site_t *x, uint64_t seq, unsigned i, const char *name)
{
    upd_t u;
    char id[16];
    snprintf(id, sizeof id, "R%u", i);
    upd_init(&u, "AZ-MOE", seq, (int64_t)seq, 0);
    upd_resident(&u, "AZ", "P1", id)->company_name = (char *)name;
    cr_assert_eq(apply1(x->s, &u), STORE_APPLIED);
}

/* Residents whose rows site a has not written yet (deferred state): a
 * pull of the change log sends each once, in its latest version, from the
 * log, and leaves a's table as it was; b ends with a's state. */
Test(replica, a_pull_sends_a_deferred_resident_once_in_its_latest_version)
{
    site_t a, b;
    uint64_t seq = 0;
    site_open(&a, "a");
    site_open(&b, "b");

    resident_write(&a, ++seq, 0, "first");
    pulled_t p = pull(&b, &a, &trust_all, NULL);
    cr_assert(p.full);
    cr_assert_eq(sql_at(&a, "SELECT count(*) FROM resident"), 1, "a whole pull writes them");
    for (int round = 0; round < 3; round++) {
        char name[16];
        snprintf(name, sizeof name, "v%d", round);
        for (unsigned i = 0; i < 5; i++)
            resident_write(&a, ++seq, i, name);
    }
    p = pull(&b, &a, &trust_all, NULL);
    cr_assert_not(p.full);
    cr_assert_eq(p.records, 5, "each resident once: %zu records came", p.records);
    cr_assert_eq(sql_at(&a, "SELECT count(*) FROM resident"), 1, "the pull wrote a's rows");
    cr_assert_eq(store_settle(b.s), 0); /* b's merged rows wait too */
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM resident WHERE"
                            " instr(record, CAST('v2' AS BLOB)) > 0 AND deleted = 0"),
                 5, "b holds the latest versions");
    cr_assert_eq(state_hash(&b), state_hash(&a));
    store_close(&a.s);
    store_close(&b.s);
}

/* Producers' positions travel with the records: a producer that applied
 * through 7 at a resumes at b at 8, without a gap and without applying
 * anything twice; a position never goes back. */
Test(replica, producer_positions_travel_and_never_go_back)
{
    site_t a, b;
    site_open(&a, "a");
    site_open(&b, "b");
    for (uint64_t i = 1; i <= 7; i++)
        park_write(&a, "AZ-MOE", i, (int64_t)(100 + i), "AZ", "P1", "x");
    park_write(&b, "TJ-MINT", 1, 100, "TJ", "T1", "t");
    pull(&b, &a, &trust_all, NULL);
    cr_assert_eq(store_producer_last(b.s, "AZ-MOE"), 7);
    upd_t u;
    upd_init(&u, "AZ-MOE", 7, 900, 0);
    upd_park(&u, "AZ", "P1");
    park_name(&u, "again");
    cr_assert_eq(apply1(b.s, &u), STORE_DUPLICATE, "an update applied at a was applied again");
    u.u.sequence = 8;
    cr_assert_eq(apply1(b.s, &u), STORE_APPLIED, "the producer could not resume at b");
    cr_assert_eq(store_begin(b.s), 0);
    cr_assert_eq(store_merge_position(b.s, "AZ-MOE", 3), 0);
    cr_assert_eq(store_merge_position(b.s, "TJ-MINT", 0), 0);
    cr_assert_eq(store_commit(b.s), 0);
    cr_assert_eq(store_producer_last(b.s, "AZ-MOE"), 8, "a position went back");
    cr_assert_eq(store_producer_last(b.s, "TJ-MINT"), 1);
    store_close(&a.s);
    store_close(&b.s);
}

/* The position is stored in the batch of the merge: rolled back with it. */
Test(replica, the_peer_position_commits_and_rolls_back_with_the_merge)
{
    site_t b;
    uint8_t e[WIRE_EPOCH_BYTES] = {9}, got[WIRE_EPOCH_BYTES];
    bool has;
    uint64_t rev;
    site_open(&b, "b");
    cr_assert_eq(store_begin(b.s), 0);
    cr_assert_eq(store_peer_set(b.s, "a", e, 41), 0);
    store_rollback(b.s);
    cr_assert_eq(store_peer_get(b.s, "a", got, &has, &rev), 0);
    cr_assert_not(has);
    cr_assert_eq(store_begin(b.s), 0);
    cr_assert_eq(store_peer_set(b.s, "a", e, 42), 0);
    cr_assert_eq(store_commit(b.s), 0);
    store_close(&b.s);
    site_open(&b, "b");
    cr_assert_eq(store_peer_get(b.s, "a", got, &has, &rev), 0);
    cr_assert(has);
    cr_assert_eq(rev, 42);
    cr_assert_arr_eq(got, e, WIRE_EPOCH_BYTES);
    store_close(&b.s);
}

/* What a hostile peer can send: stamps without producer or of no slot,
 * a slot stamped twice, a body an update could not carry. Each is
 * refused as invalid, and nothing changes. */
Test(replica, a_hostile_peer_changes_nothing)
{
    site_t b;
    site_open(&b, "b");
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    Parksync__V1__FieldProvenance fp[2] = {PARKSYNC__V1__FIELD_PROVENANCE__INIT,
                                           PARKSYNC__V1__FIELD_PROVENANCE__INIT};
    Parksync__V1__FieldProvenance *pp[2] = {&fp[0], &fp[1]};
    park.country = "AZ";
    park.park_id = "P1";
    park.name = "x";
    r.body_case = PARKSYNC__V1__RECORD__BODY_PARK;
    r.park = &park;
    r.stamps = pp;
    for (int i = 0; i < 2; i++) {
        fp[i].producer_id = "AZ-MOE";
        fp[i].has_sequence = fp[i].has_event_time_us = fp[i].has_field_id = 1;
        fp[i].sequence = 1;
        fp[i].event_time_us = 100;
    }
    fp[0].field_id = 0;
    fp[1].field_id = 3; /* name */
    static const char *const cases[] = {
        "no producer", "a slot twice", "no slot", "invalid UTF-8 in the name", "money beyond 10^17",
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        store_replica_result_t res;
        fp[0].producer_id = fp[1].producer_id = "AZ-MOE";
        fp[1].field_id = 3;
        park.name = "x";
        park.has_reported_investment_usd_cents = 0;
        r.n_stamps = 2;
        if (c == 0)
            fp[1].producer_id = NULL;
        else if (c == 1)
            fp[1].field_id = 0;
        else if (c == 2)
            fp[1].field_id = 77;
        else if (c == 3)
            park.name = "\xff\xfe";
        else {
            park.has_reported_investment_usd_cents = 1;
            park.reported_investment_usd_cents = 100000000000000001LL;
            fp[1].field_id = 9;
        }
        cr_assert_eq(store_begin(b.s), 0);
        cr_assert_eq(store_apply_replica(b.s, &trust_all, &r, &res), 0, "%s", cases[c]);
        cr_assert_eq(store_commit(b.s), 0);
        cr_assert_gt(res.invalid, 0, "%s was not refused", cases[c]);
        cr_assert_eq(sql_at(&b, "SELECT count(*) FROM park"), 0, "%s changed the store", cases[c]);
    }
    cr_assert_eq(store_head(b.s), 0);
    store_close(&b.s);
}

/* The clock rule of local updates holds for replicated writes: a stamp
 * further ahead than max_future_skew_s is refused, the rest merged. */
Test(replica, a_write_from_the_future_is_refused_as_locally)
{
    site_t a, b;
    store_config_t cfg;
    site_open(&a, "a");
    store_config_init(&cfg);
    cfg.max_future_skew_us = 60 * 1000000LL;
    site_open_with(&b, "b", &cfg);
    int64_t now = wire_now_us();
    park_write(&a, "AZ-MOE", 1, now, "AZ", "NOW", "now");
    park_write(&a, "AZ-MOE", 2, now + 3600 * 1000000LL, "AZ", "LATER", "in an hour");
    pulled_t p = pull(&b, &a, &(store_trust_t){.all = true, .peer = "a"}, NULL);
    cr_assert_eq(p.records, 2);
    cr_assert_eq(p.refused, 1, "refused: %u", p.refused);
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM park WHERE park_id = 'NOW'"), 1);
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM park WHERE park_id = 'LATER'"), 0);
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM conflict WHERE reason LIKE 'event time % s in "
                            "the future%'"),
                 1);
    store_close(&a.s);
    store_close(&b.s);
}

/* Positions a peer brings are bounded like local producers: beyond
 * max_producers known, a new producer's position is not kept. */
Test(replica, a_peer_cannot_grow_the_producers_without_bound)
{
    site_t b;
    store_config_t cfg;
    store_config_init(&cfg);
    cfg.max_producers = 2;
    site_open_with(&b, "b", &cfg);
    cr_assert_eq(store_begin(b.s), 0);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "P%d", i);
        cr_assert_eq(store_merge_position(b.s, id, 10), 0);
    }
    cr_assert_eq(store_merge_position(b.s, "P0", 11), 0); /* a known one still moves */
    cr_assert_eq(store_commit(b.s), 0);
    cr_assert_eq(store_producer_last(b.s, "P0"), 11);
    cr_assert_eq(store_producer_last(b.s, "P1"), 10);
    cr_assert_eq(store_producer_last(b.s, "P2"), 0, "a third producer was kept");
    cr_assert_eq(sql_at(&b, "SELECT count(*) FROM producer"), 2);
    store_close(&b.s);
}
