#!/usr/bin/env python3
"""End to end: the HeartBeat agents with corosync and a qnetd witness.

The pair, client and agents of e2e_pair.py and agents.py, with
"use-corosync = true" and a two-node corosync cluster with corosync-qdevice
on each host namespace and corosync-qnetd on a witness namespace
(tests/colo/lib/cluster.py).  Corosync's ring runs over the COLO link, the
witness is reached over another one.  The test types no failover command.

Scenarios (TAP line each):
  host-primary       the primary's whole host dies (QEMU, agent, corosync,
                     qdevice: every process of its namespace, SIGKILL): the
                     secondary's partition is quorate (qnetd's vote), the
                     primary is not a member: the secondary takes over and
                     serves the client's open connection
  link-cut           the COLO link is cut with both hosts alive; qnetd gives
                     its vote to the primary's side (tie-breaker: lowest
                     node id = the primary): the primary runs on alone, the
                     secondary stays a secondary: exactly one VM serves
  link-cut-sec-wins  the same cut, but qnetd's tie-breaker is the
                     secondary's node id: the primary's partition is not
                     quorate, its agent fences its QEMU; the secondary takes
                     over: again exactly one VM serves

Usage: test_heartbeat_quorum.py [scenario...]   (default: all)
Environment: E2E_DISKS=0 runs without disk replication (as test_e2e.py).
"""

import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import guest_files  # noqa: E402
from tap import Tap  # noqa: E402
from topology import Topology, missing_requirements  # noqa: E402
import cluster as clmod  # noqa: E402
from cluster import Cluster  # noqa: E402
from agents import (AGENT, Agents, log,  # noqa: E402
                    objects, protected, survivor_serves)
from e2e_pair import Pair, diagnose, end_run  # noqa: E402

t = Tap()
NAMES = {"pri": "hostA", "sec": "hostB"}    # Agents' node names


def use_corosync(agents):
    with open(agents.config) as f:
        text = f.read()
    assert text.startswith("[pair]\n"), text[:40]
    with open(agents.config, "w") as f:
        f.write(text.replace("[pair]\n", "[pair]\nuse-corosync=true\n", 1))


def exactly_one_serves(topo, pair, agents, client, sock, server, t_fail, what):
    """server's VM serves the client, the other one does not."""
    other = pair.sec if server is pair.pri else pair.pri
    k = client.answers()
    client.wait_answers(k + 20, 180)
    port = "to-pri" if server is pair.pri else "to-sec"
    assert topo.port_of_guest() == port, topo.port_of_guest()
    if other.is_running():
        st = other.cmd("query-status")["status"]
        mode = other.cmd("query-colo-status")["mode"]
        # a secondary that did not take over: in COLO or waiting, the
        # guest not running on its own
        assert mode == "secondary", (mode, st)
    client.stop()
    f = client.figures(t_fail)
    client.last_request()
    return f


def scenario(kind):
    topo = Topology()
    pair = agents = client = cl = None
    try:
        topo.setup()
        cl = Cluster(topo, names=NAMES,
                     tie_breaker="2" if kind == "link-cut-sec-wins" else "lowest")
        cl.setup()
        cl.start_qnetd()
        cl.start_node("pri")
        cl.start_node("sec")
        for host in ("pri", "sec"):
            cl.wait_members(host, [1, 2])
            clmod.wait_for(lambda h=host: cl.probe(h)["qdevice_vote"] == 1, 90,
                           "%s: qdevice voting" % host)
        pair = Pair(topo)
        agents = Agents(topo)
        use_corosync(agents)
        agents.add_qmp(pair)
        client, sock = protected(topo, pair, agents)
        for n in ("hostA", "hostB"):
            agents.wait(n, lambda s: s["quorum"] == "quorate", 30, "quorate")
        pri, sec = pair.pri, pair.sec

        if kind == "host-primary":
            t_fail = time.monotonic()
            cl.kill_host("pri")         # QEMU, agent, corosync, qdevice
            pri.wait_exit(30)
            survivor_serves(topo, pair, agents, client, sock, sec, t_fail, kind)
            st = cl.probe("sec", "pri")
            assert st["quorate"] == 1 and st["peer_member"] == 0, st
            log("host-primary: corosync on the survivor: %s" % st)
        elif kind == "link-cut":
            t_fail = time.monotonic()
            cl.cut_link()
            st = agents.wait("hostA",
                             lambda s: s["last-action"].startswith("take-over done"),
                             90, "the primary to run alone")
            assert st["quorum"] == "quorate", st
            assert pri.cmd("query-colo-status")["mode"] == "none"
            assert not objects(pri) & {"comp0", "m0"}, "primary proxy left"
            sb = agents.wait("hostB", lambda s: s["quorum"] == "inquorate", 90,
                             "the secondary's partition not quorate")
            f = exactly_one_serves(topo, pair, agents, client, sock, pri, t_fail,
                                   kind)
            sb = agents.status("hostB")
            assert sb["last-action"] == "none", sb
            assert sec.is_running(), "the secondary's QEMU died"
            log("link-cut: primary: %s (quorate); secondary: quorum %s, %s; "
                "first answer %.2fs after the cut, %d answers, all right"
                % (st["last-action"], sb["quorum"], sb["reason"],
                   f["first_answer_s"], f["answers"]))
        elif kind == "link-cut-sec-wins":
            t_fail = time.monotonic()
            cl.cut_link()
            survivor_serves(topo, pair, agents, client, sock, sec, t_fail, kind)
            pri.wait_exit(60)
            assert pri.proc.returncode == -signal.SIGKILL, pri.proc.returncode
            sa = agents.status("hostA")
            assert sa["quorum"] == "inquorate", sa
            assert "decision: fence" in agents.log("hostA"), agents.log("hostA")
            log("link-cut-sec-wins: primary fenced itself (%s); the secondary "
                "took over" % sa["reason"])
    except Exception as e:
        extra = ""
        if agents:
            extra = "\n".join("agent %s log:\n%s" % (n, agents.log(n)[-12000:])
                              for n in ("hostA", "hostB"))
        if cl:
            extra += "\n" + cl.logs()[-4000:]
        raise AssertionError("%s\n%s\n%s" % (e, extra,
                                             diagnose(topo, pair, client))) from e
    finally:
        end_run(topo, client, agents and agents.stop, pair and pair.stop,
                cl and cl.teardown)


NAMES_OF = {
    "host-primary": "the primary's whole host dies, corosync + qnetd: the "
                    "secondary's agent takes over (quorate, primary not a member)",
    "link-cut": "COLO link cut with both alive, witness votes for the primary: "
                "it runs on alone, the secondary does not take over",
    "link-cut-sec-wins": "COLO link cut, witness votes for the secondary: the "
                         "primary fences itself, the secondary takes over",
}


def main():
    wanted = sys.argv[1:] or list(NAMES_OF)
    why = missing_requirements() or clmod.missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    if why is None and not os.access(AGENT, os.X_OK):
        why = "no %s (build it)" % AGENT
    for k in wanted:
        t.check_unless(why, "heartbeat+corosync %s: %s" % (k, NAMES_OF[k]),
                       scenario, k)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
