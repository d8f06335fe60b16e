#!/usr/bin/env bash
# Disk replication figures (block layer, no VM): the secondary's checkpoint
# cost for 1, 10 and 100 MiB written between checkpoints, and the primary's
# sequential write throughput with and without a replication child.
# Source: tests/unit/colo/bench-replication.c.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"

ninja -C "$OUT/qemu" colo-benchmarks >/dev/null
"$OUT/qemu/tests/unit/colo/bench-replication"
