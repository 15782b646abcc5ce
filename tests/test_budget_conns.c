/*
 * test_budget_conns.c - what a connection may cost the daemon: the
 * per-socket connection budget under systemd's default open-file limit,
 * the handshake timeout, handshake failures counted by reason, and keys
 * removed by a reload losing their connections.
 *
 * Attackers here are raw sockets (AF_UNIX to the harness's ipc paths,
 * or libzmq sockets with the wrong mechanism or key); the well-behaved
 * clients are libparksync's producer and subscriber, connected before
 * the attack, which must keep their service throughout.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define ATTACKERS 1100 /* the review's figure: over the 1,024 of systemd's default */

static harness_t h;
static int attack[ATTACKERS];
static int n_attack;
static char keydir[64];

static void teardown(void)
{
    char cmd[128];

    for (int i = 0; i < n_attack; i++)
        close(attack[i]);
    n_attack = 0;
    harness_cleanup(&h);
    if (keydir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", keydir);
        (void)system(cmd);
        keydir[0] = '\0';
    }
}

/* A raw stream connection to an ipc:// endpoint that never speaks. */
static int connect_raw(const char *endpoint)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", endpoint + strlen("ipc://"));
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    return fd;
}

/* The status entry of one socket ("ingest", ...); *reply to free. */
static const Parksync__V1__SocketConnections *conns_of(Parksync__V1__ControlReply **reply,
                                                       const char *socket)
{
    *reply = harness_status(&h, 5000);
    cr_assert_not_null(*reply, "no status from the daemon (alive: %d)", harness_ping(&h, 100));
    for (size_t i = 0; i < (*reply)->status->n_connections; i++)
        if (strcmp((*reply)->status->connections[i]->socket, socket) == 0)
            return (*reply)->status->connections[i];
    cr_assert_fail("status has no connections entry for %s", socket);
    return NULL;
}

static uint64_t handshakes_failed(const Parksync__V1__SocketConnections *sc, const char *why)
{
    for (size_t i = 0; i < sc->n_handshakes_failed; i++)
        if (strcmp(sc->handshakes_failed[i]->name, why) == 0)
            return sc->handshakes_failed[i]->value;
    return 0;
}

/* Polls the status until socket's connections satisfy want, or fails. */
typedef bool (*conns_pred_t)(const Parksync__V1__SocketConnections *sc, uint64_t arg);

static void wait_conns(const char *socket, conns_pred_t want, uint64_t arg, int timeout_ms,
                       const char *what)
{
    int64_t deadline = wire_monotonic_ms() + timeout_ms;
    Parksync__V1__ControlReply *reply;
    const Parksync__V1__SocketConnections *sc;

    for (;;) {
        sc = conns_of(&reply, socket);
        bool ok = want(sc, arg);
        uint64_t open = sc->open, accepted = sc->accepted, refused = sc->refused;
        uint64_t mech = handshakes_failed(sc, "mechanism"),
                 crypto = handshakes_failed(sc, "crypto"), denied = handshakes_failed(sc, "denied"),
                 malformed = handshakes_failed(sc, "malformed"),
                 incomplete = handshakes_failed(sc, "incomplete");
        parksync__v1__control_reply__free_unpacked(reply, NULL);
        if (ok)
            return;
        cr_assert(wire_monotonic_ms() < deadline,
                  "%s: %s not reached within %d ms (open %" PRIu64 ", accepted %" PRIu64
                  ", refused %" PRIu64 "; handshakes failed: mechanism %" PRIu64 ", crypto %" PRIu64
                  ", denied %" PRIu64 ", malformed %" PRIu64 ", incomplete %" PRIu64 ")",
                  socket, what, timeout_ms, open, accepted, refused, mech, crypto, denied,
                  malformed, incomplete);
        usleep(20000);
    }
}

static bool accepted_at_least(const Parksync__V1__SocketConnections *sc, uint64_t n)
{
    return sc->accepted >= n;
}

