"""One fault trial of a protected pair, for test_faults.py and soak.py.

    case = Case("kill", "primary", "before-received")
    run_trial(case, logdir=None)        # raises AssertionError on a failure

A trial: a fresh topology and pair (e2e_pair.py, the documented procedure)
whose guest answers every request with a line whose length differs between
the two VMs (colo.vary=1, tests/colo/guest/build-guest.sh), so that every
answer is a mismatch and reaches the client only once a checkpoint covers
it; the guest writes each request's record to its disk before answering
(colo.records); or, for Case(identical=True), a guest whose answers do
not differ.  The client (client.py) holds one connection.
Then the fault of the case:

  kill    SIGKILL of one side (its host dies)
  stop    SIGSTOP of one side (its host hangs)
  link    the COLO link cut (ip link set colo0 down, both ends lose carrier)

either "idle" (no checkpoint in flight: both guests running) or while the
side's COLO thread stands at a fault injection point (migration/colo-fault.h,
tests/colo/lib/colo_fault.py): the point is reached, the fault is injected
while the thread waits there.  The point may be the other side's (the
primary killed while the secondary stands at one), or the fault may come a
few ms after the point is let go (Case's at and after_s).  Then the
documented recovery:

  the primary lost (killed, or hung)  failover on the secondary
                                      (secondary_failover); a hung primary
                                      is then fenced (SIGKILL, never resumed)
  the secondary lost, or the link     the primary leaves COLO by itself
                                      (COLO_EXIT, reason error, within the
                                      peer timeout) and runs alone
                                      (primary_alone); the other is fenced
                                      after showing it does not serve: a
                                      hung secondary is resumed (SIGCONT)
                                      and must stop its guest and wait
                                      (reason error, mode secondary, guest
                                      not running); a secondary cut off
                                      must still be a secondary; then
                                      SIGKILL

and the checks: the survivor keeps serving (more answers on the same
connection, then one more request by hand), every line the client read was
"<n> req-k <pad>" with n going up by one (no torn, lost or duplicated
line), the switch sends the guest's traffic to the survivor's port only,
the other QEMU is gone (never two VMs serving), and every acknowledged
record is on the survivor's disk image.

With logdir set, a failed trial leaves there: both QEMU logs and consoles,
the client's transcript, what the network and the VMs said (diagnose()) and
the error.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_fault import FaultPoints  # noqa: E402
from colo_vm import wait_for  # noqa: E402
from topology import GUEST_IP, Topology  # noqa: E402
from client import Client  # noqa: E402
from e2e_pair import (DISKS, PORT, Pair, checkpoints, diagnose,  # noqa: E402
                      end_run, primary_alone, read_records, secondary_failover)

# Every wait on the peer during a checkpoint gives up after this much time
# without progress (x-colo-peer-timeout; the default is 15 s): how long the
# primary takes to notice a hung secondary or a cut link.
PEER_TIMEOUT_MS = int(os.environ.get("SOAK_PEER_TIMEOUT_MS", "5000"))
# answers on the survivor after the failure, before the last checks
ANSWERS_AFTER = int(os.environ.get("SOAK_ANSWERS_AFTER", "10"))

POINTS = {
    "primary": ["after-stop", "after-compares-told", "after-device-state",
                "before-received", "after-received", "before-loaded"],
    "secondary": ["after-stop", "after-device-state", "before-received",
                  "before-loaded"],
}


class Case:
    """fault: kill, stop or link; side: primary or secondary (for link: the
    side whose point times the cut, or None); point: a fault point, or None
    (idle); at: the side whose COLO thread stands at that point when the
    fault comes (default: side itself; the other side is let go on at once
    after the fault); after_s: the fault comes this long after the point
    is let go, somewhere in the rest of the checkpoint (both sides go on);
    identical: both guests answer alike (no colo.vary), so answers are
    released as they match, not only by checkpoints."""

    def __init__(self, fault, side=None, point=None, at=None, after_s=None,
                 identical=False):
        assert fault in ("kill", "stop", "link")
        at = at or side
        assert point is None or point in POINTS[at]
        assert after_s is None or point
        self.fault, self.side, self.point = fault, side, point
        self.at, self.after_s, self.identical = at, after_s, identical

    @property
    def name(self):
        what = {"kill": "kill -9", "stop": "SIGSTOP", "link": "link cut"}[self.fault]
        if self.fault != "link":
            what += " " + self.side
        if self.point:
            what = "%s %s %s%s" % (
                what, "%g ms after" % (self.after_s * 1000)
                if self.after_s is not None else "at",
                "" if self.at == self.side and self.fault != "link"
                else self.at + " ", self.point)
        else:
            what += " idle"
        return what + (", identical guests" if self.identical else "")

    @property
    def slug(self):
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")

    def __repr__(self):
        return "Case(%r)" % self.name


def all_cases():
    """The soak's cases: {kill, stop} x {primary, secondary} x {idle, each
    point of that side}, and the link cut idle and during a checkpoint."""
    cases = []
    for fault in ("kill", "stop"):
        for side in ("primary", "secondary"):
            for point in [None] + POINTS[side]:
                cases.append(Case(fault, side, point))
    cases.append(Case("link"))
    cases.append(Case("link", "primary", "before-received"))
    # the primary dies while the secondary takes the checkpoint (e2e
    # scenario 2's kill), with answers released as they match
    for point in POINTS["secondary"]:
        cases.append(Case("kill", "primary", point, at="secondary",
                          identical=True))
    for after_s in (0.005, 0.015, 0.03):
        cases.append(Case("kill", "primary", "after-stop", after_s=after_s,
                          identical=True))
    return cases


class PointHolder:
    """Answers QEMU's fault point reports on a thread of its own: lets every
    report go on at once until arm(), then holds the next one (QEMU's COLO
    thread waits there) and hands it to wait_hit().  QMP stays with the
    test's thread."""

    def __init__(self, points, point, mode):
        self.points, self.point, self.mode = points, point, mode
        self.cond = threading.Condition()
        self.armed = False
        self.hit = None
        self.error = None
        self.passed = 0             # reports let go before arm()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="fault-points",
                                       daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            with self.cond:
                if self._stop:
                    return
                if self.hit:
                    # held: the test decides (rearm() or the end)
                    self.cond.wait(0.5)
                    continue
            try:
                hit = self.points.wait(self.point, timeout=0.5, mode=self.mode)
            except TimeoutError:
                continue
            except (EOFError, OSError) as e:   # QEMU gone
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
                return
            with self.cond:
                if self.armed and not self._stop:
                    self.hit = hit
                    self.armed = False
                    self.cond.notify_all()
                    continue
                self.passed += 1
            self.points.release()

    def arm(self):
        with self.cond:
            self.armed = True

    def wait_hit(self, timeout):
        with self.cond:
            ok = self.cond.wait_for(lambda: self.hit or self.error, timeout)
            if self.hit:
                return self.hit
            raise TimeoutError("fault point %s (%s) not reached within %gs%s"
                               % (self.point, self.mode, timeout,
                                  ": %s" % self.error if ok else ""))

    def rearm(self):
        """Let the held report go and hold the next one."""
        with self.cond:
            self.points.release()
            self.hit = None
            self.armed = True
            self.cond.notify_all()

    def stop(self):
        """Stop answering; a report held stays held (until points.close())."""
        with self.cond:
            self._stop = True
            self.cond.notify_all()
        self.thread.join(5)


