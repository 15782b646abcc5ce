/*
 * subscriptions.c - see subscriptions.h.
 *
 * Sections: connections (who sent a message, and cutting one); the
 * ledger (what each connection holds); reading the socket; life cycle.
 */
#include "subscriptions.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <zmq.h>

#include "log.h"
#include "strmap.h"
#include "wire.h"

#define KEY_MARK        '=' /* first byte of every ledger key: strmap refuses "", a valid subscription */
#define SHOWN_MAX       100          /* bytes of a refused topic shown in a log line, with NUL */
#define FD_SLOTS        64           /* first size of the table by descriptor */
#define CUT_DISCARD_MAX (256 * 1024) /* bytes read off a cut connection's socket, at most */
#define STR_(x)         #x
#define STR(x)          STR_(x) /* a number macro's digits, as a string literal */

static const char why_each[] =
    "refused a subscription beyond the " STR(SUBSCRIPTIONS_EACH) " one connection may hold";
static const char why_rate[] =
    "refused a message beyond the " STR(SUBSCRIPTIONS_BURST) " at once and " STR(
        SUBSCRIPTIONS_RATE) " a second one connection may send";

/* One publish connection that has sent something. */
typedef struct conn {
    int fd;          /* its socket, as ZMQ_SRCFD gave it */
    dev_t dev;       /* the socket's device and inode when first seen: the */
    ino_t ino;       /*   descriptor is this connection's while they match */
    zmq_msg_t pin;   /* one of its messages: holds its metadata, so `who` stays unique */
    const char *who; /* a value in that metadata: its address names the connection */
    strmap_t topics; /* KEY_MARK + topic of every pair it holds */
    int64_t tokens;  /* messages it may send now, SUBSCRIPTIONS_BURST at most */
    int64_t fill_ms; /* monotonic ms to which tokens were last refilled */
    bool cut;        /* shut down for a refused message: whatever follows is refused */
} conn_t;

struct subscriptions {
    void *xpub;               /* the publish socket, borrowed */
    uint32_t max;             /* pairs allowed */
    conn_t **by_fd;           /* n_fd slots, indexed by descriptor */
    size_t n_fd;              /* slots allocated */
    subscriptions_stats_t st; /* counters */
    log_ratelimit_t rl_bad;   /* refusals of what is no topic prefix or no subscription */
    log_ratelimit_t rl_full;  /* refusals for want of budget */
};

/* ---------------------------------------------------------------- connections */

/* The device and inode of the socket fd. False when fd is closed or no
 * socket. */
static bool socket_of(int fd, dev_t *dev, ino_t *ino)
{
    struct stat st;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
        return false;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return true;
}

/* True while c's descriptor is still c's socket. */
static bool conn_alive(const conn_t *c)
{
    dev_t dev;
    ino_t ino;

    return socket_of(c->fd, &dev, &ino) && dev == c->dev && ino == c->ino;
}

/* Forgets a connection that has ended: libzmq has removed its pipe, and
 * with it its pairs, from the subscription trie. */
static void conn_retire(subscriptions_t *subs, conn_t **cp)
{
    conn_t *c = *cp;

    subs->st.in_use -= c->topics.count;
    strmap_free(&c->topics);
    zmq_msg_close(&c->pin);
    free(c);
    *cp = NULL;
}

static void sweep_except(subscriptions_t *subs, const conn_t *keep)
{
    for (size_t fd = 0; fd < subs->n_fd; fd++)
        if (subs->by_fd[fd] && subs->by_fd[fd] != keep && !conn_alive(subs->by_fd[fd]))
            conn_retire(subs, &subs->by_fd[fd]);
}

/* Shuts the socket down, which libzmq's I/O thread reads as end-of-file:
 * it ends the connection and drops what it subscribed. Before it reaches
 * the end it would take in whatever the kernel still holds for the
 * connection (on ipc up to the peer's send buffer, 208 KB by default),
 * every subscription of it into the trie at 32 bytes per topic byte; so
 * that is read off here and thrown away. Should libzmq read at the same
 * time, its stream is torn and it ends the connection on the framing
 * error instead. Only while the descriptor is still the connection's: a
 * number reused by another socket is left alone. */
static void conn_cut(subscriptions_t *subs, conn_t *c)
{
    char sink[4096];

    if (c->cut)
        return;
    c->cut = true;
    if (!conn_alive(c) || shutdown(c->fd, SHUT_RDWR) < 0)
        return;
    for (size_t n = 0; n < CUT_DISCARD_MAX && recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0;
         n += sizeof sink)
        ;
    subs->st.cut++;
}

