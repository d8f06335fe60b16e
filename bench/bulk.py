#!/usr/bin/env python3
"""Bulk TCP through COLO: the client fetches a 4 MiB file (busybox httpd in
the guest, colo.http=1) over and over on fresh connections for DURATION
seconds.  Two ways in one run, same guest, same topology:

  unprotected  the primary alone, with an identical second VM running
               beside it (not protected), so that both pay for the same CPU
  colo         the protected pair (x-checkpoint-delay 2000 ms)

Prints MB/s, fetch time p50/p99/max, checkpoints/s by trigger, and the
ratio colo/unprotected; and, to show where a MB's cost goes, QEMU CPU per
MB by process and thread (main loop, vCPU, iothread), the machine's busy,
idle and stolen CPU share, and the frames per MB on the primary's tap (the
guest's data segments out, the client's ACKs in).

Usage: bulk.py [duration_s]   (default 30; root, as the e2e suites)
Figures only, no assertion.
"""

import json
import os
import sys
import time

os.environ.setdefault("E2E_DISKS", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from colo_vm import Vm  # noqa: E402
from e2e_pair import Pair, end_run, guest_args, http_get  # noqa: E402
from topology import Topology, missing_requirements  # noqa: E402
from spurious import TRIGGERS, colo_counts  # noqa: E402
from figures import (THREAD_NAMES, cpu_report, machine_cpu, pct,  # noqa: E402
                     thread_cpu)

SIZE = 4 << 20


def tap_frames(topo):
    """Frames through the primary's tap so far: (from the guest, to it)."""
    link = json.loads(topo.run_in(topo.pri, "ip", "-j", "-s", "link", "show", "tap0"))
    stats = link[0]["stats64"]
    return stats["rx"]["packets"], stats["tx"]["packets"]


def run(topo, duration, vm, procs):
    """Fetch for @duration s from @vm; procs: {pid: name} of the QEMUs
    whose CPU is counted."""
    times, total = [], 0
    cpu0 = thread_cpu(procs), machine_cpu()
    tap0 = tap_frames(topo)
    t0 = time.monotonic()
    c0 = colo_counts(vm)
    while time.monotonic() - t0 < duration:
        t = time.monotonic()
        got, _ = http_get(topo, "/bulk")
        secs = time.monotonic() - t
        if got < SIZE:
            raise RuntimeError("short fetch: %d bytes" % got)
        times.append(secs)
        total += got
    secs = time.monotonic() - t0
    c1 = colo_counts(vm)
    tap1 = tap_frames(topo)
    mb = total / 1e6
    cost = cpu_report(cpu0, (thread_cpu(procs), machine_cpu()), mb, procs)
    cost.append("  primary's tap: %.1f frames/MB from the guest, %.1f to it"
                % ((tap1[0] - tap0[0]) / mb, (tap1[1] - tap0[1]) / mb))
    rates = {t: (c1[t] - c0[t]) / secs for t in TRIGGERS}
    return mb / secs, times, rates, cost


def report(name, mbs, times, rates, cost):
    print("%-12s %6.1f MB/s  fetch p50 %.2f s  p99 %.2f s  max %.2f s  (%d fetches)"
          "  checkpoints/s: %s"
          % (name, mbs, pct(times, 50), pct(times, 99), max(times), len(times),
             ", ".join("%s %.2f" % (t, r) for t, r in rates.items())))
    for line in cost:
        print(line)


def main():
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    why = missing_requirements()
    if why:
        print("skipped: %s" % why)
        return 0
    results = {}
    # unprotected: the primary's VM alone on the network, its twin idle beside
    topo = Topology()
    vm = twin = None
    try:
        topo.setup()
        vm = Vm(guest_args("colo.http=1") + THREAD_NAMES, name="unprotected",
                prefix=topo.exec_prefix(topo.pri))
        twin = Vm(guest_args("colo.http=1")[:-4] + THREAD_NAMES, name="twin",
                  prefix=topo.exec_prefix(topo.sec))
        vm.start()
        twin.start()
        vm.serial_wait("COLO-GUEST: ready", 240)
        results["unprotected"] = run(topo, duration, vm,
                                     {vm.proc.pid: "VM", twin.proc.pid: "twin"})
    finally:
        end_run(topo, None, vm and vm.shutdown, twin and twin.shutdown)
    topo = Topology()
    pair = None
    try:
        topo.setup()
        pair = Pair(topo, append="colo.http=1", qemu_args=THREAD_NAMES)
        pair.start()
        results["colo"] = run(topo, duration, pair.pri,
                              {pair.pri.proc.pid: "primary", pair.sec.proc.pid: "secondary"})
        names = [p["name"] for p in pair.pri.cmd("qom-list", path="/objects/comp0")
                 if p["name"].startswith("stat-")]
        comp = {n[5:]: pair.pri.cmd("qom-get", path="/objects/comp0", property=n)
                for n in names}
    finally:
        end_run(topo, None, pair and pair.stop)
    print("bulk TCP: 4 MiB fetches on fresh connections, %.0f s each way" % duration)
    for name, r in results.items():
        report(name, *r)
    print("colo-compare: longest hold %.0f ms; %s" % (
        comp["max-hold-us"] / 1000.0,
        ", ".join("%s %s" % (k, v) for k, v in sorted(comp.items())
                  if k != "max-hold-us" and v)))
    print("ratio colo/unprotected: %.2f"
          % (results["colo"][0] / results["unprotected"][0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
