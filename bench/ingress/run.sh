#!/usr/bin/env bash
# bench/ingress: accepted POST /v1/calls per second against GET /healthz of the
# same ingress, in one run, with wrk on loopback. Calls are unique (fresh
# Idempotency-Keys) and scheduled 29 days ahead, so the dialers stay idle and
# the accept path (validation, one set-based PostgreSQL statement per group
# of requests, the Kafka publish, its delivery report and the statement that
# completes the Idempotency-Key records) is what is measured.
#
#   make run            # in another terminal
#   bench/ingress/run.sh [DURATION_S] [CONNECTIONS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
DUR=${1:-10}
CONNS=${2:-64}
bench_project "bench-ingress-$(date +%s)" 5
SCHED=$(date -u -d '+29 days' +%Y-%m-%dT%H:%M:%SZ)
out=$(mktemp -d)

echo "== GET /healthz ($DUR s, $CONNS connections)"
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$OUTDIAL_URL/healthz" | tee "$out/healthz.txt"

cat >"$out/post.lua" <<LUA
-- globals, not locals: thread:set() gives each thread its own "tid"
threads = 0
counter = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer $BENCH_KEY"
wrk.headers["Content-Type"] = "application/json"
function request()
  counter = counter + 1
  local key = string.format("bench-%d-%d-%d", os.time(), tid, counter)
  wrk.headers["Idempotency-Key"] = key
  local body = string.format('{"scenario":"appointment_reminder","phone":"+3412345%04d","metadata":{"n":%d},"scheduled_for":"$SCHED"}', counter % 10000, counter)
  return wrk.format(nil, "/v1/calls", nil, body)
end
LUA
echo "== POST /v1/calls ($DUR s, $CONNS connections)"
before=$(psql "$OUTDIAL_PG_DSN" -Atc "SELECT count(*) FROM calls WHERE project_id = '$BENCH_PROJECT'")
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency -s "$out/post.lua" "$OUTDIAL_URL" | tee "$out/post.txt"
after=$(psql "$OUTDIAL_PG_DSN" -Atc "SELECT count(*) FROM calls WHERE project_id = '$BENCH_PROJECT'")

hz=$(awk '/Requests\/sec/ {print $2}' "$out/healthz.txt")
accepted=$(( after - before ))
acc_rate=$(awk -v n="$accepted" -v d="$DUR" 'BEGIN {printf "%.0f", n / d}')
p99=$(awk '/ 99%/ {print $2}' "$out/post.txt")
echo
echo "healthz req/s:        $hz"
echo "accepted calls:       $accepted (stored in PostgreSQL)"
echo "accepted calls/s:     $acc_rate"
echo "POST p99 latency:     $p99"
awk -v a="$acc_rate" -v h="$hz" 'BEGIN {printf "ratio accepted/healthz: %.3f (target >= 0.4)\n", a / h}'
psql "$OUTDIAL_PG_DSN" -Atc "SHOW fsync" | sed 's/^/PostgreSQL fsync: /'
# leave nothing due: these calls are canceled so a later `make run` doesn't dial them in 29 days
psql "$OUTDIAL_PG_DSN" -qAtc "UPDATE calls SET status='canceled', final_state='canceled', ended_at=now() WHERE project_id = '$BENCH_PROJECT' AND status='queued'"
rm -rf "$out"
