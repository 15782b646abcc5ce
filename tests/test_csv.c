/*
 * test_csv.c - the CLI's CSV (client/cli/csv*.c): the RFC 4180 reader
 * and writer, header rows resolved against the update kinds, and rows
 * turned into the updates a JSON line would give. No daemon: the CSV
 * push and snapshot against the real binaries are in test_push_csv.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "json.h"

#define WHY_MAX 1024 /* bytes of a reason buffer */

/* A reader over text (kept in a FILE over a copy). */
typedef struct src {
    FILE *f;
    csv_reader_t *r;
} src_t;

static src_t open_text(const char *text, size_t len)
{
    src_t s;
    s.f = fmemopen((void *)text, len, "r");
    cr_assert_not_null(s.f);
    s.r = csv_reader_new(s.f);
    cr_assert_not_null(s.r);
    return s;
}

static void close_src(src_t *s)
{
    csv_reader_destroy(&s->r);
    fclose(s->f);
}

/* Reads the next record and checks its fields (NULL-terminated list). */
static void expect_row(src_t *s, long line, const char *const want[])
{
    csv_row_t row;
    char why[WHY_MAX] = "";
    size_t n = 0;

    cr_assert_eq(csv_next(s->r, &row, why, sizeof why), 1, "no record: %s", why);
    while (want[n] != NULL)
        n++;
    cr_assert_eq(row.count, n, "record on line %ld has %zu fields, not %zu", row.line, row.count,
                 n);
    cr_expect_eq(row.line, line);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(row.fields[i], want[i], "field %zu", i + 1);
}

static void expect_end(src_t *s)
{
    csv_row_t row;
    char why[WHY_MAX];
    cr_expect_eq(csv_next(s->r, &row, why, sizeof why), 0);
}

/* The first record of text fails with a reason holding want. */
static void expect_error(const char *text, const char *want)
{
    src_t s = open_text(text, strlen(text));
    csv_row_t row;
    char why[WHY_MAX] = "";
    int rc;

    while ((rc = csv_next(s.r, &row, why, sizeof why)) == 1)
        ;
    cr_expect_eq(rc, -EINVAL, "no error for: %s", text);
    cr_expect_not_null(strstr(why, want), "reason '%s' lacks '%s'", why, want);
    close_src(&s);
}

Test(csv, plain_rows_with_lf_and_crlf)
{
    static const char text[] = "a,b,c\r\n1,2,3\n,,\n";
    src_t s = open_text(text, sizeof text - 1);
    expect_row(&s, 1, (const char *[]){"a", "b", "c", NULL});
    expect_row(&s, 2, (const char *[]){"1", "2", "3", NULL});
    expect_row(&s, 3, (const char *[]){"", "", "", NULL});
    expect_end(&s);
    close_src(&s);
}

Test(csv, quoted_commas_line_breaks_and_doubled_quotes)
{
    static const char text[] = "name,note\r\n"
                               "\"Sumgait, Chemical\",\"two\r\nlines\"\r\n"
                               "\"say \"\"hi\"\"\",\"\"\r\n"
                               "last,\"no newline at the end\"";
    src_t s = open_text(text, sizeof text - 1);
    expect_row(&s, 1, (const char *[]){"name", "note", NULL});
    expect_row(&s, 2, (const char *[]){"Sumgait, Chemical", "two\r\nlines", NULL});
    expect_row(&s, 4, (const char *[]){"say \"hi\"", "", NULL});
    expect_row(&s, 5, (const char *[]){"last", "no newline at the end", NULL});
    expect_end(&s);
    close_src(&s);
}

Test(csv, a_byte_order_mark_is_skipped_and_other_bytes_are_kept)
{
    static const char bom[] = "\xEF\xBB\xBFpark_id\nAZ-1\n";
    static const char not_bom[] = "\xEF\xBC\x8C,x\n"; /* U+FF0C, a full-width comma */
    src_t s = open_text(bom, sizeof bom - 1);
    expect_row(&s, 1, (const char *[]){"park_id", NULL});
    expect_row(&s, 2, (const char *[]){"AZ-1", NULL});
    close_src(&s);
    s = open_text(not_bom, sizeof not_bom - 1);
    expect_row(&s, 1, (const char *[]){"\xEF\xBC\x8C", "x", NULL});
    close_src(&s);
    s = open_text("\xEF\xBB", 2); /* a cut-off mark is data */
    expect_row(&s, 1, (const char *[]){"\xEF\xBB", NULL});
    close_src(&s);
}

Test(csv, what_rfc_4180_leaves_out_is_refused_with_line_and_column)
{
    expect_error("a,b\nx,y\"z\n", "line 2, column 2: a quote inside a field");
    expect_error("a,\"b\"c\n", "line 1, column 2: text after the closing quote");
    expect_error("a\n\"open\nstill open\n", "line 2, column 1: the quoted field opened on line 2");
    static const char nul[] = "a,b\0c\n";
    src_t s = open_text(nul, sizeof nul - 1);
    csv_row_t row;
    char why[WHY_MAX];
    cr_expect_eq(csv_next(s.r, &row, why, sizeof why), -EINVAL);
    cr_expect_not_null(strstr(why, "NUL"), "%s", why);
    close_src(&s);
}

Test(csv, written_fields_read_back_the_same)
{
    static const char *const fields[] = {
        "plain", "with, comma", "with \"quote\"", "two\nlines", " padded ", "", "Sumqayıt", NULL};
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    for (size_t i = 0; fields[i] != NULL; i++) {
        if (i > 0)
            fputc(',', out);
        cr_assert_eq(csv_write_field(out, fields[i]), 0);
    }
    fputs("\r\n", out);
    fclose(out);
    src_t s = open_text(buf, len);
    expect_row(&s, 1, (const char *const *)fields);
    expect_end(&s);
    close_src(&s);
    free(buf);
}

