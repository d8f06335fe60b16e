#!/usr/bin/env python3
"""Self-check of the COLO test guests and of lib/colo_vm.py.

Boots the Linux test guest (guest/build-guest.sh) and the boot-sector guest
(guest/build-bootsect.py) with the QEMU of this tree, and checks that they do
what the COLO tests rely on.  Prints one "ok - ..." / "not ok - ..." line per
check and the plan line "1..N" last; exits non-zero if any check failed.

Usage: test_guest_boot.py [--qemu BINARY] [--timeout SECONDS]
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))

from colo_vm import Vm, guest_files, DEFAULT_BINARY  # noqa: E402

failures = 0
checks = 0
# md5sum's answer, not the echo of the typed command line.
MD5_LINE = re.compile(r"([0-9a-f]{32})  /run/colo-dirty")


def check(desc, fn):
    """Run one check; fn returns an optional detail string or raises.
    Returns whether it passed."""
    global failures, checks
    checks += 1
    start = time.monotonic()
    try:
        detail = fn()
        if not isinstance(detail, str):
            detail = None
    except Exception as e:      # report and carry on with the next check
        failures += 1
        print("not ok - %s: %s: %s" % (desc, type(e).__name__, e), flush=True)
        return False
    took = time.monotonic() - start
    print("ok - %s (%.1fs%s)" % (desc, took, ", " + detail if detail else ""), flush=True)
    return True


def build_guests():
    subprocess.run([os.path.join(HERE, "guest", "build-guest.sh")], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, os.path.join(HERE, "guest", "build-bootsect.py")],
                   check=True, stdout=subprocess.DEVNULL)


def linux_guest(qemu, timeout):
    g = guest_files()
    vm = Vm(["-M", "pc", "-m", "256", "-kernel", g["vmlinuz"], "-initrd", g["initrd"],
             "-append", "console=ttyS0 colo.dirty=8", "-nic", "none"],
            binary=qemu, name="linux")
    if not check("linux guest: QEMU starts, QMP connects", vm.start):
        vm.shutdown()
        return
    with vm:
        def running():
            status = vm.cmd("query-status")["status"]
            if status != "running":
                raise AssertionError("status %s" % status)
        check("linux guest: QMP says running", running)

        boot = time.monotonic()

        def ready():
            vm.serial_wait("COLO-GUEST: dirtying 8 MiB", timeout)
            vm.serial_wait("COLO-GUEST: ready", timeout)
            return "boot to ready %.1fs" % (time.monotonic() - boot)
        if not check("linux guest: console shows 'COLO-GUEST: ready' (after 'dirtying 8 MiB')",
                     ready):
            return

        def typed_echo():
            # Wait for the shell prompt so that the line is not typed too early
            # (it would still work: the tty buffers it; waiting makes failures
            # easier to read).
            vm.serial_wait("# ", timeout)
            vm.serial_send("echo hello-$((6*7))")
            vm.serial_wait("hello-42", timeout)
        check("linux guest: typed 'echo hello-$((6*7))' prints hello-42", typed_echo)

        def dirtying():
            # The dirtier rewrites an 8 MiB tmpfs file with random bytes: its
            # size is 8 MiB and its checksum keeps changing.
            vm.serial_send("wc -c < /run/colo-dirty")
            vm.serial_wait("8388608", timeout)
            def md5():
                vm.serial_send("md5sum /run/colo-dirty")
                out = vm.serial_wait(MD5_LINE, timeout)
                return MD5_LINE.search(out).group(1)
            first = md5()
            # The dirtier runs niced: give it a few chances between our reads.
            tries = [0]

            def changed():
                tries[0] += 1
                return md5() != first
            vm.wait_for(changed, timeout, "/run/colo-dirty to change")
            return "content changed after %d md5sum(s)" % tries[0]
        check("linux guest: colo.dirty=8 keeps rewriting 8 MiB", dirtying)


def bootsect_guest(qemu, timeout):
    g = guest_files()
    vm = Vm(["-M", "pc", "-m", "128", "-nic", "none",
             "-drive", "file=%s,format=raw,snapshot=on" % g["bootsect"]],
            binary=qemu, name="bootsect")
    boot = time.monotonic()
    if not check("bootsect guest: QEMU starts, QMP connects", vm.start):
        vm.shutdown()
        return
    with vm:
        def started():
            vm.serial_wait("A", timeout)
            return "%.1fs after start" % (time.monotonic() - boot)
        check("bootsect guest: 'A' on serial (reached protected mode)", started)

        def markers():
            first = time.monotonic()
            vm.serial_wait("B", timeout)
            t1 = time.monotonic()
            for _ in range(10):
                vm.serial_wait("B", timeout)
            rate = 10 / max(time.monotonic() - t1, 1e-6)
            return "first B %.1fs, then about %.0f passes/s" % (t1 - first, rate)
        check("bootsect guest: 'B' markers keep coming (one per pass)", markers)

        def memory():
            # Pause, read the test byte of the first and last pages: all pages
            # hold the pass count (mod 256) or one less.
            vm.cmd("stop")
            first = vm.hmp("xp /1bx 0x100000")
            last = vm.hmp("xp /1bx 0x63ff000")
            vm.cmd("cont")
            a = int(first.split(":")[1], 16)
            b = int(last.split(":")[1], 16)
            if (a - b) % 256 not in (0, 1):
                raise AssertionError("first page %#x, last page %#x" % (a, b))
            return "first page %#x, last page %#x" % (a, b)
        check("bootsect guest: test bytes consistent across RAM", memory)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qemu", default=os.environ.get("QEMU_COLO_BINARY") or DEFAULT_BINARY)
    ap.add_argument("--timeout", type=float, default=180,
                    help="bound for each wait (TCG on a busy machine is slow)")
    args = ap.parse_args()

    if not os.access(args.qemu, os.X_OK):
        print("not ok - QEMU binary %s not found (build it first)" % args.qemu)
        print("1..1")
        return 1
    if check("build test guests (cached)", build_guests):
        linux_guest(args.qemu, args.timeout)
        bootsect_guest(args.qemu, args.timeout)
    print("%d check(s) failed" % failures if failures else "all checks passed")
    print("1..%d" % checks)     # the TAP plan, last
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
