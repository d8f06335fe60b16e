"""A two-node corosync cluster with a qnetd witness, inside the e2e topology.

    topo = Topology().setup()
    cl = Cluster(topo).setup()     # witness namespace + links, config files
    cl.start_qnetd(); cl.start_node("pri"); cl.start_node("sec")
    cl.wait_quorate("pri", True)
    cl.probe("sec", peer="pri")    # what colo-quorum (the agent's layer) sees
                                   # (Cluster(topo, names={"pri": "hostA",
                                   # "sec": "hostB"}) names corosync's nodes)
    cl.cut_link() / cl.restore_link() / cl.kill_node("pri") / cl.kill_host("pri")
    cl.teardown()                  # kills every daemon, deletes the witness
                                   # namespace and the files; then topo.teardown()

Network (added to the Topology, which stays as it is):

  colo-pri-PID colo0 192.168.77.1  <-- the COLO link -->  colo-sec-PID colo0 .2
       corosync's ring (knet) runs over it, like the replication
  colo-wit-PID  the witness host: bridge wbr0 192.168.78.254 with ports
       w-pri and w-sec, veths to wit0 192.168.78.1 (pri) and .2 (sec);
       corosync-qnetd listens there (TLS off, no NSS database needed)

Cutting the COLO link therefore leaves both nodes talking to the witness:
the ffsplit algorithm gives the qdevice vote to one side only.

Private state per host: corosync has its pid file hard-coded in /var/run
(= /run) and qdevice/qnetd keep their sockets and lock files there, so every
daemon and tool of a host runs as
    ip netns exec NS sh -c 'mount --bind HOSTDIR/run /run && exec CMD'
("ip netns exec" gives each command a mount namespace of its own, so the
bind mount never shows on the machine).  corosync's state_dir and the config
file are in HOSTDIR too.  Corosync's IPC (libqb) uses abstract unix sockets,
which belong to the network namespace: a tool started with
"ip netns exec NS" talks to that host's corosync and no other.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile

from colo_vm import wait_for

WITNESS_IP = "192.168.78.254"
WITNESS_NET = "192.168.78"
QNETD_PORT = 5403
# colo-quorum-probe: what the agent's corosync layer sees
PROBE = "tools/colo/colo-quorum-probe"

NODES = {
    # name: (node id, ring address, witness-side address)
    "pri": (1, "192.168.77.1", WITNESS_NET + ".1"),
    "sec": (2, "192.168.77.2", WITNESS_NET + ".2"),
}


class ClusterError(RuntimeError):
    pass


def missing_requirements():
    for tool in ("corosync", "corosync-qdevice", "corosync-qnetd",
                 "corosync-quorumtool"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") +
                            ":/usr/sbin:/sbin"):
            return "no %s (Debian packages corosync, corosync-qdevice, " \
                   "corosync-qnetd: assembly/setup.sh installs them)" % tool
    return None


def _run(cmd, check=True, timeout=60):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise ClusterError("%s: exit %d: %s" % (" ".join(cmd), r.returncode,
                                                 out.strip()))
    return r.returncode, out


def corosync_conf(state_dir, token_ms, qdevice=True, names=None,
                  tie_breaker="lowest"):
    names = names or {}
    nodes = "".join(
        "    node {\n        name: %s\n        nodeid: %d\n"
        "        ring0_addr: %s\n    }\n" % (names.get(host, host), nid, addr)
        for host, (nid, addr, _) in sorted(NODES.items(), key=lambda x: x[1][0]))
    device = ""
    if qdevice:
        device = ("    device {\n        votes: 1\n        model: net\n"
                  "        net {\n            tls: off\n"
                  "            host: %s\n            port: %d\n"
                  "            algorithm: ffsplit\n"
                  "            tie_breaker: %s\n        }\n    }\n"
                  % (WITNESS_IP, QNETD_PORT, tie_breaker))
    return ("totem {\n    version: 2\n    cluster_name: colo\n"
            "    transport: knet\n    crypto_cipher: none\n"
            "    crypto_hash: none\n    token: %d\n}\n"
            "nodelist {\n%s}\n"
            "quorum {\n    provider: corosync_votequorum\n%s}\n"
            "logging {\n    to_stderr: yes\n    to_syslog: no\n"
            "    to_logfile: no\n    timestamp: on\n}\n"
            "system {\n    state_dir: %s\n}\n"
            % (token_ms, nodes, device, state_dir))


class Cluster:
    def __init__(self, topo, build_dir=None, token_ms=1000, qdevice=True,
                 names=None, tie_breaker="lowest"):
        """names: corosync node names for "pri" and "sec" (default the
        same); name them like the pair configuration's [node NAME] groups,
        the agent looks its peer up in corosync's nodelist by that name.
        tie_breaker: qnetd's choice in a 50:50 split ("lowest", "highest"
        or a node id: pri is 1, sec is 2)."""
        self.topo = topo
        self.names = names or {}
        self.tie_breaker = str(tie_breaker)
        self.suffix = topo.pri[len("colo-pri-"):]
        self.witness = "colo-wit-" + self.suffix
        self.ns = {"pri": topo.pri, "sec": topo.sec, "wit": self.witness}
        self.token_ms = token_ms
        self.qdevice = qdevice
        top = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
        build = build_dir or os.environ.get("QEMU_COLO_BUILD",
                                            os.path.join(top, "build"))
        self.probe_bin = os.path.join(build, "qemu", PROBE)
        self.dir = None
        self.procs = {}          # (host, daemon) -> Popen
        self._ns_created = False
        self._down = False

    # ---- set-up -------------------------------------------------------------

    def setup(self):
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def _setup(self):
        self.dir = tempfile.mkdtemp(prefix="colo-cluster-")
        for host in ("pri", "sec", "wit"):
            for sub in ("run/corosync-qdevice", "run/corosync-qnetd", "state"):
                os.makedirs(os.path.join(self.dir, host, sub))
        for host in ("pri", "sec"):
            with open(self.conf(host), "w") as f:
                f.write(corosync_conf(os.path.join(self.dir, host, "state"),
                                      self.token_ms, self.qdevice, self.names,
                                      self.tie_breaker))
        w = self.witness
        if os.path.exists("/run/netns/" + w):
            raise ClusterError("namespace %s exists already" % w)
        _run(["ip", "netns", "add", w])
        self._ns_created = True
        self.topo.run_in(w, "sh", "-c", "for c in all default; do "
                         "p=/proc/sys/net/ipv6/conf/$c/disable_ipv6; "
                         "[ ! -e $p ] || echo 1 >$p || exit 1; done")
        ip = self.topo.ip
        ip(w, "link", "set", "lo", "up")
        ip(w, "link", "add", "wbr0", "type", "bridge", "stp_state", "0")
        for host in ("pri", "sec"):
            port = "w-" + host
            ip(w, "link", "add", port, "type", "veth", "peer", "name", "wit0",
               "netns", self.ns[host])
            ip(w, "link", "set", port, "master", "wbr0", "up")
            ip(self.ns[host], "addr", "add", NODES[host][2] + "/24", "dev", "wit0")
            ip(self.ns[host], "link", "set", "wit0", "up")
        ip(w, "addr", "add", WITNESS_IP + "/24", "dev", "wbr0")
        ip(w, "link", "set", "wbr0", "up")

    def conf(self, host):
        return os.path.join(self.dir, host, "corosync.conf")

    def log(self, host, daemon):
        return os.path.join(self.dir, host, daemon + ".log")

    def cmd(self, host, *cmd):
        """cmd run in host's network namespace with its private /run."""
        return (["ip", "netns", "exec", self.ns[host], "sh", "-c",
                 'mount --bind "$0" /run && exec "$@"',
                 os.path.join(self.dir, host, "run")] + list(cmd))

    def run(self, host, *cmd, check=True):
        return _run(self.cmd(host, *cmd), check=check)[1]

    # ---- daemons ------------------------------------------------------------

    def _start(self, host, daemon, *cmd):
        key = (host, daemon)
        p = self.procs.get(key)
        if p is not None and p.poll() is None:
            raise ClusterError("%s already runs on %s" % (daemon, host))
        logf = open(self.log(host, daemon), "ab")
        try:
            self.procs[key] = subprocess.Popen(self.cmd(host, *cmd),
                                               stdin=subprocess.DEVNULL,
                                               stdout=logf, stderr=logf)
        finally:
            logf.close()
        return self.procs[key]

    def running(self, host, daemon):
        p = self.procs.get((host, daemon))
        return p is not None and p.poll() is None

    def _stop(self, host, daemon, sig=signal.SIGKILL):
        p = self.procs.pop((host, daemon), None)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def start_qnetd(self):
        self._start("wit", "qnetd", "corosync-qnetd", "-f", "-s", "off",
                    "-l", WITNESS_IP, "-p", str(QNETD_PORT))
        wait_for(lambda: self._qnetd_listening(), 30, "qnetd listening")

    def _qnetd_listening(self):
        self._check_alive("wit", "qnetd")
        out = _run(self.topo.exec_prefix(self.witness) +
                   ["ss", "-Htln", "sport", "= :%d" % QNETD_PORT],
                   check=False)[1]
        return "LISTEN" in out

    def stop_qnetd(self):
        self._stop("wit", "qnetd")

    def start_node(self, host, qdevice=None):
        """corosync, then corosync-qdevice once corosync answers."""
        self._start(host, "corosync", "corosync", "-f", "-c", self.conf(host))
        wait_for(lambda: self._corosync_answers(host), 30,
                 "corosync answering on " + host)
        if self.qdevice if qdevice is None else qdevice:
            self._start(host, "qdevice", "corosync-qdevice", "-f")

    def _corosync_answers(self, host):
        self._check_alive(host, "corosync")
        rc, _ = _run(self.cmd(host, "corosync-quorumtool", "-s"), check=False)
        # 0 quorate, 2 not quorate, 1 no answer
        return rc in (0, 2)

    def _check_alive(self, host, daemon):
        p = self.procs.get((host, daemon))
        if p is None or p.poll() is not None:
            with open(self.log(host, daemon), errors="replace") as f:
                tail = f.read()[-2000:]
            raise ClusterError("%s on %s is not running:\n%s" % (daemon, host, tail))

    def kill_node(self, host):
        """SIGKILL corosync and qdevice of host (its "host" stays up)."""
        self._stop(host, "qdevice")
        self._stop(host, "corosync")

    def kill_host(self, host):
        """SIGKILL every process of the host's namespace (ours and others')."""
        ns = self.ns[host]
        for _ in range(10):
            out = _run(["ip", "netns", "pids", ns], check=False)[1].split()
            if not out:
                break
            for pid in out:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for (h, d), p in list(self.procs.items()):
                if h == host:
                    p.wait(timeout=30)
        for (h, d) in list(self.procs):
            if h == host:
                self.procs.pop((h, d))

    # ---- network ------------------------------------------------------------

    def cut_link(self):
        """Cut the COLO link (both hosts and the witness stay up)."""
        for host in ("pri", "sec"):
            self.topo.ip(self.ns[host], "link", "set", "colo0", "down")

    def restore_link(self):
        for host in ("pri", "sec"):
            self.topo.ip(self.ns[host], "link", "set", "colo0", "up")

    # ---- state --------------------------------------------------------------

    def quorumtool(self, host):
        """corosync-quorumtool -s as a dict: quorate (bool, its exit code), total_votes,
        expected_votes, quorum, members (node ids), raw (the output)."""
        rc, out = _run(self.cmd(host, "corosync-quorumtool", "-s", "-p"),
                       check=False)
        if rc not in (0, 2):
            raise ClusterError("corosync-quorumtool on %s: %s" % (host, out))
        st = {"quorate": rc == 0, "members": [], "raw": out}
        for line in out.splitlines():
            m = re.match(r"\s*(Total votes|Expected votes|Quorum):\s*(\S+)",
                         line)
            if m:
                st[m.group(1).lower().replace(" ", "_")] = m.group(2)
            m = re.match(r"\s*(\d+)\s+\d+\s+(\S+)?\s*(\S+)", line)
            if m and "Qdevice" not in line:
                st["members"].append(int(m.group(1)))
        return st

    def probe(self, host, peer=None, plain=False):
        """colo-quorum-probe status: dict of its key=value line.  plain:
        run it with just "ip netns exec NS", as the agent is run (corosync's
        IPC needs the network namespace only, not the private /run)."""
        peer = self.names.get(peer, peer)
        args = [self.probe_bin, "status"] + (["--peer", peer] if peer else [])
        cmd = (self.topo.exec_prefix(self.ns[host]) + args if plain
               else self.cmd(host, *args))
        rc, out = _run(cmd, check=False)
        if rc != 0:
            raise ClusterError("colo-quorum-probe on %s: exit %d: %s"
                               % (host, rc, out.strip()))
        return parse_probe(out.strip().splitlines()[-1])

    def watch(self, host, peer=None):
        """A running colo-quorum-probe watch (stdout: one line per change)."""
        peer = self.names.get(peer, peer)
        args = [self.probe_bin, "watch"] + (["--peer", peer] if peer else [])
        p = subprocess.Popen(self.cmd(host, *args), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[(host, "watch-%d" % p.pid)] = p
        return p

    def _wait_state(self, host, pred, timeout, what):
        last = {}

        def check():
            last["st"] = self.quorumtool(host)
            return pred(last["st"])
        try:
            return wait_for(check, timeout, what)
        except TimeoutError as e:
            raise TimeoutError("%s; last corosync-quorumtool -s on %s:\n%s"
                               % (e, host, last.get("st", {}).get("raw")))

    def wait_quorate(self, host, quorate, timeout=90):
        return self._wait_state(host, lambda st: st["quorate"] == quorate, timeout,
                                "%s %squorate" % (host, "" if quorate else "not "))

    def wait_members(self, host, members, timeout=90):
        want = sorted(members)
        return self._wait_state(host, lambda st: sorted(st["members"]) == want,
                                timeout, "%s membership %s" % (host, want))

    # ---- teardown -----------------------------------------------------------

    def teardown(self):
        if self._down:
            return
        self._down = True
        errors = []
        for (host, daemon) in list(self.procs):
            self._stop(host, daemon)
        if self._ns_created:
            for ns in (self.ns["pri"], self.ns["sec"], self.witness):
                if not os.path.exists("/run/netns/" + ns):
                    continue
                for pid in _run(["ip", "netns", "pids", ns], check=False)[1].split():
                    cmdline = ""
                    try:
                        with open("/proc/%s/cmdline" % pid, "rb") as f:
                            cmdline = f.read().decode(errors="replace")
                    except OSError:
                        continue
                    if "corosync" in cmdline or "colo-quorum-probe" in cmdline:
                        errors.append("left over in %s: %s" % (ns, cmdline))
                        try:
                            os.kill(int(pid), signal.SIGKILL)
                        except ProcessLookupError:
                            pass
            rc, out = _run(["ip", "netns", "del", self.witness], check=False)
            if rc != 0:
                errors.append(out.strip())
            self._ns_created = False
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if errors:
            raise ClusterError("teardown: " + "; ".join(errors))

    def logs(self):
        """The daemons' logs (for a failure report)."""
        out = []
        if not self.dir:
            return ""
        for host in ("pri", "sec", "wit"):
            for daemon in ("corosync", "qdevice", "qnetd"):
                p = self.log(host, daemon)
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        out.append("--- %s %s\n%s" % (host, daemon, f.read()[-3000:]))
        return "\n".join(out)


def parse_probe(line):
    d = {}
    for item in line.split():
        k, _, v = item.partition("=")
        if k == "members":
            d[k] = [int(x) for x in v.split(",") if x]
        else:
            d[k] = int(v) if v.lstrip("-").isdigit() else v
    return d
