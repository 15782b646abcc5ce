/*
 * cell.c - the measurements, written once against the backend interface:
 * ingest throughput, latency at a fixed offered rate (open loop), loading
 * and late-joiner snapshots. Every ingest and latency run starts its own
 * server on a fresh directory and stops it, as bench_ingest does.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peers.h"

#define POLL_US     100000      /* one wait for acks while the window is full */
#define DRAIN_US    300000000LL /* longest wait for the last acks: 5 minutes */
#define LAG_LIMIT_S 2           /* latency: sends this many seconds late end the run */
#define WARMUP_PART 20          /* latency: the first 1/20 of the updates warm up, unmeasured */

/* Acks of a throughput run: how many came. */
typedef struct counter {
    uint64_t acked; /* updates acknowledged */
} counter_t;

static void count_acks(void *arg, uint64_t first, uint64_t n)
{
    (void)first;
    ((counter_t *)arg)->acked += n;
}

/* Acks of a latency run: each update's due time in, its latency out. */
typedef struct timing {
    uint64_t acked;  /* updates acknowledged, first member as in counter_t */
    int64_t *due_us; /* per tag: when it was due to be sent (open loop) */
    double *lat_ms;  /* per tag: due -> ack, ms */
} timing_t;

static void time_acks(void *arg, uint64_t first, uint64_t n)
{
    timing_t *t = arg;
    int64_t now = peer_now_us();

    for (uint64_t i = first; i < first + n; i++)
        t->lat_ms[i] = (double)(now - t->due_us[i]) / 1000.0;
    t->acked += n;
}

static void server_stop(const peer_system_t *sys, peer_server_t *s)
{
    if (sys->ops->stop != NULL)
        sys->ops->stop(s);
    else
        peer_server_stop(s);
}

/* Starts sys's server in a fresh directory: 0, or -1 with nothing left. */
static int server_start(const peer_settings_t *set, const peer_system_t *sys, peer_server_t *s)
{
    memset(s, 0, sizeof *s);
    s->durability = sys->durability;
    if (peer_server_dir(s, set->parent, sys->ops->name) < 0) {
        fprintf(stderr, "peers: cannot make a directory under %s\n", set->parent);
        return -1;
    }
    if (sys->ops->start(s) < 0) {
        fprintf(stderr, "peers: %s did not start\n", sys->label);
        server_stop(sys, s);
        return -1;
    }
    return 0;
}

/* The window a system runs with: the harness's, or less where its client
 * does better with less (peer_ops_t.window_max). */
static unsigned window_of(const peer_settings_t *set, const peer_ops_t *ops)
{
    return ops->window_max != 0 && ops->window_max < set->window ? ops->window_max : set->window;
}

/* Polls until fewer than window updates (of sent) are unacknowledged:
 * 0, or -1 when the backend failed or nothing came for DRAIN_US. */
static int wait_room(const peer_ops_t *ops, void *c, uint64_t sent, uint64_t window,
                     peer_ack_fn *fn, void *acks)
{
    int64_t deadline = peer_now_us() + DRAIN_US;

    /* Sending pauses here: what a backend still holds must go out, or
     * a window smaller than its batch would wait for ever. */
    if (sent - ((counter_t *)acks)->acked >= window && ops->kick(c) < 0)
        return -1;
    while (sent - ((counter_t *)acks)->acked >= window) {
        if (ops->poll(c, POLL_US, fn, acks) < 0 || peer_now_us() > deadline)
            return -1;
    }
    return 0;
}

/* Sends total updates (record keys in order 0, 1, ... when keys is 0,
 * else random below keys) as fast as the window allows and waits for
 * every ack. 0 or -1. */
