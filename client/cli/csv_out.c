/*
 * csv_out.c - records out as CSV or as a table for `parksync snapshot
 * --format csv|table`. The columns of a kind come from its message
 * descriptor (every field, nested messages flattened with dotted names),
 * so every row of a kind has the same columns whichever fields are set;
 * beside each *_usd_cents column a *_usd column gives the amount in
 * dollars. Values are read from the record's JSON form (json_out.c), the
 * one place that knows how a field is printed, with enums shortened to
 * the lower-case names push also takes (chemistry, operating).
 */
#include "csv.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "format.h"
#include "json.h"
#include "wire.h"

#define CSV_KINDS    6   /* Record body cases are 10..14: kinds 1..5 by wire_record_kind */
#define CSV_MAX_COLS 128 /* columns of one kind */
#define USD_SUFFIX   "_usd_cents"

/* The columns and, for a table, the rows of one kind. */
typedef struct kind_out {
    csv_column_t cols[CSV_MAX_COLS]; /* revision, deleted, then the body's */
    size_t n_cols;                   /* 0: not seen yet */
    char **cells;                    /* table: n_rows * n_cols strings, owned */
    size_t n_rows;                   /* table rows held */
    size_t cap_rows;                 /* rows allocated */
} kind_out_t;

struct csv_out {
    FILE *out;                    /* not owned */
    csv_style_t style;            /* CSV or table */
    int csv_kind;                 /* CSV: the one kind written */
    bool header_done;             /* CSV: the header row is out */
    kind_out_t *kinds[CSV_KINDS]; /* by RecordKind */
};

csv_out_t *csv_out_new(FILE *out, csv_style_t style, Parksync__V1__RecordKind kind)
{
    csv_out_t *o = calloc(1, sizeof *o);
    if (o != NULL) {
        o->out = out;
        o->style = style;
        o->csv_kind = (int)kind;
    }
    return o;
}

void csv_out_destroy(csv_out_t **op)
{
    if (op == NULL || *op == NULL)
        return;
    for (size_t k = 0; k < CSV_KINDS; k++) {
        kind_out_t *ko = (*op)->kinds[k];
        if (ko == NULL)
            continue;
        for (size_t i = 0; i < ko->n_rows * ko->n_cols; i++)
            free(ko->cells[i]);
        free(ko->cells);
        free(ko);
    }
    free(*op);
    *op = NULL;
}

static void add_columns(kind_out_t *ko, const ProtobufCMessageDescriptor *d, csv_column_t *base)
{
    for (unsigned i = 0; i < d->n_fields && ko->n_cols + 2 <= CSV_MAX_COLS; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        csv_column_t col = *base;
        col.path[col.depth++] = f;
        int n = snprintf(col.name, sizeof col.name, "%s%s%s", base->name, base->depth ? "." : "",
                         f->name);
        if (n < 0 || (size_t)n >= sizeof col.name)
            continue; /* no dotted name of parksync.proto is this long */
        const ProtobufCMessageDescriptor *sub = f->descriptor;
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && f->label != PROTOBUF_C_LABEL_REPEATED &&
            !(sub->n_fields == 1 && sub->fields[0].label == PROTOBUF_C_LABEL_REPEATED) &&
            col.depth < CSV_MAX_DEPTH) {
            add_columns(ko, sub, &col);
            continue;
        }
        ko->cols[ko->n_cols++] = col;
        size_t len = strlen(col.name), slen = strlen(USD_SUFFIX);
        if (f->type == PROTOBUF_C_TYPE_INT64 && len > slen &&
            strcmp(col.name + len - slen, USD_SUFFIX) == 0) {
            col.usd = true;
            col.name[len - strlen("_cents")] = '\0';
            ko->cols[ko->n_cols++] = col;
        }
    }
}

/* The kind's columns, made when first needed. Record's body fields are
 * named as the kinds are. */
static kind_out_t *kind_of(csv_out_t *o, int kind)
{
    if (o->kinds[kind] != NULL)
        return o->kinds[kind];
    kind_out_t *ko = calloc(1, sizeof *ko);
    const ProtobufCFieldDescriptor *body = protobuf_c_message_descriptor_get_field_by_name(
        &parksync__v1__record__descriptor, wire_kind_name((Parksync__V1__RecordKind)kind));
    if (ko == NULL || body == NULL) {
        free(ko);
        return NULL;
    }
    snprintf(ko->cols[0].name, sizeof ko->cols[0].name, "revision");
    snprintf(ko->cols[1].name, sizeof ko->cols[1].name, "deleted");
    ko->n_cols = 2;
    csv_column_t base = {.depth = 0};
    add_columns(ko, body->descriptor, &base);
    o->kinds[kind] = ko;
    return ko;
}

