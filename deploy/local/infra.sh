#!/usr/bin/env bash
# infra.sh — PostgreSQL 15 + a single-node Apache Kafka (KRaft) in a data folder
# of their own, no containers, no system services.
#
#   infra.sh start   DATA_DIR [PG_PORT] [KAFKA_PORT]   start both (reuses a running setup)
#   infra.sh stop    DATA_DIR                          stop both cleanly
#   infra.sh status  DATA_DIR                          exit 0 if both run
#   infra.sh env     DATA_DIR                          print the OUTDIAL_* connection env
#   infra.sh destroy DATA_DIR                          stop and delete all data
#   infra.sh pg-start|pg-stop|pg-restart|kafka-start|kafka-stop|kafka-kill DATA_DIR
#                                                      one side only (fault tests)
#
# Defaults: PG_PORT 55432, KAFKA_PORT 59092 (its KRaft controller on KAFKA_PORT+1).
# Ports given to `start` are remembered in DATA_DIR/ports.env; later commands
# without ports reuse them.
#
# On success `start` prints, on stdout:
#   OUTDIAL_PG_DSN=host=127.0.0.1 port=55432 user=outdial dbname=outdial
#   OUTDIAL_KAFKA_BROKERS=127.0.0.1:59092
# Everything else goes to stderr.
#
# PostgreSQL refuses to run as root. When run as root this script creates a
# system user `outdial` (override: OUTDIAL_PG_OS_USER) and runs the server as
# that user. If that user cannot reach DATA_DIR (e.g. it lies under /root, mode
# 0700) the cluster lives in ${OUTDIAL_PG_ROOT:-/var/tmp/outdial-pg}/<hash> and
# DATA_DIR/pg is a symlink to it.
#
# Kafka comes from deploy/local/deps.sh (KAFKA_HOME, or the same cache path).
set -euo pipefail

KAFKA_VERSION="${OUTDIAL_KAFKA_VERSION:-3.9.1}"
CACHE_DIR="${OUTDIAL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/outdial}"
KAFKA_HOME="${KAFKA_HOME:-$CACHE_DIR/kafka-$KAFKA_VERSION}"
PG_BIN="${OUTDIAL_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_OS_USER="${OUTDIAL_PG_OS_USER:-outdial}"
PG_ROLE="outdial"
PG_DB="outdial"
KAFKA_WAIT_S="${OUTDIAL_KAFKA_WAIT_S:-60}"
PG_WAIT_S="${OUTDIAL_PG_WAIT_S:-60}"

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: ERROR: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 2 ] || usage
CMD="$1"
DATA_DIR_ARG="$2"
ARG_PG_PORT="${3:-}"
ARG_KAFKA_PORT="${4:-}"

mkdir -p "$DATA_DIR_ARG"
DATA_DIR="$(cd "$DATA_DIR_ARG" && pwd -P)"
PORTS_FILE="$DATA_DIR/ports.env"
KAFKA_DIR="$DATA_DIR/kafka"

# ------------------------------------------------------------------ ports
PG_PORT=55432
KAFKA_PORT=59092
if [ -f "$PORTS_FILE" ]; then
  # shellcheck disable=SC1090
  . "$PORTS_FILE"
fi
if [ -n "$ARG_PG_PORT" ]; then PG_PORT="$ARG_PG_PORT"; fi
if [ -n "$ARG_KAFKA_PORT" ]; then KAFKA_PORT="$ARG_KAFKA_PORT"; fi
CTRL_PORT=$((KAFKA_PORT + 1))

save_ports() {
  printf 'PG_PORT=%s\nKAFKA_PORT=%s\n' "$PG_PORT" "$KAFKA_PORT" >"$PORTS_FILE.tmp"
  mv "$PORTS_FILE.tmp" "$PORTS_FILE"
}

