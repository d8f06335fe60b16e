#!/usr/bin/env python3
"""The Pacemaker OCF resource agent tools/colo/ocf/colo (no VM, no Pacemaker).

What is tested:
  - meta-data: well-formed, valid against resource-agents' ra-api-1.dtd and
    metadata.rng (xmllint), OCF 1.1, promotable (monitor per role);
  - validate-all and the other actions reject bad parameters:
    OCF_ERR_CONFIGURED (6) for a missing/unreadable config, a node not in
    it, a config without two nodes; OCF_ERR_INSTALLED (5) without
    qemu-colo-ctl; unknown action 3; a probe with a missing config: 7;
  - the state machine against a stub qemu-colo-ctl that keeps each node's
    (mode, run-state) in a file and logs its calls: start/monitor/promote
    (cold start: restart as primary + protect; COLO secondary: failover),
    notify post-start and post-promote (reprotect), refusing to promote a fresh QEMU while
    the peer holds the guest, demote, stop; exit codes 0/7/8;
  - a QEMU that runs but does not answer (a stand-in holding the node's pid
    file, SIGSTOPped or ignoring SIGTERM): monitor 1, not 7 (also as a
    probe), start/promote refused, stop SIGKILLs it and succeeds only once
    it is gone; stop of an answering QEMU waits for the process too; a
    stale pid file naming another program is not taken for QEMU;
  - ocf-tester (resource-agents' compliance check) on the stub;
  - monitor with the real qemu-colo-ctl on a pair that is not running: 7.
  - a real pair (QEMUs in the e2e topology, started by qemu-colo-ctl)
    through the agent's actions, as Pacemaker would call them (skipped
    without root or the test guest; OCF_REAL_PAIR=0 skips it).
Under a real Pacemaker: tests/colo/test_pacemaker.py.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from tap import Tap        # noqa: E402
import colo_heartbeat_wire as wire   # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RA = os.path.join(TOP, "tools", "colo", "ocf", "colo")
BUILD = os.environ.get("QEMU_COLO_BUILD", os.path.join(TOP, "build"))
REAL_CTL = os.path.join(BUILD, "qemu", "tools", "colo", "qemu-colo-ctl")
RA_SHARE = "/usr/share/resource-agents"

OCF_SUCCESS, OCF_ERR_GENERIC, OCF_ERR_UNIMPLEMENTED = 0, 1, 3
OCF_ERR_INSTALLED, OCF_ERR_CONFIGURED, OCF_NOT_RUNNING = 5, 6, 7
OCF_RUNNING_PROMOTED = 8

# A stand-in for qemu-colo-ctl: the same command line and, for
# status --json --node NAME, the same keys as the real one.
STUB = r'''#!/usr/bin/env python3
import json, os, sys
state_file = os.environ["COLO_STUB_STATE"]
with open(state_file) as f:
    st = json.load(f)
with open(state_file + ".log", "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\n")
cmd, cfg = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
json_out = "--json" in args
if json_out:
    args.remove("--json")
opts = dict(zip(args[0::2], args[1::2]))
node = opts.get("--node")
if cmd == "status":
    if not (json_out and node):
        sys.exit(2)
    # "_miss": that many status calls find no answer (a monitor busy or
    # still in another client's hands, a probe's timeout)
    miss = st.get("_miss", 0) > 0
    if miss:
        st["_miss"] -= 1
        with open(state_file, "w") as f:
            json.dump(st, f)
    n = {"name": node, "initial-role": "x", "link-addr": "y", "agent": None,
         "reachable": st[node] is not None and not miss}
    if st[node] is None or miss:
        n["error"] = "no"
    else:
        n.update({"mode": st[node][0], "run-state": st[node][1],
                  "migration": "none", "checkpoints": 0})
    print(json.dumps(n))
    sys.exit(0 if n["reachable"] else 1)
elif cmd == "start":
    st[node] = ["none", "running" if opts.get("--role") == "primary" else "inmigrate"]
elif cmd == "stop":
    st[node] = None
elif cmd == "failover":
    st[node] = ["none", "running"]
elif cmd in ("protect", "reprotect"):
    # "_fail_reprotect": that many re-protections fail, changing nothing
    if cmd == "reprotect" and st.get("_fail_reprotect", 0) > 0:
        st["_fail_reprotect"] -= 1
        with open(state_file, "w") as f:
            json.dump(st, f)
        sys.exit(1)
    pri = [n for n in st if st[n] and st[n][1] == "running"][0]
    for n in st:
        st[n] = ["primary" if n == pri else "secondary", "running"]
else:
    sys.exit(2)
with open(state_file, "w") as f:
    json.dump(st, f)
'''


# A stand-in for a QEMU that runs but does not answer on QMP: it writes the
# node's pid file (the one qemu-colo-ctl start passes as -pidfile), carries
# "-pidfile PATH" on its command line like QEMU, and says "ready".
FAKE_QEMU = r"""
import os, signal, sys
if sys.argv[3] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[2], "w") as f:
    f.write("%d\n" % os.getpid())
