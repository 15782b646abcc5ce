"""One-off questions to the daemon's query socket: ``ping`` and
``producer_state``."""

from __future__ import annotations

from typing import Optional

import zmq

from ._proto import pb
from ._sock import DEFAULT_QUERY, QuerySocket
from .errors import ProtocolError
from .keys import Curve


def _ask(query: str, curve: Optional[Curve], timeout: float, context: Optional[zmq.Context],
         expect: str, **body: object) -> "pb.QueryReply":
    q = QuerySocket(context or zmq.Context.instance(), query, curve)
    try:
        rep = q.call(timeout, **body)
    finally:
        q.close()
    if rep.WhichOneof("body") != expect:
        raise ProtocolError("parksyncd answered %s with %s" % (expect, rep.WhichOneof("body")))
    return rep


def ping(query: str = DEFAULT_QUERY, *, curve: Optional[Curve] = None, timeout: float = 5.0,
         context: Optional[zmq.Context] = None) -> "pb.Pong":
    """Asks the daemon whether it is up. Returns its ``Pong``: ``epoch``
    (the database's identity), ``head_revision``, ``time_us`` and
    ``health`` (``health.degraded`` with ``health.reason``, a sentence for
    people, while the daemon is degraded; ``health.last_commit_us``).
    Raises Timeout when it does not answer within ``timeout`` seconds."""
    return _ask(query, curve, timeout, context, "pong", ping=pb.Ping()).pong


def producer_state(producer_id: str, query: str = DEFAULT_QUERY, *,
                   curve: Optional[Curve] = None, timeout: float = 5.0,
                   context: Optional[zmq.Context] = None) -> "pb.ProducerState":
    """What the daemon counted for one producer: ``last_sequence`` (0: it
    does not know the producer), ``applied``, ``duplicates``, ``gaps``,
    ``rejected``, ``last_seen_us``. Raises Timeout, or Refused (say, for
    an invalid id)."""
    rep = _ask(query, curve, timeout, context, "producer_state",
               producer_state=pb.ProducerStateRequest(producer_id=producer_id))
    return rep.producer_state
