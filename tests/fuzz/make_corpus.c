/*
 * make_corpus.c - writes the fuzz targets' seed corpus: a few small, valid
 * encodings of every message a target decodes, one file each, under
 * DIR/<target>/<name>. The committed tests/fuzz/corpus/ is its output plus
 * the example JSON lines; rerun it after a schema change:
 *
 *     build-fuzz/tests/fuzz/make_corpus tests/fuzz/corpus
 *
 * Messages newer than the generated header of the day (the control
 * socket's conflicts listing) are written as raw fields with wire_buf, so
 * this file builds against either side of that schema change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "wire.h"

static const char *out_dir; /* argv[1] */
static int failures;        /* files that could not be written */

static void write_bytes(const char *target, const char *name, const void *buf, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    if (mkdir(path, 0755) < 0 && errno != EEXIST) {
        perror(path);
        failures++;
        return;
    }
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    if ((f = fopen(path, "wb")) == NULL || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        failures++;
    }
}

static void write_msg(const char *target, const char *name, const ProtobufCMessage *m)
{
    size_t len;
    uint8_t *buf = wire_pack(m, &len);

    if (buf == NULL) {
        failures++;
        return;
    }
    write_bytes(target, name, buf, len);
    free(buf);
}

/* ---------------------------------------------------------------- values */

static Parksync__V1__Period period = PARKSYNC__V1__PERIOD__INIT;
static Parksync__V1__Specialization spec_values[] = {
    PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_SHIPBUILDING,
    PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_MACHINERY,
};
static Parksync__V1__SpecializationList specs = PARKSYNC__V1__SPECIALIZATION_LIST__INIT;
static Parksync__V1__Park park = PARKSYNC__V1__PARK__INIT;
static Parksync__V1__Park park_key = PARKSYNC__V1__PARK__INIT;
static Parksync__V1__Resident resident = PARKSYNC__V1__RESIDENT__INIT;
static Parksync__V1__TradeReport trade = PARKSYNC__V1__TRADE_REPORT__INIT;
static Parksync__V1__CountryReport country = PARKSYNC__V1__COUNTRY_REPORT__INIT;

static void values_init(void)
{
    period.has_year = period.has_first_month = period.has_last_month = 1;
    period.year = 2020;
    period.first_month = 1;
    period.last_month = 10;

    specs.n_values = 2;
    specs.values = spec_values;

    park.park_id = "AZ-GARADAGH";
    park.country = "AZ";
    park.name = "Garadagh Industrial Park";
    park.region = "Bakı, Qaradağ";
    park.specializations = &specs;
    park.has_status = 1;
    park.status = PARKSYNC__V1__PARK_STATUS__PARK_STATUS_OPERATING;
    park.has_area_ha = 1;
    park.area_ha = 100.0;
    park.has_reported_residents = 1;
    park.reported_residents = 6;
    park.has_reported_investment_usd_cents = 1;
    park.reported_investment_usd_cents = 42000000000;

    park_key.park_id = park.park_id;
    park_key.country = park.country;

    resident.park_id = "TJ-SUGHD";
    resident.resident_id = "R-0001";
    resident.country = "TJ";
    resident.company_name = "Example Textiles";
    resident.has_sector = 1;
    resident.sector = PARKSYNC__V1__SPECIALIZATION__SPECIALIZATION_LIGHT_INDUSTRY;
    resident.has_investment_usd_cents = 1;
    resident.investment_usd_cents = 2500000000;
    resident.has_jobs = 1;
    resident.jobs = 120;
    resident.has_status = 1;
    resident.status = PARKSYNC__V1__RESIDENT_STATUS__RESIDENT_STATUS_ACTIVE;
    resident.registered_on = "2020-02-29";
    resident.has_illustrative = 1;
    resident.illustrative = 1;

    trade.reporter = "TJ";
    trade.partner = "AZ";
    trade.has_direction = 1;
    trade.direction = PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS;
    trade.period = &period;
    trade.has_value_usd_cents = 1;
    trade.value_usd_cents = 172000000;

    country.country = "AZ";
    country.period = &period;
    country.has_parks_non_oil_production_share_bp = 1;
    country.parks_non_oil_production_share_bp = 1060;
    country.has_parks_export_share_bp = 1;
    country.parks_export_share_bp = 2030;
}

