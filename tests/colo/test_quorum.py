#!/usr/bin/env python3
"""Corosync membership and quorum as the HeartBeat agent sees it (no VM).

A two-node corosync cluster (pri node 1, sec node 2) runs in the e2e
topology's host namespaces, with corosync-qdevice on each and
corosync-qnetd (algorithm ffsplit, tie-breaker: lowest node id) on a
witness namespace (tests/colo/lib/cluster.py).  Every state is read both
with corosync-quorumtool and with colo-quorum-probe, which runs the
agent's module (tools/colo/colo-quorum.c); "watch" probes follow the
changes through the module's fd as the agent's GLib loop does.

What corosync really does (asserted below):
  both nodes + qnetd ......................... both quorate (3 of 3 votes)
  no corosync on a host ...................... colo-quorum: clear error
  COLO link cut, witness up .................. pri quorate (2 of 3), sec not:
                                               exactly one side; sec never
                                               saw itself quorate without pri
  link back .................................. both quorate again
  sec's corosync killed ...................... pri stays quorate (qnetd);
                                               sec's watcher: connection lost,
                                               not quorate
  pri's whole host killed .................... sec quorate (its 1 + qnetd)
  qnetd down, link up ........................ both stay quorate (2 of 3)
  qnetd down + link cut ...................... neither quorate (1 of 3 each)
  qnetd back, link still cut ................. exactly one side quorate, not
                                               necessarily pri: qnetd gives the
                                               vote to the first partition whose
                                               qdevice connects and keeps it
                                               there (KAP tie-breaker)
"""

import os
import queue
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))

from tap import Tap                    # noqa: E402
import cluster as clmod                # noqa: E402
from cluster import Cluster, parse_probe  # noqa: E402
import topology                        # noqa: E402

STATE_TIMEOUT = 90      # corosync token 1 s; qdevice sync may take up to 30 s


class Watch:
    """colo-quorum-probe watch on a host: its lines, parsed, in order."""

    def __init__(self, cl, host, peer):
        self.host = host
        self.proc = cl.watch(host, peer)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").strip())
        self.lines.put(None)

    def wait(self, pred, what, timeout=STATE_TIMEOUT):
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError("%s watch: no line with %s within %ds; saw %s"
                                   % (self.host, what, timeout, self.seen[-5:]))
            if line is None:
                raise AssertionError("%s watch ended before %s; saw %s"
                                     % (self.host, what, self.seen[-5:]))
            if "=" not in line:         # an error message
                self.seen.append({"error": line})
                continue
            st = parse_probe(line)
            self.seen.append(st)
            if pred(st):
                return st

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def main():
    t = Tap()
    why = topology.missing_requirements() or clmod.missing_requirements()
    topo = topology.Topology()
    # corosync node names like a pair configuration's (test_heartbeat.py)
    cl = Cluster(topo, names={"pri": "hostA", "sec": "hostB"})
    if why is None and not os.access(cl.probe_bin, os.X_OK):
        why = "no %s (build it: ninja -C build/qemu %s)" % (cl.probe_bin, clmod.PROBE)
    if why:
        print("1..0 # SKIP " + why)
        return 0
    watches = []
    try:
        topo.setup()
        cl.setup()
        run_tests(t, topo, cl, watches)
    finally:
        for w in watches:
            w.stop()
        if t.failed:
            print("# daemon logs:")
            for line in cl.logs().splitlines():
                print("#   " + line)
        cl.teardown()
        topo.teardown()
    t.check("no namespace or cluster process left",
            lambda: assert_clean(topo, cl))
    return t.finish()


def assert_clean(topo, cl):
    left = topo.leftovers() + [ns for ns in [cl.witness]
                               if os.path.exists("/run/netns/" + ns)]
    assert not left, "namespaces left: %s" % left
    assert cl.dir is None


