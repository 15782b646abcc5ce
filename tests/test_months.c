/*
 * test_months.c - what a daemon running for months depends on: the WAL
 * folded back into the database while it runs.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

static harness_t h;

static void teardown(void)
{
    harness_cleanup(&h);
}

static int64_t file_bytes(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* The checkpoint thread copies committed pages into the database file
 * while the daemon runs: the main file grows with the data, not only at
 * shutdown. (Its connection once never read the file, so SQLite did
 * not know it was in WAL mode and every checkpoint was a silent no-op:
 * the main file stayed at 4 KiB and the WAL took 5.4 KiB per update.) */
Test(months, the_wal_is_checkpointed_while_the_daemon_runs, .fini = teardown, .timeout = 120)
{
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    harness_park_t pu;
    char id[32];
    int64_t db = -1, deadline;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    harness_producer_options(&h, &o, "AZ-MOE");
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    for (int i = 0; i < 3000; i++) {
        snprintf(id, sizeof id, "AZ-WAL-%d", i);
        harness_park(&pu, id, "AZ");
        cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    }
    cr_assert_eq(ps_producer_flush(p, 30000), PS_OK);
    /* 3,000 parks and their change log take several hundred KiB */
    deadline = wire_monotonic_ms() + 10000;
    while (wire_monotonic_ms() < deadline && (db = file_bytes(h.db)) < 256 * 1024)
        usleep(50000);
    cr_expect_geq(db, 256 * 1024,
                  "the database file is %" PRId64 " bytes while the daemon runs: nothing was "
                  "checkpointed",
                  db);
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0);
}
