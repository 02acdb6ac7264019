#!/usr/bin/env bash
# run.sh — the whole system on this machine, no containers (`make run`).
#
# Installs what is missing (deps.sh), builds, starts PostgreSQL and a
# single-node Kafka in .outdial/infra, applies the migrations, creates the
# topics, starts the four services, creates the demo project and writes
# .outdial/env. A second run reuses what is there. A service that dies is
# started again after a second. Ctrl-C stops everything.
#
# Environment: OUTDIAL_HTTP_PORT (ingress, default 8080),
# OUTDIAL_SIM_TIME_SCALE (default 0.2: calls take seconds, not minutes; the
# reputation's OUTDIAL_REPUTATION_SHORT_CALL_S is scaled with it),
# OUTDIAL_DIALERS (dialer copies, default 1), OUTDIAL_WEBHOOK_ALLOW_PRIVATE (default 1 here:
# webhooks to receivers on this machine), OUTDIAL_SECRET_KEY (default: a random key made on the
# first run and kept in .outdial/secret_key; it encrypts the webhook secrets in the database).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA="$ROOT/.outdial"
BIN="$ROOT/build/bin"
mkdir -p "$DATA/logs"
cd "$ROOT"

"$ROOT/deploy/local/deps.sh"
cmake -S "$ROOT" -B "$ROOT/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C "$ROOT/build" >/dev/null

infra_env=$("$ROOT/deploy/local/infra.sh" start "$DATA/infra")
while IFS= read -r line; do
  case "$line" in OUTDIAL_*=*) export "$line" ;; esac
done <<<"$infra_env"

export OUTDIAL_SQL_DIR="$ROOT/proto/sql"
export OUTDIAL_OPENAPI_PATH="$ROOT/proto/openapi.yaml"
export OUTDIAL_CONSOLE_DIR="$ROOT/services/ingress/console"
export OUTDIAL_SIM_DIAL_LOG="${OUTDIAL_SIM_DIAL_LOG:-$DATA/dial.log}"
export OUTDIAL_SIM_TIME_SCALE="${OUTDIAL_SIM_TIME_SCALE:-0.2}"
# a short hang-up (caller reputation) is as short as the sim's calls are scaled: 6 s of a real call
export OUTDIAL_REPUTATION_SHORT_CALL_S="${OUTDIAL_REPUTATION_SHORT_CALL_S:-$(awk "BEGIN { print 6 * $OUTDIAL_SIM_TIME_SCALE }")}"
# webhook receivers on this machine (127.0.0.1) are allowed here, never in production
export OUTDIAL_WEBHOOK_ALLOW_PRIVATE="${OUTDIAL_WEBHOOK_ALLOW_PRIVATE:-1}"
# the webhook secrets' key (docs/webhooks.md, "Secrets at rest"): this machine's own, made once and
# kept with its database; losing it makes the stored webhook secrets useless (rotate them then)
if [ -z "${OUTDIAL_SECRET_KEY:-}" ]; then
  if [ ! -s "$DATA/secret_key" ]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$DATA/secret_key.tmp" && mv "$DATA/secret_key.tmp" "$DATA/secret_key")
  fi
  OUTDIAL_SECRET_KEY=$(cat "$DATA/secret_key")
fi
export OUTDIAL_SECRET_KEY
"$BIN/outdialctl" migrate
"$BIN/outdialctl" topics create --partitions 6

# Each service runs under a small supervisor that starts it again if it dies
# (as systemd or Kubernetes would): a kill -9 of a dialer is a fault to watch
# the system recover from, not the end of the run.
RUN="$DATA/run"
rm -rf "$RUN"
mkdir -p "$RUN"
supervisors=()
stop() {
  trap - INT TERM EXIT
  echo "stopping services..." >&2
  touch "$RUN/stopping"
  for f in "$RUN"/*.pid; do kill -TERM "$(cat "$f")" 2>/dev/null || true; done
  for p in "${supervisors[@]}"; do wait "$p" 2>/dev/null || true; done
  "$ROOT/deploy/local/infra.sh" stop "$DATA/infra" || true
  echo "stopped." >&2
  exit 0
}
trap stop INT TERM EXIT

supervise() { # name port log
  local name=$1 port=$2 log=$3 child rc
  while :; do
    OUTDIAL_HTTP_PORT=$port "$BIN/outdial-${name%%#*}" >>"$log" 2>&1 &
    child=$!
    echo "$child" >"$RUN/$name.pid"
    wait "$child" && rc=0 || rc=$?
    # exit 0 is a drain (Ctrl-C reaches the services too): that one stays down
    [ "$rc" = 0 ] || [ -e "$RUN/stopping" ] && return 0
    echo "outdial-$name exited with status $rc; starting it again in 1 s (log $log)" >&2
    sleep 1
    [ -e "$RUN/stopping" ] && return 0
  done
}

start() { # name port [instance]
  local name=$1 log="$DATA/logs/$1${3:+-$3}.log"
  supervise "$1${3:+#$3}" "$2" "$log" &
  supervisors+=($!)
  echo "started outdial-$name${3:+ #$3} (port $2, log $log)" >&2
}
INGRESS_PORT=${OUTDIAL_HTTP_PORT:-8080}
start ingress "$INGRESS_PORT"
start scheduler 9101
for i in $(seq 1 "${OUTDIAL_DIALERS:-1}"); do start dialer $((9101 + i)) "$i"; done
start outcome 9201

demo=$("$BIN/outdialctl" demo)
key=${demo#* }
cat >"$DATA/env" <<ENV
OUTDIAL_URL=http://127.0.0.1:$INGRESS_PORT
OUTDIAL_API_KEY=$key
OUTDIAL_SIM_DIAL_LOG=$OUTDIAL_SIM_DIAL_LOG
ENV
echo
echo "outdial is running. Written to .outdial/env:"
cat "$DATA/env"
echo
echo "Try:  set -a; . .outdial/env; set +a"
echo "      curl -s -X POST \$OUTDIAL_URL/v1/calls -H \"Authorization: Bearer \$OUTDIAL_API_KEY\" \\"
echo "           -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' \\"
echo "           -d '{\"scenario\":\"appointment_reminder\",\"phone\":\"+34123456780\",\"metadata\":{\"patient\":\"Ana\"}}'"
echo "Ctrl-C stops everything."
wait
