#!/usr/bin/python3
"""The clients of tests/federation/netns.py, each a process run inside a
site's network namespace with the Python client (client/python):

    clients.py producer   --id P-A --site ENDPOINTS --outbox F --log F --seed N ...
    clients.py subscriber --site ENDPOINTS --log F --picture F --stop F
    clients.py snapshot   --site ENDPOINTS --out F

producer   writes AZ and TJ parks, residents, trade reports and country
           reports, most of them to keys every producer writes (so merges
           conflict across sites), with event times up to 3 s in the past
           and now and then FINAL or a delete, through a durable outbox.
           Each update is logged (JSON lines: sequence, key, fields, stamp)
           once `send` gave it its sequence, and the acknowledged position
           every half second. When the stop file appears it stops writing,
           flushes until everything is acknowledged (or its deadline) and
           logs the final position.
subscriber one parksync.Subscriber for everything (kind and country all):
           logs every event (record: revision, epoch, key; reset; snapshot
           end) and keeps the picture its events make. When the stop file
           holds {"epoch", "head"} it reads on until it has delivered that
           site's head in that epoch, then writes the picture.
snapshot   a snapshot with provenance, written as JSON: key -> body and the
           stamp of each field.

Exit status 0 when the client did its part, 1 otherwise (the reason on
stderr and in the log).
"""

import argparse
import base64
import json
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "client", "python"))
import parksync  # noqa: E402
from parksync.subscriber import _LIVE  # noqa: E402  (a test may look inside)

COUNTRIES = ("AZ", "TJ")
SHARED_PARKS = 12  # parks per country that every producer writes
RESIDENT_PARKS = 4  # of them, the parks with residents
RESIDENTS = 3  # residents per such park
YEARS = (2019, 2020, 2021)  # trade and country report periods: a year, whole


def endpoints(site):
    """ENDPOINTS is ingest,publish,query."""
    ingest, publish, query = site.split(",")
    return ingest, publish, query


def now_us():
    return int(time.time() * 1_000_000)


def record_key(r):
    """The key of a pb.Record (or of a body of a kind) as a list."""
    kind = r.WhichOneof("body")
    b = getattr(r, kind)
    if kind == "park":
        return ["park", b.country, b.park_id]
    if kind == "resident":
        return ["resident", b.country, b.park_id, b.resident_id]
    if kind == "trade":
        return ["trade", b.exporter, b.importer, b.period.year, b.period.first_month,
                b.period.last_month]
    if kind == "country":
        return ["country", b.country, b.period.year, b.period.first_month, b.period.last_month]
    return ["summary", b.country]


def body_bytes(r):
    """The record's body, encoded deterministically (what two pictures
    compare)."""
    return getattr(r, r.WhichOneof("body")).SerializeToString(deterministic=True)


# ------------------------------------------------------------------ producer

