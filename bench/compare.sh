#!/usr/bin/env bash
# COLO proxy benchmark: compare-engine throughput (packets/s and MB/s on one
# core, matching streams), added hold time per packet (median, p99) and the
# checkpoints an HTTP-like workload with differently segmented responses
# triggers, the flush's cost with the connection table full
# (tests/unit/colo/bench-colo-compare.c); then request latency and
# checkpoints with real guests (bench/compare-guest.py).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"
ninja -C "$OUT/qemu" colo-proxy-benchmarks >/dev/null
"$OUT/qemu/tests/unit/colo/bench-colo-compare"
# The same proxy with real guests (a COLO pair of the Linux test guest).
if [ -f "${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}/guest/initrd.gz" ]; then
    "${PYTHON:-/usr/bin/python3}" "$top/bench/compare-guest.py"
else
    echo "guest benchmark skipped: no test guest (make guest)"
fi
