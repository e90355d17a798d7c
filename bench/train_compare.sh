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
# and every throughput column reports its best round (the least disturbed
# one: with 2 threads on 2 cores, any other busy process stalls OpenMP
# barriers for whole scheduler slices on both sides). The DP/non-DP ratio is
# PAIRED: dpfleet-train-bench steps its DP and non-private trainers
# alternately in one process, so each round gives one ratio measured under
# the same load; the table shows the median and the best of those per-round
# ratios (not a ratio of two bests), and train_compare_rounds.md lists every
# round's ratio with its load. The load average is recorded after every
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
ratios = collections.defaultdict(list)  # (model, batch) -> [(ratio, load)] per round
loads = []
pending = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "load" in r:
        load = float(r["load"].split()[0])
        loads.append(load)
        key = pending["key"]  # the bench rows name the model mlp[..], the load line 64x32
        # This round's paired DP/non-DP time ratio (same process, interleaved steps).
        ratios[key].append((pending["dp"] / pending["nondp"], load))
        pending = {}
        continue
    if r["mode"] in ("dp", "nondp"):
        pending[r["mode"]] = r["ms_per_step"]
        pending["key"] = (r["model"], r["batch"])
    # Best round per column (see the header comment).
    best = rows[(r["model"], r["batch"])]
    best[r["mode"]] = max(best.get(r["mode"], 0.0), r["examples_per_s"])

def median(v):
    v = sorted(v)
    return v[len(v) // 2] if len(v) % 2 else 0.5 * (v[len(v) // 2 - 1] + v[len(v) // 2])

def mark(ok):
    return "" if ok else " ✗"

print("| model | batch | dpfleet DP ex/s | dpfleet non-DP ex/s | DP/non-DP time, paired: median (best–worst round) "
      "| Opacus hooks ex/s | Opacus ghost ex/s | speedup vs hooks | speedup vs ghost | torch non-DP ex/s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (model, batch), m in rows.items():
    dp, nondp = m["dp"], m["nondp"]
    hooks, ghost, torch_nondp = m["opacus_hooks"], m["opacus_ghost"], m["torch_nondp"]
    per_round = [x for x, _ in ratios[(model, batch)]]
    med, lo, hi = median(per_round), min(per_round), max(per_round)
    print(f"| {model} | {batch} | {dp:,.0f} | {nondp:,.0f} | {med:.2f}{mark(med <= 1.2)} ({lo:.2f}–{hi:.2f}) "
          f"| {hooks:,.0f} | {ghost:,.0f} | {dp / hooks:.1f}×{mark(dp / hooks >= 5)} "
          f"| {dp / ghost:.1f}×{mark(dp / ghost >= 2)} | {torch_nondp:,.0f} |")
print()
with open(sys.argv[1].replace(".jsonl", "_rounds.md"), "w") as f:
    f.write("| model | batch | " + " | ".join(f"round {i + 1}: ratio (load)" for i in range(max(len(v) for v in ratios.values()))) + " |\n")
    f.write("|---|---:|" + "---:|" * max(len(v) for v in ratios.values()) + "\n")
    for (model, batch), v in ratios.items():
        f.write(f"| {model} | {batch} | " + " | ".join(f"{x:.2f} ({l:.2f})" for x, l in v) + " |\n")

print(f"Throughput: best of the rounds per column; DP/non-DP: median of the per-round paired ratios. Targets: DP/non-DP time <= 1.2, >= 5x Opacus hooks, >= 2x Opacus ghost; ✗ marks a miss. "
      f"1-min load average at the end of each configuration: {min(loads):.2f}-{max(loads):.2f}.")
PY
cat "$OUT/train_compare_rounds.md"
echo "== wrote $RAW, $OUT/train_compare.md and $OUT/train_compare_rounds.md" >&2
