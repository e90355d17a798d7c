#!/usr/bin/env bash
# Before/after benchmark of the embedded data pipeline: two builds' C++
# `data prepare` (dpfleet-prepare-bench) and in-memory load
# (dpfleet-data-bench) on the same inputs, runs interleaved A, B, A, B, ...
# so that the load of a shared machine hits both alike.
#
#   bench/prepare_compare.sh OLD_BUILD NEW_BUILD [WORK_DIR] [REPS]
#
# Inputs as bench/prepare_bench.sh: (a) the 7 real 2024 state files, (b)
# 3.4M synthetic rows x 286 columns (SYNTH_ROWS to change; the file is made
# once with the NEW build's generator and reused). Prints one line per run
# (wall s, CPU s, peak RSS MiB from /usr/bin/time -v) and the min / median
# of each (input, step, build).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OLD="${1:?old build dir}"
NEW="${2:?new build dir}"
WORK="${3:-/tmp/dpfleet-prepare-compare}"
REPS="${4:-3}"
STATES="$ROOT/../shared/data/pums/acs2024_1yr_states"
SYNTH_ROWS="${SYNTH_ROWS:-3400000}"
mkdir -p "$WORK"
for b in "$OLD" "$NEW"; do
  for t in dpfleet-prepare-bench dpfleet-data-bench; do
    [[ -x "$b/bin/$t" ]] || { echo "missing $b/bin/$t" >&2; exit 2; }
  done
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
SYNTH="$WORK/synth-$SYNTH_ROWS-286.csv"
[[ -s "$SYNTH" ]] || "$NEW/bin/dpfleet-prepare-bench" synth --rows "$SYNTH_ROWS" --seed 1 --filler-columns 252 -o "$SYNTH"

RESULTS="$WORK/results.txt"
: > "$RESULTS"
# measure INPUT STEP BUILD_NAME CMD...: one line "input step build wall cpu peak".
measure() {
  local input="$1" step="$2" build="$3"; shift 3
  /usr/bin/time -v "$@" > "$WORK/run.log" 2> "$WORK/run.time" || { cat "$WORK/run.log" "$WORK/run.time" >&2; exit 1; }
  local wall cpu peak
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$WORK/run.time")
  cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$WORK/run.time")
  peak=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$WORK/run.time")
  echo "$input $step $build $wall $cpu $peak" | tee -a "$RESULTS"
}

for rep in $(seq "$REPS"); do
  for build in old new; do
    dir="$OLD"; [[ "$build" == new ]] && dir="$NEW"
    rm -rf "$WORK/out"
    measure real prepare "$build" "$dir/bin/dpfleet-prepare-bench" prepare --input "$STATES"/pums2024_person_*.csv \
      --task employment --shards 4 --out "$WORK/out"
    measure real load "$build" "$dir/bin/dpfleet-data-bench" "$STATES"/pums2024_person_*.csv
    rm -rf "$WORK/out"
    measure synth prepare "$build" "$dir/bin/dpfleet-prepare-bench" prepare --input "$SYNTH" \
      --task employment --shards 4 --out "$WORK/out"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "input step build: wall min/median s, cpu min/median s, peak RSS max MiB"
python3 - "$RESULTS" <<'PY'
import statistics, sys
groups = {}
for line in open(sys.argv[1]):
    i, step, b, wall, cpu, peak = line.split()
    groups.setdefault((i, step, b), []).append((float(wall), float(cpu), int(peak)))
for key in sorted(groups):
    runs = groups[key]
    w = sorted(r[0] for r in runs)
    c = sorted(r[1] for r in runs)
    print("%s %s %s: wall %.2f / %.2f  cpu %.2f / %.2f  peak %d" %
          (*key, w[0], statistics.median(w), c[0], statistics.median(c), max(r[2] for r in runs)))
PY
