"""Network topology of the end-to-end COLO test, made of network namespaces.

    topo = Topology()          # names only; nothing created yet
    topo.setup()               # raises TopologyError (with the reason) if
                               # this host cannot do it (no root, no netns,
                               # no /dev/net/tun, no bridge or veth support)
    ...
    topo.teardown()            # removes everything setup() created; safe to
                               # call twice, also registered with atexit

Namespaces (suffixed with the test's pid, so runs never collide):

  colo-client-PID   the client: eth0 10.0.0.1/24, static neighbour entry
                    for the guest (it never needs ARP, so no broadcast has
                    to reach the secondary VM)
  colo-br-PID       the "switch": bridge br0 with ports to-client, to-pri,
                    to-sec.  to-sec floods nothing (no broadcast, multicast
                    or unknown unicast): while the pair is protected the
                    secondary VM gets the client's traffic only through
                    filter-mirror; after failover its announce-self teaches
                    the bridge the guest's MAC on to-sec.
  colo-pri-PID      the primary host: bridge hbr0 = uplink (to the switch)
  colo-sec-PID      + tap0 (the VM's netdev); colo0 is the COLO link between
                    the two host namespaces: 192.168.77.1/24 on the primary,
                    192.168.77.2/24 on the secondary.  Migration, the proxy
                    chardevs and NBD run over it.

IPv6 is disabled in every namespace (no router solicitations or MLD reports
flooding the switch).  Nothing is created in the root namespace: every link is
created inside a namespace of ours ("ip -n NS link add ... peer ... netns
OTHER"), so link names need not be unique on the host.

Processes run inside a namespace with exec_prefix(ns) ("ip netns exec NS");
"ip netns exec" execs the command, so the pid is the command's own.
"""

import atexit
import ctypes
import os
import shutil
import subprocess

GUEST_MAC = "52:54:00:12:34:56"
GUEST_IP = "10.0.0.2"
CLIENT_IP = "10.0.0.1"
PREFIX_LEN = 24
PRI_LINK_IP = "192.168.77.1"
SEC_LINK_IP = "192.168.77.2"

CLONE_NEWNET = 0x40000000


class TopologyError(RuntimeError):
    """The host cannot build the topology (the message says why)."""


