#!/usr/bin/env python3
"""Disk replication through QMP, with two QEMU processes and a real NBD link.

The secondary QEMU holds the documented chain (quorum -> replication in
secondary mode -> active -> hidden -> secondary disk) and exports the
secondary disk over NBD; the primary QEMU holds a quorum of its own disk and
a replication node in primary mode over an NBD client to that export.  No
guest runs: "guest" I/O is done with HMP qemu-io on the quorum nodes, and the
replication framework is driven by the xen-* QMP commands (they call it
directly), so this does not depend on the checkpoint controller.

Checked: what the secondary "VM" reads before and after a checkpoint, the
disk content after a secondary failover (through QEMU and in the image file),
and on the primary: the secondary dies, guest writes still succeed, the error
is reported, failover, x-blockdev-change removes the child.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_vm import Vm  # noqa: E402
from colo_pair import CAPS, bootsect_guest_args, colo_status, checkpoints  # noqa: E402
from tap import Tap, expect_error  # noqa: E402

MiB = 1 << 20
SIZE = 8 * MiB

t = Tap()


def tool(vm, name):
    return os.path.join(os.path.dirname(os.path.abspath(vm.binary)), name)


def qemu_img(vm, *args):
    subprocess.run([tool(vm, "qemu-img")] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


def qemu_io_file(vm, path, command):
    """Run one qemu-io command (HMP, in @vm) on a raw image file."""
    vm.cmd("blockdev-add", driver="raw", **{"node-name": "io-tmp", "file": {
        "driver": "file", "filename": path}})
    try:
        vm.hmp('qemu-io io-tmp "%s"' % command)
    finally:
        vm.cmd("blockdev-del", **{"node-name": "io-tmp"})


def hmp_io(vm, node, command):
    """qemu-io in @vm (its output goes to QEMU's stdout: reads check data
    through NBD instead, see Reader)."""
    vm.hmp('qemu-io %s "%s"' % (node, command))


class Reader:
    """Reads a node's whole content through a read-only NBD export of it."""

    def __init__(self, vm, node):
        self.vm, self.node = vm, node
        sock = vm.path("nbd.sock")
        if not os.path.exists(sock):
            vm.cmd("nbd-server-start", addr={"type": "unix", "data": {"path": sock}})
        vm.cmd("block-export-add", type="nbd", id="read-" + node,
               **{"node-name": node, "writable": False})
        self.uri = "nbd+unix:///%s?socket=%s" % (node, sock)

    def __call__(self):
        out = self.vm.path("read-%s.raw" % self.node)
        qemu_img(self.vm, "convert", "-f", "raw", "-O", "raw", self.uri, out)
        with open(out, "rb") as f:
            data = f.read()
        os.unlink(out)
        return data


def read_file(vm, path):
    with open(path, "rb") as f:
        return f.read()


def expect_patterns(data, where, expected):
    """@expected: (byte, offset, length) triples that @data must hold."""
    for pattern, offset, length in expected:
        chunk = data[offset:offset + length]
        if chunk != bytes([pattern]) * length:
            bad = next(i for i, b in enumerate(chunk) if b != pattern) \
                if len(chunk) == length else 0
            raise AssertionError("%s: [%d, +%d) should be 0x%02x, differs at %d"
                                 % (where, offset, length, pattern, offset + bad))


def start_vm(name):
    vm = Vm(["-M", "pc", "-m", "64", "-nic", "none"], name=name, start_paused=True)
    vm.start()
    return vm


