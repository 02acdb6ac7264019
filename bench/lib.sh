# Shared by the benchmarks: attach to the system `make run` started (reads
# .outdial/env and the infra's connection settings) and make a project whose
# limits are lifted so the benchmark measures the system, not the limits.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$ROOT/.outdial/env" ] || { echo "start the system first: make run (in another terminal)" >&2; exit 2; }
set -a; . "$ROOT/.outdial/env"; set +a
infra_env=$("$ROOT/deploy/local/infra.sh" env "$ROOT/.outdial/infra")
while IFS= read -r line; do
  case "$line" in OUTDIAL_*=*) export "$line" ;; esac
done <<<"$infra_env"
CTL="$ROOT/build/bin/outdialctl"

# bench_project NAME PACING → sets BENCH_PROJECT and BENCH_KEY
bench_project() {
  BENCH_PROJECT=$("$CTL" project create "$1" --pacing "$2" --wallet 1000000000000)
  "$CTL" project set "$BENCH_PROJECT" --calls-per-min 100000000 --requests-per-hour 100000000 >/dev/null
  "$CTL" scenario add "$BENCH_PROJECT" appointment_reminder >/dev/null
  "$CTL" caller-id add "$BENCH_PROJECT" +15005550006 >/dev/null
  BENCH_KEY=$("$CTL" key create "$BENCH_PROJECT" --scopes admin --name bench)
}
