/*
 * wire.c - the protocol's vocabulary: record kinds, topics and the shapes
 * of single fields (ids, countries, periods, dates, UTF-8), the clocks and
 * the control socket's place. Whole messages are validated in
 * wire_validate.c, decoded in wire_decode.c and built raw in wire_build.c.
 * See wire.h for the contracts and proto/README.md for the protocol they
 * implement.
 */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- kinds */

static const char *const kind_names[] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] = "park",
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] = "resident",
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE] = "trade",
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] = "country",
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY] = "summary",
};
#define KIND_COUNT (sizeof(kind_names) / sizeof(kind_names[0]))

const char *wire_kind_name(Parksync__V1__RecordKind kind)
{
    if ((unsigned)kind >= KIND_COUNT)
        return NULL;
    return kind_names[kind];
}

Parksync__V1__RecordKind wire_kind_from_name(const char *name)
{
    if (name == NULL)
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    for (size_t i = 0; i < KIND_COUNT; i++)
        if (kind_names[i] != NULL && strcmp(kind_names[i], name) == 0)
            return (Parksync__V1__RecordKind)i;
    return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
}

Parksync__V1__RecordKind wire_update_kind(const Parksync__V1__Update *u)
{
    switch (u->body_case) {
    case PARKSYNC__V1__UPDATE__BODY_PARK:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
    case PARKSYNC__V1__UPDATE__BODY_RESIDENT:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    case PARKSYNC__V1__UPDATE__BODY_TRADE:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
    case PARKSYNC__V1__UPDATE__BODY_COUNTRY:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
    case PARKSYNC__V1__UPDATE__BODY_DELETE:
        if (u->delete_ == NULL)
            break;
        switch (u->delete_->target_case) {
        case PARKSYNC__V1__DELETE__TARGET_PARK:
            return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
        case PARKSYNC__V1__DELETE__TARGET_RESIDENT:
            return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
        case PARKSYNC__V1__DELETE__TARGET_TRADE:
            return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
        case PARKSYNC__V1__DELETE__TARGET_COUNTRY:
            return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
        default:
            break;
        }
        break;
    default:
        break;
    }
    return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
}

Parksync__V1__RecordKind wire_record_kind(const Parksync__V1__Record *r)
{
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
    case PARKSYNC__V1__RECORD__BODY_SUMMARY:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY;
    default:
        return PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    }
}

const char *wire_record_country(const Parksync__V1__Record *r)
{
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        return r->park ? r->park->country : NULL;
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        return r->resident ? r->resident->country : NULL;
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        return r->trade ? r->trade->exporter : NULL;
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        return r->country ? r->country->country : NULL;
    case PARKSYNC__V1__RECORD__BODY_SUMMARY:
        return r->summary ? r->summary->country : NULL;
    default:
        return NULL;
    }
}

/* ---------------------------------------------------------------- topics */

/* Writes the concatenation of parts[0..n) into buf. Topics are built on
 * every message, so this avoids printf's cost. Returns the length or
 * -ENOSPC. */
static int topic_join(char *buf, size_t size, const char *const *parts, size_t n)
{
    size_t len = 0;

    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        if (len + l >= size)
            return -ENOSPC;
        memcpy(buf + len, parts[i], l);
        len += l;
    }
    if (size == 0)
        return -ENOSPC;
    buf[len] = '\0';
    return (int)len;
}

int wire_topic_ingest(char *buf, size_t size, Parksync__V1__RecordKind kind)
{
    const char *name = wire_kind_name(kind);

    if (name == NULL || kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY)
        return -EINVAL;
    return topic_join(buf, size, &name, 1);
}

int wire_topic_record(char *buf, size_t size, Parksync__V1__RecordKind kind, const char *country)
{
    const char *parts[5] = {WIRE_TOPIC_RECORDS};

    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED)
        return topic_join(buf, size, parts, 1);
    if ((parts[1] = wire_kind_name(kind)) == NULL)
        return -EINVAL;
    parts[2] = "/";
    if (country == NULL)
        return topic_join(buf, size, parts, 3);
    if (!wire_country_valid(country))
        return -EINVAL;
    parts[3] = country;
    parts[4] = "/";
    return topic_join(buf, size, parts, 5);
}

int wire_topic_ack(char *buf, size_t size, const char *producer_id)
{
    const char *parts[3] = {"ack/", producer_id, "/"};

    if (!wire_id_valid(producer_id))
        return -EINVAL;
    return topic_join(buf, size, parts, 3);
}

