/*
 * fuzz_query.c - the query socket, both ways: wire_query_request_decode
 * (daemon side) and wire_query_reply_decode (client side) on the same
 * bytes, and the CLI's rendering of every record a reply carries. A
 * reply is decoded into an arena too, as a subscriber does: same verdict,
 * same message.
 */
#include "fuzz.h"
#include "json.h"

static int decode_request(const void *buf, size_t len, ProtobufCMessage **out, const char **why)
{
    Parksync__V1__QueryRequest *q = NULL;
    int rc = wire_query_request_decode(buf, len, &q, why);

    *out = q != NULL ? &q->base : NULL;
    return rc;
}

static int decode_reply_in(wire_arena_t *a, const void *buf, size_t len, ProtobufCMessage **out,
                           const char **why)
{
    Parksync__V1__QueryReply *q = NULL;
    int rc = wire_query_reply_decode_in(a, buf, len, &q, why);

    *out = q != NULL ? &q->base : NULL;
    return rc;
}

static int decode_reply(const void *buf, size_t len, ProtobufCMessage **out, const char **why)
{
    return decode_reply_in(NULL, buf, len, out, why);
}

/* What `parksync snapshot` prints for a record, and its topic. */
static void render_record(const Parksync__V1__Record *r)
{
    char topic[WIRE_MAX_TOPIC];
    json_t *j = json_from_record(r);
    char *text;

    FUZZ_CHECK(j != NULL);
    text = json_dumps(j, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    free(text);
    json_decref(j);
    FUZZ_CHECK(wire_topic_record(topic, sizeof topic, wire_record_kind(r), wire_record_country(r)) >
               0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL;
    int rc;

    fuzz_decode(decode_request, data, size, WIRE_MAX_QUERY, false, &m);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);

    m = NULL;
    rc = fuzz_decode(decode_reply, data, size, WIRE_MAX_MSG, false, &m);
    fuzz_decode_in_arena(decode_reply_in, data, size, rc, m);
    if (m != NULL) {
        Parksync__V1__QueryReply *rep = (Parksync__V1__QueryReply *)m;

        if (rep->body_case == PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK)
            for (size_t i = 0; i < rep->chunk->n_records; i++)
                render_record(rep->chunk->records[i]);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}
