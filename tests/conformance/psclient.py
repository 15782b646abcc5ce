"""A parksync wire-protocol client written from proto/README.md and
proto/parksync.proto only (no knowledge of the C implementation).

Framing (README "Frames"): ingest and publish messages are two frames,
topic then protobuf; query and control are one frame each way on a DEALER.
"""

import atexit
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import zmq

pb = None  # the generated parksync_pb2 module, set by load_proto()

MAX_MSG = 1 << 20  # WIRE_MAX_MSG: peers should set ZMQ_MAXMSGSIZE too


def load_proto(proto_dir, out=None):
    """Compile parksync.proto with protoc into `out` (default: a new
    temporary directory) and import it (generated code is never
    committed). Code already generated in `out` is imported as it is, so
    the processes of one run compile once and clean up one folder."""
    global pb
    if pb is not None:
        return pb
    if out is None:
        out = tempfile.mkdtemp(prefix="ps-proto-")
        atexit.register(shutil.rmtree, out, True)  # ours: gone with the process
    if not os.path.exists(os.path.join(out, "parksync_pb2.py")):
        os.makedirs(out, exist_ok=True)
        subprocess.run(["protoc", "--python_out=" + out, "-I", proto_dir,
                        os.path.join(proto_dir, "parksync.proto")],
                       check=True)
    sys.path.insert(0, out)
    pb = importlib.import_module("parksync_pb2")
    return pb


def now_us():
    return int(time.time() * 1_000_000)


# ------------------------------------------------------------------ daemon

class Daemon:
    """The real parksyncd, on ipc:// endpoints in a temporary directory."""

    def __init__(self, binary, tmpdir, config=None):
        self.binary = binary
        self.dir = tmpdir
        self.config = config or {}
        self.proc = None
        self.ingest = "ipc://%s/ingest" % tmpdir
        self.publish = "ipc://%s/publish" % tmpdir
        self.query = "ipc://%s/query" % tmpdir
        self.control = "ipc://%s/ctl/control" % tmpdir
        self.database = os.path.join(tmpdir, "parksync.db")
        self.log = os.path.join(tmpdir, "daemon.log")

    def write_config(self):
        os.makedirs(os.path.join(self.dir, "ctl"), mode=0o700, exist_ok=True)
        sections = {
            "daemon": {"database": self.database},
            "endpoints": {"ingest": self.ingest, "publish": self.publish,
                          "query": self.query, "control": self.control},
            "limits": {"summary_republish_s": "0"},
        }
        for sect, kv in self.config.items():
            sections.setdefault(sect, {}).update(kv)
        path = os.path.join(self.dir, "parksyncd.conf")
        with open(path, "w") as f:
            for sect, kv in sections.items():
                f.write("[%s]\n" % sect)
                for k, v in kv.items():
                    f.write("%s = %s\n" % (k, v))
                f.write("\n")
        return path

    def start(self, timeout=30.0):
        conf = self.write_config()
        logf = open(self.log, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
        self.proc = subprocess.Popen([self.binary, "-c", conf], stdout=logf,
                                     stderr=subprocess.STDOUT, env=env)
        logf.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("parksyncd exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.tail()))
            if self.answers(timeout=0.5):
                return
        raise RuntimeError("parksyncd did not answer ping; log:\n"
                           + self.tail())

    def answers(self, timeout):
        """True when the daemon answers a ping within timeout seconds.
        (Other clients of this class, tests/python, ping their own way.)"""
        q = Query(self.query)
        try:
            q.ping(timeout=timeout)
            return True
        except TimeoutError:
            return False
        finally:
            q.close()

    def stop(self, timeout=30.0):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self, n=4000):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


# ------------------------------------------------------------------ sockets

_ctx = None


def ctx():
    global _ctx
    if _ctx is None:
        _ctx = zmq.Context.instance()
    return _ctx


def _socket(kind):
    s = ctx().socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.MAXMSGSIZE, MAX_MSG)
    return s


def _recv(sock, timeout):
    if not sock.poll(int(timeout * 1000)):
        raise TimeoutError("no message within %.1f s" % timeout)
    return sock.recv_multipart()


class _Dealer:
    """A DEALER to one of the daemon's ROUTERs, with request ids 1, 2, ..."""

    def __init__(self, endpoint):
        self.sock = _socket(zmq.DEALER)
        self.sock.connect(endpoint)
        self.next_id = 1

    def close(self):
        self.sock.close()

    def new_id(self):
        rid = self.next_id
        self.next_id += 1
        return rid


