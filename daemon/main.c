/*
 * main.c - parksyncd's entry point: options, config, signals, systemd.
 *
 * Exit status: 0 after a clean stop (SIGTERM/SIGINT) or a good
 * --check-config; 1 when start-up fails (database, sockets); 2 for a bad
 * command line or configuration.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "conns.h"
#include "keys.h"
#include "log.h"
#include "server.h"

/* Set by the signal handlers, acted on in the loop. */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reload_requested = 1;
    else
        stop_requested = 1;
}

static int install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: zmq_poll returns EINTR and the loop looks at the flags. */
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
        sigaction(SIGHUP, &sa, NULL) < 0)
        return -errno;
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL) < 0 ? -errno : 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: parksyncd [-c FILE] [-l LEVEL] [--check-config] [--version] [--help]\n"
            "\n"
            "Receives ministries' updates about industrial parks, residents and trade on a\n"
            "ZeroMQ ingest socket, reconciles them in SQLite and republishes the consolidated\n"
            "picture on a publish socket; clients take snapshots on a query socket.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE   read the INI configuration FILE. Without -c, the file\n"
            "                      $CONFIGURATION_DIRECTORY/" CONFIG_FILE_NAME " is read when\n"
            "                      that variable is set (systemd) and the file exists;\n"
            "                      otherwise the built-in defaults are used.\n"
            "  -l, --log-level LEVEL\n"
            "                      error, warning, notice, info or debug; overrides\n"
            "                      [daemon] log_level of the file (default: info).\n"
            "      --check-config  validate the configuration, print every option with its\n"
            "                      effective value (an INI file) and exit: 0 when valid,\n"
            "                      2 with the error otherwise. Also checks, as the user\n"
            "                      running it, what start needs: the secret key file (CURVE)\n"
            "                      and a writable folder for the database.\n"
            "  -V, --version       print the version and exit.\n"
            "  -h, --help          print this help and exit.\n"
            "\n"
            "Defaults: the database is $STATE_DIRECTORY/parksync.db when STATE_DIRECTORY is\n"
            "set, else ./parksync.db; endpoints tcp://127.0.0.1:7101 (ingest), :7102\n"
            "(publish), :7103 (query). --check-config prints all of them.\n"
            "\n"
            "Signals: SIGTERM/SIGINT commit what is in hand, publish the last acks and exit 0;\n"
            "SIGHUP (or `parksync reload`) re-reads the file, checks it as a whole and applies\n"
            "log_level, the [ministry] and [subscriber] sections, the keys of [peer] sections,\n"
            "subscriber_auth, and [limits] batch_max, summary_interval_ms, summary_republish_s,\n"
            "heartbeat_ms, max_connections, handshake_timeout_ms, max_streams_per_client,\n"
            "stream_idle_ms and max_subscriptions (other options need a restart; the log names\n"
            "them); an invalid file keeps the running configuration and says why in the log\n"
            "and STATUS.\n"
            "\n"
            "systemd: Type=notify (READY, STATUS, WATCHDOG, RELOADING, STOPPING). The control\n"
            "socket answers `parksync status|metrics|digest|backup|reload|conflicts`.\n");
}

/* The file to read: -c, else the systemd configuration directory's. */
static const char *config_path(const char *opt, char *buf, size_t size)
{
    const char *dir = getenv("CONFIGURATION_DIRECTORY");

    if (opt)
        return opt;
    if (!dir || dir[0] == '\0')
        return NULL;
    snprintf(buf, size, "%.*s/%s", (int)strcspn(dir, ":"), dir, CONFIG_FILE_NAME);
    return access(buf, F_OK) == 0 ? buf : NULL;
}

/* Loads the file and applies the command-line override. */
static int load(const char *path, const char *level, config_t *cfg, char *err, size_t len)
{
    config_t fresh;
    int rc = config_load(path, &fresh, err, len);

    if (rc < 0)
        return rc;
    if (level) {
        char why[256];
        rc = config_set(&fresh, "daemon", "log_level", level, why, sizeof why);
        if (rc < 0) {
            snprintf(err, len, "-l %s: %s", level, why);
            return rc;
        }
    }
    *cfg = fresh;
    return 0;
}

