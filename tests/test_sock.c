/*
 * test_sock.c - libparksync's receives against a peer that sends
 * messages that do not decode. A subscriber decodes publications and
 * replies into arenas that hold the message last read and nothing else
 * (client/sock.h). A decode that fails leaves in the arena what it had
 * cut; a site or query endpoint sending such messages without end must
 * not make the arena grow with each.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "sock.h"
#include "upd.h"
#include "wire.h"

#define BAD     200  /* malformed messages sent */
#define TOPICS  200  /* topics (parks) in each, all decoded before it is refused */
#define WAIT_MS 5000 /* longest a receive waits */

/* A heartbeat of TOPICS topics without a version: it decodes whole,
 * then validation refuses it. (A message cut short fails before
 * protobuf-c allocates much: it scans the wire first.) */
static uint8_t *refused_heartbeat(size_t *len)
{
    Parksync__V1__Publication p = PARKSYNC__V1__PUBLICATION__INIT;
    Parksync__V1__Heartbeat hb = PARKSYNC__V1__HEARTBEAT__INIT;
    Parksync__V1__TopicSequence ts[TOPICS], *tp[TOPICS];
    char names[TOPICS][64];

    for (int i = 0; i < TOPICS; i++) {
        parksync__v1__topic_sequence__init(&ts[i]);
        snprintf(names[i], sizeof names[i], "rec/resident/AZ/a-topic-of-a-long-name-%04d", i);
        ts[i].topic = names[i];
        ts[i].has_sequence = 1;
        ts[i].sequence = (uint64_t)i + 1;
        tp[i] = &ts[i];
    }
    hb.n_topics = TOPICS;
    hb.topics = tp;
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT;
    p.heartbeat = &hb;
    uint8_t *buf = wire_pack(&p.base, len);
    cr_assert_not_null(buf);
    return buf;
}

/* Waits for s to have a message; fails the test after WAIT_MS. */
static void wait_readable(void *s)
{
    zmq_pollitem_t item = {.socket = s, .events = ZMQ_POLLIN};
    cr_assert_eq(zmq_poll(&item, 1, WAIT_MS), 1, "no message came");
}

/* Each receive of a malformed message frees what the one before left:
 * the arena holds as much after the last as after the first. Without
 * the reset it held BAD times that. */
static void check_held(wire_arena_t *a, size_t *first, int i)
{
    size_t held = wire_arena_held(a);
    if (i == 0) {
        cr_assert_gt(held, 1000, "the malformed message decoded too little to tell (%zu)", held);
        *first = held;
    }
    cr_assert_eq(held, *first, "message %d: the arena holds %zu bytes, the first left %zu", i, held,
                 *first);
}

Test(sock, publications_that_do_not_decode_leave_nothing_behind)
{
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_XPUB), *sub = zmq_socket(ctx, ZMQ_SUB);
    wire_arena_t *a = wire_arena_new();
    Parksync__V1__Publication *out;
    size_t len, first = 0;
    char frame[8];
    uint8_t *bad = refused_heartbeat(&len);

    cr_assert_eq(zmq_bind(pub, "inproc://sock-pub"), 0);
    cr_assert_eq(zmq_connect(sub, "inproc://sock-pub"), 0);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0), 0);
    wait_readable(pub); /* the subscription: what is sent from now on arrives */
    cr_assert_geq(zmq_recv(pub, frame, sizeof frame, 0), 1);
    for (int i = 0; i < BAD; i++) {
        cr_assert_eq(zmq_send(pub, "hb/", 3, ZMQ_SNDMORE), 3);
        cr_assert_eq(zmq_send(pub, bad, len, 0), (int)len);
    }
    for (int i = 0; i < BAD; i++) {
        wait_readable(sub);
        cr_assert_eq(sock_recv_publication(sub, a, NULL, 0, &out), -EPROTO, "message %d", i);
        check_held(a, &first, i);
    }
    free(bad);
    wire_arena_free(&a);
    zmq_close(sub);
    zmq_close(pub);
    zmq_ctx_term(ctx);
}

Test(sock, replies_that_do_not_decode_leave_nothing_behind)
{
    void *ctx = zmq_ctx_new(), *router = zmq_socket(ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket(ctx, ZMQ_DEALER);
    wire_arena_t *a = wire_arena_new();
    Parksync__V1__QueryReply *out;
    wire_chunk_t c = {0};
    const uint8_t *msg;
    size_t len, first = 0;
    char peer[256];
    int plen;

    cr_assert_eq(zmq_bind(router, "inproc://sock-query"), 0);
    cr_assert_eq(zmq_connect(dealer, "inproc://sock-query"), 0);
    cr_assert_eq(zmq_send(dealer, "hello", 5, 0), 5);
    wait_readable(router);
    cr_assert_gt(plen = zmq_recv(router, peer, sizeof peer, 0), 0);
    cr_assert_eq(zmq_recv(router, peer + plen, sizeof peer - (size_t)plen, 0), 5);
    upd_chunk_parks(&c, 0, TOPICS, "az"); /* refused: the country is not two capitals */
    cr_assert_eq(wire_chunk_finish(&c, 1, true, 1000, NULL, &msg, &len), 0);
    for (int i = 0; i < BAD; i++) {
        cr_assert_eq(zmq_send(router, peer, (size_t)plen, ZMQ_SNDMORE), plen);
        cr_assert_eq(zmq_send(router, msg, len, 0), (int)len);
    }
    for (int i = 0; i < BAD; i++) {
        wait_readable(dealer);
        cr_assert_eq(sock_recv_reply(dealer, a, &out), -EPROTO, "message %d", i);
        check_held(a, &first, i);
    }
    wire_chunk_free(&c);
    wire_arena_free(&a);
    zmq_close(dealer);
    zmq_close(router);
    zmq_ctx_term(ctx);
}
