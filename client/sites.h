/*
 * sites.h - the sites a client may talk to, tried in turn.
 *
 * A producer's or subscriber's endpoints may each list several sites,
 * comma-separated ("tcp://a:7101,tcp://b:7101"): the i-th endpoint of
 * every list belongs to site i. The client talks to one site at a time
 * and moves to the next on silence. Internal to libparksync.
 */
#ifndef PARKSYNC_CLIENT_SITES_H
#define PARKSYNC_CLIENT_SITES_H

#include <stdbool.h>
#include <stddef.h>

#define SITES_MAX   8 /* sites one client lists */
#define SITES_LISTS 3 /* endpoint lists: ingest, publish, query */

typedef struct sites {
    char *text[SITES_LISTS];                /* copies of the lists, cut at the commas */
    const char *ep[SITES_LISTS][SITES_MAX]; /* the endpoints, pointing into text */
    size_t n;                               /* sites */
    size_t at;                              /* the site in use */
} sites_t;

/* Reads lists[0..SITES_LISTS) (NULL entries: a list not used, e.g. a
 * subscriber's ingest; defaults[k] when NULL is not wanted either).
 * Every list used must name the same number of sites, at most SITES_MAX,
 * none empty. 0, -EINVAL (with a reason in why) or -ENOMEM. */
int sites_parse(sites_t *s, const char *const lists[SITES_LISTS], const char **why);

/* The endpoint of list k at the site in use. */
const char *sites_endpoint(const sites_t *s, size_t k);

/* Moves every socket socks[k] (NULL: not used) from the site in use to
 * the next one: disconnects, connects. 0 or -errno. */
int sites_next(sites_t *s, void *const socks[SITES_LISTS]);

void sites_free(sites_t *s);

#endif /* PARKSYNC_CLIENT_SITES_H */
