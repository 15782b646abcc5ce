/*
 * json.c - generic JSON <-> protobuf-c mapping over message descriptors:
 * JSON -> message. The Update envelope and times are in json_update.c,
 * message -> JSON in json_out.c; json_int.h is what they share.
 *
 * Sections: reasons and paths; enum names; JSON -> message.
 */
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"
#include "wire.h"
#define JSON_PATH_MAX 128 /* bytes of a field path in a reason, with NUL */

/* ---------------------------------------------------------------- reasons */

__attribute__((format(printf, 3, 4))) int json_fail(conv_t *c, const char *path, const char *fmt,
                                                    ...)
{
    if (c->whylen == 0)
        return -EINVAL;
    int n = 0;
    if (path != NULL && path[0] != '\0')
        n = snprintf(c->why, c->whylen, "%s: ", path);
    if (n < 0 || (size_t)n >= c->whylen)
        n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why + n, c->whylen - (size_t)n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static void path_join(char *out, size_t size, const char *path, const char *name)
{
    if (path == NULL || path[0] == '\0')
        snprintf(out, size, "%s", name);
    else
        snprintf(out, size, "%s.%s", path, name);
}

const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "something else";
}

/* ---------------------------------------------------------------- enums */

/* Length of the prefix every value of d shares up to an '_' ("SPECIALIZATION_"). */
size_t json_enum_prefix_len(const ProtobufCEnumDescriptor *d)
{
    if (d->n_values == 0)
        return 0;
    const char *first = d->values[0].name;
    size_t len = strlen(first);
    for (unsigned i = 1; i < d->n_values; i++) {
        const char *s = d->values[i].name;
        size_t k = 0;
        while (k < len && s[k] == first[k])
            k++;
        len = k;
    }
    while (len > 0 && first[len - 1] != '_')
        len--;
    return len;
}

const ProtobufCEnumValue *json_enum_lookup(const ProtobufCEnumDescriptor *d, const char *name)
{
    size_t plen = json_enum_prefix_len(d);
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *full = d->values[i].name;
        if (strcasecmp(full, name) == 0 || strcasecmp(full + plen, name) == 0)
            return &d->values[i];
    }
    return NULL;
}

