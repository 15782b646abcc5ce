/*
 * harness.h - starts the real parksyncd for integration tests.
 *
 * Each harness gets a fresh temporary directory holding the config, the
 * database, the daemon's log and ipc:// endpoints, so tests never collide
 * on ports and never touch the network beyond this machine.
 */
#ifndef PARKSYNC_TEST_HARNESS_H
#define PARKSYNC_TEST_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "parksync.h"

#define HARNESS_PATH 256 /* bytes of every path and endpoint below */

typedef struct harness {
    char dir[64];               /* temporary directory, removed by harness_cleanup */
    char config[HARNESS_PATH];  /* dir/parksyncd.conf */
    char db[HARNESS_PATH];      /* dir/parksync.db */
    char log[HARNESS_PATH];     /* dir/parksyncd.log: the daemon's stderr */
    char ingest[HARNESS_PATH];  /* ipc://dir/ingest */
    char publish[HARNESS_PATH]; /* ipc://dir/publish */
    char query[HARNESS_PATH];   /* ipc://dir/query */
    char control[HARNESS_PATH]; /* ipc://dir/control */
    char extra[1024];           /* INI text appended to the config */
    char log_level[8];          /* [daemon] log_level: tests debug, benches info */
    pid_t pid;                  /* running daemon, 0 when none */
    /* CURVE for harness_ping (daemon with [security] curve = on): Z85
     * keys, server_key "" = plain. */
    char server_key[41];    /* the daemon's public key */
    char client_public[41]; /* the pinging client's key pair */
    char client_secret[41];
} harness_t;

/* Makes the directory and writes the config (extra_ini may be NULL; it is
 * appended and may add sections). Does not start the daemon. 0 or -errno. */
int harness_init(harness_t *h, const char *extra_ini);

/* harness_init with the daemon at another [daemon] log_level. The
 * benchmarks use "info", parksyncd's default: at "debug" the daemon
 * writes a line to its log for every ack, which no operator pays. */
int harness_init_at(harness_t *h, const char *extra_ini, const char *log_level);

/* Writes the config again, with h->extra as it is now (e.g. to restart
 * the daemon on the same database with other settings). 0 or -errno. */
int harness_write_config(const harness_t *h);

/* Starts parksyncd and waits (up to 10 s) until its query socket answers a
 * ping. 0, or -1 when it exited or never answered (see h->log). The
 * daemon gets SIGTERM when the thread that started it ends (a parent-death
 * signal, so a crashed test leaves none running): start it from the
 * test's own thread, not from a helper thread that ends first. The same
 * holds for harness_spawn. */
int harness_start(harness_t *h);

/* Starts parksyncd with extra environment entries ("NAME=value", the list
 * ended by NULL; env may be NULL) and returns at once, without waiting for
 * it to answer (tests that watch its start-up, e.g. sd_notify). 0 or -1. */
int harness_spawn(harness_t *h, const char *const env[]);

/* SIGTERM, then waits up to 10 s. Returns the exit status (0..255), 128+N
 * when killed by signal N, or -1 when it did not exit in time (then it is
 * killed). */
int harness_stop(harness_t *h);

/* SIGKILL and reap: a crash, as far as the daemon can tell. */
void harness_kill(harness_t *h);

/* True when the daemon answers a ping within timeout_ms. */
bool harness_ping(const harness_t *h, int timeout_ms);

/* Runs the parksync CLI with --ingest/--publish/--query/--control pointing at this
 * daemon inserted after the command word (argv[0] is the command, e.g.
 * "push"; the list ends with NULL). stdin from stdin_path (NULL:
 * /dev/null); stdout and stderr into files under dir, whose contents are
 * returned in *out and *err when not NULL (caller frees). Returns the exit
 * status or -1. */
int harness_cli(const harness_t *h, const char *const argv[], const char *stdin_path, char **out,
                char **err);

/* Runs the parksync CLI with argv as given (no endpoint flags added:
 * argv[0] is the command), in an environment without any PARKSYNC_*
 * variable of the test's own, with XDG_CONFIG_HOME = dir/xdg (so the
 * user's client.conf is dir/xdg/parksync/client.conf) and the entries
 * of env ("NAME=value", ended by NULL; may be NULL) added. Otherwise as
 * harness_cli. */
int harness_cli_env(const harness_t *h, const char *const env[], const char *const argv[],
                    const char *stdin_path, char **out, char **err);

