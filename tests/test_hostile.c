/*
 * test_hostile.c - hostile input against the real daemon.
 *
 * From raw ZeroMQ sockets to every endpoint (ingest, query, control),
 * more than 10,000 malformed messages: random bytes, truncated updates,
 * oversized frames, wrong frame counts, valid protobuf of the wrong type,
 * out-of-range enums, invalid UTF-8, huge repeated fields, wrong topics,
 * UpdateBatches with broken framing, too many updates or a bad update;
 * interleaved with valid updates from a libparksync producer. Then: the
 * daemon is still up, every valid update is applied, the database's
 * digest equals the digest of the valid updates alone applied to a fresh
 * store here, and every ingest and query rejection is counted (the
 * counters of the daemon's shutdown line).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "store.h"
#include "wire.h"

#define VALID        250 /* valid updates */
#define INGEST_EACH  33  /* malformed ingest messages per valid update */
#define QUERY_EACH   6   /* malformed query requests per valid update */
#define CONTROL_EACH 2   /* malformed control requests per valid update */
#define HUGE_FRAMES  3   /* frames over ZMQ_MAXMSGSIZE (peer disconnected, uncounted) */
#define BASE_TIME_US 1600000000000000LL /* event times of the valid updates */

static harness_t h;

static void teardown(void)
{
    harness_cleanup(&h);
}

/* ---------------------------------------------------------------- valid updates */

typedef struct gen {
    Parksync__V1__Update u;
    Parksync__V1__Park p;
    Parksync__V1__Resident r;
    char id[32], rid[32], name[64];
} gen_t;

/* Update i (0-based) of the valid set: parks and residents, some
 * overwriting earlier ones, fixed event times so the result is known. */
static void gen(gen_t *g, int i)
{
    parksync__v1__update__init(&g->u);
    g->u.has_event_time_us = true;
    g->u.event_time_us = BASE_TIME_US + i;
    snprintf(g->id, sizeof g->id, "%s-P%d", i % 2 ? "AZ" : "TJ", i % 37);
    snprintf(g->name, sizeof g->name, "Park %d", i);
    if (i % 3 == 2) {
        parksync__v1__resident__init(&g->r);
        snprintf(g->rid, sizeof g->rid, "R%d", i % 11);
        g->r.park_id = g->id;
        g->r.resident_id = g->rid;
        g->r.country = i % 2 ? "AZ" : "TJ";
        g->r.company_name = g->name;
        g->r.has_jobs = true;
        g->r.jobs = (uint32_t)i;
        g->u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
        g->u.resident = &g->r;
    } else {
        parksync__v1__park__init(&g->p);
        g->p.park_id = g->id;
        g->p.country = i % 2 ? "AZ" : "TJ";
        g->p.name = g->name;
        g->p.has_reported_residents = true;
        g->p.reported_residents = (uint32_t)i;
        g->u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
        g->u.park = &g->p;
    }
}

/* ---------------------------------------------------------------- malformed input */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void fill(uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rnd();
}

/* A well-formed envelope from a producer that is not the valid one. */
static void hostile_envelope(Parksync__V1__Update *u, Parksync__V1__Park *p, char *name)
{
    parksync__v1__update__init(u);
    parksync__v1__park__init(p);
    u->has_version = u->has_sequence = u->has_event_time_us = true;
    u->version = 1;
    u->producer_id = (char *)"HOSTILE";
    u->sequence = 1 + rnd() % 1000;
    u->event_time_us = BASE_TIME_US;
    p->park_id = (char *)"AZ-HOSTILE";
    p->country = (char *)"AZ";
    p->name = name;
    u->body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u->park = p;
}

static void send2(void *s, const char *topic, const void *data, size_t len)
{
    cr_assert(zmq_send(s, topic, strlen(topic), ZMQ_SNDMORE) >= 0);
    cr_assert(zmq_send(s, data, len, 0) >= 0);
}

/* One malformed ingest message of kind k; every one must be counted by the
 * daemon as bad frames, too large, undecodable, invalid or wrong topic. */
