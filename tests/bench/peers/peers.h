/*
 * peers.h - the comparison of parksync with the systems its users would
 * pick instead (etcd, Redis, NATS JetStream KV, Mosquitto), on the same
 * machine, with the same records under the same keys.
 *
 * Sections: the records every system stores; the servers this program
 * starts and stops (only those); the backend interface each system
 * implements (be_<system>.c); the cells (cell.c) that drive any backend.
 */
#ifndef PARKSYNC_BENCH_PEERS_H
#define PARKSYNC_BENCH_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "parksync.h"

/* ---------------------------------------------------------------- records */

#define PEER_KEY_MAX     40                                /* bytes of a record key with its NUL */
#define PEER_VALUE_MAX   512                               /* bytes of a packed update, at most */
#define PEER_PRODUCER_ID "ministry-of-economy.bench-peers" /* in every update */

/* One update, both as the struct libparksync sends and as the packed bytes
 * every other system stores under key. Self-contained: the pointers inside
 * update point into the record. */
typedef struct peer_record {
    char key[PEER_KEY_MAX];          /* "AZ.BENCH-PARK.R0000123": country.park.resident */
    uint8_t bytes[PEER_VALUE_MAX];   /* the packed Update (about 360 bytes) */
    size_t len;                      /* bytes used in bytes */
    Parksync__V1__Update update;     /* what parksync's producer sends */
    Parksync__V1__Resident resident; /* its body */
    char rid[16];                    /* resident id, "R0000123" */
    char company[257];               /* company name, padded to parksync's limit */
} peer_record_t;

/* Fills r with update number n (its sequence and investment) of record
 * key. */
void peer_record_make(peer_record_t *r, uint32_t key, uint64_t n);

/* ---------------------------------------------------------------- servers */

/* What the server must guarantee before it acknowledges an update. */
typedef enum peer_durability {
    PEER_FSYNC,   /* on disk (fsync) before the ack */
    PEER_WRITTEN, /* written to the OS before the ack, fsynced within about a second */
    PEER_MEMORY,  /* nothing on disk */
} peer_durability_t;

/* One server process this program started, with its data under dir. */
typedef struct peer_server {
    char dir[256];                /* data directory, removed by peer_server_stop */
    int port;                     /* its client port on 127.0.0.1 */
    int port2;                    /* a second port (etcd's peer port), 0 when unused */
    pid_t pid;                    /* the process, 0 when none */
    peer_durability_t durability; /* what it was configured for */
    void *priv;                   /* the backend's own state (parksync: its harness) */
} peer_server_t;

/* A free TCP port on 127.0.0.1 (bound and released), or -1. */
int peer_free_port(void);

/* Makes s->dir under parent. 0 or -errno. */
int peer_server_dir(peer_server_t *s, const char *parent, const char *name);

/* Starts argv (argv[0] a path) with stdout and stderr into log, and waits
 * up to 20 s until s->port accepts connections. 0, or -1 when it exited or
 * never listened (see log). */
int peer_server_spawn(peer_server_t *s, char *const argv[], const char *log);

/* SIGTERM (SIGKILL after 10 s), reap, remove s->dir. NULL-safe on a
 * server that never started. */
void peer_server_stop(peer_server_t *s);

/* VmRSS or VmHWM ("VmRSS", "VmHWM") of pid from /proc, KiB; -1 when
 * unreadable. */
long peer_proc_kib(pid_t pid, const char *field);

/* Resets pid's VmHWM to its VmRSS (clear_refs 5), so the next peak read
 * is this phase's. 0 or -errno. */
int peer_proc_reset_peak(pid_t pid);

/* Monotonic microseconds. */
int64_t peer_now_us(void);

/* ---------------------------------------------------------------- backends */

/* Called by a backend for acknowledged updates: tags first .. first+n-1. */
typedef void peer_ack_fn(void *arg, uint64_t first, uint64_t n);

/* One system. A connection (void *) is used from one thread. Tags are
 * 0, 1, 2, ... in put order on a connection. */
