/*
 * test_retention.c - what a connection may make the daemon keep: refused
 * updates padded with unknown fields, the conflicts table and its claims
 * by count and by age, producer ids (rows, status and metrics).
 *
 * The real parksyncd over ipc://, fed by a raw XPUB (the padding is
 * something no libparksync producer sends), read back through its
 * control socket, the CLI and the SQLite file itself.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zmq.h>

#include "harness.h"
#include "wire.h"

#define PADDED        10000              /* refused updates padded with unknown fields */
#define PAD_FIELD     900                /* field number of the padding: none the schema knows */
#define PADDED_GROWTH (16 * 1024 * 1024) /* bytes the database may grow by for them */
#define KEEP          50                 /* [store] conflicts_keep of the retention test */
#define REFUSALS      200                /* refused updates of the retention test */
#define AGED          25                 /* of those, made older than conflicts_keep_days */
#define BASE_TIME_US  1600000000000000LL /* event times */
#define DAY_US        (86400 * INT64_C(1000000)) /* us in a day */
#define WAIT_MS       20000 /* longest wait for the daemon to count what it was sent */

static harness_t h;

static const char MINISTRIES[] = "[ministry AZ-MOE]\ncountry = AZ\n\n"
                                 "[ministry TJ-MINT]\ncountry = TJ\n";

static void teardown(void)
{
    harness_cleanup(&h);
}

TestSuite(retention, .fini = teardown, .timeout = 120);

/* Polls counter `name` until it reaches want or WAIT_MS pass; its last value. */
static int64_t counter_at_least(const char *name, int64_t want)
{
    int64_t deadline = wire_monotonic_ms() + WAIT_MS, v;
    while ((v = harness_counter(&h, name, 2000)) < want && wire_monotonic_ms() < deadline)
        ;
    return v;
}

