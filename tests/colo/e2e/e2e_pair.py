"""The pair, disks and failover steps of the end-to-end tests (moved out of
test_e2e.py so that several tests share them).

    pair = Pair(topo)                   # or Pair(topo, append="colo.vary=1",
                                        #         pri_env=..., sec_env=...)
    pair.start()                        # the documented start, until protected
    ...
    secondary_failover(pair.sec)        # the documented failover sequences
    primary_alone(pair.pri)
    read_records(image, first, last)    # acknowledged records on a disk image
    end_run(topo, client, pair.stop)    # the end of every run

Everything follows docs/system/qemu-colo.rst, "End-to-end procedure".
Environment: E2E_DISKS=0 runs without disk replication.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import REPO_ROOT, Vm, guest_files  # noqa: E402
from topology import GUEST_IP, GUEST_MAC, PRI_LINK_IP, SEC_LINK_IP  # noqa: E402
from client import Client  # noqa: E402

PORT = 7777
CHECKPOINT_DELAY_MS = 2000
DISKS = os.environ.get("E2E_DISKS", "1") != "0"
DISK_SIZE = 16 << 20
RECORD = 512
# A tap netdev hands virtio-net's frames over with a virtio-net header in
# front: every proxy object must know (without it colo-compare sees garbage
# "non-IP" frames, a mismatch and a checkpoint per packet, and the rewriter
# tracks nothing).
VNET = "vnet_hdr_support=on"
QEMU_IMG = os.environ.get("QEMU_COLO_IMG") or os.path.join(REPO_ROOT, "build", "qemu",
                                                            "qemu-img")


class Guest:
    """How the pair's guest is built (the same on both sides): machine type,
    vCPUs, the bus of the replicated disk.  An AHCI disk needs the generic
    kernel flavour (the cloud kernel has no AHCI driver) and is /dev/sda in
    the guest."""

    def __init__(self, machine="pc", smp=1, disk="virtio", ipv6=False):
        assert disk in ("virtio", "ahci") and (disk != "ahci" or machine == "q35")
        self.machine, self.smp, self.disk = machine, smp, disk
        self.ipv6 = ipv6        # off by default: the tests' traffic is IPv4

    def files(self):
        return guest_files("generic" if self.disk == "ahci" else "cloud")

    def records_dev(self):
        return "/dev/sda" if self.disk == "ahci" else "/dev/vda"

    def disk_device(self, drive):
        if self.disk == "ahci":
            return ["-device", "ide-hd,drive=%s,bus=ide.0" % drive]  # q35's AHCI
        return ["-device", "virtio-blk-pci,drive=%s" % drive]


# The guest variants the e2e suites run (test_e2e.py --variant NAME).
VARIANTS = {"pc": Guest(),
            "q35-ahci": Guest(machine="q35", disk="ahci"),
            "q35-virtio": Guest(machine="q35"),
            "smp2": Guest(smp=2),
            "ipv6": Guest(ipv6=True)}


def guest_args(append="", guest=VARIANTS["pc"]):
    """The guest of the procedure; append: more kernel options (e.g.
    "colo.vary=1", see tests/colo/guest/build-guest.sh)."""
    g = guest.files()
    return ["-M", guest.machine, "-smp", str(guest.smp), "-m", "256",
            "-kernel", g["vmlinuz"], "-initrd", g["initrd"],
            "-append", "console=ttyS0 quiet%s colo.ip=%s/24 colo.serve=1%s%s"
            % ("" if guest.ipv6 else " ipv6.disable=1", GUEST_IP,
               " colo.records=%s" % guest.records_dev() if DISKS else "",
               " " + append if append else ""),
            "-netdev", "tap,id=hn0,ifname=tap0,script=no,downscript=no,vhost=off",
            "-device", "virtio-net-pci,netdev=hn0,mac=%s,romfile=" % GUEST_MAC]


def make_disks(d):
    """The images of the documented disk setup: the two copies of the disk
    (identical: all zeros) and the secondary's empty active/hidden overlays."""
    for name in ("primary.raw", "secondary.raw"):
        with open(os.path.join(d, name), "wb") as f:
            f.truncate(DISK_SIZE)
    for name in ("active.qcow2", "hidden.qcow2"):
        subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", os.path.join(d, name),
                        str(DISK_SIZE)], check=True)


