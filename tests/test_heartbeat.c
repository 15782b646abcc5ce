/*
 * test_heartbeat.c - heartbeats stay true while the daemon's topic table
 * grows: producers arrive one by one (each adds an ack topic and a record
 * topic), and after each one a new subscriber's welcome heartbeat must
 * list exactly the record topics published so far, with their sequences.
 * The topic table grows at every power of two; a heartbeat that kept
 * pointers into the old table read freed memory (ASan aborts the daemon,
 * a release build sends garbage topic names).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "harness.h"
#include "parksync.h"
#include "wire.h"

#define PRODUCERS    48                 /* producers and subscribers */
#define DEADLINE_MS  10000              /* longest wait for anything a test expects */
#define BASE_TIME_US 1600000000000000LL /* event time of the updates */

static harness_t h;

static void teardown(void)
{
    harness_cleanup(&h);
}

/* Country i of the test: "AA", "AB", ... (valid by the wire's grammar). */
static void country(int i, char cc[3])
{
    cc[0] = (char)('A' + i / 26);
    cc[1] = (char)('A' + i % 26);
    cc[2] = '\0';
}

/* Producer i writes one park of country i and waits for its ack. */
static void produce(int i)
{
    ps_producer_options_t o;
    ps_err_t err = PS_OK;
    char id[16], park[16], cc[3];
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Park p = PARKSYNC__V1__PARK__INIT;

    snprintf(id, sizeof id, "P-%02d", i);
    snprintf(park, sizeof park, "PARK-%02d", i);
    country(i, cc);
    harness_producer_options(&h, &o, id);
    ps_producer_t *pr = ps_producer_new(&o, &err);
    cr_assert_not_null(pr, "producer %s: %s", id, ps_strerror(err));
    p.park_id = park;
    p.country = cc;
    p.name = park;
    u.has_event_time_us = true;
    u.event_time_us = BASE_TIME_US + i;
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &p;
    cr_assert_eq(ps_producer_send(pr, &u, NULL, DEADLINE_MS), PS_OK);
    cr_assert_eq(ps_producer_flush(pr, DEADLINE_MS), PS_OK, "producer %s not acknowledged", id);
    ps_producer_destroy(&pr);
}

/* Opens a SUB to "hb/" and returns the first heartbeat (caller frees). */
static Parksync__V1__Publication *welcome(void *ctx, void **subp)
{
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int timeout = DEADLINE_MS;

    cr_assert_not_null(sub);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_RCVTIMEO, &timeout, sizeof timeout), 0);
    cr_assert_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "hb/", 3), 0);
    cr_assert_eq(zmq_connect(sub, h.publish), 0);
    *subp = sub;
    for (;;) {
        char topic[WIRE_MAX_TOPIC];
        static uint8_t buf[WIRE_MAX_MSG];
        Parksync__V1__Publication *pub = NULL;
        const char *why = NULL;
        int n = zmq_recv(sub, topic, sizeof topic, 0);
        cr_assert_geq(n, 0, "no heartbeat within %d ms (daemon alive: %d)", DEADLINE_MS,
                      harness_ping(&h, 1000));
        n = zmq_recv(sub, buf, sizeof buf, 0);
        cr_assert_gt(n, 0);
        cr_assert_eq(wire_publication_decode(buf, (size_t)n, &pub, &why), 0, "%s", why);
        if (pub->body_case == PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT)
            return pub;
        parksync__v1__publication__free_unpacked(pub, NULL);
    }
}

TestSuite(heartbeat, .fini = teardown, .timeout = 180);

Test(heartbeat, topic_list_stays_exact_while_producers_and_subscribers_arrive)
{
    void *ctx = zmq_ctx_new(), *subs[PRODUCERS];

    cr_assert_eq(harness_init(&h, "[limits]\nheartbeat_ms = 60000\n"), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    for (int i = 0; i < PRODUCERS; i++) {
        produce(i);
        Parksync__V1__Publication *pub = welcome(ctx, &subs[i]);
        const Parksync__V1__Heartbeat *hb = pub->heartbeat;
        /* park and summary of every country so far, nothing else */
        bool seen[PRODUCERS][2] = {{false}};
        for (size_t t = 0; t < hb->n_topics; t++) {
            const char *topic = hb->topics[t]->topic;
            char cc[3];
            int k = -1;
            cr_assert_not_null(topic);
            for (int j = 0; j <= i && k < 0; j++) {
                char want[WIRE_MAX_TOPIC];
                country(j, cc);
                snprintf(want, sizeof want, "rec/park/%s/", cc);
                if (strcmp(topic, want) == 0)
                    k = j * 2;
                snprintf(want, sizeof want, "rec/summary/%s/", cc);
                if (strcmp(topic, want) == 0)
                    k = j * 2 + 1;
            }
            cr_assert_geq(k, 0, "heartbeat after producer %d lists unknown topic \"%s\"", i, topic);
            cr_assert_not(seen[k / 2][k % 2], "topic %s listed twice", topic);
            seen[k / 2][k % 2] = true;
            if (k % 2 == 0)
                cr_assert_eq(hb->topics[t]->sequence, 1, "%s at sequence %" PRIu64, topic,
                             hb->topics[t]->sequence);
        }
        for (int j = 0; j <= i; j++)
            cr_assert(seen[j][0], "heartbeat after producer %d misses park topic %d", i, j);
        parksync__v1__publication__free_unpacked(pub, NULL);
    }
    for (int i = 0; i < PRODUCERS; i++)
        zmq_close(subs[i]);
    zmq_ctx_term(ctx);
    cr_assert_eq(harness_stop(&h), 0, "parksyncd did not stop cleanly; log:\n%s",
                 harness_slurp(h.log));
}
