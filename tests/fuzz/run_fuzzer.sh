#!/usr/bin/env bash
# Runs one libFuzzer target (built by build_fuzzers.sh) for SECONDS over its
# seed corpus, ASan and UBSan reports fatal. New inputs go to
# FUZZ_DIR/corpus/TARGET (never into the repository), a crash to
# FUZZ_DIR/artifacts/; the exit status says whether anything was found.
#
#   tests/fuzz/run_fuzzer.sh FUZZ_DIR TARGET SECONDS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FUZZ="${1:?usage: run_fuzzer.sh FUZZ_DIR TARGET SECONDS}"
NAME="${2:?}"
SECONDS_TO_RUN="${3:?}"
BIN="$FUZZ/tests/fuzz/${NAME}_fuzzer"
[[ -x "$BIN" ]] || { echo "run_fuzzer.sh: $BIN is missing (tests/fuzz/build_fuzzers.sh $FUZZ)" >&2; exit 1; }
mkdir -p "$FUZZ/corpus/$NAME" "$FUZZ/artifacts"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
exec "$BIN" -max_total_time="$SECONDS_TO_RUN" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$FUZZ/artifacts/$NAME-" "$FUZZ/corpus/$NAME" "$ROOT/tests/fuzz/corpus/$NAME"
