/*
 * wire_decode.c - from bytes to messages and back: the bounded decoders
 * (size check, unpack, the NUL walk, then wire_validate.c's rules), the
 * field reader that walks an UpdateBatch or finds a QueryRequest's id
 * without unpacking, and packing and copying messages with or without
 * their unknown fields.
 */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire_int.h"

/* ---------------------------------------------------------------- reading the wire */
/* Reads a varint at buf[*at..size); false when it is cut short or longer
 * than 10 bytes. */
static bool get_varint(const uint8_t *buf, size_t size, size_t *at, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70 && *at < size; shift += 7) {
        uint8_t b = buf[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80)
            return true;
    }
    return false;
}

/* Reads the field at buf[*at..size): its number, and for a varint its
 * value, for a length-delimited field its bytes. 1 read, 0 at the end,
 * -EBADMSG when the framing is broken. */
static int field_next(const uint8_t *p, size_t size, size_t *at, uint64_t *field, unsigned *type,
                      uint64_t *value, const uint8_t **bytes)
{
    uint64_t key, n;

    if (*at >= size)
        return 0;
    if (!get_varint(p, size, at, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
        return -EBADMSG;
    *field = key >> 3;
    *type = (unsigned)(key & 7);
    switch (*type) {
    case WIRE_TYPE_VARINT:
        return get_varint(p, size, at, value) ? 1 : -EBADMSG;
    case WIRE_TYPE_I64:
    case WIRE_TYPE_I32:
        n = *type == WIRE_TYPE_I64 ? 8 : 4;
        break;
    case WIRE_TYPE_LEN:
        if (!get_varint(p, size, at, &n))
            return -EBADMSG;
        break;
    default: /* groups, and wire types that do not exist */
        return -EBADMSG;
    }
    if (n > size - *at)
        return -EBADMSG;
    *bytes = p + *at;
    *value = n;
    *at += n;
    return 1;
}

/* ---------------------------------------------------------------- decoding */

/* Calls visit with m and then every message inside it, depth first,
 * until a call returns true; true when one did. The schema has no
 * recursive messages, so the depth is bounded. */
static bool walk(ProtobufCMessage *m, bool (*visit)(ProtobufCMessage *m))
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;

    if (visit(m))
        return true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage **subs = *(ProtobufCMessage ***)(base + f->offset);

            for (size_t k = 0; k < n; k++)
                if (walk(subs[k], visit))
                    return true;
            continue;
        }
        /* oneof members share storage: only the set one is a message */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        ProtobufCMessage *sub = *(ProtobufCMessage **)(base + f->offset);
        if (sub != NULL && walk(sub, visit))
            return true;
    }
    return false;
}

static bool keeps_field_zero(ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    return false;
}

static bool keeps_unknown(ProtobufCMessage *m)
{
    return m->n_unknown_fields > 0;
}

/* Frees m's unknown fields as protobuf_c_message_free_unpacked would with
 * the default allocator; never stops the walk. */
static bool drop_unknown(ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        free(m->unknown_fields[i].data);
    free(m->unknown_fields);
    m->unknown_fields = NULL;
    m->n_unknown_fields = 0;
    return false;
}

/* True when m or a message inside it kept an unknown field numbered 0.
 * protobuf-c 1.4 refuses field 0 in a one-byte tag but accepts it spelled
 * in more bytes (0x80 0x00) and keeps it as an unknown field, which then
 * re-encodes as the one-byte tag it refuses: a message that decodes but
 * whose round trip does not (found by tests/fuzz). Field 0 is not valid
 * protobuf. (The cast is sound: keeps_field_zero only reads.) */
static bool has_field_zero(const ProtobufCMessage *m)
{
    return walk((ProtobufCMessage *)m, keeps_field_zero);
}

#define WIRE_MAX_DEPTH 16 /* message nesting the NUL walk follows; the schema needs 4 */
#define WHY_NUL        "contains a NUL byte"

