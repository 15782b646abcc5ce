/*
 * wire.c - topics, limits, validation, bounded decoding and raw builders
 * shared by the daemon and the client. See wire.h for the contracts and
 * proto/README.md for the protocol they implement.
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

/* A text field: NULL (absent) is fine; present must be UTF-8 within max. */
static bool text_ok(const char *s, size_t max)
{
    size_t n;

    if (s == NULL)
        return true;
    n = strlen(s);
    return n > 0 && n <= max && wire_utf8_valid(s, n);
}

static bool enum_ok(const ProtobufCEnumDescriptor *d, int value)
{
    return protobuf_c_enum_descriptor_get_value(d, value) != NULL;
}

static bool cents_ok(protobuf_c_boolean has, int64_t v)
{
    return !has || (v >= -WIRE_MAX_CENTS && v <= WIRE_MAX_CENTS);
}

/* Why a field is refused; every reason reads "FIELD: WHY". */
#define WHY_ID      "must be 1..64 bytes of [A-Za-z0-9._-]"
#define WHY_COUNTRY "must be two upper-case letters (ISO 3166-1 alpha-2)"
#define WHY_TEXT    "must be 1..256 bytes of UTF-8 without NUL"
#define WHY_ENUM    "unknown value"
#define WHY_CENTS   "must be 0..10^17 cents"
#define WHY_PERIOD  "missing, or not a year 1990..2200 with months first..last in 1..12"
#define WHY_BP      "must be 0..10000 basis points"

#define FAIL(reason)                                                                               \
    do {                                                                                           \
        *why = (reason);                                                                           \
        return -EINVAL;                                                                            \
    } while (0)

static int park_validate(const Parksync__V1__Park *p, bool key_only, const char **why)
{
    if (!wire_id_valid(p->park_id))
        FAIL("park.park_id: " WHY_ID);
    if (!wire_country_valid(p->country))
        FAIL("park.country: " WHY_COUNTRY);
    if (key_only) {
        if (p->name || p->region || p->specializations || p->has_status || p->has_area_ha ||
            p->has_reported_residents || p->has_reported_investment_usd_cents)
            FAIL("delete.park: non-key field");
        return 0;
    }
    if (!text_ok(p->name, WIRE_MAX_TEXT))
        FAIL("park.name: " WHY_TEXT);
    if (!text_ok(p->region, WIRE_MAX_TEXT))
        FAIL("park.region: " WHY_TEXT);
    if (p->specializations) {
        if (p->specializations->n_values > WIRE_MAX_SPECIALIZATIONS)
            FAIL("park.specializations: more than 16");
        for (size_t i = 0; i < p->specializations->n_values; i++)
            if (p->specializations->values[i] == 0 ||
                !enum_ok(&parksync__v1__specialization__descriptor, p->specializations->values[i]))
                FAIL("park.specializations: " WHY_ENUM);
    }
    if (p->has_status &&
        (p->status == 0 || !enum_ok(&parksync__v1__park_status__descriptor, p->status)))
        FAIL("park.status: " WHY_ENUM);
    if (p->has_area_ha && !(p->area_ha >= 0.0 && p->area_ha <= 1e7))
        FAIL("park.area_ha: must be 0..10^7"); /* also refuses NaN */
    if (p->has_reported_investment_usd_cents &&
        (p->reported_investment_usd_cents < 0 || !cents_ok(true, p->reported_investment_usd_cents)))
        FAIL("park.reported_investment_usd_cents: " WHY_CENTS);
    return 0;
}

static int resident_validate(const Parksync__V1__Resident *r, bool key_only, const char **why)
{
    if (!wire_id_valid(r->park_id))
        FAIL("resident.park_id: " WHY_ID);
    if (!wire_id_valid(r->resident_id))
        FAIL("resident.resident_id: " WHY_ID);
    if (!wire_country_valid(r->country))
        FAIL("resident.country: " WHY_COUNTRY);
    if (key_only) {
        if (r->company_name || r->has_sector || r->has_investment_usd_cents || r->has_jobs ||
            r->has_status || r->registered_on || r->has_illustrative)
            FAIL("delete.resident: non-key field");
        return 0;
    }
    if (!text_ok(r->company_name, WIRE_MAX_TEXT))
        FAIL("resident.company_name: " WHY_TEXT);
    if (r->has_sector &&
        (r->sector == 0 || !enum_ok(&parksync__v1__specialization__descriptor, r->sector)))
        FAIL("resident.sector: " WHY_ENUM);
    if (r->has_investment_usd_cents &&
        (r->investment_usd_cents < 0 || !cents_ok(true, r->investment_usd_cents)))
        FAIL("resident.investment_usd_cents: " WHY_CENTS);
    if (r->has_status &&
        (r->status == 0 || !enum_ok(&parksync__v1__resident_status__descriptor, r->status)))
        FAIL("resident.status: " WHY_ENUM);
    if (r->registered_on && !wire_date_valid(r->registered_on))
        FAIL("resident.registered_on: must be a date YYYY-MM-DD");
    return 0;
}

