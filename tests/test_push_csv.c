/*
 * test_push_csv.c - CSV in and out through the real parksync CLI and the
 * real parksyncd: a spreadsheet's file (byte order mark, CRLF, quoted
 * commas, line breaks and quotes) pushed with --format csv comes back
 * the same from `snapshot --format csv`; a bad row sends nothing and
 * names its row and column; the table is for people, with dollars.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "harness.h"

static harness_t h;
static char parks_csv[HARNESS_PATH + 32]; /* PARKS, written into the test's folder */

/* What a spreadsheet saves: BOM, CRLF, quotes where needed. */
static const char PARKS[] =
    "\xEF\xBB\xBFpark_id,country,name,specializations,status,area_ha,reported_residents,"
    "reported_investment_usd_cents\r\n"
    "AZ-SUMGAIT-CHEM,AZ,\"Sumgait Chemical Industrial Park, \"\"SCIP\"\"\",chemistry;processing,"
    "operating,1000.5,22,265000000000\r\n"
    "AZ-MINGACHEVIR,AZ,\"Mingachevir\r\nIndustrial Park\",light_industry,operating,,,\r\n"
    "AZ-PIRALLAHI,AZ,Pirallahi Industrial Park,pharmaceuticals,planned,200,3,1500\r\n";

static char *write_input(const char *name, const char *text)
{
    static char path[HARNESS_PATH + 32];
    snprintf(path, sizeof path, "%s/%s", h.dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A daemon of its own, and PARKS as a file for it. */
static void setup(void)
{
    cr_assert_eq(harness_init(&h, NULL), 0);
    snprintf(parks_csv, sizeof parks_csv, "%s", write_input("parks.csv", PARKS));
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
}

static void teardown(void)
{
    harness_cleanup(&h);
}

TestSuite(push_csv, .init = setup, .fini = teardown, .timeout = 120);

/* All records of a CSV text: rows[r][c], row 0 the header. */
typedef struct table {
    char *cells[16][32]; /* owned */
    size_t rows, cols;
} table_t;

static void read_table(const char *text, table_t *t)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    csv_reader_t *r = csv_reader_new(f);
    csv_row_t row;
    char why[512];
    int rc;

    memset(t, 0, sizeof *t);
    while ((rc = csv_next(r, &row, why, sizeof why)) == 1 && t->rows < 16) {
        cr_assert_leq(row.count, 32);
        if (t->rows == 0)
            t->cols = row.count;
        cr_assert_eq(row.count, t->cols, "row %ld has %zu fields", row.number, row.count);
        for (size_t c = 0; c < row.count; c++)
            t->cells[t->rows][c] = strdup(row.fields[c]);
        t->rows++;
    }
    cr_assert_eq(rc, 0, "%s", why);
    csv_reader_destroy(&r);
    fclose(f);
}

static void free_table(table_t *t)
{
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->cols; c++)
            free(t->cells[r][c]);
}

static int column(const table_t *t, const char *name)
{
    for (size_t c = 0; c < t->cols; c++)
        if (strcmp(t->cells[0][c], name) == 0)
            return (int)c;
    return -1;
}

/* The row whose park_id is id, or -1. */
static int row_of(const table_t *t, const char *id)
{
    int c = column(t, "park_id");
    for (size_t r = 1; c >= 0 && r < t->rows; r++)
        if (strcmp(t->cells[r][c], id) == 0)
            return (int)r;
    return -1;
}

