#!/usr/bin/env python3
"""COLO checkpoint/failover controller, end to end with two QEMUs (no network
proxy, no disk replication): the boot-sector guest keeps dirtying RAM and
prints 'B' to its serial console once per pass, so "the guest runs" is
something the test can see.

Each case starts its own pair and tears it down; nothing is shared.
"""

import contextlib
import ctypes
import hashlib
import tempfile
import os
import re
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_pair import (CAPS, bootsect_guest_args, checkpoints,  # noqa: E402
                       colo_status, linux_guest_args, loopback_tcp_uri,
                       start_pair, wait_checkpoints)
from colo_fault import FaultPoints  # noqa: E402
from colo_vm import DEFAULT_BINARY, Vm, VmExited, guest_files, wait_for  # noqa: E402
import smc_guest  # noqa: E402
from stream_proxy import COLO_MSG_DEVICE_STATE, COLO_MSG_RAM, StreamProxy  # noqa: E402
from tap import Tap, expect_error  # noqa: E402

MEM_MB = 128
REPO_TMP = tempfile.gettempdir()
t = Tap()


def guest_runs(vm, timeout=60):
    """The guest executes: new 'B' markers keep arriving on its console."""
    vm.serial_mark()
    vm.serial_wait("BBB", timeout)


def run_state(vm):
    return vm.cmd("query-status")["status"]


def stop_guest(vm):
    """QMP stop, and wait until it took effect: during a checkpoint it does
    when the checkpoint ends."""
    vm.cmd("stop")
    vm.wait_for(lambda: run_state(vm) == "paused", 60, "the guest paused")


def make_idle(pri):
    """Long delay (forces one checkpoint), then wait for that one: after it,
    no checkpoint is in flight for a long time."""
    n = checkpoints(pri)
    pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600000})
    wait_checkpoints(pri, n + 1)


MULTIFD = [{"capability": "multifd", "state": True}]


class Pair:
    def __init__(self, multifd=False, **kw):
        if multifd:
            kw["extra_caps"] = MULTIFD
        self.multifd = multifd
        self.pri, self.sec = start_pair(bootsect_guest_args(MEM_MB), **kw)
        # The checkpoints' RAM travels on the multifd channels, or not at all.
        wait_checkpoints(self.pri, 1)
        ram = self.pri.cmd("query-migrate")["ram"]
        assert (ram["multifd-bytes"] > 0) == multifd, ram

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for vm in (self.pri, self.sec):
            if vm.proc and vm.proc.poll() is None:
                try:
                    vm.proc.send_signal(signal.SIGCONT)
                except OSError:
                    pass
            vm.shutdown()


def assert_exit(vm, mode, reason):
    ev = vm.wait_event("COLO_EXIT", 60)
    assert ev["data"] == {"mode": mode, "reason": reason}, ev
    st = colo_status(vm)
    assert (st["mode"], st["last-mode"], st["reason"]) == ("none", mode, reason), st


def case_checkpoints_and_statistics():
    with Pair() as p:
        wait_checkpoints(p.pri, 3)
        assert p.pri.cmd("query-migrate")["status"] == "colo"
        make_idle(p.pri)
        sp, ss = colo_status(p.pri), colo_status(p.sec)
        assert sp["mode"] == "primary" and ss["mode"] == "secondary", (sp, ss)
        assert sp["checkpoints"] == ss["checkpoints"] >= 4, (sp, ss)
        assert sp["checkpoints-periodic"] >= 3, sp
        assert sp["checkpoints-forced"] == ss["checkpoints-forced"] == 1, (sp, ss)
        assert sp["checkpoints"] == (sp["checkpoints-periodic"] + sp["checkpoints-forced"] +
                                     sp["checkpoints-mismatch"] + sp["checkpoints-timeout"])
        assert 0 < sp["last-pause-us"] <= sp["max-pause-us"], sp
        assert sp["ram-bytes"] > 0, sp
        assert sp["device-state-bytes"] == ss["device-state-bytes"] > 0, (sp, ss)
        guest_runs(p.pri)
        guest_runs(p.sec)


def tcp_nodelay_of(pid, port):
    """{fd: TCP_NODELAY} for process pid's established TCP connections with
    port @port at either end, read from a duplicate of each socket taken with
    pidfd_getfd(2)."""
    inodes = set()
    with open("/proc/%d/net/tcp" % pid) as table:
        lines = table.readlines()[1:]
    for line in lines:
        f = line.split()
        local, remote, state, inode = f[1], f[2], f[3], f[9]
        if state == "01" and port in (int(local.split(":")[1], 16),
                                      int(remote.split(":")[1], 16)):
            inodes.add("socket:[%s]" % inode)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    out = {}
    try:
        for name in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, name)) not in inodes:
                    continue
            except OSError:
                continue
            dup = libc.syscall(438, pidfd, int(name), 0)     # pidfd_getfd
            if dup < 0:
                raise OSError(ctypes.get_errno(), "pidfd_getfd of fd %s" % name)
            with socket.socket(fileno=dup) as s:
                out[int(name)] = bool(s.getsockopt(socket.IPPROTO_TCP,
                                                   socket.TCP_NODELAY))
    finally:
        os.close(pidfd)
    return out


def case_channel_no_delay():
    """The COLO channel over TCP sends each message at once (TCP_NODELAY on
    both ends).  With Nagle's algorithm a checkpoint's last small write (the
    input marks after the device state, the secondary's RECEIVED) waited for
    the peer's delayed ACK whenever data before it was still unacknowledged:
    some 40 ms of pause, on about half the checkpoints of a pair serving
    HTTP (query-colo-status last-steps received-us 40-44 ms)."""
    uri = loopback_tcp_uri()
    port = int(uri.rsplit(":", 1)[1])
    with Pair(uri=uri) as p:
        wait_checkpoints(p.pri, 2)
        for vm in (p.pri, p.sec):
            socks = tcp_nodelay_of(vm.proc.pid, port)
            assert socks, "%s: no TCP connection on port %d" % (vm.name, port)
            delayed = [fd for fd, nodelay in socks.items() if not nodelay]
            assert not delayed, ("%s: the COLO channel (fd %s) runs with Nagle's "
                                 "algorithm (TCP_NODELAY off)" % (vm.name, delayed))


