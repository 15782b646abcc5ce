"""ZeroMQ chores shared by the producer, the subscriber and the query
calls: sockets with the daemon's limits, and the query DEALER."""

from __future__ import annotations

import time
from typing import Callable, Optional

import zmq

from ._proto import pb
from .errors import ProtocolError, Refused, Timeout
from .keys import Curve

MAX_MSG = 1 << 20  # bytes: the daemon's ZMQ_MAXMSGSIZE (WIRE_MAX_MSG); peers set it too
LINGER_MS = 0  # ms: nothing is worth waiting for at close (go-back-N resends)
VERSION = 1  # protocol version of every message

DEFAULT_INGEST = "tcp://127.0.0.1:7101"
DEFAULT_PUBLISH = "tcp://127.0.0.1:7102"
DEFAULT_QUERY = "tcp://127.0.0.1:7103"


def monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


def open_socket(ctx: zmq.Context, kind: int, curve: Optional[Curve]) -> zmq.Socket:
    """A socket with the daemon's message size limit and CURVE applied,
    not yet connected."""
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, LINGER_MS)
    s.setsockopt(zmq.MAXMSGSIZE, MAX_MSG)
    if curve is not None:
        curve.apply(s)
    return s


def left_ms(deadline: Optional[float]) -> Optional[int]:
    """Milliseconds until deadline (a time.monotonic() value), None: no
    deadline."""
    if deadline is None:
        return None
    return max(0, int((deadline - time.monotonic()) * 1000))


def deadline_of(timeout: Optional[float]) -> Optional[float]:
    return None if timeout is None else time.monotonic() + timeout


class QuerySocket:
    """A DEALER to the daemon's query ROUTER: one frame each way, replies
    matched by request id."""

    def __init__(self, ctx: zmq.Context, endpoint: str, curve: Optional[Curve],
                 first_id: Optional[int] = None) -> None:
        self.sock = open_socket(ctx, zmq.DEALER, curve)
        self.sock.connect(endpoint)
        # distinct across runs, so the daemon's logs tell clients apart
        self.next_id = first_id if first_id is not None else int(time.time() * 1_000_000)

    def close(self) -> None:
        self.sock.close()

    def new_id(self) -> int:
        rid = self.next_id
        self.next_id += 1
        return rid

    def send(self, req: "pb.QueryRequest") -> None:
        req.version = VERSION
        try:
            self.sock.send(req.SerializeToString(), zmq.DONTWAIT)
        except zmq.Again:
            pass  # the DEALER's queue is full: as if the network lost it

    def recv(self, timeout_ms: Optional[int]) -> Optional["pb.QueryReply"]:
        """The next reply, or None when none came within timeout_ms
        (None: wait for ever). Undecodable replies raise ProtocolError."""
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        rep = pb.QueryReply()
        try:
            rep.ParseFromString(frames[-1])
        except Exception as e:  # DecodeError, and RuntimeWarning-like errors of the C backend
            raise ProtocolError("undecodable query reply (%d bytes)" % len(frames[-1])) from e
        return rep

    def call(self, timeout: float, retry: float = 1.0, **body: object) -> "pb.QueryReply":
        """Sends a request with one body field and returns its reply,
        asking again every ``retry`` seconds (a daemon that restarted
        meanwhile forgot the first ask; any answer to any ask is the same)
        until ``timeout``. Raises Timeout, or Refused for an Error reply."""
        deadline = time.monotonic() + timeout
        first = self.next_id
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise Timeout("parksyncd did not answer within %.1f s" % timeout)
            if now >= next_send:
                self.send(pb.QueryRequest(request_id=self.new_id(), **body))
                next_send = now + retry
            rep = self.recv(int((min(next_send, deadline) - now) * 1000) + 1)
            if rep is None or not first <= rep.request_id < self.next_id:
                continue  # none, or not ours
            if rep.WhichOneof("body") == "error":
                raise Refused(rep.error.code, rep.error.message or "refused by parksyncd")
            return rep


def wait_for(cond: Callable[[], bool], step: Callable[[int], None], timeout: Optional[float],
             what: str) -> None:
    """Calls step(slice_ms) until cond() or the deadline (Timeout)."""
    deadline = deadline_of(timeout)
    while not cond():
        left = left_ms(deadline)
        if left == 0:
            raise Timeout("timed out waiting for %s" % what)
        step(100 if left is None else min(100, left))