static void bad_ingest(void *pub, int k)
{
    static uint8_t buf[64 * 1024];
    Parksync__V1__Update u;
    Parksync__V1__Park p;
    Parksync__V1__SpecializationList sl = PARKSYNC__V1__SPECIALIZATION_LIST__INIT;
    Parksync__V1__Specialization sp[1500];
    char name[32] = "Hostile";
    size_t len;

    switch (k % 13) {
    case 0: /* random bytes */
        len = 1 + rnd() % 2000;
        fill(buf, len);
        send2(pub, "park", buf, len);
        break;
    case 1: /* truncated update */
        hostile_envelope(&u, &p, name);
        len = parksync__v1__update__pack(&u, buf);
        send2(pub, "park", buf, 1 + rnd() % (len - 1));
        break;
    case 2: /* oversized frame, under ZMQ_MAXMSGSIZE */
        len = WIRE_MAX_UPDATE + 1 + rnd() % (sizeof buf - WIRE_MAX_UPDATE - 1);
        fill(buf, len);
        send2(pub, "park", buf, len);
        break;
    case 3: /* wrong frame counts: one frame, or three */
        if (rnd() % 2) {
            cr_assert(zmq_send(pub, "park", 4, 0) >= 0);
        } else {
            hostile_envelope(&u, &p, name);
            len = parksync__v1__update__pack(&u, buf);
            cr_assert(zmq_send(pub, "park", 4, ZMQ_SNDMORE) >= 0);
            cr_assert(zmq_send(pub, buf, len, ZMQ_SNDMORE) >= 0);
            cr_assert(zmq_send(pub, buf, len, 0) >= 0);
        }
        break;
    case 4: { /* valid protobuf of the wrong type: a QueryRequest */
        Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
        Parksync__V1__Ping ping = PARKSYNC__V1__PING__INIT;
        q.has_version = q.has_request_id = true;
        q.version = 1;
        q.request_id = rnd();
        q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PING;
        q.ping = &ping;
        len = parksync__v1__query_request__pack(&q, buf);
        send2(pub, "park", buf, len);
        break;
    }
    case 5: /* out-of-range enum */
        hostile_envelope(&u, &p, name);
        p.has_status = true;
        p.status = (Parksync__V1__ParkStatus)(50 + rnd() % 1000);
        len = parksync__v1__update__pack(&u, buf);
        send2(pub, "park", buf, len);
        break;
    case 6: /* invalid UTF-8 */
        name[2] = (char)0xc0;
        name[3] = (char)0x80; /* overlong NUL */
        hostile_envelope(&u, &p, name);
        len = parksync__v1__update__pack(&u, buf);
        send2(pub, "park", buf, len);
        break;
    case 7: /* huge repeated field */
        hostile_envelope(&u, &p, name);
        for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
            sp[i] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
        sl.n_values = 17 + rnd() % (sizeof sp / sizeof sp[0] - 17);
        sl.values = sp;
        p.specializations = &sl;
        len = parksync__v1__update__pack(&u, buf);
        send2(pub, "park", buf, len);
        break;
    case 8: /* a sound update on the wrong topic */
        hostile_envelope(&u, &p, name);
        len = parksync__v1__update__pack(&u, buf);
        send2(pub, rnd() % 2 ? "trade" : "nonsense-topic", buf, len);
        break;
    case 10: { /* an UpdateBatch whose framing breaks after a sound update */
        Parksync__V1__Update *one = &u;
        Parksync__V1__UpdateBatch b = PARKSYNC__V1__UPDATE_BATCH__INIT;
        hostile_envelope(&u, &p, name);
        b.n_updates = 1;
        b.updates = &one;
        len = parksync__v1__update_batch__pack(&b, buf);
        buf[len++] = 0x0a;
        buf[len++] = 0x7f; /* an update of 127 bytes that is not there */
        send2(pub, WIRE_TOPIC_BATCH, buf, len);
        break;
    }
    case 11: /* an UpdateBatch of more updates than allowed */
        for (len = 0; len < 2 * (WIRE_MAX_BATCH + 1); len += 2) {
            buf[len] = 0x0a;
            buf[len + 1] = 0x00;
        }
        send2(pub, WIRE_TOPIC_BATCH, buf, len);
        break;
    case 12: { /* an UpdateBatch holding one update with invalid UTF-8 */
        Parksync__V1__Update *one = &u;
        Parksync__V1__UpdateBatch b = PARKSYNC__V1__UPDATE_BATCH__INIT;
        name[1] = (char)0xff;
        hostile_envelope(&u, &p, name);
        b.n_updates = 1;
        b.updates = &one;
        len = parksync__v1__update_batch__pack(&b, buf);
        send2(pub, WIRE_TOPIC_BATCH, buf, len);
        break;
    }
    default: /* envelope without producer id, or version 2 */
        hostile_envelope(&u, &p, name);
        if (rnd() % 2)
            u.producer_id = NULL;
        else
            u.version = 2;
        len = parksync__v1__update__pack(&u, buf);
        send2(pub, "park", buf, len);
        break;
    }
}

