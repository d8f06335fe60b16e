#!/usr/bin/env python3
"""make demo: the product on one machine, from one configuration file.

The e2e topology (topology.py: a client, a switch and two host namespaces
joined by a COLO link) runs a pair configured by tests/colo/e2e/demo-pair.conf
(placeholders filled in for this build and this run, then shown):

  1  the topology is built and the configuration written
  2  qemu-colo-ctl start + protect: the test guest (256 MiB, 16 MiB disk)
     protected, a qemu-colo-agent on each host
  3  a client on one TCP connection, numbered requests, every answer
     checked; qemu-colo-ctl status while checkpoints pass
  4  kill -9 of the primary QEMU: the secondary's agent fails over by
     itself (no command typed); the takeover time (kill to first answer)
  5  qemu-colo-ctl reprotect --start: protected again in one step, the
     same connection open; a last check that no answer was lost or wrong
     and every acknowledged record is on the survivor's disk
  6  everything removed (QEMUs, agents, namespaces, temp dirs), also on a
     failure or Ctrl-C

Readable progress lines ("[  12.3s] ...", tool output indented) and a TAP
result line per step ("ok - ..."/"not ok - ...").  Needs root (network
namespaces, taps), the build (QEMU, qemu-img, qemu-colo-ctl,
qemu-colo-agent) and the test guest (make guest).

Usage: demo.py
"""

import os
import datetime
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import (DEFAULT_BINARY, default_firmware_dirs,  # noqa: E402
                     guest_files, wait_for)
from tap import Tap  # noqa: E402
from topology import (GUEST_IP, PRI_LINK_IP, SEC_LINK_IP, Topology,  # noqa: E402
                      missing_requirements)
from tool_pair import CTL, QEMU_IMG, Qmp, ToolPair, guest_records  # noqa: E402
from e2e_pair import open_client  # noqa: E402
from agents import AGENT, Agents  # noqa: E402
import tls_certs  # noqa: E402

TEMPLATE = os.path.join(HERE, "demo-pair.conf")
START = time.monotonic()
t = Tap()


def say(msg):
    sys.stdout.write("[%6.1fs] %s\n" % (time.monotonic() - START, msg))
    sys.stdout.flush()


def show(text, prefix="          | "):
    for line in text.rstrip("\n").splitlines():
        sys.stdout.write(prefix + line + "\n")
    sys.stdout.flush()


def tool(*args, timeout=900):
    """Run qemu-colo-ctl, its command line and output shown as they come;
    returns (exit status, output)."""
    say("$ qemu-colo-ctl %s" % " ".join(args))
    p = subprocess.Popen([CTL] + list(args), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    out = []
    try:
        for line in p.stdout:
            out.append(line)
            show(line)
        p.wait()
    finally:
        timer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, "".join(out)


def fill_template(topo):
    """The demo configuration: the template with this build's paths, the
    guest's files and this run's namespaces."""
    with open(TEMPLATE) as f:
        text = f.read()
    # the template's addresses must be the topology's
    for addr in (GUEST_IP + "/24", "link-addr = " + PRI_LINK_IP,
                 "link-addr = " + SEC_LINK_IP):
        assert addr in text, "%s: %r does not match topology.py" % (TEMPLATE, addr)
    g = guest_files()
    firmware = " ".join("-L %s" % shlex.quote(d)
                        for d in default_firmware_dirs(DEFAULT_BINARY))
    values = {"QEMU": DEFAULT_BINARY, "FIRMWARE": firmware,
              "KERNEL": shlex.quote(g["vmlinuz"]),
              "INITRD": shlex.quote(g["initrd"]),
              "NS_A": topo.pri, "NS_B": topo.sec}
    # the comment is for the template's reader
    text = "".join(line + "\n" for line in text.splitlines()
                   if not line.startswith("#"))
    unknown = set(re.findall(r"@([A-Z_]+)@", text)) - set(values)
    assert not unknown, "%s: unknown placeholders %s" % (TEMPLATE, unknown)
    text = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], text)
    return text.replace("=  ", "= ")       # no -L options


