#!/usr/bin/env python3
"""Checkpoint pause benchmark (issue 3): prints figures, asserts nothing.

A 512 MiB Linux guest rewrites a 64 MiB buffer once a second (about
64 MiB/s of dirty RAM).  For x-checkpoint-delay 1000 and 200 ms it records
the primary's pause of each checkpoint (query-colo-status last-pause-us,
sampled as checkpoints complete), the RAM sent per checkpoint, and, in the
same run, how long a plain memcpy of that many bytes takes on this machine.
Target: median pause <= 3 x memcpy + 5 ms.  Under each delay, where the time
of a checkpoint goes (query-colo-status last-steps, bench/pause_steps.py).

    bench/colo_pause.py [--checkpoints N] [--delays 1000,200]
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "colo", "lib"))
from colo_pair import (colo_status, linux_guest_args,  # noqa: E402
                       loopback_tcp_uri, start_pair)
import pause_steps  # noqa: E402
from figures import pct  # noqa: E402


def memcpy_ms(nbytes, repeat=5):
    """Median time of one memcpy of nbytes between two fresh buffers."""
    nbytes = max(int(nbytes), 4096)
    src = ctypes.create_string_buffer(b"\x5a" * 4096, nbytes)
    dst = ctypes.create_string_buffer(nbytes)
    ctypes.memmove(dst, src, nbytes)            # fault the pages in first
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ctypes.memmove(dst, src, nbytes)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run_one(delay_ms, n_checkpoints):
    # TCP, as between two hosts (a unix socket hides TCP's own delays).
    pri, sec = start_pair(linux_guest_args(512), delay_ms=delay_ms,
                          uri=loopback_tcp_uri())
    try:
        pri.serial_wait("COLO-GUEST: ready", 120)
        # 64 MiB of random data once, then rewrite a copy of it every second.
        pri.serial_send("dd if=/dev/urandom of=/run/src bs=1M count=64 2>/dev/null; "
                        "echo src-ready")
        pri.serial_wait("src-ready\r", 300)
        pri.serial_send("while true; do cp /run/src /run/dst; sleep 1; done &")
        st = colo_status(pri)
        base_n, base_bytes, t0 = st["checkpoints"], st["ram-bytes"], time.monotonic()
        pauses, steps, last_n = [], [], base_n
        deadline = time.monotonic() + 60 + n_checkpoints * (delay_ms / 1000.0 + 2)
        while len(pauses) < n_checkpoints:
            st = colo_status(pri)
            if st["checkpoints"] != last_n:
                if st["checkpoints"] == last_n + 1:   # else: a sample was missed
                    pauses.append(st["last-pause-us"] / 1000.0)
                    steps.append(st.get("last-steps"))
                last_n = st["checkpoints"]
            if time.monotonic() > deadline:
                raise TimeoutError("checkpoints too slow: %d sampled" % len(pauses))
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        done = st["checkpoints"] - base_n
        sent = st["ram-bytes"] - base_bytes
        return (pauses, sent / max(done, 1), sent / elapsed, st["max-pause-us"] / 1000.0,
                steps)
    finally:
        pri.shutdown()
        sec.shutdown()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=20)
    ap.add_argument("--delays", default="1000,200")
    args = ap.parse_args()
    print("COLO checkpoint pause, 512 MiB guest rewriting 64 MiB/s "
          "(%d checkpoints per delay)" % args.checkpoints)
    for delay in (int(d) for d in args.delays.split(",")):
        pauses, per_ckpt, rate, max_pause, steps = run_one(delay, args.checkpoints)
        med, p99 = statistics.median(pauses), pct(pauses, 99)
        copy = memcpy_ms(per_ckpt)
        target = 3 * copy + 5
        print("delay %4d ms: pause median %.2f ms, p99 %.2f ms, max %.2f ms; "
              "RAM per checkpoint %.1f MiB (%.1f MiB/s sent); memcpy of that %.2f ms; "
              "target (3 x memcpy + 5 ms) %.2f ms: %s"
              % (delay, med, p99, max_pause, per_ckpt / 1048576.0, rate / 1048576.0,
                 copy, target, "met" if med <= target else "NOT met"))
        for line in pause_steps.summary(steps):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