static int trade_validate(const Parksync__V1__TradeReport *t, bool key_only, const char **why)
{
    if (!wire_country_valid(t->reporter))
        FAIL("trade.reporter: " WHY_COUNTRY);
    if (!wire_country_valid(t->partner))
        FAIL("trade.partner: " WHY_COUNTRY);
    if (strcmp(t->reporter, t->partner) == 0)
        FAIL("trade.partner: same as reporter");
    if (!t->has_direction ||
        (t->direction != PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS &&
         t->direction != PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS))
        FAIL("trade.direction: missing or " WHY_ENUM);
    if (!wire_period_valid(t->period))
        FAIL("trade.period: " WHY_PERIOD);
    if (key_only) {
        if (t->has_value_usd_cents)
            FAIL("delete.trade: non-key field");
        return 0;
    }
    if (!t->has_value_usd_cents)
        FAIL("trade.value_usd_cents: missing");
    if (t->value_usd_cents < 0 || !cents_ok(true, t->value_usd_cents))
        FAIL("trade.value_usd_cents: " WHY_CENTS);
    return 0;
}

static int country_validate(const Parksync__V1__CountryReport *c, bool key_only, const char **why)
{
    if (!wire_country_valid(c->country))
        FAIL("country.country: " WHY_COUNTRY);
    if (!wire_period_valid(c->period))
        FAIL("country.period: " WHY_PERIOD);
    if (key_only) {
        if (c->has_parks_non_oil_production_share_bp || c->has_parks_export_share_bp)
            FAIL("delete.country: non-key field");
        return 0;
    }
    if (c->has_parks_non_oil_production_share_bp && c->parks_non_oil_production_share_bp > 10000)
        FAIL("country.parks_non_oil_production_share_bp: " WHY_BP);
    if (c->has_parks_export_share_bp && c->parks_export_share_bp > 10000)
        FAIL("country.parks_export_share_bp: " WHY_BP);
    return 0;
}

/* The envelope alone: what the daemon needs to consume a sequence. */
static int envelope_validate(const Parksync__V1__Update *u, const char **why)
{
    if (!u->has_version || u->version != WIRE_VERSION)
        FAIL("version: missing or not 1 (unsupported)");
    if (!wire_id_valid(u->producer_id))
        FAIL("producer_id: " WHY_ID);
    if (!u->has_sequence || u->sequence == 0)
        FAIL("sequence: missing or 0");
    return 0;
}

static int body_validate(const Parksync__V1__Update *u, const char **why)
{
    const Parksync__V1__Delete *d;

    if (!u->has_event_time_us || u->event_time_us <= 0)
        FAIL("event_time_us: missing or not positive");
    if (u->has_vintage && !enum_ok(&parksync__v1__vintage__descriptor, u->vintage))
        FAIL("vintage: " WHY_ENUM);
    switch (u->body_case) {
    case PARKSYNC__V1__UPDATE__BODY_PARK:
        return park_validate(u->park, false, why);
    case PARKSYNC__V1__UPDATE__BODY_RESIDENT:
        return resident_validate(u->resident, false, why);
    case PARKSYNC__V1__UPDATE__BODY_TRADE:
        return trade_validate(u->trade, false, why);
    case PARKSYNC__V1__UPDATE__BODY_COUNTRY:
        return country_validate(u->country, false, why);
    case PARKSYNC__V1__UPDATE__BODY_DELETE:
        d = u->delete_;
        switch (d->target_case) {
        case PARKSYNC__V1__DELETE__TARGET_PARK:
            return park_validate(d->park, true, why);
        case PARKSYNC__V1__DELETE__TARGET_RESIDENT:
            return resident_validate(d->resident, true, why);
        case PARKSYNC__V1__DELETE__TARGET_TRADE:
            return trade_validate(d->trade, true, why);
        case PARKSYNC__V1__DELETE__TARGET_COUNTRY:
            return country_validate(d->country, true, why);
        default:
            FAIL("delete: no target");
        }
    default:
        /* a newer producer's body is kept as an unknown field */
        FAIL(u->base.n_unknown_fields > 0 ? "body: unsupported: a kind this daemon does not know"
                                          : "body: missing");
    }
}

int wire_update_validate(const Parksync__V1__Update *u, const char **why)
{
    int rc = envelope_validate(u, why);

    return rc < 0 ? rc : body_validate(u, why);
}

