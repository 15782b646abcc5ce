/*
 * test_site.c - a site as its operator sees it, against the real daemon
 * and CLI: [site] and the [peer NAME] sections in `parksync status`
 * (text and JSON) and in the metrics before anything is pulled, and
 * `parksync digest`, which two sites fed the same updates agree on.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "parksync.h"

#define SITES 3 /* digest: two fed alike, one fed less */

static harness_t h[SITES];

static void teardown(void)
{
    for (int i = 0; i < SITES; i++)
        harness_cleanup(&h[i]);
}

/* Runs the CLI against site i and returns its stdout (caller frees);
 * fails the test unless it exits 0. */
static char *cli(int i, const char *const argv[])
{
    char *out = NULL, *err = NULL;
    int rc = harness_cli(&h[i], argv, NULL, &out, &err);

    cr_assert_eq(rc, 0, "parksync %s: exit %d: %s", argv[0], rc, err ? err : "");
    cr_assert_not_null(out);
    free(err);
    return out;
}

/* Starts site i with extra INI text. */
static void start(int i, const char *extra)
{
    cr_assert_eq(harness_init(&h[i], extra), 0);
    cr_assert_eq(harness_start(&h[i]), 0, "daemon did not start; see %s", h[i].log);
}

/* ---------------------------------------------------------------- peers */

/* An endpoint nobody answers on: the site pulls from tj-dushanbe in vain. */
#define PEERS_INI                                                                                  \
    "[site]\nname = az-baku\nack_after = peers:1\n\n"                                              \
    "[peer tj-dushanbe]\nendpoints = ipc:///nonexistent/tj/query, tcp://127.0.0.1:9\n"             \
    "countries = TJ\n\n"                                                                           \
    "[peer replica]\ncountries = *\n"

Test(site, status_lists_the_configured_peers_before_any_pull, .fini = teardown, .timeout = 60)
{
    Parksync__V1__ControlReply *r;
    const Parksync__V1__Status *st;

    start(0, PEERS_INI);
    r = harness_status(&h[0], 5000);
    cr_assert_not_null(r);
    st = r->status;
    cr_expect_str_eq(st->site, "az-baku");
    cr_expect_str_eq(st->ack_after, "peers:1");
    cr_assert_eq(st->n_peers, 2, "both [peer] sections, in config order");
    cr_expect_str_eq(st->peers[0]->name, "tj-dushanbe");
    cr_expect(st->peers[0]->has_connected && !st->peers[0]->connected);
    /* the first endpoint before any attempt; the one last tried once they begin */
    cr_assert_not_null(st->peers[0]->endpoint);
    cr_expect(strcmp(st->peers[0]->endpoint, "ipc:///nonexistent/tj/query") == 0 ||
                  strcmp(st->peers[0]->endpoint, "tcp://127.0.0.1:9") == 0,
              "%s", st->peers[0]->endpoint);
    cr_expect(st->peers[0]->has_revision && st->peers[0]->revision == 0);
    cr_expect(st->peers[0]->has_peer_head && st->peers[0]->peer_head == 0);
    cr_expect(st->peers[0]->has_lag_revisions && st->peers[0]->lag_revisions == 0);
    cr_expect(!st->peers[0]->has_lag_us, "never caught up: the lag in time is unknown");
    cr_expect(!st->peers[0]->has_epoch);
    cr_expect_eq(st->peers[0]->records, 0);
    /* a site that only pulls from this one: its name and nothing else */
    cr_expect_str_eq(st->peers[1]->name, "replica");
    cr_expect(!st->peers[1]->has_connected && !st->peers[1]->endpoint);
    cr_expect(!st->peers[1]->has_revision);
    cr_expect_eq(st->n_pulled_by, 0);
    parksync__v1__control_reply__free_unpacked(r, NULL);

    char *text = cli(0, (const char *const[]){"status", NULL});
    cr_expect(strstr(text, "site az-baku, acknowledges after peers:1\n") != NULL, "%s", text);
    cr_expect(strstr(text, "\npeers: 2\n") != NULL, "%s", text);
    char *line = strstr(text, "\n  tj-dushanbe "), *end = line ? strchr(line + 1, '\n') : NULL;
    cr_assert(line && end, "%s", text);
    *end = '\0';
    cr_expect(strstr(line, " no    0/0 ") && strstr(line, " not yet pulled "), "%s", line);
    *end = '\n';
    cr_expect(strstr(text, "  replica              not pulled (no endpoints)") != NULL, "%s", text);
    cr_expect(strstr(text, "\npulled by: 0\n") != NULL, "%s", text);
    free(text);

    char *json = cli(0, (const char *const[]){"status", "--json", NULL});
    json_error_t jerr;
    json_t *o = json_loads(json, 0, &jerr), *peers;
    cr_assert_not_null(o, "%s: %s", jerr.text, json);
    cr_expect_str_eq(json_string_value(json_object_get(o, "site")), "az-baku");
    cr_expect_str_eq(json_string_value(json_object_get(o, "ack_after")), "peers:1");
    peers = json_object_get(o, "peers");
    cr_assert_eq(json_array_size(peers), 2, "%s", json);
    json_t *tj = json_array_get(peers, 0), *replica = json_array_get(peers, 1);
    cr_expect_str_eq(json_string_value(json_object_get(tj, "name")), "tj-dushanbe");
    cr_expect(json_is_true(json_object_get(tj, "pulling")));
    cr_expect(json_is_false(json_object_get(tj, "connected")));
    cr_expect_eq(json_integer_value(json_object_get(tj, "revision")), 0);
    cr_expect(json_is_null(json_object_get(tj, "lag_us")));
    cr_expect(json_is_false(json_object_get(replica, "pulling")));
    cr_expect_null(json_object_get(replica, "connected"), "%s", json);
    cr_expect_eq(json_array_size(json_object_get(o, "pulled_by")), 0);
    json_decref(o);
    free(json);
    cr_assert_eq(harness_stop(&h[0]), 0);
}

