"""The subscriber: the consolidated picture as a snapshot, then live, with
loss detection and recovery; proto/README.md "Subscribers: every change
once, never a silent gap" has the rules (numbered 1 to 6 below), and
libparksync's client/subscriber.c is the model followed step by step.

Ordering. The SUB socket connects and subscribes (record topics first,
``hb/`` last) and waits for the welcome heartbeat before anything is
asked of the query socket, so every change after the snapshot's revision
R is queued in it while the snapshot streams. Streams are flow
controlled: 64 chunks of credit up front, the consumed ones granted
again 16 at a time, and whatever is owed before the subscriber waits.

Loss. Each record topic carries its own stream sequence, and heartbeats
list every topic's last one. The subscriber keeps a watermark V (every
matching change up to V is delivered) and D, the revisions delivered live
above V, and moves V only where the stream proves nothing was lost: at a
heartbeat whose sequences all match, and at the end of a stream. A loss
that may lie above V is recovered with the changes since V, delivering
only what is not in D. A new daemon instance (sequences start again)
recovers the same way; TOO_OLD or a new database epoch reset: a RESET
event, then a fresh snapshot.
"""

from __future__ import annotations

import bisect
import enum
import random
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

import zmq

from ._proto import pb
from ._sock import (DEFAULT_PUBLISH, DEFAULT_QUERY, VERSION, QuerySocket, monotonic_ms,
                    open_socket)
from .errors import Closed, ProtocolError, Refused, Timeout
from .keys import Curve

DEFAULT_TIMEOUT = 5.0  # s of daemon silence allowed during a stream
CREDIT = 64  # chunks granted when a stream starts
CREDIT_BATCH = 16  # chunks consumed before they are granted again
CHUNK_RECORDS = 1024  # records per chunk asked for
RCVHWM = 100_000  # live messages queued while a stream runs
DELIVERED_MAX = 1 << 20  # revisions delivered above V before a recovery
BUSY_MIN_MS = 50  # ms: first wait after a BUSY reply
BUSY_MAX_MS = 2000  # ms: longest wait between two asks

KINDS = ("park", "resident", "trade", "country", "summary")
_KIND_ENUM = {k: i + 1 for i, k in enumerate(KINDS)}  # RecordKind numbers


class EventKind(enum.Enum):
    """What an Event is."""

    RECORD = 1
    """A record, from the snapshot (or a recovery) or live."""
    SNAPSHOT_END = 2
    """The snapshot is complete (with ``from_revision``: the catch-up);
    ``revision`` is its revision."""
    RESET = 3
    """Continuity is lost (the change log no longer reaches back, or the
    database was replaced): discard every record held; a fresh snapshot
    follows, ending with SNAPSHOT_END."""


@dataclass
class Event:
    """One thing a subscriber delivers."""

    kind: EventKind
    record: Optional["pb.Record"] = None  # RECORD: the record (deleted = a tombstone)
    revision: int = 0  # the record's revision, or the snapshot's
    live: bool = False  # the record came from the publish socket


@dataclass
class Stats:
    """What a subscriber counted since it was made."""

    gaps: int = 0  # losses detected: stream sequence jumps, heartbeats ahead
    resyncs: int = 0  # changes streams asked for to recover
    snapshots: int = 0  # snapshots taken, the first included
    too_old: int = 0  # TOO_OLD answers (each followed by a fresh snapshot)
    epoch_changes: int = 0  # new database epochs seen (each followed by a fresh snapshot)
    restarts: int = 0  # new daemon instances seen (each followed by a recovery)
    duplicates: int = 0  # live records dropped as already delivered
    repeats: int = 0  # periodic republications (Publication.repeat) dropped
    bad_frames: int = 0  # undecodable or unexpected messages skipped


_SNAPSHOT, _CHANGES, _LIVE, _CLOSED = range(4)


def _record_country(r: "pb.Record") -> Optional[str]:
    body = r.WhichOneof("body")
    if body == "trade":
        return r.trade.exporter
    if body is None:
        return None
    return getattr(r, body).country