/* One malformed query request; each is counted as a bad query. */
static void bad_query(void *dealer, int k)
{
    static uint8_t buf[8 * 1024];
    size_t len;

    switch (k % 4) {
    case 0: /* random bytes */
        len = 1 + rnd() % 1000;
        fill(buf, len);
        cr_assert(zmq_send(dealer, buf, len, 0) >= 0);
        break;
    case 1: { /* an Update: valid protobuf of the wrong type */
        Parksync__V1__Update u;
        Parksync__V1__Park p;
        char name[] = "x";
        hostile_envelope(&u, &p, name);
        len = parksync__v1__update__pack(&u, buf);
        cr_assert(zmq_send(dealer, buf, len, 0) >= 0);
        break;
    }
    case 2: /* over WIRE_MAX_QUERY */
        len = WIRE_MAX_QUERY + 1 + rnd() % 2000;
        fill(buf, len);
        cr_assert(zmq_send(dealer, buf, len, 0) >= 0);
        break;
    default: /* wrong frame count */
        cr_assert(zmq_send(dealer, "a", 1, ZMQ_SNDMORE) >= 0);
        cr_assert(zmq_send(dealer, "b", 1, ZMQ_SNDMORE) >= 0);
        cr_assert(zmq_send(dealer, "c", 1, 0) >= 0);
        break;
    }
}

static void bad_control(void *dealer, int k)
{
    uint8_t buf[6000];
    size_t len = k % 3 == 0 ? sizeof buf : 1 + rnd() % 300; /* some over WIRE_MAX_CONTROL */

    fill(buf, len);
    if (k % 5 == 1)
        cr_assert(zmq_send(dealer, buf, len, ZMQ_SNDMORE) >= 0);
    cr_assert(zmq_send(dealer, buf, len, 0) >= 0);
}

static void drain(void *s)
{
    zmq_msg_t m;

    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0)
        ;
    zmq_msg_close(&m);
}

static uint64_t counter(const char *log, const char *name)
{
    const char *line = strstr(log, "stopped at revision");
    const char *p = line ? strstr(line, name) : NULL;
    unsigned long long v = 0;

    cr_assert_not_null(p, "no '%s' in the shutdown line", name);
    cr_assert_eq(sscanf(p + strlen(name), " %llu", &v), 1);
    return v;
}

/* ---------------------------------------------------------------- the test */

