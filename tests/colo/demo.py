#!/usr/bin/env python3
"""make demo: a COLO pair on this host with a small Linux guest.

What it shows, in order:
  1. a primary and a secondary QEMU start the same Linux guest image;
  2. the primary migrates to the secondary with x-colo: both enter COLO;
  3. a counter runs inside the guest; checkpoints keep the secondary a copy;
  4. the primary QEMU is killed (SIGKILL, as if its host died);
  5. failover: the secondary takes over from the last checkpoint and the
     guest's counter carries on from where the primary left it.

Until the HeartBeat agent lands, step 5 is the documented manual failover:
x-colo-lost-heartbeat on the secondary.  Network comparison is not part of
this demo yet (the guest has no NIC).
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_pair import (checkpoints, colo_status, linux_guest_args,  # noqa: E402
                       start_pair)
from colo_vm import guest_files, wait_for  # noqa: E402

START = time.monotonic()


def say(msg):
    print("[%6.1fs] %s" % (time.monotonic() - START, msg), flush=True)


def guest_args():
    g = guest_files()
    for f in ("vmlinuz", "initrd"):
        if not os.path.exists(g[f]):
            sys.exit("demo: no test guest in %s; run 'make guest'" % g[f])
    return linux_guest_args(256, "colo.dirty=8")


def read_counter(vm, tag):
    """Ask the guest shell for its counter; return it as an int."""
    vm.serial_send("echo %s=$(cat /run/counter)" % tag)
    # Up to the end of the line: the digits may arrive one by one.
    out = vm.serial_wait(re.compile(r"%s=(\d+)\r?\n" % tag), 60)
    return int(re.search(r"%s=(\d+)" % tag, out).group(1))


def main():
    say("starting the primary and the secondary (Linux guest, 256 MiB, TCG)")
    pri, sec = start_pair(guest_args(), delay_ms=2000)
    try:
        say("both sides are in COLO: primary mode=%s, secondary mode=%s"
            % (colo_status(pri)["mode"], colo_status(sec)["mode"]))
        pri.serial_wait("COLO-GUEST: ready", 120)
        say("guest is up; starting a counter inside it (+1 every 0.2 s)")
        pri.serial_send("i=0; while true; do i=$((i+1)); echo $i > /run/counter; "
                        "sleep 0.2; done &")
        first = read_counter(pri, "start")
        say("guest counter on the primary: %d" % first)

        for _ in range(4):
            n = checkpoints(pri)
            wait_for(lambda: checkpoints(pri) > n, 120, "the next checkpoint")
            st = colo_status(pri)
            say("checkpoint #%d done: guest paused %.1f ms (max %.1f ms), "
                "%.1f MiB of RAM sent so far"
                % (st["checkpoints"], st["last-pause-us"] / 1000.0,
                   st["max-pause-us"] / 1000.0, st["ram-bytes"] / 1048576.0))

        before = read_counter(pri, "before")
        n = checkpoints(pri)
        wait_for(lambda: checkpoints(pri) > n, 120, "one more checkpoint")
        say("guest counter on the primary: %d; killing the primary QEMU (SIGKILL)"
            % before)
        pri.kill(signal.SIGKILL)
        pri.wait_exit(30)
        say("primary is gone; the secondary stops its guest and waits for a decision")
        wait_for(lambda: colo_status(sec)["reason"] == "error", 60,
                 "the secondary to notice")
        say("operator failover: x-colo-lost-heartbeat on the secondary")
        sec.cmd("x-colo-lost-heartbeat")
        ev = sec.wait_event("COLO_EXIT", 60)
        say("secondary left COLO: %s; run state %s"
            % (ev["data"], sec.cmd("query-status")["status"]))
        sec.serial_mark()
        after = read_counter(sec, "after")
        later = read_counter(sec, "later")
        wait_for(lambda: read_counter(sec, "later") > later, 60,
                 "the counter to advance on the secondary")
        say("guest counter on the secondary: %d, still counting (primary had "
            "reached %d before the last checkpoint)" % (after, before))
        if after < before:
            say("FAILED: the secondary lost guest progress")
            return 1
        say("demo finished: the guest survived the death of its primary")
        return 0
    finally:
        for vm in (pri, sec):
            vm.shutdown()


if __name__ == "__main__":
    sys.exit(main())