def primary_disk_args(d, guest=VARIANTS["pc"]):
    return ["-drive", "if=none,id=colo-disk0,driver=quorum,read-pattern=fifo,"
                      "vote-threshold=1,children.0.file.filename=%s,"
                      "children.0.driver=raw" % os.path.join(d, "primary.raw")
            ] + guest.disk_device("colo-disk0")


def secondary_disk_args(d, guest=VARIANTS["pc"]):
    p = lambda name: os.path.join(d, name)
    return ["-drive", "if=none,id=colo-disk0,file.filename=%s,driver=raw,"
                      "node-name=sec0" % p("secondary.raw"),
            "-drive", "if=none,id=childs0,driver=replication,mode=secondary,"
                      "top-id=top-disk0,file.driver=qcow2,file.file.filename=%s,"
                      "file.backing.driver=qcow2,file.backing.file.filename=%s,"
                      "file.backing.backing=colo-disk0,"
                      "file.cache.no-flush=on,file.backing.cache.no-flush=on"
                      % (p("active.qcow2"), p("hidden.qcow2")),
            "-drive", "if=none,id=top-disk0,driver=quorum,read-pattern=fifo,"
                      "vote-threshold=1,children.0=childs0"
            ] + guest.disk_device("top-disk0")


def read_records(path, first, last):
    """Check that sectors first..last of the image hold "<n> req-<k>"
    records; return the number checked."""
    with open(path, "rb") as f:
        data = f.read()
    for n in range(first, last + 1):
        rec = data[n * RECORD:(n + 1) * RECORD]
        text = rec.decode("latin-1").rstrip(" \n\0")
        if not text.startswith("%d " % n):
            raise AssertionError("%s: acknowledged record %d missing: sector holds %r"
                                 % (os.path.basename(path), n, text[:40]))
    return last - first + 1


def primary_args(path):
    """The primary's proxy, as in the documentation (addresses adapted; the
    proxy's own hops are unix sockets at path(NAME), a directory of the
    primary's)."""
    def server(cid, host, port):
        return ["-chardev", "socket,id=%s,host=%s,port=%d,server=on,wait=off,"
                "nodelay=on" % (cid, host, port)]

    def client(cid, host, port):
        return ["-chardev", "socket,id=%s,host=%s,port=%d,reconnect-ms=200,nodelay=on"
                % (cid, host, port)]

    def local(cid, listener, server):
        return ["-chardev", "socket,id=%s,path=%s,%s" % (
            cid, path(listener + ".sock"),
            "server=on,wait=off" if server else "reconnect-ms=200")]
    return (server("mirror0", PRI_LINK_IP, 9003) +
            server("compare1", PRI_LINK_IP, 9004) +
            local("compare0", "compare0", True) +
            local("compare0-0", "compare0", False) +
            local("compare_out", "compare_out", True) +
            local("compare_out0", "compare_out", False) +
            ["-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0," + VNET,
             "-object", "filter-redirector,netdev=hn0,id=redire0,queue=rx,"
                        "indev=compare_out," + VNET,
             "-object", "filter-redirector,netdev=hn0,id=redire1,queue=rx,"
                        "outdev=compare0," + VNET,
             "-object", "iothread,id=iothread1",
             "-object", "colo-compare,id=comp0,primary_in=compare0-0,"
                        "secondary_in=compare1,outdev=compare_out0,"
                        "iothread=iothread1," + VNET])


def secondary_args(primary_ip=PRI_LINK_IP):
    red = "socket,id=%s,host=%s,port=%d,reconnect-ms=200,nodelay=on"
    return (["-chardev", red % ("red0", primary_ip, 9003),
             "-chardev", red % ("red1", primary_ip, 9004),
             "-object", "filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0," + VNET,
             "-object", "filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1," + VNET,
             "-object", "filter-rewriter,id=rew0,netdev=hn0,queue=all," + VNET,
             "-incoming", "defer"])


