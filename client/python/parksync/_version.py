"""The package's version: the project's (CMakeLists.txt ``project(VERSION)``).

The ``python_version`` test fails when the two differ.
"""

__version__ = "0.1.0"
