/*
 * wire.h - what the daemon and the client both need of the wire protocol.
 *
 * One library, linked by both sides, so that topic names, limits, decoding
 * and validation exist exactly once. No ZeroMQ and no SQLite in here: this
 * module speaks bytes and protobuf-c messages only.
 *
 * Sections: constants and limits; record kinds; topics; validation;
 * decoding (size check + unpack + validation); encoding; raw builders for
 * chunks and publications; time. They are implemented in wire.c (kinds,
 * topics, field shapes, time, control socket), wire_validate.c (message
 * rules), wire_decode.c (decoding and encoding) and wire_build.c (raw
 * builders).
 *
 * Conventions: int functions return 0 (or a length) on success and a
 * negative errno on failure; `why` out-parameters receive a static string
 * naming the rejected field, suitable for a log line and a counter label.
 */
#ifndef PARKSYNC_WIRE_H
#define PARKSYNC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"

/* ---------------------------------------------------------------- limits */

#define WIRE_VERSION 1 /* value of every envelope's `version` field */

#define WIRE_DEFAULT_INGEST  "tcp://127.0.0.1:7101" /* daemon SUB binds */
#define WIRE_DEFAULT_PUBLISH "tcp://127.0.0.1:7102" /* daemon PUB binds */
#define WIRE_DEFAULT_QUERY   "tcp://127.0.0.1:7103" /* daemon ROUTER binds */

#define WIRE_MAX_MSG               (1024 * 1024) /* bytes: ZMQ_MAXMSGSIZE on every socket */
#define WIRE_MAX_UPDATE            (16 * 1024)   /* bytes of one encoded Update */
#define WIRE_MAX_BATCH             1024          /* updates in one UpdateBatch */
#define WIRE_MAX_BATCH_BYTES       (256 * 1024)  /* bytes of one encoded UpdateBatch */
#define WIRE_MAX_QUERY             (4 * 1024)    /* bytes of one encoded QueryRequest */
#define WIRE_MAX_CONTROL           (4 * 1024)    /* bytes of one encoded ControlRequest */
#define WIRE_MAX_TOPIC             96            /* bytes of a topic frame, with NUL */
#define WIRE_MAX_ID                64            /* bytes of an id (producer, park, resident) */
#define WIRE_MAX_TEXT              256           /* bytes of a name or region, UTF-8 */
#define WIRE_MAX_SPECIALIZATIONS   16            /* entries in a SpecializationList */
#define WIRE_MAX_CHUNK_RECORDS     4096          /* records in one snapshot chunk */
#define WIRE_DEFAULT_CHUNK_RECORDS 512           /* records per chunk when unasked */
#define WIRE_MAX_CREDIT            64            /* chunks a client may grant at once */
#define WIRE_MAX_POSITIONS         8192          /* producers' positions in one replicate chunk */
#define WIRE_MAX_WAIT_MS           30000         /* ReplicateRequest.wait_ms at most */
#define WIRE_MAX_COUNTRIES         32            /* ReplicateRequest.countries at most */
#define WIRE_MAX_STATUS_PRODUCERS  256           /* producers one Status lists */
#define WIRE_EPOCH_BYTES           16            /* size of a database epoch */
#define WIRE_INSTANCE_BYTES        16            /* size of a daemon instance id (per start) */
#define WIRE_MAX_HB_TOPICS         8192          /* topic sequences in one heartbeat */
#define WIRE_MIN_YEAR              1990          /* periods before this are refused */
#define WIRE_MAX_YEAR              2200
/* Money: |value| <= 10^17 cents (10^15 USD) leaves room to add many. */
#define WIRE_MAX_CENTS 100000000000000000LL

/* ---------------------------------------------------------------- kinds */

/* "park", "resident", "trade", "country", "summary"; NULL for others. */
const char *wire_kind_name(Parksync__V1__RecordKind kind);

/* Inverse of wire_kind_name; RECORD_KIND_UNSPECIFIED when unknown. */
Parksync__V1__RecordKind wire_kind_from_name(const char *name);

/* The kind of record an update touches (a delete: its target's kind);
 * UNSPECIFIED when the update has no body. */
Parksync__V1__RecordKind wire_update_kind(const Parksync__V1__Update *u);

