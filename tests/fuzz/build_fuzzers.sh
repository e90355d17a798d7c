#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang, ASan and UBSan into
# OUT_DIR (the project configured with DPFLEET_FUZZ=ON: only the fuzz
# targets and the libraries they need).
#
#   tests/fuzz/build_fuzzers.sh OUT_DIR
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:?usage: build_fuzzers.sh OUT_DIR}"
if ! command -v clang++ >/dev/null; then
  echo "build_fuzzers.sh: clang++ is missing (./dpfleet setup installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if [[ ! -f "$OUT/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$OUT" "${gen[@]}" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDPFLEET_FUZZ=ON >/dev/null
fi
cmake --build "$OUT" -j"$(nproc)"
