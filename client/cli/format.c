/*
 * format.c - money, percentages and periods as people read them.
 */
#include "format.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *const MONTHS[12] = {"January",   "February", "March",    "April",
                                       "May",       "June",     "July",     "August",
                                       "September", "October",  "November", "December"};

char *fmt_money(char *buf, size_t size, int64_t cents)
{
    char digits[32];
    char out[FMT_MONEY_MAX];
    uint64_t mag = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    uint64_t units = mag / 100;
    unsigned frac = (unsigned)(mag % 100);
    size_t n = 0;

    int len = snprintf(digits, sizeof digits, "%" PRIu64, units);
    if (cents < 0)
        out[n++] = '-';
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[n++] = ',';
        out[n++] = digits[i];
    }
    snprintf(out + n, sizeof out - n, ".%02u", frac);
    snprintf(buf, size, "%s", out);
    return buf;
}

char *fmt_money_short(char *buf, size_t size, int64_t cents)
{
    static const struct {
        uint64_t scale;   /* dollars per unit */
        const char *word; /* its name */
    } UNITS[] = {{1000000000000ULL, "trillion"},
                 {1000000000ULL, "billion"},
                 {1000000ULL, "million"},
                 {1000ULL, "thousand"}};
    uint64_t mag = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;

    for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++) {
        uint64_t scale_cents = UNITS[i].scale * 100;
        if (mag < scale_cents)
            continue;
        /* Tenths of the unit, rounded half up, in integers. */
        uint64_t tenths = (mag * 10 + scale_cents / 2) / scale_cents;
        if (mag > UINT64_MAX / 10)
            tenths = (mag / scale_cents) * 10 + (mag % scale_cents) * 10 / scale_cents;
        if (tenths % 10 == 0)
            snprintf(buf, size, "%s%" PRIu64 " %s", cents < 0 ? "-" : "", tenths / 10,
                     UNITS[i].word);
        else
            snprintf(buf, size, "%s%" PRIu64 ".%" PRIu64 " %s", cents < 0 ? "-" : "", tenths / 10,
                     tenths % 10, UNITS[i].word);
        return buf;
    }
    return fmt_money(buf, size, cents);
}

char *fmt_bp(char *buf, size_t size, uint32_t bp)
{
    snprintf(buf, size, "%" PRIu32 ".%02" PRIu32 "%%", bp / 100, bp % 100);
    return buf;
}

char *fmt_period(char *buf, size_t size, const Parksync__V1__Period *p)
{
    if (p == NULL || !p->has_year || !p->has_first_month || !p->has_last_month ||
        p->first_month < 1 || p->first_month > 12 || p->last_month < 1 || p->last_month > 12) {
        snprintf(buf, size, "(no period)");
    } else if (p->first_month == p->last_month) {
        snprintf(buf, size, "%s %" PRIu32, MONTHS[p->first_month - 1], p->year);
    } else {
        snprintf(buf, size, "%s-%s %" PRIu32, MONTHS[p->first_month - 1], MONTHS[p->last_month - 1],
                 p->year);
    }
    return buf;
}

const char *fmt_country(const char *code)
{
    static const struct {
        const char *code; /* ISO 3166-1 alpha-2 */
        const char *name; /* English short name */
    } NAMES[] = {{"AZ", "Azerbaijan"}, {"TJ", "Tajikistan"}, {"KZ", "Kazakhstan"},
                 {"UZ", "Uzbekistan"}, {"KG", "Kyrgyzstan"}, {"TM", "Turkmenistan"},
                 {"TR", "Turkey"},     {"RU", "Russia"},     {"GE", "Georgia"}};

    if (code == NULL)
        return "(unknown)";
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(NAMES[i].code, code) == 0)
            return NAMES[i].name;
    return code;
}
