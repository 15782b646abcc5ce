/*
 * replica.c - merging what a peer site sent (store_apply_replica) and
 * where this site stands with each peer (store_peer_get, store_peer_set).
 *
 * A replicated record is its merge state: a body and the stamps of its
 * slots. Every stamp is the stamp of one update, and the slots holding
 * it hold that update's values, so the record is taken apart into those
 * updates again (one per distinct stamp, a delete for the tombstone and
 * for a withdrawn trade figure) and each is merged by apply_merge, the
 * code every local update goes through. The merge is commutative,
 * associative and idempotent, so sites converge whatever order, grouping
 * or repetition the exchanges take, and a state that comes back to where
 * it was made changes nothing. Each synthetic update is validated as an
 * update from the ingest socket is, and must speak for a country the
 * peer is trusted with.
 */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static bool trusted(const store_trust_t *t, const char *country)
{
    if (t->all)
        return true;
    for (size_t i = 0; country && i < t->n; i++)
        if (strcmp(t->countries[i], country) == 0)
            return true;
    return false;
}

/* A stamp from the wire: false when it lacks a part or names no valid
 * producer. */
static bool stamp_from_wire(stamp_t *st, const Parksync__V1__FieldProvenance *fp)
{
    memset(st, 0, sizeof(*st));
    if (!fp->producer_id || !wire_id_valid(fp->producer_id) || !fp->has_sequence ||
        fp->sequence == 0 || !fp->has_event_time_us)
        return false;
    st->set = true;
    st->cleared = fp->has_cleared && fp->cleared;
    st->vintage = fp->has_vintage ? (uint8_t)fp->vintage : 0;
    st->time_us = fp->event_time_us;
    st->sequence = fp->sequence;
    snprintf(st->producer, sizeof(st->producer), "%s", fp->producer_id);
    return true;
}

/* The envelope of the update that made stamp st. */
static void update_of_stamp(Parksync__V1__Update *u, const stamp_t *st)
{
    parksync__v1__update__init(u);
    u->has_version = 1;
    u->version = WIRE_VERSION;
    u->producer_id = (char *)st->producer;
    u->has_sequence = u->has_event_time_us = 1;
    u->sequence = st->sequence;
    u->event_time_us = st->time_us;
    u->has_vintage = st->vintage != 0;
    u->vintage = (Parksync__V1__Vintage)st->vintage;
}

/* A write refused: a conflict row, counted, the first reason kept. */
static int refuse(store_t *s, const Parksync__V1__Update *u, kind_t kind, const rec_key_t *key,
                  const char *reason, uint32_t *count, store_replica_result_t *res)
{
    (*count)++;
    if (!res->why[0])
        snprintf(res->why, sizeof(res->why), "%s", reason);
    return conflict_put(s, u->producer_id, u->sequence, kind, key, reason, u, false);
}

/* One synthetic update: validated, trusted, merged. */
static int replica_write(store_t *s, const store_trust_t *t, const Parksync__V1__Update *u,
                         store_replica_result_t *res)
{
    kind_t kind = PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED;
    bool is_delete, exporter_side = false;
    const char *why = NULL;
    char reason[200];
    rec_key_t key;
    merge_t m = {0};

    if (wire_update_validate(u, &why) < 0) {
        snprintf(reason, sizeof(reason), "invalid: from peer %s: %s", t->peer, why);
        return refuse(s, u, kind, NULL, reason, &res->invalid, res);
    }
    const void *body = update_target(u, &kind, &is_delete);
    if (!body || !key_of(&key, kind, body, &exporter_side)) {
        snprintf(reason, sizeof(reason), "invalid: from peer %s: names no record", t->peer);
        return refuse(s, u, kind, NULL, reason, &res->invalid, res);
    }
    if (!trusted(t, key.owner)) {
        snprintf(reason, sizeof(reason), "not authoritative: peer %s may not bring %s %s", t->peer,
                 wire_kind_name(kind), key.owner);
        return refuse(s, u, kind, &key, reason, &res->refused, res);
    }
    /* the clock rule of local updates: a write accepted where it was made
     * is accepted here later, clocks agreeing within the skew */
    skew_refusal(s, u, reason, sizeof(reason));
    if (reason[0])
        return refuse(s, u, kind, &key, reason, &res->refused, res);
    merge_update_t up = {
        .key = &key, .body = body, .is_delete = is_delete, .exporter_side = exporter_side};
    stamp_of_update(&up.stamp, u);
    res->writes++;
    return apply_merge(s, &up, &m); /* what loses here lost where it was made too */
}

