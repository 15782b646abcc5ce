/*
 * keygen.c - `parksync keygen NAME`: a CURVE key pair in Z85 key files.
 *
 * Writes NAME.key (the secret key, mode 0600) and NAME.pub (the public
 * key, mode 0644) in the format proto/keys.h reads, and prints the public
 * key. Never overwrites: each file is written to a temporary name, synced,
 * and linked to its final name, which fails if that name exists; then the
 * directory is synced.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "cli.h"
#include "keys.h"

#define KEYGEN_PATH_MAX 4096 /* bytes of a key file's path */

const char CLI_KEYGEN_USAGE[] =
    "usage: parksync keygen [--comment TEXT] NAME\n"
    "\n"
    "Makes a CURVE key pair for parksyncd's [security] curve = on and writes\n"
    "  NAME.key  the secret key, mode 0600: give it to the daemon\n"
    "            ([security] secret_key_file) or to the client (--key)\n"
    "  NAME.pub  the public key, mode 0644: list it in the daemon's config\n"
    "            ([ministry X] keys or [subscriber X] keys), or give the daemon's\n"
    "            to clients (--server-key)\n"
    "as Z85 text (ZeroMQ RFC 32). Refuses to overwrite either file. Prints the\n"
    "public key.\n"
    "\n"
    "  --comment TEXT  a comment line written into both files (default: NAME)\n";

/* Writes text to path with mode, never replacing an existing file.
 * 0 or -errno (message printed). */
static int write_new(const char *path, const char *text, mode_t mode)
{
    char tmp[KEYGEN_PATH_MAX + 16], dir[KEYGEN_PATH_MAX];
    size_t len = strlen(text), done = 0;
    int fd, dfd, rc = 0;

    snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = -errno;
        fprintf(stderr, "parksync keygen: cannot create a file beside %s: %s\n", path,
                strerror(errno));
        return rc;
    }
    if (fchmod(fd, mode) < 0)
        rc = -errno;
    while (rc == 0 && done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            done += (size_t)n;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && link(tmp, path) < 0)
        rc = -errno; /* EEXIST: someone made it meanwhile */
    unlink(tmp);
    if (rc < 0) {
        fprintf(stderr, "parksync keygen: cannot write %s: %s\n", path, strerror(-rc));
        return rc;
    }
    snprintf(dir, sizeof dir, "%s", path);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int cmd_keygen(int argc, char **argv, const ps_profile_t *prof)
{
    static const struct option LONG[] = {
        {"comment", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char pub[KEYS_Z85_LEN + 1], sec[KEYS_Z85_LEN + 1];
    char pub_path[KEYGEN_PATH_MAX], sec_path[KEYGEN_PATH_MAX];
    char text[512];
    const char *comment = NULL, *name;
    struct stat st;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", LONG, NULL)) != -1) {
        switch (c) {
        case 'c':
            comment = optarg;
            break;
        case 'h':
            fputs(CLI_KEYGEN_USAGE, stdout);
            return CLI_OK;
        default:
            fputs(CLI_KEYGEN_USAGE, stderr);
            return CLI_USAGE;
        }
    }
    if (optind != argc - 1 || argv[optind][0] == '\0') {
        fputs(CLI_KEYGEN_USAGE, stderr);
        return CLI_USAGE;
    }
    name = argv[optind];
    if (!comment)
        comment = name;
    if (strchr(comment, '\n') || strlen(comment) > 200) {
        fprintf(stderr, "parksync keygen: --comment must be one line of at most 200 bytes\n");
        return CLI_USAGE;
    }
    if ((size_t)snprintf(pub_path, sizeof pub_path, "%s.pub", name) >= sizeof pub_path ||
        (size_t)snprintf(sec_path, sizeof sec_path, "%s.key", name) >= sizeof sec_path) {
        fprintf(stderr, "parksync keygen: NAME is too long\n");
        return CLI_USAGE;
    }
    if (lstat(sec_path, &st) == 0 || lstat(pub_path, &st) == 0) {
        fprintf(stderr, "parksync keygen: %s exists; refusing to overwrite a key\n",
                lstat(sec_path, &st) == 0 ? sec_path : pub_path);
        return CLI_USAGE;
    }
    if (zmq_curve_keypair(pub, sec) < 0) {
        fprintf(stderr, "parksync keygen: cannot make a key pair: %s\n", zmq_strerror(zmq_errno()));
        return CLI_RUNTIME;
    }
    snprintf(text, sizeof text, "# parksync CURVE secret key (Z85) of %s: keep it private\n%s\n",
             comment, sec);
    if (write_new(sec_path, text, 0600) < 0)
        return CLI_RUNTIME;
    snprintf(text, sizeof text, "# parksync CURVE public key (Z85) of %s\n%s\n", comment, pub);
    if (write_new(pub_path, text, 0644) < 0) {
        unlink(sec_path); /* ours: made a moment ago */
        return CLI_RUNTIME;
    }
    memset(sec, 0, sizeof sec);
    memset(text, 0, sizeof text);
    printf("%s\n", pub);
    fprintf(stderr, "parksync keygen: wrote %s (secret, 0600) and %s (public, 0644)\n", sec_path,
            pub_path);
    return CLI_OK;
}
