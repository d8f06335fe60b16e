#!/usr/bin/env python3
"""qemu-colo-agent on a stale secondary (no VM, no root).

The agent of node b runs against a stand-in QEMU (a QMP server in this
process: query-colo-status answers what the test says, every other command
is recorded) and a stand-in peer (heartbeat datagrams from node a's
address).  What is tested, through the agent's status socket and log:
  - a secondary whose query-colo-status says its session failed (mode
    secondary, reason error: the COLO_LINK_LOST event was missed) while
    the primary's agent reports its QEMU running becomes stale:
    role "stale", "stale": true, a log line;
  - the primary's agent then reports its QEMU gone: no take-over (no
    command beyond query-colo-status reaches QEMU), the reason says why;
  - re-protected (a new COLO session): not stale, and the primary's "gone"
    starts a take-over again;
  - an agent started on a session that already failed cannot know what the
    primary did before: stale, no take-over on the primary's "gone".
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from tap import Tap        # noqa: E402
import colo_heartbeat_wire as wire   # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("QEMU_COLO_BUILD", os.path.join(TOP, "build"))
AGENT = os.path.join(BUILD, "qemu", "tools", "colo", "qemu-colo-agent")

RUNNING, GONE = 1, 3                     # health in a heartbeat
MODE_NONE, MODE_PRIMARY = 1, 2           # COLO mode in a heartbeat


KEY = None                               # the pair's key, set in main()


def datagram(seq, health, mode):
    return wire.encode(seq, 0x5eed, health, mode, "p", "a", KEY)


class FakeQemu:
    """A QMP server: query-colo-status from self.colo, a running guest
    without migration (what the agent's status query reads), the rest
    recorded."""

    def __init__(self, path):
        self.colo = {"mode": "secondary", "last-mode": "none", "reason": "none"}
        self.commands = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        f = conn.makefile("rwb")
        try:
            f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            f.flush()
            for line in f:
                cmd = json.loads(line)["execute"]
                if cmd == "query-colo-status":
                    ret = dict(self.colo)
                elif cmd == "query-status":
                    ret = {"status": "running"}
                elif cmd == "query-migrate":
                    ret = {}
                elif cmd == "qmp_capabilities":
                    ret = {}
                else:
                    self.commands.append(cmd)
                    ret = [] if cmd.startswith("query-") else {}
                f.write(json.dumps({"return": ret}).encode() + b"\n")
                f.flush()
        except (OSError, ValueError):
            pass
        finally:
            conn.close()


class Peer:
    """Node a's agent: a heartbeat every 100 ms with what self.report says."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.report = (RUNNING, MODE_PRIMARY)
        self.seq = 0
        self.stop = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop.wait(0.1):
            self.seq += 1
            self.sock.sendto(datagram(self.seq, *self.report), ("127.0.0.2", self.port()))

    def port(self):
        return self.sock.getsockname()[1]


def status(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return json.loads(s.makefile().readline())
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def wait_status(path, cond, what, timeout=15):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = status(path)
        if st and cond(st):
            return st
        time.sleep(0.05)
    raise AssertionError("agent: no %s within %d s; last status %s" % (what, timeout, st))


def main():
    t = Tap()
    if not os.access(AGENT, os.X_OK):
        t.check_unless("%s not built" % AGENT, "the agent on a stale secondary", None)
        return t.finish()
    d = tempfile.mkdtemp(prefix="colo-agent-")
    agent = None
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        os.makedirs(os.path.join(d, "b"))
        conf = os.path.join(d, "pair.conf")
        global KEY
        KEY = wire.read_key(wire.write_key(d))
        with open(conf, "w") as f:
            f.write("[pair]\nname = p\nguest-args = -M pc\nheartbeat-port = %d\n"
                    "heartbeat-key-file = heartbeat.key\n"
                    "[node a]\ninitial-role = primary\nlink-addr = 127.0.0.1\n"
                    "workdir = a\n[node b]\ninitial-role = secondary\n"
                    "link-addr = 127.0.0.2\nworkdir = b\n" % port)
        qemu = FakeQemu(os.path.join(d, "b", "agent-qmp.sock"))
        peer = Peer(port)
        log = open(os.path.join(d, "agent.log"), "w+")
        agent = subprocess.Popen([AGENT, conf, "--node", "b"], stderr=log)
        sock = os.path.join(d, "b", "agent.sock")

        def stale():
            wait_status(sock, lambda s: s["role"] == "secondary" and
                        s["peer-state"] == "alive", "protecting secondary")
            # the link breaks (seen only through query-colo-status); the
            # primary runs on (its agent still says "primary")
            qemu.colo = {"mode": "secondary", "last-mode": "none", "reason": "error"}
            st = wait_status(sock, lambda s: s["role"] == "stale", "role stale")
            assert st["stale"] is True and "stale" in st["reason"], st
            # hours later the primary ends: no take-over from this state
            peer.report = (GONE, MODE_NONE)
            st = wait_status(sock, lambda s: s["peer-state"] == "gone", "peer gone")
            assert st["role"] == "stale" and st["last-action"] == "none", st
            assert "stale" in st["reason"] and "gone" in st["reason"], st
            assert qemu.commands == [], qemu.commands
            log.seek(0)
            text = log.read()
            assert "query-colo-status: the local QEMU's COLO link is lost" in text, text
            assert "this secondary is stale: " in text and \
                "it will not take over until re-protected" in text, text
        t.check("a secondary whose link broke (query-colo-status) while the "
                "primary runs on is stale: role 'stale', a log line, no "
                "take-over when the primary is gone", stale)

        def reprotected():
            qemu.colo = {"mode": "none", "last-mode": "secondary", "reason": "request"}
            wait_status(sock, lambda s: s["role"] == "none", "mode none")
            peer.report = (RUNNING, MODE_PRIMARY)
            qemu.colo = {"mode": "secondary", "last-mode": "none", "reason": "none"}
            st = wait_status(sock, lambda s: s["role"] == "secondary" and
                             s["peer-state"] == "alive", "secondary again")
            assert st["stale"] is False and st["reason"] == "protecting", st
            peer.report = (GONE, MODE_PRIMARY)
            st = wait_status(sock, lambda s: s["last-action"] != "none",
                             "an action")
            assert st["last-action"].startswith("take-over"), st
            log.seek(0)
            assert "no longer stale" in log.read()
        t.check("re-protected (a new COLO session): no longer stale, the "
                "primary's 'gone' starts a take-over", reprotected)

        def restarted():
            nonlocal agent
            agent.terminate()
            agent.wait(10)
            qemu.colo = {"mode": "secondary", "last-mode": "none", "reason": "error"}
            peer.report = (GONE, MODE_NONE)
            del qemu.commands[:]
            log.seek(0)
            log.truncate()
            agent = subprocess.Popen([AGENT, conf, "--node", "b"], stderr=log)
            st = wait_status(sock, lambda s: s["peer-state"] == "gone" and
                             s["role"] != "unknown", "peer gone, mode known")
            assert st["role"] == "stale" and st["last-action"] == "none", st
            assert qemu.commands == [], qemu.commands
            log.seek(0)
            assert "before this agent watched it" in log.read()
        t.check("an agent started on a failed secondary session: stale (the "
                "primary may have run on meanwhile), no take-over", restarted)
    finally:
        if agent:
            agent.terminate()
            agent.wait(10)
        shutil.rmtree(d, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