class Subscriber:
    """Delivers the consolidated records matching a filter: a snapshot,
    then (when ``live``) every change after it, each revision exactly
    once, recovering lost messages by itself.

    ``kind`` is one of ``park``, ``resident``, ``trade``, ``country``,
    ``summary`` (None: all); ``country`` an ISO 3166-1 alpha-2 code (None:
    all; trade flows match on exporter or importer). ``from_revision``
    starts with the changes after it instead of a snapshot (resuming
    where ``revision`` stood); ``at_revision`` takes the snapshot as of
    that revision (history; only with ``live=False``). ``timeout`` is the
    longest silence from the daemon during a stream; ``rcvhwm`` the live
    messages queued before ZeroMQ drops (tests set it small).

    Not thread-safe. A ``with`` block closes it.
    """

    def __init__(self, *, publish: str = DEFAULT_PUBLISH, query: str = DEFAULT_QUERY,
                 kind: Optional[str] = None, country: Optional[str] = None, live: bool = True,
                 provenance: bool = False, from_revision: Optional[int] = None,
                 at_revision: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT,
                 rcvhwm: int = 0, curve: Optional[Curve] = None,
                 context: Optional[zmq.Context] = None) -> None:
        """Subscribes, waits for the welcome heartbeat (up to ``timeout``;
        a silent daemon shows as Timeout from ``next``), then asks for the
        snapshot (or the changes after ``from_revision``). Raises
        ValueError for a bad filter or combination."""
        if kind is not None and kind not in _KIND_ENUM:
            raise ValueError("kind: one of %s" % ", ".join(KINDS))
        if country is not None and (len(country) != 2 or not country.isascii()
                                    or not country.isupper() or not country.isalpha()):
            raise ValueError("country: two upper-case letters (ISO 3166-1 alpha-2)")
        if at_revision is not None and (live or from_revision is not None or provenance):
            raise ValueError("at_revision is a one-off snapshot: live=False, no from_revision, "
                             "no provenance")
        if from_revision is not None and not live:
            raise ValueError("from_revision needs live=True")
        self.kind = kind
        self.country = country
        self.live = live
        self.provenance = provenance
        self._at_revision = at_revision
        self._timeout_ms = int(timeout * 1000) if timeout > 0 else int(DEFAULT_TIMEOUT * 1000)
        self.stats = Stats()
        self.last_error = ""  # the daemon's message with the last refusal
        self.health: Optional["pb.Health"] = None
        """The daemon's ``Health`` from its last heartbeat while it was
        degraded, None while ok."""
        self._state = _CLOSED
        self._recovering = False
        self._pending_reset = False
        self._end_after_changes = False
        self._request_id = int(time.time() * 1_000_000)
        self._chunk: Optional["pb.Chunk"] = None
        self._pos = 0
        self._owed = 0  # chunks consumed and not granted again yet
        self.revision = 0
        """V, the watermark: every matching change up to here has been
        delivered (the snapshot's revision at first), so it is where to
        resume (``from_revision``) after a restart. It moves at heartbeats
        that prove nothing was lost, so it may trail the newest record
        delivered by up to one heartbeat interval."""
        self._delivered: List[int] = []  # D, ascending
        self._last_heard_ms = 0
        self._retry_at_ms = 0
        self._busy_wait_ms = 0
        self._rng = random.Random()
        if kind is None and country is not None:
            self._prefixes = ["rec/%s/%s/" % (k, country) for k in KINDS]
        else:
            self._prefixes = ["rec/%s%s" % (kind + "/" if kind else "",
                                            country + "/" if country else "")]
        self._topics: Dict[str, int] = {}
        self._epoch: Optional[bytes] = None
        self._instance: Optional[bytes] = None
        self._closed = False

        ctx = context or zmq.Context.instance()
        self._sub: Optional[zmq.Socket] = None
        self._query: Optional[QuerySocket] = None
        try:
            if live:
                self._sub = open_socket(ctx, zmq.SUB, curve)
                self._sub.setsockopt(zmq.RCVHWM, rcvhwm if rcvhwm > 0 else RCVHWM)
                # the Clone pattern's order: subscribe first; "hb/" last
                for p in self._prefixes:
                    self._sub.setsockopt(zmq.SUBSCRIBE, p.encode())
                self._sub.setsockopt(zmq.SUBSCRIBE, b"hb/")
                self._sub.connect(publish)
                self._wait_welcome()
            self._query = QuerySocket(ctx, query, curve)
            if from_revision is not None:
                self.revision = from_revision
                self._end_after_changes = True
                self._ask_changes()
            else:
                self._ask_snapshot()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ topics

    def _subscribed(self, topic: str) -> bool:
        return any(topic.startswith(p) for p in self._prefixes)

    def _matches(self, r: "pb.Record") -> bool:
        body = r.WhichOneof("body")
        if self.kind is not None and body != self.kind:
            return False
        if self.country is None:
            return True
        return (_record_country(r) == self.country
                or (body == "trade" and r.trade.importer == self.country))

    def _adopt_sequences(self, hb: "pb.Heartbeat") -> None:
        self._topics = {t.topic: t.sequence for t in hb.topics if self._subscribed(t.topic)}

    def _adopt_identity(self, hb: "pb.Heartbeat") -> None:
        if hb.HasField("epoch"):
            self._epoch = hb.epoch
        if hb.HasField("instance"):
            self._instance = hb.instance
        self.health = hb.health if hb.HasField("health") and hb.health.degraded else None

    # ------------------------------------------------------------ requests

    def _filter(self) -> "pb.Filter":
        f = pb.Filter()
        if self.kind is not None:
            f.kind = _KIND_ENUM[self.kind]
        if self.country is not None:
            f.country = self.country
        return f

    def _send(self, **body: object) -> None:
        assert self._query is not None
        self._query.send(pb.QueryRequest(version=VERSION, request_id=self._request_id, **body))

    def _stream_reset(self) -> None:
        """Drops what the previous stream left; a new request id, so late
        replies of the old stream are ignored."""
        self._chunk = None
        self._pos = 0
        self._owed = 0
        self._request_id += 1
        self._last_heard_ms = monotonic_ms()

    def _ask_snapshot(self) -> None:
        self._stream_reset()
        snap = pb.SnapshotRequest(filter=self._filter(), credit=CREDIT,
                                  chunk_records=CHUNK_RECORDS)
        if self.provenance:
            snap.provenance = True
        if self._at_revision is not None:
            snap.at_revision = self._at_revision
        self._state = _SNAPSHOT
        self.stats.snapshots += 1
        self._send(snapshot=snap)

    def _ask_changes(self) -> None:
        self._stream_reset()
        self._state = _CHANGES
        self._send(changes=pb.ChangesRequest(filter=self._filter(), since_revision=self.revision,
                                             credit=CREDIT, chunk_records=CHUNK_RECORDS))

    def _resync(self) -> None:
        """Rule 4: the changes since V."""
        self.stats.resyncs += 1
        self._recovering = True
        self._ask_changes()

    def _restart_snapshot(self) -> None:
        """Rule 6: continuity is gone; a reset, then a fresh snapshot."""
        self._pending_reset = True
        self._recovering = True
        self.revision = 0
        self._delivered = []
        self._ask_snapshot()

    # ------------------------------------------------------------ delivered above V

    def _was_delivered(self, revision: int) -> bool:
        if revision <= self.revision:
            return True
        i = bisect.bisect_left(self._delivered, revision)
        return i < len(self._delivered) and self._delivered[i] == revision

    def _advance(self, revision: int) -> None:
        """V moves to revision (never back); D keeps what lies above it."""
        if revision > self.revision:
            self.revision = revision
        self._delivered = [r for r in self._delivered if r > self.revision]

    # ------------------------------------------------------------ heartbeats

    def _wait_welcome(self) -> None:
        """Waits up to the timeout for the welcome heartbeat; records
        before it are covered by the coming snapshot. Silence is not an
        error here: the stream request times out."""
        assert self._sub is not None
        deadline = monotonic_ms() + self._timeout_ms
        while True:
            left = deadline - monotonic_ms()
            if left <= 0 or not self._sub.poll(left):
                return
            p = self._recv_pub()
            if p is not None and p[1].WhichOneof("body") == "heartbeat":
                self._adopt_identity(p[1].heartbeat)
                self._adopt_sequences(p[1].heartbeat)
                return

    def _live_heartbeat(self, hb: "pb.Heartbeat") -> None:
        """Rules 3, 5, 6."""
        if hb.HasField("epoch") and self._epoch is not None and hb.epoch != self._epoch:
            self.stats.epoch_changes += 1
            self._adopt_identity(hb)
            self._adopt_sequences(hb)
            self._restart_snapshot()
            return
        if hb.HasField("instance") and hb.instance != self._instance:
            known = self._instance is not None
            self._adopt_identity(hb)
            self._adopt_sequences(hb)
            if known:
                self.stats.restarts += 1
                self._resync()
            return  # without a welcome heartbeat: start from this one
        self._adopt_identity(hb)
        lost = False
        for t in hb.topics:
            if self._subscribed(t.topic) and t.sequence > self._topics.get(t.topic, 0):
                self._topics[t.topic] = t.sequence
                lost = True
        if not lost:
            self._advance(hb.head_revision)
            return
        self.stats.gaps += 1
        if hb.HasField("head_revision") and hb.head_revision <= self.revision:
            return  # everything lost lies at or below V: delivered already
        self._resync()

    # ------------------------------------------------------------ streams

    def _on_stream_error(self, err: "pb.Error") -> None:
        self.last_error = err.message or "refused by parksyncd"
        if err.code == pb.ERROR_CODE_TOO_OLD and self._state == _CHANGES:
            self.stats.too_old += 1
            self._end_after_changes = False
            self._restart_snapshot()
            return
        if err.code == pb.ERROR_CODE_BUSY:
            # Every stream slot is taken: ask again later, waiting longer
            # each time, with jitter, so that clients started together
            # spread out.
            self._busy_wait_ms = (BUSY_MIN_MS if self._busy_wait_ms == 0
                                  else min(BUSY_MAX_MS, self._busy_wait_ms * 2))
            half = self._busy_wait_ms // 2
            self._retry_at_ms = monotonic_ms() + half + self._rng.randint(0, half)
            return
        self._state = _CLOSED
        raise Refused(err.code, self.last_error)

    def _ask_again(self) -> None:
        if self._state == _CHANGES:
            self._ask_changes()
        else:
            self._ask_snapshot()

    def _grant_owed(self) -> None:
        """Grants the chunks consumed since the last grant, if any."""
        if self._owed:
            self._send(credit=pb.Credit(chunks=self._owed))
            self._owed = 0

    def _grant_credit(self) -> None:
        """Counts a consumed chunk; the consumed ones are granted again
        once CREDIT_BATCH have gathered (one message for many chunks),
        and by _next_chunk before it waits, so a daemon that granted the
        stream less than a batch is never left without."""
        self._owed += 1
        if self._owed >= CREDIT_BATCH:
            self._grant_owed()

    def _next_chunk(self, deadline: Optional[int]) -> None:
        """Waits for the next reply of the running stream: sets _chunk, or
        returns with none when the stream was replaced (a reset)."""
        assert self._query is not None
        while True:
            now = monotonic_ms()
            silence = self._last_heard_ms + self._timeout_ms
            waiting = self._retry_at_ms > 0  # after BUSY: no request out
            if (now >= self._retry_at_ms) if waiting else (now >= silence):
                if not waiting and not self._recovering:
                    raise Timeout("parksyncd was silent for %.1f s during a stream"
                                  % (self._timeout_ms / 1000), self.health)
                # the BUSY wait is over, or the daemon may have restarted
                # and forgotten the stream: ask again
                self._retry_at_ms = 0
                self._ask_again()
                continue
            if waiting:
                if deadline is not None and now >= deadline:
                    raise Timeout("no event within the timeout", self.health)
                time.sleep(max(0, min(self._retry_at_ms, deadline or self._retry_at_ms) - now)
                           / 1000)
                continue
            until = silence if deadline is None else min(deadline, silence)
            try:
                rep = self._query.recv(0) if self._owed else None
                if rep is None:
                    self._grant_owed()  # nothing to read: what is owed goes before the wait
                    rep = self._query.recv(max(0, until - now))
            except ProtocolError:
                self.stats.bad_frames += 1
                continue
            if rep is None:
                if deadline is not None and monotonic_ms() >= deadline:
                    raise Timeout("no event within the timeout", self.health)
                continue
            if rep.request_id != self._request_id:
                continue  # a stream given up
            self._last_heard_ms = monotonic_ms()
            body = rep.WhichOneof("body")
            if body == "chunk":
                c = rep.chunk
                if c.HasField("epoch"):
                    other = self._epoch is not None and c.epoch != self._epoch
                    self._epoch = c.epoch
                    if other and (self._state == _CHANGES or self._recovering):
                        # another database: our revision means nothing there
                        self.stats.epoch_changes += 1
                        self._end_after_changes = False
                        self._restart_snapshot()
                        return
                self._chunk = c
                self._pos = 0
                self._busy_wait_ms = 0
                return
            if body == "error":
                self._on_stream_error(rep.error)
                return
            self.stats.bad_frames += 1  # a pong or the like: not for this stream

    def _stream_next(self, deadline: Optional[int]) -> Optional[Event]:
        """The next record of the running snapshot or changes stream, or
        the snapshot's end; None when the stream ended without an event
        (a recovery went back to live)."""
        while True:
            if self._pending_reset:
                self._pending_reset = False
                return Event(EventKind.RESET)
            if self._state not in (_SNAPSHOT, _CHANGES):
                return None
            if self._chunk is None:
                self._next_chunk(deadline)
                if self._chunk is None:
                    continue  # replaced, or waiting out a BUSY
            c = self._chunk
            changes = self._state == _CHANGES
            while self._pos < len(c.records):
                r = c.records[self._pos]
                self._pos += 1
                if not self._matches(r) or (changes and self._was_delivered(r.revision)):
                    continue
                return Event(EventKind.RECORD, r, r.revision, False)
            self._chunk = None
            if not c.last:
                self._grant_credit()
                continue
            self._recovering = False
            self._state = _LIVE if self.live else _CLOSED
            if not changes:
                self.revision = c.revision
                self._delivered = []
                return Event(EventKind.SNAPSHOT_END, None, c.revision, False)
            # every matching change up to the stream's head is delivered
            self._advance(c.revision)
            if self._end_after_changes:
                self._end_after_changes = False
                return Event(EventKind.SNAPSHOT_END, None, self.revision, False)
            return None

    # ------------------------------------------------------------ live

    def _recv_pub(self) -> Optional[tuple]:
        """One publication without blocking: (topic, Publication), or
        None when nothing is waiting; undecodable ones are counted and
        skipped."""
        assert self._sub is not None
        while True:
            try:
                frames = self._sub.recv_multipart(zmq.DONTWAIT)
            except zmq.Again:
                return None
            p = pb.Publication()
            try:
                if len(frames) != 2:
                    raise ValueError
                p.ParseFromString(frames[1])
                return frames[0].decode("ascii"), p
            except Exception:
                self.stats.bad_frames += 1

    def _live_next(self, deadline: Optional[int]) -> Optional[Event]:
        assert self._sub is not None
        while True:
            got = self._recv_pub()
            if got is None:
                wait = None if deadline is None else max(0, deadline - monotonic_ms())
                if wait == 0 or not self._sub.poll(wait):
                    if wait is not None:
                        raise Timeout("no event within the timeout", self.health)
                continue
            topic, p = got
            body = p.WhichOneof("body")
            if body == "heartbeat":
                self._live_heartbeat(p.heartbeat)
                if self._state != _LIVE:
                    return None  # the caller runs the recovery stream
                continue
            if body != "record":
                continue
            r = p.record
            # rule 2
            if p.HasField("stream_sequence"):
                last = self._topics.get(topic, 0)
                self._topics[topic] = p.stream_sequence
                if p.stream_sequence != last + 1:
                    self.stats.gaps += 1
                    if r.revision > self.revision:
                        # what was lost lies below this record, maybe above
                        # V: it and this record come in the changes since V
                        self._resync()
                        return None
                    # lost below this record, at or below V: delivered
            if p.repeat:
                self.stats.repeats += 1
                continue
            dup = self._was_delivered(r.revision)
            if dup or not self._matches(r):
                if dup:
                    self.stats.duplicates += 1
                continue
            if len(self._delivered) >= DELIVERED_MAX:
                # D is full (no clean heartbeat for long): recover, which
                # moves V past everything delivered
                self._resync()
                return None
            self._delivered.append(r.revision)
            return Event(EventKind.RECORD, r, r.revision, True)

    # ------------------------------------------------------------ public

    def next(self, timeout: Optional[float] = None) -> Event:
        """The next event: snapshot records, SNAPSHOT_END, then (when
        live) every matching change newer than the snapshot, each revision
        exactly once; after a RESET, a fresh snapshot again. A record's
        revisions ascend; across records too, except after a loss: the
        recovered records come after newer records of other topics already
        delivered.

        Raises Timeout when nothing came within ``timeout`` seconds (None:
        wait for ever), Closed after the snapshot's end when not live,
        Refused when the daemon refused the request (a BUSY answer is not
        a refusal: it is asked again after 25..50 ms, then twice as long
        each time up to 1..2 s, with jitter)."""
        if self._closed:
            raise Closed("the subscriber is closed")
        deadline = None if timeout is None else monotonic_ms() + int(timeout * 1000)
        while True:
            if self._state in (_SNAPSHOT, _CHANGES):
                ev = self._stream_next(deadline)
            elif self._state == _LIVE:
                ev = self._live_next(deadline)
            else:
                raise Closed("the stream has ended")
            if ev is not None:
                return ev

    def __iter__(self) -> Iterator[Event]:
        """Events for ever (``next()`` without a timeout); a subscriber
        that is not live stops after SNAPSHOT_END."""
        while True:
            try:
                yield self.next()
            except Closed:
                return

    def close(self) -> None:
        """Closes the sockets. Idempotent."""
        self._closed = True
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._query is not None:
            self._query.close()
            self._query = None

    def __enter__(self) -> "Subscriber":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
