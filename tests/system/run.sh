#!/usr/bin/env bash
# tests/system/run.sh - the .deb, installed as an operator would, under a
# real systemd.
#
# Boots a clean Debian 12 root with systemd as PID 1 in systemd-nspawn
# (no network inside: --private-network), installs the package built the
# README's way with `apt install ./parksync_*.deb`, and checks what the
# unit, the package scripts and the CLI promise: active only after READY,
# reload good and bad, the watchdog, libzmq's abort message at error
# priority, a clean stop under load with nothing acknowledged lost, the
# CLI as root, as the service user and as a member of the operators' group
# (and a clear refusal for anyone else), the Python client from its
# package (python3-parksync), each package's copyright and changelog, the
# sandbox's exposure score, remove, purge and reinstall. Each check prints its time; the script exits 1 when one
# fails.
#
# Needs root. Works on hosts without machined or D-Bus (it never asks the
# host's systemd for anything: --register=no --keep-unit, and it drives
# the container with nsenter into its PID 1). Skips, saying so, only where
# systemd-nspawn cannot run at all.
#
# The debootstrapped root and the Debian packages the .deb depends on are
# cached in $PARKSYNC_CI_CACHE (default /var/cache/parksync-ci); each run
# boots a fresh copy of that root. Environment:
#   PARKSYNC_CI_CACHE   the cache folder
#   BUILD_DEB           the build folder of the package (default build-deb)
#   DEB                 a .deb to test instead of building one
#   KEEP=1              leave the container's root for a post-mortem
set -euo pipefail
# (grep -q quits at its first match; with pipefail the writer's SIGPIPE then
# fails the pipeline, so checks read all of their input: grep PATTERN >/dev/null)

cd "$(dirname "$0")/../.."
SRC=$PWD
CACHE=${PARKSYNC_CI_CACHE:-/var/cache/parksync-ci}
BUILD_DEB=${BUILD_DEB:-build-deb}
SUITE=bookworm
# What the root needs beyond minbase: systemd as PID 1, and what the
# checks use (runuser and useradd come with util-linux and passwd).
INCLUDE=systemd,systemd-sysv,passwd,procps
BASE=$CACHE/$SUITE-base
BASE_STAMP="debootstrap --variant=minbase --include=$INCLUDE $SUITE (v1)"
ARCHIVES=$CACHE/archives    # apt's downloaded .debs, shared by every run
LOAD=60000                  # updates in flight when the daemon is stopped

T0=$(date +%s%N)
FAILED=()
NSPAWN_PID=
WORK=

say() { printf '[system %6.1fs] %s\n' "$(elapsed_since "$T0")" "$*"; }
elapsed_since() { printf '%.2f' "$(echo "scale=3; ($(date +%s%N) - $1) / 1000000000" | bc)"; }

skip() {
    say "SKIP: $*"
    say "SKIP: the system test did not run; nothing about the package under systemd was checked"
    exit 0
}

# ------------------------------------------------------------ preconditions

[ "$(id -u)" -eq 0 ] || { echo "tests/system/run.sh: needs root (systemd-nspawn)" >&2; exit 2; }

need=()
command -v bc >/dev/null || need+=(bc)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v nsenter >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    echo "[system] installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
        >/dev/null
fi

# nspawn needs namespaces and a cgroup hierarchy; where the host gives
# neither (an unprivileged container), no part of this test can run.
if ! unshare --mount --pid --uts --ipc --net --fork true 2>/dev/null; then
    skip "this host cannot create namespaces (unshare failed): systemd-nspawn cannot run here"
fi
if [ ! -d /sys/fs/cgroup ] || [ -z "$(ls -A /sys/fs/cgroup 2>/dev/null)" ]; then
    skip "no cgroup file system at /sys/fs/cgroup: systemd-nspawn cannot boot a container here"
fi