def run_tests(t, topo, cl, watches):
    def quorate_pair(pri, sec):
        cl.wait_quorate("pri", pri, STATE_TIMEOUT)
        cl.wait_quorate("sec", sec, STATE_TIMEOUT)

    def no_corosync():
        # the witness namespace runs no corosync
        try:
            cl.probe("wit")
        except clmod.ClusterError as e:
            assert "is corosync running" in str(e), e
            assert "exit 1" in str(e), e
            return
        raise AssertionError("colo-quorum connected without corosync")
    t.check("colo-quorum without corosync: clear error, exit 1", no_corosync)

    def form():
        cl.start_qnetd()
        cl.start_node("pri")
        cl.start_node("sec")
        for host in ("pri", "sec"):
            cl.wait_members(host, [1, 2], STATE_TIMEOUT)
        quorate_pair(True, True)
        for host, peer, me, other in (("pri", "sec", 1, 2), ("sec", "pri", 2, 1)):
            p = clmod.wait_for(lambda: (lambda s: s if s["qdevice_vote"] else None)(
                cl.probe(host, peer)), STATE_TIMEOUT, host + " qdevice voting")
            assert p["connected"] == 1 and p["quorate"] == 1, p
            assert p["node"] == me and p["peer"] == other, p
            assert p["peer_member"] == 1 and sorted(p["members"]) == [1, 2], p
            assert (p["votes"], p["expected"], p["quorum"]) == (3, 3, 2), p
            # as the agent runs: "ip netns exec NS" only, peer by its name
            q = cl.probe(host, cl.names.get(peer, peer), plain=True)
            assert q["quorate"] == 1 and q["peer"] == other, q
            assert q["peer_member"] == 1, q
    t.check("two nodes + qnetd: both quorate, 3 of 3 votes, peer member "
            "(colo-quorum agrees)", form)

    def split():
        wp = Watch(cl, "pri", "sec")
        ws = Watch(cl, "sec", "pri")
        watches.extend([wp, ws])
        wp.wait(lambda s: s["quorate"] == 1 and s["peer_member"] == 1, "initial state")
        ws.wait(lambda s: s["quorate"] == 1 and s["peer_member"] == 1, "initial state")
        cl.cut_link()
        wp.wait(lambda s: s["peer_member"] == 0 and s["quorate"] == 1,
                "pri alone and quorate")
        ws.wait(lambda s: s["peer_member"] == 0 and s["quorate"] == 0,
                "sec alone and not quorate")
        cl.wait_members("pri", [1])
        cl.wait_members("sec", [2])
        quorate_pair(True, False)
        p, s = cl.probe("pri", "sec"), cl.probe("sec", "pri")
        assert (p["quorate"], s["quorate"]) == (1, 0), (p, s)
        assert (p["qdevice_vote"], s["qdevice_vote"]) == (1, 0), (p, s)
        # no split brain: sec never believed itself quorate without pri
        bad = [st for st in ws.seen if st.get("quorate") == 1 and
               st.get("peer_member") == 0]
        assert not bad, bad
        for w in (wp, ws):
            w.stop()
            watches.remove(w)
    t.check("COLO link cut, both alive, witness up: exactly one partition "
            "quorate (pri, lowest id); watchers saw it through the fd", split)

    def heal():
        cl.restore_link()
        for host in ("pri", "sec"):
            cl.wait_members(host, [1, 2], STATE_TIMEOUT)
        quorate_pair(True, True)
        assert cl.probe("sec", "pri")["peer_member"] == 1
    t.check("link back: one membership, both quorate", heal)

    def kill_sec_corosync():
        ws = Watch(cl, "sec", "pri")
        watches.append(ws)
        ws.wait(lambda s: s["quorate"] == 1, "initial state")
        cl.kill_node("sec")
        st = ws.wait(lambda s: s["connected"] == 0, "connection lost")
        assert st["quorate"] == 0 and st["members"] == [], st
        assert ws.proc.wait(timeout=30) == 2
        cl.wait_members("pri", [1], STATE_TIMEOUT)
        cl.wait_quorate("pri", True, STATE_TIMEOUT)
        p = cl.probe("pri", "sec")
        assert p["quorate"] == 1 and p["peer_member"] == 0 and p["votes"] == 2, p
        watches.remove(ws)
    t.check("sec's corosync killed: pri stays quorate thanks to qnetd; sec's "
            "colo-quorum reports connection lost, not quorate", kill_sec_corosync)

    def restart_sec():
        cl.start_node("sec")
        for host in ("pri", "sec"):
            cl.wait_members(host, [1, 2], STATE_TIMEOUT)
        quorate_pair(True, True)
    t.check("sec's corosync restarted: it rejoins", restart_sec)

    def kill_pri_host():
        ws = Watch(cl, "sec", "pri")
        watches.append(ws)
        ws.wait(lambda s: s["quorate"] == 1 and s["peer_member"] == 1, "initial state")
        cl.kill_host("pri")
        ws.wait(lambda s: s["peer_member"] == 0 and s["quorate"] == 1,
                "sec alone and quorate")
        cl.wait_members("sec", [2], STATE_TIMEOUT)
        cl.wait_quorate("sec", True, STATE_TIMEOUT)
        s = cl.probe("sec", "pri")
        assert s["quorate"] == 1 and s["qdevice_vote"] == 1 and s["votes"] == 2, s
        ws.stop()
        watches.remove(ws)
    t.check("pri's whole host killed: sec quorate alone (qnetd's vote), "
            "pri not a member", kill_pri_host)

    def restart_pri():
        cl.start_node("pri")
        for host in ("pri", "sec"):
            cl.wait_members(host, [1, 2], STATE_TIMEOUT)
        quorate_pair(True, True)
    t.check("pri restarted: it rejoins", restart_pri)

    def qnetd_down():
        cl.stop_qnetd()
        clmod.wait_for(lambda: all(cl.probe(h)["qdevice_alive"] == 0 or
                                   cl.probe(h)["qdevice_vote"] == 0
                                   for h in ("pri", "sec")),
                       STATE_TIMEOUT, "qdevice vote lost on both")
        quorate_pair(True, True)
        for host in ("pri", "sec"):
            p = cl.probe(host)
            assert p["quorate"] == 1 and p["votes"] == 2, p
    t.check("qnetd down, link up: both stay quorate (2 of 3 votes)", qnetd_down)

    def qnetd_down_cut():
        cl.cut_link()
        cl.wait_members("pri", [1], STATE_TIMEOUT)
        cl.wait_members("sec", [2], STATE_TIMEOUT)
        quorate_pair(False, False)
        for host in ("pri", "sec"):
            p = cl.probe(host)
            assert p["quorate"] == 0 and p["votes"] == 1, p
    t.check("qnetd down + link cut: neither partition quorate (1 of 3 each)",
            qnetd_down_cut)

    def qnetd_back():
        cl.start_qnetd()

        def one_side():
            q = [cl.probe(h)["quorate"] for h in ("pri", "sec")]
            return q if sum(q) == 1 else None
        first = clmod.wait_for(one_side, STATE_TIMEOUT, "one side quorate")
        print("# qnetd back, link cut: quorate pri=%d sec=%d" % tuple(first))
        # and it stays so: never both
        for host in ("pri", "sec"):
            cl.wait_members(host, [["pri", "sec"].index(host) + 1])
        again = [cl.probe(h)["quorate"] for h in ("pri", "sec")]
        assert again == first, (first, again)
        cl.restore_link()
        for host in ("pri", "sec"):
            cl.wait_members(host, [1, 2], STATE_TIMEOUT)
        quorate_pair(True, True)
    t.check("qnetd back with the link still cut: exactly one side quorate; "
            "link back: both", qnetd_back)


if __name__ == "__main__":
    sys.exit(main())
