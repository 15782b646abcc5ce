/*
 * buf.c - growable byte buffers and varints (buf.h).
 */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int buf_reserve(buf_t *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    /* half as much again, or what is needed when that is more, in whole
     * 64-byte units: a buffer set once is barely larger than its bytes
     * (a cached row keeps two), one set again and again settles */
    size_t cap = b->cap + b->cap / 2;
    if (cap < need)
        cap = need;
    if (cap > SIZE_MAX - 63)
        return -ENOMEM;
    cap = (cap + 63) & ~(size_t)63;
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_set(buf_t *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) < 0)
        return -ENOMEM;
    if (len)
        memcpy(b->data, data, len);
    b->len = len;
    return 0;
}

void buf_free(buf_t *b)
{
    free(b->data);
    *b = (buf_t){0};
}

/* Packs msg into b. 0 or -ENOMEM. */
int buf_pack(buf_t *b, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (buf_reserve(b, n ? n : 1) < 0)
        return -ENOMEM;
    b->len = protobuf_c_message_pack(msg, b->data);
    return 0;
}

size_t json_put_str(char *o, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    o[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            o[n++] = '\\';
            o[n++] = (char)c;
        } else if (c < 0x20) {
            memcpy(o + n, "\\u00", 4);
            o[n + 4] = hex[c >> 4];
            o[n + 5] = hex[c & 15];
            n += 6;
        } else {
            o[n++] = (char)c;
        }
    }
    o[n++] = '"';
    return n;
}

size_t varint_put(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* Reads a varint from p[*at..len). false when truncated. */
bool varint_get(const uint8_t *p, size_t len, size_t *at, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 64 && *at < len; shift += 7) {
        uint8_t c = p[(*at)++];
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}
