#!/usr/bin/env bash
# The README's demo: a coordinator and workers on free loopback ports,
# synthetic PUMS data, the example spec, followed to the end; everything is
# shut down afterwards. Usage: deploy/demo.sh BUILD_DIR [--rows N] [--workers W]
set -euo pipefail
BUILD="${1:?usage: demo.sh BUILD_DIR}"; shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$BUILD/bin"
ROWS=200000
WORKERS=2
while (($#)); do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    *) echo "demo: unknown argument $1" >&2; exit 2 ;;
  esac
done

WORK="$(mktemp -d /tmp/dpfleet-demo-XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

say "generating $ROWS synthetic PUMS person rows"
"$BIN/dpctl" data synth --rows "$ROWS" --seed 1 -o "$WORK/pums.csv"

say "starting the coordinator (state in $WORK/state)"
"$BIN/dpfleet-server" --listen 127.0.0.1:0 --http 127.0.0.1:0 --state-dir "$WORK/state" \
  --port_file "$WORK/ports" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do [[ -s "$WORK/ports" ]] && break; sleep 0.1; done
[[ -s "$WORK/ports" ]] || { echo "coordinator did not start:"; cat "$WORK/server.log"; exit 1; }
read -r GRPC_PORT HTTP_PORT <"$WORK/ports"
export DPFLEET_SERVER="127.0.0.1:$GRPC_PORT"
echo "coordinator: gRPC $DPFLEET_SERVER, HTTP http://127.0.0.1:$HTTP_PORT/v1/jobs"

say "starting $WORKERS worker(s)"
THREADS=$(( $(nproc) / WORKERS )); (( THREADS < 1 )) && THREADS=1
for i in $(seq 1 "$WORKERS"); do
  "$BIN/dpfleet-worker" --server "$DPFLEET_SERVER" --device cpu --work-dir "$WORK/worker$i" \
    --threads "$THREADS" >"$WORK/worker$i.log" 2>&1 &
  PIDS+=($!)
done

sed -e "s|path: /data/pums.csv|path: $WORK/pums.csv|" -e "s|workers: 1|workers: $WORKERS|" \
  "$ROOT/deploy/examples/employment-dp.yaml" >"$WORK/spec.yaml"
say "submitting deploy/examples/employment-dp.yaml"
set +e
"$BIN/dpctl" submit "$WORK/spec.yaml" --follow
RC=$?
set -e
say "workers"
"$BIN/dpctl" workers
if ((RC == 0)); then
  JOB="$("$BIN/dpctl" list -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"][-1]["job_id"])')"
  say "downloading the trained model from the coordinator"
  "$BIN/dpctl" model "$JOB" --out "$WORK/model.pt"
  say "done: the job SUCCEEDED (logs and trained model in $WORK)"
else
  say "the job did not succeed (exit $RC); logs in $WORK"
  tail -n 20 "$WORK"/*.log
fi
exit $RC
