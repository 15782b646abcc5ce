/*
 * test_months.c - what a daemon running for months depends on: the WAL
 * folded back into the database while it runs.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The checkpoint sequence in a WAL file's header (big-endian, bytes
 * 12-15): SQLite adds one each time the WAL starts over. -1: unreadable. */
static int64_t wal_sequence(const char *path)
{
    unsigned char hdr[16];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(hdr, 1, sizeof hdr, f) : 0;

    if (f)
        fclose(f);
    if (n != sizeof hdr)
        return -1;
    return (int64_t)hdr[12] << 24 | hdr[13] << 16 | hdr[14] << 8 | hdr[15];
}

/* A producer AZ-MOE that has pushed n parks PREFIX-0.. and seen every
 * ack; the caller destroys it. */
static ps_producer_t *pushed(int n, const char *prefix)
{
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    harness_park_t pu;
    char id[32];

    harness_producer_options(&h, &o, "AZ-MOE");
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        harness_park(&pu, id, "AZ");
        cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    }
    cr_assert_eq(ps_producer_flush(p, 30000), PS_OK);
    return p;
}

/* The checkpoint thread copies committed pages into the database file
 * while the daemon runs: the main file grows with the data, not only at
 * shutdown. (Its connection once never read the file, so SQLite did
 * not know it was in WAL mode and every checkpoint was a silent no-op:
 * the main file stayed at 4 KiB and the WAL took 5.4 KiB per update.) */
Test(months, the_wal_is_checkpointed_while_the_daemon_runs, .fini = teardown, .timeout = 120)
{
    ps_producer_t *p;
    int64_t db = -1, deadline;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    p = pushed(3000, "AZ-WAL");
    /* 3,000 parks and their change log take several hundred KiB */
    deadline = wire_monotonic_ms() + 10000;
    while (wire_monotonic_ms() < deadline && (db = file_bytes(h.db)) < 256 * 1024)
        usleep(50000);
    cr_expect_geq(db, 256 * 1024,
                  "the database file is %" PRId64 " bytes while the daemon runs: nothing was "
                  "checkpointed",
                  db);
    /* and status says when the last complete checkpoint was */
    {
        Parksync__V1__ControlReply *r = harness_status(&h, 5000);
        cr_assert_not_null(r);
        cr_expect(r->status->has_last_checkpoint_us, "status has no last checkpoint");
        cr_expect_leq(wire_now_us() - r->status->last_checkpoint_us, 10 * 1000000LL,
                      "the last complete checkpoint is %" PRId64 " us old",
                      wire_now_us() - r->status->last_checkpoint_us);
        parksync__v1__control_reply__free_unpacked(r, NULL);
    }
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0);
}

/* From `parksync metrics`: the times the WAL started over (*starts) and
 * those of them the writer's reset made (*resets). Run only after the
 * load: the CLI takes tens of milliseconds, a pause long enough for the
 * checkpointer to copy all of the WAL, which starts it over unaided. */
static void wal_starts(long *starts, long *resets)
{
    char *out = NULL, *err = NULL;
    const char *v;

    cr_assert_eq(harness_cli(&h, (const char *const[]){"metrics", NULL}, NULL, &out, &err), 0,
                 "metrics: %s", err);
    v = strstr(out, "\nparksync_wal_starts_total ");
    cr_assert_not_null(v, "%s", out);
    *starts = strtol(v + strlen("\nparksync_wal_starts_total "), NULL, 10);
    v = strstr(out, "\nparksync_wal_reset_seconds_count ");
    cr_assert_not_null(v, "%s", out);
    *resets = strtol(v + strlen("\nparksync_wal_reset_seconds_count "), NULL, 10);
    free(out);
    free(err);
}

/* A WAL starts over only when a write transaction begins with all of it
 * copied back; under steady commits the checkpoint thread never got there
 * first, and the WAL grew without end (1 GiB in 55 s at 1,200 commits a
 * second; without the writer's reset, 1.2 GiB here). One producer sends
 * without waiting for acks, so the loop commits back to back, until the
 * WAL has started over twice: it must stay near the 64 MiB at which the
 * writer starts it over, not at its forced bound, though each commit
 * adds hundreds of frames. (A producer that waits for each ack leaves
 * pauses in which the checkpointer copies all of the WAL and SQLite
 * starts it over unaided; that counts too, the header's sequence says
 * either, but here the writer's reset must have run.) */