/* A string field holding a NUL byte, as found on the wire. */
typedef struct nul_at {
    const ProtobufCMessageDescriptor *msg; /* message type holding the field; NULL: none found */
    const ProtobufCFieldDescriptor *field; /* the string field */
} nul_at_t;

/* protobuf-c hands a string field over as a C string, which ends at its
 * first NUL: "nul\0here" would be validated and stored as "nul", and a
 * producer id "AZ-MOE\0xyz" taken for AZ-MOE. Only the wire still knows
 * the length, so every string field is checked there: p[0..len) is walked
 * as a message of type d, into every known message field; unknown fields
 * are skipped, since nothing reads them as text. A NUL directly in d wins
 * over one nested deeper, so an Update's producer_id is always found
 * before its body's names. Returns 0 when no string holds a NUL, 1 with
 * *at set, or -EBADMSG when the framing is broken or nests deeper than
 * WIRE_MAX_DEPTH. */
static int nul_find(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                    nul_at_t *at)
{
    const ProtobufCFieldDescriptor *f;
    const uint8_t *bytes;
    uint64_t field, value;
    unsigned type;
    size_t pos = 0;
    int rc, found = 0;

    if (depth > WIRE_MAX_DEPTH)
        return -EBADMSG;
    /* no zero byte at all, no NUL in any string: most sub-messages end
     * here, at memchr's speed, and the walk below is for the rest */
    if (memchr(p, 0, len) == NULL)
        return 0;
    while ((rc = field_next(p, len, &pos, &field, &type, &value, &bytes)) == 1) {
        if (type != WIRE_TYPE_LEN ||
            (f = protobuf_c_message_descriptor_get_field(d, (unsigned)field)) == NULL)
            continue;
        if (f->type == PROTOBUF_C_TYPE_STRING && memchr(bytes, 0, (size_t)value) != NULL) {
            at->msg = d;
            at->field = f;
            return 1;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && !found) {
            found = nul_find(f->descriptor, bytes, (size_t)value, depth + 1, at);
            if (found < 0)
                return found;
        }
    }
    return rc < 0 ? rc : found;
}

#define NUL_REASON(type, field, name)                                                              \
    {                                                                                              \
        &parksync__v1__##type##__descriptor, #field, name ": " WHY_NUL                             \
    }

/* Every string field of the schema, named as the validators name fields,
 * so a NUL is refused as "FIELD: contains a NUL byte" (tests/test_wire.c
 * checks that none is missing). */
