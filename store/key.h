/*
 * key.h - record kinds, keys and bodies: what every file of the store
 * names records by (private to store/). Pure: no SQLite.
 */
#ifndef PARKSYNC_STORE_KEY_H
#define PARKSYNC_STORE_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "parksync.pb-c.h"
#include "wire.h"

#define STORE_MAX_KEYS       3         /* key columns of a record kind */
#define STORE_PERIOD_TEXT    32        /* bytes of a period key ("2020-01..10"), with NUL */
#define STORE_COUNTRIES      (26 * 26) /* ISO alpha-2 codes: size of the dirty set */
#define STORE_KINDS          6         /* RecordKind values 0..5 */
#define STORE_KEY_TEXT       256       /* bytes of a key as text in a conflict row */
#define STORE_TAG_REVISION   0x08      /* Record field 1 (revision), wire type VARINT */
#define STORE_TAG_PREV_DELTA 0x00      /* a prev stored as a difference (prev_encode) */

typedef Parksync__V1__RecordKind kind_t;

/* The key of one record, as its table's key columns. */
typedef struct rec_key {
    kind_t kind;                     /* record kind */
    const char *col[STORE_MAX_KEYS]; /* key column values, NUL-terminated */
    size_t ncols;                    /* key columns used */
    char period[STORE_PERIOD_TEXT];  /* storage of a period key column */
    const char *country;             /* topic country (trade: exporter) */
    const char *country2;            /* trade: importer; else NULL */
    const char *owner;               /* key country the update speaks for (trade: reporter) */
    const char *partner;             /* trade: the reporter's partner; else NULL */
} rec_key_t;

/* The encoded Record without its leading revision field. */
void record_strip(const uint8_t *rec, size_t len, const uint8_t **body, size_t *blen);
/*
 * A change-log row's prev, the stored record its change replaced, is
 * kept as its difference from the row's own record when that is shorter:
 * STORE_TAG_PREV_DELTA and prev's revision, then operations that rebuild
 * prev's body from the record's, each three varints and some bytes: copy
 * that many bytes of the record, skip that many, append that many bytes
 * that follow. A change rewrites a field or two, so a resident's prev of
 * about 360 bytes takes a few dozen. A prev kept whole begins with
 * STORE_TAG_REVISION, as every stored record does: no record begins with
 * 0 (field 0 is not protobuf's).
 */
/* Writes into out the difference of prev from rec (both as stored): 1,
 * or 0 when prev is to be kept whole (the difference is no shorter, or
 * prev has no revision), or -ENOMEM. */
int prev_encode(buf_t *out, const uint8_t *prev, size_t plen, const uint8_t *rec, size_t rlen);
/* Writes into out the record a stored prev stands for, given the record
 * of its row: 0, -EBADMSG when the difference does not fit rec, or
 * -ENOMEM. A prev kept whole is copied. */
int prev_decode(buf_t *out, const uint8_t *prev, size_t plen, const uint8_t *rec, size_t rlen);
/* The index of an ISO alpha-2 code (0 .. STORE_COUNTRIES - 1), or -1. */
int country_index(const char *c);
/* The record an update or delete target names. false when a key is missing. */
bool key_of(rec_key_t *key, kind_t kind, const void *body, bool *exporter_side);
/* The key of a Record of a kind with stamps; a trade flow is read as the
 * exporter's report of it, built in *tr. false when there is none. */
bool key_of_record(rec_key_t *key, const Parksync__V1__Record *r, Parksync__V1__TradeReport *tr);
/* The kind and body an update names; is_delete for a delete's target. */
const void *update_target(const Parksync__V1__Update *u, kind_t *kind, bool *is_delete);
/* The key columns joined by '/', truncated to size - 1 bytes. */
void key_text(const rec_key_t *key, char *out, size_t size);
/* Parses a period key made by wire_period_key back into a Period. */
bool period_parse(const char *text, Parksync__V1__Period *p);
/* The body of a Record, or NULL. */
const ProtobufCMessage *record_body(const Parksync__V1__Record *r);
/* Sets the body of a Record of kind to body (borrowed). */
void record_set_body(Parksync__V1__Record *r, kind_t kind, ProtobufCMessage *body);

#endif /* PARKSYNC_STORE_KEY_H */
