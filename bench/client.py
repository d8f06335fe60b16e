#!/usr/bin/env python3
"""What the client feels, three ways in one run: the same guest and the same
client against

  unprotected  the VM alone on the network, an identical second VM (its
               twin) running idle beside it, not protected
  unprot-busy  the same, but the twin serves the same workload at the same
               time, from a second client of its own (on the secondary
               host's namespace, cut off from the switch): both VMs work, as
               a COLO pair's do, so that both ways pay for the same CPU.  On
               this 2-core machine a COLO secondary takes about half of
               what the VMs get; the idle twin does not.
  colo         our COLO pair (x-checkpoint-delay 2000 ms, as the e2e suites)
  upstream     upstream QEMU 10.0.13's own COLO, built by
               bench/upstream-build.sh with only its one-line lock fix, run
               through the same documented procedure and command line

Guest: the e2e test guest with IPv6 left on and busybox httpd (colo.http=1).
Three workloads per way, one after the other on the same VMs:

  http   GET / on a fresh TCP connection each, one at a time
  echo   one long connection to the guest's echo service (tests/colo/e2e/
         client.py), one request outstanding, the next sent on the answer
  bulk   GET /bulk (4 MiB) on a fresh TCP connection each, one at a time
         (as bench/bulk.py)

For each: requests/s (bulk: MB/s), latency p50/p99/max, checkpoints/s by
trigger, the longest colo-compare hold, and the ratios colo/unprotected,
colo/upstream.  Also the CPU time of the way's QEMU processes per request
(bulk: per MB) their guests served together (unprot-busy: the VM's and its
twin's; COLO: the pair's, which serve each request once), and from it the
ratio colo/unprot-busy to expect where both ways' QEMUs get the same CPU
and the twin takes half of its pair's: on a machine both keep busy, that is
what the rates follow.
Checkpoints by trigger: ours from query-colo-status.  Upstream has no
counters: its primary traces every "checkpoint-request" it sends
(-trace colo_send_message, with -msg timestamp=on); upstream re-arms its
periodic timer at every checkpoint, so a request that comes sooner than
x-checkpoint-delay after the previous one was asked for by colo-compare
(a mismatch or a timeout: upstream does not say which) and one at the
delay is periodic.  Longest hold: ours reads colo-compare's stat-max-hold-us;
upstream has no such figure.

Then the pause benchmark against upstream, same run: a checkpoint-only pair
(no guest network; the COLO channel on loopback TCP, as between two hosts)
at x-checkpoint-delay 1000; pause = the primary's QMP STOP to
RESUME of each checkpoint; on two guests:

  tmpfs32      256 MiB, its only load a shell loop writing 32 MiB to tmpfs
               (from /dev/zero) once a second, started on the serial console
  tmpfs32-512  the same with 512 MiB (--guests; not run by default)
  dirty64      bench/colo_pause.py's guest: 512 MiB, a 64 MiB random buffer
               copied once a second
  bootsect     the controller tests' boot-sector guest (128 MiB): writes
               each of its 25344 pages over and over, faster than a live
               round sends them (--guests; not run by default)

For ours, each checkpoint's steps (query-colo-status last-steps) are
printed under its pause: where the time goes (bench/pause_steps.py).

The ways run in --rounds rounds (default 4), interleaved (unprotected,
unprot-busy, colo, upstream, then again), each round --duration/rounds
seconds per workload (default 40/4) on freshly booted VMs; figures pool the
rounds, and the ratios are also given per round.  This machine's speed
drifts by as much as 2x within minutes: a ratio of two ways measured
minutes apart said as much about the drift as about COLO.  With 2 rounds,
one run's bulk ratio to unprot-busy had rounds at 0.34 and 0.47, another
at 0.40 and 0.44, a third at 0.48 and 0.77: 4 rounds halve the weight of
one unlucky round.

Usage: client.py [--duration S] [--rounds N] [--checkpoints N]
                 [--only client|pause] [--guests tmpfs32,dirty64] [--no-upstream]
(root, as the e2e suites).  Figures only, no assertion.
"""

