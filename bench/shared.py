#!/usr/bin/env python3
"""COLO on a shared disk against forwarded disks: prints figures, asserts
nothing.

In one run, the same pair (the end-to-end topology, the test guest serving
one client connection and writing every request as a record to its disk,
x-checkpoint-delay 500 ms) started and protected by qemu-colo-ctl twice:
with a disk on each node (the primary forwards every write over NBD), then
with shared-disk (one plain file both namespaces see, the shared-undo
driver).  For each: the primary's pause per checkpoint (query-colo-status
last-pause-us, sampled as checkpoints complete), the client's request
latency over the same time (one request outstanding, every answer
checked), how long `protect` took, and a kill -9 of the primary with
`failover` on the secondary (the roll-back and commit, for shared), and
the one-step re-protection after it (forwarded: the disk is copied to the
new secondary first).  Then the ratios shared / forwarded.

    bench/shared.py [--checkpoints N] [--disk-mib M]
"""

import argparse
import os
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "tests", "colo", "e2e")
sys.path.insert(0, E2E)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from colo_vm import wait_for  # noqa: E402
from topology import Topology  # noqa: E402
import test_reprotect as tr  # noqa: E402
from figures import pct  # noqa: E402


def run_one(shared, n_checkpoints, disk_size):
    topo = Topology()
    pair = None
    client = None
    try:
        topo.setup()
        pair = tr.ToolPair(topo, shared=shared, disk_size=disk_size)
        with open(pair.config) as f:
            text = f.read()
        with open(pair.config, "w") as f:
            f.write(re.sub(r"checkpoint-delay-ms = \d+", "checkpoint-delay-ms = 500", text))
        r = tr.ctl("start", pair.config)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "COLO-GUEST: ready" in pair.serial("a"), 240, "the guest")
        t0 = time.monotonic()
        r = tr.ctl("protect", pair.config)
        protect_s = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        client = tr.open_client(topo)
        q = pair.qmp["a"]
        st = q("query-colo-status")
        last_n = st["checkpoints"]
        with client.lock:
            first_k = len(client.records)
        pauses = []
        deadline = time.monotonic() + 60 + n_checkpoints * 3
        while len(pauses) < n_checkpoints:
            st = q("query-colo-status")
            if st["checkpoints"] != last_n:
                if st["checkpoints"] == last_n + 1:     # else a sample was missed
                    pauses.append(st["last-pause-us"] / 1000.0)
                last_n = st["checkpoints"]
            assert time.monotonic() < deadline, "checkpoints too slow"
            time.sleep(0.01)
        with client.lock:
            lat = [(ans - sent) * 1000.0 for (_k, sent, ans, _n) in client.records[first_k:]]
        # the primary dies; the secondary takes over (shared: roll back, commit)
        pair.kill("a")
        wait_for(lambda: pair.qmp["b"]("query-colo-status")["reason"] == "error",
                 60, "the secondary to notice")
        t0 = time.monotonic()
        r = tr.ctl("failover", pair.config, "--node", "b")
        failover_s = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        n = client.answers()
        client.wait_answers(n + 5, 180)
        # re-protection in one step (forwarded: resyncs the disk first)
        reprotect_s = tr.reprotect(pair, topo, client, "b", "a")
        client.stop()
        return {"pauses": pauses, "lat": lat, "protect_s": protect_s,
                "failover_s": failover_s, "reprotect_s": reprotect_s,
                "max_pause": st["max-pause-us"] / 1000.0}
    finally:
        if client:
            client._stop = True
            client.close()
        if pair:
            pair.stop()
        topo.teardown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=30)
    ap.add_argument("--disk-mib", type=int, default=256)
    args = ap.parse_args()
    res = {}
    for shared in (False, True):
        res[shared] = run_one(shared, args.checkpoints, args.disk_mib << 20)
    print("shared disk vs forwarded disks: test guest writing a record per request, "
          "one client connection, x-checkpoint-delay 500 ms, %d checkpoints each, "
          "%d MiB disk" % (args.checkpoints, args.disk_mib))
    for shared in (False, True):
        r = res[shared]
        print("%-9s pause median %.2f ms p90 %.2f ms max %.2f ms; request latency "
              "median %.2f ms p90 %.2f ms (%d requests); protect %.1f s; failover "
              "after kill -9 %.2f s; re-protection %.1f s"
              % ("shared" if shared else "forwarded", statistics.median(r["pauses"]),
                 pct(r["pauses"], 90), r["max_pause"], statistics.median(r["lat"]),
                 pct(r["lat"], 90), len(r["lat"]), r["protect_s"], r["failover_s"],
                 r["reprotect_s"]))
    f, s = res[False], res[True]
    print("ratio shared/forwarded: pause median %.2f, p90 %.2f; request latency "
          "median %.2f, p90 %.2f; protect %.2f; failover %.2f; re-protection %.2f"
          % (statistics.median(s["pauses"]) / statistics.median(f["pauses"]),
             pct(s["pauses"], 90) / pct(f["pauses"], 90),
             statistics.median(s["lat"]) / statistics.median(f["lat"]),
             pct(s["lat"], 90) / pct(f["lat"], 90), s["protect_s"] / f["protect_s"],
             s["failover_s"] / f["failover_s"], s["reprotect_s"] / f["reprotect_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
