"""The producer: numbered updates to parksyncd's ingest socket,
acknowledgements from its publish socket, go-back-N resends, flow control
and an optional durable outbox; proto/README.md "Ingest" is the contract,
libparksync's client/producer.c the model followed step by step.

Sockets: XPUB -> ingest (two frames: topic = the update's kind, or
``batch``; XPUB is PUB on the wire and also shows when the daemon's SUB
subscribes), SUB <- publish subscribed to ``ack/<producer_id>/`` and then
``hb/``, DEALER -> query (at start, for the last applied sequence).

Slow joiner, both ways: the constructor waits (bounded) for the daemon's
subscription on the XPUB and for the welcome heartbeat on the SUB, which
proves the ack subscription made before it is active. A later
subscription from the daemon means a new connection (it restarted):
everything unacknowledged is sent again at once.

The window holds every unacknowledged update, encoded, in sequence order:
the first ``_sent`` entries are on the wire, the rest are in the open
outbox batch, sent once it commits (at 256 updates, a full window, and
every poll or flush): nothing goes on the wire before it is durable.
Without an outbox an update is sent at once.

An ack for S drops everything up to S. When no ack advances for the
timeout everything after the last ack is sent again, and the timeout
doubles up to 8 s. After progress it is ack_timeout (500 ms), or more
when the daemon's round trips say so (srtt + 4 rttvar, at least half
of ack_timeout above srtt, as TCP's RFC 6298: from the send of the
first update an ack covers anew to the ack; no sample across a
resend). A repeated ack while updates are
outstanding means the daemon saw a gap: one immediate resend per
acknowledged position.

Ahead of the database: the daemon's last sequence below the oldest update
still held minus one (at start, or an ack that goes back, twice) means
those sequences were acknowledged by an earlier database (a restored
backup) and deleted here: no resend can fill them. The outbox is sent
once (so the daemon sees it) and every later call raises ``Ahead``.
"""

from __future__ import annotations

import collections
import math
import re
import time
from typing import Any, Deque, Iterable, Mapping, Optional, Tuple, Union

import zmq
from google.protobuf import json_format

from ._proto import pb
from ._sock import (DEFAULT_INGEST, DEFAULT_PUBLISH, DEFAULT_QUERY, VERSION, QuerySocket,
                    monotonic_ms, open_socket, wait_for)
from .errors import Ahead, InvalidUpdate, OutboxError, ProtocolError, Timeout
from .keys import Curve
from .outbox import Outbox

DEFAULT_WINDOW = 32768  # updates in flight
DEFAULT_ACK_TIMEOUT = 0.5  # s before the first resend
DEFAULT_CONNECT_TIMEOUT = 5.0  # s the constructor waits for the daemon
MAX_TIMEOUT_MS = 8000  # ms: resend timeout ceiling
FAST_RESEND_MS = 100  # ms between resends set off by repeated acks
POLL_SLICE_MS = 100  # ms: longest single wait inside a blocking call
WAIT_MAX_S = 86400.0  # s: longest wait(); longer ones (inf too) are cut to it
HANDSHAKE_MS = 2000  # ms waited for the subscriptions once the state is known
BATCH = 256  # updates per outbox transaction, and per UpdateBatch message
SERVICE_EVERY = 64  # sends between two reads of acks
MAX_HWM = 1_000_000  # messages: ceiling of the ingest SNDHWM
MAX_UPDATE = 16 * 1024  # bytes of an encoded Update
MAX_BATCH_BYTES = 256 * 1024  # bytes of an encoded UpdateBatch
DRAIN_BUDGET = 10000  # messages read per pass before doing other work

_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_TOPICS = {"park": b"park", "resident": b"resident", "trade": b"trade", "country": b"country"}

UpdateLike = Union["pb.Update", Mapping[str, Any]]


class _Entry:
    """One update held until acknowledged."""

    __slots__ = ("sequence", "data", "topic", "sent_ms")

    def __init__(self, sequence: int, data: bytes, topic: bytes) -> None:
        self.sequence = sequence  # its sequence number
        self.data = data  # the encoded Update
        self.topic = topic  # the ingest topic: its kind
        self.sent_ms = 0  # when it last went on the wire


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _topic(u: "pb.Update") -> bytes:
    body = u.WhichOneof("body")
    if body == "delete":
        body = u.delete.WhichOneof("target")
    if body not in _TOPICS:
        raise InvalidUpdate("invalid update: no body" if body is None
                            else "invalid update: delete names no target")
    return _TOPICS[body]


