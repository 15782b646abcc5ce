#!/usr/bin/python3
"""Months of contested ingest, compressed: do the daemon's memory, its
database and its WAL stay flat, and do its watchers see every change?

    tests/bench/soak_months.py [--binary build/bin/parksyncd]
        [--cli build/bin/parksync] [--minutes 30] [--rate 2000]
        [--tick-ms 20] [--sample-s 10] [--snapshot-s 30]
        [--watchers all,parks,cli-AZ,cli-trade]
        [--warmup-pct 20] [--warmup-min-s 60] [--wal-bound-mib 128]
        [--rss-growth-mib 16] [--db-growth-pct 10] [--min-rate-pct 90]
        [--changelog-keep 50000] [--conflicts-keep 10000] [--keep-dir]

`make soak` runs it for 30 minutes against the release build (`make
build`: RelWithDebInfo, no sanitizers, whose figures mean nothing
here); CI runs `make soak SOAK_MINUTES=2`.

The daemon runs on ipc:// endpoints in a temporary directory with two
ministries that contest the same records. AZ-MOE (country AZ, granted
park:TJ) and TJ-MINT (country TJ, granted park:AZ) both write both
countries' parks, so each park field goes to the newer stamp of two
producers ("overridden" conflicts when the older arrives last); each
also writes some of the other's residents, trade reports and country
reports, which it does not own (claims, "not authoritative"); 3 % of
updates carry an event time an hour old (overridden, or stale behind a
delete) and 0.6 % are deletes of residents (tombstones, written over
again later). The keys are a bounded set (100 parks, 2,000 residents,
480 trade reports, 20 country reports), so the live records plateau at
once and every later write is an overwrite: what still grows is
history, which retention must bound. The change log keeps
--changelog-keep revisions and the conflicts table --conflicts-keep
rows (with their claims): both fill within the first 40 s at 2,000/s,
where the defaults (1,000,000 each) would fill after 10 and 60 minutes,
and a database flat after warm-up is the point.

Producers (the spec-literal client, tests/conformance/psclient.py)
send, every --tick-ms, what is due at --rate updates/s in all as one
UpdateBatch each (20 updates at the defaults), keep what is not
acknowledged and send it again after 5 s without an ack (go-back-N),
and time each batch's acknowledgement. Watchers, each a process of its
own, follow the live stream from revision 0, before the first update:

  all        psclient.Subscriber, no filter: every revision 1..head must
             be delivered exactly once (revisions have no holes), checked
             as they arrive, and V (what the subscriber holds proven
             complete) must never pass a revision it did not deliver
  parks      psclient.Subscriber, kind park
  cli-AZ     `parksync watch --country AZ --from-revision 0` (libparksync)
  cli-trade  `parksync watch --kind trade --from-revision 0`

At the end each filtered watcher's count and sum of the revisions it
delivered must equal those of what `all` delivered that matches its
filter. A full snapshot is taken every --snapshot-s.

Every --sample-s it prints a row: acknowledged rate, ack latency (p50,
p99, ms), the daemon's RSS with its anonymous and file-backed parts
(the latter holds SQLite's WAL index), database and WAL file sizes
(MiB; walmax: the largest WAL polled twice a second since the last
row), the age of the last complete checkpoint (s), conflicts kept, head
revision and how far the slowest psclient watcher trails it. At the end
one JSON object: the bounds, min/median/max after warm-up of each
figure, the series, the watchers' reports and the daemon's status.

Exit 1 when the daemon died or did not stop cleanly on SIGTERM; the WAL
passed --wal-bound-mib; after warm-up (--warmup-pct of the run, at
least --warmup-min-s, at most half) the daemon's RSS rose more than
--rss-growth-mib above its warm-up maximum, or the database file grew
more than --db-growth-pct over its size at the end of warm-up; the
acknowledged rate was below --min-rate-pct of --rate; a snapshot failed;
or a watcher missed, repeated or reset a revision, or died. The
defaults against what 2,000 updates/s measured (20 ms ticks, about 90
commits a second). The writer makes the WAL start over once it passes
64 MiB (store_wal_reset; 16 MiB until a reset's stalls were found to
make the latency tail), so it stays near or below that. Before the
writer did, the background checkpoints alone almost never let it start
over: 12 to 54 MiB in 2-minute runs, 111.5 MiB once in 30 minutes, 1 GiB
in 55 s at --tick-ms 1. So 128 MiB, twice the point of reset, means the
WAL went unreset; a daemon that does not checkpoint at all passes it in
about half a minute (some 4 MiB of WAL a second at 2,000 updates/s).
RSS reached 31 MiB in
the first 40 s (the writer's page cache, up to 32 MiB, then holds the
whole 13.5 MiB database) and 32.1 MiB at most in 30 minutes: 16 MiB
more is a leak of 6 bytes per update over 30 minutes, 140 in 2. The
database reached 13.5 MiB in 40 s and 13.7 MiB in 30 minutes (+1.5 %):
pages that retention frees are reused. --tick-ms smaller than the
default makes more, smaller commits: a harder test of the checkpointer.

The temporary directory (GBs when the WAL runs away) is removed at the
end; --keep-dir keeps it (config, database, daemon.log) for a look.
"""

