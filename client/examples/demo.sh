#!/usr/bin/env bash
# demo.sh BINDIR - the main job on embedded defaults.
#
# Starts parksyncd with no config file (loopback endpoints 7101-7103, the
# database in a fresh working directory), lets Azerbaijan's Ministry of
# Economy and Tajikistan's Ministry of Industry and New Technologies push
# their updates, prints the consolidated summary a subscriber sees, and
# stops the daemon.
set -euo pipefail

bindir=$(cd "${1:-build/bin}" && pwd)
examples=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/parksync-demo-XXXXXX)
daemon_pid=

cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== starting parksyncd (database in $work)"
(cd "$work" && exec "$bindir/parksyncd" -l notice) &
daemon_pid=$!

echo "== Azerbaijan, Ministry of Economy, pushes its parks, residents and trade"
"$bindir/parksync" push --producer AZ-MOE "$examples/az-moe.jsonl"
echo "== Tajikistan, Ministry of Industry and New Technologies, pushes its trade"
"$bindir/parksync" push --producer TJ-MINT "$examples/tj-mint.jsonl"

echo "== consolidated summary, as a subscriber sees it"
"$bindir/parksync" summary

echo "== stopping parksyncd"
kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" || status=$?
daemon_pid=
if [ "$status" -ne 0 ]; then
    echo "parksyncd exited with status $status" >&2
    exit 1
fi
echo "== done"