/* ---------------------------------------------------------------- ingest */

static void updates(void)
{
    Parksync__V1__Update u = PARKSYNC__V1__UPDATE__INIT;
    Parksync__V1__Delete d = PARKSYNC__V1__DELETE__INIT;
    Parksync__V1__TradeReport trade_key = trade;
    Parksync__V1__CountryReport country_key = PARKSYNC__V1__COUNTRY_REPORT__INIT;
    Parksync__V1__Resident resident_key = PARKSYNC__V1__RESIDENT__INIT;
    Parksync__V1__Park bad = park;

    u.has_version = u.has_sequence = u.has_event_time_us = u.has_vintage = 1;
    u.version = WIRE_VERSION;
    u.producer_id = "AZ-MOE";
    u.sequence = 7;
    u.event_time_us = 1608714000000000;
    u.vintage = PARKSYNC__V1__VINTAGE__VINTAGE_PROVISIONAL;

    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &park;
    write_msg("fuzz_update", "park", &u.base);
    u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    u.resident = &resident;
    write_msg("fuzz_update", "resident", &u.base);
    u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
    u.trade = &trade;
    write_msg("fuzz_update", "trade", &u.base);
    u.body_case = PARKSYNC__V1__UPDATE__BODY_COUNTRY;
    u.country = &country;
    write_msg("fuzz_update", "country", &u.base);

    u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    u.delete_ = &d;
    u.has_vintage = 0;
    d.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
    d.park = &park_key;
    write_msg("fuzz_update", "delete-park", &u.base);
    resident_key.park_id = resident.park_id;
    resident_key.resident_id = resident.resident_id;
    resident_key.country = resident.country;
    d.target_case = PARKSYNC__V1__DELETE__TARGET_RESIDENT;
    d.resident = &resident_key;
    write_msg("fuzz_update", "delete-resident", &u.base);
    trade_key.has_value_usd_cents = 0;
    d.target_case = PARKSYNC__V1__DELETE__TARGET_TRADE;
    d.trade = &trade_key;
    write_msg("fuzz_update", "delete-trade", &u.base);
    country_key.country = country.country;
    country_key.period = &period;
    d.target_case = PARKSYNC__V1__DELETE__TARGET_COUNTRY;
    d.country = &country_key;
    write_msg("fuzz_update", "delete-country", &u.base);

    /* Sound envelope, invalid body: the -EINVAL-with-message path. */
    bad.country = "az";
    u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
    u.park = &bad;
    write_msg("fuzz_update", "invalid-body", &u.base);

    /* An UpdateBatch of a resident and a deleted park. */
    Parksync__V1__Update u2 = u, *both[2] = {&u, &u2};
    Parksync__V1__UpdateBatch batch = PARKSYNC__V1__UPDATE_BATCH__INIT;
    u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
    u.resident = &resident;
    u2.sequence = 8;
    u2.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
    u2.delete_ = &d;
    d.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
    d.park = &park_key;
    batch.n_updates = 2;
    batch.updates = both;
    write_msg("fuzz_update", "batch", &batch.base);
}

/* ---------------------------------------------------------------- records */

/* Encoded records the reply and publication seeds carry; free each. */
static uint8_t *record_park(size_t *len)
{
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    Parksync__V1__FieldProvenance prov = PARKSYNC__V1__FIELD_PROVENANCE__INIT;
    Parksync__V1__FieldProvenance *provs[] = {&prov};

    r.has_revision = 1;
    r.revision = 42;
    r.body_case = PARKSYNC__V1__RECORD__BODY_PARK;
    r.park = &park;
    prov.field = "name";
    prov.producer_id = "AZ-MOE";
    prov.has_sequence = prov.has_event_time_us = prov.has_vintage = 1;
    prov.sequence = 7;
    prov.event_time_us = 1608714000000000;
    prov.vintage = PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    r.n_provenance = 1;
    r.provenance = provs;
    return wire_pack(&r.base, len);
}