# -global migration.x-colo-max-residual's default (docs/system/qemu-colo.rst)
DEFAULT_MAX_RESIDUAL = 1 << 20


def case_residual_bounded(bound=None):
    """A guest that dirties RAM faster than a live round sends it (the
    boot-sector guest writes all of its 25344 pages over and over): every
    checkpoint still stops the guest with at most the bound of dirty RAM
    left (the default, or -global migration.x-colo-max-residual), whatever
    the guest's write pattern; the live RAM phase gets there (more rounds,
    then throttled vCPUs) within its time cap, and the guest runs on."""
    extra = ["-global", "migration.x-colo-max-live-ms=20000"]
    if bound:
        extra += ["-global", "migration.x-colo-max-residual=%d" % bound]
    limit = bound or DEFAULT_MAX_RESIDUAL
    with Pair(primary_extra=extra) as p:
        wait_checkpoints(p.pri, 6, 180)
        st = colo_status(p.pri)
        worst = st["max-steps"]
        # The guest is the fast writer this case is about: its live phase
        # sends many times the bound.
        assert worst["live-bytes"] > 16 * limit, st
        assert worst["residual-bytes"] <= limit, (
            "residual %d bytes over the bound %d: %s" % (worst["residual-bytes"], limit, st))
        guest_runs(p.pri)


def case_live_time_cap():
    """When the residual cannot get under the bound (the vCPU throttle held
    at 20% by max-cpu-throttle, too little for this guest), the live RAM
    phase ends at -global migration.x-colo-max-live-ms and the checkpoint
    happens anyway, with the residual over the bound."""
    cap_ms = 300
    with Pair(primary_extra=["-global", "migration.x-colo-max-live-ms=%d" % cap_ms]) as p:
        p.pri.cmd("migrate-set-parameters", **{"cpu-throttle-initial": 20,
                                                "max-cpu-throttle": 20})
        n = checkpoints(p.pri)
        wait_checkpoints(p.pri, n + 4, 180)
        st = colo_status(p.pri)
        last, worst = st["last-steps"], st["max-steps"]
        assert last["residual-bytes"] > DEFAULT_MAX_RESIDUAL, st
        # A round stops at the cap within one send step (50 ms at most).
        assert worst["live-us"] < (cap_ms + 500) * 1000, st
        guest_runs(p.pri)


def case_live_properties_refused():
    """Bad values of the live RAM phase's properties stop QEMU at start with
    a message that names the property and the allowed range."""
    for prop, msg in (("x-colo-max-residual=0", "x-colo-max-residual must be at least"),
                      ("x-colo-max-residual=4096", "x-colo-max-residual must be at least"),
                      ("x-colo-max-residual=lots", "x-colo-max-residual"),
                      ("x-colo-max-live-ms=0", "x-colo-max-live-ms must be between"),
                      ("x-colo-max-live-ms=60001", "x-colo-max-live-ms must be between")):
        r = subprocess.run([DEFAULT_BINARY, "-M", "none", "-display", "none",
                            "-global", "migration." + prop],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        assert r.returncode != 0 and msg in r.stdout, (prop, r.returncode, r.stdout)


def guest_ram_digest(vm, path, mem_mb=MEM_MB):
    """SHA-256 of the guest's RAM below 640 KiB and from 1 MiB up (the
    holes between hold ROM and VGA, not RAM)."""
    h = hashlib.sha256()
    for start, size in ((0, 0xA0000), (0x100000, (mem_mb << 20) - 0x100000)):
        vm.cmd("pmemsave", val=start, size=size, filename=path)
        with open(path, "rb") as f:
            h.update(f.read())
        os.unlink(path)
    return h.hexdigest()


def case_replica_fidelity(multifd=False):
    """After a checkpoint taken with the primary paused, both guests are
    stopped at the same state: their RAM must be identical, repeatedly, for a
    guest that keeps dirtying memory between checkpoints."""
    with Pair(multifd) as p:
        wait_checkpoints(p.pri, 2)
        for round_ in range(3):
            stop_guest(p.pri)
            n = checkpoints(p.pri)
            # Changing the delay forces a checkpoint, taken of the paused guest.
            p.pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600000})
            wait_checkpoints(p.pri, n + 1)
            wait_checkpoints(p.sec, n + 1)
            assert run_state(p.pri) == "paused", run_state(p.pri)
            assert run_state(p.sec) != "running", run_state(p.sec)
            dp = guest_ram_digest(p.pri, p.pri.path("ram.bin"))
            ds = guest_ram_digest(p.sec, p.sec.path("ram.bin"))
            assert dp == ds, "round %d: RAM differs (%s vs %s)" % (round_, dp, ds)
            # Let both run and dirty memory again for a few checkpoints.
            p.pri.cmd("cont")
            p.pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 200})
            wait_checkpoints(p.pri, n + 3)
            guest_runs(p.sec)


def cpu_state(vm):
    """'info registers' of a stopped guest, without the arithmetic flags of
    RFL (EFL outside long mode): a stopped TCG vCPU keeps its lazily
    computed flags beside the saved EFLAGS, and the dump ORs both in, so a
    secondary's stale lazy flags show up there although they are discarded
    when it runs again."""
    text = vm.hmp("info registers")
    return re.sub(r"(RFL|EFL)=([0-9a-f]+) \[[^]]*\]",
                  lambda m: "%s=%08x" % (m.group(1), int(m.group(2), 16) & ~0x8d5), text)


