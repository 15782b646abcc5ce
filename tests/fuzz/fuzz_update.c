/*
 * fuzz_update.c - the daemon's ingest socket: wire_update_decode on
 * arbitrary bytes, its contract, re-validation and the encode round trip,
 * and into an arena as the daemon decodes (same verdict, same message);
 * and the same bytes as an UpdateBatch, walked by wire_batch_next with
 * each update decoded as the daemon does, into one arena reset after each.
 */
#include "fuzz.h"

static int decode_update_in(wire_arena_t *a, const void *buf, size_t len, ProtobufCMessage **out,
                            const char **why)
{
    Parksync__V1__Update *u = NULL;
    int rc = wire_update_decode_in(a, buf, len, &u, why);

    *out = u != NULL ? &u->base : NULL;
    return rc;
}

static int decode_update(const void *buf, size_t len, ProtobufCMessage **out, const char **why)
{
    return decode_update_in(NULL, buf, len, out, why);
}

/* The daemon's handle_batch: walk, then decode every update. */
static void walk_batch(const uint8_t *data, size_t size)
{
    static wire_arena_t *arena;
    size_t at = 0, len, n = 0;
    const void *update;
    int rc;

    if (arena == NULL)
        FUZZ_CHECK((arena = wire_arena_new()) != NULL);
    while ((rc = wire_batch_next(data, size, &at, &update, &len)) == 1) {
        Parksync__V1__Update *u = NULL;
        const char *why = NULL;
        FUZZ_CHECK(at <= size && (const uint8_t *)update >= data &&
                   (const uint8_t *)update + len == data + at);
        (void)wire_update_decode_in(arena, update, len, &u, &why);
        wire_arena_reset(arena);
        n++;
    }
    FUZZ_CHECK(rc == 0 || rc == -EBADMSG);
    FUZZ_CHECK(at <= size);
    FUZZ_CHECK(n <= size / 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL;
    /* A sound envelope with an invalid body is handed over on -EINVAL. */
    int rc = fuzz_decode(decode_update, data, size, WIRE_MAX_UPDATE, true, &m);
    Parksync__V1__Update *u = (Parksync__V1__Update *)m;
    fuzz_decode_in_arena(decode_update_in, data, size, rc, m);
    const char *why = NULL;
    char topic[WIRE_MAX_TOPIC];

    walk_batch(data, size);
    if (u == NULL)
        return 0;
    /* What the daemon does next with it: validate, name the kind, route.
     * The one verdict validation cannot repeat is a NUL inside a body
     * string: decoding finds it on the wire, and the decoded string ends
     * at it. */
    int v = wire_update_validate(u, &why);
    FUZZ_CHECK(v == rc || (rc == -EINVAL && v == 0 && memchr(data, 0, size) != NULL));
    if (rc == 0) {
        FUZZ_CHECK(wire_update_kind(u) != PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED);
        FUZZ_CHECK(wire_topic_ingest(topic, sizeof topic, wire_update_kind(u)) > 0);
        FUZZ_CHECK(wire_topic_ack(topic, sizeof topic, u->producer_id) > 0);
    }
    parksync__v1__update__free_unpacked(u, NULL);
    return 0;
}
