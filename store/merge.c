/*
 * merge.c - the reconciliation rules (merge.h): per-field last writer
 * wins on the stamps' total order, tombstones, trade flows' two cells and
 * their derived values. Pure: values in, values out.
 *
 * A field's value is the write with the greatest stamp among the writes
 * newer than the record's tombstone, whatever order the writes arrive in;
 * the record is live while some slot (a body field, or the key slot that
 * every upsert stamps) is newer than the tombstone.
 */
#include "merge.h"

#include <errno.h>
#include <string.h>

#include "wide.h"

/* A body kind whose record body is the update body, merged per field. */
typedef struct generic_kind {
    const ProtobufCMessageDescriptor *desc; /* body message type */
    uint32_t keys[STORE_MAX_KEYS];          /* field ids of the key fields */
    size_t nkeys;                           /* key fields */
} generic_kind_t;

static const generic_kind_t generic_kinds[STORE_KINDS] = {
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK] = {&parksync__v1__park__descriptor, {1, 2}, 2},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT] = {&parksync__v1__resident__descriptor,
                                                         {1, 2, 3},
                                                         3},
    [PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY] = {&parksync__v1__country_report__descriptor,
                                                        {1, 2},
                                                        2},
};

static bool is_key(const generic_kind_t *g, uint32_t id)
{
    for (size_t i = 0; i < g->nkeys; i++)
        if (g->keys[i] == id)
            return true;
    return false;
}

static size_t field_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    }
    return 0;
}

/* Pointer-typed singular fields have no has_ flag: NULL means absent. */
static bool field_is_pointer(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
}

static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return *(const size_t *)(const void *)(base + f->quantifier_offset) > 0;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(const void *)(base + f->quantifier_offset) == f->id;
    if (field_is_pointer(f))
        return *(void *const *)(const void *)(base + f->offset) != NULL;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        return *(const protobuf_c_boolean *)(const void *)(base + f->quantifier_offset);
    return true;
}

/* Shallow copy of one field (value and presence) from src to dst: dst
 * then points at src's strings and sub-messages and must not be freed. */
static void field_copy(ProtobufCMessage *dst, const ProtobufCMessage *src,
                       const ProtobufCFieldDescriptor *f)
{
    char *d = (char *)dst;
    const char *sp = (const char *)src;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        memcpy(d + f->quantifier_offset, sp + f->quantifier_offset, sizeof(size_t));
        memcpy(d + f->offset, sp + f->offset, sizeof(void *));
        return;
    }
    memcpy(d + f->offset, sp + f->offset, field_size(f));
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        memcpy(d + f->quantifier_offset, sp + f->quantifier_offset, sizeof(uint32_t));
    else if (!field_is_pointer(f) && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
        memcpy(d + f->quantifier_offset, sp + f->quantifier_offset, sizeof(protobuf_c_boolean));
}

/*
 * field_copy of known fields only: a sub-message is copied into `sub`
 * with its fields (shallowly) and none of its unknown fields, so nothing
 * an update carried beyond the schema reaches a stored record and the
 * record's bytes depend on the known values alone. Body sub-messages are
 * flat (Period, SpecializationList), and bodies have no repeated message
 * fields, so no unknown field hides further down. false when the
 * sub-message does not fit sub_storage_t (a schema change this code does
 * not know yet).
 */
bool field_copy_known(ProtobufCMessage *dst, const ProtobufCMessage *src,
                      const ProtobufCFieldDescriptor *f, sub_storage_t *sub)
{
    field_copy(dst, src, f);
    if (f->type != PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED)
        return true;
    void **slot = (void **)(void *)((char *)dst + f->offset);
    const ProtobufCMessage *m = *slot;
    const ProtobufCMessageDescriptor *md = f->descriptor;
    if (m == NULL)
        return true;
    if (md->sizeof_message > sizeof(*sub))
        return false;
    memcpy(sub, m, md->sizeof_message);
    ((ProtobufCMessage *)(void *)sub)->n_unknown_fields = 0;
    ((ProtobufCMessage *)(void *)sub)->unknown_fields = NULL;
    *slot = sub;
    return true;
}

/*
 * The order-independent rules for one slot: an upsert's write (when
 * present) takes the slot if newer than the tombstone and the slot's
 * stamp. Returns true when it does.
 */
static bool slot_write(stamps_t *sp, size_t slot, const stamp_t *w, merge_t *m)
{
    if (sp->tomb.set && stamp_cmp(w, &sp->tomb) < 0) {
        m->stale = true;
        return false;
    }
    if (stamp_cmp(w, &sp->slot[slot]) <= 0) {
        m->overridden = true;
        return false;
    }
    sp->slot[slot] = *w;
    return true;
}

/* Every upsert stamps the key slot, so that an upsert of key fields alone
 * makes a live record; losing that slot to a newer upsert is no conflict. */
