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
     stays protected through the reboot; a new connection that no
     checkpoint covers yet, then as 1
  8  a vCPU-heavy guest (colo.burn: one busy loop per vCPU): as 2
  9  SIGSTOP the secondary (hung host) while the client floods the guest
     with UDP: the primary's main loop must not block on the mirror to the
     hung secondary; it leaves COLO by itself and runs on

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
from e2e_pair import (DISKS, VARIANTS, Pair, checkpoints, diagnose,  # noqa: E402
                      end_run, open_client, primary_alone, read_records,
                      quiet_checkpoint, reprotect, secondary_failover)

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


# ---- the steps of the scenarios ---------------------------------------------

class Run:
    """One scenario: its topology, pair and client, and what the steps
    found (the survivor, the failure's times, its disk image)."""

    def __init__(self, number, guest):
        self.number = number
        self.guest = guest
        self.topo = Topology()
        self.pair = None
        self.client = None
        self.ck = 0             # checkpoints done before the failure
        self.t_kill = None      # the failure
        self.t_done = None      # the failover sequence done
        self.survivor = None
        self.st = None          # the survivor's query-colo-status
        self.image = None       # the survivor's disk image (DISKS)


def stat(vm, path, name):
    return vm.cmd("qom-get", path=path, property="stat-" + name)


def start_protected(run):
    """A fresh pair of the guest, protected, a client answering, and
    colo-compare really comparing the secondary's output."""
    topo, number = run.topo, run.number
    topo.setup()
    burn = "colo.burn=%d" % run.guest.smp if number == 8 else ""
    run.pair = pair = Pair(topo, append=burn, guest=run.guest)
    t0 = time.monotonic()
    pair.start()
    pri, sec = pair.pri, pair.sec
    for vm, ns in ((pri, topo.pri), (sec, topo.sec)):
        # the Vm prefix put QEMU itself (same pid) in its host namespace
        assert (os.stat("/proc/%d/ns/net" % vm.proc.pid).st_ino ==
                os.stat("/run/netns/" + ns).st_ino), "%s not in %s" % (vm.name, ns)
    log("scenario %d: guest service up, then pair protected, after %.1fs"
        % (number, time.monotonic() - t0))
    run.client = client = open_client(topo)
    # protection is real: checkpoints happen with the connection open
    c0, t_c0 = checkpoints(pri), time.monotonic()
    pri.wait_for(lambda: checkpoints(pri) >= c0 + 4, 60, "four more checkpoints")
    client.wait_answers(client.answers() + 5, 120)
    run.ck = ck = checkpoints(pri)
    log("scenario %d: %d answers, %d checkpoints (%.1f/s with the client "
        "running), guest MAC on switch port %s"
        % (number, client.answers(), ck, (ck - c0) / (time.monotonic() - t_c0),
           topo.port_of_guest()))
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


def reset_and_reconnect(run):
    """Scenario 7's reboot under COLO, then a new connection that no
    checkpoint covers when the primary dies.  Each rebooted guest drew its
    own secrets for TCP initial sequence numbers and timestamp offsets
    (Linux draws them at the first connection), so the secondary's copy of
    that connection numbers and stamps its segments its own way: the
    survivor serves it only if its rewriter translates both."""
    pri = run.pair.pri
    reset_during_colo(pri, run.pair.sec, run.client)
    for attempt in range(5):
        quiet_checkpoint(pri)
        c1 = checkpoints(pri)
        run.client = open_client(run.topo)
        # the secondary's rebooted guest answers too: its output reaches
        # the compare (a secondary NIC left broken by the reboot sent
        # nothing)
        s0 = stat(pri, "/objects/comp0", "secondary-packets")
        run.client.wait_answers(run.client.answers() + 5, 120)
        pri.wait_for(lambda: stat(pri, "/objects/comp0",
                                  "secondary-packets") > s0,
                     60, "output from the secondary's rebooted guest")
        if checkpoints(pri) == c1:
            break
        # a checkpoint covered the new connection: open another one
        log("scenario 7: attempt %d: a checkpoint after the new connection "
            "(mismatches non-IP %d); again" % (
                attempt, stat(pri, "/objects/comp0", "mismatches-non-ip")))
        run.client.stop()
        run.client.close()
    else:
        raise AssertionError("no connection after the reboot without a "
                             "checkpoint after it")
    log("scenario 7: guest reset and rebooted under COLO; %d checkpoints; "
        "a new connection answers, none since" % checkpoints(pri))


def demo_before_failure(run):
    if DEMO:
        pri = run.pair.pri
        demo_progress(pri, run.client, 3)
        log("now killing the primary QEMU (pid %d) with SIGKILL, as if its host "
            "died" % pri.proc.pid)


