/*
 * json_int.h - private to the CLI's JSON files (json.c, json_update.c,
 * json_out.c): the conversion state and the helpers more than one of
 * them uses. The CLI includes json.h only.
 */
#ifndef PARKSYNC_CLI_JSON_INT_H
#define PARKSYNC_CLI_JSON_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "json.h"

/* State of one JSON -> message conversion. */
typedef struct conv {
    char *why;     /* reason buffer (caller's) */
    size_t whylen; /* its size in bytes */
} conv_t;

/* Writes "PATH: reason" into c->why; returns -EINVAL. */
__attribute__((format(printf, 3, 4))) int json_fail(conv_t *c, const char *path, const char *fmt,
                                                    ...);

/* "an object", "a string", ...: what v is, for a reason. */
const char *json_type_name(const json_t *v);

/* True when d's only field is repeated (written as a bare array). */
bool json_single_repeated(const ProtobufCMessageDescriptor *d);

/* Bytes of one value of type t in a message struct. */
size_t json_type_size(ProtobufCType t);

#endif /* PARKSYNC_CLI_JSON_INT_H */
