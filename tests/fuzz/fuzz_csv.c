/*
 * fuzz_csv.c - the CLI's CSV input (`parksync push --format csv`): the
 * first byte picks the kind, the rest is read as a file: the reader, the
 * header row, every row into an update. Besides the sanitizers:
 *   - a reason is always a terminated string and errors are documented;
 *   - every record read, written back with csv_write_field, reads back
 *     as the same fields;
 *   - an update json_update_check accepts encodes, and the daemon's
 *     wire_update_decode accepts it.
 */
#include "csv.h"
#include "fuzz.h"
#include "json.h"

#define WHY_SIZE 1024 /* bytes, as parksync push passes */

static const char *const KINDS[] = {"park", "resident", "trade", "country", "delete"};

/* The fields of row, written and read again, are the same. */
static void check_write_read(const csv_row_t *row)
{
    char *buf = NULL, why[WHY_SIZE];
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    csv_row_t back;

    FUZZ_CHECK(out != NULL);
    /* A mark of our own, so a field's own leading mark bytes stay data. */
    fputs("\xEF\xBB\xBF", out);
    for (size_t i = 0; i < row->count; i++) {
        if (i > 0)
            fputc(',', out);
        FUZZ_CHECK(csv_write_field(out, row->fields[i]) == 0);
    }
    fputs("\r\n", out);
    fclose(out);
    FILE *in = fmemopen(buf, len, "r");
    csv_reader_t *r = csv_reader_new(in);
    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(csv_next(r, &back, why, sizeof why) == 1);
    FUZZ_CHECK(back.count == row->count);
    for (size_t i = 0; i < row->count; i++)
        FUZZ_CHECK(strcmp(back.fields[i], row->fields[i]) == 0);
    csv_reader_destroy(&r);
    fclose(in);
    free(buf);
}

static void check_daemon_accepts(const Parksync__V1__Update *u)
{
    size_t len = parksync__v1__update__get_packed_size(u);
    uint8_t *buf = malloc(len ? len : 1);
    Parksync__V1__Update *d = NULL;
    const char *why = NULL;

    FUZZ_CHECK(buf != NULL);
    parksync__v1__update__pack(u, buf);
    FUZZ_CHECK(wire_update_decode(buf, len, &d, &why) == 0);
    parksync__v1__update__free_unpacked(d, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    csv_header_t h = {0};
    csv_row_t row;
    char why[WHY_SIZE];
    size_t column;
    bool have_header = false;
    int rc;

    if (size < 2)
        return 0;
    const char *kind = KINDS[data[0] % 5];
    FILE *in = fmemopen((void *)(data + 1), size - 1, "r");
    if (in == NULL)
        return 0;
    csv_reader_t *r = csv_reader_new(in);
    FUZZ_CHECK(r != NULL);
    while ((rc = csv_next(r, &row, why, sizeof why)) != 0) {
        if (rc < 0) {
            FUZZ_CHECK(rc == -EINVAL && memchr(why, '\0', sizeof why) != NULL);
            break;
        }
        FUZZ_CHECK(row.count >= 1 && row.count <= CSV_MAX_FIELDS);
        check_write_read(&row);
        if (!have_header) {
            if (csv_header_parse(&h, kind, &row, why, sizeof why) < 0)
                break;
            have_header = true;
            continue;
        }
        Parksync__V1__Update *u = NULL;
        rc = csv_row_to_update(&h, &row, &u, &column, why, sizeof why);
        FUZZ_CHECK(memchr(why, '\0', sizeof why) != NULL);
        if (rc < 0) {
            FUZZ_CHECK(u == NULL && column <= h.count);
            continue;
        }
        if (json_update_check(u, "FUZZ-1", why, sizeof why) == 0)
            check_daemon_accepts(u);
        parksync__v1__update__free_unpacked(u, NULL);
    }
    csv_header_free(&h);
    csv_reader_destroy(&r);
    fclose(in);
    return 0;
}