def assert_replica_after_paused_checkpoint(pri, sec, mem, round_):
    """Stop the primary, force a checkpoint of it, and require the stopped
    secondary to hold exactly its CPU state and RAM (the primary is left
    stopped)."""
    stop_guest(pri)
    n = checkpoints(pri)
    pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600000})
    wait_checkpoints(pri, n + 1, 180)
    wait_checkpoints(sec, n + 1, 180)
    assert_same_state(pri, sec, mem, round_)


def assert_same_state(pri, sec, mem, round_):
    """Both guests stopped after a checkpoint: the secondary holds exactly
    the primary's CPU state and RAM."""
    assert run_state(sec) != "running", run_state(sec)
    regs = [cpu_state(vm) for vm in (pri, sec)]
    assert regs[0] == regs[1], "round %d: CPU state differs:\n%s\n---\n%s" % (
        round_, regs[0], regs[1])
    dp = guest_ram_digest(pri, pri.path("ram.bin"), mem)
    ds = guest_ram_digest(sec, sec.path("ram.bin"), mem)
    assert dp == ds, "round %d: RAM differs (%s vs %s)" % (round_, dp, ds)


def case_replica_fidelity_lazy_secondary():
    """Replica fidelity with guests that do different work between
    checkpoints: the Linux guest rewrites 16 MiB from /dev/urandom at its own
    pace, and its kernel's timers and caches run on their own time, so the
    secondary writes pages the primary does not, with other data.  After a
    checkpoint of the paused primary, the secondary must hold exactly the
    primary's RAM (pages only the secondary wrote rolled back) and CPU state
    (the device state loaded)."""
    mem = 256
    pri, sec = start_pair(linux_guest_args(mem, "colo.dirty=16"), delay_ms=500)
    try:
        pri.serial_wait("COLO-GUEST: ready", 180)
        for round_ in range(3):
            # Both guests run and dirty memory on their own for a while.
            pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 1500})
            wait_checkpoints(pri, checkpoints(pri) + 2, 180)
            assert_replica_after_paused_checkpoint(pri, sec, mem, round_)
            pri.cmd("cont")
    finally:
        for vm in (pri, sec):
            vm.shutdown()


def case_secondary_runs_during_live_ram(multifd=False):
    """Hold less: while the primary is in its live RAM phase (held at the
    fault point after-live-ram, its guest running) the secondary's guest
    runs too, so colo-compare has its output to compare.  Meanwhile the
    secondary's guest alone runs a shell command typed on its console (it
    writes pages the primary's guest does not); those writes must be rolled
    back: the primary is paused there, the checkpoint completes, and the
    stopped secondary must hold exactly the primary's RAM and CPU state."""
    mem = 256
    points = FaultPoints()
    pri = sec = None
    try:
        # No checkpoint until the guest has booted: the first one would stand
        # at the fault point meanwhile, its live RAM phase's vCPU throttle
        # still on (up to 99% on a loaded host), and the guest would not
        # boot in time.
        pri, sec = start_pair(linux_guest_args(mem), delay_ms=600000,
                              primary_env=points.env("after-live-ram"),
                              extra_caps=MULTIFD if multifd else ())
        pri.serial_wait("COLO-GUEST: ready", 180)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 300})
        for round_ in range(2):
            seq = points.wait("after-live-ram", mode="primary",
                              min_seq=checkpoints(pri) + 2, timeout=180)[2]
            assert run_state(pri) == "running", run_state(pri)
            assert run_state(sec) == "running", (
                "round %d: the secondary's guest is %s during the primary's live "
                "RAM phase" % (round_, run_state(sec)))
            # The console echoes what is typed: wait for what only the
            # shell's output holds.
            sec.serial_mark()
            sec.serial_send("echo only-secondary-$((%d+1))" % (100 * round_))
            sec.serial_wait("only-secondary-%d" % (100 * round_ + 1), 60)
            pri.cmd("stop")
            points.release()
            wait_checkpoints(pri, seq, 180)
            wait_checkpoints(sec, seq, 180)
            assert_same_state(pri, sec, mem, round_)
            pri.cmd("cont")
    finally:
        points.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


def case_primary_lost_in_live_ram(how):
    """The primary is lost in its live RAM phase (held at after-live-ram):
    the secondary's guest runs and its cache holds part of that checkpoint.
    how="kill": the primary is SIGKILLed; the secondary notices, stops its
    guest and waits; on x-colo-lost-heartbeat it runs on from its own state
    (the checkpoint discarded).  how="failover": x-colo-lost-heartbeat
    reaches the secondary while its guest runs mid-RAM; it leaves COLO at
    once and its guest runs on.  Either way the part of the checkpoint in
    the cache never reaches guest RAM: one flush (trace colo_ram_flush) per
    complete checkpoint, none for this one."""
    points = FaultPoints()
    pri = sec = None
    try:
        pri, sec = start_pair(bootsect_guest_args(MEM_MB), primary_env=points.env(
            "after-live-ram"), secondary_extra=["-trace", "colo_ram_flush"])
        seq = points.wait("after-live-ram", mode="primary", min_seq=3)[2]
        assert run_state(sec) == "running", run_state(sec)
        if how == "kill":
            pri.kill(signal.SIGKILL)
            sec.wait_for(lambda: colo_status(sec)["reason"] == "error", 60,
                         "secondary to notice the primary is gone")
            st = colo_status(sec)
            assert st["mode"] == "secondary" and st["checkpoints"] == seq - 1, st
            assert run_state(sec) != "running", run_state(sec)
        sec.cmd("x-colo-lost-heartbeat")
        assert_exit(sec, "secondary", "request")
        assert colo_status(sec)["checkpoints"] == seq - 1, colo_status(sec)
        assert run_state(sec) == "running", run_state(sec)
        guest_runs(sec)
        flushes = re.findall(r"colo_ram_flush \d+ pages", sec.qemu_log())
        assert len(flushes) == seq - 1, (seq, flushes)
    finally:
        points.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


