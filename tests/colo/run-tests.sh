#!/usr/bin/env bash
# Run our test suites and print one closing line "N passed, N failed".
#
#   tests/colo/run-tests.sh              all suites
#   tests/colo/run-tests.sh unit qmp     only these suites
#
# Every suite prints TAP-style lines ("ok ..." / "not ok ..."); a suite that
# exits non-zero without reporting a failure counts as one failure (a crash).
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
OBJ="${QEMU_COLO_BUILD:-$top/build}/qemu"
PYTHON="${PYTHON:-/usr/bin/python3}"
export QTEST_QEMU_BINARY="$OBJ/qemu-system-x86_64"

# name | what to build first (ninja targets) | command
SUITES_TABLE=(
    "assembly||bash $top/tests/colo/test-assembly.sh"
    "unit|colo-unit-tests tests/unit/test-replication|bash $top/tests/colo/run-unit-tests.sh"
    "guest||$PYTHON $top/tests/colo/test_guest_boot.py"
    "qmp||$PYTHON $top/tests/colo/test_scaffold.py"
    "controller||$PYTHON $top/tests/colo/test_colo_controller.py"
    "tools||$PYTHON $top/tests/colo/test_colo_ctl.py"
    "disk||$PYTHON $top/tests/colo/test_disk_replication.py"
    "shared-disk|qemu-img|$PYTHON $top/tests/colo/test_shared_disk.py"
    "proxy||$PYTHON $top/tests/colo/test_colo_proxy.py"
    "proxy-asan||bash $top/tests/colo/run-asan-unit-tests.sh"
    "proxy-colo||$PYTHON $top/tests/colo/test_proxy_colo.py"
    "proxy-e2e||$PYTHON $top/tests/colo/test_proxy_e2e.py"
    "e2e|qemu-img|$PYTHON $top/tests/colo/e2e/test_e2e.py 1 2 3 4 5 6 7 8 9"
    "e2e-q35-ahci|qemu-img|$PYTHON $top/tests/colo/e2e/test_e2e.py --variant q35-ahci 1 2 3 4 7 8"
    "e2e-q35-virtio|qemu-img|$PYTHON $top/tests/colo/e2e/test_e2e.py --variant q35-virtio 1 3"
    "e2e-smp2|qemu-img|$PYTHON $top/tests/colo/e2e/test_e2e.py --variant smp2 1 2 3 4 7 8"
    "quiet-secondary|qemu-img|$PYTHON $top/tests/colo/e2e/test_quiet_secondary.py"
    "bulk|qemu-img|$PYTHON $top/tests/colo/e2e/test_bulk.py"
    "flush-order|qemu-img|$PYTHON $top/tests/colo/e2e/test_flush_order.py"
    "faults|qemu-img|$PYTHON $top/tests/colo/e2e/test_faults.py"
    "soak-short|qemu-img|$PYTHON $top/tests/colo/e2e/soak.py --short"
    "reprotect|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/e2e/test_reprotect.py config rounds"
    "connections|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/e2e/test_connections.py"
    "reprotect-shared|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/e2e/test_reprotect.py shared"
    "reprotect-interrupted|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/e2e/test_reprotect.py interrupted"
    "tls|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/e2e/test_tls.py"
    "heartbeat|qemu-img tools/colo/qemu-colo-agent|$PYTHON $top/tests/colo/e2e/test_heartbeat.py"
    "quorum|tools/colo/colo-quorum-probe|$PYTHON $top/tests/colo/test_quorum.py"
    "heartbeat-quorum|qemu-img tools/colo/qemu-colo-agent tools/colo/colo-quorum-probe|$PYTHON $top/tests/colo/e2e/test_heartbeat_quorum.py"
    "ocf|tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/test_ocf.py"
    "agent-stale|tools/colo/qemu-colo-agent|$PYTHON $top/tests/colo/test_agent_stale.py"
    "demo|qemu-img tools/colo/qemu-colo-ctl tools/colo/qemu-colo-agent|$PYTHON $top/tests/colo/e2e/demo.py"
    "install|qemu-img qemu-nbd tools/colo/qemu-colo-ctl tools/colo/qemu-colo-agent|$PYTHON $top/tests/colo/test_install.py"
    "libvirt|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/test_libvirt.py"
    "pacemaker|qemu-img tools/colo/qemu-colo-ctl|$PYTHON $top/tests/colo/test_pacemaker.py"
    "upstream-qtest|qemu-system-x86_64 tests/qtest/test-filter-mirror tests/qtest/test-filter-redirector|bash $top/tests/colo/run-upstream-qtests.sh"
)

wanted=("$@")
total_pass=0
total_fail=0
logdir="${QEMU_COLO_BUILD:-$top/build}/test-logs"
mkdir -p "$logdir"

for row in "${SUITES_TABLE[@]}"; do
    IFS='|' read -r name targets cmd <<<"$row"
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then
        continue
    fi
    echo "=== suite $name"
    rm -f "$logdir/$name.log"
    if [ -n "$targets" ] && ! ninja -C "$OBJ" $targets > "$logdir/$name.build.log" 2>&1; then
        tail -20 "$logdir/$name.build.log"
        echo "not ok - $name: building $targets failed"
        total_fail=$((total_fail + 1))
        continue
    fi
    # shellcheck disable=SC2086
    timeout --kill-after=10 1200 $cmd 2>&1 | tee "$logdir/$name.log"
    rc=${PIPESTATUS[0]}
    pass=$(grep -cE '^ok\b' "$logdir/$name.log")
    fail=$(grep -cE '^not ok\b' "$logdir/$name.log")
    if [ "$rc" != 0 ] && [ "$fail" = 0 ]; then
        echo "not ok - suite $name exited with status $rc"
        fail=1
    fi
    echo "=== suite $name: $pass passed, $fail failed"
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
done

if [ "$total_fail" != 0 ]; then
    # again at the end, where a log cut short keeps it
    echo "=== failed checks"
    for row in "${SUITES_TABLE[@]}"; do
        IFS='|' read -r name targets cmd <<<"$row"
        if [ -f "$logdir/$name.log" ] &&
           { [ ${#wanted[@]} -eq 0 ] || [[ " ${wanted[*]} " == *" $name "* ]]; }; then
            grep -E -A1 '^not ok\b' "$logdir/$name.log" | grep -v '^--$' |
                sed "s/^/$name: /"
        fi
    done
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