class Query(_Dealer):
    """The query socket: one frame out, one frame per reply."""

    def send(self, req):
        if not req.HasField("version"):
            req.version = 1
        self.sock.send(req.SerializeToString())

    def send_raw(self, data):
        self.sock.send(data)

    def recv(self, timeout=5.0):
        frames = _recv(self.sock, timeout)
        assert len(frames) == 1, "query reply has %d frames" % len(frames)
        rep = pb.QueryReply()
        rep.ParseFromString(frames[0])
        return rep

    def call(self, timeout=5.0, **body):
        """Send a request with one body field and return its one reply."""
        req = pb.QueryRequest(version=1, request_id=self.new_id(), **body)
        self.send(req)
        return self.recv_for(req.request_id, timeout)

    def recv_for(self, rid, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            rep = self.recv(max(0.01, deadline - time.time()))
            if rep.request_id == rid:
                return rep

    def ping(self, timeout=5.0):
        rep = self.call(timeout, ping=pb.Ping())
        assert rep.WhichOneof("body") == "pong", rep
        return rep.pong

    def producer_state(self, producer_id):
        rep = self.call(producer_state=pb.ProducerStateRequest(
            producer_id=producer_id))
        assert rep.WhichOneof("body") == "producer_state", rep
        return rep.producer_state

    def stream(self, which, credit=8, chunk_records=512, timeout=10.0,
               **fields):
        """Run a snapshot or changes stream to its end with credit flow
        control. Returns (chunks, error): error is the Error reply if the
        request was refused. Checks that the daemon never sends more chunks
        than granted."""
        rid = self.new_id()
        if which == "snapshot":
            body = pb.SnapshotRequest(credit=credit,
                                      chunk_records=chunk_records, **fields)
            req = pb.QueryRequest(version=1, request_id=rid, snapshot=body)
        else:
            body = pb.ChangesRequest(credit=credit,
                                     chunk_records=chunk_records, **fields)
            req = pb.QueryRequest(version=1, request_id=rid, changes=body)
        self.send(req)
        chunks = []
        outstanding = credit
        while True:
            rep = self.recv_for(rid, timeout)
            kind = rep.WhichOneof("body")
            if kind == "error":
                return chunks, rep.error
            assert kind == "chunk", rep
            outstanding -= 1
            if outstanding < 0:
                raise AssertionError("daemon sent more chunks than credit")
            assert len(rep.chunk.records) <= chunk_records
            chunks.append(rep.chunk)
            if rep.chunk.last:
                return chunks, None
            if outstanding == 0:
                # Grant more only once the credit is used up, so that an
                # over-sending daemon shows.
                if self.sock.poll(200):
                    extra = self.recv(0.1)
                    raise AssertionError("chunk beyond granted credit: %s"
                                         % extra)
                self.send(pb.QueryRequest(version=1, request_id=rid,
                                          credit=pb.Credit(chunks=credit)))
                outstanding = credit

    def snapshot(self, **kw):
        return self.stream("snapshot", **kw)

    def changes(self, since, **kw):
        return self.stream("changes", since_revision=since, **kw)


class Control(_Dealer):
    """The control socket (ipc only)."""

    def call(self, timeout=10.0, **body):
        rid = self.new_id()
        req = pb.ControlRequest(version=1, request_id=rid, **body)
        self.sock.send(req.SerializeToString())
        deadline = time.time() + timeout
        while True:
            frames = _recv(self.sock, max(0.01, deadline - time.time()))
            rep = pb.ControlReply()
            rep.ParseFromString(frames[-1])
            if rep.request_id == rid:
                return rep

    def status(self):
        rep = self.call(status=pb.StatusRequest())
        assert rep.WhichOneof("body") == "status", rep
        return rep.status

    def counters(self):
        return {c.name: c.value for c in self.status().counters}

    def conflicts(self, **kw):
        out = []
        after = 0
        while True:
            rep = self.call(conflicts=pb.ConflictsRequest(after_id=after, **kw))
            assert rep.WhichOneof("body") == "conflicts", rep
            out.extend(rep.conflicts.conflicts)
            if not rep.conflicts.more:
                return out
            after = rep.conflicts.next_after_id

    def backup(self, path):
        return self.call(timeout=30.0, backup=pb.BackupRequest(path=path))


# ------------------------------------------------------------------ producer

TOPIC_OF_BODY = {"park": b"park", "resident": b"resident", "trade": b"trade",
                 "country": b"country"}


def topic_of(update):
    body = update.WhichOneof("body")
    if body == "delete":
        return TOPIC_OF_BODY[update.delete.WhichOneof("target")]
    return TOPIC_OF_BODY[body]


def park_update(producer, seq, country, park_id, **fields):
    u = pb.Update(version=1, producer_id=producer, sequence=seq,
                  event_time_us=fields.pop("event_time_us", now_us()))
    u.park.park_id = park_id
    u.park.country = country
    for k, v in fields.items():
        setattr(u.park, k, v)
    return u


def trade_update(producer, seq, reporter, partner, direction, period, cents,
                 **envelope):
    """A trade report; period is (year, first_month, last_month)."""
    u = pb.Update(version=1, producer_id=producer, sequence=seq,
                  event_time_us=envelope.pop("event_time_us", now_us()))
    u.trade.reporter = reporter
    u.trade.partner = partner
    u.trade.direction = direction
    (u.trade.period.year, u.trade.period.first_month,
     u.trade.period.last_month) = period
    u.trade.value_usd_cents = cents
    return u


class Producer:
    """Ingest PUB (as an XPUB, to see the daemon's subscription arrive) and
    a publish SUB for its acks, as the README's libparksync recipe says."""

    def __init__(self, daemon, producer_id, handshake=True):
        self.id = producer_id
        self.ack_topic = ("ack/%s/" % producer_id).encode()
        self.pub = _socket(zmq.XPUB)
        self.pub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.pub.setsockopt(zmq.SNDHWM, 100000)
        self.pub.connect(daemon.ingest)
        self.sub = _socket(zmq.SUB)
        self.sub.connect(daemon.publish)
        self.sub.setsockopt(zmq.SUBSCRIBE, self.ack_topic)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"hb/")
        self.last_ack = 0
        self.acks = []
        self.welcome = None
        if handshake:
            self.handshake()

    def close(self):
        self.pub.close()
        self.sub.close()

    def handshake(self, timeout=10.0):
        # The daemon's SUB subscription arriving on our XPUB...
        deadline = time.time() + timeout
        while True:
            frames = _recv(self.pub, max(0.01, deadline - time.time()))
            if frames[0][:1] == b"\x01":
                break
        # ... and the welcome heartbeat on our SUB.
        while True:
            topic, pubm = self.recv_pub(max(0.01, deadline - time.time()))
            if topic == b"hb/":
                self.welcome = pubm.heartbeat
                return

    def recv_pub(self, timeout):
        frames = _recv(self.sub, timeout)
        assert len(frames) == 2, frames
        p = pb.Publication()
        p.ParseFromString(frames[1])
        if p.WhichOneof("body") == "ack":
            self.acks.append(p.ack.last_sequence)
            self.last_ack = p.ack.last_sequence
        return frames[0], p

    def send(self, update, topic=None):
        self.pub.send_multipart([topic or topic_of(update),
                                 update.SerializeToString()])

    def send_raw(self, topic, data):
        self.pub.send_multipart([topic, data])

    def send_batch(self, updates):
        self.pub.send_multipart([b"batch", pb.UpdateBatch(
            updates=updates).SerializeToString()])

    def wait_ack(self, seq, timeout=10.0):
        """Wait until an ack reaches `seq`; returns the last ack seen."""
        deadline = time.time() + timeout
        while self.last_ack < seq:
            try:
                self.recv_pub(max(0.01, deadline - time.time()))
            except TimeoutError:
                raise AssertionError("ack stuck at %d, wanted %d"
                                     % (self.last_ack, seq))
        return self.last_ack

    def next_ack(self, timeout=5.0):
        """The next ack message (whatever its value)."""
        deadline = time.time() + timeout
        while True:
            _, p = self.recv_pub(max(0.01, deadline - time.time()))
            if p.WhichOneof("body") == "ack":
                return p.ack

    def drain(self, quiet=0.3):
        while self.sub.poll(int(quiet * 1000)):
            self.recv_pub(0.1)


