#!/usr/bin/env python3
"""End to end: the HeartBeat agent (qemu-colo-agent) fails over by itself.

The pair, topology and client of e2e_pair.py (shared, not copied); each
host namespace also runs a qemu-colo-agent for its QEMU (own QMP socket,
UDP heartbeats over the COLO link).  After the failure the test types no
command: it only watches (QMP queries, the agents' status sockets, the
client) until the survivor serves, the client's connection still open and
every answer right.  Runs without corosync: the default rules (the primary
runs on unprotected; the secondary takes over only when the primary is
provably gone).

Scenarios (TAP line each):
  kill-primary    kill -9 the primary QEMU; the secondary takes over (its
                  agent hears "gone" from the primary's agent).  Before the
                  kill, garbage datagrams on the heartbeat port are counted
                  and ignored.
  kill-secondary  kill -9 the secondary QEMU; the primary's agent drops
                  protection (leaves COLO, removes the proxy and the
                  replication child) and the primary serves on
  stop-primary    SIGSTOP the primary QEMU; its agent fences it (SIGKILL)
                  after the timeout, the secondary takes over
  host-primary    the primary's whole host dies (agent and QEMU killed):
                  without corosync nothing proves the primary gone, so the
                  secondary must NOT take over (it waits, and says so)
  link-cut        the COLO link goes down with both alive: the primary runs
                  on alone, the secondary does not take over; the client's
                  connection survives
  dirty           heavy dirtying (colo.dirty) and long checkpoints with a
                  short heartbeat timeout: no failover, no action at all
  forged          an attacker on the COLO link (the peer's source address,
                  from inside its namespace; it reads every datagram):
                  forged "gone" datagrams (random boot id without a key or
                  with a wrong one; the peer's boot id and next sequence
                  numbers with a wrong MAC), bit-flipped and replayed
                  genuine ones, and after a restart of the primary's agent
                  the datagrams of its earlier run: no action, each kind
                  counted.  Then the primary QEMU is killed while forged
                  "running" datagrams keep coming: the secondary takes over.
  bad-usage       the agent refuses a missing config or an unknown node
                  with a clear message (no VM)

Usage: test_heartbeat.py [scenario...]   (default: all)
Environment: E2E_DISKS=0 runs without disk replication (as test_e2e.py).
"""

import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import guest_files, wait_for  # noqa: E402
from tap import Tap  # noqa: E402
import colo_heartbeat_wire as wire  # noqa: E402
from topology import (PRI_LINK_IP, SEC_LINK_IP,  # noqa: E402
                      Topology, missing_requirements)
from e2e_pair import Pair, checkpoints, diagnose, end_run  # noqa: E402
from agents import (AGENT, HB_PORT, Agents, append_guest_option,  # noqa: E402
                    log, objects, protected, survivor_serves)

SHAPE_MBIT = 200                # the COLO link's rate in scenario "dirty"
t = Tap()


REFUSED = ("bad-datagrams", "forged-datagrams", "corrupt-datagrams",
           "replayed-datagrams", "stale-datagrams")


def refused(st):
    """Datagrams the agent ignored, all reasons."""
    return sum(st[k] for k in REFUSED)


def garbage(topo, key):
    """Datagrams from the secondary's host to the primary agent's heartbeat
    port: random bytes, a truncated heartbeat, a version 1 one, signed ones
    of another pair, from the primary's own name, with a bad health.
    Returns how many were sent."""
    s = topo.socket_in(topo.sec, socket.AF_INET, socket.SOCK_DGRAM)
    rnd = random.Random(8)
    sent = 0
    try:
        def hb(pair, node, health=1):
            return wire.encode(1, 99, health, 3, pair, node, key)
        v1 = (b"CHB1" + bytes([1, 3, 3, 0]) + struct.pack(">IQ", 1, 99) +
              b"e2e".ljust(32, b"\0") + b"hostB".ljust(32, b"\0"))
        msgs = [bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(0, 300)))
                for _ in range(200)]
        msgs += [hb("e2e", "hostB")[:50], v1, hb("other", "hostB", 3),
                 hb("e2e", "hostA", 3), hb("e2e", "hostB", 9), b""]
        for m in msgs:
            s.sendto(m, (PRI_LINK_IP, HB_PORT))
            sent += 1
    finally:
        s.close()
    return sent