print("ready", flush=True)
while True:
    signal.pause()
"""


def fake_qemu(env, node="a", how="plain"):
    pidfile = os.path.join(env.dir, node, "qemu.pid")
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", FAKE_QEMU, "-pidfile", pidfile, how],
                         stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    return p


def gone(p, timeout=5):
    """The fake's exit signal, once it has ended (raises if it has not)."""
    return -p.wait(timeout=timeout)


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="colo-ocf-")
        self.config = os.path.join(self.dir, "pair.conf")
        self.key = wire.write_key(self.dir)
        self.write_config(["a", "b"])
        self.stub = os.path.join(self.dir, "qemu-colo-ctl")
        with open(self.stub, "w") as f:
            f.write(STUB)
        os.chmod(self.stub, 0o755)
        self.state_file = os.path.join(self.dir, "state.json")
        self.set_state(a=None, b=None)

    def write_config(self, nodes, path=None):
        lines = ["[pair]", "name = test", "qemu = /bin/false",
                 "guest-args = -m 64", "disk-size = 1048576",
                 "heartbeat-key-file = %s" % self.key]
        for i, n in enumerate(nodes):
            lines += ["", "[node %s]" % n,
                      "initial-role = %s" % ("primary" if i == 0 else "secondary"),
                      "link-addr = 127.0.0.%d" % (i + 1),
                      "workdir = %s" % os.path.join(self.dir, n),
                      "disk = %s" % os.path.join(self.dir, n, "disk.raw")]
        with open(path or self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def set_state(self, **kw):
        with open(self.state_file, "w") as f:
            json.dump(kw, f)

    def state(self):
        with open(self.state_file) as f:
            return json.load(f)

    def calls(self):
        try:
            with open(self.state_file + ".log") as f:
                out = f.read().splitlines()
        except OSError:
            out = []
        open(self.state_file + ".log", "w").close()
        return [c for c in out if not c.startswith("status ")]

    def ra(self, action, node="a", ctl=None, config=None, timeout=60, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
        env.update({"OCF_ROOT": "/usr/lib/ocf",
                    "OCF_RESKEY_config": self.config if config is None else config,
                    "OCF_RESKEY_node": node,
                    "OCF_RESKEY_ctl": ctl or self.stub,
                    "COLO_STUB_STATE": self.state_file,
                    "OCF_RESKEY_CRM_meta_interval": "10000",
                    # keep ocf_log off the system log
                    "HA_LOGFACILITY": "none", "HA_debug": "0"})
        env.update(extra)
        env = {k: v for k, v in env.items() if v is not None}
        r = subprocess.run([RA, action], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        return r.returncode, r.stdout.decode(errors="replace")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def expect(env, want, action, **kw):
    rc, out = env.ra(action, **kw)
    assert rc == want, "%s %s: exit %d, expected %d: %s" % (action, kw, rc, want, out)
    return out


def real_pair(env):
    """The agent's actions on a real pair (the e2e topology, QEMUs started
    by qemu-colo-ctl): start both, promote one (cold start: primary +
    protect), kill its QEMU, promote the other (failover), start the dead
    node again and notify (reprotect), stop.  Returns a skip reason or None."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e"))
    import topology
    from colo_vm import guest_files, wait_for
    why = topology.missing_requirements()
    if why is None and not os.path.exists(guest_files()["initrd"]):
        why = "no test guest (make guest)"
    if why is None and not os.access(REAL_CTL, os.X_OK):
        why = "no %s" % REAL_CTL
    if why:
        return why
    from tool_pair import ToolPair
    topo = topology.Topology()
    pair = None
    try:
        topo.setup()
        pair = ToolPair(topo)
        kw = {"ctl": REAL_CTL, "config": pair.config, "timeout": 300}

        def ra(want, action, node, **extra):
            out = expect(env, want, action, node=node, **dict(kw, **extra))
            for line in out.splitlines():
                print("#   ra %s %s: %s" % (action, node, line))
            return out
        for n in "ab":
            ra(OCF_NOT_RUNNING, "monitor", n)
            ra(OCF_SUCCESS, "start", n)
            ra(OCF_SUCCESS, "monitor", n)
        ra(OCF_SUCCESS, "promote", "a")
        ra(OCF_RUNNING_PROMOTED, "monitor", "a")
        ra(OCF_SUCCESS, "monitor", "b")
        assert pair.roles() == ("a", "b"), "not protected after the cold start"
        pair.kill("a")
        wait_for(lambda: pair.qmp["b"]("query-colo-status")["reason"] == "error",
                 60, "node b to notice the primary's death")
        ra(OCF_NOT_RUNNING, "monitor", "a")
        ra(OCF_SUCCESS, "promote", "b")
        ra(OCF_RUNNING_PROMOTED, "monitor", "b")
        assert pair.qmp["b"]("query-status")["status"] == "running"
        topo.standby_port("to-pri")
        ra(OCF_SUCCESS, "start", "a")
        ra(OCF_SUCCESS, "notify", "b", OCF_RESKEY_CRM_meta_notify_type="post",
           OCF_RESKEY_CRM_meta_notify_operation="start")
        assert pair.roles() == ("b", "a"), "not protected again after notify"
        ra(OCF_RUNNING_PROMOTED, "monitor", "b")
        ra(OCF_SUCCESS, "monitor", "a")
        for n in "ab":
            ra(OCF_SUCCESS, "stop", n)
            ra(OCF_NOT_RUNNING, "monitor", n)
    finally:
        if pair:
            for n in "ab":
                if pair.pid(n):
                    os.kill(pair.pid(n), 9)
            shutil.rmtree(pair.dir, ignore_errors=True)
        topo.teardown()
    return None


def main():
    t = Tap()
    env = Env()
    try:
        run(t, env)
        if os.environ.get("OCF_REAL_PAIR", "1") != "0":
            skip = {}

            def real():
                skip["why"] = real_pair(env)
            t.check("a real pair through the agent: start, cold-start promote "
                    "(protect), primary killed, promote = failover, start + "
                    "notify = reprotect, stop", real)
            if skip.get("why"):
                print("# real pair skipped: %s" % skip["why"])
    finally:
        env.cleanup()
    t.check("temporary files removed", lambda: not os.path.exists(env.dir) or
            (_ for _ in ()).throw(AssertionError(env.dir)))
    return t.finish()


def run(t, env):
    def meta():
        out = expect(env, OCF_SUCCESS, "meta-data")
        assert "<version>1.1</version>" in out
        for a in ("start", "stop", "promote", "demote", "notify", "monitor",
                  "meta-data", "validate-all"):
            assert '<action name="%s"' % a in out, a
        assert 'role="Promoted"' in out and 'role="Unpromoted"' in out
        if not shutil.which("xmllint"):
            print("# xmllint missing: only the text is checked")
            return
        for how in (["--dtdvalid", os.path.join(RA_SHARE, "ra-api-1.dtd")],
                    ["--relaxng", os.path.join(RA_SHARE, "metadata.rng")]):
            if not os.path.exists(how[1]):
                print("# %s missing (resource-agents)" % how[1])
                continue
            r = subprocess.run(["xmllint", "--noout"] + how + ["-"], input=out.encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               cwd=RA_SHARE)
            assert r.returncode == 0, r.stdout.decode()
    t.check("meta-data: OCF 1.1, promotable, valid per ra-api-1.dtd and "
            "metadata.rng", meta)

    def validate():
        expect(env, OCF_SUCCESS, "validate-all")
        out = expect(env, OCF_ERR_CONFIGURED, "validate-all", config="")
        assert "'config'" in out and "required" in out, out
        out = expect(env, OCF_ERR_CONFIGURED, "validate-all",
                     config=os.path.join(env.dir, "nonexistent.conf"))
        assert "not a readable file" in out, out
        out = expect(env, OCF_ERR_CONFIGURED, "validate-all", node="c")
        assert "node 'c' is not in" in out and "a b" in out, out
        one = os.path.join(env.dir, "one.conf")
        env.write_config(["a"], one)
        out = expect(env, OCF_ERR_CONFIGURED, "validate-all", config=one)
        assert "two nodes" in out, out
        out = expect(env, OCF_ERR_INSTALLED, "validate-all",
                     ctl=os.path.join(env.dir, "no-such-ctl"))
        assert "qemu-colo-ctl not found" in out, out
        # the same checks guard the other actions
        expect(env, OCF_ERR_CONFIGURED, "start", node="c")
        expect(env, OCF_ERR_CONFIGURED, "promote", config="")
        assert env.calls() == []
    t.check("validate-all: bad parameters give OCF_ERR_CONFIGURED (missing, "
            "unreadable config, unknown node, not two nodes), no qemu-colo-ctl "
            "OCF_ERR_INSTALLED; start/promote refuse them too", validate)

    def odd():
        expect(env, OCF_ERR_UNIMPLEMENTED, "migrate_to")
        # a probe on a node without the file: not running; a stop: done
        expect(env, OCF_NOT_RUNNING, "monitor", config="/nonexistent",
               OCF_RESKEY_CRM_meta_interval="0")
        expect(env, OCF_SUCCESS, "stop", config="/nonexistent")
    t.check("unknown action: 3; probe without the config: 7; stop without "
            "it: 0", odd)

    def lifecycle():
        env.set_state(a=None, b=None)
        env.calls()
        expect(env, OCF_NOT_RUNNING, "monitor")
        expect(env, OCF_SUCCESS, "stop")
        assert env.calls() == [], "stop of a stopped node called qemu-colo-ctl"
        for n in ("a", "b"):
            expect(env, OCF_SUCCESS, "start", node=n)
            expect(env, OCF_SUCCESS, "monitor", node=n)
        assert env.calls() == ["start %s --node a --role secondary" % env.config,
                               "start %s --node b --role secondary" % env.config]
        expect(env, OCF_SUCCESS, "start", node="a")      # already running
        assert env.calls() == []
        # cold start: promote a fresh QEMU while the peer waits
        expect(env, OCF_SUCCESS, "promote", node="a")
        assert env.calls() == ["stop %s --node a" % env.config,
                               "start %s --node a --role primary" % env.config,
                               "protect %s" % env.config], env.state()
        expect(env, OCF_RUNNING_PROMOTED, "monitor", node="a")
        expect(env, OCF_SUCCESS, "monitor", node="b")
        expect(env, OCF_SUCCESS, "promote", node="a")    # idempotent
        assert env.calls() == []
    t.check("start (fresh secondaries), cold-start promote (primary + protect), "
            "monitor 8 promoted / 0 unpromoted / 7 stopped", lifecycle)

    def failover():
        env.set_state(a=None, b=["secondary", "running"])   # a's host died
        env.calls()
        expect(env, OCF_NOT_RUNNING, "monitor", node="a")
        expect(env, OCF_SUCCESS, "promote", node="b")
        assert env.calls() == ["failover %s --node b" % env.config]
        expect(env, OCF_RUNNING_PROMOTED, "monitor", node="b")
        # a comes back fresh: it must not be promoted over b, which runs the guest
        expect(env, OCF_SUCCESS, "start", node="a")
        env.calls()
        out = expect(env, OCF_ERR_GENERIC, "promote", node="a")
        assert "holds the guest" in out, out
        assert env.calls() == []
        # post-start notification on the promoted node: protect again
        expect(env, OCF_SUCCESS, "notify", node="b",
               OCF_RESKEY_CRM_meta_notify_type="post",
               OCF_RESKEY_CRM_meta_notify_operation="start")
        assert env.calls() == ["reprotect %s" % env.config]
        assert env.state() == {"a": ["secondary", "running"],
                               "b": ["primary", "running"]}, env.state()
        # the unpromoted one ignores it
        expect(env, OCF_SUCCESS, "notify", node="a",
               OCF_RESKEY_CRM_meta_notify_type="post",
               OCF_RESKEY_CRM_meta_notify_operation="start")
        assert env.calls() == []
    t.check("failover: promote of a COLO secondary calls failover; a fresh "
            "QEMU is not promoted while the peer holds the guest; post-start "
            "notify reprotects", failover)

    def restart_before_promote():
        # Pacemaker's order after a primary's QEMU died (seen under a real
        # Pacemaker, test_pacemaker.py): the dead node's instance restarts
        # (post-start: nobody promoted yet), then the secondary is promoted
        env.set_state(a=["none", "inmigrate"], b=["secondary", "running"])
        env.calls()
        expect(env, OCF_SUCCESS, "notify", node="b",
               OCF_RESKEY_CRM_meta_notify_type="post",
               OCF_RESKEY_CRM_meta_notify_operation="start")
        assert env.calls() == []
        expect(env, OCF_SUCCESS, "promote", node="b")
        assert env.calls() == ["failover %s --node b" % env.config]
        expect(env, OCF_SUCCESS, "notify", node="b",
               OCF_RESKEY_CRM_meta_notify_type="post",
               OCF_RESKEY_CRM_meta_notify_operation="promote")
        assert env.calls() == ["reprotect %s" % env.config]
        assert env.state() == {"a": ["secondary", "running"],
                               "b": ["primary", "running"]}, env.state()
    t.check("failover with the dead node restarted first: post-promote notify "
            "reprotects", restart_before_promote)

    def reprotect_fails_once():
        # the notify is the only call: a failed re-protection is tried again
        env.set_state(a=["none", "inmigrate"], b=["none", "running"],
                      _fail_reprotect=1)
        env.calls()
        expect(env, OCF_SUCCESS, "notify", node="b",
               OCF_RESKEY_CRM_meta_notify_type="post",
               OCF_RESKEY_CRM_meta_notify_operation="start")
        calls = env.calls()
        assert calls == ["reprotect %s" % env.config] * 2, calls
        st = env.state()
        assert (st["a"], st["b"]) == (["secondary", "running"],
                                      ["primary", "running"]), st
        # one that keeps failing: three tries, then the notify is done
        env.set_state(a=["none", "inmigrate"], b=["none", "running"],
                      _fail_reprotect=5)
        out = expect(env, OCF_SUCCESS, "notify", node="b",
                     OCF_RESKEY_CRM_meta_notify_type="post",
                     OCF_RESKEY_CRM_meta_notify_operation="start")
        calls = env.calls()
        assert calls == ["reprotect %s" % env.config] * 3, (calls, out)
        assert "reprotect failed (try 3)" in out, out
        # no time left in the notify's timeout for another try: one try
        env.set_state(a=["none", "inmigrate"], b=["none", "running"],
                      _fail_reprotect=5)
        out = expect(env, OCF_SUCCESS, "notify", node="b",
                     OCF_RESKEY_CRM_meta_notify_type="post",
                     OCF_RESKEY_CRM_meta_notify_operation="start",
                     OCF_RESKEY_CRM_meta_timeout="12000")
        calls = env.calls()
        assert calls == ["reprotect %s" % env.config], (calls, out)
        assert "reprotect failed (try 1)" in out, out
    t.check("post-start notify: a re-protection that fails is tried again "
            "(3 tries) while the peer waits and the notify's timeout leaves "
            "time for it", reprotect_fails_once)

    def demote_stop():
        env.calls()
        expect(env, OCF_SUCCESS, "demote", node="b")
        assert env.calls() == ["stop %s --node b" % env.config,
                               "start %s --node b --role secondary" % env.config]
        expect(env, OCF_SUCCESS, "monitor", node="b")
        expect(env, OCF_SUCCESS, "demote", node="b")     # already unpromoted
        for n in ("a", "b"):
            expect(env, OCF_SUCCESS, "stop", node=n)
            expect(env, OCF_NOT_RUNNING, "monitor", node=n)
    t.check("demote (restart as secondary), stop, monitor 7 afterwards", demote_stop)

    def hung():
        # QMP does not answer (the stub says "not reachable"), but the QEMU
        # process holds the node's pid file, SIGSTOPped (a hung host)
        env.set_state(a=None, b=["secondary", "running"])
        p = fake_qemu(env)
        try:
            os.kill(p.pid, signal.SIGSTOP)
            os.waitpid(p.pid, os.WUNTRACED)
            out = expect(env, OCF_ERR_GENERIC, "monitor", node="a")
            assert "does not answer" in out and str(p.pid) in out, out
            expect(env, OCF_ERR_GENERIC, "monitor", node="a",
                   OCF_RESKEY_CRM_meta_interval="0")        # a probe too
            expect(env, OCF_ERR_GENERIC, "start", node="a")
            expect(env, OCF_ERR_GENERIC, "promote", node="a")
            env.calls()
            expect(env, OCF_SUCCESS, "stop", node="a")
            assert gone(p) == signal.SIGKILL
            expect(env, OCF_NOT_RUNNING, "monitor", node="a")
            assert not os.path.exists(os.path.join(env.dir, "a", "qemu.pid"))
        finally:
            p.kill()
            p.wait()
    t.check("a QEMU that runs but does not answer (SIGSTOPped, holds the pid "
            "file): monitor 1, not 7 (probe too); start/promote 1; stop "
            "SIGKILLs it and returns 0 once it is gone", hung)

    def missed_once():
        # a running primary whose QMP misses one status call: one miss is
        # not a hung QEMU (monitor 1 makes Pacemaker stop the primary)
        p = fake_qemu(env)
        try:
            for role, want in ((["primary", "running"], OCF_RUNNING_PROMOTED),
                               (["secondary", "running"], OCF_SUCCESS)):
                env.set_state(a=role, b=None, _miss=1)
                for interval in ("10000", "0"):
                    env.set_state(a=role, b=None, _miss=1)
                    out = expect(env, want, "monitor", node="a",
                                 OCF_RESKEY_CRM_meta_interval=interval)
                    assert env.state()["_miss"] == 0, out
        finally:
            p.kill()
            p.wait()
    t.check("a running QEMU whose QMP misses one status call: monitor asks "
            "again and reports it running (promoted 8, unpromoted 0), not 1",
            missed_once)

    def deaf():
        # runs, ignores SIGTERM: stop escalates to SIGKILL within its time
        env.set_state(a=None, b=None)
        p = fake_qemu(env, how="ignore-term")
        try:
            expect(env, OCF_ERR_GENERIC, "monitor", node="a")
            t0 = time.monotonic()
            out = expect(env, OCF_SUCCESS, "stop", node="a",
                         OCF_RESKEY_CRM_meta_timeout="8000")
            took = time.monotonic() - t0
            assert gone(p) == signal.SIGKILL, out
            assert took < 8, (took, out)
            print("# stop of a QEMU that ignores SIGTERM: %.1f s (stop "
                  "timeout 8 s)" % took)
        finally:
            p.kill()
            p.wait()
    t.check("a running QEMU that does not answer and ignores SIGTERM: stop "
            "kills it (SIGKILL after a grace bounded by the stop timeout)", deaf)

    def still_there():
        # qemu-colo-ctl stop says done, but the process is still there
        env.set_state(a=["none", "inmigrate"], b=None)
        p = fake_qemu(env)
        try:
            env.calls()
            expect(env, OCF_SUCCESS, "stop", node="a")
            assert env.calls() == ["stop %s --node a" % env.config]
            assert gone(p) == signal.SIGTERM
        finally:
            p.kill()
            p.wait()
    t.check("stop of an answering QEMU: qemu-colo-ctl stop, and success only "
            "once the process is gone", still_there)

    def real_qemu_hung():
        # the same with a real QEMU, daemonized as qemu-colo-ctl starts it
        qemu = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
        if not os.access(qemu, os.X_OK):
            print("# %s not built: skipped" % qemu)
            return
        env.set_state(a=None, b=None)
        pidfile = os.path.join(env.dir, "a", "qemu.pid")
        os.makedirs(os.path.dirname(pidfile), exist_ok=True)
        subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                        "-S", "-daemonize", "-pidfile", pidfile], check=True,
                       timeout=60)
        with open(pidfile) as f:
            pid = int(f.read())
        try:
            os.kill(pid, signal.SIGSTOP)
            out = expect(env, OCF_ERR_GENERIC, "monitor", node="a")
            assert str(pid) in out, out
            expect(env, OCF_SUCCESS, "stop", node="a")
            try:
                with open("/proc/%d/stat" % pid) as f:
                    state = f.read().rsplit(") ", 1)[1][0]
            except FileNotFoundError:
                state = "gone"
            assert state in ("Z", "gone"), "QEMU %d %s after stop" % (pid, state)
        finally:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    t.check("a real QEMU (daemonized, -pidfile) SIGSTOPped: monitor 1, stop "
            "SIGKILLs it", real_qemu_hung)

    def reused():
        # a stale pid file whose pid now belongs to another program
        env.set_state(a=None, b=None)
        other = subprocess.Popen(["sleep", "600"])
        try:
            os.makedirs(os.path.join(env.dir, "a"), exist_ok=True)
            with open(os.path.join(env.dir, "a", "qemu.pid"), "w") as f:
                f.write("%d\n" % other.pid)
            expect(env, OCF_NOT_RUNNING, "monitor", node="a")
            expect(env, OCF_SUCCESS, "stop", node="a")
            assert other.poll() is None, "stop killed an unrelated process"
        finally:
            other.kill()
            other.wait()
    t.check("a stale pid file naming another program: monitor 7, stop 0 "
            "and the program lives", reused)

    def tester():
        if not shutil.which("ocf-tester"):
            print("# ocf-tester (resource-agents) missing: skipped")
            return
        env.set_state(a=None, b=None)
        env.calls()
        e = dict(os.environ, COLO_STUB_STATE=env.state_file, HA_LOGFACILITY="none")
        r = subprocess.run(["ocf-tester", "-n", "vm1", "-o", "config=" + env.config,
                            "-o", "node=a", "-o", "ctl=" + env.stub, RA],
                           env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0 and "passed all tests" in out, out
        calls = env.calls()
        assert "start %s --node a --role primary" % env.config in calls, calls
        assert env.state() == {"a": None, "b": None}, env.state()
    t.check("ocf-tester (resource-agents) passes, on the stub qemu-colo-ctl",
            tester)

    def real_ctl():
        if not os.access(REAL_CTL, os.X_OK):
            print("# %s not built: skipped" % REAL_CTL)
            return
        for n in ("a", "b"):
            os.makedirs(os.path.join(env.dir, n), exist_ok=True)
        r = subprocess.run([REAL_CTL, "status", env.config], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        assert b"a (started as primary" in r.stdout and \
            b"QEMU not reachable" in r.stdout, r.stdout
        expect(env, OCF_NOT_RUNNING, "monitor", node="a", ctl=REAL_CTL)
        expect(env, OCF_SUCCESS, "stop", node="a", ctl=REAL_CTL)
        bad = os.path.join(env.dir, "bad.conf")
        env.write_config(["a", "b"], bad)
        with open(bad) as f:
            text = f.read().replace("initial-role = secondary", "initial-role = bogus")
        with open(bad, "w") as f:
            f.write(text)
        out = expect(env, OCF_ERR_CONFIGURED, "monitor", node="a", ctl=REAL_CTL,
                     config=bad)
        assert "rejects the configuration" in out, out
    t.check("with the real qemu-colo-ctl: a pair not running: monitor 7, "
            "stop 0; a config it rejects: monitor 6", real_ctl)


if __name__ == "__main__":
    sys.exit(main())