static void key_write(stamps_t *sp, const stamp_t *w, merge_t *m)
{
    merge_t km = {0};
    slot_write(sp, STORE_KEY_SLOT, w, &km);
    m->stale |= km.stale;
}

/* A delete: raises the tombstone and clears every slot older than it. */
static void stamps_delete(stamps_t *sp, size_t nslots, const stamp_t *w)
{
    if (stamp_cmp(w, &sp->tomb) > 0)
        sp->tomb = *w;
    for (size_t i = 0; i < nslots; i++)
        if (sp->slot[i].set && stamp_cmp(&sp->slot[i], &sp->tomb) < 0)
            sp->slot[i] = (stamp_t){0};
}

static bool stamps_live(const stamps_t *sp, size_t nslots)
{
    for (size_t i = 0; i < nslots; i++)
        if (sp->slot[i].set)
            return true;
    return false;
}

/* Field ids of a generic kind's slots: 0 (key), then each field's id. */
static size_t generic_ids(const generic_kind_t *g, uint32_t *ids)
{
    ids[0] = STORE_KEY_SLOT;
    for (unsigned i = 0; i < g->desc->n_fields && i + 1 < STORE_MAX_SLOTS; i++)
        ids[i + 1] = g->desc->fields[i].id;
    return g->desc->n_fields + 1 < STORE_MAX_SLOTS ? g->desc->n_fields + 1 : STORE_MAX_SLOTS;
}

static const uint32_t trade_ids[3] = {STORE_KEY_SLOT, 4, 5}; /* key, exporter, importer cells */

/* The field ids of a kind's stamp slots, in ids; returns how many (0 for
 * a kind without stamps: summaries). */
size_t merge_slots(kind_t kind, uint32_t *ids)
{
    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE) {
        memcpy(ids, trade_ids, sizeof(trade_ids));
        return 3;
    }
    if (kind > 0 && kind < STORE_KINDS && generic_kinds[kind].desc)
        return generic_ids(&generic_kinds[kind], ids);
    return 0;
}

bool merge_is_key(kind_t kind, uint32_t id)
{
    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
        return id >= 1 && id <= 3; /* TradeFlow's exporter, importer, period */
    return kind > 0 && kind < STORE_KINDS && generic_kinds[kind].desc &&
           is_key(&generic_kinds[kind], id);
}

/* The name of the field a slot stamps, or NULL (the key slot). */
const char *merge_slot_name(kind_t kind, size_t slot)
{
    static const char *const trade_names[3] = {NULL, "exporter_reported_usd_cents",
                                               "importer_reported_usd_cents"};
    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
        return slot < 3 ? trade_names[slot] : NULL;
    if (slot == 0 || kind <= 0 || kind >= STORE_KINDS || !generic_kinds[kind].desc ||
        slot > generic_kinds[kind].desc->n_fields)
        return NULL;
    return generic_kinds[kind].desc->fields[slot - 1].name;
}

/*
 * The first step of a merge: the update's write goes into the stamps
 * (sp, the stored record's, updated in place) under the order-independent
 * rules, and m says what lost. Returns true when the second step needs
 * the stored record: some field's value is not this update's.
 */
bool merge_stamps(const merge_update_t *up, stamps_t *sp, merge_t *m)
{
    kind_t kind = up->key->kind;
    const stamp_t *w = &up->stamp;

    if (kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE) {
        const Parksync__V1__TradeReport *t = up->body;
        size_t cell = up->exporter_side ? 1 : 2;
        if (up->is_delete) {
            /* A ministry withdraws its own figure only: the delete is a
             * write of "no value" into its side's cell, compared like any
             * write, so the other ministry's figure stays and the order
             * of arrival does not matter. */
            stamp_t d = *w;
            d.cleared = true;
            slot_write(sp, cell, &d, m);
        } else {
            if (t->has_value_usd_cents)
                slot_write(sp, cell, w, m);
            key_write(sp, w, m);
        }
        return true;
    }
    const generic_kind_t *g = &generic_kinds[kind];
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots = generic_ids(g, ids);
    if (up->is_delete) {
        stamps_delete(sp, nslots, w);
    } else {
        for (unsigned i = 0; i + 1 < nslots; i++) {
            const ProtobufCFieldDescriptor *f = &g->desc->fields[i];
            if (!is_key(g, f->id) && field_present(up->body, f))
                slot_write(sp, i + 1, w, m);
        }
        key_write(sp, w, m);
    }
    /* an update that sets every field never needs the stored record */
    bool live = stamps_live(sp, nslots);
    for (unsigned i = 0; live && i + 1 < nslots; i++)
        if (!is_key(g, g->desc->fields[i].id) && sp->slot[i + 1].set &&
            (up->is_delete || stamp_cmp(&sp->slot[i + 1], w) != 0))
            return true;
    return false;
}