def with_tls(d, text):
    """TLS on every COLO channel: a CA and a certificate per node made now
    with certtool (in the run's directory, removed with it), tls-dir in
    [pair].  Each host has its own credentials at the same path: on this
    one machine, each node's launcher mounts its own directory there in a
    private mount namespace."""
    certs = tls_certs.PairCerts(d.pair.path("", "tls-certs"),
                                {"a": PRI_LINK_IP, "b": SEC_LINK_IP}, impostors=False)
    text = text.replace("[pair]\n", "[pair]\ntls-dir = %s\n" % certs.tls_dir, 1)
    for n, ns in (("a", d.topo.pri), ("b", d.topo.sec)):
        old = "launcher = ip netns exec %s\n" % ns
        assert old in text, "%s: node %s's launcher is not %r" % (TEMPLATE, n, old)
        text = text.replace(old, "launcher = %s\n"
                            % tls_certs.launcher(certs.node_dir[n], certs.tls_dir, ns))
    say("TLS on the COLO link: a CA and certificates for nodes a and b (CN = node "
        "name, IP = link address) made with certtool in %s; each node's QEMU sees "
        "its own at tls-dir" % os.path.dirname(certs.tls_dir))
    return text


class DemoAgents(Agents):
    """test_heartbeat's agents, but on the pair's own configuration file
    (nodes a and b, sockets in the nodes' workdirs); logs in self.dir."""

    def __init__(self, topo, pair):
        super().__init__(topo, name="demo")
        self.config = pair.config
        self.ns = {"a": topo.pri, "b": topo.sec}
        self.qmp = {n: pair.path(n, "agent-qmp.sock") for n in self.ns}
        self.sock = {n: pair.path(n, "agent.sock") for n in self.ns}
        self.logs = {n: os.path.join(self.dir, n + "-agent.log") for n in self.ns}


class Demo:
    def __init__(self):
        self.topo = Topology()
        self.pair = None
        self.agents = None
        self.client = None
        self.conn = None
        self.takeover_s = None


def step_topology(d):
    say("building the network: namespaces %s (client), %s (switch), %s "
        "(host of node a), %s (host of node b); COLO link %s <-> %s"
        % (d.topo.client, d.topo.bridge, d.topo.pri, d.topo.sec, PRI_LINK_IP,
           SEC_LINK_IP))
    d.topo.setup()
    d.pair = ToolPair(d.topo)
    # the pair's configuration is the demo's, not ToolPair's default
    with open(d.pair.config, "w") as f:
        f.write(with_tls(d, fill_template(d.topo)))
    # the agents hold agent-qmp: look at the QEMUs through status-qmp
    d.pair.qmp = {n: Qmp(d.pair.path(n, "status-qmp.sock")) for n in "ab"}
    st = os.stat(d.pair.key)
    assert os.path.dirname(d.pair.key) == os.path.dirname(d.pair.config)
    assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
    say("the agents' heartbeat key %s: %d random bytes generated for this run, "
        "mode 0600 (HMAC-SHA256 on every heartbeat)" % (d.pair.key, st.st_size))
    say("the pair configuration %s (from %s):"
        % (d.pair.config, os.path.relpath(TEMPLATE)))
    with open(d.pair.config) as f:
        show(f.read())


def step_protect(d):
    pair = d.pair
    rc, out = tool("start", pair.config)
    assert rc == 0, "qemu-colo-ctl start failed"
    say("waiting for the guest on node a to boot and serve on %s:7777"
        % GUEST_IP)
    wait_for(lambda: "COLO-GUEST: ready" in pair.serial("a"), 240,
             "the guest's service on node a")
    say("the guest serves; protecting it (disk copied to node b, memory "
        "migrated, COLO started)")
    rc, out = tool("protect", pair.config)
    assert rc == 0 and "protected: a primary, b secondary" in out, \
        "qemu-colo-ctl protect failed"
    assert pair.roles() == ("a", "b")
    rc, out = tool("status", pair.config)
    assert rc == 0 and out.count("channels: migration=tls(") == 2 and \
        out.count(" nbd=tls") == 2 and out.count(" proxy=tls(") == 2, \
        "not every COLO channel is encrypted"
    say("every COLO channel (migration, NBD, proxy) runs over TLS, each "
        "listener accepts only the peer's certificate")
    say("starting a HeartBeat agent on each host: qemu-colo-agent %s --node "
        "a|b" % pair.config)
    d.agents = DemoAgents(d.topo, pair)
    d.agents.start(("a", "b"))
    for n, role in (("a", "primary"), ("b", "secondary")):
        st = d.agents.wait(n, lambda s, role=role: s["role"] == role and
                           s["peer-state"] == "alive" and
                           s["local-qemu"] == "running", 30,
                           "role %s, peer alive" % role)
        say("agent %s (pid %d): role %s, peer %s alive"
            % (n, d.agents.procs[n].pid, st["role"], st.get("peer", "?")))