def secondary_setup(sec, filler=None):
    """@filler: the VM that writes the initial content of the secondary
    disk (a QEMU waiting for an incoming migration cannot write)."""
    for img in ("active", "hidden"):
        qemu_img(sec, "create", "-q", "-f", "qcow2", sec.path(img + ".qcow2"), str(SIZE))
    disk = sec.path("secondary.raw")
    qemu_img(sec, "create", "-q", "-f", "raw", disk, str(SIZE))
    qemu_io_file(filler or sec, disk, "write -P 0x11 0 %d" % SIZE)
    sec.cmd("blockdev-add", driver="raw", **{"node-name": "sec0", "file": {
        "driver": "file", "filename": disk}})
    sec.cmd("nbd-server-start", addr={"type": "unix", "data": {"path": sec.path("nbd.sock")}})
    # The export's name defaults to the node name (Vm.cmd takes no "name").
    sec.cmd("block-export-add", type="nbd", id="exp0", **{
        "node-name": "sec0", "writable": True})
    sec.cmd("blockdev-add", driver="replication", mode="secondary", **{
        "node-name": "rep1", "top-id": "top1",
        "file": {"driver": "qcow2",
                 "file": {"driver": "file", "filename": sec.path("active.qcow2")},
                 "backing": {"driver": "qcow2", "backing": "sec0",
                             "file": {"driver": "file",
                                      "filename": sec.path("hidden.qcow2")}}}})
    sec.cmd("blockdev-add", driver="quorum", **{
        "node-name": "top1", "vote-threshold": 1, "read-pattern": "fifo",
        "children": ["rep1"]})


def primary_setup(pri, sec):
    disk = pri.path("primary.raw")
    qemu_img(pri, "create", "-q", "-f", "raw", disk, str(SIZE))
    qemu_io_file(pri, disk, "write -P 0x11 0 %d" % SIZE)
    pri.cmd("blockdev-add", driver="raw", **{"node-name": "local0", "file": {
        "driver": "file", "filename": disk}})
    pri.cmd("blockdev-add", driver="quorum", **{
        "node-name": "top0", "vote-threshold": 1, "read-pattern": "fifo",
        "children": ["local0"]})
    pri.cmd("blockdev-add", driver="replication", mode="primary", **{
        "node-name": "rep0",
        "file": {"driver": "nbd", "export": "sec0",
                 "server": {"type": "unix", "path": sec.path("nbd.sock")}}})
    pri.cmd("x-blockdev-change", parent="top0", node="rep0")


def replication_status(vm):
    return vm.cmd("query-xen-replication-status")