static uint8_t *record_trade(size_t *len)
{
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    Parksync__V1__TradeFlow t = PARKSYNC__V1__TRADE_FLOW__INIT;

    t.exporter = "AZ";
    t.importer = "TJ";
    t.period = &period;
    t.has_exporter_reported_usd_cents = t.has_importer_reported_usd_cents = 1;
    t.exporter_reported_usd_cents = 172000000;
    t.importer_reported_usd_cents = 181000000;
    t.has_value_usd_cents = t.has_rule = t.has_discrepancy_usd_cents = 1;
    t.value_usd_cents = 181000000;
    t.rule = PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST;
    t.discrepancy_usd_cents = 9000000;
    t.has_discrepancy_pct = t.has_flagged = t.has_vintage = 1;
    t.discrepancy_pct = 4.97;
    t.flagged = 0;
    t.vintage = PARKSYNC__V1__VINTAGE__VINTAGE_REVISED;
    r.has_revision = 1;
    r.revision = 43;
    r.body_case = PARKSYNC__V1__RECORD__BODY_TRADE;
    r.trade = &t;
    return wire_pack(&r.base, len);
}

static uint8_t *record_summary(size_t *len)
{
    Parksync__V1__Record r = PARKSYNC__V1__RECORD__INIT;
    Parksync__V1__CountrySummary s = PARKSYNC__V1__COUNTRY_SUMMARY__INIT;
    Parksync__V1__PartnerTurnover t = PARKSYNC__V1__PARTNER_TURNOVER__INIT;
    Parksync__V1__ParkCheck c = PARKSYNC__V1__PARK_CHECK__INIT;
    Parksync__V1__PartnerTurnover *ts[] = {&t};
    Parksync__V1__CountryReport *is[] = {&country};
    Parksync__V1__ParkCheck *cs[] = {&c};

    s.country = "AZ";
    s.has_parks = s.has_reported_residents = s.has_known_residents = 1;
    s.parks = 5;
    s.reported_residents = 50;
    s.known_residents = 4;
    t.partner = "TJ";
    t.period = &period;
    t.has_exports_usd_cents = t.has_turnover_usd_cents = 1;
    t.exports_usd_cents = 181000000;
    t.turnover_usd_cents = 181000000;
    c.park_id = "AZ-SUMGAIT-CHEM";
    c.has_reported_residents = c.has_known_residents = 1;
    c.reported_residents = 22;
    c.known_residents = 2;
    s.n_turnover = 1;
    s.turnover = ts;
    s.n_indicators = 1;
    s.indicators = is;
    s.n_mismatches = 1;
    s.mismatches = cs;
    r.has_revision = r.has_deleted = 1;
    r.revision = 44;
    r.deleted = 0;
    r.body_case = PARKSYNC__V1__RECORD__BODY_SUMMARY;
    r.summary = &s;
    return wire_pack(&r.base, len);
}

/* ---------------------------------------------------------------- query */

