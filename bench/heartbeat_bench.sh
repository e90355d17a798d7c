#!/usr/bin/env bash
# Heartbeat latency of the coordinator while a PLD job charges epochs and
# while 100 ranks wait in rendezvous (bench/heartbeat_bench.cc), for this
# build's dpfleet-server and, when REV is given, for the server of git
# revision REV built next to it — before and after in one command:
#
#   bench/heartbeat_bench.sh [BUILD_DIR] [REV] [-- BENCH_FLAGS...]
#   bench/heartbeat_bench.sh build ee5a0a2          # the numbers in docs/BENCHMARKS.md
#
# REV's server is built from `git archive REV` in BUILD_DIR-before-REV
# (only the dpfleet-server target; ccache makes it quick).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
REV="${2:-}"
shift $(( $# > 2 ? 2 : $# ))
[[ "${1:-}" == "--" ]] && shift
BENCH="$BUILD/bin/dpfleet-heartbeat-bench"
[[ -x "$BENCH" ]] || { echo "missing $BENCH (build target dpfleet-heartbeat-bench)" >&2; exit 2; }
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
servers=("$BUILD/bin/dpfleet-server")
if [[ -n "$REV" ]]; then
  OLD="$BUILD-before-$REV"
  if [[ ! -x "$OLD/build/bin/dpfleet-server" ]]; then
    mkdir -p "$OLD"
    git -C "$ROOT" archive "$REV" | tar -x -C "$OLD"
    ln -sfn "$ROOT/.venv" "$OLD/.venv"
    cmake -S "$OLD" -B "$OLD/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPython3_EXECUTABLE="$ROOT/.venv/bin/python" -DDPFLEET_BUILD_TESTS=OFF >/dev/null
    cmake --build "$OLD/build" -j"$(nproc)" --target dpfleet-server >/dev/null
  fi
  servers=("$OLD/build/bin/dpfleet-server" "${servers[@]}")
fi
for server in "${servers[@]}"; do
  "$BENCH" --server-bin "$server" "$@"
done