def stat(vm, name):
    return vm.cmd("qom-get", path="/objects/comp0", property="stat-" + name)


def run_state(vm):
    return vm.cmd("query-status")["status"]


def save_logs(d, topo, pair, client, error):
    """A failed trial's logs into directory d (before the VMs go)."""
    os.makedirs(d, exist_ok=True)

    def put(name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    put("error.txt", "%s\n" % error)
    # first, where a live QEMU stands (a hang shows in its threads' stacks)
    for vm in (pair.pri, pair.sec) if pair else ():
        if vm.is_running():
            r = subprocess.run(["timeout", "60", "gdb", "-p", str(vm.proc.pid),
                                "-batch", "-ex", "thread apply all bt"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            put("%s-stacks.txt" % vm.name, r.stdout.decode(errors="replace"))
    try:
        put("diagnose.txt", diagnose(topo, pair, client, qmp_timeout=10))
    except Exception as e:
        put("diagnose.txt", "diagnose failed: %s\n" % e)
    if client:
        client.write_transcript(os.path.join(d, "client.log"))
    for vm in (pair.pri, pair.sec) if pair else ():
        put("%s-qemu.log" % vm.name, vm.qemu_log())
        put("%s-console.log" % vm.name, vm.serial_output())


def output_commit_check(pair, client, holder, log):
    """The primary stands at before-received (the checkpoint is sent, the
    secondary's RECEIVED not yet read) or after-received (RECEIVED read,
    its compares not yet told to release).  Output this checkpoint covers
    must not have reached the client.  On a checkpoint taken with an answer
    outstanding (up to 5 tries for one the compare holds the answer of: a
    periodic checkpoint may come before the guest answered), wait until the
    secondary has applied it (its run state 'running' again: long after a
    released packet would have crossed the switch); the client must still
    be waiting for that answer.  Then, not client-visible: the compare must
    have held the answer until now (QEMU's net queue does not send while
    the primary's guest is stopped, so an answer the compare released too
    early would still not reach the client in this wiring)."""
    pri, sec = pair.pri, pair.sec
    for attempt in range(5):
        while True:
            with client.lock:
                answered = len(client.records)
                outstanding = (client.transcript and client.transcript[-1][1] == ">")
            if outstanding:
                break
            holder.rearm()
            holder.wait_hit(60)
        held = stat(pri, "queue-depth-primary")
        if held > 0:
            break
        log("%s of checkpoint %d: the client waits, the compare holds "
            "nothing%s" % (holder.point, holder.hit[2], "" if attempt == 4
                           else ": next checkpoint"))
        if attempt < 4:
            holder.rearm()
            holder.wait_hit(60)
    seq = holder.hit[2]
    sec.wait_for(lambda: sec.cmd("query-colo-status").get("checkpoints", 0) >= seq
                 and run_state(sec) == "running", 60,
                 "the secondary to apply checkpoint %d" % seq)
    with client.lock:
        now = len(client.records)
        last = client.transcript[-1]
    assert now == answered and last[1] == ">", (
        "output commit: the client got %d answer(s) (last line %r) while the "
        "primary stood at %s of checkpoint %d"
        % (now - answered, last[2], holder.point, seq))
    assert run_state(pri) != "running", (
        "the primary's guest runs at %s" % holder.point)
    log("output commit: at %s of checkpoint %d the client waits for its "
        "answer, also once the secondary applied the checkpoint; the compare "
        "holds %d packet(s)" % (holder.point, seq, held))
    assert held > 0, (
        "output commit (compare): in 5 checkpoints with an answer outstanding "
        "the compare held nothing at %s: it released the answers before it "
        "was told (the stopped primary's net queue kept them from the "
        "client)" % holder.point)


def run_trial(case, logdir=None, log=lambda msg: None, suffix=None,
              commit_check=False):
    """One trial of case; raises AssertionError (with what it saw) on a
    failure.  commit_check: with a kill of the primary at before-received,
    check first that the held checkpoint's output did not reach the client
    (output_commit_check)."""
    topo = Topology(suffix)
    pair = client = points = holder = None
    victim = survivor = None

    def let_go():
        """Hold no fault point any more: a COLO thread held at one goes on,
        and reports no more points."""
        if holder:
            holder.stop()
        if points:
            points.close()
    try:
        topo.setup()
        env = {}
        if case.point:
            points = FaultPoints()
            env[case.at] = points.env(case.point)
        pair = Pair(topo, append="" if case.identical else "colo.vary=1",
                    pri_env=env.get("primary"),
                    sec_env=env.get("secondary"),
                    qemu_args=["-global", "migration.x-colo-peer-timeout=%d"
                               % PEER_TIMEOUT_MS])
        if points:
            holder = PointHolder(points, case.point, case.at)
        t0 = time.monotonic()
        pair.start()
        pri, sec = pair.pri, pair.sec
        sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
        client = Client(sock, padded=not case.identical)
        client.connect((GUEST_IP, PORT), 60)
        client.start()
        client.wait_answers(5, 120)
        c0 = checkpoints(pri)
        client.wait_answers(client.answers() + 3, 120)
        mism = stat(pri, "mismatches-tcp")
        if case.identical:
            # the answers are compared, and released as they match
            compared = stat(pri, "packets-compared")
            assert compared > 0 and stat(pri, "secondary-packets") > 0, (
                "colo-compare compared nothing (%d packets compared)" % compared)
        else:
            # the answers really differ: each is a mismatch, each a checkpoint
            assert mism > 0 and checkpoints(pri) > c0, (
                "the answers do not differ between the VMs (TCP mismatches "
                "%d, checkpoints %d -> %d): is the guest built with "
                "colo.vary?" % (mism, c0, checkpoints(pri)))
        log("%s: protected after %.1fs; %d answers, %d checkpoints, %d TCP "
            "mismatches" % (case.name, time.monotonic() - t0, client.answers(),
                            checkpoints(pri), mism))

        # ---- the fault -------------------------------------------------
        if case.point:
            holder.arm()
            hit = holder.wait_hit(120)
            log("%s QEMU at %s of checkpoint %d" % hit)
            if commit_check:
                output_commit_check(pair, client, holder, log)
            if case.after_s is not None:
                let_go()
                time.sleep(case.after_s)    # the fault's moment, not a wait
        else:
            wait_for(lambda: run_state(sec) == "running" and run_state(pri) == "running",
                     60, "both guests running (no checkpoint in flight)",
                     interval=0.01)
        t_fault = time.monotonic()
        answers_at_fault = client.answers()
        if case.fault == "link":
            topo.ip(topo.pri, "link", "set", "colo0", "down")
            let_go()            # the primary goes on, into the cut link
        else:
            victim = pri if case.side == "primary" else sec
            victim.kill(signal.SIGKILL if case.fault == "kill" else signal.SIGSTOP)
            if case.fault == "kill":
                victim.wait_exit(30)
            if case.at != case.side:
                let_go()        # the other side goes on, into the fault

        # ---- the documented recovery ---------------------------------------
        if victim is pri:
            if case.fault == "kill":
                sec.wait_for(lambda: sec.cmd("query-colo-status")["reason"] == "error",
                             60, "the secondary to notice the primary's death")
            # (a hung primary is not noticed: the operator knows)
            secondary_failover(sec)
            survivor = sec
            if case.fault == "stop":
                pri.kill(signal.SIGKILL)        # fencing, never resumed
                pri.wait_exit(30)
            wait_for(lambda: topo.port_of_guest() == "to-sec", 30,
                     "the switch to learn the guest on to-sec")
        else:
            try:
                ev = pri.wait_event("COLO_EXIT", PEER_TIMEOUT_MS / 1000 + 30)
            except TimeoutError as e:
                said = pri.qemu_log().strip().splitlines()
                raise AssertionError(
                    "the primary did not leave COLO %.0fs after the fault "
                    "(its QEMU said: %r): a survivor that stops serving (see "
                    "primary-stacks.txt for where it stands): %s"
                    % (time.monotonic() - t_fault, said[-1:], e)) from e
            assert ev["data"]["mode"] == "primary", ev
            assert ev["data"]["reason"] == "error", ev
            t_exit = time.monotonic()
            primary_alone(pri)
            survivor = pri
            victim = sec
            if case.fault == "stop":
                # the hung secondary wakes up: it must not serve, but stop
                # its guest and wait for a decision
                let_go()
                sec.kill(signal.SIGCONT)
                sec.wait_for(lambda: sec.cmd("query-colo-status")["reason"] == "error",
                             60, "the resumed secondary to notice the primary left")
                sec.wait_for(lambda: run_state(sec) != "running", 30,
                             "the resumed secondary's guest to stop")
            if case.fault != "kill":
                # a cut-off secondary idle in COLO may not even notice; its
                # guest's output goes to its redirector, never to a client
                st = sec.cmd("query-colo-status")
                assert st["mode"] == "secondary", (
                    "the %s secondary left COLO by itself: %s" % (case.fault, st))
                assert topo.port_of_guest() == "to-pri", (
                    "the switch learnt the guest on %s" % topo.port_of_guest())
                log("%s: the primary left COLO %.1fs after the fault; the other "
                    "is still a secondary (run state %s), fenced"
                    % (case.name, t_exit - t_fault, run_state(sec)))
                sec.kill(signal.SIGKILL)         # fencing
                sec.wait_exit(30)
        let_go()

        # ---- the survivor serves, the stream is well formed ------------------
        n = client.answers()
        client.wait_answers(n + ANSWERS_AFTER, 180)
        st = survivor.cmd("query-colo-status")
        assert st["mode"] == "none", st
        client.stop()
        f = client.figures(t_fault)
        last = client.request_by_hand("last", 60)
        assert not victim.is_running(), "two QEMUs alive"
        port = "to-sec" if survivor is sec else "to-pri"
        assert topo.port_of_guest() == port, (
            "the switch learnt the guest on %s" % topo.port_of_guest())
        checked = 0
        if DISKS:
            image = pair.disk("secondary.raw" if survivor is sec else "primary.raw")
            survivor.cmd("quit")
            survivor.wait_exit(30)
            checked = read_records(image, client.base + 1, last)
        log("%s: %d answers before the fault, %d in all, first from the "
            "survivor %.2fs after the fault; %d records on the survivor's disk"
            % (case.name, answers_at_fault, f["answers"] + 1,
               f["first_answer_s"] or -1, checked))
    except Exception as e:
        msg = "%s: %s" % (type(e).__name__, e)
        if logdir:
            try:
                save_logs(logdir, topo, pair, client, msg)
            except Exception as e2:
                msg += " (saving the logs failed: %s)" % e2
        raise AssertionError(msg) from e
    finally:
        let_go()
        end_run(topo, client, pair and pair.stop)