static bool open_at_most(const Parksync__V1__SocketConnections *sc, uint64_t n)
{
    return sc->open <= n;
}

static bool incomplete_at_least(const Parksync__V1__SocketConnections *sc, uint64_t n)
{
    return handshakes_failed(sc, "incomplete") >= n;
}

/* Sends one park and expects its ack within ms. */
static ps_err_t push(ps_producer_t *p, const char *id, const char *cc, int ms)
{
    harness_park_t pu;

    harness_park(&pu, id, cc);
    cr_assert_eq(ps_producer_send(p, &pu.u, NULL, 1000), PS_OK);
    return ps_producer_flush(p, ms);
}

/* Reads the subscriber until a record of park `id` arrives within ms;
 * false on timeout or when the subscriber fails (a removed key). */
static bool receives(ps_subscriber_t *sub, const char *id, int ms)
{
    int64_t deadline = wire_monotonic_ms() + ms;
    ps_event_t ev;

    while (wire_monotonic_ms() < deadline) {
        ps_err_t rc = ps_subscriber_next(sub, &ev, 50);
        if (rc == PS_ERR_TIMEOUT)
            continue;
        if (rc != PS_OK)
            return false;
        if (ev.kind == PS_EVENT_RECORD && ev.record && ev.record->park &&
            strcmp(ev.record->park->park_id, id) == 0)
            return true;
    }
    return false;
}

static ps_subscriber_t *subscriber_ready(const ps_subscriber_options_t *o)
{
    ps_err_t err;
    ps_event_t ev;
    ps_subscriber_t *sub = ps_subscriber_new(o, &err);

    cr_assert_not_null(sub, "%s", ps_strerror(err));
    do
        cr_assert_eq(ps_subscriber_next(sub, &ev, 5000), PS_OK, "no snapshot end");
    while (ev.kind != PS_EVENT_SNAPSHOT_END);
    return sub;
}

/* ---------------------------------------------------------------- the budget */

/* The review's attack: 1,100 idle connections under systemd's default
 * soft limit of 1,024 open files, which aborted the daemon. Now the
 * daemon raises its soft limit, closes every connection over the
 * budget at once, and the producer and subscriber connected before keep
 * their service. */
