#!/usr/bin/env python3
"""What TLS on the COLO link costs: prints figures, asserts nothing.

In one run, the same pair (the end-to-end topology, the test guest serving
one client connection, x-checkpoint-delay 500 ms) started and protected by
qemu-colo-ctl twice: without tls-dir, then with it (certificates made with
certtool in a temporary directory).  For each: the primary's pause per
checkpoint (query-colo-status last-pause-us, sampled as checkpoints
complete), the client's request latency over the same time (one request
outstanding, every answer checked), and how long `protect` took.  Then
the ratios TLS / plain.

    bench/tls.py [--checkpoints N]
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "tests", "colo", "e2e")
sys.path.insert(0, E2E)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from colo_vm import wait_for  # noqa: E402
from topology import PRI_LINK_IP, SEC_LINK_IP, Topology  # noqa: E402
import tls_certs  # noqa: E402
import test_reprotect as tr  # noqa: E402
import test_tls  # noqa: E402
from figures import pct  # noqa: E402


def run_one(certs, tls, n_checkpoints):
    topo = Topology()
    pair = None
    client = None
    try:
        topo.setup()
        pair = tr.ToolPair(topo)
        test_tls.write_config(pair, certs, tls=tls)
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
        client.stop()
        chan = re.findall(r"channels: (.*)", tr.ctl("status", pair.config).stdout)
        return {"pauses": pauses, "lat": lat, "protect_s": protect_s,
                "max_pause": st["max-pause-us"] / 1000.0, "channels": chan}
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
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="colo-bench-tls-")
    try:
        certs = tls_certs.PairCerts(tmp, {"a": PRI_LINK_IP, "b": SEC_LINK_IP})
        res = {}
        for tls in (False, True):
            res[tls] = run_one(certs, tls, args.checkpoints)
    finally:
        os.system("rm -rf %s" % tmp)
    print("TLS on the COLO link: test guest, one client connection, x-checkpoint-delay "
          "500 ms, %d checkpoints each" % args.checkpoints)
    for tls in (False, True):
        r = res[tls]
        print("%-5s pause median %.2f ms p90 %.2f ms max %.2f ms; request latency "
              "median %.2f ms p90 %.2f ms (%d requests); protect %.1f s"
              % ("tls" if tls else "plain", statistics.median(r["pauses"]),
                 pct(r["pauses"], 90), r["max_pause"], statistics.median(r["lat"]),
                 pct(r["lat"], 90), len(r["lat"]), r["protect_s"]))
        print("      %s" % "; ".join(r["channels"]))
    p, t = res[False], res[True]
    print("ratio tls/plain: pause median %.2f, p90 %.2f; request latency median %.2f, "
          "p90 %.2f; protect %.2f"
          % (statistics.median(t["pauses"]) / statistics.median(p["pauses"]),
             pct(t["pauses"], 90) / pct(p["pauses"], 90),
             statistics.median(t["lat"]) / statistics.median(p["lat"]),
             pct(t["lat"], 90) / pct(p["lat"], 90), t["protect_s"] / p["protect_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