def step_client(d):
    pair = d.pair
    say("client (namespace %s): one TCP connection to %s:7777, a numbered "
        "request every 50 ms, every answer checked" % (d.topo.client, GUEST_IP))
    d.client = open_client(d.topo)
    d.conn = "%s:%d -> %s:%d" % (d.client.sock.getsockname() +
                                 d.client.sock.getpeername())
    say("connected: %s" % d.conn)
    for _ in range(2):
        c = pair.checkpoints("a")
        wait_for(lambda: pair.checkpoints("a") > c, 60, "a checkpoint")
        rc, out = tool("status", pair.config)
        assert rc == 0 and "agent: role=primary peer=alive" in out and \
            "agent: role=secondary peer=alive" in out, "status: not protected"
        assert "WARNING" not in out and "heartbeats ignored" not in out, out
        say("client: %d answers on its one connection, all right"
            % d.client.answers())
    compared = pair.comp("a", "packets-compared")
    assert compared > 0 and pair.comp("a", "secondary-packets") > 0, \
        "colo-compare gets nothing from the secondary"
    say("colo-compare on node a: %d packets compared with the secondary's"
        % compared)


def agent_lines(agents, n, pattern, t_wall):
    """Agent n's log lines matching pattern, logged from t_wall on, each with
    its time after t_wall (the log's clock is UTC wall time, in ms)."""
    out = []
    day = datetime.datetime.fromtimestamp(t_wall, datetime.timezone.utc)
    for line in agents.log(n).splitlines():
        try:
            hms = datetime.datetime.strptime(line.split()[0], "%H:%M:%S.%f")
        except (ValueError, IndexError):
            continue
        ts = day.replace(hour=hms.hour, minute=hms.minute, second=hms.second,
                         microsecond=hms.microsecond).timestamp()
        if ts < t_wall - 43200:             # past midnight
            ts += 86400
        if ts >= t_wall - 0.002 and re.search(pattern, line):
            out.append((ts - t_wall, line))
    return out


def step_failover(d):
    pair, agents, client = d.pair, d.agents, d.client
    say("kill -9 of node a's QEMU (pid %d), the primary, as if it crashed; "
        "no command will be typed" % pair.pid("a"))
    t_wall = time.time()
    t_kill = time.monotonic()
    pair.kill("a")
    agents.wait("b", lambda s: s["last-action"].startswith("take-over done"),
                60, "take-over done")
    wait_for(lambda: d.topo.port_of_guest() == "to-sec", 30,
             "the switch to learn the guest on to-sec")
    k = client.answers()
    client.wait_answers(k + 20, 180)
    f = client.figures(t_kill)
    assert pair.qmp["b"]("query-colo-status")["mode"] == "none"
    lines = agent_lines(agents, "a", r"local QEMU .*gone", t_wall) + \
        agent_lines(agents, "b", r"reports its QEMU gone|decision:|take-over",
                    t_wall)
    for dt, line in sorted(lines, key=lambda x: x[0]):
        show(line, "  +%.3fs " % dt)
    done = [dt for dt, line in lines if "take-over done" in line]
    assert done, "no 'take-over done' in agent b's log"
    say("TAKEOVER: kill -9 -> node b's agent done %.3f s -> first answer from "
        "node b %.3f s; the connection goes on: %d answers, all right"
        % (done[0], f["first_answer_s"], client.answers()))
    d.takeover_s = f["first_answer_s"]
    tool("status", pair.config)


def step_reprotect(d):
    pair, agents, client = d.pair, d.agents, d.client
    # the new secondary's switch port must flood nothing (test_e2e.py)
    d.topo.standby_port("to-pri")
    say("re-protecting node b with a new secondary on node a, in one step")
    t0 = time.monotonic()
    rc, out = tool("reprotect", pair.config, "--start")
    t1 = time.monotonic()
    took = t1 - t0
    assert rc == 0 and "protected: b primary, a secondary" in out, \
        "qemu-colo-ctl reprotect failed"
    assert pair.roles() == ("b", "a")
    c0 = pair.checkpoints("b")
    wait_for(lambda: pair.checkpoints("b") >= c0 + 2, 90,
             "two checkpoints of the new pair")
    client.wait_answers(client.answers() + 10, 120)
    assert pair.comp("b", "packets-compared") > 0 and \
        pair.comp("b", "secondary-packets") > 0, "the new pair does not compare"
    # the agents follow the new COLO session by themselves
    for n, role in (("b", "primary"), ("a", "secondary")):
        agents.wait(n, lambda s, role=role: s["role"] == role and
                    s["peer-state"] == "alive", 30, "role %s, peer alive" % role)
    rc, out = tool("status", pair.config)
    assert "agent: role=primary peer=alive" in out and \
        "agent: role=secondary peer=alive" in out, "agents not re-armed"
    # the client waits while colo-compare holds output (live migration) and
    # for the short stop at the switch to COLO
    with client.lock:
        answered = [r[2] for r in client.records]
    pause = max(b - a for a, b in zip(answered, answered[1:]) if t0 < b)
    say("reprotect --start took %.1f s (longest gap between answers since "
        "it began: %.2f s): b primary, a secondary, agents re-armed; the "
        "client's first connection is still open (%d answers)"
        % (took, pause, client.answers()))