/* Reads a whole file into a NUL-terminated buffer (caller frees); NULL on
 * failure. */
char *harness_slurp(const char *path);

/* SQL for a producer's last sequence as the daemon's database holds it
 * while the daemon runs: its producer row, or a later copy that a commit
 * keeps on the change log (store/producer.c); ?1 is the producer id. */
#define HARNESS_POSITION_SQL                                                                       \
    "SELECT max(v) FROM (SELECT last_sequence AS v FROM producer WHERE producer_id = ?1"           \
    " UNION ALL SELECT json_extract(j.value, '$[1]') FROM changelog AS c,"                         \
    " json_each(c.producers) AS j"                                                                 \
    " WHERE c.revision > (SELECT value FROM meta WHERE key = 'state_from')"                        \
    " AND json_extract(j.value, '$[0]') = ?1)"

/* One counter of the daemon's Status (as `parksync status` lists them,
 * e.g. "bad_frames"), asked on the control socket. Returns its value, or
 * -1 when the daemon did not answer within timeout_ms or has no such
 * counter. */
int64_t harness_counter(const harness_t *h, const char *name, int timeout_ms);
/* Polls counter `name` until it is at least `want` or timeout_ms pass;
 * its last value (-1 when the daemon never answered). A counter the
 * daemon moves just after a peer sees its effect is read this way, not
 * once. */
int64_t harness_counter_reaches(const harness_t *h, const char *name, int64_t want, int timeout_ms);

/* The port the daemon logged for [metrics] http = 127.0.0.1:0; 0 when
 * its log names none. */
int harness_metrics_port(const harness_t *h);

/* GET path from 127.0.0.1:port over HTTP/1.0: the whole reply (status
 * line, headers, body) read until the server closes or timeout_ms pass,
 * NUL-terminated in buf; its length, or -1 when no connection. */
ssize_t harness_http_get(int port, const char *path, char *buf, size_t len, int timeout_ms);

/* The daemon's whole status (reply->status), or NULL when it does not
 * answer within timeout_ms. Free with
 * parksync__v1__control_reply__free_unpacked(reply, NULL). */
Parksync__V1__ControlReply *harness_status(const harness_t *h, int timeout_ms);

/* The daemon's digest of its consolidated picture and its head
 * (DigestRequest on the control socket). 0, or -1 without an answer. */
int harness_digest(const harness_t *h, uint8_t digest[32], uint64_t *head, int timeout_ms);

/* VmRSS of a process (the daemon: h->pid) from /proc, KiB; -1 when
 * unreadable. */
long harness_rss_kib(pid_t pid);

/* CPU time (user + system, all threads) process pid has used, in ms, or
 * -1. Work measured this way is less disturbed by a busy machine than
 * the time it takes. */
double harness_cpu_ms(pid_t pid);

/* The ASan options a daemon started now gets: the environment's own
 * ASAN_OPTIONS with `add` after them, into buf; returns buf. */
const char *harness_asan_options(char *buf, size_t len, const char *add);

/* libparksync options for this daemon: ps_producer_options_init (or
 * ps_subscriber_options_init), then its endpoints, and the producer id. */
void harness_producer_options(const harness_t *h, ps_producer_options_t *o, const char *id);
/* A producer with those options: ps_producer_new's result, its error in
 * *err. */
ps_producer_t *harness_producer(const harness_t *h, const char *id, ps_err_t *err);
void harness_subscriber_options(const harness_t *h, ps_subscriber_options_t *o);

/* Takes one snapshot of kind (no live records) from this daemon, over
 * CURVE with these Z85 keys when server_key is not NULL, and counts its
 * records in *records. Returns PS_OK once the snapshot ended, or the
 * library's error (PS_ERR_TIMEOUT: no answer within timeout_ms, as for
 * a key the daemon refuses). */
ps_err_t harness_snapshot(const harness_t *h, Parksync__V1__RecordKind kind, const char *server_key,
                          const char *secret_key, int timeout_ms, int *records);

/* Stops a running daemon (kill) and removes the directory. */
/* A park update of country cc (sequence and producer left to the
 * producer); the pointers inside point into *pu. */
typedef struct harness_park {
    Parksync__V1__Update u;
    Parksync__V1__Park p;
} harness_park_t;
void harness_park(harness_park_t *pu, const char *id, const char *cc);

void harness_cleanup(harness_t *h);

#endif /* PARKSYNC_TEST_HARNESS_H */
