#!/usr/bin/env python3
"""The COLO user interface on a single VM outside COLO: every upstream name is
registered, and bad or out-of-place requests get clear errors.

One section per component; the components' end-to-end tests live in their own
suites (test_colo_controller.py, the proxy and disk suites).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_vm import Vm  # noqa: E402
from tap import Tap, expect_error  # noqa: E402

t = Tap()


def plain_vm(name="vm", *args):
    vm = Vm(["-M", "pc", "-m", "64", "-nic", "none"] + list(args), name=name)
    vm.start()
    return vm


def interface_names_registered(vm):
    schema = vm.cmd("query-qmp-schema")
    commands = {e["name"] for e in schema if e["meta-type"] == "command"}
    events = {e["name"] for e in schema if e["meta-type"] == "event"}
    for c in ("x-colo-lost-heartbeat", "query-colo-status", "xen-set-replication",
              "query-xen-replication-status", "xen-colo-do-checkpoint",
              "x-blockdev-change"):
        assert c in commands, "command %s missing" % c
    assert "COLO_EXIT" in events
    types = {t["name"] for t in vm.cmd("qom-list-types")}
    for ty in ("colo-compare", "filter-mirror", "filter-redirector", "filter-rewriter"):
        assert ty in types, "QOM type %s missing" % ty
    caps = {c["capability"] for c in vm.cmd("query-migrate-capabilities")}
    assert "x-colo" in caps
    assert vm.cmd("query-migrate-parameters")["x-checkpoint-delay"] == 20000


# ---- controller (issue 3) -------------------------------------------------

def controller_outside_colo(vm):
    st = vm.cmd("query-colo-status")
    assert (st["mode"], st["last-mode"], st["reason"]) == ("none", "none", "none"), st
    assert st["checkpoints"] == 0, st
    expect_error(lambda: vm.cmd("x-colo-lost-heartbeat"), "VM is not in COLO mode")
    out = vm.hmp("x_colo_lost_heartbeat")
    assert "VM is not in COLO mode" in out, out
    expect_error(lambda: vm.cmd("xen-set-replication", enable=True, primary=True,
                                failover=True),
                 "Parameter 'failover' is only for stopping replication")
    expect_error(lambda: vm.cmd("xen-set-replication", enable=True),
                 "primary")
    assert vm.cmd("query-xen-replication-status") == {"error": False}
    expect_error(lambda: vm.cmd("migrate-set-parameters",
                                **{"x-checkpoint-delay": -1}), "x-checkpoint-delay")
    vm.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 1234})
    assert vm.cmd("query-migrate-parameters")["x-checkpoint-delay"] == 1234
    assert vm.cmd("query-status")["status"] == "running"


# ---- disk replication (issue 5) -------------------------------------------
# The driver works; its data fidelity is tested without a VM in
# tests/unit/colo/test-replication-fidelity.c (suite "unit").  Here: the QMP
# face of blockdev-add.

def qemu_img(vm, *args):
    binary = os.path.join(os.path.dirname(os.path.abspath(vm.binary)), "qemu-img")
    subprocess.run([binary] + list(args), check=True, stdout=subprocess.DEVNULL)


def node_names(vm):
    return {n["node-name"]: n["drv"] for n in vm.cmd("query-named-block-nodes")}


def replication_blockdev_add(vm):
    size = 4 << 20
    vm.cmd("blockdev-add", driver="null-co", **{"node-name": "n0", "size": size})
    # Bad options are refused, each with its reason.
    expect_error(lambda: vm.cmd("blockdev-add", driver="replication", mode="primary",
                                file="n0", **{"node-name": "rep0", "top-id": "x"}),
                 "'top-id' is only valid in secondary mode")
    expect_error(lambda: vm.cmd("blockdev-add", driver="replication", mode="secondary",
                                file="n0", **{"node-name": "rep0"}),
                 "'top-id' is required in secondary mode")
    expect_error(lambda: vm.cmd("blockdev-add", driver="replication", mode="secondary",
                                file="n0", **{"node-name": "rep0", "top-id": "rep0"}),
                 "the active disk 'n0' (format 'null-co') cannot be emptied")
    expect_error(lambda: vm.cmd("blockdev-add", driver="replication", mode="tertiary",
                                file="n0", **{"node-name": "rep0"}),
                 "mode")
    assert "rep0" not in node_names(vm)

    # Primary mode over a plain child: accepted, then removable.
    vm.cmd("blockdev-add", driver="replication", mode="primary", file="n0",
           **{"node-name": "rep0"})
    assert node_names(vm).get("rep0") == "replication"
    vm.cmd("blockdev-del", **{"node-name": "rep0"})

    # Secondary mode over active -> hidden -> secondary disk.
    for name in ("active", "hidden"):
        qemu_img(vm, "create", "-q", "-f", "qcow2", vm.path(name + ".qcow2"), str(size))
    qemu_img(vm, "create", "-q", "-f", "raw", vm.path("secondary.raw"), str(size))
    short = vm.path("short.qcow2")
    qemu_img(vm, "create", "-q", "-f", "qcow2", short, str(size // 2))
    vm.cmd("blockdev-add", driver="raw", **{"node-name": "sec0", "file": {
        "driver": "file", "filename": vm.path("secondary.raw")}})

    def secondary(hidden_file):
        return {"driver": "replication", "mode": "secondary", "node-name": "rep1",
                "top-id": "rep1",
                "file": {"driver": "qcow2",
                         "file": {"driver": "file",
                                  "filename": vm.path("active.qcow2")},
                         "backing": {"driver": "qcow2", "backing": "sec0",
                                     "file": {"driver": "file",
                                              "filename": hidden_file}}}}
    expect_error(lambda: vm.cmd("blockdev-add", **secondary(short)),
                 "must have the same length")
    vm.cmd("blockdev-add", **secondary(vm.path("hidden.qcow2")))
    assert node_names(vm).get("rep1") == "replication"
    vm.cmd("blockdev-del", **{"node-name": "rep1"})
    vm.cmd("blockdev-del", **{"node-name": "sec0"})
    vm.cmd("blockdev-del", **{"node-name": "n0"})
    assert vm.cmd("query-status")["status"] == "running"


def main():
    vm = plain_vm()
    try:
        t.check("the COLO user interface names are all registered",
                interface_names_registered, vm)
        t.check("controller: outside COLO, status is 'none' and COLO requests are refused",
                controller_outside_colo, vm)
        t.check("disk: blockdev-add replication refuses bad options clearly, "
                "accepts good ones", replication_blockdev_add, vm)
    finally:
        vm.shutdown()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