Test(hostile, ten_thousand_malformed_messages_change_nothing, .fini = teardown, .timeout = 300)
{
    void *ctx = zmq_ctx_new();
    void *pub = zmq_socket(ctx, ZMQ_XPUB), *query = zmq_socket(ctx, ZMQ_DEALER);
    void *control = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, k_ingest = 0, k_query = 0, k_control = 0;
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    gen_t g;
    uint8_t sub[64];

    cr_assert_eq(harness_init(&h, "[limits]\nsummary_interval_ms = 0\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);

    zmq_setsockopt(pub, ZMQ_SNDHWM, &zero, sizeof zero); /* no drops on our side */
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(query, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(control, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(pub, h.ingest), 0);
    cr_assert_eq(zmq_connect(query, h.query), 0);
    cr_assert_eq(zmq_connect(control, h.control), 0);
    /* the daemon's SUB has subscribed: nothing we send is lost to the slow joiner */
    int rcvtimeo = 5000;
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    cr_assert(zmq_recv(pub, sub, sizeof sub, 0) >= 1, "the daemon never subscribed");

    harness_producer_options(&h, &o, "VALID");
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));

    for (int i = 0; i < VALID; i++) {
        for (int j = 0; j < INGEST_EACH; j++)
            bad_ingest(pub, k_ingest++);
        for (int j = 0; j < QUERY_EACH; j++)
            bad_query(query, k_query++);
        for (int j = 0; j < CONTROL_EACH; j++)
            bad_control(control, k_control++);
        gen(&g, i);
        cr_assert_eq(ps_producer_send(p, &g.u, NULL, 10000), PS_OK, "valid update %d", i);
        if (i % 16 == 0) {
            cr_assert_eq(ps_producer_poll(p), PS_OK);
            drain(query);
            drain(control);
        }
    }
    cr_assert_eq(ps_producer_flush(p, 30000), PS_OK, "not every valid update was acked");
    cr_expect_eq(ps_producer_last_acked(p), VALID);
    ps_producer_destroy(&p);

    /* Frames over ZMQ_MAXMSGSIZE: ZeroMQ drops the connection before the
     * daemon sees them; its own socket, so the counted stream is not cut. */
    {
        void *big = zmq_socket(ctx, ZMQ_PUB);
        size_t n = WIRE_MAX_MSG + 4096;
        uint8_t *huge = calloc(1, n);
        zmq_setsockopt(big, ZMQ_LINGER, &zero, sizeof zero);
        cr_assert_eq(zmq_connect(big, h.ingest), 0);
        usleep(200000);
        for (int i = 0; i < HUGE_FRAMES; i++)
            send2(big, "park", huge, n);
        usleep(300000);
        free(huge);
        zmq_close(big);
    }
    cr_assert(harness_ping(&h, 2000), "the daemon stopped answering");
    /* The malformed messages travel on sockets of their own, in no order
     * with the valid ones: wait, with a deadline, until the daemon has
     * counted every one of them. */
    static const char *const ingest_reasons[] = {"bad_frames", "too_large", "undecodable",
                                                 "invalid", "wrong_topic"};
    int64_t deadline = wire_monotonic_ms() + 20000, counted = 0, bad_q = 0, bad_c = 0;
    do {
        counted = 0;
        for (size_t r = 0; r < sizeof ingest_reasons / sizeof ingest_reasons[0]; r++)
            counted += harness_counter(&h, ingest_reasons[r], 2000);
        bad_q = harness_counter(&h, "bad_queries", 2000);
        bad_c = harness_counter(&h, "bad_control", 2000);
    } while ((counted < k_ingest || bad_q < k_query || bad_c < k_control) &&
             wire_monotonic_ms() < deadline);
    cr_expect_eq(bad_c, (int64_t)k_control, "control rejections counted %" PRId64 " of %d", bad_c,
                 k_control);
    zmq_close(pub);
    zmq_close(query);
    zmq_close(control);
    zmq_ctx_term(ctx);

    cr_assert_eq(harness_stop(&h), 0, "the daemon did not exit cleanly");
    char *log = harness_slurp(h.log);
    cr_assert_not_null(log);
    uint64_t rejected = counter(log, "bad frames") + counter(log, "too large") +
                        counter(log, "undecodable") + counter(log, "invalid") +
                        counter(log, "wrong topic");
    cr_expect_eq(rejected, (uint64_t)k_ingest, "ingest rejections counted %" PRIu64 " of %d sent",
                 rejected, k_ingest);
    cr_expect_eq(counter(log, "(bad"), (uint64_t)k_query, "bad queries counted");
    cr_expect_eq(counter(log, "applied"), VALID);
    cr_expect(k_ingest + k_query + k_control >= 10000, "only %d malformed messages",
              k_ingest + k_query + k_control);
    free(log);

    /* The daemon's picture equals the valid updates' alone. */
    store_config_t cfg;
    char err_text[256], path[HARNESS_PATH + 16];
    uint8_t want[32], got[32];
    store_outcome_t out;
    store_t *s;

    store_config_init(&cfg);
    cfg.path = h.db;
    s = store_open(&cfg, err_text, sizeof err_text);
    cr_assert_not_null(s, "%s", err_text);
    cr_assert_eq(store_digest(s, got), 0);
    store_close(&s);

    snprintf(path, sizeof path, "%s/alone.db", h.dir);
    cfg.path = path;
    s = store_open(&cfg, err_text, sizeof err_text);
    cr_assert_not_null(s, "%s", err_text);
    cr_assert_eq(store_begin(s), 0);
    for (int i = 0; i < VALID; i++) {
        gen(&g, i);
        g.u.has_version = g.u.has_sequence = true;
        g.u.version = 1;
        g.u.producer_id = "VALID";
        g.u.sequence = (uint64_t)i + 1;
        cr_assert_eq(store_apply(s, &g.u, &out), 0);
        cr_assert_eq(out, STORE_APPLIED);
    }
    cr_assert_geq(store_refresh_summaries(s), 0);
    cr_assert_eq(store_commit(s), 0);
    cr_assert_eq(store_digest(s, want), 0);
    store_close(&s);
    cr_expect_arr_eq(got, want, 32, "the daemon's digest differs from the valid updates'");
}

/* Starts the daemon and connects pub (an XPUB) to its ingest; returns
 * once the daemon's SUB has subscribed, so nothing sent is lost. */
static void start_raw_ingest(void *pub)
{
    int zero = 0, rcvtimeo = 5000;
    uint8_t sub[64];

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(pub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    cr_assert_eq(zmq_connect(pub, h.ingest), 0);
    cr_assert(zmq_recv(pub, sub, sizeof sub, 0) >= 1, "the daemon never subscribed");
}

/* What the daemon counted for producer id, asked on its query socket. */
static void producer_stats(const char *id, ps_producer_stats_t *st)
{
    ps_producer_options_t o;

    ps_producer_options_init(&o);
    o.producer_id = id;
    o.query_endpoint = h.query;
    cr_assert_eq(ps_producer_query(&o, 5000, st), PS_OK);
}

/* An UpdateBatch is handled update by update, each counted and sequenced
 * on its own, or not at all when its framing breaks anywhere in it. */
Test(hostile, update_batch_is_all_or_nothing, .fini = teardown, .timeout = 60)
{
    static uint8_t buf[4096];
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_XPUB);
    Parksync__V1__Update u[3], *ups[3] = {&u[0], &u[1], &u[2]};
    Parksync__V1__Park p[3];
    Parksync__V1__UpdateBatch b = PARKSYNC__V1__UPDATE_BATCH__INIT;
    char names[3][16] = {"First", "Bad\xff", "Third"};
    ps_producer_stats_t st;
    size_t len;

    start_raw_ingest(pub);
    for (int i = 0; i < 3; i++) {
        hostile_envelope(&u[i], &p[i], names[i]);
        u[i].producer_id = (char *)"BATCHER";
        u[i].sequence = (uint64_t)i + 1;
    }
    b.n_updates = 3;
    b.updates = ups;

    /* three updates, then framing that breaks: none of them is applied */
    len = parksync__v1__update_batch__pack(&b, buf);
    buf[len] = 0x0a;
    buf[len + 1] = 0x7f;
    send2(pub, WIRE_TOPIC_BATCH, buf, len + 2);
    cr_assert_eq(harness_counter_reaches(&h, "undecodable", 1, 10000), 1);
    cr_assert_eq(harness_counter(&h, "applied", 2000), 0, "a broken batch was partly applied");

    /* the same three, well framed: two applied, the bad one refused */
    send2(pub, WIRE_TOPIC_BATCH, buf, len);
    cr_assert_eq(harness_counter_reaches(&h, "applied", 2, 10000), 2);
    cr_assert_eq(harness_counter(&h, "invalid", 2000), 1);
    producer_stats("BATCHER", &st);
    cr_assert_eq(st.last_sequence, 3, "each update of the batch is sequenced on its own");
    cr_assert_eq(st.applied, 2);
    cr_assert_eq(st.rejected, 1);

    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);
}

