/*
 * test_profile.c - client profiles (client/profile*.c) through the real
 * parksync CLI against the real parksyncd: contexts from the user's
 * client.conf, PARKSYNC_* variables over them, flags over both,
 * `parksync context use` rewriting the file, and the errors an
 * integrator meets (unknown context, bad line, unreadable key file).
 * The machine's file (/etc) is tested through the library's seam that
 * takes both paths.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "parksync.h"
#include "profile_int.h"

static harness_t h;
static char conf[HARNESS_PATH + 48]; /* the user's client.conf for the CLI */

static void setup(void)
{
    char dir[HARNESS_PATH + 32];

    cr_assert_eq(harness_init(&h, NULL), 0);
    cr_assert_eq(harness_start(&h), 0, "parksyncd did not start; log:\n%s", harness_slurp(h.log));
    snprintf(dir, sizeof dir, "%s/xdg", h.dir);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/xdg/parksync", h.dir);
    mkdir(dir, 0700);
    snprintf(conf, sizeof conf, "%s/client.conf", dir);
}

static void teardown(void)
{
    harness_cleanup(&h);
}

TestSuite(profile, .init = setup, .fini = teardown, .timeout = 120);

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* A context "NAME" with this daemon's endpoints, or with a query endpoint
 * where nobody answers when wrong_query. */
static void add_context(char *buf, size_t size, const char *name, bool wrong_query)
{
    size_t used = strlen(buf);
    snprintf(buf + used, size - used,
             "[context %s]\ningest = %s\npublish = %s\nquery = %s%s\ncontrol = %s\n"
             "producer = AZ-CTX\n",
             name, h.ingest, h.publish, wrong_query ? "ipc:///nonexistent/" : "", h.query,
             h.control);
}

/* The path of a one-line park update file. */
static const char *park_file(const char *id)
{
    static char path[HARNESS_PATH + 32];
    char line[256];

    snprintf(path, sizeof path, "%s/%s.jsonl", h.dir, id);
    snprintf(line, sizeof line, "{\"park\": {\"park_id\": \"%s\", \"country\": \"AZ\"}}\n", id);
    write_file(path, line);
    return path;
}

/* True when the daemon's snapshot (asked with the harness's flags) holds
 * a park with this id. */
static bool daemon_has_park(const char *id)
{
    const char *argv[] = {"snapshot", "--kind", "park", NULL};
    char *out = NULL, want[96];

    cr_assert_eq(harness_cli(&h, argv, NULL, &out, NULL), 0);
    snprintf(want, sizeof want, "\"park_id\":\"%s\"", id);
    bool found = out != NULL && strstr(out, want) != NULL;
    free(out);
    return found;
}

/* Runs the CLI in the test environment; returns its status, *err kept
 * for messages (caller frees). */
static int cli(const char *const env[], const char *const argv[], char **out, char **err)
{
    return harness_cli_env(&h, env, argv, NULL, out, err);
}

Test(profile, the_current_context_gives_push_and_status_their_endpoints)
{
    char text[2048] = "# written by the test\ncurrent = here\n";
    const char *push[] = {"push", park_file("AZ-CTX-1"), NULL};
    const char *status[] = {"status", NULL};
    char *err = NULL;

    add_context(text, sizeof text, "here", false);
    write_file(conf, text);
    cr_assert_eq(cli(NULL, push, NULL, &err), 0, "push with the current context: %s", err);
    free(err);
    cr_expect(daemon_has_park("AZ-CTX-1"));
    cr_expect_eq(cli(NULL, status, NULL, &err), 0, "status over the context's control: %s", err);
    free(err);
}

Test(profile, the_environment_overrides_the_context_and_flags_override_both)
{
    char text[2048] = "current = broken\n", query_env[HARNESS_PATH + 32];
    const char *env_good[] = {query_env, NULL};
    const char *env_bad[] = {"PARKSYNC_QUERY=ipc:///nonexistent/q", NULL};
    const char *snap[] = {"snapshot", "--timeout", "1", NULL};
    char flag_query[HARNESS_PATH];
    const char *snap_flag[] = {"snapshot", "--query", flag_query, NULL};
    char *err = NULL;

    snprintf(query_env, sizeof query_env, "PARKSYNC_QUERY=%s", h.query);
    snprintf(flag_query, sizeof flag_query, "%s", h.query);
    add_context(text, sizeof text, "broken", true);
    write_file(conf, text);
    cr_expect_eq(cli(NULL, snap, NULL, &err), 1, "the context's wrong query answered: %s", err);
    free(err);
    cr_expect_eq(cli(env_good, snap, NULL, &err), 0, "PARKSYNC_QUERY did not win: %s", err);
    free(err);
    cr_expect_eq(cli(env_bad, snap_flag, NULL, &err), 0, "--query did not win: %s", err);
    free(err);
}

