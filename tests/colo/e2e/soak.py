#!/usr/bin/env python3
"""Soak: many fault trials of a protected pair, a table of what passed.

Each trial (fault_trial.py) starts a fresh pair on a fresh namespaced
topology, runs the client on one connection against the varying-answer,
record-writing guest (colo.vary=1, colo.records), injects one fault, runs
the documented recovery and checks: the survivor keeps serving, the
client's stream is well formed, every acknowledged record is on the
survivor's disk, never two VMs serving.

Cases (fault_trial.all_cases()):
  {kill -9, SIGSTOP} x {primary, secondary} x {idle, each fault injection
  point of that side}, the COLO link cut idle and while the primary stands
  at before-received; kill -9 of the primary while the secondary stands at
  each of its points, and 5, 15 and 30 ms after the primary's after-stop
  (both sides going on), these with identical guests (answers released as
  they match).

Trials go round the cases (one trial of every case, then the next round),
so a run cut short still covers every case.  A failed trial's logs (QEMU
logs and consoles, the client's transcript, diagnose()) are kept under the
log directory, printed at the start and the end.  Prints one TAP line per
trial and, at the end, the table "case | passed | failed".

Usage: soak.py [--short] [--trials N] [--logdir DIR] [CASE-SUBSTRING...]
  --short     a handful of cases, one trial each (make check's soak-short)
  --trials N  trials per case (default $SOAK_TRIALS, else 3: 72 trials)
  CASE-SUBSTRING...  only the cases whose name contains one of them
Environment: SOAK_TRIALS, SOAK_LOGDIR (default build/test-logs/soak-DATE),
SOAK_PEER_TIMEOUT_MS (x-colo-peer-timeout of the pair, default 5000),
SOAK_ANSWERS_AFTER (answers on the survivor per trial, default 10),
E2E_DISKS=0 (no disk replication, no record check).
"""

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import DEFAULT_BINARY, REPO_ROOT, guest_files  # noqa: E402
from topology import missing_requirements  # noqa: E402
from fault_trial import Case, all_cases, run_trial  # noqa: E402

SHORT = [Case("kill", "primary", "before-received"),
         Case("kill", "primary", "after-compares-told"),
         Case("stop", "primary", "after-stop"),
         Case("stop", "secondary", "before-loaded"),
         Case("kill", "secondary", None),
         Case("link")]


def log(msg):
    sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def main():
    args = sys.argv[1:]
    short = False
    trials = int(os.environ.get("SOAK_TRIALS", "3"))
    logdir = os.environ.get("SOAK_LOGDIR") or os.path.join(
        REPO_ROOT, "build", "test-logs", "soak-" + time.strftime("%Y%m%d-%H%M%S"))
    filters = []
    while args:
        a = args.pop(0)
        if a == "--short":
            short = True
        elif a == "--trials":
            trials = int(args.pop(0))
        elif a == "--logdir":
            logdir = args.pop(0)
        else:
            filters.append(a)
    cases = SHORT if short else all_cases()
    if short and "SOAK_TRIALS" not in os.environ and "--trials" not in sys.argv:
        trials = 1
    if filters:
        cases = [c for c in cases if any(f in c.name for f in filters)]
    if not cases:
        print("not ok - soak: no case matches %s" % filters)
        return 1

    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    if why:
        print("not ok - soak (cannot run: %s)" % why)
        return 1

    # a SIGTERM (a timeout) still ends every trial's VMs and namespaces
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))
    snapshot = None
    if not os.environ.get("QEMU_COLO_BINARY"):
        snapshot = snapshot_binary()
        os.environ["QEMU_COLO_BINARY"] = snapshot[1]
    try:
        return soak(cases, trials, logdir)
    finally:
        if snapshot:
            shutil.rmtree(snapshot[0], ignore_errors=True)


def snapshot_binary():
    """One QEMU binary for the whole run: a copy of the build's, taken under
    the build's lock (assembly/build.sh), since the shared build may be
    relinked meanwhile; its qemu-bundle (firmware) by a link.  Returns
    (directory, binary)."""
    d = tempfile.mkdtemp(prefix="colo-soak-bin-")
    binary = os.path.join(d, os.path.basename(DEFAULT_BINARY))
    lock = os.path.join(os.path.dirname(os.path.dirname(DEFAULT_BINARY)), ".lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            shutil.copy2(DEFAULT_BINARY, binary)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
    os.symlink(os.path.join(os.path.dirname(DEFAULT_BINARY), "qemu-bundle"),
               os.path.join(d, "qemu-bundle"))
    subprocess.run([binary, "--version"], check=True, stdout=subprocess.DEVNULL)
    return d, binary


def soak(cases, trials, logdir):
    log("soak: %d cases x %d trials = %d trials; logs of failed trials under %s"
        % (len(cases), trials, len(cases) * trials, logdir))
    results = {c.name: [0, 0] for c in cases}
    failures = []
    t_start = time.monotonic()
    number = 0
    for rnd in range(trials):
        for case in cases:
            number += 1
            t0 = time.monotonic()
            d = os.path.join(logdir, "%03d-%s" % (number, case.slug))
            what = "soak trial %d (round %d): %s" % (number, rnd + 1, case.name)
            try:
                run_trial(case, logdir=d, log=log,
                          suffix="%d-%d" % (os.getpid(), number))
            except Exception as e:
                results[case.name][1] += 1
                failures.append((number, case.name, d))
                print("not ok - %s (%.0fs)" % (what, time.monotonic() - t0))
                for line in str(e).splitlines()[:40]:
                    print("#   " + line)
                print("#   logs: %s" % d)
            else:
                results[case.name][0] += 1
                print("ok - %s (%.0fs)" % (what, time.monotonic() - t0))
            sys.stdout.flush()

    width = max(len(n) for n in results)
    total_p = sum(p for p, f in results.values())
    total_f = sum(f for p, f in results.values())
    print("#")
    print("# %-*s | passed | failed" % (width, "case"))
    print("# %s-+--------+-------" % ("-" * width))
    for case in cases:
        p, f = results[case.name]
        print("# %-*s | %6d | %6d" % (width, case.name, p, f))
    print("# %s-+--------+-------" % ("-" * width))
    print("# %-*s | %6d | %6d" % (width, "all (%d trials, %.0f min)"
                                  % (total_p + total_f,
                                     (time.monotonic() - t_start) / 60),
                                  total_p, total_f))
    if failures:
        print("# logs of the %d failed trial(s) in %s:" % (len(failures), logdir))
        for number, name, d in failures:
            print("#   %s  (%s)" % (d, name))
    else:
        print("# no trial failed (log directory %s not created)" % logdir)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
