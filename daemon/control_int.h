/*
 * control_int.h - what the files of the control socket share.
 *
 *   control.c         the socket, replies, the drain loop, reload, the
 *                     periodic STATUS line and metrics snapshot
 *   control_status.c  status, metrics, digest and conflicts: what the daemon is
 *                     doing and holds
 *   control_backup.c  backup and check: the work done off the loop
 */
#ifndef PARKSYNCD_CONTROL_INT_H
#define PARKSYNCD_CONTROL_INT_H

#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <zmq.h>

#include "log.h"
#include "metrics.h"
#include "rundir.h"
#include "wire.h"
#include "zap.h"

#define CONTROL_BUDGET      64           /* requests answered per pass */
#define CONTROL_REPLY_MAX   (512 * 1024) /* bytes of conflicts in one reply, < WIRE_MAX_MSG */
#define CONTROL_ID_MAX      256          /* bytes of a routing id */
#define CONTROL_BACKUP_PATH 1024         /* bytes of a backup path, with NUL */
#define CONTROL_LINGER_MS   200          /* ms pending replies get on close */
#define CONTROL_WAITERS     8            /* `parksync reload` requests waiting at once */
#define CONTROL_MESSAGE_MAX 512          /* bytes of a reload message, with NUL */
#define CONTROL_PATH_MAX    256          /* bytes of the socket's directory or name, with NUL */

/* Who gets a deferred reply. */
typedef struct waiter {
    uint8_t id[CONTROL_ID_MAX]; /* ROUTER routing id */
    size_t len;                 /* bytes of id */
    uint64_t request_id;        /* echoed in the reply */
} waiter_t;

struct control {
    void *sock;                             /* ROUTER, bound */
    store_t *store;                         /* borrowed */
    control_view_t view;                    /* the daemon's state it reads (control.h) */
    int dirfd;                              /* the checked directory of the socket, or -1 */
    char name[CONTROL_PATH_MAX];            /* the socket's file name in it; "": not ours */
    log_ratelimit_t rl;                     /* bad requests */
    uint64_t bad_requests;                  /* control requests dropped or refused as malformed */
    int64_t started_us;                     /* wall clock at start, us since 1970 UTC */
    bool reload_pending;                    /* `parksync reload` waits for main to reload */
    waiter_t reloaders[CONTROL_WAITERS];    /* who asked for it */
    size_t n_reloaders;                     /* entries in reloaders */
    char reload_error[CONTROL_MESSAGE_MAX]; /* last reload's failure, "" after a good one */
    store_backup_t *backup;                 /* running backup, or NULL */
    bool backup_sealed;                     /* its copy is complete: checked, then renamed */
    waiter_t backup_for;                    /* who asked for it */
    char backup_path[CONTROL_BACKUP_PATH];  /* its destination */
    enum { CHECK_NONE, CHECK_LIVE, CHECK_COPY } checking; /* what the thread checks */
    waiter_t check_for;                                   /* who asked for the live check */
    int64_t check_started_ms;                             /* monotonic ms it began */
    int64_t next_status_ms;                               /* monotonic ms of the next STATUS line */
    metrics_http_t *http;                                 /* [metrics] http endpoint, or NULL */
    page_t *page;                                         /* [http] web page, or NULL */
    int64_t next_http_ms;    /* monotonic ms of the next metrics snapshot */
    uint64_t http_dropped;   /* metrics HTTP drops already logged */
    log_ratelimit_t http_rl; /* lines about them */
};

/* ---- control.c: replies */

/* Sends r (version and request_id filled in) to the peer with routing id
 * id, or to a waiter kept for a deferred answer. */
void control_reply_to(control_t *c, const void *id, size_t id_len, uint64_t request_id,
                      Parksync__V1__ControlReply *r);
void control_reply(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                   Parksync__V1__ControlReply *r);
void control_error(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                   Parksync__V1__ErrorCode code, const char *message);
/* Keeps who asked, for an answer given later. */
void control_keep_waiter(waiter_t *w, const zmq_msg_t *id, uint64_t request_id);
/* An INTERNAL error to a waiter. */
void control_reply_error_to(control_t *c, const waiter_t *w, const char *message);

/* ---- control_status.c */

void control_handle_conflicts(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                              const Parksync__V1__ConflictsRequest *q);
/* Takes the figures between batches (see the definition); free m with
 * metrics_snapshot_free either way. 0 or -errno. */
int control_collect(control_t *c, metrics_snapshot_t *m, bool light, const char *producers_after);
void control_handle_status(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                           const Parksync__V1__StatusRequest *q);
void control_handle_metrics(control_t *c, const zmq_msg_t *id, uint64_t request_id);
void control_handle_digest(control_t *c, const zmq_msg_t *id, uint64_t request_id);
/* The metrics text now (caller frees), NULL when out of memory. */
char *control_render(control_t *c, size_t *len);

/* ---- control_backup.c */

/* Ends the running backup's request with an error. */
void control_backup_error(control_t *c, const char *message);
void control_handle_backup(control_t *c, const zmq_msg_t *id, uint64_t request_id,
                           const Parksync__V1__BackupRequest *q);
/* Copies the next pages of the running backup; once whole, has it checked. */
void control_step_backup(control_t *c);
void control_handle_check(control_t *c, const zmq_msg_t *id, uint64_t request_id);

#endif /* PARKSYNCD_CONTROL_INT_H */
