#!/usr/bin/env bash
# run.sh - the bounded fuzz run: every target for FUZZ_SECONDS against the
# committed seed corpus, new inputs kept in a scratch directory (the
# committed corpus is only read), one summary line per target.
#
#   tests/fuzz/run.sh BUILD_DIR [TARGET...]
#
# Environment: FUZZ_SECONDS (default 60) per target; FUZZ_WORK scratch
# directory (default: a new mktemp dir, removed when every target passed).
# Exits non-zero when any target crashes, leaks, times out or runs out of
# memory; the failing input is printed as hex so the CI log holds the
# reproducer (run it with BUILD_DIR/tests/fuzz/TARGET FILE).
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: run.sh BUILD_DIR [TARGET...]}"
shift
seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_update fuzz_query fuzz_publication fuzz_control fuzz_json fuzz_csv)

work="${FUZZ_WORK:-$(mktemp -d /tmp/parksync-fuzz.XXXXXX)}"
mkdir -p "$work"

# Largest input per target, in bytes: a little past each decoder's limit so
# the size check itself is exercised (replies and publications may reach
# WIRE_MAX_MSG, but 64 KiB inputs keep the executions per second useful).
max_len() {
    case "$1" in
    fuzz_update) echo 20000 ;;   # WIRE_MAX_UPDATE 16 KiB
    fuzz_control) echo 8192 ;;   # WIRE_MAX_CONTROL 4 KiB (+ replies)
    fuzz_json) echo 8192 ;;      # one JSON line
    fuzz_csv) echo 16384 ;;      # a small CSV file: header and a few rows
    *) echo 65536 ;;
    esac
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
sym="$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)"
[ -z "$sym" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ] && sym=/usr/lib/llvm-14/bin/llvm-symbolizer
[ -n "$sym" ] && export ASAN_SYMBOLIZER_PATH="$sym"

passed=0
failed=0
summary=()
for t in "${targets[@]}"; do
    bin="$build/tests/fuzz/$t"
    seeds="$here/corpus/$t"
    new="$work/corpus/$t"
    log="$work/$t.log"
    mkdir -p "$new" "$work/artifacts"
    if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
        echo "fuzz: $t: missing $bin or $seeds" >&2
        failed=$((failed + 1))
        summary+=("$(printf '%-17s FAILED (not built)' "$t")")
        continue
    fi
    dict=()
    [ -f "$here/${t#fuzz_}.dict" ] && dict=("-dict=$here/${t#fuzz_}.dict")
    echo "fuzz: $t for ${seconds}s (log: $log)"
    # The first directory receives new inputs; the committed one is read only.
    "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len="$(max_len "$t")" -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$t-" "${dict[@]}" \
        "$new" "$seeds" >"$log" 2>&1
    rc=$?

    done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
    cov="$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$done_line")"
    ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$done_line")"
    corp="$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$done_line")"
    execs="$(sed -nE 's/^stat::number_of_executed_units:[[:space:]]*([0-9]+).*/\1/p' "$log" | tail -n 1)"
    rate="$(sed -nE 's/^stat::average_exec_per_sec:[[:space:]]*([0-9]+).*/\1/p' "$log" | tail -n 1)"
    rss="$(sed -nE 's/^stat::peak_rss_mb:[[:space:]]*([0-9]+).*/\1/p' "$log" | tail -n 1)"

    if [ $rc -eq 0 ] && [ -n "$done_line" ]; then
        passed=$((passed + 1))
        summary+=("$(printf '%-17s ok  execs %-10s exec/s %-7s cov %-5s ft %-6s corpus %-12s peak rss %s MB' \
            "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${rss:-?}")")
    else
        failed=$((failed + 1))
        summary+=("$(printf '%-17s FAILED (exit %s) after %s execs; log and reproducer above' "$t" "$rc" "${execs:-?}")")
        echo "fuzz: $t FAILED (exit $rc); end of its log:" >&2
        tail -n 60 "$log" >&2
        for a in "$work/artifacts/$t-"*; do
            [ -f "$a" ] || continue
            echo "fuzz: reproducer $a ($(stat -c %s "$a") bytes):" >&2
            head -c 4096 "$a" | od -An -tx1 -v >&2
        done
    fi
done

echo
echo "fuzz summary (${seconds}s per target, ASan+UBSan+LeakSanitizer):"
printf '  %s\n' "${summary[@]}"
if [ $failed -eq 0 ] && [ -z "${FUZZ_WORK:-}" ]; then
    rm -rf "$work"
else
    echo "fuzz: logs, new inputs and reproducers kept in $work"
fi
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
