#!/usr/bin/env python3
"""A checkpoint releases all the output its primary sent before it stopped.

The primary's guest output reaches colo-compare through a socket chardev
(primary_in), read by colo-compare's iothread.  At a checkpoint the guest
is stopped, so everything it sent is in that socket, but the iothread may
not have read it yet when the checkpoint's release (the flush) runs: with a
pause of about a millisecond, a frame sent just before the stop often was
still there.  Read after the flush, such a frame waits for a copy the
secondary, loaded with a state that already sent it, never sends: in
bench/client.py's http row a fresh connection's SYN-ACK so waited about
1 s (until the client's SYN retransmission), once in about 3000 requests.

Made deterministic with colo-compare's test-only property
x-test-hold-primary-input, which leaves the primary's frames unread in
the socket: the client's request is answered by both guests, the
primary's answer stays in the socket, a checkpoint is forced, and the
answer must reach the client with the hold still on (the checkpoint reads
what the primary sent before releasing).  On the old code it never came.

The other side of the same rule: a checkpoint's release that colo-compare
handles only after the controller stopped waiting for it (5 s, then the
primary runs again) must release nothing, for colo-compare may already
hold output the primary sent after it resumed, which no checkpoint covers
and nobody compared.  x-test-hold-events keeps the release waiting until
the test lifts it; x-test-hold-secondary-input keeps the secondary's copy
of the answer away, so that only a release can let the primary's out.  The
answer may reach the client only after another checkpoint (a STOP of the
primary after the late release): on the old code the late release let it
out at once.

Input at the stop: a netdev of the primary may read one client frame more
after the guest stopped for a checkpoint (before it sees that its NIC
cannot take it); the frame waits in the net layer's queue and reaches the
guest after the checkpoint.  Mirrored at once, it reached the secondary's
guest while that still ran (it stops later), and was lost with the state
the checkpoint's load replaced: a fresh connection's SYN was answered by
the primary alone, and the answer waited for the client's retransmission
(1 s; in bench/client.py's http row about one request in 3000).  Made
deterministic with the controller's fault point after-stop (the primary
waits there, stopped, while the client connects): the client's first SYN
must be answered (its TCPSynRetrans counter does not grow).

Output at the resume: the secondary applies a checkpoint and runs on as
soon as it has sent RECEIVED, while the primary's release (the flush) runs
only once RECEIVED reached it.  What the secondary's guest sends meanwhile
is output of the new checkpoint interval, the copy of what the primary's
guest will send once it runs: a flush that drops it as the secondary's old
output left the primary's copy waiting for nothing, until compare_timeout
and another checkpoint (in bench/bulk.py a stall of about 2 s, once in a
few hundred seconds).  The other way round, what the secondary sent before
its stop but colo-compare reads only after the flush is old output, to be
dropped, not compared with the primary's new output.  Made deterministic
with the controller's fault point after-received (the primary waits there,
stopped, while the secondary's guest pings the client, a ping typed into
the primary's console and given to the secondary by a checkpoint): the
pings must go on without another checkpoint.
"""

import os
import select
import socket
import sys
import threading
import time

os.environ.setdefault("E2E_DISKS", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from tap import Tap  # noqa: E402
from topology import (CLIENT_IP, GUEST_IP, Topology,  # noqa: E402
                      missing_requirements)
from e2e_pair import (PORT, Pair, checkpoints, diagnose, end_run,  # noqa: E402
                      quiet_checkpoint)  # noqa: E402
from colo_fault import FaultPoints  # noqa: E402

t = Tap()
COMP = "/objects/comp0"


def recv_line(sock, timeout):
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\n"):
        data = sock.recv(4096)
        if not data:
            raise AssertionError("connection closed after %r" % buf)
        buf += data
    return buf


def unread(topo, sel):
    """Bytes waiting unread in the primary's established sockets that match
    the ss filter @sel."""
    out = topo.run_in(topo.pri, "ss", "-tnH", "state", "established", sel)
    return sum(int(line.split()[0]) for line in out.splitlines() if line.strip())


def primary_in_unread(topo, pri):
    """Bytes waiting unread in colo-compare's primary_in socket: the client
    end (compare0-0) of the unix connection to compare0's listener.  ss
    shows the client end without a name; its peer is the accepted end,
    which carries the listener's path."""
    path = pri.path("compare0.sock")
    out = topo.run_in(topo.pri, "ss", "-xnH", "state", "established")
    ends = [line.split() for line in out.splitlines() if line.strip()]
    # columns: Netid Recv-Q Send-Q Local-Address Inode Peer-Address Inode
    accepted = [e[4] for e in ends if e[3] == path]
    assert len(accepted) == 1, "compare0's connection: %s" % ends
    client = [int(e[1]) for e in ends if e[6] == accepted[0]]
    assert len(client) == 1, "compare0-0's end: %s" % ends
    return client[0]


def secondary_in_unread(topo):
    """Bytes waiting unread in colo-compare's secondary_in socket (the
    primary's end of the secondary's connection to port 9004)."""
    return unread(topo, "( sport = :9004 )")


def comp_stat(vm, name):
    return vm.cmd("qom-get", path=COMP, property="stat-" + name)


def with_connection(case):
    """A pair with its periodic checkpoints off and a client connection
    that was answered once; then case(topo, pri, sock)."""
    topo = Topology()
    pair = None
    sock = None
    try:
        topo.setup()
        pair = Pair(topo)
        pair.start()
        quiet_checkpoint(pair.pri)
        sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect((GUEST_IP, PORT))
        sock.sendall(b"warm-up\n")
        recv_line(sock, 60)
        case(topo, pair.pri, sock)
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose(topo, pair, None))) from e
    finally:
        if sock:
            sock.close()
        end_run(topo, None, pair and pair.stop)


