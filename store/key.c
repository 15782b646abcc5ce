/*
 * key.c - record kinds, keys and bodies (key.h).
 */
#include "key.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

/* Key columns of each kind's table. */
static const size_t key_columns[STORE_KINDS] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] = 2,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] = 3,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE] = 3,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] = 2,
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY] = 1,
};

/* The revision and body of a stored record; false when it has none. */
static bool stored_split(const uint8_t *rec, size_t len, uint64_t *revision, const uint8_t **body,
                         size_t *blen)
{
    size_t at = 1;

    if (len == 0 || rec[0] != STORE_TAG_REVISION || !varint_get(rec, len, &at, revision))
        return false;
    *body = rec + at;
    *blen = len - at;
    return true;
}

/* The encoded Record without its leading revision field. */
void record_strip(const uint8_t *rec, size_t len, const uint8_t **body, size_t *blen)
{
    uint64_t revision;

    if (!stored_split(rec, len, &revision, body, blen)) {
        *body = rec;
        *blen = len;
    }
}

#define PREV_SAME_MIN 4 /* equal bytes that end a literal run of a difference */

/* How many bytes a[at..n) and b[at..n) share from at on, or backwards
 * (a[..n - at) and b[..m - at) from their ends): eight at a time, since
 * a record's changes are a few bytes in a few hundred. */
static size_t same_from(const uint8_t *a, const uint8_t *b, size_t at, size_t n)
{
    size_t i = at;
    uint64_t x, y;

    for (; i + 8 <= n; i += 8) {
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y)
            break;
    }
    while (i < n && a[i] == b[i])
        i++;
    return i - at;
}

static size_t same_back(const uint8_t *a, size_t n, const uint8_t *b, size_t m, size_t most)
{
    size_t k = 0;
    uint64_t x, y;

    for (; k + 8 <= most; k += 8) {
        memcpy(&x, a + n - k - 8, 8);
        memcpy(&y, b + m - k - 8, 8);
        if (x != y)
            break;
    }
    while (k < most && a[n - 1 - k] == b[m - 1 - k])
        k++;
    return k;
}

/* Appends to out the operation: copy bytes of the record, skip bytes
 * of it, then n literal bytes of prev (out has room: prev_encode). */
static void op_put(buf_t *out, size_t copy, size_t skip, const uint8_t *lit, size_t n)
{
    uint8_t *o = out->data + out->len;
    size_t at = varint_put(o, copy);
    at += varint_put(o + at, skip);
    at += varint_put(o + at, n);
    if (n > 0)
        memcpy(o + at, lit, n);
    out->len += at + n;
}

/* Appends the operations that rebuild p[0..n) from r[0..n), compared
 * byte for byte: the runs that differ are literal, and fewer than
 * PREV_SAME_MIN equal bytes between two of them are taken into one
 * (another operation would cost as much). copy is how many bytes of the
 * record before r wait to be copied; returns how many wait after it. */
static size_t aligned_put(buf_t *out, const uint8_t *p, const uint8_t *r, size_t n, size_t copy)
{
    size_t at = 0;

    while (at < n) {
        size_t same = same_from(p, r, at, n);
        at += same;
        copy += same;
        if (at == n)
            break;
        size_t from = at, last = at;
        while (at < n && (p[at] != r[at] || at - last <= PREV_SAME_MIN)) {
            if (p[at] != r[at])
                last = at;
            at++;
        }
        op_put(out, copy, last + 1 - from, p + from, last + 1 - from);
        copy = 0;
        at = last + 1;
    }
    return copy;
}

/* Where bodies of different lengths pn and rn, equal for head bytes and
 * the last tail, change from being compared from the start to being
 * compared from the end (a field whose varint grew or shrank lies
 * between): the point that leaves the fewest bytes differing. */
static size_t split_at(const uint8_t *pb, size_t pn, const uint8_t *rb, size_t rn, size_t head,
                       size_t tail)
{
    size_t end = (pn < rn ? pn : rn) - tail, shift = pn > rn ? pn - rn : 0;
    const uint8_t *re = rb + rn - tail; /* prev's byte i faces re[i - (pn - tail)] */
    size_t fwd = 0, bwd = 0, best = head, least;

    for (size_t i = head + shift; i < pn - tail; i++)
        bwd += pb[i] != *(re - (pn - tail - i));
    least = bwd;
    for (size_t s = head; s < end; s++) {
        fwd += pb[s] != rb[s];
        bwd -= pb[s + shift] != *(re - (pn - tail - s - shift));
        if (fwd + bwd < least) {
            least = fwd + bwd;
            best = s + 1;
        }
    }
    return best;
}

