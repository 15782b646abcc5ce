/*
 * conns.c - see conns.h.
 *
 * The open set is a bitmap indexed by descriptor, as long as the soft
 * RLIMIT_NOFILE (a descriptor is always below it): 8 KiB per socket at
 * 65,536. An ACCEPTED event sets a bit, a DISCONNECTED event clears it;
 * a bit already set on ACCEPTED means an end we never saw, and the
 * count is not raised twice.
 */
#include "conns.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <zmq.h>

#include "log.h"

#define CONNS_EVENTS                                                                               \
    (ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_ACCEPT_FAILED | ZMQ_EVENT_DISCONNECTED |                       \
     ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |                  \
     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
#define CONNS_BUDGET     1024       /* events read per drain */
#define CONNS_BITMAP_MAX (1u << 24) /* descriptors the open set can track */

enum { RL_REFUSED, RL_ACCEPT, RL_HANDSHAKE, RL_COUNT };

struct conns {
    char name[16];           /* "ingest", "publish", "query" */
    void *sock;              /* monitored, borrowed */
    void *monitor;           /* PAIR reading its events */
    uint32_t max;            /* open connections allowed, 0: any */
    uint8_t *open;           /* bitmap: descriptors open now */
    uint32_t nfds;           /* descriptors the bitmap covers */
    uint32_t *number;        /* accept number per open descriptor (conns_on_close), or NULL */
    uint32_t accepts;        /* the last accept number given */
    conns_close_fn on_close; /* told of every end, or NULL */
    void *on_close_arg;
    conns_stats_t st;
    log_ratelimit_t rl[RL_COUNT];
};

static const char *const reason_names[CONNS_REASONS] = {
    [CONNS_MECHANISM] = "mechanism",   [CONNS_CRYPTO] = "crypto",
    [CONNS_MALFORMED] = "malformed",   [CONNS_DENIED] = "denied",
    [CONNS_INCOMPLETE] = "incomplete",
};

const char *conns_reason_name(conns_reason_t r)
{
    return r < CONNS_REASONS ? reason_names[r] : "?";
}

uint64_t conns_fit_nofile(uint32_t *max)
{
    struct rlimit rl;
    uint64_t need = (uint64_t)CONNS_SOCKETS * *max + CONNS_FD_RESERVE;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    /* Ask for more than the budget needs: a burst of connects is
     * accepted by libzmq's I/O thread before the loop reads the events
     * that refuse them, and that overshoot must not reach EMFILE. */
    need *= 4;
    if (rl.rlim_cur < need && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t old = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            rl.rlim_cur = old;
    }
    if (*max > 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)CONNS_SOCKETS * *max + CONNS_FD_RESERVE > rl.rlim_cur) {
        uint32_t fit = rl.rlim_cur > CONNS_FD_RESERVE + CONNS_SOCKETS
                           ? (uint32_t)((rl.rlim_cur - CONNS_FD_RESERVE) / CONNS_SOCKETS)
                           : 1;
        log_warning("[limits] max_connections = %" PRIu32 " per socket does not fit in %" PRIu64
                    " open files (LimitNOFILE); using %" PRIu32,
                    *max, (uint64_t)rl.rlim_cur, fit);
        *max = fit;
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

conns_t *conns_new(void *zctx, void *sock, const char *name, uint32_t max)
{
    conns_t *c = calloc(1, sizeof *c);
    char ep[64];
    struct rlimit rl;

    if (!c) {
        log_warning("out of memory for the %s connection monitor; no connection budget", name);
        return NULL;
    }
    snprintf(c->name, sizeof c->name, "%s", name);
    c->sock = sock;
    c->max = max;
    c->nfds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < CONNS_BITMAP_MAX
                  ? (uint32_t)rl.rlim_cur
                  : CONNS_BITMAP_MAX;
    c->open = calloc(c->nfds / 8 + 1, 1);
    snprintf(ep, sizeof ep, "inproc://parksync-conns-%s-%p", name, (void *)c);
    if (!c->open || zmq_socket_monitor(sock, ep, CONNS_EVENTS) < 0 ||
        !(c->monitor = zmq_socket(zctx, ZMQ_PAIR)) || zmq_connect(c->monitor, ep) < 0) {
        log_warning("cannot monitor the %s socket: %s; its connections are neither counted nor "
                    "budgeted",
                    name, c->open ? zmq_strerror(errno) : "out of memory");
        conns_destroy(&c);
        return NULL;
    }
    return c;
}

void *conns_socket(const conns_t *c)
{
    return c->monitor;
}

void conns_set_max(conns_t *c, uint32_t max)
{
    c->max = max;
}

const conns_stats_t *conns_stats(const conns_t *c)
{
    return &c->st;
}

static bool is_open(const conns_t *c, int fd);

int conns_on_close(conns_t *c, conns_close_fn fn, void *arg)
{
    if (!c->number && !(c->number = calloc(c->nfds, sizeof *c->number)))
        return -ENOMEM;
    c->on_close = fn;
    c->on_close_arg = arg;
    return 0;
}

uint32_t conns_number(const conns_t *c, int fd)
{
    return c && c->number && is_open(c, fd) ? c->number[fd] : 0;
}

static bool is_open(const conns_t *c, int fd)
{
    return fd >= 0 && (uint32_t)fd < c->nfds && (c->open[fd / 8] & (1u << (fd % 8)));
}

static void set_open(conns_t *c, int fd, bool on)
{
    if (fd < 0 || (uint32_t)fd >= c->nfds)
        return;
    if (on)
        c->open[fd / 8] |= (uint8_t)(1u << (fd % 8));
    else
        c->open[fd / 8] &= (uint8_t) ~(1u << (fd % 8));
}

/* True when fd is a connected (not listening) stream socket whose local
 * address is the one the monitor reported for the listener: a TCP port
 * or an ipc path. */
static bool of_listener(int fd, const char *endpoint)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int listening = 0;
    socklen_t ll = sizeof listening;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || listening)
        return false;
    if (ss.ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
        return strncmp(endpoint, "ipc://", 6) == 0 &&
               strncmp(un->sun_path, endpoint + 6, sizeof un->sun_path) == 0;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        const char *colon = strrchr(endpoint, ':');
        unsigned port = ss.ss_family == AF_INET
                            ? ntohs(((const struct sockaddr_in *)&ss)->sin_port)
                            : ntohs(((const struct sockaddr_in6 *)&ss)->sin6_port);
        return strncmp(endpoint, "tcp://", 6) == 0 && colon && strtoul(colon + 1, NULL, 10) == port;
    }
    return false;
}

