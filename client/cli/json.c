/*
 * json.c - generic JSON <-> protobuf-c mapping over message descriptors.
 *
 * Sections: reasons and paths; enum names; JSON -> message; the Update
 * envelope; message -> JSON; time.
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

#include "wire.h"

#define JSON_PATH_MAX 128 /* bytes of a field path in a reason, with NUL */

/* State of one JSON -> message conversion. */
typedef struct conv {
    char *why;     /* reason buffer (caller's) */
    size_t whylen; /* its size in bytes */
} conv_t;

/* ---------------------------------------------------------------- reasons */

__attribute__((format(printf, 3, 4))) static int fail(conv_t *c, const char *path, const char *fmt,
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

static const char *json_type_name(const json_t *v)
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
static size_t enum_prefix_len(const ProtobufCEnumDescriptor *d)
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
    size_t plen = enum_prefix_len(d);
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
    size_t plen = enum_prefix_len(d), used = 0;
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
    return fail(c, path, "unknown %s value '%.64s' (expected one of: %s)", d->short_name, got,
                list);
}

/* ---------------------------------------------------------------- JSON -> message */

static int fill_message(conv_t *c, ProtobufCMessage *msg, const json_t *obj, int depth,
                        const char *path);

static bool single_repeated(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 1 && d->fields[0].label == PROTOBUF_C_LABEL_REPEATED;
}

static size_t type_size(ProtobufCType t)
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
                return fail(c, path, "%lld is out of range", x);
            *sval = x;
        } else {
            if (x < 0 || (unsigned long long)x > umax)
                return fail(c, path, "%lld is out of range", x);
            *uval = (unsigned long long)x;
        }
        return 0;
    }
    if (!json_is_string(v))
        return fail(c, path, "expected an integer, got %s", json_type_name(v));
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    size_t i = (len > 0 && s[0] == '-') ? 1 : 0;
    if (len == i || len > 24)
        return fail(c, path, "expected an integer or a string of decimal digits");
    for (size_t k = i; k < len; k++)
        if (!isdigit((unsigned char)s[k]))
            return fail(c, path, "expected an integer (or a string of decimal digits), got '%.32s'",
                        s);
    errno = 0;
    char *end = NULL;
    if (is_signed) {
        long long x = strtoll(s, &end, 10);
        if (errno != 0 || *end != '\0' || x < min || x > max)
            return fail(c, path, "%.32s is out of range", s);
        *sval = x;
    } else {
        if (s[0] == '-')
            return fail(c, path, "%.32s is out of range", s);
        unsigned long long x = strtoull(s, &end, 10);
        if (errno != 0 || *end != '\0' || x > umax)
            return fail(c, path, "%.32s is out of range", s);
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
        return fail(c, path, "null is not a value (leave the field out instead)");
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
            return fail(c, path, "expected a number, got %s", json_type_name(v));
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)member = (float)json_number_value(v);
        else
            *(double *)member = json_number_value(v);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v))
            return fail(c, path, "expected true or false, got %s", json_type_name(v));
        *(protobuf_c_boolean *)member = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM: {
        if (!json_is_string(v))
            return fail(c, path, "expected an enum name (a string), got %s", json_type_name(v));
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        const ProtobufCEnumValue *ev = json_enum_lookup(ed, json_string_value(v));
        if (ev == NULL)
            return enum_fail(c, path, ed, json_string_value(v));
        *(int *)member = ev->value;
        return 0;
    }
    case PROTOBUF_C_TYPE_STRING: {
        if (!json_is_string(v))
            return fail(c, path, "expected a string, got %s", json_type_name(v));
        size_t len = json_string_length(v);
        if (len > WIRE_MAX_TEXT)
            return fail(c, path, "string too long (%zu bytes, at most %d)", len, WIRE_MAX_TEXT);
        if (memchr(json_string_value(v), '\0', len) != NULL)
            return fail(c, path, "string contains a NUL character");
        char *copy = strdup(json_string_value(v));
        if (copy == NULL)
            return fail(c, path, "out of memory");
        *(char **)member = copy;
        return 0;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        if (!json_is_string(v))
            return fail(c, path, "expected a hex string, got %s", json_type_name(v));
        const char *hex = json_string_value(v);
        size_t len = json_string_length(v);
        if (len % 2 != 0 || len / 2 > WIRE_MAX_TEXT)
            return fail(c, path, "expected an even number of hex digits (at most %d bytes)",
                        WIRE_MAX_TEXT);
        ProtobufCBinaryData *bd = member;
        bd->data = malloc(len / 2 + 1);
        if (bd->data == NULL)
            return fail(c, path, "out of memory");
        bd->len = len / 2;
        for (size_t i = 0; i < len / 2; i++) {
            int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return fail(c, path, "not a hex string");
            bd->data[i] = (uint8_t)(hi << 4 | lo);
        }
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        if (depth >= JSON_MAX_DEPTH)
            return fail(c, path, "nested too deeply");
        if (!json_is_object(v) && !(json_is_array(v) && single_repeated(md)))
            return fail(c, path, "expected %s, got %s",
                        single_repeated(md) ? "an array" : "an object", json_type_name(v));
        ProtobufCMessage *sub = calloc(1, md->sizeof_message);
        if (sub == NULL)
            return fail(c, path, "out of memory");
        md->message_init(sub);
        /* Owned by the parent from here, so a failure below frees it once. */
        *(ProtobufCMessage **)member = sub;
        if (json_is_array(v)) {
            json_t *wrap = json_pack("{sO}", md->fields[0].name, v);
            if (wrap == NULL)
                return fail(c, path, "out of memory");
            rc = fill_message(c, sub, wrap, depth + 1, path);
            json_decref(wrap);
            return rc;
        }
        return fill_message(c, sub, v, depth + 1, path);
    }
    }
    return fail(c, path, "unsupported field type");
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
    return fail(c, path, "unknown field '%.64s' in %s (expected one of: %s)", key, d->short_name,
                list);
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
                return fail(c, sub, "expected an array, got %s", json_type_name(v));
            size_t n = json_array_size(v);
            if (n > WIRE_MAX_SPECIALIZATIONS)
                return fail(c, sub, "too many entries (%zu, at most %d)", n,
                            WIRE_MAX_SPECIALIZATIONS);
            if (n == 0)
                continue;
            size_t esize = type_size(f->type);
            void *arr = calloc(n, esize);
            if (arr == NULL)
                return fail(c, sub, "out of memory");
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
                return fail(c, path, "'%s' and '%s' cannot both be given (exactly one is allowed)",
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
        return fail(&c, NULL, "expected a JSON object, got %s", json_type_name(obj));
    ProtobufCMessage *msg = calloc(1, desc->sizeof_message);
    if (msg == NULL)
        return fail(&c, NULL, "out of memory");
    desc->message_init(msg);
    int rc = fill_message(&c, msg, obj, 0, "");
    if (rc < 0) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    *out = msg;
    return 0;
}

