#!/usr/bin/env bash
# The privacy-utility curve on the real ACS PUMS files: the same job at
# target ε ∈ {0.25, 0.5, 1, 2, 4, 8} and non-private (ε = ∞), on a local TLS
# fleet; then `dpctl report` draws the figure and this prints the table for
# docs/BENCHMARKS.md.
# Usage: bench/privacy_utility.sh BUILD_DIR [--files 'GLOB'] [--epochs E] [--batch B] [--out DIR]
# Defaults: the Arizona 2024 file, 3 epochs, batch 512 (a few minutes on 2 cores).
# Skips (exit 0, with a message) when the PUMS files are absent.
set -euo pipefail
BUILD="${1:?usage: privacy_utility.sh BUILD_DIR}"; shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$BUILD/bin"
PUMS="$(realpath -m "${DPFLEET_PUMS_DIR:-$ROOT/../shared/data/pums}/acs2024_1yr_states")"
FILES="pums2024_person_04_AZ.csv"
EPOCHS=3
BATCH=512
OUT=""
while (($#)); do
  case "$1" in
    --files) FILES="$2"; shift 2 ;;
    --epochs) EPOCHS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "privacy_utility: unknown argument $1" >&2; exit 2 ;;
  esac
done
shopt -s nullglob
inputs=()
for f in $FILES; do inputs+=("$PUMS/$f"); done
for f in "${inputs[@]}"; do
  [[ -r "$f" ]] || { echo "privacy_utility: skipped: $f is absent (real PUMS files not on this machine)"; exit 0; }
done

WORK="$(mktemp -d /tmp/dpfleet-pu-XXXXXX)"
OUT="${OUT:-$WORK/report}"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
START=$(date +%s)

"$BIN/dpctl" admin certs --out "$WORK/certs" --server-name 127.0.0.1 --workers 1 >/dev/null
"$BIN/dpfleet-server" token create --state-dir "$WORK/state" --name custodian --role custodian \
  >"$WORK/custodian.token" 2>/dev/null
"$BIN/dpfleet-server" --listen 127.0.0.1:0 --http 127.0.0.1:0 --state-dir "$WORK/state" \
  --tls-cert "$WORK/certs/server.pem" --tls-key "$WORK/certs/server-key.pem" --client-ca "$WORK/certs/ca.pem" \
  --data-root "$PUMS" --port_file "$WORK/ports" >"$WORK/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do [[ -s "$WORK/ports" ]] && break; sleep 0.1; done
[[ -s "$WORK/ports" ]] || { echo "coordinator did not start:"; cat "$WORK/server.log"; exit 1; }
read -r GRPC_PORT _ <"$WORK/ports"
export DPFLEET_SERVER="127.0.0.1:$GRPC_PORT" DPFLEET_CA="$WORK/certs/ca.pem"
export DPFLEET_TOKEN="$(cat "$WORK/custodian.token")"
"$BIN/dpfleet-worker" --server "$DPFLEET_SERVER" --device cpu --work-dir "$WORK/worker" --threads "$(nproc)" \
  --tls-ca "$WORK/certs/ca.pem" --tls-cert "$WORK/certs/worker-1.pem" --tls-key "$WORK/certs/worker-1-key.pem" \
  >"$WORK/worker.log" 2>&1 &
PIDS+=($!)

paths=""
# Read in place (the coordinator resolves links and confines paths to its
# data root), never copied.
for f in "${inputs[@]}"; do paths+="${paths:+, }$(realpath "$f")"; done
jobs=()
for eps in 0.25 0.5 1 2 4 8 inf; do
  if [[ "$eps" == inf ]]; then
    privacy="{mode: none}"
  else
    # One eval release (after the last epoch), so that even ε 0.25 leaves room for training.
    privacy="{mode: dp, target_epsilon: $eps, max_grad_norm: 1.0, delta: 1.0e-5, eval: {noise_multiplier: 50, bins: 16, every: $EPOCHS}}"
  fi
  cat >"$WORK/spec-$eps.yaml" <<SPEC
name: pu-eps-$eps
data: {path: [$paths]}
task: employment
features: [AGEP, SCHL, MAR, SEX, RAC1P, DIS, CIT, NATIVITY, MIL, DREM]
model: {type: mlp, hidden: [64, 32]}
training: {epochs: $EPOCHS, batch_size: $BATCH, optimizer: sgd, learning_rate: 0.5, seed: 1}
privacy: $privacy
resources: {workers: 1, device: cpu}
SPEC
  id="$("$BIN/dpctl" submit "$WORK/spec-$eps.yaml" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')"
  "$BIN/dpctl" watch "$id" >/dev/null || { echo "job $id (eps $eps) did not succeed"; "$BIN/dpctl" status "$id"; exit 1; }
  jobs+=("$id")
done
"$BIN/dpctl" report "${jobs[@]}" -o "$OUT"
END=$(date +%s)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); date: $(date -u +%F); files: $FILES; $EPOCHS epochs, batch $BATCH; took $((END - START)) s"
echo "figure: $OUT/privacy_utility.svg"
echo
echo "| target ε | ε spent | accuracy | balanced accuracy | AUC |"
echo "|---:|---:|---:|---:|---:|"
for id in "${jobs[@]}"; do "$BIN/dpctl" status "$id" -o json | tr -d '\n'; echo; done | python3 -c '
import json, sys
fmt = lambda v: "-" if v is None else "%.4f" % v
for line in sys.stdin:
    j = json.loads(line)
    last = [e for e in j["history"] if e.get("eval_accuracy") is not None][-1]
    target = j["name"].replace("pu-eps-", "")
    eps = j.get("epsilon")
    print("| %s | %s | %s | %s | %s |" % ("∞ (not private)" if target == "inf" else target,
          "∞" if eps is None else "%.3f" % eps, fmt(last["eval_accuracy"]),
          fmt(last.get("eval_balanced_accuracy")), fmt(last.get("eval_auc"))))'