class Sniffer:
    """The attacker's ears: every heartbeat datagram of the agent at src_ip
    seen on colo0 in namespace ns (an AF_PACKET socket), in order."""

    def __init__(self, topo, ns, src_ip):
        self.sock = topo.socket_in(ns, socket.AF_PACKET, socket.SOCK_DGRAM)
        self.sock.bind(("colo0", 0x0800))       # IPv4 only
        self.sock.settimeout(0.2)
        self.src = socket.inet_aton(src_ip)
        self.seen = []
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.done.is_set():
            try:
                pkt = self.sock.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                break
            ihl = (pkt[0] & 15) * 4
            # the agent's own socket (the test's forgeries use other ports)
            if len(pkt) < ihl + 8 or pkt[9] != 17 or pkt[12:16] != self.src or \
                    struct.unpack(">HH", pkt[ihl:ihl + 4]) != (HB_PORT, HB_PORT):
                continue
            with self.lock:
                self.seen.append(pkt[ihl + 8:])

    def datagrams(self):
        with self.lock:
            return list(self.seen)

    def close(self):
        self.done.set()
        self.th.join(5)
        self.sock.close()


def attack(topo, pair, agents, client, sock):
    """Scenario "forged" (see the top of the file)."""
    key, name = agents.key, agents.name
    wrong = os.urandom(64)
    sniff = Sniffer(topo, topo.sec, PRI_LINK_IP)
    as_a = topo.socket_in(topo.pri, socket.AF_INET, socket.SOCK_DGRAM)
    as_b = topo.socket_in(topo.sec, socket.AF_INET, socket.SOCK_DGRAM)
    stop_flood = threading.Event()
    flood_th = None

    def boot(m):
        return wire.decode(m)["boot_id"]

    def quiet(st, role):
        assert st["role"] == role and st["peer-state"] == "alive" and \
            st["last-action"] == "none" and not st["stale"], st
        assert st["heartbeat-auth"] == "hmac-sha256" and "warning" not in st, st

    try:
        wait_for(lambda: len(sniff.datagrams()) >= 20, 10,
                 "20 heartbeats of hostA seen on the link")
        early = sniff.datagrams()[:20]
        assert all(len(m) == wire.WIRE_LEN and wire.verify(m, key) for m in early)
        a0, b0 = agents.status("hostA"), agents.status("hostB")
        cur = wire.decode(sniff.datagrams()[-1])
        n = 30
        to_b = []
        for i in range(n):
            rnd_boot = random.getrandbits(64)
            to_b.append(wire.encode(1 + i, rnd_boot, "gone", "primary", name,
                                    "hostA", None))
            to_b.append(wire.encode(1 + i, rnd_boot, "gone", "primary", name,
                                    "hostA", wrong))
        corrupt = [wire.encode(cur["seq"] + 1000 + i, cur["boot_id"], "gone",
                               "primary", name, "hostA", wrong) for i in range(n)]
        flipped = bytearray(sniff.datagrams()[-1])
        flipped[5] = wire.HEALTH["gone"]
        corrupt.append(bytes(flipped))
        to_a = [wire.encode(1 + i, random.getrandbits(64), "gone", "secondary",
                            name, "hostB", None if i % 2 else wrong)
                for i in range(n)]
        for m in to_b + corrupt + early:
            as_a.sendto(m, (SEC_LINK_IP, HB_PORT))
        for m in to_a:
            as_b.sendto(m, (PRI_LINK_IP, HB_PORT))
        sb = agents.wait("hostB", lambda s:
                         s["forged-datagrams"] >= b0["forged-datagrams"] + 2 * n and
                         s["corrupt-datagrams"] >= b0["corrupt-datagrams"] + n + 1 and
                         s["replayed-datagrams"] >= b0["replayed-datagrams"] + 20,
                         10, "forged, corrupt and replayed datagrams counted")
        sa = agents.wait("hostA", lambda s:
                         s["forged-datagrams"] >= a0["forged-datagrams"] + n,
                         10, "forged datagrams counted")
        quiet(sa, "primary")
        quiet(sb, "secondary")
        log("forged: hostB ignored %d forged, %d corrupt, %d replayed; hostA %d "
            "forged; no action, both alive" % (
                sb["forged-datagrams"], sb["corrupt-datagrams"],
                sb["replayed-datagrams"], sa["forged-datagrams"]))

        # an earlier run: hostA's agent restarts (a new boot id); what was
        # captured of its first run is refused as stale
        old = sniff.datagrams()
        old_boot = boot(old[-1])
        agents.kill("hostA", signal.SIGTERM)
        agents.start(["hostA"])
        wait_for(lambda: any(boot(m) != old_boot for m in sniff.datagrams()[-3:]),
                 10, "hostA's new boot id on the link")
        rx = agents.status("hostB")["heartbeats-received"]
        agents.wait("hostB", lambda s: s["heartbeats-received"] >= rx + 3, 10,
                    "hostB to follow hostA's new run")
        s0 = agents.status("hostB")["stale-datagrams"]
        for m in old:
            as_a.sendto(m, (SEC_LINK_IP, HB_PORT))
        sb = agents.wait("hostB", lambda s: s["stale-datagrams"] >= s0 + len(old),
                         10, "%d datagrams of the earlier run counted" % len(old))
        sa = agents.wait("hostA", lambda s: s["role"] == "primary" and
                         s["peer-state"] == "alive", 30, "the new hostA agent up")
        quiet(sa, "primary")
        quiet(sb, "secondary")
        log("forged: after hostA's agent restarted, %d datagrams of its earlier "
            "run replayed to hostB: %d stale, no action" % (
                len(old), sb["stale-datagrams"] - s0))

        # a genuine failover while forged "running" datagrams keep coming
        cur = wire.decode(sniff.datagrams()[-1])
        flood_sent = [0]

        def flood():
            i = 0
            while not stop_flood.is_set():
                i += 1
                as_a.sendto(wire.encode(cur["seq"] + 100000 + i, cur["boot_id"],
                                        "running", "primary", name, "hostA",
                                        wrong if i % 2 else None),
                            (SEC_LINK_IP, HB_PORT))
                flood_sent[0] = i
                stop_flood.wait(0.02)
        f0 = agents.status("hostB")
        flood_th = threading.Thread(target=flood, daemon=True)
        flood_th.start()
        agents.wait("hostB", lambda s: refused(s) >= refused(f0) + 20, 10,
                    "the forged 'running' flood to arrive")
        t_fail = time.monotonic()
        pair.pri.kill(signal.SIGKILL)
        survivor_serves(topo, pair, agents, client, sock, pair.sec, t_fail,
                        "forged")
        stop_flood.set()
        flood_th.join(5)
        st = agents.status("hostB")
        assert "reports its QEMU gone" in agents.log("hostB")
        assert refused(st) - refused(f0) >= flood_sent[0] - 5, (st, flood_sent)
        log("forged: the primary killed during a flood of %d forged 'running' "
            "datagrams (%d refused): the secondary took over"
            % (flood_sent[0], refused(st) - refused(f0)))
    finally:
        stop_flood.set()
        if flood_th:
            flood_th.join(5)
        sniff.close()
        as_a.close()
        as_b.close()