static int send_all(const peer_settings_t *set, const peer_ops_t *ops, void *c, uint32_t keys,
                    uint64_t total)
{
    peer_record_t *r = malloc(sizeof *r);
    counter_t acks = {0};
    unsigned seed = set->seed;
    int rc = -1;

    if (r == NULL)
        return -1;
    for (uint64_t i = 0; i < total; i++) {
        uint32_t key = keys == 0 ? (uint32_t)i : (uint32_t)rand_r(&seed) % keys;
        peer_record_make(r, key, i);
        if (wait_room(ops, c, i, window_of(set, ops), count_acks, &acks) < 0 ||
            ops->put(c, r, i) < 0)
            goto out;
    }
    if (wait_room(ops, c, total, 1, count_acks, &acks) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        fprintf(stderr, "peers: %s failed after %llu of %llu acks\n", ops->name,
                (unsigned long long)acks.acked, (unsigned long long)total);
    free(r);
    return rc;
}

peer_ingest_t peer_cell_ingest(const peer_settings_t *set, const peer_system_t *sys, uint32_t keys,
                               uint64_t total)
{
    peer_ingest_t res = {.rate = -1, .revisions = -1};
    peer_server_t s;
    void *c;

    if (server_start(set, sys, &s) < 0)
        return res;
    if ((c = sys->ops->connect(&s, window_of(set, sys->ops))) != NULL) {
        int64_t t0 = peer_now_us();
        if (send_all(set, sys->ops, c, keys, total) == 0)
            res.rate = (double)total * 1e6 / (double)(peer_now_us() - t0);
        if (sys->ops->revisions != NULL)
            res.revisions = sys->ops->revisions(c);
        sys->ops->close(c);
    }
    server_stop(sys, &s);
    return res;
}

/* The q-quantile of n sorted values. */
static double quantile(const double *v, size_t n, double q)
{
    size_t i = (size_t)(q * (double)n);
    return v[i < n ? i : n - 1];
}

/* Sends count updates on schedule (rate/s from start_us), each due time
 * in t->due_us, and waits for every ack. 0 or -1. */
static int send_on_schedule(const peer_settings_t *set, const peer_ops_t *ops, void *c,
                            uint32_t keys, unsigned rate, uint64_t count, timing_t *t)
{
    peer_record_t *r = malloc(sizeof *r);
    unsigned seed = set->seed;
    int64_t start = peer_now_us() + 10000;
    int rc = -1;

    if (r == NULL)
        return -1;
    for (uint64_t i = 0; i < count; i++) {
        int64_t now;
        t->due_us[i] = start + (int64_t)(i * 1000000 / rate);
        peer_record_make(r, (uint32_t)rand_r(&seed) % keys, i);
        while ((now = peer_now_us()) < t->due_us[i])
            if (ops->poll(c, t->due_us[i] - now, time_acks, t) < 0)
                goto out;
        /* Open loop: a full window delays the send, and that delay counts
         * in the latency, measured from the due time. */
        if (wait_room(ops, c, i, window_of(set, ops), time_acks, t) < 0 || ops->put(c, r, i) < 0 ||
            ops->kick(c) < 0)
            goto out;
        /* A system that cannot keep up at this rate would only build a
         * backlog for minutes: it is reported as failing the rate. The
         * window caps what is in flight, so lateness shows in the send. */
        if (peer_now_us() - t->due_us[i] > LAG_LIMIT_S * 1000000LL) {
            fprintf(stderr, "peers: %s fell %d s behind at %u updates/s, stopped\n", ops->name,
                    LAG_LIMIT_S, rate);
            goto out;
        }
    }
    rc = wait_room(ops, c, count, 1, time_acks, t);
out:
    free(r);
    return rc;
}

peer_latency_t peer_cell_latency(const peer_settings_t *set, const peer_system_t *sys,
                                 uint32_t keys, unsigned rate, int seconds)
{
    peer_latency_t res = {-1, -1, -1};
    uint64_t count = (uint64_t)rate * (uint64_t)seconds, skip = count / WARMUP_PART;
    timing_t t = {.due_us = calloc(count, sizeof(int64_t)),
                  .lat_ms = calloc(count, sizeof(double))};
    peer_server_t s;
    void *c = NULL;

    if (t.due_us == NULL || t.lat_ms == NULL || count <= skip)
        goto out;
    if (server_start(set, sys, &s) < 0)
        goto out;
    if ((c = sys->ops->connect(&s, window_of(set, sys->ops))) != NULL &&
        send_on_schedule(set, sys->ops, c, keys, rate, count, &t) == 0) {
        qsort(t.lat_ms + skip, count - skip, sizeof(double), peer_cmp_double);
        res.p50 = quantile(t.lat_ms + skip, count - skip, 0.50);
        res.p99 = quantile(t.lat_ms + skip, count - skip, 0.99);
        res.p999 = quantile(t.lat_ms + skip, count - skip, 0.999);
    }
    if (c != NULL)
        sys->ops->close(c);
    server_stop(sys, &s);
out:
    free(t.due_us);
    free(t.lat_ms);
    return res;
}

int peer_cell_load(const peer_settings_t *set, const peer_system_t *sys, peer_server_t *s,
                   uint64_t n)
{
    void *c;
    int rc = -1;
    int64_t t0 = peer_now_us();

    if (server_start(set, sys, s) < 0)
        return -1;
    if ((c = sys->ops->connect(s, window_of(set, sys->ops))) != NULL) {
        rc = send_all(set, sys->ops, c, 0, n);
        sys->ops->close(c);
    }
    if (rc < 0)
        server_stop(sys, s);
    else
        fprintf(stderr, "peers: loaded %llu records into %s in %.0f s\n", (unsigned long long)n,
                sys->label, (double)(peer_now_us() - t0) / 1e6);
    return rc;
}

double peer_cell_snapshot(const peer_system_t *sys, peer_server_t *s, uint64_t n, long *peak_kib)
{
    int64_t t0;
    long got;

    *peak_kib = -1;
    /* VmHWM covers the server's whole life, the load included: restart
     * the peak so that it is the snapshot's. */
    if (peer_proc_reset_peak(s->pid) < 0)
        fprintf(stderr, "peers: cannot reset the peak RSS of %s: it includes the load\n",
                sys->label);
    t0 = peer_now_us();
    got = sys->ops->snapshot(s, n);
    double secs = (double)(peer_now_us() - t0) / 1e6;
    *peak_kib = peer_proc_kib(s->pid, "VmHWM");
    if (got != (long)n) {
        fprintf(stderr, "peers: %s snapshot delivered %ld of %llu records\n", sys->label, got,
                (unsigned long long)n);
        return -1;
    }
    return secs;
}

/* Stops a server peer_cell_load left running. */
void peer_cell_unload(const peer_system_t *sys, peer_server_t *s)
{
    server_stop(sys, s);
}