typedef struct peer_ops {
    const char *name;    /* short name for the tables */
    unsigned window_max; /* most updates in flight its client does well with; 0: any */
    /* Starts the server for s->durability in s->dir: 0 or -1. */
    int (*start)(peer_server_t *s);
    /* Stops it and removes its data (NULL: peer_server_stop). */
    void (*stop)(peer_server_t *s);
    /* A client connection for window updates in flight, or NULL. */
    void *(*connect)(peer_server_t *s, unsigned window);
    /* Queues one update under tag; may send (when a batch fills). 0 or -1. */
    int (*put)(void *c, const peer_record_t *r, uint64_t tag);
    /* Sends whatever put queued: a pause in sending follows. 0 or -1. */
    int (*kick)(void *c);
    /* Reports the acks that came, waiting up to timeout_us for the first
     * one when none had. The count reported (>= 0) or -1 on failure. */
    long (*poll)(void *c, int64_t timeout_us, peer_ack_fn *fn, void *arg);
    /* A late joiner's full read of everything stored (expect records):
     * the count received, or -1. Made on its own connection. */
    long (*snapshot)(peer_server_t *s, uint64_t expect);
    /* The server's head revision (parksync), or -1 when it has none. */
    long (*revisions)(void *c);
    /* Closes c (NULL-safe). */
    void (*close)(void *c);
} peer_ops_t;

extern const peer_ops_t peer_parksync, peer_redis, peer_nats, peer_mosquitto, peer_etcd,
    peer_zmq_echo;

/* The transport's floor, as a server (be_zmq.c): this program started
 * again as "bench_peers --zmq-echo PORT". Returns only on failure. */
int peer_zmq_echo_main(const char *port);

/* qsort comparison of doubles, ascending. */
int peer_cmp_double(const void *a, const void *b);

/* Base64 (RFC 4648, padded) of len bytes into out (4 * ceil(len / 3) + 1
 * bytes); returns the length written. */
size_t peer_base64(char *out, const uint8_t *in, size_t len);

/* Decodes base64 text of tlen characters into out (at most size bytes):
 * the length, or -1 on bad input. */
long peer_unbase64(uint8_t *out, size_t size, const char *text, size_t tlen);

/* ---------------------------------------------------------------- cells */

/* One system in a cell: a backend and the durability it is asked for. */
typedef struct peer_system {
    const peer_ops_t *ops;        /* the backend */
    peer_durability_t durability; /* its configuration */
    const char *label;            /* for the tables, e.g. "redis appendfsync always" */
} peer_system_t;

/* Settings every cell shares. */
typedef struct peer_settings {
    const char *parent; /* where server data directories go */
    unsigned window;    /* updates in flight per client */
    unsigned seed;      /* of the key sequence */
} peer_settings_t;

/* Result of one ingest run. */
typedef struct peer_ingest {
    double rate;    /* acknowledged updates/s, -1 on failure */
    long revisions; /* head revision afterwards (parksync), -1 unknown */
} peer_ingest_t;

/* Result of one latency run, milliseconds from scheduled send to ack. */
typedef struct peer_latency {
    double p50, p99, p999; /* -1 on failure */
} peer_latency_t;

/* Starts a fresh server, sends total updates over keys records in random
 * order (seeded), stops it. */
peer_ingest_t peer_cell_ingest(const peer_settings_t *set, const peer_system_t *sys, uint32_t keys,
                               uint64_t total);

/* Starts a fresh server, sends rate updates/s on schedule for seconds over
 * keys records, stops it. */
peer_latency_t peer_cell_latency(const peer_settings_t *set, const peer_system_t *sys,
                                 uint32_t keys, unsigned rate, int seconds);

/* Starts a server into *s and stores records 0 .. n-1 once each. 0 or -1
 * (then the server is stopped). */
int peer_cell_load(const peer_settings_t *set, const peer_system_t *sys, peer_server_t *s,
                   uint64_t n);

/* One late-joiner snapshot of n records from a loaded server: seconds
 * (-1 on failure), and the server's peak RSS during it in *peak_kib. */
double peer_cell_snapshot(const peer_system_t *sys, peer_server_t *s, uint64_t n, long *peak_kib);

/* Stops a server that peer_cell_load left running and removes its data. */
void peer_cell_unload(const peer_system_t *sys, peer_server_t *s);

#endif /* PARKSYNC_BENCH_PEERS_H */