Test(site, metrics_have_a_series_per_pulled_peer, .fini = teardown, .timeout = 60)
{
    static const char *const want[] = {
        "\nparksync_peer_connected{peer=\"tj-dushanbe\"} 0\n",
        "\nparksync_peer_revision{peer=\"tj-dushanbe\"} 0\n",
        "\nparksync_peer_lag_revisions{peer=\"tj-dushanbe\"} 0\n",
        "\nparksync_peer_records_total{peer=\"tj-dushanbe\"} 0\n",
        "\nparksync_peer_refused_total{peer=\"tj-dushanbe\"} 0\n",
        "\nparksync_peer_pulls_total{peer=\"tj-dushanbe\"} 0\n",
        "\nparksync_peer_full_resyncs_total{peer=\"tj-dushanbe\"} 0\n",
        "\n# TYPE parksync_peer_connected gauge\n",
        "\n# TYPE parksync_peer_lag_seconds gauge\n",
        "\n# TYPE parksync_peer_records_total counter\n",
        "\n# HELP parksync_peer_refused_total ",
    };
    char *text;

    start(0, PEERS_INI);
    text = cli(0, (const char *const[]){"metrics", NULL});
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(text, want[i]) != NULL, "no '%s' in:\n%s", want[i], text);
    cr_expect(strstr(text, "parksync_peer_lag_seconds{") == NULL,
              "a lag in time before any pull reached the peer:\n%s", text);
    cr_expect(strstr(text, "peer=\"replica\"") == NULL, "a series for a peer not pulled:\n%s",
              text);
    free(text);
    cr_assert_eq(harness_stop(&h[0]), 0);
}

/* ---------------------------------------------------------------- digest */

/* Pushes the example file of producer id into site i. */
static void push(int i, const char *id, const char *file)
{
    free(cli(i, (const char *const[]){"push", "--producer", id, file, NULL}));
}

/* `parksync digest --json` of site i: the digest into hex (65 bytes),
 * the head revision returned. Checks the text form says the same. */