int prev_encode(buf_t *out, const uint8_t *prev, size_t plen, const uint8_t *rec, size_t rlen)
{
    const uint8_t *pb, *rb;
    size_t pn, rn, head, tail, copy;
    uint64_t revision, unused;

    if (!stored_split(prev, plen, &revision, &pb, &pn) ||
        !stored_split(rec, rlen, &unused, &rb, &rn))
        return 0;
    head = same_from(pb, rb, 0, pn < rn ? pn : rn);
    tail = same_back(pb, pn, rb, rn, (pn < rn ? pn : rn) - head);
    /* each operation takes at most 3 varints besides its literal bytes;
     * each but the last of a run compared covers PREV_SAME_MIN + 1 bytes
     * at least, and there are two runs, the step between them and the
     * last copy */
    size_t ops = (pn - head - tail) / (PREV_SAME_MIN + 1) + 4;
    if (buf_reserve(out, 1 + STORE_VARINT_MAX + ops * 3 * STORE_VARINT_MAX + pn) < 0)
        return -ENOMEM;
    out->len = 0;
    out->data[out->len++] = STORE_TAG_PREV_DELTA;
    out->len += varint_put(out->data + out->len, revision);
    if (pn == rn) {
        copy = aligned_put(out, pb + head, rb + head, pn - head - tail, head);
    } else {
        /* compared from the start up to the split, then from the end:
         * the record's extra bytes skipped there, or prev's literal */
        size_t s = split_at(pb, pn, rb, rn, head, tail);
        copy = aligned_put(out, pb + head, rb + head, s - head, head);
        if (rn > pn) {
            op_put(out, copy, rn - pn, NULL, 0);
            copy = aligned_put(out, pb + s, rb + s + (rn - pn), pn - tail - s, 0);
        } else {
            op_put(out, copy, 0, pb + s, pn - rn);
            copy = aligned_put(out, pb + s + (pn - rn), rb + s, rn - tail - s, 0);
        }
    }
    tail += copy;
    if (tail > 0)
        op_put(out, tail, 0, NULL, 0);
    return out->len < plen ? 1 : 0;
}

int prev_decode(buf_t *out, const uint8_t *prev, size_t plen, const uint8_t *rec, size_t rlen)
{
    const uint8_t *rb;
    size_t rn, at = 1, pos = 0;
    uint64_t revision, unused;

    if (plen == 0 || prev[0] != STORE_TAG_PREV_DELTA)
        return buf_set(out, prev, plen);
    if (!varint_get(prev, plen, &at, &revision) || !stored_split(rec, rlen, &unused, &rb, &rn))
        return -EBADMSG;
    /* every byte comes from the record once at most, or from prev */
    if (buf_reserve(out, 1 + STORE_VARINT_MAX + rn + plen) < 0)
        return -ENOMEM;
    out->len = 0;
    out->data[out->len++] = STORE_TAG_REVISION;
    out->len += varint_put(out->data + out->len, revision);
    while (at < plen) {
        uint64_t copy, skip, lit;
        if (!varint_get(prev, plen, &at, &copy) || !varint_get(prev, plen, &at, &skip) ||
            !varint_get(prev, plen, &at, &lit) || copy > rn - pos || skip > rn - pos - copy ||
            lit > plen - at)
            return -EBADMSG;
        memcpy(out->data + out->len, rb + pos, copy);
        memcpy(out->data + out->len + copy, prev + at, lit);
        out->len += copy + lit;
        pos += copy + skip;
        at += lit;
    }
    return 0;
}

int country_index(const char *c)
{
    if (!c || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2])
        return -1;
    return (c[0] - 'A') * 26 + (c[1] - 'A');
}

static bool id_ok(const char *p)
{
    return p && p[0] && strlen(p) <= WIRE_MAX_ID;
}

static bool period_key(rec_key_t *key, const Parksync__V1__Period *p)
{
    return p && wire_period_key(key->period, sizeof(key->period), p) > 0;
}

/* The record an update or delete target names. false when a key is missing. */
bool key_of(rec_key_t *key, kind_t kind, const void *body, bool *exporter_side)
{
    memset(key, 0, sizeof(*key));
    key->kind = kind;
    key->ncols = kind < STORE_KINDS ? key_columns[kind] : 0;
    switch (kind) {
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK: {
        const Parksync__V1__Park *p = body;
        key->col[0] = p->country;
        key->col[1] = p->park_id;
        key->country = key->owner = p->country;
        return country_index(p->country) >= 0 && id_ok(p->park_id);
    }
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT: {
        const Parksync__V1__Resident *r = body;
        key->col[0] = r->country;
        key->col[1] = r->park_id;
        key->col[2] = r->resident_id;
        key->country = key->owner = r->country;
        return country_index(r->country) >= 0 && id_ok(r->park_id) && id_ok(r->resident_id);
    }
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE: {
        const Parksync__V1__TradeReport *t = body;
        if (!t->has_direction || country_index(t->reporter) < 0 || country_index(t->partner) < 0)
            return false;
        if (t->direction == PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS) {
            key->col[0] = t->reporter;
            key->col[1] = t->partner;
            *exporter_side = true;
        } else if (t->direction == PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS) {
            key->col[0] = t->partner;
            key->col[1] = t->reporter;
            *exporter_side = false;
        } else {
            return false;
        }
        key->col[2] = key->period;
        key->country = key->col[0];
        key->country2 = key->col[1];
        key->owner = t->reporter;
        key->partner = t->partner;
        return period_key(key, t->period);
    }
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY: {
        const Parksync__V1__CountryReport *c = body;
        key->col[0] = c->country;
        key->col[1] = key->period;
        key->country = key->owner = c->country;
        return country_index(c->country) >= 0 && period_key(key, c->period);
    }
    default:
        return false;
    }
}