CAPS = [{"capability": "x-colo", "state": True},
        {"capability": "events", "state": True}]


def chardevs_connected(vm, ids):
    info = {c["label"]: c["filename"] for c in vm.cmd("query-chardev")}
    return all(i in info and not info[i].startswith("disconnected") for i in ids)


class Pair:
    """One protected pair over a topology; stop() ends whatever is left.

    append: more guest kernel options; pri_env, sec_env: the environment of
    each QEMU (None: ours; e.g. FaultPoints.env()); qemu_args: more QEMU
    options for both (e.g. -global migration.x-colo-peer-timeout=MS); guest:
    the machine (a Guest, e.g. VARIANTS["q35-ahci"])."""

    def __init__(self, topo, append="", pri_env=None, sec_env=None, qemu_args=(),
                 guest=VARIANTS["pc"]):
        self.topo = topo
        self.guest = guest
        self.new = None                 # the fresh secondary of a re-protection
        self.new_dir = None
        self.disk_dir = None
        pdisk = sdisk = []
        if DISKS:
            self.disk_dir = tempfile.mkdtemp(prefix="colo-e2e-disks-")
            make_disks(self.disk_dir)
            pdisk = primary_disk_args(self.disk_dir, guest)
            sdisk = secondary_disk_args(self.disk_dir, guest)
        self.pri = Vm(guest_args(append, guest) + pdisk,
                      name="primary", prefix=topo.exec_prefix(topo.pri), env=pri_env)
        self.pri.add_args(*primary_args(self.pri.path) + list(qemu_args))
        self.sec = Vm(guest_args(append, guest) + sdisk + secondary_args() + list(qemu_args),
                      name="secondary", prefix=topo.exec_prefix(topo.sec), env=sec_env)

    def disk(self, name):
        return os.path.join(self.disk_dir, name)

    def start(self):
        pri, sec = self.pri, self.sec
        pri.start()
        sec.start()
        # The service runs first, then it is protected.  (Starting COLO while
        # the guest's virtio-net driver initialises leaves, about one time in
        # five, a secondary whose NIC never sends: see the report of issue 6.)
        pri.serial_wait("COLO-GUEST: ready", 240)
        sec.cmd("migrate-set-capabilities", capabilities=CAPS)
        if DISKS:
            sec.cmd("nbd-server-start", addr={"type": "inet", "data": {
                "host": SEC_LINK_IP, "port": "9999"}})
            sec.cmd("nbd-server-add", device="colo-disk0", writable=True)
        sec.cmd("migrate-incoming", uri="tcp:%s:9998" % SEC_LINK_IP)
        pri.cmd("migrate-set-capabilities", capabilities=CAPS)
        if DISKS:
            pri.cmd("blockdev-add", driver="replication", mode="primary", **{
                "node-name": "rep0",
                "file": {"driver": "nbd", "export": "colo-disk0",
                         "server": {"type": "inet", "host": SEC_LINK_IP,
                                    "port": "9999"}}})
            pri.cmd("x-blockdev-change", parent="colo-disk0", node="rep0")
        pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": CHECKPOINT_DELAY_MS,
                                             "max-bandwidth": 8 << 30,
                                             "downtime-limit": 2000})
        pri.cmd("migrate", uri="tcp:%s:9998" % SEC_LINK_IP)
        pri.wait_for(lambda: pri.cmd("query-migrate").get("status") == "colo", 240,
                     "migration status 'colo'")
        sec.wait_for(lambda: sec.cmd("query-colo-status")["mode"] == "secondary", 60,
                     "COLO mode 'secondary'")
        sec.wait_for(lambda: chardevs_connected(sec, ("red0", "red1")), 30,
                     "red0 and red1 connected to the primary")

    def stop(self):
        for vm in (self.pri, self.sec, self.new):
            if vm:
                vm.kill(signal.SIGCONT)     # a hung (SIGSTOPped) QEMU can quit
                vm.shutdown(timeout=5)
        for d in (self.disk_dir, self.new_dir):
            if d:
                shutil.rmtree(d, ignore_errors=True)