Test(months, the_wal_starts_over_under_steady_commits, .fini = teardown, .timeout = 300)
{
    ps_producer_options_t o;
    ps_producer_t *p;
    ps_err_t err;
    harness_park_t pu;
    char id[32], name[241];
    int64_t wal, most = 0;
    char wal_path[HARNESS_PATH + 8];

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    snprintf(wal_path, sizeof wal_path, "%s-wal", h.db);
    memset(name, 'w', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    harness_producer_options(&h, &o, "AZ-MOE");
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    long starts = 0, resets = 0, seen = 0;
    int64_t seq, last_seq = -1;
    int i;
    for (i = 0; i < 1000000 && seen < 2; i++) {
        snprintf(id, sizeof id, "AZ-STEADY-%d", i % 5000);
        harness_park(&pu, id, "AZ");
        pu.p.name = name;
        cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
        if (i % 64 != 0)
            continue;
        if ((wal = file_bytes(wal_path)) > most)
            most = wal;
        if ((seq = wal_sequence(wal_path)) != last_seq) {
            seen += last_seq >= 0;
            last_seq = seq;
        }
    }
    cr_assert_eq(ps_producer_flush(p, 30000), PS_OK);
    ps_producer_destroy(&p);
    wal_starts(&starts, &resets);
    cr_expect_geq(seen, 2, "the WAL started over %ld times in %d updates", seen, i);
    cr_expect_geq(starts, seen, "the metrics count %ld starts of the WAL, the test saw %ld", starts,
                  seen);
    cr_expect_geq(resets, 1, "the writer never reset the WAL (%ld starts)", starts);
    cr_expect_leq(most, 128 * 1024 * 1024, "the WAL reached %.1f MiB: it did not start over",
                  (double)most / (1024 * 1024));
    cr_assert_eq(harness_stop(&h), 0);
}

/* Many subscribers started at once against a daemon with few stream
 * slots: each first snapshot answered BUSY is asked again later (backoff
 * with jitter), and every one of them completes. (Before, only a
 * recovery retried BUSY: 30-40 % of 200 `watch` processes started
 * together exited with "streams are running (max_streams)".) */
#define WATCHERS 200

Test(months, watchers_started_at_once_all_complete, .fini = teardown, .timeout = 120)
{
    ps_subscriber_options_t so;
    ps_producer_t *p;
    ps_subscriber_t *subs[WATCHERS];
    bool done[WATCHERS] = {false};
    int complete = 0;
    ps_err_t err;
    int64_t deadline;

    cr_assert_eq(harness_init(&h, "[limits]\nmax_streams = 2\nmax_streams_per_client = 1\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    p = pushed(2000, "AZ-W");
    ps_producer_destroy(&p);

    harness_subscriber_options(&h, &so);
    so.live = false;
    for (int i = 0; i < WATCHERS; i++) {
        subs[i] = ps_subscriber_new(&so, &err);
        cr_assert_not_null(subs[i], "%s", ps_strerror(err));
    }
    deadline = wire_monotonic_ms() + 60000;
    while (complete < WATCHERS && wire_monotonic_ms() < deadline) {
        for (int i = 0; i < WATCHERS; i++) {
            ps_event_t ev;
            ps_err_t rc;
            if (done[i])
                continue;
            /* a zero timeout takes what is there without waiting */
            while ((rc = ps_subscriber_next(subs[i], &ev, 0)) == PS_OK &&
                   ev.kind != PS_EVENT_SNAPSHOT_END)
                ;
            if (rc == PS_OK) {
                done[i] = true;
                complete++;
            } else {
                cr_assert_eq(rc, PS_ERR_TIMEOUT, "watcher %d: %s (%s)", i, ps_strerror(rc),
                             ps_subscriber_last_error(subs[i]));
            }
        }
    }
    cr_expect_eq(complete, WATCHERS, "%d of %d watchers completed their snapshot", complete,
                 WATCHERS);
    cr_expect_gt(harness_counter(&h, "streams_refused", 2000), 0, "no BUSY was ever answered");
    for (int i = 0; i < WATCHERS; i++)
        ps_subscriber_destroy(&subs[i]);
    cr_assert_eq(harness_stop(&h), 0);
}

/* A finished push run again with the same outbox sends nothing and says
 * so; --force sends it again, as new updates. (Before, the rerun applied
 * every line again: 100 lines, 200 applied.) */
Test(months, a_finished_push_run_again_sends_nothing, .fini = teardown, .timeout = 120)
{
    char input[HARNESS_PATH + 16], outbox[HARNESS_PATH + 16];
    const char *push[] = {"push", "--producer", "AZ-MOE", "--outbox", outbox, input, NULL};
    const char *force[] = {"push", "--producer", "AZ-MOE", "--outbox",
                           outbox, "--force",    input,    NULL};
    char *out = NULL, *err = NULL;
    FILE *f;

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    snprintf(input, sizeof input, "%s/parks.jsonl", h.dir);
    snprintf(outbox, sizeof outbox, "%s/outbox.db", h.dir);
    f = fopen(input, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 100; i++)
        fprintf(f,
                "{\"park\": {\"park_id\": \"AZ-RERUN-%d\", \"country\": \"AZ\", \"name\": "
                "\"rerun\"}}\n",
                i);
    fclose(f);

    cr_assert_eq(harness_cli(&h, push, NULL, &out, &err), 0, "%s", err);
    free(out);
    free(err);
    cr_assert_eq(harness_counter(&h, "applied", 2000), 100);

    cr_assert_eq(harness_cli(&h, push, NULL, &out, &err), 0, "%s", err);
    cr_expect_not_null(strstr(err, "already pushed"), "the rerun did not say so: %s", err);
    cr_expect_not_null(strstr(err, "nothing was sent"), "%s", err);
    free(out);
    free(err);
    cr_expect_eq(harness_counter(&h, "applied", 2000), 100, "the rerun sent the lines again");

    cr_assert_eq(harness_cli(&h, force, NULL, &out, &err), 0, "%s", err);
    free(out);
    free(err);
    cr_expect_eq(harness_counter(&h, "applied", 2000), 200, "--force did not send again");
    cr_assert_eq(harness_stop(&h), 0);
}