def fail_primary(run, in_checkpoint=False, hang=False):
    """kill -9 the primary (during a checkpoint), or SIGSTOP it (a hung
    host); the documented failover on the secondary."""
    topo, pri, sec = run.topo, run.pair.pri, run.pair.sec
    demo_before_failure(run)
    if in_checkpoint:
        sec.wait_for(lambda: sec.cmd("query-status")["status"] == "colo",
                     60, "a checkpoint in flight (run state 'colo')",
                     interval=0.005)
        log("scenario %d: a checkpoint is in flight (secondary run state "
            "'colo'): kill" % run.number)
    run.t_kill = time.monotonic()
    if hang:
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
    run.t_done = time.monotonic()
    run.survivor = sec
    wait_for(lambda: topo.port_of_guest() == "to-sec", 30,
             "the switch to learn the guest on to-sec")


def fail_secondary(run):
    """kill -9 the secondary: the primary leaves COLO by itself."""
    pri, sec = run.pair.pri, run.pair.sec
    demo_before_failure(run)
    run.t_kill = time.monotonic()
    sec.kill(signal.SIGKILL)
    sec.wait_exit(30)
    ev = pri.wait_event("COLO_EXIT", 60)
    run.t_done = time.monotonic()
    assert ev["data"]["mode"] == "primary", ev
    primary_alone(pri)
    run.survivor = pri


def fail_secondary_hung_flooded(run):
    """SIGSTOP the secondary, then 40 MB of UDP from the client to the
    guest: every frame is mirrored to the secondary, which reads none.  The
    primary copied each with a blocking write, so its main loop froze once
    the socket was full (QMP too); now what the mirror cannot send is lost
    (beyond a bound) and the primary leaves COLO at the peer timeout."""
    topo, pri, sec = run.topo, run.pair.pri, run.pair.sec
    demo_before_failure(run)
    run.t_kill = time.monotonic()
    sec.kill(signal.SIGSTOP)
    sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sent = 0
        while sent < 40 << 20:
            try:
                sent += sock.sendto(b"f" * 1400, (GUEST_IP, 9))
            except BlockingIOError:
                time.sleep(0.001)
    finally:
        sock.close()
    try:
        pri.cmd("query-status", _timeout=30)
    except TimeoutError:
        raise AssertionError("the primary's main loop is stuck after a flood "
                             "while the secondary hangs (QMP does not answer)")
    ev = pri.wait_event("COLO_EXIT", 120)
    run.t_done = time.monotonic()
    assert ev["data"]["mode"] == "primary", ev
    log("scenario %d: %d MB of UDP while the secondary hung; the primary "
        "answered QMP and left COLO %.1f s after the stop"
        % (run.number, sent >> 20, run.t_done - run.t_kill))
    primary_alone(pri)
    sec.kill(signal.SIGKILL)            # fencing the hung host
    sec.wait_exit(30)
    run.survivor = pri


def survivor_serves(run, fence=False):
    """The client's connection goes on with the survivor, out of COLO;
    @fence: the hung primary is killed."""
    client, survivor, pair = run.client, run.survivor, run.pair
    n = client.answers()
    if DEMO:
        log("the switch now sends the guest's traffic to port %s"
            % run.topo.port_of_guest())
        for k in (5, 10, 20):
            client.wait_answers(n + k, 180)
            log("the survivor serves: client at %d answers, same connection, "
                "no error" % client.answers())
    client.wait_answers(n + 20, 180)
    run.st = survivor.cmd("query-colo-status")
    assert run.st["mode"] == "none", run.st
    if fence:
        pair.pri.kill(signal.SIGKILL)    # fencing the hung host
        pair.pri.wait_exit(30)
    run.image = DISKS and pair.disk("secondary.raw" if survivor is pair.sec
                                    else "primary.raw")


def reprotect_and_fail_survivor(run):
    """Scenarios 5 and 6: protection resumed with a fresh secondary, then
    the survivor's host dies in turn and the new secondary takes over."""
    topo, pair, client, survivor = run.topo, run.pair, run.client, run.survivor
    number = run.number
    f = client.figures(run.t_kill)
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
    run.t_kill = time.monotonic()
    survivor.kill(signal.SIGKILL)
    survivor.wait_exit(30)
    new.wait_for(lambda: new.cmd("query-colo-status")["reason"] == "error",
                 60, "the new secondary to notice")
    secondary_failover(new)
    run.t_done = time.monotonic()
    port = "to-pri" if survivor is pair.sec else "to-sec"
    wait_for(lambda: topo.port_of_guest() == port, 30,
             "the switch to learn the guest on %s" % port)
    n = client.answers()
    client.wait_answers(n + 20, 180)
    run.st = new.cmd("query-colo-status")
    assert run.st["mode"] == "none", run.st
    run.survivor = new
    if DISKS:
        run.image = os.path.join(pair.new_dir, "secondary.raw")