import argparse
import collections
import json
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
sys.path.insert(0, os.path.join(HERE, "..", "soak"))
import psclient  # noqa: E402
from soakutil import pct, rss_kib, rss_parts_kib  # noqa: E402

import zmq  # noqa: E402

PROTO_DIR = os.path.join(HERE, "..", "..", "proto")
MIB = 1024 * 1024

PARKS = 50             # per country
RESIDENTS = 20         # per park
TRADE_PERIODS = 120    # monthly periods: 10 years
COUNTRY_PERIODS = 10   # yearly periods
BATCH_MAX = 1024       # updates in one UpdateBatch (proto/README.md)
WINDOW = 50000         # unacknowledged updates a producer lets out
RESEND_S = 5.0         # no ack progress this long: send everything again
WATCHERS = [           # name, how, kind, country
    ("all", "psclient", None, None),
    ("parks", "psclient", "park", None),
    ("cli-AZ", "cli", None, "AZ"),
    ("cli-trade", "cli", "trade", None),
]

KIND_OF_BODY = {"park": "park", "resident": "resident", "trade": "trade",
                "country": "country", "summary": "summary"}


def record_countries(rec):
    """The countries a record is published under (trade: both sides)."""
    body = rec.WhichOneof("body")
    if body == "trade":
        return (rec.trade.exporter, rec.trade.importer)
    return (getattr(rec, body).country,)


def matches(kind, country, rec_kind, rec_countries):
    return ((kind is None or kind == rec_kind)
            and (country is None or country in rec_countries))


# ------------------------------------------------------------------ watchers

class Account:
    """Count, sum and largest revision delivered, per filter."""

    def __init__(self):
        self.n = 0
        self.sum = 0
        self.max = 0

    def add(self, r):
        self.n += 1
        self.sum += r
        self.max = max(self.max, r)

    def figures(self):
        return {"n": self.n, "sum": self.sum, "max": self.max}


class Watcher(psclient.Subscriber):
    """A subscriber that keeps accounts instead of every delivery, and,
    with no filter, checks that revisions arrive without a hole."""

    def __init__(self, daemon, kind, country, filters):
        super().__init__(daemon, kind=kind, country=country)
        self.unfiltered = kind is None and country is None
        self.filters = filters               # name -> (kind, country)
        self.accounts = {name: Account() for name in filters}
        self.own = Account()
        self.done = 0            # no filter: every revision up to it was delivered;
                                 # with one: the last watermark checked
        self.pending = set()     # delivered above done
        self.missed = 0          # revisions V passed without delivering
        self.missed_examples = []
        self.repeated = 0
        self.live = 0
        self.recovered = 0
        self.hb_delay_ms = []    # heartbeat time to its handling, since last report

    def _deliver(self, r, how, record=None):
        if how == "reset":  # a fresh snapshot at V: start counting again
            self.done, self.pending = self.V, set()
            return
        if how == "live":
            self.live += 1
        else:
            self.recovered += 1
        if r <= self.done or r in self.pending:
            self.repeated += 1
            return
        self.pending.add(r)
        if self.unfiltered:
            while self.done + 1 in self.pending:
                self.done += 1
                self.pending.discard(self.done)
        self.own.add(r)
        if self.filters:
            kind = KIND_OF_BODY[record.WhichOneof("body")]
            countries = record_countries(record)
            for name, (k, c) in self.filters.items():
                if matches(k, c, kind, countries):
                    self.accounts[name].add(r)

    def on_heartbeat(self, hb):
        self.hb_delay_ms.append(max(0.0, (time.time() * 1e6 - hb.time_us) / 1000))
        super().on_heartbeat(hb)
        self.check_watermark()

    def recover(self):
        super().recover()
        self.check_watermark()

    def check_watermark(self):
        """With no filter every revision up to V must have been delivered:
        V passing one that was not is a silent gap. With a filter the
        revisions delivered are not contiguous: those up to V are
        forgotten (the subscriber never delivers one at or below V)."""
        if self.V <= self.done:
            return
        if not self.unfiltered:
            self.done = self.V
            self.pending = {x for x in self.pending if x > self.V}
            return
        gap = [x for x in range(self.done + 1, self.V + 1) if x not in self.pending]
        self.missed += len(gap)
        self.missed_examples.extend(gap[:10 - len(self.missed_examples)])
        self.done = self.V
        self.pending = {x for x in self.pending if x > self.V}
        while self.done + 1 in self.pending:
            self.done += 1
            self.pending.discard(self.done)

    def report(self):
        out = {"V": self.V, "delivered": self.own.figures(), "live": self.live,
               "recovered": self.recovered, "losses": self.losses,
               "recoveries": self.recoveries, "resets": self.resets,
               "repeated": self.repeated, "start_revision": self.snapshot_revision,
               "hb_delay_ms_max": max(self.hb_delay_ms) if self.hb_delay_ms else None}
        self.hb_delay_ms = []
        if self.unfiltered:
            out.update(missed=self.missed, missed_examples=self.missed_examples,
                       pending=len(self.pending),
                       accounts={n: a.figures() for n, a in self.accounts.items()})
        return out


