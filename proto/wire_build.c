/*
 * wire_build.c - the raw builders: a growing buffer of protobuf fields,
 * and the snapshot chunks and publications made from stored Records
 * without decoding them again (embedded messages are length-delimited on
 * the wire, so an encoded Record is placed as it is).
 */
#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire_int.h"

/* ---------------------------------------------------------------- raw builders */

void wire_buf_reset(wire_buf_t *b)
{
    b->len = 0;
}

void wire_buf_free(wire_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static int buf_reserve(wire_buf_t *b, size_t extra)
{
    size_t cap;
    uint8_t *data;

    if (b->len + extra <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    if ((data = realloc(b->data, cap)) == NULL)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_varint(wire_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (uint8_t)v;
}

int wire_buf_put_varint(wire_buf_t *b, uint32_t field, uint64_t value)
{
    if (buf_reserve(b, 20) < 0)
        return -ENOMEM;
    buf_varint(b, ((uint64_t)field << 3) | WIRE_TYPE_VARINT);
    buf_varint(b, value);
    return 0;
}

int wire_buf_put_bytes(wire_buf_t *b, uint32_t field, const void *bytes, size_t len)
{
    if (buf_reserve(b, 20 + len) < 0)
        return -ENOMEM;
    buf_varint(b, ((uint64_t)field << 3) | WIRE_TYPE_LEN);
    buf_varint(b, len);
    if (len > 0)
        memcpy(b->data + b->len, bytes, len);
    b->len += len;
    return 0;
}

void wire_chunk_reset(wire_chunk_t *c)
{
    wire_buf_reset(&c->records);
    wire_buf_reset(&c->out);
    c->count = 0;
}

void wire_chunk_free(wire_chunk_t *c)
{
    wire_buf_free(&c->records);
    wire_buf_free(&c->out);
    c->count = 0;
}

int wire_chunk_add(wire_chunk_t *c, const void *record, size_t len)
{
    int rc = wire_buf_put_bytes(&c->records, F_CHUNK_RECORDS, record, len);

    if (rc == 0)
        c->count++;
    return rc;
}

int wire_chunk_add_position(wire_chunk_t *c, const char *producer_id, uint64_t last_sequence)
{
    wire_buf_t one = {0};
    int rc = wire_buf_put_bytes(&one, F_STATE_PRODUCER, producer_id, strlen(producer_id));
    rc |= wire_buf_put_varint(&one, F_STATE_LAST, last_sequence);
    rc |= wire_buf_put_bytes(&c->records, F_CHUNK_PRODUCERS, one.data, one.len);
    wire_buf_free(&one);
    return rc != 0 ? -ENOMEM : 0;
}

int wire_chunk_set_full(wire_chunk_t *c)
{
    return wire_buf_put_varint(&c->records, F_CHUNK_FULL, 1);
}

int wire_chunk_set_commit(wire_chunk_t *c, uint64_t commit, const uint8_t *instance)
{
    int rc = wire_buf_put_varint(&c->records, F_CHUNK_COMMIT, commit);
    rc |= wire_buf_put_bytes(&c->records, F_CHUNK_INSTANCE, instance, WIRE_INSTANCE_BYTES);
    return rc != 0 ? -ENOMEM : 0;
}

int wire_chunk_finish(wire_chunk_t *c, uint64_t request_id, bool last, uint64_t revision,
                      const uint8_t *epoch, const uint8_t **msg, size_t *len)
{
    int rc = 0;

    rc |= wire_buf_put_varint(&c->records, F_CHUNK_LAST, last ? 1 : 0);
    rc |= wire_buf_put_varint(&c->records, F_CHUNK_REVISION, revision);
    if (epoch != NULL)
        rc |= wire_buf_put_bytes(&c->records, F_CHUNK_EPOCH, epoch, WIRE_EPOCH_BYTES);
    wire_buf_reset(&c->out);
    rc |= wire_buf_put_varint(&c->out, F_REPLY_VERSION, WIRE_VERSION);
    rc |= wire_buf_put_varint(&c->out, F_REPLY_REQUEST_ID, request_id);
    rc |= wire_buf_put_bytes(&c->out, F_REPLY_CHUNK, c->records.data, c->records.len);
    if (rc != 0)
        return -ENOMEM;
    *msg = c->out.data;
    *len = c->out.len;
    return 0;
}

/* Publication{version, stream_sequence, repeat when asked, record}. */
static int publication(wire_buf_t *b, uint64_t stream_sequence, bool repeat, const void *record,
                       size_t len)
{
    wire_buf_reset(b);
    if (wire_buf_put_varint(b, F_PUB_VERSION, WIRE_VERSION) < 0 ||
        wire_buf_put_varint(b, F_PUB_STREAM_SEQ, stream_sequence) < 0 ||
        (repeat && wire_buf_put_varint(b, F_PUB_REPEAT, 1) < 0) ||
        wire_buf_put_bytes(b, F_PUB_RECORD, record, len) < 0)
        return -ENOMEM;
    return 0;
}

int wire_publication_record(wire_buf_t *b, uint64_t stream_sequence, const void *record, size_t len)
{
    return publication(b, stream_sequence, false, record, len);
}

int wire_publication_repeat(wire_buf_t *b, uint64_t stream_sequence, const void *record, size_t len)
{
    return publication(b, stream_sequence, true, record, len);
}
