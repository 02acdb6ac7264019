#!/usr/bin/env bash
# test.sh — everything the tests need, from nothing (`make test`).
#
# Installs what is missing, builds (with ASan + UBSan when OUTDIAL_SANITIZE=1),
# builds the services once more with ASan + UBSan into build-asan (the modules
# that attack the ingress, SANITIZED = True in test_hostile_input.py and
# test_authz_matrix.py, run against those; OUTDIAL_TEST_SANITIZER=0 skips it),
# starts one PostgreSQL + Kafka for the run (ports 56432 / 60092, data in
# .outdial/test-infra), runs the C unit tests (ctest) and the black-box system
# tests (pytest, which start the services themselves), and stops the
# infrastructure; a whole run (no arguments) also runs each libFuzzer target
# for OUTDIAL_FUZZ_SECONDS (10) before pytest (fuzz/run.sh). Ends with pytest's
# summary; exits non-zero if anything failed.
# Extra arguments go to pytest (e.g. `deploy/local/test.sh -k idempotency`, or
# `deploy/local/test.sh tests/system/test_control.py` for one file).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
"$ROOT/deploy/local/deps.sh"

if [ "${OUTDIAL_SANITIZE:-0}" = 1 ]; then
  BUILD="$ROOT/build-asan"
  FLAGS=(-DCMAKE_BUILD_TYPE=Debug -DOUTDIAL_ASAN=ON -DOUTDIAL_UBSAN=ON)
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
  BUILD="$ROOT/build"
  FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi
cmake -S "$ROOT" -B "$BUILD" -G Ninja "${FLAGS[@]}" -DOUTDIAL_WERROR=ON >/dev/null
ninja -C "$BUILD"

# The hostile-input and authorization tests run their services from a sanitizer
# build: a report aborts the service (harness.SANITIZER_ENV), which the test sees
# die; UBSan's "runtime error:" in a log fails the module. Only the daemons and
# outdialctl: a Debug build, 13 s of CPU from nothing (38 s on 2 busy cores).
if [ "${OUTDIAL_SANITIZE:-0}" = 1 ]; then
  export OUTDIAL_SANITIZER_BUILD_DIR="$BUILD"
elif [ "${OUTDIAL_TEST_SANITIZER:-1}" != 0 ]; then
  SAN="$ROOT/build-asan"
  cmake -S "$ROOT" -B "$SAN" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DOUTDIAL_ASAN=ON -DOUTDIAL_UBSAN=ON \
    -DOUTDIAL_WERROR=ON >/dev/null
  ninja -C "$SAN" outdial-ingress outdial-scheduler outdial-dialer outdial-outcome outdialctl
  export OUTDIAL_SANITIZER_BUILD_DIR="$SAN"
fi

INFRA="$ROOT/.outdial/test-infra"
mkdir -p "$ROOT/.outdial"
stop() { "$ROOT/deploy/local/infra.sh" stop "$INFRA" >/dev/null 2>&1 || true; }
trap stop EXIT
infra_env=$("$ROOT/deploy/local/infra.sh" start "$INFRA" "${OUTDIAL_TEST_PG_PORT:-56432}" "${OUTDIAL_TEST_KAFKA_PORT:-60092}")
while IFS= read -r line; do
  case "$line" in OUTDIAL_*=*) export "$line" ;; esac
done <<<"$infra_env"
export OUTDIAL_TEST_PG_DSN="$OUTDIAL_PG_DSN" OUTDIAL_TEST_KAFKA_BROKERS="$OUTDIAL_KAFKA_BROKERS"

status=0
ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 300 || status=1

export OUTDIAL_BUILD_DIR="$BUILD" OUTDIAL_TEST_INFRA_DIR="$INFRA"
# Python packages deps.sh installed into its cache (standardwebhooks)
export PYTHONPATH="${OUTDIAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outdial}/python${PYTHONPATH:+:$PYTHONPATH}"
# test files or folders among the arguments replace the default, tests/system
targets=(tests/system)
for a in "$@"; do
  case "$a" in tests/*) targets=() ;; esac
done
# the whole run (no arguments, as `make test` and CI): every libFuzzer target over its seeds for
# a fixed time (fuzz/run.sh, its own clang build in build-fuzz; 14 targets x 10 s); OUTDIAL_FUZZ_SECONDS=0 skips it
if [ $# -eq 0 ] && [ "${OUTDIAL_FUZZ_SECONDS:-10}" -gt 0 ]; then
  echo "fuzz: ${OUTDIAL_FUZZ_SECONDS:-10} s per target"
  "$ROOT/fuzz/run.sh" "${OUTDIAL_FUZZ_SECONDS:-10}" || status=1
fi
python3 -m pytest "${targets[@]}" -q -p no:cacheprovider "$@" || status=1
exit $status
