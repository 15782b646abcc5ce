/*
 * page.c - see page.h.
 *
 * Sections: frames and the ring; what the loop feeds; life cycle.
 *
 * The loop encodes each event once (a summary can be half a megabyte,
 * and every stream sends the same bytes) into a frame that the ring and
 * the streams share. A stream reads the ring in order; one that falls so
 * far behind that its next event has left the ring is cut rather than
 * given a buffer of its own: its memory is the ring's, whatever it does.
 */
#include "page_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "wire.h"

#define PAGE_MAX_COUNTRIES 1024 /* summaries read; ISO 3166-1 alpha-2 allows 676 */

/* ---------------------------------------------------------------- frames and the ring */

page_frame_t *page_frame_new(const char *data, size_t len)
{
    page_frame_t *f = malloc(sizeof *f + len);

    if (!f)
        return NULL;
    f->refs = 1;
    f->len = len;
    memcpy(f->data, data, len);
    return f;
}

void page_frame_drop(page_frame_t **fp)
{
    if (*fp && --(*fp)->refs == 0)
        free(*fp);
    *fp = NULL;
}

page_frame_t *page_event(page_t *p, uint64_t seq)
{
    if (seq < p->first || seq >= p->next)
        return NULL;
    return p->ring[seq % PAGE_RING_EVENTS];
}

/* Takes every suspended stream off the list into wake (at most
 * PAGE_CONNECTIONS): the caller resumes them once the lock is released,
 * since libmicrohttpd takes its own lock to resume. Returns how many. */
static size_t take_suspended(page_t *p, struct MHD_Connection **wake)
{
    size_t n = 0;

    for (size_t i = 0; i < PAGE_CONNECTIONS; i++) {
        if (p->streams[i].used && p->streams[i].suspended) {
            p->streams[i].suspended = false;
            wake[n++] = p->streams[i].conn;
        }
    }
    return n;
}

/* Appends the event (taking the caller's reference), making room by
 * letting the oldest go, and takes the suspended streams into wake
 * (take_suspended). */
static size_t push_event(page_t *p, page_frame_t **fp, struct MHD_Connection **wake)
{
    page_frame_t *f = *fp;

    *fp = NULL;
    while (p->first < p->next &&
           (p->next - p->first == PAGE_RING_EVENTS || p->ring_bytes + f->len > PAGE_BACKLOG)) {
        page_frame_t **old = &p->ring[p->first % PAGE_RING_EVENTS];
        p->ring_bytes -= (*old)->len;
        page_frame_drop(old);
        p->first++;
    }
    p->ring[p->next % PAGE_RING_EVENTS] = f;
    p->ring_bytes += f->len;
    p->next++;
    atomic_fetch_add(&p->events, 1);
    return take_suspended(p, wake);
}

static void resume(struct MHD_Connection **wake, size_t n)
{
    for (size_t i = 0; i < n; i++)
        MHD_resume_connection(wake[i]);
}

/* "event: NAME\ndata: JSON\n\n" in a new frame, with a retry line first
 * for summaries, which every new stream starts with. */
static page_frame_t *event_frame(const char *name, const char *json, size_t len)
{
    char head[64];
    int hlen =
        strcmp(name, "summary") == 0
            ? snprintf(head, sizeof head, "retry: %d\nevent: %s\ndata: ", PAGE_RETRY_MS, name)
            : snprintf(head, sizeof head, "event: %s\ndata: ", name);
    page_frame_t *f = malloc(sizeof *f + (size_t)hlen + len + 2);

    if (!f)
        return NULL;
    f->refs = 1;
    f->len = (size_t)hlen + len + 2;
    memcpy(f->data, head, (size_t)hlen);
    memcpy(f->data + hlen, json, len);
    memcpy(f->data + hlen + len, "\n\n", 2);
    return f;
}

/* ---------------------------------------------------------------- what the loop feeds */

static int by_country(const void *a, const void *b)
{
    const Parksync__V1__CountrySummary *x = *(Parksync__V1__CountrySummary *const *)a;
    const Parksync__V1__CountrySummary *y = *(Parksync__V1__CountrySummary *const *)b;
    return strcmp(x->country ? x->country : "", y->country ? y->country : "");
}