def case_resized_ram_block():
    """The RAM cache fits the RAM: a resizable RAM block that is larger on the
    primary (its ACPI tables carry two 60 KiB user tables, -acpitable on
    the primary only) grows on the secondary during the migration, beyond the
    size the cache had; pages must land inside the cache, and COLO must
    checkpoint and keep the replica identical."""
    blob = os.path.join(REPO_TMP, "acpi-blob-%d" % os.getpid())
    with open(blob, "wb") as f:
        f.write(b"\xa5" * (60 << 10))      # an ACPI table holds < 64 KiB
    try:
        with Pair(primary_extra=["-acpitable", "sig=COLO,data=%s" % blob] * 2) as p:
            wait_checkpoints(p.pri, 3)
            for vm, mode in ((p.pri, "primary"), (p.sec, "secondary")):
                assert colo_status(vm)["mode"] == mode, (vm.name, vm.qemu_log())
            stop_guest(p.pri)
            n = checkpoints(p.pri)
            p.pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600000})
            wait_checkpoints(p.sec, n + 1)
            dp = guest_ram_digest(p.pri, p.pri.path("ram.bin"))
            ds = guest_ram_digest(p.sec, p.sec.path("ram.bin"))
            assert dp == ds, "RAM differs (%s vs %s)" % (dp, ds)
    finally:
        os.unlink(blob)


def case_machine_variant(extra):
    """A guest as people run it (q35 with its AHCI disk, or 2 vCPUs): the
    secondary loads every device's state once per checkpoint, so each must
    load again over a live machine (q35's LPC used to map its root complex
    register block twice and abort); RAM identical after a checkpoint of the
    paused primary; failover to the secondary runs the guest on."""
    if "q35" in extra:
        guest = ["-M", "q35", "-m", str(MEM_MB), "-nic", "none",
                 "-drive", "file=%s,format=raw,snapshot=on,if=none,id=d0"
                 % guest_files()["bootsect"], "-device", "ide-hd,drive=d0,bus=ide.0"]
    else:
        guest = bootsect_guest_args(MEM_MB) + list(extra)
    pri, sec = start_pair(guest, delay_ms=300)
    try:
        wait_checkpoints(pri, 5)
        for vm, mode in ((pri, "primary"), (sec, "secondary")):
            assert colo_status(vm)["mode"] == mode, (vm.name, vm.qemu_log())
        stop_guest(pri)
        n = checkpoints(pri)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600000})
        wait_checkpoints(sec, n + 1)
        dp = guest_ram_digest(pri, pri.path("ram.bin"))
        ds = guest_ram_digest(sec, sec.path("ram.bin"))
        assert dp == ds, "RAM differs (%s vs %s)" % (dp, ds)
        pri.kill(signal.SIGKILL)
        sec.wait_for(lambda: colo_status(sec)["reason"] == "error", 60,
                     "the secondary to notice the primary is gone")
        sec.cmd("x-colo-lost-heartbeat")
        assert_exit(sec, "secondary", "request")
        guest_runs(sec)
    finally:
        for vm in (pri, sec):
            vm.shutdown()


def tb_flush_count(vm):
    """How many times TCG threw all its translated code away."""
    return int(re.search(r"TB flush count\s+(\d+)", vm.hmp("info jit")).group(1))


def case_rewritten_code_after_checkpoint():
    """Translated code follows the checkpoint: the primary's guest rewrites
    the instruction that loads its console marker ('B' to 'N', on input
    that only the primary gets) while the secondary's guest runs the old
    one.  After a checkpoint and failover the secondary must run the new
    code; a translation kept from before the checkpoint prints 'B'.  The
    checkpoint loads drop only the code of the pages they overwrite: TCG's
    count of whole flushes does not grow."""
    img = smc_guest.write_image(os.path.join(REPO_TMP, "smc-guest-%d.img" % os.getpid()))
    guest = ["-M", "pc", "-m", str(MEM_MB), "-nic", "none",
             "-drive", "file=%s,format=raw,snapshot=on,if=ide" % img]
    pri, sec = start_pair(guest, delay_ms=300)
    try:
        wait_checkpoints(pri, 2)
        # Both run (and so have translated) the loop as it is now.
        for vm in (pri, sec):
            vm.serial_mark()
            vm.serial_wait("BBB", 60)
        flushes = tb_flush_count(sec)
        pri.serial_send("N")
        pri.serial_wait("NNN", 60)
        n = checkpoints(pri)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600000})
        wait_checkpoints(sec, n + 1)
        # Precisely: the checkpoint loads did not throw all code away.
        assert tb_flush_count(sec) == flushes, (flushes, tb_flush_count(sec))
        pri.kill(signal.SIGKILL)
        sec.wait_for(lambda: colo_status(sec)["reason"] == "error", 60,
                     "the secondary to notice the primary is gone")
        sec.cmd("x-colo-lost-heartbeat")
        assert_exit(sec, "secondary", "request")
        sec.serial_mark()
        seen = sec.serial_wait(re.compile("NNN|BBB"), 60)
        assert seen.endswith("NNN"), \
            "the secondary runs the code as it was before the checkpoint: %r" % seen[-40:]
    finally:
        for vm in (pri, sec):
            vm.shutdown()
        os.unlink(img)


