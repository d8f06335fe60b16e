"""Start a COLO pair (primary + secondary QEMU on this host) for tests and the demo.

    pri, sec = start_pair(guest_args, delay_ms=300)

Both VMs get the same guest arguments; the secondary listens for the
migration on a unix socket in its temp dir.  start_pair() returns once both
sides are in COLO (migration status 'colo' on the primary, COLO mode
'secondary' on the secondary).  The caller shuts both VMs down.
"""

import socket

from colo_vm import Vm, guest_files

CAPS = [{"capability": "x-colo", "state": True},
        {"capability": "events", "state": True}]


def bootsect_guest_args(mem_mb=128):
    """The tiny boot-sector guest: keeps dirtying RAM, prints 'B' per pass."""
    return ["-M", "pc", "-m", str(mem_mb), "-nic", "none",
            "-drive", "file=%s,format=raw,snapshot=on,if=ide" % guest_files()["bootsect"]]


def linux_guest_args(mem_mb=256, *append):
    """The Linux test guest without a NIC; @append: extra kernel options.
    no_timer_check: on a loaded host a TCG guest can fail the kernel's
    check that the PIT reaches the IO-APIC, and then stall in its
    fallbacks (seen: no output for 180 s after "MP-BIOS bug: 8254 timer
    not connected to IO-APIC")."""
    g = guest_files()
    return ["-M", "pc", "-m", str(mem_mb), "-nic", "none",
            "-kernel", g["vmlinuz"], "-initrd", g["initrd"],
            "-append", " ".join(("console=ttyS0", "quiet", "no_timer_check")
                                + append)]


def loopback_tcp_uri():
    """A migration address on a free loopback TCP port: the channel as
    between two hosts (TCP), not a unix socket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "tcp:127.0.0.1:%d" % s.getsockname()[1]


def colo_status(vm):
    return vm.cmd("query-colo-status")


def checkpoints(vm):
    return colo_status(vm).get("checkpoints", 0)


def start_pair(guest_args, delay_ms=300, timeout=180, extra_caps=(),
               primary_extra=(), secondary_extra=(), proxy=None,
               primary_env=None, secondary_env=None, uri=None):
    """proxy(secondary_socket_path) -> path the primary should connect to
    instead (for tests that tamper with the stream).  *_env: QEMU's
    environment (e.g. FaultPoints.env()).  uri: the migration channel's
    address (e.g. "tcp:127.0.0.1:PORT") instead of a unix socket."""
    if uri and proxy:
        raise ValueError("start_pair: proxy works on the unix socket only, not with uri")
    pri = Vm(list(guest_args) + list(primary_extra), name="primary",
             env=primary_env)
    sec = Vm(list(guest_args) + list(secondary_extra) + ["-incoming", "defer"],
             name="secondary", env=secondary_env)
    try:
        pri.start()
        sec.start()
        for vm in (pri, sec):
            vm.cmd("migrate-set-capabilities", capabilities=CAPS + list(extra_caps))
        # Local socket: no bandwidth cap; a guest that dirties RAM fast must
        # still converge under TCG.
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": delay_ms,
                                             "max-bandwidth": 8 << 30,
                                             "downtime-limit": 2000})
        if uri:
            sec.cmd("migrate-incoming", uri=uri)
            pri.cmd("migrate", uri=uri)
        else:
            sec_path = sec.path("migrate.sock")
            sec.cmd("migrate-incoming", uri="unix:" + sec_path)
            pri.cmd("migrate", uri="unix:" + (proxy(sec_path) if proxy else sec_path))
        pri.wait_for(lambda: pri.cmd("query-migrate").get("status") == "colo", timeout,
                     "primary migration status 'colo'")
        sec.wait_for(lambda: colo_status(sec)["mode"] == "secondary", timeout,
                     "secondary in COLO mode")
        pri.wait_for(lambda: colo_status(pri)["mode"] == "primary", timeout,
                     "primary in COLO mode")
    except BaseException:
        for vm in (pri, sec):
            vm.shutdown()
        raise
    return pri, sec


def wait_checkpoints(vm, n, timeout=120):
    """Wait until vm has completed at least n checkpoints; return the count."""
    return vm.wait_for(lambda: checkpoints(vm) >= n and checkpoints(vm), timeout,
                       "%d checkpoints on %s" % (n, vm.name))
