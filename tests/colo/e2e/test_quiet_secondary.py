#!/usr/bin/env python3
"""A checkpoint must not make the secondary's guest talk.

Both guests of a protected pair are idle (no client, IPv4 only: an idle
guest sends nothing), checkpoints run every 500 ms.  Whatever the
secondary's guest sends then, the primary's does not: colo-compare holds it
unmatched and a timeout or mismatch checkpoint follows, a checkpoint the
guests did not ask for.  virtio-net asks its guest to announce itself
(gratuitous ARP; with IPv6 also unsolicited neighbour advertisements and
MLD reports) after every load of its state, as after a migration to a new
host; a COLO checkpoint loaded by the secondary is no such move (the
secondary announces itself at failover, with announce-self).

Checks, over 8 checkpoints of the idle pair: no packet from the secondary
reached colo-compare, and every checkpoint was periodic.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from tap import Tap  # noqa: E402
from topology import Topology, missing_requirements  # noqa: E402
from e2e_pair import VARIANTS, Pair, checkpoints, diagnose, end_run  # noqa: E402

t = Tap()


def stat(vm, name):
    return vm.cmd("qom-get", path="/objects/comp0", property="stat-" + name)


def case_idle_pair():
    topo = Topology()
    pair = None
    try:
        topo.setup()
        pair = Pair(topo, guest=VARIANTS["pc"])
        pair.start()
        pri = pair.pri
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 500})
        c0 = checkpoints(pri)
        pri.wait_for(lambda: checkpoints(pri) >= c0 + 2, 60, "two checkpoints")
        # From here on both guests are idle and identical.
        st0 = pri.cmd("query-colo-status")
        s0 = stat(pri, "secondary-packets")
        pri.wait_for(lambda: checkpoints(pri) >= st0["checkpoints"] + 8, 120,
                     "eight more checkpoints")
        st1 = pri.cmd("query-colo-status")
        spoke = stat(pri, "secondary-packets") - s0
        unasked = {k: st1[k] - st0[k] for k in ("checkpoints-mismatch",
                                                 "checkpoints-timeout")}
        assert spoke == 0 and not any(unasked.values()), (
            "the idle secondary sent %d packets to colo-compare over %d checkpoints; "
            "checkpoints not periodic: %s" % (spoke, st1["checkpoints"] - st0["checkpoints"],
                                              unasked))
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose(topo, pair, None))) from e
    finally:
        end_run(topo, None, pair and pair.stop)


def main():
    why = missing_requirements()
    t.check_unless(why, "an idle protected pair: checkpoints do not make the "
                   "secondary's guest send anything (no announce after a "
                   "checkpoint load); every checkpoint periodic", case_idle_pair)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