def connection_and_disk_intact(run):
    """The figures; the connection is still open (a last request on it, by
    hand), and every answer is a record on the survivor's disk."""
    client, pair, number = run.client, run.pair, run.number
    client.stop()
    f = client.figures(run.t_kill)
    log("scenario %d: failover sequence took %.2fs after the failure; "
        "first answer from the survivor %.2fs after the failure; "
        "%d checkpoints; longest request latency %.2fs, longest gap between "
        "answers %.2fs, median latency %.1f ms; %d answers in all, all right"
        % (number, run.t_done - run.t_kill, f["first_answer_s"],
           run.st.get("checkpoints", run.ck), f["max_stall_s"], f["max_gap_s"],
           f["median_latency_ms"], f["answers"]))
    for vm in (pair.pri, pair.sec, pair.new):
        for line in (vm.qemu_log() if vm else "").splitlines():
            log("%s QEMU said: %s" % (vm.name, line))
    last = client.last_request()
    if DISKS:
        run.survivor.cmd("quit")
        run.survivor.wait_exit(30)
        checked = read_records(run.image, client.base + 1, last)
        log("scenario %d: %d acknowledged records (%d..%d) on the survivor's "
            "disk image %s" % (number, checked, client.base + 1, last,
                               os.path.basename(run.image)))


# ---- the scenarios ------------------------------------------------------------

def scenario_1(run):
    start_protected(run)
    fail_primary(run)
    survivor_serves(run)
    connection_and_disk_intact(run)


def scenario_2(run):
    start_protected(run)
    fail_primary(run, in_checkpoint=True)
    survivor_serves(run)
    connection_and_disk_intact(run)


def scenario_3(run):
    start_protected(run)
    fail_secondary(run)
    survivor_serves(run)
    connection_and_disk_intact(run)


def scenario_4(run):
    start_protected(run)
    fail_primary(run, hang=True)
    survivor_serves(run, fence=True)
    connection_and_disk_intact(run)


def scenario_5(run):
    start_protected(run)
    fail_primary(run)
    survivor_serves(run)
    reprotect_and_fail_survivor(run)
    connection_and_disk_intact(run)


def scenario_6(run):
    start_protected(run)
    fail_secondary(run)
    survivor_serves(run)
    reprotect_and_fail_survivor(run)
    connection_and_disk_intact(run)


def scenario_7(run):
    start_protected(run)
    reset_and_reconnect(run)
    fail_primary(run)
    survivor_serves(run)
    connection_and_disk_intact(run)


def scenario_8(run):
    start_protected(run)
    fail_primary(run, in_checkpoint=True)
    survivor_serves(run)
    connection_and_disk_intact(run)


def scenario_9(run):
    start_protected(run)
    fail_secondary_hung_flooded(run)
    survivor_serves(run)
    connection_and_disk_intact(run)


SCENARIOS = {1: scenario_1, 2: scenario_2, 3: scenario_3, 4: scenario_4,
             5: scenario_5, 6: scenario_6, 7: scenario_7, 8: scenario_8,
             9: scenario_9}


def run_scenario(number, guest):
    run = Run(number, guest)
    try:
        SCENARIOS[number](run)
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose(run.topo, run.pair,
                                                     run.client))) from e
    finally:
        end_run(run.topo, run.client, run.pair and run.pair.stop)
        assert not (run.pair and run.pair.disk_dir and
                    os.path.exists(run.pair.disk_dir))


NAMES = {1: "kill -9 the primary while idle; the secondary takes over",
         2: "kill -9 the primary during a checkpoint; the secondary takes over",
         3: "kill -9 the secondary; the primary runs on alone",
         4: "SIGSTOP the primary (hung host); the secondary takes over",
         5: "as 1, then protection resumed with a fresh secondary and the "
            "survivor killed in turn",
         6: "as 3, then protection resumed with a fresh secondary and the "
            "primary killed in turn",
         7: "guest reset during COLO, the pair stays protected through the "
            "reboot; a new connection, then kill -9 the primary before the "
            "next checkpoint",
         8: "vCPU-heavy guest (a busy loop per vCPU); kill -9 the primary "
            "during a checkpoint",
         9: "SIGSTOP the secondary (hung host) while the client floods the "
            "guest; the primary runs on alone"}


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
