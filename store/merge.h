/*
 * merge.h - the reconciliation rules as pure functions (private to
 * store/): from a stored record, its stamps and an update to the new
 * record and stamps. No SQLite, no store: what store_apply and a test
 * both call.
 *
 * A merge has two steps, so that the stored record is unpacked only when
 * needed: merge_stamps puts the update's write into the stamps and says
 * whether the stored record is needed; merge_record builds the record.
 */
#ifndef PARKSYNC_STORE_MERGE_H
#define PARKSYNC_STORE_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "key.h"
#include "stamp.h"

/* The rules of the configuration a merge follows ([trade]). */
typedef struct merge_rules {
    Parksync__V1__TradeRule trade_rule; /* how a flow's value is chosen */
    double trade_threshold_pct;         /* discrepancy above this flags a flow, percent */
    double cif_fob_factor;              /* importer's figure is compared with exporter's * this */
} merge_rules_t;

/* Result of merging one update into one record. */
typedef struct merge {
    bool stale;      /* some write was older than the tombstone */
    bool overridden; /* some write lost to a newer value */
} merge_t;

/* An optional integer column beside the record blob. */
typedef struct extra {
    bool set;  /* false: NULL */
    int64_t v; /* value (money in USD cents, counts) */
} extra_t;

#define STORE_MAX_EXTRAS 3 /* extra columns of a record kind */

/* Storage for a body's sub-messages, copied without unknown fields. */
typedef union sub_storage {
    Parksync__V1__Period period;                      /* a period */
    Parksync__V1__SpecializationList specializations; /* a park's specializations */
} sub_storage_t;

/* Body buffer big enough for any record body the merge builds. */
typedef union body_storage {
    Parksync__V1__Park park;             /* park body */
    Parksync__V1__Resident resident;     /* resident body */
    Parksync__V1__CountryReport country; /* country report body */
    Parksync__V1__TradeFlow flow;        /* trade flow body */
} body_storage_t;

/* One update as the merge sees it. */
typedef struct merge_update {
    const rec_key_t *key; /* the record it names */
    stamp_t stamp;        /* its stamp (stamp_of_update) */
    const void *body;     /* its body, or its delete's target */
    bool is_delete;       /* a delete */
    bool exporter_side;   /* trade: it speaks for the exporter's cell */
} merge_update_t;

/* A merged record, built shallowly: it points into itself, the update
 * and the stored record, so pack it before either is freed. */
typedef struct merge_out {
    Parksync__V1__Record rec;           /* the record, revision unset */
    body_storage_t body;                /* its body */
    sub_storage_t sub[STORE_MAX_SLOTS]; /* the body's sub-messages, known fields only */
    Parksync__V1__Period period;        /* the key's period (trade, country report) */
    extra_t ex[STORE_MAX_EXTRAS];       /* the kind's extra columns */
    const char *why;                    /* on failure: what is wrong */
} merge_out_t;

/* The field ids of a kind's stamp slots, in ids; returns how many (0 for
 * a kind without stamps: summaries). */
size_t merge_slots(kind_t kind, uint32_t *ids);
/* True when field `id` of kind's body is a key field (never stamped). */
bool merge_is_key(kind_t kind, uint32_t id);
/* The name of the field a slot stamps, or NULL (the key slot). */
const char *merge_slot_name(kind_t kind, size_t slot);
/* The first step: the update's write into sp under the order-independent
 * rules; m says what lost. true when merge_record needs the stored record. */
bool merge_stamps(const merge_update_t *up, stamps_t *sp, merge_t *m);
/* The second step: the record up leaves, from the stamps merge_stamps
 * made, the update and the stored record (NULL: none, or not needed).
 * Returns 0, or -EBADMSG / -EPROTO with out->why. */
int merge_record(const merge_rules_t *cfg, const merge_update_t *up, const stamps_t *sp,
                 const Parksync__V1__Record *stored, merge_out_t *out);
/* Shallow copy of field f of src into dst, a sub-message into sub without
 * its unknown fields. false when the sub-message does not fit sub. */
bool field_copy_known(ProtobufCMessage *dst, const ProtobufCMessage *src,
                      const ProtobufCFieldDescriptor *f, sub_storage_t *sub);

#endif /* PARKSYNC_STORE_MERGE_H */