/* ---------------------------------------------------------------- reading the wire */

#define WIRE_TYPE_VARINT 0 /* protobuf wire type of varints */
#define WIRE_TYPE_LEN    2 /* protobuf wire type of length-delimited fields */
#define WIRE_TYPE_I64    1 /* protobuf wire type of 64-bit fixed fields */
#define WIRE_TYPE_I32    5 /* protobuf wire type of 32-bit fixed fields */

/* Reads a varint at buf[*at..size); false when it is cut short or longer
 * than 10 bytes. */
static bool get_varint(const uint8_t *buf, size_t size, size_t *at, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70 && *at < size; shift += 7) {
        uint8_t b = buf[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80)
            return true;
    }
    return false;
}

/* Reads the field at buf[*at..size): its number, and for a varint its
 * value, for a length-delimited field its bytes. 1 read, 0 at the end,
 * -EBADMSG when the framing is broken. */
static int field_next(const uint8_t *p, size_t size, size_t *at, uint64_t *field, unsigned *type,
                      uint64_t *value, const uint8_t **bytes)
{
    uint64_t key, n;

    if (*at >= size)
        return 0;
    if (!get_varint(p, size, at, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
        return -EBADMSG;
    *field = key >> 3;
    *type = (unsigned)(key & 7);
    switch (*type) {
    case WIRE_TYPE_VARINT:
        return get_varint(p, size, at, value) ? 1 : -EBADMSG;
    case WIRE_TYPE_I64:
    case WIRE_TYPE_I32:
        n = *type == WIRE_TYPE_I64 ? 8 : 4;
        break;
    case WIRE_TYPE_LEN:
        if (!get_varint(p, size, at, &n))
            return -EBADMSG;
        break;
    default: /* groups, and wire types that do not exist */
        return -EBADMSG;
    }
    if (n > size - *at)
        return -EBADMSG;
    *bytes = p + *at;
    *value = n;
    *at += n;
    return 1;
}

/* ---------------------------------------------------------------- decoding */

/* Calls visit with m and then every message inside it, depth first,
 * until a call returns true; true when one did. The schema has no
 * recursive messages, so the depth is bounded. */
static bool walk(ProtobufCMessage *m, bool (*visit)(ProtobufCMessage *m))
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    char *base = (char *)m;

    if (visit(m))
        return true;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];

        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage **subs = *(ProtobufCMessage ***)(base + f->offset);

            for (size_t k = 0; k < n; k++)
                if (walk(subs[k], visit))
                    return true;
            continue;
        }
        /* oneof members share storage: only the set one is a message */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + f->quantifier_offset) != f->id)
            continue;
        ProtobufCMessage *sub = *(ProtobufCMessage **)(base + f->offset);
        if (sub != NULL && walk(sub, visit))
            return true;
    }
    return false;
}

static bool keeps_field_zero(ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return true;
    return false;
}

static bool keeps_unknown(ProtobufCMessage *m)
{
    return m->n_unknown_fields > 0;
}

/* Frees m's unknown fields as protobuf_c_message_free_unpacked would with
 * the default allocator; never stops the walk. */
static bool drop_unknown(ProtobufCMessage *m)
{
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        free(m->unknown_fields[i].data);
    free(m->unknown_fields);
    m->unknown_fields = NULL;
    m->n_unknown_fields = 0;
    return false;
}

/* True when m or a message inside it kept an unknown field numbered 0.
 * protobuf-c 1.4 refuses field 0 in a one-byte tag but accepts it spelled
 * in more bytes (0x80 0x00) and keeps it as an unknown field, which then
 * re-encodes as the one-byte tag it refuses: a message that decodes but
 * whose round trip does not (found by tests/fuzz). Field 0 is not valid
 * protobuf. (The cast is sound: keeps_field_zero only reads.) */
static bool has_field_zero(const ProtobufCMessage *m)
{
    return walk((ProtobufCMessage *)m, keeps_field_zero);
}

#define WIRE_MAX_DEPTH 16 /* message nesting the NUL walk follows; the schema needs 4 */
#define WHY_NUL        "contains a NUL byte"

/* A string field holding a NUL byte, as found on the wire. */
typedef struct nul_at {
    const ProtobufCMessageDescriptor *msg; /* message type holding the field; NULL: none found */
    const ProtobufCFieldDescriptor *field; /* the string field */
} nul_at_t;