def open_client(topo):
    """A client connection from the client namespace to the guest's
    service, running and answering (its socket: client.sock)."""
    sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
    client = Client(sock)
    client.connect((GUEST_IP, PORT), 60)
    client.start()
    client.wait_answers(5, 120)
    return client


def http_get(topo, path, timeout=60):
    """GET @path from the guest's HTTP server (colo.http=1) on a fresh
    connection from the client namespace, to the end of the answer; returns
    (bytes received, its first 64 bytes).  Raises OSError."""
    sock = topo.socket_in(topo.client, socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((GUEST_IP, 80))
        sock.sendall(b"GET %s HTTP/1.0\r\nHost: guest\r\n\r\n" % path.encode())
        got, head = 0, b""
        while True:
            data = sock.recv(1 << 16)
            if not data:
                return got, head
            head += data[:64 - len(head)]
            got += len(data)
    finally:
        sock.close()


def checkpoints(vm):
    return vm.cmd("query-colo-status").get("checkpoints", 0)


def quiet_checkpoint(pri):
    """No periodic checkpoint from now on; the change itself checkpoints
    once (waited for)."""
    c0 = checkpoints(pri)
    pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 3600000})
    pri.wait_for(lambda: checkpoints(pri) > c0, 60,
                 "the checkpoint that follows the new delay")


def secondary_failover(sec):
    """The documented failover sequence on the secondary."""
    if DISKS:
        sec.cmd("nbd-server-stop")
    sec.cmd("x-colo-lost-heartbeat")
    sec.wait_event("COLO_EXIT", 60)
    for fid in ("f2", "f1"):
        sec.cmd("object-del", id=fid)
    for cid in ("red1", "red0"):
        sec.cmd("chardev-remove", id=cid)
    sec.cmd("announce-self", initial=50, max=550, rounds=5, step=50)


def primary_alone(pri):
    """The documented clean-up on a primary that lost its secondary."""
    if DISKS:
        pri.cmd("x-blockdev-change", parent="colo-disk0", child="children.1")
        pri.cmd("blockdev-del", **{"node-name": "rep0"})
    for oid in ("m0", "redire1", "redire0", "comp0", "iothread1"):
        pri.cmd("object-del", id=oid)
    for cid in ("mirror0", "compare1", "compare0", "compare0-0", "compare_out",
                "compare_out0"):
        pri.cmd("chardev-remove", id=cid)


def guest_tcp_sockets(vm, q):
    """/proc/net/tcp of a running guest, typed on its console (the guest's
    shell listens there): its own view of the client's connection."""
    if not vm.is_running() or q(vm, "query-status")["status"] != "running":
        return "(the guest does not run)"
    vm.serial_mark()
    # the quotes keep the echo of the typed line from matching
    vm.serial_send('echo DIAG-TCP-""BEGIN; cat /proc/net/tcp; '
                   'grep ^Tcp: /proc/net/snmp; echo DIAG-TCP-""END')
    seen = vm.serial_wait("DIAG-TCP-END", 10)
    return seen[seen.find("DIAG-TCP-BEGIN"):].strip()


