#!/usr/bin/env python3
"""qemu-colo-ctl drives the whole life of a pair on the end-to-end topology:
start from one configuration file, protect, fail over, re-protect in one
step, over and over, with the client's one TCP connection open throughout.

TAP lines:
  config      the configuration loader rejects bad files with clear errors
              (no VM, no root needed)
  rounds      four rounds of failure + failover + one-step re-protection,
              every role history (the secondary dies; the primary dies; the
              secondary dies; the primary dies), the guest running during the
              resync and the migration (sampled on a spare monitor), every
              acknowledged record on the survivor's disk after each round and
              on the image at the end
  shared      rounds with shared-disk: one image both namespaces see, the
              secondary rolls back and commits at failover, re-protection
              copies no disk
  interrupted re-protection interrupted (the new secondary killed during the
              disk resync, then during the first migration, then once COLO
              runs but before the mirror is ended): the survivor keeps
              serving, the tool names the step, a retry succeeds

Usage: test_reprotect.py [config|rounds|shared|interrupted ...]  (default: all)
The QEMUs are started by the tool (-daemonize, pid files in the workdir);
the test reads their state through each node's second QMP socket
(agent-qmp, free while no agent runs) and kills them by pid file.
"""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import (DEFAULT_BINARY, REPO_ROOT, default_firmware_dirs,  # noqa: E402
                     guest_files, wait_for)
from tap import Tap  # noqa: E402
import colo_heartbeat_wire as wire  # noqa: E402
from topology import (GUEST_IP, PRI_LINK_IP, SEC_LINK_IP, Topology,  # noqa: E402
                      missing_requirements)
from client import Client  # noqa: E402

CTL = os.environ.get("QEMU_COLO_CTL") or os.path.join(REPO_ROOT, "build", "qemu", "tools",
                                                   "colo", "qemu-colo-ctl")
QEMU_IMG = os.environ.get("QEMU_COLO_IMG") or os.path.join(REPO_ROOT, "build", "qemu",
                                                            "qemu-img")
PORT = 7777
RECORD = 512
t = Tap()


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
    """One connection per call: the socket is free between calls."""

    def __init__(self, path):
        self.path = path

    def __call__(self, _cmd, _timeout=60, **args):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(_timeout)
        try:
            s.connect(self.path)
            f = s.makefile("rwb")

            def reply():
                while True:
                    line = f.readline()
                    if not line:
                        raise ConnectionError("%s: QMP closed" % self.path)
                    msg = json.loads(line)
                    if "event" not in msg:
                        return msg
            reply()                                 # greeting
            for cmd, a in (("qmp_capabilities", {}), (_cmd, args)):
                f.write(json.dumps({"execute": cmd, "arguments": a}).encode() + b"\n")
                f.flush()
                msg = reply()
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (cmd, msg["error"]["desc"]))
            return msg["return"]
        finally:
            s.close()


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
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.f = self.sock.makefile("rwb")
        self.cmd(None)                                  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name):
        if name:
            self.f.write(json.dumps({"execute": name}).encode() + b"\n")
            self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg.get("return")
            if msg["event"] in ("STOP", "RESUME"):
                ts = msg["timestamp"]
                self.events.append((msg["event"],
                                    ts["seconds"] + ts["microseconds"] / 1e6))

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
        self.f.close()          # the monitor serves one client at a time
        self.sock.close()

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

    def path(self, node, name):
        return os.path.join(self.dir, node, name)

    def image(self, node):
        """The disk image node @node's guest writes."""
        if self.shared:
            return os.path.join(self.dir, "shared.raw")
        return self.path(node, "disk.raw")

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


def open_client(topo):
    sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
    client = Client(sock)
    client.connect((GUEST_IP, PORT), 60)
    client.start()
    client.wait_answers(5, 120)
    return client


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


def last_request(sock_client, client):
    """One more request on the same connection, by hand; its number."""
    f = client.figures(0)
    sock = sock_client.sock
    sock.settimeout(60)
    sock.sendall(b"last\n")
    buf = b""
    while b"\n" not in buf:
        data = sock.recv(4096)
        assert data, "connection closed"
        buf += data
    n = client.base + f["answers"] + 1
    assert buf.decode().split() == [str(n), "last"], buf
    return n


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