static void query_requests(void)
{
    Parksync__V1__QueryRequest q = PARKSYNC__V1__QUERY_REQUEST__INIT;
    Parksync__V1__Ping ping = PARKSYNC__V1__PING__INIT;
    Parksync__V1__SnapshotRequest snap = PARKSYNC__V1__SNAPSHOT_REQUEST__INIT;
    Parksync__V1__Filter filter = PARKSYNC__V1__FILTER__INIT;
    Parksync__V1__Credit credit = PARKSYNC__V1__CREDIT__INIT;
    Parksync__V1__ChangesRequest changes = PARKSYNC__V1__CHANGES_REQUEST__INIT;
    Parksync__V1__ProducerStateRequest ps = PARKSYNC__V1__PRODUCER_STATE_REQUEST__INIT;
    Parksync__V1__Cancel cancel = PARKSYNC__V1__CANCEL__INIT;

    q.has_version = q.has_request_id = 1;
    q.version = WIRE_VERSION;
    q.request_id = 1;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PING;
    q.ping = &ping;
    write_msg("fuzz_query", "req-ping", &q.base);

    filter.has_kind = 1;
    filter.kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE;
    filter.country = "TJ";
    snap.filter = &filter;
    snap.has_credit = snap.has_chunk_records = snap.has_provenance = 1;
    snap.credit = 4;
    snap.chunk_records = 512;
    snap.provenance = 1;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_SNAPSHOT;
    q.snapshot = &snap;
    write_msg("fuzz_query", "req-snapshot", &q.base);

    credit.has_chunks = 1;
    credit.chunks = 8;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CREDIT;
    q.credit = &credit;
    write_msg("fuzz_query", "req-credit", &q.base);

    changes.filter = &filter;
    changes.has_since_revision = changes.has_credit = changes.has_chunk_records = 1;
    changes.since_revision = 40;
    changes.credit = 2;
    changes.chunk_records = 64;
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CHANGES;
    q.changes = &changes;
    write_msg("fuzz_query", "req-changes", &q.base);

    ps.producer_id = "TJ-MINT";
    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_PRODUCER_STATE;
    q.producer_state = &ps;
    write_msg("fuzz_query", "req-producer-state", &q.base);

    q.body_case = PARKSYNC__V1__QUERY_REQUEST__BODY_CANCEL;
    q.cancel = &cancel;
    write_msg("fuzz_query", "req-cancel", &q.base);
}

static void query_replies(void)
{
    static const uint8_t epoch[WIRE_EPOCH_BYTES] = {0x5e, 0xc1, 0xbb, 0x50, 1, 2,  3,  4,
                                                    5,    6,    7,    8,    9, 10, 11, 12};
    Parksync__V1__QueryReply q = PARKSYNC__V1__QUERY_REPLY__INIT;
    Parksync__V1__Pong pong = PARKSYNC__V1__PONG__INIT;
    Parksync__V1__ProducerState ps = PARKSYNC__V1__PRODUCER_STATE__INIT;
    Parksync__V1__Error err = PARKSYNC__V1__ERROR__INIT;
    wire_chunk_t chunk = {0};
    uint8_t *(*const records[])(size_t *) = {record_park, record_trade, record_summary};
    const uint8_t *msg;
    size_t len;

    q.has_version = q.has_request_id = 1;
    q.version = WIRE_VERSION;
    q.request_id = 1;
    pong.has_epoch = pong.has_head_revision = pong.has_time_us = 1;
    pong.epoch.data = (uint8_t *)epoch;
    pong.epoch.len = sizeof epoch;
    pong.head_revision = 44;
    pong.time_us = 1608714000000000;
    q.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_PONG;
    q.pong = &pong;
    write_msg("fuzz_query", "rep-pong", &q.base);

    ps.producer_id = "TJ-MINT";
    ps.has_last_sequence = 1;
    ps.last_sequence = 2;
    q.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_PRODUCER_STATE;
    q.producer_state = &ps;
    write_msg("fuzz_query", "rep-producer-state", &q.base);

    err.has_code = 1;
    err.code = PARKSYNC__V1__ERROR_CODE__ERROR_CODE_TOO_OLD;
    err.message = "revision 3 is no longer in the change log";
    q.body_case = PARKSYNC__V1__QUERY_REPLY__BODY_ERROR;
    q.error = &err;
    write_msg("fuzz_query", "rep-error", &q.base);

    /* A chunk as the daemon builds it: stored records placed raw. */
    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
        uint8_t *rec = records[i](&len);

        if (rec == NULL || wire_chunk_add(&chunk, rec, len) < 0)
            failures++;
        free(rec);
    }
    if (wire_chunk_finish(&chunk, 1, true, 44, epoch, &msg, &len) < 0)
        failures++;
    else
        write_bytes("fuzz_query", "rep-chunk", msg, len);
    wire_chunk_free(&chunk);
}