/* The kind of a consolidated record; UNSPECIFIED when it has no body. */
Parksync__V1__RecordKind wire_record_kind(const Parksync__V1__Record *r);

/* The country a record is filed under: the owner of a park, resident or
 * country report, the exporter of a trade flow, the summary's country.
 * NULL when the record has no body. */
const char *wire_record_country(const Parksync__V1__Record *r);

/* ---------------------------------------------------------------- topics
 *
 * ingest:  "park" | "resident" | "trade" | "country"   (kind of the update)
 * publish: "rec/<kind>/<CC>/"  a consolidated record
 *          "ack/<producer_id>/" an acknowledgement
 *          "hb/"                a heartbeat
 * The trailing '/' makes ZeroMQ's prefix match exact: subscribing to
 * "ack/AZ-1/" never receives "ack/AZ-10/".
 *
 * Each writes a NUL-terminated topic into buf and returns its length
 * without the NUL, or -ENOSPC / -EINVAL.
 */
#define WIRE_TOPIC_HEARTBEAT "hb/"
#define WIRE_TOPIC_RECORDS   "rec/"
#define WIRE_TOPIC_BATCH     "batch" /* ingest: an UpdateBatch of any kinds */

int wire_topic_ingest(char *buf, size_t size, Parksync__V1__RecordKind kind);
/* kind UNSPECIFIED gives "rec/"; country NULL gives "rec/<kind>/". */
int wire_topic_record(char *buf, size_t size, Parksync__V1__RecordKind kind, const char *country);
int wire_topic_ack(char *buf, size_t size, const char *producer_id);

/* True when topic[0..len) is a prefix of some publish topic above
 * ("", "rec/par", "rec/park/AZ/", "ack/AZ-MOE/", "hb/"): the only
 * subscriptions that can ever match what the daemon publishes. A valid
 * topic is at most 69 bytes ("ack/" + 64-byte id + "/"). */
bool wire_subscription_valid(const void *topic, size_t len);

/* ---------------------------------------------------------------- validation */

/* True when s[0..len) is well-formed UTF-8 without NUL bytes, overlong
 * forms or surrogates. */
bool wire_utf8_valid(const char *s, size_t len);

/* Ids (producer, park, resident): 1..64 bytes of [A-Za-z0-9._-]. */
bool wire_id_valid(const char *s);

/* ISO 3166-1 alpha-2 shape: exactly two upper-case ASCII letters. */
bool wire_country_valid(const char *s);

/* All three fields present, year in range, 1 <= first <= last <= 12. */
bool wire_period_valid(const Parksync__V1__Period *p);

/* Canonical text of a valid period, e.g. "2020-01..10". Returns the length
 * or -EINVAL / -ENOSPC. */
int wire_period_key(char *buf, size_t size, const Parksync__V1__Period *p);

/* YYYY-MM-DD with a real calendar day. */
bool wire_date_valid(const char *s);

/* Every rule an Update must meet before the store sees it: version,
 * producer id, sequence >= 1, event time present, exactly one body, key
 * fields present and well-formed, deletes carrying only key fields, enum
 * values known, text length and UTF-8, list sizes, money bounds.
 * Returns 0, or -EINVAL with *why naming the first failure. */
int wire_update_validate(const Parksync__V1__Update *u, const char **why);

/* ---------------------------------------------------------------- arenas */

/* Memory for decoded messages that die together, such as the chunk a
 * subscriber delivers record by record (wire_arena.c): cut from one block
 * that grows to what the messages need, freed all at once. */
typedef struct wire_arena wire_arena_t;

/* A new arena, or NULL when out of memory. */
wire_arena_t *wire_arena_new(void);

/* The allocator to hand protobuf-c (NULL for a NULL arena: malloc). */
ProtobufCAllocator *wire_arena_allocator(wire_arena_t *a);

/* Frees every message decoded into a; the memory serves the next ones. */
void wire_arena_reset(wire_arena_t *a);

/* Bytes the messages decoded into a since its last reset take, in its
 * block and beside it (0 for NULL). */
size_t wire_arena_held(const wire_arena_t *a);

/* Frees a and everything in it; sets *a to NULL. */
void wire_arena_free(wire_arena_t **a);

