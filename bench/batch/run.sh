#!/usr/bin/env bash
# bench/batch: a 100,000-row CSV (about 8 MB: phone + 3 metadata columns)
#   1. uploaded with POST /v1/batches (text/csv body), from the start of the
#      upload to the 201, beside `psql \copy` of the same file into a plain
#      table in the same run (target: <= 3x), with the ingress's peak RSS
#      during the upload; then the time until the batch is validated (its
#      rows checked and its calls created, after the answer), polled every
#      100 ms, and the peak RSS through the validation;
#   2. its results.csv downloaded, beside `psql \copy (SELECT ...) TO STDOUT
#      CSV` of the same rows (target: <= 2x).
# The batch starts 29 days ahead (the dialers stay idle) and is canceled at the end.
#
#   make run            # in another terminal
#   bench/batch/run.sh [ROWS]
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
ROWS=${1:-100000}
bench_project "bench-batch-$(date +%s)" 5
"$CTL" project set "$BENCH_PROJECT" --pacing 100000 >/dev/null 2>&1 || true
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
START=$(date -u -d '+29 days' +%Y-%m-%dT%H:%M:%SZ)

python3 - "$ROWS" >"$out/contacts.csv" <<'PY'
import random, sys
n = int(sys.argv[1])
rnd = random.Random(7)
first = ["Ana", "Luis", "María", "José", "Lucía", "Pablo", "Carmen", "Javier"]
w = sys.stdout.write
w("phone,name,appointment,notes\r\n")
for i in range(n):
    w(f"+346{i:08d},{rnd.choice(first)} {rnd.choice(first)}sson,2026-12-{1 + i % 28:02d}T{8 + i % 10:02d}:30:00Z,"
      f"\"Dr. {rnd.choice(first)}, room {i % 40}, bring card {rnd.randint(100000, 999999)}\"\r\n")
PY
size=$(stat -c %s "$out/contacts.csv")
echo "CSV: $ROWS rows, $size bytes"

now_s() { date +%s.%N; }
ingress_pid=$(pgrep -f 'bin/outdial-ingress' | head -1)

# 1. psql \copy into a plain table, then the upload
psql "$OUTDIAL_PG_DSN" -qc "DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (phone text, name text, appointment text, notes text)"
t0=$(now_s)
psql "$OUTDIAL_PG_DSN" -qc "\\copy bench_copy FROM '$out/contacts.csv' WITH (FORMAT csv, HEADER true)"
t1=$(now_s)
copy_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')

echo 5 >"/proc/$ingress_pid/clear_refs" 2>/dev/null || true # resets the peak RSS (VmHWM)
rss_before=$(awk '/VmRSS/ {print $2}' "/proc/$ingress_pid/status")
t0=$(now_s)
code=$(curl -s -o "$out/batch.json" -w '%{http_code}' -X POST \
  "$OUTDIAL_URL/v1/batches?scenario=appointment_reminder&pacing_per_min=100&start_at=$START&file_name=contacts.csv" \
  -H "Authorization: Bearer $BENCH_KEY" -H 'Content-Type: text/csv' --data-binary "@$out/contacts.csv")
t1=$(now_s)
upload_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
peak=$(awk '/VmHWM/ {print $2}' "/proc/$ingress_pid/status")
[ "$code" = 201 ] || { echo "upload answered $code: $(head -c 500 "$out/batch.json")" >&2; exit 1; }
batch=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$out/batch.json")
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/batch.json" "$1"; }
answered=$(field status)
while [ "$(field status)" = validating ]; do
  sleep 0.1
  curl -s -o "$out/batch.json" -H "Authorization: Bearer $BENCH_KEY" "$OUTDIAL_URL/v1/batches/$batch"
done
t2=$(now_s)
validated_s=$(awk -v a="$t0" -v b="$t2" 'BEGIN {printf "%.3f", b - a}')
peak_v=$(awk '/VmHWM/ {print $2}' "/proc/$ingress_pid/status")
accepted=$(field accepted_rows)

# 2. results.csv, then psql's export of the same rows
t0=$(now_s)
curl -s -o "$out/results.csv" -H "Authorization: Bearer $BENCH_KEY" "$OUTDIAL_URL/v1/batches/$batch/results.csv"
t1=$(now_s)
results_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
t0=$(now_s)
psql "$OUTDIAL_PG_DSN" -qc "\\copy (SELECT r.row_no, r.line, c.id, c.status, c.final_state, c.outcome, c.goal_completed, c.duration_ms, c.cost_micros, c.ended_at, r.error, c.attempt FROM batch_rows r LEFT JOIN calls c ON c.id = r.call_id WHERE r.batch_id = '$batch' ORDER BY r.row_no) TO '$out/copy.csv' CSV"
t1=$(now_s)
export_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
lines=$(($(wc -l <"$out/results.csv") - 1))

echo
echo "upload (POST /v1/batches, answered $answered):  ${upload_s} s"
echo "psql \\copy of the same file:                  ${copy_s} s"
awk -v a="$upload_s" -v b="$copy_s" 'BEGIN {printf "ratio upload / \\copy:                          %.2f (target <= 3)\n", a / b}'
echo "ingress RSS: ${rss_before} kB before, peak ${peak} kB during the upload"
echo "validated ($accepted accepted), from the upload's start: ${validated_s} s; peak RSS ${peak_v} kB"
echo "results.csv ($lines rows, $(stat -c %s "$out/results.csv") bytes):  ${results_s} s"
echo "psql \\copy (SELECT ...) TO CSV:               ${export_s} s"
awk -v a="$results_s" -v b="$export_s" 'BEGIN {printf "ratio results.csv / \\copy:                     %.2f (target <= 2)\n", a / b}'
curl -s -o /dev/null -X POST -H "Authorization: Bearer $BENCH_KEY" "$OUTDIAL_URL/v1/batches/$batch/cancel"
psql "$OUTDIAL_PG_DSN" -qc "DROP TABLE IF EXISTS bench_copy"
