/*
 * csv_in.c - CSV rows into Updates for `parksync push --format csv`: the
 * header resolved against the body message of --kind, each row turned
 * into the JSON object a JSON line would be and handed to
 * json_object_to_update, so that both inputs obey the same rules and
 * give the same reasons. See csv.h.
 */
#include "csv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "json.h"

const char CSV_PUSH_KINDS[] = "park, resident, trade, country, delete";

/* Columns of the Update itself rather than of its body. */
static const char *const ENVELOPE[] = {"event_time", "event_time_us", "vintage", NULL};

/* True when d's only field is repeated: written as a list (the
 * SpecializationList), as json.h's shorthand has it. */
static bool list_message(const ProtobufCMessageDescriptor *d)
{
    return d->n_fields == 1 && d->fields[0].label == PROTOBUF_C_LABEL_REPEATED;
}

static void field_names(const ProtobufCMessageDescriptor *d, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_fields && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", d->fields[i].name);
}

int csv_column_resolve(const ProtobufCMessageDescriptor *d, const char *name, csv_column_t *col,
                       char *why, size_t whylen)
{
    char copy[sizeof col->name], known[512], *save = NULL;

    memset(col, 0, sizeof *col);
    if (strlen(name) >= sizeof copy) {
        snprintf(why, whylen, "name too long");
        return -EINVAL;
    }
    snprintf(col->name, sizeof col->name, "%s", name);
    snprintf(copy, sizeof copy, "%s", name);
    for (char *seg = strtok_r(copy, ".", &save); seg != NULL; seg = strtok_r(NULL, ".", &save)) {
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, seg);
        if (f == NULL) {
            field_names(d, known, sizeof known);
            snprintf(why, whylen, "unknown field '%s' in %s (expected one of: %s)", seg,
                     d->short_name, known);
            return -EINVAL;
        }
        if (col->depth == CSV_MAX_DEPTH) {
            snprintf(why, whylen, "nested too deeply");
            return -EINVAL;
        }
        col->path[col->depth++] = f;
        bool last = save == NULL || *save == '\0';
        if (f->type != PROTOBUF_C_TYPE_MESSAGE) {
            if (!last) {
                snprintf(why, whylen, "'%s' has no fields of its own", seg);
                return -EINVAL;
            }
            return 0;
        }
        d = f->descriptor;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            snprintf(why, whylen, "'%s' is a list of messages, which a CSV cell cannot hold", seg);
            return -EINVAL;
        }
        if (last && !list_message(d)) {
            snprintf(why, whylen, "'%s' is a message: name its fields as columns (e.g. %s.%s)",
                     name, name, d->fields[0].name);
            return -EINVAL;
        }
        if (last)
            return 0;
    }
    snprintf(why, whylen, "empty name");
    return -EINVAL;
}

void csv_header_free(csv_header_t *h)
{
    for (size_t i = 0; h->names != NULL && i < h->count; i++)
        free(h->names[i]);
    free(h->names);
    free(h->cols);
    memset(h, 0, sizeof *h);
}

int csv_header_parse(csv_header_t *h, const char *kind, const csv_row_t *row, char *why,
                     size_t whylen)
{
    const ProtobufCFieldDescriptor *body =
        protobuf_c_message_descriptor_get_field_by_name(&parksync__v1__update__descriptor, kind);
    char reason[768];

    memset(h, 0, sizeof *h);
    if (body == NULL || body->type != PROTOBUF_C_TYPE_MESSAGE) {
        snprintf(why, whylen, "unknown --kind '%s' (expected %s)", kind, CSV_PUSH_KINDS);
        return -EINVAL;
    }
    h->kind = body->name;
    h->cols = calloc(row->count, sizeof *h->cols);
    h->names = calloc(row->count, sizeof *h->names);
    if (h->cols == NULL || h->names == NULL) {
        csv_header_free(h);
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    h->count = row->count;
    for (size_t i = 0; i < row->count; i++) {
        const char *name = row->fields[i];
        bool envelope = false;
        for (size_t e = 0; ENVELOPE[e] != NULL; e++)
            envelope = envelope || strcmp(name, ENVELOPE[e]) == 0;
        for (size_t k = 0; k < i; k++)
            if (strcmp(h->names[k], name) == 0) {
                snprintf(why, whylen, "column %zu (%s): also column %zu", i + 1, name, k + 1);
                goto fail;
            }
        if ((h->names[i] = strdup(name)) == NULL) {
            snprintf(why, whylen, "out of memory");
            goto fail;
        }
        if (name[0] == '\0') {
            snprintf(why, whylen, "column %zu: no name in the header row", i + 1);
            goto fail;
        }
        if (envelope) {
            snprintf(h->cols[i].name, sizeof h->cols[i].name, "%s", name);
            continue;
        }
        if (csv_column_resolve(body->descriptor, name, &h->cols[i], reason, sizeof reason) < 0) {
            snprintf(why, whylen, "column %zu (%s): %s", i + 1, name, reason);
            goto fail;
        }
    }
    return 0;
fail:
    csv_header_free(h);
    return -EINVAL;
}

/* One cell (or one item of a list cell) as the JSON value f takes. */
static json_t *cell_value(const ProtobufCFieldDescriptor *f, const char *text, char *why,
                          size_t whylen)
{
    json_t *v = NULL;
    char *end = NULL;

    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        double x = strtod(text, &end);
        if (end == text || *end != '\0' || !isfinite(x)) {
            snprintf(why, whylen, "expected a number, got '%.40s'", text);
            return NULL;
        }
        v = json_real(x);
        break;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (strcasecmp(text, "true") == 0 || strcmp(text, "1") == 0)
            v = json_true();
        else if (strcasecmp(text, "false") == 0 || strcmp(text, "0") == 0)
            v = json_false();
        else {
            snprintf(why, whylen, "expected true or false, got '%.40s'", text);
            return NULL;
        }
        break;
    default:
        /* Numbers stay text: the JSON mapping takes integers as strings of
         * digits, with its own range checks; enums and strings are text. */
        v = json_string(text);
        if (v == NULL) {
            snprintf(why, whylen, "not valid UTF-8");
            return NULL;
        }
    }
    if (v == NULL)
        snprintf(why, whylen, "out of memory");
    return v;
}

