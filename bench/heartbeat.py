#!/usr/bin/env python3
"""HeartBeat agent benchmark (issue 8): prints figures, asserts nothing.

On the end-to-end topology (tests/colo/e2e, network namespaces as hosts)
with a qemu-colo-agent per host (heartbeat interval 100 ms, timeout 1 s,
no corosync):

- takeover time: N trials of a fresh protected pair, kill -9 of the primary
  QEMU, no command typed; the time from the kill to the first answer the
  client gets from the survivor on its open TCP connection (median, p90),
  and, from the secondary agent's log, the time from the kill to its
  decision;
- cost: during the first trial, before the kill, for --cost-seconds the
  agents' CPU time (/proc/PID/stat utime+stime) and heartbeat traffic
  (the agents' byte counters; on the wire add 42 bytes of Ethernet, IP and
  UDP headers per datagram).

    bench/heartbeat.py [--trials N] [--cost-seconds S]
"""

import argparse
import datetime
import os
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
import test_heartbeat as th  # noqa: E402
from test_e2e import Pair, end_run  # noqa: E402
from topology import Topology, missing_requirements  # noqa: E402
from figures import cpu_seconds, pct  # noqa: E402


def decision_time(log, t_kill_wall):
    """Seconds from the kill to the agent's 'decision: take over' line."""
    for line in log.splitlines():
        if "decision: take over" in line:
            hms = line.split()[0]
            day = datetime.datetime.fromtimestamp(t_kill_wall,
                                                  datetime.timezone.utc)
            t = datetime.datetime.strptime(hms, "%H:%M:%S.%f").replace(
                year=day.year, month=day.month, day=day.day,
                tzinfo=datetime.timezone.utc)
            return t.timestamp() - t_kill_wall
    return None


def trial(cost_seconds):
    topo = Topology()
    pair = agents = client = None
    out = {}
    try:
        topo.setup()
        pair = Pair(topo)
        agents = th.Agents(topo)
        agents.add_qmp(pair)
        client, sock = th.protected(topo, pair, agents)
        if cost_seconds:
            pids = {n: p.pid for n, p in agents.procs.items()}
            c0 = {n: cpu_seconds(p) for n, p in pids.items()}
            s0 = {n: agents.status(n) for n in pids}
            t0 = time.monotonic()
            client.wait_answers(client.answers() + 1, 60)
            deadline = t0 + cost_seconds
            while time.monotonic() < deadline:       # the measuring window
                client.check()
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            dt = time.monotonic() - t0
            for n, pid in pids.items():
                s1 = agents.status(n)
                out["cpu_" + n] = (cpu_seconds(pid) - c0[n]) / dt * 100
                out["tx_" + n] = (s1["bytes-sent"] - s0[n]["bytes-sent"]) / dt
                out["pkts_" + n] = (s1["heartbeats-sent"] -
                                    s0[n]["heartbeats-sent"]) / dt
        t_kill_wall = time.time()
        t_kill = time.monotonic()
        pair.pri.kill(signal.SIGKILL)
        agents.wait("hostB", lambda s: s["last-action"].startswith("take-over done"),
                    60, "take-over done")
        client.wait_answers(client.answers() + 3, 60)
        client.stop()
        out["first_answer_s"] = client.figures(t_kill)["first_answer_s"]
        out["decision_s"] = decision_time(agents.log("hostB"), t_kill_wall)
        return out
    finally:
        end_run(topo, client, agents and agents.stop, pair and pair.stop)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--cost-seconds", type=float, default=60)
    args = ap.parse_args()
    why = missing_requirements()
    if why or not os.access(th.AGENT, os.X_OK):
        print("heartbeat benchmark skipped: %s" % (why or "no " + th.AGENT))
        return 0
    firsts, decisions = [], []
    for i in range(args.trials):
        r = trial(args.cost_seconds if i == 0 else 0)
        firsts.append(r["first_answer_s"])
        if r["decision_s"] is not None:
            decisions.append(r["decision_s"])
        print("trial %2d: kill -9 primary -> secondary agent decides %.3f s, "
              "first answer from the survivor %.3f s"
              % (i + 1, r["decision_s"] or -1, r["first_answer_s"]))
        sys.stdout.flush()
        if i == 0 and args.cost_seconds:
            for n in ("hostA", "hostB"):
                print("agent %s over %.0f s: CPU %.2f %% of one core, heartbeats "
                      "%.1f/s, %.0f bytes/s UDP payload (%.0f bytes/s on the wire)"
                      % (n, args.cost_seconds, r["cpu_" + n], r["pkts_" + n],
                         r["tx_" + n], r["tx_" + n] + 42 * r["pkts_" + n]))
    print("takeover (kill -9 primary QEMU -> first answer from the survivor), "
          "%d trials: median %.3f s, p90 %.3f s, min %.3f s, max %.3f s "
          "(target: median < 1 s)"
          % (len(firsts), statistics.median(firsts), pct(firsts, 90),
             min(firsts), max(firsts)))
    if decisions:
        print("detection (kill -> decision of the secondary's agent): median "
              "%.3f s, p90 %.3f s" % (statistics.median(decisions),
                                      pct(decisions, 90)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
