/*
 * parksync.h - libparksync, the client library of parksync.
 *
 * Producer: a ministry's system sends updates to parksyncd's ingest socket
 * and learns from acknowledgements on the publish socket when they are
 * applied. Updates are numbered 1, 2, 3, ... per producer id; unacknowledged
 * updates are resent (go-back-N) until the daemon acknowledges them.
 *
 * Subscriber: receives the consolidated picture: a snapshot from the query
 * socket, then live records from the publish socket, with records already
 * covered by the snapshot dropped (the Clone pattern). It detects lost
 * live records (per-topic stream sequences, heartbeats) and recovers by
 * asking for the changes since its revision, or, when the daemon no
 * longer keeps them or its database was replaced, by a fresh snapshot
 * announced with PS_EVENT_RESET. Every change is delivered once, in
 * revision order.
 *
 * Messages are protobuf-c structs generated from parksync.proto
 * (<parksync/parksync.pb-c.h>); wire.h offers validation and topic helpers.
 *
 * Not thread-safe: use a producer or subscriber from one thread at a time.
 */
#ifndef PARKSYNC_CLIENT_H
#define PARKSYNC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Result of every libparksync call. */
typedef enum ps_err {
    PS_OK = 0,
    PS_ERR_INVALID,     /* bad argument, or an update that fails validation */
    PS_ERR_NOMEM,       /* out of memory */
    PS_ERR_SOCKET,      /* ZeroMQ failure (endpoint syntax, connect) */
    PS_ERR_TIMEOUT,     /* the deadline passed first */
    PS_ERR_PROTOCOL,    /* the daemon sent something undecodable or unexpected */
    PS_ERR_REFUSED,     /* the daemon answered with an error */
    PS_ERR_OUTBOX,      /* the producer's outbox database failed */
    PS_ERR_CLOSED,      /* the stream has ended */
    PS_ERR_INTERRUPTED, /* a signal interrupted the wait */
    PS_ERR_AHEAD,       /* the producer is ahead of the daemon's database: sequences it no
                           longer holds are missing there (a restored backup) */
} ps_err_t;

/* A static English description of err. */
const char *ps_strerror(ps_err_t err);

/* ---------------------------------------------------------------- producer */

typedef struct ps_producer ps_producer_t;

typedef struct ps_producer_options {
    const char *producer_id; /* required: [A-Za-z0-9._-]{1,64}, stable across restarts */
    /* Each endpoint may list several sites, comma-separated, the i-th of
     * every list being site i ("tcp://a:7101,tcp://b:7101"): the producer
     * talks to one site at a time, the first that answers, and moves to
     * the next when the one in use sends no ack or heartbeat for
     * connect_timeout_ms and does not answer a producer_state within 1 s
     * either. It then takes what the new site applied of it (learnt by
     * replication) as acknowledged and sends the rest again. */
    const char *ingest_endpoint;  /* default WIRE_DEFAULT_INGEST */
    const char *publish_endpoint; /* where acks come from; default WIRE_DEFAULT_PUBLISH */
    const char
        *query_endpoint;     /* asked for the last applied sequence; default WIRE_DEFAULT_QUERY */
    const char *outbox_path; /* durable outbox (SQLite); NULL keeps it in memory */
    unsigned window;         /* most unacknowledged updates in flight; default 32768 */
    int ack_timeout_ms;      /* least resend timeout: resends after this silence, or more when
                                the daemon's waits for progress say so; default 500,
                                doubles to 8 s while nothing advances */
    int connect_timeout_ms;  /* how long ps_producer_new waits for the daemon; default 5000 */
    int sndhwm;              /* ingest send high-water mark; 0: 2 * window + 1024 (tests
                                set it small to force drops) */
    /* CURVE (the daemon's [security] curve = on): all NULL = plain. Keys
     * are 40-character Z85 text, as `parksync keygen` writes them. */
    const char *server_public_key; /* the daemon's public key; set: CURVE on every socket */
    const char *public_key;        /* this ministry's public key; NULL: derived from secret_key */
    const char *secret_key;        /* this ministry's secret key; required with server_public_key */
} ps_producer_options_t;

/* Fills opts with the defaults (producer_id NULL). */
void ps_producer_options_init(ps_producer_options_t *opts);