/* An invalid update and one on the wrong topic consume their sequences,
 * are counted (invalid, wrong_topic) and listed by `parksync conflicts`
 * with the record they name and reason "invalid: FIELD: why", in the
 * "invalid" class of conflicts_by_reason. */
Test(hostile, invalid_and_wrong_topic_updates_are_listed_as_invalid, .fini = teardown,
     .timeout = 60)
{
    static uint8_t buf[4096];
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_XPUB);
    const char *conflicts[] = {"conflicts", NULL};
    const char *status[] = {"status", NULL};
    Parksync__V1__Update u;
    Parksync__V1__Park p;
    char bad[] = "Bad\xff", good[] = "Good";
    char *out = NULL, *err = NULL;
    size_t len;

    start_raw_ingest(pub);

    hostile_envelope(&u, &p, bad);
    u.sequence = 1;
    len = parksync__v1__update__pack(&u, buf);
    send2(pub, "park", buf, len);
    hostile_envelope(&u, &p, good);
    u.sequence = 2;
    len = parksync__v1__update__pack(&u, buf);
    send2(pub, "resident", buf, len);
    cr_assert_eq(harness_counter_reaches(&h, "invalid", 1, 10000), 1);
    cr_assert_eq(harness_counter_reaches(&h, "wrong_topic", 1, 10000), 1);
    cr_assert_eq(harness_counter(&h, "applied", 2000), 0);

    cr_assert_eq(harness_cli(&h, conflicts, NULL, &out, &err), 0, "%s", err);
    cr_expect_not_null(strstr(out, "\"sequence\":1,\"kind\":\"park\",\"key\":\"AZ/AZ-HOSTILE\""),
                       "%s", out);
    cr_expect_not_null(
        strstr(out, "\"reason\":\"invalid: park.name: must be 1..256 bytes of UTF-8 without NUL\""),
        "%s", out);
    cr_expect_not_null(strstr(out, "\"sequence\":2,\"kind\":\"park\",\"key\":\"AZ/AZ-HOSTILE\""),
                       "%s", out);
    cr_expect_not_null(strstr(out, "\"reason\":\"invalid: topic: 'resident' for an update that "
                                   "belongs on 'park'\""),
                       "%s", out);
    free(out);
    free(err);
    cr_assert_eq(harness_cli(&h, status, NULL, &out, &err), 0, "%s", err);
    cr_expect_not_null(strstr(out, "conflicts: 2 (invalid 2)"), "%s", out);
    free(out);
    free(err);

    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);
}