static int enum_fail(conv_t *c, const char *path, const ProtobufCEnumDescriptor *d, const char *got)
{
    char list[512] = "";
    size_t plen = json_enum_prefix_len(d), used = 0;
    for (unsigned i = 0; i < d->n_values && used < sizeof list; i++) {
        if (d->values[i].value == 0)
            continue; /* UNSPECIFIED is never a useful suggestion */
        int n = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                         d->values[i].name + plen);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    for (char *p = list; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return json_fail(c, path, "unknown %s value '%.64s' (expected one of: %s)", d->short_name, got,
                     list);
}

/* ---------------------------------------------------------------- JSON -> message */

static int fill_message(conv_t *c, ProtobufCMessage *msg, const json_t *obj, int depth,
                        const char *path);

bool json_single_repeated(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 1 && d->fields[0].label == PROTOBUF_C_LABEL_REPEATED;
}

size_t json_type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* An integer from a JSON integer or a string of decimal digits, within
 * [min, max] (signed) or [0, umax] (unsigned). */
static int get_int(conv_t *c, const char *path, const json_t *v, bool is_signed, long long min,
                   long long max, unsigned long long umax, long long *sval,
                   unsigned long long *uval)
{
    if (json_is_integer(v)) {
        long long x = json_integer_value(v);
        if (is_signed) {
            if (x < min || x > max)
                return json_fail(c, path, "%lld is out of range", x);
            *sval = x;
        } else {
            if (x < 0 || (unsigned long long)x > umax)
                return json_fail(c, path, "%lld is out of range", x);
            *uval = (unsigned long long)x;
        }
        return 0;
    }
    if (!json_is_string(v))
        return json_fail(c, path, "expected an integer, got %s", json_type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    size_t i = (len > 0 && s[0] == '-') ? 1 : 0;
    if (len == i || len > 24)
        return json_fail(c, path, "expected an integer or a string of decimal digits");
    for (size_t k = i; k < len; k++)
        if (!isdigit((unsigned char)s[k]))
            return json_fail(c, path,
                             "expected an integer (or a string of decimal digits), got '%.32s'", s);
    errno = 0;
    char *end = NULL;
    if (is_signed) {
        long long x = strtoll(s, &end, 10);
        if (errno != 0 || *end != '\0' || x < min || x > max)
            return json_fail(c, path, "%.32s is out of range", s);
        *sval = x;
    } else {
        if (s[0] == '-')
            return json_fail(c, path, "%.32s is out of range", s);
        unsigned long long x = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || x > umax)
            return json_fail(c, path, "%.32s is out of range", s);
        *uval = x;
    }
    return 0;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Stores one JSON value into member (the field's storage, or one array
 * element) according to f's type. Strings and messages it allocates are
 * owned by the enclosing message from then on. */
static int set_value(conv_t *c, const ProtobufCFieldDescriptor *f, void *member, const json_t *v,
                     int depth, const char *path)
{
    long long s = 0;
    unsigned long long u = 0;
    int rc;

    if (json_is_null(v))
        return json_fail(c, path, "null is not a value (leave the field out instead)");
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if ((rc = get_int(c, path, v, true, INT32_MIN, INT32_MAX, 0, &s, &u)) < 0)
            return rc;
        *(int32_t *)member = (int32_t)s;
        return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if ((rc = get_int(c, path, v, false, 0, 0, UINT32_MAX, &s, &u)) < 0)
            return rc;
        *(uint32_t *)member = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if ((rc = get_int(c, path, v, true, INT64_MIN, INT64_MAX, 0, &s, &u)) < 0)
            return rc;
        *(int64_t *)member = (int64_t)s;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if ((rc = get_int(c, path, v, false, 0, 0, UINT64_MAX, &s, &u)) < 0)
            return rc;
        *(uint64_t *)member = (uint64_t)u;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(v))
            return json_fail(c, path, "expected a number, got %s", json_type_name(v));
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)member = (float)json_number_value(v);
        else
            *(double *)member = json_number_value(v);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return json_fail(c, path, "expected true or false, got %s", json_type_name(v));
        *(protobuf_c_boolean *)member = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        if (!json_is_string(v))
            return json_fail(c, path, "expected an enum name (a string), got %s",
                             json_type_name(v));
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *ev = json_enum_lookup(ed, json_string_value(v));
        if (ev == NULL)
            return enum_fail(c, path, ed, json_string_value(v));
        *(int *)member = ev->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return json_fail(c, path, "expected a string, got %s", json_type_name(v));
        size_t len = json_string_length(v);
        if (len > WIRE_MAX_TEXT)
            return json_fail(c, path, "string too long (%zu bytes, at most %d)", len,
                             WIRE_MAX_TEXT);
        if (memchr(json_string_value(v), '\0', len) != NULL)
            return json_fail(c, path, "string contains a NUL character");
        char *copy = strdup(json_string_value(v));
        if (copy == NULL)
            return json_fail(c, path, "out of memory");
        *(char **)member = copy;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(v))
            return json_fail(c, path, "expected a hex string, got %s", json_type_name(v));
        const char *hex = json_string_value(v);
        size_t len = json_string_length(v);
        if (len % 2 != 0 || len / 2 > WIRE_MAX_TEXT)
            return json_fail(c, path, "expected an even number of hex digits (at most %d bytes)",
                             WIRE_MAX_TEXT);
        ProtobufCBinaryData *bd = member;
        bd->data = malloc(len / 2 + 1);
        if (bd->data == NULL)
            return json_fail(c, path, "out of memory");
        bd->len = len / 2;
        for (size_t i = 0; i < len / 2; i++) {
            int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return json_fail(c, path, "not a hex string");
            bd->data[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        if (depth >= JSON_MAX_DEPTH)
            return json_fail(c, path, "nested too deeply");
        if (!json_is_object(v) && !(json_is_array(v) && json_single_repeated(md)))
            return json_fail(c, path, "expected %s, got %s",
                             json_single_repeated(md) ? "an array" : "an object",
                             json_type_name(v));
        ProtobufCMessage *sub = calloc(1, md->sizeof_message);
        if (sub == NULL)
            return json_fail(c, path, "out of memory");
        md->message_init(sub);
        /* Owned by the parent from here, so a failure below frees it once. */
        *(ProtobufCMessage **)member = sub;
        if (json_is_array(v)) {
            json_t *wrap = json_pack("{sO}", md->fields[0].name, v);
            if (wrap == NULL)
                return json_fail(c, path, "out of memory");
            rc = fill_message(c, sub, wrap, depth + 1, path);
            json_decref(wrap);
            return rc;
        }
        return fill_message(c, sub, v, depth + 1, path);
    }
    }
    return json_fail(c, path, "unsupported field type");
}

