"""CURVE keys from the files ``parksync keygen NAME`` writes.

A key file is UTF-8 text: blank lines and lines starting with ``#`` are
comments (unless the line is itself a key: ``#`` is a Z85 digit), and
exactly one other line holds the 40-character Z85 key. ``NAME.key`` holds
a secret key and must not be accessible to others (mode 0600 or 0640);
``NAME.pub`` holds a public key. The rules are libparksync's (proto/keys.h).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Optional

import zmq

Z85_LEN = 40  # characters of a key in Z85
_Z85 = ("0123456789abcdefghijklmnopqrstuvwxyz"
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
_FILE_MAX = 4096  # bytes of a key file at most


def z85_valid(text: str) -> bool:
    """True when text is exactly one 32-byte key in Z85."""
    if len(text) != Z85_LEN or any(c not in _Z85 for c in text):
        return False
    for i in range(0, Z85_LEN, 5):
        v = 0
        for c in text[i:i + 5]:
            v = v * 85 + _Z85.index(c)
        if v > 0xFFFFFFFF:
            return False
    return True


def read_key_file(path: str, secret: bool) -> str:
    """The Z85 key in a key file. Raises ValueError naming the file and
    what is wrong (a secret key open to others, no key, several keys), or
    OSError when it cannot be read."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("%s: not a regular file" % path)
        if secret and st.st_mode & stat.S_IRWXO:
            raise ValueError("%s: a secret key must not be accessible to others (mode %04o; "
                             "chmod 600 it)" % (path, st.st_mode & 0o7777))
        data = f.read(_FILE_MAX)
    if len(data) >= _FILE_MAX:
        raise ValueError("%s: too large for a key file (at most %d bytes)" % (path, _FILE_MAX - 1))
    found = None
    for raw in data.decode("utf-8", "replace").split("\n"):
        line = raw.strip(" \t\r")
        if not line or (line.startswith("#") and not z85_valid(line)):
            continue
        if found is not None or not z85_valid(line):
            raise ValueError("%s: expected one %s key of %d Z85 characters (as `parksync keygen` "
                             "writes) and comments" % (path, "secret" if secret else "public",
                                                       Z85_LEN))
        found = line
    if found is None:
        raise ValueError("%s: holds no key" % path)
    return found


@dataclass(frozen=True)
class Curve:
    """CURVE keys for every socket to a daemon with ``[security] curve =
    on``: the daemon's public key, and this client's secret key (its
    public key is derived when not given). Z85 text, 40 characters each."""

    server_public_key: str
    secret_key: str
    public_key: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("server_public_key", "secret_key", "public_key"):
            v = getattr(self, name)
            if v is not None and not z85_valid(v):
                raise ValueError("Curve.%s: not a 40-character Z85 key" % name)

    @classmethod
    def from_files(cls, server_key_file: str, key_file: str) -> "Curve":
        """Keys from ``parksync keygen`` files, like the CLI's
        ``--server-key FILE --key FILE``: the daemon's ``.pub`` and this
        client's ``.key``."""
        return cls(server_public_key=read_key_file(server_key_file, secret=False),
                   secret_key=read_key_file(key_file, secret=True))

    def apply(self, sock: zmq.Socket) -> None:
        """Makes sock a CURVE client of the daemon (before it connects)."""
        public = self.public_key or zmq.curve_public(self.secret_key.encode()).decode()
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public_key.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret_key.encode())
