#!/usr/bin/env bash
# make check-kvm: the COLO suites again with -accel kvm on both sides, where
# /dev/kvm is usable.  Elsewhere every case is reported skipped, with the
# reason, and nothing counts as passed.  Closing line "N passed, N failed,
# N skipped".
#
# Cases (each a test of a suite, run with QEMU_COLO_ACCEL=kvm so that every
# QEMU the tests start gets -accel kvm):
#   controller  checkpoints and statistics, replica fidelity with the
#               lazy-secondary detector (KVM's dirty log on both sides),
#               q35 and -smp 2, failover matrix, primary killed
#   kvm-only    the dirty ring refused with a clear error
#   e2e         kill -9 of the primary, the client's connection survives
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
PYTHON="${PYTHON:-/usr/bin/python3}"
QEMU="${QEMU_COLO_BINARY:-$top/build/qemu/qemu-system-x86_64}"

CASES=(
    "controller|pair enters COLO"
    "controller|lazy-secondary"
    "controller|q35"
    "controller|-smp 2"
    "controller|plain: failover matrix"
    "controller|primary SIGKILLed during a checkpoint"
    "dirty-ring|"
    "e2e|"
)

# Usable: opens read-write and answers KVM_GET_API_VERSION (12).
why_not=$("$PYTHON" - <<'PY'
import fcntl, os
try:
    fd = os.open("/dev/kvm", os.O_RDWR)
except OSError as e:
    print("no usable /dev/kvm (%s)" % e.strerror)
else:
    v = fcntl.ioctl(fd, 0xAE00)
    print("" if v == 12 else "/dev/kvm answers API version %d, not 12" % v)
PY
)
if [ -z "$why_not" ] && ! "$QEMU" -accel help 2>/dev/null | grep -qx kvm; then
    why_not="$QEMU was built without KVM"
fi

if [ -n "$why_not" ]; then
    for c in "${CASES[@]}"; do
        echo "ok - kvm: ${c//|/: } # SKIP $why_not"
    done
    echo "skipped: $why_not"
    echo "0 passed, 0 failed, ${#CASES[@]} skipped"
    exit 0
fi

export QEMU_COLO_ACCEL=kvm
pass=0 fail=0
tally() {
    local out=$1
    pass=$((pass + $(grep -c '^ok ' <<<"$out")))
    fail=$((fail + $(grep -c '^not ok ' <<<"$out")))
}
for c in "${CASES[@]}"; do
    IFS='|' read -r suite only <<<"$c"
    case "$suite" in
    controller)
        out=$(COLO_TEST_ONLY="$only" timeout 1200 "$PYTHON" \
              "$top/tests/colo/test_colo_controller.py" 2>&1) ;;
    e2e)
        out=$(timeout 1200 "$PYTHON" "$top/tests/colo/e2e/test_e2e.py" 1 2>&1) ;;
    dirty-ring)
        # COLO with the dirty ring on the secondary is refused, naming it.
        out=$(QEMU_COLO_ACCEL= timeout 300 "$PYTHON" - "$top" 2>&1 <<'PY'
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "colo", "lib"))
from colo_pair import CAPS, bootsect_guest_args
from colo_vm import Vm
pri = Vm(bootsect_guest_args() + ["-accel", "kvm"], name="primary")
sec = Vm(bootsect_guest_args() + ["-accel", "kvm,dirty-ring-size=4096", "-incoming",
                                  "defer"], name="secondary")
try:
    for vm in (pri, sec):
        vm.start()
        vm.cmd("migrate-set-capabilities", capabilities=CAPS)
    sec.cmd("migrate-incoming", uri="unix:" + sec.path("m.sock"))
    pri.cmd("migrate", uri="unix:" + sec.path("m.sock"))
    st = pri.wait_for(lambda: pri.cmd("query-migrate").get("status") in
                      ("failed", "colo") and pri.cmd("query-migrate")["status"], 120,
                      "the migration to fail or enter COLO")
    log = sec.qemu_log()
    ok = st == "failed" and "dirty ring" in log
    print("%s - kvm: COLO refuses the KVM dirty ring with a clear error%s"
          % ("ok" if ok else "not ok", "" if ok else ": %s %s" % (st, log[-600:])))
finally:
    for vm in (pri, sec):
        vm.shutdown()
PY
) ;;
    esac
    echo "$out"
    tally "$out"
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
