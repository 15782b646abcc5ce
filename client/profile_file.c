/*
 * profile_file.c - one client.conf: read with inih into sections, checked
 * line by line (every error is FILE:LINE: reason), and `current = NAME`
 * rewritten in place for `parksync context use`. See profile_int.h.
 */
#include "profile_int.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "wire.h"

#define PROFILE_FILE_MAX (1024 * 1024) /* bytes of a client.conf that `use` rewrites */

/* State of one parse. */
typedef struct parse {
    profile_file_t *f;
    FILE *in;
    int line;           /* physical line being parsed, 1-based */
    bool at_line_start; /* the next read starts a new physical line */
    bool indented;      /* that line starts with blanks: a continuation to inih */
    int header_line;    /* line of the last [section] header */
    int error_line;     /* line of the first error; 0 when none */
    char error[512];    /* the first error */
    bool nomem;         /* an allocation failed */
} parse_t;

__attribute__((format(printf, 2, 3))) static int parse_fail(parse_t *p, const char *fmt, ...)
{
    va_list ap;

    if (p->error_line == 0) {
        p->error_line = p->line;
        va_start(ap, fmt);
        vsnprintf(p->error, sizeof p->error, fmt, ap);
        va_end(ap);
    }
    return 0; /* inih stops at the first 0 */
}

/* fgets for inih that counts physical lines, notes indentation (inih
 * would read an indented line as more of the value above) and refuses a
 * line longer than its buffer (inih would read the rest as a new line). */
static char *read_line(char *str, int num, void *stream)
{
    parse_t *p = stream;
    char *s = fgets(str, num, p->in);
    size_t len;

    if (s == NULL)
        return NULL;
    if (p->at_line_start) {
        p->line++;
        p->indented = (s[0] == ' ' || s[0] == '\t') && s[strspn(s, " \t\r\n")] != '\0';
        if (s[strspn(s, " \t")] == '[')
            p->header_line = p->line;
    }
    len = strlen(s);
    p->at_line_start = len > 0 && s[len - 1] == '\n';
    if (!p->at_line_start && !feof(p->in)) {
        parse_fail(p, "line too long (at most %d bytes)", num - 3);
        str[0] = '\0';
    }
    return s;
}

int profile_check_value(const profile_key_t *k, const char *value, char *why, size_t whylen)
{
    if (value[0] == '\0') {
        snprintf(why, whylen, "empty value");
        return -EINVAL;
    }
    if (strlen(value) >= PS_PROFILE_VALUE_MAX) {
        snprintf(why, whylen, "too long (at most %d bytes)", PS_PROFILE_VALUE_MAX - 1);
        return -EINVAL;
    }
    if (k->endpoint && strncmp(value, "tcp://", 6) != 0 && strncmp(value, "ipc://", 6) != 0 &&
        strncmp(value, "inproc://", 9) != 0) {
        snprintf(why, whylen, "'%.80s' is not a ZeroMQ endpoint (tcp://HOST:PORT or ipc://PATH)",
                 value);
        return -EINVAL;
    }
    if (strcmp(k->key, "control") == 0 && strncmp(value, "ipc://", 6) != 0) {
        snprintf(why, whylen, "'%.80s': the control socket is ipc:// only", value);
        return -EINVAL;
    }
    if (strcmp(k->key, "producer") == 0 && !wire_id_valid(value)) {
        snprintf(why, whylen, "'%.80s' is not 1..64 characters of [A-Za-z0-9._-]", value);
        return -EINVAL;
    }
    return 0;
}

static int section_key(parse_t *p, profile_section_t *s, const char *key, const char *value)
{
    char why[256];
    size_t i;

    for (i = 0; i < PROFILE_N_KEYS; i++)
        if (strcmp(PROFILE_KEYS[i].key, key) == 0)
            break;
    if (i == PROFILE_N_KEYS)
        return parse_fail(p,
                          "unknown key '%s' in [context %s] (keys: ingest, publish, query, "
                          "control, server_key, key, producer)",
                          key, s->name);
    if (s->values[i] != NULL)
        return parse_fail(p, "[context %s] %s is set twice (first on line %d)", s->name, key,
                          s->lines[i]);
    if (profile_check_value(&PROFILE_KEYS[i], value, why, sizeof why) < 0)
        return parse_fail(p, "[context %s] %s: %s", s->name, key, why);
    s->values[i] = strdup(value);
    if (s->values[i] == NULL) {
        p->nomem = true;
        return parse_fail(p, "out of memory");
    }
    s->lines[i] = p->line;
    return 1;
}