Test(profile, context_flag_beats_PARKSYNC_CONTEXT_beats_current)
{
    char text[4096] = "current = broken\n";
    const char *env[] = {"PARKSYNC_CONTEXT=broken", NULL};
    const char *before[] = {"--context", "good", "snapshot", "--timeout", "1", NULL};
    const char *after[] = {"snapshot", "--timeout", "1", "--context=good", NULL};
    const char *by_env[] = {"snapshot", "--timeout", "1", NULL};
    const char *env_good[] = {"PARKSYNC_CONTEXT=good", NULL};
    char *err = NULL;

    add_context(text, sizeof text, "broken", true);
    add_context(text, sizeof text, "good", false);
    write_file(conf, text);
    cr_expect_eq(cli(env, before, NULL, &err), 0, "--context before the command: %s", err);
    free(err);
    cr_expect_eq(cli(env, after, NULL, &err), 0, "--context after the command: %s", err);
    free(err);
    cr_expect_eq(cli(env_good, by_env, NULL, &err), 0, "PARKSYNC_CONTEXT over current: %s", err);
    free(err);
    cr_expect_eq(cli(NULL, by_env, NULL, &err), 1, "current = broken was not used: %s", err);
    free(err);
}

Test(profile, context_use_rewrites_current_and_keeps_the_rest)
{
    char text[4096] = "; my daemons\ncurrent = one\n\n";
    const char *use[] = {"context", "use", "two", NULL};
    const char *use_bad[] = {"context", "use", "three", NULL};
    const char *list[] = {"context", "list", NULL};
    char *out = NULL, *err = NULL, *after;

    add_context(text, sizeof text, "one", true);
    strcat(text, "# the good one\n");
    add_context(text, sizeof text, "two", false);
    write_file(conf, text);
    cr_assert_eq(cli(NULL, use, NULL, &err), 0, "context use two: %s", err);
    free(err);
    after = harness_slurp(conf);
    cr_assert_not_null(after);
    cr_expect_not_null(strstr(after, "current = two\n"), "%s", after);
    cr_expect_null(strstr(after, "current = one"), "%s", after);
    cr_expect_not_null(strstr(after, "; my daemons\n"), "a comment was lost:\n%s", after);
    cr_expect_not_null(strstr(after, "# the good one\n[context two]"), "%s", after);
    cr_expect_eq(strlen(after), strlen(text), "only the current line changes:\n%s", after);
    cr_expect_eq(cli(NULL, list, &out, &err), 0, "%s", err);
    cr_expect_not_null(strstr(out, "* two"), "list does not mark two:\n%s", out);
    free(out);
    free(err);
    const char *push[] = {"push", park_file("AZ-CTX-USE"), NULL};
    cr_expect_eq(cli(NULL, push, NULL, &err), 0, "push after use: %s", err);
    free(err);

    /* an unknown name changes nothing and names the files searched */
    cr_expect_eq(cli(NULL, use_bad, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "unknown context 'three'"), "%s", err);
    cr_expect_not_null(strstr(err, conf), "the user file is not named: %s", err);
    cr_expect_not_null(strstr(err, "/etc/parksync/client.conf"), "%s", err);
    free(err);
    char *again = harness_slurp(conf);
    cr_expect_str_eq(again, after);
    free(again);
    free(after);
}

Test(profile, context_use_creates_the_user_file)
{
    profile_paths_t paths = {0};
    char err[2048];

    snprintf(paths.user, sizeof paths.user, "%s/new/deeper/client.conf", h.dir);
    snprintf(paths.system, sizeof paths.system, "%s/system.conf", h.dir);
    write_file(paths.system, "[context site]\nquery = tcp://127.0.0.1:7103\n");
    cr_assert_eq(profile_use_in(&paths, "site", err, sizeof err), PS_OK, "%s", err);
    char *text = harness_slurp(paths.user);
    cr_assert_not_null(text);
    cr_expect_str_eq(text, "current = site\n");
    free(text);
}