/* A body of the record's kind holding its key fields, and the fields of
 * the slots `take` marks. */
static void body_part(ProtobufCMessage *dst, const ProtobufCMessage *src, kind_t kind,
                      const bool *take, sub_storage_t *sub)
{
    const ProtobufCMessageDescriptor *d = src->descriptor;
    protobuf_c_message_init(d, dst);
    for (unsigned i = 0; i < d->n_fields && i + 1 < STORE_MAX_SLOTS; i++)
        if (merge_is_key(kind, d->fields[i].id) || (take && take[i + 1]))
            field_copy_known(dst, src, &d->fields[i], &sub[i]);
}

/* Parks, residents and country reports: the tombstone's delete, then one
 * upsert per distinct stamp with the fields it holds. */
static int replica_generic(store_t *s, const store_trust_t *t, kind_t kind,
                           const ProtobufCMessage *body, const stamps_t *sp, size_t nslots,
                           store_replica_result_t *res)
{
    Parksync__V1__Update u;
    body_storage_t part;
    sub_storage_t sub[STORE_MAX_SLOTS];
    bool done[STORE_MAX_SLOTS] = {false};
    int rc;

    if (sp->tomb.set) {
        Parksync__V1__Delete d;
        parksync__v1__delete__init(&d);
        body_part(&part.park.base, body, kind, NULL, sub);
        switch (kind) {
        case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK:
            d.target_case = PARKSYNC__V1__DELETE__TARGET_PARK;
            d.park = &part.park;
            break;
        case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT:
            d.target_case = PARKSYNC__V1__DELETE__TARGET_RESIDENT;
            d.resident = &part.resident;
            break;
        default:
            d.target_case = PARKSYNC__V1__DELETE__TARGET_COUNTRY;
            d.country = &part.country;
            break;
        }
        update_of_stamp(&u, &sp->tomb);
        u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
        u.delete_ = &d;
        if ((rc = replica_write(s, t, &u, res)) < 0)
            return rc;
    }
    for (size_t i = 0; i < nslots; i++) {
        bool take[STORE_MAX_SLOTS] = {false};
        if (!sp->slot[i].set || done[i])
            continue;
        for (size_t j = i; j < nslots; j++)
            if (sp->slot[j].set && !done[j] && stamp_cmp(&sp->slot[j], &sp->slot[i]) == 0)
                done[j] = take[j] = true;
        body_part(&part.park.base, body, kind, take, sub);
        update_of_stamp(&u, &sp->slot[i]);
        switch (kind) {
        case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK:
            u.body_case = PARKSYNC__V1__UPDATE__BODY_PARK;
            u.park = &part.park;
            break;
        case PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT:
            u.body_case = PARKSYNC__V1__UPDATE__BODY_RESIDENT;
            u.resident = &part.resident;
            break;
        default:
            u.body_case = PARKSYNC__V1__UPDATE__BODY_COUNTRY;
            u.country = &part.country;
            break;
        }
        if ((rc = replica_write(s, t, &u, res)) < 0)
            return rc;
    }
    return 0;
}

/* A flow's report as one side made it: the exporter's exports or the
 * importer's imports, with the figure of its cell when has_value. */
static void side_report(Parksync__V1__TradeReport *r, const Parksync__V1__TradeFlow *f,
                        bool exporter, bool has_value)
{
    parksync__v1__trade_report__init(r);
    r->reporter = exporter ? f->exporter : f->importer;
    r->partner = exporter ? f->importer : f->exporter;
    r->has_direction = 1;
    r->direction = exporter ? PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS
                            : PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS;
    r->period = f->period;
    r->has_value_usd_cents = has_value;
    r->value_usd_cents = exporter ? f->exporter_reported_usd_cents : f->importer_reported_usd_cents;
}

/* Trade flows: each cell's report (or its withdrawal), and the key's
 * stamp when no cell holds it. Then the update that stamped the key lost
 * its own side's cell to a newer write there (every report carries a
 * figure), so it is sent again as a report of that side, whose figure
 * loses to the cell's newer stamp wherever it is merged. */
