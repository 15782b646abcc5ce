/*
 * keys.c - see keys.h.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char Z85[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

__attribute__((format(printf, 3, 4))) static void say(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (!buf || len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

/* Value of a Z85 character, or -1. */
static int z85_value(char c)
{
    const char *p = c ? strchr(Z85, c) : NULL;

    return p ? (int)(p - Z85) : -1;
}

bool keys_z85_valid(const char *s)
{
    if (!s || strnlen(s, KEYS_Z85_LEN + 1) != KEYS_Z85_LEN)
        return false;
    for (size_t i = 0; i < KEYS_Z85_LEN; i += 5) {
        uint64_t v = 0;
        for (size_t j = 0; j < 5; j++) {
            int d = z85_value(s[i + j]);
            if (d < 0)
                return false;
            v = v * 85 + (uint64_t)d;
        }
        if (v > UINT32_MAX)
            return false; /* "#####" and friends: not the encoding of 4 bytes */
    }
    return true;
}

int keys_read_file(const char *path, bool secret, char z85[KEYS_Z85_LEN + 1], char *err,
                   size_t errlen)
{
    char buf[KEYS_FILE_MAX + 1];
    struct stat st;
    ssize_t n;
    size_t got = 0;
    int fd, rc = 0, found = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        say(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        say(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -EINVAL;
    }
    if (secret && (st.st_mode & S_IRWXO)) {
        say(err, errlen,
            "%s: a secret key must not be accessible to others (mode %04o; "
            "chmod 600 it)",
            path, (unsigned)(st.st_mode & 07777));
        close(fd);
        return -EPERM;
    }
    while ((n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)n;
    if (n < 0) {
        rc = -errno;
        say(err, errlen, "%s: read error: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    close(fd);
    if (got >= KEYS_FILE_MAX) {
        say(err, errlen, "%s: too large for a key file (at most %d bytes)", path,
            KEYS_FILE_MAX - 1);
        return -EINVAL;
    }
    buf[got] = '\0';
    for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        size_t len;
        while (*line == ' ' || *line == '\t')
            line++;
        len = strlen(line);
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
            line[--len] = '\0';
        /* '#' is also a Z85 digit: a line that is a key is a key. */
        if (len == 0 || (line[0] == '#' && !keys_z85_valid(line)))
            continue;
        if (found++ || !keys_z85_valid(line)) {
            say(err, errlen,
                "%s: expected one %s key of %d Z85 characters (as `parksync "
                "keygen` writes) and comments",
                path, secret ? "secret" : "public", KEYS_Z85_LEN);
            return -EINVAL;
        }
        memcpy(z85, line, KEYS_Z85_LEN + 1);
    }
    if (!found) {
        say(err, errlen, "%s: holds no key", path);
        return -EINVAL;
    }
    return 0;
}

int keys_parse_public(const char *text, char z85[KEYS_Z85_LEN + 1], char *err, size_t errlen)
{
    if (keys_z85_valid(text)) {
        memcpy(z85, text, KEYS_Z85_LEN + 1);
        return 0;
    }
    if (!strchr(text, '/') && strlen(text) == KEYS_Z85_LEN) {
        say(err, errlen, "'%s' is not a valid Z85 key", text);
        return -EINVAL;
    }
    return keys_read_file(text, false, z85, err, errlen);
}