/* True when a failed set_value left memory in member that the message
 * must own (so free_unpacked releases it). */
static bool holds_allocation(const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)member != NULL;
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)member)->data != NULL;
    default:
        return false;
    }
}

static int unknown_field(conv_t *c, const char *path, const ProtobufCMessageDescriptor *d,
                         const char *key)
{
    char list[512] = "";
    size_t used = 0;
    for (unsigned i = 0; i < d->n_fields && used < sizeof list; i++) {
        int n =
            snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", d->fields[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return json_fail(c, path, "unknown field '%.64s' in %s (expected one of: %s)", key,
                     d->short_name, list);
}

static int fill_message(conv_t *c, ProtobufCMessage *msg, const json_t *obj, int depth,
                        const char *path)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *key;
    json_t *v;
    char sub[JSON_PATH_MAX];
    int rc;

    json_object_foreach((json_t *)obj, key, v)
    {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
        if (f == NULL)
            return unknown_field(c, path, d, key);
        path_join(sub, sizeof sub, path, f->name);
        char *base = (char *)msg;
        void *member = base + f->offset;

        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            if (!json_is_array(v))
                return json_fail(c, sub, "expected an array, got %s", json_type_name(v));
            size_t n = json_array_size(v);
            if (n > WIRE_MAX_SPECIALIZATIONS)
                return json_fail(c, sub, "too many entries (%zu, at most %d)", n,
                                 WIRE_MAX_SPECIALIZATIONS);
            if (n == 0)
                continue;
            size_t esize = json_type_size(f->type);
            void *arr = calloc(n, esize);
            if (arr == NULL)
                return json_fail(c, sub, "out of memory");
            *(void **)member = arr;
            /* Count grows per element so free_unpacked frees exactly
             * what was stored when a later element fails. */
            size_t *count = (size_t *)(base + f->quantifier_offset);
            for (size_t i = 0; i < n; i++) {
                char ipath[JSON_PATH_MAX + 24];
                snprintf(ipath, sizeof ipath, "%s[%zu]", sub, i);
                void *elem = (char *)arr + i * esize;
                rc = set_value(c, f, elem, json_array_get(v, i), depth, ipath);
                if (rc == 0 || holds_allocation(f, elem))
                    *count = i + 1;
                if (rc < 0)
                    return rc;
            }
            continue;
        }

        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
            if (*which != 0) {
                const ProtobufCFieldDescriptor *other =
                    protobuf_c_message_descriptor_get_field(d, *which);
                return json_fail(c, path,
                                 "'%s' and '%s' cannot both be given (exactly one is allowed)",
                                 other != NULL ? other->name : "?", f->name);
            }
            /* The case is set only after the member holds a value, so a
             * failed conversion never leaves a case pointing at garbage;
             * pointer members are owned from the moment they are stored. */
            rc = set_value(c, f, member, v, depth, sub);
            if (rc == 0 || holds_allocation(f, member))
                *which = f->id;
            if (rc < 0)
                return rc;
            continue;
        }

        rc = set_value(c, f, member, v, depth, sub);
        if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
            f->type != PROTOBUF_C_TYPE_MESSAGE)
            *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
        if (rc < 0)
            return rc;
    }
    return 0;
}

int json_to_message(const json_t *obj, const ProtobufCMessageDescriptor *desc,
                    ProtobufCMessage **out, char *why, size_t whylen)
{
    conv_t c = {.why = why, .whylen = whylen};
    *out = NULL;
    if (whylen > 0)
        why[0] = '\0';
    if (!json_is_object(obj))
        return json_fail(&c, NULL, "expected a JSON object, got %s", json_type_name(obj));
    ProtobufCMessage *msg = calloc(1, desc->sizeof_message);
    if (msg == NULL)
        return json_fail(&c, NULL, "out of memory");
    desc->message_init(msg);
    int rc = fill_message(&c, msg, obj, 0, "");
    if (rc < 0) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    *out = msg;
    return 0;
}
