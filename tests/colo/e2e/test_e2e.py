#!/usr/bin/env python3
"""End to end: a COLO pair of Linux guests on a real (namespaced) network, a
client with one TCP connection, and a host that dies.

The topology (topology.py) has a client namespace, a switch, and two "host"
namespaces whose VMs use tap devices on the switch (same guest IP and MAC on
both); the COLO link between the hosts carries migration, the proxy chardevs
(TCP) and NBD.  The pair is started with the procedure of
docs/system/qemu-colo.rst ("End-to-end procedure").  For each scenario a
fresh pair is started, the client (client.py) runs requests all along, the
failure is injected, the documented failover sequence is sent, and the test
checks that the client's connection stayed open with every answer right.

Scenarios (TAP line each):
  1  kill -9 the primary while idle, fail over to the secondary
  2  kill -9 the primary during a checkpoint (the secondary's run state is
     'colo'), fail over to the secondary
  3  kill -9 the secondary: the primary leaves COLO by itself and runs on
  4  SIGSTOP the primary (hung host), fail over to the secondary, then the
     hung primary is killed (fencing)
  5, 6  as 1 and 3, then re-protection and the survivor killed in turn
  7  the guest is reset during COLO (system_reset on the primary): the pair
     stays protected through the reboot; a new connection, then as 1
  8  a vCPU-heavy guest (colo.burn: one busy loop per vCPU): as 2

Usage: test_e2e.py [--variant NAME] [scenario numbers...]  (default: all)
       NAME: the guest (e2e_pair.VARIANTS): pc (default), q35-ahci (q35 with
       the replicated disk on its AHCI controller), q35-virtio, smp2 (two
       vCPUs, MTTCG under TCG)
       test_e2e.py --demo [scenario numbers...]  (default: 1) readable
       progress for a human (make demo); same checks, same TAP result lines
Environment: E2E_DISKS=0 runs without disk replication.
"""

import os
import signal
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from topology import GUEST_IP, Topology, missing_requirements  # noqa: E402
from client import Client  # noqa: E402
from e2e_pair import (CAPS, CHECKPOINT_DELAY_MS, DISK_SIZE, DISKS,  # noqa: E402,F401
                      PORT, QEMU_IMG, RECORD, VARIANTS, VNET, Pair, add_primary_proxy,
                      chardevs_connected, checkpoints, diagnose, end_run,
                      guest_args, make_disks, primary_alone, primary_args,
                      primary_disk_args, read_records, reprotect,
                      secondary_args, secondary_disk_args, secondary_failover)

t = Tap()


DEMO = False                    # --demo: readable progress, not TAP comments
START = time.monotonic()


def log(msg):
    if DEMO:
        sys.stdout.write("[%6.1fs] %s\n" % (time.monotonic() - START, msg))
    else:
        sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def demo_progress(pri, client, rounds):
    """--demo only: show checkpoints passing while the client counts."""
    for _ in range(rounds):
        c = checkpoints(pri)
        pri.wait_for(lambda: checkpoints(pri) > c, 60, "a checkpoint")
        recs = client.records[-1:]
        log("protected: checkpoint %d done; client: %d answers on one connection, "
            "last latency %.0f ms" % (checkpoints(pri), client.answers(),
                                      (recs[0][2] - recs[0][1]) * 1000 if recs else 0))


def new_client(topo):
    """A fresh client connection to the guest's service, answering."""
    sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
    client = Client(sock)
    client.connect((GUEST_IP, PORT), 60)
    client.start()
    client.wait_answers(5, 120)
    return sock, client


def reset_during_colo(pri, sec, client):
    """Scenario 7: the guest reboots (system_reset on the primary) while
    protected.  The client's connection dies with the guest's TCP state, so
    it is ended first; the pair must stay in COLO through the reboot, the
    secondary following the primary at each checkpoint."""
    client.stop()
    client.close()
    pri.cmd("system_reset")
    pri.serial_wait("COLO-GUEST: ready", 240)
    c = checkpoints(pri)
    pri.wait_for(lambda: checkpoints(pri) >= c + 2, 120,
                 "two checkpoints after the guest's reboot")
    for vm, mode in ((pri, "primary"), (sec, "secondary")):
        st = vm.cmd("query-colo-status")
        assert st["mode"] == mode, (vm.name, st, vm.qemu_log())