Test(conns, idle_connections_over_the_budget_are_closed_and_service_continues, .fini = teardown,
     .timeout = 120)
{
    struct rlimit was, low;
    ps_producer_options_t po;
    ps_subscriber_options_t so;
    ps_producer_t *p;
    ps_subscriber_t *sub;
    ps_err_t err;
    char limits_path[64], line[256];
    FILE *limits;
    unsigned long long soft = 0;

    cr_assert_eq(harness_init(&h, "[limits]\nmax_connections = 1024\n"), 0);
    /* the daemon starts as systemd would start it: soft 1,024 */
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &was), 0);
    low = was;
    low.rlim_cur = 1024;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    int started = harness_start(&h);
    /* the attacker needs more than 1,024 descriptors itself */
    low.rlim_cur = low.rlim_max < 4096 ? low.rlim_max : 4096;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    cr_assert_eq(started, 0, "see %s", h.log);
    cr_assert_geq(low.rlim_max, 4096, "the hard open-file limit is too low for the attack");

    /* it raised its own limit above what three budgets need */
    snprintf(limits_path, sizeof limits_path, "/proc/%d/limits", (int)h.pid);
    limits = fopen(limits_path, "r");
    cr_assert_not_null(limits, "%s: %s", limits_path, strerror(errno));
    while (fgets(line, sizeof line, limits))
        if (sscanf(line, "Max open files %llu", &soft) == 1)
            break;
    fclose(limits);
    cr_expect_geq(soft, 3 * 1024 + 256, "soft limit %llu", soft);

    harness_producer_options(&h, &po, "AZ-MOE");
    p = ps_producer_new(&po, &err);
    cr_assert_not_null(p, "%s", ps_strerror(err));
    cr_assert_eq(push(p, "AZ-BEFORE", "AZ", 5000), PS_OK);
    harness_subscriber_options(&h, &so);
    sub = subscriber_ready(&so);

    for (n_attack = 0; n_attack < ATTACKERS; n_attack++)
        attack[n_attack] = connect_raw(h.ingest);
    /* every one was seen, and the budget holds */
    wait_conns("ingest", accepted_at_least, ATTACKERS + 1, 20000, "all accepted");
    wait_conns("ingest", open_at_most, 1024, 10000, "open within the budget");

    /* the connections before the attack keep their service */
    for (int i = 0; i < 5; i++) {
        char id[32];
        snprintf(id, sizeof id, "AZ-DURING-%d", i);
        cr_expect_eq(push(p, id, "AZ", 1000), PS_OK, "no ack within 1 s during the attack");
        cr_expect(receives(sub, id, 2000), "the subscriber missed %s", id);
    }
    /* new clients on the other sockets are not affected */
    {
        Parksync__V1__ControlReply *reply;
        const Parksync__V1__SocketConnections *sc = conns_of(&reply, "ingest");
        cr_expect_geq(sc->refused, ATTACKERS + 1 - 1024, "refused %" PRIu64, sc->refused);
        parksync__v1__control_reply__free_unpacked(reply, NULL);
    }
    ps_subscriber_destroy(&sub);
    sub = subscriber_ready(&so); /* a fresh snapshot on query */
    ps_subscriber_destroy(&sub);

    /* the attackers leave: the count comes back */
    for (int i = 0; i < n_attack; i++)
        close(attack[i]);
    n_attack = 0;
    wait_conns("ingest", open_at_most, 1, 10000, "back to the producer alone");
    cr_expect_eq(push(p, "AZ-AFTER", "AZ", 1000), PS_OK);
    ps_producer_destroy(&p);
    cr_assert_eq(harness_stop(&h), 0, "the daemon did not exit cleanly; see %s", h.log);
}

/* A connection that never finishes its handshake is closed after
 * handshake_timeout_ms and counted. */