def diagnose(topo, pair, client, qmp_timeout=60):
    """What the network and the VMs saw, for a failure message.  A VM whose
    monitor does not answer within qmp_timeout is asked nothing more."""
    out = []
    hung = set()

    def add(what, fn):
        try:
            out.append("%s:\n%s" % (what, fn()))
        except Exception as e:      # the VM or namespace may be gone
            out.append("%s: %s" % (what, e))

    def q(vm, name, **args):
        if vm.name in hung:
            raise RuntimeError("not asked: its monitor did not answer before")
        try:
            return vm.cmd(name, _timeout=qmp_timeout, **args)
        except TimeoutError:
            hung.add(vm.name)
            raise
    if client:
        add("client", lambda: "%d answers, error %s, last %s" % (
            client.answers(), client.error, client.records[-1:]))
    # the short facts first: a failure summary may show only its start
    if pair:
        for vm in (pair.sec, pair.pri):
            add("%s run state, colo status" % vm.name, lambda: "%s; %s" % (
                q(vm, "query-status")["status"], " ".join(
                    "%s=%s" % kv for kv in q(vm, "query-colo-status").items()
                    if kv[0] in ("mode", "last-mode", "reason",
                                 "checkpoints"))))
        add("secondary rewriter", lambda: " ".join(
            "%s=%s" % (n, q(pair.sec, "qom-get", path="/objects/rew0",
                            property="stat-" + n))
            for n in ("packets", "rewritten", "offsets-learned", "connections",
                      "untracked-after-failover")))
        add("primary compare", lambda: " ".join(
            "%s=%s" % (n, q(pair.pri, "qom-get", path="/objects/comp0",
                            property="stat-" + n))
            for n in ("primary-packets", "secondary-packets", "packets-released",
                      "mismatches-tcp", "timeouts", "checkpoint-requests",
                      "queue-depth-primary", "queue-depth-secondary")))
    add("client sockets", lambda: topo.run_in(topo.client, "ss", "-tni"))
    # e.g. TcpExtPAWSEstab: the client dropped segments for their time stamp
    add("client TCP counters (non-zero)", lambda: " ".join(
        "%s=%s" % tuple(line.split()[:2]) for line in topo.run_in(
            topo.client, "nstat", "-az").splitlines()
        if line.startswith(("Tcp", "TcpExt")) and line.split()[1] != "0"))
    if pair:
        for vm in (pair.sec, pair.pri):
            add("%s guest's TCP sockets" % vm.name,
                lambda: guest_tcp_sockets(vm, q))
    add("switch fdb", lambda: topo.run_in(topo.bridge, "bridge", "fdb", "show",
                                          "br", "br0"))
    add("switch ports", lambda: topo.ip(topo.bridge, "-s", "link", "show",
                                        "master", "br0"))
    if pair:
        for vm in (pair.sec, pair.pri):
            add("%s qemu log" % vm.name, lambda: vm.qemu_log()[-2000:])
            add("%s console" % vm.name, lambda: vm.serial_output()[-1500:])
    return "\n".join(out)


def add_primary_proxy(vm, link_ip):
    """The primary's proxy of primary_args(), added at run time (QMP)."""
    def chardev(cid, addr, server):
        data = {"addr": addr, "server": server}
        if addr["type"] == "inet":
            data["nodelay"] = True
        if server:
            data["wait"] = False
        else:
            data["reconnect-ms"] = 200
        vm.cmd("chardev-add", id=cid, backend={"type": "socket", "data": data})

    def inet(port):
        return {"type": "inet", "data": {"host": link_ip, "port": str(port)}}

    def local(listener):
        return {"type": "unix", "data": {"path": vm.path(listener + ".sock")}}
    chardev("mirror0", inet(9003), True)
    chardev("compare1", inet(9004), True)
    chardev("compare0", local("compare0"), True)
    chardev("compare0-0", local("compare0"), False)
    chardev("compare_out", local("compare_out"), True)
    chardev("compare_out0", local("compare_out"), False)
    for qom_type, oid, props in (
            ("filter-mirror", "m0", {"netdev": "hn0", "queue": "tx",
                                     "outdev": "mirror0"}),
            ("filter-redirector", "redire0", {"netdev": "hn0", "queue": "rx",
                                              "indev": "compare_out"}),
            ("filter-redirector", "redire1", {"netdev": "hn0", "queue": "rx",
                                              "outdev": "compare0"}),
            ("iothread", "iothread1", {}),
            ("colo-compare", "comp0", {"primary_in": "compare0-0",
                                       "secondary_in": "compare1",
                                       "outdev": "compare_out0",
                                       "iothread": "iothread1"})):
        if qom_type != "iothread":
            props["vnet_hdr_support"] = True
        vm.cmd("object-add", **dict(props, **{"qom-type": qom_type, "id": oid}))