/* A park named "nul\0here" from a raw producer: protobuf-c alone would
 * store it as "nul". It is an invalid update instead: not stored, counted
 * (invalid), its sequence consumed so the next one applies, and listed by
 * `parksync conflicts` as "invalid: park.name: contains a NUL byte". */
Test(hostile, text_with_a_nul_byte_is_an_invalid_update, .fini = teardown, .timeout = 60)
{
    static uint8_t buf[4096];
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_XPUB);
    const char *conflicts[] = {"conflicts", NULL};
    Parksync__V1__Update u;
    Parksync__V1__Park p;
    char nul[] = "nul#here", good[] = "Good";
    char *out = NULL, *err = NULL, *hash;
    ps_producer_stats_t st;
    store_config_t cfg;
    char err_text[256];
    store_t *s;
    uint64_t parks = 0;
    int64_t applied;
    size_t len;

    start_raw_ingest(pub);
    hostile_envelope(&u, &p, nul);
    u.producer_id = (char *)"RAW-NUL";
    u.sequence = 1;
    len = parksync__v1__update__pack(&u, buf);
    /* packed with a placeholder: protobuf-c packs C strings */
    hash = memchr(buf, '#', len);
    cr_assert_not_null(hash);
    *hash = '\0';
    send2(pub, "park", buf, len);
    hostile_envelope(&u, &p, good);
    u.producer_id = (char *)"RAW-NUL";
    u.sequence = 2;
    p.park_id = (char *)"AZ-GOOD";
    len = parksync__v1__update__pack(&u, buf);
    send2(pub, "park", buf, len);

    applied = harness_counter_reaches(&h, "applied", 1, 10000);
    cr_assert_geq(applied, 1, "the next sequence was not applied");
    cr_expect_eq(applied, 1, "the park named with a NUL was applied too");
    cr_expect_eq(harness_counter(&h, "invalid", 2000), 1);
    producer_stats("RAW-NUL", &st);
    cr_expect_eq(st.last_sequence, 2, "the NUL update's sequence was not consumed");
    cr_expect_eq(st.applied, 1);
    cr_expect_eq(st.rejected, 1);

    cr_assert_eq(harness_cli(&h, conflicts, NULL, &out, &err), 0, "%s", err);
    cr_expect_not_null(strstr(out, "\"sequence\":1,\"kind\":\"park\",\"key\":\"AZ/AZ-HOSTILE\""),
                       "%s", out);
    cr_expect_not_null(strstr(out, "\"reason\":\"invalid: park.name: contains a NUL byte\""), "%s",
                       out);
    free(out);
    free(err);

    zmq_close(pub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);

    store_config_init(&cfg);
    cfg.path = h.db;
    s = store_open(&cfg, err_text, sizeof err_text);
    cr_assert_not_null(s, "%s", err_text);
    cr_expect_eq(store_count_records(s, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, &parks), 0);
    cr_expect_eq(parks, 1, "the park named with a NUL was stored");
    store_close(&s);
}