def case_primary_failover_idle(multifd=False):
    with Pair(multifd) as p:
        wait_checkpoints(p.pri, 3)
        make_idle(p.pri)
        p.sec.kill(signal.SIGKILL)
        p.pri.cmd("x-colo-lost-heartbeat")
        assert_exit(p.pri, "primary", "request")
        assert p.pri.cmd("query-migrate")["status"] == "completed"
        assert run_state(p.pri) == "running"
        guest_runs(p.pri)
        expect_error(lambda: p.pri.cmd("x-colo-lost-heartbeat"), "VM is not in COLO mode")


def case_primary_failover_during_checkpoint(multifd=False):
    """The secondary hangs; a checkpoint is started and cannot finish; the
    failover request must end it at once (well before the watchdog)."""
    with Pair(multifd) as p:
        wait_checkpoints(p.pri, 3)
        make_idle(p.pri)
        n = checkpoints(p.pri)
        p.sec.kill(signal.SIGSTOP)
        p.pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600001})
        p.pri.cmd("x-colo-lost-heartbeat")
        assert_exit(p.pri, "primary", "request")
        # The request ended the checkpoint, not the watchdog.
        assert "no progress from the peer" not in p.pri.qemu_log(), p.pri.qemu_log()
        assert checkpoints(p.pri) == n
        assert run_state(p.pri) == "running"
        guest_runs(p.pri)


def case_secondary_failover_idle(multifd=False):
    with Pair(multifd) as p:
        wait_checkpoints(p.pri, 3)
        make_idle(p.pri)
        p.pri.kill(signal.SIGKILL)
        p.sec.cmd("x-colo-lost-heartbeat")
        assert_exit(p.sec, "secondary", "request")
        assert run_state(p.sec) == "running"
        guest_runs(p.sec)


def catch_in_checkpoint(vm, timeout=60):
    """Poll until vm's guest is stopped for a checkpoint (run state 'colo')."""
    wait_for(lambda: run_state(vm) == "colo", timeout,
             "%s stopped for a checkpoint" % vm.name, interval=0.002)


def case_secondary_failover_during_checkpoint(multifd=False):
    with Pair(multifd, delay_ms=100) as p:
        wait_checkpoints(p.pri, 3)
        catch_in_checkpoint(p.sec)
        p.pri.kill(signal.SIGSTOP)
        p.sec.cmd("x-colo-lost-heartbeat")
        assert_exit(p.sec, "secondary", "request")
        assert run_state(p.sec) == "running"
        guest_runs(p.sec)


def case_secondary_killed_during_checkpoint():
    """The primary notices by itself, leaves COLO with reason 'error' and runs on."""
    with Pair(delay_ms=100) as p:
        wait_checkpoints(p.pri, 3)
        catch_in_checkpoint(p.pri)
        p.sec.kill(signal.SIGKILL)
        assert_exit(p.pri, "primary", "error")
        assert run_state(p.pri) == "running"
        guest_runs(p.pri)


def case_primary_killed_during_checkpoint():
    """The secondary must not take over alone (the primary might still serve
    clients): its guest stops until x-colo-lost-heartbeat, then runs."""
    with Pair(delay_ms=100) as p:
        wait_checkpoints(p.pri, 3)
        catch_in_checkpoint(p.sec)
        p.pri.kill(signal.SIGKILL)
        p.sec.wait_for(lambda: colo_status(p.sec)["reason"] == "error", 60,
                       "secondary to notice the primary is gone")
        st = colo_status(p.sec)
        assert st["mode"] == "secondary", st
        assert run_state(p.sec) != "running"
        p.sec.cmd("x-colo-lost-heartbeat")
        assert_exit(p.sec, "secondary", "request")
        guest_runs(p.sec)


def tampered_stream_case(mode):
    """The device state of checkpoint 3 is corrupted or cut on its way: the
    secondary discards it and waits for a decision; the primary leaves COLO
    with an error and runs on; after failover the secondary runs from its
    last complete checkpoint."""
    proxies = []

    def proxy(sec_path):
        px = StreamProxy(os.path.dirname(sec_path), mode, seq=3)
        proxies.append(px)
        return px.start(sec_path)

    with Pair(proxy=proxy) as p:
        try:
            assert proxies[0].acted.wait(120), "the proxy never saw checkpoint 3"
            assert_exit(p.pri, "primary", "error")
            assert run_state(p.pri) == "running"
            guest_runs(p.pri)
            p.sec.wait_for(lambda: colo_status(p.sec)["reason"] == "error", 60,
                           "secondary to discard the checkpoint")
            assert colo_status(p.sec)["checkpoints"] == 2
            log = p.sec.qemu_log()
            expected = "bad checksum" if mode == "corrupt" else "connection lost"
            assert expected in log, log
            p.sec.cmd("x-colo-lost-heartbeat")
            assert_exit(p.sec, "secondary", "request")
            guest_runs(p.sec)
        finally:
            proxies[0].close()


def held_stream_case(victim, phase):
    """The proxy holds checkpoint 3 in the RAM phase or in the device-state
    phase; then one side is SIGKILLed.  The survivor must not hang: the
    primary runs on alone; the secondary discards the checkpoint and, once
    told, runs on from checkpoint 2."""
    proxies = []

    def proxy(sec_path):
        px = StreamProxy(os.path.dirname(sec_path), "hold", seq=3, phase=phase)
        proxies.append(px)
        return px.start(sec_path)

    with Pair(proxy=proxy) as p:
        try:
            assert proxies[0].acted.wait(120), "the proxy never saw checkpoint 3"
            if victim == "secondary":
                p.sec.kill(signal.SIGKILL)
                assert_exit(p.pri, "primary", "error")
                assert run_state(p.pri) == "running"
                guest_runs(p.pri)
            else:
                p.pri.kill(signal.SIGKILL)
                p.sec.wait_for(lambda: colo_status(p.sec)["reason"] == "error", 60,
                               "secondary to notice the primary is gone")
                assert colo_status(p.sec)["checkpoints"] == 2
                p.sec.cmd("x-colo-lost-heartbeat")
                assert_exit(p.sec, "secondary", "request")
                guest_runs(p.sec)
        finally:
            proxies[0].close()