/* The section being filled for a header, made when the header is new. */
static profile_section_t *open_section(parse_t *p, const char *name)
{
    profile_file_t *f = p->f;

    if (f->n_sections > 0 && strcmp(f->sections[f->n_sections - 1].name, name) == 0 &&
        f->sections[f->n_sections - 1].line == p->header_line)
        return &f->sections[f->n_sections - 1];
    const profile_section_t *dup = profile_file_find(f, name);
    if (dup != NULL) {
        parse_fail(p, "[context %s] is defined twice (first on line %d)", name, dup->line);
        return NULL;
    }
    profile_section_t *n = realloc(f->sections, (f->n_sections + 1) * sizeof *n);
    if (n == NULL) {
        p->nomem = true;
        parse_fail(p, "out of memory");
        return NULL;
    }
    f->sections = n;
    profile_section_t *s = &n[f->n_sections++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->line = p->header_line; /* inih names a section only with its keys */
    return s;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
    parse_t *p = user;

    if (p->error_line != 0)
        return 0;
    if (p->indented)
        return parse_fail(p,
                          "the line is indented; remove the indentation (an indented line "
                          "continues the value above it: here %s's)",
                          key);
    if (strstr(value, " #") != NULL || strstr(value, "\t#") != NULL)
        return parse_fail(p,
                          "%s = %s: '#' starts a comment only at the start of a line; after a "
                          "value, write '; comment'",
                          key, value);
    if (section[0] == '\0') {
        if (strcmp(key, "current") != 0)
            return parse_fail(p, "%s = %s is outside of any [context NAME] (only current is)", key,
                              value);
        if (p->f->current_line != 0)
            return parse_fail(p, "current is set twice (first on line %d)", p->f->current_line);
        if (!wire_id_valid(value))
            return parse_fail(p,
                              "current = %s: a context name is 1..64 characters of "
                              "[A-Za-z0-9._-]",
                              value);
        snprintf(p->f->current, sizeof p->f->current, "%s", value);
        p->f->current_line = p->line;
        return 1;
    }
    if (strncmp(section, PROFILE_CONTEXT_PREFIX, strlen(PROFILE_CONTEXT_PREFIX)) != 0)
        return parse_fail(p, "unknown section [%s] (sections: context NAME)", section);
    const char *name = section + strlen(PROFILE_CONTEXT_PREFIX);
    if (!wire_id_valid(name))
        return parse_fail(p, "[context %s]: a context name is 1..64 characters of [A-Za-z0-9._-]",
                          name);
    profile_section_t *s = open_section(p, name);
    return s == NULL ? 0 : section_key(p, s, key, value);
}

int profile_file_read(profile_file_t *f, const char *path, char *err, size_t errlen)
{
    parse_t p = {.f = f, .at_line_start = true};
    struct stat st;
    int rc;

    memset(f, 0, sizeof *f);
    f->path = path;
    if (path == NULL || path[0] == '\0')
        return 0;
    p.in = fopen(path, "re");
    if (p.in == NULL) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        if (errno == EACCES && stat(path, &st) < 0) {
            f->hidden_errno = errno; /* a file we cannot even see: as absent */
            return 0;
        }
        rc = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    f->present = true;
    if (fstat(fileno(p.in), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(p.in);
        snprintf(err, errlen, "%s: is a directory, not a client config", path);
        return -EISDIR;
    }
    rc = ini_parse_stream(read_line, &p, handler, &p);
    bool read_error = ferror(p.in);
    fclose(p.in);
    if (read_error) {
        snprintf(err, errlen, "%s: read error", path);
        return -EIO;
    }
    if (p.error_line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, p.error_line, p.error);
        return p.nomem ? -ENOMEM : -EINVAL;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s:%d: syntax error: expected [context NAME] or key = value", path,
                 rc > 0 ? rc : p.line);
        return -EINVAL;
    }
    return 0;
}

void profile_file_free(profile_file_t *f)
{
    for (size_t i = 0; i < f->n_sections; i++)
        for (size_t k = 0; k < PROFILE_N_KEYS; k++)
            free(f->sections[i].values[k]);
    free(f->sections);
    memset(f, 0, sizeof *f);
}