def secondary_failover_and_primary_alone():
    pri = sec = None
    try:
        sec = start_vm("secondary")
        pri = start_vm("primary")
        secondary_setup(sec)
        primary_setup(pri, sec)
        sec.cmd("xen-set-replication", enable=True, primary=False)
        pri.cmd("xen-set-replication", enable=True, primary=True)

        sec_view = Reader(sec, "top1")
        pri_view = Reader(pri, "top0")

        # Epoch 1: the primary writes [0, 1M), the secondary VM [1M, 2M).
        hmp_io(pri, "top0", "write -P 0x22 0 %d" % MiB)
        hmp_io(sec, "top1", "write -P 0x33 %d %d" % (MiB, MiB))
        expect_patterns(sec_view(), "secondary VM before checkpoint",
                        [(0x11, 0, MiB), (0x33, MiB, MiB), (0x11, 2 * MiB, SIZE - 2 * MiB)])
        expect_patterns(pri_view(), "primary", [(0x22, 0, MiB), (0x11, MiB, SIZE - MiB)])
        # The primary's write reached the secondary disk over NBD.
        expect_patterns(read_file(sec, sec.path("secondary.raw")), "secondary disk",
                        [(0x22, 0, MiB)])

        # Checkpoint: the secondary VM now sees the primary's disk.
        sec.cmd("xen-colo-do-checkpoint")
        pri.cmd("xen-colo-do-checkpoint")
        assert not replication_status(pri)["error"], replication_status(pri)
        expect_patterns(sec_view(), "secondary VM after checkpoint",
                        [(0x22, 0, MiB), (0x11, MiB, SIZE - MiB)])

        # Epoch 2, then the primary "dies": its writes since are rolled back.
        hmp_io(pri, "top0", "write -P 0x44 %d %d" % (2 * MiB, MiB))
        hmp_io(sec, "top1", "write -P 0x55 %d %d" % (3 * MiB, MiB))
        expect_patterns(sec_view(), "secondary VM in epoch 2",
                        [(0x22, 0, MiB), (0x11, MiB, 2 * MiB), (0x55, 3 * MiB, MiB)])
        sec.cmd("xen-set-replication", enable=False, primary=False, failover=True)
        assert not replication_status(sec)["error"], replication_status(sec)
        survivor = [(0x22, 0, MiB), (0x11, MiB, 2 * MiB), (0x55, 3 * MiB, MiB),
                    (0x11, 4 * MiB, SIZE - 4 * MiB)]
        expect_patterns(sec_view(), "survivor after failover", survivor)
        # Committed: the secondary disk file itself holds it.
        expect_patterns(read_file(sec, sec.path("secondary.raw")),
                        "secondary disk file after failover", survivor)
        hmp_io(sec, "top1", "write -P 0x66 %d %d" % (5 * MiB, MiB))
        expect_patterns(sec_view(), "survivor writing after failover",
                        survivor[:3] + [(0x11, 4 * MiB, MiB), (0x66, 5 * MiB, MiB)])

        # The secondary's host goes away; the primary carries on alone.
        sec.kill()
        sec.wait_exit(30)
        hmp_io(pri, "top0", "write -P 0x77 %d %d" % (6 * MiB, MiB))
        status = replication_status(pri)
        assert status["error"], status
        assert "writing to the secondary disk through node 'rep0' failed" in \
            status["desc"], status
        expect_error(lambda: pri.cmd("xen-colo-do-checkpoint"),
                     "writing to the secondary disk through node 'rep0' failed")
        pri.cmd("xen-set-replication", enable=False, primary=True, failover=True)
        pri.cmd("x-blockdev-change", parent="top0", child="children.1")
        pri.cmd("blockdev-del", **{"node-name": "rep0"})
        hmp_io(pri, "top0", "write -P 0x88 %d %d" % (7 * MiB, MiB))
        expect_patterns(pri_view(), "primary alone",
                        [(0x22, 0, MiB), (0x11, MiB, MiB), (0x44, 2 * MiB, MiB),
                         (0x11, 3 * MiB, 3 * MiB), (0x77, 6 * MiB, MiB),
                         (0x88, 7 * MiB, MiB)])
    finally:
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


def secondary_start_refused_without_top():
    """start in secondary mode checks top-id against the graph."""
    sec = start_vm("secondary")
    try:
        for img in ("active", "hidden"):
            qemu_img(sec, "create", "-q", "-f", "qcow2", sec.path(img + ".qcow2"),
                     str(SIZE))
        qemu_img(sec, "create", "-q", "-f", "raw", sec.path("secondary.raw"), str(SIZE))
        sec.cmd("blockdev-add", driver="raw", **{"node-name": "sec0", "file": {
            "driver": "file", "filename": sec.path("secondary.raw")}})
        sec.cmd("blockdev-add", driver="replication", mode="secondary", **{
            "node-name": "rep1", "top-id": "top-missing",
            "file": {"driver": "qcow2",
                     "file": {"driver": "file", "filename": sec.path("active.qcow2")},
                     "backing": {"driver": "qcow2", "backing": "sec0",
                                 "file": {"driver": "file",
                                          "filename": sec.path("hidden.qcow2")}}}})
        expect_error(lambda: sec.cmd("xen-set-replication", enable=True, primary=False),
                     "top-id 'top-missing' does not name a block device or node")
        expect_error(lambda: sec.cmd("xen-colo-do-checkpoint"), "is not replicating")
        sec.cmd("blockdev-del", **{"node-name": "rep1"})
        sec.cmd("blockdev-del", **{"node-name": "sec0"})
    finally:
        sec.shutdown()


