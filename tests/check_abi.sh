#!/bin/sh
# check_abi.sh LIB HEADER_DIR - the shared library exports its API and
# nothing else (client/libparksync.map): every symbol it defines is ps_*
# or the generated protobuf-c code's parksync__v1__*, under version
# PARKSYNC_0, and every ps_ function parksync.h declares is among them, so
# a program using the header links against the library. Exit 1 with the
# offending names otherwise.
set -eu
lib=$1
header=$2/parksync.h
syms=$(nm -D --defined-only "$lib" | awk '$3 != "PARKSYNC_0" { print $3 }' | sed 's/@.*//')
[ -n "$syms" ] || { echo "check_abi: no symbols read from $lib" >&2; exit 1; }
extra=$(echo "$syms" | grep -v -e '^ps_' -e '^parksync__v1__' || true)
if [ -n "$extra" ]; then
    echo "check_abi: $lib exports internals:" >&2
    echo "$extra" | sed 's/^/  /' >&2
    exit 1
fi
unversioned=$(objdump -T "$lib" | awk '$NF ~ /^ps_/ && $(NF-1) != "PARKSYNC_0" { print $NF }')
if [ -n "$unversioned" ]; then
    echo "check_abi: not under version PARKSYNC_0: $unversioned" >&2
    exit 1
fi
declared=$(grep -oE '\bps_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
missing=$(for f in $declared; do echo "$syms" | grep -qx "$f" || echo "$f"; done)
if [ -n "$missing" ]; then
    echo "check_abi: declared in parksync.h, not exported by $lib:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    exit 1
fi
echo "check_abi: $(echo "$syms" | grep -c '^ps_') ps_ functions and $(echo "$syms" | grep -c '^parksync__v1__') protobuf-c symbols, nothing else"