# The host's Debian mirror, as apt is configured (no other network is used).
mirror() {
    local uri
    uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null |
        grep -v security | grep -oE 'https?://[^ ]*debian/?' | head -1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

mkdir -p "$CACHE" "$ARCHIVES/partial"
exec 9>"$CACHE/lock"
flock 9 # one run at a time: they share the cache

# ------------------------------------------------------------ teardown

cleanup() {
    local rc=$?
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        kill "$NSPAWN_PID" 2>/dev/null || true # nspawn asks the container to power off
        for _ in $(seq 100); do kill -0 "$NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$NSPAWN_PID" 2>/dev/null || true
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${KEEP:-0}" = 1 ]; then
            say "kept the container's root in $WORK"
        else
            rm -rf --one-file-system "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

# ------------------------------------------------------------ the package

if [ -z "${DEB:-}" ]; then
    t=$(date +%s%N)
    make --no-print-directory deps # the build's Debian packages (dpkg-dev, file: cpack)
    say "building the .deb the README's way in $BUILD_DEB"
    cmake -S . -B "$BUILD_DEB" -DCMAKE_INSTALL_PREFIX=/usr -DPARKSYNC_TESTS=OFF >/dev/null
    cmake --build "$BUILD_DEB" -j "$(nproc)" >/dev/null
    rm -f "$BUILD_DEB"/parksync_*.deb
    (cd "$BUILD_DEB" && cpack -G DEB >/dev/null)
    DEB=$(ls "$BUILD_DEB"/parksync_*_*.deb | grep -v -- -dev_ | head -1)
    PYDEB=$(ls "$BUILD_DEB"/python3-parksync_*_all.deb 2>/dev/null | head -1 || true)
    say "built $(basename "$DEB") ${PYDEB:+and $(basename "$PYDEB") }in $(elapsed_since "$t") s"
fi
[ -f "$DEB" ] || { echo "no package at $DEB" >&2; exit 2; }
# the Python client's package, beside the daemon's (PYDEB, or found there)
PYDEB=${PYDEB:-$(ls "$(dirname "$DEB")"/python3-parksync_*_all.deb 2>/dev/null | head -1 || true)}
# and the headers' package (DEVDEB, or found there): read, not installed
DEVDEB=${DEVDEB:-$(ls "$(dirname "$DEB")"/parksync-dev_*_*.deb 2>/dev/null | head -1 || true)}

# ------------------------------------------------------------ the root

if [ "$(cat "$BASE/.parksync-ci-stamp" 2>/dev/null)" != "$BASE_STAMP" ]; then
    t=$(date +%s%N)
    say "no cached root: debootstrap $SUITE from $(mirror) (once; cached in $BASE)"
    rm -rf --one-file-system "$BASE.tmp" "$BASE"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$BASE.tmp" "$(mirror)" \
        >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    # apt in the root knows the same mirror, so it can resolve the .deb's
    # dependencies (downloaded with the host's network below)
    echo "deb $(mirror) $SUITE main" >"$BASE.tmp/etc/apt/sources.list"
    echo "$BASE_STAMP" >"$BASE.tmp/.parksync-ci-stamp"
    mv "$BASE.tmp" "$BASE"
    say "debootstrap took $(elapsed_since "$t") s"
fi

WORK=$(mktemp -d /var/tmp/parksync-system.XXXXXX)
ROOT=$WORK/root
t=$(date +%s%N)
cp -a --reflink=auto "$BASE" "$ROOT"
cp "$DEB" "$ROOT/root/"
PKG=/root/$(basename "$DEB")
PYPKG=
if [ -n "$PYDEB" ]; then
    cp "$PYDEB" "$ROOT/root/"
    PYPKG=/root/$(basename "$PYDEB")
fi
cp client/examples/az-moe.jsonl client/examples/tj-mint.jsonl "$ROOT/root/"
# $LOAD residents of one park, for the stop under load
awk -v n="$LOAD" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"resident\": {\"park_id\": \"UZ-LOAD\", \"resident_id\": \"R-%06d\", " \
           "\"country\": \"UZ\", \"company_name\": \"Load %d\", \"jobs\": %d}}\n", i, i, i % 1000 }' \
    >"$ROOT/root/load.jsonl"
say "fresh copy of the cached root in $(elapsed_since "$t") s"

NSPAWN=(systemd-nspawn -q -D "$ROOT" --register=no --keep-unit
        --bind="$ARCHIVES:/var/cache/apt/archives")

# apt inside the container has no network: fetch what the .deb depends on
# now, with the host's, into the shared archive cache. apt-get update only
# when the cached lists are missing or no longer match the mirror.
t=$(date +%s%N)
fetch() {
    "${NSPAWN[@]}" --pipe env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --download-only --no-install-recommends "$PKG" $PYPKG >"$WORK/fetch.log" 2>&1
}
if ! fetch; then
    "${NSPAWN[@]}" --pipe apt-get update -qq >"$WORK/fetch.log" 2>&1 || true
    fetch || { cat "$WORK/fetch.log"; exit 1; }
    # keep the fresh lists in the cached root for the next run
    rm -rf "$BASE/var/lib/apt/lists" && cp -a "$ROOT/var/lib/apt/lists" "$BASE/var/lib/apt/"
fi
say "dependencies of the .deb in the archive cache in $(elapsed_since "$t") s"

# ------------------------------------------------------------ boot

t=$(date +%s%N)
"${NSPAWN[@]}" -b --private-network -M "parksync-ci-$$" --console=read-only \
    >"$WORK/boot.log" 2>&1 &
NSPAWN_PID=$!
CT=
for _ in $(seq 300); do
    CT=$(cat "/proc/$NSPAWN_PID/task/$NSPAWN_PID/children" 2>/dev/null | awk '{print $1}')
    [ -n "$CT" ] && [ "$(readlink "/proc/$CT/exe" 2>/dev/null)" = /usr/lib/systemd/systemd ] && break
    kill -0 "$NSPAWN_PID" 2>/dev/null || { cat "$WORK/boot.log"; skip "systemd-nspawn exited at once"; }
    sleep 0.1
done
[ -n "$CT" ] || { cat "$WORK/boot.log"; echo "the container's systemd never started" >&2; exit 1; }

# Runs a command inside the container, as root, with a clean environment.
ct() {
    nsenter -t "$CT" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
# The same as a user (runuser: that user's groups, no login shell needed).
as() { local u=$1; shift; ct runuser -u "$u" -- "$@"; }
prop() { ct systemctl show -p "$2" --value "$1"; }

# systemctl answers once PID 1 has opened its private socket
until_up() {
    local end=$(($(date +%s) + 60))
    until [ -n "$(ct systemctl is-system-running 2>/dev/null || true)" ]; do
        [ "$(date +%s)" -lt "$end" ] || { cat "$WORK/boot.log"; echo "systemd never answered" >&2; exit 1; }
        sleep 0.1
    done
}
until_up
state=$(timeout 120 nsenter -t "$CT" -a systemctl is-system-running --wait 2>/dev/null || true)
say "booted Debian 12 with systemd $(ct systemctl show -p Version --value 2>/dev/null || true) as PID 1 ($state) in $(elapsed_since "$t") s"

# ------------------------------------------------------------ checks

# check NAME FUNCTION: runs it, prints ok/FAIL with its time; a failure
# shows the daemon's journal.
check() {
    local name=$1 t rc=0
    shift
    t=$(date +%s%N)
    # not `( ... ) || rc=$?`: on the left of || bash ignores set -e inside
    set +e
    (
        set -euo pipefail
        "$@"
    ) >"$WORK/check.log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        printf '  ok    %-62s %6.2f s\n' "$name" "$(elapsed_since "$t")"
        grep '^>' "$WORK/check.log" | sed 's/^>/          /' || true
    else
        printf '  FAIL  %-62s %6.2f s\n' "$name" "$(elapsed_since "$t")"
        sed 's/^/        | /' "$WORK/check.log"
        echo "        | journal of parksyncd:"
        ct journalctl -u parksyncd -n 25 --no-pager -o short-monotonic 2>&1 | sed 's/^/        | /'
        FAILED+=("$name")
    fi
}
# A detail printed under the check's line.
note() { echo ">$*"; }
fail() { echo "$*"; return 1; }

# Waits (up to $1 s) until the command succeeds.
until_ok() {
    local limit=$1 end
    shift
    end=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}

listening() { # port: in state LISTEN (0A) in the container's network namespace
    ct cat /proc/net/tcp /proc/net/tcp6 | awk -v p="$(printf ':%04X' "$1")" \
        '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }'
}

CONF=/etc/parksync/parksyncd.conf

t_install() {
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$PKG" \
        >"$WORK/install.log" 2>&1 || { tail -30 "$WORK/install.log"; return 1; }
    ct dpkg-query -W -f='${Status}\n' parksync | grep -x 'install ok installed' >/dev/null ||
        fail "dpkg says: $(ct dpkg-query -W -f='${Status}' parksync)"
    [ "$(prop parksyncd ActiveState)" = active ] || fail "parksyncd is $(prop parksyncd ActiveState)"
    [ "$(ct systemctl is-enabled parksyncd)" = enabled ] || fail "parksyncd is not enabled"
    note "apt install ./$(basename "$PKG"): exit 0, $(ct dpkg-query -W -f='${Version}' parksync), active and enabled"
}

t_ready() {
    # systemctl start of a Type=notify unit returns at READY=1: by then
    # every socket is bound and the control socket answers, at once.
    ct systemctl restart parksyncd
    for p in 7101 7102 7103; do listening $p || fail "port $p not listening right after start"; done
    ct parksync status --timeout 1 >/dev/null || fail "status not answered right after start"
    note "$(prop parksyncd StatusText)"
    # A daemon that fails before READY (an address it cannot bind) never
    # becomes active: the start job fails.
    ct cp $CONF /root/good.conf
    ct sh -c "printf '[endpoints]\nquery = tcp://127.0.0.1:7101\n' >$CONF" # ingest's port, twice
    if ct systemctl restart parksyncd 2>/dev/null; then fail "started with a port bound twice"; fi
    [ "$(prop parksyncd ActiveState)" != active ] || fail "active although it never sent READY"
    note "a start that fails before READY: $(prop parksyncd ActiveState) ($(prop parksyncd Result)), never active"
    ct cp /root/good.conf $CONF
    ct systemctl reset-failed parksyncd
    ct systemctl restart parksyncd
}

t_security() {
    local line score
    line=$(ct systemd-analyze security parksyncd.service --no-pager | grep 'Overall exposure')
    score=$(echo "$line" | grep -oE '[0-9]+\.[0-9]+' | head -1)
    note "$line"
    [ "$(echo "$score <= 2.0" | bc)" = 1 ] || fail "exposure $score > 2.0"
    # verify, less its complaint that a minimal root has no man(1)
    ct systemd-analyze verify parksyncd.service 2>&1 | grep -v "Command 'man .*' failed" >"$WORK/verify.log" || true
    [ ! -s "$WORK/verify.log" ] || { cat "$WORK/verify.log"; fail "systemd-analyze verify complains"; }
}

t_cli_root() {
    ct parksync status >/dev/null
    ct parksync push --producer AZ-MOE /root/az-moe.jsonl >/dev/null
    ct parksync push --producer TJ-MINT /root/tj-mint.jsonl >/dev/null
    local n
    n=$(ct parksync snapshot --kind park | wc -l)
    [ "$n" -gt 0 ] || fail "no parks in the snapshot"
    note "status, push AZ-MOE and TJ-MINT, snapshot: $n parks"
}

t_cli_service_user() {
    as parksync parksync status >/dev/null
    ct sh -c 'head -5 /root/az-moe.jsonl >/tmp/svc.jsonl && chmod 644 /tmp/svc.jsonl'
    as parksync parksync push --producer AZ-MOE-SVC /tmp/svc.jsonl >/dev/null
    as parksync parksync snapshot --kind park >/dev/null
}

t_cli_operator() {
    local err rc=0 t
    ct useradd -m -G parksync oper
    ct useradd -m outsider
    as oper parksync status >/dev/null
    ct sh -c 'cp /root/tj-mint.jsonl /home/oper/ && chown oper /home/oper/tj-mint.jsonl'
    as oper sh -c 'cd && parksync push --producer TJ-MINT-OPER --outbox outbox.db tj-mint.jsonl' >/dev/null
    as oper parksync snapshot --kind park >/dev/null
    as oper parksync reload >/dev/null
    note "oper (group parksync): status, push with an outbox, snapshot, reload"
    # someone else is told who may, at once
    t=$(date +%s%N)
    err=$(as outsider parksync status 2>&1) || rc=$?
    [ "$rc" -eq 1 ] || fail "outsider: exit $rc: $err"
    echo "$err" | grep 'permission denied on /run/parksync/control: run as root or join group parksync' >/dev/null ||
        fail "outsider was told: $err"
    note "outsider: exit 1 in $(elapsed_since "$t") s: $err"
}

# The Python client as its package installs it (python3-parksync, with
# Debian's python3-zmq and python3-protobuf): a producer's push is
# acknowledged and a subscriber's snapshot then holds the record.
t_python() {
    [ -n "$PYPKG" ] || fail "no python3-parksync package was built beside $(basename "$PKG")"
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$PYPKG" \
        >"$WORK/python.log" 2>&1 || { tail -30 "$WORK/python.log"; return 1; }
    local out
    out=$(ct python3 -c '
import parksync
with parksync.Producer("PY-CI") as p:
    p.push([{"park": {"park_id": "UZ-PY", "country": "UZ", "reported_residents": 7}}], timeout=30)
parks = [ev.record.park for ev in parksync.Subscriber(kind="park", country="UZ", live=False, timeout=30)
         if ev.kind == parksync.EventKind.RECORD]
assert [(q.park_id, q.reported_residents) for q in parks] == [("UZ-PY", 7)], parks
print("parksync", parksync.__version__, "from", parksync.__file__)
') || fail "the Python client failed: $out"
    note "apt install ./$(basename "$PYPKG"): $out; pushed UZ-PY, acknowledged, in the snapshot"
}

# What Debian policy asks of every package: /usr/share/doc/PACKAGE holds
# its copyright file (machine-readable) and its changelog, whose entry is
# the version installed. parksync and python3-parksync are asked of dpkg
# in the container; parksync-dev is read from its .deb (installing it
# would fetch the -dev packages it depends on for nothing).
t_doc_files() {
    local pkg ver doc first format="Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    [ -n "$PYPKG" ] || fail "no python3-parksync package was built beside $(basename "$PKG")"
    for pkg in parksync python3-parksync; do
        ver=$(ct dpkg-query -W -f='${Version}' "$pkg")
        doc=/usr/share/doc/$pkg
        ct dpkg-query -L "$pkg" >"$WORK/files"
        grep -x "$doc/copyright" "$WORK/files" >/dev/null || fail "$pkg does not own $doc/copyright"
        grep -x "$doc/changelog.gz" "$WORK/files" >/dev/null || fail "$pkg does not own $doc/changelog.gz"
        [ "$(ct sed -n 1p "$doc/copyright")" = "$format" ] || fail "$doc/copyright is not DEP-5"
        first=$(ct zcat "$doc/changelog.gz" | sed -n 1p)
        [ "$first" = "parksync ($ver) unstable; urgency=medium" ] ||
            fail "$doc/changelog.gz begins '$first', not version $ver"
        note "$pkg $ver: copyright, changelog.gz: $first"
    done
    [ -n "$DEVDEB" ] || fail "no parksync-dev package was built beside $(basename "$PKG")"
    ver=$(dpkg-deb -f "$DEVDEB" Version)
    doc=./usr/share/doc/parksync-dev
    dpkg-deb --fsys-tarfile "$DEVDEB" >"$WORK/dev.tar"
    [ "$(tar -xOf "$WORK/dev.tar" "$doc/copyright" | sed -n 1p)" = "$format" ] ||
        fail "$(basename "$DEVDEB"): no DEP-5 ${doc#.}/copyright"
    first=$(tar -xOf "$WORK/dev.tar" "$doc/changelog.gz" | zcat | sed -n 1p)
    [ "$first" = "parksync ($ver) unstable; urgency=medium" ] ||
        fail "$(basename "$DEVDEB"): ${doc#.}/changelog.gz begins '$first', not version $ver"
    note "parksync-dev $ver (its .deb): copyright, changelog.gz: $first"
}

t_reload() {
    local pid before
    pid=$(prop parksyncd MainPID)
    ct sed -i 's/^;log_level = info$/log_level = debug/' $CONF
    ct grep -q '^log_level = debug$' $CONF || fail "the sample config has no ';log_level = info' line"
    ct systemctl reload parksyncd
    [ "$(prop parksyncd StatusText)" = "running: configuration reloaded" ] ||
        fail "status after a good reload: $(prop parksyncd StatusText)"
    ct journalctl -u parksyncd --no-pager | grep 'configuration reloaded: log_level debug' >/dev/null ||
        fail "no 'configuration reloaded: log_level debug' in the journal"
    note "good file: $(prop parksyncd StatusText)"
    # a typo: refused whole, the old configuration runs on, and says why
    ct cp $CONF /root/reloaded.conf
    ct sh -c "printf '[limits]\nbatch_max = 12x\n' >>$CONF"
    if ct systemctl reload parksyncd 2>/dev/null; then fail "a bad file reloaded with exit 0"; fi
    [ "$(prop parksyncd ActiveState)" = active ] || fail "not active after a bad reload"
    [ "$(prop parksyncd MainPID)" = "$pid" ] || fail "the daemon was restarted by a bad reload"
    before=$(prop parksyncd StatusText)
    echo "$before" | grep "reload failed: .*parksyncd.conf:[0-9]*.*batch_max" >/dev/null ||
        fail "systemctl status does not say why: $before"
    ct systemctl status parksyncd --no-pager | grep 'reload failed' >/dev/null || fail "not in systemctl status"
    ct parksync status | grep 'last reload failed' >/dev/null || fail "not in parksync status"
    note "bad file: exit 1, pid $pid kept, status: $before"
    ct cp /root/reloaded.conf $CONF
    ct systemctl reload parksyncd
}

t_watchdog() {
    local pid new restarts
    # the unit's 30 s, shortened for the test by a drop-in
    ct mkdir -p /run/systemd/system/parksyncd.service.d
    ct sh -c 'printf "[Service]\nWatchdogSec=2\n" >/run/systemd/system/parksyncd.service.d/ci.conf'
    ct systemctl daemon-reload
    ct systemctl restart parksyncd
    pid=$(prop parksyncd MainPID)
    restarts=$(prop parksyncd NRestarts)
    ct kill -STOP "$pid"
    until_ok 40 sh -c "[ \"\$(nsenter -t $CT -a systemctl show -p MainPID --value parksyncd)\" != $pid ] &&
        [ \"\$(nsenter -t $CT -a systemctl show -p ActiveState --value parksyncd)\" = active ]" ||
        fail "not restarted within 40 s of SIGSTOP"
    new=$(prop parksyncd MainPID)
    ct journalctl -u parksyncd --no-pager | grep 'Watchdog timeout' >/dev/null || fail "no watchdog timeout logged"
    note "SIGSTOP pid $pid: watchdog timeout, restarted as pid $new (NRestarts $restarts -> $(prop parksyncd NRestarts))"
    ct rm -r /run/systemd/system/parksyncd.service.d
    ct systemctl daemon-reload
    ct systemctl restart parksyncd
}

# libzmq reports a failed assertion on stderr, then aborts. The unit's
# SyslogLevel=err files a line without a "<N>" prefix (the daemon's own
# lines all have one) at error priority, so `journalctl -p err` shows why
# the daemon died. The failure the unit once had makes libzmq abort:
# without AF_NETLINK, its getifaddrs() fails when it binds.
t_abort_in_journal() {
    local since line
    ct mkdir -p /run/systemd/system/parksyncd.service.d
    ct sh -c 'printf "[Service]\nRestrictAddressFamilies=\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\nRestart=no\n" \
        >/run/systemd/system/parksyncd.service.d/ci.conf'
    ct systemctl daemon-reload
    since=$(ct date '+%Y-%m-%d %H:%M:%S')
    if ct systemctl restart parksyncd 2>/dev/null; then
        fail "started without AF_NETLINK: libzmq did not abort, so this proves nothing"
    fi
    line=$(ct journalctl -u parksyncd -p err --since "$since" --no-pager -o cat |
        grep -E 'ip_resolver|not supported' | head -1 || true)
    [ -n "$line" ] || {
        ct journalctl -u parksyncd --since "$since" --no-pager -o verbose | grep -E 'PRIORITY|MESSAGE' | tail -20
        fail "no libzmq message at priority err or above"
    }
    note "without AF_NETLINK: $(prop parksyncd Result); journalctl -p err: $line"
    ct rm -r /run/systemd/system/parksyncd.service.d
    ct systemctl daemon-reload
    ct systemctl reset-failed parksyncd
    ct systemctl restart parksyncd
}

t_stop_under_load() {
    local push_pid acked t got
    # $LOAD updates with an outbox: what is acknowledged leaves it, what
    # is not is sent again by the second push; so the daemon lost an
    # acknowledged update exactly when the final count falls short.
    nsenter -t "$CT" -a env -i PATH=/usr/bin:/bin HOME=/root sh -c 'echo $$ >/root/push1.pid;
        exec parksync push --producer LOAD --outbox /root/load.outbox /root/load.jsonl >/root/push1.log 2>&1' &
    push_pid=$! # nsenter's; the push itself is the container's pid in push1.pid
    until_ok 60 sh -c "nsenter -t $CT -a parksync producer LOAD | grep -qE '\"last_sequence\": *[0-9]{4,}'" ||
        fail "the push did not get going"
    acked=$(ct parksync producer LOAD | grep -oE '"last_sequence": *[0-9]+' | grep -oE '[0-9]+$')
    t=$(date +%s%N)
    ct systemctl stop parksyncd
    note "stop with the push in flight (last_sequence $acked of $LOAD at stop): $(elapsed_since "$t") s"
    [ "$(prop parksyncd Result)" = success ] || fail "stop result: $(prop parksyncd Result)"
    [ "$(prop parksyncd ExecMainStatus)" = 0 ] || fail "exit status $(prop parksyncd ExecMainStatus)"
    ct journalctl -u parksyncd -n 20 --no-pager | grep 'stopped at revision' >/dev/null || fail "no clean stop line"
    # the first push gives up (as after a timeout), its outbox kept
    ct kill -TERM "$(ct cat /root/push1.pid)" 2>/dev/null || true
    wait "$push_pid" 2>/dev/null || true
    ct systemctl start parksyncd
    ct sh -c 'parksync push --producer LOAD --outbox /root/load.outbox /root/load.jsonl >/root/push2.log 2>&1' ||
        { ct cat /root/push2.log; fail "the second push failed"; }
    got=$(ct parksync snapshot --kind resident --country UZ | grep -c '"UZ-LOAD"')
    [ "$got" -eq "$LOAD" ] || fail "$got of $LOAD residents after the restart: acknowledged updates lost"
    note "after start and a second push of the same outbox: $got of $LOAD residents"
}

t_upgrade_keeps_state() {
    # an admin's edit of the conffile and `systemctl disable` survive an
    # upgrade (here: the same version again)
    ct systemctl disable parksyncd 2>/dev/null
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall "$PKG" >"$WORK/reinstall.log" 2>&1 ||
        { tail -20 "$WORK/reinstall.log"; return 1; }
    grep -q '^Setting up parksync' "$WORK/reinstall.log" || { cat "$WORK/reinstall.log"; fail "not reinstalled"; }
    [ "$(ct systemctl is-enabled parksyncd || true)" = disabled ] || fail "the admin's disable was undone"
    [ "$(prop parksyncd ActiveState)" = active ] || fail "not running after the upgrade"
    ct grep -q '^log_level = debug$' $CONF || fail "the edited conffile was replaced"
    [ "$(ct parksync snapshot --kind resident --country UZ | grep -c '"UZ-LOAD"')" -eq "$LOAD" ] ||
        fail "data lost in the upgrade"
    ct systemctl enable parksyncd 2>/dev/null
}

t_remove() {
    ct dpkg -r parksync >"$WORK/remove.log" 2>&1 || { cat "$WORK/remove.log"; return 1; }
    ! ct pgrep -x parksyncd >/dev/null || fail "parksyncd still runs after dpkg -r"
    ct test ! -e /lib/systemd/system/parksyncd.service || fail "the unit is still there"
    ct test ! -e /usr/bin/parksyncd || fail "the binary is still there"
    ct test -f $CONF || fail "dpkg -r removed the conffile"
    ct test -f /var/lib/parksync/parksync.db || fail "dpkg -r removed the database"
    [ "$(prop parksyncd LoadState)" = not-found ] || fail "systemd still knows the unit: $(prop parksyncd LoadState)"
    note "stopped, unit and binaries gone; conffile, database and user kept"
}

t_reinstall_after_remove() {
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PKG" >"$WORK/reinstall.log" 2>&1 ||
        { tail -20 "$WORK/reinstall.log"; return 1; }
    [ "$(prop parksyncd ActiveState)" = active ] || fail "not active"
    [ "$(ct parksync snapshot --kind resident --country UZ | grep -c '"UZ-LOAD"')" -eq "$LOAD" ] ||
        fail "the kept database was not used"
    note "active again, on the kept database"
}

t_purge() {
    ct dpkg -P parksync >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; return 1; }
    ct test ! -e $CONF || fail "the conffile survived dpkg -P"
    ct test ! -e /etc/parksync || fail "/etc/parksync survived dpkg -P"
    note "conffile gone; the database in /var/lib/parksync is kept (see README)"
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PKG" >"$WORK/reinstall.log" 2>&1 ||
        { tail -20 "$WORK/reinstall.log"; return 1; }
    [ "$(prop parksyncd ActiveState)" = active ] || fail "not active after reinstall"
    ct grep -q '^;log_level = info$' $CONF || fail "the reinstalled conffile is not the shipped one"
    ct parksync status >/dev/null
    note "reinstalled after purge: active, shipped conffile"
}

t_policy_rc_d() {
    # image builders forbid starting services with policy-rc.d exit 101
    ct dpkg -r parksync >/dev/null
    ct sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    ct env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PKG" >"$WORK/policy.log" 2>&1 ||
        { tail -20 "$WORK/policy.log"; return 1; }
    ct rm /usr/sbin/policy-rc.d
    [ "$(prop parksyncd ActiveState)" = inactive ] || fail "started although policy-rc.d said no"
    [ "$(ct systemctl is-enabled parksyncd)" = enabled ] || fail "not enabled"
    ct systemctl start parksyncd
    note "installed and enabled, not started; starts by hand"
}

say "checks (each with its time):"
check "apt install ./deb: installed, enabled, active" t_install
check "active only after READY (sockets bound; a failed start never active)" t_ready
check "systemd-analyze security: exposure <= 2.0, verify clean" t_security
check "CLI as root: status, push, snapshot" t_cli_root
check "CLI as the service user parksync: status, push, snapshot" t_cli_service_user
check "CLI as a member of group parksync; others told why" t_cli_operator
check "python3-parksync: push acknowledged, snapshot has it" t_python
check "copyright and changelog in every package, naming the installed version" t_doc_files
check "systemctl reload: good file applied, bad file refused" t_reload
check "watchdog restarts a SIGSTOPped daemon" t_watchdog
check "libzmq's abort message is in journalctl -p err" t_abort_in_journal
check "systemctl stop under load: exit 0, nothing acknowledged lost" t_stop_under_load
check "upgrade keeps conffile edits, data and an admin's disable" t_upgrade_keeps_state
check "dpkg -r: stopped and removed, conffile and data kept" t_remove
check "reinstall after remove" t_reinstall_after_remove
check "dpkg -P, then reinstall" t_purge
check "policy-rc.d says no: installed, not started" t_policy_rc_d

if [ ${#FAILED[@]} -gt 0 ]; then
    say "FAILED: ${#FAILED[@]} check(s): ${FAILED[*]}"
    exit 1
fi
say "all checks passed"