print_env() {
  echo "OUTDIAL_PG_DSN=host=127.0.0.1 port=$PG_PORT user=$PG_ROLE dbname=$PG_DB"
  echo "OUTDIAL_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------------ PostgreSQL
AS_PG=()          # prefix to run a command as the PostgreSQL OS user
PG_DIR="$DATA_DIR/pg"

pg_setup_user() {
  if [ "$(id -u)" -ne 0 ]; then
    AS_PG=()
    return
  fi
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "creating system user $PG_OS_USER (PostgreSQL refuses to run as root)"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$PG_OS_USER" 2>/dev/null || id -u "$PG_OS_USER" >/dev/null
  fi
  AS_PG=(runuser -u "$PG_OS_USER" --)
}

# Decide where the cluster lives and make it owned by the server's user.
pg_resolve_dir() {
  pg_setup_user
  if [ -L "$DATA_DIR/pg" ]; then
    PG_DIR="$(readlink -f "$DATA_DIR/pg")"
    mkdir -p "$PG_DIR"
  else
    PG_DIR="$DATA_DIR/pg"
    mkdir -p "$PG_DIR"
    if [ "${#AS_PG[@]}" -gt 0 ]; then
      chown "$PG_OS_USER:" "$PG_DIR"
      if ! "${AS_PG[@]}" test -w "$PG_DIR" -a -x "$PG_DIR"; then
        # the server's user cannot reach DATA_DIR: keep the cluster elsewhere
        local root hash
        root="${OUTDIAL_PG_ROOT:-/var/tmp/outdial-pg}"
        hash="$(printf '%s' "$DATA_DIR" | sha1sum | cut -c1-12)"
        mkdir -p "$root"
        chmod 0755 "$root"
        rmdir "$PG_DIR" 2>/dev/null || die "$PG_DIR is not reachable by user $PG_OS_USER and not empty"
        mkdir -p "$root/$hash"
        ln -s "$root/$hash" "$DATA_DIR/pg"
        PG_DIR="$root/$hash"
        log "user $PG_OS_USER cannot reach $DATA_DIR; cluster lives in $PG_DIR (symlink $DATA_DIR/pg)"
      fi
    fi
  fi
  if [ "${#AS_PG[@]}" -gt 0 ]; then
    chown "$PG_OS_USER:" "$PG_DIR"
  fi
  chmod 0700 "$PG_DIR"
  PGDATA_DIR="$PG_DIR/data"
  PG_SOCK_DIR="$PG_DIR/sock"
  PG_LOG="$PG_DIR/postgresql.log"
}

pg_ctl_() { "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" "$@"; }

pg_running() { [ -f "$PGDATA_DIR/PG_VERSION" ] && pg_ctl_ status >/dev/null 2>&1; }

psql_() {
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" "$@"
}

pg_write_conf() {
  # rewritten on every start: ports and paths may change, the rest is fixed
  "${AS_PG[@]}" mkdir -p "$PG_SOCK_DIR"
  "${AS_PG[@]}" tee "$PGDATA_DIR/outdial.conf" >/dev/null <<CONF
# written by deploy/local/infra.sh on every start
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK_DIR'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
CONF
  if ! grep -q "^include_if_exists = 'outdial.conf'" "$PGDATA_DIR/postgresql.conf"; then
    echo "include_if_exists = 'outdial.conf'" | "${AS_PG[@]}" tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
  fi
}

pg_start() {
  pg_resolve_dir
  local t0
  t0="$(now_ms)"
  if pg_running; then
    log "postgresql already running ($PGDATA_DIR)"
  else
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
      log "initdb $PGDATA_DIR"
      "${AS_PG[@]}" rm -rf "$PGDATA_DIR"
      "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PGDATA_DIR" -U "$PG_ROLE" --auth=trust \
        -E UTF8 --locale=C.UTF-8 >"$DATA_DIR/initdb.log" 2>&1 ||
        { tail -n 30 "$DATA_DIR/initdb.log" >&2; die "initdb failed"; }
    fi
    if port_open "$PG_PORT"; then
      die "port $PG_PORT is already in use (another PostgreSQL?)"
    fi
    pg_write_conf
    # pg_ctl opens the log file as the server's user
    if ! pg_ctl_ -w -t "$PG_WAIT_S" -l "$PG_LOG" start >/dev/null 2>&1; then
      tail -n 30 "$PG_LOG" >&2 || true
      die "postgresql did not start on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    fi
  fi
  local i=0
  until psql_ -d postgres -Atc 'select 1' >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || { tail -n 30 "$PG_LOG" >&2 || true; die "postgresql runs but does not answer on 127.0.0.1:$PG_PORT"; }
    sleep 0.1
  done
  if [ "$(psql_ -d postgres -Atc "select 1 from pg_database where datname = '$PG_DB'")" != "1" ]; then
    psql_ -d postgres -c "create database $PG_DB" >/dev/null
  fi
  log "postgresql ready on 127.0.0.1:$PG_PORT in $(($(now_ms) - t0)) ms"
}

pg_stop() {
  pg_resolve_dir
  if pg_running; then
    pg_ctl_ -w -t 60 -m fast stop >/dev/null
    log "postgresql stopped"
  else
    log "postgresql not running"
  fi
}

pg_restart() {
  pg_resolve_dir
  if pg_running; then
    pg_ctl_ -w -t 60 -m fast stop >/dev/null
  fi
  pg_start
}

# ------------------------------------------------------------------ Kafka
KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
KAFKA_OUT="$KAFKA_DIR/logs/stdout.log"

kafka_pid() {
  local pid
  [ -f "$KAFKA_PID_FILE" ] || return 1
  pid="$(cat "$KAFKA_PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

kafka_check_home() {
  compgen -G "$KAFKA_HOME/libs/kafka_2.13-*.jar" >/dev/null ||
    die "kafka not found in $KAFKA_HOME; run deploy/local/deps.sh first (or set KAFKA_HOME)"
  command -v java >/dev/null 2>&1 || die "java not found; run deploy/local/deps.sh"
  command -v kcat >/dev/null 2>&1 || die "kcat not found; run deploy/local/deps.sh"
}

kafka_write_conf() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  cat >"$KAFKA_DIR/server.properties" <<PROPS
# written by deploy/local/infra.sh on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CTRL_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CTRL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.retention.hours=24
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=4
# single node: a restarted broker must not wait long for its own old session to expire
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
PROPS
}

kafka_java_cmd() {
  KAFKA_JAVA=(java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$KAFKA_HOME/config/log4j.properties"
    "-Dkafka.logs.dir=$KAFKA_DIR/logs"
    -cp "$KAFKA_HOME/libs/*")
}

kafka_fail() {
  log "$1"
  log "---- tail of $KAFKA_OUT"
  tail -n 30 "$KAFKA_OUT" >&2 2>/dev/null || true
  log "---- tail of $KAFKA_DIR/logs/server.log"
  tail -n 30 "$KAFKA_DIR/logs/server.log" >&2 2>/dev/null || true
  exit 1
}

kafka_wait() {
  local pid="$1" deadline
  deadline=$(($(date +%s) + KAFKA_WAIT_S))
  while :; do
    kill -0 "$pid" 2>/dev/null || kafka_fail "kafka (pid $pid) exited during start-up"
    if port_open "$KAFKA_PORT" &&
      kcat -b "127.0.0.1:$KAFKA_PORT" -L -m 3 2>/dev/null | grep -q '1 brokers'; then
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] ||
      kafka_fail "kafka not ready on 127.0.0.1:$KAFKA_PORT after ${KAFKA_WAIT_S}s"
    sleep 0.25
  done
}

