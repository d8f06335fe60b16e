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
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import guest_files, wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from topology import missing_requirements  # noqa: E402
from tool_pair import (CTL, ToolPair, check_records, ctl, fail,  # noqa: E402
                       guest_records, log, reprotect, with_pair)
from e2e_pair import open_client  # noqa: E402

t = Tap()


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
        last = client.last_request()
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
        def loads(text):
            """The file loads: status gets as far as asking the nodes."""
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([CTL, "status", path],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode != 2 and path + ":" not in r.stderr, (text, r)
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
        # the proxy's unix sockets WORKDIR/compare0.sock, compare_out.sock
        # (sun_path: 107 bytes and the NUL)
        long_dir = "/" + "w" * (107 - len("/compare_out.sock") - 1)
        expect(GOOD.replace("[node b]\n", "[node b]\nworkdir = %sx\n" % long_dir),
               "[node b]: workdir is too long: the proxy's unix socket "
               "%sx/compare_out.sock would have 108 bytes, at most 107 fit"
               % long_dir)
        loads(GOOD.replace("[node b]\n", "[node b]\nworkdir = %s\n" % long_dir))
        # the keys of the former loopback ports still load
        loads(GOOD.replace("[pair]\n", "[pair]\nport-local-compare = 9001\n"
                           "port-local-out = 9005\n"))
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

        line = {"node": "b", "role": "secondary", "peer-state": "silent",
                "last-heartbeat-ms": 1234, "quorum": "quorate",
                "last-action": "none", "forged-datagrams": 3,
                "replayed-datagrams": 2, "stale-datagrams": 0,
                "heartbeat-auth": "none",
                "warning": "heartbeat-auth = none: anyone"}

        def serve():
            for _ in range(2):      # status, then status --json
                conn, _ = srv.accept()
                conn.sendall(json.dumps(line).encode() + b"\n")
                conn.close()
        th = threading.Thread(target=serve, daemon=True)
        th.start()
        r = subprocess.run([CTL, "status", path], capture_output=True, text=True,
                           timeout=60)
        # --json: the same, for programs (docs: qemu-colo-ctl status --json)
        rj = subprocess.run([CTL, "status", path, "--json"], capture_output=True,
                            text=True, timeout=60)
        th.join(10)
        srv.close()
        assert rj.returncode == 1, rj
        pair = json.loads(rj.stdout)
        assert pair["pair"] == "colo" and len(pair["nodes"]) == 2, pair
        a, b = pair["nodes"]
        assert a["name"] == "a" and a["initial-role"] == "primary" and \
            a["reachable"] is False and "qmp.sock" in a["error"] and \
            a["agent"] is None, a
        assert b["agent"] == line, b
        rj = subprocess.run([CTL, "status", path, "--node", "a", "--json"],
                            capture_output=True, text=True, timeout=60)
        assert rj.returncode == 1 and json.loads(rj.stdout)["name"] == "a", rj
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
