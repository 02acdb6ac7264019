#!/usr/bin/env bash
# bench/pipeline: N calls (default 10,000) through the whole pipeline —
# ingress → scheduler → dialer → outcome — with pacing lifted and the sim's
# ring and talk times at ~0 (per-call metadata sim_ring_ms / sim_talk_ms).
# Reports end-to-end calls/s and p50/p99 from accept (created_at) to final
# state (the outcome service's commit, measured from PostgreSQL's clock).
#
#   make run            # in another terminal (OUTDIAL_DIALERS=N for more dialers)
#   bench/pipeline/run.sh [CALLS] [PROJECTS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
N=${1:-10000}
P=${2:-10}
projects=()
keys=()
for i in $(seq 1 "$P"); do
  bench_project "bench-pipeline-$(date +%s)-$i" 1000000
  projects+=("$BENCH_PROJECT")
  keys+=("$BENCH_KEY")
done
start=$(psql "$OUTDIAL_PG_DSN" -Atc "SELECT now()")
python3 "$(dirname "$0")/post.py" "$OUTDIAL_URL" "$N" "${keys[@]}"
ids=$(printf "'%s'," "${projects[@]}")
ids=${ids%,}
echo "waiting for every call to reach a final state..."
for _ in $(seq 1 600); do
  left=$(psql "$OUTDIAL_PG_DSN" -Atc "SELECT count(*) FROM calls WHERE project_id IN ($ids) AND final_state IS NULL")
  [ "$left" = 0 ] && break
  sleep 1
done
psql "$OUTDIAL_PG_DSN" -At <<SQL
SELECT 'calls: ' || count(*) || ', not final: ' || count(*) FILTER (WHERE final_state IS NULL) FROM calls WHERE project_id IN ($ids);
SELECT 'end-to-end calls/s: ' || round(count(*) / extract(epoch FROM max(c.ended_at) - min(c.created_at))::numeric, 1)
  FROM calls c WHERE project_id IN ($ids);
WITH e AS (SELECT c.id, max(ev.at) - c.created_at AS d FROM calls c JOIN call_events ev ON ev.call_id = c.id
            WHERE c.project_id IN ($ids) GROUP BY c.id, c.created_at)
SELECT 'accept -> final state: p50 ' || round(extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY d))::numeric * 1000)
       || ' ms, p99 ' || round(extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY d))::numeric * 1000) || ' ms'
  FROM e;
SELECT 'final states: ' || string_agg(final_state || '=' || n, ', ' ORDER BY final_state)
  FROM (SELECT final_state, count(*) n FROM calls WHERE project_id IN ($ids) GROUP BY 1) s;
SQL
