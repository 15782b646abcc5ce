#!/usr/bin/python3
"""Every exhaustion attack at once, for minutes, against a daemon under
steady ingest: does it stay up, bounded, and serving?

    tests/soak/soak.py [--binary build/bin/parksyncd] [--seconds 150]
                       [--rss-bound-mib 256] [--records 20000]

The daemon runs on ipc:// endpoints in a temporary directory, with one
ministry (AZ-MOE, country AZ) so that every other producer id is
refused, and the metrics HTTP endpoint on a free loopback port. Attacks
(each a thread, all at once, from the review that filed the
exhaustion issue):

  idle        1,100 connections to ingest that never speak, reopened
  bigsub      SUB sockets subscribing 800 topics of 32 KiB, reconnecting
  hbflood     an XSUB sending "\\x01hb/" in a loop, never reading
  streams     a DEALER asking 64 snapshots with credit 1, chunk 1
  nonreader   two DEALERs granting credit and never reading
  producers   updates from ever new producer ids, padded with 15 KiB of
              unknown fields (refused: no ministry speaks for them)
  http        24 slow connections to the metrics port

Canaries measure the service meanwhile: AZ-MOE pushes one park every
50 ms and waits for its ack; a live subscriber must see every canary
park; a full snapshot every 3 s; a metrics scrape every 5 s. The
daemon's RSS is sampled every second.

Prints one JSON object with the figures; exits 1 when the daemon died,
its RSS passed the bound, or a canary lost service (an ack over 1 s or
missing, a canary park not delivered, a snapshot failed or refused BUSY).
"""

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
import psclient  # noqa: E402
from psclient import pb  # noqa: E402,F401  (set by load_proto)
from soakutil import pct, rss_kib  # noqa: E402

import zmq  # noqa: E402

stop = threading.Event()
figures = {}
lock = threading.Lock()


def count(name, n=1):
    with lock:
        figures[name] = figures.get(name, 0) + n


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def padded(update, pad_bytes):
    """The update with an unknown length-delimited field 1000 of pad_bytes."""
    return (update.SerializeToString() + varint((1000 << 3) | 2)
            + varint(pad_bytes) + os.urandom(pad_bytes))


def sock(kind, **opts):
    s = psclient.ctx().socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    for k, v in opts.items():
        s.setsockopt(getattr(zmq, k), v)
    return s


# ------------------------------------------------------------------ attacks

def attack_idle(d):
    path = d.ingest[len("ipc://"):]
    conns = []
    while not stop.is_set():
        live = []
        for c in conns:
            try:
                c.setblocking(False)
                if c.recv(4096) == b"":
                    c.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                c.close()
                continue
            live.append(c)
        conns = live
        while len(conns) < 1100 and not stop.is_set():
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                c.connect(path)
            except OSError:
                c.close()
                break
            conns.append(c)
            count("idle_opened")
        stop.wait(1.0)
    for c in conns:
        c.close()


def attack_bigsub(d):
    # 32 KiB topics, not the review's 1 MiB: libzmq's own subscription
    # trie recurses once per byte, and a 1 MiB topic overflows the
    # attacker's I/O thread stack before the daemon sees it.
    topic = b"rec/" + b"x" * (32 << 10)
    while not stop.is_set():
        s = sock(zmq.SUB)
        s.connect(d.publish)
        for i in range(800):
            s.setsockopt(zmq.SUBSCRIBE, topic[:-8] + b"%08d" % i)
        count("bigsub_rounds")
        stop.wait(1.0)
        s.close()


def attack_hbflood(d):
    s = sock(zmq.XSUB, SNDHWM=0)
    s.connect(d.publish)
    while not stop.is_set():
        try:
            s.send(b"\x01hb/", zmq.DONTWAIT)
            count("hbflood_sent")
        except zmq.Again:
            time.sleep(0.001)
    s.close()


def attack_streams(d):
    while not stop.is_set():
        s = sock(zmq.DEALER)
        s.connect(d.query)
        for rid in range(1, 65):
            req = pb.QueryRequest(version=1, request_id=rid,
                                  snapshot=pb.SnapshotRequest(credit=1, chunk_records=1))
            s.send(req.SerializeToString())
        count("streams_asked", 64)
        stop.wait(10.0)
        s.close()