static const struct nul_reason {
    const ProtobufCMessageDescriptor *msg; /* message type */
    const char *field;                     /* field name in parksync.proto */
    const char *why;                       /* the refusal */
} nul_reasons[] = {
    NUL_REASON(update, producer_id, "producer_id"),
    NUL_REASON(park, park_id, "park.park_id"),
    NUL_REASON(park, country, "park.country"),
    NUL_REASON(park, name, "park.name"),
    NUL_REASON(park, region, "park.region"),
    NUL_REASON(resident, park_id, "resident.park_id"),
    NUL_REASON(resident, resident_id, "resident.resident_id"),
    NUL_REASON(resident, country, "resident.country"),
    NUL_REASON(resident, company_name, "resident.company_name"),
    NUL_REASON(resident, registered_on, "resident.registered_on"),
    NUL_REASON(trade_report, reporter, "trade.reporter"),
    NUL_REASON(trade_report, partner, "trade.partner"),
    NUL_REASON(country_report, country, "country.country"),
    NUL_REASON(filter, country, "filter.country"),
    NUL_REASON(producer_state_request, producer_id, "producer_state.producer_id"),
    NUL_REASON(conflicts_request, country, "conflicts.country"),
    NUL_REASON(backup_request, path, "backup.path"),
    NUL_REASON(trade_flow, exporter, "trade.exporter"),
    NUL_REASON(trade_flow, importer, "trade.importer"),
    NUL_REASON(partner_turnover, partner, "turnover.partner"),
    NUL_REASON(park_check, park_id, "mismatches.park_id"),
    NUL_REASON(country_summary, country, "summary.country"),
    NUL_REASON(field_provenance, field, "provenance.field"),
    NUL_REASON(field_provenance, producer_id, "provenance.producer_id"),
    NUL_REASON(ack, producer_id, "ack.producer_id"),
    NUL_REASON(topic_sequence, topic, "heartbeat.topics.topic"),
    NUL_REASON(producer_state, producer_id, "producer_state.producer_id"),
    NUL_REASON(error, message, "error.message"),
    NUL_REASON(producer_status, producer_id, "status.producers.producer_id"),
    NUL_REASON(counter, name, "counter.name"),
    NUL_REASON(status, version, "status.version"),
    NUL_REASON(status, reload_error, "status.reload_error"),
    NUL_REASON(status_request, producers_after, "status.producers_after"),
    NUL_REASON(socket_connections, socket, "status.connections.socket"),
    NUL_REASON(metrics, text, "metrics.text"),
    NUL_REASON(backup, path, "backup.path"),
    NUL_REASON(reload, message, "reload.message"),
    NUL_REASON(health, reason, "health.reason"),
    NUL_REASON(check, findings, "check.findings"),
    NUL_REASON(conflict, producer_id, "conflicts.producer_id"),
    NUL_REASON(conflict, key, "conflicts.key"),
    NUL_REASON(conflict, country, "conflicts.country"),
    NUL_REASON(conflict, partner, "conflicts.partner"),
    NUL_REASON(conflict, reason, "conflicts.reason"),
    NUL_REASON(replicate_request, site, "replicate.site"),
    NUL_REASON(replicate_request, countries, "replicate.countries"),
    NUL_REASON(status, site, "status.site"),
    NUL_REASON(status, ack_after, "status.ack_after"),
    NUL_REASON(peer_status, name, "status.peers.name"),
    NUL_REASON(peer_status, endpoint, "status.peers.endpoint"),
    NUL_REASON(peer_status, last_error, "status.peers.last_error"),
    NUL_REASON(puller_status, site, "status.pulled_by.site"),
    NUL_REASON(digest, site, "digest.site"),
};

static const char *nul_why(const nul_at_t *at)
{
    for (size_t i = 0; i < sizeof nul_reasons / sizeof nul_reasons[0]; i++)
        if (nul_reasons[i].msg == at->msg && strcmp(nul_reasons[i].field, at->field->name) == 0)
            return nul_reasons[i].why;
    return "text: " WHY_NUL; /* a string field added to the schema, not to nul_reasons */
}

/* Size check, unpack and the NUL walk, shared by every decoder. A NUL in a
 * string field is refused here (-EINVAL) when nul is NULL; otherwise it is
 * left in *nul (msg NULL when none) for the caller to refuse in its place. */
static ProtobufCMessage *bounded_unpack_in(ProtobufCAllocator *alloc,
                                           const ProtobufCMessageDescriptor *d, const void *buf,
                                           size_t len, size_t max, int *rc, const char **why,
                                           nul_at_t *nul)
{
    nul_at_t here = {NULL, NULL};
    ProtobufCMessage *m;

    if (len > max) {
        *rc = -EMSGSIZE;
        *why = "too large";
        return NULL;
    }
    m = protobuf_c_message_unpack(d, alloc, len, buf);
    if (m != NULL && (has_field_zero(m) || nul_find(d, buf, len, 0, &here) < 0)) {
        protobuf_c_message_free_unpacked(m, alloc);
        m = NULL;
    }
    if (m == NULL) {
        *rc = -EBADMSG;
        *why = "undecodable";
        return NULL;
    }
    if (nul != NULL) {
        *nul = here;
    } else if (here.msg != NULL) {
        protobuf_c_message_free_unpacked(m, alloc);
        *rc = -EINVAL;
        *why = nul_why(&here);
        return NULL;
    }
    *rc = 0;
    return m;
}

