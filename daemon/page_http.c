/*
 * page_http.c - the web page's HTTP thread (page_int.h): routes, event
 * streams, and the bounds of page.h, each refusal counted.
 *
 * Sections: connections; event streams; requests; start.
 */
#include "page_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

/* Marks a request that became an event stream (its request context). */
static const char stream_mark = 's';

/* What the HTTP thread knows of one connection (its socket context). */
typedef struct page_conn {
    bool answered; /* a whole request reached on_request */
} page_conn_t;

/* The page is read-only and self-contained: nothing from elsewhere may
 * run in it, and it tells nobody where it was read from. */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                          "form-action 'none'; frame-ancestors 'none'";

/* ---------------------------------------------------------------- connections */

/* Refuses a connection beyond PAGE_CONNECTIONS (libmicrohttpd's own
 * limit, one higher, would refuse it without a word). Runs in the HTTP
 * thread, as on_connection does: `open` needs no lock. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    page_t *p = cls;

    (void)addr;
    (void)addrlen;
    if (p->open >= PAGE_CONNECTIONS) {
        atomic_fetch_add(&p->refused, 1);
        return MHD_NO;
    }
    return MHD_YES;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    page_t *p = cls;
    page_conn_t *pc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        int sndbuf = PAGE_SNDBUF;
        /* the kernel's share of what a client that stops reading holds */
        if (ci)
            setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        p->open++;
        *socket_context = calloc(1, sizeof(page_conn_t)); /* NULL: not counted */
        return;
    }
    p->open--;
    if (pc && !pc->answered)
        atomic_fetch_add(&p->dropped, 1);
    free(pc);
    *socket_context = NULL;
}

/* An event stream whose client took nothing for PAGE_STREAM_TIMEOUT_S
 * is cut by libmicrohttpd's timeout; one cut by sse_read ends with an
 * error instead, so each is counted once. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    page_t *p = cls;

    (void)conn;
    if (*req_cls == &stream_mark && toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)
        atomic_fetch_add(&p->cut, 1);
    *req_cls = NULL;
}

/* ---------------------------------------------------------------- event streams */

/* Hands libmicrohttpd the next bytes of the stream: the rest of the
 * event being written, else the next event of the ring. Caught up, the
 * stream is suspended until page.c makes an event; behind the ring, it
 * is cut. */
static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    page_stream_t *st = cls;
    page_t *p = st->page;
    size_t n;

    (void)pos;
    pthread_mutex_lock(&p->lock);
    if (p->closing) {
        pthread_mutex_unlock(&p->lock);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (!st->cur) {
        if (st->next < p->first) {
            pthread_mutex_unlock(&p->lock);
            atomic_fetch_add(&p->cut, 1);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        st->cur = page_event(p, st->next);
        if (!st->cur) {
            st->suspended = true;
            MHD_suspend_connection(st->conn);
            pthread_mutex_unlock(&p->lock);
            return 0;
        }
        st->cur->refs++;
        st->next++;
        st->off = 0;
    }
    n = st->cur->len - st->off < max ? st->cur->len - st->off : max;
    memcpy(buf, st->cur->data + st->off, n);
    st->off += n;
    if (st->off == st->cur->len)
        page_frame_drop(&st->cur);
    pthread_mutex_unlock(&p->lock);
    return (ssize_t)n;
}

static void sse_free(void *cls)
{
    page_stream_t *st = cls;
    page_t *p = st->page;

    pthread_mutex_lock(&p->lock);
    page_frame_drop(&st->cur);
    st->used = false;
    st->suspended = false;
    st->conn = NULL;
    pthread_mutex_unlock(&p->lock);
    atomic_fetch_sub(&p->n_streams, 1);
}

/* A new stream that starts with the last summary; NULL when the page
 * stops (or, impossibly, every slot is taken). */
static page_stream_t *stream_open(page_t *p, struct MHD_Connection *conn)
{
    page_stream_t *st = NULL;

    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; !p->closing && i < PAGE_CONNECTIONS && !st; i++)
        if (!p->streams[i].used)
            st = &p->streams[i];
    if (st) {
        *st = (page_stream_t){.page = p, .used = true, .conn = conn, .next = p->next};
        st->cur = p->summary;
        if (st->cur)
            st->cur->refs++;
        atomic_fetch_add(&p->n_streams, 1);
    }
    pthread_mutex_unlock(&p->lock);
    return st;
}

