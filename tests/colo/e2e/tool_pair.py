"""The end-to-end pair as qemu-colo-ctl runs it (nodes a and b of the
topology, one configuration file), and the steps the tool tests share:
fail a node, re-protect, read the guest's records, one more request.
Used by test_reprotect.py, test_connections.py, test_tls.py and the demo.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import (DEFAULT_BINARY, REPO_ROOT, default_firmware_dirs,  # noqa: E402
                     guest_files, wait_for)
import colo_heartbeat_wire as wire  # noqa: E402
from qmp import Qmp as Qmp_, qmp_call  # noqa: E402
from topology import GUEST_IP, PRI_LINK_IP, SEC_LINK_IP, Topology  # noqa: E402

CTL = os.environ.get("QEMU_COLO_CTL") or os.path.join(REPO_ROOT, "build", "qemu", "tools",
                                                   "colo", "qemu-colo-ctl")
QEMU_IMG = os.environ.get("QEMU_COLO_IMG") or os.path.join(REPO_ROOT, "build", "qemu",
                                                            "qemu-img")
PORT = 7777
RECORD = 512


def log(msg):
    sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def ctl(*args, timeout=900):
    r = subprocess.run([CTL] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    for line in (r.stdout + r.stderr).splitlines():
        log("  ctl %s: %s" % (args[0], line))
    return r


# ---- a QMP client on a node's spare monitor --------------------------------

class Qmp:
    """A node's spare monitor, one connection per call: the socket is free
    between calls (qmp.qmp_call)."""

    def __init__(self, path):
        self.path = path

    def __call__(self, _cmd, _timeout=60, **args):
        return qmp_call(self.path, _cmd, _timeout=_timeout, **args)


class Watch(threading.Thread):
    """Samples a node's run state, migration status and resync job on its
    spare monitor (one connection, held until stop()) while the tool works,
    and keeps the STOP/RESUME events with QEMU's timestamps."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.samples = []       # (run state, migration status, job status)
        self.events = []        # (event, seconds)
        self.error = None
        self._quit = threading.Event()
        self.qmp = Qmp_.connect(path, 30)

    def cmd(self, name):
        ret = self.qmp.cmd(name, _timeout=30)
        for ev in self.qmp.events:
            if ev["event"] in ("STOP", "RESUME"):
                ts = ev["timestamp"]
                self.events.append((ev["event"],
                                    ts["seconds"] + ts["microseconds"] / 1e6))
        self.qmp.events = []
        return ret

    def run(self):
        try:
            while not self._quit.is_set():
                st = self.cmd("query-status")["status"]
                mig = self.cmd("query-migrate").get("status", "none")
                jobs = self.cmd("query-block-jobs")
                job = jobs[0]["status"] if jobs else None
                self.samples.append((st, mig, job))
                self._quit.wait(0.01)
        except Exception as e:                  # the node died: stop sampling
            self.error = e

    def stop(self):
        self._quit.set()
        self.join(30)
        self.qmp.close()        # the monitor serves one client at a time

    def check_guest_ran(self, resync=True):
        """The tool never stopped the guest: while the resync ran and while
        the RAM migrated the guest ran (at most the migration's own
        completion, finish-migrate, is seen); 'paused' is what `stop`
        gives.  Returns (samples during the resync, during the migration).
        resync=False: a shared disk, no resync."""
        pre, migrating = [], False        # the samples until COLO runs
        for x in self.samples:
            if migrating and x[1] not in ("setup", "active"):
                break
            migrating = x[1] in ("setup", "active")
            pre.append(x)
        bad = [x for x in pre if x[0] not in ("running", "finish-migrate")]
        assert not bad, "guest not running before COLO: %s" % bad[:5]
        in_resync = [x for x in pre if x[2] and x[1] not in ("setup", "active")
                     and x[0] == "running"]
        live = [x for x in pre if x[1] == "active" and x[0] == "running"]
        if resync:
            assert in_resync, "no sample during the resync: %s" % self.samples[:20]
        else:
            assert not any(x[2] for x in pre), "a block job with a shared disk"
        assert live, "no sample with the guest running during the migration: %s" \
            % sorted(set(self.samples))
        return len(in_resync), len(live)