def step_final(d):
    pair, client = d.pair, d.client
    client.stop()
    last = client.last_request()
    f = client.figures(0)
    n = guest_records(pair, "b", client.base + 1, last)
    assert "%s:%d -> %s:%d" % (client.sock.getsockname() +
                               client.sock.getpeername()) == d.conn
    say("FINAL: %d requests on one TCP connection (%s), none lost or wrong "
        "(median latency %.0f ms, longest gap between answers %.2f s); %d "
        "acknowledged records on node b's disk, all there"
        % (last - client.base, d.conn, f["median_latency_ms"], f["max_gap_s"], n))


def cleanup(d):
    problems = []
    if d.client:
        d.client._stop = True
        d.client.close()
    if d.agents:
        d.agents.stop()
        if os.path.exists(d.agents.dir):
            problems.append("agent dir %s left" % d.agents.dir)
    if d.pair:
        if any(d.pair.pid(n) for n in "ab"):
            tool("stop", d.pair.config, timeout=120)
        for n in "ab":
            if d.pair.pid(n):               # the tool failed: by hand
                problems.append("node %s's QEMU survived stop" % n)
                os.kill(d.pair.pid(n), signal.SIGKILL)
        shutil.rmtree(d.pair.dir, ignore_errors=True)
    procs = d.topo.pids()
    d.topo.teardown()
    left = d.topo.leftovers()
    if procs:
        problems.append("processes left in our namespaces: %s" % procs)
    if left:
        problems.append("namespaces left: %s" % left)
    if d.pair and os.path.exists(d.pair.dir):
        problems.append("%s left" % d.pair.dir)
    assert not problems, "; ".join(problems)
    say("removed: QEMUs, agents, namespaces, %s"
        % (d.pair.dir if d.pair else "no temp dir"))


def diagnose(d):
    """On a failure: the last lines of the agents' and QEMUs' logs."""
    def tail(path, what):
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()[-12:]
        except OSError:
            return
        print("# %s:" % what)
        for line in lines:
            print("#   " + line)
    if d.agents:
        for n in "ab":
            tail(d.agents.logs[n], "agent %s log" % n)
    if d.pair:
        for n in "ab":
            tail(d.pair.path(n, "qemu.log"), "node %s qemu.log" % n)
            tail(d.pair.path(n, "serial.log"), "node %s console" % n)
    sys.stdout.flush()


STEPS = [
    ("demo: the topology built, the pair configuration written from "
     "tests/colo/e2e/demo-pair.conf", step_topology),
    ("demo: qemu-colo-ctl start + protect: a primary, b secondary; an agent "
     "on each host, peer alive", step_protect),
    ("demo: the client's one TCP connection gets right answers while "
     "checkpoints pass and colo-compare compares", step_client),
    ("demo: kill -9 of the primary QEMU: node b's agent takes over by itself, "
     "the connection goes on with right answers", step_failover),
    ("demo: qemu-colo-ctl reprotect --start: protected again in one step (b "
     "primary, a secondary), agents re-armed, the connection still open",
     step_reprotect),
    ("demo: no answer lost or wrong on the one connection; every "
     "acknowledged record on the survivor's disk", step_final),
]


def interrupted(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    for path in (CTL, AGENT, QEMU_IMG, DEFAULT_BINARY):
        if why is None and not os.access(path, os.X_OK):
            why = "no %s (run make)" % path
    if why:
        t.fail("demo", "cannot run: %s" % why)
        return t.finish()
    # Ctrl-C (also when started with SIGINT ignored) and SIGTERM: clean up
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    d = Demo()
    rc = 0
    try:
        failed = False
        for what, fn in STEPS:
            if failed:
                t.fail(what, "not run: an earlier step failed")
                continue
            n = t.failed
            t.check(what, fn, d)
            if t.failed > n:
                failed = True
                diagnose(d)
    except KeyboardInterrupt:
        print("# interrupted: cleaning up")
        rc = 130
    finally:
        # a second Ctrl-C must not leave half of it behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        t.check("demo: clean-up: no QEMU, agent, namespace or temp dir left",
                cleanup, d)
    say("%d steps passed, %d failed" % (t.passed, t.failed))
    status = t.finish()         # the plan line, in any case
    return rc or status


if __name__ == "__main__":
    sys.exit(main())
