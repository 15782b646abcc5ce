/*
 * test_query.c - the query socket against the real daemon, as a client
 * written from proto/README.md sees it: every request is answered (never
 * silence), refusals name the field, and cancel ends a stream with a
 * final chunk.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "harness.h"
#include "wire.h"

#define REPLY_WAIT_MS 5000 /* longest wait for one reply */

static harness_t h;
static void *ctx, *dealer;

static void setup(void)
{
    int zero = 0, timeo = REPLY_WAIT_MS;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    ctx = zmq_ctx_new();
    dealer = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeo, sizeof timeo);
    cr_assert_eq(zmq_connect(dealer, h.query), 0);
}

static void teardown(void)
{
    zmq_close(dealer);
    zmq_ctx_term(ctx);
    harness_cleanup(&h);
}

static void send_request(const Parksync__V1__QueryRequest *q)
{
    size_t len;
    uint8_t *buf = wire_pack(&q->base, &len);

    cr_assert_not_null(buf);
    cr_assert(zmq_send(dealer, buf, len, 0) >= 0);
    free(buf);
}

/* The next reply, decoded; fails the test when none comes in time. */
static Parksync__V1__QueryReply *next_reply(void)
{
    Parksync__V1__QueryReply *r = NULL;
    const char *why = NULL;
    zmq_msg_t m;

    zmq_msg_init(&m);
    cr_assert(zmq_msg_recv(&m, dealer, 0) >= 0, "no reply within %d ms: silence", REPLY_WAIT_MS);
    cr_assert_eq(wire_query_reply_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, &why), 0,
                 "undecodable reply: %s", why ? why : "?");
    zmq_msg_close(&m);
    return r;
}

/* The next reply must be error{code} for request_id whose message starts
 * with `field`. */
static void expect_error(uint64_t request_id, Parksync__V1__ErrorCode code, const char *field)
{
    Parksync__V1__QueryReply *r = next_reply();

    cr_assert_eq(r->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_ERROR,
                 "request %" PRIu64 ": not an error (body %d)", request_id, (int)r->body_case);
    cr_expect_eq(r->request_id, request_id, "reply to %" PRIu64 " echoes %" PRIu64, request_id,
                 r->request_id);
    cr_expect_eq(r->error->code, code, "request %" PRIu64 ": code %d", request_id,
                 (int)r->error->code);
    cr_expect(r->error->message && strncmp(r->error->message, field, strlen(field)) == 0,
              "request %" PRIu64 ": message '%s' does not start with '%s'", request_id,
              r->error->message ? r->error->message : "(none)", field);
    parksync__v1__query_reply__free_unpacked(r, NULL);
}

static void request_init(Parksync__V1__QueryRequest *q, uint64_t id)
{
    parksync__v1__query_request__init(q);
    q->has_version = q->has_request_id = true;
    q->version = WIRE_VERSION;
    q->request_id = id;
}

