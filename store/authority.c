/*
 * authority.c - who may write what: ministries, their producers and
 * grants, and why an update is refused.
 */
#include "store_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int store_set_authority(store_t *s, const store_authority_t *a)
{
    size_t nm = a ? a->n_ministries : 0, nmem = nm ? a->n_members : 0;
    store_ministry_t *m = NULL;
    store_member_t *mem = NULL;

    for (size_t i = 0; i < nmem; i++)
        if (a->members[i].ministry >= nm)
            return -EINVAL;
    if ((nm && !(m = calloc(nm, sizeof(*m)))) || (nmem && !(mem = calloc(nmem, sizeof(*mem))))) {
        free(m);
        return -ENOMEM;
    }
    if (nm)
        memcpy(m, a->ministries, nm * sizeof(*m));
    if (nmem)
        memcpy(mem, a->members, nmem * sizeof(*mem));
    free(s->ministries);
    free(s->members);
    s->ministries = m;
    s->n_ministries = nm;
    s->members = mem;
    s->n_members = nmem;
    return 0;
}

bool store_authority_on(const store_t *s)
{
    return s->n_ministries > 0;
}

static const store_ministry_t *ministry_named(const store_t *s, const char *name)
{
    for (size_t i = 0; i < s->n_ministries; i++)
        if (strcmp(s->ministries[i].name, name) == 0)
            return &s->ministries[i];
    return NULL;
}

const store_ministry_t *ministry_of(const store_t *s, const char *producer)
{
    for (size_t i = 0; i < s->n_members; i++)
        if (strcmp(s->members[i].producer, producer) == 0)
            return &s->ministries[s->members[i].ministry];
    return NULL;
}

/* A ministry owns its own country's records (trade: its own side) and
 * whatever its grants add. */
static bool ministry_owns(const store_ministry_t *m, kind_t kind, const char *country)
{
    if (!country)
        return false;
    if (strcmp(m->country, country) == 0)
        return true;
    for (size_t i = 0; i < m->n_grants; i++) {
        const store_grant_t *g = &m->grants[i];
        if ((g->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED || g->kind == kind) &&
            strcmp(g->country, country) == 0)
            return true;
    }
    return false;
}

/* Why the store refuses a well-formed update, or "" when it does not:
 * authority, then future skew. Depends on the update, the rules and the
 * clock only, never on what was applied before. */
void refusal(const store_t *s, const char *ministry, const Parksync__V1__Update *u, kind_t kind,
             const rec_key_t *key, char *why, size_t size)
{
    why[0] = '\0';
    if (s->n_ministries > 0) {
        const store_ministry_t *m =
            ministry ? ministry_named(s, ministry) : ministry_of(s, u->producer_id);
        if (!m) {
            snprintf(why, size, "unknown producer: %s is not listed under any ministry",
                     ministry ? ministry : u->producer_id);
            return;
        }
        if (!ministry_owns(m, kind, key->owner)) {
            snprintf(why, size, "not authoritative: %s does not own %s %s", m->name,
                     wire_kind_name(kind), key->owner ? key->owner : "?");
            return;
        }
    }
    skew_refusal(s, u, why, size);
}

void skew_refusal(const store_t *s, const Parksync__V1__Update *u, char *why, size_t size)
{
    int64_t now = now_us(s), skew = s->cfg.max_future_skew_us;
    why[0] = '\0';
    /* event_time > now > 0 first, so the difference cannot overflow */
    if (skew > 0 && u->event_time_us > now && u->event_time_us - now > skew)
        snprintf(why, size,
                 "event time %" PRId64 " s in the future (max_future_skew_s %" PRId64 ")",
                 (u->event_time_us - now) / 1000000, skew / 1000000);
}