def case_slow_link_is_not_dead():
    """Slow is not dead: the RAM of checkpoint 3 crawls over a slow link for
    20 s, longer than the 15 s peer timeout, but it keeps moving: COLO stays
    up on both sides and the checkpoint completes."""
    proxies = []

    def proxy(sec_path):
        px = StreamProxy(os.path.dirname(sec_path), "drip", seq=3, phase=COLO_MSG_RAM,
                         drip_seconds=20, drip_rate=32 * 1024)
        proxies.append(px)
        return px.start(sec_path)

    with Pair(proxy=proxy) as p:
        try:
            assert proxies[0].acted.wait(120), "the proxy never saw checkpoint 3"
            p.pri.wait_for(lambda: checkpoints(p.pri) >= 4 or
                           colo_status(p.pri)["mode"] != "primary", 180,
                           "checkpoint 3 to complete or COLO to end")
            for vm, mode in ((p.pri, "primary"), (p.sec, "secondary")):
                st = colo_status(vm)
                assert st["mode"] == mode, (vm.name, st, vm.qemu_log())
            assert checkpoints(p.pri) >= 4
        finally:
            proxies[0].close()


def case_primary_watchdog():
    """The secondary stops answering in the middle of a checkpoint and nobody
    asks for a failover: the primary's watchdog ends COLO by itself."""
    with Pair() as p:
        wait_checkpoints(p.pri, 2)
        make_idle(p.pri)
        p.sec.kill(signal.SIGSTOP)
        p.pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600001})
        ev = p.pri.wait_event("COLO_EXIT", 90)
        assert ev["data"] == {"mode": "primary", "reason": "error"}, ev
        assert "no progress from the peer" in p.pri.qemu_log(), p.pri.qemu_log()
        assert run_state(p.pri) == "running"
        guest_runs(p.pri)


def case_quit_primary():
    with Pair() as p:
        wait_checkpoints(p.pri, 2)
        p.pri.cmd("quit")
        assert p.pri.wait_exit(30) == 0
        p.sec.wait_for(lambda: colo_status(p.sec)["reason"] == "error", 60,
                       "secondary to notice the primary quit")
        p.sec.cmd("quit")
        assert p.sec.wait_exit(30) == 0


def case_quit_secondary():
    with Pair() as p:
        wait_checkpoints(p.pri, 2)
        p.sec.cmd("quit")
        assert p.sec.wait_exit(30) == 0
        assert_exit(p.pri, "primary", "error")
        guest_runs(p.pri)


def case_yank():
    """QMP yank of the migration channels breaks COLO on purpose, without a
    failover request: the primary runs on alone; the secondary waits."""
    with Pair() as p:
        wait_checkpoints(p.pri, 2)
        p.sec.cmd("yank", instances=[{"type": "migration"}])
        p.sec.wait_for(lambda: colo_status(p.sec)["reason"] == "error", 60,
                       "secondary to notice the yank")
        assert colo_status(p.sec)["mode"] == "secondary"
        assert run_state(p.sec) != "running"
        assert_exit(p.pri, "primary", "error")
        guest_runs(p.pri)


def case_guest_reset():
    with Pair() as p:
        wait_checkpoints(p.pri, 2)
        p.pri.cmd("system_reset")
        n = checkpoints(p.pri)
        wait_checkpoints(p.pri, n + 3)
        guest_runs(p.pri)
        guest_runs(p.sec)


@contextlib.contextmanager
def pair_held_at(point):
    """A pair that checkpoints only when asked, whose primary reports the
    fault point @point: yields (pri, sec, points)."""
    points = FaultPoints()
    pri = sec = None
    try:
        pri, sec = start_pair(bootsect_guest_args(MEM_MB), delay_ms=600000,
                              primary_env=points.env(point))
        yield pri, sec, points
    finally:
        points.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()


def checkpoint_held_at(pri, points, point, delay):
    """Ask for a checkpoint (a new x-checkpoint-delay @delay does) and wait
    until the primary stands at @point in it; returns the checkpoint count
    before it."""
    n = checkpoints(pri)
    pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": delay})
    points.wait(point, mode="primary")
    return n


def case_reset_during_checkpoint():
    """A reset (system_reset, or the guest rebooting itself) while a
    checkpoint has the guest stopped.  QEMU's main loop then sets the run
    state to prelaunch instead of leaving it 'colo'; the checkpoint must
    still run the guest again (it stayed stopped for good, checkpoint after
    checkpoint, with the pair 'protected').  The primary is held at the
    point where it stopped its guest; the reset is done there."""
    with pair_held_at("after-stop") as (pri, sec, points):
        n = checkpoint_held_at(pri, points, "after-stop", 600001)
        assert run_state(pri) == "colo", run_state(pri)
        pri.clear_events()
        pri.cmd("system_reset")
        pri.wait_event("RESET", 30)
        points.close()
        wait_checkpoints(pri, n + 1)
        pri.wait_for(lambda: run_state(pri) == "running", 30,
                     "the primary's guest to run again after the checkpoint "
                     "(run state then: %s)" % run_state(pri))
        guest_runs(pri)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 300})
        wait_checkpoints(pri, checkpoints(pri) + 2)
        assert run_state(pri) == "running", run_state(pri)
        guest_runs(sec)