def run_rounds(shared=False):
    def body(topo, pair, clients):
        pair.start_protected()
        client = open_client(topo)
        clients.append(client)
        # every role history: a dead secondary (the survivor is the node
        # started as primary), a dead primary (the survivor is a former
        # secondary), a dead secondary again (the survivor, a former
        # secondary, stays primary), a dead primary (the other way round)
        for rnd, victim in enumerate(("secondary", "primary", "secondary",
                                      "primary"), 1):
            c0 = pair.checkpoints(pair.roles()[0])
            wait_for(lambda: pair.checkpoints(pair.roles()[0]) >= c0 + 2, 90,
                     "checkpoints with the client running")
            survivor, dead = fail(pair, topo, client, victim)
            with client.lock:
                last = client.base + len(client.records)
            n = guest_records(pair, survivor, client.base + 1, last)
            log("round %d: %s killed (%s), node %s took over; %d acknowledged "
                "records on its disk" % (rnd, victim, dead, survivor, n))
            took = reprotect(pair, topo, client, survivor, dead)
            log("round %d: re-protected in one step in %.1fs: %s primary, %s "
                "secondary; client at %d answers on its first connection"
                % (rnd, took, survivor, dead, client.answers()))
        client.stop()
        last = last_request(client, client)
        pri, sec = pair.roles()
        # the end: the primary quits; its image holds every record
        pair.qmp[pri]("quit")
        wait_for(lambda: not pair.pid(pri), 30, "the primary to quit")
        with open(pair.image(pri), "rb") as f:
            data = f.read()
        check_records(data, client.base + 1, last, 0, "image of node %s" % pri)
        log("%d acknowledged records on node %s's image after 4 rounds"
            % (last - client.base, pri))
    with_pair(body, shared=shared)