/* ---------------------------------------------------------------- the Update envelope */

int json_to_update(const char *line, size_t len, Parksync__V1__Update **out, char *why,
                   size_t whylen)
{
    conv_t c = {.why = why, .whylen = whylen};
    json_error_t jerr;
    json_t *root = NULL, *body = NULL;
    ProtobufCMessage *msg = NULL;
    Parksync__V1__Update *u = NULL;
    int64_t event_us = 0;
    bool have_time = false;
    int rc = -EINVAL;

    *out = NULL;
    if (whylen > 0)
        why[0] = '\0';
    if (line == NULL) {
        fail(&c, NULL, "no input");
        goto out;
    }
    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        fail(&c, NULL, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        fail(&c, NULL, "expected a JSON object, got %s", json_type_name(root));
        goto out;
    }
    body = json_object();
    if (body == NULL) {
        fail(&c, NULL, "out of memory");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "event_time") == 0) {
            if (!json_is_string(v)) {
                fail(&c, "event_time",
                     "expected an RFC 3339 string such as "
                     "\"2020-10-31T00:00:00Z\", got %s",
                     json_type_name(v));
                goto out;
            }
            if (json_parse_time(json_string_value(v), &event_us) < 0) {
                fail(&c, "event_time",
                     "'%.40s' is not an RFC 3339 time such as "
                     "\"2020-10-31T00:00:00Z\"",
                     json_string_value(v));
                goto out;
            }
            have_time = true;
        } else if (strcmp(key, "version") == 0 || strcmp(key, "producer_id") == 0 ||
                   strcmp(key, "sequence") == 0) {
            fail(&c, key, "set by the producer, not by the input");
            goto out;
        } else if (json_object_set(body, key, v) < 0) {
            fail(&c, NULL, "out of memory");
            goto out;
        }
    }
    if (have_time && json_object_get(body, "event_time_us") != NULL) {
        fail(&c, NULL, "give event_time or event_time_us, not both");
        goto out;
    }
    rc = json_to_message(body, &parksync__v1__update__descriptor, &msg, why, whylen);
    if (rc < 0)
        goto out;
    u = (Parksync__V1__Update *)msg;
    msg = NULL;
    rc = -EINVAL;
    if (u->body_case == PARKSYNC__V1__UPDATE__BODY__NOT_SET) {
        fail(&c, NULL,
             "no body: expected one of \"park\", \"resident\", \"trade\", "
             "\"country\", \"delete\"");
        goto out;
    }
    if (have_time) {
        u->has_event_time_us = 1;
        u->event_time_us = event_us;
    }
    *out = u;
    u = NULL;
    rc = 0;
out:
    if (u != NULL)
        parksync__v1__update__free_unpacked(u, NULL);
    json_decref(body);
    json_decref(root);
    return rc;
}

