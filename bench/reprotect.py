#!/usr/bin/env python3
"""Re-protection benchmark (issue 7): prints figures, asserts nothing.

A 256 MiB Linux guest with a 1 GiB disk (filled with data, so that the
resync really copies 1 GiB) runs on the end-to-end topology, protected by
qemu-colo-ctl; the client sends requests on one TCP connection all along.
The primary is killed, the secondary takes over (qemu-colo-ctl failover),
then `qemu-colo-ctl reprotect --start` protects it again in one step.

Figures:
  - seconds from the reprotect command to COLO running (the tool's whole
    step, including starting the new secondary), split into the disk resync
    and the live migration + COLO start (the guest runs in both);
  - how long the guest was stopped during the step, from the STOP/RESUME
    events (QEMU's timestamps) on the survivor's spare monitor: the
    migration's switch-over to COLO is the only stop the tool causes;
  - the client's request latency (median, p99, max) before the failure and
    during the resync, and the ratio of the two; the longest gap between
    answers from 5 s before the end of the resync on (as before).

With --stop-at-ready the benchmark itself sends `stop` on the spare monitor
as soon as the mirror is ready: the guest then stays stopped until COLO
runs, as with the tool's former order (stop, end of mirror, migration of a
stopped guest); a same-machine reference for the stopped time.

    bench/reprotect.py [--disk-mib 1024] [--mem-mib 256] [--resync-speed 0]
                       [--stop-at-ready]
Needs root (network namespaces) and the test guest, like the e2e suite.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
import tool_pair as R  # noqa: E402
from colo_vm import guest_files, wait_for  # noqa: E402
from e2e_pair import open_client  # noqa: E402
from topology import missing_requirements  # noqa: E402
from figures import pct  # noqa: E402


def lat_figures(recs):
    lat = [(r[2] - r[1]) * 1000 for r in recs]
    if not lat:
        return None
    return {"n": len(lat), "median": statistics.median(lat),
            "p99": pct(lat, 99), "max": max(lat)}


def fmt(f):
    if not f:
        return "no requests"
    return ("%d requests: median %.1f ms, p99 %.1f ms, max %.1f ms"
            % (f["n"], f["median"], f["p99"], f["max"]))


class StopAtReady(R.Watch):
    """Stops the guest once the resync job is ready (the former order)."""

    stopped = False

    def run(self):
        try:
            while not self._quit.is_set():
                jobs = self.cmd("query-block-jobs")
                if not self.stopped and jobs and jobs[0]["ready"]:
                    self.cmd("stop")
                    self.stopped = True
                self._quit.wait(0.005)
        except Exception as e:
            self.error = e


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--disk-mib", type=int, default=1024)
    ap.add_argument("--mem-mib", type=int, default=256)
    ap.add_argument("--resync-speed", type=int, default=0,
                    help="bytes/s (0: unlimited)")
    ap.add_argument("--baseline-s", type=float, default=15.0)
    ap.add_argument("--stop-at-ready", action="store_true",
                    help="stop the guest when the mirror is ready (former order)")
    a = ap.parse_args()
    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    if why:
        print("reprotect benchmark skipped: %s" % why)
        return 0
    fig = {}

    def body(topo, pair, clients):
        os.makedirs(pair.path("a", ""), exist_ok=True)
        chunk = os.urandom(1 << 20)
        with open(pair.path("a", "disk.raw"), "wb") as f:
            for i in range(a.disk_mib):
                f.write(chunk[i % 4096:] + chunk[:i % 4096])   # no two alike
        t0 = time.monotonic()
        pair.start_protected()
        fig["protect_s"] = time.monotonic() - t0        # includes the boot
        client = open_client(topo)
        clients.append(client)
        t_base = time.monotonic()
        wait_for(lambda: time.monotonic() - t_base > a.baseline_s, a.baseline_s + 60,
                 "the baseline period", interval=0.5)
        with client.lock:
            base = [r for r in client.records if r[1] >= t_base]
        survivor, dead = R.fail(pair, topo, client, "primary")
        t_alone = time.monotonic()
        wait_for(lambda: time.monotonic() - t_alone > a.baseline_s,
                 a.baseline_s + 60, "the unprotected period", interval=0.5)
        with client.lock:
            alone = [r for r in client.records if r[1] >= t_alone]
        topo.standby_port(R.ToolPair.HOSTS[dead][2])
        marks = {}
        watch = (StopAtReady if a.stop_at_ready else R.Watch)(
            pair.path(survivor, "agent-qmp.sock"))
        watch.start()
        t_start = time.monotonic()
        wall_start = time.time()
        p = subprocess.Popen([R.CTL, "reprotect", pair.config, "--start"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        out = []
        for line in p.stdout:
            now = time.monotonic()
            out.append(line)
            for key, text in (("resync", "disk resync"),
                              ("stopped", "adding the replication child"),
                              ("done", "protected:")):
                if line.startswith(text) and key not in marks:
                    marks[key] = now
                    if key == "done":
                        wall_done = time.time()
        p.wait()
        watch.stop()
        if p.returncode != 0 or "done" not in marks:
            raise RuntimeError("reprotect failed: %s" % "".join(out))
        # the guest's stops during the step: STOP .. RESUME
        stops, since = [], None
        for ev, ts in watch.events:
            if ev == "STOP" and wall_start <= ts <= wall_done:
                since = ts
            elif ev == "RESUME" and since is not None:
                stops.append(ts - since)
                since = None
        client.wait_answers(client.answers() + 20, 120)
        with client.lock:
            recs = list(client.records)
        during = [r for r in recs if marks["resync"] <= r[1] and r[2] <= marks["stopped"]]
        around = [r for r in recs if r[2] >= marks["stopped"] - 5]
        gaps = [b[2] - a_[2] for a_, b in zip(around, around[1:])]
        # the longest gap ending before COLO runs, and one starting after
        gaps_before = [b[2] - a_[2] for a_, b in zip(around, around[1:])
                       if b[2] <= marks["done"]]
        gaps_after = [b[2] - a_[2] for a_, b in zip(around, around[1:])
                      if a_[2] >= marks["done"]]
        fig.update(total_s=marks["done"] - t_start,
                   start_s=marks["resync"] - t_start,
                   resync_s=marks["stopped"] - marks["resync"],
                   stopped_s=marks["done"] - marks["stopped"],
                   stops=stops,
                   base=lat_figures(base), alone=lat_figures(alone), during=lat_figures(during),
                   max_gap_s=max(gaps) if gaps else None,
                   gap_before_s=max(gaps_before, default=None),
                   gap_after_s=max(gaps_after, default=None))
        client.stop()

    R.log = lambda msg: None                   # the benchmark prints figures only
    R.with_pair(body, disk_size=a.disk_mib << 20, resync_speed=a.resync_speed,
                mem_mb=a.mem_mib)
    print("re-protection, %d MiB guest, %d MiB disk (full of data), resync-speed %s%s"
          % (a.mem_mib, a.disk_mib, a.resync_speed or "unlimited",
             ", guest stopped at mirror ready (former order)" if a.stop_at_ready
             else ""))
    print("  first protection (boot + protect, 1 resync): %.1f s" % fig["protect_s"])
    print("  reprotect --start to COLO running:           %.1f s" % fig["total_s"])
    print("    starting the new secondary + checks:       %.1f s" % fig["start_s"])
    print("    disk resync (guest running):               %.1f s (%.0f MiB/s)"
          % (fig["resync_s"], a.disk_mib / fig["resync_s"] if fig["resync_s"] else 0))
    print("    live migration + COLO start + end of mirror: %.1f s"
          % fig["stopped_s"])
    print("  guest stopped during the step: %.3f s in %d stop(s) (%s)"
          % (sum(fig["stops"]), len(fig["stops"]),
             ", ".join("%.3f s" % x for x in fig["stops"]) or "none"))
    print("  client latency, protected pair:          %s" % fmt(fig["base"]))
    print("  client latency, survivor alone:          %s" % fmt(fig["alone"]))
    print("  client latency, alone during the resync: %s" % fmt(fig["during"]))
    for name in ("alone", "base"):
        if fig[name] and fig["during"]:
            print("  ratio during resync / %s: median %.2f, p99 %.2f"
                  % ("alone" if name == "alone" else "protected",
                     fig["during"]["median"] / fig[name]["median"],
                     fig["during"]["p99"] / fig[name]["p99"]))
    if fig["max_gap_s"] is not None:
        print("  client's longest gap between answers around the switch to COLO: %.2f s"
              % fig["max_gap_s"])
        for key, what in (("gap_before_s", "ending before COLO runs"),
                          ("gap_after_s", "starting once COLO runs")):
            if fig[key] is not None:
                print("    longest gap %s: %.2f s" % (what, fig[key]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