/* protobuf-c hands a string field over as a C string, which ends at its
 * first NUL: "nul\0here" would be validated and stored as "nul", and a
 * producer id "AZ-MOE\0xyz" taken for AZ-MOE. Only the wire still knows
 * the length, so every string field is checked there: p[0..len) is walked
 * as a message of type d, into every known message field; unknown fields
 * are skipped, since nothing reads them as text. A NUL directly in d wins
 * over one nested deeper, so an Update's producer_id is always found
 * before its body's names. Returns 0 when no string holds a NUL, 1 with
 * *at set, or -EBADMSG when the framing is broken or nests deeper than
 * WIRE_MAX_DEPTH. */
static int nul_find(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len, int depth,
                    nul_at_t *at)
{
    const ProtobufCFieldDescriptor *f;
    const uint8_t *bytes;
    uint64_t field, value;
    unsigned type;
    size_t pos = 0;
    int rc, found = 0;

    if (depth > WIRE_MAX_DEPTH)
        return -EBADMSG;
    /* no zero byte at all, no NUL in any string: most sub-messages end
     * here, at memchr's speed, and the walk below is for the rest */
    if (memchr(p, 0, len) == NULL)
        return 0;
    while ((rc = field_next(p, len, &pos, &field, &type, &value, &bytes)) == 1) {
        if (type != WIRE_TYPE_LEN ||
            (f = protobuf_c_message_descriptor_get_field(d, (unsigned)field)) == NULL)
            continue;
        if (f->type == PROTOBUF_C_TYPE_STRING && memchr(bytes, 0, (size_t)value) != NULL) {
            at->msg = d;
            at->field = f;
            return 1;
        }
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && !found) {
            found = nul_find(f->descriptor, bytes, (size_t)value, depth + 1, at);
            if (found < 0)
                return found;
        }
    }
    return rc < 0 ? rc : found;
}

#define NUL_REASON(type, field, name)                                                              \
    {                                                                                              \
        &parksync__v1__##type##__descriptor, #field, name ": " WHY_NUL                             \
    }

/* Every string field of the schema, named as the validators name fields,
 * so a NUL is refused as "FIELD: contains a NUL byte" (tests/test_wire.c
 * checks that none is missing). */
static const struct nul_reason {
    const ProtobufCMessageDescriptor *msg; /* message type */
    const char *field;                     /* field name in parksync.proto */
    const char *why;                       /* the refusal */
} nul_reasons[] = {
    NUL_REASON(update, producer_id, "producer_id"),
    NUL_REASON(park, park_id, "park.park_id"),
    NUL_REASON(park, country, "park.country"),
    NUL_REASON(park, name, "park.name"),
    NUL_REASON(park, region, "park.region"),
    NUL_REASON(resident, park_id, "resident.park_id"),
    NUL_REASON(resident, resident_id, "resident.resident_id"),
    NUL_REASON(resident, country, "resident.country"),
    NUL_REASON(resident, company_name, "resident.company_name"),
    NUL_REASON(resident, registered_on, "resident.registered_on"),
    NUL_REASON(trade_report, reporter, "trade.reporter"),
    NUL_REASON(trade_report, partner, "trade.partner"),
    NUL_REASON(country_report, country, "country.country"),
    NUL_REASON(filter, country, "filter.country"),
    NUL_REASON(producer_state_request, producer_id, "producer_state.producer_id"),
    NUL_REASON(conflicts_request, country, "conflicts.country"),
    NUL_REASON(backup_request, path, "backup.path"),
    NUL_REASON(trade_flow, exporter, "trade.exporter"),
    NUL_REASON(trade_flow, importer, "trade.importer"),
    NUL_REASON(partner_turnover, partner, "turnover.partner"),
    NUL_REASON(park_check, park_id, "mismatches.park_id"),
    NUL_REASON(country_summary, country, "summary.country"),
    NUL_REASON(field_provenance, field, "provenance.field"),
    NUL_REASON(field_provenance, producer_id, "provenance.producer_id"),
    NUL_REASON(ack, producer_id, "ack.producer_id"),
    NUL_REASON(topic_sequence, topic, "heartbeat.topics.topic"),
    NUL_REASON(producer_state, producer_id, "producer_state.producer_id"),
    NUL_REASON(error, message, "error.message"),
    NUL_REASON(producer_status, producer_id, "status.producers.producer_id"),
    NUL_REASON(counter, name, "counter.name"),
    NUL_REASON(status, version, "status.version"),
    NUL_REASON(status, reload_error, "status.reload_error"),
    NUL_REASON(status_request, producers_after, "status.producers_after"),
    NUL_REASON(socket_connections, socket, "status.connections.socket"),
    NUL_REASON(metrics, text, "metrics.text"),
    NUL_REASON(backup, path, "backup.path"),
    NUL_REASON(reload, message, "reload.message"),
    NUL_REASON(health, reason, "health.reason"),
    NUL_REASON(check, findings, "check.findings"),
    NUL_REASON(conflict, producer_id, "conflicts.producer_id"),
    NUL_REASON(conflict, key, "conflicts.key"),
    NUL_REASON(conflict, country, "conflicts.country"),
    NUL_REASON(conflict, partner, "conflicts.partner"),
    NUL_REASON(conflict, reason, "conflicts.reason"),
};

