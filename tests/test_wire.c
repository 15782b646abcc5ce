/*
 * test_wire.c - the shared wire library: validation, topics, bounded
 * decoding and the raw chunk/publication builders.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upd.h"
#include "wire.h"

/* A valid park update that individual tests break one field at a time. */
typedef struct fixture {
    Parksync__V1__Update u;
    Parksync__V1__Park park;
    Parksync__V1__SpecializationList specs;
    Parksync__V1__Specialization spec_values[2];
} fixture_t;

static void fixture_init(fixture_t *f)
{
    parksync__v1__update__init(&f->u);
    parksync__v1__park__init(&f->park);
    parksync__v1__specialization_list__init(&f->specs);
    f->u.has_version = 1;
    f->u.version = WIRE_VERSION;
    f->u.producer_id = "AZ-MOE";
    f->u.has_sequence = 1;
    f->u.sequence = 7;
    f->u.has_event_time_us = 1;
    f->u.event_time_us = 1608681600000000;
    f->u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    f->u.park = &f->park;
    f->park.park_id = "AZ-SUMGAIT-CHEM";
    f->park.country = "AZ";
    f->park.name = "Sumqayıt Kimya Sənaye Parkı";
    f->spec_values[0] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_CHEMISTRY;
    f->specs.n_values = 1;
    f->specs.values = f->spec_values;
    f->park.specializations = &f->specs;
}

