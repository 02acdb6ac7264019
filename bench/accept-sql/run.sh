#!/usr/bin/env bash
# bench/accept-sql: PostgreSQL's side of the accept path alone, with pgbench
# (2 clients, one per core, fsync on), in calls per second:
#   floor   — the bare rows a call must write: one INSERT of 64 calls and one
#             of their 64 Idempotency-Key records per transaction, nothing else;
#   accept  — od_accept_calls on groups of 64 requests (idempotency, rate
#             limits, the project's rules, the same two inserts).
# The floor is what no accept path that stores the call before answering can
# beat on this machine; compare it with GET /healthz (bench/ingress).
#
#   make run            # in another terminal
#   bench/accept-sql/run.sh [DURATION_S]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
DUR=${1:-10}
PGBENCH=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1)
[ -x "$PGBENCH" ] || { echo "pgbench not found (Debian: postgresql-15)" >&2; exit 2; }
bench_project "bench-accept-sql-$(date +%s)" 5
KEY_ID=$(psql "$OUTDIAL_PG_DSN" -Atc "SELECT id FROM api_keys WHERE project_id = '$BENCH_PROJECT' LIMIT 1")
SCHED=$(date -u -d '+29 days' +%Y-%m-%dT%H:%M:%SZ)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

cat >"$out/floor.sql" <<SQL
WITH ins AS (
  INSERT INTO calls (id, project_id, api_key_id, scenario, phone, metadata, caller_id, scheduled_for, due_at)
  SELECT gen_random_uuid(), '$BENCH_PROJECT', '$KEY_ID', 'appointment_reminder', '+3412345' || lpad(g::text, 4, '0'),
         jsonb_build_object('n', g), '+15005550006', '$SCHED', '$SCHED'
    FROM generate_series(1, 64) g RETURNING id)
INSERT INTO idempotency_keys (project_id, key, request_hash, state, status_code, call_id)
SELECT '$BENCH_PROJECT', 'f-' || id, 'h', 'in_flight', 202, id FROM ins;
SQL
cat >"$out/accept.sql" <<SQL
SELECT length(od_accept_calls((SELECT jsonb_agg(jsonb_build_object(
  'key_id', '$KEY_ID', 'project_id', '$BENCH_PROJECT', 'calls_per_min', 100000000, 'requests_per_hour', 100000000,
  'idem_key', 'a-' || gen_random_uuid(), 'request_hash', 'h', 'call_id', gen_random_uuid(),
  'scenario', 'appointment_reminder', 'phone', '+3412345' || lpad(g::text, 4, '0'), 'metadata', jsonb_build_object('n', g),
  'scheduled_for', '$SCHED')) FROM generate_series(1, 64) g))::text);
SQL

for what in floor accept; do
  tps=$("$PGBENCH" -n -c 2 -j 2 -T "$DUR" -f "$out/$what.sql" "$OUTDIAL_PG_DSN" 2>&1 | awk '/^tps/ {print $3}')
  printf '%-8s %8.0f calls/s  (%s transactions/s of 64)\n' "$what" "$(awk -v t="$tps" 'BEGIN {print t * 64}')" "$tps"
done
psql "$OUTDIAL_PG_DSN" -Atc "SHOW fsync" | sed 's/^/PostgreSQL fsync: /'
# leave nothing due
psql "$OUTDIAL_PG_DSN" -qAtc "UPDATE calls SET status='canceled', final_state='canceled', ended_at=now() WHERE project_id = '$BENCH_PROJECT' AND status='queued'"