def watch_psclient(conn, daemon, kind, country, filters):
    w = Watcher(daemon, kind, country, filters)
    w.start(timeout=30)
    conn.send(("ready", w.report()))
    last = time.time()
    target = None
    deadline = None
    while True:
        w.step(0.2)
        if conn.poll(0):
            msg = conn.recv()
            target, deadline = msg[1], time.time() + msg[2]
        if target is not None and (w.V >= target or time.time() > deadline):
            w.check_watermark()
            rep = w.report()
            rep["reached_target"] = w.V >= target
            conn.send(("final", rep))
            w.close()
            return
        if time.time() - last >= 1.0:
            last = time.time()
            conn.send(("stats", w.report()))


SEEN_KEEP = 200000  # revisions a CLI watcher remembers to tell a repeat
REVISION = re.compile(rb'"revision":\s*(\d+)')


def watch_cli(conn, daemon, kind, country, cli):
    """`parksync watch` from revision 0 (the database is empty when it
    starts), read line by line: accounts of the revisions printed and
    the resets."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_parent():  # PR_SET_PDEATHSIG: never outlive this watcher
        libc.prctl(1, signal.SIGTERM)

    argv = [cli, "watch", "--from-revision", "0", "--publish", daemon.publish,
            "--query", daemon.query]
    if kind:
        argv += ["--kind", kind]
    if country:
        argv += ["--country", country]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=die_with_parent)
    acc, seen = Account(), set()
    state = {"resets": 0, "repeated": 0, "lines": 0}
    lock = threading.Condition()

    def read():
        for line in proc.stdout:
            m = REVISION.search(line)
            with lock:
                lock.notify_all()
                state["lines"] += 1
                if m is None:
                    if b'"reset"' in line:
                        state["resets"] += 1
                        seen.clear()
                    continue
                r = int(m.group(1))
                # a trade flow's two topics are one delivery: a repeat is
                # the library's bug. Recovered records come late, but
                # never a million revisions late.
                if r in seen:
                    state["repeated"] += 1
                    continue
                seen.add(r)
                acc.add(r)
                if len(seen) > 2 * SEEN_KEEP:
                    floor = acc.max - SEEN_KEEP
                    seen.difference_update([x for x in seen if x < floor])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def report():
        with lock:
            return dict(state, delivered=acc.figures(), exited=proc.poll())

    conn.send(("ready", report()))
    target = None
    while True:
        if conn.poll(1.0):
            msg = conn.recv()
            target, deadline = msg[1], time.time() + msg[2]
        if target is not None:
            with lock:
                lock.wait_for(lambda: acc.max >= target or proc.poll() is not None,
                              max(0.0, deadline - time.time()))
            proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            reader.join(timeout=10)
            rep = report()
            rep["reached_target"] = acc.max >= target
            rep["stderr"] = err.decode("utf-8", "replace")[-400:]
            conn.send(("final", rep))
            return
        conn.send(("stats", report()))


def watcher_main(conn, how, endpoints, kind, country, filters, cli, proto_out):
    """A watcher process (spawned: a ZeroMQ context never crosses a fork)."""
    psclient.load_proto(PROTO_DIR, proto_out)
    d = psclient.Daemon(None, endpoints["dir"])
    try:
        if how == "psclient":
            watch_psclient(conn, d, kind, country, filters)
        else:
            watch_cli(conn, d, kind, country, cli)
    except Exception as e:  # the parent reports it as a dead watcher
        conn.send(("error", "%s: %s" % (type(e).__name__, e)))


# ------------------------------------------------------------------ producers

class Ministry:
    """One producer of a ministry: paced batches, acks, go-back-N."""

    def __init__(self, daemon, name, country, other, seed):
        self.name, self.country, self.other = name, country, other
        self.p = psclient.Producer(daemon, name)
        self.rng = random.Random(seed)
        self.seq = 0
        self.unacked = collections.deque()   # Updates sent, not acknowledged
        self.inflight = collections.deque()  # (last sequence of a batch, time sent)
        self.acked = 0
        self.ack_moved = time.monotonic()
        self.ack_ms = []
        self.resends = 0

    def close(self):
        self.p.close()

    def outstanding(self):
        return self.seq - self.acked

    def update(self):
        """The next update: mostly our own records, some contested."""
        rng, pb = self.rng, psclient.pb
        self.seq += 1
        u = pb.Update(version=1, producer_id=self.name, sequence=self.seq,
                      event_time_us=psclient.now_us())
        if rng.random() < 0.03:
            u.event_time_us -= 3600 * 1000000  # loses to what is stored
        r = rng.random()
        if r < 0.35:  # parks: both ministries own both countries' parks
            cc = self.country if rng.random() < 0.6 else self.other
            u.park.country = cc
            u.park.park_id = "%s-P%03d" % (cc, rng.randrange(PARKS))
            u.park.name = "park of %s, seen by %s" % (cc, self.name)
            u.park.status = rng.randrange(1, 6)
            u.park.reported_residents = rng.randrange(RESIDENTS + 5)
            u.park.reported_investment_usd_cents = rng.randrange(10 ** 12)
        elif r < 0.75:  # residents: 20 % the other's, refused as claims
            cc = self.country if rng.random() < 0.8 else self.other
            park = "%s-P%03d" % (cc, rng.randrange(PARKS))
            rid = "R%02d" % rng.randrange(RESIDENTS)
            if cc == self.country and rng.random() < 0.02:
                t = u.delete.resident
                t.country, t.park_id, t.resident_id = cc, park, rid
            else:
                t = u.resident
                t.country, t.park_id, t.resident_id = cc, park, rid
                t.company_name = "company %s/%s" % (park, rid)
                t.sector = rng.randrange(1, 12)
                t.investment_usd_cents = rng.randrange(10 ** 11)
                t.jobs = rng.randrange(5000)
                t.status = rng.randrange(1, 5)
        elif r < 0.95:  # trade: both sides of both flows; 10 % the other's side
            rep = self.country if rng.random() < 0.9 else self.other
            u.trade.reporter = rep
            u.trade.partner = self.other if rep == self.country else self.country
            u.trade.direction = rng.randrange(1, 3)
            p = rng.randrange(TRADE_PERIODS)
            (u.trade.period.year, u.trade.period.first_month,
             u.trade.period.last_month) = (2015 + p // 12, p % 12 + 1, p % 12 + 1)
            u.trade.value_usd_cents = rng.randrange(10 ** 8, 10 ** 10)
        else:  # country reports: 5 % the other's
            cc = self.country if rng.random() < 0.95 else self.other
            u.country.country = cc
            (u.country.period.year, u.country.period.first_month,
             u.country.period.last_month) = (2015 + rng.randrange(COUNTRY_PERIODS), 1, 12)
            u.country.parks_non_oil_production_share_bp = rng.randrange(10000)
            u.country.parks_export_share_bp = rng.randrange(10000)
        return u

    def send(self, n):
        batch = [self.update() for _ in range(n)]
        self.unacked.extend(batch)
        self.p.send_batch(batch)
        self.inflight.append((self.seq, time.monotonic()))

    def on_acks(self):
        """Take what acks arrived; returns the updates newly acknowledged."""
        before = self.acked
        while self.p.sub.poll(0):
            self.p.recv_pub(0.01)
        ack = self.p.last_ack
        if ack <= before:
            return 0
        now = time.monotonic()
        while self.inflight and self.inflight[0][0] <= ack:
            self.ack_ms.append((now - self.inflight.popleft()[1]) * 1000)
        while self.unacked and self.unacked[0].sequence <= ack:
            self.unacked.popleft()
        self.acked, self.ack_moved = ack, now
        return ack - before

    def resend_if_stuck(self):
        if not self.unacked or time.monotonic() - self.ack_moved < RESEND_S:
            return
        pending = list(self.unacked)
        for i in range(0, len(pending), BATCH_MAX):
            self.p.send_batch(pending[i:i + BATCH_MAX])
        self.resends += 1
        self.ack_moved = time.monotonic()


# ------------------------------------------------------------------ snapshots

def snapshots(d, stop, every_s, out):
    q = psclient.Query(d.query)
    while not stop.wait(every_s):
        t0 = time.time()
        try:
            chunks, err = q.snapshot(credit=8, chunk_records=1024, timeout=30.0)
            if err is not None:
                out["refused"] += 1
            else:
                out["ms"].append((time.time() - t0) * 1000)
                out["records"] = sum(len(c.records) for c in chunks)
        except (TimeoutError, AssertionError) as e:
            out["failed"] += 1
            out["last_error"] = str(e)
            q.close()
            q = psclient.Query(d.query)
    q.close()


# ------------------------------------------------------------------ main

def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def mib(b):
    return None if b is None else round(b / MIB, 1)


def spread(xs):
    """min, median and max of the samples."""
    if not xs:
        return {"min": None, "median": None, "max": None}
    return {"min": min(xs), "median": statistics.median(xs), "max": max(xs)}


class Watchers:
    """The watcher processes (those of WATCHERS named in `names`) and what
    they last said."""

    def __init__(self, d, names, cli, proto_out):
        ctx = multiprocessing.get_context("spawn")
        chosen = [w for w in WATCHERS if w[0] in names]
        filters = {name: (k, c) for name, how, k, c in chosen if (k, c) != (None, None)}
        self.how = {name: how for name, how, _, _ in chosen}
        self.procs = {}
        self.last = {}
        self.final = {}
        self.errors = {}
        for name, how, kind, country in chosen:
            parent, child = ctx.Pipe()
            p = ctx.Process(target=watcher_main, name="watcher-" + name, daemon=True,
                            args=(child, how, {"dir": d.dir}, kind, country,
                                  filters if name == "all" else {}, cli, proto_out))
            p.start()
            child.close()
            self.procs[name] = (p, parent)

    def poll(self, timeout=0):
        """Takes what the watchers said, waiting up to timeout s for a word."""
        conns = {conn: name for name, (_, conn) in self.procs.items()
                 if name not in self.final and name not in self.errors}
        for conn in multiprocessing.connection.wait(list(conns), timeout):
            name = conns[conn]
            try:
                while conn.poll(0):
                    what, body = conn.recv()
                    if what == "final":
                        self.final[name] = body
                    elif what == "error":
                        self.errors[name] = body
                    else:
                        self.last[name] = body
            except (EOFError, OSError):
                self.errors.setdefault(name, "watcher process ended (exit %s)"
                                       % self.procs[name][0].exitcode)

    def wait(self, names, done, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(
                done(n) or n in self.errors for n in names):
            self.poll(max(0.0, deadline - time.monotonic()))

    def wait_ready(self, timeout):
        self.wait(self.procs, lambda n: n in self.last, timeout)
        return all(n in self.last for n in self.procs)

    def finish(self, names, target_of, timeout):
        """Tells each watcher of names the revision it must reach and
        waits for its final report."""
        for name in names:
            self.procs[name][1].send(("finish", target_of(name), timeout))
        self.wait(names, lambda n: n in self.final, timeout + 20)

    def lag(self, head):
        vs = [w["V"] for w in self.last.values() if "V" in w]
        return head - min(vs) if vs and head is not None else None

    def hb_delay_ms(self):
        return max([w.get("hb_delay_ms_max") or 0 for w in self.last.values()] or [0])

    def stop(self):
        for p, conn in self.procs.values():
            if p.is_alive():
                p.terminate()
            p.join(5)
            conn.close()


COLUMNS = [  # heading, row key, format
    ("t_s", "t_s", "%7.0f"), ("rate/s", "rate", "%7.0f"),
    ("ack50", "ack_ms_p50", "%6.1f"), ("ack99", "ack_ms_p99", "%6.1f"),
    ("rss", "rss", "%6.1f"), ("anon", "rss_anon", "%6.1f"), ("file", "rss_file", "%6.1f"),
    ("db", "db", "%6.1f"), ("wal", "wal", "%7.1f"), ("walmax", "wal_max", "%7.1f"),
    ("ckpt_s", "checkpoint_age_s", "%6.1f"), ("conflicts", "conflicts", "%9d"),
    ("head", "head", "%9d"), ("lag", "watcher_lag", "%6d"),
]
SIZES = ("rss", "rss_anon", "rss_file", "db", "wal", "wal_max", "status_db", "status_wal")


def print_row(row):
    cells = []
    for head, key, fmt in COLUMNS:
        v = row.get(key)
        if v is not None and key in SIZES:
            v /= MIB
        width = len(fmt % 0)
        cells.append(("%*s" % (width, "-")) if v is None else fmt % v)
    print(" ".join(cells), flush=True)


class Load:
    """The producers at their pace, the WAL polled, a row per sample."""

    def __init__(self, d, ctl, watchers, args):
        self.d, self.ctl, self.watchers, self.args = d, ctl, watchers, args
        self.wal_path = d.database + "-wal"
        self.ministries = [Ministry(d, "AZ-MOE", "AZ", "TJ", 1),
                           Ministry(d, "TJ-MINT", "TJ", "AZ", 2)]
        self.poller = zmq.Poller()
        for m in self.ministries:
            self.poller.register(m.p.sub, zmq.POLLIN)
        self.rows = []
        self.acks = []       # every batch's ack latency, ms
        self.wal_max = 0     # largest WAL polled, bytes
        self.alive = True

    def acked(self):
        return sum(m.acked for m in self.ministries)

    def run(self, duration):
        """Runs until duration s have passed, the daemon died, the WAL
        passed its bound or a watcher failed. Returns the seconds run."""
        args = self.args
        per_producer = args.rate / len(self.ministries)
        print(" ".join("%*s" % (len(fmt % 0), head) for head, _, fmt in COLUMNS), flush=True)
        t0 = time.monotonic()
        next_sample, next_wal, next_tick = t0 + args.sample_s, t0, t0
        sent = [0] * len(self.ministries)
        self.row_start = (t0, 0)
        self.wal_max_row, self.ack_row = 0, []
        while True:
            now = time.monotonic()
            if now >= t0 + duration:
                break
            if self.d.proc.poll() is not None:
                self.alive = False
                break
            if now >= next_tick:  # what is due, one batch per producer and tick
                next_tick += args.tick_ms / 1000
                for i, m in enumerate(self.ministries):
                    due = int(per_producer * (now - t0)) - sent[i]
                    room = WINDOW - m.outstanding()
                    while due > 0 and room > 0:
                        n = min(due, room, BATCH_MAX)
                        m.send(n)
                        sent[i] += n
                        due -= n
                        room -= n
            self.poller.poll(max(0, 1000 * (min(next_tick, next_wal) - time.monotonic())))
            for m in self.ministries:
                m.on_acks()
                m.resend_if_stuck()
            if now >= next_wal:  # a WAL that runs away shows between samples
                w = file_size(self.wal_path)
                self.wal_max_row, self.wal_max = max(self.wal_max_row, w), max(self.wal_max, w)
                next_wal = now + 0.5
            if now < next_sample:
                continue
            next_sample += args.sample_s
            self.sample(now - t0)
            if self.wal_max > args.wal_bound_mib * MIB or self.watchers.errors:
                break
        return time.monotonic() - t0

    def sample(self, t):
        self.watchers.poll()
        st = self.ctl.status()
        now = time.monotonic()
        for m in self.ministries:
            self.ack_row.extend(m.ack_ms)
            m.ack_ms = []
        self.acks.extend(self.ack_row)
        t_prev, acked_prev = self.row_start
        acked = self.acked()
        rss = rss_parts_kib(self.d.proc.pid)
        counters = {c.name: c.value for c in st.counters}
        wal = file_size(self.wal_path)
        row = {"t_s": round(t, 1),
               "rate": round((acked - acked_prev) / (now - t_prev), 1),
               "ack_ms_p50": pct(self.ack_row, 50), "ack_ms_p99": pct(self.ack_row, 99),
               "rss": rss.get("VmRSS", 0) * 1024, "rss_anon": rss.get("RssAnon", 0) * 1024,
               "rss_file": rss.get("RssFile", 0) * 1024,
               "db": file_size(self.d.database), "wal": wal,
               "wal_max": max(self.wal_max_row, wal),
               "status_db": st.database_bytes, "status_wal": st.wal_bytes,
               "checkpoint_age_s": (round((st.now_us - st.last_checkpoint_us) / 1e6, 1)
                                    if st.last_checkpoint_us else None),
               "checkpoint_failures": counters.get("checkpoint_failures"),
               "commits": counters.get("commits"),
               "conflicts": st.conflicts, "head": st.head_revision,
               "watcher_lag": self.watchers.lag(st.head_revision),
               "watcher_hb_delay_ms": self.watchers.hb_delay_ms()}
        self.wal_max = max(self.wal_max, wal)
        self.rows.append(row)
        print_row(row)
        self.row_start = (now, acked)
        self.wal_max_row, self.ack_row = 0, []

    def drain(self, timeout):
        """Waits for every update's ack; returns how many never came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(m.outstanding() for m in self.ministries):
            self.poller.poll(100)
            for m in self.ministries:
                m.on_acks()
                m.resend_if_stuck()
        return sum(m.outstanding() for m in self.ministries)

    def close(self):
        for m in self.ministries:
            m.close()