def case_operator_stop_during_checkpoint():
    """The operator stops the primary's guest (QMP stop) while a checkpoint
    has it stopped: it must stay stopped (paused) after the checkpoint, not
    run on as if nobody had asked, and cont then runs it."""
    with pair_held_at("after-stop") as (pri, sec, points):
        n = checkpoint_held_at(pri, points, "after-stop", 600001)
        assert run_state(pri) == "colo", run_state(pri)
        pri.cmd("stop")
        points.close()
        wait_checkpoints(pri, n + 1)
        pri.wait_for(lambda: run_state(pri) != "colo", 30,
                     "the checkpoint to let go of the guest")
        assert run_state(pri) == "paused", run_state(pri)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 300})
        wait_checkpoints(pri, checkpoints(pri) + 2)
        assert run_state(pri) == "paused", run_state(pri)
        pri.cmd("cont")
        guest_runs(pri)


def case_operator_cont_during_checkpoint():
    """The operator continues a paused primary (QMP cont) while a checkpoint
    is in flight, after its state was saved: the guest must not run before
    the secondary has that checkpoint (its output would be released with a
    checkpoint that does not hold what produced it), but when it ends.  The
    secondary's guest follows the primary's: stop and cont on it are
    refused while it is held."""
    with pair_held_at("before-received") as (pri, sec, points):
        pri.cmd("stop")
        n = checkpoint_held_at(pri, points, "before-received", 600001)
        pri.cmd("cont")
        assert run_state(pri) == "paused", \
            "the guest runs before the secondary has the checkpoint (%s)" \
            % run_state(pri)
        points.close()
        wait_checkpoints(pri, n + 1)
        pri.wait_for(lambda: run_state(pri) == "running", 30,
                     "the guest to run once the checkpoint ended")
        guest_runs(pri)
        # a checkpoint of the paused primary leaves the secondary held
        stop_guest(pri)
        n = checkpoints(pri)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600002})
        wait_checkpoints(sec, n + 1)
        assert run_state(sec) == "colo", run_state(sec)
        expect_error(lambda: sec.cmd("cont"), "secondary")
        assert run_state(sec) == "colo", run_state(sec)


def case_replica_fidelity_after_reset():
    """A guest reset during COLO (system_reset on the primary; the Linux
    guest reboots under protection, the secondary following at each
    checkpoint): once the guest is up again, a checkpoint of the paused
    primary leaves the secondary with exactly its RAM and CPU state.  The
    e2e scenario 7 found a secondary that stopped serving after such a
    reboot."""
    mem = 256
    # A virtio-net NIC (on a hub, no network): the secondary's guest resets
    # it while it reboots, after checkpoint loads that freed its announce
    # timer (QEMU crashed there: patch 0061).
    nic = ["-netdev", "hubport,id=n0,hubid=0",
           "-device", "virtio-net-pci,netdev=n0,romfile="]
    guest = [a for a in linux_guest_args(mem) if a not in ("-nic", "none")] + nic
    pri, sec = start_pair(guest, delay_ms=500)
    try:
        pri.serial_wait("COLO-GUEST: ready", 180)
        wait_checkpoints(pri, checkpoints(pri) + 2, 180)
        pri.cmd("system_reset")
        pri.serial_wait("COLO-GUEST: ready", 180)
        wait_checkpoints(pri, checkpoints(pri) + 2, 180)
        for round_ in range(2):
            assert_replica_after_paused_checkpoint(pri, sec, mem, round_)
            pri.cmd("cont")
            pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 500})
            wait_checkpoints(pri, checkpoints(pri) + 2, 180)
    finally:
        for vm in (pri, sec):
            vm.shutdown()


def case_dirty_bitmaps_refused():
    """The secondary loads a checkpoint's RAM without the BQL, which is safe
    for RAM sections only: the primary refuses COLO with the dirty-bitmaps
    capability (its sections would reach that load) and runs on alone."""
    caps = CAPS + [{"capability": "dirty-bitmaps", "state": True}]
    pri = Vm(bootsect_guest_args(MEM_MB), name="primary")
    sec = Vm(bootsect_guest_args(MEM_MB) + ["-incoming", "defer"],
             name="secondary")
    try:
        pri.start()
        sec.start()
        for vm in (pri, sec):
            vm.cmd("migrate-set-capabilities", capabilities=caps)
        pri.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 30,
                                             "downtime-limit": 2000})
        sec_path = sec.path("migrate.sock")
        sec.cmd("migrate-incoming", uri="unix:" + sec_path)
        pri.cmd("migrate", uri="unix:" + sec_path)
        # Refused: the migration fails; accepted: checkpoints begin.
        pri.wait_for(lambda: pri.cmd("query-migrate")["status"] == "failed"
                     or checkpoints(pri) > 0, 180,
                     "the migration to fail or a checkpoint")
        info = pri.cmd("query-migrate")
        assert info["status"] == "failed", (info, colo_status(pri))
        assert "dirty-bitmaps" in info.get("error-desc", ""), info
        ev = pri.wait_event("COLO_EXIT", 30)
        assert ev["data"] == {"mode": "primary", "reason": "error"}, ev
        guest_runs(pri)
    finally:
        for vm in (pri, sec):
            vm.shutdown()


def case_guest_poweroff(no_shutdown):
    """The guest powers itself off in COLO (both sides run it).  With
    -no-shutdown both QEMUs stay, checkpointing a stopped guest, and quit
    cleanly; without it both exit cleanly.  Never an abort."""
    extra = ["-no-shutdown"] if no_shutdown else []
    pri, sec = start_pair(linux_guest_args() + extra, delay_ms=300)
    try:
        pri.serial_wait("COLO-GUEST: ready", 120)
        wait_checkpoints(pri, 2)
        pri.serial_send("poweroff -f")
        if no_shutdown:
            pri.wait_for(lambda: run_state(pri) == "shutdown", 60, "guest shut down")
            n = checkpoints(pri)
            wait_checkpoints(pri, n + 2)
            assert run_state(pri) == "shutdown", run_state(pri)
            assert colo_status(sec)["mode"] == "secondary"
            for vm in (pri, sec):
                vm.cmd("quit")
                assert vm.wait_exit(30) == 0
        else:
            assert pri.wait_exit(60) == 0
            # The secondary ran the same poweroff, or lost its primary first.
            def sec_done():
                try:
                    return (not sec.is_running() or
                            colo_status(sec)["reason"] == "error")
                except VmExited:    # it exited after is_running() looked
                    return True
            wait_for(sec_done, 60, "the secondary to exit or to notice")
            if sec.is_running():
                sec.cmd("quit")
            assert sec.wait_exit(30) == 0, sec.qemu_log()
    finally:
        pri.shutdown()
        sec.shutdown()


