#!/usr/bin/env bash
# DP-SGD training throughput: dpfleet (DP-SGD and non-private SGD) against
# Opacus 1.6 (hooks and ghost clipping) and plain PyTorch, in ONE run on the
# same machine, same threads, same LibTorch/PyTorch version (2.11.0), and
# prints the markdown table of docs/BENCHMARKS.md ("DP-SGD training
# throughput").
#
#   bench/train_compare.sh BUILD_DIR [OUT_DIR]
#
# Per configuration (model x batch) the two benches run back to back —
# dpfleet-train-bench, then bench/opacus_bench.py — so that a load change on
# a shared machine hits both sides alike; this pair is repeated ROUNDS times
# and every column reports its best round (the least disturbed one: with 2
# threads on 2 cores, any other busy process stalls OpenMP barriers for whole
# scheduler slices on both sides). The load average is recorded after every
# pair. Needs BUILD_DIR/bin/dpfleet-train-bench and the benchmark venv
# (.venv-bench, created by bench/setup_bench_env.sh if missing).
#
# Environment: THREADS (2), ROUNDS (3), STEPS (20), WARMUP (5), DIM (59 = the default
# PUMS features one-hot encoded), MODELS ("64x32 256x256"),
# BATCHES ("256 1024 4096"), BENCH_VENV (<repo>/.venv-bench).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:?usage: train_compare.sh BUILD_DIR [OUT_DIR]}"
OUT="${2:-$BUILD/bench}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-5}"
DIM="${DIM:-59}"
MODELS="${MODELS:-64x32 256x256}"
BATCHES="${BATCHES:-256 1024 4096}"
VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
BENCH="$BUILD/bin/dpfleet-train-bench"

[[ -x "$BENCH" ]] || { echo "missing $BENCH (build target dpfleet-train-bench)" >&2; exit 2; }
"$ROOT/bench/setup_bench_env.sh" "$VENV" >&2
PY="$VENV/bin/python"
mkdir -p "$OUT"
RAW="$OUT/train_compare.jsonl"
: >"$RAW"
# Both sides get the same thread count (the benches also call
# set_num_threads); one intra-op pool each, no nested OpenMP.
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

load() { cut -d' ' -f1-3 /proc/loadavg; }
{
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  libtorch="$(sed -n "s/^__version__ = .\(.*\)./\1/p" "$ROOT"/.venv/lib/python3*/site-packages/torch/version.py 2>/dev/null | head -1)"
  echo "versions: LibTorch ${libtorch:-?} (dpfleet), PyTorch $("$PY" -c "import torch; print(torch.__version__)") + Opacus $("$PY" -c "import opacus; print(opacus.__version__)") (bench venv)"
  echo "settings: threads=$THREADS rounds=$ROUNDS steps=$STEPS warmup=$WARMUP dim=$DIM"
  echo "load before: $(load)"
} | tee "$OUT/train_compare.meta"

for round in $(seq "$ROUNDS"); do
for model in $MODELS; do
  for batch in $BATCHES; do
    echo "== round $round: $model B=$batch (load $(load))" >&2
    common=(--threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" --dim "$DIM" --models "$model" --batches "$batch" --json)
    "$BENCH" "${common[@]}" | "$PY" -c 'import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]' >>"$RAW"
    "$PY" "$ROOT/bench/opacus_bench.py" "${common[@]}" 2>/dev/null |
      "$PY" -c 'import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]' >>"$RAW"
    echo "{\"load\": \"$(load)\", \"model\": \"$model\", \"batch\": $batch}" >>"$RAW"
  done
done
done
echo "load after: $(load)" | tee -a "$OUT/train_compare.meta"

"$PY" - "$RAW" <<'PY' | tee "$OUT/train_compare.md"
import collections, json, sys

rows = collections.defaultdict(dict)
loads = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "load" in r:
        loads.append(float(r["load"].split()[0]))
        continue
    # Best round per column (see the header comment).
    best = rows[(r["model"], r["batch"])]
    best[r["mode"]] = max(best.get(r["mode"], 0.0), r["examples_per_s"])

def mark(ok):
    return "" if ok else " ✗"

print("| model | batch | dpfleet DP ex/s | dpfleet non-DP ex/s | DP/non-DP time | Opacus hooks ex/s "
      "| Opacus ghost ex/s | speedup vs hooks | speedup vs ghost | torch non-DP ex/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (model, batch), m in rows.items():
    dp, nondp = m["dp"], m["nondp"]
    hooks, ghost, torch_nondp = m["opacus_hooks"], m["opacus_ghost"], m["torch_nondp"]
    ratio = nondp / dp  # time ratio = inverse throughput ratio
    print(f"| {model} | {batch} | {dp:,.0f} | {nondp:,.0f} | {ratio:.2f}{mark(ratio <= 1.2)} | {hooks:,.0f} "
          f"| {ghost:,.0f} | {dp / hooks:.1f}×{mark(dp / hooks >= 5)} | {dp / ghost:.1f}×{mark(dp / ghost >= 2)} "
          f"| {torch_nondp:,.0f} |")
print()
print(f"Best of the rounds per column. Targets: DP/non-DP time <= 1.2, >= 5x Opacus hooks, >= 2x Opacus ghost; ✗ marks a miss. "
      f"1-min load average at the end of each configuration: {min(loads):.2f}-{max(loads):.2f}.")
PY
echo "== wrote $RAW and $OUT/train_compare.md" >&2