def still_head(ctl, still_s=2.0, timeout=30.0):
    """The head revision once it has not moved for still_s: the country
    summaries follow the last batch within summary_interval_ms."""
    head, since = None, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        h = ctl.status().head_revision
        if h != head:
            head, since = h, time.monotonic()
        elif time.monotonic() - since >= still_s:
            break
        time.sleep(0.25)  # a poll of the daemon's status, with a deadline
    return head


def final_status(st):
    return {
        "head_revision": st.head_revision, "database_bytes": st.database_bytes,
        "wal_bytes": st.wal_bytes, "conflicts": st.conflicts,
        "conflicts_by_reason": {c.name: c.value for c in st.conflicts_by_reason},
        "records": {c.name: c.value for c in st.records},
        "counters": {c.name: c.value for c in st.counters if c.value},
        "producers": {p.producer_id: {"last_sequence": p.last_sequence, "applied": p.applied,
                                      "rejected": p.rejected, "duplicates": p.duplicates,
                                      "gaps": p.gaps}
                      for p in st.producers}}


def stop_daemon(d, timeout=60):
    """SIGTERM: what is in hand committed, the WAL folded in, exit 0.
    Returns (exit code or what happened, seconds)."""
    t = time.monotonic()
    rc = d.proc.poll()
    if rc is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
            rc = "killed after %d s" % timeout
    d.proc = None
    return rc, round(time.monotonic() - t, 2)


