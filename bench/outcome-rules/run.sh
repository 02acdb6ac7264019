#!/usr/bin/env bash
# bench/outcome-rules: what the rules run at a call's end cost the outcome
# service's statement (od_apply_events: od_call_ended's opt-out, retry,
# internal error, recording, spend cap and reputation rules), against the
# same statement with opt-out alone (what od_call_ended ran before issue 7's
# other rules). N answered calls (default 5,000) of one project get their
# final event in batches of 500, as the outcome service sends them, in one
# transaction that is rolled back, so the two runs start from the same rows
# and the figure is the statement's own work, without the commit's fsync.
# Runs: baseline, rules, baseline, rules; the second pair is reported. (Far
# more calls in one transaction slow both runs alike: compare the ratio.)
#
#   make run            # in another terminal
#   bench/outcome-rules/run.sh [CALLS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
N=${1:-5000}
bench_project "bench-outcome-rules-$(date +%s)" 600
psql "$OUTDIAL_PG_DSN" -qAt <<SQL >/dev/null
INSERT INTO calls (id, project_id, scenario, phone, metadata, caller_id, due_at, status, dialed_at, connected_at,
                   dispatched_at, dialer_id)
SELECT od_uuid7(), '$BENCH_PROJECT', 'appointment_reminder', '+3412345' || lpad((g % 10000)::text, 4, '0'), '{}',
       '+15005550006', now(), 'connected', now(), now(), now(), 'bench'
  FROM generate_series(1, $N) g;
SQL
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# the events the outcome service would send (apply.c event_json), 500 a batch, made before the clock starts
batches=$(( (N + 499) / 500 ))
psql "$OUTDIAL_PG_DSN" -qAt <<SQL >/dev/null
DROP TABLE IF EXISTS bench_outcome_events;
CREATE TABLE bench_outcome_events AS
SELECT (n - 1) / 500 AS b, jsonb_agg(jsonb_build_object(
    'call_id', id, 'status', 'completed', 'allowed_from', '{queued,dialing,connected}', 'final_state', 'completed',
    'outcome', CASE WHEN n % 10 = 0 THEN 'spam' ELSE 'success' END, 'goal_completed', true, 'duration_ms', 30000,
    'opted_out', false, 'at_us', (extract(epoch FROM now()) * 1000000)::bigint, 'detail', 'bench',
    'short_hangup', n % 7 = 0, 'hangup_by', 'callee') ORDER BY id) AS j
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM calls WHERE project_id = '$BENCH_PROJECT') x
 GROUP BY (n - 1) / 500;
SQL
for b in $(seq 0 $((batches - 1))); do
  echo "SELECT od_apply_events(j) FROM bench_outcome_events WHERE b = $b;"
done >"$out/apply.sql"
run() { # $1: baseline|rules → seconds
  local pre=""
  [ "$1" = baseline ] && pre="CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS \$\$ BEGIN RETURN od_opt_out(c, e); END \$\$;"
  local t0 t1
  t0=$(date +%s%N)
  { echo "BEGIN;"; echo "$pre"; cat "$out/apply.sql"; echo "ROLLBACK;"; } | psql "$OUTDIAL_PG_DSN" -qAt >/dev/null
  t1=$(date +%s%N)
  echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}
run baseline >/dev/null
run rules >/dev/null
b=$(run baseline)
r=$(run rules)
echo "calls: $N in batches of 500 (one transaction, rolled back)"
echo "opt-out only (before): ${b} s, $(echo "scale=0; $N / $b" | bc) final events/s"
echo "all the rules (now):   ${r} s, $(echo "scale=0; $N / $r" | bc) final events/s"
echo "ratio now/before: $(echo "scale=2; $r / $b" | bc)"
psql "$OUTDIAL_PG_DSN" -qAt -c "DROP TABLE bench_outcome_events; DELETE FROM calls WHERE project_id = '$BENCH_PROJECT'" >/dev/null
