#!/usr/bin/env python3
"""Guest-level disk replication benchmark (issue 5): prints figures only.

A Linux guest writes to its virtio-blk disk with O_DIRECT (busybox dd,
sequential, 4 KiB and 64 KiB blocks), first on a plain quorum of one local
image, then with the documented replication child attached: a `replication`
node in primary mode over an NBD client to a second QEMU that holds the
secondary's chain (replication in secondary mode, active/hidden qcow2 with
cache.no-flush=on, the secondary disk exported over NBD).  Both measured in
the same run; the ratio is what counts on a shared machine.

    bench/replication_guest.py [--mib N]
"""

import argparse
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from colo_vm import Vm, guest_files  # noqa: E402

SIZE = 256 << 20


def qemu_img(binary_dir, *args):
    import subprocess
    subprocess.run([os.path.join(binary_dir, "qemu-img")] + list(args), check=True,
                   stdout=subprocess.DEVNULL)


def start_secondary():
    """A QEMU without a guest that holds the secondary's disk chain."""
    sec = Vm(["-M", "none", "-nodefaults"], name="bench-sec", start_paused=True)
    sec.start()
    bindir = os.path.dirname(os.path.abspath(sec.binary))
    for img in ("active", "hidden"):
        qemu_img(bindir, "create", "-q", "-f", "qcow2", sec.path(img + ".qcow2"), str(SIZE))
    qemu_img(bindir, "create", "-q", "-f", "raw", sec.path("secondary.raw"), str(SIZE))
    sec.cmd("blockdev-add", driver="raw", **{"node-name": "sec0", "file": {
        "driver": "file", "filename": sec.path("secondary.raw")}})
    sec.cmd("nbd-server-start", addr={"type": "unix", "data": {"path": sec.path("nbd.sock")}})
    sec.cmd("block-export-add", type="nbd", id="exp0",
            **{"node-name": "sec0", "writable": True})
    sec.cmd("blockdev-add", driver="replication", mode="secondary", **{
        "node-name": "rep1", "top-id": "top1",
        "file": {"driver": "qcow2", "cache": {"no-flush": True},
                 "file": {"driver": "file", "filename": sec.path("active.qcow2")},
                 "backing": {"driver": "qcow2", "backing": "sec0", "cache": {"no-flush": True},
                             "file": {"driver": "file",
                                      "filename": sec.path("hidden.qcow2")}}}})
    sec.cmd("blockdev-add", driver="quorum", **{
        "node-name": "top1", "vote-threshold": 1, "read-pattern": "fifo",
        "children": ["rep1"]})
    sec.cmd("xen-set-replication", enable=True, primary=False)
    return sec


def start_primary(tmpdir_img):
    g = guest_files()
    quorum = ('{"driver":"quorum","node-name":"top0","vote-threshold":1,'
              '"read-pattern":"fifo","children":["local0"]}')
    pri = Vm(["-M", "pc", "-m", "256", "-nic", "none",
              "-kernel", g["vmlinuz"], "-initrd", g["initrd"],
              "-append", "console=ttyS0 quiet",
              "-blockdev", "driver=file,node-name=local0-file,filename=%s" % tmpdir_img,
              "-blockdev", "driver=raw,node-name=local0,file=local0-file",
              "-blockdev", quorum,
              "-device", "virtio-blk-pci,drive=top0"], name="bench-pri")
    return pri


def guest_dd(pri, bs_kib, mib):
    """Run dd in the guest; return MiB/s.  Busybox dd prints no rate, so the
    host times the command (the console adds milliseconds to seconds)."""
    count = (mib << 10) // bs_kib
    pri.serial_mark()
    t0 = time.monotonic()
    pri.serial_send("dd if=/dev/zero of=/dev/vda bs=%dk count=%d oflag=direct "
                    "2>/dev/null; echo dd-$?-done" % (bs_kib, count))
    out = pri.serial_wait(re.compile(r"\ndd-\d+-done"), 600)
    secs = time.monotonic() - t0
    if "dd-0-done" not in out:
        raise RuntimeError("dd failed in the guest: %r" % out)
    return mib / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=32)
    args = ap.parse_args()
    pri = sec = None
    try:
        sec = start_secondary()
        img = sec.path("primary.raw")
        qemu_img(os.path.dirname(os.path.abspath(sec.binary)), "create", "-q", "-f", "raw",
                 img, str(SIZE))
        pri = start_primary(img)
        pri.start()
        pri.serial_wait("COLO-GUEST: ready", 180)
        plain = {bs: guest_dd(pri, bs, args.mib) for bs in (4, 64)}
        pri.cmd("blockdev-add", driver="replication", mode="primary", **{
            "node-name": "rep0",
            "file": {"driver": "nbd", "export": "sec0",
                     "server": {"type": "unix", "path": sec.path("nbd.sock")}}})
        pri.cmd("x-blockdev-change", parent="top0", node="rep0")
        pri.cmd("xen-set-replication", enable=True, primary=True)
        repl = {bs: guest_dd(pri, bs, args.mib) for bs in (4, 64)}
        status = pri.cmd("query-xen-replication-status")
        # Proof that writes really travel: 1 MiB of random data, then the
        # primary's and the secondary's images must hold the same bytes.
        pri.serial_send("dd if=/dev/urandom of=/run/rnd bs=64k count=16 2>/dev/null; "
                        "dd if=/run/rnd of=/dev/vda bs=64k count=16 oflag=direct "
                        "2>/dev/null; echo rnd-$?-done")
        pri.serial_wait("rnd-0-done", 120)
        with open(img, "rb") as f:
            head_pri = f.read(1 << 20)
        with open(sec.path("secondary.raw"), "rb") as f:
            head_sec = f.read(1 << 20)
        if head_pri != head_sec or head_pri == bytes(1 << 20):
            raise RuntimeError("the writes did not reach the secondary disk")
        print("guest sequential O_DIRECT writes, %d MiB per run (timed by the host):"
              % args.mib)
        for bs in (4, 64):
            print("  %2d KiB: plain quorum %6.1f MiB/s, with replication over NBD "
                  "%6.1f MiB/s (%.0f%%)" % (bs, plain[bs], repl[bs],
                                          100.0 * repl[bs] / plain[bs]))
        print("  replication status after the runs: %s; a random 1 MiB written "
              "by the guest is identical on both disks" % status)
        return 0
    finally:
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


if __name__ == "__main__":
    sys.exit(main())
