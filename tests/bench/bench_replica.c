/*
 * bench_replica.c - federation's figures: replication throughput against
 * the single site's ingest rate, replication lag at a steady rate,
 * failover times, and fan-out through read replicas. Not a test: run it
 * from a Release build without sanitizers:
 *
 *   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release
 *   cmake --build build-bench -j && build-bench/tests/bench/bench_replica
 *
 * Every part starts real parksyncd sites (the test harness, ipc on this
 * machine, synchronous FULL unless -s normal) on fresh databases.
 *
 * 1. Throughput. A producer pushes N updates to site a (N/4 keys, so
 *    records are rewritten as in real use); the time to the last ack is
 *    the single site's ingest rate. Site b then starts and pulls the
 *    whole state (a first pull); then the producer pushes N more while b
 *    follows, and the time from the first send to b holding a's head is
 *    set against a's own time for them. Rates are updates (and records)
 *    per second; ratios are b's over a's, same run.
 * 2. Lag. An open-loop producer sends R updates/s to a for T s, each
 *    stamped with its send time; subscribers live on a and on b note, for
 *    each record, delivery time - send time. p50/p99/max for a (publish
 *    alone) and b (publish, pull, merge, commit, publish again).
 * 3. Failover. A producer and a subscriber are given both sites, with a
 *    silence bound of S ms; a is killed; the time to the producer's first
 *    acknowledgement by b, and to the subscriber's first live record from
 *    b (a producer at b sends every 10 ms).
 * 4. Fan-out. C subscriber connections (raw SUB sockets on "rec/park/",
 *    2,000 to a child process) read M live records; the writer's CPU time serving them
 *    alone against serving 3 read replicas that serve C/3 each. Every
 *    subscriber must get every record.
 *
 * Options: -n N (updates of part 1, default 100000), -r RATES (part 2,
 * default 1000,20000), -t SECONDS (part 2, default 10), -S MS (part 3,
 * default 1000), -c CONNECTIONS (part 4, default 10000), -m RECORDS (part
 * 4, default 200), -s normal|full, -p PARTS (e.g. 13; default 1234).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define SITES_MAX 4      /* sites a part starts */
#define WAIT_MS   200    /* [site] pull_wait_ms */
#define LAG_MAX   400000 /* lag samples kept per site */
#define DEADLINE  600000 /* ms: anything a part waits for */

static harness_t h[SITES_MAX];
static bool normal;

static int64_t now_ms(void)
{
    return wire_monotonic_ms();
}

static void die(const char *what)
{
    fprintf(stderr, "bench_replica: %s\n", what);
    for (int i = 0; i < SITES_MAX; i++)
        harness_cleanup(&h[i]);
    exit(1);
}

/* Starts site i, pulling from `from` (-1: none) with countries = *. */
static void site(int i, int from, const char *extra)
{
    char ini[1024];
    if (h[i].dir[0] == '\0' && harness_init_at(&h[i], NULL, "info") != 0)
        die("harness_init");
    int n = snprintf(ini, sizeof ini,
                     "[store]\nsynchronous = %s\n[limits]\nmax_connections = "
                     "100000\nmax_subscriptions = 100000\n"
                     "[site]\nname = s%d\npull_wait_ms = %d\npeer_timeout_ms = 3000\n%s\n",
                     normal ? "normal" : "full", i, WAIT_MS, extra ? extra : "");
    if (from >= 0)
        snprintf(ini + n, sizeof ini - (size_t)n, "[peer s%d]\nendpoints = %s\ncountries = *\n",
                 from, h[from].query);
    memcpy(h[i].extra, ini, sizeof ini);
    if (harness_write_config(&h[i]) != 0 || harness_start(&h[i]) != 0)
        die("a site did not start");
}

static void stop_all(void)
{
    for (int i = 0; i < SITES_MAX; i++) {
        harness_cleanup(&h[i]);
        memset(&h[i], 0, sizeof h[i]);
    }
}

/* The revision of its peer site i has stored (its only peer). */
static uint64_t pulled(int i)
{
    Parksync__V1__ControlReply *r = harness_status(&h[i], 5000);
    uint64_t rev = 0;
    if (r && r->status->n_peers > 0)
        rev = r->status->peers[0]->revision;
    if (r)
        parksync__v1__control_reply__free_unpacked(r, NULL);
    return rev;
}