/*
 * The record of a generic kind from its merged stamps: each field the
 * value of the write its slot holds, from this update or the stored
 * record (known fields only: the record keeps no unknown field of any
 * update); keys rebuilt from the key.
 */
static int merge_generic(const merge_update_t *up, const stamps_t *sp,
                         const Parksync__V1__Record *stored, merge_out_t *out)
{
    const rec_key_t *key = up->key;
    const generic_kind_t *g = &generic_kinds[key->kind];
    uint32_t ids[STORE_MAX_SLOTS];
    size_t nslots = generic_ids(g, ids);
    ProtobufCMessage *body = (ProtobufCMessage *)(void *)&out->body;
    const ProtobufCMessage *in = up->body;
    bool known = true;

    protobuf_c_message_init(g->desc, body);
    bool live = stamps_live(sp, nslots);
    const ProtobufCMessage *old = record_body(stored);
    if (old && old->descriptor != g->desc)
        old = NULL;
    for (unsigned i = 0; i + 1 < nslots; i++) {
        const ProtobufCFieldDescriptor *f = &g->desc->fields[i];
        if (is_key(g, f->id))
            known &= field_copy_known(body, in, f, &out->sub[i]);
        else if (!live || !sp->slot[i + 1].set)
            continue;
        else if (!up->is_delete && stamp_cmp(&sp->slot[i + 1], &up->stamp) == 0)
            known &= field_copy_known(body, in, f, &out->sub[i]);
        else if (old)
            known &= field_copy_known(body, old, f, &out->sub[i]);
    }
    if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_COUNTRY) {
        /* the key's period as the key says it, whichever update brought it */
        if (!period_parse(key->period, &out->period)) {
            out->why = "unreadable period key";
            return -EBADMSG;
        }
        ((Parksync__V1__CountryReport *)body)->period = &out->period;
    }
    if (!known) {
        out->why = "a sub-message has no storage";
        return -EPROTO;
    }
    if (!live) {
        out->rec.has_deleted = 1;
        out->rec.deleted = 1;
    }
    record_set_body(&out->rec, key->kind, body);
    if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK) {
        const Parksync__V1__Park *p = &out->body.park;
        out->ex[0] = (extra_t){p->has_reported_residents, p->reported_residents};
        out->ex[1] =
            (extra_t){p->has_reported_investment_usd_cents, p->reported_investment_usd_cents};
    } else if (key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_RESIDENT) {
        const Parksync__V1__Resident *r = &out->body.resident;
        out->ex[0] = (extra_t){r->has_investment_usd_cents, r->investment_usd_cents};
    }
    return 0;
}

/* Mean of two amounts, rounded half away from zero (within int64 for
 * any two int64 amounts). */
static int64_t mean_cents(int64_t a, int64_t b)
{
    wide_t sum = (wide_t)a + b; /* no overflow, whatever the amounts */
    wide_t q = sum / 2;
    if (sum % 2 != 0)
        q += sum > 0 ? 1 : -1;
    return (int64_t)q;
}

/*
 * The derived fields of a flow from its two cells: the chosen value under
 * the configured rule (recorded in `rule`), the vintage of the figures
 * used, and when both figures are present the discrepancy importer -
 * round(exporter * factor) (half away from zero), its percentage of the
 * larger of importer and exporter * factor, and the flag.
 */