static ProtobufCMessage *bounded_unpack(const ProtobufCMessageDescriptor *d, const void *buf,
                                        size_t len, size_t max, int *rc, const char **why,
                                        nul_at_t *nul)
{
    return bounded_unpack_in(NULL, d, buf, len, max, rc, why, nul);
}

int wire_update_decode(const void *buf, size_t len, Parksync__V1__Update **out, const char **why)
{
    return wire_update_decode_in(NULL, buf, len, out, why);
}

int wire_update_decode_in(wire_arena_t *a, const void *buf, size_t len, Parksync__V1__Update **out,
                          const char **why)
{
    int rc;
    nul_at_t nul;
    ProtobufCAllocator *alloc = wire_arena_allocator(a);
    Parksync__V1__Update *u = (Parksync__V1__Update *)bounded_unpack_in(
        alloc, &parksync__v1__update__descriptor, buf, len, WIRE_MAX_UPDATE, &rc, why, &nul);

    *out = NULL;
    if (u == NULL)
        return rc;
    rc = wire_envelope_validate(u, why);
    /* a NUL in producer_id leaves no id whose sequence could be consumed */
    if (rc == 0 && nul.msg == &parksync__v1__update__descriptor &&
        strcmp(nul.field->name, "producer_id") == 0) {
        *why = nul_why(&nul);
        rc = -EINVAL;
    }
    if (rc < 0) {
        parksync__v1__update__free_unpacked(u, alloc);
        return rc;
    }
    *out = u; /* sound envelope: handed over even when the body is invalid */
    if (nul.msg != NULL) {
        *why = nul_why(&nul);
        return -EINVAL;
    }
    return wire_body_validate(u, why);
}

int wire_query_request_decode(const void *buf, size_t len, Parksync__V1__QueryRequest **out,
                              const char **why)
{
    int rc;
    Parksync__V1__QueryRequest *q = (Parksync__V1__QueryRequest *)bounded_unpack(
        &parksync__v1__query_request__descriptor, buf, len, WIRE_MAX_QUERY, &rc, why, NULL);

    *out = NULL;
    if (q == NULL)
        return rc;
    if ((rc = wire_query_request_validate(q, why)) < 0) {
        parksync__v1__query_request__free_unpacked(q, NULL);
        return rc;
    }
    *out = q;
    return 0;
}

int wire_query_reply_decode_in(wire_arena_t *a, const void *buf, size_t len,
                               Parksync__V1__QueryReply **out, const char **why)
{
    int rc;
    ProtobufCAllocator *alloc = wire_arena_allocator(a);
    Parksync__V1__QueryReply *q = (Parksync__V1__QueryReply *)bounded_unpack_in(
        alloc, &parksync__v1__query_reply__descriptor, buf, len, WIRE_MAX_MSG, &rc, why, NULL);

    *out = NULL;
    if (q == NULL)
        return rc;
    if ((rc = wire_query_reply_validate(q, why)) < 0) {
        parksync__v1__query_reply__free_unpacked(q, alloc);
        return rc;
    }
    *out = q;
    return 0;
}

int wire_query_reply_decode(const void *buf, size_t len, Parksync__V1__QueryReply **out,
                            const char **why)
{
    return wire_query_reply_decode_in(NULL, buf, len, out, why);
}

int wire_publication_decode_in(wire_arena_t *a, const void *buf, size_t len,
                               Parksync__V1__Publication **out, const char **why)
{
    int rc;
    ProtobufCAllocator *alloc = wire_arena_allocator(a);
    Parksync__V1__Publication *p = (Parksync__V1__Publication *)bounded_unpack_in(
        alloc, &parksync__v1__publication__descriptor, buf, len, WIRE_MAX_MSG, &rc, why, NULL);

    *out = NULL;
    if (p == NULL)
        return rc;
    if ((rc = wire_publication_validate(p, why)) < 0) {
        parksync__v1__publication__free_unpacked(p, alloc);
        return rc;
    }
    *out = p;
    return 0;
}

