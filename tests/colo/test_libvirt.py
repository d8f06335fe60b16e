#!/usr/bin/env python3
"""The libvirt example of docs/system/qemu-colo.rst, run as written.

The blocks marked ".. libvirt-example: NAME" in the document (qemu.conf
lines, the tap script, the pair configuration, the two domain XMLs) are
taken from the file, with only these replacements: /var/lib/colo/web and
/etc/colo by a temporary directory, the installed QEMU by this build's,
type='kvm' by type='qemu' (TCG: the suite must run without KVM), the
guest's kernel and initrd linked into the work directory.

Two "hosts", network namespaces colo-lva-PID and colo-lvb-PID joined by a
veth (192.168.77.1 and .2, the documented link addresses), each with a
bridge br0 and its own libvirtd and virtlogd.  Each daemon runs in a mount
namespace of its own where the host's libvirt directories are covered by
the test's (bind mounts), so the machine's libvirt configuration and state
are never touched; virsh connects through the test's socket.

Cases: virt-xml-validate of both domains; virsh define + start of both;
qemu-colo-ctl protect; checkpoints seen through virsh
qemu-monitor-command; kill -9 of web-a's QEMU, libvirt sees it crash;
qemu-colo-ctl failover --node b; the guest on node b (which never booted
it) answers on its console; re-protection with web-a started by virsh as
the new secondary (the documented rule: web-b.xml with a and b swapped),
checkpoints again.  Skipped, with the missing piece named, without root,
libvirtd/virtlogd/virsh, the build's tools or the test guest.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from colo_vm import REPO_ROOT, guest_files, wait_for  # noqa: E402
from tap import Tap  # noqa: E402

DOC = os.path.join(REPO_ROOT, "docs", "system", "qemu-colo.rst")
BUILD = os.environ.get("QEMU_COLO_BUILD", os.path.join(REPO_ROOT, "build"))
QEMU = os.path.join(BUILD, "qemu", "qemu-system-x86_64")
QEMU_IMG = os.path.join(BUILD, "qemu", "qemu-img")
CTL = os.path.join(BUILD, "qemu", "tools", "colo", "qemu-colo-ctl")
DOC_QEMU = "/usr/local/libexec/qemu-colo/qemu-system-x86_64"
LINK = {"a": "192.168.77.1", "b": "192.168.77.2"}
PROGRAMS = {"libvirtd": "libvirt-daemon-system", "virtlogd": "libvirt-daemon-system",
            "virsh": "libvirt-clients", "virt-xml-validate": "libvirt-clients"}
PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"

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
        return "not root (network namespaces, bind mounts, libvirtd as root)"
    for prog, pkg in sorted(PROGRAMS.items()):
        if not shutil.which(prog, path=PATH):
            return "no %s (Debian package %s; assembly/setup.sh installs it)" % (prog, pkg)
    for p in (QEMU, QEMU_IMG, CTL):
        if not os.access(p, os.X_OK):
            return "no %s (make)" % p
    for p in guest_files()["vmlinuz"], guest_files()["initrd"]:
        if not os.path.exists(p):
            return "no test guest %s (make guest)" % p
    if not os.path.isdir("/etc/libvirt"):
        return "no /etc/libvirt (libvirt-daemon-system)"
    return None


def doc_blocks():
    """{NAME: text} of the literal blocks after '.. libvirt-example: NAME'."""
    lines = open(DOC).read().splitlines()
    blocks = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^\.\. libvirt-example: (\S+)$", lines[i])
        i += 1
        if not m:
            continue
        while not lines[i].rstrip().endswith("::"):
            i += 1
        i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("  ")):
            body.append(lines[i][2:])
            i += 1
        blocks[m.group(1)] = "\n".join(body).strip("\n") + "\n"
    return blocks


def run(cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stdout))
    return r.stdout


class Host:
    """A network namespace with a bridge br0 and its own libvirtd."""

    def __init__(self, env, node):
        self.env = env
        self.node = node
        self.ns = "colo-lv%s-%d" % (node, os.getpid())
        self.dir = os.path.join(env.dir, "libvirt-" + node)
        self.sock = os.path.join(self.dir, "sock", "libvirt-sock")
        self.uri = "qemu:///system?socket=" + self.sock
        self.daemon = None
        self.log = None

    def virsh(self, *args, check=True, timeout=120):
        return run(["virsh", "-c", self.uri] + list(args), check=check, timeout=timeout)

    def qmp(self, domain, cmd):
        """A QMP command through libvirt's monitor (passthrough)."""
        import json
        out = self.virsh("qemu-monitor-command", domain,
                         json.dumps({"execute": cmd}))
        return json.loads(out)["return"]

    def start_libvirtd(self, qemu_conf_lines):
        # libvirt's run directory "run" is /run/libvirt inside a private
        # /run ("runroot"), so that no mount point is made on the host
        subs = ("etc", "runroot/libvirt", "run", "lib", "log", "cache", "sock")
        for s in subs:
            os.makedirs(os.path.join(self.dir, s), exist_ok=True)
        etc = os.path.join(self.dir, "etc")
        shutil.rmtree(etc)
        shutil.copytree("/etc/libvirt", etc, symlinks=True)
        with open(os.path.join(etc, "qemu.conf"), "a") as f:
            f.write("\n# test_libvirt.py: the documented settings\n" + qemu_conf_lines)
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write('unix_sock_dir = "%s"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
                    % os.path.dirname(self.sock))
        mounts = " && ".join(
            "mount --bind %s %s" % (os.path.join(self.dir, s), d)
            for s, d in (("etc", "/etc/libvirt"), ("runroot", "/run"),
                         ("run", "/run/libvirt"), ("lib", "/var/lib/libvirt"),
                         ("log", "/var/log/libvirt"), ("cache", "/var/cache/libvirt")))
        # "ip netns exec" gives the daemons a mount namespace of their own
        # (a slave of the host's): the bind mounts never show outside.
        # pid files in our directory (the default ones are in /run)
        script = ("mount --make-rprivate / && "
                  "%s && virtlogd -d -p %s && exec libvirtd -p %s"
                  % (mounts, os.path.join(self.dir, "virtlogd.pid"),
                     os.path.join(self.dir, "libvirtd.pid")))
        self.log = open(os.path.join(self.dir, "libvirtd.log"), "w")
        self.daemon = subprocess.Popen(["ip", "netns", "exec", self.ns, "sh", "-c", script],
                                       stdout=self.log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        def up():
            if self.daemon.poll() is not None:
                return True
            return os.path.exists(self.sock) and subprocess.run(
                ["virsh", "-c", self.uri, "list"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0
        log = os.path.join(self.dir, "libvirtd.log")
        try:
            wait_for(up, 60, "libvirtd of host %s" % self.node, interval=0.2)
        except TimeoutError:
            raise MachineLacks("libvirtd (in a network and mount namespace) does not "
                               "answer within 60 s: %s" % last_lines(log))
        if self.daemon.poll() is not None:
            raise MachineLacks("libvirtd (in a network and mount namespace) does not "
                               "start here: %s" % last_lines(log))

    def qemu_pid(self, domain):
        try:
            return int(open(os.path.join(self.dir, "run", "qemu", domain + ".pid")).read())
        except (OSError, ValueError):
            return None

    def teardown(self):
        if self.daemon and self.daemon.poll() is None:
            for dom in ("web-a", "web-b"):
                self.virsh("destroy", dom, check=False, timeout=60)
        # QEMUs libvirt may have left (a libvirtd that died first)
        for dom in ("web-a", "web-b"):
            pid = self.qemu_pid(dom)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                self.daemon.wait(30)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        try:
            pid = int(open(os.path.join(self.dir, "virtlogd.pid")).read())
            os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        if self.log:
            self.log.close()
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)


class Env:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="colo-libvirt-")
        self.hosts = {n: Host(self, n) for n in "ab"}
        self.blocks = doc_blocks()
        self.web = os.path.join(self.dir, "web")
        self.etc = os.path.join(self.dir, "etc-colo")
        self.config = os.path.join(self.etc, "web.conf")

    def subst(self, text):
        text = text.replace(DOC_QEMU, QEMU)
        text = text.replace("/var/lib/colo/web", self.web)
        text = text.replace("/etc/colo", self.etc)
        return text.replace("<domain type='kvm'", "<domain type='qemu'")

    def setup(self):
        for name in ("qemu.conf", "qemu-ifup", "web.conf", "web-a.xml", "web-b.xml"):
            assert name in self.blocks, "%s: no '.. libvirt-example: %s' block" % (DOC, name)
        for n in "ab":
            os.makedirs(os.path.join(self.web, n))
        os.makedirs(self.etc)
        g = guest_files()
        os.symlink(g["vmlinuz"], os.path.join(self.web, "vmlinuz"))
        os.symlink(g["initrd"], os.path.join(self.web, "initrd.gz"))
        ifup = os.path.join(self.etc, "qemu-ifup")
        with open(ifup, "w") as f:
            f.write(self.blocks["qemu-ifup"])
        os.chmod(ifup, 0o755)
        with open(self.config, "w") as f:
            f.write(self.subst(self.blocks["web.conf"]))
        key = os.path.join(self.etc, "web.key")
        with open(key, "wb") as f:
            f.write(os.urandom(64))
        os.chmod(key, 0o600)
        a, b = self.hosts["a"], self.hosts["b"]
        try:
            for h in (a, b):
                run(["ip", "netns", "add", h.ns])
                run(["ip", "-n", h.ns, "link", "set", "lo", "up"])
                run(["ip", "-n", h.ns, "link", "add", "br0", "type", "bridge"])
                run(["ip", "-n", h.ns, "link", "set", "br0", "up"])
            run(["ip", "-n", a.ns, "link", "add", "colo0", "type", "veth", "peer",
                 "colo0", "netns", b.ns])
            for h in (a, b):
                run(["ip", "-n", h.ns, "addr", "add", LINK[h.node] + "/24", "dev", "colo0"])
                run(["ip", "-n", h.ns, "link", "set", "colo0", "up"])
        except AssertionError as e:
            raise MachineLacks("cannot build the host namespaces: %s" % e)
        for h in (a, b):
            h.start_libvirtd(self.blocks["qemu.conf"])

    def xml(self, name):
        path = os.path.join(self.dir, name)
        if name == "web-a-secondary.xml":
            # the documented rule: web-b.xml with a and b swapped
            text = self.blocks["web-b.xml"]
            text = text.replace("web-b", "web-a").replace("/web/b/", "/web/a/")
            text = text.replace("host=" + LINK["a"], "host=" + LINK["b"])
        else:
            text = self.blocks[name]
        with open(path, "w") as f:
            f.write(self.subst(text))
        return path

    def serial(self, node):
        try:
            with open(os.path.join(self.web, node, "serial.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def ctl(self, *args, timeout=600):
        r = subprocess.run([CTL] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        print("\n".join("# | " + line for line in r.stdout.splitlines()))
        return r.returncode, r.stdout

    def teardown(self):
        for h in self.hosts.values():
            h.teardown()
        if os.environ.get("COLO_TEST_KEEP"):
            print("# kept %s" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def overlays(env, node):
    for f in ("active", "hidden"):
        run([QEMU_IMG, "create", "-q", "-f", "qcow2",
             os.path.join(env.web, node, f + ".qcow2"), "16M"])


def checkpoints(env, host, dom, want):
    """Wait for COLO on @dom (through libvirt's monitor) with >= @want
    checkpoints; returns query-colo-status."""
    def enough():
        st = host.qmp(dom, "query-colo-status")
        return st if st.get("checkpoints", 0) >= want else None
    return wait_for(enough, 120, "%d checkpoints on %s" % (want, dom), interval=0.5)


def console_answers(env, node):
    """The guest's shell on @node's serial socket runs a command."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(os.path.join(env.web, node, "serial.sock"))
    try:
        got = b""
        deadline = time.monotonic() + 60
        while b"colo-42" not in got:
            assert time.monotonic() < deadline, "no answer on the console: %r" % got[-300:]
            s.sendall(b"\necho colo-$((6*7))\n")
            try:
                while b"colo-42" not in got:
                    chunk = s.recv(4096)
                    if not chunk:
                        raise AssertionError("console closed")
                    got += chunk
            except socket.timeout:
                pass
    finally:
        s.close()


def main():
    why = missing()
    if why:
        print("ok - libvirt example of qemu-colo.rst # SKIP %s" % why)
        return 0
    env = Env()
    a, b = env.hosts["a"], env.hosts["b"]
    state = {}

    try:
        env.setup()
    except MachineLacks as e:
        env.teardown()
        print("ok - libvirt example of qemu-colo.rst # SKIP %s" % e)
        return 0
    except Exception as e:  # reported as the first case's failure
        setup_error = e
    else:
        setup_error = None

    def setup():
        if setup_error:
            raise setup_error

    def validate():
        for name in ("web-a.xml", "web-b.xml", "web-a-secondary.xml"):
            out = run(["virt-xml-validate", env.xml(name), "domain"])
            assert "validates" in out, out

    def define_start():
        size = "16M"
        env_conf = open(env.config).read()
        env_conf = env_conf.replace("disk-size = 1G", "disk-size = " + size)
        with open(env.config, "w") as f:
            f.write(env_conf)
        for n in "ab":
            run([QEMU_IMG, "create", "-q", "-f", "raw",
                 os.path.join(env.web, n, "disk.raw"), size])
        a.virsh("define", env.xml("web-a.xml"))
        a.virsh("start", "web-a")
        overlays(env, "b")
        b.virsh("define", env.xml("web-b.xml"))
        b.virsh("start", "web-b")
        wait_for(lambda: "COLO-GUEST: ready" in env.serial("a"), 240,
                 "the guest on web-a to boot")
        assert a.qmp("web-a", "query-status")["status"] == "running"
        assert b.qmp("web-b", "query-status")["status"] == "inmigrate"

    def protect():
        rc, out = env.ctl("protect", env.config)
        assert rc == 0 and "protected: a primary, b secondary" in out, out
        st = checkpoints(env, a, "web-a", 2)
        assert st["mode"] == "primary", st
        assert b.qmp("web-b", "query-colo-status")["mode"] == "secondary"
        assert a.qmp("web-a", "query-migrate")["status"] == "colo"

    def kill_primary():
        pid = a.qemu_pid("web-a")
        assert pid, "no pid file of web-a"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: "shut off" in a.virsh("domstate", "web-a"), 60,
                 "libvirt to see web-a's QEMU die")
        reason = a.virsh("domstate", "--reason", "web-a").strip()
        assert reason == "shut off (crashed)", reason
        state["killed"] = True

    def failover():
        assert state.get("killed"), "the primary was not killed"
        rc, out = env.ctl("failover", env.config, "--node", "b")
        assert rc == 0, out
        st = b.qmp("web-b", "query-colo-status")
        assert st["mode"] == "none", st
        assert b.qmp("web-b", "query-status")["status"] == "running"
        console_answers(env, "b")
        assert "COLO-GUEST: ready" not in env.serial("b"), \
            "node b booted the guest itself"
        state["failed_over"] = True

    def reprotect():
        assert state.get("failed_over"), "no failover"
        a.virsh("undefine", "web-a")
        overlays(env, "a")
        a.virsh("define", env.xml("web-a-secondary.xml"))
        a.virsh("start", "web-a")
        rc, out = env.ctl("reprotect", env.config)
        assert rc == 0 and "protected: b primary, a secondary" in out, out
        st = checkpoints(env, b, "web-b", 2)
        assert st["mode"] == "primary", st
        assert a.qmp("web-a", "query-colo-status")["mode"] == "secondary"

    try:
        t.check("two hosts (namespaces, link 192.168.77.1/.2, br0), a private libvirtd "
                "and virtlogd on each with the documented qemu.conf", setup)
        t.check("virt-xml-validate: web-a.xml, web-b.xml and web-a as secondary", validate)
        t.check("virsh define + start: web-a runs the guest, web-b waits (inmigrate)",
                define_start)
        t.check("qemu-colo-ctl protect: COLO with checkpoints, seen through virsh "
                "qemu-monitor-command", protect)
        t.check("kill -9 of web-a's QEMU: libvirt shows it shut off (crashed)", kill_primary)
        t.check("qemu-colo-ctl failover --node b: web-b runs the guest, its console "
                "answers", failover)
        t.check("web-a started by virsh as the new secondary, qemu-colo-ctl reprotect: "
                "checkpoints again", reprotect)
    finally:
        env.teardown()
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
