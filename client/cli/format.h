/*
 * format.h - human-readable figures for the CLI's summary.
 *
 * Each writes a NUL-terminated string into buf (truncated to size) and
 * returns buf, so calls can sit inside a printf argument list.
 */
#ifndef PARKSYNC_CLI_FORMAT_H
#define PARKSYNC_CLI_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "parksync.pb-c.h"

#define FMT_MONEY_MAX 40 /* bytes enough for any formatted int64 amount, with NUL */

/* Cents as dollars with thousands separators: 380000000000 -> "3,800,000,000.00". */
char *fmt_money(char *buf, size_t size, int64_t cents);

/* Short form: "3.8 billion", "2.9 million", "12.5 thousand", "950.00". */
char *fmt_money_short(char *buf, size_t size, int64_t cents);

/* Basis points as a percentage: 1060 -> "10.60%". */
char *fmt_bp(char *buf, size_t size, uint32_t bp);

/* A period in words: "January-September 2020", "March 2020"; "(no period)". */
char *fmt_period(char *buf, size_t size, const Parksync__V1__Period *p);

/* The English name of a few known countries ("Azerbaijan"), else the code. */
const char *fmt_country(const char *code);

#endif /* PARKSYNC_CLI_FORMAT_H */