static int grow(subscriptions_t *subs, int fd)
{
    size_t n = subs->n_fd ? subs->n_fd : FD_SLOTS;
    conn_t **t;

    while (n <= (size_t)fd)
        n *= 2;
    if (!(t = realloc(subs->by_fd, n * sizeof *t)))
        return -ENOMEM;
    memset(t + subs->n_fd, 0, (n - subs->n_fd) * sizeof *t);
    subs->by_fd = t;
    subs->n_fd = n;
    return 0;
}

/* The connection that sent msg (metadata value who), made on first
 * sight. NULL when that connection has ended (its descriptor is closed or
 * another socket's): libzmq has dropped its pipe and what it subscribed,
 * so there is nothing to count or refuse. NULL too when out of memory,
 * after cutting the connection: it cannot be accounted for. */
static conn_t *conn_of(subscriptions_t *subs, zmq_msg_t *msg, const char *who)
{
    int fd = zmq_msg_get(msg, ZMQ_SRCFD);
    conn_t *c;
    dev_t dev;
    ino_t ino;

    if (fd < 0) {
        log_ratelimited(&subs->rl_bad, LOG_LEVEL_ERROR,
                        "publish: this libzmq names no socket (ZMQ_SRCFD) for a subscription; "
                        "connections cannot be told apart, so none is counted");
        return NULL;
    }
    c = (size_t)fd < subs->n_fd ? subs->by_fd[fd] : NULL;
    if (c && c->who == who)
        return c;
    if (!socket_of(fd, &dev, &ino))
        return NULL;
    if (c && c->dev == dev && c->ino == ino)
        return NULL; /* c is alive, so msg came from an earlier connection on this number */
    if (c)
        conn_retire(subs, &subs->by_fd[fd]);
    if (((size_t)fd >= subs->n_fd && grow(subs, fd) < 0) || !(c = calloc(1, sizeof *c))) {
        log_ratelimited(&subs->rl_bad, LOG_LEVEL_ERROR,
                        "publish: out of memory for a subscriber; closing its connection");
        if (shutdown(fd, SHUT_RDWR) == 0)
            subs->st.cut++;
        return NULL;
    }
    c->fd = fd;
    c->dev = dev;
    c->ino = ino;
    zmq_msg_init(&c->pin);
    zmq_msg_copy(&c->pin, msg);
    c->who = who;
    c->tokens = SUBSCRIPTIONS_BURST;
    c->fill_ms = wire_monotonic_ms();
    subs->by_fd[fd] = c;
    return c;
}

/* True when c may send one more message now (and takes its token). */
static bool conn_take(conn_t *c, int64_t now)
{
    int64_t earned = (now - c->fill_ms) * SUBSCRIPTIONS_RATE / 1000;

    if (earned > 0) {
        c->tokens =
            c->tokens + earned > SUBSCRIPTIONS_BURST ? SUBSCRIPTIONS_BURST : c->tokens + earned;
        c->fill_ms += earned * 1000 / SUBSCRIPTIONS_RATE;
    }
    if (c->tokens == 0)
        return false;
    c->tokens--;
    return true;
}

/* ---------------------------------------------------------------- the ledger */

/* The ledger key of a topic that passed wire_subscription_valid (at most
 * 69 bytes, no NUL). */
static const char *key_of(char key[STRMAP_KEY_MAX], const uint8_t *topic, size_t len)
{
    key[0] = KEY_MARK;
    memcpy(key + 1, topic, len);
    key[len + 1] = '\0';
    return key;
}

static void refuse(subscriptions_t *subs, log_ratelimit_t *rl, conn_t *c, const zmq_msg_t *msg,
                   const char *why)
{
    const char *peer = zmq_msg_gets(msg, "Peer-Address"), *user = zmq_msg_gets(msg, "User-Id");
    char shown[SHOWN_MAX];

    subs->st.refused++;
    conn_cut(subs, c);
    log_ratelimited(
        rl, LOG_LEVEL_WARNING,
        "publish: %s from %s%s%s (%zu bytes: \"%s\"); closing its connection", why,
        peer && *peer ? peer : "a subscriber", user ? ", user " : "", user ? user : "",
        zmq_msg_size(msg),
        log_printable(shown, sizeof shown, zmq_msg_data((zmq_msg_t *)msg), zmq_msg_size(msg)));
}

/* msg is [1][topic] from c, which is in good standing. libzmq has applied
 * it already: the ledger counts it, or cuts c, which takes it away again. */
