/*
 * test_config.c - the configuration: defaults, the INI file, errors that
 * name file:line and key, and the --check-config output.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

/* Writes text to a fresh temporary file; the caller unlinks path. */
static void write_temp(char path[64], const char *text)
{
    int fd;
    FILE *f;

    snprintf(path, 64, "/tmp/test_config-XXXXXX.ini");
    fd = mkstemps(path, 4);
    cr_assert(fd >= 0);
    f = fdopen(fd, "w");
    cr_assert(f != NULL);
    fputs(text, f);
    cr_assert(fclose(f) == 0);
}

static char *print_to_string(const config_t *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    cr_assert(f != NULL);
    cr_assert(config_print(cfg, f) == 0);
    fclose(f);
    return buf;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long len;

    cr_assert(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)len + 1);
    cr_assert(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    return buf;
}

Test(config, defaults_without_file)
{
    config_t cfg;
    char err[256] = "";

    unsetenv("STATE_DIRECTORY");
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg.database, "./parksync.db");
    cr_assert_eq(cfg.log_level, LOG_LEVEL_INFO);
    cr_assert_str_eq(cfg.ingest, "tcp://127.0.0.1:7101");
    cr_assert_str_eq(cfg.publish, "tcp://127.0.0.1:7102");
    cr_assert_str_eq(cfg.query, "tcp://127.0.0.1:7103");
    cr_assert(cfg.synchronous_full);
    cr_assert_eq(cfg.changelog_keep, 1000000);
    cr_assert_eq(cfg.trade_rule, PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST);
    cr_assert_float_eq(cfg.threshold_pct, 10.0, 1e-12);
    cr_assert_float_eq(cfg.cif_fob_factor, 1.0, 1e-12);
    cr_assert_eq(cfg.batch_max, 8192);
    cr_assert_eq(cfg.summary_interval_ms, 250);
    cr_assert_eq(cfg.heartbeat_ms, 1000);
    cr_assert_eq(cfg.max_streams, 16);
    cr_assert_eq(cfg.ack_after_peers, 0, "ack_after = local");
    cr_assert_eq(cfg.pull_wait_ms, 1000);
    cr_assert_eq(cfg.peer_timeout_ms, 5000);
    cr_assert_eq(cfg.n_peers, 0);
}

/* [site] name defaults to the host name up to its first character an
 * id may not hold, at most 64 bytes; "parksync" when nothing is left. */
Test(config, site_name_defaults_to_the_host_name)
{
    char host[256] = "", want[65];
    config_t cfg;
    size_t n;

    cr_assert_eq(gethostname(host, sizeof host - 1), 0);
    n = strspn(host, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
    snprintf(want, sizeof want, "%.*s", (int)(n < 64 ? n : 64), host);
    config_init(&cfg);
    cr_assert_str_eq(cfg.site, n ? want : "parksync");
}

Test(config, database_defaults_to_the_state_directory)
{
    config_t cfg;
    char err[256] = "";

    setenv("STATE_DIRECTORY", "/var/lib/parksync:/var/lib/other", 1);
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg.database, "/var/lib/parksync/parksync.db");
}