def figures(load, warmup, run_s, snap, rss_start):
    rows = load.rows
    late = [r for r in rows if r["t_s"] > warmup]
    warm = [r for r in rows if r["t_s"] <= warmup]

    def sizes(key, **extra):
        return dict(extra, **{k: mib(v) for k, v in spread([r[key] for r in late]).items()})

    acks = load.acks
    return {
        "run_s": round(run_s, 1),
        "daemon_alive": load.alive,
        "updates_acknowledged": load.acked(),
        "rate_per_s": {"mean": round(load.acked() / run_s, 1),
                       "after_warmup": spread([r["rate"] for r in late])},
        "ack_ms": {"n": len(acks), "p50": pct(acks, 50), "p99": pct(acks, 99),
                   "p999": pct(acks, 99.9), "max": max(acks) if acks else None},
        "resends": sum(m.resends for m in load.ministries),
        "commits_per_s": (round((rows[-1]["commits"] or 0) / rows[-1]["t_s"])
                          if rows and rows[-1]["t_s"] else None),
        "after_warmup": "min, median and max of the samples after warm-up, MiB",
        "rss_mib": sizes("rss", start=mib((rss_start or 0) * 1024),
                         warmup_max=mib(max((r["rss"] for r in warm), default=None))),
        "rss_anon_mib": sizes("rss_anon"),
        "rss_file_mib": sizes("rss_file"),
        "db_mib": sizes("db", end_of_warmup=mib(warm[-1]["db"] if warm else None)),
        "wal_mib": sizes("wal", max_polled=mib(load.wal_max)),
        "checkpoint_age_s_after_warmup": spread([r["checkpoint_age_s"] for r in late
                                                 if r["checkpoint_age_s"] is not None]),
        "checkpoint_failures": rows[-1]["checkpoint_failures"] if rows else None,
        "watcher_lag_revisions_max": max((r["watcher_lag"] or 0 for r in rows), default=None),
        "watcher_hb_delay_ms_max": max((r["watcher_hb_delay_ms"] for r in rows), default=None),
        "snapshots": {"n": len(snap["ms"]), "records": snap["records"],
                      "ms_p50": pct(snap["ms"], 50), "ms_max": max(snap["ms"] or [0]),
                      "refused": snap["refused"], "failed": snap["failed"]},
        "series": [{k: (mib(v) if k in SIZES else v) for k, v in r.items()} for r in rows],
    }