/* Reads every live summary: 0 with *out (records to free with
 * parksync__v1__record__free_unpacked) and the view's revision, or a
 * negative errno after logging. */
static int read_summaries(store_t *store, Parksync__V1__Record ***out, size_t *n,
                          uint64_t *revision)
{
    store_filter_t f = {.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY};
    Parksync__V1__Record **recs = NULL;
    store_cursor_t *c;
    const uint8_t *rec;
    size_t len;
    int err = 0, rc;

    *n = 0;
    c = store_snapshot_open(store, &f, &err);
    if (!c) {
        log_warning("web page: cannot read the summaries: %s (%s); the page keeps the last ones",
                    strerror(err < 0 ? -err : EIO), store_errmsg(store));
        return err < 0 ? err : -EIO;
    }
    *revision = store_cursor_revision(c);
    recs = calloc(PAGE_MAX_COUNTRIES, sizeof *recs);
    while (recs && *n < PAGE_MAX_COUNTRIES && (rc = store_cursor_next(c, &rec, &len)) == 1) {
        Parksync__V1__Record *r = parksync__v1__record__unpack(NULL, len, rec);
        if (r && r->body_case == PARKSYNC__V1__RECORD__BODY_SUMMARY)
            recs[(*n)++] = r;
        else if (r)
            parksync__v1__record__free_unpacked(r, NULL);
    }
    if (!recs || rc < 0) {
        log_warning("web page: reading the summaries failed: %s (%s); the page keeps the last "
                    "ones",
                    recs ? strerror(-rc) : "out of memory", store_cursor_errmsg(c));
        for (size_t i = 0; i < *n; i++)
            parksync__v1__record__free_unpacked(recs[i], NULL);
        free(recs);
        store_cursor_close(&c);
        return recs ? rc : -ENOMEM;
    }
    store_cursor_close(&c);
    *out = recs;
    return 0;
}

bool page_summaries(page_t *p, store_t *store, uint64_t upto)
{
    Parksync__V1__Record **recs = NULL;
    Parksync__V1__CountrySummary **items = NULL;
    struct MHD_Connection *wake[PAGE_CONNECTIONS];
    page_frame_t *event = NULL, *json = NULL;
    uint64_t revision = 0;
    size_t n = 0, len = 0, woken = 0;
    char *text = NULL;

    if (!p || read_summaries(store, &recs, &n, &revision) < 0)
        return true;
    for (size_t i = 0; i < n; i++)
        if (recs[i]->revision > upto) { /* committed, not yet published (syncer.h) */
            for (size_t k = 0; k < n; k++)
                parksync__v1__record__free_unpacked(recs[k], NULL);
            free(recs);
            return false;
        }
    if (revision > upto)
        revision = upto;
    items = calloc(n ? n : 1, sizeof *items);
    for (size_t i = 0; items && i < n; i++)
        items[i] = recs[i]->summary;
    if (items) {
        qsort(items, n, sizeof *items, by_country);
        text = page_json_render(&p->rules, items, n, revision, PAGE_JSON_MAX, &len);
    }
    if (text) {
        event = event_frame("summary", text, len);
        json = page_frame_new(text, len);
    }
    if (!event || !json) {
        log_error("web page: out of memory for the summaries at revision %" PRIu64
                  "; the page keeps the last ones",
                  revision);
    } else {
        pthread_mutex_lock(&p->lock);
        page_frame_drop(&p->summary);
        page_frame_drop(&p->json);
        p->summary = event;
        event->refs++;
        p->json = json;
        json = NULL;
        woken = push_event(p, &event, wake);
        pthread_mutex_unlock(&p->lock);
        resume(wake, woken);
    }
    page_frame_drop(&event);
    page_frame_drop(&json);
    free(text);
    free(items);
    for (size_t i = 0; i < n; i++)
        parksync__v1__record__free_unpacked(recs[i], NULL);
    free(recs);
    return true;
}