def attack_nonreader(d, who):
    while not stop.is_set():
        s = sock(zmq.DEALER, RCVHWM=1, RCVBUF=4096)
        s.connect(d.query)
        req = pb.QueryRequest(version=1, request_id=1,
                              snapshot=pb.SnapshotRequest(credit=64, chunk_records=4096))
        s.send(req.SerializeToString())
        t_end = time.time() + 20
        while time.time() < t_end and not stop.is_set():
            grant = pb.QueryRequest(version=1, request_id=1, credit=pb.Credit(chunks=64))
            try:
                s.send(grant.SerializeToString(), zmq.DONTWAIT)
                count("nonreader_grants")
            except zmq.Again:
                pass
            stop.wait(0.1)
        s.close()


def attack_producers(d):
    s = sock(zmq.PUB, SNDHWM=1000)
    s.connect(d.ingest)
    n = 0
    while not stop.is_set():
        n += 1
        u = psclient.park_update("ROGUE-%d" % n, 1, "AZ", "AZ-ROGUE-%d" % (n % 1000))
        try:
            s.send_multipart([b"park", padded(u, 15 * 1024)], zmq.DONTWAIT)
            count("producer_ids_sent")
        except zmq.Again:
            time.sleep(0.001)
        if n % 200 == 0:
            time.sleep(0.01)  # leave the CPU to the daemon and the canaries
    s.close()


def attack_http(port):
    conns = []
    while not stop.is_set():
        conns = [c for c in conns if c.fileno() >= 0]
        while len(conns) < 24:
            c = socket.socket()
            try:
                c.connect(("127.0.0.1", port))
                c.sendall(b"GET /metr")
            except OSError:
                c.close()
                break
            conns.append(c)
            count("http_slow_opened")
        for c in list(conns):
            try:
                c.setblocking(False)
                if c.recv(4096) == b"":
                    c.close()
                    conns.remove(c)
            except BlockingIOError:
                pass
            except OSError:
                c.close()
                conns.remove(c)
        stop.wait(0.5)
    for c in conns:
        c.close()


# ------------------------------------------------------------------ canaries

ack_ms, snap_ms, scrape_ms = [], [], []
canary_sent = []


def canary_ingest(d, seq, ready):
    p = psclient.Producer(d, "AZ-MOE")
    ready.set()
    while not stop.is_set():
        seq += 1
        pid = "AZ-CANARY-%d" % seq
        t0 = time.time()
        p.send(psclient.park_update("AZ-MOE", seq, "AZ", pid, name="canary"))
        try:
            p.wait_ack(seq, timeout=5.0)
            ack_ms.append((time.time() - t0) * 1000)
            canary_sent.append(pid)
        except AssertionError:
            count("canary_ack_missing")
        stop.wait(0.05)
    p.close()


def canary_subscriber(d, seen, ready):
    s = sock(zmq.SUB, RCVHWM=100000)
    s.connect(d.publish)
    s.setsockopt(zmq.SUBSCRIBE, b"rec/park/AZ")
    s.setsockopt(zmq.SUBSCRIBE, b"hb/")  # last: its welcome says both are active
    s.poll(10000)
    ready.set()
    while not stop.is_set() or s.poll(1000):
        if not s.poll(200):
            continue
        topic, data = s.recv_multipart()
        p = pb.Publication()
        p.ParseFromString(data)
        if p.WhichOneof("body") == "record" and p.record.HasField("park"):
            seen.add(p.record.park.park_id)
    s.close()


def canary_snapshot(d):
    q = psclient.Query(d.query)
    while not stop.is_set():
        t0 = time.time()
        try:
            chunks, err = q.snapshot(credit=8, chunk_records=1024, timeout=10.0,
                                     filter=pb.Filter(kind=1))
            if err is not None:
                count("snapshot_refused")
            else:
                snap_ms.append((time.time() - t0) * 1000)
        except (TimeoutError, AssertionError):
            count("snapshot_failed")
            q.close()
            q = psclient.Query(d.query)
        stop.wait(3.0)
    q.close()


def canary_scrape(port):
    while not stop.is_set():
        t0 = time.time()
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
                r.read()
            scrape_ms.append((time.time() - t0) * 1000)
        except OSError:
            count("scrape_failed")
        stop.wait(5.0)


# ------------------------------------------------------------------ main

