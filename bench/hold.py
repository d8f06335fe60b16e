#!/usr/bin/env python3
"""What a client waits for at each checkpoint: our COLO pair (the e2e guest,
IPv6 on, its echo service; a shell loop copies a random file of COPY MiB
once a second, so that checkpoints have a live RAM phase worth the name;
or colo.dirty=N keeps rewriting N MiB from /dev/urandom, a CPU-heavy
load), one connection with echo requests back to back for DURATION s at
x-checkpoint-delay DELAY ms.

Per checkpoint: the longest echo latency among the requests answered since
the previous checkpoint ended (the primary's checkpoint count, polled every
20 ms), and among those answered as the checkpoint ended (between the
primary's STOP and 20 ms after its RESUME: released by the checkpoint,
so held by colo-compare until then).  Prints their median and max over
the checkpoints, the echo latency p50/p99/max, colo-compare's
stat-max-hold-us (the longest hold since the pair started) and the
primary's pause (query-colo-status max-pause-us) to compare with.

Usage: hold.py [--duration S] [--delay MS] [--copy MiB] [--dirty MiB] [--detail]
(root, as the e2e suites).  Figures only, no assertion.
"""

import argparse
import os
import socket
import statistics
import sys
import time

os.environ.setdefault("E2E_DISKS", "0")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from client import Client  # noqa: E402
from e2e_pair import PORT, VARIANTS, Pair, end_run  # noqa: E402
from topology import GUEST_IP, Topology, missing_requirements  # noqa: E402
from figures import pct  # noqa: E402