def verdict(load, args, warmup, run_s, snap, exit_rc):
    """What failed, as sentences."""
    bad = []
    rows = load.rows
    late = [r for r in rows if r["t_s"] > warmup]
    warm = [r for r in rows if r["t_s"] <= warmup]
    if not load.alive:
        bad.append("the daemon died (exit %s)" % (exit_rc,))
    elif exit_rc != 0:
        bad.append("the daemon did not stop cleanly on SIGTERM: %s" % (exit_rc,))
    if load.wal_max > args.wal_bound_mib * MIB:
        bad.append("WAL reached %.1f MiB, bound %.0f MiB" % (load.wal_max / MIB, args.wal_bound_mib))
    if warm and late:
        rss_warm, rss_late = max(r["rss"] for r in warm), max(r["rss"] for r in late)
        if rss_late - rss_warm > args.rss_growth_mib * MIB:
            bad.append("RSS rose %.1f MiB after warm-up (%.1f -> %.1f MiB), bound %.0f MiB"
                       % ((rss_late - rss_warm) / MIB, rss_warm / MIB, rss_late / MIB,
                          args.rss_growth_mib))
        db_warm, db_late = warm[-1]["db"], max(r["db"] for r in late)
        if db_late > db_warm * (1 + args.db_growth_pct / 100):
            bad.append("database grew %.1f %% after warm-up (%.1f -> %.1f MiB), bound %.0f %%"
                       % ((db_late / db_warm - 1) * 100, db_warm / MIB, db_late / MIB,
                          args.db_growth_pct))
    elif not bad:
        bad.append("stopped too early to tell: %d samples in warm-up, %d after"
                   % (len(warm), len(late)))
    rate = load.acked() / run_s if run_s else 0
    if rate < args.rate * args.min_rate_pct / 100:
        bad.append("acknowledged %.0f updates/s, below %.0f %% of %d"
                   % (rate, args.min_rate_pct, args.rate))
    if snap["failed"] or snap["refused"]:
        bad.append("snapshots failed %d, refused %d" % (snap["failed"], snap["refused"]))
    return bad