class Producer:
    """Sends updates for one producer id and sees them acknowledged.

    ``producer_id`` is stable for ever ([A-Za-z0-9._-]{1,64}); updates are
    numbered 1, 2, 3, ... across restarts. With ``outbox`` (a file path),
    every update is written there before it is sent and deleted once
    acknowledged; a producer made later with the same id and outbox sends
    again what was not acknowledged and numbers on after the last update
    it holds. Without one, unacknowledged updates live in memory only.

    Not thread-safe: use a producer from one thread at a time. A
    ``with`` block closes it (``close`` does not wait for acks: call
    ``flush`` first).
    """

    def __init__(self, producer_id: str, *, ingest: str = DEFAULT_INGEST,
                 publish: str = DEFAULT_PUBLISH, query: str = DEFAULT_QUERY,
                 outbox: Optional[str] = None, window: int = DEFAULT_WINDOW,
                 ack_timeout: float = DEFAULT_ACK_TIMEOUT,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 curve: Optional[Curve] = None, sndhwm: int = 0,
                 context: Optional[zmq.Context] = None) -> None:
        """Connects and learns where this producer's sequence stands (from
        the daemon's query socket, and from the outbox when there is one).

        Raises Timeout when the daemon does not answer within
        ``connect_timeout`` seconds, OutboxError when the outbox cannot be
        opened (or belongs to another id), ValueError for a bad id. When
        the producer is ahead of the daemon's database it is still made
        (its outbox is sent once) and ``missing`` says which sequences;
        every later send, flush and poll raises Ahead. Not at a site that
        pulls from peers: its pulls bring those sequences, so the
        producer waits for them as for any ack.
        ``sndhwm`` (tests) overrides the ingest high-water mark, 2 x
        window + 1024 by default."""
        if not isinstance(producer_id, str) or not _ID.match(producer_id):
            raise ValueError("producer_id: must be 1..64 bytes of [A-Za-z0-9._-]")
        self.producer_id = producer_id
        self.window = window if window > 0 else DEFAULT_WINDOW
        self._ack_timeout_ms = int(ack_timeout * 1000) if ack_timeout > 0 else 500
        self._cur_timeout_ms = self._ack_timeout_ms
        self._srtt_ms = 0  # smoothed wait for progress; 0: no sample yet
        self._rttvar_ms = 0  # its mean deviation
        self._resent = False  # a resend since the last progress: no sample
        self._looked_ms = 0  # when acks were last read
        self._last_progress_ms = 0
        self._last_resend_ms = 0
        self.last_sent = 0  # highest sequence assigned
        self.last_acked = 0  # highest sequence acknowledged
        self.resends = 0  # updates sent again
        self._fast_resend_for = 0  # last_acked + 1 at the last repeated-ack resend
        self._outbox_deleted = 0  # acked updates deleted from the outbox up to here
        self._subscribed = False  # the daemon's SUB subscribed to our XPUB
        self._heard = False  # a heartbeat came: our ack subscription is live
        self._back_ack = 0  # last ack below last_acked, 0: none
        self._site_pulls = False  # the site's heartbeat says it pulls from peers
        self._behind_to = 0  # its acks may lag up to here while it pulls; 0: none
        self._missing: Optional[Tuple[int, int]] = None
        self._unserviced = 0
        self._entries: Deque[_Entry] = collections.deque()
        self._sent = 0  # entries on the wire, at the front of _entries
        self.health: Optional["pb.Health"] = None
        """The daemon's ``Health`` from its last heartbeat while it was
        degraded (``reason`` says why acks do not come), None while ok."""
        self.bad_frames = 0  # undecodable messages on the ack socket
        self._outbox: Optional[Outbox] = None
        self._closed = False

        ctx = context or zmq.Context.instance()
        self._ingest = self._acks = None
        self._query: Optional[QuerySocket] = None
        try:
            # Room for the whole window twice over, so that a resend burst
            # is not dropped by our own high-water mark.
            hwm = sndhwm if sndhwm > 0 else min(MAX_HWM, 2 * self.window + 1024)
            self._ingest = open_socket(ctx, zmq.XPUB, curve)
            self._ingest.setsockopt(zmq.SNDHWM, hwm)
            self._ingest.setsockopt(zmq.XPUB_VERBOSE, 1)
            self._ingest.connect(ingest)
            self._acks = open_socket(ctx, zmq.SUB, curve)
            # the ack topic first, "hb/" last: the welcome heartbeat then
            # proves both subscriptions are active
            self._acks.setsockopt(zmq.SUBSCRIBE, ("ack/%s/" % producer_id).encode())
            self._acks.setsockopt(zmq.SUBSCRIBE, b"hb/")
            self._acks.connect(publish)
            self._query = QuerySocket(ctx, query, curve)
            if outbox is not None:
                self._outbox = Outbox(outbox, producer_id)
            rep = self._query.call(connect_timeout,
                                   producer_state=pb.ProducerStateRequest(producer_id=producer_id))
            if rep.WhichOneof("body") != "producer_state":
                raise ProtocolError("unexpected reply to the producer state request")
            state = rep.producer_state.last_sequence
            # The daemon is up: give the subscriptions a moment so the
            # first updates and acks are not lost to the slow joiner.
            # Go-back-N covers the rest, so this wait is not an error.
            try:
                wait_for(lambda: self.connected, self._pump, HANDSHAKE_MS / 1000, "subscriptions")
            except Timeout:
                pass
            self.last_acked = self.last_sent = state
            if self._outbox is not None:
                self._restore(state)
            self._last_progress_ms = monotonic_ms()
        except BaseException:
            self._close_sockets()
            raise

    # ------------------------------------------------------------ start

    def _restore(self, applied: int) -> None:
        assert self._outbox is not None
        for seq, payload in self._outbox.load():
            if seq <= applied:
                continue
            u = pb.Update()
            try:
                u.ParseFromString(payload)
                topic = _topic(u)
            except Exception:
                # Our own bytes, so corruption: keep the sequence moving
                # on the park topic, the daemon consumes and rejects it.
                topic = b"park"
            self._entries.append(_Entry(seq, payload, topic))
        self._outbox.ack(applied)
        self._outbox_deleted = applied
        self.last_sent = max(self.last_sent, self._outbox.last_sequence)
        self._sent = len(self._entries)
        if self._entries:
            self._resend_all(monotonic_ms())
        oldest = self._entries[0].sequence if self._entries else self.last_sent + 1
        if oldest > applied + 1:
            if self._site_pulls:
                self._behind_to = oldest - 1  # its pulls bring the rest: wait for them
            else:
                self._missing = (applied + 1, oldest - 1)

    # ------------------------------------------------------------ wire

    def _send_entries(self, first: int, end: int) -> None:
        """Sends entries[first:end]: runs as UpdateBatch messages (one
        message costs both ends' ZeroMQ threads about what a whole batch's
        bytes do), a lone update as itself. Never blocks: past the
        high-water mark a message is dropped and go-back-N covers it."""
        entries = self._entries
        now = monotonic_ms()
        for k in range(first, end):
            entries[k].sent_ms = now
        i = first
        while i < end:
            n = 0
            size = 0
            parts = []
            while end - i > 1 and i + n < end and n < BATCH:
                e = entries[i + n]
                if size + len(e.data) + 8 > MAX_BATCH_BYTES:
                    break
                # UpdateBatch.updates is field 1, length-delimited
                parts.append(b"\x0a" + _varint(len(e.data)) + e.data)
                size += len(parts[-1])
                n += 1
            try:
                if n <= 1:
                    self._ingest.send_multipart([entries[i].topic, entries[i].data], zmq.DONTWAIT)
                    n = 1
                else:
                    self._ingest.send_multipart([b"batch", b"".join(parts)], zmq.DONTWAIT)
            except zmq.Again:
                pass
            i += n

    def _resend_all(self, now: int) -> None:
        self._send_entries(0, self._sent)
        self.resends += self._sent
        self._resent = True
        self._last_resend_ms = now
        self._last_progress_ms = now

    def _flush_pending(self) -> None:
        """Commits the outbox batch, then sends what it held: durable
        before it is on the wire."""
        if self._outbox is not None and self._outbox.in_batch:
            self._outbox.commit()
        if self._sent == len(self._entries):
            return
        if self._sent == 0:
            self._last_progress_ms = monotonic_ms()  # the resend timer starts now
        self._send_entries(self._sent, len(self._entries))
        self._sent = len(self._entries)

    def _drop_pending(self) -> None:
        """After a failed outbox commit the batch is gone: its updates are
        forgotten (never sent), numbering resumes after the last durable."""
        while len(self._entries) > self._sent:
            self._entries.pop()
        self.last_sent = self._entries[-1].sequence if self._entries else self.last_acked
        if self._outbox is not None:
            self.last_sent = max(self.last_sent, self._outbox.last_sequence)

    def _outbox_trim(self, force: bool) -> None:
        """Deletes acknowledged updates from the outbox: inside the open
        batch when there is one, else when enough piled up or all are
        acknowledged."""
        if self._outbox is None or self.last_acked <= self._outbox_deleted:
            return
        if (not force and not self._outbox.in_batch
                and self.last_acked - self._outbox_deleted < BATCH
                and self.last_acked < self.last_sent):
            return
        self._outbox.ack(self.last_acked)
        self._outbox_deleted = self.last_acked

    # ------------------------------------------------------------ acks

    def _set_ahead(self, first: int, last: int) -> None:
        self._missing = (first, last)

    def _on_ack(self, acked: int, now: int) -> None:
        if acked < self.last_acked and (self._site_pulls or self._behind_to):
            # The site is catching up with its peers (it lost its disk
            # with ack_after = peers:N): its pulls bring the rest back.
            self._behind_to = max(self._behind_to, self.last_acked)
            return
        if acked >= self._behind_to:
            self._behind_to = 0
        if acked < self.last_acked:
            # The daemon went back (its database was replaced): once is
            # perhaps an old ack still on its way, the same twice is its
            # answer to our resends.
            if acked == self._back_ack:
                self._set_ahead(acked + 1, self.last_acked)
            self._back_ack = acked
            return
        if acked > self.last_acked:
            if (self._sent > 0 and not self._resent
                    and now - self._looked_ms <= POLL_SLICE_MS):
                self._learn_timeout(now - self._entries[0].sent_ms)
            # Beyond what we sent only if another process used our id:
            # numbering goes on after what the daemon applied.
            self.last_sent = max(self.last_sent, acked)
            while self._sent > 0 and self._entries[0].sequence <= acked:
                self._entries.popleft()
                self._sent -= 1
            self.last_acked = acked
            # after a resend the backed-off timeout stays until a sample
            # (RFC 6298, 5.7), or a daemon slower than every timeout so
            # far would be resent to at every commit and never sampled
            if not self._resent:
                self._cur_timeout_ms = self._base_timeout()
            self._resent = False
            self._last_progress_ms = now
            self._outbox_trim(False)
            return
        if (self._sent > 0 and self._fast_resend_for != acked + 1
                and now - self._last_resend_ms >= FAST_RESEND_MS):
            # A gap at the daemon: the next one was lost. Once per
            # position; the timeout covers a resend that is lost too.
            self._fast_resend_for = acked + 1
            self._resend_all(now)

    def _learn_timeout(self, waited_ms: int) -> None:
        """The resend timeout follows how long this daemon takes to
        acknowledge (libparksync's learn_timeout): a daemon whose commits
        take longer than ack_timeout would otherwise be sent the whole
        window again at each of them. Only when acks were read within
        POLL_SLICE_MS before: an ack that waited for the caller to come
        back says how long the caller was away."""
        r = min(MAX_TIMEOUT_MS, max(1, waited_ms))
        if self._srtt_ms == 0:
            self._srtt_ms, self._rttvar_ms = r, r // 2
            return
        self._rttvar_ms = (3 * self._rttvar_ms + abs(self._srtt_ms - r)) // 4
        self._srtt_ms = (7 * self._srtt_ms + r) // 8

    def _base_timeout(self) -> int:
        """ack_timeout, or more when the daemon's waits say so: srtt + 4
        rttvar, with at least half of ack_timeout above srtt (a daemon as
        slow every time brings rttvar near 0, and a stall of a few ms
        more would send the whole window again)."""
        dev = max(4 * self._rttvar_ms, self._ack_timeout_ms // 2)
        t = max(self._ack_timeout_ms, self._srtt_ms + dev)
        return min(MAX_TIMEOUT_MS, t)

    def _drain_subscriptions(self, now: int) -> None:
        for _ in range(DRAIN_BUDGET):
            try:
                frame = self._ingest.recv(zmq.DONTWAIT)
            except zmq.Again:
                return
            if frame[:1] != b"\x01":
                continue  # an unsubscription: the connection went away
            if self._subscribed and self._sent > 0:
                self._resend_all(now)  # a new connection: the old one's queue is gone
            self._subscribed = True

    def _drain_acks(self) -> None:
        for _ in range(DRAIN_BUDGET):
            try:
                frames = self._acks.recv_multipart(zmq.DONTWAIT)
            except zmq.Again:
                return
            p = pb.Publication()
            try:
                if len(frames) != 2:
                    raise ValueError
                p.ParseFromString(frames[1])
            except Exception:
                self.bad_frames += 1
                continue
            body = p.WhichOneof("body")
            if body == "ack" and p.ack.producer_id == self.producer_id:
                self._on_ack(p.ack.last_sequence, monotonic_ms())
            elif body == "heartbeat":
                self._heard = True
                hb = p.heartbeat
                self._site_pulls = hb.pulls
                self.health = hb.health if hb.HasField("health") and hb.health.degraded else None
            if self._missing is not None:
                return

    def _service(self) -> None:
        """Reads acks and subscriptions without blocking, resends when due."""
        self._unserviced = 0
        self._drain_acks()
        self._looked_ms = now = monotonic_ms()
        self._drain_subscriptions(now)
        if self._sent > 0 and now - self._last_progress_ms >= self._cur_timeout_ms:
            self._resend_all(now)
            self._cur_timeout_ms = min(MAX_TIMEOUT_MS, self._cur_timeout_ms * 2)

    def _pump(self, wait_ms: int) -> None:
        """One pass: commit and send the outbox batch, wait up to wait_ms
        (or the resend deadline) for acks, read them, resend when due."""
        self._flush_pending()
        if self._sent > 0:
            due = self._last_progress_ms + self._cur_timeout_ms - monotonic_ms()
            wait_ms = max(0, min(wait_ms, due))
        poller = zmq.Poller()
        poller.register(self._acks, zmq.POLLIN)
        poller.register(self._ingest, zmq.POLLIN)
        poller.poll(wait_ms)
        self._service()

    def _check(self) -> None:
        if self._closed:
            raise ValueError("the producer is closed")
        if self._missing is not None:
            raise Ahead(self.producer_id, *self._missing)

    def _wait(self, cond: Any, timeout: Optional[float], what: str) -> None:
        self._check()
        try:
            self._pump(0)
            self._check()
            deadline = None if timeout is None else time.monotonic() + timeout
            while not cond():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise Timeout(self._timeout_text(what), self.health)
                self._pump(POLL_SLICE_MS if left is None
                           else min(POLL_SLICE_MS, int(left * 1000) + 1))
                self._check()
        except OutboxError:
            self._drop_pending()
            raise

    def _timeout_text(self, what: str) -> str:
        text = "timed out waiting for %s (acknowledged %d of %d)" % (what, self.last_acked,
                                                                     self.last_sent)
        if self.health is not None:
            text += "; parksyncd says: %s" % self.health.reason
        return text

    # ------------------------------------------------------------ public

    @property
    def connected(self) -> bool:
        """The daemon subscribed to our ingest socket and a heartbeat came."""
        return self._subscribed and self._heard

    @property
    def in_flight(self) -> int:
        """Updates sent (or about to be) and not yet acknowledged."""
        return len(self._entries)

    @property
    def missing(self) -> Optional[Tuple[int, int]]:
        """When the producer is ahead of the daemon's database: the
        sequences (first, last) the daemon misses and no outbox holds."""
        return self._missing

    def send(self, update: UpdateLike, timeout: Optional[float] = None) -> int:
        """Sends one update; returns its sequence.

        ``update`` is a ``pb.Update`` or a dict in protobuf's JSON mapping
        (``{"park": {"park_id": "AZ-SUMGAIT-CHEM", "country": "AZ"}}``,
        enums by name, money in cents). The producer fills ``version``,
        ``producer_id`` and ``sequence``, and ``event_time_us`` when it is
        absent or 0 (now); the caller's object is not modified. Blocks,
        reading acks and resending, while the window is full (up to
        ``timeout`` seconds; None: no limit). With an outbox the update
        goes into the open outbox batch and onto the wire when the batch
        commits (256 updates, a full window, or the next poll or flush):
        call ``poll`` or ``flush`` when a pause in sending follows.

        Raises InvalidUpdate (no body, over 16 KiB encoded), Timeout,
        OutboxError (the batch's updates are then forgotten and
        ``last_sent`` is the last durable one), Ahead."""
        self._check()
        u = pb.Update()
        if isinstance(update, Mapping):
            try:
                json_format.ParseDict(update, u)
            except json_format.ParseError as e:
                raise InvalidUpdate("invalid update: %s" % e) from e
        else:
            u.CopyFrom(update)
        topic = _topic(u)
        u.version = VERSION
        u.producer_id = self.producer_id
        if not u.event_time_us:
            u.event_time_us = int(time.time() * 1_000_000)
        if len(self._entries) >= self.window:
            self._wait(lambda: len(self._entries) < self.window, timeout, "room in the window")
        # the window may have moved the numbering (an ack from the future)
        u.sequence = self.last_sent + 1
        data = u.SerializeToString()
        if len(data) > MAX_UPDATE:
            raise InvalidUpdate("invalid update: %d bytes encoded, at most %d"
                                % (len(data), MAX_UPDATE))
        try:
            if self._outbox is not None:
                # durable before it is on the wire: into the batch now,
                # sent when the batch commits
                try:
                    self._outbox.begin()
                    self._outbox.add(u.sequence, data)
                except OutboxError:
                    self._outbox.rollback()
                    raise
            self._entries.append(_Entry(u.sequence, data, topic))
            self.last_sent = u.sequence
            if (self._outbox is None or len(self._entries) - self._sent >= BATCH
                    or len(self._entries) >= self.window):
                self._flush_pending()
            self._unserviced += 1
            if self._unserviced >= SERVICE_EVERY or len(self._entries) >= self.window:
                self._service()
        except OutboxError:
            self._drop_pending()
            raise
        return u.sequence

    def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until every update sent is acknowledged, resending as
        needed; None: no limit. Raises Timeout (with the daemon's health
        when it said it is degraded), Ahead, OutboxError."""
        self._wait(lambda: self.last_acked >= self.last_sent, timeout, "acknowledgements")
        try:
            self._outbox_trim(True)
        except OutboxError:
            self._drop_pending()
            raise

    def push(self, updates: Iterable[UpdateLike], timeout: Optional[float] = None) -> int:
        """Sends every update of an iterable, then waits until all are
        acknowledged: ``send`` each, then ``flush``. ``timeout`` (seconds,
        None: no limit) bounds the whole call. Returns the last sequence
        assigned. Raises as send and flush do."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for u in updates:
            self.send(u, None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.last_sent

    def poll(self) -> None:
        """Commits and sends the outbox batch, reads whatever acks have
        arrived and resends when due, without blocking."""
        self._check()
        try:
            self._pump(0)
        except OutboxError:
            self._drop_pending()
            raise
        self._check()

    def wait(self, timeout: float) -> None:
        """Waits until anything arrives from the daemon (an ack, a
        heartbeat, a refusal) or a resend comes due, at most ``timeout``
        seconds, then does what ``poll`` does: the way to block for the
        next ack, as ``ps_producer_wait`` in C. ValueError when timeout is
        negative or NaN; one over a day (``math.inf`` too) waits a day,
        which a running daemon's heartbeat, once a second, always cuts
        short."""
        if not timeout >= 0:
            raise ValueError("timeout must be a number of seconds, not negative")
        self._check()
        try:
            self._pump(math.ceil(min(timeout, WAIT_MAX_S) * 1000))
        except OutboxError:
            self._drop_pending()
            raise
        self._check()

    def note(self, key: str) -> Optional[str]:
        """The outbox note under key (e.g. which input is being sent, as
        ``parksync push`` keeps), None when none or without an outbox."""
        return None if self._outbox is None else self._outbox.note(key)

    def set_note(self, key: str, value: Optional[str]) -> None:
        """Commits pending updates, then stores value under key in the
        outbox (None deletes it), so a note never claims more than is
        durable. ValueError without an outbox."""
        if self._outbox is None:
            raise ValueError("notes need an outbox")
        try:
            self._flush_pending()
        except OutboxError:
            self._drop_pending()
            raise
        self._outbox.set_note(key, value)

    def _close_sockets(self) -> None:
        for s in (self._ingest, self._acks):
            if s is not None:
                s.close()
        if self._query is not None:
            self._query.close()
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def close(self) -> None:
        """Closes sockets and the outbox. What send accepted stays in a
        durable outbox (the open batch is committed, not sent) and is
        resent by the next producer with the same id and outbox;
        acknowledged updates are deleted. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._outbox is not None:
            try:
                self._outbox.commit()
                self._outbox_trim(True)
            except OutboxError:
                pass  # nowhere to report it; the outbox keeps what it holds
        self._close_sockets()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