/* Connects to the daemon and learns where this producer's sequence stands
 * (from the daemon's query socket, and from the outbox when there is one).
 * Returns the producer, or NULL with *err set (PS_ERR_TIMEOUT when the
 * daemon did not answer within connect_timeout_ms).
 * When the daemon's last sequence is below the outbox's oldest update
 * minus one, the sequences in between were acknowledged (by an earlier
 * database: a restored backup) and deleted, so the daemon can never apply
 * the outbox: the producer is ahead. It is still returned (the outbox is
 * sent once, so the daemon sees it too), and every later send, flush and
 * poll returns PS_ERR_AHEAD with the producer and the missing range in
 * ps_producer_last_error and ps_producer_missing. The same happens when
 * the daemon's acks go back below what it acknowledged before. Not at a
 * site whose heartbeat says it pulls from peers: there the missing
 * sequences come back with its pulls (it lost its disk with ack_after =
 * peers:N, or the producer moved to it), so the producer waits for them,
 * resending what it holds, as it waits for any ack. */
ps_producer_t *ps_producer_new(const ps_producer_options_t *opts, ps_err_t *err);

/* Sends one update. The library fills version, producer_id and sequence;
 * the caller sets the body and event_time_us (0 or absent: now) and may set
 * vintage. update is not modified or kept. Blocks, processing acks and
 * resending, while the window is full (up to timeout_ms; -1 = no limit).
 * With an outbox the update is written to the outbox's open batch and may
 * be held until the batch has 256 updates, the window is full, or the next
 * ps_producer_poll or ps_producer_flush, so that outbox writes are
 * batched: nothing goes on the wire before its batch is committed. Call
 * poll or flush when a pause in sending follows.
 * Returns PS_OK, PS_ERR_INVALID with the reason in ps_producer_last_error,
 * PS_ERR_TIMEOUT, or another error. The assigned sequence goes to *sequence
 * when not NULL. After PS_ERR_OUTBOX the updates of the failed batch are
 * forgotten and ps_producer_last_sent is the last durable one. */
ps_err_t ps_producer_send(ps_producer_t *p, const Parksync__V1__Update *update, uint64_t *sequence,
                          int timeout_ms);

/* Waits until every sent update is acknowledged, resending as needed.
 * PS_OK, PS_ERR_TIMEOUT after timeout_ms (-1 = no limit), or an error. */
ps_err_t ps_producer_flush(ps_producer_t *p, int timeout_ms);

/* Processes whatever acks have arrived and resends when due, without
 * blocking. Returns PS_OK or an error. */
ps_err_t ps_producer_poll(ps_producer_t *p);

/* ps_producer_poll after waiting up to timeout_us microseconds (0: not
 * at all) for something to arrive from the daemon: an ack, a heartbeat,
 * a refusal, or for a resend to come due. It returns as soon as one
 * does, so a caller that paces its own sends (finer than the whole
 * milliseconds ps_producer_send and ps_producer_flush wait in) sees each
 * ack when it lands; ps_producer_last_acked tells whether one came.
 * PS_OK, PS_ERR_INVALID (timeout_us < 0), PS_ERR_INTERRUPTED by a
 * signal, or another error as for ps_producer_poll. */
ps_err_t ps_producer_wait(ps_producer_t *p, int64_t timeout_us);

uint64_t ps_producer_last_sent(const ps_producer_t *p);  /* highest sequence assigned */
uint64_t ps_producer_last_acked(const ps_producer_t *p); /* highest sequence acknowledged */
uint64_t ps_producer_resends(const ps_producer_t *p);    /* updates sent again */

/* Notes: short text the application keeps in the outbox beside the
 * updates, e.g. which input it is sending (`parksync push` resumes with
 * them). ps_producer_note copies the note under key into buf: PS_OK,
 * PS_ERR_CLOSED when there is none (or no outbox), PS_ERR_OUTBOX.
 * ps_producer_set_note commits pending updates first, then stores value
 * (NULL deletes): PS_OK, PS_ERR_INVALID without an outbox, PS_ERR_OUTBOX. */
ps_err_t ps_producer_note(ps_producer_t *p, const char *key, char *buf, size_t size);
ps_err_t ps_producer_set_note(ps_producer_t *p, const char *key, const char *value);

/* What parksyncd counted for one producer. */
typedef struct ps_producer_stats {
    uint64_t last_sequence; /* last applied sequence; 0: unknown producer */
    uint64_t applied;       /* updates applied */
    uint64_t duplicates;    /* updates at or below the last sequence, ignored */
    uint64_t gaps;          /* updates beyond the next expected sequence, not applied */
    uint64_t rejected;      /* sequences consumed but refused */
    int64_t last_seen_us;   /* when its last update arrived, us since 1970 UTC; 0: never */
} ps_producer_stats_t;