/* The short, lower-case name of an enum value's full name. */
static void enum_short(const ProtobufCFieldDescriptor *f, const char *full, char *buf, size_t size)
{
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) /* a list message: its one field */
        f = &((const ProtobufCMessageDescriptor *)f->descriptor)->fields[0];
    if (f->type != PROTOBUF_C_TYPE_ENUM) {
        snprintf(buf, size, "%s", full);
        return;
    }
    size_t plen = json_enum_prefix_len(f->descriptor);
    snprintf(buf, size, "%s", strlen(full) > plen ? full + plen : full);
    for (char *p = buf; *p != '\0'; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
}

/* Cents as dollars: "1234.50" in CSV, "1,234.50" in a table. */
static void usd(char *buf, size_t size, json_int_t cents, csv_style_t style)
{
    if (style == CSV_STYLE_TABLE) {
        fmt_money(buf, size, cents);
        return;
    }
    uint64_t mag = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    snprintf(buf, size, "%s%" PRIu64 ".%02u", cents < 0 ? "-" : "", mag / 100,
             (unsigned)(mag % 100));
}

/* One scalar JSON value as cell text. */
static void scalar(const ProtobufCFieldDescriptor *f, const json_t *v, char *buf, size_t size)
{
    if (json_is_string(v)) {
        enum_short(f, json_string_value(v), buf, size);
    } else if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    } else if (json_is_real(v)) {
        /* the shortest text that reads back as the same double */
        double x = json_real_value(v);
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, size, "%.*g", prec, x);
            if (strtod(buf, NULL) == x)
                break;
        }
    } else if (json_is_boolean(v)) {
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    } else {
        buf[0] = '\0';
    }
}

/* The cell of col for a record whose JSON body is body: a new string. */
static char *cell(const csv_column_t *col, const Parksync__V1__Record *r, const json_t *body,
                  csv_style_t style)
{
    char buf[512];
    const json_t *v = body;

    if (col->depth == 0) {
        if (strcmp(col->name, "revision") == 0)
            snprintf(buf, sizeof buf, "%" PRIu64, r->revision);
        else
            snprintf(buf, sizeof buf, "%s", r->has_deleted && r->deleted ? "true" : "");
        return strdup(buf);
    }
    for (int i = 0; i < col->depth && v != NULL; i++)
        v = json_object_get(v, col->path[i]->name);
    const ProtobufCFieldDescriptor *f = col->path[col->depth - 1];
    if (v == NULL)
        return strdup("");
    if (col->usd) {
        usd(buf, sizeof buf, json_integer_value(v), style);
        return strdup(buf);
    }
    if (!json_is_array(v)) {
        scalar(f, v, buf, sizeof buf);
        return strdup(buf);
    }
    if (json_array_size(v) > 0 && json_is_object(json_array_get(v, 0)))
        return json_dumps(v, JSON_COMPACT); /* a list of messages: as JSON */
    /* a list of scalars: items joined by ';', as push reads them */
    size_t len = 0;
    char *out = calloc(1, 1);
    for (size_t i = 0; out != NULL && i < json_array_size(v); i++) {
        scalar(f, json_array_get(v, i), buf, sizeof buf);
        char *n = realloc(out, len + strlen(buf) + 2);
        if (n == NULL) {
            free(out);
            return NULL;
        }
        out = n;
        len += (size_t)sprintf(out + len, "%s%s", i ? ";" : "", buf);
    }
    return out;
}

static int write_row(csv_out_t *o, char **cells, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((i > 0 && putc(',', o->out) == EOF) || csv_write_field(o->out, cells[i]) < 0)
            return -EIO;
    return fputs("\r\n", o->out) == EOF ? -EIO : 0; /* RFC 4180 ends records with CRLF */
}

/* A table's cell on one line: each line break (CRLF, LF or CR) and tab
 * becomes one space. In place. */
static void one_line(char *s)
{
    char *w = s;
    for (; *s != '\0'; s++) {
        if (*s == '\r' && s[1] == '\n')
            continue;
        *w++ = *s == '\n' || *s == '\r' || *s == '\t' ? ' ' : *s;
    }
    *w = '\0';
}

static int write_header(csv_out_t *o, kind_out_t *ko)
{
    char *names[CSV_MAX_COLS];

    if (o->header_done)
        return 0;
    for (size_t i = 0; i < ko->n_cols; i++)
        names[i] = ko->cols[i].name;
    o->header_done = true;
    return write_row(o, names, ko->n_cols);
}