static bool shut(int fd, const char *endpoint)
{
    return of_listener(fd, endpoint) && shutdown(fd, SHUT_RDWR) == 0;
}

static void on_accepted(conns_t *c, int fd, const char *endpoint)
{
    c->st.accepted++;
    if (!is_open(c, fd)) {
        set_open(c, fd, true);
        c->st.open++;
    }
    if (c->number && is_open(c, fd)) {
        if (++c->accepts == 0)
            c->accepts = 1; /* 0 means unknown */
        c->number[fd] = c->accepts;
    }
    if (c->max == 0 || c->st.open <= c->max)
        return;
    if (shut(fd, endpoint)) {
        c->st.refused++;
        log_ratelimited(&c->rl[RL_REFUSED], LOG_LEVEL_WARNING,
                        "%s: %" PRIu64 " connections open, over [limits] max_connections = %" PRIu32
                        "; closing the newest",
                        c->name, c->st.open, c->max);
    }
}

static void on_handshake_failed(conns_t *c, uint16_t event, uint32_t value)
{
    conns_reason_t r;

    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        r = CONNS_DENIED;
    else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        r = CONNS_INCOMPLETE;
    else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        r = CONNS_MECHANISM;
    else if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC ||
             value == ZMQ_PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE)
        r = CONNS_CRYPTO;
    else
        r = CONNS_MALFORMED;
    c->st.handshakes_failed[r]++;
    /* ZAP refusals are logged by the handler, with the key */
    if (r != CONNS_DENIED)
        log_ratelimited(&c->rl[RL_HANDSHAKE], LOG_LEVEL_NOTICE, "%s: a handshake failed (%s%s)",
                        c->name, reason_names[r],
                        r == CONNS_INCOMPLETE ? ": the peer left or timed out" : "");
}

/* One event: [uint16 event, uint32 value][endpoint]. */
static void handle(conns_t *c, const zmq_msg_t *ev, const char *endpoint)
{
    uint16_t event;
    uint32_t value;

    if (zmq_msg_size((zmq_msg_t *)ev) < 6)
        return;
    memcpy(&event, zmq_msg_data((zmq_msg_t *)ev), sizeof event);
    memcpy(&value, (const uint8_t *)zmq_msg_data((zmq_msg_t *)ev) + 2, sizeof value);
    switch (event) {
    case ZMQ_EVENT_ACCEPTED:
        on_accepted(c, (int)value, endpoint);
        break;
    case ZMQ_EVENT_DISCONNECTED:
        if (is_open(c, (int)value)) {
            set_open(c, (int)value, false);
            c->st.open--;
            if (c->on_close)
                c->on_close(c->on_close_arg, (int)value, c->number[value]);
        }
        break;
    case ZMQ_EVENT_ACCEPT_FAILED:
        c->st.accept_failed++;
        log_ratelimited(&c->rl[RL_ACCEPT], LOG_LEVEL_WARNING, "%s: cannot accept a connection: %s",
                        c->name, strerror((int)value));
        break;
    default:
        on_handshake_failed(c, event, value);
        break;
    }
}

void conns_drain(conns_t *c)
{
    for (int i = 0; c && i < CONNS_BUDGET; i++) {
        zmq_msg_t ev, addr;
        char endpoint[256] = "";

        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, c->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        zmq_msg_init(&addr);
        if (zmq_msg_more(&ev) && zmq_msg_recv(&addr, c->monitor, 0) >= 0) {
            size_t n = zmq_msg_size(&addr) < sizeof endpoint - 1 ? zmq_msg_size(&addr)
                                                                 : sizeof endpoint - 1;
            memcpy(endpoint, zmq_msg_data(&addr), n);
            endpoint[n] = '\0';
        }
        handle(c, &ev, endpoint);
        zmq_msg_close(&addr);
        zmq_msg_close(&ev);
    }
}

uint32_t conns_close_all(conns_t *c)
{
    char endpoint[256];
    size_t len = sizeof endpoint;
    uint32_t n = 0;

    if (!c || zmq_getsockopt(c->sock, ZMQ_LAST_ENDPOINT, endpoint, &len) < 0)
        return 0;
    conns_drain(c); /* ends already reported are not shut again */
    for (uint32_t fd = 0; fd < c->nfds; fd++)
        if (is_open(c, (int)fd) && shut((int)fd, endpoint))
            n++;
    return n;
}

void conns_destroy(conns_t **cp)
{
    conns_t *c;

    if (!cp || !*cp)
        return;
    c = *cp;
    if (c->monitor) {
        /* Stop the events before their reader goes, and read what is
         * queued: an event sent to a reader already closed stays in
         * libzmq's pipe, never freed. */
        zmq_socket_monitor(c->sock, NULL, 0);
        c->on_close = NULL; /* its owner is going away */
        conns_drain(c);
        zmq_close(c->monitor);
    }
    free(c->open);
    free(c->number);
    free(c);
    *cp = NULL;
}
