"""Where a checkpoint's time goes on the primary: query-colo-status
last-steps (COLOCheckpointSteps), sampled one checkpoint at a time, and a
summary line per run for the pause benchmarks (colo_pause.py, client.py).
"""

import statistics
from figures import pct

# The guest runs during these; the pause (STOP to RESUME) is the rest.
RUNNING = ("request", "live")
PAUSED = ("stop", "disks", "ram", "device", "send", "received", "resume")


def sample(vm, after, pause_ms, timeout=30):
    """(count, steps): once checkpoint number after+1 is recorded (the
    primary records it at LOADED, just after RESUME), its steps, or None
    when more than one completed meanwhile or its paused steps do not add
    up to pause_ms (the STOP/RESUME pair the caller measured was another
    checkpoint's)."""
    st = vm.wait_for(lambda: (lambda s: s if s["checkpoints"] > after else None)(
        vm.cmd("query-colo-status")), timeout, "checkpoint %d recorded" % (after + 1))
    steps = st.get("last-steps")
    if st["checkpoints"] != after + 1 or not steps:
        return st["checkpoints"], None
    paused = sum(steps[name + "-us"] for name in PAUSED) / 1000.0
    if abs(paused - pause_ms) > max(2.0, pause_ms / 2):
        return st["checkpoints"], None
    return st["checkpoints"], steps


def summary(samples):
    """Lines: each step's median and p99 in ms, then the live phase's
    rounds, the residual RAM and the throttle."""
    samples = [s for s in samples if s]
    if not samples:
        return ["steps: n/a (no per-step figures)"]

    def ms(step, p):
        return pct([s[step + "-us"] / 1000.0 for s in samples], p)

    def line(steps):
        return "  ".join("%s %.2f/%.2f" % (name, ms(name, 50), ms(name, 99))
                         for name in steps)

    res = [s["residual-bytes"] for s in samples]
    return ["steps, ms median/p99 (%d checkpoints):" % len(samples),
            "  guest running: " + line(RUNNING),
            "  paused:        " + line(PAUSED),
            "  live rounds median %d max %d; residual RAM median %.2f MB max %.2f MB; "
            "live RAM median %.2f MB; vCPU throttle max %d%%"
            % (statistics.median(s["live-rounds"] for s in samples),
               max(s["live-rounds"] for s in samples),
               statistics.median(res) / 1e6, max(res) / 1e6,
               statistics.median(s["live-bytes"] for s in samples) / 1e6,
               max(s["throttle-percent"] for s in samples))]
