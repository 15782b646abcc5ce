/*
 * test_security.c - CURVE, the ZAP handler, authenticated identity, safe
 * defaults and `parksync keygen`, against the real daemon.
 *
 * Each test starts parksyncd with [security] curve = on (keys made here
 * with zmq_curve_keypair), drives it with libparksync and raw ZeroMQ
 * sockets, stops it, and reads what the database holds.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "harness.h"
#include "keys.h"
#include "parksync.h"
#include "store.h"
#include "wire.h"

/* One key pair, Z85. */
typedef struct pair {
    char pub[41];
    char sec[41];
} pair_t;

static harness_t h;
static char keydir[64]; /* the daemon's secret key lives here */
static pair_t daemon_k, az, tj, dash, rogue;

static void make_pair(pair_t *p)
{
    cr_assert_eq(zmq_curve_keypair(p->pub, p->sec), 0);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

/* Starts the daemon with CURVE on; subscriber_auth as given. */
static void start_secure(bool subscriber_auth)
{
    char ini[1024], path[128], text[128];

    snprintf(keydir, sizeof keydir, "/tmp/parksync-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(keydir));
    make_pair(&daemon_k);
    make_pair(&az);
    make_pair(&tj);
    make_pair(&dash);
    make_pair(&rogue);
    snprintf(path, sizeof path, "%s/daemon.key", keydir);
    snprintf(text, sizeof text, "# test\n%s\n", daemon_k.sec);
    write_file(path, text, 0600);
    snprintf(ini, sizeof ini,
             "[limits]\nsummary_interval_ms = 0\n\n"
             "[security]\ncurve = on\nsecret_key_file = %s\nsubscriber_auth = %s\n\n"
             "[ministry AZ-MOE]\ncountry = AZ\nkeys = %s\n\n"
             "[ministry TJ-MIT]\ncountry = TJ\nkeys = %s\n\n"
             "[subscriber dash1]\nkeys = %s\n",
             path, subscriber_auth ? "on" : "off", az.pub, tj.pub, dash.pub);
    cr_assert_eq(harness_init(&h, ini), 0);
    memcpy(h.server_key, daemon_k.pub, 41);
    memcpy(h.client_public, az.pub, 41);
    memcpy(h.client_secret, az.sec, 41);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start; see %s", h.log);
}

static void teardown(void)
{
    char cmd[128];

    harness_cleanup(&h);
    if (keydir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
        (void)system(cmd);
        keydir[0] = '\0';
    }
}

/* Stops the daemon, returns its log (caller frees). */
static char *stop_and_log(void)
{
    cr_assert_eq(harness_stop(&h), 0, "daemon did not exit cleanly");
    char *log = harness_slurp(h.log);
    cr_assert_not_null(log);
    return log;
}

static ps_producer_t *producer(const char *id, const pair_t *k, int timeout_ms, ps_err_t *err)
{
    ps_producer_options_t o;

    harness_producer_options(&h, &o, id);
    o.connect_timeout_ms = timeout_ms;
    o.ack_timeout_ms = 200;
    if (k) {
        o.server_public_key = daemon_k.pub;
        o.secret_key = k->sec;
    }
    return ps_producer_new(&o, err);
}

static store_t *open_db(void)
{
    store_config_t cfg;
    char err[256];
    store_t *s;

    store_config_init(&cfg);
    cfg.path = h.db;
    s = store_open(&cfg, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    return s;
}

typedef struct found {
    int n;
    char reasons[1024];
} found_t;

static int collect(void *arg, const store_conflict_t *c)
{
    found_t *f = arg;
    f->n++;
    strncat(f->reasons, c->reason, sizeof f->reasons - strlen(f->reasons) - 2);
    strcat(f->reasons, "|");
    return 0;
}

/* ---------------------------------------------------------------- tests */

Test(security, unknown_key_is_refused_and_nothing_reaches_the_store, .fini = teardown,
     .timeout = 60)
{
    ps_producer_t *p;
    harness_park_t pu;
    ps_err_t err;
    store_producer_stats_t st;

    start_secure(false);
    /* subscriber_auth = off: an unlisted key may read (query, publish) but
     * its updates never reach the daemon: no ack ever comes. */
    p = producer("ROGUE", &rogue, 5000, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    harness_park(&pu, "AZ-ROGUE", "AZ");
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    cr_expect_eq(ps_producer_flush(p, 1500), PS_ERR_TIMEOUT);
    ps_producer_destroy(&p);
    /* Raw PUB with the unknown key: updates go nowhere. */
    {
        void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
        int zero = 0;
        uint8_t buf[512];
        size_t len;
        zmq_setsockopt(pub, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(pub, ZMQ_CURVE_SERVERKEY, daemon_k.pub, 40);
        zmq_setsockopt(pub, ZMQ_CURVE_PUBLICKEY, rogue.pub, 40);
        zmq_setsockopt(pub, ZMQ_CURVE_SECRETKEY, rogue.sec, 40);
        cr_assert_eq(zmq_connect(pub, h.ingest), 0);
        harness_park(&pu, "AZ-ROGUE", "AZ");
        pu.u.has_version = pu.u.has_sequence = pu.u.has_event_time_us = true;
        pu.u.version = 1;
        pu.u.producer_id = (char *)"AZ-MOE"; /* claims to be the real ministry */
        pu.u.event_time_us = wire_now_us();
        for (uint64_t i = 1; i <= 20; i++) {
            pu.u.sequence = i;
            len = parksync__v1__update__pack(&pu.u, buf);
            zmq_send(pub, "park", 4, ZMQ_SNDMORE);
            zmq_send(pub, buf, len, 0);
            usleep(20000);
        }
        zmq_close(pub);
        zmq_ctx_term(ctx);
    }
    /* The real ministry still works, from sequence 1: nothing of the rogue's
     * consumed AZ-MOE's sequence. */
    p = producer("AZ-MOE", &az, 5000, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    cr_assert_eq(ps_producer_last_acked(p), 0);
    harness_park(&pu, "AZ-SUMGAIT-CHEM", "AZ");
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    ps_producer_destroy(&p);
    char *log = stop_and_log();
    cr_expect(strstr(log, "refused a CURVE handshake") != NULL, "no denial logged:\n%s", log);
    cr_expect(strstr(log, "unknown key") != NULL);
    cr_expect(strstr(log, "updates dropped") != NULL);
    free(log);
    store_t *s = open_db();
    cr_expect_eq(store_producer_stats(s, "ROGUE", &st), -ENOENT);
    cr_assert_eq(store_producer_stats(s, "AZ-MOE", &st), 0);
    cr_expect_eq(st.last_sequence, 1, "AZ-MOE at %" PRIu64, st.last_sequence);
    cr_expect_eq(st.applied, 1);
    found_t f = {0};
    store_conflict_filter_t cf = {0};
    cr_assert_eq(store_conflicts(s, &cf, collect, &f), 0);
    cr_expect_eq(f.n, 0, "conflicts: %s", f.reasons);
    store_close(&s);
}

Test(security, ministry_cannot_write_for_another_country_or_producer, .fini = teardown,
     .timeout = 60)
{
    ps_producer_t *p;
    harness_park_t pu;
    ps_err_t err;
    store_producer_stats_t st;

    start_secure(false);
    p = producer("AZ-MOE", &az, 5000, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    harness_park(&pu, "TJ-DUSHANBE", "TJ"); /* AZ writes a TJ park */
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    harness_park(&pu, "AZ-ALAT", "AZ"); /* and its own */
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    ps_producer_destroy(&p);
    /* AZ's key, TJ's producer id: refused without touching TJ-MIT's sequence. */
    p = producer("TJ-MIT", &az, 5000, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    harness_park(&pu, "AZ-FORGED", "AZ");
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    cr_expect_eq(ps_producer_flush(p, 1500), PS_ERR_TIMEOUT);
    ps_producer_destroy(&p);
    /* TJ-MIT itself then starts at 1 as if nothing happened. */
    p = producer("TJ-MIT", &tj, 5000, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    harness_park(&pu, "TJ-DUSHANBE", "TJ");
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    ps_producer_destroy(&p);

    char *log = stop_and_log();
    cr_expect(strstr(log, "refused by the store") != NULL, "refusal not logged");
    cr_expect(strstr(log, "refused by the store 1;") != NULL, "refusal not counted once");
    cr_expect(strstr(log, "is not one of its producers") != NULL, "forgery not logged");
    /* go-back-N resends it: each copy is refused and counted */
    cr_expect(strstr(log, "updates dropped for a forged producer") != NULL &&
                  strstr(log, " 0 updates dropped for a forged producer") == NULL,
              "forgery not counted");
    free(log);

    store_t *s = open_db();
    cr_assert_eq(store_producer_stats(s, "AZ-MOE", &st), 0);
    cr_expect_eq(st.last_sequence, 2);
    cr_expect_eq(st.rejected, 1);
    cr_assert_eq(store_producer_stats(s, "TJ-MIT", &st), 0);
    cr_expect_eq(st.last_sequence, 1);
    cr_expect_eq(st.applied, 1);
    found_t f = {0};
    store_conflict_filter_t cf = {0};
    cr_assert_eq(store_conflicts(s, &cf, collect, &f), 0);
    cr_expect_geq(f.n, 2, "conflicts: %s", f.reasons);
    cr_expect(strstr(f.reasons, "not authoritative: AZ-MOE does not own park TJ") != NULL, "%s",
              f.reasons);
    cr_expect(strstr(f.reasons, "AZ-MOE does not speak for producer TJ-MIT") != NULL, "%s",
              f.reasons);
    store_close(&s);
}

/* Takes a snapshot of parks with key k (NULL: plain); returns its error. */
static ps_err_t subscribe(const pair_t *k, int *records)
{
    return harness_snapshot(&h, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK,
                            k ? daemon_k.pub : NULL, k ? k->sec : NULL, 1500, records);
}

Test(security, subscriber_without_an_allowed_key_gets_nothing, .fini = teardown, .timeout = 60)
{
    ps_producer_t *p;
    harness_park_t pu;
    ps_err_t err;
    int n = 0;

    start_secure(true);
    /* A raw SUB with an unknown key, subscribed to everything. */
    void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_CURVE_SERVERKEY, daemon_k.pub, 40);
    zmq_setsockopt(sub, ZMQ_CURVE_PUBLICKEY, rogue.pub, 40);
    zmq_setsockopt(sub, ZMQ_CURVE_SECRETKEY, rogue.sec, 40);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    cr_assert_eq(zmq_connect(sub, h.publish), 0);

    p = producer("AZ-MOE", &az, 5000, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    harness_park(&pu, "AZ-SUMGAIT-CHEM", "AZ");
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 5000), PS_OK);
    cr_assert_eq(ps_producer_flush(p, 10000), PS_OK);
    ps_producer_destroy(&p);

    cr_expect_eq(subscribe(&dash, &n), PS_OK);
    cr_expect_eq(n, 1, "the allowed subscriber sees the park");
    cr_expect_eq(subscribe(&rogue, &n), PS_ERR_TIMEOUT, "an unknown key gets no snapshot");
    cr_expect_eq(n, 0);
    cr_expect_neq(subscribe(NULL, &n), PS_OK, "a plain client gets nothing either");
    cr_expect_eq(n, 0);

    /* Heartbeats flow every second: the rogue SUB would have had some. */
    zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
    cr_expect_eq(zmq_poll(&item, 1, 1500), 0, "the unknown key received a publication");
    zmq_close(sub);
    zmq_ctx_term(ctx);
    char *log = stop_and_log();
    cr_expect(strstr(log, "refused a CURVE handshake on parksync.") != NULL);
    free(log);
}

/* Runs the daemon's --check-config on text, with a secret key file at
 * hand (the check reads it when CURVE is on); returns its exit status. */
static int check_config(const char *text)
{
    char dir[] = "/tmp/parksync-cc-XXXXXX", path[64], key[64], cmd[256], full[1024];
    char pub[41], sec[41], line[48];
    int rc;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(key, sizeof key, "%s/daemon.key", dir);
    cr_assert_eq(zmq_curve_keypair(pub, sec), 0);
    snprintf(line, sizeof line, "%s\n", sec);
    write_file(key, line, 0600);
    snprintf(path, sizeof path, "%s/c.conf", dir);
    snprintf(full, sizeof full, "%s\n[security]\nsecret_key_file = %s\n", text, key);
    write_file(path, full, 0644);
    snprintf(cmd, sizeof cmd, "%s --check-config -c %s >/dev/null 2>&1", PARKSYNCD_BIN, path);
    rc = system(cmd);
    unlink(path);
    unlink(key);
    rmdir(dir);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

Test(security, remote_endpoints_need_curve_or_an_explicit_insecure_setting)
{
    cr_expect_neq(check_config("[endpoints]\ningest = tcp://0.0.0.0:7101\n"), 0);
    cr_expect_eq(check_config("[endpoints]\ningest = tcp://0.0.0.0:7101\n"
                              "[security]\nallow_insecure_remote = yes\n"),
                 0);
    cr_expect_eq(check_config("[endpoints]\ningest = tcp://0.0.0.0:7101\n"
                              "[security]\ncurve = on\n"),
                 0);
    cr_expect_eq(check_config("[endpoints]\ningest = tcp://127.0.0.1:7101\n"), 0);
    cr_expect_neq(check_config("[security]\nsubscriber_auth = on\n"), 0);
    cr_expect_neq(check_config("[ministry AZ]\ncountry = AZ\nkeys = not-a-key\n"), 0);
}

Test(security, keygen_writes_private_files_and_never_overwrites)
{
    char dir[] = "/tmp/parksync-kg-XXXXXX", cmd[256], path[96], z[41], err[256];
    struct stat st;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s keygen %s/az >/dev/null 2>&1", PARKSYNC_BIN, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/az.key", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);
    cr_expect_eq(keys_read_file(path, true, z, err, sizeof err), 0, "%s", err);
    char sec[41];
    memcpy(sec, z, 41);
    snprintf(path, sizeof path, "%s/az.pub", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0644);
    cr_expect_eq(keys_read_file(path, false, z, err, sizeof err), 0, "%s", err);
    char derived[41];
    cr_assert_eq(zmq_curve_public(derived, sec), 0);
    cr_expect_str_eq(derived, z, "the pair belongs together");
    /* again: refused, files unchanged */
    int rc = system(cmd);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    cr_expect_eq(keys_read_file(path, false, derived, err, sizeof err), 0);
    cr_expect_str_eq(derived, z);
    /* a secret key open to others is refused by the reader */
    snprintf(path, sizeof path, "%s/az.key", dir);
    chmod(path, 0644);
    cr_expect_eq(keys_read_file(path, true, z, err, sizeof err), -EPERM);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd);
}

Test(security, z85_check_agrees_with_libzmq)
{
    uint8_t bin[32], back[32];
    char z85[41];

    for (int i = 0; i < 32; i++)
        bin[i] = (uint8_t)(i * 37 + 11);
    cr_assert_not_null(zmq_z85_encode(z85, bin, 32));
    cr_assert(keys_z85_valid(z85));
    cr_assert_not_null(zmq_z85_decode(back, z85));
    cr_assert_arr_eq(bin, back, 32);
    cr_expect_not(keys_z85_valid("short"));
    cr_expect_not(keys_z85_valid(NULL));
    /* "#####" is 85^5 - 1 > 2^32 - 1: not the encoding of four bytes */
    cr_expect_not(keys_z85_valid("#####aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    cr_expect_null(zmq_z85_decode(back, "#####aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    cr_expect_not(keys_z85_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""));
}
