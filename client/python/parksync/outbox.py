"""A producer's durable outbox in SQLite: updates written before they are
sent, deleted once the daemon acknowledges them.

The file is libparksync's (client/outbox.c), table for table, so a Python
producer resumes an outbox a C producer (or ``parksync push --outbox``)
left, and the other way round::

    outbox(sequence INTEGER PRIMARY KEY, payload BLOB)   encoded Updates
    meta(producer_id TEXT, last_sequence INTEGER)        one row
    note(key TEXT PRIMARY KEY, value TEXT)               the application's notes

WAL journal, ``synchronous = NORMAL``: a commit survives a crash of the
process without an fsync per update; a power loss may drop the last
commits, and the daemon's acknowledged state plus go-back-N cover what is
left. Writes are batched: ``begin`` opens one transaction, ``add`` stores
updates in it, ``commit`` makes them durable together and advances
``meta.last_sequence``.
"""

from __future__ import annotations

import sqlite3
from typing import Iterator, Optional, Tuple

from .errors import OutboxError

_BUSY_MS = 2000  # ms to wait for a lock another process holds

_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS outbox(sequence INTEGER PRIMARY KEY, payload BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta(producer_id TEXT NOT NULL, last_sequence INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS note(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Outbox:
    """One producer's outbox file. Every method raises OutboxError with
    SQLite's message when the database fails."""

    def __init__(self, path: str, producer_id: str) -> None:
        """Opens or creates the outbox at path for producer_id. Raises
        OutboxError when the file belongs to another producer id."""
        try:
            # isolation_level None: transactions are ours (BEGIN IMMEDIATE),
            # never the sqlite3 module's implicit ones.
            self.db = sqlite3.connect(path, timeout=_BUSY_MS / 1000, isolation_level=None)
        except sqlite3.Error as e:
            raise OutboxError("opening the outbox %s: %s" % (path, e)) from e
        self.in_batch = False
        self._batch_max = 0
        try:
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT producer_id, last_sequence FROM meta LIMIT 1").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta(producer_id, last_sequence) VALUES(?, 0)",
                                (producer_id,))
                self.last_sequence = 0
            elif row[0] != producer_id:
                raise OutboxError("outbox belongs to producer '%s', not '%s'"
                                  % (row[0], producer_id))
            else:
                self.last_sequence = int(row[1])
        except sqlite3.Error as e:
            self.db.close()
            raise OutboxError("creating the outbox schema: %s" % e) from e
        except OutboxError:
            self.db.close()
            raise

    def _exec(self, what: str, sql: str, args: Tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as e:
            raise OutboxError("%s: %s" % (what, e)) from e

    def load(self) -> Iterator[Tuple[int, bytes]]:
        """Every stored update, (sequence, encoded Update), ascending."""
        cur = self._exec("reading the outbox", "SELECT sequence, payload FROM outbox ORDER BY sequence")
        for seq, payload in cur:
            yield int(seq), bytes(payload)

    def begin(self) -> None:
        """Opens the write transaction of a batch; a no-op when one is open."""
        if self.in_batch:
            return
        self._exec("starting an outbox transaction", "BEGIN IMMEDIATE")
        self.in_batch = True
        self._batch_max = 0

    def add(self, sequence: int, payload: bytes) -> None:
        """Stores one update in the open batch."""
        assert self.in_batch
        self._exec("writing to the outbox",
                   "INSERT OR REPLACE INTO outbox(sequence, payload) VALUES(?, ?)",
                   (sequence, payload))
        self._batch_max = max(self._batch_max, sequence)

    def commit(self) -> None:
        """Advances meta.last_sequence to the highest sequence added and
        commits the batch; on failure the batch is rolled back. A no-op
        when no batch is open."""
        if not self.in_batch:
            return
        try:
            if self._batch_max > self.last_sequence:
                self._exec("writing outbox meta",
                           "UPDATE meta SET last_sequence = max(last_sequence, ?)",
                           (self._batch_max,))
            self._exec("committing the outbox", "COMMIT")
        except OutboxError:
            self.rollback()
            raise
        self.in_batch = False
        self.last_sequence = max(self.last_sequence, self._batch_max)

    def rollback(self) -> None:
        """Abandons the open batch; a no-op when none is open."""
        if not self.in_batch:
            return
        self.in_batch = False
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolled back by itself after the failure

    def ack(self, sequence: int) -> None:
        """Deletes every update up to and including sequence (inside the
        open batch when there is one)."""
        self._exec("deleting acknowledged updates", "DELETE FROM outbox WHERE sequence <= ?",
                   (sequence,))

    def note(self, key: str) -> Optional[str]:
        """The note stored under key, None when there is none."""
        row = self._exec("reading an outbox note", "SELECT value FROM note WHERE key = ?",
                         (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_note(self, key: str, value: Optional[str]) -> None:
        """Stores value under key (None deletes it), durably."""
        if value is None:
            self._exec("deleting an outbox note", "DELETE FROM note WHERE key = ?", (key,))
        else:
            self._exec("writing an outbox note",
                       "INSERT OR REPLACE INTO note(key, value) VALUES(?, ?)", (key, value))

    def close(self) -> None:
        """Closes, rolling back an open batch."""
        self.rollback()
        self.db.close()