/* Reads header and one row of text for kind into an update (NULL when it
 * fails, with why and *column). */
static Parksync__V1__Update *row_update(const char *kind, const char *text, char *why,
                                        size_t *column)
{
    src_t s = open_text(text, strlen(text));
    csv_header_t h;
    csv_row_t row;
    Parksync__V1__Update *u = NULL;

    *column = 0;
    cr_assert_eq(csv_next(s.r, &row, why, WHY_MAX), 1);
    if (csv_header_parse(&h, kind, &row, why, WHY_MAX) == 0) {
        cr_assert_eq(csv_next(s.r, &row, why, WHY_MAX), 1, "%s", why);
        if (csv_row_to_update(&h, &row, &u, column, why, WHY_MAX) == 0 &&
            json_update_check(u, "TEST-1", why, WHY_MAX) < 0) {
            parksync__v1__update__free_unpacked(u, NULL);
            u = NULL;
        }
        csv_header_free(&h);
    }
    close_src(&s);
    return u;
}

Test(csv, a_row_gives_the_update_its_json_line_gives)
{
    static const char park_csv[] =
        "event_time,vintage,park_id,country,name,specializations,area_ha,reported_residents,"
        "reported_investment_usd_cents,region\n"
        "2020-12-23T09:00:00Z,final,AZ-SUMGAIT-CHEM,AZ,\"Sumgait Chemical, SCIP\","
        "chemistry; processing,1000.5,22,265000000000,\n";
    static const char park_json[] =
        "{\"event_time\": \"2020-12-23T09:00:00Z\", \"vintage\": \"final\", \"park\": "
        "{\"park_id\": \"AZ-SUMGAIT-CHEM\", \"country\": \"AZ\", \"name\": \"Sumgait Chemical, "
        "SCIP\", \"specializations\": [\"chemistry\", \"processing\"], \"area_ha\": 1000.5, "
        "\"reported_residents\": 22, \"reported_investment_usd_cents\": 265000000000}}";
    char why[WHY_MAX];
    size_t column;
    Parksync__V1__Update *from_csv = row_update("park", park_csv, why, &column), *from_json;

    cr_assert_not_null(from_csv, "%s (column %zu)", why, column);
    cr_assert_eq(json_to_update(park_json, strlen(park_json), &from_json, why, sizeof why), 0, "%s",
                 why);
    cr_assert_eq(json_update_check(from_json, "TEST-1", why, sizeof why), 0, "%s", why);
    from_json->event_time_us = from_csv->event_time_us;
    size_t a = parksync__v1__update__get_packed_size(from_csv);
    size_t b = parksync__v1__update__get_packed_size(from_json);
    uint8_t *pa = malloc(a), *pb = malloc(b);
    parksync__v1__update__pack(from_csv, pa);
    parksync__v1__update__pack(from_json, pb);
    cr_expect(a == b && memcmp(pa, pb, a) == 0, "the CSV row and the JSON line differ");
    cr_expect_null(from_csv->park->region, "an empty cell must leave the field out");
    free(pa);
    free(pb);
    parksync__v1__update__free_unpacked(from_csv, NULL);
    parksync__v1__update__free_unpacked(from_json, NULL);

    from_csv = row_update("trade",
                          "reporter,partner,direction,period.year,period.first_month,"
                          "period.last_month,value_usd_cents\nAZ,TJ,exports,2020,1,10,172000000\n",
                          why, &column);
    cr_assert_not_null(from_csv, "%s", why);
    cr_expect_eq(from_csv->trade->period->last_month, 10);
    cr_expect_eq(from_csv->trade->value_usd_cents, 172000000);
    parksync__v1__update__free_unpacked(from_csv, NULL);
}

/* Each bad input names its column (1-based; 0: the row) and why. */
Test(csv, bad_headers_and_rows_name_the_column_and_why)
{
    static const struct {
        const char *kind, *text, *reason;
        size_t column;
    } CASES[] = {
        {"park", "park_id,colour\nA,red\n", "column 2 (colour): unknown field 'colour'", 0},
        {"trade", "reporter,period\nAZ,2020\n", "'period' is a message", 0},
        {"park", "park_id,park_id\nA,B\n", "column 2 (park_id): also column 1", 0},
        {"parks", "park_id\nA\n", "unknown --kind 'parks'", 0},
        {"park", "park_id,country,area_ha\nA,AZ,big\n", "expected a number", 3},
        {"park", "park_id,country,status\nA,AZ,shining\n", "unknown ParkStatus value", 3},
        {"park", "park_id,country,specializations\nA,AZ,chemistry;;food\n", "an empty item", 3},
        {"park", "park_id,country,reported_residents\nA,AZ,-1\n", "out of range", 3},
        {"park", "park_id,country\nA\n", "1 fields where the header row has 2", 0},
        {"park", "park_id,country,event_time\nA,AZ,yesterday\n", "RFC 3339", 3},
        {"park", "park_id,name\nA,x\n", "invalid update", 0},
    };

    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char why[WHY_MAX] = "";
        size_t column = 99;
        Parksync__V1__Update *u = row_update(CASES[i].kind, CASES[i].text, why, &column);
        cr_expect_null(u, "case %zu was accepted", i);
        if (u != NULL)
            parksync__v1__update__free_unpacked(u, NULL);
        cr_expect_not_null(strstr(why, CASES[i].reason), "case %zu: '%s' lacks '%s'", i, why,
                           CASES[i].reason);
        cr_expect_eq(column, CASES[i].column, "case %zu: column %zu, not %zu (%s)", i, column,
                     CASES[i].column, why);
    }
}
