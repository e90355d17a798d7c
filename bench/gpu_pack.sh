#!/usr/bin/env bash
# Packs, on this (CPU) machine, everything a GPU machine needs to run the GPU
# tests, the GPU benchmarks and a GPU job end to end, without building there:
# the binaries (stripped) and the non-torch shared libraries they load (gRPC,
# Protobuf, Abseil, yaml-cpp, SQLite, ... and this machine's libstdc++). The
# GPU machine supplies LibTorch 2.11.0+cu130 — the same build as this
# project's .venv — and its CUDA libraries through its own python3's torch.
#
#   bench/gpu_pack.sh [BUILD_DIR]      -> build-gpu-pack/ (run.sh inside)
#
# Then, on the GPU machine: bash build-gpu-pack/run.sh (results under $OUT).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
PACK="$ROOT/build-gpu-pack"
BINS=(gpu_tests dpfleet-train-bench dpfleet-allreduce-bench dpfleet-worker dpfleet-server dpctl)

grep -q 'DPFLEET_WITH_CUDA:BOOL=ON' "$BUILD/CMakeCache.txt" ||
  { echo "gpu_pack: $BUILD was configured without CUDA (DPFLEET_WITH_CUDA=OFF)" >&2; exit 2; }
cmake --build "$BUILD" --target "${BINS[@]}"
rm -rf "$PACK"
mkdir -p "$PACK/bin" "$PACK/lib"
for b in "${BINS[@]}"; do
  src="$BUILD/bin/$b"
  [[ -x "$src" ]] || src="$BUILD/tests/$b"
  strip --strip-debug -o "$PACK/bin/$b" "$src"
done
# Shared libraries: everything the binaries resolve here except LibTorch and
# CUDA (the GPU machine's own, found through its torch) and the C library
# (glibc is the one thing that must be the target's).
for b in "$PACK"/bin/*; do ldd "$b"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r name path; do
    case "$path" in
      */site-packages/torch/* | */site-packages/nvidia/* | /usr/local/cuda*) continue ;;
    esac
    case "$name" in
      libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libutil.so.* | ld-linux*) continue ;;
    esac
    # The C++ runtime goes apart: run.sh uses the machine's own when it is
    # new enough (this one may need a newer glibc than the machine has).
    case "$name" in
      libstdc++.so.* | libgcc_s.so.*) mkdir -p "$PACK/lib-cxx"; cp -L "$path" "$PACK/lib-cxx/$name" ;;
      *) cp -L "$path" "$PACK/lib/$name" ;;
    esac
  done
cp "$ROOT/bench/gpu_run.sh" "$PACK/run.sh"
cp "$ROOT/deploy/examples/employment-dp.yaml" "$PACK/employment-dp.yaml"
# Newest symbol versions the packed code needs (run.sh checks them there).
for f in "$PACK"/bin/* "$PACK"/lib/*; do objdump -T "$f" 2>/dev/null; done >"$PACK/.symbols"
grep -o 'GLIBC_[0-9.]*' "$PACK/.symbols" | sort -uV | tail -n1 >"$PACK/glibc-needed"
grep -o 'GLIBCXX_[0-9.]*' "$PACK/.symbols" | sort -uV | tail -n1 >"$PACK/glibcxx-needed"
rm "$PACK/.symbols"
echo "needs $(cat "$PACK/glibc-needed") and $(cat "$PACK/glibcxx-needed") (bundled in lib-cxx/)"
du -sh "$PACK"
