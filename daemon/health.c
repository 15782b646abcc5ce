/*
 * health.c - whether the daemon does its work; see health.h.
 */
#include "health.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "wire.h"

const char *const health_names[HEALTH_CONDITIONS] = {
    [HEALTH_MALFORMED] = "malformed",
    [HEALTH_COMMIT] = "commit",
    [HEALTH_CHECKPOINT] = "checkpoint",
};

static const char *const cond_names[HEALTH_CONDITIONS] = {
    [HEALTH_MALFORMED] = "database malformed",
    [HEALTH_COMMIT] = "ingest stalled",
    [HEALTH_CHECKPOINT] = "WAL checkpoints fail",
};

void health_raise(health_t *h, health_cond_t c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(h->cond[c].reason, sizeof h->cond[c].reason, fmt, ap);
    va_end(ap);
    h->cond[c].times++;
    if (h->cond[c].since_us != 0)
        return;
    h->cond[c].since_us = wire_now_us();
    log_error("degraded: %s: %s", cond_names[c], h->cond[c].reason);
}

void health_clear(health_t *h, health_cond_t c)
{
    if (h->cond[c].since_us == 0)
        return;
    log_notice("no longer degraded by %s after %.1f s (%" PRIu64 " time%s): %s", cond_names[c],
               (double)(wire_now_us() - h->cond[c].since_us) / 1e6, h->cond[c].times,
               h->cond[c].times == 1 ? "" : "s", h->cond[c].reason);
    h->cond[c].since_us = 0;
    h->cond[c].times = 0;
    h->cond[c].reason[0] = '\0';
}

bool health_degraded(const health_t *h)
{
    for (int c = 0; c < HEALTH_CONDITIONS; c++)
        if (h->cond[c].since_us != 0)
            return true;
    return false;
}

void health_to_proto(const health_t *h, Parksync__V1__Health *out, char *buf, size_t size)
{
    int64_t since = health_report(h, buf, size);

    parksync__v1__health__init(out);
    if (since != 0) {
        out->has_degraded = out->degraded = true;
        out->reason = buf;
        out->has_since_us = true;
        out->since_us = since;
    }
    if (h->last_commit_us != 0) {
        out->has_last_commit_us = true;
        out->last_commit_us = h->last_commit_us;
    }
}

int64_t health_report(const health_t *h, char *buf, size_t size)
{
    int64_t since = 0;
    size_t at = 0;

    snprintf(buf, size, "ok");
    for (int c = 0; c < HEALTH_CONDITIONS; c++) {
        if (h->cond[c].since_us == 0)
            continue;
        if (since == 0 || h->cond[c].since_us < since)
            since = h->cond[c].since_us;
        if (at < size)
            at += (size_t)snprintf(buf + at, size - at, "%s%s: %s", at ? "; " : "", cond_names[c],
                                   h->cond[c].reason);
    }
    return since;
}