/* True when s[0..len) is lit or a prefix of it. */
static bool prefix_of(const char *s, size_t len, const char *lit)
{
    return len <= strlen(lit) && memcmp(s, lit, len) == 0;
}

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* What follows "ack/": "<id>/" or a prefix of it. */
static bool ack_tail_valid(const char *s, size_t len)
{
    size_t n = 0;

    while (n < len && id_char(s[n]))
        n++;
    if (n > WIRE_MAX_ID)
        return false;
    return n == len || (n > 0 && n + 1 == len && s[n] == '/');
}

/* What follows "rec/": "<kind>/<CC>/" or a prefix of it. */
static bool rec_tail_valid(const char *s, size_t len)
{
    const char *slash = memchr(s, '/', len);
    size_t k = slash ? (size_t)(slash - s) : len;
    bool known = false;

    for (size_t i = 0; i < KIND_COUNT && !known; i++)
        known = kind_names[i] != NULL &&
                (slash ? strlen(kind_names[i]) == k && memcmp(s, kind_names[i], k) == 0
                       : prefix_of(s, k, kind_names[i]));
    if (!known || !slash)
        return known;
    s += k + 1;
    len -= k + 1;
    for (size_t i = 0; i < len; i++)
        if (i < 2 ? !(s[i] >= 'A' && s[i] <= 'Z') : i > 2 || s[i] != '/')
            return false;
    return true;
}

bool wire_subscription_valid(const void *topic, size_t len)
{
    const char *s = topic;

    if (prefix_of(s, len, WIRE_TOPIC_HEARTBEAT) || prefix_of(s, len, "ack/") ||
        prefix_of(s, len, WIRE_TOPIC_RECORDS))
        return true;
    if (len > 4 && memcmp(s, "ack/", 4) == 0)
        return ack_tail_valid(s + 4, len - 4);
    if (len > 4 && memcmp(s, WIRE_TOPIC_RECORDS, 4) == 0)
        return rec_tail_valid(s + 4, len - 4);
    return false;
}

/* ---------------------------------------------------------------- validation */

bool wire_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;

    while (p < end) {
        unsigned c = *p;
        size_t n;
        unsigned cp;

        /* Names are mostly ASCII: take 8 bytes at a time while none has the
         * high bit set and none is NUL. */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, sizeof w);
            if ((w & 0x8080808080808080ULL) != 0 ||
                ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL) != 0)
                break;
            p += 8;
        }
        if (p == end)
            break;
        c = *p;
        if (c == 0)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false; /* continuation byte, overlong lead, or > U+10FFFF */
        }
        if ((size_t)(end - p) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false; /* overlong or out of range */
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return false; /* surrogate */
        p += n + 1;
    }
    return true;
}

bool wire_id_valid(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        if (n >= WIRE_MAX_ID || !id_char(s[n]))
            return false;
    }
    return n > 0;
}

bool wire_country_valid(const char *s)
{
    return s != NULL && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] == '\0';
}

bool wire_period_valid(const Parksync__V1__Period *p)
{
    return p != NULL && p->has_year && p->has_first_month && p->has_last_month &&
           p->year >= WIRE_MIN_YEAR && p->year <= WIRE_MAX_YEAR && p->first_month >= 1 &&
           p->first_month <= p->last_month && p->last_month <= 12;
}

int wire_period_key(char *buf, size_t size, const Parksync__V1__Period *p)
{
    if (!wire_period_valid(p))
        return -EINVAL;
    int n = snprintf(buf, size, "%04u-%02u..%02u", (unsigned)p->year, (unsigned)p->first_month,
                     (unsigned)p->last_month);

    if (n < 0)
        return -EINVAL;
    return (size_t)n >= size ? -ENOSPC : n;
}

bool wire_date_valid(const char *s)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;

    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return false;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < 1900 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    return true;
}

/* ---------------------------------------------------------------- time */

int64_t wire_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wire_monotonic_ms(void)
{
    return wire_monotonic_us() / 1000;
}

int64_t wire_monotonic_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---------------------------------------------------------------- control socket */

int wire_control_endpoint_default(char *buf, size_t size)
{
    const char *rt = getenv("RUNTIME_DIRECTORY");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;

    if (rt && rt[0] != '\0')
        n = snprintf(buf, size, "ipc://%.*s/" WIRE_CONTROL_NAME, (int)strcspn(rt, ":"), rt);
    else if (access("/run/parksync", F_OK) == 0 || access("/run", W_OK) == 0)
        n = snprintf(buf, size, "ipc:///run/parksync/" WIRE_CONTROL_NAME);
    else if (xdg && xdg[0] != '\0')
        n = snprintf(buf, size, "ipc://%s/parksync/" WIRE_CONTROL_NAME, xdg);
    else
        n = snprintf(buf, size, "ipc:///tmp/parksync-%u/" WIRE_CONTROL_NAME, (unsigned)getuid());
    return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}