static struct MHD_Response *events(page_t *p, struct MHD_Connection *conn, void **req_cls)
{
    page_stream_t *st = stream_open(p, conn);
    struct MHD_Response *r;

    if (!st)
        return NULL;
    r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, PAGE_BLOCK, sse_read, st, sse_free);
    if (!r) {
        sse_free(st);
        return NULL;
    }
    /* Idle is normal for a stream (suspended, it cannot time out);
     * writing nothing for this long while events wait is not. */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                              (unsigned int)PAGE_STREAM_TIMEOUT_S);
    *req_cls = (void *)&stream_mark;
    return r;
}

/* ---------------------------------------------------------------- requests */

static struct MHD_Response *text(const char *msg)
{
    return MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
}

/* The response to GET url and its status and Content-Type; NULL when
 * out of memory. */
static struct MHD_Response *route(page_t *p, struct MHD_Connection *conn, const char *url,
                                  bool head, void **req_cls, unsigned int *status,
                                  const char **type)
{
    struct MHD_Response *r;

    for (const page_asset_t *a = page_assets; a->path; a++) {
        if (strcmp(url, a->path) == 0) {
            *type = a->content_type;
            return MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
        }
    }
    if (strcmp(url, "/summary.json") == 0) {
        *type = "application/json";
        pthread_mutex_lock(&p->lock);
        r = p->json ? MHD_create_response_from_buffer(p->json->len, p->json->data,
                                                      MHD_RESPMEM_MUST_COPY)
                    : text("{\"revision\":0,\"countries\":[],\"truncated\":false}");
        pthread_mutex_unlock(&p->lock);
        return r;
    }
    if (strcmp(url, "/events") == 0) {
        *type = "text/event-stream";
        if (head)
            return text("");
        r = events(p, conn, req_cls);
        if (!r) {
            *status = MHD_HTTP_SERVICE_UNAVAILABLE;
            *type = "text/plain";
            return text("no event stream now\n");
        }
        return r;
    }
    *status = MHD_HTTP_NOT_FOUND;
    *type = "text/plain";
    return text("not here; the page is at /\n");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    page_t *p = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    unsigned int status = MHD_HTTP_OK;
    const char *type = "text/plain";
    struct MHD_Response *r;
    enum MHD_Result ret;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    if (ci && ci->socket_context)
        ((page_conn_t *)ci->socket_context)->answered = true;
    atomic_fetch_add(&p->requests, 1);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        r = text("read-only: GET or HEAD\n");
    } else {
        r = route(p, conn, url, strcmp(method, "HEAD") == 0, req_cls, &status, &type);
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy", csp);
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---------------------------------------------------------------- start */

int page_http_start(page_t *p, const listen_addr_t *a, const char *listen)
{
    const union MHD_DaemonInfo *info;

    /* One polling thread serves every connection as its bytes arrive, so
     * a slow peer delays nobody else; streams are suspended while they
     * wait for an event, and the options bound what peers hold. */
    p->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME |
            (a->v6 ? MHD_USE_IPv6 : 0),
        0, on_accept, p, on_request, p, MHD_OPTION_SOCK_ADDR, &a->sa, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)PAGE_CONNECTIONS + 1, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)PAGE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)PAGE_MEMORY, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, p, MHD_OPTION_NOTIFY_COMPLETED, on_completed, p, MHD_OPTION_END);
    if (!p->mhd) {
        log_error("cannot serve the web page on http://%s/ (address in use?); exiting", listen);
        return -1;
    }
    info = MHD_get_daemon_info(p->mhd, MHD_DAEMON_INFO_BIND_PORT);
    log_info("web page served on http://%s/ (port %u)%s", listen, info ? (unsigned)info->port : 0u,
             a->loopback ? "" : "; beyond loopback, to whoever reaches it ([http] allow_remote)");
    return 0;
}