Test(config, full_valid_file)
{
    config_t cfg;
    char err[256] = "";

    cr_assert_eq(config_load(TEST_DATA_DIR "/config-full.ini", &cfg, err, sizeof err), 0, "%s",
                 err);
    cr_assert_str_eq(cfg.database, "/var/lib/parksync/full.db");
    cr_assert_eq(cfg.log_level, LOG_LEVEL_DEBUG);
    cr_assert_str_eq(cfg.ingest, "ipc:///run/parksync/ingest");
    cr_assert_str_eq(cfg.publish, "tcp://127.0.0.1:8102");
    cr_assert_str_eq(cfg.query, "tcp://lo:8103");
    cr_assert(!cfg.synchronous_full);
    cr_assert_eq(cfg.changelog_keep, 0);
    cr_assert_eq(cfg.trade_rule, PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN);
    cr_assert_float_eq(cfg.threshold_pct, 12.5, 1e-12);
    cr_assert_float_eq(cfg.cif_fob_factor, 1.08, 1e-12);
    cr_assert_eq(cfg.batch_max, 100000);
    cr_assert_eq(cfg.summary_interval_ms, 0);
    cr_assert_eq(cfg.heartbeat_ms, 100);
    cr_assert_eq(cfg.max_streams, 1024);
    cr_assert_str_eq(cfg.site, "az-baku-1");
    cr_assert_eq(cfg.ack_after_peers, 2);
    cr_assert_eq(cfg.pull_wait_ms, 250);
    cr_assert_eq(cfg.peer_timeout_ms, 2000);
    cr_assert_eq(cfg.n_peers, 2);
    cr_assert_str_eq(cfg.peers[0].name, "tj-dushanbe");
    cr_assert_eq(cfg.peers[0].n_endpoints, 3);
    cr_assert_str_eq(cfg.peers[0].endpoints[0], "tcp://127.0.0.2:7103");
    cr_assert_str_eq(cfg.peers[0].endpoints[1], "ipc:///run/parksync-tj/query");
    cr_assert_str_eq(cfg.peers[0].endpoints[2], "tcp://localhost:7203");
    cr_assert_str_eq(cfg.peers[0].key, "Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH");
    cr_assert_eq(cfg.peers[0].n_countries, 2);
    cr_assert_str_eq(cfg.peers[0].countries[1], "KZ");
    cr_assert(!cfg.peers[0].all_countries);
    cr_assert_str_eq(cfg.peers[1].name, "replica-1");
    cr_assert_eq(cfg.peers[1].n_endpoints, 0, "it only pulls from this site");
    cr_assert(cfg.peers[1].all_countries);
    cr_assert_eq(cfg.peers[1].n_countries, 0);
}

/* Each bad file, and what the one-line error must contain besides
 * "<file>:<line>: ". */