# ------------------------------------------------------------------ subscriber

KINDS = ["park", "resident", "trade", "country", "summary"]
KIND_ENUM = {"park": 1, "resident": 2, "trade": 3, "country": 4, "summary": 5}


class Reset(Exception):
    pass


class Subscriber:
    """The README's "Subscribers" rules 1-6 with V (watermark) and D
    (revisions delivered live above V)."""

    def __init__(self, daemon, kind=None, country=None, rcvhwm=100000,
                 rcvbuf=None):
        self.daemon = daemon
        self.kind = kind
        self.country = country
        if kind and country:
            self.prefixes = ["rec/%s/%s/" % (kind, country)]
        elif kind:
            self.prefixes = ["rec/%s/" % kind]
        elif country:
            self.prefixes = ["rec/%s/%s/" % (k, country) for k in KINDS]
        else:
            self.prefixes = ["rec/"]
        self.filter = pb.Filter()
        if kind:
            self.filter.kind = KIND_ENUM[kind]
        if country:
            self.filter.country = country
        self.sub = _socket(zmq.SUB)
        self.sub.setsockopt(zmq.RCVHWM, rcvhwm)
        if rcvbuf:
            self.sub.setsockopt(zmq.RCVBUF, rcvbuf)
        self.sub.connect(daemon.publish)
        for p in self.prefixes:
            self.sub.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.sub.setsockopt(zmq.SUBSCRIBE, b"hb/")  # last
        self.query = Query(daemon.query)
        self.last = {}      # topic -> last stream sequence
        self.V = 0
        self.D = []
        self.epoch = None
        self.instance = None
        self.snapshot_revision = None
        self.snapshot_records = []
        self.delivered = []  # (revision, how) of every delivery after snapshot
        self.resets = 0
        self.recoveries = 0
        self.losses = 0

    def close(self):
        self.sub.close()
        self.query.close()

    def subscribed(self, topic):
        return any(topic.startswith(p) for p in self.prefixes)

    def _take_topics(self, hb):
        self.last = {t.topic: t.sequence for t in hb.topics
                     if self.subscribed(t.topic)}

    def start(self, timeout=10.0):
        """Rule 1: welcome heartbeat, then snapshot."""
        deadline = time.time() + timeout
        while True:
            topic, p = self._recv(max(0.01, deadline - time.time()))
            if topic == "hb/":
                break
        hb = p.heartbeat
        self.epoch, self.instance = hb.epoch, hb.instance
        self._take_topics(hb)
        self._snapshot()

    def _snapshot(self):
        chunks, err = self.query.snapshot(filter=self.filter, credit=8,
                                          chunk_records=512)
        assert err is None, err
        self.snapshot_revision = chunks[-1].revision
        self.snapshot_records = [r for c in chunks for r in c.records]
        if chunks[-1].epoch != self.epoch:
            self.epoch = chunks[-1].epoch
        self.V = chunks[-1].revision
        self.D = []

    def _recv(self, timeout):
        frames = _recv(self.sub, timeout)
        assert len(frames) == 2, frames
        p = pb.Publication()
        p.ParseFromString(frames[1])
        return frames[0].decode(), p

    def _deliver(self, r, how, record=None):
        """One delivery to the consumer: revision r of `record`, "live" or
        "recovered", or (None, "reset"). A subclass that keeps its own
        account overrides this."""
        self.delivered.append((r, how))

    def recover(self):
        """Rule 4 (and rule 6 on TOO_OLD or another epoch)."""
        self.recoveries += 1
        chunks, err = self.query.changes(self.V, filter=self.filter,
                                         credit=8, chunk_records=512)
        if err is not None:
            assert err.code == pb.ERROR_CODE_TOO_OLD, err
            return self.reset()
        if chunks and chunks[-1].epoch != self.epoch:
            return self.reset()
        dset = set(self.D)
        for c in chunks:
            for rec in c.records:
                if rec.revision > self.V and rec.revision not in dset:
                    self._deliver(rec.revision, "recovered", rec)
                    dset.add(rec.revision)
        self.V = chunks[-1].revision
        self.D = []

    def reset(self):
        """Rule 6: tell the consumer and take a fresh snapshot."""
        self.resets += 1
        self._snapshot()
        self._deliver(None, "reset")

    def step(self, timeout):
        """Handle one publication; returns False when none came."""
        try:
            topic, p = self._recv(timeout)
        except TimeoutError:
            return False
        body = p.WhichOneof("body")
        if body == "heartbeat":
            self.on_heartbeat(p.heartbeat)
        elif body == "record":
            self.on_record(topic, p)
        return True

    def on_record(self, topic, p):
        q, r = p.stream_sequence, p.record.revision
        if q != self.last.get(topic, 0) + 1:
            self.losses += 1
            self.last[topic] = q
            if r > self.V:
                self.recover()
                return
        else:
            self.last[topic] = q
        if p.repeat:
            return
        if r <= self.V or r in self.D:
            return
        self._deliver(r, "live", p.record)
        self.D.append(r)

    def on_heartbeat(self, hb):
        if hb.epoch != self.epoch:
            self.epoch = hb.epoch
            self.instance = hb.instance
            self._take_topics(hb)
            return self.reset()
        if hb.instance != self.instance:
            self.instance = hb.instance
            self._take_topics(hb)
            return self.recover()
        ahead = False
        for t in hb.topics:
            if self.subscribed(t.topic) and \
                    t.sequence != self.last.get(t.topic, 0):
                ahead = True
                self.last[t.topic] = t.sequence
        if not ahead:
            self.V = max(self.V, hb.head_revision)
            self.D = []
        else:
            self.losses += 1
            if hb.head_revision > self.V:
                self.recover()

    def run_until(self, revision, timeout=30.0):
        """Process until V reaches `revision` (the subscriber has proved
        it holds everything up to it)."""
        deadline = time.time() + timeout
        while self.V < revision:
            if time.time() > deadline:
                raise AssertionError("subscriber V=%d never reached %d"
                                     % (self.V, revision))
            self.step(0.5)