kafka_start() {
  kafka_check_home
  local t0 pid
  t0="$(now_ms)"
  if pid="$(kafka_pid)"; then
    log "kafka already running (pid $pid)"
  else
    rm -f "$KAFKA_PID_FILE"
    for p in "$KAFKA_PORT" "$CTRL_PORT"; do
      if port_open "$p"; then die "port $p is already in use (another Kafka?)"; fi
    done
    kafka_write_conf
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
      local cid
      # a random Kafka Uuid: 16 random bytes, base64url without padding
      # (one starting with '-' would be taken for an option by StorageTool)
      cid="-"
      while [ "${cid#-}" != "$cid" ]; do
        cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
      done
      log "formatting kafka storage (cluster id $cid)"
      kafka_java_cmd
      "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format -t "$cid" \
        -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/format.log" 2>&1 ||
        { tail -n 30 "$KAFKA_DIR/logs/format.log" >&2; die "kafka storage format failed"; }
    fi
    # own session so that a Ctrl-C to the caller's process group does not hit it
    kafka_java_cmd
    # shellcheck disable=SC2016 # $$ and $1 expand in the child shell
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
      "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_DIR/server.properties" \
      </dev/null >"$KAFKA_OUT" 2>&1 &
    local i=0
    while [ ! -s "$KAFKA_PID_FILE" ]; do
      i=$((i + 1)); [ "$i" -lt 100 ] || die "kafka did not write its pid file"
      sleep 0.05
    done
    pid="$(cat "$KAFKA_PID_FILE")"
  fi
  kafka_wait "$pid"
  log "kafka ready on 127.0.0.1:$KAFKA_PORT (controller $CTRL_PORT) in $(($(now_ms) - t0)) ms"
}

kafka_stop() {
  local sig="${1:-TERM}" pid i
  if ! pid="$(kafka_pid)"; then
    rm -f "$KAFKA_PID_FILE"
    log "kafka not running"
    return 0
  fi
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "kafka (pid $pid) did not stop in 30 s; killing"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$KAFKA_PID_FILE"
  log "kafka stopped"
}

# ------------------------------------------------------------------ commands
case "$CMD" in
  start)
    t_all="$(now_ms)"
    save_ports
    pg_start
    kafka_start
    log "infra ready in $(($(now_ms) - t_all)) ms (data: $DATA_DIR)"
    print_env
    ;;
  stop)
    kafka_stop TERM
    pg_stop
    ;;
  status)
    pg_resolve_dir
    rc=0
    if pg_running; then log "postgresql: running on $PG_PORT"; else log "postgresql: stopped"; rc=1; fi
    if pid="$(kafka_pid)"; then log "kafka: running (pid $pid) on $KAFKA_PORT"; else log "kafka: stopped"; rc=1; fi
    exit "$rc"
    ;;
  env) print_env ;;
  destroy)
    kafka_stop KILL
    pg_resolve_dir
    if pg_running; then pg_ctl_ -w -t 60 -m immediate stop >/dev/null || true; fi
    if [ -L "$DATA_DIR/pg" ]; then rm -rf "$(readlink -f "$DATA_DIR/pg")"; fi
    rm -rf "$DATA_DIR"
    log "destroyed $DATA_DIR"
    ;;
  pg-start) save_ports; pg_start ;;
  pg-stop) pg_stop ;;
  pg-restart) pg_restart ;;
  kafka-start) save_ports; kafka_start ;;
  kafka-stop) kafka_stop TERM ;;
  kafka-kill) kafka_stop KILL ;;
  *) usage ;;
esac
