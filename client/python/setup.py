"""Build step of the parksync package: the protobuf module.

Generated code is never committed, so building the package runs
``protoc --python_out`` on the schema and puts ``parksync_pb2.py`` (and
the schema itself, for reference) into the built package. An installed
package then needs the protobuf runtime only, never protoc, and its
generated code comes from the same schema as the daemon it was built
with. The schema is the source tree's ``proto/parksync.proto``
(``$PARKSYNC_PROTO`` overrides; an sdist carries its own copy). protoc
(Debian: protobuf-compiler) must be on PATH at build time.

Everything else is in pyproject.toml.
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent


def schema() -> Path:
    for candidate in (os.environ.get("PARKSYNC_PROTO"), HERE.parents[1] / "proto" / "parksync.proto",
                      HERE / "parksync" / "parksync.proto"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise SystemExit("parksync: proto/parksync.proto not found (set PARKSYNC_PROTO)")


class BuildPy(build_py):
    """build_py, then protoc into the built package."""

    def run(self) -> None:
        super().run()
        proto = schema()
        out = Path(self.build_lib) / "parksync"
        out.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(["protoc", "--python_out=" + str(out), "-I", str(proto.parent),
                            str(proto)], check=True)
        except FileNotFoundError:
            raise SystemExit("parksync: building needs protoc (apt install protobuf-compiler)")
        shutil.copyfile(proto, out / "parksync.proto")


class Sdist(sdist):
    """An sdist carries the schema, so it builds away from the source tree."""

    def make_release_tree(self, base_dir: str, files: list) -> None:
        super().make_release_tree(base_dir, files)
        shutil.copyfile(schema(), Path(base_dir) / "parksync" / "parksync.proto")


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