/* A list cell "a;b;c" as a JSON array of f's element values. */
static json_t *list_value(const ProtobufCFieldDescriptor *f, const char *text, char *why,
                          size_t whylen)
{
    json_t *arr = json_array();
    char *copy = strdup(text), *next;

    if (arr == NULL || copy == NULL) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        f = &((const ProtobufCMessageDescriptor *)f->descriptor)->fields[0];
    /* strtok would pass over an empty item silently: "a;;b" is a mistake */
    for (char *s = copy; s != NULL; s = next) {
        next = strchr(s, ';');
        if (next != NULL)
            *next++ = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            s[--n] = '\0';
        json_t *v = n > 0 ? cell_value(f, s, why, whylen) : NULL;
        if (n == 0)
            snprintf(why, whylen, "an empty item in the list '%.60s'", text);
        if (v == NULL || json_array_append_new(arr, v) < 0)
            goto fail;
    }
    free(copy);
    return arr;
fail:
    free(copy);
    json_decref(arr);
    return NULL;
}

/* Puts v (stolen) at col's path under obj, making the objects between. */
static int place(json_t *obj, const csv_column_t *col, json_t *v)
{
    for (int i = 0; i < col->depth - 1; i++) {
        json_t *next = json_object_get(obj, col->path[i]->name);
        if (next == NULL) {
            next = json_object();
            if (next == NULL || json_object_set_new(obj, col->path[i]->name, next) < 0) {
                json_decref(v);
                return -ENOMEM;
            }
        }
        obj = next;
    }
    return json_object_set_new(obj, col->depth ? col->path[col->depth - 1]->name : col->name, v) < 0
               ? -ENOMEM
               : 0;
}

/* The column a reason of the JSON mapping names ("park.period.year: ..."
 * or "event_time: ..."), 1-based, with the path taken off the reason. */
static size_t column_of(const csv_header_t *h, char *why)
{
    size_t best = 0, best_len = 0;
    char full[256];

    for (size_t i = 0; i < h->count; i++) {
        if (h->cols[i].depth > 0)
            snprintf(full, sizeof full, "%s.%s", h->kind, h->cols[i].name);
        else
            snprintf(full, sizeof full, "%s", h->cols[i].name);
        size_t len = strlen(full);
        if (len > best_len && strncmp(why, full, len) == 0 &&
            (why[len] == ':' || why[len] == '[')) {
            best = i + 1;
            best_len = len;
        }
    }
    if (best > 0 && why[best_len] == ':')
        memmove(why, why + best_len + 2, strlen(why + best_len + 2) + 1);
    return best;
}

int csv_row_to_update(const csv_header_t *h, const csv_row_t *row, Parksync__V1__Update **out,
                      size_t *column, char *why, size_t whylen)
{
    json_t *root = json_object(), *body = json_object();
    int rc = -EINVAL;

    *out = NULL;
    *column = 0;
    if (root == NULL || body == NULL || json_object_set(root, h->kind, body) < 0) {
        snprintf(why, whylen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    if (row->count != h->count) {
        snprintf(why, whylen, "%zu fields where the header row has %zu", row->count, h->count);
        goto out;
    }
    for (size_t i = 0; i < h->count; i++) {
        const csv_column_t *col = &h->cols[i];
        const char *text = row->fields[i];
        if (text[0] == '\0')
            continue; /* an empty cell is an absent field: a partial update */
        const ProtobufCFieldDescriptor *f = col->depth ? col->path[col->depth - 1] : NULL;
        json_t *v;
        if (f == NULL)
            v = json_string(text); /* the envelope's own checks follow */
        else if (f->label == PROTOBUF_C_LABEL_REPEATED || f->type == PROTOBUF_C_TYPE_MESSAGE)
            v = list_value(f, text, why, whylen);
        else
            v = cell_value(f, text, why, whylen);
        if (v == NULL) {
            if (f == NULL)
                snprintf(why, whylen, "not valid UTF-8");
            *column = i + 1;
            goto out;
        }
        if (place(f == NULL ? root : body, col, v) < 0) {
            snprintf(why, whylen, "out of memory");
            rc = -ENOMEM;
            goto out;
        }
    }
    rc = json_object_to_update(root, out, why, whylen);
    if (rc < 0)
        *column = column_of(h, why);
out:
    json_decref(body);
    json_decref(root);
    return rc;
}
