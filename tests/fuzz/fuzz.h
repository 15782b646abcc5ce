/*
 * fuzz.h - what every fuzz target shares: the libFuzzer entry point and the
 * oracles that turn a silent inconsistency into a crash libFuzzer reports.
 *
 * Each decoder is checked against its contract in wire.h (documented
 * errors only, *why set on failure, *out set exactly when promised) and
 * then round-tripped: whatever it hands back must encode, decode to the
 * same verdict, and encode again to the same bytes.
 */
#ifndef PARKSYNC_FUZZ_H
#define PARKSYNC_FUZZ_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A wire_*_decode with its typed out-parameter widened to the message base,
 * so one round-trip checker serves every decoder. */
typedef int (*fuzz_decode_fn)(const void *buf, size_t len, ProtobufCMessage **out,
                              const char **why);

/* Prints bytes as hex to stderr, for a failure's report. */
static inline void fuzz_hexdump(const char *label, const uint8_t *buf, size_t len)
{
    fprintf(stderr, "%s (%zu bytes):", label, len);
    for (size_t i = 0; i < len && i < 256; i++)
        fprintf(stderr, "%s%02x", i % 32 == 0 ? "\n  " : " ", buf[i]);
    fprintf(stderr, "%s\n", len > 256 ? " ..." : "");
}

/* Packs m into a new buffer (caller frees) and checks the size agrees. */
static inline uint8_t *fuzz_pack(const ProtobufCMessage *m, size_t *len)
{
    uint8_t *buf = wire_pack(m, len);

    FUZZ_CHECK(buf != NULL);
    FUZZ_CHECK(*len == protobuf_c_message_get_packed_size(m));
    return buf;
}

/* True when a and b encode to the same bytes. */
static inline bool fuzz_same_encoding(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t alen, blen;
    uint8_t *abuf = fuzz_pack(a, &alen), *bbuf = fuzz_pack(b, &blen);
    bool same = alen == blen && memcmp(abuf, bbuf, alen) == 0;

    free(abuf);
    free(bbuf);
    return same;
}

typedef int (*fuzz_decode_in_fn)(wire_arena_t *a, const void *buf, size_t len,
                                 ProtobufCMessage **out, const char **why);

/* Decodes data again into an arena, as a subscriber and the daemon's
 * ingest do, and checks the verdict is rc and the message encodes as m
 * (the malloc'ed decode, NULL when refused) does; packing it reads every
 * field. One arena serves every input, as one serves every message a
 * subscriber reads or an ingest socket takes. */
static inline void fuzz_decode_in_arena(fuzz_decode_in_fn decode, const uint8_t *data, size_t size,
                                        int rc, const ProtobufCMessage *m)
{
    static wire_arena_t *arena;
    ProtobufCMessage *in = NULL;
    const char *why = NULL;

    if (arena == NULL)
        FUZZ_CHECK((arena = wire_arena_new()) != NULL);
    FUZZ_CHECK(decode(arena, data, size, &in, &why) == rc);
    FUZZ_CHECK((in != NULL) == (m != NULL));
    if (in != NULL)
        FUZZ_CHECK(fuzz_same_encoding(in, m));
    wire_arena_reset(arena);
}

/* The decoder's verdict obeys wire.h: 0 with *out; -EMSGSIZE or -EBADMSG
 * without; -EINVAL without *out unless out_on_einval; *why set on failure. */
static inline void fuzz_check_verdict(int rc, const ProtobufCMessage *out, const char *why,
                                      size_t len, size_t max, bool out_on_einval)
{
    switch (rc) {
    case 0:
        FUZZ_CHECK(out != NULL);
        FUZZ_CHECK(len <= max);
        return;
    case -EMSGSIZE:
        FUZZ_CHECK(len > max);
        FUZZ_CHECK(out == NULL && why != NULL);
        return;
    case -EBADMSG:
        FUZZ_CHECK(out == NULL && why != NULL);
        return;
    case -EINVAL:
        FUZZ_CHECK(why != NULL);
        FUZZ_CHECK(out_on_einval || out == NULL);
        return;
    default:
        FUZZ_CHECK(!"undocumented error from a decoder");
    }
}

/* Decodes data, checks the verdict and, when a message came back, the
 * round trip. Returns the verdict; *out is the caller's to free with
 * protobuf_c_message_free_unpacked(*out, NULL) (NULL when none). */
static inline int fuzz_decode(fuzz_decode_fn decode, const uint8_t *data, size_t size, size_t max,
                              bool out_on_einval, ProtobufCMessage **out)
{
    const char *why = NULL;
    int rc = decode(data, size, out, &why);

    fuzz_check_verdict(rc, *out, why, size, max, out_on_einval);
    if (*out == NULL)
        return rc;

    size_t len;
    uint8_t *buf = fuzz_pack(*out, &len);
    /* Re-encoding may grow (a 5-byte negative enum becomes 10 bytes); past
     * the limit the second decode is rightly refused, so stop there. A
     * NUL inside a string is found on the wire, and the decoded string
     * ends at it: the re-encoding has lost the NUL, so its verdict is
     * another one by design. */
    bool nul = rc != 0 && why != NULL && strstr(why, "contains a NUL byte") != NULL;
    if (len <= max && !nul) {
        ProtobufCMessage *again = NULL;
        const char *why2 = NULL;
        int rc2 = decode(buf, len, &again, &why2);

        if (rc2 != rc) {
            fprintf(stderr, "fuzz: verdict changed on re-decode: %d (%s) then %d (%s)\n", rc,
                    why != NULL ? why : "-", rc2, why2 != NULL ? why2 : "-");
            fuzz_hexdump("re-encoded", buf, len);
            abort();
        }
        FUZZ_CHECK(again != NULL);
        FUZZ_CHECK(fuzz_same_encoding(*out, again));
        protobuf_c_message_free_unpacked(again, NULL);
    }
    free(buf);
    return rc;
}

#endif /* PARKSYNC_FUZZ_H */
