/*
 * buf.h - growable byte buffers and varints, shared by the store's files
 * (private to store/).
 */
#ifndef PARKSYNC_STORE_BUF_H
#define PARKSYNC_STORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define STORE_VARINT_MAX 10 /* bytes of the longest varint */

/* A growable byte buffer reused across updates. */
typedef struct buf {
    uint8_t *data; /* malloc'd, NULL when never used */
    size_t len;    /* bytes used */
    size_t cap;    /* bytes allocated */
} buf_t;

/* Makes room for need bytes. 0 or -ENOMEM. */
int buf_reserve(buf_t *b, size_t need);
/* Sets b to len bytes of data. 0 or -ENOMEM. */
int buf_set(buf_t *b, const void *data, size_t len);
/* Frees b's bytes and empties it. */
void buf_free(buf_t *b);
/* Packs msg into b. 0 or -ENOMEM. */
int buf_pack(buf_t *b, const ProtobufCMessage *msg);
/* Writes s as a JSON string (quotes included) at o, which has room for
 * 6 * strlen(s) + 2 bytes; returns the bytes written. */
size_t json_put_str(char *o, const char *s);

/* Writes v as a varint at p (STORE_VARINT_MAX bytes at most); returns its length. */
size_t varint_put(uint8_t *p, uint64_t v);
/* Reads a varint from p[*at..len). false when truncated. */
bool varint_get(const uint8_t *p, size_t len, size_t *at, uint64_t *v);

#endif /* PARKSYNC_STORE_BUF_H */
