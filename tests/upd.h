/*
 * upd.h - building updates for the store's tests (test_store,
 * test_replica): an Update with the storage of its body, and the random
 * updates of the property tests, on a key space small enough that writes
 * overlap; and snapshot chunks of parks for the client's.
 */
#ifndef PARKSYNC_TEST_UPD_H
#define PARKSYNC_TEST_UPD_H

#include <stdbool.h>
#include <stdint.h>

#include "parksync.pb-c.h"
#include "wire.h"

#define FINAL       PARKSYNC__V1__VINTAGE__VINTAGE_FINAL                   /* shorthand */
#define PROVISIONAL PARKSYNC__V1__VINTAGE__VINTAGE_PROVISIONAL             /* shorthand */
#define K_PARK      PARKSYNC__V1__RECORD_KIND__RECORD_KIND_PARK            /* shorthand */
#define K_TRADE     PARKSYNC__V1__RECORD_KIND__RECORD_KIND_TRADE           /* shorthand */
#define K_SUMMARY   PARKSYNC__V1__RECORD_KIND__RECORD_KIND_SUMMARY         /* shorthand */
#define K_ALL       PARKSYNC__V1__RECORD_KIND__RECORD_KIND_UNSPECIFIED     /* shorthand */
#define EXPORTS     PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_EXPORTS /* shorthand */
#define IMPORTS     PARKSYNC__V1__TRADE_DIRECTION__TRADE_DIRECTION_IMPORTS /* shorthand */

#define UPD_UNKNOWN 8 /* messages of an update that may carry an unknown field */

typedef struct upd {
    Parksync__V1__Update u;                        /* the update */
    Parksync__V1__Park park;                       /* park body or delete target */
    Parksync__V1__Resident resident;               /* resident body or delete target */
    Parksync__V1__TradeReport trade;               /* trade body or delete target */
    Parksync__V1__CountryReport country;           /* country body or delete target */
    Parksync__V1__Delete del;                      /* delete body */
    Parksync__V1__Period period;                   /* period of trade or country */
    Parksync__V1__SpecializationList specs;        /* park specializations */
    Parksync__V1__Specialization spec_values[2];   /* their values */
    char producer[WIRE_MAX_ID + 1];                /* producer id storage */
    char name[32];                                 /* name storage */
    ProtobufCMessageUnknownField unk[UPD_UNKNOWN]; /* unknown fields (upd_unknowns) */
    uint8_t unk_data[UPD_UNKNOWN][8];              /* their bytes */
    ProtobufCMessage *unk_in[UPD_UNKNOWN];         /* the message each one is in */
    size_t n_unk;                                  /* entries used */
} upd_t;

/* An update of producer, sequence, event time t and vintage v (0: none),
 * with no body yet. */
void upd_init(upd_t *x, const char *producer, uint64_t seq, int64_t t, Parksync__V1__Vintage v);
/* Sets the period the trade or country body points at. */
void set_period(upd_t *x, uint32_t year, uint32_t first, uint32_t last);
/* Bodies: each sets the update's body to the record named and returns it
 * for the fields a test sets. */
Parksync__V1__Park *upd_park(upd_t *x, const char *country, const char *id);
Parksync__V1__Resident *upd_resident(upd_t *x, const char *country, const char *park,
                                     const char *id);
Parksync__V1__TradeReport *upd_trade(upd_t *x, const char *reporter, const char *partner,
                                     Parksync__V1__TradeDirection dir_, uint32_t year,
                                     uint32_t first, uint32_t last);
Parksync__V1__CountryReport *upd_country(upd_t *x, const char *country, uint32_t year,
                                         uint32_t first, uint32_t last);
/* Turns a prepared body into a delete of that body's record (keys only). */
void upd_make_delete(upd_t *x);
void park_name(upd_t *x, const char *name);
/* Gives message m one unknown field (bytes from r), as a newer producer's
 * update would carry; upd_unknowns turns them all on or off. */
void upd_unknown(upd_t *x, ProtobufCMessage *m, uint64_t r);
void upd_unknowns(upd_t *x, bool on);

/* The property tests' random updates: countries AZ and TJ, ids P1..P3,
 * four names, any kind, one in five a delete, unknown fields here and
 * there (prop_unknowns). */
extern const char *const prop_countries[2];
extern const char *const prop_ids[3];
extern const char *const prop_names[4];
void prop_unknowns(upd_t *x, uint64_t *st);
void prop_update(upd_t *x, uint64_t *st, const char *producer, uint64_t seq);
/* The first column of the first row of sql on the database at path, read
 * on a connection of its own; -1 when there is no row. */
int64_t sql_int_at(const char *path, const char *sql);

/* Adds parks AZ-P<first>.. (n of them, revision 100 + the number) of
 * country, with a long name, to chunk c, as a daemon's snapshot would
 * (test_wire, test_credit). A country that is not two capitals makes a
 * chunk that is refused. */
void upd_chunk_parks(wire_chunk_t *c, int first, int n, const char *country);

#endif /* PARKSYNC_TEST_UPD_H */
