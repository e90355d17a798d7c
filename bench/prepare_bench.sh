#!/usr/bin/env bash
# Data pipeline benchmark: the embedded C++ `data prepare` against the PySpark
# job (local[2]) on the same machine, same inputs, same options, in one run.
#
#   bench/prepare_bench.sh [BUILD_DIR] [WORK_DIR]
#
#   (a) the 7 real 2024 state files together (467,120 rows, 38 columns)
#   (b) 3.4M synthetic rows with 286 columns (34 modelled + 252 filler, as
#       wide as a real person file)
#
# For each: wall time, rows/s and peak RSS (/usr/bin/time -v; for Spark the
# largest single process, normally the JVM), and whether the two outputs are
# byte-identical. Needs BUILD_DIR/bin/dpfleet-prepare-bench, the project venv
# with pyspark, java, /usr/bin/time and ~6 GB free in WORK_DIR. Set
# SKIP_SPARK=1 to time the C++ side only, SYNTH_ROWS to change (b)'s size.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
WORK="${2:-/tmp/dpfleet-prepare-bench}"
BENCH="$BUILD/bin/dpfleet-prepare-bench"
VENV="$ROOT/.venv"
STATES="$ROOT/../shared/data/pums/acs2024_1yr_states"
SYNTH_ROWS="${SYNTH_ROWS:-3400000}"
SHARDS=4
mkdir -p "$WORK"
[[ -x "$BENCH" ]] || { echo "missing $BENCH (build target dpfleet-prepare-bench)" >&2; exit 2; }
export PATH="$VENV/bin:$PATH" PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$BENCH" schema > "$WORK/schema.json"

# Runs a command under /usr/bin/time -v; prints "wall_s peak_mib cpu_s"
# (cpu_s = user + system time of the command and its children).
timed() {
  local log="$1"; shift
  /usr/bin/time -v "$@" > "$log" 2> "$log.time" || { cat "$log" "$log.time" >&2; return 1; }
  local wall peak cpu
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$log.time")
  peak=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$log.time")
  cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$log.time")
  echo "$wall $peak $cpu"
}

# report NAME IMPL ROWS WALL CORES CPU PEAK: one result line. rows/s per
# core is wall-based (rows / wall / cores); rows per CPU-second counts only
# the CPU time the run actually got, which matters on a shared machine.
report() {
  printf '%-6s %-11s rows=%-8s wall_s=%-7s rows_per_s=%-8.0f per_core=%-8.0f cpu_s=%-7s rows_per_cpu_s=%-8.0f peak_rss_mib=%s\n' \
    "$1" "$2" "$3" "$4" "$(echo "$3 / $4" | bc -l)" "$(echo "$3 / $4 / $5" | bc -l)" \
    "$6" "$(echo "$3 / $6" | bc -l)" "$7"
}

# run NAME FILE...: C++ then Spark on the same inputs; one result line each.
run() {
  local name="$1"; shift
  local cpp="$WORK/$name-cpp" spark="$WORK/$name-spark"
  rm -rf "$cpp" "$spark"
  read -r wall peak cpu < <(timed "$WORK/$name-cpp.log" "$BENCH" prepare --input "$@" \
      --task employment --shards "$SHARDS" --out "$cpp")
  local rows
  rows=$(sed -n 's/.*rows_read=\([0-9]*\).*/\1/p' "$WORK/$name-cpp.log")
  report "$name" cpp "$rows" "$wall" "$(nproc)" "$cpu" "$peak"
  [[ "${SKIP_SPARK:-0}" == 1 ]] && return 0
  read -r swall speak scpu < <(timed "$WORK/$name-spark.log" spark-submit --master 'local[2]' \
      --driver-memory 4g --conf spark.ui.enabled=false \
      "$ROOT/deploy/spark/prepare_pums.py" --schema "$WORK/schema.json" --input "$@" \
      --task employment --shards "$SHARDS" --out "$spark")
  report "$name" "spark-l[2]" "$rows" "$swall" 2 "$scpu" "$speak"
  printf '%-8s speedup=%.1fx  ' "$name" "$(echo "$swall / $wall" | bc -l)"
  if diff -rq "$cpp" "$spark" > /dev/null; then echo "outputs byte-identical"; else echo "OUTPUTS DIFFER"; fi
}

if compgen -G "$STATES/pums2024_person_*.csv" > /dev/null; then
  run real "$STATES"/pums2024_person_*.csv
else
  echo "real  skipped: no files in $STATES"
fi

SYNTH="$WORK/synth-$SYNTH_ROWS-286.csv"
if [[ ! -s "$SYNTH" ]]; then
  "$BENCH" synth --rows "$SYNTH_ROWS" --seed 1 --filler-columns 252 -o "$SYNTH"
fi
echo "synth file: $(du -h "$SYNTH" | cut -f1), $(head -1 "$SYNTH" | tr ',' '\n' | wc -l) columns"
run synth "$SYNTH"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
