/*
 * fuzz_publication.c - the publish socket as a subscriber sees it:
 * wire_publication_decode on arbitrary bytes, into an arena too (same
 * verdict, same message), and the CLI's rendering of a published record.
 */
#include "fuzz.h"
#include "json.h"

static int decode_publication_in(wire_arena_t *a, const void *buf, size_t len,
                                 ProtobufCMessage **out, const char **why)
{
    Parksync__V1__Publication *p = NULL;
    int rc = wire_publication_decode_in(a, buf, len, &p, why);

    *out = p != NULL ? &p->base : NULL;
    return rc;
}

static int decode_publication(const void *buf, size_t len, ProtobufCMessage **out, const char **why)
{
    return decode_publication_in(NULL, buf, len, out, why);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL;
    Parksync__V1__Publication *p;
    char topic[WIRE_MAX_TOPIC];

    int rc = fuzz_decode(decode_publication, data, size, WIRE_MAX_MSG, false, &m);
    fuzz_decode_in_arena(decode_publication_in, data, size, rc, m);
    if (m == NULL)
        return 0;
    p = (Parksync__V1__Publication *)m;
    if (p->body_case == PARKSYNC__V1__PUBLICATION__BODY_RECORD) {
        json_t *j = json_from_record(p->record);
        char *text;

        FUZZ_CHECK(j != NULL);
        text = json_dumps(j, JSON_COMPACT);
        FUZZ_CHECK(text != NULL);
        free(text);
        json_decref(j);
        FUZZ_CHECK(wire_topic_record(topic, sizeof topic, wire_record_kind(p->record),
                                     wire_record_country(p->record)) > 0);
    } else if (p->body_case == PARKSYNC__V1__PUBLICATION__BODY_ACK) {
        FUZZ_CHECK(wire_topic_ack(topic, sizeof topic, p->ack->producer_id) > 0);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