Test(push_csv, a_spreadsheet_file_comes_back_the_same_from_snapshot_csv)
{
    const char *push[] = {"push",   "--producer", "AZ-MOE",  "--format", "csv",
                          "--kind", "park",       parks_csv, NULL};
    const char *snap[] = {"snapshot", "--kind", "park", "--format", "csv", NULL};
    char *out = NULL, *err = NULL;
    table_t in, back;

    cr_assert_eq(harness_cli(&h, push, NULL, NULL, &err), 0, "push: %s", err);
    free(err);
    cr_assert_eq(harness_cli(&h, snap, NULL, &out, &err), 0, "snapshot: %s", err);
    free(err);
    read_table(PARKS, &in);
    read_table(out, &back);
    cr_assert_eq(back.rows, in.rows, "snapshot:\n%s", out);
    cr_expect_str_eq(in.cells[0][0], "park_id", "the byte order mark was not taken off");
    for (size_t r = 1; r < in.rows; r++) {
        int br = row_of(&back, in.cells[r][0]);
        cr_assert_geq(br, 1, "%s missing from the snapshot:\n%s", in.cells[r][0], out);
        for (size_t c = 0; c < in.cols; c++) {
            int bc = column(&back, in.cells[0][c]);
            cr_assert_geq(bc, 0, "no column %s in the snapshot", in.cells[0][c]);
            cr_expect_str_eq(back.cells[br][bc], in.cells[r][c], "%s of %s", in.cells[0][c],
                             in.cells[r][0]);
        }
    }
    int usd = column(&back, "reported_investment_usd");
    cr_assert_geq(usd, 0, "no dollars beside the cents:\n%s", out);
    cr_expect_str_eq(back.cells[row_of(&back, "AZ-SUMGAIT-CHEM")][usd], "2650000000.00");
    cr_expect_str_eq(back.cells[row_of(&back, "AZ-PIRALLAHI")][usd], "15.00");
    free_table(&in);
    free_table(&back);
    free(out);
}

Test(push_csv, a_bad_row_sends_nothing_and_names_row_and_column)
{
    static const char bad[] = "park_id,country,name,status\n"
                              "AZ-A,AZ,\"first, fine\",operating\n"
                              "AZ-B,AZ,\"second\nspans lines\",shining\n"
                              "AZ-C,AZ,third,planned\n";
    const char *push[] = {"push", "--producer", "AZ-MOE", "--format",
                          "csv",  "--kind",     "park",   write_input("bad.csv", bad),
                          NULL};
    const char *snap[] = {"snapshot", "--kind", "park", NULL};
    char *out = NULL, *err = NULL;

    cr_expect_eq(harness_cli(&h, push, NULL, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "bad.csv:3: row 3, column 4 (status): unknown ParkStatus"),
                       "stderr:\n%s", err);
    cr_expect_not_null(strstr(err, "nothing was sent"), "stderr:\n%s", err);
    free(err);
    cr_assert_eq(harness_cli(&h, snap, NULL, &out, NULL), 0);
    cr_expect_str_eq(out, "", "a row was sent from a bad file");
    free(out);
    /* an empty CSV snapshot is still a header row, for the programs that read it */
    const char *csv[] = {"snapshot", "--kind", "park", "--format", "csv", NULL};
    cr_assert_eq(harness_cli(&h, csv, NULL, &out, NULL), 0);
    cr_expect_eq(strncmp(out, "revision,deleted,park_id,country,name,", 38), 0, "%s", out);
    const char *nl = strchr(out, '\n');
    cr_expect(nl != NULL && nl[1] == '\0', "not just a header row: %s", out);
    free(out);
}

Test(push_csv, snapshot_table_and_the_csv_kind_rule)
{
    const char *push[] = {"push",   "--producer", "AZ-MOE",  "--format", "csv",
                          "--kind", "park",       parks_csv, NULL};
    const char *table[] = {"snapshot", "--kind", "park", "--format", "table", NULL};
    const char *no_kind[] = {"snapshot", "--format", "csv", NULL};
    const char *no_format[] = {"push", "--producer", "AZ-MOE", "--kind", "park", NULL};
    char *out = NULL, *err = NULL;

    cr_assert_eq(harness_cli(&h, push, NULL, NULL, &err), 0, "push: %s", err);
    free(err);
    cr_assert_eq(harness_cli(&h, table, NULL, &out, &err), 0, "%s", err);
    cr_expect_not_null(strstr(out, "park: 3 records"), "%s", out);
    cr_expect_not_null(strstr(out, "2,650,000,000.00"), "%s", out);
    cr_expect_not_null(strstr(out, "Mingachevir Industrial Park"), "one line per record:\n%s", out);
    cr_expect_null(strstr(out, "region"), "an empty column is shown:\n%s", out);
    free(out);
    free(err);
    cr_expect_eq(harness_cli(&h, no_kind, NULL, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "give --kind"), "%s", err);
    free(err);
    cr_expect_eq(harness_cli(&h, no_format, NULL, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "--kind goes with --format csv"), "%s", err);
    free(err);
}
