#!/usr/bin/env bash
# Runs on a GPU machine, from a pack made by bench/gpu_pack.sh: the `gpu`
# tests, the engine benchmark on the GPU and (anchor, same run) on the
# machine's CPU cores, the NCCL all-reduce benchmark, and one end-to-end
# run — a W=1 job on a cuda:0 worker while a W=2 job runs on two CPU workers
# alongside. Everything it prints also lands under $OUT (default ./gpu-out).
#
#   bash build-gpu-pack/run.sh [--quick]
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${OUT:-$PWD/gpu-out}"
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
say() { printf '== %s\n' "$*"; }

PY="${PYTHON:-python3}"
# find_spec, not import: locating LibTorch needs none of torch's Python deps.
TORCH_DIR="$("$PY" -c 'import importlib.util; print(importlib.util.find_spec("torch").submodule_search_locations[0])')" ||
  { echo "run.sh: $PY has no torch"; exit 2; }
TORCH_LIB="$TORCH_DIR/lib"
SITE="$(dirname "$TORCH_DIR")"
NV="$(find "$SITE/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | paste -sd:)"
# The machine's C++ runtime if it has the symbol version the pack needs,
# else the packed one (which itself needs the glibc it was built against).
CXX_DIR=""
SYS_CXX="$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')"
if [[ -z "$SYS_CXX" ]] || ! grep -q "$(cat "$HERE/glibcxx-needed")" "$SYS_CXX"; then CXX_DIR="$HERE/lib-cxx:"; fi
echo "glibc here: $(ldd --version | head -n1); pack needs $(cat "$HERE/glibc-needed"), $(cat "$HERE/glibcxx-needed")" \
  "(C++ runtime: ${CXX_DIR:+packed}${CXX_DIR:-system})"
export LD_LIBRARY_PATH="$HERE/lib:$CXX_DIR$TORCH_LIB${NV:+:$NV}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
BIN="$HERE/bin"
say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
grep -E "^(__version__|git_version)" "$TORCH_DIR/version.py"
echo "cpus $(nproc)"
for b in "$BIN"/*; do ldd "$b" | grep 'not found' | sed "s|^|$(basename "$b"): |"; done

say "gpu tests"
"$BIN/gpu_tests" --gtest_output="json:$OUT/gpu_tests.json"
GPU_TESTS=$?

say "engine: GPU"
if ((QUICK)); then MODELS=64x32,256x256; BATCHES=256,4096; else MODELS=64x32,256x256,1024x1024; BATCHES=256,1024,4096,16384; fi
"$BIN/dpfleet-train-bench" --device cuda --models "$MODELS" --batches "$BATCHES" --steps 50 --warmup 10 \
  --json >"$OUT/train_cuda.json" && cat "$OUT/train_cuda.json"
say "engine: CPU anchor ($(nproc) threads, same machine)"
"$BIN/dpfleet-train-bench" --device cpu --threads "$(nproc)" --models "$MODELS" --batches "$BATCHES" --steps 20 \
  --warmup 3 --json >"$OUT/train_cpu.json" && cat "$OUT/train_cpu.json"

say "NCCL all-reduce (1 rank: the one GPU)"
"$BIN/dpfleet-allreduce-bench" --backend nccl --ranks 1 --max-bytes 268435456 --json >"$OUT/allreduce_nccl.json" &&
  cat "$OUT/allreduce_nccl.json"

say "end to end: cuda:0 worker (W=1) beside two CPU workers (W=2)"
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
"$BIN/dpctl" data synth --rows 200000 --seed 1 -o "$WORK/pums.csv"
# Plaintext on loopback (this machine only); every dpctl call needs a token.
export DPFLEET_TOKEN="$("$BIN/dpfleet-server" token create --state-dir "$WORK/state" --name bench --role custodian 2>/dev/null)"
"$BIN/dpfleet-server" --listen 127.0.0.1:0 --http 127.0.0.1:0 --state-dir "$WORK/state" --port_file "$WORK/ports" \
  --data-root "$WORK" >"$OUT/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do [[ -s "$WORK/ports" ]] && break; sleep 0.1; done
read -r GRPC_PORT _ <"$WORK/ports"
export DPFLEET_SERVER="127.0.0.1:$GRPC_PORT"
"$BIN/dpfleet-worker" --server "$DPFLEET_SERVER" --device cuda:0 --work-dir "$WORK/gpu" >"$OUT/worker-gpu.log" 2>&1 &
GPU_WORKER=$!
PIDS+=($GPU_WORKER)
for i in 1 2; do
  "$BIN/dpfleet-worker" --server "$DPFLEET_SERVER" --device cpu --threads 4 --work-dir "$WORK/cpu$i" \
    >"$OUT/worker-cpu$i.log" 2>&1 &
  PIDS+=($!)
done
workers() { "$BIN/dpctl" workers -o json | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["workers"]))'; }
for _ in $(seq 1 100); do
  [[ "$(workers)" == 3 ]] && break
  kill -0 "$GPU_WORKER" 2>/dev/null || break
  sleep 0.2
done
sed -e "s|path: /data/pums.csv|path: $WORK/pums.csv|" -e "s|device: cpu|device: cuda|" "$HERE/employment-dp.yaml" \
  >"$WORK/gpu.yaml"
sed -e "s|path: /data/pums.csv|path: $WORK/pums.csv|" -e "s|workers: 1|workers: 2|" "$HERE/employment-dp.yaml" \
  >"$WORK/cpu.yaml"
submit() { "$BIN/dpctl" submit "$1" -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["job_id"])'; }
GPU_JOB_RC=skipped
if kill -0 "$GPU_WORKER" 2>/dev/null; then
  GPU_JOB="$(submit "$WORK/gpu.yaml")"
else
  echo "the cuda:0 worker did not start:"; cat "$OUT/worker-gpu.log"
fi
CPU_JOB="$(submit "$WORK/cpu.yaml")"
if [[ -n "${GPU_JOB:-}" ]]; then
  timeout 300 "$BIN/dpctl" watch "$GPU_JOB"
  GPU_JOB_RC=$?
  "$BIN/dpctl" status "$GPU_JOB" -o json >"$OUT/job_cuda.json"
fi
timeout 300 "$BIN/dpctl" watch "$CPU_JOB"
CPU_JOB_RC=$?
"$BIN/dpctl" status "$CPU_JOB" -o json >"$OUT/job_cpu.json"
"$BIN/dpctl" workers

say "summary: gpu_tests=$GPU_TESTS gpu_job=$GPU_JOB_RC cpu_job=$CPU_JOB_RC"
[[ "$GPU_TESTS" == 0 && "$GPU_JOB_RC" == 0 && "$CPU_JOB_RC" == 0 ]]
