#!/usr/bin/env python3
"""COLO on one shared disk image (block/shared-undo.c) with the controller:
two QEMUs on one shared raw image and one undo image (plain files both see),
the primary SIGKILLed at each crash point of a checkpoint (held there by the
fault injection points), failover to the secondary, and the shared image
compared block by block with a model: the primary's disk as of the
checkpoint the secondary resumed from, plus the secondary's own writes.

Writes are made with qemu-io over HMP while both COLO threads are held
after a checkpoint (the primary's guest runs, no checkpoint can start), so
each write belongs to a known epoch.  The boot-sector guest does not touch
the shared disk.
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_fault import FaultPoints  # noqa: E402
from colo_pair import bootsect_guest_args, colo_status, start_pair  # noqa: E402
from colo_vm import DEFAULT_BINARY  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()
DISK = 4 << 20
GRAN = 64 << 10
UNDO = GRAN + DISK      # records (4096 + 16 * 64) round up to one region
BLOCK = 4096
QEMU_IMG = os.path.join(os.path.dirname(os.environ.get("QEMU_COLO_BINARY")
                                        or DEFAULT_BINARY), "qemu-img")


def shared_args(d, mode):
    """The disk nodes, without a guest device (the guest never touches
    them), without the page cache as across hosts (O_DIRECT: the 16-byte
    records are written read-modify-write).  The top node hangs on a -drive BlockBackend: an incoming QEMU
    activates the nodes below BlockBackends at the end of migration, not
    -blockdev nodes without one."""
    node = ("driver=shared-undo,node-name=colo-disk0,mode=%s,granularity=%d,"
            % (mode, GRAN))
    if mode == "primary":
        return ["-drive", "if=none,id=pdisk," + node +
                "file.driver=file,file.filename=%s/shared.raw,file.cache.direct=on,"
                "undo.driver=file,undo.filename=%s/undo.raw,undo.cache.direct=on"
                % (d, d)]
    return ["-blockdev", "driver=file,node-name=shared0,filename=%s/shared.raw,"
            "cache.direct=on" % d,
            "-blockdev", "driver=file,node-name=undo0,filename=%s/undo.raw,"
            "cache.direct=on" % d,
            "-blockdev", node + "file=shared0,undo=undo0",
            "-drive", "if=none,id=sdisk,driver=qcow2,node-name=active0,"
            "file.driver=file,file.filename=%s/active.qcow2,backing=colo-disk0" % d]


class Model:
    def __init__(self, rng):
        self.rng = rng
        self.shared = bytearray(DISK)   # what the primary wrote
        self.sec = bytearray(DISK)      # what the secondary must see
        self.ckpt = bytearray(DISK)     # shared at the secondary's checkpoint

    def applied(self):
        self.ckpt[:] = self.shared
        self.sec[:] = self.shared

    def write(self, vm, node, image):
        off = self.rng.randrange(0, DISK // 512 - 128) * 512
        length = self.rng.randrange(1, 129) * 512
        pattern = self.rng.randrange(1, 256)
        # HMP's qemu-io prints on QEMU's stderr, not in the reply.
        done = "wrote %d/%d bytes at offset %d" % (length, length, off)
        before = vm.qemu_log().count(done)
        vm.hmp('qemu-io %s "write -P %d %d %d"' % (node, pattern, off, length))
        assert vm.qemu_log().count(done) == before + 1, vm.qemu_log()[-2000:]
        image[off:off + length] = bytes([pattern]) * length


def compare(path, model, what):
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == DISK, (what, len(data))
    for b in range(DISK // BLOCK):
        if data[b * BLOCK:(b + 1) * BLOCK] != model[b * BLOCK:(b + 1) * BLOCK]:
            raise AssertionError("%s differs from its model at block %d (offset %d)"
                                 % (what, b, b * BLOCK))


# Where the primary dies, which checkpoint the secondary then resumes from
# ("new": the one under way; "old": the one before), and what the secondary
# must be held at for that to be certain.
CRASHES = {
    "after-stop": ("old", None),
    "before-received": ("new", "before-received"),
    "after-compares-told": ("new", None),   # RECEIVED in, not yet emptied
    "before-loaded": ("new", None),         # emptied, guest running
}


def hold(pri_points, pri_at, sec_points, sec_at, timeout=120):
    """Serve both QEMUs' fault points until the primary stands at pri_at
    and, unless sec_at is None, the secondary at sec_at (each (point,
    min_seq)); every other point goes on at once.  Returns the primary's
    (mode, point, seq)."""
    deadline = time.monotonic() + timeout
    pri_hit = sec_hit = None
    while pri_hit is None or (sec_at and sec_hit is None):
        if time.monotonic() > deadline:
            raise TimeoutError("fault points %r / %r not reached" % (pri_at, sec_at))
        for side in ("p", "s"):
            pts, at, hit = ((pri_points, pri_at, pri_hit) if side == "p"
                            else (sec_points, sec_at or ("-", 0), sec_hit))
            if hit:
                continue
            try:
                hit = pts.wait(at[0], timeout=0.05, min_seq=at[1])
            except TimeoutError:
                continue
            if side == "p":
                pri_hit = hit
            else:
                sec_hit = hit
    return pri_hit


def case_crash(point, seed):
    resumes, sec_hold = CRASHES[point]
    d = tempfile.mkdtemp(prefix="colo-shared-")
    pri_points, sec_points = FaultPoints(), FaultPoints()
    pri = sec = None
    rng = random.Random(seed)
    m = Model(rng)
    try:
        with open(os.path.join(d, "shared.raw"), "wb") as f:
            m.shared[:] = bytes(rng.randrange(256) for _ in range(256)) * (DISK // 256)
            f.write(m.shared)
        with open(os.path.join(d, "undo.raw"), "wb") as f:
            f.truncate(UNDO)
        subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2",
                        os.path.join(d, "active.qcow2"), str(DISK)], check=True)
        pri, sec = start_pair(bootsect_guest_args(128),
                              primary_extra=shared_args(d, "primary"),
                              secondary_extra=shared_args(d, "secondary"),
                              primary_env=pri_points.env(), secondary_env=sec_points.env())
        m.applied()

        # Rounds: both held after a checkpoint, writes on both sides.
        seq = 0
        for _ in range(2):
            seq = hold(pri_points, ("before-loaded", seq + 1),
                       sec_points, ("before-loaded", seq + 1))[2]
            m.applied()
            for _ in range(6):
                m.write(pri, "colo-disk0", m.shared)
                m.write(sec, "active0", m.sec)
            pri_points.release()
            sec_points.release()

        # The next checkpoint, cut short at @point.
        hold(pri_points, (point, seq + 1), sec_points,
             (sec_hold, seq + 1) if sec_hold else None)
        if resumes == "new":
            m.applied()
        if point == "before-loaded":
            # Emptied and running: these writes must be undone.
            for _ in range(4):
                m.write(pri, "colo-disk0", m.shared)
        pri.kill(signal.SIGKILL)
        pri.wait_exit(30)
        sec_points.close()
        sec.cmd("x-colo-lost-heartbeat")
        ev = sec.wait_event("COLO_EXIT", 60)
        assert ev["data"]["mode"] == "secondary", ev
        st = colo_status(sec)
        assert st["mode"] == "none", st
        compare(os.path.join(d, "shared.raw"), m.sec,
                "shared image after failover at %s" % point)
        # The survivor's disk is the shared image now.
        m.write(sec, "colo-disk0", m.sec)
        compare(os.path.join(d, "shared.raw"), m.sec, "shared image after a write")
    finally:
        pri_points.close()
        sec_points.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()
        shutil.rmtree(d, ignore_errors=True)


def main():
    for seed, point in enumerate(CRASHES):
        t.check("shared disk: primary SIGKILLed at %s; the shared image is the "
                "secondary's checkpoint plus its own writes" % point,
                case_crash, point, seed)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
