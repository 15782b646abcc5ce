/*
 * health.h - whether the daemon does its work, for the operator.
 *
 * The daemon is ok, or degraded by one or more conditions, each with the
 * time it began and a reason in words: commits fail (a full disk, a
 * read-only file), the database is malformed, WAL checkpoints fail. The
 * loop raises and clears them; `status`, STATUS=, metrics, heartbeats and
 * pongs report them (proto Health). A condition is logged when it begins
 * and when it ends, once each, however often it is raised between.
 */
#ifndef PARKSYNCD_HEALTH_H
#define PARKSYNCD_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"

/* Conditions, most severe first: a report names them in this order. */
typedef enum health_cond {
    HEALTH_MALFORMED,  /* SQLite found the database malformed; until a check passes */
    HEALTH_COMMIT,     /* batches roll back; until a batch that applied updates commits */
    HEALTH_CHECKPOINT, /* WAL checkpoints fail; until one works */
    HEALTH_CONDITIONS
} health_cond_t;

/* Short names of the conditions, for metrics labels: "malformed",
 * "commit", "checkpoint". */
extern const char *const health_names[HEALTH_CONDITIONS];

#define HEALTH_REASON 200 /* bytes of one condition's reason, with NUL */

typedef struct health {
    struct {
        int64_t since_us;           /* when it began, us since 1970 UTC; 0: not raised */
        uint64_t times;             /* raised since it began */
        char reason[HEALTH_REASON]; /* the latest words for it */
    } cond[HEALTH_CONDITIONS];
    int64_t last_commit_us; /* last commit that applied updates; 0: none yet */
} health_t;

/* Raises condition c with a reason (printf format); logs it at error
 * level when it begins. */
void health_raise(health_t *h, health_cond_t c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears condition c; logs at notice level how long it lasted. */
void health_clear(health_t *h, health_cond_t c);

/* True when any condition is raised. */
bool health_degraded(const health_t *h);

/* The report: "ok", or the reasons of the raised conditions joined by
 * "; " (most severe first), in buf. Returns the earliest since_us of
 * them (0 when ok). */
int64_t health_report(const health_t *h, char *buf, size_t size);

/* The report as the protocol carries it (proto Health); out->reason
 * points into buf. */
void health_to_proto(const health_t *h, Parksync__V1__Health *out, char *buf, size_t size);

#endif /* PARKSYNCD_HEALTH_H */
