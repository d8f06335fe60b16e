"""The HeartBeat agents of the end-to-end pair (one qemu-colo-agent per
host namespace, each with its own QMP socket on its QEMU), and the steps
the agent tests share: a protected pair with a client, the survivor
serving after a take-over.  Used by test_heartbeat.py,
test_heartbeat_quorum.py and the demo.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import REPO_ROOT, wait_for  # noqa: E402
import colo_heartbeat_wire as wire  # noqa: E402
from topology import PRI_LINK_IP, SEC_LINK_IP  # noqa: E402
from e2e_pair import DISKS, checkpoints, open_client, read_records  # noqa: E402

AGENT = os.environ.get("QEMU_COLO_AGENT") or os.path.join(
    REPO_ROOT, "build", "qemu", "tools", "colo", "qemu-colo-agent")
HB_PORT = 9010


def log(msg):
    sys.stdout.write("# %s\n" % msg)
    sys.stdout.flush()


def _pdeathsig():
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class Agents:
    """A pair configuration file and one qemu-colo-agent per host
    namespace: hostA (primary, topo.pri) and hostB (secondary, topo.sec).
    The VMs get a second QMP socket for their agent (add_qmp())."""

    def __init__(self, topo, interval_ms=100, timeout_ms=1000, name="e2e"):
        self.topo = topo
        self.dir = tempfile.mkdtemp(prefix="colo-hb-")
        self.procs = {}
        self.ns = {"hostA": topo.pri, "hostB": topo.sec}
        self.qmp = {n: os.path.join(self.dir, n + "-agent-qmp.sock")
                    for n in self.ns}
        self.sock = {n: os.path.join(self.dir, n + "-agent.sock") for n in self.ns}
        self.logs = {n: os.path.join(self.dir, n + "-agent.log") for n in self.ns}
        self.config = os.path.join(self.dir, "pair.conf")
        # the pair's heartbeat key, generated for this run (mode 0600)
        self.key_file = wire.write_key(self.dir)
        self.key = wire.read_key(self.key_file)
        self.name = name
        with open(self.config, "w") as f:
            # guest-args: the VMs are started by the test, the agents only
            # need the names and the heartbeat settings
            f.write("[pair]\nname=%s\nguest-args=-M pc\nheartbeat-port=%d\n"
                    "heartbeat-interval-ms=%d\nheartbeat-timeout-ms=%d\n"
                    "heartbeat-key-file=%s\n"
                    % (name, HB_PORT, interval_ms, timeout_ms, self.key_file))
            for n, role, ip in (("hostA", "primary", PRI_LINK_IP),
                                ("hostB", "secondary", SEC_LINK_IP)):
                f.write("\n[node %s]\ninitial-role=%s\nlink-addr=%s\n"
                        "workdir=%s\nqmp=%s\nagent-qmp=%s\nagent-socket=%s\n"
                        % (n, role, ip, os.path.join(self.dir, n),
                           os.path.join(self.dir, n + "-qmp.sock"),
                           self.qmp[n], self.sock[n]))

    def add_qmp(self, pair):
        for vm, n in ((pair.pri, "hostA"), (pair.sec, "hostB")):
            vm.add_args("-qmp", "unix:%s,server=on,wait=off" % self.qmp[n])

    def start(self, names=("hostA", "hostB")):
        for n in names:
            with open(self.logs[n], "ab") as errf:
                self.procs[n] = subprocess.Popen(
                    self.topo.exec_prefix(self.ns[n]) +
                    [AGENT, self.config, "--node", n],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=errf, preexec_fn=_pdeathsig)
        for n in names:
            wait_for(lambda: os.path.exists(self.sock[n]) or
                     self.procs[n].poll() is not None, 10,
                     "agent %s's status socket" % n)
            assert self.procs[n].poll() is None, \
                "agent %s exited: %s" % (n, self.log(n))

    def status(self, n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(5)
            s.connect(self.sock[n])
            buf = b""
            while not buf.endswith(b"\n"):
                data = s.recv(4096)
                if not data:
                    break
                buf += data
        finally:
            s.close()
        return json.loads(buf)

    def wait(self, n, pred, timeout, what):
        """Wait until pred(status) holds; return that status."""
        def check():
            assert self.procs[n].poll() is None, "agent %s exited" % n
            s = self.status(n)
            return s if pred(s) else None
        return wait_for(check, timeout, "agent %s: %s" % (n, what))

    def log(self, n):
        try:
            with open(self.logs[n]) as f:
                return f.read()
        except OSError:
            return ""

    def kill(self, n, sig=signal.SIGKILL):
        p = self.procs.get(n)
        if p and p.poll() is None:
            p.send_signal(sig)
            p.wait(10)

    def stop(self):
        for n, p in self.procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def append_guest_option(vm, opt):
    i = vm.args.index("-append")
    vm.args[i + 1] += " " + opt


def objects(vm):
    return {o["name"] for o in vm.cmd("qom-list", path="/objects")}


def protected(topo, pair, agents):
    """Agents up, pair protected, client running with checkpoints passing."""
    agents.start()
    pair.start()
    for n, role in (("hostA", "primary"), ("hostB", "secondary")):
        agents.wait(n, lambda s, role=role: s["role"] == role and
                    s["peer-state"] == "alive" and s["local-qemu"] == "running",
                    30, "role %s, peer alive" % role)
    client = open_client(topo)
    sock = client.sock
    c0 = checkpoints(pair.pri)
    pair.pri.wait_for(lambda: checkpoints(pair.pri) >= c0 + 2, 60,
                      "two more checkpoints")
    compared = pair.pri.cmd("qom-get", path="/objects/comp0",
                            property="stat-secondary-packets")
    assert compared > 0, "the pair does not really compare"
    return client, sock


def survivor_serves(topo, pair, agents, client, sock, survivor, t_fail, what):
    """The survivor's agent took over without a command; the client's
    connection lives and the answers are right."""
    n = "hostB" if survivor is pair.sec else "hostA"
    st = agents.wait(n, lambda s: s["last-action"].startswith("take-over done"),
                     60, "take-over done")
    t_done = time.monotonic()
    assert survivor.cmd("query-colo-status")["mode"] == "none"
    if survivor is pair.sec:
        wait_for(lambda: topo.port_of_guest() == "to-sec", 30,
                 "the switch to learn the guest on to-sec")
        assert not objects(survivor) & {"f1", "f2"}, "secondary proxy left"
    else:
        assert not objects(survivor) & {"comp0", "m0", "redire0", "redire1"}, \
            "primary proxy left"
    k = client.answers()
    client.wait_answers(k + 20, 180)
    client.stop()
    f = client.figures(t_fail)
    log("%s: agent %s: %s (%.2fs after the failure); first answer from the "
        "survivor %.2fs after the failure; longest gap %.2fs; %d answers, all "
        "right" % (what, n, st["last-action"], t_done - t_fail,
                   f["first_answer_s"], f["max_gap_s"], f["answers"]))
    last = client.last_request()
    if DISKS:
        image = pair.disk("secondary.raw" if survivor is pair.sec else "primary.raw")
        survivor.cmd("quit")
        survivor.wait_exit(30)
        log("%s: %d acknowledged records on the survivor's disk" % (
            what, read_records(image, client.base + 1, last)))
    return f