const profile_section_t *profile_file_find(const profile_file_t *f, const char *name)
{
    for (size_t i = 0; i < f->n_sections; i++)
        if (strcmp(f->sections[i].name, name) == 0)
            return &f->sections[i];
    return NULL;
}

/* ---------------------------------------------------------------- current = NAME */

/* Makes the folder of path (and its parents) when missing, mode 0700 as
 * XDG asks of the folders it makes. */
static int make_parents(const char *path, char *err, size_t errlen)
{
    char dir[PS_PROFILE_VALUE_MAX];

    snprintf(dir, sizeof dir, "%s", path);
    for (char *s = dir + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
            int rc = -errno;
            snprintf(err, errlen, "cannot make %s: %s", dir, strerror(errno));
            return rc;
        }
        *s = '/';
    }
    return 0;
}

/* Reads the whole file; "" when it does not exist. Caller frees *text. */
static int slurp(const char *path, char **text, size_t *len, mode_t *mode, char *err, size_t errlen)
{
    FILE *in = fopen(path, "re");
    struct stat st;

    *mode = 0644;
    *len = 0;
    *text = calloc(1, 1);
    if (*text == NULL)
        return -ENOMEM;
    if (in == NULL) {
        if (errno == ENOENT)
            return 0;
        int rc = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    if (fstat(fileno(in), &st) < 0 || st.st_size > PROFILE_FILE_MAX) {
        fclose(in);
        snprintf(err, errlen, "%s: too large to rewrite (at most %d bytes)", path,
                 PROFILE_FILE_MAX);
        return -EFBIG;
    }
    *mode = st.st_mode & 07777;
    char *buf = realloc(*text, (size_t)st.st_size + 1);
    if (buf == NULL) {
        fclose(in);
        return -ENOMEM;
    }
    *text = buf;
    *len = fread(buf, 1, (size_t)st.st_size, in);
    buf[*len] = '\0';
    bool bad = ferror(in);
    fclose(in);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        return -EIO;
    }
    return 0;
}

/* Writes text to a temporary file beside path, syncs it, renames it over
 * path and syncs the folder, so a crash leaves the old file or the new
 * one, never half of either. */
static int replace_file(const char *path, const char *text, size_t len, mode_t mode, char *err,
                        size_t errlen)
{
    char tmp[PS_PROFILE_VALUE_MAX + 16], dir[PS_PROFILE_VALUE_MAX];
    int fd, rc = 0;

    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot write beside %s: %s", path, strerror(errno));
        return rc;
    }
    if (fchmod(fd, mode) < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
        rc = errno ? -errno : -EIO;
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(-rc));
        close(fd);
        unlink(tmp);
        return rc;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot replace %s: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* True when line (up to its end) is `current = ...` outside any section. */
static bool is_current_line(const char *line)
{
    line += strspn(line, " \t");
    if (strncmp(line, "current", 7) != 0)
        return false;
    line += 7;
    line += strspn(line, " \t");
    return *line == '=' || *line == ':';
}

int profile_file_set_current(const char *path, const char *name, char *err, size_t errlen)
{
    char *text = NULL, *out = NULL;
    size_t len = 0, used = 0;
    mode_t mode;
    bool done = false, in_section = false;
    int rc;

    if ((rc = make_parents(path, err, errlen)) < 0)
        return rc;
    if ((rc = slurp(path, &text, &len, &mode, err, errlen)) < 0)
        goto out;
    out = malloc(len + strlen(name) + 32);
    if (out == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    /* Only the top-level current line changes; comments, contexts and
     * their order stay as the user wrote them. A file without one gets
     * it as its first line, where inih reads it as top-level. */
    for (const char *line = text; *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) + 1 : strlen(line);
        const char *t = line + strspn(line, " \t");
        if (*t == '[')
            in_section = true;
        if (!in_section && is_current_line(line)) {
            if (!done)
                used += (size_t)sprintf(out + used, "current = %s\n", name);
            done = true;
        } else {
            memcpy(out + used, line, n);
            used += n;
            if (end == NULL)
                out[used++] = '\n';
        }
        line += n;
    }
    if (!done) {
        int head = snprintf(NULL, 0, "current = %s\n", name);
        memmove(out + head, out, used);
        char saved = out[head];
        sprintf(out, "current = %s\n", name);
        out[head] = saved;
        used += (size_t)head;
    }
    rc = replace_file(path, out, used, mode, err, errlen);
out:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    free(text);
    free(out);
    return rc;
}
