/*
 * json.h - JSON lines <-> protobuf-c messages for the parksync CLI.
 *
 * One generic mapping driven by protobuf-c descriptors serves every message:
 * a JSON object's keys are the .proto field names, enums are their proto
 * value names, nested messages are nested objects, repeated fields are
 * arrays. Two shorthands: a message whose only field is repeated (the
 * SpecializationList) is written as a bare array, and 64-bit integers may
 * also be written as strings of decimal digits.
 *
 * Input (json_to_update) is an Update without its envelope: one body key
 * ("park", "resident", "trade", "country" or "delete") plus the optional
 * "event_time" (RFC 3339), "event_time_us" and "vintage". Unknown keys are
 * errors. The mapping checks shapes and bounds only; wire_update_validate
 * (json_update_check) decides the rest.
 *
 * Output (json_from_record) is one object per Record:
 *   {"revision": N, "kind": "park", "deleted": true?, "<kind>": {...},
 *    "provenance": [...]?}
 * with every present field, money as JSON integers (cents), enums as their
 * full proto names.
 *
 * Nothing here prints, and no input can crash it: the fuzz target feeds
 * json_to_update arbitrary bytes.
 */
#ifndef PARKSYNC_CLI_JSON_H
#define PARKSYNC_CLI_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"

#define JSON_MAX_DEPTH 8 /* nesting of messages inside an Update or Record */

/* Parses one JSON line into a new Update (envelope left empty except
 * event_time_us and vintage when given). Returns 0 and sets *out (caller
 * owns it; free with parksync__v1__update__free_unpacked(*out, NULL)), or
 * -EINVAL with a reason in why (always NUL-terminated when whylen > 0)
 * and *out = NULL. */
int json_to_update(const char *line, size_t len, Parksync__V1__Update **out, char *why,
                   size_t whylen);

/* json_to_update for an object already parsed (a CSV row is turned into
 * the same object as the JSON line that says the same). root is not
 * modified. Same returns. */
int json_object_to_update(const json_t *root, Parksync__V1__Update **out, char *why, size_t whylen);

/* Fills the envelope as the producer will (version, producer_id, sequence
 * 1, event time now when absent) and runs wire_update_validate. Returns 0
 * or -EINVAL with the reason in why, -ENOMEM. u keeps the filled fields
 * (producer_id is a copy owned by u). */
int json_update_check(Parksync__V1__Update *u, const char *producer_id, char *why, size_t whylen);

/* Generic message -> JSON object (every present field). Returns a new
 * reference, or NULL when out of memory. */
json_t *json_from_message(const ProtobufCMessage *msg);

/* A Record in the documented output shape. New reference or NULL. */
json_t *json_from_record(const Parksync__V1__Record *r);

/* Generic JSON object -> new message of type desc. Returns 0 and sets
 * *out (free with protobuf_c_message_free_unpacked(*out, NULL)), or
 * -EINVAL with the reason in why. */
int json_to_message(const json_t *obj, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **out, char *why, size_t whylen);

/* RFC 3339 timestamp ("2020-10-31T00:00:00Z", fraction and numeric offset
 * allowed) -> microseconds since 1970 UTC. 0 or -EINVAL. */
int json_parse_time(const char *s, int64_t *us);

/* Enum value by full proto name or by the name without the enum's prefix,
 * case-insensitive ("SPECIALIZATION_CHEMISTRY", "chemistry"). NULL when
 * unknown. */
const ProtobufCEnumValue *json_enum_lookup(const ProtobufCEnumDescriptor *d, const char *name);

/* Length of the prefix every value name of d shares up to an '_'
 * ("SPECIALIZATION_"): what the short names leave out. */
size_t json_enum_prefix_len(const ProtobufCEnumDescriptor *d);

#endif /* PARKSYNC_CLI_JSON_H */
