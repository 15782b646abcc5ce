#!/bin/sh
# Installs the peers (Debian packages, by name), builds bench_peers in
# Release without sanitizers, prints the machine, and runs it with the
# options given (see README.md). bench_peers starts every server itself
# on free 127.0.0.1 ports with data under one temporary directory, which
# this script removes at the end; it stops only the servers it started.
#
#   tests/bench/peers/run.sh [-n UPDATES] [-r ROUNDS] [-t SECONDS] [-S] [-N RECORDS] ...
set -eu

root=$(cd "$(dirname "$0")/../../.." && pwd)
build=${BUILD:-$root/build-peers}
jobs=${JOBS:-2}
packages="nats-server libnats-dev redis-server libhiredis-dev mosquitto libmosquitto-dev
etcd-server libcurl4-openssl-dev"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    $sudo apt-get update
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $missing
fi

# The compiler's output goes to a log, shown only when the build fails.
log=$(mktemp /tmp/parksync-peers-build-XXXXXX)
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPARKSYNC_SANITIZE=OFF \
    -DPARKSYNC_BENCH_PEERS=ON -DPARKSYNC_PYTHON=OFF &&
    cmake --build "$build" -j "$jobs" --target bench_peers parksyncd; } >"$log" 2>&1; then
    cat "$log"
    rm -f "$log"
    exit 1
fi
rm -f "$log"

data=$(mktemp -d /tmp/parksync-peers-XXXXXX)
trap 'rm -rf "$data"' EXIT INT TERM

echo "machine: $(nproc) CPUs, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "  parksyncd  $("$build/bin/parksyncd" --version 2>&1 | head -n1)"
echo "  etcd       $(/usr/bin/etcd --version 2>&1 | head -n1)"
echo "  redis      $(/usr/bin/redis-server --version 2>&1 | head -n1)"
echo "  nats       $(/usr/sbin/nats-server --version 2>&1 | head -n1), libnats $(dpkg-query -W -f='${Version}' libnats-dev)"
echo "  mosquitto  $(dpkg-query -W -f='${Version}' mosquitto), libmosquitto $(dpkg-query -W -f='${Version}' libmosquitto-dev)"
echo "  hiredis    $(dpkg-query -W -f='${Version}' libhiredis-dev), libcurl $(dpkg-query -W -f='${Version}' libcurl4-openssl-dev)"

"$build/tests/bench/bench_peers" -d "$data" "$@"