def _run(*cmd):
    r = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise TopologyError("%s: exit %d: %s" % (" ".join(cmd), r.returncode,
                                                 r.stdout.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


def missing_requirements():
    """Why this host cannot build the topology, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tap devices)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun (tap devices)"
    for tool in ("ip", "bridge"):
        if not shutil.which(tool):
            return "no '%s' command (iproute2) in PATH" % tool
    return None


class Topology:
    def __init__(self, suffix=None):
        suffix = str(suffix if suffix is not None else os.getpid())
        self.client = "colo-client-" + suffix
        self.bridge = "colo-br-" + suffix
        self.pri = "colo-pri-" + suffix
        self.sec = "colo-sec-" + suffix
        self.namespaces = [self.client, self.bridge, self.pri, self.sec]
        self._created = []
        self._down = False
        atexit.register(self.teardown)

    # ---- helpers ----------------------------------------------------------

    def ip(self, ns, *args):
        return _run("ip", "-n", ns, *args)

    @staticmethod
    def exec_prefix(ns):
        return ["ip", "netns", "exec", ns]

    def run_in(self, ns, *cmd):
        return _run(*(self.exec_prefix(ns) + list(cmd)))

    def socket_in(self, ns, family, kind):
        """A socket created inside namespace ns (usable from any thread).

        setns() changes only the calling thread's network namespace, so this
        runs in a short-lived thread of its own."""
        import socket
        import threading
        result = {}

        def body():
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fd = os.open("/run/netns/" + ns, os.O_RDONLY)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, "setns(%s): %s" % (ns, os.strerror(err)))
                finally:
                    os.close(fd)
                result["sock"] = socket.socket(family, kind)
            except Exception as e:      # handed to the caller
                result["error"] = e

        th = threading.Thread(target=body, name="setns-" + ns)
        th.start()
        th.join()
        if "error" in result:
            raise result["error"]
        return result["sock"]

    # ---- setup / teardown -------------------------------------------------

    def setup(self):
        why = missing_requirements()
        if why:
            raise TopologyError(why)
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def _setup(self):
        for ns in self.namespaces:
            if os.path.exists("/run/netns/" + ns):
                raise TopologyError("namespace %s exists already" % ns)
            _run("ip", "netns", "add", ns)
            self._created.append(ns)
            # /proc/sys/net shows the namespace of the process reading it
            self.run_in(ns, "sh", "-c", "for c in all default; do "
                        "p=/proc/sys/net/ipv6/conf/$c/disable_ipv6; "
                        "[ ! -e $p ] || echo 1 >$p || exit 1; done")
            self.ip(ns, "link", "set", "lo", "up")

        br = self.bridge
        self.ip(br, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        for port, ns, peer in (("to-client", self.client, "eth0"),
                               ("to-pri", self.pri, "uplink"),
                               ("to-sec", self.sec, "uplink")):
            self.ip(br, "link", "add", port, "type", "veth", "peer", "name", peer,
                    "netns", ns)
            self.ip(br, "link", "set", port, "master", "br0", "up")
        self.ip(br, "link", "set", "to-sec", "type", "bridge_slave",
                "flood", "off", "mcast_flood", "off", "bcast_flood", "off")
        self.ip(br, "link", "set", "br0", "up")

        c = self.client
        self.ip(c, "addr", "add", "%s/%d" % (CLIENT_IP, PREFIX_LEN), "dev", "eth0")
        self.ip(c, "link", "set", "eth0", "up")
        self.ip(c, "neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC,
                "dev", "eth0", "nud", "permanent")

        for ns in (self.pri, self.sec):
            self.ip(ns, "link", "add", "hbr0", "type", "bridge", "stp_state", "0")
            self.ip(ns, "tuntap", "add", "dev", "tap0", "mode", "tap")
            for port in ("uplink", "tap0"):
                self.ip(ns, "link", "set", port, "master", "hbr0", "up")
            self.ip(ns, "link", "set", "hbr0", "up")
        self.ip(self.pri, "link", "add", "colo0", "type", "veth", "peer", "name",
                "colo0", "netns", self.sec)
        for ns, addr in ((self.pri, PRI_LINK_IP), (self.sec, SEC_LINK_IP)):
            self.ip(ns, "addr", "add", "%s/24" % addr, "dev", "colo0")
            self.ip(ns, "link", "set", "colo0", "up")

    def standby_port(self, port):
        """Make port (to-pri or to-sec) the switch port that floods nothing
        (the secondary's), and let the other host's port flood again."""
        for p in ("to-pri", "to-sec"):
            flag = "off" if p == port else "on"
            self.ip(self.bridge, "link", "set", p, "type", "bridge_slave",
                    "flood", flag, "mcast_flood", flag, "bcast_flood", flag)

    def port_of_guest(self):
        """The switch port where the bridge has learnt the guest's MAC, or
        None."""
        out = self.ip(self.bridge, "-o", "link", "show", "master", "br0")
        ports = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
        fdb = self.run_in(self.bridge, "bridge", "fdb", "show", "br", "br0")
        for line in fdb.splitlines():
            f = line.split()
            if f and f[0].lower() == GUEST_MAC and "dev" in f:
                dev = f[f.index("dev") + 1]
                if dev in ports:
                    return dev
        return None

    def pids(self):
        """Processes still running in our namespaces."""
        out = []
        for ns in self._created:
            r = subprocess.run(["ip", "netns", "pids", ns], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
            out += ["%s:%s" % (ns, p) for p in r.stdout.decode().split()]
        return out

    def leftovers(self):
        """Our namespaces that still exist (for the no-leak check)."""
        return [ns for ns in self.namespaces if os.path.exists("/run/netns/" + ns)]

    def teardown(self):
        """Delete our namespaces: that removes every link, bridge and tap in
        them (processes in them must have been stopped by their owners)."""
        if self._down:
            return
        self._down = True
        errors = []
        for ns in reversed(self._created):
            r = subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
            if r.returncode != 0:
                errors.append("%s: %s" % (ns, r.stdout.decode(errors="replace").strip()))
        self._created = []
        if errors:
            raise TopologyError("teardown: " + "; ".join(errors))
