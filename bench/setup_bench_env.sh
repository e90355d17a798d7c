#!/usr/bin/env bash
# Creates (or reuses) the benchmark-only Python environment .venv-bench with
# the full PyTorch 2.11.0 wheel and Opacus 1.6.0, for bench/opacus_bench.py.
#
# Why a separate venv: the project's .venv holds torch installed with
# --no-deps, only so CMake can find LibTorch; it cannot `import torch`. The
# Opacus comparison needs a working torch of the SAME version as the LibTorch
# dpfleet links (2.11.0), so that both sides run the same kernels.
#
# Idempotent: does nothing when the venv already imports the pinned versions.
#   usage: bench/setup_bench_env.sh [VENV_DIR]   (default: <repo>/.venv-bench)
set -euo pipefail

readonly TORCH_VERSION=2.11.0
readonly OPACUS_VERSION=1.6.0
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${repo}/.venv-bench}"
python="${PYTHON:-python3}"

check() {
  "${venv}/bin/python" - <<PY 2>/dev/null
import torch, opacus, numpy
assert torch.__version__.split("+")[0] == "${TORCH_VERSION}", torch.__version__
assert opacus.__version__ == "${OPACUS_VERSION}", opacus.__version__
PY
}

if [[ -x "${venv}/bin/python" ]] && check; then
  echo "bench env ready: ${venv}"
  exit 0
fi

if [[ ! -x "${venv}/bin/python" ]]; then
  "${python}" -m venv "${venv}"
fi
"${venv}/bin/python" -m pip install --quiet --upgrade pip
"${venv}/bin/python" -m pip install --quiet "torch==${TORCH_VERSION}" "opacus==${OPACUS_VERSION}" numpy
check || { echo "bench env at ${venv} does not import torch ${TORCH_VERSION} / opacus ${OPACUS_VERSION}" >&2; exit 1; }
echo "bench env ready: ${venv}"