def scenario(kind):
    topo = Topology()
    pair = agents = client = None
    try:
        topo.setup()
        pair = Pair(topo)
        timeout_ms = 400 if kind == "dirty" else 1000
        agents = Agents(topo, timeout_ms=timeout_ms)
        agents.add_qmp(pair)
        if kind == "dirty":
            for vm in (pair.pri, pair.sec):
                append_guest_option(vm, "colo.dirty=48")
        client, sock = protected(topo, pair, agents)
        pri, sec = pair.pri, pair.sec

        if kind == "kill-primary":
            before = refused(agents.status("hostA"))
            n = garbage(topo, agents.key)
            agents.wait("hostA", lambda s: refused(s) >= before + n, 10,
                        "%d bad datagrams counted" % n)
            st = agents.status("hostA")
            assert st["peer-state"] == "alive" and st["role"] == "primary" and \
                st["last-action"] == "none", st
            assert "ignored a datagram" in agents.log("hostA")
            log("garbage: %d datagrams counted and ignored, pair still "
                "protected" % n)
            t_fail = time.monotonic()
            pri.kill(signal.SIGKILL)
            survivor_serves(topo, pair, agents, client, sock, sec, t_fail, kind)
            assert "reports its QEMU gone" in agents.log("hostB")
        elif kind == "forged":
            attack(topo, pair, agents, client, sock)
        elif kind == "kill-secondary":
            t_fail = time.monotonic()
            sec.kill(signal.SIGKILL)
            survivor_serves(topo, pair, agents, client, sock, pri, t_fail, kind)
        elif kind == "stop-primary":
            t_fail = time.monotonic()
            pri.kill(signal.SIGSTOP)
            survivor_serves(topo, pair, agents, client, sock, sec, t_fail, kind)
            pri.wait_exit(30)
            assert pri.proc.returncode == -signal.SIGKILL, pri.proc.returncode
            assert "decision: fence" in agents.log("hostA")
        elif kind == "host-primary":
            agents.kill("hostA")
            pri.kill(signal.SIGKILL)
            pri.wait_exit(30)
            st = agents.wait("hostB", lambda s: "not provably gone" in s["reason"],
                             60, "waiting: primary not provably gone")
            assert st["last-action"] == "none" and st["peer-state"] != "gone", st
            # QEMU's COLO_LINK_LOST event, relayed by the agent
            wait_for(lambda: any("QMP event COLO_LINK_LOST" in line and
                                 '"mode": "secondary"' in line
                                 for line in agents.log("hostB").splitlines()),
                     30, "COLO_LINK_LOST in hostB's log")
            assert sec.cmd("query-colo-status")["mode"] == "secondary"
            assert topo.port_of_guest() != "to-sec"
            log("host-primary: the secondary waits (%s), as it must without "
                "corosync" % st["reason"])
        elif kind == "link-cut":
            t_fail = time.monotonic()
            topo.ip(topo.pri, "link", "set", "colo0", "down")
            st = agents.wait("hostA",
                             lambda s: s["last-action"].startswith("take-over done"),
                             60, "the primary to run alone")
            assert pri.cmd("query-colo-status")["mode"] == "none"
            assert not objects(pri) & {"comp0", "m0"}, "primary proxy left"
            sb = agents.wait("hostB", lambda s: "not provably gone" in s["reason"],
                             60, "the secondary to wait")
            assert sb["last-action"] == "none", sb
            assert sec.cmd("query-colo-status")["mode"] == "secondary"
            k = client.answers()
            client.wait_answers(k + 20, 180)
            assert topo.port_of_guest() == "to-pri"
            client.stop()
            f = client.figures(t_fail)
            client.last_request()
            log("link-cut: primary: %s; secondary: %s; first answer %.2fs after "
                "the cut, %d answers, all right"
                % (st["last-action"], sb["reason"], f["first_answer_s"],
                   f["answers"]))
        elif kind == "dirty":
            # A 1 Gbit/s-class link would carry a checkpoint in a blink: at
            # SHAPE_MBIT each one takes longer than the heartbeat timeout,
            # and the heartbeats share the link (and its queue) with it.
            topo.run_in(topo.pri, "tc", "qdisc", "add", "dev", "colo0", "root",
                        "tbf", "rate", "%dmbit" % SHAPE_MBIT, "burst", "64kb",
                        "latency", "50ms")
            c0 = checkpoints(pri)
            b0 = pri.cmd("query-colo-status")["ram-bytes"]
            worst = {"hostA": 0, "hostB": 0}
            states = set()

            def watch():
                for n in worst:
                    s = agents.status(n)
                    worst[n] = max(worst[n], s["last-heartbeat-ms"])
                    states.add(s["peer-state"])
                    assert s["last-action"] == "none", s
                return checkpoints(pri) >= c0 + 5
            pri.wait_for(watch, 300, "five checkpoints under heavy dirtying",
                         interval=0.1)
            st = pri.cmd("query-colo-status")
            client.wait_answers(client.answers() + 5, 120)
            for n in worst:
                s = agents.status(n)
                assert s["last-action"] == "none" and s["peer-state"] == "alive", s
            assert st["mode"] == "primary"
            assert sec.cmd("query-colo-status")["mode"] == "secondary"
            per_ckpt = (st["ram-bytes"] - b0) / (st["checkpoints"] - c0)
            xfer_ms = per_ckpt * 8 / (SHAPE_MBIT * 1e6) * 1000
            log("dirty: %d checkpoints, %.1f MB RAM each on a %d Mbit/s link "
                "(at least %.0f ms of transfer each; heartbeat timeout %d ms); "
                "longest pause %.0f ms; longest heartbeat silence seen %d/%d "
                "ms; peer states seen %s; no action"
                % (st["checkpoints"] - c0, per_ckpt / 1e6, SHAPE_MBIT, xfer_ms,
                   timeout_ms, st["max-pause-us"] / 1000, worst["hostA"],
                   worst["hostB"], sorted(states)))
            assert xfer_ms > timeout_ms, \
                ("checkpoints too small (%.1f MB) to show that a transfer "
                 "longer than the timeout causes no failover" % (per_ckpt / 1e6))
    except Exception as e:
        extra = ""
        if agents:
            extra = "\n".join("agent %s log:\n%s" % (n, agents.log(n)[-3000:])
                              for n in ("hostA", "hostB"))
        raise AssertionError("%s\n%s\n%s" % (e, extra,
                                             diagnose(topo, pair, client))) from e
    finally:
        end_run(topo, client, agents and agents.stop, pair and pair.stop)


