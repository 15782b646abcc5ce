#!/usr/bin/python3
"""Three parksyncd sites as a distributed system, under faults.

    tests/federation/netns.py [--build build] [--seed N] [--events 60]

Each site runs in a network namespace of its own that this test makes
(psfed<PID>-a, -b, -c), joined to each other site by a veth pair; the
daemon listens on its namespace's address (10.77.0.1, .2, .3: ingest
7101, publish 7102, query 7103; control on ipc:// in the site's own
folder) and pulls from the other two (countries = *), except that site c
trusts site b with TJ only. Site a acknowledges after one peer
(ack_after = peers:1); b and c acknowledge locally.

In each namespace a producer (the Python client, with a durable outbox,
its own id) writes AZ and TJ parks, residents, trade reports and country
reports, most of them keys every producer writes, so the sites' merges
conflict; a subscriber records every record it is delivered, with its
revision, and keeps the picture its events make.

Faults, drawn from a seeded generator (the seed is printed; PARKSYNC_FED_SEED
or --seed replays the schedule), at least --events of them: a link between
two sites set down and up again (ip link), a one-way cut (an nftables rule
in one namespace: that site cannot pull from the other, which still pulls
from it), kill -9 of a daemon and its restart, and a disk wipe of site a
(kill -9, its database files removed, restarted empty). Then everything is
healed, the producers flush, and the checks run:

  converged   all three sites print the same `parksync digest`, each has
              pulled the others' heads, within a deadline (polled); then
              each pulls every peer twice more and makes no revision
  acked       every update a producer was told is acknowledged is in the
              picture, unless a newer write won (by the stamps' order)
  exact       the picture is the merge of every update written, field by
              field (value and provenance), at every site
  positions   every producer's position is the same at every site, and is
              what it sent last
  subscribers no revision delivered twice to a subscriber within one epoch
              (a wiped site's subscriber resets: a new epoch), and the
              picture each subscriber's events make is its site's snapshot
  trust       site c never took an AZ write from site b: b's AZ canary park
              stays out of c while c can only hear b (refused, listed in
              c's conflicts), every refusal c lists is b's and AZ's, and it
              arrives once c hears a again

Needs root, ip (iproute2) and network namespaces, and nft (nftables) for
the one-way cuts (without it, links only, said at the start); says SKIP,
with the reason, where namespaces cannot be made. Everything it makes
(namespaces, veths, nftables tables, processes, the temporary folder) is
removed on the way out, failure and SIGTERM included (KEEP=1 keeps the
folder). The seed replays the faults and the updates' choices, not the
timing: a failure that needs a race may take a few replays. Exit status 0 when every check
passed, 1 when one failed, 2 on a usage or set-up error.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.normpath(os.path.join(HERE, "..", ".."))
CLIENTS = os.path.join(HERE, "clients.py")
PYTHON = "/usr/bin/python3"

SITES = ("a", "b", "c")
ADDR = {"a": "10.77.0.1", "b": "10.77.0.2", "c": "10.77.0.3"}
PAIRS = (("a", "b"), ("a", "c"), ("b", "c"))
LINK_NET = {("a", "b"): "10.77.12", ("a", "c"): "10.77.13", ("b", "c"): "10.77.23"}
INGEST, PUBLISH, QUERY = 7101, 7102, 7103
WIPED = "a"  # the site with ack_after = peers:1, whose disk is wiped
TRUSTING, TRUSTED = "c", "b"  # c takes only TJ from b
PULL_WAIT_MS = 300
PEER_TIMEOUT_MS = 2000
CONVERGE_S = 120  # deadline for the sites to agree once healed
T0 = time.monotonic()


def say(msg):
    print("[federation %6.1fs] %s" % (time.monotonic() - T0, msg), flush=True)


def run(*args, check=True, quiet=False, timeout=30):
    r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode,
                                                r.stderr.strip() or r.stdout.strip()))
    if not quiet and r.returncode != 0:
        say("(%s: %s)" % (" ".join(args), r.stderr.strip()))
    return r


class Failed(Exception):
    pass


# ------------------------------------------------------------------ network

class Net:
    """The namespaces, their veth pairs and routes, and the faults on them."""

    def __init__(self, tag, nft):
        self.ns = {s: "psfed%s-%s" % (tag, s) for s in SITES}
        self.made = []
        self.nft = nft
        self.cuts = set()  # (x, y): x cannot pull from y
        self.down = set()  # pairs whose link is down

    def ip(self, site, *args, check=True):
        return run("ip", "-n", self.ns[site], *args, check=check)

    def create(self):
        for s in SITES:
            run("ip", "netns", "add", self.ns[s])
            self.made.append(self.ns[s])
            self.ip(s, "link", "set", "lo", "up")
            self.ip(s, "addr", "add", ADDR[s] + "/32", "dev", "lo")
            if self.nft:
                self.nft_run(s, "add table inet psfed")
                self.nft_run(s, "add chain inet psfed out "
                                "{ type filter hook output priority 0 ; policy accept ; }")
        for x, y in PAIRS:
            # veth "vy" in x's namespace, its peer "vx" in y's
            self.ip(x, "link", "add", "v" + y, "type", "veth", "peer", "name", "v" + x,
                    "netns", self.ns[y])
            net = LINK_NET[(x, y)]
            self.ip(x, "addr", "add", net + ".1/30", "dev", "v" + y)
            self.ip(y, "addr", "add", net + ".2/30", "dev", "v" + x)
            self.link_up(x, y)

    def routes(self, x, y):
        net = LINK_NET[(x, y)]
        self.ip(x, "route", "replace", ADDR[y] + "/32", "via", net + ".2", "dev", "v" + y,
                "src", ADDR[x])
        self.ip(y, "route", "replace", ADDR[x] + "/32", "via", net + ".1", "dev", "v" + x,
                "src", ADDR[y])

    def link_down(self, x, y):
        self.ip(x, "link", "set", "v" + y, "down")
        self.down.add((x, y))

    def link_up(self, x, y):
        self.ip(x, "link", "set", "v" + y, "up")
        self.ip(y, "link", "set", "v" + x, "up")
        # a device set down takes its routes with it
        self.routes(x, y)
        self.down.discard((x, y))

    def nft_run(self, site, rule):
        run("ip", "netns", "exec", self.ns[site], "nft", rule)

    def cut(self, x, y):
        """x cannot pull from y: x's packets to y's query port are dropped;
        y still pulls from x."""
        self.nft_run(x, "add rule inet psfed out ip daddr %s tcp dport %d drop comment \"%s\""
                     % (ADDR[y], QUERY, "cut-" + y))
        self.cuts.add((x, y))

    def uncut(self, x, y):
        r = run("ip", "netns", "exec", self.ns[x], "nft", "-a", "list", "chain", "inet",
                "psfed", "out")
        for line in r.stdout.splitlines():
            if '"cut-%s"' % y in line and "# handle" in line:
                handle = line.rsplit("# handle", 1)[1].strip()
                self.nft_run(x, "delete rule inet psfed out handle " + handle)
        self.cuts.discard((x, y))

    def heal(self):
        for x, y in sorted(self.cuts):
            self.uncut(x, y)
        for x, y in sorted(self.down):
            self.link_up(x, y)

    def destroy(self):
        # Deleting a namespace deletes its veths (and so their peers) and
        # its nftables tables.
        for ns in reversed(self.made):
            run("ip", "netns", "del", ns, check=False)
        self.made = []


# ------------------------------------------------------------------ sites

class Site:
    """One parksyncd in its namespace."""

    def __init__(self, name, root, net, build):
        self.name = name
        self.net = net
        self.build = build
        self.dir = os.path.join(root, name)
        self.rundir = os.path.join(self.dir, "run")
        os.makedirs(self.rundir, mode=0o700)
        os.chmod(self.dir, 0o700)
        os.chmod(self.rundir, 0o700)
        self.db = os.path.join(self.dir, "parksync.db")
        self.conf = os.path.join(self.dir, "parksyncd.conf")
        self.log = os.path.join(self.dir, "parksyncd.log")
        self.control = "ipc://%s/control" % self.rundir
        a = ADDR[name]
        self.ingest = "tcp://%s:%d" % (a, INGEST)
        self.publish = "tcp://%s:%d" % (a, PUBLISH)
        self.query = "tcp://%s:%d" % (a, QUERY)
        self.proc = None
        self.starts = 0
        self.write_config()

    def endpoints(self):
        return "%s,%s,%s" % (self.ingest, self.publish, self.query)

    def write_config(self):
        peers = ""
        for other in SITES:
            if other == self.name:
                continue
            trust = "TJ" if (self.name, other) == (TRUSTING, TRUSTED) else "*"
            peers += "[peer site-%s]\nendpoints = tcp://%s:%d\ncountries = %s\n\n" % (
                other, ADDR[other], QUERY, trust)
        with open(self.conf, "w") as f:
            f.write("[daemon]\ndatabase = %s\nlog_level = info\n\n"
                    "[endpoints]\ningest = %s\npublish = %s\nquery = %s\ncontrol = %s\n\n"
                    "[security]\nallow_insecure_remote = yes\n\n"
                    "[site]\nname = site-%s\nack_after = %s\npull_wait_ms = %d\n"
                    "peer_timeout_ms = %d\n\n%s"
                    % (self.db, self.ingest, self.publish, self.query, self.control,
                       self.name, "peers:1" if self.name == WIPED else "local", PULL_WAIT_MS,
                       PEER_TIMEOUT_MS, peers))

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        assert not self.running
        with open(self.log, "a") as log:
            log.write("---- start %d ----\n" % (self.starts + 1))
            log.flush()
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.net.ns[self.name],
                 os.path.join(self.build, "bin", "parksyncd"), "-c", self.conf],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1

    def wait_up(self, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not self.running:
                raise Failed("site %s exited (%s) at start; see %s"
                             % (self.name, self.proc.returncode, self.log))
            if self.cli("status", "--json", "--timeout", "1", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise Failed("site %s did not answer within %d s" % (self.name, timeout))

    def kill9(self):
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def wipe(self):
        self.kill9()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.db + suffix)
            except FileNotFoundError:
                pass

    def stop(self):
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()

    def cli(self, *args, check=True, timeout=30):
        return run(os.path.join(self.build, "bin", "parksync"), args[0], "--control",
                   self.control, *args[1:], check=check, quiet=True, timeout=timeout)

    def status(self):
        return json.loads(self.cli("status", "--json").stdout)

    def digest(self):
        return json.loads(self.cli("digest", "--json").stdout)

    def conflicts(self):
        out = self.cli("conflicts", timeout=120).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


# ------------------------------------------------------------------ clients

class Clients:
    """The producer and subscriber processes, in the sites' namespaces."""

    def __init__(self, root, net, sites, seed):
        self.root = root
        self.net = net
        self.sites = sites
        self.seed = seed
        self.procs = {}  # name -> (Popen, its output's file name)
        self.reported = set()  # clients whose early exit is told already
        self.logs = {}  # name -> the JSON lines it writes
        self.env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                        PARKSYNC_PROTO_CACHE=os.path.join(root, "proto-cache"))
        self.producer_stop = os.path.join(root, "producers.stop")

    def spawn(self, name, site, *args, log=None):
        out = os.path.join(self.root, name + ".out")
        if log:
            self.logs[name] = log
        with open(out, "w") as f:
            p = subprocess.Popen(["ip", "netns", "exec", self.net.ns[site], PYTHON, CLIENTS]
                                 + list(args), stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, env=self.env)
        self.procs[name] = (p, out)
        return p

    def producer_id(self, site):
        return "P-" + site.upper()

    def start_producers(self, rate):
        for s in SITES:
            pid = self.producer_id(s)
            log = os.path.join(self.root, pid + ".jsonl")
            self.spawn("producer-" + s, s, "producer", "--id", pid,
                       "--site", self.sites[s].endpoints(),
                       "--outbox", os.path.join(self.root, pid + ".outbox"),
                       "--log", log, "--stop", self.producer_stop, "--seed", str(self.seed),
                       "--rate", str(rate), log=log)

    def start_subscribers(self):
        for s in SITES:
            log = os.path.join(self.root, "sub-%s.jsonl" % s)
            self.spawn("subscriber-" + s, s, "subscriber", "--site", self.sites[s].endpoints(),
                       "--log", log, "--picture", os.path.join(self.root, "sub-%s.picture" % s),
                       "--stop", os.path.join(self.root, "sub-%s.stop" % s), log=log)

    def snapshot(self, s):
        out = os.path.join(self.root, "snap-%s.json" % s)
        p = self.spawn("snapshot-" + s, s, "snapshot", "--site", self.sites[s].endpoints(),
                       "--out", out)
        if wait_proc(p, 120) != 0:
            raise Failed("snapshot of site %s failed: %s"
                         % (s, tail(self.procs["snapshot-" + s][1])))
        with open(out) as f:
            return json.load(f)

    def why(self, name):
        """What a client said last: its output, and its log's last line
        (with a hint when it is a bug met before)."""
        text = tail(self.procs[name][1], 10)
        if name in self.logs:
            last = tail(self.logs[name], 1)
            text += last
            if "ahead:" in last:
                text += ("(a position site %s acknowledged is gone after its wipe: as in "
                         "tests/test_federation.c, with_peers_1_an_acknowledged_position_"
                         "survives_a_disk)\n" % WIPED)
        return text

    def died(self):
        """The clients that exited while they should run, each once."""
        dead = [n for n, (p, _) in self.procs.items() if p.poll() is not None
                and n.startswith(("producer", "subscriber")) and n not in self.reported]
        self.reported.update(dead)
        return dead

    def kill_all(self):
        for name, (p, _) in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def wait_proc(p, timeout):
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no %s)" % path


