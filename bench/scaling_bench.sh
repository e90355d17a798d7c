#!/usr/bin/env bash
# Strong scaling (W = 1, 2, 4, 8 CPU ranks), the Gloo all-reduce table, and
# the speedup figure as SVG. Usage: bench/scaling_bench.sh BUILD_DIR [OUT_DIR]
set -euo pipefail
BUILD="${1:?usage: scaling_bench.sh BUILD_DIR [OUT_DIR]}"
OUT="${2:-$BUILD/bench}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$OUT"
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bin/dpfleet-scaling-bench" --ranks 1,2,4,8 --rows 200000 --batch 4096 --steps 30 --json >"$OUT/scaling.json"
"$BUILD/bin/dpfleet-scaling-bench" --ranks 1,2,4,8 --rows 200000 --batch 4096 --steps 30
for w in 2 4; do
  "$BUILD/bin/dpfleet-allreduce-bench" --ranks "$w" --min-bytes 1024 --max-bytes 67108864 --iters 10 \
    --json >"$OUT/allreduce-gloo-$w.json"
  "$BUILD/bin/dpfleet-allreduce-bench" --ranks "$w" --min-bytes 1024 --max-bytes 67108864 --iters 10
done
python3 "$HERE/scaling_svg.py" "$OUT/scaling.json" "$OUT/scaling.svg"
echo "== wrote $OUT/scaling.json, $OUT/scaling.svg"
