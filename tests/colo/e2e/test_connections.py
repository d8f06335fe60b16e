#!/usr/bin/env python3
"""A client connection opened between two checkpoints survives two failovers
and the re-protection between them (qemu-colo-ctl on the end-to-end
topology, as in test_reprotect.py).

The connection is opened while the primary (a) takes no periodic checkpoint
and the guests' answers match (no checkpoint at all): the secondary's
filter-rewriter learns a sequence offset for it (its guest chose another
initial sequence number than the primary's, which the client knows).  The
test makes sure it is not 0 (the secondary rewrites the connection's
packets; with coarse guest clocks both guests sometimes choose the same
number: then it opens another connection).  Then:

  1. a is killed (-9), node b takes over: b's rewriter goes on translating
     between the client's numbering and its guest's;
  2. `reprotect --start`: a comes back as b's secondary, b checkpoints as
     the primary; b's rewriter must keep the offset (its guest was not
     replaced; a reset stalled the connection before commit faae53b);
  3. b is killed (-9), node a takes over: a's guest is a copy of b's and
     numbers like it, so a's rewriter needs b's offset, which a never
     learned itself: it must have come with the checkpoints;
  4. `reprotect --start` and b is killed once more: the offset a got went
     on to the next secondary (it still maps the client's numbering).

After each step the same connection must be answered (line numbers in
order, nothing lost or repeated).  After each protection no other local
user can reach the primary proxy's own hops (tool_pair.check_local_hops).

TAP line:
  carried   the connection survives both failovers and both re-protections

The QEMUs are started by the tool; the test reads their state on each
node's second QMP socket and kills them by pid file.  QEMU_COLO_BINARY and
QEMU_COLO_CTL name other binaries (a copy, which a rebuild of the tree
during the run leaves alone, or a build of older code).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import guest_files, wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from topology import missing_requirements  # noqa: E402
import tool_pair as rp  # noqa: E402
from e2e_pair import open_client  # noqa: E402

t = Tap()
COMPARE = ("mismatches-tcp", "mismatches-udp", "mismatches-icmp",
           "mismatches-other-ip", "mismatches-non-ip", "timeouts",
           "checkpoint-requests", "queue-full")
STATS = ("connections", "offsets-learned", "offsets-carried", "rewritten",
         "untracked-after-failover")


def log(msg):
    sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def rewriter(pair, node):
    """The node's filter-rewriter statistics (None where it has none)."""
    q = pair.qmp[node]
    if not any(o["name"] == "rew0" for o in q("qom-list", path="/objects")):
        return None
    out = {}
    for name in STATS:
        try:
            out[name] = q("qom-get", path="/objects/rew0",
                          property="stat-" + name)
        except RuntimeError:            # a build without this statistic
            out[name] = None
    return out


def compare(pair, node):
    return {n: pair.comp(node, n) for n in COMPARE}


def quiet_checkpoint(pair, pri):
    """Set a delay of an hour on the primary: no periodic checkpoint from
    then on; the change itself checkpoints once (waited for)."""
    c0 = pair.checkpoints(pri)
    pair.qmp[pri]("migrate-set-parameters", **{"x-checkpoint-delay": 3600000})
    wait_for(lambda: pair.checkpoints(pri) > c0, 60,
             "the checkpoint that follows the new delay")


def open_between_checkpoints(topo, pair, clients):
    """Open the client's connection while no checkpoint happens, and make
    sure the secondary rewrites it (a non-zero offset, which nothing
    resets).  Returns the client."""
    pri, sec = pair.roles()
    # a first connection, closed again: that connection's end is behind
    # the next checkpoint
    warm = open_client(topo)
    warm.stop()
    warm.close()
    quiet_checkpoint(pair, pri)
    for attempt in range(8):
        c1 = pair.checkpoints(pri)
        cmp0 = compare(pair, pri)
        rw0 = rewriter(pair, sec)
        client = open_client(topo)
        clients.append(client)
        client.wait_answers(20, 120)
        rw1 = rewriter(pair, sec)
        rewritten = rw1["rewritten"] - rw0["rewritten"]
        if pair.checkpoints(pri) == c1 and rewritten >= 20:
            break
        if pair.checkpoints(pri) != c1:
            cmp1 = compare(pair, pri)
            why = "a checkpoint (%d to %d; compare: %s)" % (
                c1, pair.checkpoints(pri),
                {k: cmp1[k] - cmp0[k] for k in COMPARE if cmp1[k] != cmp0[k]})
        else:
            # the guests' clocks are coarse: two copies handling the SYN
            # within one tick choose the same initial sequence number
            why = "offset 0 (%d packets rewritten): the same ISN on both " \
                  "guests" % rewritten
        log("attempt %d: %s; again" % (attempt, why))
        client.stop()
        client.close()
        clients.remove(client)
        quiet_checkpoint(pair, pri)
    else:
        raise AssertionError("no connection with a non-zero offset and no "
                             "checkpoint after it")
    assert rw1["offsets-learned"] > rw0["offsets-learned"], (rw0, rw1)
    log("connection opened after checkpoint %d: %d answers, none since; "
        "secondary %s rewrote %d of its packets; its rewriter: %s"
        % (c1, client.answers(), sec, rewritten, rw1))
    return client


def step(pair, what, fn):
    """Run one step; on failure say what each rewriter knew."""
    try:
        return fn()
    except BaseException:
        for n in "ab":
            try:
                log("after failure (%s): node %s rewriter %s, mode %s"
                    % (what, n, rewriter(pair, n), pair.mode(n)))
            except Exception as e:          # a dead node
                log("after failure (%s): node %s: %s" % (what, n, e))
        raise


def run_carried():
    def body(topo, pair, clients):
        pair.start_protected()
        rp.check_local_hops(pair, "a")
        client = open_between_checkpoints(topo, pair, clients)
        history = []
        for rnd in range(1, 4):
            survivor, dead = step(
                pair, "failover %d" % rnd,
                lambda: rp.fail(pair, topo, client, "primary"))
            history.append("%s took over" % survivor)
            log("failover %d: primary %s killed, %s took over; %d answers on "
                "the connection; rewriter of %s: %s"
                % (rnd, dead, survivor, client.answers(), survivor,
                   rewriter(pair, survivor)))
            if rnd == 3:
                break
            step(pair, "re-protection %d" % rnd,
                 lambda: rp.reprotect(pair, topo, client, survivor, dead))
            rp.check_local_hops(pair, survivor)
            log("re-protection %d: %s primary, %s secondary; %d answers; "
                "rewriter of the new secondary %s: %s"
                % (rnd, survivor, dead, client.answers(), dead,
                   rewriter(pair, dead)))
        client.stop()
        client.last_request()
        log("%s; the connection opened between checkpoints answered %d "
            "requests in order" % (", ".join(history), client.answers() + 1))
    rp.with_pair(body)


NAMES = {
    "carried": ("a connection opened between checkpoints survives failover, "
                "re-protection, failover to the re-protected secondary, and "
                "again", run_carried),
}


def main():
    wanted = sys.argv[1:] or list(NAMES)
    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    for name in wanted:
        what, fn = NAMES[name]
        t.check_unless(why, what, fn)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
