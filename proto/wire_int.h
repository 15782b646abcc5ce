/*
 * wire_int.h - private to proto/'s wire files: protobuf's wire types, the
 * field numbers the raw reader and builders use, and the validators the
 * decoders call. Nothing outside proto/wire*.c includes this; the public
 * contracts are in wire.h.
 */
#ifndef PARKSYNC_WIRE_INT_H
#define PARKSYNC_WIRE_INT_H

#include "wire.h"

#define WIRE_TYPE_VARINT 0 /* protobuf wire type of varints */
#define WIRE_TYPE_LEN    2 /* protobuf wire type of length-delimited fields */
#define WIRE_TYPE_I64    1 /* protobuf wire type of 64-bit fixed fields */
#define WIRE_TYPE_I32    5 /* protobuf wire type of 32-bit fixed fields */

/* Field numbers as in parksync.proto, named once here for the raw reader and builders. */
enum {
    F_CHUNK_RECORDS = 1,      /* Chunk.records */
    F_BATCH_UPDATES = 1,      /* UpdateBatch.updates */
    F_REPLY_VERSION = 1,      /* QueryReply.version */
    F_REPLY_REQUEST_ID = 2,   /* QueryReply.request_id */
    F_REQUEST_REQUEST_ID = 2, /* QueryRequest.request_id */
    F_REPLY_CHUNK = 11,       /* QueryReply.chunk */
    F_CHUNK_LAST = 2,         /* Chunk.last */
    F_CHUNK_REVISION = 3,     /* Chunk.revision */
    F_CHUNK_EPOCH = 4,        /* Chunk.epoch */
    F_CHUNK_PRODUCERS = 5,    /* Chunk.producers */
    F_CHUNK_FULL = 6,         /* Chunk.full */
    F_CHUNK_COMMIT = 7,       /* Chunk.commit */
    F_CHUNK_INSTANCE = 8,     /* Chunk.instance */
    F_STATE_PRODUCER = 1,     /* ProducerState.producer_id */
    F_STATE_LAST = 2,         /* ProducerState.last_sequence */
    F_PUB_VERSION = 1,        /* Publication.version */
    F_PUB_STREAM_SEQ = 2,     /* Publication.stream_sequence */
    F_PUB_REPEAT = 3,         /* Publication.repeat */
    F_PUB_RECORD = 10,        /* Publication.record */
};

/* The validators wire_decode.c calls after unpacking (wire_validate.c).
 * Each returns 0, or -EINVAL with *why naming the first failure. */

/* The Update's envelope alone (version, producer id, sequence): what the
 * daemon needs to consume a sequence. */
int wire_envelope_validate(const Parksync__V1__Update *u, const char **why);
/* The Update's event time, vintage and body. */
int wire_body_validate(const Parksync__V1__Update *u, const char **why);
int wire_query_request_validate(const Parksync__V1__QueryRequest *q, const char **why);
int wire_query_reply_validate(const Parksync__V1__QueryReply *q, const char **why);
int wire_publication_validate(const Parksync__V1__Publication *p, const char **why);

#endif /* PARKSYNC_WIRE_INT_H */