def preload(d, records):
    p = psclient.Producer(d, "AZ-MOE")
    seq = 0
    while seq < records:
        batch = []
        for _ in range(min(500, records - seq)):
            seq += 1
            batch.append(psclient.park_update("AZ-MOE", seq, "AZ", "AZ-PRE-%d" % seq,
                                              name="preloaded park %d" % seq))
        p.send_batch(batch)
        p.wait_ack(seq, timeout=60)
    p.close()
    return seq


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default="build/bin/parksyncd")
    ap.add_argument("--seconds", type=int, default=150)
    ap.add_argument("--rss-bound-mib", type=int, default=256)
    ap.add_argument("--records", type=int, default=20000)
    args = ap.parse_args()

    psclient.load_proto(os.path.join(HERE, "..", "..", "proto"))
    global pb
    pb = psclient.pb
    tmp = tempfile.mkdtemp(prefix="parksync-soak-")
    port = free_port()
    d = psclient.Daemon(os.path.abspath(args.binary), tmp, {
        "metrics": {"http": "127.0.0.1:%d" % port},
        "ministry AZ-MOE": {"country": "AZ"},
    })
    d.start()
    pid = d.proc.pid
    base_rss = rss_kib(pid)
    preload_seq = preload(d, args.records)
    loaded_rss = rss_kib(pid)

    seen = set()
    # the well-behaved clients connect first; the attacks then try to
    # take their service away
    ready = [threading.Event(), threading.Event()]
    canaries = [threading.Thread(target=f, args=a, daemon=True) for f, a in [
        (canary_subscriber, (d, seen, ready[0])), (canary_ingest, (d, preload_seq, ready[1]))]]
    for t in canaries:
        t.start()
    for r in ready:
        r.wait(30)
    threads = canaries + [threading.Thread(target=f, args=a, daemon=True) for f, a in [
        (canary_snapshot, (d,)), (canary_scrape, (port,)),
        (attack_idle, (d,)), (attack_bigsub, (d,)), (attack_hbflood, (d,)),
        (attack_streams, (d,)), (attack_nonreader, (d, 1)), (attack_nonreader, (d, 2)),
        (attack_producers, (d,)), (attack_http, (port,)),
    ]]
    for t in threads[len(canaries):]:
        t.start()
    rss = []
    t_end = time.time() + args.seconds
    alive = True
    while time.time() < t_end:
        if d.proc.poll() is not None:
            alive = False
            break
        r = rss_kib(pid)
        if r:
            rss.append(r)
        time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=15)

    status = None
    if alive and d.proc.poll() is None:
        try:
            c = psclient.Control(d.control)
            status = c.status()
            c.close()
        except Exception as e:  # the figures matter more than the reason
            figures["status_error"] = str(e)
    missed = [pid_ for pid_ in canary_sent if pid_ not in seen]
    out = {
        "seconds": args.seconds,
        "daemon_alive": alive and d.proc.poll() is None,
        "preloaded_records": preload_seq,
        "rss_mib": {"start": base_rss and round(base_rss / 1024, 1),
                    "after_preload": loaded_rss and round(loaded_rss / 1024, 1),
                    "max": rss and round(max(rss) / 1024, 1),
                    "median": rss and round(statistics.median(rss) / 1024, 1),
                    "end": rss and round(rss[-1] / 1024, 1),
                    "bound": args.rss_bound_mib},
        "canary_ack_ms": {"n": len(ack_ms), "p50": pct(ack_ms, 50), "p99": pct(ack_ms, 99),
                          "max": max(ack_ms) if ack_ms else None,
                          "over_1s": sum(1 for x in ack_ms if x > 1000)},
        "canary_parks_missed_by_subscriber": len(missed),
        "snapshot_ms": {"n": len(snap_ms), "p50": pct(snap_ms, 50), "p99": pct(snap_ms, 99)},
        "scrape_ms": {"n": len(scrape_ms), "p50": pct(scrape_ms, 50),
                      "p99": pct(scrape_ms, 99)},
        "attacks_and_failures": figures,
    }
    if status is not None:
        out["daemon_counters"] = {c.name: c.value for c in status.counters}
        out["connections"] = {
            sc.socket: {"open": sc.open, "accepted": sc.accepted, "refused": sc.refused,
                        "handshakes_failed": {h.name: h.value for h in sc.handshakes_failed}}
            for sc in status.connections}
        out["database_bytes"] = status.database_bytes
        out["wal_bytes"] = status.wal_bytes
        out["conflicts"] = status.conflicts
    d.stop()
    out["daemon_exit"] = "stopped"
    print(json.dumps(out, indent=2, default=str))
    failed = (not out["daemon_alive"]
              or (rss and max(rss) / 1024 > args.rss_bound_mib)
              or figures.get("canary_ack_missing", 0) > 0
              or out["canary_ack_ms"]["over_1s"] > 0
              or missed
              or figures.get("snapshot_failed", 0) > 0
              or figures.get("snapshot_refused", 0) > 0)
    if not failed:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print("soak failed; the daemon's directory is kept: %s" % tmp, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