/* Each invalid request gets BAD_REQUEST naming the field, with its id. */
Test(query, every_invalid_request_is_answered_naming_the_field, .init = setup, .fini = teardown,
     .timeout = 60)
{
    static const struct {
        const char *field; /* what the message must start with */
    } cases[] = {
        {"snapshot.credit: must be 1..64"},            /* 0: credit 0 */
        {"snapshot.credit: must be 1..64"},            /* 1: credit 65 */
        {"snapshot.chunk_records: must be 1..4096"},   /* 2: 0 records */
        {"changes.chunk_records: must be 1..4096"},    /* 3: 4097 records */
        {"filter.country: must be two upper-case"},    /* 4: "az" */
        {"filter.country: must be two upper-case"},    /* 5: "AZE" */
        {"filter.kind: unknown value"},                /* 6: kind 9 */
        {"version: missing"},                          /* 7 */
        {"version: unsupported request"},              /* 8: version 2 */
        {"body: missing"},                             /* 9 */
        {"body: unsupported request"},                 /* 10: a body of a newer client */
        {"changes.since_revision: missing"},           /* 11 */
        {"credit.chunks: missing or not 1..64"},       /* 12: credit{} */
        {"producer_state.producer_id: must be 1..64"}, /* 13: "a b" */
        {"replicate.site: must be 1..64"},             /* 14: "" */
        {"replicate.epoch: must be 16 bytes"},         /* 15: 3 bytes */
        {"replicate.since_revision: missing"},         /* 16 */
        {"replicate.wait_ms: must be 0..30000"},       /* 17: 30001 */
        {"replicate.trade_rule: unknown value"},       /* 18: rule 9 */
        {"replicate.trade_threshold_pct, trade_cif_fob_factor: must be finite"}, /* 19: NaN */
        /* 20: a pull carrying one [trade] setting, other than this site's */
        {"replicate: the pulling site's [trade] settings (rule = not given, threshold_pct = not "
         "given, cif_fob_factor = 99.5) differ"},
    };
    for (unsigned c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Parksync__V1__QueryRequest q;
        Parksync__V1__SnapshotRequest sr = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
        Parksync__V1__ChangesRequest cr = PARKSYNC__V1__CHANGES_REQUEST__INIT;
        Parksync__V1__Credit cd = PARKSYNC__V1__CREDIT__INIT;
        Parksync__V1__ProducerStateRequest ps = PARKSYNC__V1__PRODUCER_STATE_REQUEST__INIT;
        Parksync__V1__Filter f = PARKSYNC__V1__FILTER__INIT;
        Parksync__V1__ReplicateRequest rr = PARKSYNC__V1__REPLICATE_REQUEST__INIT;
        /* body field 99 of a newer schema (16 is replicate), an empty message: its length 0 */
        static uint8_t empty[] = {0}, short_epoch[3] = {1, 2, 3};
        ProtobufCMessageUnknownField unknown = {
            .tag = 99, .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, .len = 1, .data = empty};
        uint64_t id = 1000 + c;

        request_init(&q, id);
        q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
        q.snapshot = &sr;
        cr.has_since_revision = true;
        switch (c) {
        case 0:
        case 1:
            sr.has_credit = true;
            sr.credit = c == 0 ? 0 : WIRE_MAX_CREDIT + 1;
            break;
        case 2:
            sr.has_chunk_records = true;
            sr.chunk_records = 0;
            break;
        case 3:
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES;
            q.changes = &cr;
            cr.has_chunk_records = true;
            cr.chunk_records = WIRE_MAX_CHUNK_RECORDS + 1;
            break;
        case 4:
        case 5:
            sr.filter = &f;
            f.country = c == 4 ? "az" : "AZE";
            break;
        case 6:
            sr.filter = &f;
            f.has_kind = true;
            f.kind = 9;
            break;
        case 7:
            q.has_version = false;
            break;
        case 8:
            q.version = 2;
            break;
        case 9:
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY__NOT_SET;
            break;
        case 10:
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY__NOT_SET;
            q.base.n_unknown_fields = 1;
            q.base.unknown_fields = &unknown;
            break;
        case 11:
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES;
            q.changes = &cr;
            cr.has_since_revision = false;
            break;
        case 12:
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT;
            q.credit = &cd;
            break;
        case 13:
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PRODUCER_STATE;
            q.producer_state = &ps;
            ps.producer_id = "a b";
            break;
        default: /* a site's pull: one field wrong each */
            q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_REPLICATE;
            q.replicate = &rr;
            rr.site = c == 14 ? "" : "site-b";
            rr.has_since_revision = c != 16;
            rr.has_epoch = c == 15;
            rr.epoch.data = short_epoch;
            rr.epoch.len = c == 15 ? sizeof short_epoch : 0;
            rr.has_wait_ms = c == 17;
            rr.wait_ms = WIRE_MAX_WAIT_MS + 1;
            rr.has_trade_rule = c == 18;
            rr.trade_rule = 9;
            rr.has_trade_threshold_pct = c == 19;
            rr.trade_threshold_pct = NAN;
            rr.has_trade_cif_fob_factor = c == 20;
            rr.trade_cif_fob_factor = 99.5;
            break;
        }
        send_request(&q);
        expect_error(id, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, cases[c].field);
    }
    cr_expect_eq(harness_counter(&h, "bad_queries", 2000),
                 (int64_t)(sizeof cases / sizeof cases[0]));
}