def case_flush_reads_primary_first(topo, pri, sock):
    pri.cmd("qom-set", path=COMP, property="x-test-hold-primary-input",
            value=True)
    # An answer longer than any frame the guest sends on its own, so
    # that what waits in the socket is known to hold it.
    sock.sendall(b"held-" + b"x" * 1200 + b"\n")
    pri.wait_for(lambda: primary_in_unread(topo, pri) >= 1200, 60,
                 "the primary's answer waiting in primary_in")
    quiet_checkpoint(pri)       # setting the delay again forces one
    t0 = time.monotonic()
    try:
        line = recv_line(sock, 20)
    except socket.timeout:
        raise AssertionError(
            "no answer 20 s after the checkpoint: the primary's answer, "
            "sent before the checkpoint's stop, was not released by it "
            "(%d bytes still unread in primary_in)" % primary_in_unread(topo, pri))
    assert b"held-" in line, "unexpected answer %r" % line[:80]
    print("# answer %.3f s after the checkpoint, with the hold on"
          % (time.monotonic() - t0))
    pri.cmd("qom-set", path=COMP, property="x-test-hold-primary-input",
            value=False)
    sock.sendall(b"after\n")
    assert b"after" in recv_line(sock, 60)


def case_late_release_releases_nothing(topo, pri, sock):
    # A checkpoint whose release colo-compare handles late.
    pri.cmd("qom-set", path=COMP, property="x-test-hold-events", value=True)
    quiet_checkpoint(pri)       # the controller waits 5 s, then resumes
    pri.wait_for(lambda: "did not handle COLO event" in pri.qemu_log(), 30,
                 "the controller's warning that the release came late")

    # Output of the resumed primary, nobody's copy to compare it with.
    pri.cmd("qom-set", path=COMP, property="x-test-hold-secondary-input",
            value=True)
    depth0 = comp_stat(pri, "queue-depth-primary")
    sock.sendall(b"late-" + b"y" * 1200 + b"\n")
    pri.wait_for(lambda: secondary_in_unread(topo) >= 1200, 60,
                 "the secondary's answer waiting in secondary_in")
    pri.wait_for(lambda: primary_in_unread(topo, pri) == 0 and
                 comp_stat(pri, "queue-depth-primary") > depth0, 60,
                 "the primary's answer held by colo-compare")

    pri.clear_events()
    lifted = time.time()
    pri.cmd("qom-set", path=COMP, property="x-test-hold-events", value=False)
    try:
        line = recv_line(sock, 30)
    except socket.timeout:
        raise AssertionError("no answer 30 s after the late release")
    answered = time.time()
    assert b"late-" in line, "unexpected answer %r" % line[:80]

    seen = []

    def stops():
        seen.extend(pri.poll_events())
        return [ev["timestamp"]["seconds"] +
                ev["timestamp"]["microseconds"] / 1e6
                for ev in seen if ev["event"] == "STOP"]

    def stopped_before_answer():
        return any(lifted <= ts <= answered for ts in stops())

    # QEMU stamps an event when it happens and sends it later (the
    # checkpoint holds the main loop): wait a little for it.
    try:
        pri.wait_for(stopped_before_answer, 10, "a STOP before the answer")
    except TimeoutError:
        pass
    assert stopped_before_answer(), (
        "the primary's answer, sent after the checkpoint resumed it and "
        "never compared, reached the client %.3f s after the late "
        "release without another checkpoint (STOPs at %s, lifted at %.3f)"
        % (answered - lifted, stops(), lifted))
    print("# answer %.3f s after the late release, after another "
          "checkpoint" % (answered - lifted))

    pri.cmd("qom-set", path=COMP, property="x-test-hold-secondary-input",
            value=False)
    quiet_checkpoint(pri)       # forget the secondary's stale output
    sock.sendall(b"after\n")
    assert b"after" in recv_line(sock, 60)