class Workload:
    """What one producer writes: a seeded stream of updates, each with the
    key and fields the log needs to tell what the picture must hold."""

    def __init__(self, pid, seed):
        self.pid = pid
        self.rng = random.Random("%s/%s" % (seed, pid))
        self.unique = 0

    def _stamp(self, u):
        t = now_us() - self.rng.randint(0, 3_000_000)
        u["event_time_us"] = t
        final = self.rng.random() < 0.02
        if final:
            u["vintage"] = "VINTAGE_FINAL"
        elif self.rng.random() < 0.2:
            u["vintage"] = "VINTAGE_REVISED"
        return t, final

    def _fields(self, choices, seq):
        """A non-empty random subset of choices (name -> value maker)."""
        names = [n for n in choices if self.rng.random() < 0.5] or [self.rng.choice(list(choices))]
        return {n: choices[n](seq) for n in names}

    def next(self, seq):
        """(update dict, log entry) of the update that will get sequence seq."""
        rng = self.rng
        cc = rng.choice(COUNTRIES)
        roll = rng.random()
        tag = "%s#%d" % (self.pid, seq)
        if roll < 0.08:
            # a park of this producer's own: written once, never contested
            self.unique += 1
            pid = "%s-U-%s-%d" % (cc, self.pid, self.unique)
            fields = {"name": "unique " + tag, "reported_residents": rng.randint(0, 500)}
            body = dict(park_id=pid, country=cc, **fields)
            u = {"park": body}
            log = {"kind": "park", "key": ["park", cc, pid], "f": fields}
        elif roll < 0.45:
            pid = "%s-P%02d" % (cc, rng.randrange(SHARED_PARKS))
            if rng.random() < 0.05:
                u = {"delete": {"park": {"park_id": pid, "country": cc}}}
                log = {"kind": "park", "key": ["park", cc, pid], "del": True}
            else:
                fields = self._fields({
                    "name": lambda s: "park " + tag,
                    "region": lambda s: rng.choice(("north", "south", "east", "west")) + " " + tag,
                    "reported_residents": lambda s: rng.randint(0, 10000),
                    "reported_investment_usd_cents": lambda s: rng.randint(0, 10**15),
                }, seq)
                u = {"park": dict(park_id=pid, country=cc, **fields)}
                log = {"kind": "park", "key": ["park", cc, pid], "f": fields}
        elif roll < 0.70:
            pid = "%s-P%02d" % (cc, rng.randrange(RESIDENT_PARKS))
            rid = "R%d" % rng.randrange(RESIDENTS)
            key = {"park_id": pid, "resident_id": rid, "country": cc}
            if rng.random() < 0.05:
                u = {"delete": {"resident": key}}
                log = {"kind": "resident", "key": ["resident", cc, pid, rid], "del": True}
            else:
                fields = self._fields({
                    "company_name": lambda s: "company " + tag,
                    "jobs": lambda s: rng.randint(0, 5000),
                    "investment_usd_cents": lambda s: rng.randint(0, 10**13),
                }, seq)
                u = {"resident": dict(key, **fields)}
                log = {"kind": "resident", "key": ["resident", cc, pid, rid], "f": fields}
        elif roll < 0.90:
            partner = "TJ" if cc == "AZ" else "AZ"
            year = rng.choice(YEARS)
            exports = rng.random() < 0.5
            value = rng.randint(0, 10**12)
            u = {"trade": {"reporter": cc, "partner": partner,
                           "direction": "TRADE_DIRECTION_EXPORTS" if exports
                           else "TRADE_DIRECTION_IMPORTS",
                           "period": {"year": year, "first_month": 1, "last_month": 12},
                           "value_usd_cents": value}}
            exporter, importer = (cc, partner) if exports else (partner, cc)
            field = "exporter_reported_usd_cents" if exports else "importer_reported_usd_cents"
            log = {"kind": "trade", "key": ["trade", exporter, importer, year, 1, 12],
                   "f": {field: value}}
        else:
            year = rng.choice(YEARS)
            fields = self._fields({
                "parks_non_oil_production_share_bp": lambda s: rng.randint(0, 10000),
                "parks_export_share_bp": lambda s: rng.randint(0, 10000),
            }, seq)
            u = {"country": dict(country=cc,
                                 period={"year": year, "first_month": 1, "last_month": 12},
                                 **fields)}
            log = {"kind": "country", "key": ["country", cc, year, 1, 12], "f": fields}
        t, final = self._stamp(u)
        log.update(t=t, fin=final)
        return u, log


