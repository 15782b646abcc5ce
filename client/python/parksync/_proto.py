"""The generated protobuf module of ``proto/parksync.proto`` (``pb``).

Generated code is never committed. An installed package (``pip install``,
the ``python3-parksync`` Debian package) carries ``parksync_pb2.py``,
written by ``protoc --python_out`` when the package was built, so running
it needs the protobuf runtime only. A source checkout used in place
(``PYTHONPATH=client/python``) has no generated module: it is generated
once into a cache folder (``$PARKSYNC_PROTO_CACHE``, else
``$XDG_CACHE_HOME/parksync``, else ``~/.cache/parksync``), keyed by the
schema's hash, with the ``protoc`` on ``PATH``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
# client/python/parksync -> the source tree's proto/ folder
_SOURCE_PROTO = _HERE.parents[2] / "proto" / "parksync.proto"


def _from_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("parksync.parksync_pb2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["parksync.parksync_pb2"] = module
    spec.loader.exec_module(module)
    return module


def _cache_dir() -> Path:
    if os.environ.get("PARKSYNC_PROTO_CACHE"):
        return Path(os.environ["PARKSYNC_PROTO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "parksync"


def _generate(proto: Path) -> Path:
    """Runs protoc on proto into the cache; returns the generated file."""
    digest = hashlib.sha256(proto.read_bytes()).hexdigest()[:16]
    out = _cache_dir() / ("proto-" + digest)
    target = out / "parksync_pb2.py"
    if target.exists():
        return target
    out.parent.mkdir(parents=True, exist_ok=True)
    # Generated into a fresh folder, then renamed: two processes importing
    # at once never see a half-written module.
    tmp = Path(tempfile.mkdtemp(prefix="proto-", dir=out.parent))
    try:
        subprocess.run(["protoc", "--python_out=" + str(tmp), "-I", str(proto.parent), str(proto)],
                       check=True, capture_output=True)
        try:
            os.rename(tmp, out)
        except OSError:
            if not target.exists():
                raise
    except FileNotFoundError as e:
        raise ImportError("parksync: no generated protobuf module and no protoc to make one "
                          "(apt install protobuf-compiler, or install the package)") from e
    finally:
        if tmp.exists():
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
    return target


def load() -> ModuleType:
    """The generated module: the installed one, else one generated now."""
    if (_HERE / "parksync_pb2.py").exists():
        from . import parksync_pb2  # type: ignore[attr-defined]

        return parksync_pb2
    if not _SOURCE_PROTO.exists():
        raise ImportError("parksync: parksync_pb2 is missing and %s is not there to generate it"
                          % _SOURCE_PROTO)
    return _from_file(_generate(_SOURCE_PROTO))


pb = load()