static int replica_trade(store_t *s, const store_trust_t *t, const Parksync__V1__TradeFlow *f,
                         const stamps_t *sp, store_replica_result_t *res)
{
    Parksync__V1__Update u;
    Parksync__V1__TradeReport r;
    Parksync__V1__Delete d;
    int rc;

    if (!f->exporter || !f->importer)
        return 0; /* replica_write of anything would say "names no record" */
    for (size_t cell = 1; cell <= 2; cell++) {
        const stamp_t *st = &sp->slot[cell];
        bool exporter = cell == 1;
        if (!st->set)
            continue;
        side_report(&r, f, exporter,
                    !st->cleared && (exporter ? f->has_exporter_reported_usd_cents
                                              : f->has_importer_reported_usd_cents));
        update_of_stamp(&u, st);
        if (st->cleared) {
            parksync__v1__delete__init(&d);
            d.target_case = PARKSYNC__V1__DELETE__TARGET_TRADE;
            d.trade = &r;
            u.body_case = PARKSYNC__V1__UPDATE__BODY_DELETE;
            u.delete_ = &d;
        } else {
            u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
            u.trade = &r;
        }
        if ((rc = replica_write(s, t, &u, res)) < 0)
            return rc;
    }
    const stamp_t *key = &sp->slot[STORE_KEY_SLOT];
    if (!key->set)
        return 0;
    for (size_t cell = 1; cell <= 2; cell++)
        if (!sp->slot[cell].cleared && stamp_cmp(key, &sp->slot[cell]) == 0)
            return 0; /* that cell's report stamped the key */
    size_t side = stamp_cmp(&sp->slot[1], key) > 0 ? 1 : 2;
    if (stamp_cmp(&sp->slot[side], key) <= 0)
        return 0; /* no write could have stamped the key: a state no merge makes */
    side_report(&r, f, side == 1, true);
    update_of_stamp(&u, key);
    u.body_case = PARKSYNC__V1__UPDATE__BODY_TRADE;
    u.trade = &r;
    return replica_write(s, t, &u, res);
}

int store_apply_replica(store_t *s, const store_trust_t *t, const Parksync__V1__Record *r,
                        store_replica_result_t *res)
{
    uint32_t ids[STORE_MAX_SLOTS];
    bool seen[STORE_MAX_SLOTS] = {false};
    stamps_t sp;

    memset(res, 0, sizeof(*res));
    if (!s->in_batch || !t || !r)
        return -EINVAL;
    kind_t kind = wire_record_kind(r);
    size_t nslots = merge_slots(kind, ids);
    const ProtobufCMessage *body = record_body(r);
    const char *bad = NULL;
    memset(&sp, 0, sizeof(sp));
    if (nslots == 0 || !body)
        bad = "a record of no kind that has stamps";
    for (size_t k = 0; !bad && k < r->n_stamps; k++) {
        const Parksync__V1__FieldProvenance *fp = r->stamps[k];
        size_t i = 0;
        while (i < nslots && (!fp->has_field_id || ids[i] != fp->field_id))
            i++;
        if (i == nslots || seen[i])
            bad = "a stamp of no slot, or a slot stamped twice";
        else if (!stamp_from_wire(&sp.slot[i], fp))
            bad = "a stamp without producer, sequence or event time";
        else
            seen[i] = true;
    }
    if (!bad && r->tombstone && !stamp_from_wire(&sp.tomb, r->tombstone))
        bad = "a tombstone without producer, sequence or event time";
    if (bad) {
        res->invalid++;
        snprintf(res->why, sizeof(res->why), "invalid: from peer %s: %s", t->peer, bad);
        return 0;
    }
    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
        return replica_trade(s, t, r->trade, &sp, res);
    return replica_generic(s, t, kind, body, &sp, nslots, res);
}

int store_peer_get(store_t *s, const char *name, uint8_t epoch[WIRE_EPOCH_BYTES], bool *has,
                   uint64_t *revision)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT epoch, revision FROM peer WHERE name = ?1", -1, &st,
                                NULL);
    *has = false;
    *revision = 0;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == WIRE_EPOCH_BYTES) {
        memcpy(epoch, sqlite3_column_blob(st, 0), WIRE_EPOCH_BYTES);
        *revision = (uint64_t)sqlite3_column_int64(st, 1);
        *has = true;
    }
    int ret = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(s, rc);
    sqlite3_finalize(st);
    return ret;
}

int store_peer_set(store_t *s, const char *name, const uint8_t epoch[WIRE_EPOCH_BYTES],
                   uint64_t revision)
{
    sqlite3_stmt *st = NULL;
    if (!s->in_batch)
        return -EINVAL;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO peer(name, epoch, revision) VALUES (?1, ?2, ?3)"
                                " ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch,"
                                " revision = excluded.revision",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(s, rc);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, epoch, WIRE_EPOCH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)revision);
    rc = step_done(s, st);
    sqlite3_finalize(st);
    return rc;
}