Test(wire, utf8_accepts_valid_and_refuses_malformed)
{
    static const struct {
        const char *s;
        size_t len;
        bool ok;
    } cases[] = {
        {"plain", 5, true},
        {"Sumqayıt", 9, true},
        {"\xe2\x82\xac", 3, true},      /* euro sign */
        {"\xf0\x9f\x8f\xad", 4, true},  /* U+1F3ED factory */
        {"\xc0\xaf", 2, false},         /* overlong '/' */
        {"\xe0\x80\xaf", 3, false},     /* overlong, 3 bytes */
        {"\xed\xa0\x80", 3, false},     /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
        {"\x80", 1, false},             /* lone continuation */
        {"\xe2\x82", 2, false},         /* truncated */
        {"a\0b", 3, false},             /* embedded NUL */
        {"\xff", 1, false},
        /* long enough for the 8-byte ASCII path */
        {"Sumgait Chemical Industrial Park", 32, true},
        {"Sumgait Chemical Industrial Park, Sumqay\xc4\xb1t", 42, true},
        {"Sumgait \0hemical Industrial Park", 32, false},   /* NUL inside a word */
        {"Sumgait Chemical Industrial Par\xc4", 32, false}, /* truncated at the end */
        {"Sumgait Chemical\xed\xa0\x80 Industrial Park", 35, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_eq(wire_utf8_valid(cases[i].s, cases[i].len), cases[i].ok, "case %zu", i);
}

Test(wire, ids_and_countries)
{
    char long_id[WIRE_MAX_ID + 2];

    cr_expect(wire_id_valid("AZ-MOE"));
    cr_expect(wire_id_valid("tj_mint.2"));
    cr_expect_not(wire_id_valid(""));
    cr_expect_not(wire_id_valid(NULL));
    cr_expect_not(wire_id_valid("AZ MOE"));
    cr_expect_not(wire_id_valid("AZ/MOE"));
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    cr_expect_not(wire_id_valid(long_id));
    long_id[WIRE_MAX_ID] = '\0';
    cr_expect(wire_id_valid(long_id));

    cr_expect(wire_country_valid("AZ"));
    cr_expect_not(wire_country_valid("az"));
    cr_expect_not(wire_country_valid("AZE"));
    cr_expect_not(wire_country_valid("A"));
}

Test(wire, period_key_and_bounds)
{
    Parksync__V1__Period p = PARKSYNC__V1__PERIOD__INIT;
    char key[32];

    p.has_year = p.has_first_month = p.has_last_month = 1;
    p.year = 2020;
    p.first_month = 1;
    p.last_month = 10;
    cr_assert_eq(wire_period_key(key, sizeof(key), &p), 11);
    cr_expect_str_eq(key, "2020-01..10");
    p.first_month = 11;
    cr_expect_not(wire_period_valid(&p));
    p.first_month = 1;
    p.last_month = 13;
    cr_expect_not(wire_period_valid(&p));
    p.last_month = 12;
    p.has_year = 0;
    cr_expect_not(wire_period_valid(&p));
    cr_expect_eq(wire_period_key(key, sizeof(key), &p), -EINVAL);
}

Test(wire, dates)
{
    cr_expect(wire_date_valid("2020-12-23"));
    cr_expect(wire_date_valid("2020-02-29"));
    cr_expect_not(wire_date_valid("2021-02-29"));
    cr_expect_not(wire_date_valid("2020-13-01"));
    cr_expect_not(wire_date_valid("2020-1-01"));
    cr_expect_not(wire_date_valid("20201223"));
}

Test(wire, topics)
{
    char t[WIRE_MAX_TOPIC];

    cr_expect_eq(wire_topic_ingest(t, sizeof(t), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE), 5);
    cr_expect_str_eq(t, "trade");
    cr_expect_eq(wire_topic_ingest(t, sizeof(t), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY),
                 -EINVAL);
    wire_topic_record(t, sizeof(t), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, "AZ");
    cr_expect_str_eq(t, "rec/park/AZ/");
    wire_topic_record(t, sizeof(t), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT, NULL);
    cr_expect_str_eq(t, "rec/resident/");
    wire_topic_record(t, sizeof(t), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED, NULL);
    cr_expect_str_eq(t, "rec/");
    cr_expect_eq(wire_topic_record(t, sizeof(t), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, "a"),
                 -EINVAL);
    wire_topic_ack(t, sizeof(t), "AZ-MOE");
    cr_expect_str_eq(t, "ack/AZ-MOE/");
    cr_expect_eq(wire_topic_ack(t, 4, "AZ-MOE"), -ENOSPC);
    cr_expect_eq(wire_kind_from_name("resident"), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT);
    cr_expect_eq(wire_kind_from_name("nope"), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED);
}

Test(wire, valid_update_passes)
{
    fixture_t f;
    const char *why = NULL;

    fixture_init(&f);
    cr_expect_eq(wire_update_validate(&f.u, &why), 0, "why: %s", why ? why : "");
}

/* Each case breaks one thing; each must be refused with the named field. */
Test(wire, invalid_updates_are_refused_with_a_reason)
{
    static const char bad_utf8[] = "Sumqay\xc4";
    char too_long[WIRE_MAX_TEXT + 2];
    Parksync__V1__Specialization many[WIRE_MAX_SPECIALIZATIONS + 1];
    fixture_t f;
    const char *why;

    memset(too_long, 'x', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
        many[i] = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_FOOD;

    static uint8_t empty[] = {0};
    ProtobufCMessageUnknownField newer = {/* body field 15 of a newer schema, empty */
                                          .tag = 15,
                                          .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                          .len = 1,
                                          .data = empty};

    for (int c = 0; c < 14; c++) {
        const char *expect = NULL;

        fixture_init(&f);
        switch (c) {
        case 0:
            f.u.version = 2;
            expect = "version: missing or not 1 (unsupported)";
            break;
        case 1:
            f.u.producer_id = "AZ MOE";
            expect = "producer_id: must be 1..64 bytes of [A-Za-z0-9._-]";
            break;
        case 2:
            f.u.sequence = 0;
            expect = "sequence: missing or 0";
            break;
        case 3:
            f.u.has_event_time_us = 0;
            expect = "event_time_us: missing or not positive";
            break;
        case 4:
            f.park.name = (char *)bad_utf8;
            expect = "park.name: must be 1..256 bytes of UTF-8 without NUL";
            break;
        case 5:
            f.park.name = too_long;
            expect = "park.name: must be 1..256 bytes of UTF-8 without NUL";
            break;
        case 6:
            f.park.country = "Azerbaijan";
            expect = "park.country: must be two upper-case letters (ISO 3166-1 alpha-2)";
            break;
        case 7:
            f.park.has_status = 1;
            f.park.status = 99;
            expect = "park.status: unknown value";
            break;
        case 8:
            f.spec_values[0] = 42;
            expect = "park.specializations: unknown value";
            break;
        case 9:
            f.specs.values = many;
            f.specs.n_values = sizeof(many) / sizeof(many[0]);
            expect = "park.specializations: more than 16";
            break;
        case 10:
            f.park.has_reported_investment_usd_cents = 1;
            f.park.reported_investment_usd_cents = -1;
            expect = "park.reported_investment_usd_cents: must be 0..10^17 cents";
            break;
        case 11:
            f.u.body_case = PARKSYNC__V1__UPDATE__BODY__NOT_SET;
            expect = "body: missing";
            break;
        case 12:
            f.u.body_case = PARKSYNC__V1__UPDATE__BODY__NOT_SET;
            f.u.base.n_unknown_fields = 1;
            f.u.base.unknown_fields = &newer;
            expect = "body: unsupported: a kind this daemon does not know";
            break;
        case 13:
            f.u.has_vintage = 1;
            f.u.vintage = 7;
            expect = "vintage: unknown value";
            break;
        }
        why = NULL;
        cr_expect_eq(wire_update_validate(&f.u, &why), -EINVAL, "case %d accepted", c);
        cr_expect(why != NULL && strcmp(why, expect) == 0, "case %d: why '%s', want '%s'", c,
                  why ? why : "(null)", expect);
    }
}

Test(wire, delete_takes_key_fields_only)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Delete d = PARKSYNC__V1__DELETE__INIT;
    Parksync__V1__Park key = PARKSYNC__V1__PARK__INIT;
    const char *why = NULL;

    u.has_version = u.has_sequence = u.has_event_time_us = 1;
    u.version = WIRE_VERSION;
    u.sequence = 1;
    u.event_time_us = 1;
    u.producer_id = "AZ-MOE";
    u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    u.delete_ = &d;
    d.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
    d.park = &key;
    key.park_id = "AZ-X";
    key.country = "AZ";
    cr_expect_eq(wire_update_validate(&u, &why), 0);
    cr_expect_eq(wire_update_kind(&u), PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK);
    key.name = "not a key";
    cr_expect_eq(wire_update_validate(&u, &why), -EINVAL);
    cr_expect_str_eq(why, "delete.park: non-key field");
}

Test(wire, decode_round_trip_and_invalid_body_keeps_envelope)
{
    fixture_t f;
    Parksync__V1__Update *out = NULL;
    const char *why = NULL;
    size_t len;
    uint8_t *buf;

    fixture_init(&f);
    buf = wire_pack(&f.u.base, &len);
    cr_assert_not_null(buf);
    cr_assert_eq(wire_update_decode(buf, len, &out, &why), 0);
    cr_expect_str_eq(out->park->name, f.park.name);
    cr_expect_eq(out->sequence, 7);
    parksync__v1__update__free_unpacked(out, NULL);
    free(buf);

    /* A sound envelope with a bad body is handed back for the daemon to
     * consume the sequence; a bad envelope is not. */
    f.park.country = "xx";
    buf = wire_pack(&f.u.base, &len);
    cr_expect_eq(wire_update_decode(buf, len, &out, &why), -EINVAL);
    cr_assert_not_null(out);
    cr_expect_str_eq(out->producer_id, "AZ-MOE");
    parksync__v1__update__free_unpacked(out, NULL);
    free(buf);

    f.u.producer_id = "";
    buf = wire_pack(&f.u.base, &len);
    cr_expect_eq(wire_update_decode(buf, len, &out, &why), -EINVAL);
    cr_expect_null(out);
    free(buf);
}

Test(wire, decode_refuses_oversized_truncated_and_random_input)
{
    static uint8_t big[WIRE_MAX_UPDATE + 1];
    Parksync__V1__Update *out = (void *)1;
    const char *why = NULL;
    fixture_t f;
    size_t len;
    uint8_t *buf;
    unsigned seed = 12345;

    cr_expect_eq(wire_update_decode(big, sizeof(big), &out, &why), -EMSGSIZE);
    cr_expect_null(out);

    fixture_init(&f);
    buf = wire_pack(&f.u.base, &len);
    for (size_t cut = 1; cut < len; cut++) {
        int rc = wire_update_decode(buf, cut, &out, &why);
        cr_expect(rc < 0, "truncated to %zu of %zu accepted", cut, len);
        if (out != NULL)
            parksync__v1__update__free_unpacked(out, NULL);
    }
    free(buf);

    for (int i = 0; i < 20000; i++) {
        uint8_t junk[64];
        size_t n = (size_t)(rand_r(&seed) % sizeof(junk));
        for (size_t j = 0; j < n; j++)
            junk[j] = (uint8_t)rand_r(&seed);
        if (wire_update_decode(junk, n, &out, &why) == 0 || out != NULL)
            parksync__v1__update__free_unpacked(out, NULL);
    }
}

/* q: a snapshot request (id 9) whose body is s. */
static void snapshot_request(Parksync__V1__QueryRequest *q, Parksync__V1__SnapshotRequest *s)
{
    q->has_version = q->has_request_id = 1;
    q->version = WIRE_VERSION;
    q->request_id = 9;
    q->body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
    q->snapshot = s;
}

Test(wire, query_request_limits)
{
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__SnapshotRequest s = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
    Parksync__V1__QueryRequest *out;
    const char *why;
    size_t len;
    uint8_t *buf;

    snapshot_request(&q, &s);
    s.has_credit = 1;
    s.credit = WIRE_MAX_CREDIT + 1;
    buf = wire_pack(&q.base, &len);
    cr_expect_eq(wire_query_request_decode(buf, len, &out, &why), -EINVAL);
    cr_expect_str_eq(why, "snapshot.credit: must be 1..64 chunks");
    free(buf);
    s.credit = 4;
    buf = wire_pack(&q.base, &len);
    cr_assert_eq(wire_query_request_decode(buf, len, &out, &why), 0);
    cr_expect_eq(out->snapshot->credit, 4);
    parksync__v1__query_request__free_unpacked(out, NULL);
    free(buf);
}

/* Records placed raw into a chunk decode as an ordinary QueryReply. */
Test(wire, chunk_builder_produces_a_decodable_reply)
{
    wire_chunk_t c = {0};
    Parksync__V1__QueryReply *reply;
    const uint8_t *msg;
    uint8_t epoch[WIRE_EPOCH_BYTES];
    const char *why;
    size_t len;

    memset(epoch, 0xAB, sizeof(epoch));
    wire_chunk_reset(&c);
    upd_chunk_parks(&c, 0, 3, "AZ");
    cr_assert_eq(wire_chunk_finish(&c, 77, true, 102, epoch, &msg, &len), 0);
    cr_assert_eq(wire_query_reply_decode(msg, len, &reply, &why), 0);
    cr_expect_eq(reply->request_id, 77);
    cr_assert_eq(reply->body_case, PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK);
    cr_expect_eq(reply->chunk->n_records, 3);
    cr_expect(reply->chunk->last);
    cr_expect_eq(reply->chunk->revision, 102);
    cr_expect_eq(reply->chunk->epoch.len, WIRE_EPOCH_BYTES);
    cr_expect_str_eq(reply->chunk->records[2]->park->park_id, "AZ-P2");
    cr_expect_eq(reply->chunk->records[1]->revision, 101);
    parksync__v1__query_reply__free_unpacked(reply, NULL);
    wire_chunk_free(&c);
}

/* What a subscriber does with every chunk: decode into one arena, read,
 * reset. The first chunk sizes the block; a larger one spills, and the
 * block grows to fit; one of 4,000 records needs more than the block may
 * grow to (WIRE_MAX_MSG) and spills what is beyond, twice; a refused
 * reply leaves nothing behind (LeakSanitizer). */
Test(wire, replies_decode_into_an_arena_again_and_again)
{
    wire_arena_t *a = wire_arena_new();
    wire_chunk_t c = {0};
    const uint8_t *msg;
    const char *why;
    size_t len;

    cr_assert_not_null(a);
    static const int sizes[] = {3, 2000, 2000, 4000, 4000};
    for (size_t round = 0; round < sizeof sizes / sizeof sizes[0]; round++) {
        Parksync__V1__QueryReply *reply = NULL;
        int n = sizes[round];
        char want[16];

        wire_chunk_reset(&c);
        upd_chunk_parks(&c, 0, n, "AZ");
        cr_assert_eq(wire_chunk_finish(&c, 77, false, 0, NULL, &msg, &len), 0);
        cr_assert_eq(wire_query_reply_decode_in(a, msg, len, &reply, &why), 0, "%s", why);
        cr_assert_eq(reply->chunk->n_records, (size_t)n);
        for (int i = 0; i < n; i += n / 3 + 1) {
            snprintf(want, sizeof want, "AZ-P%d", i);
            cr_expect_str_eq(reply->chunk->records[i]->park->park_id, want);
            cr_expect_eq(reply->chunk->records[i]->revision, 100 + (uint64_t)i);
        }
        wire_arena_reset(a);
    }
    Parksync__V1__QueryReply *refused = NULL;
    wire_chunk_reset(&c);
    upd_chunk_parks(&c, 0, 2000, "az");
    cr_assert_eq(wire_chunk_finish(&c, 77, false, 0, NULL, &msg, &len), 0);
    cr_expect_eq(wire_query_reply_decode_in(a, msg, len, &refused, &why), -EINVAL);
    cr_expect_null(refused);
    wire_arena_reset(a);
    wire_arena_free(&a);
    cr_expect_null(a);
    wire_chunk_free(&c);
}

Test(wire, publication_builder_wraps_a_stored_record)
{
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    Parksync__V1__CountryReport cr = PARKSYNC__V1__COUNTRY_REPORT__INIT;
    Parksync__V1__Period p = PARKSYNC__V1__PERIOD__INIT;
    Parksync__V1__Publication *pub;
    wire_buf_t b = {0};
    const char *why;
    size_t rlen;
    uint8_t *rbuf;

    p.has_year = p.has_first_month = p.has_last_month = 1;
    p.year = 2020;
    p.first_month = 1;
    p.last_month = 9;
    cr.country = "AZ";
    cr.period = &p;
    cr.has_parks_export_share_bp = 1;
    cr.parks_export_share_bp = 2030;
    r.has_revision = 1;
    r.revision = 5;
    r.body_case = PARKSYNC__V1__RECORD__BODY_COUNTRY;
    r.country = &cr;
    rbuf = wire_pack(&r.base, &rlen);
    cr_assert_eq(wire_publication_record(&b, 42, rbuf, rlen), 0);
    cr_assert_eq(wire_publication_decode(b.data, b.len, &pub, &why), 0);
    cr_expect_eq(pub->stream_sequence, 42);
    cr_expect_eq(pub->record->revision, 5);
    cr_expect_eq(pub->record->country->parks_export_share_bp, 2030);
    cr_expect_str_eq(wire_record_country(pub->record), "AZ");
    parksync__v1__publication__free_unpacked(pub, NULL);
    wire_buf_free(&b);
    free(rbuf);
}

/* protobuf-c accepts field number 0 in a two-byte tag, keeps it as an
 * unknown field and then cannot decode its own re-encoding; such input is
 * refused, so nothing stored from the network can become unreadable. */
Test(wire, field_number_zero_is_refused)
{
    static const uint8_t input[] = {0x08, 0x01, 0x85, 0x00, 0x52, 0x00, 0x52, 0x00};
    Parksync__V1__ControlRequest *out = NULL;
    const char *why = NULL;

    cr_expect_eq(wire_control_request_decode(input, sizeof(input), &out, &why), -EBADMSG);
    cr_expect_null(out);
    cr_expect_str_eq(why, "undecodable");
}

/* An UpdateBatch packed by protobuf-c walks update by update, each
 * decodable on its own; unknown fields are skipped. */
Test(wire, batch_walks_the_updates_of_an_update_batch)
{
    fixture_t f[3];
    Parksync__V1__Update *ups[3];
    Parksync__V1__UpdateBatch b = PARKSYNC__V1__UPDATE_BATCH__INIT;
    uint8_t *buf, *more;
    size_t len, at = 0, ulen;
    const void *upd;
    int n = 0;

    for (int i = 0; i < 3; i++) {
        fixture_init(&f[i]);
        f[i].u.sequence = 10 + (uint64_t)i;
        ups[i] = &f[i].u;
    }
    b.n_updates = 3;
    b.updates = ups;
    buf = wire_pack(&b.base, &len);
    cr_assert_not_null(buf);
    /* an unknown varint field (2) and an unknown fixed32 field (3) after them */
    more = malloc(len + 7);
    memcpy(more, buf, len);
    memcpy(more + len, "\x10\x2a\x1d\x01\x02\x03\x04", 7);
    while (wire_batch_next(more, len + 7, &at, &upd, &ulen) == 1) {
        Parksync__V1__Update *u = NULL;
        const char *why = NULL;
        cr_assert_eq(wire_update_decode(upd, ulen, &u, &why), 0, "update %d: %s", n, why);
        cr_expect_eq(u->sequence, 10 + (uint64_t)n);
        parksync__v1__update__free_unpacked(u, NULL);
        n++;
    }
    cr_expect_eq(n, 3);
    cr_expect_eq(at, len + 7, "stopped at %zu of %zu", at, len + 7);
    at = 0;
    cr_expect_eq(wire_batch_next(more, 0, &at, &upd, &ulen), 0, "an empty batch has no updates");
    free(more);
    free(buf);
}

/* Broken framing ends the walk with -EBADMSG, never past the buffer. */
Test(wire, batch_refuses_broken_framing)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *what;
    } bad[] = {
        {"\x0a\x05"
         "abc",
         5, "length beyond the end"},
        {"\x0a", 1, "length cut off"},
        {"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, "varint of 11 bytes"},
        {"\x08\x01", 2, "updates as a varint"},
        {"\x02\x00", 2, "field number 0"},
        {"\x0b\x0c", 2, "a group"},
        {"\x0f", 1, "wire type 7"},
        {"\x11\x01\x02", 3, "fixed64 cut off"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t at = 0, ulen;
        const void *upd;
        int rc;
        while ((rc = wire_batch_next(bad[i].bytes, bad[i].len, &at, &upd, &ulen)) == 1)
            cr_assert_leq(at, bad[i].len);
        cr_expect_eq(rc, -EBADMSG, "%s: %d", bad[i].what, rc);
        cr_expect_leq(at, bad[i].len, "%s", bad[i].what);
    }
}

/* A trade report of the fixture's producer; value in cents. */
static void trade_init(Parksync__V1__Update *u, Parksync__V1__TradeReport *t,
                       Parksync__V1__Period *p, int64_t value)
{
    parksync__v1__update__init(u);
    parksync__v1__trade_report__init(t);
    parksync__v1__period__init(p);
    u->has_version = u->has_sequence = u->has_event_time_us = 1;
    u->version = WIRE_VERSION;
    u->producer_id = "AZ-MOE";
    u->sequence = 1;
    u->event_time_us = 1608681600000000;
    u->body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
    u->trade = t;
    t->reporter = "AZ";
    t->partner = "TJ";
    t->has_direction = 1;
    t->direction = PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS;
    t->period = p;
    p->has_year = p->has_first_month = p->has_last_month = 1;
    p->year = 2020;
    p->first_month = 1;
    p->last_month = 10;
    t->has_value_usd_cents = 1;
    t->value_usd_cents = value;
}

/* Every money field an update carries is 0..10^17: trade values and
 * investments are amounts, never negative (only derived figures such as
 * TradeFlow.discrepancy_usd_cents are signed). */
Test(wire, money_in_updates_is_zero_to_ten_to_the_seventeen)
{
    static const int64_t ok[] = {0, 5, WIRE_MAX_CENTS};
    static const int64_t bad[] = {-5, -1, WIRE_MAX_CENTS + 1, INT64_MIN};
    Parksync__V1__Update u;
    Parksync__V1__TradeReport t;
    Parksync__V1__Period p;
    fixture_t f;
    const char *why = NULL;

    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        trade_init(&u, &t, &p, ok[i]);
        cr_expect_eq(wire_update_validate(&u, &why), 0, "%lld refused: %s", (long long)ok[i], why);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        trade_init(&u, &t, &p, bad[i]);
        cr_expect_eq(wire_update_validate(&u, &why), -EINVAL, "%lld accepted", (long long)bad[i]);
        cr_expect_str_eq(why, "trade.value_usd_cents: must be 0..10^17 cents");
    }
    Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
    fixture_init(&f);
    f.u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    f.u.resident = &r;
    r.park_id = "AZ-X";
    r.resident_id = "R1";
    r.country = "AZ";
    r.has_investment_usd_cents = 1;
    r.investment_usd_cents = -5;
    cr_expect_eq(wire_update_validate(&f.u, &why), -EINVAL);
    cr_expect_str_eq(why, "resident.investment_usd_cents: must be 0..10^17 cents");
}

/* proto2 enums are closed: other implementations turn a value they do
 * not know into an unknown field (the field then reads as absent), but
 * protobuf-c keeps the number, so a newer producer's vintage 7 is not
 * taken for "no vintage" (PROVISIONAL) nor direction 9 for "missing":
 * both are refused by name. */
Test(wire, unknown_enum_values_are_refused_not_defaulted)
{
    Parksync__V1__Update u, *out = NULL;
    Parksync__V1__TradeReport t;
    Parksync__V1__Period p;
    const char *why = NULL;
    uint8_t *buf;
    size_t len;

    trade_init(&u, &t, &p, 5);
    u.has_vintage = 1;
    u.vintage = 7;
    buf = wire_pack(&u.base, &len);
    cr_assert_eq(wire_update_decode(buf, len, &out, &why), -EINVAL);
    cr_expect_str_eq(why, "vintage: unknown value");
    cr_assert_not_null(out);
    cr_expect(out->has_vintage && out->vintage == 7, "protobuf-c kept the number");
    parksync__v1__update__free_unpacked(out, NULL);
    free(buf);

    trade_init(&u, &t, &p, 5);
    t.direction = 9;
    buf = wire_pack(&u.base, &len);
    cr_assert_eq(wire_update_decode(buf, len, &out, &why), -EINVAL);
    cr_expect_str_eq(why, "trade.direction: missing or unknown value");
    parksync__v1__update__free_unpacked(out, NULL);
    free(buf);
}

/* The request_id of a request the daemon cannot decode is still read, so
 * the refusal can be matched; up to where the framing breaks. */
Test(wire, query_request_id_is_read_from_undecodable_requests)
{
    static const uint8_t cut[] = {0x08, 0x01, 0x10, 0x2a, 0x52, 0x7f}; /* LEN field cut short */
    static const uint8_t twice[] = {0x10, 0x01, 0x10, 0x96, 0x01};     /* last wins: 150 */
    static const uint8_t none[] = {0x08, 0x01};
    static const uint8_t garbage[] = {0x07, 0x10, 0x05}; /* wire type 7 first */
    uint64_t id = 99;

    cr_expect(wire_query_request_id(cut, sizeof cut, &id));
    cr_expect_eq(id, 42);
    cr_expect(wire_query_request_id(twice, sizeof twice, &id));
    cr_expect_eq(id, 150);
    cr_expect_not(wire_query_request_id(none, sizeof none, &id));
    cr_expect_eq(id, 0);
    cr_expect_not(wire_query_request_id(garbage, sizeof garbage, &id));
    cr_expect_eq(id, 0);
}

/* ---------------------------------------------------------------- NUL in strings
 *
 * protobuf-c ends a decoded string at its first NUL, so these build the
 * wire bytes by packing '#' where the NUL goes and replacing it after. */

/* Packs m and turns the '#' in the encoding into a NUL byte. Caller
 * frees the result. Exactly one '#' is expected. */
static uint8_t *pack_with_nul(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *buf = wire_pack(m, len);
    int n = 0;

    cr_assert_not_null(buf);
    for (size_t i = 0; i < *len; i++)
        if (buf[i] == '#') {
            buf[i] = '\0';
            n++;
        }
    cr_assert_eq(n, 1, "a '#' byte that is not the placeholder");
    return buf;
}

/* Decodes an update whose '#' bytes became NULs; returns the result and
 * the reason, and whether the envelope was handed back. */
static int decode_with_nul(const Parksync__V1__Update *u, const char **why, bool *kept)
{
    Parksync__V1__Update *out = NULL;
    size_t len;
    uint8_t *buf = pack_with_nul(&u->base, &len);
    int rc = wire_update_decode(buf, len, &out, why);

    *kept = out != NULL;
    parksync__v1__update__free_unpacked(out, NULL);
    free(buf);
    return rc;
}

/* A NUL in a body's text is an invalid update whose envelope is still
 * handed back, so the daemon consumes the sequence and records why. */
Test(wire, nul_in_body_text_is_an_invalid_update)
{
    Parksync__V1__Resident r = PARKSYNC__V1__RESIDENT__INIT;
    Parksync__V1__Delete d = PARKSYNC__V1__DELETE__INIT;
    Parksync__V1__Park key = PARKSYNC__V1__PARK__INIT;
    const char *why = NULL;
    bool kept = false;
    fixture_t f;

    fixture_init(&f);
    f.park.name = "nul#here";
    cr_expect_eq(decode_with_nul(&f.u, &why, &kept), -EINVAL);
    cr_expect_str_eq(why, "park.name: contains a NUL byte");
    cr_expect(kept, "a sound envelope is handed back");

    fixture_init(&f);
    r.park_id = "AZ-SUMGAIT-CHEM";
    r.resident_id = "R1";
    r.country = "AZ";
    r.company_name = "Azerkimya#";
    f.u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    f.u.resident = &r;
    cr_expect_eq(decode_with_nul(&f.u, &why, &kept), -EINVAL);
    cr_expect_str_eq(why, "resident.company_name: contains a NUL byte");
    cr_expect(kept);

    /* a key inside a delete: the walk follows nested messages */
    fixture_init(&f);
    key.park_id = "AZ-SUMGAIT#X";
    key.country = "AZ";
    d.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
    d.park = &key;
    f.u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    f.u.delete_ = &d;
    cr_expect_eq(decode_with_nul(&f.u, &why, &kept), -EINVAL);
    cr_expect_str_eq(why, "park.park_id: contains a NUL byte");
    cr_expect(kept);
}

/* A NUL in producer_id makes the envelope unsound: nothing is handed back,
 * even when the body also holds a NUL and comes first on the wire. */
Test(wire, nul_in_producer_id_is_an_unusable_envelope)
{
    static const uint8_t id[] = {0x12, 10, 'A', 'Z', '-', 'M', 'O', 'E', 0, 'x', 'y', 'z'};
    Parksync__V1__Update *out = (void *)1;
    const char *why = NULL;
    bool kept = true;
    fixture_t f;
    size_t len;
    uint8_t *buf, *more;

    fixture_init(&f);
    f.u.producer_id = "AZ-MOE#xyz";
    cr_expect_eq(decode_with_nul(&f.u, &why, &kept), -EINVAL);
    cr_expect_str_eq(why, "producer_id: contains a NUL byte");
    cr_expect_not(kept, "no envelope is handed back");

    /* producer_id again after the body's NUL (field 10): protobuf-c keeps
     * the last one, and the envelope's NUL wins over the body's */
    fixture_init(&f);
    f.park.name = "nul#here";
    buf = pack_with_nul(&f.u.base, &len);
    more = malloc(len + sizeof id);
    memcpy(more, buf, len);
    memcpy(more + len, id, sizeof id);
    cr_expect_eq(wire_update_decode(more, len + sizeof id, &out, &why), -EINVAL);
    cr_expect_str_eq(why, "producer_id: contains a NUL byte");
    cr_expect_null(out);
    free(more);
    free(buf);
}

/* A query request's filter country "AZ\0" would otherwise read as "AZ". */
Test(wire, nul_in_query_filter_is_refused)
{
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__SnapshotRequest s = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
    Parksync__V1__Filter filter = PARKSYNC__V1__FILTER__INIT;
    Parksync__V1__QueryRequest *out = (void *)1;
    const char *why = NULL;
    size_t len;
    uint8_t *buf;

    snapshot_request(&q, &s);
    s.filter = &filter;
    filter.country = "AZ#";
    buf = pack_with_nul(&q.base, &len);
    cr_expect_eq(wire_query_request_decode(buf, len, &out, &why), -EINVAL);
    cr_expect_str_eq(why, "filter.country: contains a NUL byte");
    cr_expect_null(out);
    free(buf);
}

/* NUL bytes elsewhere are fine: in varints and doubles, and inside unknown
 * fields, which nothing reads as text. Broken framing stays undecodable. */
Test(wire, nul_bytes_outside_known_strings_pass)
{
    /* unknown field 99 (LEN) holding "a\0b", and an unknown field 15 in the park */
    static const uint8_t unknown[] = {0x9a, 0x06, 3, 'a', 0, 'b'};
    Parksync__V1__Update *out = NULL;
    const char *why = NULL;
    fixture_t f;
    size_t len;
    uint8_t *buf, *more;

    fixture_init(&f);
    f.park.has_area_ha = 1;
    f.park.area_ha = 256.0; /* 0x4070000000000000: six zero bytes */
    f.park.has_reported_residents = 1;
    f.park.reported_residents = 0;
    f.u.event_time_us = 1608681600000000;
    buf = wire_pack(&f.u.base, &len);
    cr_assert_not_null(memchr(buf, 0, len), "the encoding holds NUL bytes");
    cr_assert_eq(wire_update_decode(buf, len, &out, &why), 0, "%s", why);
    cr_expect_str_eq(out->park->name, f.park.name);
    parksync__v1__update__free_unpacked(out, NULL);

    more = malloc(len + sizeof unknown);
    memcpy(more, buf, len);
    memcpy(more + len, unknown, sizeof unknown);
    cr_expect_eq(wire_update_decode(more, len + sizeof unknown, &out, &why), 0, "%s", why);
    parksync__v1__update__free_unpacked(out, NULL);
    free(more);
    free(buf);

    /* the unknown field inside the park: its length grows by 3 + 3 */
    parksync__v1__park__init(&f.park);
    f.park.park_id = "P";
    f.park.country = "AZ";
    buf = wire_pack(&f.u.base, &len);
    cr_assert_eq(buf[len - 9], 0x52, "the park is the last field");
    cr_assert_eq(buf[len - 8], 7);
    more = malloc(len + 6);
    memcpy(more, buf, len);
    more[len - 8] = 13;
    memcpy(more + len, "\x7a\x04x\0y\0", 6); /* field 15, "x\0y\0" */
    cr_expect_eq(wire_update_decode(more, len + 6, &out, &why), 0, "%s", why);
    parksync__v1__update__free_unpacked(out, NULL);

    /* a string cut short where the NUL is: framing, not text */
    f.park.name = "nul#here";
    free(buf);
    buf = pack_with_nul(&f.u.base, &len);
    cr_expect_eq(wire_update_decode(buf, len - 2, &out, &why), -EBADMSG);
    cr_expect_null(out);
    free(more);
    free(buf);
}

typedef int (*decode_fn)(const void *buf, size_t len, const char **why);

#define DECODE_AND_FREE(type, Type)                                                                \
    static int decode_##type(const void *buf, size_t len, const char **why)                        \
    {                                                                                              \
        Parksync__V1__##Type *out = NULL;                                                          \
        int rc = wire_##type##_decode(buf, len, &out, why);                                        \
        parksync__v1__##type##__free_unpacked(out, NULL);                                          \
        return rc;                                                                                 \
    }
DECODE_AND_FREE(update, Update)
DECODE_AND_FREE(query_request, QueryRequest)
DECODE_AND_FREE(query_reply, QueryReply)
DECODE_AND_FREE(publication, Publication)
DECODE_AND_FREE(control_request, ControlRequest)
DECODE_AND_FREE(control_reply, ControlReply)

/* Decodes prefix followed by "x\0y" in field path[depth], inside field
 * path[depth - 1], ... inside field path[0]. */
static int decode_nul_at(decode_fn decode, const uint8_t *prefix, size_t plen,
                         const ProtobufCFieldDescriptor *const *path, int depth, const char **why)
{
    wire_buf_t in = {0}, out = {0}, t;
    uint8_t *all;
    int rc;

    cr_assert_eq(wire_buf_put_bytes(&in, path[depth]->id, "x\0y", 3), 0);
    for (int k = depth - 1; k >= 0; k--) {
        wire_buf_reset(&out);
        cr_assert_eq(wire_buf_put_bytes(&out, path[k]->id, in.data, in.len), 0);
        t = in;
        in = out;
        out = t;
    }
    all = malloc(plen + in.len);
    cr_assert_not_null(all);
    if (plen > 0)
        memcpy(all, prefix, plen);
    memcpy(all + plen, in.data, in.len);
    rc = decode(all, plen + in.len, why);
    free(all);
    wire_buf_free(&in);
    wire_buf_free(&out);
    return rc;
}

/* Walks every string field reachable from a decoder's message type. */
static void each_string_field(decode_fn decode, const uint8_t *prefix, size_t plen,
                              const ProtobufCMessageDescriptor *d,
                              const ProtobufCFieldDescriptor **path, int depth, unsigned *seen)
{
    cr_assert_lt(depth, 8, "the schema nests deeper than expected");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *why = NULL;
        int rc;

        path[depth] = f;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            each_string_field(decode, prefix, plen, f->descriptor, path, depth + 1, seen);
        if (f->type != PROTOBUF_C_TYPE_STRING)
            continue;
        (*seen)++;
        rc = decode_nul_at(decode, prefix, plen, path, depth, &why);
        cr_expect_eq(rc, -EINVAL, "%s.%s: %d", d->short_name, f->name, rc);
        if (why == NULL)
            continue;
        cr_expect_not_null(strstr(why, f->name), "%s.%s: %s", d->short_name, f->name, why);
        cr_expect(strncmp(why, "text: ", 6) != 0, "%s.%s has no name in nul_reasons", d->short_name,
                  f->name);
        cr_expect(strlen(why) > 21 && strcmp(why + strlen(why) - 21, ": contains a NUL byte") == 0,
                  "%s.%s: %s", d->short_name, f->name, why);
    }
}

