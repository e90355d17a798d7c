#!/usr/bin/env bash
# All benchmarks (`./dpfleet bench`): the DP-SGD training comparison
# (train_compare.sh) and every other bench/*_bench.sh present (e.g. the data
# pipeline and scaling benchmarks), each given BUILD_DIR. One failing script
# does not stop the others; the exit status says whether any failed.
#
#   bench/run_all.sh BUILD_DIR
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="${1:?usage: run_all.sh BUILD_DIR}"
failed=()
for script in "$HERE/train_compare.sh" "$HERE"/*_bench.sh; do
  [[ -x "$script" || -f "$script" ]] || continue
  echo "===== $(basename "$script")"
  bash "$script" "$BUILD" || failed+=("$(basename "$script")")
done
if ((${#failed[@]})); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