/* ---------------------------------------------------------------- decoding
 *
 * Each decoder checks the size against the type's limit before unpacking,
 * unpacks with protobuf-c, then validates. On success *out is set and the
 * caller owns it (free with the type's __free_unpacked(msg, NULL)).
 * Errors: -EMSGSIZE (larger than the limit), -EBADMSG (not a valid
 * encoding of the type), -EINVAL (decoded but invalid; see below).
 * *why is always set on failure. A NUL byte in any known string field,
 * at any depth, is invalid ("FIELD: contains a NUL byte"): protobuf-c
 * would end the C string there; unknown fields are not looked into.
 */

/* On -EINVAL *out is still set when the envelope itself (version,
 * producer id, sequence) is sound, so the daemon can consume the sequence
 * and record the rejection; the caller must free it. Otherwise *out is
 * NULL on failure. A NUL in producer_id leaves the envelope unsound. */
int wire_update_decode(const void *buf, size_t len, Parksync__V1__Update **out, const char **why);
/* The same into an arena (NULL: malloc): the update is then freed with
 * everything else in it, by wire_arena_reset. The daemon decodes every
 * update it takes into one, reset after each. */
int wire_update_decode_in(wire_arena_t *a, const void *buf, size_t len, Parksync__V1__Update **out,
                          const char **why);
int wire_query_request_decode(const void *buf, size_t len, Parksync__V1__QueryRequest **out,
                              const char **why);

/* Walks an encoded UpdateBatch without unpacking it, so that each update
 * goes through wire_update_decode on its own. Start with *at = 0. Returns
 * 1 with the next update's bytes in *update and *len, 0 at the end, or
 * -EBADMSG when the framing is broken (nothing after *at is usable).
 * Unknown fields are skipped, as protobuf decoders do. */
int wire_batch_next(const void *buf, size_t size, size_t *at, const void **update, size_t *len);

/* The request_id of an encoded QueryRequest, read field by field without
 * decoding the rest, so that even a request that is too large, does not
 * decode or is invalid gets an error reply the client can match. Reads up
 * to where the framing breaks. True and *request_id set when found; false
 * and *request_id = 0 otherwise. */
bool wire_query_request_id(const void *buf, size_t size, uint64_t *request_id);

int wire_query_reply_decode(const void *buf, size_t len, Parksync__V1__QueryReply **out,
                            const char **why);
/* The same into an arena (NULL: malloc, as above): the message is then
 * never freed by itself but with everything else in the arena, by
 * wire_arena_reset. */
int wire_query_reply_decode_in(wire_arena_t *a, const void *buf, size_t len,
                               Parksync__V1__QueryReply **out, const char **why);
int wire_publication_decode(const void *buf, size_t len, Parksync__V1__Publication **out,
                            const char **why);
int wire_publication_decode_in(wire_arena_t *a, const void *buf, size_t len,
                               Parksync__V1__Publication **out, const char **why);
int wire_control_request_decode(const void *buf, size_t len, Parksync__V1__ControlRequest **out,
                                const char **why);
int wire_control_reply_decode(const void *buf, size_t len, Parksync__V1__ControlReply **out,
                              const char **why);

/* ---------------------------------------------------------------- encoding */

/* Packs any message into a new buffer. Returns it (caller frees with
 * free()) and sets *len, or NULL when out of memory. */
uint8_t *wire_pack(const ProtobufCMessage *msg, size_t *len);

/* Deep copy of any message through pack and unpack. Caller owns the copy
 * (free with protobuf_c_message_free_unpacked(copy, NULL)); NULL when out
 * of memory. */
ProtobufCMessage *wire_copy(const ProtobufCMessage *msg);

/* True when msg or any message inside it holds an unknown field (one the
 * schema does not know, kept by protobuf-c's decoder). */
bool wire_has_unknown(const ProtobufCMessage *msg);

/* wire_copy without the unknown fields of msg and of every message
 * inside it: what a receiver keeps of a newer peer's message, its bytes
 * bounded by the schema this build knows. Caller owns the copy (free with
 * protobuf_c_message_free_unpacked(copy, NULL)); NULL when out of memory. */
ProtobufCMessage *wire_copy_known(const ProtobufCMessage *msg);