def run_scenario(number, guest):
    topo = Topology()
    pair = None
    client = None
    try:
        topo.setup()
        burn = "colo.burn=%d" % guest.smp if number == 8 else ""
        pair = Pair(topo, append=burn, guest=guest)
        t0 = time.monotonic()
        pair.start()
        pri, sec = pair.pri, pair.sec
        for vm, ns in ((pri, topo.pri), (sec, topo.sec)):
            # the Vm prefix put QEMU itself (same pid) in its host namespace
            assert (os.stat("/proc/%d/ns/net" % vm.proc.pid).st_ino ==
                    os.stat("/run/netns/" + ns).st_ino), "%s not in %s" % (vm.name, ns)
        log("scenario %d: guest service up, then pair protected, after %.1fs"
            % (number, time.monotonic() - t0))
        sock, client = new_client(topo)
        # protection is real: checkpoints happen with the connection open
        c0, t_c0 = checkpoints(pri), time.monotonic()
        pri.wait_for(lambda: checkpoints(pri) >= c0 + 4, 60, "four more checkpoints")
        client.wait_answers(client.answers() + 5, 120)
        ck = checkpoints(pri)
        log("scenario %d: %d answers, %d checkpoints (%.1f/s with the client "
            "running), guest MAC on switch port %s"
            % (number, client.answers(), ck, (ck - c0) / (time.monotonic() - t_c0),
               topo.port_of_guest()))

        stat = lambda vm, path, n: vm.cmd("qom-get", path=path, property="stat-" + n)
        log("scenario %d: colo-compare: %d packets compared, %d TCP and %d non-IP "
            "mismatches; filter-rewriter: %d offsets learned, %d packets rewritten"
            % (number, stat(pri, "/objects/comp0", "packets-compared"),
               stat(pri, "/objects/comp0", "mismatches-tcp"),
               stat(pri, "/objects/comp0", "mismatches-non-ip"),
               stat(sec, "/objects/rew0", "offsets-learned"),
               stat(sec, "/objects/rew0", "rewritten")))
        # protection is real: the secondary runs the same service, and its
        # output reaches colo-compare and matches
        compared = stat(pri, "/objects/comp0", "packets-compared")
        assert compared > 0 and stat(pri, "/objects/comp0", "secondary-packets") > 0, \
            ("the pair is not really protected: colo-compare got no packets from "
             "the secondary (secondary-packets %d, compared %d) although the client "
             "got %d answers" % (stat(pri, "/objects/comp0", "secondary-packets"),
                                 compared, client.answers()))
        if number == 7:
            reset_during_colo(pri, sec, client)
            sock, client = new_client(topo)
            log("scenario 7: guest reset and rebooted under COLO; %d checkpoints; "
                "a new connection answers" % checkpoints(pri))
        if DEMO:
            demo_progress(pri, client, 3)
            log("now killing the primary QEMU (pid %d) with SIGKILL, as if its host "
                "died" % pri.proc.pid)
        kind = {5: 1, 6: 3, 7: 1, 8: 2}.get(number, number)
        if kind in (1, 2, 4):
            if kind == 2:
                sec.wait_for(lambda: sec.cmd("query-status")["status"] == "colo",
                             60, "a checkpoint in flight (run state 'colo')",
                             interval=0.005)
                log("scenario %d: a checkpoint is in flight (secondary run state "
                    "'colo'): kill" % number)
            t_kill = time.monotonic()
            if kind == 4:
                pri.kill(signal.SIGSTOP)
            else:
                pri.kill(signal.SIGKILL)
                pri.wait_exit(30)
                sec.wait_for(lambda: sec.cmd("query-colo-status")["reason"] == "error",
                             60, "the secondary to notice the primary's death")
            if DEMO:
                log("the secondary noticed (query-colo-status: reason 'error', its "
                    "guest waits); failover: x-colo-lost-heartbeat, its filters "
                    "removed, announce-self")
            secondary_failover(sec)
            t_done = time.monotonic()
            survivor = sec
            wait_for(lambda: topo.port_of_guest() == "to-sec", 30,
                     "the switch to learn the guest on to-sec")
        else:
            t_kill = time.monotonic()
            sec.kill(signal.SIGKILL)
            sec.wait_exit(30)
            ev = pri.wait_event("COLO_EXIT", 60)
            t_done = time.monotonic()
            assert ev["data"]["mode"] == "primary", ev
            primary_alone(pri)
            survivor = pri
        n = client.answers()
        if DEMO:
            log("the switch now sends the guest's traffic to port %s"
                % topo.port_of_guest())
            for k in (5, 10, 20):
                client.wait_answers(n + k, 180)
                log("the survivor serves: client at %d answers, same connection, "
                    "no error" % client.answers())
        client.wait_answers(n + 20, 180)
        st = survivor.cmd("query-colo-status")
        assert st["mode"] == "none", st
        if kind == 4:
            pri.kill(signal.SIGKILL)    # fencing the hung host
            pri.wait_exit(30)
        image = DISKS and pair.disk("secondary.raw" if survivor is sec
                                    else "primary.raw")
        if number in (5, 6):
            f = client.figures(t_kill)
            log("scenario %d: first failover: first answer from the survivor %.2fs "
                "after the failure, longest gap %.2fs"
                % (number, f["first_answer_s"], f["max_gap_s"]))
            t_r0 = time.monotonic()
            new = reprotect(topo, pair, survivor)
            t_r1 = time.monotonic()
            client.wait_answers(client.answers() + 10, 120)
            c0 = checkpoints(survivor)
            survivor.wait_for(lambda: checkpoints(survivor) >= c0 + 2, 60,
                              "two checkpoints of the new pair")
            comp = lambda n: stat(survivor, "/objects/comp0", n)
            assert comp("packets-compared") > 0 and comp("secondary-packets") > 0, \
                "the new pair does not compare"
            with client.lock:
                during = [r for r in client.records if r[2] >= t_r0]
            log("scenario %d: re-protected in %.2fs (the guest stopped for the "
                "last disk copy and the COLO start; longest client gap around it "
                "%.2fs); new pair: %d checkpoints, %d packets compared"
                % (number, t_r1 - t_r0,
                   max(b[2] - a[2] for a, b in zip(during, during[1:])),
                   checkpoints(survivor), comp("packets-compared")))
            # the second failure: the survivor's host dies
            t_kill = time.monotonic()
            survivor.kill(signal.SIGKILL)
            survivor.wait_exit(30)
            new.wait_for(lambda: new.cmd("query-colo-status")["reason"] == "error",
                         60, "the new secondary to notice")
            secondary_failover(new)
            t_done = time.monotonic()
            port = "to-pri" if survivor is sec else "to-sec"
            wait_for(lambda: topo.port_of_guest() == port, 30,
                     "the switch to learn the guest on %s" % port)
            n = client.answers()
            client.wait_answers(n + 20, 180)
            st = new.cmd("query-colo-status")
            assert st["mode"] == "none", st
            survivor = new
            if DISKS:
                image = os.path.join(pair.new_dir, "secondary.raw")
        client.stop()
        f = client.figures(t_kill)
        log("scenario %d: failover sequence took %.2fs after the failure; "
            "first answer from the survivor %.2fs after the failure; "
            "%d checkpoints; longest request latency %.2fs, longest gap between "
            "answers %.2fs, median latency %.1f ms; %d answers in all, all right"
            % (number, t_done - t_kill, f["first_answer_s"], st.get("checkpoints", ck),
               f["max_stall_s"], f["max_gap_s"], f["median_latency_ms"],
               f["answers"]))
        for vm in (pri, sec, pair.new):
            for line in (vm.qemu_log() if vm else "").splitlines():
                log("%s QEMU said: %s" % (vm.name, line))
        # the connection is still open: a last request on it, by hand
        sock.settimeout(60)
        sock.sendall(b"last\n")
        buf = b""
        while b"\n" not in buf:
            data = sock.recv(4096)
            assert data, "connection closed"
            buf += data
        assert buf.decode().split() == [str(client.base + f["answers"] + 1), "last"], buf
        if DISKS:
            # every answer the client got is a record on the survivor's disk
            last = client.base + f["answers"] + 1
            survivor.cmd("quit")
            survivor.wait_exit(30)
            checked = read_records(image, client.base + 1, last)
            log("scenario %d: %d acknowledged records (%d..%d) on the survivor's "
                "disk image %s" % (number, checked, client.base + 1, last,
                                   os.path.basename(image)))
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose(topo, pair, client))) from e
    finally:
        end_run(topo, client, pair and pair.stop)
        assert not (pair and pair.disk_dir and os.path.exists(pair.disk_dir))