static const char *nul_why(const nul_at_t *at)
{
    for (size_t i = 0; i < sizeof nul_reasons / sizeof nul_reasons[0]; i++)
        if (nul_reasons[i].msg == at->msg && strcmp(nul_reasons[i].field, at->field->name) == 0)
            return nul_reasons[i].why;
    return "text: " WHY_NUL; /* a string field added to the schema, not to nul_reasons */
}

/* Size check, unpack and the NUL walk, shared by every decoder. A NUL in a
 * string field is refused here (-EINVAL) when nul is NULL; otherwise it is
 * left in *nul (msg NULL when none) for the caller to refuse in its place. */
static ProtobufCMessage *bounded_unpack(const ProtobufCMessageDescriptor *d, const void *buf,
                                        size_t len, size_t max, int *rc, const char **why,
                                        nul_at_t *nul)
{
    nul_at_t here = {NULL, NULL};
    ProtobufCMessage *m;

    if (len > max) {
        *rc = -EMSGSIZE;
        *why = "too large";
        return NULL;
    }
    m = protobuf_c_message_unpack(d, NULL, len, buf);
    if (m != NULL && (has_field_zero(m) || nul_find(d, buf, len, 0, &here) < 0)) {
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    if (m == NULL) {
        *rc = -EBADMSG;
        *why = "undecodable";
        return NULL;
    }
    if (nul != NULL) {
        *nul = here;
    } else if (here.msg != NULL) {
        protobuf_c_message_free_unpacked(m, NULL);
        *rc = -EINVAL;
        *why = nul_why(&here);
        return NULL;
    }
    *rc = 0;
    return m;
}

int wire_update_decode(const void *buf, size_t len, Parksync__V1__Update **out, const char **why)
{
    int rc;
    nul_at_t nul;
    Parksync__V1__Update *u = (Parksync__V1__Update *)bounded_unpack(
        &parksync__v1__update__descriptor, buf, len, WIRE_MAX_UPDATE, &rc, why, &nul);

    *out = NULL;
    if (u == NULL)
        return rc;
    rc = envelope_validate(u, why);
    /* a NUL in producer_id leaves no id whose sequence could be consumed */
    if (rc == 0 && nul.msg == &parksync__v1__update__descriptor &&
        strcmp(nul.field->name, "producer_id") == 0) {
        *why = nul_why(&nul);
        rc = -EINVAL;
    }
    if (rc < 0) {
        parksync__v1__update__free_unpacked(u, NULL);
        return rc;
    }
    *out = u; /* sound envelope: handed over even when the body is invalid */
    if (nul.msg != NULL) {
        *why = nul_why(&nul);
        return -EINVAL;
    }
    return body_validate(u, why);
}

static int filter_validate(const Parksync__V1__Filter *f, const char **why)
{
    if (f == NULL)
        return 0;
    if (f->has_kind && !enum_ok(&parksync__v1__record_kind__descriptor, f->kind))
        FAIL("filter.kind: " WHY_ENUM);
    if (f->country && !wire_country_valid(f->country))
        FAIL("filter.country: " WHY_COUNTRY);
    return 0;
}

#define WHY_CREDIT "must be 1..64 chunks"
#define WHY_CHUNK  "must be 1..4096 records"

static int query_request_validate(const Parksync__V1__QueryRequest *q, const char **why)
{
    if (!q->has_version)
        FAIL("version: missing");
    if (q->version != WIRE_VERSION)
        FAIL("version: unsupported request: this daemon speaks version 1");
    if (!q->has_request_id)
        FAIL("request_id: missing");
    switch (q->body_case) {
    case PARKSYNC__V1__QUERY_REQUEST__BODY_PING:
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CANCEL:
        return 0;
    case PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT:
        if (q->snapshot->has_credit &&
            (q->snapshot->credit == 0 || q->snapshot->credit > WIRE_MAX_CREDIT))
            FAIL("snapshot.credit: " WHY_CREDIT);
        if (q->snapshot->has_chunk_records && (q->snapshot->chunk_records == 0 ||
                                               q->snapshot->chunk_records > WIRE_MAX_CHUNK_RECORDS))
            FAIL("snapshot.chunk_records: " WHY_CHUNK);
        return filter_validate(q->snapshot->filter, why);
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT:
        if (!q->credit->has_chunks || q->credit->chunks == 0 || q->credit->chunks > WIRE_MAX_CREDIT)
            FAIL("credit.chunks: missing or not 1..64");
        return 0;
    case PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES:
        if (!q->changes->has_since_revision)
            FAIL("changes.since_revision: missing (0 asks for the whole change log)");
        if (q->changes->has_credit &&
            (q->changes->credit == 0 || q->changes->credit > WIRE_MAX_CREDIT))
            FAIL("changes.credit: " WHY_CREDIT);
        if (q->changes->has_chunk_records &&
            (q->changes->chunk_records == 0 || q->changes->chunk_records > WIRE_MAX_CHUNK_RECORDS))
            FAIL("changes.chunk_records: " WHY_CHUNK);
        return filter_validate(q->changes->filter, why);
    case PARKSYNC__V1__QUERY_REQUEST__BODY_PRODUCER_STATE:
        if (!wire_id_valid(q->producer_state->producer_id))
            FAIL("producer_state.producer_id: " WHY_ID);
        return 0;
    default:
        /* a newer client's request: its body is kept as an unknown field */
        FAIL(q->base.n_unknown_fields > 0 ? "body: unsupported request: a body this daemon "
                                            "does not know"
                                          : "body: missing");
    }
}

int wire_query_request_decode(const void *buf, size_t len, Parksync__V1__QueryRequest **out,
                              const char **why)
{
    int rc;
    Parksync__V1__QueryRequest *q = (Parksync__V1__QueryRequest *)bounded_unpack(
        &parksync__v1__query_request__descriptor, buf, len, WIRE_MAX_QUERY, &rc, why, NULL);

    *out = NULL;
    if (q == NULL)
        return rc;
    if ((rc = query_request_validate(q, why)) < 0) {
        parksync__v1__query_request__free_unpacked(q, NULL);
        return rc;
    }
    *out = q;
    return 0;
}

/* Replies and publications come from the daemon; the client still checks
 * what it relies on: the envelope, the oneof, and the record bodies' keys. */
static int record_validate(const Parksync__V1__Record *r, const char **why)
{
    if (!r->has_revision)
        FAIL("record.revision");
    if (wire_record_kind(r) == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED)
        FAIL("record.body");
    if (!wire_country_valid(wire_record_country(r)))
        FAIL("record.country");
    return 0;
}

static int query_reply_validate(const Parksync__V1__QueryReply *q, const char **why)
{
    if (!q->has_version || q->version != WIRE_VERSION)
        FAIL("version");
    if (!q->has_request_id)
        FAIL("request_id");
    switch (q->body_case) {
    case PARKSYNC__V1__QUERY_REPLY__BODY_PONG:
    case PARKSYNC__V1__QUERY_REPLY__BODY_PRODUCER_STATE:
    case PARKSYNC__V1__QUERY_REPLY__BODY_ERROR:
        return 0;
    case PARKSYNC__V1__QUERY_REPLY__BODY_CHUNK:
        if (q->chunk->n_records > WIRE_MAX_CHUNK_RECORDS)
            FAIL("chunk.records: too many");
        for (size_t i = 0; i < q->chunk->n_records; i++)
            if (record_validate(q->chunk->records[i], why) < 0)
                return -EINVAL;
        return 0;
    default:
        FAIL("body: none");
    }
}

int wire_query_reply_decode(const void *buf, size_t len, Parksync__V1__QueryReply **out,
                            const char **why)
{
    int rc;
    Parksync__V1__QueryReply *q = (Parksync__V1__QueryReply *)bounded_unpack(
        &parksync__v1__query_reply__descriptor, buf, len, WIRE_MAX_MSG, &rc, why, NULL);

    *out = NULL;
    if (q == NULL)
        return rc;
    if ((rc = query_reply_validate(q, why)) < 0) {
        parksync__v1__query_reply__free_unpacked(q, NULL);
        return rc;
    }
    *out = q;
    return 0;
}

static int publication_validate(const Parksync__V1__Publication *p, const char **why)
{
    if (!p->has_version || p->version != WIRE_VERSION)
        FAIL("version");
    switch (p->body_case) {
    case PARKSYNC__V1__PUBLICATION__BODY_RECORD:
        return record_validate(p->record, why);
    case PARKSYNC__V1__PUBLICATION__BODY_ACK:
        if (!wire_id_valid(p->ack->producer_id) || !p->ack->has_last_sequence)
            FAIL("ack");
        return 0;
    case PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT:
        if (p->heartbeat->n_topics > WIRE_MAX_HB_TOPICS)
            FAIL("heartbeat.topics: too many");
        for (size_t i = 0; i < p->heartbeat->n_topics; i++)
            if (p->heartbeat->topics[i]->topic == NULL ||
                strlen(p->heartbeat->topics[i]->topic) >= WIRE_MAX_TOPIC ||
                !p->heartbeat->topics[i]->has_sequence)
                FAIL("heartbeat.topics");
        return 0;
    default:
        FAIL("body: none");
    }
}

int wire_publication_decode(const void *buf, size_t len, Parksync__V1__Publication **out,
                            const char **why)
{
    int rc;
    Parksync__V1__Publication *p = (Parksync__V1__Publication *)bounded_unpack(
        &parksync__v1__publication__descriptor, buf, len, WIRE_MAX_MSG, &rc, why, NULL);

    *out = NULL;
    if (p == NULL)
        return rc;
    if ((rc = publication_validate(p, why)) < 0) {
        parksync__v1__publication__free_unpacked(p, NULL);
        return rc;
    }
    *out = p;
    return 0;
}

int wire_control_request_decode(const void *buf, size_t len, Parksync__V1__ControlRequest **out,
                                const char **why)
{
    int rc;
    Parksync__V1__ControlRequest *c = (Parksync__V1__ControlRequest *)bounded_unpack(
        &parksync__v1__control_request__descriptor, buf, len, WIRE_MAX_CONTROL, &rc, why, NULL);

    *out = NULL;
    if (c == NULL)
        return rc;
    if (!c->has_version || c->version != WIRE_VERSION || !c->has_request_id ||
        c->body_case == PARKSYNC__V1__CONTROL_REQUEST__BODY__NOT_SET) {
        *why = c->has_version && c->version == WIRE_VERSION ? "body: none" : "version";
        parksync__v1__control_request__free_unpacked(c, NULL);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

int wire_control_reply_decode(const void *buf, size_t len, Parksync__V1__ControlReply **out,
                              const char **why)
{
    int rc;
    Parksync__V1__ControlReply *c = (Parksync__V1__ControlReply *)bounded_unpack(
        &parksync__v1__control_reply__descriptor, buf, len, WIRE_MAX_MSG, &rc, why, NULL);

    *out = NULL;
    if (c == NULL)
        return rc;
    if (!c->has_version || c->version != WIRE_VERSION) {
        *why = "version";
        parksync__v1__control_reply__free_unpacked(c, NULL);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

/* ---------------------------------------------------------------- encoding */

uint8_t *wire_pack(const ProtobufCMessage *msg, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n > 0 ? n : 1);

    if (buf == NULL)
        return NULL;
    *len = protobuf_c_message_pack(msg, buf);
    return buf;
}

ProtobufCMessage *wire_copy(const ProtobufCMessage *msg)
{
    size_t len;
    uint8_t *buf = wire_pack(msg, &len);
    ProtobufCMessage *copy;

    if (buf == NULL)
        return NULL;
    copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

bool wire_has_unknown(const ProtobufCMessage *msg)
{
    return walk((ProtobufCMessage *)msg, keeps_unknown); /* keeps_unknown only reads */
}

ProtobufCMessage *wire_copy_known(const ProtobufCMessage *msg)
{
    ProtobufCMessage *copy = wire_copy(msg);

    if (copy != NULL)
        walk(copy, drop_unknown);
    return copy;
}

/* ---------------------------------------------------------------- raw builders */

void wire_buf_reset(wire_buf_t *b)
{
    b->len = 0;
}

void wire_buf_free(wire_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static int buf_reserve(wire_buf_t *b, size_t extra)
{
    size_t cap;
    uint8_t *data;

    if (b->len + extra <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    if ((data = realloc(b->data, cap)) == NULL)
        return -ENOMEM;
    b->data = data;
    b->cap = cap;
    return 0;
}

static void buf_varint(wire_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        b->data[b->len++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b->data[b->len++] = (uint8_t)v;
}

int wire_buf_put_varint(wire_buf_t *b, uint32_t field, uint64_t value)
{
    if (buf_reserve(b, 20) < 0)
        return -ENOMEM;
    buf_varint(b, ((uint64_t)field << 3) | WIRE_TYPE_VARINT);
    buf_varint(b, value);
    return 0;
}

int wire_buf_put_bytes(wire_buf_t *b, uint32_t field, const void *bytes, size_t len)
{
    if (buf_reserve(b, 20 + len) < 0)
        return -ENOMEM;
    buf_varint(b, ((uint64_t)field << 3) | WIRE_TYPE_LEN);
    buf_varint(b, len);
    if (len > 0)
        memcpy(b->data + b->len, bytes, len);
    b->len += len;
    return 0;
}

/* Field numbers as in parksync.proto, named once here. */
enum {
    F_CHUNK_RECORDS = 1,      /* Chunk.records */
    F_BATCH_UPDATES = 1,      /* UpdateBatch.updates */
    F_REPLY_VERSION = 1,      /* QueryReply.version */
    F_REPLY_REQUEST_ID = 2,   /* QueryReply.request_id */
    F_REQUEST_REQUEST_ID = 2, /* QueryRequest.request_id */
    F_REPLY_CHUNK = 11,       /* QueryReply.chunk */
    F_CHUNK_LAST = 2,         /* Chunk.last */
    F_CHUNK_REVISION = 3,     /* Chunk.revision */
    F_CHUNK_EPOCH = 4,        /* Chunk.epoch */
    F_PUB_VERSION = 1,        /* Publication.version */
    F_PUB_STREAM_SEQ = 2,     /* Publication.stream_sequence */
    F_PUB_REPEAT = 3,         /* Publication.repeat */
    F_PUB_RECORD = 10,        /* Publication.record */
};

int wire_batch_next(const void *buf, size_t size, size_t *at, const void **update, size_t *len)
{
    const uint8_t *bytes;
    uint64_t field, value;
    unsigned type;
    int rc;

    while ((rc = field_next(buf, size, at, &field, &type, &value, &bytes)) == 1) {
        if (field != F_BATCH_UPDATES)
            continue;
        if (type != WIRE_TYPE_LEN)
            return -EBADMSG; /* updates are messages: length-delimited */
        *update = bytes;
        *len = (size_t)value;
        return 1;
    }
    return rc;
}

bool wire_query_request_id(const void *buf, size_t size, uint64_t *request_id)
{
    const uint8_t *bytes;
    uint64_t field, value;
    unsigned type;
    size_t at = 0;
    bool found = false;

    *request_id = 0;
    /* the last occurrence wins, as in protobuf's own decoding */
    while (field_next(buf, size, &at, &field, &type, &value, &bytes) == 1)
        if (field == F_REQUEST_REQUEST_ID && type == WIRE_TYPE_VARINT) {
            *request_id = value;
            found = true;
        }
    return found;
}

void wire_chunk_reset(wire_chunk_t *c)
{
    wire_buf_reset(&c->records);
    wire_buf_reset(&c->out);
    c->count = 0;
}

void wire_chunk_free(wire_chunk_t *c)
{
    wire_buf_free(&c->records);
    wire_buf_free(&c->out);
    c->count = 0;
}

int wire_chunk_add(wire_chunk_t *c, const void *record, size_t len)
{
    int rc = wire_buf_put_bytes(&c->records, F_CHUNK_RECORDS, record, len);

    if (rc == 0)
        c->count++;
    return rc;
}

int wire_chunk_finish(wire_chunk_t *c, uint64_t request_id, bool last, uint64_t revision,
                      const uint8_t *epoch, const uint8_t **msg, size_t *len)
{
    int rc = 0;

    rc |= wire_buf_put_varint(&c->records, F_CHUNK_LAST, last ? 1 : 0);
    rc |= wire_buf_put_varint(&c->records, F_CHUNK_REVISION, revision);
    if (epoch != NULL)
        rc |= wire_buf_put_bytes(&c->records, F_CHUNK_EPOCH, epoch, WIRE_EPOCH_BYTES);
    wire_buf_reset(&c->out);
    rc |= wire_buf_put_varint(&c->out, F_REPLY_VERSION, WIRE_VERSION);
    rc |= wire_buf_put_varint(&c->out, F_REPLY_REQUEST_ID, request_id);
    rc |= wire_buf_put_bytes(&c->out, F_REPLY_CHUNK, c->records.data, c->records.len);
    if (rc != 0)
        return -ENOMEM;
    *msg = c->out.data;
    *len = c->out.len;
    return 0;
}

int wire_publication_record(wire_buf_t *b, uint64_t stream_sequence, const void *record, size_t len)
{
    wire_buf_reset(b);
    if (wire_buf_put_varint(b, F_PUB_VERSION, WIRE_VERSION) < 0 ||
        wire_buf_put_varint(b, F_PUB_STREAM_SEQ, stream_sequence) < 0 ||
        wire_buf_put_bytes(b, F_PUB_RECORD, record, len) < 0)
        return -ENOMEM;
    return 0;
}

int wire_publication_repeat(wire_buf_t *b, uint64_t stream_sequence, const void *record, size_t len)
{
    wire_buf_reset(b);
    if (wire_buf_put_varint(b, F_PUB_VERSION, WIRE_VERSION) < 0 ||
        wire_buf_put_varint(b, F_PUB_STREAM_SEQ, stream_sequence) < 0 ||
        wire_buf_put_varint(b, F_PUB_REPEAT, 1) < 0 ||
        wire_buf_put_bytes(b, F_PUB_RECORD, record, len) < 0)
        return -ENOMEM;
    return 0;
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
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