/* What start would fail on that the file's syntax cannot tell: the secret
 * key file (with CURVE on) and the database's folder, checked as the user
 * running the check (under systemd the daemon runs as parksync). Returns
 * 0, or a negative errno with one line in err. */
static int preflight(const config_t *cfg, char *err, size_t len)
{
    char z85[KEYS_Z85_LEN + 1], why[512], dir[CONFIG_PATH_MAX];
    char *slash;
    int rc;

    if (cfg->curve) {
        rc = keys_read_file(cfg->secret_key_file, true, z85, why, sizeof why);
        explicit_bzero(z85, sizeof z85);
        if (rc < 0) {
            snprintf(err, len, "[security] secret_key_file: %s", why);
            return rc;
        }
    }
    snprintf(dir, sizeof dir, "%s", cfg->database);
    slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        slash[slash == dir ? 1 : 0] = '\0';
    if (access(dir, W_OK | X_OK) < 0) {
        rc = -errno;
        snprintf(err, len, "[daemon] database = %.400s: the folder %.400s %s", cfg->database, dir,
                 rc == -ENOENT   ? "does not exist"
                 : rc == -EACCES ? "is not writable by this user"
                                 : strerror(-rc));
        return rc;
    }
    return 0;
}

static void notify_reloading(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL +
                   (unsigned long long)ts.tv_nsec / 1000ULL);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"log-level", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 'C'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *opt_config = NULL, *opt_level = NULL, *path;
    bool check = false;
    char pathbuf[CONFIG_PATH_MAX], err[1024];
    config_t cfg;
    server_t *server;
    server_exit_t why;
    int c, rc;

    log_init(LOG_LEVEL_INFO, stderr);
    /* The database, its -wal and -shm, backups and ipc sockets are this
     * user's alone whatever umask we were started with: SQLite creates
     * files 0644 less the umask, and -wal and -shm copy the database's mode. */
    umask(077);
    while ((c = getopt_long(argc, argv, "c:l:Vh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt_config = optarg;
            break;
        case 'l':
            opt_level = optarg;
            break;
        case 'C':
            check = true;
            break;
        case 'V':
            printf("parksyncd %s\n", PARKSYNC_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "parksyncd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    path = config_path(opt_config, pathbuf, sizeof pathbuf);
    if (load(path, opt_level, &cfg, err, sizeof err) < 0) {
        log_error("%s", err);
        return 2;
    }
    if (check) {
        if (preflight(&cfg, err, sizeof err) < 0) {
            log_error("%s", err);
            return 2;
        }
        if (config_print(&cfg, stdout) < 0) {
            log_error("cannot write the configuration to stdout");
            return 2;
        }
        return 0;
    }
    log_set_level(cfg.log_level);
    if (path)
        log_info("configuration read from %s", path);

    rc = install_signals();
    if (rc < 0) {
        log_error("cannot install signal handlers: %s; exiting", strerror(-rc));
        return 1;
    }
    conns_fit_nofile(&cfg.max_connections); /* never let libzmq see EMFILE */
    server = server_new(&cfg);
    if (!server)
        return 1;
    /* The database is migrated and every socket bound. */
    sd_notify(0, "READY=1\nSTATUS=running");

    while ((why = server_run(server, &stop_requested, &reload_requested)) == SERVER_EXIT_RELOAD) {
        config_t fresh;

        notify_reloading();
        if (load(path, opt_level, &fresh, err, sizeof err) < 0) {
            /* the file is checked as a whole: nothing of it is applied */
            log_error("reload failed: %s; keeping the running configuration", err);
            sd_notifyf(0,
                       "READY=1\nSTATUS=reload failed: %s; running the previous "
                       "configuration",
                       err);
            server_reload_done(server, false, err);
        } else {
            conns_fit_nofile(&fresh.max_connections);
            server_reconfigure(server, &fresh);
            snprintf(err, sizeof err, "configuration reloaded from %.900s",
                     path ? path : "the built-in defaults");
            sd_notify(0, "READY=1\nSTATUS=running: configuration reloaded");
            server_reload_done(server, true, err);
        }
    }
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    server_destroy(&server);
    return why == SERVER_EXIT_FAILED ? EXIT_FAILURE : 0;
}
