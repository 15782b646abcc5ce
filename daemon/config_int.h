/*
 * config_int.h - private to the config files (config.c, config_file.c,
 * config_check.c): the option table's row type and the table itself,
 * one-value parsing, and the loopback rule the file reader and the whole
 * checks share. The daemon includes config.h only.
 */
#ifndef PARKSYNCD_CONFIG_INT_H
#define PARKSYNCD_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum opt_type {
    OPT_PATH,     /* non-empty text, at most `size` - 1 bytes */
    OPT_ENDPOINT, /* a ZeroMQ endpoint the daemon can bind safely */
    OPT_ENUM,     /* one of `choices`, stored as int (size 4) or bool (size 1) */
    OPT_UINT,     /* decimal integer in [umin, umax], stored in `size` bytes */
    OPT_DOUBLE,   /* decimal number in [dmin, dmax] */
    OPT_ACK,      /* "local" (stored 0) or "peers:N", N in [umin, umax], stored as uint32 */
} opt_type_t;

typedef struct opt_choice {
    const char *name; /* as written in the file */
    int value;        /* stored value */
} opt_choice_t;

typedef struct config_option {
    const char *section;
    const char *key;
    opt_type_t type;
    size_t offset;               /* of the field in config_t */
    size_t size;                 /* of the field, bytes */
    const char *def;             /* default as the file spells it; NULL: computed */
    uint64_t umin, umax;         /* OPT_UINT bounds, inclusive */
    double dmin, dmax;           /* OPT_DOUBLE bounds, inclusive */
    const opt_choice_t *choices; /* OPT_ENUM, ended by a NULL name */
    int (*check)(const char *value, char *why, size_t whylen); /* extra rule or NULL */
    const char *help; /* one line for --check-config and docs */
} config_option_t;

#define CONFIG_MAX_OPTIONS 64 /* rows config_options may have (the reader's seen[]) */

extern const config_option_t config_options[]; /* the table, in config.c */
extern const size_t config_n_options;          /* its rows */

/* vsnprintf into buf[0..len) when buf is not NULL: every why and err. */
__attribute__((format(printf, 3, 4))) void config_say(char *buf, size_t len, const char *fmt, ...);

/* Parses value into cfg's field for opt. why gets "[s] k = v: reason".
 * 0 or a negative errno. */
int config_set_option(config_t *cfg, const config_option_t *opt, const char *value, char *why,
                      size_t whylen);

/* The row of [section] key, or NULL. */
const config_option_t *config_find_option(const char *section, const char *key);

/* True for the fixed sections ([daemon], [endpoints], ...). */
bool config_known_section(const char *section);

/* Index of the first of ingest, publish, query that listens beyond
 * loopback although CURVE is off and insecure remote access is not
 * allowed; -1 when none. */
int config_remote_problem(const config_t *cfg);

extern const char *const config_remote_names[3]; /* "ingest", "publish", "query" */
#define REMOTE_WHY                                                                                 \
    "not a loopback address, and [security] curve = off: turn CURVE on "                           \
    "(see README, Security) or set [security] allow_insecure_remote = yes"

#endif /* PARKSYNCD_CONFIG_INT_H */
