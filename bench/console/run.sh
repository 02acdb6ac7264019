#!/usr/bin/env bash
# bench/console: how fast the console is on a slow machine. Chromium headless
# (playwright-core from the cache deploy/local/deps.sh fills) loads the console
# of a project with CALLS calls (default 200) and signs in, with the CPU
# unthrottled and then slowed down 6× (Chrome's "low-end mobile" preset) on a
# "fast 3G" link (1.6 Mbit/s, 150 ms round trip), signed in: milliseconds
# from opening the console to its Calls list drawn (50 rows), from a click to
# a call's page drawn and to the Billing page drawn, measured in the page
# (performance.now()); and the bytes of the console's files. Median of RUNS
# (5) loads.
#
#   make run    # in another terminal
#   bench/console/run.sh [CALLS] [RUNS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
N=${1:-200}
RUNS=${2:-5}
NODE_MODULES=${OUTDIAL_CACHE:-$HOME/.cache/outdial}/node/node_modules
bench_project "bench-console-$$" 600
at=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ) # queued, so they stay put while measured
for i in $(seq 1 "$N"); do
  printf '{"scenario":"appointment_reminder","phone":"+3461%07d","metadata":{"row":%d},"scheduled_for":"%s"}\n' "$i" "$i" "$at"
done | while IFS= read -r body; do
  curl -sS -o /dev/null --fail-with-body -X POST "$OUTDIAL_URL/v1/calls" -H "Authorization: Bearer $BENCH_KEY" \
    -H 'Content-Type: application/json' -d "$body"
done
echo "project with $N calls; measuring (median of $RUNS)" >&2
OUTDIAL_KEY=$BENCH_KEY OUTDIAL_PLAYWRIGHT="$NODE_MODULES/playwright-core/index.mjs" RUNS=$RUNS \
  node "$(dirname "$0")/measure.mjs"
