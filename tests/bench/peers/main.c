/*
 * main.c - bench_peers: parksync against the systems its users would pick
 * instead, on this machine, with the same records under the same keys.
 * Not a test and never run by CI: tests/bench/peers/run.sh installs the
 * peers, builds this in Release and runs it (see README.md there).
 *
 * Cells, each with rounds interleaved across the systems (every run on a
 * fresh server) and the median of the rounds:
 *   1. ingest over 100,000 random keys, acknowledged updates/s;
 *   2. ingest over 1,000 keys (parksync coalesces a batch's updates to a
 *      key: the revisions it made are shown);
 *   3. latency, open loop, at 1,000 and 20,000 updates/s: p50/p99/p99.9;
 *   4. (-S) a late joiner's snapshot of N records: seconds, server peak RSS.
 * Cells 1-3 run twice: durable pairing (fsync before the ack) and
 * written pairing (fsync within about a second).
 *
 * Options: -n UPDATES per ingest run (200000), -r ROUNDS (3), -t SECONDS
 * per latency run (5), -c CELLS ("123"), -S (add cell 4), -N RECORDS for
 * cell 4 (1000000), -w WINDOW in flight per client (32768), -x NAMES to
 * leave out (e.g. "etcd,nats"), -d DIR for server data (/tmp), -L RATES
 * for cell 3 ("1000,20000"), -P full|normal for one pairing only.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peers.h"

#define MAX_ROUNDS  9 /* most rounds per cell */
#define MAX_SYSTEMS 8 /* most systems in one table */

/* One pairing: parksync first, then what it is compared with. */
typedef struct pairing {
    const char *title;                  /* table heading */
    peer_system_t systems[MAX_SYSTEMS]; /* parksync first */
    size_t count;                       /* systems used */
} pairing_t;

static const pairing_t FULL_PAIRING = {"durable: fsync before the ack",
                                       {{&peer_parksync, PEER_FSYNC, "parksync synchronous=FULL"},
                                        {&peer_etcd, PEER_FSYNC, "etcd 3.4, txns of 128 puts"},
                                        {&peer_redis, PEER_FSYNC, "redis 7 appendfsync always"},
                                        {&peer_zmq_echo, PEER_MEMORY, "zeromq echo, no server*"}},
                                       4};

static const pairing_t NORMAL_PAIRING = {
    "written: fsync within about a second",
    {{&peer_parksync, PEER_WRITTEN, "parksync synchronous=NORMAL"},
     {&peer_redis, PEER_WRITTEN, "redis 7 appendfsync everysec"},
     {&peer_nats, PEER_WRITTEN, "nats 2.9 jetstream kv, file"},
     {&peer_mosquitto, PEER_MEMORY, "mosquitto 2.0 QoS1 retained*"},
     {&peer_zmq_echo, PEER_MEMORY, "zeromq echo, no server*"}},
    5};

static const pairing_t SNAPSHOT_SET = {
    "late-joiner snapshot",
    {{&peer_parksync, PEER_WRITTEN, "parksync (ps_subscriber)"},
     {&peer_etcd, PEER_FSYNC, "etcd 3.4 (paged range)"},
     {&peer_redis, PEER_WRITTEN, "redis 7 (SCAN + MGET)"},
     {&peer_nats, PEER_WRITTEN, "nats 2.9 kv (watch all)"},
     {&peer_mosquitto, PEER_MEMORY, "mosquitto 2.0 ('#' retained)*"}},
    5};

/* What the command line asked for. */
typedef struct options {
    peer_settings_t set; /* shared by every cell */
    uint64_t updates;    /* -n: per ingest run */
    int rounds;          /* -r */
    int seconds;         /* -t: per latency run */
    const char *cells;   /* -c, with '4' added by -S */
    uint64_t records;    /* -N: cell 4 */
    const char *exclude; /* -x: comma-separated backend names */
    unsigned rates[4];   /* -L: cell 3's offered rates, updates/s */
    size_t n_rates;
    const char *pairing; /* -P: "full" or "normal" alone; NULL for both */
} options_t;

/* Whether -P leaves out pairing i (0: the durable one, 1: the written). */
static bool pairing_skipped(const options_t *o, size_t i)
{
    return o->pairing != NULL && (i == 0) != (strcmp(o->pairing, "full") == 0);
}

/* Median of n values; failures (< 0) sort first, so it fails only when
 * most rounds failed. */
static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];

    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, peer_cmp_double);
    return s[n / 2];
}

/* The pairing without the systems -x names (parksync always stays). */
static pairing_t filtered(const pairing_t *p, const char *exclude)
{
    pairing_t out = *p;

    out.count = 0;
    for (size_t i = 0; i < p->count; i++) {
        const char *name = p->systems[i].ops->name;
        const char *hit = exclude != NULL ? strstr(exclude, name) : NULL;
        if (i == 0 || hit == NULL)
            out.systems[out.count++] = p->systems[i];
    }
    return out;
}

