#!/usr/bin/env bash
# demo.sh BINDIR - the main job on embedded defaults.
#
# Starts parksyncd with the embedded defaults except its endpoints, lets
# Azerbaijan's Ministry of Economy and Tajikistan's Ministry of Industry
# and New Technologies push their updates, prints the consolidated summary
# a subscriber sees, and stops the daemon.
#
# Everything lives in a fresh temporary directory: the database and every
# endpoint (ipc:// sockets there, not the default loopback ports), so the
# demo never talks to another parksyncd on this machine (an installed
# service, a colleague's) and never fails because one holds the ports.
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

mkdir -m 0700 "$work/run"
printf '[endpoints]\ningest = ipc://%s/ingest\npublish = ipc://%s/publish\nquery = ipc://%s/query\ncontrol = ipc://%s/run/control\n' \
    "$work" "$work" "$work" "$work" >"$work/parksyncd.conf"
endpoints=(--ingest "ipc://$work/ingest" --publish "ipc://$work/publish"
           --query "ipc://$work/query")
control=(--control "ipc://$work/run/control")

echo "== starting parksyncd (database and endpoints in $work)"
(cd "$work" && exec "$bindir/parksyncd" -c "$work/parksyncd.conf" -l notice) &
daemon_pid=$!
# pushing before our own daemon answers would only wait (or reach nobody)
for _ in $(seq 100); do
    kill -0 "$daemon_pid" 2>/dev/null || { echo "parksyncd did not start" >&2; exit 1; }
    "$bindir/parksync" status "${control[@]}" --timeout 1 >/dev/null 2>&1 && break
    sleep 0.1
done
"$bindir/parksync" status "${control[@]}" --timeout 1 >/dev/null ||
    { echo "parksyncd does not answer on ipc://$work/run/control" >&2; exit 1; }

echo "== Azerbaijan, Ministry of Economy, pushes its parks, residents and trade"
"$bindir/parksync" push "${endpoints[@]}" --producer AZ-MOE "$examples/az-moe.jsonl"
echo "== Tajikistan, Ministry of Industry and New Technologies, pushes its trade"
"$bindir/parksync" push "${endpoints[@]}" --producer TJ-MINT "$examples/tj-mint.jsonl"

echo "== consolidated summary, as a subscriber sees it"
"$bindir/parksync" summary "${endpoints[@]}"

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
