#!/usr/bin/env bash
# Benchmarks: print figures, assert nothing (these machines are shared and noisy).
#
# Build loop: how long the edit-one-COLO-file-and-rebuild cycle takes, measured on
# the real build tree: a no-op re-assembly, a rebuild after editing
# migration/colo.c in the assembled tree, and the re-assembly + rebuild that
# restores it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"

secs() { local t0=$1; echo "$(( ($(date +%s%N) - t0) / 1000000 )) ms"; }

echo "== build loop"
ninja -C "$OUT/qemu" qemu-system-x86_64 >/dev/null
t0=$(date +%s%N); bash "$top/assembly/assemble.sh" >/dev/null
echo "re-assembly, nothing changed:            $(secs "$t0")"
t0=$(date +%s%N); ninja -C "$OUT/qemu" qemu-system-x86_64 >/dev/null
echo "ninja, nothing changed:                  $(secs "$t0")"
echo "/* bench: simulated edit */" >> "$OUT/src/migration/colo.c"
t0=$(date +%s%N); ninja -C "$OUT/qemu" qemu-system-x86_64 >/dev/null
echo "ninja after editing migration/colo.c:    $(secs "$t0")"
t0=$(date +%s%N); bash "$top/assembly/assemble.sh" >/dev/null
ninja -C "$OUT/qemu" qemu-system-x86_64 >/dev/null
echo "re-assembly restoring it + ninja:        $(secs "$t0")"

echo "== disk replication"
bash "$top/bench/replication.sh"
"${PYTHON:-/usr/bin/python3}" "$top/bench/replication_guest.py"

echo "== COLO proxy"
bash "$top/bench/compare.sh"

echo "== COLO checkpoint pause"
"${PYTHON:-/usr/bin/python3}" "$top/bench/colo_pause.py"

echo "== re-protection"
"${PYTHON:-/usr/bin/python3}" "$top/bench/reprotect.py"
echo "-- the same with the guest stopped at the end of the resync (the former order), for the ratio"
"${PYTHON:-/usr/bin/python3}" "$top/bench/reprotect.py" --stop-at-ready

echo "== HeartBeat agent"
"${PYTHON:-/usr/bin/python3}" "$top/bench/heartbeat.py"

echo "== TLS on the COLO link (the same pair without and with tls-dir)"
"${PYTHON:-/usr/bin/python3}" "$top/bench/tls.py"

echo "== client: what the client feels, unprotected (with its twin) vs COLO vs upstream 10.0.13's COLO, one run"
echo "-- (the first run builds upstream's QEMU into build/upstream: bench/upstream-build.sh, about 10 minutes)"
"${PYTHON:-/usr/bin/python3}" "$top/bench/client.py"

echo "== client: spurious checkpoints (identical guests, IPv6 on)"
"${PYTHON:-/usr/bin/python3}" "$top/bench/spurious.py"

echo "== client: what an echo client waits for at each checkpoint (the guest rewriting 32 MiB)"
"${PYTHON:-/usr/bin/python3}" "$top/bench/hold.py"

echo "== client: bulk TCP (4 MiB fetches) unprotected vs COLO"
"${PYTHON:-/usr/bin/python3}" "$top/bench/bulk.py"

echo "== COLO on a shared disk against forwarded disks (the same pair, one run)"
"${PYTHON:-/usr/bin/python3}" "$top/bench/shared.py"
