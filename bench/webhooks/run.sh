#!/usr/bin/env bash
# bench/webhooks: the webhook sender of ONE outcome process, with a local
# receiver (bench/webhooks/receiver.py: asyncio, keep-alive, answers 204).
#
#  1. throughput: DELIVERIES (default 20,000) due at once, spread over
#     OUTDIAL_BENCH_ENDPOINTS endpoints (default 8, at most 20 per project; at most
#     OUTDIAL_WEBHOOK_PER_ENDPOINT = 8 in flight each): deliveries per second
#     from the insert's commit to the last arrival.
#  2. latency: call events written at EVENTS_PER_S (default 1,000) for SECONDS
#     (default 20), 10 ms ticks, each tick one committed transaction (as the
#     outcome service commits state changes), one endpoint listening: p50 / p99
#     / max from the state change (the event's time) to the receiver.
#
#   make run    # in another terminal: one outcome copy; it allows 127.0.0.1 receivers
#   bench/webhooks/run.sh [DELIVERIES] [EVENTS_PER_S] [SECONDS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
N=${1:-20000}
R=${2:-1000}
S=${3:-20}
E=${OUTDIAL_BENCH_ENDPOINTS:-8}
HERE=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
rpid=
trap '[ -n "$rpid" ] && kill "$rpid" 2>/dev/null; rm -rf "$tmp"' EXIT
q() { psql "$OUTDIAL_PG_DSN" -X -Atq -v ON_ERROR_STOP=1 "$@"; }

receiver() { # EXPECTED → starts it, sets PORT
  rm -f "$tmp/port" "$tmp/out.json"
  python3 "$HERE/receiver.py" "$tmp/port" "$1" "$tmp/out.json" 30 &
  rpid=$!
  for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
  PORT=$(cat "$tmp/port")
}
endpoint() { # KEY PATH EVENT_TYPE
  curl -sS --fail-with-body -o /dev/null -X POST "$OUTDIAL_URL/v1/webhooks" -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$PORT/$2\", \"event_types\": [\"$3\"]}"
}
stats() { # python expression over the receiver's output
  python3 - "$tmp/out.json" "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
v = sorted(d["delays_ms"])
pct = lambda p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
for expr in sys.argv[2:]:
    print(eval(expr, {"d": d, "v": v, "pct": pct}))
PY
}

# ---- 1. throughput
bench_project "bench-webhooks-$(date +%s)" 1000
receiver "$N"
for i in $(seq 1 "$E"); do endpoint "$BENCH_KEY" "e$i" call.completed; done
call=$(q -c "INSERT INTO calls (id, project_id, scenario, phone, metadata, due_at, status, final_state, outcome,
                                goal_completed, ended_at, duration_ms, billed_s, cost_micros)
             VALUES (gen_random_uuid(), '$BENCH_PROJECT', 'appointment_reminder', '+34612345670',
                     '{\"customer_id\": \"c-123456\", \"appointment\": \"2026-12-04T10:00:00Z\"}', now(),
                     'completed', 'completed', 'success', true, now(), 61000, 61, 101667) RETURNING id")
echo "throughput: $N deliveries over $E endpoints..."
t0=$(q -c "INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload)
           SELECT w.id, x.eid, 'call.completed',
                  od_webhook_event(x.eid, 'call.completed', now(), od_call_json(c))
             FROM webhook_endpoints w
             JOIN calls c ON c.id = '$call'
             CROSS JOIN LATERAL (SELECT od_webhook_event_id() AS eid FROM generate_series(1, $N / $E)) x
            WHERE w.project_id = '$BENCH_PROJECT';
           SELECT extract(epoch FROM clock_timestamp())")
wait "$rpid" || true
rpid=
stats "f'  received {d[\"count\"]} of $N: {d[\"count\"] / (d[\"last\"] - $t0):,.0f} deliveries/s (from the commit to the last arrival)'"

# ---- 2. latency at R events/s
bench_project "bench-webhooks-latency-$(date +%s)" 1000
receiver $((R * S))
endpoint "$BENCH_KEY" latency call.connected
q -c "INSERT INTO calls (id, project_id, scenario, phone, due_at, status, dialed_at, connected_at)
      SELECT gen_random_uuid(), '$BENCH_PROJECT', 'appointment_reminder', '+3461234' || lpad(g::text, 4, '0'),
             now(), 'connected', now(), now() FROM generate_series(1, 1000) g"
echo "latency: $R events/s for $S s, one endpoint..."
q <<SQL
CREATE PROCEDURE pg_temp.emit(p_project uuid, p_rate integer, p_seconds integer)
LANGUAGE plpgsql AS \$\$
DECLARE
    t0    timestamptz := clock_timestamp();
    per   integer := greatest(p_rate / 100, 1);
    ids   uuid[] := ARRAY(SELECT id FROM calls WHERE project_id = p_project);
    tick  integer := 0;
BEGIN
    WHILE tick < p_seconds * 100 LOOP
        INSERT INTO call_events (call_id, status, at)
        SELECT ids[1 + (tick * per + g) % array_length(ids, 1)], 'connected', clock_timestamp()
          FROM generate_series(0, per - 1) g;
        COMMIT;
        tick := tick + 1;
        PERFORM pg_sleep(greatest(0, extract(epoch FROM t0 + tick * interval '10 ms' - clock_timestamp())));
    END LOOP;
END
\$\$;
CALL pg_temp.emit('$BENCH_PROJECT', $R, $S);
SQL
wait "$rpid" || true
rpid=
stats "f'  received {d[\"count\"]} of $((R * S)) at {d[\"count\"] / (d[\"last\"] - d[\"first\"]):,.0f}/s: state change -> delivery p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {v[-1]:.0f} ms'"
