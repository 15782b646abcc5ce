/*
 * json_out.c - protobuf-c messages into JSON objects (json_from_message,
 * json_from_record): every present field, money as integers, enums by
 * their full proto names.
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"
#include "wire.h"

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
        if (o != NULL && json_single_repeated(m->descriptor)) {
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
                if (json_array_append_new(v, value_out(f, arr + k * json_type_size(f->type))) < 0) {
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
