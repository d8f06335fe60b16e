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
"""

import os
import socket
import sys
import time

os.environ.setdefault("E2E_DISKS", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from tap import Tap  # noqa: E402
from topology import GUEST_IP, Topology, missing_requirements  # noqa: E402
from e2e_pair import PORT, Pair, diagnose, end_run, quiet_checkpoint  # noqa: E402

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


def primary_in_unread(topo):
    """Bytes waiting unread in colo-compare's primary_in socket (the client
    side of the loopback connection to port 9001)."""
    return unread(topo, "( dport = :9001 )")


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
    pri.wait_for(lambda: primary_in_unread(topo) >= 1200, 60,
                 "the primary's answer waiting in primary_in")
    quiet_checkpoint(pri)       # setting the delay again forces one
    t0 = time.monotonic()
    try:
        line = recv_line(sock, 20)
    except socket.timeout:
        raise AssertionError(
            "no answer 20 s after the checkpoint: the primary's answer, "
            "sent before the checkpoint's stop, was not released by it "
            "(%d bytes still unread in primary_in)" % primary_in_unread(topo))
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
    pri.wait_for(lambda: primary_in_unread(topo) == 0 and
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


def main():
    why = missing_requirements()
    t.check_unless(why, "a checkpoint releases what the primary sent before "
                   "its stop, even when colo-compare had not read it yet",
                   with_connection, case_flush_reads_primary_first)
    t.check_unless(why, "a checkpoint's release handled after the controller "
                   "stopped waiting for it releases nothing",
                   with_connection, case_late_release_releases_nothing)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
