/*
 * fuzz_control.c - the control socket, both ways: wire_control_request_decode
 * (daemon side) and wire_control_reply_decode (operator CLI side) on the
 * same bytes.
 */
#include "fuzz.h"

static int decode_request(const void *buf, size_t len, ProtobufCMessage **out, const char **why)
{
    Parksync__V1__ControlRequest *c = NULL;
    int rc = wire_control_request_decode(buf, len, &c, why);

    *out = c != NULL ? &c->base : NULL;
    return rc;
}

static int decode_reply(const void *buf, size_t len, ProtobufCMessage **out, const char **why)
{
    Parksync__V1__ControlReply *c = NULL;
    int rc = wire_control_reply_decode(buf, len, &c, why);

    *out = c != NULL ? &c->base : NULL;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = NULL;

    fuzz_decode(decode_request, data, size, WIRE_MAX_CONTROL, false, &m);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    m = NULL;
    fuzz_decode(decode_reply, data, size, WIRE_MAX_MSG, false, &m);
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}