def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut by the end of the process
    return out


# ------------------------------------------------------------------ faults

class Faults:
    """The seeded schedule: one fault event at a time, a pause between
    them; kill -9 restarts come due as events of their own."""

    def __init__(self, rng, net, sites, events, nft):
        self.rng = rng
        self.net = net
        self.sites = sites
        self.events = events
        self.nft = nft
        self.counts = {}
        self.n = 0
        self.restart_at = {}  # site -> monotonic time its daemon comes back
        # the wipes of site a: early enough that the faults go on after
        self.wipe_at = sorted(rng.sample(range(events // 4, 3 * events // 4), 2))

    def count(self, what, detail):
        self.n += 1
        self.counts[what] = self.counts.get(what, 0) + 1
        say("fault %3d: %s" % (self.n, detail))

    def restart_due(self):
        now = time.monotonic()
        for s, at in sorted(self.restart_at.items()):
            if at <= now:
                del self.restart_at[s]
                self.sites[s].start()
                self.count("restart", "site %s restarted" % s)

    def step(self):
        rng = self.rng
        if self.wipe_at and self.n >= self.wipe_at[0] and self.sites[WIPED].running:
            # (while the site is down, the wipe waits for its restart)
            self.wipe_at.pop(0)
            self.sites[WIPED].wipe()
            self.restart_at[WIPED] = time.monotonic() + rng.uniform(0.5, 3.0)
            self.count("wipe", "site %s: kill -9, database removed (restarts empty)" % WIPED)
            return
        choices = []
        up = [p for p in PAIRS if p not in self.net.down]
        if up:
            choices += [("link_down", 3)]
        if self.net.down:
            choices += [("link_up", 3)]
        if self.nft:
            free = [(x, y) for x in SITES for y in SITES if x != y and (x, y) not in self.net.cuts]
            if free:
                choices += [("cut", 2)]
            if self.net.cuts:
                choices += [("uncut", 2)]
        running = [s for s in SITES if self.sites[s].running]
        if len(running) >= 2:
            choices += [("kill", 2)]
        what = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        if what == "link_down":
            x, y = rng.choice(up)
            self.net.link_down(x, y)
            self.count(what, "link %s-%s down" % (x, y))
        elif what == "link_up":
            x, y = rng.choice(sorted(self.net.down))
            self.net.link_up(x, y)
            self.count(what, "link %s-%s up" % (x, y))
        elif what == "cut":
            x, y = rng.choice(free)
            self.net.cut(x, y)
            self.count(what, "one-way cut: %s cannot pull from %s (%s still pulls from %s)"
                       % (x, y, y, x))
        elif what == "uncut":
            x, y = rng.choice(sorted(self.net.cuts))
            self.net.uncut(x, y)
            self.count(what, "cut %s->%s removed" % (x, y))
        else:
            s = rng.choice(running)
            self.sites[s].kill9()
            self.restart_at[s] = time.monotonic() + rng.uniform(0.3, 4.0)
            self.count("kill", "site %s: kill -9" % s)

    def run(self, clients, errors):
        """Runs the schedule; a client that dies meanwhile is an error,
        and the run goes on so that the other checks still say what they
        find."""
        while self.n < self.events:
            pause = self.rng.uniform(0.4, 2.4)
            end = time.monotonic() + pause
            while time.monotonic() < end:
                self.restart_due()
                for name in clients.died():
                    errors.append("%s exited during the faults: %s"
                                  % (name, clients.why(name).strip()))
                    say("FAIL: " + errors[-1])
                for s in SITES:
                    if self.sites[s].proc is not None and self.sites[s].proc.poll() not in (
                            None, -signal.SIGKILL):
                        raise Failed("site %s exited by itself (%s); see %s"
                                     % (s, self.sites[s].proc.returncode, self.sites[s].log))
                time.sleep(0.05)
            self.step()

    def heal(self):
        self.net.heal()
        for s in SITES:
            if not self.sites[s].running:
                self.restart_at.pop(s, None)
                self.sites[s].start()
                self.count("restart", "site %s restarted (heal)" % s)
        for s in SITES:
            self.sites[s].wait_up()


# ------------------------------------------------------------------ checks

def stamp(w):
    """The merge order of a write's stamp: FINAL first, then event time,
    producer id, sequence (store/stamp.c)."""
    return (1 if w["fin"] else 0, w["t"], w["pid"], w["s"])


def load_writes(root, producers):
    """Every write the producers logged, and where each producer ended:
    its final line, else its last position logged."""
    writes, finals = [], {}
    for pid in producers:
        for e in read_jsonl(os.path.join(root, pid + ".jsonl")):
            if "s" in e:
                e["pid"] = pid
                writes.append(e)
            elif "acked" in e and not finals.get(pid, {}).get("final"):
                finals[pid] = e
    return writes, finals


def model(writes):
    """The picture every site must hold: key -> {field: winning write},
    for the keys that are live."""
    by_key = {}
    for w in writes:
        by_key.setdefault(json.dumps(w["key"]), []).append(w)
    out = {}
    for key, ws in by_key.items():
        deletes = [stamp(w) for w in ws if w.get("del")]
        tomb = max(deletes) if deletes else None
        live = [w for w in ws if not w.get("del") and (tomb is None or stamp(w) > tomb)]
        if not live:
            continue
        fields = {}
        for w in live:
            for f in w["f"]:
                if f not in fields or stamp(w) > stamp(fields[f]):
                    fields[f] = w
        out[key] = fields
    return out, by_key


def check_exact(snap, expect, site):
    errors = []
    recs = {k: v for k, v in snap["records"].items() if json.loads(k)[0] != "summary"}
    for key, fields in sorted(expect.items()):
        r = recs.get(key)
        if r is None:
            errors.append("site %s: %s missing (expected from %s)"
                          % (site, key, sorted({(w["pid"], w["s"]) for w in fields.values()})))
            continue
        for f, w in sorted(fields.items()):
            got = r["prov"].get(f)
            if got != [w["pid"], w["s"]] or r["fields"].get(f) != w["f"][f]:
                errors.append("site %s: %s.%s is %r from %s, expected %r from %s#%d"
                              % (site, key, f, r["fields"].get(f), got, w["f"][f], w["pid"],
                                 w["s"]))
        extra = set(r["prov"]) - set(fields)
        if extra:
            errors.append("site %s: %s has fields no write explains: %s"
                          % (site, key, sorted(extra)))
    for key in sorted(set(recs) - set(expect)):
        errors.append("site %s: %s is live, and no write makes it so" % (site, key))
    return errors


def check_acked(snap, by_key, acked, site):
    """Every acknowledged write is in the picture unless a newer one won."""
    errors = []
    by_id = {(w["pid"], w["s"]): w for ws in by_key.values() for w in ws}
    for key, ws in by_key.items():
        r = snap["records"].get(key)
        newest_delete = max([stamp(w) for w in ws if w.get("del")], default=None)
        for w in ws:
            if w["s"] > acked.get(w["pid"], 0):
                continue
            if w.get("del"):
                for f, who in (r["prov"].items() if r else ()):
                    winner = by_id.get(tuple(who))
                    if winner is None or stamp(winner) < stamp(w):
                        errors.append("site %s: acknowledged delete %s#%d of %s lost: %s is "
                                      "still from %s" % (site, w["pid"], w["s"], key, f, who))
                continue
            for f in w["f"]:
                who = r["prov"].get(f) if r else None
                if who is None:
                    if newest_delete is None or newest_delete < stamp(w):
                        errors.append("site %s: acknowledged write %s#%d of %s.%s lost (no "
                                      "value, no newer delete)" % (site, w["pid"], w["s"], key, f))
                    continue
                winner = by_id.get(tuple(who))
                if winner is None:
                    errors.append("site %s: %s.%s comes from %s, which no producer wrote"
                                  % (site, key, f, who))
                elif stamp(winner) < stamp(w):
                    errors.append("site %s: acknowledged write %s#%d of %s.%s lost to the "
                                  "older %s#%d" % (site, w["pid"], w["s"], key, f, winner["pid"],
                                                   winner["s"]))
    return errors


def check_subscriber(root, s, snap):
    """No revision twice within an epoch; the picture is the snapshot."""
    errors = []
    seen, segment, resets, records, dups = set(), 0, 0, 0, 0
    stats = {}
    for e in read_jsonl(os.path.join(root, "sub-%s.jsonl" % s)):
        if e["e"] == "reset":
            segment += 1
            resets += 1
            seen = set()
        elif e["e"] == "r":
            records += 1
            if e["rev"] in seen:
                dups += 1
                if dups <= 5:
                    errors.append("subscriber %s: revision %d (%s) delivered twice in epoch %s"
                                  % (s, e["rev"], e["k"], e["ep"]))
            seen.add(e["rev"])
        elif e["e"] == "error":
            errors.append("subscriber %s: %s" % (s, e["why"]))
        elif e["e"] == "stats":
            stats = e
    if dups > 5:
        errors.append("subscriber %s: %d revisions delivered twice in all" % (s, dups))
    try:
        with open(os.path.join(root, "sub-%s.picture" % s)) as f:
            pic = json.load(f)
    except OSError:
        errors.append("subscriber %s: no picture written" % s)
        return errors, resets, records, stats
    want = {k: v["body"] for k, v in snap["records"].items()}
    got = pic["picture"]
    if pic["epoch"] != snap["epoch"]:
        errors.append("subscriber %s: ended in epoch %s, its site is in %s"
                      % (s, pic["epoch"], snap["epoch"]))
    diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    for k in diff[:5]:
        errors.append("subscriber %s: its picture differs from site %s's snapshot at %s: %s"
                      % (s, s, k, "missing" if k not in got else "extra" if k not in want
                         else "another body"))
    if len(diff) > 5:
        errors.append("subscriber %s: %d records differ in all" % (s, len(diff)))
    return errors, resets, records, stats


# ------------------------------------------------------------------ phases

def wait_converged(sites, producers, deadline_s):
    """Polls until every site has the same digest, has pulled each peer's
    head, and knows every producer's position as the producers left it.
    Returns the digests; raises Failed at the deadline."""
    end = time.monotonic() + deadline_s
    why = "nothing asked yet"
    while time.monotonic() < end:
        try:
            d = {s: sites[s].digest() for s in SITES}
            st = {s: sites[s].status() for s in SITES}
        except RuntimeError as e:
            why = str(e)
            time.sleep(0.2)
            continue
        heads = {"site-" + s: d[s]["head_revision"] for s in SITES}
        digests = {d[s]["digest"] for s in SITES}
        behind = ["%s pulled %s to %s of %s" % (s, p["name"], p.get("revision"), heads[p["name"]])
                  for s in SITES for p in st[s]["peers"] if p.get("revision") != heads[p["name"]]]
        pos = {s: {p["producer_id"]: p["last_sequence"] for p in st[s]["producers"]}
               for s in SITES}
        off = ["%s has %s at %s, not %s" % (s, pid, pos[s].get(pid), seq)
               for s in SITES for pid, seq in producers.items() if pos[s].get(pid) != seq]
        if len(digests) == 1 and not behind and not off:
            return d, st
        why = "digests %s; %s" % (
            ", ".join("%s %s@%d" % (s, d[s]["digest"][:12], d[s]["head_revision"]) for s in SITES),
            "; ".join((behind + off)[:4]) or "all pulled")
        time.sleep(0.2)
    raise Failed("the sites did not converge within %d s: %s" % (deadline_s, why))


def wait_settled(sites, digests, deadline_s):
    """Once converged, every site pulls each peer twice more and makes no
    revision: what comes back to where it was made changes nothing there.
    Returns the errors."""
    def pulls():
        return {(s, p["name"]): p.get("pulls", 0)
                for s in SITES for p in sites[s].status()["peers"]}
    before = pulls()
    end = time.monotonic() + deadline_s
    while any(n < before[k] + 2 for k, n in pulls().items()):
        if time.monotonic() > end:
            return ["settled: the sites did not pull twice more within %d s" % deadline_s]
        time.sleep(0.2)
    errors = []
    for s in SITES:
        d = sites[s].digest()
        if (d["head_revision"], d["digest"]) != (digests[s]["head_revision"],
                                                  digests[s]["digest"]):
            errors.append("settled: site %s went from revision %d to %d with nothing new to merge "
                          "(ping-pong)" % (s, digests[s]["head_revision"], d["head_revision"]))
    return errors


def trust_canary(net, sites, clients, root):
    """Site c hears only b: b's AZ canary park must not reach c, its TJ
    canary must. Then c hears a again and gets the AZ park from a."""
    errors = []
    net.link_down("a", "c")
    log = os.path.join(root, "CANARY.jsonl")
    refused_before = {p["name"]: p.get("refused", 0) for p in sites[TRUSTING].status()["peers"]}
    # AZ first, TJ in a later commit: once c holds the TJ park, it has
    # been offered the AZ one
    p = clients.spawn("canary", TRUSTED, "push", "--id", "CANARY", "--site",
                      sites[TRUSTED].endpoints(), "--log", log, "--parks", "AZ-CANARY,TJ-CANARY")
    if wait_proc(p, 60) != 0:
        raise Failed("the canary producer failed: %s" % tail(clients.procs["canary"][1]))
    end = time.monotonic() + 30
    while True:
        snap = clients.snapshot(TRUSTING)
        keys = set(snap["records"])
        if json.dumps(["park", "TJ", "TJ-CANARY"]) in keys:
            break
        if time.monotonic() > end:
            raise Failed("site %s never got site %s's TJ canary park" % (TRUSTING, TRUSTED))
        time.sleep(0.3)
    if json.dumps(["park", "AZ", "AZ-CANARY"]) in keys:
        errors.append("trust: site %s took site %s's AZ canary park while it could hear only "
                      "%s (countries = TJ)" % (TRUSTING, TRUSTED, TRUSTED))
    st = sites[TRUSTING].status()
    refused = {p["name"]: p.get("refused", 0) for p in st["peers"]}
    if refused.get("site-" + TRUSTED, 0) <= refused_before.get("site-" + TRUSTED, 0):
        errors.append("trust: site %s's refused count for site %s did not grow with the AZ "
                      "canary (%s)" % (TRUSTING, TRUSTED, refused))
    canary = [c for c in sites[TRUSTING].conflicts() if c.get("key") == "AZ/AZ-CANARY"]
    want = "not authoritative: peer site-%s may not bring park AZ" % TRUSTED
    if not any(c.get("reason") == want for c in canary):
        errors.append("trust: site %s lists no '%s' for AZ/AZ-CANARY (%s)"
                      % (TRUSTING, want, [c.get("reason") for c in canary]))
    net.link_up("a", "c")
    return errors


def check_conflicts(sites):
    """Every refusal of a peer's write at c is b's, and for AZ."""
    errors = []
    n = 0
    for c in sites[TRUSTING].conflicts():
        reason = c.get("reason", "")
        if not reason.startswith("not authoritative: peer"):
            if "from peer" in reason:
                errors.append("trust: site %s lists %s" % (TRUSTING, reason))
            continue
        n += 1
        if not reason.startswith("not authoritative: peer site-%s may not bring " % TRUSTED) \
                or not reason.endswith(" AZ"):
            errors.append("trust: site %s refused what it trusts: %s (%s)"
                          % (TRUSTING, reason, c.get("key")))
    for s in SITES:
        if s == TRUSTING:
            continue
        for c in sites[s].conflicts():
            if "peer" in c.get("reason", ""):
                errors.append("trust: site %s, which trusts every peer with every country, "
                              "lists %s" % (s, c["reason"]))
                break
    return errors, n


# ------------------------------------------------------------------ main

def can_make_namespaces():
    probe = "psfedprobe%d" % os.getpid()
    r = run("ip", "netns", "add", probe, check=False, quiet=True)
    if r.returncode != 0:
        return "ip netns add failed: %s" % r.stderr.strip()
    r = run("ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            check=False, quiet=True)
    run("ip", "netns", "del", probe, check=False, quiet=True)
    if r.returncode != 0:
        return "cannot make a veth pair in a namespace: %s" % r.stderr.strip()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(SRC, "build"),
                    help="the build folder with bin/parksyncd and bin/parksync (release)")
    ap.add_argument("--seed", type=int, default=None,
                    help="fault and workload seed (default: $PARKSYNC_FED_SEED, else random)")
    ap.add_argument("--events", type=int, default=int(os.environ.get("PARKSYNC_FED_EVENTS", 60)),
                    help="fault events, at least (default 60)")
    ap.add_argument("--rate", type=float, default=25.0, help="updates per second per producer")
    a = ap.parse_args()

    seed = a.seed
    if seed is None and os.environ.get("PARKSYNC_FED_SEED"):
        seed = int(os.environ["PARKSYNC_FED_SEED"])
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1 << 31)
    say("seed %d (replay: PARKSYNC_FED_SEED=%d make federation-test)" % (seed, seed))

    if os.geteuid() != 0:
        print("tests/federation/netns.py: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not shutil.which("ip"):
        say("SKIP: no ip (iproute2): the federation test did not run")
        return 0
    why = can_make_namespaces()
    if why:
        say("SKIP: %s: the federation test did not run" % why)
        return 0
    for b in ("parksyncd", "parksync"):
        if not os.access(os.path.join(a.build, "bin", b), os.X_OK):
            print("tests/federation/netns.py: no %s/bin/%s (make build)" % (a.build, b),
                  file=sys.stderr)
            return 2
    nft = shutil.which("nft") is not None
    if not nft:
        say("no nft (nftables): no one-way cuts this run, links only "
            "(make federation-test installs it)")

    rng = random.Random(seed)
    root = tempfile.mkdtemp(prefix="parksync-fed-")
    net = Net(str(os.getpid()), nft)
    sites = {}
    clients = None
    failed = True
    verdict = []  # what failed, said again after the sites' logs, where CI's tail shows it

    def on_signal(signum, frame):
        raise SystemExit("stopped by signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        net.create()
        say("namespaces %s; sites at %s; site %s acks after peers:1, site %s takes only TJ "
            "from site %s" % (", ".join(net.ns[s] for s in SITES),
                              ", ".join(ADDR[s] for s in SITES), WIPED, TRUSTING, TRUSTED))
        for s in SITES:
            sites[s] = Site(s, root, net, a.build)
            sites[s].start()
        for s in SITES:
            sites[s].wait_up()
        clients = Clients(root, net, sites, seed)
        clients.start_subscribers()
        clients.start_producers(a.rate)
        time.sleep(2.0)  # traffic before the first fault; not a synchronisation

        errors = []
        faults = Faults(rng, net, sites, a.events, nft)
        t_faults = time.monotonic()
        faults.run(clients, errors)
        faults.heal()
        say("healed after %d fault events in %.0f s: %s" % (
            faults.n, time.monotonic() - t_faults,
            ", ".join("%s %d" % kv for kv in sorted(faults.counts.items()))))

        # the producers stop writing and flush what they hold
        with open(clients.producer_stop, "w"):
            pass
        producers = {}  # producer id -> its position, for those that ended well
        for s in SITES:
            pid = clients.producer_id(s)
            rc = wait_proc(clients.procs["producer-" + s][0], 180)
            if rc == 0:
                producers[pid] = None
            elif "producer-" + s not in clients.reported:
                errors.append("producer %s did not end well (%s): %s"
                              % (pid, rc, clients.why("producer-" + s).strip()))
                say("FAIL: " + errors[-1])
        writes, finals = load_writes(root, [clients.producer_id(s) for s in SITES])
        for pid in producers:
            producers[pid] = finals[pid]["sent"]
        say("producers flushed: %s" % ", ".join(
            "%s sent %d, acked %d, resent %d%s" % (
                pid, f["sent"], f["acked"], f.get("resends", 0),
                "" if pid in producers else " (failed)") for pid, f in sorted(finals.items())))

        errors += trust_canary(net, sites, clients, root)
        canary, cfinal = load_writes(root, ["CANARY"])
        writes += canary
        finals.update(cfinal)
        producers["CANARY"] = cfinal["CANARY"]["sent"]

        digests, status = wait_converged(sites, producers, CONVERGE_S)
        say("converged: digest %s at heads %s" % (
            digests["a"]["digest"][:16],
            ", ".join("%s %d" % (s, digests[s]["head_revision"]) for s in SITES)))

        errors += wait_settled(sites, digests, 30)
        for s in SITES:
            with open(os.path.join(root, "sub-%s.stop" % s), "w") as f:
                json.dump({"epoch": digests[s]["epoch"], "head": digests[s]["head_revision"]}, f)
        snaps = {s: clients.snapshot(s) for s in SITES}
        expect, by_key = model(writes)
        acked = {pid: f["acked"] for pid, f in finals.items()}
        for s in SITES:
            if len(producers) == len(SITES) + 1:  # the picture of every write, all acknowledged
                errors += check_exact(snaps[s], expect, s)[:20]
            errors += check_acked(snaps[s], by_key, acked, s)[:20]
        if len(producers) < len(SITES) + 1:
            say("exact: not checked, a producer failed (what it acknowledged still is)")
        for s in SITES:
            p, out = clients.procs["subscriber-" + s]
            if wait_proc(p, 90) is None:
                errors.append("subscriber %s did not end" % s)
                continue
            errs, resets, records, stats = check_subscriber(root, s, snaps[s])
            errors += errs
            say("subscriber %s: %d records, %d resets, gaps %s, resyncs %s, restarts seen %s"
                % (s, records, resets, stats.get("gaps"), stats.get("resyncs"),
                   stats.get("restarts")))
            if s == WIPED and faults.counts.get("wipe") and resets == 0:
                errors.append("subscriber %s: its site was wiped, and it never reset" % s)
        cerrs, refusals = check_conflicts(sites)
        errors += cerrs
        peers_c = {p["name"]: p for p in status[TRUSTING]["peers"]}
        say("trust: site %s refused %d writes from site %s since its last start; %d listed"
            % (TRUSTING, peers_c["site-" + TRUSTED].get("refused", 0), TRUSTED, refusals))
        if not faults.counts.get("wipe"):
            errors.append("site %s was never wiped" % WIPED)
        if faults.n < 50:
            errors.append("only %d fault events (at least 50)" % faults.n)
        say("%d writes by %d producers, %d keys, %d live records per site"
            % (len(writes), len(producers), len(by_key), len(snaps["a"]["records"])))
        if errors:
            for e in errors:
                say("FAIL: " + e)
            verdict += errors
            raise Failed("%d check%s failed (seed %d)" % (len(errors), "s" * (len(errors) > 1),
                                                          seed))
        say("PASS: converged, nothing acknowledged lost, the picture exact, positions agree, "
            "subscribers saw each revision once, trust kept (%d fault events: %s; seed %d)"
            % (faults.n, ", ".join("%s %d" % kv for kv in sorted(faults.counts.items())), seed))
        failed = False
    except Failed as e:
        say("FAIL: %s" % e)
        verdict.append(str(e))
    except Exception as e:  # set-up trouble: still clean up, and say where
        import traceback
        traceback.print_exc()
        say("FAIL: %s: %s (seed %d)" % (type(e).__name__, e, seed))
        verdict.append("%s: %s (seed %d)" % (type(e).__name__, e, seed))
    finally:
        if clients:
            clients.kill_all()
        for s in sites.values():
            s.stop()
        if failed:
            for s in sites.values():
                say("site %s's log ends:\n%s" % (s.name, tail(s.log, 25)))
            for v in verdict[:12]:
                say("FAIL (again, after the logs): " + v)
            if len(verdict) > 12:
                say("FAIL (again): and %d more above" % (len(verdict) - 12))
        net.destroy()
        if os.environ.get("KEEP") == "1":
            say("kept %s" % root)
        else:
            shutil.rmtree(root, ignore_errors=True)
        say("run took %.0f s" % (time.monotonic() - T0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
