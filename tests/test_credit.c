/*
 * test_credit.c - a subscriber's flow control against daemons that spend
 * credit their own way. The protocol lets the daemon send at most the
 * chunks granted (proto/README.md, Snapshots); libparksync grants 64 up
 * front and grants consumed ones back in batches. A query endpoint played
 * by the test (a ROUTER on loopback) grants itself fewer chunks than a
 * batch at a time and waits for credit after them: the subscriber must
 * still receive every record.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "parksync.h"
#include "upd.h"
#include "wire.h"

#define CHUNKS        40   /* chunks of the snapshot */
#define PER_CHUNK     3    /* records in each */
#define SERVED_CREDIT 4    /* chunks the fake daemon sends before it waits for credit */
#define WAIT_MS       5000 /* longest the fake daemon or the subscriber waits, ms */

typedef struct fake {
    void *ctx, *router;
    char endpoint[64];
    int credits;   /* credit messages received */
    int chunks;    /* chunks sent */
    char why[128]; /* "" or what went wrong on the daemon's side */
} fake_t;

/* The next request from the subscriber; NULL after WAIT_MS of silence. */
static Parksync__V1__QueryRequest *fake_recv(fake_t *f, zmq_msg_t *peer)
{
    zmq_pollitem_t item = {.socket = f->router, .events = ZMQ_POLLIN};
    zmq_msg_t body;
    const char *why;
    Parksync__V1__QueryRequest *q = NULL;

    if (zmq_poll(&item, 1, WAIT_MS) != 1)
        return NULL;
    zmq_msg_init(&body);
    if (zmq_msg_recv(peer, f->router, 0) >= 0 && zmq_msg_recv(&body, f->router, 0) >= 0)
        wire_query_request_decode(zmq_msg_data(&body), zmq_msg_size(&body), &q, &why);
    zmq_msg_close(&body);
    return q;
}

static void *fake_daemon(void *arg)
{
    fake_t *f = arg;
    zmq_msg_t peer;
    wire_chunk_t c = {0};
    Parksync__V1__QueryRequest *q;
    uint64_t id;
    int credit;

    zmq_msg_init(&peer);
    if ((q = fake_recv(f, &peer)) == NULL ||
        q->body_case != PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT) {
        snprintf(f->why, sizeof f->why, "no snapshot request came");
        goto out;
    }
    id = q->request_id;
    credit = q->snapshot->credit < SERVED_CREDIT ? (int)q->snapshot->credit : SERVED_CREDIT;
    parksync__v1__query_request__free_unpacked(q, NULL);
    for (int n = 0; n < CHUNKS; n++) {
        while (credit == 0) {
            zmq_msg_t from;
            zmq_msg_init(&from);
            q = fake_recv(f, &from);
            zmq_msg_close(&from);
            if (q == NULL) {
                snprintf(f->why, sizeof f->why, "no credit came after %d chunks", n);
                goto out;
            }
            if (q->body_case == PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT && q->request_id == id) {
                credit += (int)q->credit->chunks;
                f->credits++;
            }
            parksync__v1__query_request__free_unpacked(q, NULL);
        }
        wire_chunk_reset(&c);
        upd_chunk_parks(&c, n * PER_CHUNK, PER_CHUNK, "AZ");
        const uint8_t *msg;
        size_t len;
        zmq_msg_t to;
        zmq_msg_init(&to);
        zmq_msg_copy(&to, &peer);
        if (wire_chunk_finish(&c, id, n + 1 == CHUNKS, 100 + CHUNKS * PER_CHUNK, NULL, &msg, &len) <
                0 ||
            zmq_msg_send(&to, f->router, ZMQ_SNDMORE) < 0 || zmq_send(f->router, msg, len, 0) < 0) {
            snprintf(f->why, sizeof f->why, "cannot send chunk %d", n);
            zmq_msg_close(&to);
            goto out;
        }
        credit--;
        f->chunks++;
    }
out:
    zmq_msg_close(&peer);
    wire_chunk_free(&c);
    return NULL;
}

Test(credit, a_daemon_that_grants_less_than_a_batch_still_sends_every_chunk, .timeout = 60)
{
    fake_t f = {0};
    size_t len = sizeof f.endpoint;
    pthread_t t;
    ps_subscriber_options_t o;
    ps_subscriber_t *sub;
    ps_event_t ev;
    ps_err_t err;
    int records = 0;

    f.ctx = zmq_ctx_new();
    f.router = zmq_socket(f.ctx, ZMQ_ROUTER);
    cr_assert_eq(zmq_bind(f.router, "tcp://127.0.0.1:*"), 0);
    cr_assert_eq(zmq_getsockopt(f.router, ZMQ_LAST_ENDPOINT, f.endpoint, &len), 0);
    cr_assert_eq(pthread_create(&t, NULL, fake_daemon, &f), 0);

    ps_subscriber_options_init(&o);
    o.query_endpoint = f.endpoint;
    o.publish_endpoint = "tcp://127.0.0.1:1"; /* not live: never read */
    o.live = false;
    o.timeout_ms = WAIT_MS;
    sub = ps_subscriber_new(&o, &err);
    cr_assert_not_null(sub, "%s", ps_strerror(err));
    while ((err = ps_subscriber_next(sub, &ev, WAIT_MS)) == PS_OK &&
           ev.kind != PS_EVENT_SNAPSHOT_END)
        if (ev.kind == PS_EVENT_RECORD)
            records++;
    pthread_join(t, NULL);
    cr_expect_str_empty(f.why, "the fake daemon: %s", f.why);
    cr_expect_eq(err, PS_OK, "the snapshot ended with %s after %d records", ps_strerror(err),
                 records);
    cr_expect_eq(records, CHUNKS * PER_CHUNK);
    cr_expect_eq(f.chunks, CHUNKS);
    cr_expect_lt(f.credits, CHUNKS, "%d credit messages for %d chunks: not one per chunk",
                 f.credits, CHUNKS);
    ps_subscriber_destroy(&sub);
    zmq_close(f.router);
    zmq_ctx_term(f.ctx);
}
