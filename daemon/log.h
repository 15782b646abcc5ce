/*
 * log.h - the daemon's logging: one line per event on stderr.
 *
 * Under systemd (stderr is the journal stream named by JOURNAL_STREAM)
 * each line starts with its syslog priority, "<3>" .. "<7>", so journald
 * keeps the level; otherwise lines read "parksyncd: warning: message".
 * The level is tested before anything is formatted and errno is preserved.
 *
 * Settings (level, stream, prefix style) are the only file-scope state: the
 * rate limiters used for network input live in the caller's context.
 */
#ifndef PARKSYNCD_LOG_H
#define PARKSYNCD_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Levels are syslog priorities: a message is written when its level is at
 * most the configured one. */
typedef enum log_level {
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_WARNING = 4,
    LOG_LEVEL_NOTICE = 5,
    LOG_LEVEL_INFO = 6,
    LOG_LEVEL_DEBUG = 7,
} log_level_t;

/* Sets the level and the stream (NULL: stderr) and decides the prefix
 * style: syslog priorities when the stream is the one JOURNAL_STREAM
 * names. */
void log_init(log_level_t level, FILE *stream);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);

/* True when a message of this level would be written. */
bool log_enabled(log_level_t level);

/* "error", "warning", "notice", "info", "debug"; NULL for other values. */
const char *log_level_name(log_level_t level);
/* Inverse of log_level_name. Returns 0 and sets *level, or -EINVAL. */
int log_level_parse(const char *name, log_level_t *level);

/* Writes one line (a trailing newline is added) when level is enabled. */
void log_message(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at_(level, ...)                                                                        \
    do {                                                                                           \
        if (log_enabled(level))                                                                    \
            log_message((level), __VA_ARGS__);                                                     \
    } while (0)
#define log_error(...)   log_at_(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_at_(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...)  log_at_(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...)    log_at_(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_at_(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* ---------------------------------------------------------------- rate limit
 *
 * For input a peer controls: at most LOG_RATELIMIT_BURST lines per
 * LOG_RATELIMIT_WINDOW_MS per limiter (one limiter per rejection reason).
 * Lines beyond that are counted, and the next line written after the
 * window ends says how many were suppressed. Zero-initialise a limiter.
 */
#define LOG_RATELIMIT_BURST     5     /* lines per window */
#define LOG_RATELIMIT_WINDOW_MS 10000 /* window length, milliseconds */

typedef struct log_ratelimit {
    int64_t window_start_ms; /* monotonic ms when the current window began */
    uint32_t printed;        /* lines written in the current window */
    uint64_t suppressed;     /* lines dropped since the last line written */
} log_ratelimit_t;

void log_ratelimited(log_ratelimit_t *rl, log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A printable copy of peer-controlled bytes for a log line: at most size
 * - 1 of them, every byte outside ASCII 0x20..0x7e shown as '?'. Returns
 * buf. */
const char *log_printable(char *buf, size_t size, const void *data, size_t len);

#endif /* PARKSYNCD_LOG_H */