/* A welcome heartbeat answers only a subscription that receives
 * heartbeats (a prefix of "hb/"), not any other: each is a broadcast to
 * every subscriber. (One that merely starts with "hb/", as "hb/x", is no
 * topic prefix at all: the daemon closes the connection that sends it;
 * see test_budget_publish.c.) */
Test(hostile, only_subscriptions_covering_hb_get_a_welcome_heartbeat, .fini = teardown,
     .timeout = 60)
{
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0, rcvtimeo = 5000;
    int64_t before, after;
    uint8_t buf[4096];

    /* no periodic heartbeat while the test runs */
    cr_assert_eq(harness_init(&h, "[limits]\nheartbeat_ms = 60000\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    before = harness_counter(&h, "heartbeats", 2000);
    cr_assert_geq(before, 0);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo);
    /* connected first, so the subscriptions go out in the order made */
    cr_assert_eq(zmq_connect(sub, h.publish), 0);
    for (int i = 0; i < 20; i++) {
        char topic[16];
        snprintf(topic, sizeof topic, "ack/P-%d/", i);
        zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, strlen(topic));
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, WIRE_TOPIC_HEARTBEAT, strlen(WIRE_TOPIC_HEARTBEAT));
    /* the daemon reads one connection's subscriptions in order: when the
     * welcome for the last one arrives, the others have been seen */
    cr_assert(zmq_recv(sub, buf, sizeof buf, 0) >= 0, "no welcome heartbeat");
    after = harness_counter(&h, "heartbeats", 2000);
    cr_expect_eq(after, before + 1, "%" PRId64 " heartbeats for one welcome", after - before);

    zmq_close(sub);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0);
}