def with_colo_controller():
    """The real thing: a COLO pair (boot-sector guest, periodic checkpoints by
    the controller) with the documented disk setup; "guest" disk writes are
    qemu-io on the quorum nodes.  The secondary's view follows the primary's
    disk at each checkpoint; after the primary dies and the secondary fails
    over, its disk file holds the last checkpoint plus its own writes."""
    pri = sec = None
    try:
        pri = Vm(bootsect_guest_args(), name="primary")
        sec = Vm(bootsect_guest_args() + ["-incoming", "defer"], name="secondary")
        pri.start()
        sec.start()
        secondary_setup(sec, filler=pri)
        primary_setup(pri, sec)
        for vm in (pri, sec):
            vm.cmd("migrate-set-capabilities", capabilities=CAPS)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 300,
                                             "max-bandwidth": 8 << 30,
                                             "downtime-limit": 2000})
        sec_path = sec.path("migrate.sock")
        sec.cmd("migrate-incoming", uri="unix:" + sec_path)
        pri.cmd("migrate", uri="unix:" + sec_path)
        sec.wait_for(lambda: colo_status(sec)["mode"] == "secondary", 180,
                     "secondary in COLO mode")
        pri.wait_for(lambda: colo_status(pri)["mode"] == "primary", 180,
                     "primary in COLO mode")
        sec_view = Reader(sec, "top1")

        hmp_io(pri, "top0", "write -P 0x22 0 %d" % MiB)
        n = checkpoints(pri)
        pri.wait_for(lambda: checkpoints(pri) >= n + 2, 120, "2 more checkpoints")
        expect_patterns(sec_view(), "secondary after checkpoints",
                        [(0x22, 0, MiB), (0x11, MiB, SIZE - MiB)])
        assert not replication_status(pri)["error"], replication_status(pri)

        # The secondary's own write lives until the next checkpoint only.
        hmp_io(sec, "top1", "write -P 0x33 %d %d" % (MiB, MiB))
        n = checkpoints(pri)
        pri.wait_for(lambda: checkpoints(pri) >= n + 2, 120, "2 more checkpoints")
        expect_patterns(sec_view(), "secondary after its write was checkpointed away",
                        [(0x22, 0, MiB), (0x11, MiB, SIZE - MiB)])

        # Last checkpoint, then the primary dies; the secondary takes over.
        hmp_io(pri, "top0", "write -P 0x44 %d %d" % (2 * MiB, MiB))
        n = checkpoints(pri)
        pri.wait_for(lambda: checkpoints(pri) >= n + 2, 120, "2 more checkpoints")
        pri.kill()
        pri.wait_exit(30)
        hmp_io(sec, "top1", "write -P 0x55 %d %d" % (3 * MiB, MiB))
        sec.cmd("x-colo-lost-heartbeat")
        sec.wait_for(lambda: colo_status(sec)["mode"] == "none", 120,
                     "secondary out of COLO mode")
        assert not replication_status(sec)["error"], replication_status(sec)
        survivor = [(0x22, 0, MiB), (0x11, MiB, MiB), (0x44, 2 * MiB, MiB),
                    (0x55, 3 * MiB, MiB), (0x11, 4 * MiB, SIZE - 4 * MiB)]
        expect_patterns(sec_view(), "survivor after failover", survivor)
        expect_patterns(read_file(sec, sec.path("secondary.raw")),
                        "secondary disk file after failover", survivor)
    finally:
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


def main():
    t.check("disk: checkpoint and secondary failover keep the survivor's disk exact; "
            "the primary survives its secondary's death (NBD, two QEMUs)",
            secondary_failover_and_primary_alone)
    t.check("disk: secondary start refuses a top-id that names nothing",
            secondary_start_refused_without_top)
    t.check("disk: with the COLO controller, checkpoints and a secondary failover "
            "leave the survivor's disk exact", with_colo_controller)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