def bad_usage():
    r = subprocess.run([AGENT, "/nonexistent/pair.conf", "--node", "x"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 2 and b"/nonexistent/pair.conf" in r.stderr, r
    d = tempfile.mkdtemp(prefix="colo-hb-usage-")
    try:
        cfg = os.path.join(d, "pair.conf")
        with open(cfg, "w") as f:
            f.write("[pair]\nguest-args=-M pc\nheartbeat-key-file=%s\n"
                    "[node a]\ninitial-role=primary\nlink-addr=127.0.0.1\n"
                    "workdir=%s\n[node b]\ninitial-role=secondary\n"
                    "link-addr=127.0.0.1\nworkdir=%s/b\n"
                    % (wire.write_key(d), d, d))
        r = subprocess.run([AGENT, cfg, "--node", "c"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        assert r.returncode == 2 and b"no node 'c'" in r.stderr, r
        r = subprocess.run([AGENT, cfg], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        assert r.returncode == 2 and b"Usage" in r.stderr, r
    finally:
        shutil.rmtree(d)


def auth_none():
    """heartbeat-auth = none: the agent runs, and warns in its log and its
    status; without it and without a key it refuses to start."""
    d = tempfile.mkdtemp(prefix="colo-hb-none-")
    p = None
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        cfg = os.path.join(d, "pair.conf")
        text = ("[pair]\nguest-args=-M pc\nheartbeat-port=%d\n"
                "[node a]\ninitial-role=primary\nlink-addr=127.0.0.1\n"
                "workdir=%s/a\n[node b]\ninitial-role=secondary\n"
                "link-addr=127.0.0.2\nworkdir=%s/b\n" % (port, d, d))
        with open(cfg, "w") as f:
            f.write(text)
        r = subprocess.run([AGENT, cfg, "--node", "a"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        assert r.returncode == 2 and b"missing key 'heartbeat-key-file'" in \
            r.stderr and b"heartbeat-auth = none" in r.stderr, r
        with open(cfg, "w") as f:
            f.write(text.replace("[pair]\n", "[pair]\nheartbeat-auth=none\n"))
        os.makedirs(os.path.join(d, "a"))
        errf = open(os.path.join(d, "agent.log"), "w+")
        p = subprocess.Popen([AGENT, cfg, "--node", "a"], stderr=errf,
                             stdout=subprocess.DEVNULL)
        sock = os.path.join(d, "a", "agent.sock")
        wait_for(lambda: os.path.exists(sock) or p.poll() is not None, 10,
                 "the agent's status socket")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(sock)
        st = json.loads(s.makefile().readline())
        s.close()
        assert st["heartbeat-auth"] == "none" and \
            "anyone on the link can forge" in st["warning"], st
        errf.seek(0)
        assert "WARNING: heartbeat-auth = none" in errf.read()
        r = subprocess.run([os.path.join(os.path.dirname(AGENT), "qemu-colo-ctl"),
                            "status", cfg], stdout=subprocess.PIPE, text=True,
                           timeout=60)
        assert "WARNING: heartbeat-auth = none" in r.stdout and \
            "  agent: WARNING: heartbeat-auth = none" in r.stdout, r.stdout
    finally:
        if p:
            p.terminate()
            p.wait(10)
        shutil.rmtree(d)


NAMES = {
    "kill-primary": "kill -9 the primary QEMU (after garbage on the heartbeat "
                    "port): the secondary's agent takes over, no command typed",
    "forged": "forged, bit-flipped, replayed and earlier-run heartbeats from "
              "the peer's address: ignored and counted, no action; kill -9 "
              "the primary during a forged 'running' flood: the secondary "
              "takes over",
    "kill-secondary": "kill -9 the secondary QEMU: the primary's agent drops "
                      "protection, the primary serves on",
    "stop-primary": "SIGSTOP the primary QEMU: its agent fences it, the "
                    "secondary's agent takes over",
    "host-primary": "the primary's host dies, no corosync: the secondary does "
                    "not take over (not provably gone)",
    "link-cut": "COLO link cut with both alive, no corosync: the primary runs "
                "on alone, the secondary does not take over",
    "dirty": "heavy dirtying, checkpoints longer than the heartbeat timeout: "
             "no failover",
}


def main():
    wanted = sys.argv[1:] or list(NAMES) + ["bad-usage", "auth-none"]
    why = missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (run make guest)"
    if not os.access(AGENT, os.X_OK):
        why = "no %s (build it)" % AGENT
    for k in wanted:
        if k == "bad-usage":
            what = "heartbeat: the agent refuses bad usage with a clear message"
            t.check_unless(None if os.access(AGENT, os.X_OK) else "no agent binary",
                           what, bad_usage)
            continue
        if k == "auth-none":
            what = ("heartbeat: without a key the agent refuses to start unless "
                    "heartbeat-auth = none, which it and qemu-colo-ctl status "
                    "warn about")
            t.check_unless(None if os.access(AGENT, os.X_OK) else "no agent binary",
                           what, auth_none)
            continue
        t.check_unless(why, "heartbeat %s: %s" % (k, NAMES[k]), scenario, k)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