NAMES = {1: "kill -9 the primary while idle; the secondary takes over",
         2: "kill -9 the primary during a checkpoint; the secondary takes over",
         3: "kill -9 the secondary; the primary runs on alone",
         4: "SIGSTOP the primary (hung host); the secondary takes over",
         5: "as 1, then protection resumed with a fresh secondary and the "
            "survivor killed in turn",
         6: "as 3, then protection resumed with a fresh secondary and the "
            "primary killed in turn",
         7: "guest reset during COLO, the pair stays protected through the "
            "reboot; then kill -9 the primary",
         8: "vCPU-heavy guest (a busy loop per vCPU); kill -9 the primary "
            "during a checkpoint"}


def main():
    global DEMO
    args = sys.argv[1:]
    if args[:1] == ["--demo"]:
        DEMO = True
        args = args[1:] or ["1"]
    variant = "pc"
    if args[:1] == ["--variant"]:
        variant, args = args[1], args[2:]
    guest = VARIANTS[variant]
    wanted = [int(a) for a in args] or sorted(NAMES)
    why = missing_requirements()
    if why is None and not os.path.exists(guest.files()["initrd"]):
        why = "no test guest %s (run make guest)" % guest.files()["initrd"]
    label = "e2e" if variant == "pc" else "e2e %s" % variant
    for n in wanted:
        what = "%s scenario %d: %s; the client's connection survives" % (
            label, n, NAMES[n])
        t.check_unless(why, what, run_scenario, n, guest)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