Test(conns, a_handshake_that_never_finishes_is_closed, .fini = teardown, .timeout = 60)
{
    cr_assert_eq(harness_init(&h, "[limits]\nhandshake_timeout_ms = 300\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "see %s", h.log);
    for (n_attack = 0; n_attack < 10; n_attack++)
        attack[n_attack] = connect_raw(h.query);
    for (int i = 0; i < n_attack; i++) {
        struct pollfd pfd = {.fd = attack[i], .events = POLLIN};
        char buf[256];
        ssize_t got = 1;
        int64_t deadline = wire_monotonic_ms() + 5000;
        /* the daemon's greeting, then end of stream */
        while (got > 0 && wire_monotonic_ms() < deadline)
            if (poll(&pfd, 1, 100) == 1)
                got = read(attack[i], buf, sizeof buf);
        cr_expect_leq(got, 0, "connection %d still open after 5 s", i);
    }
    wait_conns("query", incomplete_at_least, 10, 5000, "10 incomplete handshakes");
    wait_conns("query", open_at_most, 0, 5000, "no connection left");
    cr_assert_eq(harness_stop(&h), 0);
}

/* ---------------------------------------------------------------- CURVE */

typedef struct pair {
    char pub[41];
    char sec[41];
} pair_t;

static pair_t daemon_k, az, az2, tj, dash, dash2, rogue;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
    chmod(path, 0600);
}

/* The config with CURVE on; az_key is AZ-MOE's key, dash2 may be absent. */
static void secure_ini(char *ini, size_t size, const char *az_key, bool with_dash2)
{
    char sec2[128] = "";

    if (with_dash2)
        snprintf(sec2, sizeof sec2, "\n[subscriber dash2]\nkeys = %s\n", dash2.pub);
    snprintf(ini, size,
             "[security]\ncurve = on\nsecret_key_file = %s/daemon.key\nsubscriber_auth = on\n\n"
             "[ministry AZ-MOE]\ncountry = AZ\nkeys = %s\n\n"
             "[ministry TJ-MIT]\ncountry = TJ\nkeys = %s\n\n"
             "[subscriber dash1]\nkeys = %s\n%s",
             keydir, az_key, tj.pub, dash.pub, sec2);
}

static void start_secure(void)
{
    pair_t *all[] = {&daemon_k, &az, &az2, &tj, &dash, &dash2, &rogue};
    char ini[1024], path[128], text[128];

    snprintf(keydir, sizeof keydir, "/tmp/parksync-keys-XXXXXX");
    cr_assert_not_null(mkdtemp(keydir));
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        cr_assert_eq(zmq_curve_keypair(all[i]->pub, all[i]->sec), 0);
    snprintf(path, sizeof path, "%s/daemon.key", keydir);
    snprintf(text, sizeof text, "%s\n", daemon_k.sec);
    write_file(path, text);
    secure_ini(ini, sizeof ini, az.pub, true);
    cr_assert_eq(harness_init(&h, ini), 0);
    memcpy(h.server_key, daemon_k.pub, 41);
    memcpy(h.client_public, az.pub, 41);
    memcpy(h.client_secret, az.sec, 41);
    cr_assert_eq(harness_start(&h), 0, "daemon did not start; see %s", h.log);
}

/* A raw connection that sends a ZMTP 3.0 greeting offering mechanism
 * (RFC 23: signature, version 3.0, mechanism name padded to 20 bytes,
 * as-server 0, filler) and then waits. */
static int greet_raw(const char *endpoint, const char *mechanism)
{
    uint8_t g[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0};
    int fd = connect_raw(endpoint);

    memcpy(g + 12, mechanism, strlen(mechanism));
    cr_assert_eq(write(fd, g, sizeof g), (ssize_t)sizeof g);
    return fd;
}

/* A ZMQ_PUB to ingest with the given security, which tries to handshake. */
static void *attacker(void *ctx, int mechanism, const char *server_key, const pair_t *k)
{
    void *s = zmq_socket(ctx, ZMQ_PUB);
    int zero = 0;

    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (mechanism == ZMQ_CURVE) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server_key, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, k->pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, k->sec, 40);
    }
    cr_assert_eq(zmq_connect(s, h.ingest), 0);
    return s;
}

typedef struct reasons {
    uint64_t mechanism, crypto, denied;
} reasons_t;

static bool reasons_reached(const Parksync__V1__SocketConnections *sc, uint64_t arg)
{
    const reasons_t *r = (const reasons_t *)(uintptr_t)arg;
    return handshakes_failed(sc, "mechanism") >= r->mechanism &&
           handshakes_failed(sc, "crypto") >= r->crypto &&
           handshakes_failed(sc, "denied") >= r->denied;
}

/* NULL and PLAIN against CURVE, CURVE with the wrong server key, and an
 * unknown client key: each refused and counted under its reason, in
 * status and in the Prometheus text. */
Test(conns, refused_handshakes_are_counted_by_reason, .fini = teardown, .timeout = 60)
{
    void *ctx = zmq_ctx_new();
    void *s[4];
    reasons_t want = {2, 1, 1};
    char *out = NULL, *errs = NULL, line[128];
    const char *metrics[] = {"metrics", NULL};

    start_secure();
    /* raw greetings: a libzmq client that sees the mismatch first would
     * hang up, and the daemon would count an incomplete handshake */
    attack[n_attack++] = greet_raw(h.ingest, "NULL");
    attack[n_attack++] = greet_raw(h.ingest, "PLAIN");
    s[0] = s[1] = NULL;
    s[2] = attacker(ctx, ZMQ_CURVE, rogue.pub, &az); /* not the daemon's key */
    s[3] = attacker(ctx, ZMQ_CURVE, daemon_k.pub, &rogue);
    wait_conns("ingest", reasons_reached, (uint64_t)(uintptr_t)&want, 10000,
               "mechanism >= 2, crypto >= 1, denied >= 1");
    for (int i = 2; i < 4; i++)
        zmq_close(s[i]);
    zmq_ctx_term(ctx);

    cr_assert_eq(harness_cli(&h, metrics, NULL, &out, &errs), 0, "%s", errs);
    snprintf(line, sizeof line,
             "parksync_handshakes_failed_total{socket=\"ingest\",reason=\"mechanism\"} ");
    cr_expect_not_null(strstr(out, line), "%s", out);
    cr_expect_not_null(strstr(out, "parksync_connections{socket=\"ingest\"}"), "%s", out);
    free(out);
    free(errs);
    cr_assert_eq(harness_stop(&h), 0);
}

