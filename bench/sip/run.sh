#!/usr/bin/env bash
# bench/sip: ONE sip provider (the code a dialer runs, without Kafka and
# PostgreSQL around it) against sipp's built-in UAS on loopback: RATE new
# calls per second (default 200) for SECONDS (default 20), each held HOLD
# seconds (default 10) and hung up by us; so RATE x HOLD dialogs are up at
# once (2,000 by default). Prints the sustained calls per second, the peak
# of established dialogs, memory per dialog and CPU (bench/sip/sipbench.c).
# Needs no running system.
#
# TRANSPORT tcp makes the trunk a tcp one (sipp with -t t1): every message
# over one TCP connection.
#
#   bench/sip/run.sh [RATE] [SECONDS] [HOLD] [TRANSPORT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
RATE=${1:-200}
SECS=${2:-20}
HOLD=${3:-10}
TRANSPORT=${4:-udp}
SIPP_T=u1
[ "$TRANSPORT" = tcp ] && SIPP_T=t1
PORT=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d)
sipp -sn uas -t "$SIPP_T" -i 127.0.0.1 -p "$PORT" -nostdin -trace_err -error_file "$tmp/sipp-err.log" >/dev/null 2>&1 &
spid=$!
trap 'kill $spid 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.5
/usr/bin/time -f "sipp-free wall %e s" "$ROOT/build/bin/outdial-sipbench" "127.0.0.1:$PORT" "$RATE" "$SECS" "$HOLD" "$TRANSPORT"
echo "sipp (the carrier, same machine): $(ps -o rss=,time= -p $spid | awk '{print $1 " kB RSS, CPU " $2}')"