/* Asks the daemon's query socket for the counters of opts->producer_id,
 * using opts->query_endpoint and, when set, opts' CURVE keys; no producer
 * is created. PS_OK, PS_ERR_INVALID, PS_ERR_TIMEOUT after timeout_ms
 * (<= 0: 5000), or another error. */
ps_err_t ps_producer_query(const ps_producer_options_t *opts, int timeout_ms,
                           ps_producer_stats_t *out);

/* After PS_ERR_AHEAD: true, with the sequences the daemon misses and the
 * producer no longer holds in *from..*to. False otherwise. */
bool ps_producer_missing(const ps_producer_t *p, uint64_t *from, uint64_t *to);

/* What the daemon's last heartbeat said degrades it (e.g. "ingest
 * stalled: commit failed: database or disk is full"), with when that
 * began in *since_us (us since 1970 UTC; since_us may be NULL); NULL when
 * it reported itself ok. Owned by p, valid until its next call. Acks do
 * not come while the daemon cannot commit: this says why. */
const char *ps_producer_daemon_health(const ps_producer_t *p, int64_t *since_us);

/* Text of the last PS_ERR_INVALID, PS_ERR_REFUSED or PS_ERR_AHEAD (static or owned by p). */
const char *ps_producer_last_error(const ps_producer_t *p);

/* Closes sockets and the outbox. Unacknowledged updates stay in a durable
 * outbox and are resent by the next producer with the same id and outbox.
 * NULL-safe; sets *pp = NULL. */
void ps_producer_destroy(ps_producer_t **pp);

/* ---------------------------------------------------------------- subscriber */

typedef struct ps_subscriber ps_subscriber_t;

typedef struct ps_subscriber_options {
    /* Both may list several sites, comma-separated, in the same order: the
     * subscriber reads one site at a time and moves to the next when the
     * one in use is silent for timeout_ms (no heartbeat live, no reply in
     * a stream). Another site is another history: a PS_EVENT_RESET, then
     * that site's snapshot, then its live records. */
    const char *publish_endpoint;  /* default WIRE_DEFAULT_PUBLISH */
    const char *query_endpoint;    /* default WIRE_DEFAULT_QUERY */
    Parksync__V1__RecordKind kind; /* UNSPECIFIED: every kind */
    const char *country;           /* NULL: every country */
    bool live;                     /* after the snapshot, follow live records (default true) */
    bool provenance;               /* ask for field provenance in the snapshot */
    int timeout_ms;         /* longest silence from the daemon during a snapshot; default 5000 */
    int rcvhwm;             /* live messages queued in the SUB before ZeroMQ drops;
                               0: 100000 (tests set it small to force loss) */
    bool has_from_revision; /* start with the changes after from_revision (then
                               live) instead of a snapshot */
    uint64_t from_revision;
    bool has_at_revision; /* the snapshot as of at_revision (history, within the
                             daemon's change log); only with live = false */
    uint64_t at_revision;
    /* CURVE, as in ps_producer_options_t: all NULL = plain. */
    const char *server_public_key; /* the daemon's public key; set: CURVE on every socket */
    const char *public_key;        /* this client's public key; NULL: derived from secret_key */
    const char *secret_key;        /* this client's secret key; required with server_public_key */
} ps_subscriber_options_t;

void ps_subscriber_options_init(ps_subscriber_options_t *opts);

/* What ps_subscriber_next delivers. */
typedef enum ps_event_kind {
    PS_EVENT_RECORD = 1,   /* a record, from the snapshot or live */
    PS_EVENT_SNAPSHOT_END, /* the snapshot is complete; revision holds its revision (with
                              from_revision: the catch-up is complete) */
    PS_EVENT_RESET,        /* continuity is lost (change log too short, or a new database
                              epoch): discard every record held; a fresh snapshot follows,
                              ending with PS_EVENT_SNAPSHOT_END */
} ps_event_kind_t;

typedef struct ps_event {
    ps_event_kind_t kind;
    Parksync__V1__Record *record; /* PS_EVENT_RECORD: owned by the subscriber,
                                     valid until the next call */
    uint64_t revision;            /* record's revision, or the snapshot's */
    bool live;                    /* true when the record came from the publish socket */
} ps_event_t;

