/*
 * be_parksync.c - parksync itself: the real parksyncd through the test
 * harness, on TCP loopback like the peers, fed by libparksync's producer
 * and read by its subscriber.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "peers.h"

/* One producer. */
typedef struct ps_conn {
    harness_t *h;       /* the daemon */
    ps_producer_t *p;   /* the producer */
    uint64_t reported;  /* acks reported so far: tags 0 .. reported-1 */
    uint64_t first_seq; /* sequence of tag 0, minus 1 */
} ps_conn_t;

/* Points the client-facing endpoints at free loopback ports, as the
 * peers listen; the control socket is local only (ipc://) by design. */
static int tcp_endpoints(harness_t *h)
{
    char *eps[] = {h->ingest, h->publish, h->query};

    for (size_t i = 0; i < sizeof eps / sizeof eps[0]; i++) {
        int port = peer_free_port();
        if (port < 0)
            return -1;
        snprintf(eps[i], HARNESS_PATH, "tcp://127.0.0.1:%d", port);
    }
    return 0;
}

static int parksync_start(peer_server_t *s)
{
    harness_t *h = calloc(1, sizeof *h);
    const char *more = getenv("PEERS_PARKSYNC_STORE");
    char ini[512];

    if (h == NULL)
        return -1;
    s->priv = h;
    /* PEERS_PARKSYNC_STORE: more [store] lines, to weigh a setting */
    if ((size_t)snprintf(ini, sizeof ini, "[store]\nsynchronous = %s\n%s\n",
                         s->durability == PEER_FSYNC ? "full" : "normal",
                         more ? more : "") >= sizeof ini) {
        fprintf(stderr, "peers: PEERS_PARKSYNC_STORE is too long\n");
        return -1;
    }
    if (harness_init_at(h, ini, "info") < 0 || tcp_endpoints(h) < 0 ||
        harness_write_config(h) < 0 || harness_start(h) < 0) {
        fprintf(stderr, "peers: parksyncd did not start (see %s)\n", h->log);
        return -1;
    }
    s->pid = h->pid;
    return 0;
}

/* A sample's value in Prometheus text; -1 when absent. */
static double sample_value(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *l = text; l != NULL; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, series, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    return -1;
}

/* One pause histogram of the daemon, on one line: how many, their total,
 * and how many took longer than 1, 5, 20 and 50 ms. */
static void print_pauses(const char *text, const char *what, const char *name)
{
    static const char *const over[] = {"0.001", "0.005", "0.02", "0.05"};
    char series[128];
    double count, sum, longer[4];

    snprintf(series, sizeof series, "%s_count", name);
    count = sample_value(text, series);
    snprintf(series, sizeof series, "%s_sum", name);
    sum = sample_value(text, series);
    for (int i = 0; i < 4; i++) {
        snprintf(series, sizeof series, "%s_bucket{le=\"%s\"}", name, over[i]);
        longer[i] = count - sample_value(text, series);
    }
    fprintf(stderr, " %s %.0f (%.0f ms in all; over 1/5/20/50 ms: %.0f/%.0f/%.0f/%.0f)", what,
            count, sum * 1e3, longer[0], longer[1], longer[2], longer[3]);
}

/* The daemon's own account of where the loop waited (parksync metrics):
 * commits, the WAL starting over, and its passes as a whole; and where
 * acks waited: the WAL's syncs (synchronous = full), which the loop
 * waits for only when it syncs itself. */
static void print_daemon_pauses(const harness_t *h)
{
    char *out = NULL, *err = NULL;

    if (harness_cli(h, (const char *const[]){"metrics", NULL}, NULL, &out, &err) == 0 && out) {
        fprintf(stderr, "peers: parksyncd paused for");
        print_pauses(out, "commits", "parksync_commit_seconds");
        print_pauses(out, "WAL restarts", "parksync_wal_reset_seconds");
        print_pauses(out, "loop passes", "parksync_loop_pass_seconds");
        fprintf(stderr, "; acks waited for");
        print_pauses(out, "WAL syncs", "parksync_wal_sync_seconds");
        fprintf(stderr, "\n");
    }
    free(out);
    free(err);
}

static void parksync_stop(peer_server_t *s)
{
    harness_t *h = s->priv;

    if (h != NULL) {
        print_daemon_pauses(h);
        harness_stop(h);
        harness_cleanup(h);
        free(h);
    }
    s->priv = NULL;
    s->pid = 0;
    peer_server_stop(s); /* the directory made for it, unused */
}

