#!/usr/bin/env python3
"""ocf:qemu:colo under a real Pacemaker: Debian's corosync and pacemaker on
two nodes, the pair's QEMUs started and moved by Pacemaker alone.

Two "hosts" a and b: network namespaces colo-pma-PID and colo-pmb-PID
joined by the COLO link (192.168.77.1 and .2, a veth), which also carries
corosync's ring (knet, two_node).  Each host has a holder process (in its
network namespace, with its own UTS namespace: hostname a or b, and its
own mount namespace) into which every daemon and tool of that host is
entered (nsenter).  In the mount namespace the test's directories cover
/run, /dev/shm, /var/lib/pacemaker, /var/log/pacemaker, /var/lib/corosync
and /usr/lib/ocf/resource.d (providers: only qemu, with the agent of this
tree), so two Pacemakers can run on one machine and the machine's own
directories are never written.  Corosync's and Pacemaker's IPC (libqb)
is on abstract unix sockets, which belong to the network namespace.

The pair: the test guest, 16 MiB disks, QEMUs started by the agent
(qemu-colo-ctl start in the host's namespaces, tap0 in the host).  The
resource: a promotable clone of ocf:qemu:colo, promoted-max=1, notify,
no fencing (stonith-enabled=false: no fence device can be made here).

Cases: both nodes online; the clone starts, one node is promoted (cold
start: primary + protect) and the pair is protected; kill -9 of the
primary's QEMU: Pacemaker promotes the other node (failover with the
guest's state), restarts the dead instance as a secondary and the
post-start notify re-protects the guest; node standby of the promoted
node: the other takes over, the standby node has no instance; back
online: re-protected again.  crm_mon -1 of the healthy cluster and after
the failover go to build/test-logs/pacemaker-crm_mon.txt.  Skipped, with
the missing piece named, without root, corosync, pacemaker, nsenter or
unshare, the build's tools or the test guest.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from colo_vm import REPO_ROOT, guest_files, wait_for  # noqa: E402
from tap import Tap  # noqa: E402

BUILD = os.environ.get("QEMU_COLO_BUILD", os.path.join(REPO_ROOT, "build"))
QEMU = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
QEMU_IMG = os.path.join(BUILD, "qemu", "qemu-img")
CTL = os.path.join(BUILD, "qemu", "tools", "colo", "qemu-colo-ctl")
AGENT = os.path.join(REPO_ROOT, "tools", "colo", "ocf", "colo")
LOGDIR = os.path.join(BUILD, "test-logs")
CRM_MON_FILE = os.path.join(LOGDIR, "pacemaker-crm_mon.txt")
LINK = {"a": "192.168.77.1", "b": "192.168.77.2"}
NODE_ID = {"a": 1, "b": 2}
PROGRAMS = {"corosync": "corosync", "pacemakerd": "pacemaker",
            "crm_mon": "pacemaker-cli-utils", "cibadmin": "pacemaker-cli-utils",
            "crm_attribute": "pacemaker-cli-utils", "nsenter": "util-linux",
            "unshare": "util-linux"}
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
# Pacemaker's daemons live here (Debian); pacemakerd starts them
PCMK_DAEMON_DIR = "/usr/lib/pacemaker"
OCF_RD = "/usr/lib/ocf/resource.d"
# Monitor intervals: shorter than the documented 10 s/11 s to keep the
# suite short; the logic is the same.
MON_PROMOTED, MON_UNPROMOTED = "3s", "4s"

t = Tap()


class MachineLacks(Exception):
    """What this machine cannot do (the suite skips, naming it)."""


def last_lines(path, n=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-n:])
    except OSError:
        return "(no log)"


def missing():
    if os.geteuid() != 0:
        return "not root (namespaces, bind mounts, cluster daemons)"
    for prog, pkg in sorted(PROGRAMS.items()):
        if not shutil.which(prog, path=PATH):
            return "no %s (Debian package %s; assembly/setup.sh installs it)" % (prog, pkg)
    if not os.path.isdir(PCMK_DAEMON_DIR):
        return "no %s (Debian package pacemaker)" % PCMK_DAEMON_DIR
    if not os.path.isdir(OCF_RD):
        return "no %s (Debian package resource-agents)" % OCF_RD
    for user in ("hacluster",):
        try:
            import pwd
            pwd.getpwnam(user)
        except KeyError:
            return "no user %s (Debian package pacemaker)" % user
    for p in (QEMU, QEMU_IMG, CTL):
        if not os.access(p, os.X_OK):
            return "no %s (make)" % p
    for p in guest_files()["vmlinuz"], guest_files()["initrd"]:
        if not os.path.exists(p):
            return "no test guest %s (make guest)" % p
    return None


def run(cmd, check=True, timeout=120, env=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stdout))
    return r.stdout


COROSYNC_CONF = """totem {
    version: 2
    cluster_name: colo
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 1000
}
nodelist {
    node {
        name: a
        nodeid: 1
        ring0_addr: %(a)s
    }
    node {
        name: b
        nodeid: 2
        ring0_addr: %(b)s
    }
}
quorum {
    provider: corosync_votequorum
    two_node: 1
}
uidgid {
    uid: hacluster
    gid: haclient
}
logging {
    to_stderr: yes
    to_syslog: no
    to_logfile: no
    timestamp: on
}
system {
    state_dir: /var/lib/corosync
}
"""


class Host:
    """A network namespace, a holder process for its UTS and mount
    namespaces, and corosync + pacemakerd in them."""

    def __init__(self, env, node):
        self.env = env
        self.node = node
        self.ns = "colo-pm%s-%d" % (node, os.getpid())
        self.dir = os.path.join(env.dir, "host-" + node)
        self.holder = None
        self.daemons = {}
        self.logs = []

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def enter(self):
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "-u", "--"]

    def run(self, *cmd, check=True, timeout=120):
        return run(self.enter() + list(cmd), check=check, timeout=timeout)

    def setup(self):
        import pwd
        import grp
        uid = pwd.getpwnam("hacluster").pw_uid
        gid = grp.getgrnam("haclient").gr_gid
        dirs = {"run": "/run", "shm": "/dev/shm", "lib-pacemaker": "/var/lib/pacemaker",
                "log-pacemaker": "/var/log/pacemaker", "lib-corosync": "/var/lib/corosync",
                "etc-corosync": "/etc/corosync", "ocf": OCF_RD}
        for d in dirs:
            os.makedirs(self.path(d))
        for d in ("cib", "pengine", "blackbox", "cores"):
            os.makedirs(self.path("lib-pacemaker", d))
            os.chown(self.path("lib-pacemaker", d), uid, gid)
            os.chmod(self.path("lib-pacemaker", d), 0o750)
        os.chown(self.path("log-pacemaker"), uid, gid)
        os.chmod(self.path("log-pacemaker"), 0o770)
        os.chmod(self.path("shm"), 0o1777)
        os.makedirs(self.path("etc-corosync", "uidgid.d"))
        with open(self.path("etc-corosync", "corosync.conf"), "w") as f:
            f.write(COROSYNC_CONF % LINK)
        os.makedirs(self.path("ocf", "qemu"))
        shutil.copy(AGENT, self.path("ocf", "qemu", "colo"))
        os.chmod(self.path("ocf", "qemu", "colo"), 0o755)
        mounts = " && ".join("mount --bind %s %s" % (self.path(d), target)
                             for d, target in dirs.items())
        script = ("mount --make-rprivate / && %s && hostname %s && "
                  "echo ready && exec sleep infinity" % (mounts, self.node))
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--mount",
             "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "ready":
            raise MachineLacks("cannot give host %s its own UTS and mount namespace "
                               "(unshare --uts --mount, bind mounts): %s%s"
                               % (self.node, line.strip(), self.holder.stdout.read().strip()))

    def start_daemon(self, name, cmd, env=None):
        log = open(self.path(name + ".log"), "w")
        self.logs.append(log)
        full_env = dict(os.environ, **(env or {}))
        self.daemons[name] = subprocess.Popen(self.enter() + cmd, stdout=log,
                                              stderr=subprocess.STDOUT, env=full_env,
                                              start_new_session=True)

    def start_cluster(self):
        self.start_daemon("corosync", ["corosync", "-f"])
        try:
            wait_for(lambda: self.daemons["corosync"].poll() is not None or
                     subprocess.run(self.enter() + ["corosync-cfgtool", "-s"],
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL).returncode == 0, 60,
                     "corosync on %s" % self.node, interval=0.3)
        except TimeoutError:
            raise MachineLacks("corosync on host %s does not answer within 60 s: %s"
                               % (self.node, last_lines(self.path("corosync.log"))))
        if self.daemons["corosync"].poll() is not None:
            raise MachineLacks("corosync does not start in a network namespace here: %s"
                               % last_lines(self.path("corosync.log")))
        self.start_daemon("pacemakerd", ["pacemakerd"],
                          env={"PCMK_logfile": "/var/log/pacemaker/pacemaker.log",
                               "PCMK_node_start_state": "default"})

    def teardown(self):
        pm = self.daemons.get("pacemakerd")
        if pm and pm.poll() is None:
            pm.terminate()        # pacemakerd stops its children (and resources)
            try:
                pm.wait(120)
            except subprocess.TimeoutExpired:
                pass
        for name in ("pacemakerd", "corosync"):
            p = self.daemons.get(name)
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        # Pacemaker's children that outlived pacemakerd (a SIGKILLed one)
        for pid in self.pids_in_ns():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.holder and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()
        for log in self.logs:
            log.close()
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)

    def pids_in_ns(self):
        r = subprocess.run(["ip", "netns", "pids", self.ns], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        holder = self.holder.pid if self.holder else None
        return [int(p) for p in r.stdout.split() if p.isdigit() and int(p) != holder]


RESOURCE = """<clone id="vm-clone">
  <meta_attributes id="vm-clone-meta">
    <nvpair id="vm-clone-promotable" name="promotable" value="true"/>
    <nvpair id="vm-clone-promoted-max" name="promoted-max" value="1"/>
    <nvpair id="vm-clone-promoted-node-max" name="promoted-node-max" value="1"/>
    <nvpair id="vm-clone-clone-max" name="clone-max" value="2"/>
    <nvpair id="vm-clone-clone-node-max" name="clone-node-max" value="1"/>
    <nvpair id="vm-clone-notify" name="notify" value="true"/>
  </meta_attributes>
  <primitive id="vm" class="ocf" provider="qemu" type="colo">
    <instance_attributes id="vm-params">
      <nvpair id="vm-config" name="config" value="%(config)s"/>
      <nvpair id="vm-ctl" name="ctl" value="%(ctl)s"/>
    </instance_attributes>
    <operations>
      <op id="vm-start" name="start" interval="0s" timeout="120s"/>
      <op id="vm-stop" name="stop" interval="0s" timeout="60s"/>
      <op id="vm-promote" name="promote" interval="0s" timeout="120s"/>
      <op id="vm-demote" name="demote" interval="0s" timeout="120s"/>
      <op id="vm-notify" name="notify" interval="0s" timeout="300s"/>
      <op id="vm-monitor-promoted" name="monitor" interval="%(mon_p)s" role="Promoted" timeout="30s"/>
      <op id="vm-monitor-unpromoted" name="monitor" interval="%(mon_u)s" role="Unpromoted" timeout="30s"/>
    </operations>
  </primitive>