def main():
    t.check("pair enters COLO, checkpoints periodically and on request; statistics agree",
            case_checkpoints_and_statistics)
    t.check("the COLO channel over TCP: TCP_NODELAY on both ends (no 40 ms "
            "wait for a delayed ACK at the end of a checkpoint)", case_channel_no_delay)
    t.check("a guest dirtying faster than a live round sends: the residual RAM at the "
            "stop stays under the default bound", case_residual_bounded)
    t.check("the same under -global migration.x-colo-max-residual=256K",
            case_residual_bounded, 256 << 10)
    t.check("the live RAM phase ends at x-colo-max-live-ms when the residual cannot "
            "get under the bound", case_live_time_cap)
    t.check("x-colo-max-residual and x-colo-max-live-ms: bad values refused at start",
            case_live_properties_refused)
    t.check("replica fidelity with a lazy-secondary detector: guests doing different "
            "work; RAM and CPU state identical after each checkpoint",
            case_replica_fidelity_lazy_secondary)
    t.check("a reset while a checkpoint has the guest stopped: the guest runs "
            "again after it", case_reset_during_checkpoint)
    t.check("the operator stops the guest during a checkpoint: it stays paused",
            case_operator_stop_during_checkpoint)
    t.check("the operator continues a paused guest during a checkpoint: it runs "
            "only once the secondary has the checkpoint",
            case_operator_cont_during_checkpoint)
    t.check("q35 (ICH9, AHCI disk): checkpoints load every device again; replica "
            "identical; failover", case_machine_variant, ("q35",))
    t.check("-smp 2 (MTTCG): checkpoints, replica identical, failover",
            case_machine_variant, ("-smp", "2"))
    t.check("translated code follows the checkpoint: code the primary's guest "
            "rewrote runs on the secondary after failover",
            case_rewritten_code_after_checkpoint)
    t.check("the RAM cache fits the RAM: a resizable block larger on the primary "
            "(ACPI tables)", case_resized_ram_block)
    for multifd in (False, True):
        kind = "multifd" if multifd else "plain"
        t.check("%s: replica fidelity: guest RAM identical on both sides after checkpoints"
                % kind, case_replica_fidelity, multifd)
        t.check("%s: hold less: the secondary's guest runs during the primary's live "
                "RAM phase; what it wrote meanwhile is rolled back (RAM and CPU state "
                "identical)" % kind, case_secondary_runs_during_live_ram, multifd)
        t.check("%s: failover matrix: primary failover while idle" % kind,
                case_primary_failover_idle, multifd)
        t.check("%s: failover matrix: primary failover during a checkpoint" % kind,
                case_primary_failover_during_checkpoint, multifd)
        t.check("%s: failover matrix: secondary failover while idle" % kind,
                case_secondary_failover_idle, multifd)
        t.check("%s: failover matrix: secondary failover during a checkpoint" % kind,
                case_secondary_failover_during_checkpoint, multifd)
    t.check("fault: secondary SIGKILLed during a checkpoint, primary runs on",
            case_secondary_killed_during_checkpoint)
    t.check("fault: primary SIGKILLed during a checkpoint, secondary waits, then takes over",
            case_primary_killed_during_checkpoint)
    t.check("fault: primary SIGKILLed in its live RAM phase (secondary running): "
            "secondary waits, then runs on from its own state",
            case_primary_lost_in_live_ram, "kill")
    t.check("failover on the secondary while its guest runs in the primary's live "
            "RAM phase: leaves COLO at once, runs on", case_primary_lost_in_live_ram,
            "failover")
    t.check("fault: corrupt device state is detected and discarded",
            tampered_stream_case, "corrupt")
    t.check("fault: stream cut inside the device state is discarded",
            tampered_stream_case, "cut")
    for victim in ("secondary", "primary"):
        for phase, name in ((COLO_MSG_RAM, "RAM"), (COLO_MSG_DEVICE_STATE, "device-state")):
            t.check("fault: %s SIGKILLed during the %s phase of a checkpoint" % (victim, name),
                    held_stream_case, victim, phase)
    t.check("fault: the secondary stops answering mid-checkpoint: the primary's "
            "watchdog ends COLO", case_primary_watchdog)
    t.check("slow is not dead: a checkpoint's RAM slower than the peer timeout but "
            "progressing keeps COLO up", case_slow_link_is_not_dead)
    t.check("quit on the primary during COLO: clean exit, secondary waits",
            case_quit_primary)
    t.check("quit on the secondary during COLO: primary runs on", case_quit_secondary)
    t.check("yank of the migration channels: primary runs on, secondary waits", case_yank)
    t.check("guest reset during COLO: checkpoints go on", case_guest_reset)
    t.check("guest reset during COLO (Linux guest reboots): RAM and CPU state "
            "identical after a checkpoint", case_replica_fidelity_after_reset)
    t.check("the dirty-bitmaps capability is refused: the primary runs on alone",
            case_dirty_bitmaps_refused)
    t.check("guest poweroff during COLO with -no-shutdown: both stay, then quit cleanly",
            case_guest_poweroff, True)
    t.check("guest poweroff during COLO: both QEMUs exit cleanly", case_guest_poweroff, False)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