int csv_out_record(csv_out_t *o, const Parksync__V1__Record *r)
{
    int kind = (int)wire_record_kind(r);
    char *cells[CSV_MAX_COLS] = {0};
    int rc = 0;

    if (kind <= 0 || kind >= CSV_KINDS)
        return -EINVAL;
    if (o->style == CSV_STYLE_CSV && o->csv_kind != kind)
        return -EINVAL;
    kind_out_t *ko = kind_of(o, kind);
    if (ko == NULL)
        return -ENOMEM;
    const ProtobufCFieldDescriptor *bf =
        protobuf_c_message_descriptor_get_field(&parksync__v1__record__descriptor, r->body_case);
    const ProtobufCMessage *bm = *(ProtobufCMessage *const *)((const char *)r + bf->offset);
    json_t *body = bm != NULL ? json_from_message(bm) : json_object();
    if (body == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < ko->n_cols; i++)
        if ((cells[i] = cell(&ko->cols[i], r, body, o->style)) == NULL)
            rc = -ENOMEM;
    json_decref(body);
    if (rc == 0 && o->style == CSV_STYLE_CSV) {
        rc = write_header(o, ko);
        if (rc == 0)
            rc = write_row(o, cells, ko->n_cols);
    } else if (rc == 0) {
        if (ko->n_rows == ko->cap_rows) {
            size_t ncap = ko->cap_rows ? ko->cap_rows * 2 : 64;
            char **n = realloc(ko->cells, ncap * ko->n_cols * sizeof *n);
            if (n == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            ko->cells = n;
            ko->cap_rows = ncap;
        }
        for (size_t i = 0; i < ko->n_cols; i++)
            one_line(cells[i]);
        memcpy(ko->cells + ko->n_rows++ * ko->n_cols, cells, ko->n_cols * sizeof *cells);
        return 0; /* the table owns the cells now */
    }
out:
    for (size_t i = 0; i < ko->n_cols; i++)
        free(cells[i]);
    return rc;
}

/* Columns a terminal shows a UTF-8 string in (one per code point). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s != '\0'; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static int put_cell(FILE *out, const char *s, size_t pad)
{
    if (fputs(s, out) == EOF)
        return -EIO;
    while (pad-- > 0)
        if (putc(' ', out) == EOF)
            return -EIO;
    return 0;
}

static int write_table(csv_out_t *o, int kind, const kind_out_t *ko)
{
    size_t w[CSV_MAX_COLS], last = 0;
    bool show[CSV_MAX_COLS];

    for (size_t c = 0; c < ko->n_cols; c++) {
        w[c] = width(ko->cols[c].name);
        show[c] = false; /* a column empty in every row is left out */
        for (size_t r = 0; r < ko->n_rows; r++) {
            const char *s = ko->cells[r * ko->n_cols + c];
            show[c] = show[c] || s[0] != '\0';
            if (width(s) > w[c])
                w[c] = width(s);
        }
        if (show[c])
            last = c;
    }
    if (fprintf(o->out, "%s: %zu record%s\n", wire_kind_name((Parksync__V1__RecordKind)kind),
                ko->n_rows, ko->n_rows == 1 ? "" : "s") < 0)
        return -EIO;
    for (size_t r = 0; r <= ko->n_rows + 1; r++) {
        bool first = true;
        for (size_t c = 0; c < ko->n_cols; c++) {
            if (!show[c])
                continue;
            const char *s = r == 0   ? ko->cols[c].name
                            : r == 1 ? ""
                                     : ko->cells[(r - 2) * ko->n_cols + c];
            if (!first && fputs("  ", o->out) == EOF)
                return -EIO;
            first = false;
            if (r == 1) {
                for (size_t i = 0; i < w[c]; i++)
                    if (putc('-', o->out) == EOF)
                        return -EIO;
            } else if (put_cell(o->out, s, c == last ? 0 : w[c] - width(s)) < 0) {
                return -EIO;
            }
        }
        if (putc('\n', o->out) == EOF)
            return -EIO;
    }
    return 0;
}

int csv_out_finish(csv_out_t *o)
{
    bool first = true;

    if (o->style == CSV_STYLE_CSV && o->csv_kind > 0 && o->csv_kind < CSV_KINDS) {
        kind_out_t *ko = kind_of(o, o->csv_kind); /* no record came: the header still goes */
        if (ko == NULL || write_header(o, ko) < 0)
            return ko == NULL ? -ENOMEM : -EIO;
    }
    if (o->style == CSV_STYLE_TABLE) {
        for (int k = 1; k < CSV_KINDS; k++) {
            if (o->kinds[k] == NULL)
                continue;
            if ((!first && putc('\n', o->out) == EOF) || write_table(o, k, o->kinds[k]) < 0)
                return -EIO;
            first = false;
        }
    }
    return fflush(o->out) == 0 ? 0 : -EIO;
}