static void trade_derive(const merge_rules_t *cfg, Parksync__V1__TradeFlow *f, const stamps_t *sp)
{
    bool he = f->has_exporter_reported_usd_cents, hi = f->has_importer_reported_usd_cents;
    int64_t e = f->exporter_reported_usd_cents, i = f->importer_reported_usd_cents;
    Parksync__V1__TradeRule rule = cfg->trade_rule;
    bool use_e, use_i;

    if (rule != PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST &&
        rule != PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN)
        rule = PARKSYNC__V1__TRADE_RULE__TRADE_RULE_IMPORTER_FIRST;
    if (!he && !hi)
        return;
    switch (rule) {
    case PARKSYNC__V1__TRADE_RULE__TRADE_RULE_EXPORTER_FIRST:
        use_e = he;
        use_i = !he;
        break;
    case PARKSYNC__V1__TRADE_RULE__TRADE_RULE_MEAN:
        use_e = he;
        use_i = hi;
        break;
    default:
        use_i = hi;
        use_e = !hi;
        break;
    }
    f->has_value_usd_cents = 1;
    f->value_usd_cents = use_e && use_i ? mean_cents(e, i) : use_e ? e : i;
    f->has_rule = 1;
    f->rule = rule;
    Parksync__V1__Vintage v = PARKSYNC__V1__VINTAGE__VINTAGE_FINAL;
    if (use_e && vintage_rank(sp->slot[1].vintage) < v)
        v = vintage_rank(sp->slot[1].vintage);
    if (use_i && vintage_rank(sp->slot[2].vintage) < v)
        v = vintage_rank(sp->slot[2].vintage);
    f->has_vintage = 1;
    f->vintage = v;
    if (he && hi) {
        /* long double holds every cent of |e| <= WIRE_MAX_CENTS exactly;
         * amounts beyond the wire's bounds (the store does not check
         * them) are clamped rather than overflow */
        long double adj = (long double)e * (long double)cfg->cif_fob_factor;
        bool clamped = false;
        if (!(adj < 0x1p100L))
            adj = 0x1p100L;
        if (!(adj > -0x1p100L))
            adj = -0x1p100L;
        wide_t rounded = (wide_t)(adj >= 0 ? adj + 0.5L : adj - 0.5L);
        int64_t disc =
            (int64_t)wide_clamp((wide_t)i - rounded, WIDE_INT64_MIN, WIDE_INT64_MAX, &clamped);
        long double larger = (long double)i > adj ? (long double)i : adj;
        long double mag = disc < 0 ? -(long double)disc : (long double)disc;
        f->has_discrepancy_usd_cents = 1;
        f->discrepancy_usd_cents = disc;
        f->has_discrepancy_pct = 1;
        f->discrepancy_pct = larger > 0 ? (double)(mag / larger * 100.0L) : 0.0;
        f->has_flagged = 1;
        f->flagged = f->discrepancy_pct > cfg->trade_threshold_pct;
    }
}

/* The flow from its merged stamps: each cell the figure of the write it
 * holds, from this update or the stored flow; then the derived fields. */
static int merge_trade(const merge_rules_t *cfg, const merge_update_t *up, const stamps_t *sp,
                       const Parksync__V1__Record *stored, merge_out_t *out)
{
    const rec_key_t *key = up->key;
    const Parksync__V1__TradeReport *t = up->body;
    const Parksync__V1__TradeFlow *old = NULL;
    Parksync__V1__TradeFlow *flow = &out->body.flow;
    size_t cell = up->exporter_side ? 1 : 2;

    if (stored && stored->body_case == PARKSYNC__V1__RECORD__BODY_TRADE)
        old = stored->trade;
    bool took =
        !up->is_delete && t->has_value_usd_cents && stamp_cmp(&sp->slot[cell], &up->stamp) == 0;
    bool has_exp = sp->slot[1].set && !sp->slot[1].cleared;
    bool has_imp = sp->slot[2].set && !sp->slot[2].cleared;
    bool live = has_exp || has_imp;
    parksync__v1__trade_flow__init(flow);
    flow->exporter = (char *)key->col[0];
    flow->importer = (char *)key->col[1];
    /* the key's period as the key says it: never the update's Period with
     * whatever unknown fields it carried */
    if (!period_parse(key->period, &out->period)) {
        out->why = "unreadable period key";
        return -EBADMSG;
    }
    flow->period = &out->period;
    if (live) {
        if (has_exp) {
            flow->has_exporter_reported_usd_cents = 1;
            flow->exporter_reported_usd_cents = took && cell == 1 ? t->value_usd_cents
                                                : old             ? old->exporter_reported_usd_cents
                                                                  : 0;
        }
        if (has_imp) {
            flow->has_importer_reported_usd_cents = 1;
            flow->importer_reported_usd_cents = took && cell == 2 ? t->value_usd_cents
                                                : old             ? old->importer_reported_usd_cents
                                                                  : 0;
        }
        trade_derive(cfg, flow, sp);
    } else {
        out->rec.has_deleted = 1;
        out->rec.deleted = 1;
    }
    record_set_body(&out->rec, key->kind, &flow->base);
    out->ex[0] =
        (extra_t){flow->has_exporter_reported_usd_cents, flow->exporter_reported_usd_cents};
    out->ex[1] =
        (extra_t){flow->has_importer_reported_usd_cents, flow->importer_reported_usd_cents};
    out->ex[2] = (extra_t){flow->has_value_usd_cents, flow->value_usd_cents};
    return 0;
}

/*
 * The second step of a merge: the record `up` leaves, from the stamps
 * merge_stamps made, the update and the stored record (NULL: none, or
 * not needed). Returns 0, or -EBADMSG / -EPROTO with out->why.
 */
int merge_record(const merge_rules_t *cfg, const merge_update_t *up, const stamps_t *sp,
                 const Parksync__V1__Record *stored, merge_out_t *out)
{
    parksync__v1__record__init(&out->rec);
    memset(out->ex, 0, sizeof(out->ex));
    out->why = NULL;
    if (up->key->kind == PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE)
        return merge_trade(cfg, up, sp, stored, out);
    return merge_generic(up, sp, stored, out);
}