/* ---------------------------------------------------------------- raw builders
 *
 * The store keeps every record as its encoded Record. Embedded messages
 * are length-delimited on the wire, so a stored Record can be placed into
 * a Chunk or a Publication without decoding it again. These builders do
 * that; their output is an ordinary QueryReply or Publication.
 */

typedef struct wire_buf {
    uint8_t *data; /* malloc'd, NULL when empty */
    size_t len;    /* bytes used */
    size_t cap;    /* bytes allocated */
} wire_buf_t;

void wire_buf_reset(wire_buf_t *b); /* len = 0, keeps memory */
void wire_buf_free(wire_buf_t *b);  /* releases memory, zeroes b */

/* Appends field `field` (wire type LEN) holding bytes[0..len). 0 or -ENOMEM. */
int wire_buf_put_bytes(wire_buf_t *b, uint32_t field, const void *bytes, size_t len);
/* Appends field `field` (wire type VARINT). 0 or -ENOMEM. */
int wire_buf_put_varint(wire_buf_t *b, uint32_t field, uint64_t value);

/* A QueryReply{version, request_id, chunk{records..., last, revision,
 * epoch}} built from encoded Records. Usage: wire_chunk_reset, then
 * wire_chunk_add per record, then wire_chunk_finish. */
typedef struct wire_chunk {
    wire_buf_t records; /* the repeated Record field, encoded */
    wire_buf_t out;     /* the finished QueryReply */
    uint32_t count;     /* records added since reset */
} wire_chunk_t;

void wire_chunk_reset(wire_chunk_t *c);
void wire_chunk_free(wire_chunk_t *c);
int wire_chunk_add(wire_chunk_t *c, const void *record, size_t len);
/* Replicate streams: a producer's position (the last chunk carries
 * them), and the mark of a stream of the whole state. 0 or -ENOMEM. */
int wire_chunk_add_position(wire_chunk_t *c, const char *producer_id, uint64_t last_sequence);
int wire_chunk_set_full(wire_chunk_t *c);
/* Replicate's last chunk: the commit its view opened after, and the
 * daemon instance that counts commits. 0 or -ENOMEM. */
int wire_chunk_set_commit(wire_chunk_t *c, uint64_t commit, const uint8_t *instance);
/* Returns 0 and points *msg and *len at c->out (valid until the next reset),
 * or -ENOMEM. epoch may be NULL. */
int wire_chunk_finish(wire_chunk_t *c, uint64_t request_id, bool last, uint64_t revision,
                      const uint8_t *epoch, const uint8_t **msg, size_t *len);

/* Publication{version, stream_sequence, record: the given bytes} into b
 * (reset first). 0 or -ENOMEM. */
int wire_publication_record(wire_buf_t *b, uint64_t stream_sequence, const void *record,
                            size_t len);
/* The same with Publication.repeat = true: a record published again
 * unchanged (its revision was published before). */
int wire_publication_repeat(wire_buf_t *b, uint64_t stream_sequence, const void *record,
                            size_t len);

/* ---------------------------------------------------------------- time */

int64_t wire_now_us(void);       /* wall clock, microseconds since 1970 UTC */
int64_t wire_monotonic_ms(void); /* monotonic clock, milliseconds */
int64_t wire_monotonic_us(void); /* monotonic clock, microseconds */

/* ---------------------------------------------------------------- control socket
 *
 * The one rule that places the control socket, used by the daemon (to
 * bind) and the CLI (to connect) so both agree whatever their working
 * directories:
 *   1. ipc://$RUNTIME_DIRECTORY/control when RUNTIME_DIRECTORY is set
 *      (systemd; the first directory of the list);
 *   2. ipc:///run/parksync/control when /run/parksync exists (the
 *      package makes it: an operator who may not enter it is then told so,
 *      not sent to a folder no daemon uses), or it does not exist and /run
 *      is writable;
 *   3. ipc://$XDG_RUNTIME_DIR/parksync/control when XDG_RUNTIME_DIR is set;
 *   4. ipc:///tmp/parksync-$UID/control.
 * Nothing is created here: the daemon makes the directory (mode 0700;
 * systemd's 0750 lets the daemon's group in).
 * Returns the length written, or -ENOSPC. */
#define WIRE_CONTROL_NAME "control" /* file name of the control socket */
int wire_control_endpoint_default(char *buf, size_t size);

#endif /* PARKSYNC_WIRE_H */