static const struct bad_case {
    const char *text;
    int line;
    const char *needle;
} bad_cases[] = {
    {"[daemon]\nlog_level = info\n[nosuch]\nkey = 1\n", 4, "unknown section [nosuch]"},
    {"[trade]\nrule = mean\nruel = mean\n", 3, "unknown key 'ruel' in [trade]"},
    {"database = x.db\n", 1, "outside of any [section]"},
    {"[trade]\nrule = median\n", 2,
     "[trade] rule = median: expected importer-first, exporter-first or mean"},
    {"[daemon]\nlog_level = verbose\n", 2, "[daemon] log_level = verbose: expected"},
    {"[store]\nsynchronous = off\n", 2, "[store] synchronous = off: expected full or normal"},
    {"[limits]\nbatch_max = 0\n", 2, "[limits] batch_max = 0 is out of range (1..100000)"},
    {"[limits]\nheartbeat_ms = 99\n", 2, "[limits] heartbeat_ms = 99 is out of range (100..60000)"},
    {"[limits]\nmax_streams = 99999999999999999999999\n", 2,
     "[limits] max_streams = 99999999999999999999999 is out of range (1..1024)"},
    {"[limits]\nbatch_max = 12x\n", 2,
     "[limits] batch_max = 12x: not a whole number (expected 1..100000)"},
    {"[limits]\nbatch_max = -5\n", 2, "[limits] batch_max = -5: not a whole number"},
    {"[limits]\nbatch_max = 0x10\n", 2, "[limits] batch_max = 0x10: not a whole number"},
    {"[limits]\nbatch_max =\n", 2, "[limits] batch_max = : not a whole number"},
    {"[trade]\nthreshold_pct = 10%\n", 2,
     "[trade] threshold_pct = 10%: not a number (expected 0..1000)"},
    {"[trade]\nthreshold_pct = nan\n", 2, "[trade] threshold_pct = nan: not a number"},
    {"[trade]\ncif_fob_factor = 2.5\n", 2, "[trade] cif_fob_factor = 2.5 is out of range (0.5..2)"},
    {"[endpoints]\ningest = tcp://0.0.0.0:7101\n", 2,
     "[endpoints] ingest = tcp://0.0.0.0:7101: not a loopback address"},
    {"[endpoints]\npublish = udp://127.0.0.1:1\n", 2,
     "[endpoints] publish = udp://127.0.0.1:1: expected tcp://"},
    {"[endpoints]\nquery = tcp://127.0.0.1:70000\n", 2, "port must be 1..65535"},
    {"[daemon]\ndatabase =\n", 2, "[daemon] database is empty"},
    {"[limits]\nbatch_max = 1\n\nbatch_max = 2\n", 4,
     "[limits] batch_max is set twice (first on line 2)"},
    {"[daemon]\nthis is not ini\n", 2, "syntax error"},
    /* what would pass a syntax check and then fail at start or mislead */
    {"[endpoints]\nquery = tcp://localhost:7103\n", 2,
     "localhost is neither an address nor an interface of this machine"},
    {"[endpoints]\nquery = tcp://no-such-if0:7103\n", 2, "for localhost write 127.0.0.1"},
    {"[limits]\nbatch_max = 5\n  heartbeat_ms = 100\n", 3,
     "the line is indented; remove the indentation"},
    {"[http]\nlisten = example.org:8080\n", 2, "[http] listen = example.org:8080"},
    {"[http]\nlisten = 127.0.0.1\n", 2, "'127.0.0.1' is not HOST:PORT"},
    {"[http]\nallow_remote = maybe\n", 2, "[http] allow_remote = maybe: expected yes or no"},
    {"[limits]\nbatch_max = 5 # five\n", 2,
     "batch_max = 5 # five: '#' starts a comment only at the start of a line"},
    /* [site] */
    {"[site]\nname = baku one\n", 2, "[site] name = baku one: expected 1..64 of [A-Za-z0-9._-]"},
    {"[site]\nack_after = all\n", 2, "[site] ack_after = all: expected local or peers:N (N 1..16)"},
    {"[site]\nack_after = peers:0\n", 2,
     "[site] ack_after = peers:0 is out of range (peers:1..16)"},
    {"[site]\nack_after = peers:17\n", 2, "[site] ack_after = peers:17 is out of range"},
    {"[site]\nack_after = peers:99999999999999999999\n", 2,
     "[site] ack_after = peers:99999999999999999999 is out of range"},
    {"[site]\nack_after = peers:2x\n", 2, "[site] ack_after = peers:2x: expected local or peers:N"},
    {"[site]\nack_after = peers:\n", 2, "[site] ack_after = peers:: expected local or peers:N"},
    {"[site]\npull_wait_ms = 30001\n", 2, "[site] pull_wait_ms = 30001 is out of range (0..30000)"},
    {"[site]\npeer_timeout_ms = 99\n", 2,
     "[site] peer_timeout_ms = 99 is out of range (100..600000)"},
    {"[site]\nsite = x\n", 2, "unknown key 'site' in [site] (keys: name, ack_after"},
    /* [peer NAME] */
    {"[peer tj 1]\ncountries = TJ\n", 2, "[peer tj 1]: the name must be 1..64 of [A-Za-z0-9._-]"},
    {"[peer tj]\nendpoints = udp://10.0.0.1:7103\n", 2,
     "[peer tj] endpoints: 'udp://10.0.0.1:7103': expected tcp://HOST:PORT or ipc://PATH"},
    {"[peer tj]\nendpoints = tcp://127.0.0.1\n", 2, "'tcp://127.0.0.1': expected tcp://HOST:PORT"},
    {"[peer tj]\nendpoints = tcp://127.0.0.1:0\n", 2, "the port must be 1..65535"},
    {"[peer tj]\nendpoints = tcp://127.0.0.1:*\n", 2, "the port must be 1..65535"},
    {"[peer tj]\nendpoints = tcp://:7103\n", 2, "'tcp://:7103': expected tcp://HOST:PORT"},
    {"[peer tj]\nendpoints = tcp://a_b:7103\n", 2, "'a_b' is not a host name or an address"},
    {"[peer tj]\nendpoints = tcp://[::1:7103\n", 2, "'[::1' is not an IPv6 address in brackets"},
    {"[peer tj]\nendpoints = tcp://[::g]:7103\n", 2, "'[::g]' is not an IPv6 address"},
    {"[peer tj]\nendpoints = tcp:/\n", 2, "expected tcp://HOST:PORT or ipc://PATH"},
    {"[peer tj]\nendpoints = ipc://\n", 2, "the path after ipc:// is empty"},
    {"[peer tj]\nendpoints = ipc:///a, ipc:///a\n", 2, "'ipc:///a' is listed twice"},
    {"[peer tj]\nendpoints = ipc:///a, ipc:///b, ipc:///c, ipc:///d, ipc:///e\n", 2,
     "more than 4 endpoints"},
    {"[peer tj]\nendpoints = ipc:///a, ,ipc:///b\n", 2, "empty entry in the list"},
    {"[peer tj]\nendpoints =\n", 2, "[peer tj] endpoints is empty"},
    {"[peer tj]\ncountries = Tajikistan\n", 2,
     "[peer tj] countries: 'Tajikistan' is not an ISO 3166-1 alpha-2 code"},
    {"[peer tj]\ncountries = TJ, tj\n", 2, "'tj' is not an ISO 3166-1 alpha-2 code"},
    {"[peer tj]\ncountries = TJ, *\n", 2, "'*' means every country and stands alone"},
    {"[peer tj]\ncountries = *, TJ\n", 2, "'*' means every country and stands alone"},
    {"[peer tj]\ncountries = TJ, KZ, TJ\n", 2, "TJ is listed twice"},
    {"[peer tj]\nkey = not-a-key\n", 2, "[peer tj] key: "},
    {"[peer tj]\ncountry = TJ\n", 2,
     "unknown key 'country' in [peer tj] (keys: endpoints, key, countries)"},
    {"[peer tj]\ncountries = TJ\ncountries = KZ\n", 3,
     "[peer tj] countries is set twice (first on line 2)"},
    {"[peer tj]\ncountries = TJ\n\n[peer kz]\ncountries = KZ\n[peer tj]\nkey = x\n", 7,
     "[peer tj] appears twice (first on line 2); one section per peer"},
    {"[peer tj]\ncountries = TJ\n[peer tj]\nendpoints = ipc:///a\n", 4, "[peer tj] appears twice"},
    /* inih would cut the name and read another section */
    {"[ministry A-NAME-THAT-IS-LONGER-THAN-WHAT-INIH-KEEPS-OF-IT]\ncountry = AZ\n", 1,
     "section name too long (at most 49 bytes between [ and ])"},
    {"[peer a-name-that-is-longer-than-what-inih-keeps-of-it]\ncountries = TJ\n", 1,
     "section name too long (at most 49 bytes between [ and ])"},
};