import argparse
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import time

os.environ.setdefault("E2E_DISKS", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from client import Client  # noqa: E402
from colo_pair import (bootsect_guest_args, linux_guest_args,  # noqa: E402
                       loopback_tcp_uri, start_pair)
from colo_vm import DEFAULT_BINARY, Vm  # noqa: E402
from e2e_pair import (CHECKPOINT_DELAY_MS, PORT, VARIANTS, Pair,  # noqa: E402
                      end_run, guest_args, http_get)
from topology import (CLIENT_IP, GUEST_IP, GUEST_MAC, Topology,  # noqa: E402
                      missing_requirements)
from spurious import TRIGGERS, colo_counts  # noqa: E402
import pause_steps  # noqa: E402
from figures import cpu_seconds, pct  # noqa: E402

GUEST = VARIANTS["ipv6"]
APPEND = "colo.http=1"
TRACE_RE = re.compile(r"@(\d+)\.(\d+):colo_send_message Send 'checkpoint-request'")


def upstream_binary():
    """Build (once) upstream's QEMU; its path, or raise with the reason."""
    r = subprocess.run(["bash", os.path.join(HERE, "upstream-build.sh")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("build failed: %s" % r.stderr.strip().splitlines()[-1:])
    return r.stdout.strip().splitlines()[-1]


# ---- the two workloads -----------------------------------------------------

def http_run(topo, duration):
    """GET / on fresh connections for duration s; (latencies, errors, secs)."""
    lat, errors = [], 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < duration:
        t = time.monotonic()
        try:
            _, head = http_get(topo, "/", 30)
            if b" 200 " not in head.split(b"\r\n", 1)[0]:
                raise OSError("bad answer %r" % head[:40])
            lat.append(time.monotonic() - t)
        except OSError:
            errors += 1
    return lat, errors, time.monotonic() - t0


def echo_run(topo, duration):
    """One connection to the echo service, requests back to back."""
    sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
    client = Client(sock, interval_s=0)
    try:
        client.connect((GUEST_IP, PORT), 60)
        t0 = time.monotonic()
        client.start()
        client.wait_answers(1, 120)
        while time.monotonic() - t0 < duration:
            client.wait_answers(client.answers() + 1, 120)
        secs = time.monotonic() - t0
        client.stop()
        lat = [r[2] - r[1] for r in client.records]
        return lat, 0, secs
    finally:
        client.close()


BULK_SIZE = 4 << 20


def bulk_run(topo, duration):
    """GET /bulk on fresh connections for duration s; a fetch that got less
    than the whole file counts as an error."""
    lat, errors = [], 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < duration:
        t = time.monotonic()
        try:
            got, _ = http_get(topo, "/bulk")
            if got < BULK_SIZE:
                raise OSError("short fetch: %d bytes" % got)
            lat.append(time.monotonic() - t)
        except OSError:
            errors += 1
    return lat, errors, time.monotonic() - t0


WORKLOADS = (("http", http_run), ("echo", echo_run), ("bulk", bulk_run))
WHAT = {"http": "GET / on a fresh connection each",
        "echo": "one connection, request/response back to back",
        "bulk": "GET of 4 MiB on a fresh connection each; MB/s of the body"}


def cpu_s(vms):
    """CPU seconds (user and system, all threads) the VMs' QEMU processes
    have used so far."""
    return sum(cpu_seconds(vm.proc.pid) for vm in vms)


def served(wl, n):
    """n answers of workload wl in its unit: requests, or MB for bulk."""
    return n * BULK_SIZE / 1e6 if wl == "bulk" else n


# ---- checkpoint counts per way -------------------------------------------

class Counts:
    """Checkpoints by trigger and longest hold, for one way."""

    def begin(self):
        pass

    def end(self, secs):
        return "n/a (not protected)", None


class OurCounts(Counts):
    def __init__(self, vm):
        self.vm = vm

    def hold_us(self):
        return self.vm.cmd("qom-get", path="/objects/comp0", property="stat-max-hold-us")

    def begin(self):
        self.c0 = colo_counts(self.vm)
        self.h0 = self.hold_us()

    def end(self, secs):
        c1 = colo_counts(self.vm)
        hold = self.hold_us()
        d = {t: c1[t] - self.c0[t] for t in TRIGGERS}
        # stat-max-hold-us is a maximum since the object was made: it says
        # this workload's longest hold only when the workload raised it.
        return ("%.2f: %s" % (sum(d.values()) / secs,
                              ", ".join("%s %.2f" % (t, d[t] / secs) for t in TRIGGERS)),
                "%.0f ms" % (hold / 1000.0) if hold > self.h0 else
                "<= %.0f ms (not raised by this workload)" % (hold / 1000.0))


class UpstreamCounts(Counts):
    def __init__(self, trace_path, delay_ms):
        self.path, self.delay = trace_path, delay_ms / 1000.0

    def _requests(self):
        with open(self.path, errors="replace") as f:
            return [int(m.group(1)) + int(m.group(2)) / 1e6
                    for m in TRACE_RE.finditer(f.read())]

    def begin(self):
        self.t0 = time.time()

    def end(self, secs):
        t1 = time.time()
        reqs = self._requests()
        inside = [(prev, t) for prev, t in zip(reqs, reqs[1:]) if self.t0 <= t <= t1]
        early = sum(1 for prev, t in inside if t - prev < 0.9 * self.delay)
        return ("%.2f: at the periodic interval %.2f, sooner (colo-compare: mismatch "
                "or timeout) %.2f" % (len(inside) / secs, (len(inside) - early) / secs,
                                       early / secs),
                "n/a (upstream has no such figure)")


# ---- the three ways ---------------------------------------------------------

def run_workloads(topo, duration, counts, vms):
    out = {}
    for name, fn in WORKLOADS:
        counts.begin()
        cpu = cpu_s(vms)
        lat, errors, secs = fn(topo, duration)
        cpu = cpu_s(vms) - cpu
        ckpt, hold = counts.end(secs)
        out[name] = (lat, errors, secs, ckpt, hold, cpu, served(name, len(lat)))
    return out


class TwinSide:
    """What the workloads need of a topology (its client namespace and
    socket_in), for the twin's own client: the secondary host's namespace,
    where the twin's tap0 is cut off from the switch and carries the
    client's address (twin_network)."""

    def __init__(self, topo):
        self.client = topo.sec
        self.socket_in = topo.socket_in


def twin_network(topo):
    topo.ip(topo.sec, "link", "set", "tap0", "nomaster")
    topo.ip(topo.sec, "addr", "add", "%s/24" % CLIENT_IP, "dev", "tap0")
    topo.ip(topo.sec, "neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC,
            "dev", "tap0", "nud", "permanent")


def twin_worker(fn, side, duration, conn):
    lat, errors, secs = fn(side, duration)
    conn.send((len(lat), errors, secs))


def run_workloads_twin_busy(topo, duration, vms):
    """Each workload against the VM while the twin serves the same one from
    its own client, in a process of its own; the twin's runs 2 s longer, so
    that it covers the measured one."""
    out = {}
    ctx = multiprocessing.get_context("fork")
    for name, fn in WORKLOADS:
        rx, tx = ctx.Pipe(duplex=False)
        load = ctx.Process(target=twin_worker, daemon=True,
                           args=(fn, TwinSide(topo), duration + 2, tx))
        load.start()
        try:
            cpu = cpu_s(vms)
            lat, errors, secs = fn(topo, duration)
            cpu = cpu_s(vms) - cpu
            if not rx.poll(duration + 150):
                raise RuntimeError("the twin's %s load did not end" % name)
            n, t_errors, t_secs = rx.recv()
        finally:
            load.terminate()
            load.join(30)
        twin_rate = served(name, n) / t_secs
        twin = "twin served %.1f %s" % (twin_rate, "MB/s" if name == "bulk" else "req/s")
        # The twin's load covers the measured window: what it served in
        # that window counts with the VM's against the CPU both took.
        out[name] = (lat, errors, secs, "n/a (not protected; %s%s)"
                     % (twin, ", %d errors" % t_errors if t_errors else ""), None,
                     cpu, served(name, len(lat)) + twin_rate * secs)
    return out


def way_unprotected(duration, busy_twin=False):
    topo = Topology()
    vm = twin = None
    try:
        topo.setup()
        vm = Vm(guest_args(APPEND, GUEST), name="unprotected",
                prefix=topo.exec_prefix(topo.pri))
        if busy_twin:
            twin_network(topo)
        # idle: without its NIC (the last four arguments)
        twin = Vm(guest_args(APPEND, GUEST)[:None if busy_twin else -4],
                  name="twin", prefix=topo.exec_prefix(topo.sec))
        vm.start()
        twin.start()
        vm.serial_wait("COLO-GUEST: ready", 240)
        if not busy_twin:
            return run_workloads(topo, duration, Counts(), (vm, twin))
        twin.serial_wait("COLO-GUEST: ready", 240)
        return run_workloads_twin_busy(topo, duration, (vm, twin))
    finally:
        end_run(topo, None, vm and vm.shutdown, twin and twin.shutdown)


def way_colo(duration, binary=None):
    topo = Topology()
    pair = None
    try:
        topo.setup()
        pair = Pair(topo, append=APPEND, guest=GUEST)
        if binary:
            trace = pair.pri.path("colo-trace.log")
            for vm in (pair.pri, pair.sec):
                vm.binary = binary
            pair.pri.add_args("-msg", "timestamp=on",
                              "-trace", "enable=colo_send_message,file=%s" % trace)
            counts = lambda: UpstreamCounts(trace, CHECKPOINT_DELAY_MS)
        else:
            counts = lambda: OurCounts(pair.pri)
        pair.start()
        return run_workloads(topo, duration, counts(), (pair.pri, pair.sec))
    finally:
        end_run(topo, None, pair and pair.stop)


def merge_rounds(rounds):
    """One way's rounds as one result: latencies and times pooled; the
    checkpoint and hold figures of each round side by side."""
    failed = [r for r in rounds if isinstance(r, str)]
    if failed:
        return failed[0]
    out = {}
    for wl, _ in WORKLOADS:
        rs = [r[wl] for r in rounds]
        ckpt = [r[3] for r in rs]
        holds = [r[4] for r in rs if r[4]]
        out[wl] = (sum((r[0] for r in rs), []), sum(r[1] for r in rs),
                   sum(r[2] for r in rs),
                   ckpt[0] if len(set(ckpt)) == 1 else
                   " | ".join("round %d %s" % (i + 1, c) for i, c in enumerate(ckpt)),
                   " | ".join(holds) if holds else None,
                   sum(r[5] for r in rs), sum(r[6] for r in rs))
    return out


def round_rate(res, wl):
    lat, _, secs = res[wl][:3]
    return len(lat) / secs if lat else None


def report_client(results, duration, rounds):
    n_rounds = len(rounds["colo"])
    print("client: the e2e guest (IPv6 on, httpd), %.0f s per workload in %d rounds "
          "(each way booted once per round, the ways interleaved); COLO at "
          "x-checkpoint-delay %d ms" % (duration, n_rounds, CHECKPOINT_DELAY_MS))
    for wl, _ in WORKLOADS:
        print("-- %s (%s)" % (wl, WHAT[wl]))
        rate = {}
        p99 = {}
        cost = {}
        for way, res in results.items():
            if isinstance(res, str):
                print("%-12s %s" % (way, res))
                continue
            lat, errors, secs, ckpt, hold, cpu, units = res[wl]
            if units:
                cost[way] = cpu / units * 1000
            if not lat:
                print("%-12s no answer in %.0f s (%d errors)" % (way, secs, errors))
                continue
            rate[way], p99[way] = len(lat) / secs, pct(lat, 99) * 1000
            if wl == "bulk":
                rate[way] *= BULK_SIZE / 1e6
            print("%-12s %7.1f %s  latency p50 %.1f ms  p99 %.1f ms  max %.1f ms"
                  "%s  checkpoints/s %s%s"
                  % (way, rate[way], "MB/s " if wl == "bulk" else "req/s",
                     pct(lat, 50) * 1000, p99[way], max(lat) * 1000,
                     "  errors %d" % errors if errors else "", ckpt,
                     "  longest hold %s" % hold if hold else ""))
            print("%-12s   QEMU CPU %.2f ms per %s served (%.2f cores)"
                  % ("", cost[way], "MB" if wl == "bulk" else "request", cpu / secs))
        unit = "MB/s" if wl == "bulk" else "req/s"
        for other in ("unprotected", "unprot-busy", "upstream"):
            if "colo" in rate and other in rate:
                pairs = [(round_rate(c, wl), round_rate(o, wl))
                         for c, o in zip(rounds["colo"], rounds[other])]
                print("ratio colo/%s: %s %.2f, p99 latency %.2f  (%s by round: %s)"
                      % (other, unit, rate["colo"] / rate[other],
                         p99["colo"] / p99[other], unit,
                         ", ".join("%.2f" % (c / o) for c, o in pairs if c and o)))
        if "colo" in cost and "unprot-busy" in cost:
            # The VM beside its busy twin serves about half of what the
            # two serve with the CPU they take; COLO serves all of its own.
            print("QEMU CPU per %s, 2 x unprot-busy/colo: %.2f (the %s ratio "
                  "colo/unprot-busy where both ways' QEMUs get the same CPU and "
                  "the twin takes half)"
                  % ("MB" if wl == "bulk" else "request",
                     2 * cost["unprot-busy"] / cost["colo"], unit))
    print("(longest hold: the longest any packet waited in colo-compare, "
          "stat-max-hold-us)")


# ---- the pause benchmark -------------------------------------------------------

def pause_run(binary, guest, n):
    """Pauses (ms) of n checkpoints of a checkpoint-only pair at delay 1000."""
    saved = os.environ.get("QEMU_COLO_BINARY")
    os.environ["QEMU_COLO_BINARY"] = binary
    try:
        mem = 256 if guest == "tmpfs32" else 512
        # TCP, as between two hosts: a unix socket would not show what
        # TCP's own delays (Nagle's algorithm, delayed ACKs) add to a pause.
        pri, sec = start_pair(bootsect_guest_args(128) if guest == "bootsect"
                              else linux_guest_args(mem), delay_ms=1000,
                              uri=loopback_tcp_uri())
    finally:
        if saved is None:
            del os.environ["QEMU_COLO_BINARY"]
        else:
            os.environ["QEMU_COLO_BINARY"] = saved
    try:
        # "loop-$((40+2))": the console echoes the command typed, so wait
        # for what only the shell's output holds.  The boot-sector guest
        # dirties RAM from the start.
        if guest.startswith("tmpfs32"):
            pri.serial_wait("COLO-GUEST: ready", 240)
            pri.serial_send("while true; do dd if=/dev/zero of=/run/w bs=1M count=32 "
                            "2>/dev/null; sleep 1; done & echo loop-$((40+2))")
            pri.serial_wait("loop-42", 300)
        elif guest == "dirty64":
            pri.serial_wait("COLO-GUEST: ready", 240)
            pri.serial_send("dd if=/dev/urandom of=/run/src bs=1M count=64 2>/dev/null; "
                            "while true; do cp /run/src /run/dst; sleep 1; done & "
                            "echo loop-$((40+2))")
            pri.serial_wait("loop-42", 300)
        pri.poll_events()
        st0 = pri.cmd("query-colo-status")
        ours = "checkpoints" in st0
        done = st0.get("checkpoints")
        pauses, steps, stop = [], [], None
        skip = 2        # the loop's first seconds
        deadline = time.monotonic() + 120 + n * 5
        while len(pauses) < n + skip:
            if time.monotonic() > deadline:
                raise TimeoutError("%d pauses in time" % len(pauses))
            ev = pri.wait_event("STOP" if stop is None else "RESUME", 30)
            ts = ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6
            if stop is None:
                stop = ts
            else:
                pauses.append((ts - stop) * 1000)
                stop = None
                if ours:
                    done, one = pause_steps.sample(pri, done, pauses[-1])
                    steps.append(one)
        per = None
        if ours:        # upstream has no such counters
            st1 = pri.cmd("query-colo-status")
            n_ckpt = max(st1["checkpoints"] - st0["checkpoints"], 1)
            per = ((st1["ram-bytes"] - st0["ram-bytes"]) / n_ckpt,
                   (st1.get("device-state-bytes", 0) -
                    st0.get("device-state-bytes", 0)) / n_ckpt)
        return pauses[skip:], per, steps[skip:]
    finally:
        pri.shutdown()
        sec.shutdown()


def report_pause(rows):
    print("pause: checkpoint-only pair, COLO channel on loopback TCP, "
          "x-checkpoint-delay 1000, primary's "
          "STOP->RESUME")
    for guest, res in rows.items():
        med = {}
        for way, p in res.items():
            if isinstance(p, str):
                print("%-8s %-9s %s" % (guest, way, p))
                continue
            p, per, steps = p
            med[way] = statistics.median(p)
            print("%-8s %-9s median %.1f ms  p99 %.1f ms  max %.1f ms  (%d checkpoints)  %s"
                  % (guest, way, med[way], pct(p, 99), max(p), len(p),
                     "per checkpoint: RAM %.2f MB, device state %.0f kB"
                     % (per[0] / 1e6, per[1] / 1e3) if per else
                     "per checkpoint: n/a (no counters upstream)"))
            if per:
                for line in pause_steps.summary(steps):
                    print("%-8s %-9s   %s" % (guest, way, line))
        if len(med) == 2:
            print("%-8s ratio colo/upstream (median): %.2f"
                  % (guest, med["colo"] / med["upstream"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=40.0,
                    help="client: seconds per workload and way, all rounds together")
    ap.add_argument("--checkpoints", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=4,
                    help="client: run the ways this many times, interleaved")
    ap.add_argument("--only", choices=("client", "pause"))
    ap.add_argument("--guests", default="tmpfs32,dirty64",
                    help="pause guests: tmpfs32, tmpfs32-512, dirty64, bootsect")
    ap.add_argument("--no-upstream", action="store_true",
                    help="leave upstream out (its build takes about 10 minutes)")
    args = ap.parse_args()
    why = missing_requirements()
    if why:
        print("skipped: %s" % why)
        return 0
    try:
        upstream, up_err = (None, "left out (--no-upstream)") if args.no_upstream \
            else (upstream_binary(), None)
    except Exception as e:
        upstream, up_err = None, "failed: %s" % e

    def attempt(fn, *a):
        try:
            return fn(*a)
        except Exception as e:
            # On one line, with what QEMU said (a VmExited's second line on).
            return "failed: %s: %s" % (type(e).__name__, " ".join(str(e).split())[:400])

    if args.only != "pause":
        ways = [("unprotected", way_unprotected, ()),
                ("unprot-busy", way_unprotected, (True,)),
                ("colo", way_colo, ())]
        if upstream is not None:
            ways.append(("upstream", way_colo, (upstream,)))
        rounds = {name: [] for name, _, _ in ways}
        for _ in range(args.rounds):
            for name, fn, extra in ways:
                rounds[name].append(attempt(fn, args.duration / args.rounds, *extra))
        results = {name: merge_rounds(r) for name, r in rounds.items()}
        if upstream is None:
            results["upstream"] = up_err
        report_client(results, args.duration, rounds)
    if args.only != "client":
        rows = {}
        for guest in args.guests.split(","):
            rows[guest] = {"colo": attempt(pause_run, DEFAULT_BINARY, guest,
                                           args.checkpoints)}
            rows[guest]["upstream"] = (up_err if upstream is None else
                                       attempt(pause_run, upstream, guest,
                                               args.checkpoints))
        report_pause(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