static uint64_t digest(int i, char hex[65], const char *site)
{
    json_error_t jerr;
    char *json = cli(i, (const char *const[]){"digest", "--json", NULL});
    char *text = cli(i, (const char *const[]){"digest", NULL}), want[160];
    json_t *o = json_loads(json, 0, &jerr);
    uint64_t head;

    cr_assert_not_null(o, "%s: %s", jerr.text, json);
    cr_assert_eq(json_string_length(json_object_get(o, "digest")), 64, "%s", json);
    snprintf(hex, 65, "%s", json_string_value(json_object_get(o, "digest")));
    cr_expect_eq(strspn(hex, "0123456789abcdef"), 64, "%s", hex);
    cr_expect_str_eq(json_string_value(json_object_get(o, "site")), site);
    cr_expect_eq(json_string_length(json_object_get(o, "epoch")), 32, "%s", json);
    head = (uint64_t)json_integer_value(json_object_get(o, "head_revision"));
    snprintf(want, sizeof want, "digest %s  head %" PRIu64 "  site %s\n", hex, head, site);
    cr_expect_str_eq(text, want);
    json_decref(o);
    free(json);
    free(text);
    return head;
}

Test(site, digests_agree_when_sites_hold_the_same_picture, .fini = teardown, .timeout = 120)
{
    static const char *const names[SITES] = {"site-a", "site-b", "site-c"};
    char hex[SITES][65], ini[128];
    uint64_t head[SITES];

    for (int i = 0; i < SITES; i++) {
        /* summaries refreshed in the pass that commits: the digest covers them */
        snprintf(ini, sizeof ini, "[site]\nname = %s\n[limits]\nsummary_interval_ms = 0\n",
                 names[i]);
        start(i, ini);
    }
    /* the same updates in another order, and fewer of them */
    push(0, "AZ-MOE", EXAMPLES_DIR "/az-moe.jsonl");
    push(0, "TJ-MINT", EXAMPLES_DIR "/tj-mint.jsonl");
    push(1, "TJ-MINT", EXAMPLES_DIR "/tj-mint.jsonl");
    push(1, "AZ-MOE", EXAMPLES_DIR "/az-moe.jsonl");
    push(2, "AZ-MOE", EXAMPLES_DIR "/az-moe.jsonl");
    for (int i = 0; i < SITES; i++) {
        Parksync__V1__ControlReply *r;
        head[i] = digest(i, hex[i], names[i]);
        r = harness_status(&h[i], 5000);
        cr_assert_not_null(r);
        cr_expect_eq(head[i], r->status->head_revision,
                     "site %d: digest at %" PRIu64 ", status at %" PRIu64, i, head[i],
                     r->status->head_revision);
        cr_expect_gt(head[i], 0);
        parksync__v1__control_reply__free_unpacked(r, NULL);
    }
    cr_expect_str_eq(hex[0], hex[1], "the same updates in another order");
    cr_expect_str_neq(hex[0], hex[2], "without Tajikistan's updates");
    for (int i = 0; i < SITES; i++)
        cr_assert_eq(harness_stop(&h[i]), 0);
}

Test(site, digest_of_an_empty_site_and_its_help, .fini = teardown, .timeout = 60)
{
    char hex[65], *out = NULL;

    start(0, "[site]\nname = empty-1\n");
    cr_expect_eq(digest(0, hex, "empty-1"), 0);
    cr_assert_eq(
        harness_cli(&h[0], (const char *const[]){"digest", "--help", NULL}, NULL, &out, NULL), 0);
    cr_expect(strstr(out, "usage: parksync digest [--json]") != NULL, "%s", out);
    free(out);
    cr_assert_eq(
        harness_cli_env(&h[0], NULL, (const char *const[]){"--help", NULL}, NULL, &out, NULL), 0);
    cr_expect(strstr(out, "\n  digest    print the digest") != NULL, "%s", out);
    free(out);
    cr_expect_eq(
        harness_cli(&h[0], (const char *const[]){"digest", "extra", NULL}, NULL, NULL, NULL), 2);
    cr_assert_eq(harness_stop(&h[0]), 0);
}