def syn_retransmits(topo):
    """The client namespace's count of SYNs sent again (TcpExt)."""
    lines = [line.split() for line in
             topo.run_in(topo.client, "cat", "/proc/net/netstat").splitlines()
             if line.startswith("TcpExt:")]
    return int(lines[1][lines[0].index("TCPSynRetrans")])


class HoldOnce:
    """Lets the primary go on at every fault point @point (FaultPoints.wait()
    releases the previous one) but the first one it reaches after arm():
    there it waits until go()."""

    def __init__(self, points, point):
        self.points = points
        self.point = point
        self.armed = threading.Event()
        self.held = threading.Event()
        self.going = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)

    def _pump(self):
        while not self.done.is_set():
            try:
                self.points.wait(self.point, timeout=1, mode="primary")
            except TimeoutError:
                continue
            if self.armed.is_set() and not self.held.is_set():
                self.held.set()
                self.going.wait()

    def start(self):
        self.thread.start()

    def hold_next_checkpoint(self, pri):
        """Arm, force a checkpoint and wait until the primary waits."""
        self.armed.set()
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 3600000})
        if not self.held.wait(60):
            raise AssertionError("the primary did not reach " + self.point)

    def go(self):
        self.going.set()

    def close(self):
        self.done.set()
        self.going.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.points.close()


def case_input_read_while_stopped():
    topo = Topology()
    points = FaultPoints()
    stop = HoldOnce(points, "after-stop")
    pair = sock = None
    try:
        topo.setup()
        pair = Pair(topo, pri_env=points.env("after-stop"))
        trace = pair.pri.path("trace.log")
        pair.pri.add_args("-trace", "enable=colo_filter_input_held,file=%s" % trace)
        stop.start()
        pair.start()
        quiet_checkpoint(pair.pri)
        pri = pair.pri
        s0 = comp_stat(pri, "secondary-packets")
        retrans0 = syn_retransmits(topo)

        stop.hold_next_checkpoint(pri)
        sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((GUEST_IP, PORT))
        # the primary's tap read the SYN: mirrored now (the secondary's
        # guest answers it) or held until the guest runs (traced)
        pri.wait_for(lambda: comp_stat(pri, "secondary-packets") > s0 or
                     (os.path.exists(trace) and
                      "colo_filter_input_held" in open(trace).read()),
                     60, "the client's SYN read by the stopped primary")
        stop.go()
        _, writable, _ = select.select([], [sock], [], 30)
        assert writable, "no connection 30 s after the checkpoint"
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
        retrans = syn_retransmits(topo) - retrans0
        assert retrans == 0, ("the client sent its SYN %d more time(s): the "
                              "secondary did not answer the first" % retrans)
        sock.setblocking(True)
        sock.sendall(b"after\n")
        assert b"after" in recv_line(sock, 60)
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose(topo, pair, None))) from e
    finally:
        stop.close()
        if sock:
            sock.close()
        end_run(topo, None, pair and pair.stop)


def secondary_bytes_in(topo):
    """Bytes the primary received so far on the secondary's connection to
    colo-compare's secondary_in (port 9004)."""
    out = topo.run_in(topo.pri, "ss", "-tinH", "state", "established",
                      "( sport = :9004 )")
    fields = [f for f in out.split() if f.startswith("bytes_received:")]
    assert len(fields) == 1, "secondary_in's connection: %r" % out
    return int(fields[0].split(":")[1])


def released(pri):
    return comp_stat(pri, "packets-released")