/* Connects SUB first, then asks for a snapshot (or the changes after
 * from_revision). Returns the subscriber or NULL with *err set. */
ps_subscriber_t *ps_subscriber_new(const ps_subscriber_options_t *opts, ps_err_t *err);

/* Delivers the next event: snapshot records, then PS_EVENT_SNAPSHOT_END,
 * then (when live) every matching change newer than the snapshot, each
 * revision exactly once. A record's revisions ascend; across records
 * they ascend too, except after a loss: the recovered records come after
 * newer records of other topics that had already been delivered. After a
 * PS_EVENT_RESET, a fresh snapshot again.
 * Returns PS_OK, PS_ERR_TIMEOUT when nothing came within timeout_ms (-1 =
 * no limit), PS_ERR_CLOSED after the snapshot end when not live,
 * PS_ERR_REFUSED when the daemon refused the request (see
 * ps_subscriber_last_error), or an error. A request answered BUSY (every
 * stream slot taken) is not a refusal: it is asked again after 25..50 ms,
 * then twice as long each time up to 1..2 s, with jitter, while
 * ps_subscriber_next is called. */
ps_err_t ps_subscriber_next(ps_subscriber_t *s, ps_event_t *ev, int timeout_ms);

/* Called by ps_subscriber_run for each event; non-zero stops the run. */
typedef int (*ps_subscriber_fn)(void *arg, const ps_event_t *ev);

/* Calls fn for every event until fn returns non-zero (PS_OK), or
 * ps_subscriber_next fails with something else than PS_ERR_TIMEOUT (that
 * error), or timeout_ms passes without an event (PS_ERR_TIMEOUT; -1 = no
 * limit). */
ps_err_t ps_subscriber_run(ps_subscriber_t *s, ps_subscriber_fn fn, void *arg, int timeout_ms);

/* The subscriber's watermark: every matching change up to this revision
 * has been delivered (the snapshot's revision at first), so it is where
 * to resume (from_revision) after a restart. It moves at heartbeats that
 * prove nothing was lost and at the end of a recovery, so it may trail
 * the newest record delivered by up to one heartbeat interval. */
uint64_t ps_subscriber_revision(const ps_subscriber_t *s);

/* What a subscriber counted since it was made. */
typedef struct ps_subscriber_stats {
    uint64_t gaps;          /* losses detected: stream sequence jumps, heartbeats ahead */
    uint64_t resyncs;       /* changes streams asked for to recover */
    uint64_t snapshots;     /* snapshots taken, the first included */
    uint64_t too_old;       /* TOO_OLD answers (each followed by a fresh snapshot) */
    uint64_t epoch_changes; /* new database epochs seen (each followed by a fresh snapshot) */
    uint64_t restarts;      /* new daemon instances seen (each followed by a resync) */
    uint64_t duplicates;    /* live records dropped as already delivered */
    uint64_t repeats;       /* periodic republications (Publication.repeat) dropped */
    uint64_t bad_frames;    /* undecodable or unexpected messages skipped */
} ps_subscriber_stats_t;

/* Fills *out. */
void ps_subscriber_stats(const ps_subscriber_t *s, ps_subscriber_stats_t *out);

/* The daemon's message with the last refusal (TOO_OLD, BAD_REQUEST, ...),
 * "" when none; owned by s, valid until the next call. */
const char *ps_subscriber_last_error(const ps_subscriber_t *s);

/* NULL-safe; sets *sp = NULL. */
void ps_subscriber_destroy(ps_subscriber_t **sp);

/* ---------------------------------------------------------------- profiles */

/* A client profile: where the daemon is and which keys to use, from the
 * PARKSYNC_* environment and from a named context of the client config,
 * so a program (and the parksync CLI, which uses these calls) needs no
 * endpoints of its own.
 *
 * Files, read in this order (a context of the first hides one of the same
 * name in the second): $XDG_CONFIG_HOME/parksync/client.conf (default
 * ~/.config), then /etc/parksync/client.conf. INI:
 *
 *   current = az-prod          ; the context used when none is chosen
 *   [context az-prod]
 *   ingest = tcp://10.0.0.5:7101
 *   publish = tcp://10.0.0.5:7102
 *   query = tcp://10.0.0.5:7103
 *   control = ipc:///run/parksync/control
 *   server_key = daemon.pub    ; relative paths: from the file's folder
 *   key = az-moe.key
 *   producer = AZ-MOE
 *
 * The context: the argument, else $PARKSYNC_CONTEXT, else `current` (the
 * user file's, else the system file's), else none. Each setting: the
 * environment (PARKSYNC_INGEST, PARKSYNC_PUBLISH, PARKSYNC_QUERY,
 * PARKSYNC_CONTROL, PARKSYNC_SERVER_KEY, PARKSYNC_KEY, PARKSYNC_PRODUCER)
 * over the context over the built-in default ("" here). */