static void subscribe(subscriptions_t *subs, conn_t *c, zmq_msg_t *msg, bool *welcome)
{
    const uint8_t *topic = (const uint8_t *)zmq_msg_data(msg) + 1;
    size_t len = zmq_msg_size(msg) - 1;
    char key[STRMAP_KEY_MAX];

    if (!wire_subscription_valid(topic, len)) {
        refuse(subs, &subs->rl_bad, c, msg, "refused a subscription that is no topic prefix");
        return;
    }
    key_of(key, topic, len);
    if (!strmap_find(&c->topics, key)) {
        if (c->topics.count >= SUBSCRIPTIONS_EACH) {
            refuse(subs, &subs->rl_full, c, msg, why_each);
            return;
        }
        if (subs->st.in_use >= subs->max)
            sweep_except(subs, c); /* pairs of connections that have ended go back first */
        if (subs->st.in_use >= subs->max) {
            refuse(subs, &subs->rl_full, c, msg,
                   "refused a subscription: every one of [limits] max_subscriptions is in use");
            return;
        }
        if (!strmap_upsert(&c->topics, key)) {
            refuse(subs, &subs->rl_full, c, msg, "out of memory for a subscription");
            return;
        }
        subs->st.in_use++;
    }
    if (len <= strlen(WIRE_TOPIC_HEARTBEAT) && memcmp(topic, WIRE_TOPIC_HEARTBEAT, len) == 0)
        *welcome = true;
}

/* msg is [0][topic] from c, applied by libzmq already: a topic c does not
 * hold changed nothing there either. */
static void unsubscribe(subscriptions_t *subs, conn_t *c, zmq_msg_t *msg)
{
    const uint8_t *topic = (const uint8_t *)zmq_msg_data(msg) + 1;
    size_t len = zmq_msg_size(msg) - 1;
    char key[STRMAP_KEY_MAX];

    /* only valid topics are in the ledger; checking first also keeps a NUL
     * in the topic from shortening the key into another topic's */
    if (!wire_subscription_valid(topic, len) || !strmap_find(&c->topics, key_of(key, topic, len)))
        return;
    strmap_remove(&c->topics, key);
    subs->st.in_use--;
}

/* ---------------------------------------------------------------- reading the socket */

/* One message read from the XPUB. Sets *ended when it reports the end of
 * a connection. */
static void handle(subscriptions_t *subs, zmq_msg_t *msg, int64_t now, bool *welcome, bool *ended)
{
    const uint8_t *d = zmq_msg_data(msg);
    size_t n = zmq_msg_size(msg);
    /* Every connection's messages carry its handshake's metadata, which
     * always holds Socket-Type; libzmq's own reports carry none. */
    const char *who = zmq_msg_gets(msg, "Socket-Type");
    conn_t *c;

    if (!who) {
        /* a connection has ended: libzmq lists what it had subscribed */
        *ended = true;
        return;
    }
    if (!(c = conn_of(subs, msg, who)))
        return;
    if (c->cut)
        subs->st.refused++; /* in flight when it was cut */
    else if (!conn_take(c, now))
        refuse(subs, &subs->rl_full, c, msg, why_rate);
    else if (n >= 1 && d[0] == 1)
        subscribe(subs, c, msg, welcome);
    else if (n >= 1 && d[0] == 0)
        unsubscribe(subs, c, msg);
    else
        refuse(subs, &subs->rl_bad, c, msg, "refused a message that is no subscription");
}

int subscriptions_drain(subscriptions_t *subs, int budget, bool *welcome)
{
    int64_t now = wire_monotonic_ms();
    bool ended = false;
    int rc = 0;

    for (int i = 0; i < budget; i++) {
        zmq_msg_t msg;

        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, subs->xpub, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            rc = 1;
            break;
        }
        handle(subs, &msg, now, welcome, &ended);
        zmq_msg_close(&msg);
    }
    if (ended)
        sweep_except(subs, NULL);
    return rc;
}

/* ---------------------------------------------------------------- life cycle */

subscriptions_t *subscriptions_new(void *xpub, uint32_t max)
{
    subscriptions_t *subs = calloc(1, sizeof *subs);

    if (!subs)
        return NULL;
    subs->xpub = xpub;
    subs->max = max;
    return subs;
}

void subscriptions_set_max(subscriptions_t *subs, uint32_t max)
{
    subs->max = max;
}

void subscriptions_sweep(subscriptions_t *subs)
{
    sweep_except(subs, NULL);
}

const subscriptions_stats_t *subscriptions_stats(const subscriptions_t *subs)
{
    return &subs->st;
}

void subscriptions_destroy(subscriptions_t **subsp)
{
    subscriptions_t *subs;

    if (!subsp || !*subsp)
        return;
    subs = *subsp;
    for (size_t fd = 0; fd < subs->n_fd; fd++)
        if (subs->by_fd[fd])
            conn_retire(subs, &subs->by_fd[fd]);
    if (subs->rl_bad.suppressed + subs->rl_full.suppressed > 0)
        log_info("%" PRIu64 " 'refused subscription' messages were suppressed at the end",
                 subs->rl_bad.suppressed + subs->rl_full.suppressed);
    free(subs->by_fd);
    free(subs);
    *subsp = NULL;
}