static uint64_t file_bytes(const char *path, const char *suffix)
{
    char name[HARNESS_PATH + 8];
    struct stat st;
    snprintf(name, sizeof name, "%s%s", path, suffix);
    return stat(name, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* The database file and its WAL. */
static uint64_t db_bytes(void)
{
    return file_bytes(h.db, "") + file_bytes(h.db, "-wal");
}

/* An XPUB on the daemon's ingest, returned once the daemon's SUB has
 * subscribed (nothing sent is lost); it queues without limit. */
static void *raw_ingest(void *ctx)
{
    void *pub = zmq_socket(ctx, ZMQ_XPUB);
    int zero = 0, rcvtimeo = 5000;
    uint8_t sub[64];

    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    cr_assert_eq(zmq_connect(pub, h.ingest), 0);
    cr_assert(zmq_recv(pub, sub, sizeof sub, 0) >= 1, "the daemon never subscribed");
    return pub;
}

/* Producer id's update #seq, of a park of AZ, packed into buf (at least
 * WIRE_MAX_UPDATE bytes). With pad, it is filled up to WIRE_MAX_UPDATE
 * with an unknown field. Returns its bytes. */
static size_t park_update(uint8_t *buf, const char *id, uint64_t seq, bool pad)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park p = PARKSYNC__V1__PARK__INIT;
    size_t len;

    u.has_version = u.has_sequence = u.has_event_time_us = true;
    u.version = WIRE_VERSION;
    u.producer_id = (char *)id;
    u.sequence = seq;
    u.event_time_us = BASE_TIME_US + (int64_t)seq;
    p.park_id = (char *)"AZ-SUMGAIT-CHEM";
    p.country = (char *)"AZ";
    p.name = (char *)"Sumgait";
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &p;
    len = parksync__v1__update__pack(&u, buf);
    if (pad) {
        /* tag 900/LEN (3 bytes), a 2-byte length, then the bytes */
        size_t n = WIRE_MAX_UPDATE - len - 5;
        buf[len++] = (uint8_t)((PAD_FIELD << 3 | 2) | 0x80);
        buf[len++] = (uint8_t)((PAD_FIELD << 3 | 2) >> 7 | 0x80);
        buf[len++] = (uint8_t)((PAD_FIELD << 3 | 2) >> 14);
        buf[len++] = (uint8_t)(n | 0x80);
        buf[len++] = (uint8_t)(n >> 7);
        for (size_t i = 0; i < n; i++)
            buf[len++] = (uint8_t)(seq * 31 + i);
    }
    cr_assert_leq(len, WIRE_MAX_UPDATE);
    return len;
}

static void send_park(void *pub, const char *id, uint64_t seq, bool pad)
{
    static uint8_t buf[WIRE_MAX_UPDATE];
    size_t len = park_update(buf, id, seq, pad);

    cr_assert(zmq_send(pub, "park", 4, ZMQ_SNDMORE) >= 0);
    cr_assert(zmq_send(pub, buf, len, 0) >= 0);
}

/* TJ-MINT's updates first .. first + n - 1: parks of AZ, which TJ-MINT
 * does not own, so the daemon refuses them and keeps them as claims. */
static void send_refused(void *pub, uint64_t first, uint64_t n, bool pad)
{
    for (uint64_t seq = first; seq < first + n; seq++)
        send_park(pub, "TJ-MINT", seq, pad);
}

static sqlite3 *db_open(void)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open_v2(h.db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/*
 * (a) 10,000 refused updates, each padded to 16 KiB with a field the
 * schema does not know, once made the database grow by 164 MiB (the
 * claims kept them whole). Now the claims keep known fields only: the
 * database grows by less than PADDED_GROWTH, and no stored claim holds an
 * unknown field. The size is taken once the daemon has stopped (its last
 * connection checkpoints the WAL into the file), so it is what stays,
 * whatever the WAL held for a while.
 */
Test(retention, padded_refusals_cost_the_database_little)
{
    void *ctx = zmq_ctx_new(), *pub;
    sqlite3 *db;
    sqlite3_stmt *st;
    uint64_t before, after;
    size_t claims = 0, unknown = 0, largest = 0;

    cr_assert_eq(harness_init(&h, MINISTRIES), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    cr_assert_eq(harness_stop(&h), 0);
    before = db_bytes(); /* the schema, with nothing in it */
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    pub = raw_ingest(ctx);
    send_refused(pub, 1, PADDED, true);
    cr_assert_eq(counter_at_least("refused", PADDED), PADDED, "see %s", h.log);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);
    after = db_bytes();
    cr_log_info("database: %" PRIu64 " -> %" PRIu64 " bytes", before, after);
    cr_expect_lt(after - before, PADDED_GROWTH,
                 "%d padded refusals grew the database by %" PRIu64 " bytes", PADDED,
                 after - before);

    db = db_open();
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT update_pb FROM claim", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t len = (size_t)sqlite3_column_bytes(st, 0);
        Parksync__V1__Update *u =
            parksync__v1__update__unpack(NULL, len, sqlite3_column_blob(st, 0));
        cr_assert_not_null(u, "a claim that is no Update");
        unknown += wire_has_unknown(&u->base);
        parksync__v1__update__free_unpacked(u, NULL);
        largest = len > largest ? len : largest;
        claims++;
    }
    sqlite3_finalize(st);
    cr_expect_eq(claims, PADDED);
    cr_expect_eq(unknown, 0, "%zu claims of %zu hold an unknown field (the largest: %zu bytes)",
                 unknown, claims, largest);
    cr_expect_eq(db_int(db, "SELECT count(*) FROM conflict"), PADDED);
    sqlite3_close(db);
}

/* The sequences `parksync conflicts` lists, in order, into seq[] (at most
 * max); their number. */
static size_t listed_sequences(uint64_t *seq, size_t max)
{
    const char *argv[] = {"conflicts", "--limit", "1000", NULL};
    char *out = NULL, *err = NULL, *p;
    size_t n = 0;

    cr_assert_eq(harness_cli(&h, argv, NULL, &out, &err), 0, "%s", err);
    for (p = out; (p = strstr(p, "\"sequence\":")) != NULL && n < max; p++)
        seq[n++] = strtoull(p + strlen("\"sequence\":"), NULL, 10);
    free(out);
    free(err);
    return n;
}

/*
 * (b) [store] conflicts_keep = 50: of 200 refusals the newest 50 rows
 * and their claims stay, `parksync conflicts` lists them, status counts
 * 50 rows kept and 150 of each pruned. Then 25 of the rows are made 10
 * days old and the daemon restarts with conflicts_keep_days = 5: with no
 * ingest at all, those 25 go.
 */
Test(retention, conflicts_and_claims_are_kept_by_count_and_by_age)
{
    void *ctx = zmq_ctx_new(), *pub;
    uint64_t seq[KEEP + 1];
    sqlite3 *db;
    char sql[160];
    size_t n;

    cr_assert_eq(harness_init(&h, MINISTRIES), 0);
    snprintf(h.extra + strlen(h.extra), sizeof h.extra - strlen(h.extra),
             "\n[store]\nconflicts_keep = %d\n", KEEP);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    pub = raw_ingest(ctx);
    send_refused(pub, 1, REFUSALS, false);
    cr_assert_eq(counter_at_least("refused", REFUSALS), REFUSALS, "see %s", h.log);
    cr_expect_eq(counter_at_least("pruned_conflicts", REFUSALS - KEEP), REFUSALS - KEEP);
    cr_expect_eq(harness_counter(&h, "pruned_claims", 2000), REFUSALS - KEEP);

    n = listed_sequences(seq, KEEP + 1);
    cr_assert_eq(n, KEEP, "parksync conflicts lists %zu rows", n);
    for (size_t i = 0; i < n; i++)
        cr_expect_eq(seq[i], REFUSALS - KEEP + 1 + i, "row %zu is sequence %" PRIu64, i, seq[i]);
    db = db_open();
    cr_expect_eq(db_int(db, "SELECT count(*) FROM claim"), KEEP);
    cr_expect_eq(db_int(db, "SELECT min(sequence) FROM claim"), REFUSALS - KEEP + 1);
    sqlite3_close(db);
    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);

    /* the oldest AGED rows as if recorded ten days ago */
    db = db_open();
    snprintf(sql, sizeof sql,
             "UPDATE conflict SET recorded_us = recorded_us - %" PRId64 " WHERE sequence <= %d",
             10 * DAY_US, REFUSALS - KEEP + AGED);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    snprintf(h.extra + strlen(h.extra), sizeof h.extra - strlen(h.extra),
             "conflicts_keep_days = 5\n");
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    cr_expect_eq(counter_at_least("pruned_conflicts", AGED), AGED, "see %s", h.log);
    cr_expect_eq(harness_counter(&h, "pruned_claims", 2000), AGED);
    cr_expect_eq(harness_counter(&h, "received", 2000), 0, "pruned without any ingest");
    n = listed_sequences(seq, KEEP + 1);
    cr_assert_eq(n, KEEP - AGED);
    cr_expect_eq(seq[0], REFUSALS - KEEP + AGED + 1);
    cr_expect_eq(seq[n - 1], REFUSALS);
    db = db_open();
    cr_expect_eq(db_int(db, "SELECT count(*) FROM claim"), KEEP - AGED);
    sqlite3_close(db);
    cr_assert_eq(harness_stop(&h), 0);
}