/* ---------------------------------------------------------------- revocation */

static ps_producer_t *secure_producer(const char *id, const pair_t *k)
{
    ps_producer_options_t o;
    ps_err_t err;
    ps_producer_t *p;

    harness_producer_options(&h, &o, id);
    o.server_public_key = daemon_k.pub;
    o.secret_key = k->sec;
    o.ack_timeout_ms = 200;
    p = ps_producer_new(&o, &err);
    cr_assert_not_null(p, "%s: %s", id, ps_strerror(err));
    return p;
}

static ps_subscriber_t *secure_subscriber(const pair_t *k)
{
    ps_subscriber_options_t o;

    harness_subscriber_options(&h, &o);
    o.server_public_key = daemon_k.pub;
    o.secret_key = k->sec;
    return subscriber_ready(&o);
}

/* A reload that removes a ministry's key and a subscriber closes their
 * open connections before it answers: the removed key writes nothing
 * more, the removed subscriber reads nothing more, and the others go on
 * after one reconnection. */
Test(conns, a_removed_key_loses_its_connections_at_reload, .fini = teardown, .timeout = 90)
{
    ps_producer_t *paz, *ptj;
    ps_subscriber_t *s1, *s2;
    char ini[1024], *out = NULL, *errs = NULL;
    const char *reload[] = {"reload", NULL};

    start_secure();
    paz = secure_producer("AZ-MOE", &az);
    ptj = secure_producer("TJ-MIT", &tj);
    s1 = secure_subscriber(&dash);
    s2 = secure_subscriber(&dash2);
    cr_assert_eq(push(paz, "AZ-1", "AZ", 5000), PS_OK);
    cr_assert_eq(push(ptj, "TJ-1", "TJ", 5000), PS_OK);
    cr_assert(receives(s1, "TJ-1", 5000));
    cr_assert(receives(s2, "TJ-1", 5000));

    /* AZ-MOE moves to a new key; dash2 goes */
    secure_ini(ini, sizeof ini, az2.pub, false);
    snprintf(h.extra, sizeof h.extra, "%s", ini);
    cr_assert_eq(harness_write_config(&h), 0);
    cr_assert_eq(harness_cli(&h, reload, NULL, &out, &errs), 0, "%s%s", out, errs);
    free(out);
    free(errs);

    /* the old key's connection is gone: nothing it sends is acknowledged */
    cr_expect_eq(push(paz, "AZ-2", "AZ", 2000), PS_ERR_TIMEOUT,
                 "the removed key still writes after the reload");
    /* the others reconnect and go on */
    cr_expect_eq(push(ptj, "TJ-2", "TJ", 5000), PS_OK);
    cr_expect(receives(s1, "TJ-2", 5000), "the listed subscriber lost its service");
    cr_expect_not(receives(s2, "TJ-2", 2000), "the removed subscriber still reads");
    ps_subscriber_destroy(&s1);
    ps_subscriber_destroy(&s2);
    ps_producer_destroy(&paz);
    ps_producer_destroy(&ptj);
    /* the new key works */
    paz = secure_producer("AZ-MOE", &az2);
    cr_expect_eq(push(paz, "AZ-3", "AZ", 5000), PS_OK);
    ps_producer_destroy(&paz);
    cr_assert_eq(harness_stop(&h), 0);
}