#define PS_PROFILE_NAME_MAX  65   /* bytes of a context name (1..64 of [A-Za-z0-9._-]), with NUL */
#define PS_PROFILE_VALUE_MAX 1024 /* bytes of one setting (an endpoint, a path), with NUL */

/* Where a setting came from. */
typedef enum ps_profile_origin {
    PS_ORIGIN_DEFAULT = 0, /* not set: the library's or the command's default applies */
    PS_ORIGIN_CONTEXT,     /* the context's line `line` in ps_profile_t.file */
    PS_ORIGIN_ENV,         /* its PARKSYNC_* environment variable */
} ps_profile_origin_t;

/* One setting. */
typedef struct ps_profile_value {
    char value[PS_PROFILE_VALUE_MAX]; /* "" when unset */
    ps_profile_origin_t origin;       /* where value came from */
    int line;                         /* PS_ORIGIN_CONTEXT: its line in the file */
} ps_profile_value_t;

/* The settings in effect. */
typedef struct ps_profile {
    char context[PS_PROFILE_NAME_MAX]; /* the context in effect; "" when none */
    char file[PS_PROFILE_VALUE_MAX];   /* the file that defines it; "" when none */
    ps_profile_value_t ingest;         /* ingest endpoint */
    ps_profile_value_t publish;        /* publish endpoint */
    ps_profile_value_t query;          /* query endpoint */
    ps_profile_value_t control;        /* control socket (ipc://) */
    ps_profile_value_t server_key;     /* the daemon's public key file */
    ps_profile_value_t key;            /* our secret key file */
    ps_profile_value_t producer;       /* producer id */
    char server_public_key[41];        /* ps_profile_load: server_key's key, Z85; "" plain */
    char secret_key[41];               /* ps_profile_load: key's key, Z85 */
} ps_profile_t;

/* Fills *out with the settings of context (NULL: the default choice, see
 * above), without reading the key files (for a program whose own options
 * may name others, as the CLI's --key does). Returns PS_OK, or
 * PS_ERR_INVALID with one line in err: a file's bad line as FILE:LINE:
 * reason, an unknown context naming every file searched, an unreadable
 * file. */
ps_err_t ps_profile_resolve(const char *context, ps_profile_t *out, char *err, size_t errlen);

/* ps_profile_resolve, then reads the key files it names into
 * server_public_key and secret_key (server_key and key go together; the
 * secret key file must not be open to others). PS_OK, or PS_ERR_INVALID
 * with err naming the file and what is wrong. */
ps_err_t ps_profile_load(const char *context, ps_profile_t *out, char *err, size_t errlen);

/* Points opts' endpoints, producer id and CURVE keys at the profile's set
 * ones (unset ones keep what opts holds). The options then point into
 * *prof, which must outlive them. */
void ps_profile_producer_options(const ps_profile_t *prof, ps_producer_options_t *opts);
void ps_profile_subscriber_options(const ps_profile_t *prof, ps_subscriber_options_t *opts);

/* Called by ps_profile_list for each context: its name, the file and line
 * of its section, and whether it is the one in effect by default. A
 * non-zero return stops the listing. */
typedef int (*ps_profile_list_fn)(void *arg, const char *name, const char *file, int line,
                                  bool current);

/* Lists the contexts of both files, the user file's first, each name
 * once. PS_OK (also with no file at all), or PS_ERR_INVALID with err. */
ps_err_t ps_profile_list(ps_profile_list_fn fn, void *arg, char *err, size_t errlen);

/* Makes name the default context: sets `current = name` in the user file
 * (created if absent, with its folder), keeping every other line, by
 * writing a temporary file, syncing it and renaming it over the old one.
 * name must be a context of either file. PS_OK, or PS_ERR_INVALID with
 * err (an unknown name, a bad file, a write that failed). */
ps_err_t ps_profile_use(const char *name, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* PARKSYNC_CLIENT_H */