# ---- the pair, as the tool sees it -----------------------------------------

def guest_args(records=True):
    g = guest_files()
    args = []
    for d in default_firmware_dirs(DEFAULT_BINARY):
        args += ["-L", d]
    args += ["-M", "pc", "-m", "256", "-kernel", g["vmlinuz"], "-initrd", g["initrd"],
             "-append", "console=ttyS0 quiet ipv6.disable=1 colo.ip=%s/24 "
             "colo.serve=1%s" % (GUEST_IP, " colo.records=/dev/vda" if records else "")]
    return args


class ToolPair:
    """A configuration file for the topology's two hosts (nodes a and b);
    every QEMU is started, protected, failed over and stopped by the tool."""

    HOSTS = {"a": ("pri", PRI_LINK_IP, "to-pri"), "b": ("sec", SEC_LINK_IP, "to-sec")}

    def __init__(self, topo, disk_size=16 << 20, resync_speed=0, mem_mb=256,
                 shared=False):
        self.topo = topo
        self.shared = shared    # one image both namespaces see, no copies
        self.dir = tempfile.mkdtemp(prefix="colo-reprotect-")
        self.disk_size = disk_size
        self.config = os.path.join(self.dir, "pair.conf")
        # the agents' heartbeat key: fresh random bytes, mode 0600
        self.key = wire.write_key(self.dir)
        ga = guest_args()
        ga[ga.index("-m") + 1] = str(mem_mb)
        lines = ["[pair]", "name = test",
                 "qemu = %s" % DEFAULT_BINARY,
                 "guest-args = %s" % " ".join(shlex.quote(a) for a in ga),
                 "disk-size = %d" % disk_size,
                 "resync-speed = %d" % resync_speed,
                 "checkpoint-delay-ms = 2000",
                 "heartbeat-key-file = heartbeat.key"]
        if shared:
            lines.append("shared-disk = shared.raw")
        for name, role in (("a", "primary"), ("b", "secondary")):
            ns_attr, link, _ = self.HOSTS[name]
            lines += ["", "[node %s]" % name, "initial-role = %s" % role,
                      "link-addr = %s" % link,
                      "launcher = ip netns exec %s" % getattr(topo, ns_attr),
                      "workdir = %s" % name]
            if not shared:
                lines.append("disk = %s/disk.raw" % name)
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.qmp = {n: Qmp(os.path.join(self.dir, n, "agent-qmp.sock")) for n in "ab"}

    def image(self, node):
        """The disk image node @node's guest writes."""
        if self.shared:
            return os.path.join(self.dir, "shared.raw")
        return self.path(node, "disk.raw")

    def path(self, node, name):
        return os.path.join(self.dir, node, name)

    def pid(self, node):
        try:
            with open(self.path(node, "qemu.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def kill(self, node, sig=signal.SIGKILL):
        pid = self.pid(node)
        assert pid, "node %s runs no QEMU" % node
        os.kill(pid, sig)
        wait_for(lambda: not self.pid(node), 30, "node %s's QEMU to die" % node)

    def mode(self, node):
        return self.qmp[node]("query-colo-status")["mode"]

    def serial(self, node):
        try:
            with open(self.path(node, "serial.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def roles(self):
        """(primary, secondary) node names of the protected pair."""
        p = [n for n in "ab" if self.mode(n) == "primary"]
        s = [n for n in "ab" if self.mode(n) == "secondary"]
        assert len(p) == 1 and len(s) == 1, (p, s)
        return p[0], s[0]

    def checkpoints(self, node):
        return self.qmp[node]("query-colo-status").get("checkpoints", 0)

    def comp(self, node, stat):
        return self.qmp[node]("qom-get", path="/objects/comp0", property="stat-" + stat)

    def start_protected(self):
        r = ctl("start", self.config)
        assert r.returncode == 0, r.stderr
        # the service runs first, then it is protected (see test_e2e.py)
        wait_for(lambda: "COLO-GUEST: ready" in self.serial("a"), 240,
                 "the guest's service on node a")
        r = ctl("protect", self.config)
        assert r.returncode == 0 and "protected: a primary, b secondary" in r.stdout, r
        assert self.roles() == ("a", "b")
        r = ctl("status", self.config)
        assert r.returncode == 0, r
        assert re.search(r"^a \(started as primary, link %s\): mode=primary "
                         r"run-state=(running|colo) migration=colo" % PRI_LINK_IP,
                         r.stdout, re.M), r.stdout
        assert re.search(r"^b \(started as secondary, link %s\): mode=secondary "
                         % SEC_LINK_IP, r.stdout, re.M), r.stdout
        assert r.stdout.count("  agent: not running") == 2, r.stdout
        r = ctl("status", self.config, "--json")
        assert r.returncode == 0, r
        nodes = {n["name"]: n for n in json.loads(r.stdout)["nodes"]}
        assert nodes["a"]["mode"] == "primary" and \
            nodes["a"]["migration"] == "colo" and \
            nodes["b"]["mode"] == "secondary" and nodes["b"]["reachable"], nodes

    def stop(self):
        r = ctl("stop", self.config, timeout=120)
        for n in "ab":
            if self.pid(n):                 # the tool failed: by hand
                os.kill(self.pid(n), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        assert r.returncode == 0, r.stderr


def guest_records(pair, node, first, last):
    """Read sectors first..last as the survivor's guest sees its disk (the
    guest's block backend exported read-only over NBD on a unix socket) and
    check the records "<n> req-<k>"."""
    q = pair.qmp[node]
    dev = "top-disk0" if any(b["device"] == "top-disk0"
                             for b in q("query-block")) else "colo-disk0"
    sock = pair.path(node, "verify.sock")
    copy = pair.path(node, "verify.raw")
    q("nbd-server-start", addr={"type": "unix", "data": {"path": sock}})
    try:
        q("nbd-server-add", device=dev, name="verify", writable=False)
        subprocess.run([QEMU_IMG, "convert", "-O", "raw",
                        "nbd+unix:///verify?socket=" + sock, copy], check=True,
                       timeout=120)
    finally:
        q("nbd-server-stop")
    with open(copy, "rb") as f:
        data = f.read()
    os.unlink(copy)
    check_records(data, first, last, 0, "node %s (%s)" % (node, dev))
    return last - first + 1


def check_records(data, first, last, offset, where):
    for n in range(first, last + 1):
        rec = data[(n - offset) * RECORD:(n - offset + 1) * RECORD]
        text = rec.decode("latin-1").rstrip(" \n\0")
        if not text.startswith("%d req-" % n) and not text.startswith("%d last" % n):
            raise AssertionError("%s: acknowledged record %d missing: sector holds %r"
                                 % (where, n, text[:40]))


def fail(pair, topo, client, victim_role):
    """Kill the primary or the secondary, fail over with the tool; returns
    (survivor, dead)."""
    pri, sec = pair.roles()
    dead, survivor = (pri, sec) if victim_role == "primary" else (sec, pri)
    pair.kill(dead)
    if victim_role == "primary":
        wait_for(lambda: pair.qmp[survivor]("query-colo-status")["reason"] == "error",
                 60, "node %s to notice the primary's death" % survivor)
    else:
        wait_for(lambda: pair.mode(survivor) == "none", 60,
                 "node %s to leave COLO by itself" % survivor)
    r = ctl("failover", pair.config, "--node", survivor)
    assert r.returncode == 0, r.stderr
    st = pair.qmp[survivor]("query-colo-status")
    assert st["mode"] == "none", st
    assert pair.qmp[survivor]("query-status")["status"] == "running"
    objs = {o["name"] for o in pair.qmp[survivor]("qom-list", path="/objects")}
    assert not objs & {"f1", "f2", "m0", "comp0", "redire0", "redire1"}, objs
    if victim_role == "primary":
        port = ToolPair.HOSTS[survivor][2]
        wait_for(lambda: topo.port_of_guest() == port, 30,
                 "the switch to learn the guest on %s" % port)
    n = client.answers()
    client.wait_answers(n + 10, 180)
    return survivor, dead


def reprotect(pair, topo, client, survivor, dead):
    """The one step; then the new pair must checkpoint and compare."""
    # the fresh secondary's switch port floods nothing (test_e2e.py)
    topo.standby_port(ToolPair.HOSTS[dead][2])
    watch = Watch(pair.path(survivor, "agent-qmp.sock"))
    watch.start()
    t0 = time.monotonic()
    try:
        r = ctl("reprotect", pair.config, "--start")
    finally:
        watch.stop()
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert watch.error is None, watch.error
    n_resync, n_live = watch.check_guest_ran(resync=not pair.shared)
    log("guest running in all %d samples during the resync and %d during the "
        "live migration" % (n_resync, n_live))
    assert "protected: %s primary, %s secondary" % (survivor, dead) in r.stdout, r.stdout
    # a shared disk is never copied
    assert ("disk resync" in r.stdout) == (not pair.shared), r.stdout
    assert pair.roles() == (survivor, dead)
    c0 = pair.checkpoints(survivor)
    wait_for(lambda: pair.checkpoints(survivor) >= c0 + 2, 90,
             "two checkpoints of the new pair")
    client.wait_answers(client.answers() + 10, 120)
    assert pair.comp(survivor, "packets-compared") > 0 and \
        pair.comp(survivor, "secondary-packets") > 0, "the new pair does not compare"
    return took


# A local process of another user trying the primary proxy's own hops.
# Prints "connected" or "refused: ERRNO".
PROBE = r"""
import errno, socket, sys
kind, addr = sys.argv[1], sys.argv[2]
if kind == "unix":
    s, target = socket.socket(socket.AF_UNIX), addr
else:
    host, port = addr.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    target = (host, int(port))
s.settimeout(10)
try:
    s.connect(target)
except OSError as e:
    print("refused: %s" % errno.errorcode.get(e.errno, e))
else:
    print("connected")
"""


def check_local_hops(pair, node):
    """The primary's proxy loops its guest's output into colo-compare
    (compare0 -> compare0-0) and what colo-compare releases back to the
    netdev (compare_out0 -> compare_out) through listeners of its own.
    Whoever connects to such a listener first is its peer: a local user
    there would inject frames that leave the host uncompared, or read the
    guest's output and starve colo-compare.  Try both as user nobody, in
    the node's network namespace (where QEMU's loopback is)."""
    ns = getattr(pair.topo, ToolPair.HOSTS[node][0])
    names = {c["label"]: c["filename"] for c in pair.qmp[node]("query-chardev")}
    for label in ("compare0", "compare_out"):
        assert label in names, "node %s has no chardev %s: %s" % (node, label, names)
        where = names[label].replace("disconnected:", "").split(",")[0]
        kind, addr = where.split(":", 1)
        assert kind in ("tcp", "unix"), "chardev %s: %s" % (label, names[label])
        r = subprocess.run(["ip", "netns", "exec", ns, "setpriv",
                            "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            sys.executable, "-c", PROBE, kind, addr],
                           capture_output=True, text=True, timeout=60)
        verdict = r.stdout.strip()
        assert r.returncode == 0 and (verdict == "connected" or
                                      verdict.startswith("refused: ")), \
            "the probe failed: %r %r" % (r.stdout, r.stderr)
        assert verdict != "connected", \
            "a local user (nobody) connected to node %s's %s (%s): it could " \
            "send frames past colo-compare or take the guest's output" \
            % (node, label, where)
        log("node %s: %s (%s) not reachable by user nobody: %s"
            % (node, label, where, verdict))


def with_pair(body, **kw):
    """Run body(topo, pair, clients) and clean up everything after it."""
    topo = Topology()
    pair = None
    clients = []
    try:
        topo.setup()
        pair = ToolPair(topo, **kw)
        body(topo, pair, clients)
    finally:
        for c in clients:
            c._stop = True
            c.close()
        if pair:
            pair.stop()
        procs = topo.pids()
        topo.teardown()
        left = topo.leftovers()
        assert not procs, "processes left in our namespaces: %s" % procs
        assert not left, "namespaces left behind: %s" % left
        assert not (pair and os.path.exists(pair.dir))
