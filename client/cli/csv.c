/*
 * csv.c - the RFC 4180 reader and the field writer of csv.h.
 *
 * libcsv (Debian's libcsv-dev) would do the reading, but it hands fields
 * to callbacks without their line and column, which every error here has
 * to name, and it would be one more library to install for about a
 * hundred lines.
 */
#include "csv.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct csv_reader {
    FILE *in;        /* not owned */
    int pending[3];  /* bytes read ahead while looking for a byte order mark */
    int n_pending;   /* how many of them are left, served from the end */
    bool started;    /* the byte order mark check is done */
    bool done;       /* the input has ended, or an error stopped the reader */
    long line;       /* physical line of the next byte, 1-based */
    long number;     /* records returned so far */
    char *buf;       /* the record's fields, each NUL-terminated */
    size_t len;      /* bytes used in buf */
    size_t cap;      /* bytes allocated */
    size_t *starts;  /* offset of each field in buf */
    char **fields;   /* what csv_row_t.fields points at */
    size_t n_fields; /* fields of the record */
};

csv_reader_t *csv_reader_new(FILE *in)
{
    csv_reader_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->in = in;
    r->line = 1;
    r->starts = calloc(CSV_MAX_FIELDS, sizeof *r->starts);
    r->fields = calloc(CSV_MAX_FIELDS, sizeof *r->fields);
    if (r->starts == NULL || r->fields == NULL)
        csv_reader_destroy(&r);
    return r;
}

void csv_reader_destroy(csv_reader_t **rp)
{
    if (rp == NULL || *rp == NULL)
        return;
    free((*rp)->buf);
    free((*rp)->starts);
    free((*rp)->fields);
    free(*rp);
    *rp = NULL;
}

static int next_byte(csv_reader_t *r)
{
    int c = r->n_pending > 0 ? r->pending[--r->n_pending] : getc(r->in);
    if (c == '\n')
        r->line++;
    return c;
}

/* Skips a UTF-8 byte order mark at the very start (spreadsheets write
 * one); other bytes are served again in their order. */
static void skip_bom(csv_reader_t *r)
{
    int got[3], n = 0;
    static const int BOM[3] = {0xEF, 0xBB, 0xBF};

    r->started = true;
    while (n < 3 && (got[n] = getc(r->in)) == BOM[n])
        n++;
    if (n == 3)
        return;
    int keep = got[n] == EOF ? n : n + 1;
    for (int i = keep - 1; i >= 0; i--)
        r->pending[r->n_pending++] = got[i];
}

static int append(csv_reader_t *r, char c)
{
    if (r->len == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 256;
        char *n = realloc(r->buf, ncap);
        if (n == NULL)
            return -ENOMEM;
        r->buf = n;
        r->cap = ncap;
    }
    r->buf[r->len++] = c;
    return 0;
}

/* Ends the field being read; a new one starts unless at_end. */
static int end_field(csv_reader_t *r, bool at_end, char *why, size_t whylen)
{
    if (append(r, '\0') < 0)
        return -ENOMEM;
    if (at_end)
        return 0;
    if (r->n_fields == CSV_MAX_FIELDS) {
        snprintf(why, whylen, "line %ld: more than %d columns", r->line, CSV_MAX_FIELDS);
        return -EINVAL;
    }
    r->starts[r->n_fields++] = r->len;
    return 0;
}

/* Stops the reader (what follows an error cannot be read reliably) and
 * says why at the line and column given. Returns rc. */
__attribute__((format(printf, 7, 8))) static int stop(csv_reader_t *r, int rc, char *why,
                                                      size_t whylen, long line, size_t column,
                                                      const char *fmt, ...)
{
    va_list ap;
    int n;

    r->done = true;
    n = snprintf(why, whylen, "line %ld, column %zu: ", line, column);
    if (n >= 0 && (size_t)n < whylen) {
        va_start(ap, fmt);
        vsnprintf(why + n, whylen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rc;
}

int csv_next(csv_reader_t *r, csv_row_t *row, char *why, size_t whylen)
{
    size_t field_start;
    bool quoted = false, closed = false;
    long quote_line = 0;
    int c, rc;

    memset(row, 0, sizeof *row);
    if (r->done)
        return 0;
    if (!r->started)
        skip_bom(r);
    r->len = 0;
    r->n_fields = 1;
    r->starts[0] = 0;
    row->line = r->line;
    c = next_byte(r);
    if (c == EOF) {
        r->done = true;
        return ferror(r->in) ? -EIO : 0;
    }
    field_start = 0;
    for (;; c = next_byte(r)) {
        size_t column = r->n_fields;
        if (quoted && !closed) {
            if (c == EOF)
                return stop(r, ferror(r->in) ? -EIO : -EINVAL, why, whylen, quote_line, column,
                            "the quoted field opened on line %ld is not closed", quote_line);
            if (c == '"') {
                int d = next_byte(r);
                if (d == '"') {
                    c = '"'; /* a doubled quote stands for one */
                } else {
                    closed = true;
                    c = d;
                    goto after_field;
                }
            }
            goto store;
        }
    after_field:
        if (c == ',' || c == '\n' || c == '\r' || c == EOF) {
            bool at_end = c != ',';
            if (c == '\r') {
                int d = next_byte(r);
                if (d != '\n' && d != EOF)
                    r->pending[r->n_pending++] = d; /* a lone CR ends the line too */
            }
            if ((rc = end_field(r, at_end, why, whylen)) < 0) {
                r->done = true;
                return rc;
            }
            if (at_end)
                break;
            quoted = closed = false;
            field_start = r->len;
            continue;
        }
        if (closed)
            return stop(r, -EINVAL, why, whylen, r->line, column,
                        "text after the closing quote (a quote inside a quoted field is "
                        "written twice: \"\")");
        if (c == '"') {
            if (r->len == field_start) {
                quoted = true;
                quote_line = r->line;
                continue;
            }
            return stop(r, -EINVAL, why, whylen, r->line, column,
                        "a quote inside a field that does not start with one (put the field "
                        "in quotes and write the quote twice: \"\")");
        }
    store:
        if (c == '\0')
            return stop(r, -EINVAL, why, whylen, r->line, column, "a NUL byte");
        if (r->len - field_start >= CSV_MAX_FIELD)
            return stop(r, -EINVAL, why, whylen, r->line, column, "field longer than %d bytes",
                        CSV_MAX_FIELD);
        if (append(r, (char)c) < 0) {
            r->done = true;
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < r->n_fields; i++)
        r->fields[i] = r->buf + r->starts[i];
    row->fields = r->fields;
    row->count = r->n_fields;
    row->number = ++r->number;
    return 1;
}

int csv_write_field(FILE *out, const char *s)
{
    size_t len = strlen(s);
    bool quote =
        strpbrk(s, ",\"\r\n") != NULL ||
        (len > 0 && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t'));

    if (!quote)
        return fputs(s, out) == EOF ? -EIO : 0;
    if (putc('"', out) == EOF)
        return -EIO;
    for (; *s != '\0'; s++)
        if ((*s == '"' && putc('"', out) == EOF) || putc(*s, out) == EOF)
            return -EIO;
    return putc('"', out) == EOF ? -EIO : 0;
}
