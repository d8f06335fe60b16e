#!/usr/bin/env python3
"""Spurious checkpoints: a protected pair whose two guests answer the same
(the e2e echo service, IPv6 left on in the guest), one client connection
sending requests for DURATION seconds, x-checkpoint-delay 10 s.  Every
checkpoint that is not periodic is spurious here.  Prints checkpoints/s by
trigger over a window from a checkpoint to the first checkpoint after
DURATION, the periodic rate, and colo-compare's mismatches per protocol.

Usage: spurious.py [duration_s]   (default 40; root, as the e2e suites)
Figures only, no assertion (the machines are shared and noisy).
"""

import os
import socket
import sys
import time

os.environ.setdefault("E2E_DISKS", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from client import Client  # noqa: E402
from e2e_pair import PORT, VARIANTS, Pair, end_run  # noqa: E402
from topology import GUEST_IP, Topology, missing_requirements  # noqa: E402

DELAY_MS = 10000
TRIGGERS = ("periodic", "mismatch", "timeout", "forced")
PROTOCOLS = ("tcp", "udp", "icmp", "other-ip", "non-ip")


def colo_counts(vm):
    st = vm.cmd("query-colo-status")
    return {t: st.get("checkpoints-" + t, 0) for t in TRIGGERS}


def compare_counts(vm):
    get = lambda n: vm.cmd("qom-get", path="/objects/comp0", property="stat-" + n)
    out = {p: get("mismatches-" + p) for p in PROTOCOLS}
    out["compare-timeouts"] = get("timeouts")
    return out


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 40.0
    why = missing_requirements()
    if why:
        print("skipped: %s" % why)
        return 0
    topo = Topology()
    pair = client = None
    try:
        topo.setup()
        pair = Pair(topo, guest=VARIANTS["ipv6"])
        pair.start()
        pri = pair.pri
        # A new delay forces a checkpoint: let it be taken before counting,
        # or it would count as a spurious one (it did, one run in two).
        forced = colo_counts(pri)["forced"]
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": DELAY_MS})
        pri.wait_for(lambda: colo_counts(pri)["forced"] > forced, 60,
                     "the checkpoint a new x-checkpoint-delay forces")
        # The window runs from that checkpoint to the first one after
        # DURATION, so that it holds whole periods: cut anywhere else, it
        # would count 3 periodic checkpoints in 40 s at a 10 s delay.
        c0, m0, t0 = colo_counts(pri), compare_counts(pri), time.monotonic()
        sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
        client = Client(sock)
        client.connect((GUEST_IP, PORT), 60)
        client.start()
        client.wait_answers(1, 120)
        while time.monotonic() - t0 < duration:
            client.wait_answers(client.answers() + 1, 120)
        before_end = sum(colo_counts(pri).values())
        while sum(colo_counts(pri).values()) == before_end:
            if time.monotonic() - t0 > duration + 3 * DELAY_MS / 1000.0:
                raise TimeoutError("no checkpoint within 3 delays after the window")
            client.wait_answers(client.answers() + 1, 120)
        c1, m1, t1 = colo_counts(pri), compare_counts(pri), time.monotonic()
        client.stop()
        secs = t1 - t0
        total = sum(c1[t] - c0[t] for t in TRIGGERS)
        print("identical guests, IPv6 on, one connection, %d answers in %.0f s, "
              "x-checkpoint-delay %d ms" % (client.answers(), secs, DELAY_MS))
        print("checkpoints/s: %.3f in all (periodic rate %.3f); by trigger: %s"
              % (total / secs, 1000.0 / DELAY_MS,
                 ", ".join("%s %.3f" % (t, (c1[t] - c0[t]) / secs) for t in TRIGGERS)))
        print("spurious (not periodic) per minute: %.1f"
              % (60 * (total - (c1["periodic"] - c0["periodic"])) / secs))
        print("colo-compare mismatches: %s"
              % ", ".join("%s %d" % (k, m1[k] - m0[k]) for k in m1))
    finally:
        end_run(topo, client, pair and pair.stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