/* ---------------------------------------------------------------- publish */

static void publications(void)
{
    static const uint8_t epoch[WIRE_EPOCH_BYTES] = {0x5e, 0xc1, 0xbb, 0x50};
    Parksync__V1__Publication p = PARKSYNC__V1__PUBLICATION__INIT;
    Parksync__V1__Ack ack = PARKSYNC__V1__ACK__INIT;
    Parksync__V1__Heartbeat hb = PARKSYNC__V1__HEARTBEAT__INIT;
    uint8_t *(*const records[])(size_t *) = {record_park, record_trade, record_summary};
    static const char *const names[] = {"record-park", "record-trade", "record-summary"};
    wire_buf_t b = {0};
    size_t len;

    for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
        uint8_t *rec = records[i](&len);

        if (rec == NULL || wire_publication_record(&b, i + 1, rec, len) < 0)
            failures++;
        else
            write_bytes("fuzz_publication", names[i], b.data, b.len);
        free(rec);
    }
    wire_buf_free(&b);

    p.has_version = p.has_stream_sequence = 1;
    p.version = WIRE_VERSION;
    p.stream_sequence = 9;
    ack.producer_id = "AZ-MOE";
    ack.has_last_sequence = 1;
    ack.last_sequence = 12;
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_ACK;
    p.ack = &ack;
    write_msg("fuzz_publication", "ack", &p.base);

    hb.has_epoch = hb.has_head_revision = hb.has_time_us = 1;
    hb.epoch.data = (uint8_t *)epoch;
    hb.epoch.len = sizeof epoch;
    hb.head_revision = 44;
    hb.time_us = 1608714000000000;
    p.body_case = PARKSYNC__V1__PUBLICATION__BODY_HEARTBEAT;
    p.heartbeat = &hb;
    write_msg("fuzz_publication", "heartbeat", &p.base);
}

/* ---------------------------------------------------------------- control */

/* Field numbers of the conflicts listing (ControlRequest.conflicts = 11,
 * ControlReply.conflicts = 12), written raw; see the header comment. */
enum {
    F_CTL_VERSION = 1,
    F_CTL_REQUEST_ID = 2,
    F_CTL_REQ_CONFLICTS = 11,
    F_CTL_REP_CONFLICTS = 12,
};