/* What does not decode, is too large or has extra frames is answered too:
 * with the request_id when it can be read, else 0. */
Test(query, undecodable_oversized_and_misframed_requests_are_answered, .init = setup,
     .fini = teardown, .timeout = 60)
{
    static uint8_t big[WIRE_MAX_QUERY + 100];
    Parksync__V1__QueryRequest q;
    Parksync__V1__Ping ping = PARKSYNC__V1__PING__INIT;
    size_t len;
    uint8_t *buf;

    /* a ping padded past 4 KiB with an unknown field: its id is readable */
    request_init(&q, 77);
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PING;
    q.ping = &ping;
    buf = wire_pack(&q.base, &len);
    cr_assert_not_null(buf);
    memcpy(big, buf, len);
    big[len] = 0x9a; /* field 99, wire type LEN: key 794 as a varint */
    big[len + 1] = 0x06;
    size_t pad = sizeof big - len - 4;
    big[len + 2] = (uint8_t)(pad & 0x7f) | 0x80;
    big[len + 3] = (uint8_t)(pad >> 7);
    free(buf);
    cr_assert(zmq_send(dealer, big, sizeof big, 0) >= 0);
    expect_error(77, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, "request: larger than");

    /* broken framing after the id */
    uint8_t broken[] = {0x08, 0x01, 0x10, 0x2a, 0x52, 0x7f};
    cr_assert(zmq_send(dealer, broken, sizeof broken, 0) >= 0);
    expect_error(42, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, "request: not a valid");

    /* three frames */
    cr_assert(zmq_send(dealer, "a", 1, ZMQ_SNDMORE) >= 0);
    cr_assert(zmq_send(dealer, "b", 1, ZMQ_SNDMORE) >= 0);
    cr_assert(zmq_send(dealer, "c", 1, 0) >= 0);
    expect_error(0, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, "request: must be one frame");
}

/* Cancel of a running stream is answered by a final chunk (last, no
 * records): nothing of that stream follows it. Cancel of no stream is
 * UNKNOWN_REQUEST. */
Test(query, cancel_ends_a_stream_with_a_final_chunk, .init = setup, .fini = teardown, .timeout = 60)
{
    const char *push[] = {"push", "--producer", "AZ-MOE", EXAMPLES_DIR "/az-moe.jsonl", NULL};
    Parksync__V1__QueryRequest q;
    Parksync__V1__SnapshotRequest sr = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
    Parksync__V1__Cancel cancel = PARKSYNC__V1__CANCEL__INIT;
    Parksync__V1__Ping ping = PARKSYNC__V1__PING__INIT;
    Parksync__V1__QueryReply *r;
    char *err = NULL;

    request_init(&q, 5);
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CANCEL;
    q.cancel = &cancel;
    send_request(&q);
    expect_error(5, PARKSYNC__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_REQUEST, "no stream");

    cr_assert_eq(harness_cli(&h, push, NULL, NULL, &err), 0, "push: %s", err);
    free(err);
    /* one record per chunk, one chunk of credit: the stream then waits */
    request_init(&q, 6);
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
    q.snapshot = &sr;
    sr.has_credit = sr.has_chunk_records = true;
    sr.credit = sr.chunk_records = 1;
    send_request(&q);
    r = next_reply();
    cr_assert_eq(r->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK);
    cr_assert_not(r->chunk->last, "the pushed file holds more than one record");
    parksync__v1__query_reply__free_unpacked(r, NULL);

    request_init(&q, 6);
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CANCEL;
    q.cancel = &cancel;
    send_request(&q);
    request_init(&q, 9);
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PING;
    q.ping = &ping;
    send_request(&q);
    r = next_reply();
    cr_assert_eq(r->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK,
                 "a cancelled stream ends with a chunk (got body %d)", (int)r->body_case);
    cr_expect_eq(r->request_id, 6);
    cr_expect(r->chunk->last);
    cr_expect_eq(r->chunk->n_records, 0);
    parksync__v1__query_reply__free_unpacked(r, NULL);
    r = next_reply();
    cr_expect_eq(r->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_PONG,
                 "nothing of the cancelled stream after its end");
    parksync__v1__query_reply__free_unpacked(r, NULL);
}