def check_watchers(watchers):
    """Every watcher ended at the final head, none missed, repeated or
    reset, and each filtered one's account equals what `all` delivered
    that matches its filter."""
    bad = ["watcher %s: %s" % (n, e) for n, e in watchers.errors.items()]
    final = watchers.final
    for name in watchers.procs:
        w = final.get(name)
        if w is None:
            if name not in watchers.errors:
                bad.append("watcher %s: no final report" % name)
            continue
        if not w.get("reached_target"):
            bad.append("watcher %s: did not catch up with the head (V %s)" % (name, w.get("V")))
        for what in ("resets", "repeated", "missed"):
            if w.get(what):
                bad.append("watcher %s: %s %d" % (name, what, w[what]))
        if w.get("start_revision") not in (None, 0):
            bad.append("watcher %s: started at revision %s, not 0" % (name, w["start_revision"]))
    if "all" in final:
        done = final["all"]
        if done["delivered"]["n"] != done["V"]:
            bad.append("watcher all: delivered %d revisions of 1..%d"
                       % (done["delivered"]["n"], done["V"]))
        for name, want in done.get("accounts", {}).items():
            got = final.get(name, {}).get("delivered")
            if got is not None and (got["n"], got["sum"]) != (want["n"], want["sum"]):
                bad.append("watcher %s: delivered %d revisions (sum %d); of those `all` "
                           "delivered, %d match its filter (sum %d)"
                           % (name, got["n"], got["sum"], want["n"], want["sum"]))
    return bad