/* "1.23x", or "-" when either side failed. */
static const char *ratio(char *buf, size_t size, double num, double den)
{
    if (num > 0 && den > 0)
        snprintf(buf, size, "%.2fx", num / den);
    else
        snprintf(buf, size, "-");
    return buf;
}

/* Cells 1 and 2: ingest of o->updates over keys records. */
static void cell_ingest(const options_t *o, const pairing_t *p, uint32_t keys, const char *name)
{
    double rate[MAX_SYSTEMS][MAX_ROUNDS];
    long revs[MAX_ROUNDS];
    char r[16];

    for (int round = 0; round < o->rounds; round++)
        for (size_t s = 0; s < p->count; s++) {
            peer_ingest_t res = peer_cell_ingest(&o->set, &p->systems[s], keys, o->updates);
            rate[s][round] = res.rate;
            if (s == 0)
                revs[round] = res.revisions;
        }
    printf("\n%s, %s: %" PRIu64 " updates, 1 producer, median of %d\n", name, p->title, o->updates,
           o->rounds);
    printf("  ratio = parksync updates/s / peer updates/s (> 1: parksync faster)\n");
    printf("  %-32s %12s %9s\n", "system", "updates/s", "ratio");
    double ps = median(rate[0], o->rounds);
    for (size_t s = 0; s < p->count; s++) {
        double m = median(rate[s], o->rounds);
        printf("  %-32s %12.0f %9s\n", p->systems[s].label, m,
               s == 0 ? "1.00x" : ratio(r, sizeof r, ps, m));
    }
    if (revs[0] >= 0)
        printf("  parksync revisions made per run (coalesced within a commit): %ld of %" PRIu64
               " updates\n",
               revs[0], o->updates);
}

/* Cell 3: latency at rate updates/s over 100,000 keys. */
static void cell_latency(const options_t *o, const pairing_t *p, unsigned rate)
{
    double q[MAX_SYSTEMS][3][MAX_ROUNDS], m[MAX_SYSTEMS][3];
    char r[3][16];

    for (int round = 0; round < o->rounds; round++)
        for (size_t s = 0; s < p->count; s++) {
            peer_latency_t l = peer_cell_latency(&o->set, &p->systems[s], 100000, rate, o->seconds);
            q[s][0][round] = l.p50;
            q[s][1][round] = l.p99;
            q[s][2][round] = l.p999;
        }
    for (size_t s = 0; s < p->count; s++)
        for (int k = 0; k < 3; k++)
            m[s][k] = median(q[s][k], o->rounds);
    printf("\n3. latency, %s: %u updates/s offered for %d s (open loop), send -> ack in ms, "
           "median of %d\n",
           p->title, rate, o->seconds, o->rounds);
    printf("  ratio = peer ms / parksync ms (> 1: parksync better); -1: could not keep up\n");
    printf("  %-32s %8s %8s %8s %8s %8s %8s\n", "system", "p50", "p99", "p99.9", "r50", "r99",
           "r99.9");
    for (size_t s = 0; s < p->count; s++)
        printf("  %-32s %8.2f %8.2f %8.2f %8s %8s %8s\n", p->systems[s].label, m[s][0], m[s][1],
               m[s][2], ratio(r[0], sizeof r[0], m[s][0], m[0][0]),
               ratio(r[1], sizeof r[1], m[s][1], m[0][1]),
               ratio(r[2], sizeof r[2], m[s][2], m[0][2]));
}

/* Cell 4: every system loaded at once, then rounds of snapshots. */
static void cell_snapshot(const options_t *o, const pairing_t *p)
{
    peer_server_t srv[MAX_SYSTEMS];
    bool up[MAX_SYSTEMS];
    double secs[MAX_SYSTEMS][MAX_ROUNDS], rss[MAX_SYSTEMS][MAX_ROUNDS], ms[MAX_SYSTEMS],
        mr[MAX_SYSTEMS];
    char r1[16], r2[16];

    for (size_t s = 0; s < p->count; s++)
        up[s] = peer_cell_load(&o->set, &p->systems[s], &srv[s], o->records) == 0;
    for (int round = 0; round < o->rounds; round++)
        for (size_t s = 0; s < p->count; s++) {
            long peak = -1;
            secs[s][round] =
                up[s] ? peer_cell_snapshot(&p->systems[s], &srv[s], o->records, &peak) : -1;
            rss[s][round] = (double)peak / 1024.0;
        }
    for (size_t s = 0; s < p->count; s++) {
        ms[s] = median(secs[s], o->rounds);
        mr[s] = median(rss[s], o->rounds);
        if (up[s])
            peer_cell_unload(&p->systems[s], &srv[s]);
    }
    printf("\n4. late-joiner snapshot of %" PRIu64 " records, median of %d\n", o->records,
           o->rounds);
    printf("  ratios = peer / parksync (> 1: parksync faster, or smaller)\n");
    printf("  %-32s %9s %11s %13s %9s %9s\n", "system", "seconds", "records/s", "peak RSS MiB",
           "r(time)", "r(RSS)");
    for (size_t s = 0; s < p->count; s++)
        printf("  %-32s %9.2f %11.0f %13.0f %9s %9s\n", p->systems[s].label, ms[s],
               ms[s] > 0 ? (double)o->records / ms[s] : 0.0, mr[s],
               ratio(r1, sizeof r1, ms[s], ms[0]), ratio(r2, sizeof r2, mr[s], mr[0]));
}

