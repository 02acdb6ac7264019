#!/usr/bin/env bash
# run.sh — builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined)
# and runs each over its seed corpus for a fixed time; fails if any crashed.
#
#   fuzz/run.sh SECONDS_PER_TARGET [fuzz_name ...]     # default: every target
#
# Prints one line per target: seconds, executions, crashes (a crash, leak or
# sanitizer report; its input is kept as build-fuzz/artifacts/<target>/crash-*).
# New inputs libFuzzer finds go to build-fuzz/corpus/<name> (not the checked-in
# seeds). `make test` (deploy/local/test.sh) runs it with a small budget;
# fuzz/README.md has the figures of long runs.
# Environment: OUTDIAL_FUZZ_BUILD (build directory, default build-fuzz),
# OUTDIAL_FUZZ_JOBS (targets run at once, default 1).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_PER=${1:?usage: fuzz/run.sh SECONDS_PER_TARGET [fuzz_name ...]}
shift
BUILD=${OUTDIAL_FUZZ_BUILD:-$ROOT/build-fuzz}
JOBS=${OUTDIAL_FUZZ_JOBS:-1}

# every fuzz_<name>.c is a target, its seeds in corpus/<name>
all=()
for f in "$ROOT"/fuzz/fuzz_*.c; do
  all+=("$(basename "$f" .c)")
done
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOUTDIAL_FUZZ=ON \
  >/dev/null
ninja -C "$BUILD" "${targets[@]}" >/dev/null

# one target: its line on stdout, libFuzzer's log in $BUILD/logs/<target>.log
run_one() {
  local t=$1 name=${1#fuzz_} opts=()
  local scratch="$BUILD/corpus/$name" art="$BUILD/artifacts/$t/" log="$BUILD/logs/$t.log"
  mkdir -p "$scratch" "$art" "$BUILD/logs"
  case "$name" in
    call_request | request_body | batch_settings) opts+=(-max_len=20000) ;;
  esac
  local rc=0 start=$SECONDS stamp="$BUILD/logs/$t.start"
  touch "$stamp"
  "$BUILD/bin/$t" -max_total_time="$SECONDS_PER" -print_final_stats=1 -artifact_prefix="$art" "${opts[@]}" \
    "$scratch" "$ROOT/fuzz/corpus/$name" >"$log" 2>&1 || rc=$?
  local execs crashes
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  crashes=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) -newer "$stamp" 2>/dev/null | wc -l)
  [ "$rc" -eq 0 ] || [ "$crashes" -gt 0 ] || crashes=1 # died without an artifact (e.g. a sanitizer report at exit)
  printf '%-22s %5d s %12s executions %3d crashes\n' "$t" $((SECONDS - start)) "${execs:-?}" "$crashes"
  [ "$crashes" -eq 0 ] || { echo "  see $log" >&2; return 1; }
}

status=0
running=0
for t in "${targets[@]}"; do
  if [ "$JOBS" -le 1 ]; then
    run_one "$t" || status=1
  else
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
      wait -n || status=1
      running=$((running - 1))
    fi
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
exit $status