Test(config, each_error_names_file_line_and_key)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *bc = &bad_cases[i];
        char path[64], err[512] = "", prefix[96];
        config_t cfg;
        int rc;

        write_temp(path, bc->text);
        memset(&cfg, 0x5a, sizeof cfg);
        rc = config_load(path, &cfg, err, sizeof err);
        unlink(path);
        cr_expect_eq(rc, -EINVAL, "case %zu: rc %d", i, rc);
        snprintf(prefix, sizeof prefix, "%s:%d: ", path, bc->line);
        cr_expect(strncmp(err, prefix, strlen(prefix)) == 0,
                  "case %zu: '%s' does not start with '%s'", i, err, prefix);
        cr_expect(strstr(err, bc->needle) != NULL, "case %zu: '%s' lacks '%s'", i, err, bc->needle);
        /* The caller's struct is untouched on failure. */
        cr_expect_eq(((unsigned char *)&cfg)[0], 0x5a, "case %zu: output written", i);
    }
}

Test(config, same_endpoint_twice_is_refused)
{
    char path[64], err[512] = "";
    config_t cfg;

    write_temp(path, "[endpoints]\ningest = ipc:///tmp/x\nquery = ipc:///tmp/x\n");
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), -EINVAL);
    unlink(path);
    cr_assert(strstr(err, "ingest and query are both ipc:///tmp/x") != NULL, "%s", err);
}