static uint64_t head_of(int i)
{
    uint8_t d[32];
    uint64_t head = 0;
    if (harness_digest(&h[i], d, &head, 60000) != 0)
        die("no digest");
    return head;
}

/* Waits until site i has pulled through `rev` of its peer. */
static void wait_pulled(int i, uint64_t rev)
{
    int64_t end = now_ms() + DEADLINE;
    while (pulled(i) < rev) {
        if (now_ms() > end)
            die("a site did not catch up");
        usleep(2000);
    }
}

static ps_producer_t *producer(int i, const char *id, int window)
{
    ps_producer_options_t o;
    ps_err_t err;
    harness_producer_options(&h[i], &o, id);
    if (window > 0)
        o.window = (unsigned)window;
    ps_producer_t *p = ps_producer_new(&o, &err);
    if (!p)
        die("producer");
    return p;
}

/* A park update of key k, stamped with its send time. */
static void send_park(ps_producer_t *p, uint32_t k, const char *name)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
    char id[32];
    snprintf(id, sizeof id, "AZ-BENCH-%06" PRIu32, k);
    park.park_id = id;
    park.country = "AZ";
    park.name = (char *)name;
    park.has_reported_residents = 1;
    park.reported_residents = k;
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &park;
    u.has_event_time_us = 1;
    u.event_time_us = wire_now_us();
    if (ps_producer_send(p, &u, NULL, 60000) != PS_OK)
        die(ps_producer_last_error(p));
}

/* ---------------------------------------------------------------- 1 */

static void part_throughput(uint32_t n)
{
    char name[32];
    site(0, -1, NULL);
    ps_producer_t *p = producer(0, "bench", 0);
    int64_t t0 = now_ms();
    for (uint32_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "n%" PRIu32, i);
        send_park(p, i % (n / 4 + 1), name);
    }
    if (ps_producer_flush(p, DEADLINE) != PS_OK)
        die("flush");
    int64_t ingest_ms = now_ms() - t0;
    uint64_t head = head_of(0);

    t0 = now_ms();
    site(1, 0, NULL);
    wait_pulled(1, head);
    int64_t full_ms = now_ms() - t0; /* includes b's start */

    t0 = now_ms();
    for (uint32_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "m%" PRIu32, i);
        send_park(p, i % (n / 4 + 1), name);
    }
    if (ps_producer_flush(p, DEADLINE) != PS_OK)
        die("flush");
    int64_t a_ms = now_ms() - t0;
    head = head_of(0);
    wait_pulled(1, head);
    int64_t b_ms = now_ms() - t0;
    ps_producer_destroy(&p);
    uint32_t records = n / 4 + 1;
    printf("1. throughput, %" PRIu32 " updates over %" PRIu32 " parks, synchronous=%s\n", n,
           records, normal ? "NORMAL" : "FULL");
    printf("   site a ingest (single site)        %8.0f updates/s  (%" PRId64 " ms)\n",
           n * 1000.0 / (double)ingest_ms, ingest_ms);
    printf("   site b first pull, whole state     %8.0f records/s  (%" PRId64
           " ms, with b's start)\n",
           records * 1000.0 / (double)full_ms, full_ms);
    printf("   a ingests %" PRIu32 " more while b follows: a done in %" PRId64
           " ms, b holds a's head at %" PRId64 " ms: ratio %.2f, b lags %" PRId64 " ms\n",
           n, a_ms, b_ms, (double)a_ms / (double)b_ms, b_ms - a_ms);
    stop_all();
}

/* ---------------------------------------------------------------- 2 */

typedef struct lag {
    int site;           /* whose subscriber */
    volatile bool stop; /* set by the main thread */
    int64_t *us;        /* samples */
    size_t n;
    ps_subscriber_t *sub;
} lag_t;