#define STRANGERS      1000 /* updates from producer ids no ministry lists */
#define NEW_IDS        2000 /* producer ids made up with authority off */
#define MAX_PRODUCERS  300  /* [limits] max_producers of that test */
#define METRICS_MAX_KB 256  /* KiB the metrics text may take with them */

static size_t count_of(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/*
 * (c) Authority on: updates from producer ids no [ministry] lists cost
 * nothing durable: no producer row, no claim, no conflict row, no ack;
 * they are counted (unadmitted), and a listed producer goes on.
 */
Test(retention, unlisted_producers_cost_nothing_durable)
{
    void *ctx = zmq_ctx_new(), *pub;
    char id[32];
    sqlite3 *db;

    cr_assert_eq(harness_init(&h, MINISTRIES), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    pub = raw_ingest(ctx);
    for (int i = 0; i < STRANGERS; i++) {
        snprintf(id, sizeof id, "STRANGER-%05d", i);
        send_park(pub, id, 1, false);
    }
    send_park(pub, "AZ-MOE", 1, false);
    cr_assert_eq(counter_at_least("applied", 1), 1, "see %s", h.log); /* AZ-MOE's, sent last */
    cr_expect_eq(harness_counter(&h, "unadmitted", 2000), STRANGERS);
    cr_expect_eq(harness_counter(&h, "acks", 2000), 1, "only AZ-MOE is acknowledged");
    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);

    db = db_open();
    cr_expect_eq(db_int(db, "SELECT count(*) FROM producer"), 1);
    cr_expect_eq(db_int(db, "SELECT count(*) FROM conflict"), 0);
    cr_expect_eq(db_int(db, "SELECT count(*) FROM claim"), 0);
    sqlite3_close(db);
}

/*
 * (c) Authority off: [limits] max_producers bounds the producer ids the
 * database takes (the rest are unadmitted); status lists the first 256
 * by id and counts all, --producers-after gives the next, and metrics
 * lists the same 256 with a total.
 */
Test(retention, many_producer_ids_are_bounded_listed_in_pages_and_counted)
{
    const char *status[] = {"status", "--json", NULL};
    const char *metrics[] = {"metrics", NULL};
    char *out = NULL, *err = NULL, id[32], extra[64];
    void *ctx = zmq_ctx_new(), *pub;
    size_t listed;

    snprintf(extra, sizeof extra, "[limits]\nmax_producers = %d\n", MAX_PRODUCERS);
    cr_assert_eq(harness_init(&h, extra), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    pub = raw_ingest(ctx);
    for (int i = 0; i < NEW_IDS; i++) {
        snprintf(id, sizeof id, "P%05d", i);
        send_park(pub, id, 1, false);
    }
    cr_assert_eq(counter_at_least("applied", MAX_PRODUCERS) +
                     counter_at_least("unadmitted", NEW_IDS - MAX_PRODUCERS),
                 NEW_IDS, "see %s", h.log);
    cr_expect_eq(harness_counter(&h, "applied", 2000), MAX_PRODUCERS);

    cr_assert_eq(harness_cli(&h, status, NULL, &out, &err), 0, "%s", err);
    listed = count_of(out, "\"producer_id\":");
    cr_expect_eq(listed, WIRE_MAX_STATUS_PRODUCERS);
    cr_expect_not_null(strstr(out, "\"producers_total\":300"), "%.300s", out);
    cr_expect_not_null(strstr(out, "\"producer_id\":\"P00000\""));
    cr_expect_not_null(strstr(out, "\"producer_id\":\"P00255\""));
    cr_expect_null(strstr(out, "\"producer_id\":\"P00256\""), "the 257th is on the next page");
    free(out);
    free(err);

    const char *next[] = {"status", "--json", "--producers-after", "P00255", NULL};
    cr_assert_eq(harness_cli(&h, next, NULL, &out, &err), 0, "%s", err);
    cr_expect_eq(count_of(out, "\"producer_id\":"), MAX_PRODUCERS - WIRE_MAX_STATUS_PRODUCERS);
    cr_expect_not_null(strstr(out, "\"producer_id\":\"P00256\""));
    cr_expect_not_null(strstr(out, "\"producer_id\":\"P00299\""));
    free(out);
    free(err);

    const char *bad[] = {"status", "--producers-after", "bad id!", NULL};
    cr_expect_neq(harness_cli(&h, bad, NULL, &out, &err), 0, "a page after no id: %s", out);
    free(out);
    free(err);

    cr_assert_eq(harness_cli(&h, metrics, NULL, &out, &err), 0, "%s", err);
    cr_expect_eq(count_of(out, "parksync_producer_last_sequence{"), WIRE_MAX_STATUS_PRODUCERS);
    cr_expect_not_null(strstr(out, "\nparksync_producers 300\n"));
    cr_expect_lt(strlen(out), METRICS_MAX_KB * 1024, "metrics of %zu bytes", strlen(out));
    free(out);
    free(err);

    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);
}