static void *parksync_connect(peer_server_t *s, unsigned window)
{
    ps_conn_t *c = calloc(1, sizeof *c);
    ps_producer_options_t o;
    char outbox[HARNESS_PATH + 16];
    ps_err_t err;

    if (c == NULL)
        return NULL;
    c->h = s->priv;
    harness_producer_options(c->h, &o, PEER_PRODUCER_ID);
    snprintf(outbox, sizeof outbox, "%s/outbox.db", c->h->dir);
    /* In memory by default: the peers' clients keep nothing on disk. */
    o.outbox_path = getenv("PEERS_OUTBOX") != NULL ? outbox : NULL;
    o.window = window;
    if ((c->p = ps_producer_new(&o, &err)) == NULL) {
        fprintf(stderr, "peers: parksync producer: %s\n", ps_strerror(err));
        free(c);
        return NULL;
    }
    c->first_seq = ps_producer_last_sent(c->p);
    return c;
}

static int parksync_put(void *cv, const peer_record_t *r, uint64_t tag)
{
    ps_conn_t *c = cv;
    ps_err_t err = ps_producer_send(c->p, &r->update, NULL, 60000);

    (void)tag;
    if (err != PS_OK)
        fprintf(stderr, "peers: parksync send: %s %s\n", ps_strerror(err),
                ps_producer_last_error(c->p));
    return err == PS_OK ? 0 : -1;
}

static int parksync_kick(void *cv)
{
    ps_conn_t *c = cv;
    return ps_producer_poll(c->p) == PS_OK ? 0 : -1;
}

/* Reports acks newer than the last report: their count. */
static long report(ps_conn_t *c, peer_ack_fn *fn, void *arg)
{
    uint64_t acked = ps_producer_last_acked(c->p) - c->first_seq;
    long n = (long)(acked - c->reported);

    if (n > 0)
        fn(arg, c->reported, (uint64_t)n);
    c->reported = acked;
    return n;
}

/* Waits in ps_producer_wait, which returns when anything arrives (an
 * ack, or a heartbeat: then it waits again for what is left). */
static long parksync_poll(void *cv, int64_t timeout_us, peer_ack_fn *fn, void *arg)
{
    ps_conn_t *c = cv;
    int64_t deadline = peer_now_us() + timeout_us, left = timeout_us;

    for (;;) {
        if (ps_producer_wait(c->p, left > 0 ? left : 0) != PS_OK)
            return -1;
        long n = report(c, fn, arg);
        left = deadline - peer_now_us();
        if (n > 0 || left <= 0)
            return n;
    }
}

static long parksync_snapshot(peer_server_t *s, uint64_t expect)
{
    ps_subscriber_options_t o;
    ps_subscriber_t *sub;
    ps_event_t ev;
    ps_err_t err;
    long n = 0;

    (void)expect;
    harness_subscriber_options(s->priv, &o);
    o.live = false;
    o.timeout_ms = 30000;
    /* The residents only: the daemon also keeps records it derives
     * (summaries), which the peers have no counterpart of. */
    o.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    if ((sub = ps_subscriber_new(&o, &err)) == NULL) {
        fprintf(stderr, "peers: parksync subscriber: %s\n", ps_strerror(err));
        return -1;
    }
    while ((err = ps_subscriber_next(sub, &ev, 30000)) == PS_OK) {
        if (ev.kind == PS_EVENT_RECORD)
            n++;
        else if (ev.kind == PS_EVENT_SNAPSHOT_END)
            break;
    }
    if (err != PS_OK) {
        fprintf(stderr, "peers: parksync snapshot: %s\n", ps_strerror(err));
        n = -1;
    }
    ps_subscriber_destroy(&sub);
    return n;
}

static long parksync_revisions(void *cv)
{
    ps_conn_t *c = cv;
    Parksync__V1__ControlReply *rep = harness_status(c->h, 5000);
    long rev = -1;

    if (rep == NULL)
        return -1;
    if (rep->status != NULL && rep->status->has_head_revision)
        rev = (long)rep->status->head_revision;
    parksync__v1__control_reply__free_unpacked(rep, NULL);
    return rev;
}

static void parksync_close(void *cv)
{
    ps_conn_t *c = cv;

    if (c == NULL)
        return;
    ps_producer_destroy(&c->p);
    free(c);
}

const peer_ops_t peer_parksync = {
    .name = "parksync",
    .start = parksync_start,
    .stop = parksync_stop,
    .connect = parksync_connect,
    .put = parksync_put,
    .kick = parksync_kick,
    .poll = parksync_poll,
    .snapshot = parksync_snapshot,
    .revisions = parksync_revisions,
    .close = parksync_close,
};