static void *lag_main(void *arg)
{
    lag_t *l = arg;
    ps_event_t ev;
    while (!l->stop) {
        ps_err_t e = ps_subscriber_next(l->sub, &ev, 100);
        if (e == PS_OK && ev.kind == PS_EVENT_RECORD && ev.live && ev.record->park &&
            ev.record->park->name && strncmp(ev.record->park->name, "t", 1) == 0 &&
            l->n < LAG_MAX) {
            int64_t sent = strtoll(ev.record->park->name + 1, NULL, 10);
            l->us[l->n++] = wire_now_us() - sent;
        }
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void part_lag(const char *rates, int seconds)
{
    char list[128];
    snprintf(list, sizeof list, "%s", rates);
    printf("2. lag, send -> live delivery (ms), open loop for %d s, synchronous=%s\n", seconds,
           normal ? "NORMAL" : "FULL");
    printf("   %8s %6s %9s %9s %9s %9s\n", "rate/s", "site", "delivered", "p50", "p99", "max");
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        long rate = strtol(tok, NULL, 10);
        site(0, -1, NULL);
        site(1, 0, NULL);
        lag_t l[2] = {{.site = 0}, {.site = 1}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
            ps_subscriber_options_t o;
            ps_err_t err;
            harness_subscriber_options(&h[i], &o);
            o.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
            o.live = true;
            l[i].sub = ps_subscriber_new(&o, &err);
            l[i].us = malloc(LAG_MAX * sizeof *l[i].us);
            if (!l[i].sub || !l[i].us)
                die("subscriber");
            pthread_create(&th[i], NULL, lag_main, &l[i]);
        }
        ps_producer_t *p = producer(0, "bench", 0);
        int64_t t0 = wire_now_us();
        uint64_t sent = 0, total = (uint64_t)rate * (uint64_t)seconds;
        char name[32];
        while (sent < total) {
            int64_t due = t0 + (int64_t)(sent * 1000000 / (uint64_t)rate);
            int64_t now = wire_now_us();
            if (now < due) {
                ps_producer_poll(p);
                if (due - now > 200)
                    usleep((useconds_t)(due - now > 1000 ? 1000 : due - now));
                continue;
            }
            snprintf(name, sizeof name, "t%" PRId64, wire_now_us());
            send_park(p, (uint32_t)(sent % 10000), name);
            sent++;
        }
        ps_producer_flush(p, DEADLINE);
        ps_producer_destroy(&p);
        usleep(2000 * 1000); /* the last pulls and publications, then stop */
        for (int i = 0; i < 2; i++) {
            l[i].stop = true;
            pthread_join(th[i], NULL);
            qsort(l[i].us, l[i].n, sizeof *l[i].us, by_value);
            size_t n = l[i].n;
            printf("   %8ld %6s %9zu %9.2f %9.2f %9.2f\n", rate, i ? "b" : "a", n,
                   n ? l[i].us[n / 2] / 1000.0 : -1, n ? l[i].us[n * 99 / 100] / 1000.0 : -1,
                   n ? l[i].us[n - 1] / 1000.0 : -1);
            ps_subscriber_destroy(&l[i].sub);
            free(l[i].us);
        }
        stop_all();
    }
}

/* ---------------------------------------------------------------- 3 */

/* The subscriber of part 3, on a thread of its own: the producer's move
 * blocks its caller while it asks the next site where it stands. */
typedef struct watch {
    ps_subscriber_t *sub;
    int64_t killed;        /* monotonic ms of a's death */
    volatile int64_t seen; /* ms from then to the first live record from b; -1 */
    volatile bool stop;
} watch_t;

static void *watch_main(void *arg)
{
    watch_t *w = arg;
    ps_event_t ev;
    while (!w->stop && w->seen < 0)
        if (ps_subscriber_next(w->sub, &ev, 5) == PS_OK && ev.kind == PS_EVENT_RECORD && ev.live)
            w->seen = now_ms() - w->killed;
    return NULL;
}

static void part_failover(int silence_ms)
{
    char ingest[600], publish[600], query[600];
    /* a and b pull from each other: both directories first */
    for (int i = 0; i < 2; i++)
        if (harness_init_at(&h[i], NULL, "info") != 0)
            die("harness_init");
    site(0, 1, NULL);
    site(1, 0, NULL);
    snprintf(ingest, sizeof ingest, "%s,%s", h[0].ingest, h[1].ingest);
    snprintf(publish, sizeof publish, "%s,%s", h[0].publish, h[1].publish);
    snprintf(query, sizeof query, "%s,%s", h[0].query, h[1].query);
    ps_producer_options_t po;
    ps_err_t err;
    harness_producer_options(&h[0], &po, "bench");
    po.ingest_endpoint = ingest;
    po.publish_endpoint = publish;
    po.query_endpoint = query;
    po.connect_timeout_ms = silence_ms;
    ps_producer_t *p = ps_producer_new(&po, &err);
    ps_subscriber_options_t so;
    harness_subscriber_options(&h[0], &so);
    so.publish_endpoint = publish;
    so.query_endpoint = query;
    so.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
    so.live = true;
    so.timeout_ms = silence_ms;
    ps_subscriber_t *sub = ps_subscriber_new(&so, &err);
    if (!p || !sub)
        die("failover clients");
    for (uint32_t i = 0; i < 100; i++)
        send_park(p, i, "before");
    if (ps_producer_flush(p, DEADLINE) != PS_OK)
        die("flush");
    wait_pulled(1, head_of(0));
    ps_event_t ev;
    while (ps_subscriber_next(sub, &ev, 50) == PS_OK)
        ; /* what a sent, read */
    ps_producer_t *pb = producer(1, "bench-b", 0);
    watch_t w = {.sub = sub, .seen = -1};
    harness_kill(&h[0]);
    int64_t killed = now_ms(), acked = -1;
    w.killed = killed;
    pthread_t th;
    pthread_create(&th, NULL, watch_main, &w);
    send_park(p, 1000, "after");
    while ((acked < 0 || w.seen < 0) && now_ms() - killed < 60000) {
        if (acked < 0 && ps_producer_flush(p, 5) == PS_OK)
            acked = now_ms() - killed;
        send_park(pb, 2000, "b"); /* what the subscriber sees live at b */
        ps_producer_poll(pb);
        usleep(10000);
    }
    w.stop = true;
    pthread_join(th, NULL);
    int64_t seen = w.seen;
    printf("3. failover, silence bound %d ms: site a killed; producer's first ack by b after "
           "%" PRId64 " ms, subscriber's first live record from b after %" PRId64 " ms\n",
           silence_ms, acked, seen);
    ps_producer_destroy(&pb);
    ps_producer_destroy(&p);
    ps_subscriber_destroy(&sub);
    stop_all();
}

/* ---------------------------------------------------------------- 4 */

#define FAN_PER_PROCESS 2000 /* subscriber sockets one process holds */

/* A child of fan(): sockets [from, to) of C on sites[i % nsites]; says on
 * `up` when they are connected, then how many got all m records. */
static void fan_child(const int *sites, int nsites, int from, int to, int m, int up)
{
    void *ctx = zmq_ctx_new();
    int hwm = m + 16, n = to - from; /* room for every record, and no more memory */
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, n + 16);
    void **subs = calloc((size_t)n, sizeof *subs);
    int *got = calloc((size_t)n, sizeof *got), complete = 0;
    for (int i = 0; i < n; i++) {
        if (!(subs[i] = zmq_socket(ctx, ZMQ_SUB)))
            _exit(1);
        zmq_setsockopt(subs[i], ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt(subs[i], ZMQ_SUBSCRIBE, "rec/park/", 9);
        zmq_connect(subs[i], h[sites[(from + i) % nsites]].publish);
    }
    usleep(3000 * 1000); /* the connections and their subscriptions */
    if (write(up, "u", 1) != 1)
        _exit(1);
    int64_t end = now_ms() + 120000;
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    while (complete < n && now_ms() < end) {
        bool any = false;
        for (int i = 0; i < n; i++)
            while (got[i] < m && zmq_msg_recv(&msg, subs[i], ZMQ_DONTWAIT) >= 0)
                if (!zmq_msg_more(&msg) && ++got[i] == m) {
                    complete++;
                    any = true;
                }
        if (!any)
            usleep(1000);
    }
    if (write(up, &complete, sizeof complete) != sizeof complete)
        _exit(1);
    _exit(0); /* no cleanup: the process ends */
}

/* C raw SUB sockets on "rec/park/", spread over sites[0..nsites) and over
 * child processes of FAN_PER_PROCESS sockets (libzmq grows out of bounds
 * with ten thousand in one); returns the subscribers that got all m
 * records, and the writer's CPU time meanwhile. */
static int fan(int *sites, int nsites, int c, int m, double *writer_cpu_ms)
{
    int kids = (c + FAN_PER_PROCESS - 1) / FAN_PER_PROCESS, fds[64][2], complete = 0;
    pid_t pids[64];
    if (kids > 64)
        die("more than 64 subscriber processes");
    for (int k = 0; k < kids; k++) {
        if (pipe(fds[k]) != 0)
            die("pipe");
        int from = k * FAN_PER_PROCESS,
            to = from + FAN_PER_PROCESS < c ? from + FAN_PER_PROCESS : c;
        if ((pids[k] = fork()) == 0) {
            close(fds[k][0]);
            fan_child(sites, nsites, from, to, m, fds[k][1]);
        }
        close(fds[k][1]);
    }
    for (int k = 0; k < kids; k++) {
        char u;
        if (read(fds[k][0], &u, 1) != 1)
            die("a subscriber process failed");
    }
    double cpu0 = harness_cpu_ms(h[0].pid);
    ps_producer_t *p = producer(0, "bench", 0);
    char name[16];
    for (int i = 0; i < m; i++) {
        snprintf(name, sizeof name, "f%d", i);
        send_park(p, (uint32_t)i, name);
    }
    ps_producer_flush(p, DEADLINE);
    for (int k = 0; k < kids; k++) {
        int n = 0;
        if (read(fds[k][0], &n, sizeof n) == sizeof n)
            complete += n;
        close(fds[k][0]);
        waitpid(pids[k], NULL, 0);
    }
    *writer_cpu_ms = harness_cpu_ms(h[0].pid) - cpu0;
    ps_producer_destroy(&p);
    return complete;
}

static void part_fanout(int c, int m)
{
    struct rlimit rl;
    double alone_ms, with_ms;
    /* C connections here and at the writer, and what the daemon keeps
     * back: the daemons inherit the limit (root may raise the hard one) */
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < (rlim_t)c * 4 + 1024) {
        rl.rlim_max = (rlim_t)c * 4 + 1024;
        if (setrlimit(RLIMIT_NOFILE, &(struct rlimit){rl.rlim_max, rl.rlim_max}) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    site(0, -1, NULL);
    int only_writer[1] = {0};
    int alone = fan(only_writer, 1, c, m, &alone_ms);
    stop_all();
    site(0, -1, NULL);
    for (int i = 1; i <= 3; i++)
        site(i, 0, NULL);
    int replicas[3] = {1, 2, 3};
    int with = fan(replicas, 3, c, m, &with_ms);
    printf("4. fan-out, %d subscriber connections, %d live records each\n", c, m);
    printf("   writer alone:          %5d complete, writer CPU %8.0f ms\n", alone, alone_ms);
    printf("   writer + 3 replicas:   %5d complete, writer CPU %8.0f ms (%.2fx)\n", with, with_ms,
           alone_ms > 0 ? with_ms / alone_ms : 0);
    stop_all();
}

int main(int argc, char **argv)
{
    uint32_t n = 100000;
    const char *rates = "1000,20000", *parts = "1234";
    int seconds = 10, silence = 1000, conns = 10000, records = 200, opt;

    while ((opt = getopt(argc, argv, "n:r:t:S:c:m:s:p:")) != -1) {
        switch (opt) {
        case 'n':
            n = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'r':
            rates = optarg;
            break;
        case 't':
            seconds = atoi(optarg);
            break;
        case 'S':
            silence = atoi(optarg);
            break;
        case 'c':
            conns = atoi(optarg);
            break;
        case 'm':
            records = atoi(optarg);
            break;
        case 's':
            normal = strcmp(optarg, "normal") == 0;
            break;
        case 'p':
            parts = optarg;
            break;
        default:
            fprintf(stderr, "usage: bench_replica [-n N] [-r RATES] [-t S] [-S MS] [-c CONNS] "
                            "[-m RECORDS] [-s normal|full] [-p PARTS]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (strchr(parts, '1'))
        part_throughput(n);
    if (strchr(parts, '2'))
        part_lag(rates, seconds);
    if (strchr(parts, '3'))
        part_failover(silence);
    if (strchr(parts, '4'))
        part_fanout(conns, records);
    return 0;
}
