"""Exceptions of the parksync client: one class per way a call can fail,
as libparksync's ``ps_err_t`` has one value per way."""

from __future__ import annotations

from typing import Optional


class ParksyncError(Exception):
    """Base of every error this package raises."""


class Timeout(ParksyncError, TimeoutError):
    """The deadline passed first (the daemon did not answer, or acks did
    not come). ``health`` holds the daemon's last word on why, when it
    said it is degraded (a ``Health`` message), else None."""

    def __init__(self, message: str, health: Optional[object] = None) -> None:
        super().__init__(message)
        self.health = health


class InvalidUpdate(ParksyncError, ValueError):
    """An update that cannot be sent (no body, too large, bad id)."""


class ProtocolError(ParksyncError):
    """The daemon sent something undecodable or unexpected."""


class Refused(ParksyncError):
    """The daemon answered with an ``Error``: ``code`` (an ``ErrorCode``
    number) and its ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OutboxError(ParksyncError):
    """The producer's outbox database failed (its SQLite message)."""


class Closed(ParksyncError):
    """The stream has ended (a subscriber that is not live, after its
    snapshot), or the object was closed."""


class Ahead(ParksyncError):
    """The producer is ahead of the daemon's database: sequences
    ``missing_from``..``missing_to`` were acknowledged by an earlier
    database (a restored backup) and deleted from the outbox, so no resend
    can fill them. Move the outbox aside and push what was sent since the
    backup again from its source with a new outbox."""

    def __init__(self, producer_id: str, missing_from: int, missing_to: int) -> None:
        super().__init__(
            "producer %s is ahead of parksyncd's database: sequences %d..%d are missing "
            "there (a restored backup?) and no longer held here"
            % (producer_id, missing_from, missing_to))
        self.producer_id = producer_id
        self.missing_from = missing_from
        self.missing_to = missing_to