def start_pinging(topo, pri):
    """Both guests ping the client every 50 ms from now on, periodic
    checkpoints off.  Returns the checkpoint count and colo-compare's
    figures of divergence once 40 requests were compared."""
    quiet_checkpoint(pri)
    # Both guests learn the client's address from its request.
    warm = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
    with warm:
        warm.settimeout(60)
        warm.connect((GUEST_IP, PORT))
        warm.sendall(b"warm-up\n")
        recv_line(warm, 60)
    # Typed into the primary's console only: once its first echo request
    # waits in colo-compare, a checkpoint gives the pings to the secondary.
    # Without data (-s 0) they carry no time stamp, so both guests send the
    # same requests: id (the pid) and sequence number.
    depth0 = comp_stat(pri, "queue-depth-primary")
    pri.serial_send("ping -s 0 -i 0.05 %s >/dev/null &" % CLIENT_IP)
    pri.wait_for(lambda: comp_stat(pri, "queue-depth-primary") > depth0,
                 60, "the primary's echo request held by colo-compare")
    quiet_checkpoint(pri)       # both guests ping from here on
    r0 = released(pri)
    pri.wait_for(lambda: released(pri) >= r0 + 40, 60,
                 "40 echo requests compared and released")
    return checkpoints(pri), divergence(pri)


def divergence(pri):
    return {k: comp_stat(pri, k) for k in ("timeouts", "mismatches-icmp")}


def pings_go_on(pri, c0, div0, why):
    """After one more checkpoint, 40 more requests are compared and
    released without another."""
    r1 = released(pri)
    pri.wait_for(lambda: released(pri) >= r1 + 40, 60,
                 "40 more echo requests after the checkpoint")
    div = divergence(pri)
    extra = checkpoints(pri) - c0 - 1
    assert extra == 0 and div == div0, (
        "the pings after the checkpoint took %d checkpoint(s) more "
        "(colo-compare before: %s, after: %s): %s" % (extra, div0, div, why))


def with_pinging_pair(case, hold_at=None):
    """A pair whose guests both ping the client (start_pinging()); then
    case(topo, pri, hold, c0, div0), hold being a HoldOnce at the primary's
    fault point @hold_at (None without one)."""
    topo = Topology()
    points = FaultPoints() if hold_at else None
    hold = HoldOnce(points, hold_at) if hold_at else None
    pair = None
    try:
        topo.setup()
        pair = Pair(topo, pri_env=points and points.env(hold_at))
        if hold:
            hold.start()
        pair.start()
        c0, div0 = start_pinging(topo, pair.pri)
        case(topo, pair.pri, hold, c0, div0)
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose(topo, pair, None))) from e
    finally:
        if hold:
            hold.close()
        end_run(topo, None, pair and pair.stop)


def case_output_before_release(topo, pri, received, c0, div0):
    received.hold_next_checkpoint(pri)
    sent0 = secondary_bytes_in(topo)
    # The secondary runs the checkpoint and pings on: its requests reach
    # colo-compare before the primary's release.
    pri.wait_for(lambda: secondary_bytes_in(topo) >= sent0 + 200, 60,
                 "the secondary's output after the checkpoint")
    received.go()
    pings_go_on(pri, c0, div0,
                "the secondary's output sent before the primary's release "
                "was dropped, and the primary's was compared with the "
                "wrong requests")
    print("# %d of the secondary's frames read before the release were "
          "compared after it" % comp_stat(pri, "secondary-kept"))


def case_output_after_release(topo, pri, hold, c0, div0):
    # The secondary's requests stay unread, then a checkpoint.
    pri.cmd("qom-set", path=COMP, property="x-test-hold-secondary-input",
            value=True)
    pri.wait_for(lambda: secondary_in_unread(topo) >= 200, 60,
                 "the secondary's requests waiting in secondary_in")
    quiet_checkpoint(pri)
    pri.cmd("qom-set", path=COMP, property="x-test-hold-secondary-input",
            value=False)
    pings_go_on(pri, c0, div0,
                "the secondary's requests sent before the checkpoint, read "
                "after its release, were compared with the primary's after "
                "it")
    print("# %d of the secondary's frames read after the release were "
          "dropped" % comp_stat(pri, "secondary-late"))


def main():
    why = missing_requirements()
    t.check_unless(why, "a checkpoint releases what the primary sent before "
                   "its stop, even when colo-compare had not read it yet",
                   with_connection, case_flush_reads_primary_first)
    t.check_unless(why, "a checkpoint's release handled after the controller "
                   "stopped waiting for it releases nothing",
                   with_connection, case_late_release_releases_nothing)
    t.check_unless(why, "a client frame the primary read while stopped for a "
                   "checkpoint reaches the secondary after it",
                   case_input_read_while_stopped)
    t.check_unless(why, "what the secondary sends after the checkpoint's "
                   "load is compared, even when it reaches colo-compare "
                   "before the primary's release", with_pinging_pair,
                   case_output_before_release, "after-received")
    t.check_unless(why, "what the secondary sent before the checkpoint but "
                   "colo-compare reads after its release is not compared",
                   with_pinging_pair, case_output_after_release)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