int wire_publication_decode(const void *buf, size_t len, Parksync__V1__Publication **out,
                            const char **why)
{
    return wire_publication_decode_in(NULL, buf, len, out, why);
}

int wire_control_request_decode(const void *buf, size_t len, Parksync__V1__ControlRequest **out,
                                const char **why)
{
    int rc;
    Parksync__V1__ControlRequest *c = (Parksync__V1__ControlRequest *)bounded_unpack(
        &parksync__v1__control_request__descriptor, buf, len, WIRE_MAX_CONTROL, &rc, why, NULL);

    *out = NULL;
    if (c == NULL)
        return rc;
    if (!c->has_version || c->version != WIRE_VERSION || !c->has_request_id ||
        c->body_case == PARKSYNC__V1__CONTROL_REQUEST__BODY__NOT_SET) {
        *why = c->has_version && c->version == WIRE_VERSION ? "body: none" : "version";
        parksync__v1__control_request__free_unpacked(c, NULL);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

int wire_control_reply_decode(const void *buf, size_t len, Parksync__V1__ControlReply **out,
                              const char **why)
{
    int rc;
    Parksync__V1__ControlReply *c = (Parksync__V1__ControlReply *)bounded_unpack(
        &parksync__v1__control_reply__descriptor, buf, len, WIRE_MAX_MSG, &rc, why, NULL);

    *out = NULL;
    if (c == NULL)
        return rc;
    if (!c->has_version || c->version != WIRE_VERSION) {
        *why = "version";
        parksync__v1__control_reply__free_unpacked(c, NULL);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- encoding */

uint8_t *wire_pack(const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n > 0 ? n : 1);

    if (buf == NULL)
        return NULL;
    *len = protobuf_c_message_pack(msg, buf);
    return buf;
}

ProtobufCMessage *wire_copy(const ProtobufCMessage *msg)
{
    size_t len;
    uint8_t *buf = wire_pack(msg, &len);
    ProtobufCMessage *copy;

    if (buf == NULL)
        return NULL;
    copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

bool wire_has_unknown(const ProtobufCMessage *msg)
{
    return walk((ProtobufCMessage *)msg, keeps_unknown); /* keeps_unknown only reads */
}

ProtobufCMessage *wire_copy_known(const ProtobufCMessage *msg)
{
    ProtobufCMessage *copy = wire_copy(msg);

    if (copy != NULL)
        walk(copy, drop_unknown);
    return copy;
}

int wire_batch_next(const void *buf, size_t size, size_t *at, const void **update, size_t *len)
{
    const uint8_t *bytes;
    uint64_t field, value;
    unsigned type;
    int rc;

    while ((rc = field_next(buf, size, at, &field, &type, &value, &bytes)) == 1) {
        if (field != F_BATCH_UPDATES)
            continue;
        if (type != WIRE_TYPE_LEN)
            return -EBADMSG; /* updates are messages: length-delimited */
        *update = bytes;
        *len = (size_t)value;
        return 1;
    }
    return rc;
}

bool wire_query_request_id(const void *buf, size_t size, uint64_t *request_id)
{
    const uint8_t *bytes;
    uint64_t field, value;
    unsigned type;
    size_t at = 0;
    bool found = false;

    *request_id = 0;
    /* the last occurrence wins, as in protobuf's own decoding */
    while (field_next(buf, size, &at, &field, &type, &value, &bytes) == 1)
        if (field == F_REQUEST_REQUEST_ID && type == WIRE_TYPE_VARINT) {
            *request_id = value;
            found = true;
        }
    return found;
}
