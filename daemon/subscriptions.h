/*
 * subscriptions.h - what the publish socket's peers may subscribe to.
 *
 * The publish socket is an XPUB with ZMQ_XPUB_VERBOSER: libzmq applies
 * each subscription and unsubscription as it arrives and hands every one
 * (repeats included) to this module, with the metadata of the connection
 * that sent it. The module keeps a ledger of what each connection holds
 * and lets a connection keep its subscriptions while each is a prefix of
 * a publish topic (wire_subscription_valid), it holds at most
 * SUBSCRIPTIONS_EACH, all connections together hold at most [limits]
 * max_subscriptions, and it sends no faster than SUBSCRIPTIONS_BURST,
 * then SUBSCRIPTIONS_RATE a second. A connection that breaks a rule, or
 * sends a message that is no subscription, is cut: libzmq then ends it
 * and drops everything it subscribed.
 *
 * Cutting is the only bound there is. libzmq keeps what a connection
 * subscribes (about 32 bytes per topic byte: 100,000 subscriptions of 90
 * bytes cost 285 MB, measured) until the connection ends, and has no
 * option to limit it, nor a call to close one peer of an XPUB. So the
 * module shuts the peer's socket down (shutdown(2)); libzmq's I/O thread
 * reads end-of-file and ends the connection as if the peer had closed
 * it. What the peer had in flight still arrives, and is refused.
 *
 * Why not ZMQ_XPUB_MANUAL, which applies only what the application
 * passes on: in libzmq 4.3.4 it bounds nothing (it keeps its own copy of
 * every subscription received, applied or not: the same 285 MB), and it
 * applies the application's subscription to the connection of the next
 * message in its queue, not of the one just read, once any peer has sent
 * a message that is no subscription (measured: one such message, and a
 * later subscriber's subscription went to another connection).
 *
 * Connections are told apart by the metadata libzmq attaches to every
 * message of one connection: ZMQ_SRCFD gives its socket's descriptor,
 * and a copy of one of its messages, kept per connection, keeps the
 * metadata alive, so its address names the connection even after the
 * descriptor is closed and reused. A descriptor is trusted only while it
 * is the same socket (device and inode) as when first seen.
 */
#ifndef PARKSYNCD_SUBSCRIPTIONS_H
#define PARKSYNCD_SUBSCRIPTIONS_H

#include <stdbool.h>
#include <stdint.h>

/* Subscriptions one connection may hold: a client needs a handful (a
 * country's five kinds, its acks, "hb/"; "rec/" for everything), and one
 * connection must not take the whole budget from the others. */
#define SUBSCRIPTIONS_EACH 256

/* Subscription messages (repeats and unsubscriptions included) one
 * connection may send at once, and then per second. A client sends its
 * handful when it connects (again after each reconnection); libzmq reads
 * a connection's messages faster than the daemon can judge them and
 * queues the excess without bound, so a flood must be cut early (it was
 * measured at 26 MB in half a second of "hb/" repeated). */
#define SUBSCRIPTIONS_BURST 1024
#define SUBSCRIPTIONS_RATE  64

typedef struct subscriptions subscriptions_t;

/* Counts since start, and the budget in use. */
typedef struct subscriptions_stats {
    uint64_t in_use;  /* (connection, topic) pairs held now */
    uint64_t refused; /* messages refused: invalid topic, over budget, not a subscription,
                         or sent by a connection already cut */
    uint64_t cut;     /* connections cut for a refused message */
} subscriptions_stats_t;

/* Takes charge of the subscriptions of xpub, an XPUB with
 * ZMQ_XPUB_VERBOSER (borrowed: it must outlive the returned object), with
 * a budget of max pairs. NULL when out of memory. */
subscriptions_t *subscriptions_new(void *xpub, uint32_t max);

/* Changes the budget. Pairs held beyond a lowered budget stay until their
 * connections unsubscribe or end. */
void subscriptions_set_max(subscriptions_t *subs, uint32_t max);

/* Reads up to budget messages from the XPUB and counts each, or cuts the
 * connection that sent it.
 * Sets *welcome when a subscription that receives heartbeats (a prefix of
 * "hb/") came, new or repeated, from a connection in good standing: the
 * next heartbeat after this call tells its sender that everything it
 * subscribed before is applied. Returns 1 when nothing more is waiting,
 * 0 when the budget ran out first. */
int subscriptions_drain(subscriptions_t *subs, int budget, bool *welcome);

/* Forgets connections whose socket has closed, returning their pairs to
 * the budget. subscriptions_drain sweeps when libzmq reports a
 * connection's end (unsubscriptions without metadata) and before it
 * refuses for want of budget; but libzmq may report the end a moment
 * before its I/O thread closes the socket, so the loop sweeps besides at
 * every heartbeat. */
void subscriptions_sweep(subscriptions_t *subs);

const subscriptions_stats_t *subscriptions_stats(const subscriptions_t *subs);

/* Releases everything, the kept messages included; the XPUB itself is
 * not touched. NULL-safe; sets *subsp = NULL. */
void subscriptions_destroy(subscriptions_t **subsp);

#endif /* PARKSYNCD_SUBSCRIPTIONS_H */