def run(duration, delay_ms, dirty_mb, copy_mb):
    topo = Topology()
    pair = client = None
    try:
        topo.setup()
        pair = Pair(topo, append="colo.dirty=%d" % dirty_mb if dirty_mb else "",
                    guest=VARIANTS["ipv6"])
        pair.start()
        pri = pair.pri
        if copy_mb:
            # The console echoes the command typed: wait for what only the
            # shell's output holds.
            pri.serial_send("dd if=/dev/urandom of=/run/src bs=1M count=%d 2>/dev/null; "
                            "while true; do cp /run/src /run/dst; sleep 1; done & "
                            "echo loop-$((40+2))" % copy_mb)
            pri.serial_wait("loop-42", 300)
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": delay_ms})
        sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
        client = Client(sock, interval_s=0)
        client.connect((GUEST_IP, PORT), 60)
        client.start()
        client.wait_answers(1, 120)
        # Let the first checkpoint at the new delay pass.
        n0 = pri.cmd("query-colo-status")["checkpoints"]
        pri.wait_for(lambda: pri.cmd("query-colo-status")["checkpoints"] > n0, 120,
                     "a checkpoint at the new delay")
        st0 = pri.cmd("query-colo-status")
        ends, last = [time.monotonic()], st0["checkpoints"]
        t0 = time.monotonic()
        while time.monotonic() - t0 < duration:
            time.sleep(0.02)
            n = pri.cmd("query-colo-status")["checkpoints"]
            if n != last:
                ends.append(time.monotonic())
                last = n
        client.stop()
        # Wall-clock event stamps onto the client's monotonic clock.
        off = time.time() - time.monotonic()
        stamp = lambda ev: (ev["timestamp"]["seconds"] +
                            ev["timestamp"]["microseconds"] / 1e6 - off)
        evs = [(ev["event"], stamp(ev)) for ev in pri.poll_events()
               if ev["event"] in ("STOP", "RESUME")]
        pauses = [(a[1], b[1]) for a, b in zip(evs, evs[1:])
                  if a[0] == "STOP" and b[0] == "RESUME"]
        st1 = pri.cmd("query-colo-status")
        sec_pause_us = pair.sec.cmd("query-colo-status").get("max-pause-us", 0)
        hold_us = pri.cmd("qom-get", path="/objects/comp0",
                          property="stat-max-hold-us")
        recs = [r for r in client.records if ends[0] < r[2] <= ends[-1]]
        lat = [r[2] - r[1] for r in recs]
        per, detail = [], []
        for a, b in zip(ends, ends[1:]):
            in_ck = [r for r in recs if a < r[2] <= b]
            if in_ck:
                r = max(in_ck, key=lambda r: r[2] - r[1])
                per.append(r[2] - r[1])
                # the primary's pause nearest to the slowest answer
                p = min(pauses, key=lambda p: abs(p[1] - r[2])) if pauses else None
                detail.append((r[2] - r[1], p and r[1] - p[0], p and r[2] - p[1],
                               p and p[1] - p[0]))
        # Answers released by the checkpoint itself (at RECEIVED, when the
        # primary resumes): answered between a STOP and 20 ms after its
        # RESUME.  Their latency is what the checkpoint held them.
        at_ck = []
        for stop, resume in pauses:
            got = [r[2] - r[1] for r in recs if stop <= r[2] <= resume + 0.02]
            if got:
                at_ck.append(max(got))
        return {
            "at_ck": at_ck, "secs": ends[-1] - ends[0],
            "checkpoints": st1["checkpoints"] - st0["checkpoints"],
            "triggers": {t: st1.get("checkpoints-" + t, 0) - st0.get("checkpoints-" + t, 0)
                         for t in ("periodic", "mismatch", "timeout", "forced")},
            "requests": len(lat), "lat": lat, "per": per, "detail": detail,
            "hold_us": hold_us, "max_pause_us": st1.get("max-pause-us", 0),
            "sec_pause_us": sec_pause_us,
            "ram_per_ckpt": (st1["ram-bytes"] - st0["ram-bytes"]) /
                            max(st1["checkpoints"] - st0["checkpoints"], 1),
        }
    finally:
        if client:
            client.close()
        end_run(topo, None, pair and pair.stop)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--delay", type=int, default=1000)
    ap.add_argument("--dirty", type=int, default=0,
                    help="colo.dirty: keep rewriting this many MiB (random)")
    ap.add_argument("--copy", type=int, default=32,
                    help="copy a random file of this many MiB once a second")
    ap.add_argument("--detail", action="store_true",
                    help="the slowest request of each checkpoint against the pause")
    args = ap.parse_args()
    why = missing_requirements()
    if why:
        print("skipped: %s" % why)
        return 0
    r = run(args.duration, args.delay, args.dirty, args.copy)
    ms = lambda s: s * 1000
    print("hold: e2e guest (IPv6 on, colo.dirty=%d, copying %d MiB once a second), "
          "echo back to back, %.0f s, x-checkpoint-delay %d"
          % (args.dirty, args.copy, args.duration, args.delay))
    print("checkpoints %d (%s), RAM %.2f MB per checkpoint, %d requests"
          % (r["checkpoints"], ", ".join("%s %d" % kv for kv in r["triggers"].items()),
             r["ram_per_ckpt"] / 1e6, r["requests"]))
    if r["per"]:
        print("longest echo latency per checkpoint: median %.1f ms, max %.1f ms "
              "(%d checkpoints)" % (ms(statistics.median(r["per"])), ms(max(r["per"])),
                                    len(r["per"])))
    if r["at_ck"]:
        print("answers released at a checkpoint's end (STOP to RESUME + 20 ms): the "
              "longest latency per checkpoint: median %.1f ms, max %.1f ms (%d checkpoints)"
              % (ms(statistics.median(r["at_ck"])), ms(max(r["at_ck"])), len(r["at_ck"])))
    if r["lat"]:
        print("requests/s %.1f" % (r["requests"] / r["secs"]))
        print("echo latency p50 %.1f ms, p99 %.1f ms, max %.1f ms"
              % (ms(pct(r["lat"], 50)), ms(pct(r["lat"], 99)), ms(max(r["lat"]))))
    print("stat-max-hold-us %d, max-pause-us primary %d, secondary %d (all since "
          "the pair started)" % (r["hold_us"], r["max_pause_us"], r["sec_pause_us"]))
    if args.detail:
        print("per checkpoint, its slowest request: latency, sent and answered "
              "relative to the primary's nearest STOP and RESUME, that pause (ms)")
        for lat, sent, answered, pause in r["detail"]:
            print("  %7.1f  sent %+8.1f  answered %+8.1f  pause %6.1f"
                  % (ms(lat), ms(sent or 0), ms(answered or 0), ms(pause or 0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
