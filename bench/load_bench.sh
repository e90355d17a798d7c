#!/usr/bin/env bash
# The coordinator under load (docs/BENCHMARKS.md, "Coordinator under load"):
# HTTP status polls/s, WatchJob fan-out latency over 1000 streams, submit
# rate, with TLS off and on, against a real dpfleet-server of BUILD_DIR.
#
#   bench/load_bench.sh BUILD_DIR [dpfleet-load-bench flags...]
set -euo pipefail
BUILD="${1:?usage: load_bench.sh BUILD_DIR [flags]}"
shift
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bin/dpfleet-load-bench" --server-bin "$BUILD/bin/dpfleet-server" "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