/* The page has no authentication: beyond loopback only when said so. */
Test(config, web_page_beyond_loopback_needs_allow_remote)
{
    char path[64], err[512] = "";
    config_t cfg;

    write_temp(path, "[http]\nlisten = 0.0.0.0:8080\n");
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), -EINVAL);
    unlink(path);
    cr_assert(strstr(err, "[http] listen = 0.0.0.0:8080: not a loopback address") != NULL, "%s",
              err);
    write_temp(path, "[http]\nlisten = 0.0.0.0:8080\nallow_remote = yes\n");
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    unlink(path);
    cr_assert_str_eq(cfg.http_listen, "0.0.0.0:8080");
    write_temp(path, "[http]\nlisten = [::1]:8080\n");
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    unlink(path);
}

Test(config, missing_file_is_an_error)
{
    char err[512] = "";
    config_t cfg;

    cr_assert_eq(config_load("/nonexistent/parksyncd.conf", &cfg, err, sizeof err), -ENOENT);
    cr_assert(strstr(err, "/nonexistent/parksyncd.conf: cannot open") != NULL, "%s", err);
}

Test(config, a_directory_is_not_a_config_file)
{
    char err[512] = "";
    config_t cfg;

    cr_assert_eq(config_load(TEST_DATA_DIR, &cfg, err, sizeof err), -EISDIR);
    cr_assert(strstr(err, "is a directory; -c wants the config file") != NULL, "%s", err);
}

Test(config, overrides_go_through_the_same_checks)
{
    config_t cfg;
    char err[256] = "";

    config_init(&cfg);
    cr_assert_eq(config_set(&cfg, "daemon", "log_level", "debug", err, sizeof err), 0);
    cr_assert_eq(cfg.log_level, LOG_LEVEL_DEBUG);
    cr_assert_eq(config_set(&cfg, "daemon", "log_level", "loud", err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "[daemon] log_level = loud: expected error, warning, notice, "
                          "info or debug") != NULL,
              "%s", err);
    cr_assert_eq(config_set(&cfg, "daemon", "colour", "red", err, sizeof err), -ENOENT);
}

Test(config, check_config_output_of_the_defaults_matches_golden)
{
    config_t cfg;
    char err[256] = "";
    char *got, *want;

    unsetenv("STATE_DIRECTORY");
    /* the control socket's default follows the runtime directory: pin it */
    setenv("RUNTIME_DIRECTORY", "/run/parksync", 1);
    cr_assert_eq(config_load(NULL, &cfg, err, sizeof err), 0, "%s", err);
    unsetenv("RUNTIME_DIRECTORY");
    got = print_to_string(&cfg);
    want = read_file(TEST_DATA_DIR "/check-config-default.txt");
    /* [site] name is the machine's: the golden file says @SITE@ */
    char *at = strstr(want, "@SITE@");
    cr_assert_not_null(at);
    cr_assert_not_null(strstr(got, "\nname = "));
    char *mine = calloc(1, strlen(want) + sizeof cfg.site);
    cr_assert_not_null(mine);
    snprintf(mine, strlen(want) + sizeof cfg.site, "%.*s%s%s", (int)(at - want), want, cfg.site,
             at + strlen("@SITE@"));
    cr_assert_str_eq(got, mine);
    free(mine);
    free(got);
    free(want);
}

Test(config, check_config_output_reads_back_to_the_same_config)
{
    config_t cfg, again;
    char path[64], err[256] = "";
    char *first, *second;

    cr_assert_eq(config_load(TEST_DATA_DIR "/config-full.ini", &cfg, err, sizeof err), 0, "%s",
                 err);
    first = print_to_string(&cfg);
    write_temp(path, first);
    cr_assert_eq(config_load(path, &again, err, sizeof err), 0, "%s", err);
    unlink(path);
    second = print_to_string(&again);
    cr_assert_str_eq(first, second);
    cr_assert_float_eq(again.cif_fob_factor, 1.08, 0);
    /* [site] and [peer NAME] come back as they were read */
    cr_assert_str_eq(again.site, cfg.site);
    cr_assert_eq(again.ack_after_peers, cfg.ack_after_peers);
    cr_assert_eq(again.pull_wait_ms, cfg.pull_wait_ms);
    cr_assert_eq(again.peer_timeout_ms, cfg.peer_timeout_ms);
    cr_assert_eq(again.n_peers, 2);
    cr_assert(memcmp(again.peers, cfg.peers, sizeof cfg.peers) == 0, "[peer] sections differ");
    cr_assert(strstr(first, "\n[peer replica-1]\n# no endpoints: this site does not pull from "
                            "it\n") != NULL,
              "%s", first);
    cr_assert(strstr(first, "\ncountries = *\n") != NULL, "%s", first);
    free(first);
    free(second);
}