def run_interrupted():
    def body(topo, pair, clients):
        # a disk full of data and a slow resync: time to interrupt it
        os.makedirs(pair.path("a", ""), exist_ok=True)
        with open(pair.path("a", "disk.raw"), "wb") as f:
            for _ in range(pair.disk_size >> 20):
                f.write(os.urandom(1 << 20))
        pair.start_protected()
        client = open_client(topo)
        clients.append(client)
        survivor, dead = fail(pair, topo, client, "primary")
        topo.standby_port(ToolPair.HOSTS[dead][2])
        S = pair.qmp[survivor]

        def interrupted(when, pred, step):
            p = subprocess.Popen([CTL, "reprotect", pair.config, "--start"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
            try:
                wait_for(pred, 300, when, interval=0.01)
                pair.kill(dead)
                out, err = p.communicate(timeout=300)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for line in (out + err).splitlines():
                log("  ctl reprotect: %s" % line)
            assert p.returncode == 1, (p.returncode, out, err)
            steps = step if isinstance(step, tuple) else (step,)
            assert any(x in err for x in steps) and "rolled back, node %s " \
                "runs unprotected" % survivor in err, err
            # the survivor serves, unprotected, with nothing left over
            assert S("query-status")["status"] == "running"
            assert S("query-colo-status")["mode"] == "none"
            assert S("query-migrate").get("status") in (None, "cancelled",
                                                        "failed", "completed")
            objs = {o["name"] for o in S("qom-list", path="/objects")}
            assert not objs & {"m0", "comp0", "iothread1", "redire0",
                               "redire1"}, objs
            nodes = {n["node-name"] for n in S("query-named-block-nodes",
                                               flat=True)}
            assert not nodes & {"rep0", "resync0"}, nodes
            assert not S("query-block-jobs")
            client.wait_answers(client.answers() + 10, 120)
            log("%s: the tool said %r; node %s serves on"
                % (when, err.strip().splitlines()[0], survivor))

        def resync_running():
            jobs = S("query-block-jobs")
            if not (jobs and 0 < jobs[0]["offset"] < jobs[0]["len"]):
                return False
            # status works while reprotect holds the main monitors
            r = ctl("status", pair.config)
            assert re.search(r"\n  disk resync: \[#*\.+\] +\d+% \d+/64 MiB\n",
                             r.stdout), r.stdout
            return True
        interrupted("new secondary killed during the disk resync",
                    resync_running, "disk resync")

        # a QEMU waiting for its first migration has nothing to take over
        r = ctl("start", pair.config, "--node", dead, "--role", "secondary")
        assert r.returncode == 0, r
        r = ctl("failover", pair.config, "--node", dead)
        assert r.returncode == 1 and "still waits for its first migration" \
            in r.stderr, r
        r = ctl("start", pair.config, "--node", dead)
        assert r.returncode == 1 and "already runs a QEMU" in r.stderr, r
        # (the next reprotect --start stops it and starts a new one)

        def migrating():
            return S("query-migrate").get("status") == "active"
        interrupted("new secondary killed during the first migration",
                    migrating, "starting COLO")

        def colo_with_mirror():
            # COLO runs and the mirror is not cancelled yet: the tool only
            # cancels it once the new secondary's proxy is connected, which
            # takes longer than this poll (the job is still there when the
            # kill follows; the tool fails in one of these two steps)
            return S("query-migrate").get("status") == "colo" and \
                any(j["device"] == "resync" and j["ready"]
                    for j in S("query-block-jobs"))
        interrupted("new secondary killed after COLO start, mirror still on",
                    colo_with_mirror, ("starting COLO", "ending the disk resync"))
        took = reprotect(pair, topo, client, survivor, dead)
        log("the retry re-protected in %.1fs" % took)
        # the retried pair protects for real: fail over to the new secondary
        survivor, dead = fail(pair, topo, client, "primary")
        with client.lock:
            last = client.base + len(client.records)
        n = guest_records(pair, survivor, client.base + 1, last)
        log("after the retry and a failover: %d records on node %s's disk"
            % (n, survivor))
        client.stop()
    # 64 MiB at 8 MiB/s: about 8 s of resync
    with_pair(body, disk_size=64 << 20, resync_speed=8 << 20)


# ---- configuration errors, no VM --------------------------------------------

GOOD = """[pair]
guest-args = -M pc
disk-size = 16M
heartbeat-key-file = hb.key
[node a]
initial-role = primary
link-addr = 192.168.77.1
disk = a.raw
[node b]
initial-role = secondary
link-addr = 192.168.77.2
disk = b.raw
"""


def run_config():
    d = tempfile.mkdtemp(prefix="colo-conf-")
    try:
        path = os.path.join(d, "c.conf")
        key = os.path.join(d, "hb.key")
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(64))
        os.close(fd)

        def expect(text, *fragments, cmd=("status",)):
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([CTL, cmd[0], path] + list(cmd[1:]),
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 2, (text, r)
            for frag in fragments:
                assert frag in r.stderr, (frag, r.stderr)
        expect(GOOD.replace("initial-role = secondary", "initial-role = primary"),
               "nodes 'a' and 'b' both have initial-role 'primary'")
        expect(GOOD.replace("= secondary", "= backup"),
               "[node b]: initial-role must be 'primary' or 'secondary', not 'backup'")
        expect(GOOD.replace("link-addr = 192.168.77.2\n", ""),
               "[node b]: missing key 'link-addr'")
        expect(GOOD.replace("guest-args = -M pc\n", ""),
               "[pair]: missing key 'guest-args'")
        expect(GOOD.replace("[pair]\n", "[pair]\nport-nbd = 99x\n"),
               "[pair]: port-nbd must be a number from 1 to 65535, not '99x'")
        expect(GOOD.replace("[pair]\n", "[pair]\nport-nbd = 70000\n"),
               "port-nbd must be a number from 1 to 65535")
        expect(GOOD.replace("[pair]\n", "[pair]\nport-nbd = 9003\n"),
               "port 9003 is used twice")
        expect(GOOD.replace("[pair]\n", "[pair]\nchekpoint-delay-ms = 5\n"),
               "[pair]: unknown key 'chekpoint-delay-ms'")
        expect(GOOD.replace("disk-size = 16M", "disk-size = 1000"),
               "disk-size must be a size in bytes")
        expect(GOOD.replace("disk = b.raw\n", ""), "'disk' is set on one node only")
        expect(GOOD.replace("[pair]\n", "[pair]\nshared-disk = s.raw\n"),
               "[pair]: shared-disk and the nodes' 'disk' exclude each other")
        expect(GOOD.replace("[pair]\n", "[pair]\nshared-undo = s.undo\n"),
               "[pair]: shared-undo needs shared-disk")
        expect(GOOD.replace("[pair]\n", "[pair]\nshared-disk = s.raw\n"
                            "shared-undo = s.raw\n").replace("disk = a.raw\n", "")
               .replace("disk = b.raw\n", ""),
               "[pair]: shared-undo must be another file than shared-disk")
        expect(GOOD.replace("[pair]\n", "[pair]\nshared-disk = s.raw\n"
                            "shared-cache-direct = maybe\n")
               .replace("disk = a.raw\n", "").replace("disk = b.raw\n", ""),
               "[pair]: shared-cache-direct must be true or false, not 'maybe'")
        expect(GOOD.replace("[node b]", "[node a]"),
               "a pair needs two [node NAME] groups, found 1")
        expect(GOOD + "[node c]\ninitial-role = primary\nlink-addr = x\n",
               "more than two [node NAME] groups")
        expect(GOOD.replace("[node b]", "[nod b]"), "unknown group [nod b]")
        expect(GOOD.replace("[pair]\n", "[pair]\nmac = 52:54:00\n"),
               "mac must look like 52:54:00:12:34:56")
        expect(GOOD.replace("[pair]\n", "[pair]\nheartbeat-timeout-ms = 50\n"),
               "heartbeat-timeout-ms (50) must be longer than heartbeat-interval-ms")
        expect("no group here\n", path)
        # tls-dir: QEMU's x509 layout, every file present
        tls = os.path.join(d, "tls")
        os.makedirs(tls)
        for f in ("ca-cert.pem", "server-cert.pem", "server-key.pem",
                  "client-cert.pem"):
            open(os.path.join(tls, f), "w").close()
        expect(GOOD.replace("[pair]\n", "[pair]\ntls-dir = tls\n"),
               "[pair]: tls-dir: %s is missing" % os.path.join(tls, "client-key.pem"))
        expect(GOOD.replace("[pair]\n", "[pair]\ntls-dir = nowhere\n"),
               "[pair]: tls-dir: %s is not a directory" % os.path.join(d, "nowhere"))
        # the heartbeat key: required unless heartbeat-auth = none said so,
        # a regular file of ours, mode 0600 or stricter, 32 bytes or more
        no_key = GOOD.replace("heartbeat-key-file = hb.key\n", "")
        expect(no_key, "[pair]: missing key 'heartbeat-key-file'",
               "heartbeat-auth = none")
        expect(GOOD.replace("hb.key", "nokey"), "[pair]: heartbeat-key-file: "
               "cannot open %s" % os.path.join(d, "nokey"))
        for mode in (0o644, 0o640, 0o604, 0o620):
            os.chmod(key, mode)
            expect(GOOD, "[pair]: heartbeat-key-file: %s has mode %04o: a key "
                   "others can read or write is no secret" % (key, mode))
        os.chmod(key, 0o600)
        short = os.path.join(d, "short.key")
        fd = os.open(short, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(31))
        os.close(fd)
        expect(GOOD.replace("hb.key", "short.key"), "[pair]: heartbeat-key-file: "
               "%s has 31 bytes; a key needs at least 32 bytes" % short)
        expect(GOOD.replace("hb.key", "tls"),
               "[pair]: heartbeat-key-file: %s is not a regular file" % tls)
        if os.geteuid() == 0:
            os.chown(short, 65534, 65534)
            expect(GOOD.replace("hb.key", "short.key"),
                   "[pair]: heartbeat-key-file: %s is owned by uid 65534, not by "
                   "the user running this tool (uid 0)" % short)
        expect(GOOD.replace("[pair]\n", "[pair]\nheartbeat-auth = sha1\n"),
               "[pair]: heartbeat-auth must be 'hmac-sha256' or 'none', not 'sha1'")
        expect(GOOD.replace("[pair]\n", "[pair]\nheartbeat-auth = none\n"),
               "[pair]: heartbeat-auth = none, but heartbeat-key-file is set")
        # none said explicitly: it loads, and status warns
        with open(path, "w") as f:
            f.write(no_key.replace("[pair]\n", "[pair]\nheartbeat-auth = none\n"))
        r = subprocess.run([CTL, "status", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1, r
        assert "WARNING: heartbeat-auth = none" in r.stdout, r.stdout
        # names the heartbeat datagram cannot carry (31 bytes of printable
        # ASCII): refused here, or the agents would ignore each other
        expect(GOOD.replace("[pair]\n", "[pair]\nname = %s\n" % ("p" * 32)),
               "[pair]: name must be 1 to 31 printable ASCII characters "
               "without spaces (the heartbeat datagrams carry it), not '%s'"
               % ("p" * 32))
        expect(GOOD.replace("[pair]\n", "[pair]\nname = my pair\n"),
               "[pair]: name must be 1 to 31 printable ASCII characters")
        expect(GOOD.replace("[pair]\n", "[pair]\nname = caf\u00e9\n"),
               "[pair]: name must be 1 to 31 printable ASCII characters")
        expect(GOOD.replace("[node b]", "[node %s]" % ("b" * 32)),
               "[node %s]: a node name is at most 31 characters (the "
               "heartbeat datagrams carry it)" % ("b" * 32))
        expect(GOOD, "no node 'c' (the nodes are 'a' and 'b')",
               cmd=("failover", "--node", "c"))
        expect(GOOD, "--node only with start, stop, failover",
               cmd=("reprotect", "--node", "a"))
        # the longest names that fit are fine
        with open(path, "w") as f:
            f.write(GOOD.replace("[pair]\n", "[pair]\nname = %s\n" % ("p" * 31))
                    .replace("[node b]", "[node %s]" % ("b" * 31)))
        r = subprocess.run([CTL, "status", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "pair %s (" % ("p" * 31) in r.stdout, r
        assert "%s (started as secondary" % ("b" * 31) in r.stdout, r.stdout
        # a good file: status reports both nodes unreachable (exit 1), and
        # relative paths are resolved against the file's directory
        with open(path, "w") as f:
            f.write(GOOD)
        r = subprocess.run([CTL, "status", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1, r
        assert "a (started as primary, link 192.168.77.1): QEMU not reachable" \
            in r.stdout, r.stdout
        assert os.path.join(d, "a", "qmp.sock") in r.stdout, r.stdout
        assert "agent: not running" in r.stdout, r.stdout
        assert "WARNING" not in r.stdout, r.stdout
        r = subprocess.run([CTL, "reprotect", path], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "no node runs the guest" in r.stderr, r
        # the agent's status socket: one JSON line, then it closes
        os.makedirs(os.path.join(d, "b"))
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(os.path.join(d, "b", "agent.sock"))
        srv.listen(1)

        def serve():
            conn, _ = srv.accept()
            conn.sendall(json.dumps({
                "node": "b", "role": "secondary", "peer-state": "silent",
                "last-heartbeat-ms": 1234, "quorum": "quorate",
                "last-action": "none", "forged-datagrams": 3,
                "replayed-datagrams": 2, "stale-datagrams": 0,
                "heartbeat-auth": "none",
                "warning": "heartbeat-auth = none: anyone"}).encode() + b"\n")
            conn.close()
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        r = subprocess.run([CTL, "status", path], capture_output=True, text=True,
                           timeout=60)
        th.join(10)
        srv.close()
        assert "  agent: role=secondary peer=silent (last heartbeat 1234 ms ago) " \
            "quorum=quorate last-action=none" in r.stdout, r.stdout
        assert "  agent: heartbeats ignored: forged=3 replayed=2\n" in r.stdout, \
            r.stdout
        assert "  agent: WARNING: heartbeat-auth = none: anyone" in r.stdout, \
            r.stdout
        assert r.stdout.count("agent: not running") == 1, r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


NAMES = {
    "config": ("qemu-colo-ctl: bad configuration files are refused with clear "
               "errors", run_config),
    "rounds": ("qemu-colo-ctl: four rounds of failover and one-step re-protection "
               "(every role history), one client connection throughout, records "
               "on the disks after each round", run_rounds),
    "shared": ("qemu-colo-ctl with shared-disk (one image both namespaces "
               "see): four rounds of kill -9 + failover (roll-back and commit on "
               "a secondary) + re-protection without any disk copy, one client "
               "connection throughout, every acknowledged record on the shared "
               "image", lambda: run_rounds(shared=True)),
    "interrupted": ("qemu-colo-ctl: re-protection interrupted during the resync, "
                    "during the migration and after COLO start rolls back, the "
                    "survivor serves, a retry succeeds", run_interrupted),
}


def main():
    wanted = sys.argv[1:] or list(NAMES)
    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    for name in wanted:
        what, fn = NAMES[name]
        t.check_unless(why if name != "config" else None, what, fn)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