def finish_watchers(watchers, head):
    """`all` first, to the head; then the others: the psclient ones to
    the head too, the CLI ones (which do not say their V) to the last
    revision `all` saw that matches their filter."""
    if "all" in watchers.procs:
        watchers.finish(["all"], lambda n: head, 60)
    accounts = watchers.final.get("all", {}).get("accounts", {})
    others = [n for n in watchers.procs if n != "all"]
    watchers.finish(others, lambda n: (head if watchers.how[n] == "psclient"
                                       else accounts.get(n, {}).get("max", head)), 60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="build/bin/parksyncd")
    ap.add_argument("--cli", default="build/bin/parksync")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=2000, help="updates/s, both ministries together")
    ap.add_argument("--tick-ms", type=int, default=20,
                    help="each producer sends what is due this often, as one batch")
    ap.add_argument("--sample-s", type=float, default=10)
    ap.add_argument("--snapshot-s", type=float, default=30)
    ap.add_argument("--watchers", default=",".join(w[0] for w in WATCHERS),
                    help="which of %s run" % ", ".join(w[0] for w in WATCHERS))
    ap.add_argument("--warmup-pct", type=float, default=20)
    ap.add_argument("--warmup-min-s", type=float, default=60)
    ap.add_argument("--wal-bound-mib", type=float, default=128)
    ap.add_argument("--rss-growth-mib", type=float, default=16)
    ap.add_argument("--db-growth-pct", type=float, default=10)
    ap.add_argument("--min-rate-pct", type=float, default=90)
    ap.add_argument("--changelog-keep", type=int, default=50000)
    ap.add_argument("--conflicts-keep", type=int, default=10000)
    ap.add_argument("--keep-dir", action="store_true")
    args = ap.parse_args()

    duration = args.minutes * 60
    warmup = min(duration / 2, max(duration * args.warmup_pct / 100, args.warmup_min_s))
    names = [n for n in args.watchers.split(",") if n]
    out = {"minutes": args.minutes, "target_rate": args.rate, "tick_ms": args.tick_ms,
           "watchers": names, "retention": {"changelog_keep": args.changelog_keep,
                                            "conflicts_keep": args.conflicts_keep},
           "bounds": {"wal_mib": args.wal_bound_mib,
                      "rss_growth_after_warmup_mib": args.rss_growth_mib,
                      "db_growth_after_warmup_pct": args.db_growth_pct,
                      "min_rate_per_s": args.rate * args.min_rate_pct / 100,
                      "warmup_s": round(warmup)}}
    print("soak: %.0f s at %d updates/s, a row every %.0f s; bounds: %s"
          % (duration, args.rate, args.sample_s, json.dumps(out["bounds"])), flush=True)

    tmp = tempfile.mkdtemp(prefix="parksync-soak-months-")
    failures = []
    watchers = load = ctl = None
    stop_snap = threading.Event()
    snap = {"ms": [], "refused": 0, "failed": 0, "records": 0}
    d = psclient.Daemon(os.path.abspath(args.binary), tmp, {
        "store": {"changelog_keep": str(args.changelog_keep),
                  "conflicts_keep": str(args.conflicts_keep)},
        "limits": {"summary_republish_s": "60"},
        "ministry AZ-MOE": {"country": "AZ", "grants": "park:TJ"},
        "ministry TJ-MINT": {"country": "TJ", "grants": "park:AZ"},
    })
    try:
        proto_out = os.path.join(tmp, "proto-py")
        psclient.load_proto(PROTO_DIR, proto_out)
        d.start()
        rss_start = rss_kib(d.proc.pid)
        watchers = Watchers(d, names, os.path.abspath(args.cli), proto_out)
        if not watchers.wait_ready(60):
            raise RuntimeError("watchers did not start: %s" % watchers.errors)
        ctl = psclient.Control(d.control)
        load = Load(d, ctl, watchers, args)
        threading.Thread(target=snapshots, args=(d, stop_snap, args.snapshot_s, snap),
                         daemon=True).start()
        run_s = load.run(duration)
        stop_snap.set()

        if load.alive:
            unacked = load.drain(60)
            if unacked:
                failures.append("%d updates never acknowledged" % unacked)
            head = still_head(ctl)
            finish_watchers(watchers, head)
            out["final_status"] = final_status(ctl.status())
        rc, stop_s = stop_daemon(d)
        out["daemon_exit"] = {"code": rc, "seconds": stop_s}
        out["files_after_stop_mib"] = {"db": mib(file_size(d.database)),
                                       "wal": mib(file_size(d.database + "-wal")),
                                       "daemon_log": mib(file_size(d.log))}
        out.update(figures(load, warmup, run_s, snap, rss_start))
        out["watcher_reports"] = dict(watchers.final,
                                      **{n: {"error": e} for n, e in watchers.errors.items()})
        failures += verdict(load, args, warmup, run_s, snap, rc)
        failures += check_watchers(watchers)
    except BaseException as e:
        failures.append("soak aborted: %s: %s" % (type(e).__name__, e))
        raise
    finally:
        try:
            stop_snap.set()
            for closer in (ctl, load):
                if closer:
                    closer.close()
            if watchers:
                watchers.stop()
            if d.proc is not None:
                d.stop()
            out["failures"] = failures
            if failures:
                out["daemon_log_tail"] = d.tail(3000)
            print(json.dumps(out, indent=2, default=str), flush=True)
        finally:
            if args.keep_dir:
                print("soak: the daemon's directory is kept: %s" % tmp, file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL: " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