def reprotect(topo, pair, survivor):
    """The documented re-protection: a fresh secondary on the dead host, the
    survivor's disk copied to it, the survivor's proxy and replication child
    added, COLO started again.  Returns the new secondary."""
    if survivor is pair.sec:
        s_ip, new_ns, new_ip, top = SEC_LINK_IP, topo.pri, PRI_LINK_IP, "top-disk0"
        topo.standby_port("to-pri")
    else:
        s_ip, new_ns, new_ip, top = PRI_LINK_IP, topo.sec, SEC_LINK_IP, "colo-disk0"
    disk = []
    if DISKS:
        pair.new_dir = tempfile.mkdtemp(prefix="colo-e2e-disks-")
        make_disks(pair.new_dir)
        disk = secondary_disk_args(pair.new_dir, pair.guest)
    new = pair.new = Vm(guest_args(guest=pair.guest) + disk + secondary_args(s_ip),
                        name="new-secondary", prefix=topo.exec_prefix(new_ns))
    new.start()
    new.cmd("migrate-set-capabilities", capabilities=CAPS)
    S = survivor
    if DISKS:
        new.cmd("nbd-server-start", addr={"type": "inet", "data": {
            "host": new_ip, "port": "9999"}})
        new.cmd("nbd-server-add", device="colo-disk0", writable=True)
    new.cmd("migrate-incoming", uri="tcp:%s:9998" % new_ip)
    if DISKS:
        nbd = {"driver": "nbd", "export": "colo-disk0",
               "server": {"type": "inet", "host": new_ip, "port": "9999"}}
        S.cmd("blockdev-add", **dict(nbd, **{"node-name": "resync0"}))
        S.cmd("blockdev-mirror", **{"job-id": "resync", "device": top,
                                    "target": "resync0", "sync": "full"})
        S.wait_event("BLOCK_JOB_READY", 300)
        # the guest stops from here until COLO runs: no write escapes the copy
        S.cmd("stop")
        S.cmd("block-job-cancel", device="resync")
        S.wait_event("BLOCK_JOB_COMPLETED", 60)
        S.cmd("blockdev-del", **{"node-name": "resync0"})
        S.cmd("blockdev-add", driver="replication", mode="primary",
              **{"node-name": "rep0", "file": nbd})
        S.cmd("x-blockdev-change", parent=top, node="rep0")
    add_primary_proxy(S, s_ip)
    S.cmd("migrate-set-capabilities", capabilities=CAPS)
    S.cmd("migrate-set-parameters", **{"x-checkpoint-delay": CHECKPOINT_DELAY_MS,
                                       "max-bandwidth": 8 << 30,
                                       "downtime-limit": 2000})
    S.cmd("migrate", uri="tcp:%s:9998" % new_ip)
    S.wait_for(lambda: S.cmd("query-migrate").get("status") == "colo", 240,
               "migration status 'colo' (re-protection)")
    new.wait_for(lambda: new.cmd("query-colo-status")["mode"] == "secondary", 60,
                 "COLO mode 'secondary'")
    new.wait_for(lambda: chardevs_connected(new, ("red0", "red1")), 30,
                 "red0 and red1 connected")
    S.wait_for(lambda: S.cmd("query-status")["status"] == "running", 60,
               "the guest running again")
    return new


def end_run(topo, client, *stops):
    """The end of every run in the topology: the client, then each of
    @stops (the stop or teardown methods of what the run started; None for
    what it did not get to start), then the namespaces.  Asserts that no
    process or namespace is left."""
    if client:
        try:
            client.stop()
        except Exception:
            pass
        client.close()
    for stop in stops:
        if stop:
            stop()
    procs = topo.pids()
    topo.teardown()
    left = topo.leftovers()
    assert not procs, "processes left in our namespaces: %s" % procs
    assert not left, "namespaces left behind: %s" % left
