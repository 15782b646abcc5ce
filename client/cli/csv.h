/*
 * csv.h - CSV for the parksync CLI: an RFC 4180 reader and writer, and
 * the mapping between CSV columns and protobuf-c message fields that
 * `parksync push --format csv` and `parksync snapshot --format csv|table`
 * share.
 *
 * Reader (csv.c): fields separated by commas, records by CRLF or LF; a
 * field in double quotes may hold commas, line breaks and doubled quotes
 * (""); a UTF-8 byte order mark before the first record is skipped. What
 * RFC 4180 leaves out is refused with the line and column: a quote
 * inside an unquoted field, text after a closing quote, a quote left
 * open at the end of the input, a NUL byte.
 *
 * Columns (csv_in.c, csv_out.c): a column names a field of the record's
 * message by its .proto name, the fields of nested messages dotted
 * (period.year); a list is one cell, its items separated by ';'
 * (chemistry;processing); an empty cell is an absent field. Push reads a
 * row into the same JSON object a JSON line would be and hands it to
 * json_object_to_update, so both inputs follow one set of rules.
 *
 * Nothing here prints; errors come back as text.
 */
#ifndef PARKSYNC_CLI_CSV_H
#define PARKSYNC_CLI_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "parksync.pb-c.h"

#define CSV_MAX_FIELDS 256         /* columns of a record */
#define CSV_MAX_FIELD  (64 * 1024) /* bytes of one field */
#define CSV_MAX_DEPTH  4           /* messages a column path goes through */

/* ---------------------------------------------------------------- reader */

typedef struct csv_reader csv_reader_t;

/* One record as read. The strings are owned by the reader and valid
 * until its next csv_next. */
typedef struct csv_row {
    char **fields; /* NUL-terminated, unquoted */
    size_t count;  /* fields in the record */
    long line;     /* physical line the record starts on, 1-based */
    long number;   /* records before it plus one (the header is record 1) */
} csv_row_t;

/* A reader of in (not owned, not closed). NULL when out of memory. */
csv_reader_t *csv_reader_new(FILE *in);

/* Reads the next record into *row. Returns 1, 0 at the end of the input,
 * or -EINVAL with "line L, column C: reason" in why (the reader cannot
 * go on after that), -ENOMEM, -EIO. A blank line is a record of one
 * empty field, as RFC 4180 has it. */
int csv_next(csv_reader_t *r, csv_row_t *row, char *why, size_t whylen);

void csv_reader_destroy(csv_reader_t **rp);

/* ---------------------------------------------------------------- writer */

/* Writes s as one field, in quotes when it holds a comma, a quote, a
 * line break or starts or ends with a blank. 0 or -EIO. */
int csv_write_field(FILE *out, const char *s);

/* ---------------------------------------------------------------- columns */

/* A column: the path of fields from a message down to a value. */
typedef struct csv_column {
    char name[128];                                      /* dotted .proto names */
    const ProtobufCFieldDescriptor *path[CSV_MAX_DEPTH]; /* fields from the top message down */
    int depth;                                           /* entries of path */
    bool usd;                                            /* an added column: path's cents as USD */
} csv_column_t;

/* Resolves a header name against message d into col. 0, or -EINVAL with
 * the reason (an unknown field, listing the known ones; a message named
 * instead of its fields). */
int csv_column_resolve(const ProtobufCMessageDescriptor *d, const char *name, csv_column_t *col,
                       char *why, size_t whylen);

/* ---------------------------------------------------------------- push */

/* The header of a push: each column resolved against the body of kind. */
typedef struct csv_header {
    const char *kind;   /* "park", "resident", "trade", "country" or "delete" */
    size_t count;       /* columns */
    csv_column_t *cols; /* owned; envelope columns have depth 0 */
    char **names;       /* owned copies of the header names */
} csv_header_t;

/* The kinds push takes, for messages: "park, resident, trade, country, delete". */
extern const char CSV_PUSH_KINDS[];

/* Reads the header row for kind. 0, or -EINVAL with "column C (NAME):
 * reason" (or a bad kind) in why. Free with csv_header_free. */
int csv_header_parse(csv_header_t *h, const char *kind, const csv_row_t *row, char *why,
                     size_t whylen);

void csv_header_free(csv_header_t *h);

/* One data row into a new Update, through json_object_to_update. Returns
 * 0 with *out (caller frees), or -EINVAL with the reason in why and the
 * 1-based column it concerns in *column (0 when the row as a whole). */
int csv_row_to_update(const csv_header_t *h, const csv_row_t *row, Parksync__V1__Update **out,
                      size_t *column, char *why, size_t whylen);

/* ---------------------------------------------------------------- snapshot */

typedef enum csv_style {
    CSV_STYLE_CSV = 1, /* RFC 4180 with a header row */
    CSV_STYLE_TABLE,   /* aligned columns for people */
} csv_style_t;

typedef struct csv_out csv_out_t;

/* Collects records for output. For CSV_STYLE_CSV records of kind only
 * are accepted (one header per output, written even when no record
 * comes), written as they come; a table is written by csv_out_finish,
 * one per kind, columns aligned (kind is not used). NULL when out of
 * memory. */
csv_out_t *csv_out_new(FILE *out, csv_style_t style, Parksync__V1__RecordKind kind);

/* Adds one record. 0, -EINVAL when a CSV output gets a second kind, -EIO
 * when writing fails, -ENOMEM. */
int csv_out_record(csv_out_t *o, const Parksync__V1__Record *r);

/* Writes what is held (tables) and flushes. 0 or -EIO/-ENOMEM. */
int csv_out_finish(csv_out_t *o);

void csv_out_destroy(csv_out_t **op);

#endif /* PARKSYNC_CLI_CSV_H */