int json_update_check(Parksync__V1__Update *u, const char *producer_id, char *why, size_t whylen)
{
    const char *reason = NULL;
    char *copy = strdup(producer_id != NULL ? producer_id : "");

    if (copy == NULL) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    free(u->producer_id);
    u->producer_id = copy;
    u->has_version = 1;
    u->version = WIRE_VERSION;
    if (!u->has_sequence || u->sequence == 0) {
        u->has_sequence = 1;
        u->sequence = 1;
    }
    if (!u->has_event_time_us || u->event_time_us == 0) {
        u->has_event_time_us = 1;
        u->event_time_us = wire_now_us();
    }
    if (wire_update_validate(u, &reason) < 0) {
        snprintf(why, whylen, "invalid update: %s", reason != NULL ? reason : "rejected");
        return -EINVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------- message -> JSON */

static json_t *string_out(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    /* Not UTF-8 (the daemon validates text, so this is defensive): keep
     * ASCII and mark the rest. */
    size_t n = strlen(s);
    char *tmp = malloc(n + 1);
    if (tmp == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        tmp[i] = ((unsigned char)s[i] < 0x80) ? s[i] : '?';
    tmp[n] = '\0';
    j = json_string(tmp);
    free(tmp);
    return j;
}

static json_t *value_out(const ProtobufCFieldDescriptor *f, const void *member)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)member);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)member);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)member);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t x = *(const uint64_t *)member;
        if (x <= (uint64_t)LLONG_MAX)
            return json_integer((json_int_t)x);
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRIu64, x);
        return json_string(buf);
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        json_t *j = json_real(*(const float *)member);
        return j != NULL ? j : json_null(); /* NaN and infinities have no JSON form */
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        json_t *j = json_real(*(const double *)member);
        return j != NULL ? j : json_null();
    }
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)member);
    case PROTOBUF_C_TYPE_ENUM: {
        int x = *(const int *)member;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, x);
        return ev != NULL ? json_string(ev->name) : json_integer(x);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)member;
        return string_out(s != NULL ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = member;
        char *hex = malloc(bd->len * 2 + 1);
        if (hex == NULL)
            return NULL;
        for (size_t i = 0; i < bd->len; i++)
            snprintf(hex + 2 * i, 3, "%02x", bd->data[i]);
        hex[bd->len * 2] = '\0';
        json_t *j = json_string(hex);
        free(hex);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)member;
        if (m == NULL)
            return json_null();
        json_t *o = json_from_message(m);
        if (o != NULL && single_repeated(m->descriptor)) {
            /* The SpecializationList shorthand: a bare array. */
            json_t *arr = json_object_get(o, m->descriptor->fields[0].name);
            arr = arr != NULL ? json_incref(arr) : json_array();
            json_decref(o);
            return arr;
        }
        return o;
    }
    }
    return json_null();
}

json_t *json_from_message(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)msg;
        const void *member = base + f->offset;
        json_t *v = NULL;

        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            if (n == 0)
                continue;
            const char *arr = *(char *const *)member;
            v = json_array();
            for (size_t k = 0; v != NULL && k < n; k++)
                if (json_array_append_new(v, value_out(f, arr + k * type_size(f->type))) < 0) {
                    json_decref(v);
                    v = NULL;
                }
        } else {
            bool present;
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                present = *(const uint32_t *)(base + f->quantifier_offset) == f->id;
            else if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
                present = *(void *const *)member != NULL;
            else if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
                present = *(const protobuf_c_boolean *)(base + f->quantifier_offset);
            else
                present = true;
            if (!present)
                continue;
            v = value_out(f, member);
        }
        if (v == NULL || json_object_set_new(o, f->name, v) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

json_t *json_from_record(const Parksync__V1__Record *r)
{
    json_t *full = json_from_message(&r->base);
    json_t *o = json_object();
    const char *kind = wire_kind_name(wire_record_kind(r));
    const char *key;
    json_t *v;

    if (full == NULL || o == NULL)
        goto fail;
    if (json_object_set_new(o, "revision",
                            json_integer(r->has_revision ? (json_int_t)r->revision : 0)) < 0 ||
        json_object_set_new(o, "kind", kind != NULL ? json_string(kind) : json_null()) < 0)
        goto fail;
    if (r->has_deleted && r->deleted && json_object_set_new(o, "deleted", json_true()) < 0)
        goto fail;
    json_object_foreach(full, key, v)
    {
        if (strcmp(key, "revision") == 0 || strcmp(key, "deleted") == 0)
            continue;
        if (json_object_set(o, key, v) < 0)
            goto fail;
    }
    json_decref(full);
    return o;
fail:
    json_decref(full);
    json_decref(o);
    return NULL;
}

/* ---------------------------------------------------------------- time */

static bool digits(const char *s, int n, int *out)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *out = x;
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int json_parse_time(const char *s, int64_t *us)
{
    int y, mo, d, h, mi, sec, oh = 0, om = 0;
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (s == NULL || strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
        s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return -EINVAL;
    if (sec == 60)
        sec = 59; /* a leap second is kept within its minute */
    const char *p = s + 19;
    int64_t frac = 0;
    if (*p == '.') {
        int n = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (n < 6) {
                frac = frac * 10 + (*p - '0');
                n++;
            }
            p++;
        }
        if (n == 0)
            return -EINVAL;
        for (; n < 6; n++)
            frac *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p != '\0')
        return -EINVAL;
    int64_t secs = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec;
    secs -= sign * (oh * 3600 + om * 60);
    *us = secs * 1000000 + frac;
    return 0;
}
