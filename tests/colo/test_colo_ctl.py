#!/usr/bin/env python3
"""qemu-colo-ctl against a real COLO pair: status of both sides, watch the
events of a failover, fail over through the tool; bad usage and unreachable
monitors give clear errors and a non-zero exit status."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_pair import bootsect_guest_args, start_pair, wait_checkpoints  # noqa: E402
from colo_vm import REPO_ROOT  # noqa: E402
from tap import Tap  # noqa: E402

CTL = os.path.join(REPO_ROOT, "build", "qemu", "tools", "colo", "qemu-colo-ctl")
t = Tap()


def ctl(*args, timeout=120):
    return subprocess.run([CTL] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def bad_usage():
    r = ctl("frobnicate")
    assert r.returncode == 2 and "Usage:" in r.stderr, r
    r = ctl("watch", "/x", "-3")
    assert r.returncode == 2 and "COUNT must be a positive number" in r.stderr, r
    r = ctl("status", "/nonexistent/qmp.sock")
    assert r.returncode == 1, r
    assert "cannot connect to QMP socket /nonexistent/qmp.sock" in r.stderr, r


def fake_monitor(path, replies, first=()):
    """A QMP monitor on unix socket @path for one client, on a thread: it
    sends the lines @first, then its greeting, then answers each command
    with @replies[command] (an error for any other)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        with conn, conn.makefile("rwb") as f:
            for line in first:
                f.write(json.dumps(line).encode() + b"\n")
            f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
            f.flush()
            for line in f:
                cmd = json.loads(line)["execute"]
                if cmd in replies:
                    answer = {"return": replies[cmd]}
                else:
                    answer = {"error": {"class": "CommandNotFound",
                                        "desc": "fake: no %s" % cmd}}
                f.write(json.dumps(answer).encode() + b"\n")
                f.flush()
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return srv, th


def event_before_greeting():
    """QEMU sends an event raised while a client connects before its
    greeting: monitor.c sends events to every monitor not in capabilities
    negotiation, and a monitor enters it only once it has seen the new
    client (the previous one left it in command mode, or none came yet).
    Seen with QEMU: QUORUM_REPORT_BAD of a COLO secondary's disk probed at
    start-up, STOP/RESUME of a primary's checkpoints (1 'does not speak
    QMP' in 3286 qemu-colo-ctl status calls at 50 ms checkpoints)."""
    path = "/tmp/colo-ctl-fake-%d.sock" % os.getpid()
    event = {"timestamp": {"seconds": 1, "microseconds": 0},
             "event": "QUORUM_REPORT_BAD",
             "data": {"node-name": "#block518", "sectors-count": 1,
                      "sector-num": 0, "type": "read",
                      "error": "Input/output error"}}
    replies = {"qmp_capabilities": {},
               "query-colo-status": {"mode": "none", "last-mode": "none",
                                     "reason": "none"},
               "query-status": {"status": "inmigrate", "running": False},
               "query-migrate": {}}
    srv, th = fake_monitor(path, replies, first=[event])
    try:
        r = ctl("status", path, timeout=30)
        assert r.returncode == 0 and "mode=none" in r.stdout, r
    finally:
        srv.close()
        os.unlink(path)
        th.join(10)


def status_watch_failover():
    # A second monitor on each side, for the tool (the test holds the first).
    # Extra monitors for the tool (a QMP socket serves one client at a time;
    # the test holds the first one of each side).
    mon = {n: "/tmp/colo-ctl-%d-%s.sock" % (os.getpid(), n)
           for n in ("pri", "sec", "sec-watch")}

    def monitors(*names):
        return [a for n in names for a in ("-qmp", "unix:%s,server=on,wait=off" % mon[n])]

    pri, sec = start_pair(bootsect_guest_args(), delay_ms=300,
                          primary_extra=monitors("pri"),
                          secondary_extra=monitors("sec", "sec-watch"))
    watcher = None
    try:
        wait_checkpoints(pri, 3)
        r = ctl("status", mon["pri"], mon["sec"])
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert len(lines) == 2, r.stdout
        assert re.search(r"mode=primary .*run-state=(running|colo) migration=colo "
                         r"checkpoints=(\d+)", lines[0]), lines[0]
        assert int(re.search(r"checkpoints=(\d+)", lines[0]).group(1)) >= 3, lines[0]
        assert "mode=secondary" in lines[1], lines[1]

        watcher = subprocess.Popen([CTL, "watch", mon["sec-watch"], "2"],
                                   stdout=subprocess.PIPE, text=True)
        # Events reach connected clients only: wait for the watcher to say so.
        assert watcher.stdout.readline().endswith(": watching\n")
        pri.kill(signal.SIGKILL)
        sec.wait_for(lambda: sec.cmd("query-colo-status")["reason"] == "error", 60,
                     "secondary to notice the primary is gone")
        r = ctl("failover", mon["sec"])
        assert r.returncode == 0, r
        assert re.search(r"left COLO as secondary \(reason request\); run-state=running",
                         r.stdout), r.stdout
        out, _ = watcher.communicate(timeout=60)
        assert re.search(r": (STOP|RESUME|COLO_EXIT|MIGRATION) ", out), out
        r = ctl("failover", mon["sec"])
        assert r.returncode == 1 and "VM is not in COLO mode" in r.stderr, r
    finally:
        if watcher and watcher.poll() is None:
            watcher.kill()
        for vm in (pri, sec):
            vm.shutdown()
        for p in mon.values():
            if os.path.exists(p):
                os.unlink(p)


def main():
    t.check("qemu-colo-ctl: bad usage and unreachable monitors fail clearly", bad_usage)
    t.check("qemu-colo-ctl: an event before the monitor's greeting is an "
            "event, not a monitor that does not speak QMP", event_before_greeting)
    t.check("qemu-colo-ctl: status of both sides, watch, failover of the secondary",
            status_watch_failover)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