def run_producer(a):
    ingest, publish, query = endpoints(a.site)
    out = open(a.log, "a", buffering=1)

    def say(**kv):
        out.write(json.dumps(kv, sort_keys=True) + "\n")

    p = None
    deadline = time.monotonic() + a.connect_s
    while p is None:
        try:
            p = parksync.Producer(a.id, ingest=ingest, publish=publish, query=query,
                                  outbox=a.outbox, connect_timeout=5.0)
        except parksync.Timeout:
            if time.monotonic() > deadline:
                say(error="no daemon answered within %d s" % a.connect_s)
                return 1
    work = Workload(a.id, a.seed)
    say(start=True, last_sent=p.last_sent, last_acked=p.last_acked)
    period = 1.0 / a.rate
    next_send = time.monotonic()
    next_note = 0.0
    try:
        while not os.path.exists(a.stop):
            now = time.monotonic()
            if now >= next_send:
                seq = p.last_sent + 1
                u, entry = work.next(seq)
                got = p.send(u)
                if got != seq:
                    say(error="sequence %d given where %d was expected" % (got, seq))
                    return 1
                entry["s"] = got
                out.write(json.dumps(entry, sort_keys=True) + "\n")
                p.poll()  # commits the outbox batch and sends it
                next_send = max(next_send + period, now - 1.0)
            if now >= next_note:
                say(acked=p.last_acked, sent=p.last_sent)
                next_note = now + 0.5
            p.poll()
            time.sleep(max(0.0, min(next_send, next_note) - time.monotonic()))
        end = time.monotonic() + a.flush_s
        while p.last_acked < p.last_sent:
            if time.monotonic() > end:
                say(final=True, acked=p.last_acked, sent=p.last_sent,
                    error="not everything acknowledged within %d s" % a.flush_s)
                return 1
            try:
                p.flush(timeout=1.0)
            except parksync.Timeout:
                say(acked=p.last_acked, sent=p.last_sent)
        say(final=True, acked=p.last_acked, sent=p.last_sent, resends=p.resends)
        return 0
    except parksync.Ahead as e:
        say(final=True, acked=p.last_acked, sent=p.last_sent, error="ahead: %s" % e)
        return 1
    finally:
        p.close()
        out.close()


def run_push(a):
    """Pushes one park per id of --parks (its country the id's prefix),
    each acknowledged before the next is sent, and logs them as the
    producer does."""
    ingest, publish, query = endpoints(a.site)
    out = open(a.log, "a", buffering=1)
    p = parksync.Producer(a.id, ingest=ingest, publish=publish, query=query, connect_timeout=10.0)
    try:
        for pid in a.parks.split(","):
            t = now_us()
            fields = {"name": "canary " + pid}
            seq = p.send({"park": dict(park_id=pid, country=pid[:2], **fields),
                          "event_time_us": t})
            p.flush(timeout=30.0)
            out.write(json.dumps({"s": seq, "kind": "park", "key": ["park", pid[:2], pid],
                                  "f": fields, "t": t, "fin": False}, sort_keys=True) + "\n")
        out.write(json.dumps({"final": True, "acked": p.last_acked, "sent": p.last_sent}) + "\n")
    finally:
        p.close()
        out.close()
    return 0


# ------------------------------------------------------------------ subscriber

