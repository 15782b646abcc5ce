/*
 * log.c - see log.h.
 */
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Logger settings: the only file-scope state of the daemon besides its
 * signal flags. */
static log_level_t log_level = LOG_LEVEL_INFO;
static FILE *log_stream; /* NULL: stderr */
static bool log_journal; /* prefix lines with "<N>" for journald */

static const char *const level_names[] = {
    [LOG_LEVEL_ERROR] = "error", [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
    [LOG_LEVEL_INFO] = "info",   [LOG_LEVEL_DEBUG] = "debug",
};

/* True when fd is the stream systemd connected to the journal: the
 * device and inode in JOURNAL_STREAM ("dev:ino") match the fd's. */
static bool is_journal_stream(int fd)
{
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(fd, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(log_level_t level, FILE *stream)
{
    int saved = errno;

    log_set_level(level);
    log_stream = stream;
    log_journal = is_journal_stream(fileno(stream ? stream : stderr));
    errno = saved;
}

void log_set_level(log_level_t level)
{
    if (level < LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    if (level > LOG_LEVEL_DEBUG)
        level = LOG_LEVEL_DEBUG;
    log_level = level;
}

log_level_t log_get_level(void)
{
    return log_level;
}

bool log_enabled(log_level_t level)
{
    return level <= log_level;
}

const char *log_level_name(log_level_t level)
{
    if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
        return NULL;
    return level_names[level];
}

int log_level_parse(const char *name, log_level_t *level)
{
    for (int l = LOG_LEVEL_ERROR; l <= LOG_LEVEL_DEBUG; l++) {
        if (strcmp(name, level_names[l]) == 0) {
            *level = (log_level_t)l;
            return 0;
        }
    }
    return -EINVAL;
}

__attribute__((format(printf, 2, 0))) static void log_write(log_level_t level, const char *fmt,
                                                            va_list ap)
{
    FILE *f = log_stream ? log_stream : stderr;
    char line[2048];
    int n;

    /* One fprintf per line so that concurrent writers (systemd, other
     * processes on the same terminal) never split it. */
    n = vsnprintf(line, sizeof line, fmt, ap);
    if (n < 0)
        return;
    if (log_journal)
        fprintf(f, "<%d>%s\n", (int)level, line);
    else
        fprintf(f, "parksyncd: %s: %s\n", level_names[level], line);
    fflush(f);
}

void log_message(log_level_t level, const char *fmt, ...)
{
    int saved = errno;
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    log_write(level, fmt, ap);
    va_end(ap);
    errno = saved;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void log_ratelimited(log_ratelimit_t *rl, log_level_t level, const char *fmt, ...)
{
    int saved = errno;
    int64_t now;
    va_list ap;

    if (!log_enabled(level))
        return;
    now = monotonic_ms();
    if (rl->window_start_ms == 0 || now - rl->window_start_ms >= LOG_RATELIMIT_WINDOW_MS) {
        rl->window_start_ms = now;
        rl->printed = 0;
    }
    if (rl->printed >= LOG_RATELIMIT_BURST) {
        rl->suppressed++;
        errno = saved;
        return;
    }
    rl->printed++;
    va_start(ap, fmt);
    log_write(level, fmt, ap);
    va_end(ap);
    if (rl->suppressed > 0) {
        log_message(level, "(%" PRIu64 " similar messages suppressed in the last %d s)",
                    rl->suppressed, LOG_RATELIMIT_WINDOW_MS / 1000);
        rl->suppressed = 0;
    }
    errno = saved;
}

const char *log_printable(char *buf, size_t size, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len && i + 1 < size; i++)
        buf[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    buf[i] = '\0';
    return buf;
}
