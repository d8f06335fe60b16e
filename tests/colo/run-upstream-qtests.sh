#!/usr/bin/env bash
# Upstream's qtests for the filters our COLO proxy provides, unchanged:
# tests/qtest/test-filter-mirror and test-filter-redirector (TAP output).
# They create their unix sockets in the current directory: run them in a
# temporary one.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
obj="${QEMU_COLO_BUILD:-$top/build}/qemu"
export QTEST_QEMU_BINARY="${QTEST_QEMU_BINARY:-$obj/qemu-system-x86_64}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
rc=0
for t in test-filter-mirror test-filter-redirector; do
    echo "# $t"
    timeout --kill-after=5 120 "$obj/tests/qtest/$t" --tap ||
        { echo "not ok - $t exited with status $?"; rc=1; }
done
exit $rc