def run_subscriber(a):
    _, publish, query = endpoints(a.site)
    out = open(a.log, "a", buffering=1 << 16)
    picture = {}
    s = parksync.Subscriber(publish=publish, query=query, timeout=10.0)
    epoch = None
    stop = None
    deadline = None
    rc = 0
    try:
        while True:
            if stop is None and os.path.exists(a.stop):
                with open(a.stop) as f:
                    stop = json.load(f)
                deadline = time.monotonic() + a.catchup_s
            if stop is not None:
                if (epoch == stop["epoch"] and s.revision >= stop["head"]
                        and s._state == _LIVE):  # every change up to V delivered
                    break
                if time.monotonic() > deadline:
                    out.write(json.dumps({"e": "error", "why": "did not reach revision %d of "
                                          "epoch %s within %d s (at %d of %s)"
                                          % (stop["head"], stop["epoch"], a.catchup_s,
                                             s.revision, epoch)}) + "\n")
                    rc = 1
                    break
            try:
                ev = s.next(timeout=0.5)
            except parksync.Timeout:
                continue
            # the subscriber's epoch: a test may look at what the library keeps
            epoch = s._epoch.hex() if s._epoch else None
            if ev.kind is parksync.EventKind.RESET:
                picture.clear()
                out.write(json.dumps({"e": "reset"}) + "\n")
            elif ev.kind is parksync.EventKind.SNAPSHOT_END:
                out.write(json.dumps({"e": "end", "rev": ev.revision, "ep": epoch}) + "\n")
            else:
                r = ev.record
                key = record_key(r)
                out.write(json.dumps({"e": "r", "rev": ev.revision, "ep": epoch, "k": key,
                                      "live": ev.live, "del": r.deleted}) + "\n")
                if r.deleted:
                    picture.pop(json.dumps(key), None)
                else:
                    picture[json.dumps(key)] = base64.b64encode(body_bytes(r)).decode()
    except parksync.ParksyncError as e:
        out.write(json.dumps({"e": "error", "why": "%s: %s" % (type(e).__name__, e)}) + "\n")
        rc = 1
    finally:
        st = s.stats
        out.write(json.dumps({"e": "stats", "gaps": st.gaps, "resyncs": st.resyncs,
                              "snapshots": st.snapshots, "epoch_changes": st.epoch_changes,
                              "restarts": st.restarts, "duplicates": st.duplicates}) + "\n")
        out.close()
        s.close()
    with open(a.picture + ".tmp", "w") as f:
        json.dump({"epoch": epoch, "revision": s.revision, "picture": picture}, f)
    os.rename(a.picture + ".tmp", a.picture)
    return rc


# ------------------------------------------------------------------ snapshot

def run_snapshot(a):
    _, publish, query = endpoints(a.site)
    s = parksync.Subscriber(publish=publish, query=query, live=False, provenance=True,
                            timeout=10.0)
    records = {}
    revision = None
    try:
        for ev in s:
            if ev.kind is parksync.EventKind.SNAPSHOT_END:
                revision = ev.revision
            elif ev.kind is parksync.EventKind.RECORD:
                r = ev.record
                records[json.dumps(record_key(r))] = {
                    "body": base64.b64encode(body_bytes(r)).decode(),
                    "fields": {f.name: v for f, v in getattr(r, r.WhichOneof("body")).ListFields()
                               if f.type != f.TYPE_MESSAGE},
                    "prov": {p.field: [p.producer_id, p.sequence] for p in r.provenance},
                }
        epoch = s._epoch.hex() if s._epoch else None
    finally:
        s.close()
    with open(a.out + ".tmp", "w") as f:
        json.dump({"revision": revision, "epoch": epoch, "records": records}, f)
    os.rename(a.out + ".tmp", a.out)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="role", required=True)
    p = sub.add_parser("producer")
    p.add_argument("--id", required=True)
    p.add_argument("--site", required=True, help="ingest,publish,query")
    p.add_argument("--outbox", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--rate", type=float, default=30.0, help="updates per second")
    p.add_argument("--connect-s", type=int, default=60)
    p.add_argument("--flush-s", type=int, default=120)
    s = sub.add_parser("subscriber")
    s.add_argument("--site", required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--picture", required=True)
    s.add_argument("--stop", required=True)
    s.add_argument("--catchup-s", type=int, default=60)
    u = sub.add_parser("push")
    u.add_argument("--id", required=True)
    u.add_argument("--site", required=True)
    u.add_argument("--log", required=True)
    u.add_argument("--parks", required=True, help="park ids, comma-separated")
    n = sub.add_parser("snapshot")
    n.add_argument("--site", required=True)
    n.add_argument("--out", required=True)
    a = ap.parse_args()
    return {"producer": run_producer, "subscriber": run_subscriber, "push": run_push,
            "snapshot": run_snapshot}[a.role](a)


if __name__ == "__main__":
    sys.exit(main())