</clone>
"""


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="colo-pcmk-")
        self.hosts = {n: Host(self, n) for n in "ab"}
        self.pair_dir = os.path.join(self.dir, "pair")
        self.config = os.path.join(self.pair_dir, "pair.conf")

    def setup(self):
        a, b = self.hosts["a"], self.hosts["b"]
        try:
            for h in (a, b):
                run(["ip", "netns", "add", h.ns])
                run(["ip", "-n", h.ns, "link", "set", "lo", "up"])
            run(["ip", "-n", a.ns, "link", "add", "colo0", "type", "veth", "peer",
                 "colo0", "netns", b.ns])
            for h in (a, b):
                run(["ip", "-n", h.ns, "addr", "add", LINK[h.node] + "/24", "dev", "colo0"])
                run(["ip", "-n", h.ns, "link", "set", "colo0", "up"])
        except AssertionError as e:
            raise MachineLacks("cannot build the host namespaces: %s" % e)
        for h in (a, b):
            h.setup()
        os.makedirs(self.pair_dir)
        g = guest_files()
        key = os.path.join(self.pair_dir, "heartbeat.key")
        with open(key, "wb") as f:
            f.write(os.urandom(64))
        os.chmod(key, 0o600)
        with open(self.config, "w") as f:
            f.write("[pair]\nname = pcmk\nqemu = %s\n"
                    "guest-args = -M pc -m 256 -kernel %s -initrd %s "
                    "-append \"console=ttyS0 quiet\"\n"
                    "disk-size = 16M\nheartbeat-key-file = heartbeat.key\n\n"
                    "[node a]\ninitial-role = primary\nlink-addr = %s\n"
                    "disk = a/disk.raw\n\n"
                    "[node b]\ninitial-role = secondary\nlink-addr = %s\n"
                    "disk = b/disk.raw\n"
                    % (QEMU, g["vmlinuz"], g["initrd"], LINK["a"], LINK["b"]))
        for h in (a, b):
            h.start_cluster()

    def crm_mon_xml(self, node="a"):
        import xml.etree.ElementTree as ET
        out = self.hosts[node].run("crm_mon", "-1", "--output-as=xml", check=False)
        try:
            return ET.fromstring(out[out.index("<"):])
        except (ValueError, ET.ParseError):
            return None

    def crm_mon(self, node="a"):
        return self.hosts[node].run("crm_mon", "-1", check=False)

    def nodes_online(self):
        x = self.crm_mon_xml()
        if x is None:
            return False
        nodes = x.findall("./nodes/node")
        dc = x.find("./summary/current_dc")
        return (len(nodes) == 2 and all(n.get("online") == "true" for n in nodes)
                and dc is not None and dc.get("present") == "true")

    def roles(self):
        """{node: role} of the clone's instances, as crm_mon sees them."""
        x = self.crm_mon_xml()
        roles = {}
        if x is None:
            return roles
        for r in x.iter("resource"):
            if r.get("id") != "vm":
                continue
            for n in r.findall("node"):
                roles[n.get("name")] = r.get("role")
        return roles

    def pair(self):
        """{node: (mode, run-state)} from qemu-colo-ctl status."""
        r = subprocess.run([CTL, "status", self.config], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        st = {}
        for line in r.stdout.splitlines():
            m = re.match(r"^(\w+) \(started as .*\): mode=(\S+) run-state=(\S+)", line)
            if m:
                st[m.group(1)] = (m.group(2), m.group(3))
        return st

    def booted_here(self, node):
        """Whether the guest's boot shows on @node's console (rewritten at
        each start of the node's QEMU)."""
        try:
            with open(os.path.join(self.pair_dir, node, "serial.log"), errors="replace") as f:
                return "COLO-GUEST: ready" in f.read()
        except OSError:
            return False

    def qemu_pid(self, node):
        try:
            return int(open(os.path.join(self.pair_dir, node, "qemu.pid")).read())
        except (OSError, ValueError):
            return None

    def wait_protected(self, primary, timeout=300):
        other = "b" if primary == "a" else "a"

        def done():
            roles, pair = self.roles(), self.pair()
            if roles.get(primary) == "Promoted" and roles.get(other) == "Unpromoted" and \
                    pair.get(primary, ("",))[0] == "primary" and \
                    pair.get(other, ("",))[0] == "secondary":
                return True
            return None
        try:
            wait_for(done, timeout, "%s promoted and protected by %s" % (primary, other),
                     interval=1)
        except TimeoutError as e:
            raise AssertionError("%s\nroles %s, pair %s\n%s\n%s" % (
                e, self.roles(), self.pair(), self.crm_mon(), self.what_was_done()))

    def what_was_done(self):
        """For a failure: what the resource agent did and said on each node
        (its lines of the node's pacemaker.log) and what each node's QEMU
        said, in the message (last lines) and whole in
        build/test-logs/pacemaker-<node>-*.log."""
        out = []
        for node, h in sorted(self.hosts.items()):
            files = (("agent", h.path("log-pacemaker", "pacemaker.log"),
                      lambda line: " colo(" in line or "qemu-colo-ctl" in line),
                     ("qemu", os.path.join(self.pair_dir, node, "qemu.log"),
                      lambda line: True))
            for what, path, keep in files:
                try:
                    with open(path, errors="replace") as f:
                        lines = [line.rstrip() for line in f if keep(line)]
                except OSError as err:
                    out.append("%s %s: %s" % (node, what, err))
                    continue
                with open(os.path.join(LOGDIR, "pacemaker-%s-%s.log"
                                       % (node, what)), "w") as f:
                    f.write("\n".join(lines) + "\n")
                out.append("%s %s (last %d of %d lines):" % (
                    node, what, min(15, len(lines)), len(lines)))
                out.extend("  " + line[-300:] for line in lines[-15:])
        return "\n".join(out)

    def teardown(self):
        for h in self.hosts.values():
            for pid in h.pids_in_ns() if h.holder else []:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for h in self.hosts.values():
            h.teardown()
        if os.environ.get("COLO_TEST_KEEP"):
            print("# kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def main():
    why = missing()
    if why:
        print("ok - Pacemaker runs ocf:qemu:colo # SKIP %s" % why)
        return 0
    env = Env()
    state = {}

    def record(title, node="a"):
        capture.write("=== %s (crm_mon -1 on %s, %s)\n%s\n" % (
            title, node, time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            env.crm_mon(node)))
        capture.flush()

    try:
        env.setup()
    except MachineLacks as e:
        env.teardown()
        print("ok - Pacemaker runs ocf:qemu:colo # SKIP %s" % e)
        return 0
    except Exception as e:  # reported as the first case's failure
        setup_error = e
    else:
        setup_error = None
    os.makedirs(LOGDIR, exist_ok=True)
    capture = open(CRM_MON_FILE, "w")

    def cluster():
        if setup_error:
            raise setup_error
        try:
            wait_for(env.nodes_online, 120, "both nodes online with a DC", interval=1)
        except TimeoutError as e:
            dead = [n for n, h in env.hosts.items()
                    if h.daemons["pacemakerd"].poll() is not None]
            if dead:
                raise AssertionError("pacemakerd exited on %s: %s" % (
                    dead, last_lines(env.hosts[dead[0]].path("pacemakerd.log"))))
            raise AssertionError("%s\n%s" % (e, env.crm_mon()))
        a = env.hosts["a"]
        a.run("crm_attribute", "--type", "crm_config", "--name", "stonith-enabled",
              "--update", "false")
        a.run("cibadmin", "--create", "--scope", "resources", "--xml-text",
              RESOURCE % {"config": env.config, "ctl": CTL,
                          "mon_p": MON_PROMOTED, "mon_u": MON_UNPROMOTED})

    def start_promote():
        def one_promoted():
            roles = env.roles()
            p = [n for n, r in roles.items() if r == "Promoted"]
            return p[0] if len(p) == 1 and len(roles) == 2 else None
        try:
            primary = wait_for(one_promoted, 300, "one promoted instance", interval=1)
        except TimeoutError as e:
            raise AssertionError("%s\n%s" % (e, env.crm_mon()))
        env.wait_protected(primary)
        wait_for(lambda: env.booted_here(primary), 180,
                 "the guest to boot on %s (cold start)" % primary)
        state["primary"] = primary
        record("healthy: started, promoted, protected")

    def kill_primary():
        primary = state["primary"]
        other = "b" if primary == "a" else "a"
        pid = env.qemu_pid(primary)
        assert pid, "no QEMU pid of %s" % primary
        secondary_pid = env.qemu_pid(other)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: env.roles().get(other) == "Promoted", 180,
                 "Pacemaker to promote %s" % other, interval=0.5)
        promoted_s = time.monotonic() - t0
        # the COLO secondary's own QEMU took over: not restarted
        assert env.qemu_pid(other) == secondary_pid, "%s's QEMU was restarted" % other
        env.wait_protected(other)
        # Pacemaker did not first restart the dead node and try to promote
        # its fresh QEMU (a promotion score outliving the primary)
        mon = env.crm_mon()
        assert "vm promote on" not in mon, mon
        print("# kill -9 of %s's QEMU: %s promoted after %.1f s, re-protected after %.1f s"
              % (primary, other, promoted_s, time.monotonic() - t0))
        state["primary"] = other
        record("after kill -9 of %s's QEMU: %s promoted, %s re-protected (%.1f s)"
               % (primary, other, primary, time.monotonic() - t0))

    def standby():
        primary = state["primary"]
        other = "b" if primary == "a" else "a"
        h = env.hosts[other]
        secondary_pid = env.qemu_pid(other)
        h.run("crm_attribute", "--node", primary, "--name", "standby", "--update", "on")
        try:
            wait_for(lambda: env.roles().get(other) == "Promoted" and
                     primary not in env.roles() and
                     env.pair().get(other) == ("none", "running"), 180,
                     "%s in standby, %s serving alone" % (primary, other), interval=1)
        except TimeoutError as e:
            raise AssertionError("%s\nroles %s pair %s\n%s" % (e, env.roles(), env.pair(),
                                                              env.crm_mon()))
        assert env.qemu_pid(other) == secondary_pid, "%s's QEMU was restarted" % other
        record("node %s in standby: %s runs the guest alone" % (primary, other))
        h.run("crm_attribute", "--node", primary, "--name", "standby", "--update", "off")
        env.wait_protected(other)
        state["primary"] = other
        record("node %s online again: re-protected, %s primary" % (primary, other))

    try:
        t.check("corosync + pacemakerd on two hosts (namespaces with hostnames a and b): "
                "both online", cluster)
        t.check("promotable clone of ocf:qemu:colo: started, one node promoted, the "
                "pair protected", start_promote)
        t.check("kill -9 of the primary's QEMU: Pacemaker promotes the other node, "
                "the notify re-protects", kill_primary)
        t.check("standby of the promoted node: the other serves; online again: "
                "re-protected", standby)
    finally:
        capture.close()
        env.teardown()
    print("# crm_mon output in %s" % CRM_MON_FILE)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