static void control(void)
{
    Parksync__V1__ControlRequest req = PARKSYNC__V1__CONTROL_REQUEST__INIT;
    Parksync__V1__StatusRequest sreq = PARKSYNC__V1__STATUS_REQUEST__INIT;
    Parksync__V1__ControlReply rep = PARKSYNC__V1__CONTROL_REPLY__INIT;
    Parksync__V1__Status st = PARKSYNC__V1__STATUS__INIT;
    Parksync__V1__Counter c1 = PARKSYNC__V1__COUNTER__INIT, c2 = PARKSYNC__V1__COUNTER__INIT;
    Parksync__V1__Counter *records[] = {&c1}, *counters[] = {&c2};
    Parksync__V1__ProducerStatus prod = PARKSYNC__V1__PRODUCER_STATUS__INIT;
    Parksync__V1__ProducerStatus *prods[] = {&prod};
    Parksync__V1__Error err = PARKSYNC__V1__ERROR__INIT;
    wire_buf_t body = {0}, entry = {0}, msg = {0};
    int rc = 0;

    req.has_version = req.has_request_id = 1;
    req.version = WIRE_VERSION;
    req.request_id = 3;
    req.body_case = PARKSYNC__V1__CONTROL_REQUEST__BODY_STATUS;
    req.status = &sreq;
    write_msg("fuzz_control", "req-status", &req.base);

    rep.has_version = rep.has_request_id = 1;
    rep.version = WIRE_VERSION;
    rep.request_id = 3;
    st.version = "0.1.0";
    st.has_started_us = st.has_head_revision = st.has_epoch = 1;
    st.started_us = 1608714000000000;
    st.head_revision = 44;
    st.epoch.data = (uint8_t *)"0123456789abcdef";
    st.epoch.len = WIRE_EPOCH_BYTES;
    c1.name = "park";
    c1.has_value = 1;
    c1.value = 5;
    c2.name = "rejected.park.country";
    c2.has_value = 1;
    c2.value = 1;
    prod.producer_id = "AZ-MOE";
    prod.has_last_sequence = prod.has_applied = prod.has_last_seen_us = 1;
    prod.last_sequence = 12;
    prod.applied = 11;
    prod.last_seen_us = 1608714000000000;
    st.n_records = 1;
    st.records = records;
    st.n_producers = 1;
    st.producers = prods;
    st.n_counters = 1;
    st.counters = counters;
    rep.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_STATUS;
    rep.status = &st;
    write_msg("fuzz_control", "rep-status", &rep.base);

    err.has_code = 1;
    err.code = PARKSYNC__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST;
    err.message = "unknown request";
    rep.body_case = PARKSYNC__V1__CONTROL_REPLY__BODY_ERROR;
    rep.error = &err;
    write_msg("fuzz_control", "rep-error", &rep.base);

    /* ConflictsRequest{kind: PARK, country: "AZ", since_us, limit: 100, after_id: 7} */
    rc |= wire_buf_put_varint(&body, 1, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK);
    rc |= wire_buf_put_bytes(&body, 2, "AZ", 2);
    rc |= wire_buf_put_varint(&body, 3, 1608714000000000);
    rc |= wire_buf_put_varint(&body, 4, 100);
    rc |= wire_buf_put_varint(&body, 5, 7);
    rc |= wire_buf_put_varint(&msg, F_CTL_VERSION, WIRE_VERSION);
    rc |= wire_buf_put_varint(&msg, F_CTL_REQUEST_ID, 4);
    rc |= wire_buf_put_bytes(&msg, F_CTL_REQ_CONFLICTS, body.data, body.len);
    if (rc == 0)
        write_bytes("fuzz_control", "req-conflicts", msg.data, msg.len);

    /* ConflictList{conflicts: [Conflict{...}], more: true, next_after_id: 8} */
    wire_buf_reset(&body);
    wire_buf_reset(&msg);
    rc |= wire_buf_put_varint(&entry, 1, 8);
    rc |= wire_buf_put_varint(&entry, 2, 1608714000000000);
    rc |= wire_buf_put_bytes(&entry, 3, "TJ-MINT", 7);
    rc |= wire_buf_put_varint(&entry, 4, 2);
    rc |= wire_buf_put_varint(&entry, 5, PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK);
    rc |= wire_buf_put_bytes(&entry, 6, "AZ/AZ-SUMGAIT-CHEM", 18);
    rc |= wire_buf_put_bytes(&entry, 7, "AZ", 2);
    rc |= wire_buf_put_bytes(&entry, 9, "not authoritative", 17);
    rc |= wire_buf_put_varint(&entry, 10, 1608714000000000);
    rc |= wire_buf_put_varint(&entry, 11, 1);
    rc |= wire_buf_put_bytes(&body, 1, entry.data, entry.len);
    rc |= wire_buf_put_varint(&body, 2, 1);
    rc |= wire_buf_put_varint(&body, 3, 8);
    rc |= wire_buf_put_varint(&msg, F_CTL_VERSION, WIRE_VERSION);
    rc |= wire_buf_put_varint(&msg, F_CTL_REQUEST_ID, 4);
    rc |= wire_buf_put_bytes(&msg, F_CTL_REP_CONFLICTS, body.data, body.len);
    if (rc == 0)
        write_bytes("fuzz_control", "rep-conflicts", msg.data, msg.len);
    else
        failures++;
    wire_buf_free(&body);
    wire_buf_free(&entry);
    wire_buf_free(&msg);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
        perror(out_dir);
        return 1;
    }
    values_init();
    updates();
    query_requests();
    query_replies();
    publications();
    control();
    return failures == 0 ? 0 : 1;
}
