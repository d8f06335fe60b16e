#!/usr/bin/env python3
"""colo-compare with the real COLO controller: a COLO pair (the boot-sector
guest), a colo-compare on the primary whose chardevs are test sockets.

- a mismatch makes the compare ask the controller for a checkpoint through
  its notifier; the checkpoint flushes the compare (the held primary packet
  goes out on outdev, the secondary's is dropped);
- after failover (x-colo-lost-heartbeat on the primary) the compare passes
  primary packets straight through.

x-checkpoint-delay is large, so a checkpoint that happens was asked for.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_fault import FaultPoints  # noqa: E402
from colo_pair import bootsect_guest_args, checkpoints, start_pair  # noqa: E402
from tap import Tap  # noqa: E402
from compare_rig import Compare  # noqa: E402
from frames import tcp, udp  # noqa: E402

t = Tap()


def compare_timeout_is_counted_as_timeout():
    """Output only the primary produced waits compare_timeout, then the
    controller checkpoints and counts it as a timeout checkpoint."""
    pri, sec = start_pair(bootsect_guest_args(), delay_ms=600000)
    c = None
    try:
        pri.cmd("object-add", **{"qom-type": "iothread", "id": "iot0"})
        c = Compare(pri, "cmp0", notify=False, compare_timeout=200,
                    expired_scan_cycle=50)
        before = checkpoints(pri)
        c.primary(udp(b"nobody answers this"))
        pri.wait_for(lambda: checkpoints(pri) > before, 120,
                     "a checkpoint after compare_timeout")
        st = pri.cmd("query-colo-status")
        assert st["checkpoints-timeout"] == 1 and st["checkpoints-mismatch"] == 0, st
    finally:
        if c:
            c.close()
        for vm in (pri, sec):
            vm.shutdown()


def compare_drives_checkpoints_and_failover():
    pri, sec = start_pair(bootsect_guest_args(), delay_ms=600000)
    c = None
    try:
        pri.cmd("object-add", **{"qom-type": "iothread", "id": "iot0"})
        c = Compare(pri, "cmp0", notify=False)
        before = checkpoints(pri)
        held = tcp(100, b"primary says this")
        c.primary(held)
        c.secondary(tcp(100, b"secondary says that"))
        c.wait_stat("mismatches-tcp", 1)
        # the controller checkpoints; the checkpoint flushes the compare
        assert c.out() == held
        pri.wait_for(lambda: checkpoints(pri) > before, 120,
                     "a checkpoint asked for by colo-compare")
        c.wait_stat("flushes", 1)
        assert c.stat("queue-depth-secondary") == 0
        assert c.stat("checkpoint-requests") == 1
        st = pri.cmd("query-colo-status")
        assert st["checkpoints-mismatch"] == 1 and st["checkpoints-timeout"] == 0, st
        # matching traffic needs no checkpoint
        n = checkpoints(pri)
        c.primary(udp(b"same"))
        c.secondary(udp(b"same"))
        assert c.out() == udp(b"same")
        assert checkpoints(pri) == n
        # failover on the primary: from now on, straight through
        pri.cmd("x-colo-lost-heartbeat")
        pri.wait_for(lambda: pri.cmd("query-colo-status")["mode"] == "none", 60,
                     "the primary to leave COLO")
        c.wait_stat("flushes", 2)
        c.primary(udp(b"alone now"))
        assert c.out() == udp(b"alone now")
        # the stats are published after the frame is written: wait for them
        c.wait_stat("passed-through", 1)
        assert c.stat("passed-through") == 1
    finally:
        if c:
            c.close()
        for vm in (pri, sec):
            vm.shutdown()


def output_released_only_after_received():
    """Output commit: what a compare holds at a checkpoint leaves only once
    the secondary has the whole checkpoint (RECEIVED).  The primary's COLO
    thread is held where it waits for RECEIVED (device state sent): the
    compare must not have released the held packet yet, in any wiring."""
    points = FaultPoints()
    pri = sec = c = None
    try:
        pri, sec = start_pair(bootsect_guest_args(), delay_ms=600000,
                              primary_env=points.env("before-received"))
        pri.cmd("object-add", **{"qom-type": "iothread", "id": "iot0"})
        c = Compare(pri, "cmp0", notify=False)
        held = udp(b"only the primary said this")
        c.primary(held)
        c.wait_stat("primary-packets", 1)
        before = checkpoints(pri)
        # changing x-checkpoint-delay checkpoints now (trigger "forced")
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600001})
        points.wait("before-received", mode="primary")
        flushes = c.stat("flushes")
        leaked = c.peers["out"].pending()
        assert flushes == 0 and not leaked, \
            "the compare released output before RECEIVED (flushes %d, %d bytes " \
            "on outdev)" % (flushes, leaked)
        points.release()
        assert c.out() == held
        pri.wait_for(lambda: checkpoints(pri) > before, 120, "the checkpoint to end")
    finally:
        points.close()
        if c:
            c.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


def primary_waits_holds_output_until_decided():
    """x-colo-primary-waits (a cluster manager decides): the secondary dies;
    the primary stops its guest and holds the compare's output (the
    secondary might yet be chosen, and it never saw that output) until
    x-colo-lost-heartbeat says this primary goes on; then it is released."""
    pri, sec = start_pair(bootsect_guest_args(), delay_ms=600000,
                          primary_extra=["-global", "migration.x-colo-primary-waits=on"])
    c = None
    try:
        pri.cmd("object-add", **{"qom-type": "iothread", "id": "iot0"})
        c = Compare(pri, "cmp0", notify=False, compare_timeout=600000)
        held = udp(b"the secondary never saw this")
        c.primary(held)
        c.wait_stat("primary-packets", 1)
        sec.kill(signal.SIGKILL)
        # An idle primary notices at its next checkpoint: ask for one now.
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600001})
        ev = pri.wait_event("COLO_LINK_LOST", 60)
        assert ev["data"]["mode"] == "primary", ev
        pri.wait_for(lambda: pri.cmd("query-status")["status"] == "colo", 60,
                     "the primary's guest to stop")
        st = pri.cmd("query-colo-status")
        assert (st["mode"], st["reason"]) == ("primary", "error"), st
        assert c.stat("flushes") == 0 and not c.peers["out"].pending(), \
            "output released before the decision"
        pri.cmd("x-colo-lost-heartbeat")
        ev = pri.wait_event("COLO_EXIT", 60)
        assert ev["data"] == {"mode": "primary", "reason": "request"}, ev
        assert c.out() == held
        pri.wait_for(lambda: pri.cmd("query-status")["status"] == "running", 60,
                     "the primary's guest to run on")
    finally:
        if c:
            c.close()
        for vm in (pri, sec):
            vm.shutdown()


def two_compares_one_deleted_then_checkpoint_and_failover():
    """Two compares (two NICs); one is deleted while COLO runs; checkpoints
    and failover afterwards reach the other and nothing crashes."""
    pri, sec = start_pair(bootsect_guest_args(), delay_ms=600000)
    a = b = None
    try:
        pri.cmd("object-add", **{"qom-type": "iothread", "id": "iot0"})
        pri.cmd("object-add", **{"qom-type": "iothread", "id": "iot1"})
        a = Compare(pri, "cmp-a", notify=False)
        b = Compare(pri, "cmp-b", notify=False, iothread="iot1")
        a.primary(udp(b"held by a"))
        a.wait_stat("primary-packets", 1)
        pri.cmd("object-del", id="cmp-a")
        before = checkpoints(pri)
        b.primary(udp(b"b says this"))
        b.secondary(udp(b"b says that"))
        assert b.out() == udp(b"b says this")
        pri.wait_for(lambda: checkpoints(pri) > before, 120,
                     "a checkpoint asked for by cmp-b")
        pri.cmd("x-colo-lost-heartbeat")
        pri.wait_for(lambda: pri.cmd("query-colo-status")["mode"] == "none", 60,
                     "the primary to leave COLO")
        b.primary(udp(b"alone"))
        assert b.out() == udp(b"alone")
        assert pri.cmd("query-status")["status"] == "running"
    finally:
        for c in (a, b):
            if c:
                c.close()
        for vm in (pri, sec):
            vm.shutdown()


def main():
    t.check("proxy+controller: a compare timeout is counted as a timeout checkpoint",
            compare_timeout_is_counted_as_timeout)
    t.check("proxy+controller: a mismatch triggers a checkpoint that flushes the "
            "compare; after failover packets pass straight through",
            compare_drives_checkpoints_and_failover)
    t.check("proxy+controller: output commit: a held packet leaves only after the "
            "secondary acknowledged the checkpoint (RECEIVED)",
            output_released_only_after_received)
    t.check("proxy+controller: x-colo-primary-waits: the secondary dies, the primary "
            "holds its output until x-colo-lost-heartbeat",
            primary_waits_holds_output_until_decided)
    t.check("proxy+controller: two compares, one deleted during COLO; checkpoint "
            "and failover afterwards", two_compares_one_deleted_then_checkpoint_and_failover)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