/* Logs what the HTTP thread counted since the last call, rate-limited. */
static void log_refusals(page_t *p)
{
    static const char *const what[3] = {"refused", "closed", "cut"};
    static const char *const of[3] = {"connections", "connections before a whole request",
                                      "event streams"};
    uint64_t now[3] = {atomic_load(&p->refused), atomic_load(&p->dropped), atomic_load(&p->cut)};
    char why[3][128];

    snprintf(why[0], sizeof why[0], "%d were open", PAGE_CONNECTIONS);
    snprintf(why[1], sizeof why[1], "silent for %d s, headers over %d bytes, or malformed",
             PAGE_TIMEOUT_S, PAGE_MEMORY);
    snprintf(why[2], sizeof why[2], "the client fell %d KiB behind, or took nothing for %d s",
             PAGE_BACKLOG / 1024, PAGE_STREAM_TIMEOUT_S);
    for (int i = 0; i < 3; i++) {
        if (now[i] == p->logged[i])
            continue;
        log_ratelimited(&p->rl[i], LOG_LEVEL_WARNING,
                        "web page: %s %" PRIu64 " %s (%s); %" PRIu64 " since start", what[i],
                        now[i] - p->logged[i], of[i], why[i], now[i]);
        p->logged[i] = now[i];
    }
}

void page_tick(page_t *p, uint64_t revision, int64_t now)
{
    struct MHD_Connection *wake[PAGE_CONNECTIONS];
    page_frame_t *f;
    char json[128];
    size_t woken = 0;
    int len;

    if (!p)
        return;
    log_refusals(p);
    if (now < p->next_heartbeat_ms)
        return;
    p->next_heartbeat_ms = now + PAGE_HEARTBEAT_MS;
    len = snprintf(json, sizeof json,
                   "{\"revision\":%" PRIu64 ",\"interval_ms\":%d,\"time_us\":%" PRId64 "}",
                   revision, PAGE_HEARTBEAT_MS, wire_now_us());
    f = event_frame("heartbeat", json, (size_t)len);
    if (!f)
        return; /* the next one, then */
    pthread_mutex_lock(&p->lock);
    woken = push_event(p, &f, wake);
    pthread_mutex_unlock(&p->lock);
    resume(wake, woken);
}

void page_stats(const page_t *p, page_stats_t *out)
{
    page_t *m = (page_t *)p; /* atomics are read, not written */

    memset(out, 0, sizeof *out);
    if (!p)
        return;
    out->requests = atomic_load(&m->requests);
    out->refused = atomic_load(&m->refused);
    out->dropped = atomic_load(&m->dropped);
    out->cut = atomic_load(&m->cut);
    out->streams = atomic_load(&m->n_streams);
    out->events = atomic_load(&m->events);
}

/* ---------------------------------------------------------------- life cycle */

int page_listen_check(const char *listen, char *why, size_t whylen)
{
    listen_addr_t a;

    if (strcmp(listen, "off") == 0)
        return 0;
    return listen_addr_parse(listen, &a, why, whylen);
}

page_t *page_new(const char *listen, double threshold_pct, double cif_fob_factor)
{
    page_t *p;
    listen_addr_t a;
    char why[256];

    if (listen_addr_parse(listen, &a, why, sizeof why) < 0) {
        log_error("[http] listen: %s; exiting", why);
        return NULL;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        log_error("out of memory for the web page; exiting");
        return NULL;
    }
    p->rules.threshold_pct = threshold_pct;
    p->rules.cif_fob_factor = cif_fob_factor;
    pthread_mutex_init(&p->lock, NULL);
    if (page_http_start(p, &a, listen) < 0) {
        page_destroy(&p);
        return NULL;
    }
    return p;
}

void page_destroy(page_t **pp)
{
    struct MHD_Connection *wake[PAGE_CONNECTIONS];
    size_t n;
    page_t *p;

    if (!pp || !*pp)
        return;
    p = *pp;
    /* Suspended streams are out of libmicrohttpd's loop: resumed, they
     * see `closing` and end, so that stopping closes every connection. */
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    n = take_suspended(p, wake);
    pthread_mutex_unlock(&p->lock);
    resume(wake, n);
    if (p->mhd)
        MHD_stop_daemon(p->mhd); /* joins its thread; streams let go of their frames */
    for (uint64_t s = p->first; s < p->next; s++)
        page_frame_drop(&p->ring[s % PAGE_RING_EVENTS]);
    page_frame_drop(&p->summary);
    page_frame_drop(&p->json);
    pthread_mutex_destroy(&p->lock);
    free(p);
    *pp = NULL;
}
