#!/usr/bin/env bash
# COLO proxy benchmark: compare-engine throughput (packets/s and MB/s on one
# core, matching streams), added hold time per packet (median, p99) and the
# checkpoints an HTTP-like workload with differently segmented responses
# triggers.  Source: tests/unit/colo/bench-colo-compare.c.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"
ninja -C "$OUT/qemu" colo-proxy-benchmarks >/dev/null
"$OUT/qemu/tests/unit/colo/bench-colo-compare"
