#!/usr/bin/env python3
"""Output commit as the client sees it: the primary dies at an exact point
of a checkpoint, the secondary takes over, and the client's one connection
reads a well-formed stream.

The guest answers every request with "<n> req-k <pad>", the pad's length
differing between the two VMs (colo.vary=1): every answer is a mismatch,
released to the client only by a checkpoint.  Output that escaped before
the secondary had the checkpoint covering it would show up: after failover
the secondary resumes from an older state whose answer has another length,
and the client reads a torn line, a piece of a line, or a line number
again.  Each scenario (fault_trial.py, one fresh pair each) SIGKILLs the
primary while its COLO thread stands at a fault injection point
(migration/colo-fault.h), fails over with the documented sequence, and
checks the stream (n up by one, "req-k", the pad), the open connection,
and every acknowledged record on the survivor's disk.

Scenarios (TAP line each):
  after-stop           the primary's guest stopped for the checkpoint,
                       nothing of it sent yet
  before-received      the whole checkpoint sent, RECEIVED not yet read;
                       first, while it stands there: the compare holds the
                       answer, the client waits for it, and it still waits
                       once the secondary has applied the checkpoint
  after-received       RECEIVED read, the compares not told yet; the same
                       output commit check first
  after-compares-told  RECEIVED read, the compares told to release, the
                       guest still stopped

and, with identical guests (answers released as they match), the
primary killed while the secondary stands at one of its points:
  secondary:after-device-state   the device state received; its disks'
                                 checkpoint, RECEIVED, the load not yet
  secondary:before-loaded        the checkpoint applied, LOADED not sent

Usage: test_faults.py [point...]   (default: all six)
Environment: E2E_DISKS=0 runs without disk replication (no record check).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import guest_files  # noqa: E402
from tap import Tap  # noqa: E402
from topology import missing_requirements  # noqa: E402
from fault_trial import Case, run_trial  # noqa: E402

t = Tap()

SCENARIOS = {
    "after-stop": "kill -9 the primary with its guest stopped for a checkpoint",
    "before-received": "kill -9 the primary waiting for RECEIVED (the held "
                       "answer has not reached the client meanwhile)",
    "after-received": "kill -9 the primary with RECEIVED read, its compares "
                      "not told yet (the held answer has not reached the "
                      "client meanwhile)",
    "after-compares-told": "kill -9 the primary after RECEIVED, its compares "
                           "told to release, the guest still stopped",
    # e2e scenario 2's kill, made to land: the secondary mid-checkpoint
    "secondary:after-device-state": "kill -9 the primary while the secondary "
                                    "has the device state, not yet its disks' "
                                    "checkpoint nor RECEIVED (identical "
                                    "guests)",
    "secondary:before-loaded": "kill -9 the primary while the secondary has "
                               "applied the checkpoint, not yet said LOADED "
                               "(identical guests)",
}


def log(msg):
    sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def scenario(point):
    if point.startswith("secondary:"):
        # answers released as they match: what the secondary's own state
        # sent must be what the client saw
        run_trial(Case("kill", "primary", point.split(":")[1],
                       at="secondary", identical=True), log=log)
        return
    run_trial(Case("kill", "primary", point), log=log,
              commit_check=point in ("before-received", "after-received"))


def main():
    wanted = sys.argv[1:] or list(SCENARIOS)
    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    for point in wanted:
        t.check_unless(why, "output commit: %s; the secondary takes over, the "
                       "client's stream stays well formed, nothing acknowledged "
                       "is lost" % SCENARIOS[point], scenario, point)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
