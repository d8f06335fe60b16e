#!/usr/bin/env bash
# Run every COLO unit test binary (tests/unit/colo/meson.build) with TAP output.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
dir="${QEMU_COLO_BUILD:-$top/build}/qemu/tests/unit/colo"
rc=0
for t in $(sed -n "s/^ *'\(test-[a-z0-9-]*\)':.*/\1/p" "$top/tests/unit/colo/meson.build"); do
    echo "# $t"
    "$dir/$t" --tap || { echo "not ok - $t exited with status $?"; rc=1; }
done
# Upstream's tests/unit/test-replication.c, unchanged, against our driver.
echo "# test-replication (upstream)"
"$dir/../test-replication" --tap ||
    { echo "not ok - test-replication exited with status $?"; rc=1; }
exit $rc