/* Every string field of every message type a peer can send, at any depth,
 * is refused with a NUL in it, by its own name. */
Test(wire, nul_in_any_string_field_is_refused_by_name)
{
    /* a sound envelope, so an Update reaches its body: version 1,
     * producer_id "P", sequence 1 */
    static const uint8_t envelope[] = {0x08, 0x01, 0x12, 0x01, 'P', 0x18, 0x01};
    static const struct {
        const ProtobufCMessageDescriptor *d;
        decode_fn decode;
        bool envelope;
    } tops[] = {
        {&parksync__v1__update__descriptor, decode_update, true},
        {&parksync__v1__query_request__descriptor, decode_query_request, false},
        {&parksync__v1__query_reply__descriptor, decode_query_reply, false},
        {&parksync__v1__publication__descriptor, decode_publication, false},
        {&parksync__v1__control_request__descriptor, decode_control_request, false},
        {&parksync__v1__control_reply__descriptor, decode_control_reply, false},
    };
    const ProtobufCFieldDescriptor *path[8];
    unsigned seen = 0;

    for (size_t i = 0; i < sizeof tops / sizeof tops[0]; i++)
        each_string_field(tops[i].decode, envelope, tops[i].envelope ? sizeof envelope : 0,
                          tops[i].d, path, 0, &seen);
    cr_expect_geq(seen, 40, "only %u string fields reached", seen);
}
