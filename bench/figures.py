"""Figures shared by the benchmarks (they print figures, assert nothing)."""

import os


def pct(values, p):
    """The p-th percentile (0 to 100) of @values, nearest rank."""
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


# ---- where the CPU goes ------------------------------------------------------
# QEMU names its threads with -name ...,debug-threads=on (THREAD_NAMES): the
# main loop keeps the process's name, vCPUs are "CPU n/TCG" (or KVM), an
# iothread "IO <id>", migration threads "mig/...".
THREAD_NAMES = ["-name", "colo-bench,debug-threads=on"]


def thread_role(comm, is_main):
    if is_main:
        return "main loop"
    if comm.startswith("CPU "):
        return "vCPU"
    if comm.startswith("IO "):
        return "iothread"
    return "other"


def proc_stat(path):
    """(name, CPU seconds: user and system) of a process or thread from its
    /proc/.../stat file."""
    with open(path) as f:
        stat = f.read()
    fields = stat.rsplit(")", 1)[1].split()
    return (stat[stat.index("(") + 1:stat.rindex(")")],
            (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pid):
    """CPU seconds (user and system, all threads) process @pid used so far."""
    return proc_stat("/proc/%d/stat" % pid)[1]


def thread_cpu(pids):
    """{(pid, role): [CPU seconds (user and system), context switches,
    of which preemptions]} of every thread of the processes @pids so far."""
    out = {}
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            task = "/proc/%d/task/%s/" % (pid, tid)
            try:
                comm, secs = proc_stat(task + "stat")
                with open(task + "status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:             # the thread ended meanwhile
                continue
            preempted = int(status["nonvoluntary_ctxt_switches"])
            now = [secs, int(status["voluntary_ctxt_switches"]) + preempted, preempted]
            key = (pid, thread_role(comm, int(tid) == pid))
            out[key] = [a + b for a, b in zip(out.get(key, [0, 0, 0]), now)]
    return out


def machine_cpu():
    """The machine's CPU time so far in clock ticks: (busy, idle, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return sum(v[0:3]) + sum(v[5:7]), v[3] + v[4], v[7]


def cpu_report(before, after, mb, names):
    """Lines: QEMU CPU ms per MB by process and thread role between two
    (thread_cpu(), machine_cpu()) snapshots, context switches per MB (and
    how many preempted a vCPU), and the machine's busy, idle and stolen
    share meanwhile.  names: {pid: what the process is}."""
    (t0, m0), (t1, m1) = before, after
    lines = []
    for pid, name in names.items():
        used = {r: [b - a for a, b in zip(t0.get((p, r), [0, 0, 0]), v)]
                for (p, r), v in t1.items() if p == pid}
        parts = ["%s %.2f" % (r, v[0] * 1000 / mb)
                 for r, v in sorted(used.items()) if v[0] > 0]
        lines.append("  %-10s QEMU CPU %.2f ms/MB: %s; %.0f context switches/MB"
                     " (vCPU preempted %.1f/MB)"
                     % (name, sum(v[0] for v in used.values()) * 1000 / mb,
                        ", ".join(parts), sum(v[1] for v in used.values()) / mb,
                        used.get("vCPU", [0, 0, 0])[2] / mb))
    d = [b - a for a, b in zip(m0, m1)]
    lines.append("  machine: busy %.0f%%, idle %.0f%%, stolen by the host %.0f%%"
                 % tuple(100.0 * x / max(1, sum(d)) for x in d))
    return lines