/* What no single line can tell: the whole file's rules of [site] and
 * [peer NAME], one error each, naming the section. */
Test(config, peer_errors_of_the_whole_file)
{
    static const struct {
        const char *text; /* the file */
        const char *want; /* part of the error */
    } cases[] = {
        {"[site]\nname = baku\n[peer baku]\ncountries = TJ\n",
         "[peer baku] has this site's own name ([site] name)"},
        {"[site]\npull_wait_ms = 5000\n",
         "[site] peer_timeout_ms = 5000 must be more than pull_wait_ms = 5000"},
        {"[endpoints]\nquery = ipc:///tmp/q\n[peer tj]\nendpoints = ipc:///tmp/q\n",
         "[peer tj] endpoints: ipc:///tmp/q is this site's own query endpoint"},
        {"[peer tj]\nendpoints = tcp://10.0.0.7:7103\n",
         "[peer tj] endpoints: tcp://10.0.0.7:7103: not a loopback address, and [security] "
         "curve = off"},
        {"[peer tj]\nendpoints = tcp://tj.example.org:7103\n", "not a loopback address"},
        {"[security]\ncurve = on\n[peer tj]\nendpoints = ipc:///a, tcp://10.0.0.7:7103\n",
         "[peer tj] endpoints: tcp://10.0.0.7:7103 is not a loopback address and the peer has "
         "no key"},
        {"[subscriber dash]\nkeys = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n"
         "[peer tj]\nkey = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n",
         "key Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH is listed twice ([peer tj] and "
         "[subscriber dash])"},
        {"[peer kz]\nkey = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n"
         "[peer tj]\nkey = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n",
         "is listed twice ([peer tj] and [peer kz])"},
        {"[ministry AZ-MOE]\ncountry = AZ\nkeys = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n"
         "[peer tj]\nkey = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n",
         "([peer tj] and [ministry AZ-MOE])"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_t cfg;
        char path[64], err[512] = "";
        write_temp(path, cases[i].text);
        cr_expect_eq(config_load(path, &cfg, err, sizeof err), -EINVAL, "case %zu", i);
        unlink(path);
        cr_expect(strstr(err, cases[i].want) != NULL, "case %zu: %s", i, err);
    }
}

/* What the same rules let through: beyond loopback with CURVE and a key,
 * or with the insecure setting; a site pulled by others only; peers:N
 * above the sections (the sites that pull need not be listed). */
Test(config, peer_sections_the_rules_allow)
{
    static const char *const files[] = {
        "[security]\ncurve = on\n[peer tj]\nendpoints = tcp://10.0.0.7:7103, "
        "tcp://tj.example.org:7103\nkey = Oja@})56u7hW+/4h*-&2j&ht4xJ9a%Q{/GU-?#uH\n"
        "countries = TJ\n",
        "[security]\ncurve = on\n[peer tj]\nendpoints = ipc:///tmp/tj/query\n",
        "[security]\nallow_insecure_remote = yes\n[peer tj]\nendpoints = "
        "tcp://[2001:db8::7]:7103\n",
        "[site]\nack_after = peers:16\n[peer tj]\ncountries = TJ\n",
        "[site]\npull_wait_ms = 0\npeer_timeout_ms = 100\n",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        config_t cfg;
        char path[64], err[512] = "";
        write_temp(path, files[i]);
        cr_expect_eq(config_load(path, &cfg, err, sizeof err), 0, "case %zu: %s", i, err);
        unlink(path);
    }
}

Test(config, ministry_sections_parse_default_producers_grants_and_print_back)
{
    config_t cfg, again;
    char path[64], err[512] = "";
    char *first, *second;

    write_temp(path,
               "[ministry AZ-MOE]\ncountry = AZ\nproducers = AZ-MOE, AZ-MOE-2\n"
               "grants = TJ, park:KZ\n\n[ministry TJ-MINT]\ncountry = TJ\n\n"
               "[store]\nmax_future_skew_s = 0\n[endpoints]\ncontrol = ipc:///tmp/x/control\n");
    cr_assert_eq(config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    unlink(path);
    cr_assert_eq(cfg.n_ministries, 2);
    cr_assert_str_eq(cfg.ministries[0].name, "AZ-MOE");
    cr_assert_eq(cfg.ministries[0].n_producers, 2);
    cr_assert_str_eq(cfg.ministries[0].producers[1], "AZ-MOE-2");
    cr_assert_eq(cfg.ministries[0].n_grants, 2);
    cr_assert_eq(cfg.ministries[0].grants[0].kind,
                 PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED);
    cr_assert_eq(cfg.ministries[0].grants[1].kind, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK);
    cr_assert_str_eq(cfg.ministries[0].grants[1].country, "KZ");
    cr_assert_str_eq(cfg.ministries[1].producers[0], "TJ-MINT", "default: its own name");
    cr_assert_eq(cfg.max_future_skew_s, 0);
    cr_assert_str_eq(cfg.control, "ipc:///tmp/x/control");
    first = print_to_string(&cfg);
    write_temp(path, first);
    cr_assert_eq(config_load(path, &again, err, sizeof err), 0, "%s", err);
    unlink(path);
    second = print_to_string(&again);
    cr_assert_str_eq(first, second);
    free(first);
    free(second);
}

Test(config, ministry_errors_name_the_line)
{
    static const struct {
        const char *text; /* the file */
        const char *want; /* part of the error */
    } cases[] = {
        {"[ministry AZ-MOE]\ncountry = Azerbaijan\n", ":2: [ministry AZ-MOE] country = Azerbaijan"},
        {"[ministry AZ-MOE]\nproducers = AZ MOE\n", "producer id 'AZ MOE'"},
        {"[ministry AZ-MOE]\ngrants = port:TJ\n", "grant 'port:TJ'"},
        {"[ministry AZ-MOE]\nowner = AZ\n", "unknown key 'owner' in [ministry AZ-MOE]"},
        {"[ministry AZ-MOE]\nproducers = X\n", "[ministry AZ-MOE] has no country"},
        {"[ministry A]\ncountry = AZ\nproducers = P\n[ministry B]\ncountry = TJ\nproducers = P\n",
         "producer P is listed twice"},
        {"[endpoints]\ncontrol = tcp://127.0.0.1:9\n", "ipc://PATH"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        config_t cfg;
        char path[64], err[512] = "";
        write_temp(path, cases[i].text);
        cr_assert_eq(config_load(path, &cfg, err, sizeof err), -EINVAL, "case %zu", i);
        unlink(path);
        cr_assert(strstr(err, cases[i].want) != NULL, "case %zu: %s", i, err);
    }
}

/* What a reload compares to tell that what this site pulls changed. */
Test(config, peers_equal_sees_every_field_of_every_section)
{
    config_t a, b;
    char err[256] = "";

    cr_assert_eq(config_load(TEST_DATA_DIR "/config-full.ini", &a, err, sizeof err), 0, "%s", err);
    b = a;
    cr_assert(config_peers_equal(&a, &b));
    b.batch_max = 1; /* not a [peer] setting */
    cr_assert(config_peers_equal(&a, &b));
    b = a;
    memcpy(b.peers[0].countries[1], "UZ", 3);
    cr_assert(!config_peers_equal(&a, &b), "a country");
    b = a;
    snprintf(b.peers[0].endpoints[2], sizeof b.peers[0].endpoints[2], "tcp://localhost:7204");
    cr_assert(!config_peers_equal(&a, &b), "an endpoint");
    b = a;
    b.peers[1].key[0] = '\0';
    cr_assert(!config_peers_equal(&a, &b), "a key");
    b = a;
    b.peers[1].all_countries = false;
    cr_assert(!config_peers_equal(&a, &b), "countries = *");
    b = a;
    b.n_peers = 1;
    cr_assert(!config_peers_equal(&a, &b), "a section");
}