Test(profile, errors_name_the_file_the_line_and_the_key_file)
{
    const char *snap[] = {"snapshot", NULL};
    const char *snap_ctx[] = {"snapshot", "--context", "nope", NULL};
    char text[1024], *err = NULL;

    write_file(conf, "[context a]\nquery = tcp://127.0.0.1:7103\nqeury = x\n");
    cr_expect_eq(cli(NULL, snap, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "client.conf:3: unknown key 'qeury'"), "%s", err);
    free(err);

    write_file(conf, "[context a]\nquery = tcp://127.0.0.1:7103\n");
    cr_expect_eq(cli(NULL, snap_ctx, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "unknown context 'nope'"), "%s", err);
    cr_expect_not_null(strstr(err, conf), "%s", err);
    cr_expect_not_null(strstr(err, "contexts: a"), "%s", err);
    free(err);

    snprintf(text, sizeof text,
             "current = k\n[context k]\nquery = %s\nserver_key = missing.pub\nkey = %s/k.key\n",
             h.query, h.dir);
    write_file(conf, text);
    cr_expect_eq(cli(NULL, snap, NULL, &err), 2);
    cr_expect_not_null(strstr(err, "/xdg/parksync/missing.pub"),
                       "the key file (relative to client.conf) is not named: %s", err);
    free(err);
}

/* The machine's file: its contexts and its current, hidden by the user's. */
Test(profile, the_system_file_is_read_after_the_user_file)
{
    profile_paths_t paths = {0};
    ps_profile_t p;
    char err[2048];

    snprintf(paths.user, sizeof paths.user, "%s/user.conf", h.dir);
    snprintf(paths.system, sizeof paths.system, "%s/system.conf", h.dir);
    write_file(paths.system, "current = site\n[context site]\nquery = tcp://10.0.0.1:7103\n"
                             "[context shared]\nquery = tcp://10.0.0.2:7103\n");
    cr_assert_eq(profile_resolve_in(&paths, NULL, &p, err, sizeof err), PS_OK, "%s", err);
    cr_expect_str_eq(p.context, "site");
    cr_expect_str_eq(p.query.value, "tcp://10.0.0.1:7103");
    cr_expect_eq(p.query.origin, PS_ORIGIN_CONTEXT);
    cr_expect_eq(p.query.line, 3);

    write_file(paths.user, "[context shared]\nquery = tcp://10.0.0.3:7103\n");
    cr_assert_eq(profile_resolve_in(&paths, "shared", &p, err, sizeof err), PS_OK, "%s", err);
    cr_expect_str_eq(p.query.value, "tcp://10.0.0.3:7103", "the user's context comes first");
    cr_expect_str_eq(p.file, paths.user);
    cr_expect_str_eq(p.ingest.value, "");
    cr_expect_eq(p.ingest.origin, PS_ORIGIN_DEFAULT);
}

/* What an integrator's program does: the same files through the library. */
Test(profile, the_library_loads_the_same_profile)
{
    char text[2048] = "current = lib\n", xdg[HARNESS_PATH + 16], keyfiles[HARNESS_PATH + 16];
    const char *keygen[] = {"keygen", keyfiles, NULL};
    ps_producer_options_t o;
    ps_profile_t p;
    ps_producer_t *prod;
    harness_park_t pu;
    ps_err_t e;
    char err[2048];

    add_context(text, sizeof text, "lib", false);
    write_file(conf, text);
    snprintf(xdg, sizeof xdg, "%s/xdg", h.dir);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    unsetenv("PARKSYNC_CONTEXT");
    cr_assert_eq(ps_profile_load(NULL, &p, err, sizeof err), PS_OK, "%s", err);
    ps_producer_options_init(&o);
    ps_profile_producer_options(&p, &o);
    cr_expect_str_eq(o.producer_id, "AZ-CTX");
    cr_expect_str_eq(o.ingest_endpoint, h.ingest);
    cr_expect_null(o.server_public_key, "no key files, no CURVE");
    prod = ps_producer_new(&o, &e);
    cr_assert_not_null(prod, "%s", ps_strerror(e));
    harness_park(&pu, "AZ-CTX-LIB", "AZ");
    cr_expect_eq(ps_producer_send(prod, &pu.u, NULL, 5000), PS_OK);
    cr_expect_eq(ps_producer_flush(prod, 10000), PS_OK);
    ps_producer_destroy(&prod);
    cr_expect(daemon_has_park("AZ-CTX-LIB"));

    /* with key files, ps_profile_load reads them for the options */
    snprintf(keyfiles, sizeof keyfiles, "%s/xdg/parksync/me", h.dir);
    cr_assert_eq(harness_cli_env(&h, NULL, keygen, NULL, NULL, NULL), 0);
    strcat(text, "server_key = me.pub\nkey = me.key\n");
    write_file(conf, text);
    cr_assert_eq(ps_profile_load("lib", &p, err, sizeof err), PS_OK, "%s", err);
    cr_expect_eq(strlen(p.server_public_key), 40);
    cr_expect_eq(strlen(p.secret_key), 40);
    ps_producer_options_init(&o);
    ps_profile_producer_options(&p, &o);
    cr_expect_eq(o.server_public_key, p.server_public_key);
    cr_expect_eq(o.secret_key, p.secret_key);
    unsetenv("XDG_CONFIG_HOME");
}
