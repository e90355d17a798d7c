#!/usr/bin/env bash
# The README's demo: a TLS fleet on free loopback ports — a fleet CA and
# certificates, a custodian token, a coordinator confined to the demo's
# data directory, workers proving who they are with their certificates —
# then the custodian registers synthetic PUMS data as a dataset, gives an
# analyst a token, and the analyst's job (the example spec) is followed to
# the end and the custodian audits it (`dpctl audit`); then a small job
# that invites memorisation (deploy/examples/small-dp.yaml) is trained and
# audited, where the non-private baseline is exposed and the DP model is
# not; everything is shut down afterwards.
# Usage: deploy/demo.sh BUILD_DIR [--rows N] [--workers W]
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
mkdir -p "$WORK/data"
"$BIN/dpctl" data synth --rows "$ROWS" --seed 1 -o "$WORK/data/pums.csv"

say "certificates for the fleet (CA, coordinator, $WORKERS worker(s)) and the custodian's token"
"$BIN/dpctl" admin certs --out "$WORK/certs" --server-name 127.0.0.1 --server-name localhost --workers "$WORKERS" >/dev/null
"$BIN/dpfleet-server" token create --state-dir "$WORK/state" --name custodian --role custodian \
  >"$WORK/custodian.token" 2>/dev/null
chmod 600 "$WORK/custodian.token"

say "starting the coordinator (TLS, state in $WORK/state, raw files only from $WORK/data)"
"$BIN/dpfleet-server" --listen 127.0.0.1:0 --http 127.0.0.1:0 --state-dir "$WORK/state" \
  --tls-cert "$WORK/certs/server.pem" --tls-key "$WORK/certs/server-key.pem" --client-ca "$WORK/certs/ca.pem" \
  --data-root "$WORK/data" --port_file "$WORK/ports" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do [[ -s "$WORK/ports" ]] && break; sleep 0.1; done
[[ -s "$WORK/ports" ]] || { echo "coordinator did not start:"; cat "$WORK/server.log"; exit 1; }
read -r GRPC_PORT HTTP_PORT <"$WORK/ports"
export DPFLEET_SERVER="127.0.0.1:$GRPC_PORT" DPFLEET_CA="$WORK/certs/ca.pem"
export DPFLEET_TOKEN="$(cat "$WORK/custodian.token")"
echo "coordinator: gRPC $DPFLEET_SERVER, HTTPS https://127.0.0.1:$HTTP_PORT/v1/jobs (CA $DPFLEET_CA)"

say "starting $WORKERS worker(s), each with its own certificate"
THREADS=$(( $(nproc) / WORKERS )); (( THREADS < 1 )) && THREADS=1
for i in $(seq 1 "$WORKERS"); do
  "$BIN/dpfleet-worker" --server "$DPFLEET_SERVER" --device cpu --work-dir "$WORK/worker$i" \
    --threads "$THREADS" --tls-ca "$WORK/certs/ca.pem" --tls-cert "$WORK/certs/worker-$i.pem" \
    --tls-key "$WORK/certs/worker-$i-key.pem" >"$WORK/worker$i.log" 2>&1 &
  PIDS+=($!)
done

say "custodian: registering the data as dataset 'demo' and creating the analyst's token"
"$BIN/dpctl" datasets add demo --path "$WORK/data/pums.csv"
wait_prepared() {
  local state
  for _ in $(seq 1 600); do
    state="$("$BIN/dpctl" datasets show "$1" -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])')"
    [[ "$state" != PREPARING ]] && return 0; sleep 0.2
  done
  echo "demo: dataset $1 is still PREPARING after 120 s; coordinator log in $WORK/server.log" >&2
  exit 1
}
# The analyst's newest job.
last_job() {
  DPFLEET_TOKEN="$ANALYST_TOKEN" "$BIN/dpctl" list -o json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["jobs"][-1]["job_id"])'
}
wait_prepared demo
ANALYST_TOKEN="$("$BIN/dpctl" admin token create analyst --role analyst 2>/dev/null)"

sed -e "s|^data: {path: /data/pums.csv}|dataset: demo|" -e "s|workers: 1|workers: $WORKERS|" \
  "$ROOT/deploy/examples/employment-dp.yaml" >"$WORK/spec.yaml"
say "analyst: submitting deploy/examples/employment-dp.yaml against dataset 'demo'"
set +e
DPFLEET_TOKEN="$ANALYST_TOKEN" "$BIN/dpctl" submit "$WORK/spec.yaml" --follow
RC=$?
set -e
say "workers"
"$BIN/dpctl" workers
if ((RC == 0)); then
  JOB="$(last_job)"
  say "analyst: downloading the trained model from the coordinator"
  DPFLEET_TOKEN="$ANALYST_TOKEN" "$BIN/dpctl" model "$JOB" --out "$WORK/model.pt"
  # Each shadow model is a training run of the spec: 2 per model keeps the
  # demo short (the bounds hold at any count; more shadows sharpen LiRA).
  say "custodian: auditing the analyst's job (membership inference, model inversion, non-private baseline)"
  "$BIN/dpctl" audit "$JOB" --shadow-models 2 --max-challenge 2000
  # The demo job is too large and too short to overfit, so its non-private
  # baseline is at chance too. A job on few records trained long shows the
  # other side: its non-private twin memorises, the DP job does not.
  say "custodian: registering 3000 more synthetic rows as dataset 'demo-small'"
  "$BIN/dpctl" data synth --rows 3000 --seed 2 -o "$WORK/data/small.csv"
  "$BIN/dpctl" datasets add demo-small --path "$WORK/data/small.csv"
  wait_prepared demo-small
  sed -e "s|^data: {path: /data/small.csv}|dataset: demo-small|" "$ROOT/deploy/examples/small-dp.yaml" \
    >"$WORK/spec-small.yaml"
  say "analyst: submitting deploy/examples/small-dp.yaml (MLP [256, 256], 200 epochs, epsilon 4) against 'demo-small'"
  DPFLEET_TOKEN="$ANALYST_TOKEN" "$BIN/dpctl" submit "$WORK/spec-small.yaml" --follow >/dev/null
  SMALL="$(last_job)"
  say "custodian: auditing it; compare the target's AUCs with the memorising non-private baseline's"
  "$BIN/dpctl" audit "$SMALL" --shadow-models 2
  say "custodian: the privacy ledger of dataset 'demo' and the audit trail"
  "$BIN/dpctl" ledger demo
  "$BIN/dpctl" admin audit
  say "done: the job SUCCEEDED (logs, certificates and trained model in $WORK)"
else
  say "the job did not succeed (exit $RC); logs in $WORK"
  tail -n 20 "$WORK"/*.log
fi
exit $RC
