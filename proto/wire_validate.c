/*
 * wire_validate.c - the rules a decoded message must meet before anyone
 * acts on it: an Update's envelope and body (every key, enum, text, list
 * and money bound), and what the client checks of the daemon's query
 * replies and publications. Pure functions of a protobuf-c message; the
 * decoders in wire_decode.c call them after unpacking.
 */
#include "wire.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "wire_int.h"

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
int wire_envelope_validate(const Parksync__V1__Update *u, const char **why)
{
    if (!u->has_version || u->version != WIRE_VERSION)
        FAIL("version: missing or not 1 (unsupported)");
    if (!wire_id_valid(u->producer_id))
        FAIL("producer_id: " WHY_ID);
    if (!u->has_sequence || u->sequence == 0)
        FAIL("sequence: missing or 0");
    return 0;
}

int wire_body_validate(const Parksync__V1__Update *u, const char **why)
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
    int rc = wire_envelope_validate(u, why);

    return rc < 0 ? rc : wire_body_validate(u, why);
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

int wire_query_request_validate(const Parksync__V1__QueryRequest *q, const char **why)
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
    case PARKSYNC__V1__QUERY_REQUEST__BODY_REPLICATE: {
        const Parksync__V1__ReplicateRequest *r = q->replicate;
        if (!wire_id_valid(r->site))
            FAIL("replicate.site: " WHY_ID);
        if (r->has_epoch && r->epoch.len != WIRE_EPOCH_BYTES)
            FAIL("replicate.epoch: must be 16 bytes");
        if (!r->has_since_revision)
            FAIL("replicate.since_revision: missing (0 asks for the whole state)");
        if (r->has_credit && (r->credit == 0 || r->credit > WIRE_MAX_CREDIT))
            FAIL("replicate.credit: " WHY_CREDIT);
        if (r->has_chunk_records &&
            (r->chunk_records == 0 || r->chunk_records > WIRE_MAX_CHUNK_RECORDS))
            FAIL("replicate.chunk_records: " WHY_CHUNK);
        if (r->has_wait_ms && r->wait_ms > WIRE_MAX_WAIT_MS)
            FAIL("replicate.wait_ms: must be 0..30000");
        if (r->n_countries > WIRE_MAX_COUNTRIES)
            FAIL("replicate.countries: more than 32");
        for (size_t i = 0; i < r->n_countries; i++)
            if (!wire_country_valid(r->countries[i]))
                FAIL("replicate.countries: " WHY_COUNTRY);
        if (r->has_stored_instance && r->stored_instance.len != WIRE_INSTANCE_BYTES)
            FAIL("replicate.stored_instance: must be 16 bytes");
        if (r->has_trade_rule &&
            (r->trade_rule == PARKSYNC__V1__TRADE_RULE__TRADE_RULE_UNSPECIFIED ||
             !enum_ok(&parksync__v1__trade_rule__descriptor, r->trade_rule)))
            FAIL("replicate.trade_rule: " WHY_ENUM);
        if ((r->has_trade_threshold_pct && !isfinite(r->trade_threshold_pct)) ||
            (r->has_trade_cif_fob_factor && !isfinite(r->trade_cif_fob_factor)))
            FAIL("replicate.trade_threshold_pct, trade_cif_fob_factor: must be finite numbers");
        return 0;
    }
    default:
        /* a newer client's request: its body is kept as an unknown field */
        FAIL(q->base.n_unknown_fields > 0 ? "body: unsupported request: a body this daemon "
                                            "does not know"
                                          : "body: missing");
    }
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

int wire_query_reply_validate(const Parksync__V1__QueryReply *q, const char **why)
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
        if (q->chunk->n_producers > WIRE_MAX_POSITIONS)
            FAIL("chunk.producers: too many");
        for (size_t i = 0; i < q->chunk->n_producers; i++)
            if (!wire_id_valid(q->chunk->producers[i]->producer_id) ||
                !q->chunk->producers[i]->has_last_sequence)
                FAIL("chunk.producers");
        return 0;
    default:
        FAIL("body: none");
    }
}

int wire_publication_validate(const Parksync__V1__Publication *p, const char **why)
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
