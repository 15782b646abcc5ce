/*
 * sites.c - endpoint lists and moving between sites (sites.h).
 */
#include "sites.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

int sites_parse(sites_t *s, const char *const lists[SITES_LISTS], const char **why)
{
    memset(s, 0, sizeof *s);
    for (size_t k = 0; k < SITES_LISTS; k++) {
        size_t n = 0;
        if (!lists[k])
            continue;
        if (!(s->text[k] = strdup(lists[k]))) {
            sites_free(s);
            return -ENOMEM;
        }
        for (char *save = NULL, *tok = strtok_r(s->text[k], ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            if (n == SITES_MAX) {
                *why = "more than 8 endpoints in a list";
                sites_free(s);
                return -EINVAL;
            }
            s->ep[k][n++] = tok;
        }
        if (n == 0 || (s->n != 0 && n != s->n)) {
            *why = n == 0 ? "an empty endpoint list"
                          : "endpoint lists name different numbers of sites";
            sites_free(s);
            return -EINVAL;
        }
        s->n = n;
    }
    return 0;
}

const char *sites_endpoint(const sites_t *s, size_t k)
{
    return s->ep[k][s->at];
}

int sites_next(sites_t *s, void *const socks[SITES_LISTS])
{
    size_t next = (s->at + 1) % s->n;
    for (size_t k = 0; k < SITES_LISTS; k++) {
        if (!socks[k] || !s->ep[k][0])
            continue;
        zmq_disconnect(socks[k], s->ep[k][s->at]); /* gone already is fine */
        if (zmq_connect(socks[k], s->ep[k][next]) < 0)
            return -errno;
    }
    s->at = next;
    return 0;
}

void sites_free(sites_t *s)
{
    for (size_t k = 0; k < SITES_LISTS; k++)
        free(s->text[k]);
    memset(s, 0, sizeof *s);
}