/* The kind and body an update names; is_delete for a delete's target. */
const void *update_target(const Parksync__V1__Update *u, kind_t *kind, bool *is_delete)
{
    *is_delete = false;
    switch (u->body_case) {
    case PARKSYNC__V1__UPDATE__BODY_PARK:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
        return u->park;
    case PARKSYNC__V1__UPDATE__BODY_RESIDENT:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
        return u->resident;
    case PARKSYNC__V1__UPDATE__BODY_TRADE:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
        return u->trade;
    case PARKSYNC__V1__UPDATE__BODY_COUNTRY:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
        return u->country;
    case PARKSYNC__V1__UPDATE__BODY_DELETE:
        break;
    default:
        return NULL;
    }
    if (!u->delete_)
        return NULL;
    *is_delete = true;
    switch (u->delete_->target_case) {
    case PARKSYNC__V1__DELETE__TARGET_PARK:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK;
        return u->delete_->park;
    case PARKSYNC__V1__DELETE__TARGET_RESIDENT:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT;
        return u->delete_->resident;
    case PARKSYNC__V1__DELETE__TARGET_TRADE:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
        return u->delete_->trade;
    case PARKSYNC__V1__DELETE__TARGET_COUNTRY:
        *kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY;
        return u->delete_->country;
    default:
        return NULL;
    }
}

/* The key columns joined by '/', truncated to size - 1 bytes. */
void key_text(const rec_key_t *key, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < key->ncols && n + 1 < size; i++) {
        if (i > 0)
            out[n++] = '/';
        size_t l = strnlen(key->col[i], size - 1 - n);
        memcpy(out + n, key->col[i], l);
        n += l;
    }
    out[n] = '\0';
}

/* Parses a period key made by wire_period_key back into a Period, and
 * checks the round trip so a change of that format cannot go unnoticed. */
bool period_parse(const char *text, Parksync__V1__Period *p)
{
    unsigned y, a, b;
    char again[STORE_PERIOD_TEXT];
    if (!text || sscanf(text, "%u-%u..%u", &y, &a, &b) != 3)
        return false;
    parksync__v1__period__init(p);
    p->has_year = p->has_first_month = p->has_last_month = 1;
    p->year = y;
    p->first_month = a;
    p->last_month = b;
    return wire_period_key(again, sizeof(again), p) > 0 && strcmp(again, text) == 0;
}

/* The body of a Record of a generic kind, or NULL. */
const ProtobufCMessage *record_body(const Parksync__V1__Record *r)
{
    if (!r)
        return NULL;
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        return &r->park->base;
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        return &r->resident->base;
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        return &r->trade->base;
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        return &r->country->base;
    case PARKSYNC__V1__RECORD__BODY_SUMMARY:
        return &r->summary->base;
    default:
        return NULL;
    }
}

void record_set_body(Parksync__V1__Record *r, kind_t kind, ProtobufCMessage *body)
{
    switch (kind) {
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK:
        r->body_case = PARKSYNC__V1__RECORD__BODY_PARK;
        r->park = (Parksync__V1__Park *)body;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT:
        r->body_case = PARKSYNC__V1__RECORD__BODY_RESIDENT;
        r->resident = (Parksync__V1__Resident *)body;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE:
        r->body_case = PARKSYNC__V1__RECORD__BODY_TRADE;
        r->trade = (Parksync__V1__TradeFlow *)body;
        break;
    case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY:
        r->body_case = PARKSYNC__V1__RECORD__BODY_COUNTRY;
        r->country = (Parksync__V1__CountryReport *)body;
        break;
    default:
        r->body_case = PARKSYNC__V1__RECORD__BODY_SUMMARY;
        r->summary = (Parksync__V1__CountrySummary *)body;
        break;
    }
}

/* The key of a Record of a kind with stamps; a trade flow is read as the
 * exporter's report of it, built in *tr (which the key then points into).
 * false when the record has no such body or a key is missing. */
bool key_of_record(rec_key_t *key, const Parksync__V1__Record *r, Parksync__V1__TradeReport *tr)
{
    bool exporter_side;
    switch (r->body_case) {
    case PARKSYNC__V1__RECORD__BODY_PARK:
        return key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK, r->park, &exporter_side);
    case PARKSYNC__V1__RECORD__BODY_RESIDENT:
        return key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT, r->resident,
                      &exporter_side);
    case PARKSYNC__V1__RECORD__BODY_COUNTRY:
        return key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY, r->country,
                      &exporter_side);
    case PARKSYNC__V1__RECORD__BODY_TRADE:
        parksync__v1__trade_report__init(tr);
        tr->reporter = r->trade->exporter;
        tr->partner = r->trade->importer;
        tr->has_direction = 1;
        tr->direction = PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS;
        tr->period = r->trade->period;
        return tr->reporter && tr->partner &&
               key_of(key, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE, tr, &exporter_side);
    default:
        return false;
    }
}