static int parse(int argc, char **argv, options_t *o)
{
    static char cells[8];
    int c;

    *o = (options_t){.set = {.parent = "/tmp", .window = 32768, .seed = 7},
                     .updates = 200000,
                     .rounds = 3,
                     .seconds = 5,
                     .cells = "123",
                     .records = 1000000,
                     .rates = {1000, 20000},
                     .n_rates = 2};
    while ((c = getopt(argc, argv, "n:r:t:c:SN:w:x:d:L:P:")) != -1) {
        switch (c) {
        case 'n':
            o->updates = strtoull(optarg, NULL, 10);
            break;
        case 'r':
            o->rounds = (int)strtol(optarg, NULL, 10);
            break;
        case 't':
            o->seconds = (int)strtol(optarg, NULL, 10);
            break;
        case 'c':
            o->cells = optarg;
            break;
        case 'S':
            snprintf(cells, sizeof cells, "%.6s4", o->cells);
            o->cells = cells;
            break;
        case 'N':
            o->records = strtoull(optarg, NULL, 10);
            break;
        case 'w':
            o->set.window = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'x':
            o->exclude = optarg;
            break;
        case 'd':
            o->set.parent = optarg;
            break;
        case 'L': {
            char *end = optarg;
            o->n_rates = 0;
            do {
                unsigned long v = strtoul(end + (*end == ','), &end, 10);
                if (v < 1 || v > 1000000 || o->n_rates == sizeof o->rates / sizeof o->rates[0])
                    return -1;
                o->rates[o->n_rates++] = (unsigned)v;
            } while (*end == ',');
            if (*end != '\0')
                return -1;
            break;
        }
        case 'P':
            if (strcmp(optarg, "full") != 0 && strcmp(optarg, "normal") != 0)
                return -1;
            o->pairing = optarg;
            break;
        default:
            return -1;
        }
    }
    if (o->rounds < 1 || o->rounds > MAX_ROUNDS || o->updates < 1000 || o->seconds < 1 ||
        o->records < 1000 || o->set.window < 1)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    options_t o;
    const pairing_t *pairs[] = {&FULL_PAIRING, &NORMAL_PAIRING};

    if (argc == 3 && strcmp(argv[1], "--zmq-echo") == 0)
        return peer_zmq_echo_main(argv[2]); /* the zeromq row's server */
    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr,
                "usage: bench_peers [-n UPDATES] [-r ROUNDS 1..%d] [-t SECONDS] [-c 1234] "
                "[-S] [-N RECORDS] [-w WINDOW] [-x NAMES] [-d DIR] [-L RATE,...] "
                "[-P full|normal]\n",
                MAX_ROUNDS);
        return 2;
    }
    peer_record_t *r = malloc(sizeof *r);
    if (r == NULL)
        return 1;
    peer_record_make(r, 123, 456);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("bench_peers: records are packed parksync Updates of %zu bytes under keys like %s;\n"
           "window %u updates in flight per client (mosquitto at most %u, its best);\n"
           "* = reference, nothing on disk\n",
           r->len, r->key, o.set.window, peer_mosquitto.window_max);
    free(r);
    for (size_t i = 0; i < 2; i++) {
        pairing_t p = filtered(pairs[i], o.exclude);
        if (pairing_skipped(&o, i))
            continue;
        if (strchr(o.cells, '1') != NULL)
            cell_ingest(&o, &p, 100000, "1. ingest, 100,000 random keys");
        if (strchr(o.cells, '2') != NULL)
            cell_ingest(&o, &p, 1000, "2. ingest, 1,000 keys");
    }
    for (size_t i = 0; i < 2 && strchr(o.cells, '3') != NULL; i++) {
        pairing_t p = filtered(pairs[i], o.exclude);
        if (pairing_skipped(&o, i))
            continue;
        for (size_t k = 0; k < o.n_rates; k++)
            cell_latency(&o, &p, o.rates[k]);
    }
    if (strchr(o.cells, '4') != NULL) {
        pairing_t p = filtered(&SNAPSHOT_SET, o.exclude);
        cell_snapshot(&o, &p);
    }
    return 0;
}
