#!/usr/bin/env python3
"""End to end: a client's TCP connection to a COLO-protected Linux guest,
through the whole COLO proxy, survives the death of the primary.

Topology (one host, unix sockets only):
  client (this script: a minimal TCP client speaking Ethernet frames on a
  unix datagram socket) <-> netdev dgram of the primary; the secondary's
  netdev dgram talks to the same client socket, which switches to it after
  failover (what a bridge relearning the MAC would do).
  Primary: filter-mirror (client -> secondary), filter-redirectors into and
  out of colo-compare, as in the documented command line.
  Secondary: filter-redirectors (from the mirror, to the compare) and
  filter-rewriter.
The guest serves "nc -ll -p 7777": each line gets "<n> <line>" back, n
counting lines since boot (guest state).
"""

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_fault import FaultPoints  # noqa: E402
from colo_pair import checkpoints, colo_status, start_pair  # noqa: E402
from colo_vm import guest_files, wait_for  # noqa: E402
from frames import csum, eth, ipv4, tcp  # noqa: E402
from tap import Tap  # noqa: E402

t = Tap()

CLIENT_MAC = bytes.fromhex("525400000001")
GUEST_MAC = bytes.fromhex("525400123456")
CLIENT_IP = socket.inet_aton("10.0.0.1")
GUEST_IP = socket.inet_aton("10.0.0.2")
PORT = 7777


class Client:
    """Just enough TCP for one connection, with retransmission of our data."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.peer = None                # the netdev we talk to
        self.sport = random.randint(20000, 60000)
        self.snd_una = self.snd_nxt = random.randint(0, 2**32 - 1)
        self.rcv_nxt = None
        self.data = b""
        self.unacked = None             # (seq, payload) not yet acknowledged

    def frame(self, flags, payload=b""):
        return tcp(self.snd_nxt, payload, ack=self.rcv_nxt or 0, flags=flags,
                   sport=self.sport, dport=PORT, window=65535, ip_id=0,
                   src=socket.inet_ntoa(CLIENT_IP), dst=socket.inet_ntoa(GUEST_IP),
                   checksum=True, df=True, dst_mac=GUEST_MAC, src_mac=CLIENT_MAC)

    def send(self, frame):
        self.sock.sendto(frame, self.peer)

    def handle(self, f):
        if len(f) < 14:
            return
        etype = struct.unpack("!H", f[12:14])[0]
        if etype == 0x0806 and len(f) >= 42 and f[38:42] == CLIENT_IP:
            # ARP request for us: answer
            reply = (f[6:12] + CLIENT_MAC + b"\x08\x06" +
                     struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) +
                     CLIENT_MAC + CLIENT_IP + f[22:28] + f[28:32])
            self.send(reply)
            return
        if etype != 0x0800 or len(f) < 34 or f[23] != 6 or f[30:34] != CLIENT_IP:
            return
        ihl = (f[14] & 0xf) * 4
        total = struct.unpack("!H", f[16:18])[0]
        tcp = f[14 + ihl:14 + total]
        sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
        if sport != PORT or dport != self.sport:
            return
        payload = tcp[(off >> 4) * 4:]
        if flags & 0x10 and (ack - self.snd_una) % 2**32 < 2**31:
            self.snd_una = ack
            if self.unacked and (ack - self.snd_nxt) % 2**32 < 2**31:
                self.unacked = None
        if flags & 0x02:                # SYN-ACK
            if self.rcv_nxt is None:
                self.rcv_nxt = (seq + 1) % 2**32
            self.send(self.frame(0x10))
            return
        if self.rcv_nxt is None:
            return
        if payload and seq == self.rcv_nxt:
            self.data += payload
            self.rcv_nxt = (seq + len(payload)) % 2**32
        if payload or flags & 0x01:
            self.send(self.frame(0x10))

    def pump(self, until, timeout, what):
        deadline = time.monotonic() + timeout
        last_tx = time.monotonic()
        while not until():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("client: timed out waiting for %s" % what)
            if time.monotonic() - last_tx > 1.0:
                self.retransmit()
                last_tx = time.monotonic()
            self.sock.settimeout(min(left, 0.5))
            try:
                f, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            if addr == self.peer:
                self.handle(f)

    def retransmit(self):
        if self.rcv_nxt is None:
            nxt = self.snd_nxt
            self.snd_nxt = self.iss         # the same SYN again
            self.send(self.frame(0x02))
            self.snd_nxt = nxt
        elif self.unacked:
            seq, payload = self.unacked
            nxt = self.snd_nxt
            self.snd_nxt = seq
            self.send(self.frame(0x18, payload))
            self.snd_nxt = nxt

    def connect(self, timeout):
        self.iss = self.snd_nxt
        self.send(self.frame(0x02))
        self.snd_nxt = (self.snd_nxt + 1) % 2**32
        self.snd_una = self.snd_nxt - 1
        self.pump(lambda: self.rcv_nxt is not None, timeout, "the SYN-ACK")

    def request(self, line, timeout):
        payload = line.encode() + b"\n"
        self.unacked = (self.snd_nxt, payload)
        self.send(self.frame(0x18, payload))
        self.snd_nxt = (self.snd_nxt + len(payload)) % 2**32
        pat = re.compile(rb"(\d+) " + re.escape(line.encode()) + rb"\r?\n")
        self.pump(lambda: pat.search(self.data), timeout,
                  "the answer to %r" % line)
        m = pat.search(self.data)
        self.data = self.data[m.end():]
        return int(m.group(1))

    def close(self):
        self.sock.close()


def proxy_pair_args(tmp):
    """(guest args, primary extra args, secondary extra args, path of the
    primary's netdev socket, of the secondary's, of the client's)."""
    g = guest_files()
    p = lambda name: os.path.join(tmp, name)
    guest = ["-M", "pc", "-m", "256", "-kernel", g["vmlinuz"], "-initrd", g["initrd"],
             "-append", "console=ttyS0 quiet colo.ip=10.0.0.2/24 colo.serve=1",
             "-device", "virtio-net-pci,netdev=hn0,mac=52:54:00:12:34:56,romfile="]

    def netdev(local):
        return ["-netdev", "dgram,id=hn0,local.type=unix,local.path=%s,"
                "remote.type=unix,remote.path=%s" % (p(local), p("client.sock"))]

    def chardev(cid, path, server):
        return ["-chardev", "socket,id=%s,path=%s,%s" % (
            cid, p(path), "server=on,wait=off" if server else "reconnect-ms=200")]

    primary = (netdev("pri-net.sock") +
               chardev("mirror0", "mirror.sock", True) +
               chardev("compare1", "sec-out.sock", True) +
               chardev("compare0", "c0.sock", True) +
               chardev("compare0-0", "c0.sock", False) +
               chardev("compare_out", "co.sock", True) +
               chardev("compare_out0", "co.sock", False) +
               ["-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0",
                "-object", "filter-redirector,netdev=hn0,id=redire0,queue=rx,"
                           "indev=compare_out",
                "-object", "filter-redirector,netdev=hn0,id=redire1,queue=rx,"
                           "outdev=compare0",
                "-object", "iothread,id=iothread1",
                "-object", "colo-compare,id=comp0,primary_in=compare0-0,"
                           "secondary_in=compare1,outdev=compare_out0,"
                           "iothread=iothread1"])
    secondary = (netdev("sec-net.sock") +
                 chardev("red0", "mirror.sock", False) +
                 chardev("red1", "sec-out.sock", False) +
                 ["-object", "filter-redirector,id=f1,netdev=hn0,queue=tx,indev=red0",
                  "-object", "filter-redirector,id=f2,netdev=hn0,queue=rx,outdev=red1",
                  "-object", "filter-rewriter,id=rew0,netdev=hn0,queue=all"])
    return (guest, primary, secondary, p("pri-net.sock"), p("sec-net.sock"),
            p("client.sock"))


def primary_dies(pri, sec, client, sec_net):
    """kill -9 of the primary, failover on the secondary, and the client
    talking to the secondary's netdev (a bridge relearning the MAC)."""
    pri.kill(signal.SIGKILL)
    pri.wait_exit(30)
    wait_for(lambda: colo_status(sec)["reason"] == "error", 60,
             "the secondary to notice")
    sec.cmd("x-colo-lost-heartbeat")
    sec.wait_event("COLO_EXIT", 60)
    client.peer = sec_net


def client_connection_survives_failover():
    tmp = tempfile.mkdtemp(prefix="colo-e2e-")
    p = lambda name: os.path.join(tmp, name)
    guest, primary, secondary, _, _, client_path = proxy_pair_args(tmp)
    client = Client(client_path)
    pri = sec = None

    def diagnose():
        """What the proxy saw, for a failure message."""
        out = ["client: rcv_nxt=%s snd_una=%s snd_nxt=%s data=%r"
               % (client.rcv_nxt, client.snd_una, client.snd_nxt, client.data)]
        for vm, path, names in ((pri, "/objects/comp0", (
                "primary-packets", "secondary-packets", "packets-released",
                "packets-compared", "mismatches-tcp", "timeouts",
                "queue-depth-primary", "queue-depth-secondary",
                "checkpoint-requests", "flushes", "malformed-packets")),
                (sec, "/objects/rew0", ("packets", "rewritten",
                                        "offsets-learned", "connections"))):
            try:
                out.append("%s %s" % (path, " ".join(
                    "%s=%s" % (n, vm.cmd("qom-get", path=path,
                                         property="stat-" + n))
                    for n in names)))
            except Exception as e:      # the VM may be gone
                out.append("%s: %s" % (path, e))
        return "\n".join(out)

    try:
        pri, sec = start_pair(guest, delay_ms=3000, primary_extra=primary,
                              secondary_extra=secondary)
        pri.serial_wait("COLO-GUEST: ready", 240)
        client.peer = p("pri-net.sock")
        client.connect(120)
        first = client.request("hello", 60)
        n = client.request("second", 120)
        assert n == first + 1, (first, n)
        stat = lambda n: pri.cmd("qom-get", path="/objects/comp0",
                                 property="stat-" + n)
        assert stat("packets-compared") > 0
        # let a checkpoint pass with the connection open, then one more line
        c = checkpoints(pri)
        wait_for(lambda: checkpoints(pri) > c, 120, "a checkpoint")
        n = client.request("third", 120)
        assert n == first + 2
        sys.stdout.write("# compare: %d packets compared, %d TCP mismatches, "
                         "%d checkpoints, rewriter offsets learned %d\n"
                         % (stat("packets-compared"), stat("mismatches-tcp"),
                            checkpoints(pri),
                            sec.cmd("qom-get", path="/objects/rew0",
                                    property="stat-offsets-learned")))
        # the primary host dies
        primary_dies(pri, sec, client, p("sec-net.sock"))
        n = client.request("after failover", 120)
        assert n == first + 3, (first, n)
        n = client.request("and on", 60)
        assert n == first + 4, (first, n)
    except Exception as e:
        raise AssertionError("%s\n%s" % (e, diagnose())) from e
    finally:
        client.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def icmp_echo(ident, seq):
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"colo-ping-%08d" % seq
    icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
    return eth(ipv4(1, icmp, ip_id=seq & 0xffff, src=socket.inet_ntoa(CLIENT_IP),
                    dst=socket.inet_ntoa(GUEST_IP), df=True, checksum=True),
               dst=GUEST_MAC, src=CLIENT_MAC)


def no_duplicated_input():
    """Client input the checkpoint already holds is not delivered again.
    Both guests take client input during the primary's live RAM phase:
    echo requests that reach the primary then are answered by the primary
    before its stop, so the checkpoint holds them.  Delivered to the
    secondary again after the load, they would be answered twice and the
    compare would see a mismatch.  The primary is held at the end of its
    live RAM phase (fault point after-live-ram) while requests flow, at each
    of five checkpoints; the guests answer identically, so no mismatch
    checkpoint may follow."""
    tmp = tempfile.mkdtemp(prefix="colo-e2e-")
    p = lambda name: os.path.join(tmp, name)
    guest, primary, secondary, _, _, client_path = proxy_pair_args(tmp)
    client = Client(client_path)
    points = FaultPoints()
    pri = sec = None
    ident, answered, sent = 0x4242, {}, [0]

    def ping_for(seconds):
        end = time.monotonic() + seconds
        client.sock.settimeout(0.01)
        while time.monotonic() < end:
            try:
                client.send(icmp_echo(ident, sent[0]))
                sent[0] += 1
            except socket.timeout:
                pass    # the netdev's queue is full (a stopped VM): not sent
            try:
                while True:
                    f, addr = client.sock.recvfrom(65536)
                    if (len(f) >= 42 and f[12:14] == b"\x08\x00" and f[23] == 1 and
                            f[34] == 0):
                        seq = struct.unpack("!H", f[40:42])[0]
                        answered[seq] = answered.get(seq, 0) + 1
                    elif addr == client.peer:
                        client.handle(f)
            except socket.timeout:
                pass

    try:
        pri, sec = start_pair(guest, delay_ms=600000, primary_extra=primary,
                              secondary_extra=secondary,
                              primary_env=points.env("after-live-ram"))
        pri.serial_wait("COLO-GUEST: ready", 240)
        client.peer = p("pri-net.sock")
        client.connect(120)         # also answers the guest's ARP for us
        client.request("hello", 60)
        before = colo_status(pri)
        for i in range(5):
            n = checkpoints(pri)
            pri.cmd("migrate-set-parameters", **{"x-checkpoint-delay": 600001 + i})
            points.wait("after-live-ram", mode="primary")
            ping_for(0.5)           # both guests run and answer meanwhile
            points.release()
            wait_for(lambda: checkpoints(pri) > n, 120, "checkpoint %d" % i)
            ping_for(0.5)
        after = colo_status(pri)
        spurious = after["checkpoints-mismatch"] - before["checkpoints-mismatch"]
        dups = sum(1 for n in answered.values() if n > 1)
        sys.stdout.write("# %d echo requests, %d answered, %d forced and %d mismatch "
                         "checkpoints, %d duplicated answers\n"
                         % (sent[0], len(answered), after["checkpoints-forced"] -
                            before["checkpoints-forced"], spurious, dups))
        mismatches = {
            n: pri.cmd("qom-get", path="/objects/comp0", property="stat-" + n)
            for n in ("mismatches-tcp", "mismatches-udp", "mismatches-icmp",
                      "mismatches-other-ip", "mismatches-non-ip", "timeouts",
                      "link-control-primary", "link-control-secondary")}
        sys.stdout.write("# compare: %s\n" % mismatches)
        assert dups == 0, answered
        # Echo answers are identical on both guests: an ICMP mismatch means
        # the secondary answered a request twice.  (The guest's IPv6
        # neighbour discovery and MLD, which differ between the guests, are
        # not compared: 'link-control'.  A loaded machine delays the guest's
        # duplicate address detection into this window; its random nonce
        # made an ICMP mismatch before they were left uncompared.)
        assert mismatches["mismatches-icmp"] == 0, (spurious, mismatches)
    finally:
        points.close()
        client.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


# gdb commands that set a flag of the virtio-net device of a QEMU, as virtio
# does on its own: 'broken' on an error (virtio_error(), e.g. a malformed
# ring), 'disabled' when the guest clears PCI bus mastering (at reboot).
# There is no monitor command that does either.
SET_VIRTIO_NET_FLAG = """
set pagination off
set $n = 'net.c'::net_clients.tqh_first
while $n
  if $n->info->type == NET_CLIENT_DRIVER_NIC
    set $nic = (NICState *)((char *)$n - $n->info->size)
    set var ((VirtIODevice *)$nic->opaque)->%s = 1
  end
  set $n = $n->next.tqe_next
end
detach
quit
"""
VIRTIO_NET_PATH = "/machine/peripheral-anon/device[0]/virtio-backend"


def set_virtio_net_flag(vm, tmp, flag):
    script = os.path.join(tmp, "set-virtio-net-%s.gdb" % flag)
    with open(script, "w") as f:
        f.write(SET_VIRTIO_NET_FLAG % flag)
    r = subprocess.run(["gdb", "-q", "-nx", "-batch", "-x", script, "-p",
                        str(vm.proc.pid)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def virtio_net_flag(vm, flag):
    return vm.cmd("x-query-virtio-status", path=VIRTIO_NET_PATH)[flag]


def stale_device_flags_replaced_by_checkpoint():
    """A checkpoint replaces the secondary's whole device state, including
    what its devices did on their own since the last one.  Two flags of a
    virtio device are not in the state a load brings unless set: 'broken'
    (never migrated) and 'disabled' (sent only when true).  A secondary
    whose rebooting guest broke or disabled its NIC on its own (a malformed
    ring; bus mastering cleared while the primary's guest had it set again)
    kept the flag through every later checkpoint: its NIC neither sent nor
    received, every checkpoint made it a copy of the primary except for a
    dead NIC, and after failover the client got no answer.  For each flag:
    set it on the secondary's virtio-net, take a checkpoint: the device must
    work again and produce output for the compare; then the secondary must
    serve the client after failover."""
    tmp = tempfile.mkdtemp(prefix="colo-e2e-")
    p = lambda name: os.path.join(tmp, name)
    guest, primary, secondary, _, _, client_path = proxy_pair_args(tmp)
    client = Client(client_path)
    pri = sec = None
    stat = lambda vm, n: vm.cmd("qom-get", path="/objects/comp0",
                                property="stat-" + n)
    try:
        pri, sec = start_pair(guest, delay_ms=600000, primary_extra=primary,
                              secondary_extra=secondary)
        pri.serial_wait("COLO-GUEST: ready", 240)
        client.peer = p("pri-net.sock")
        client.connect(120)
        n = client.request("hello", 60)
        for i, flag in enumerate(("broken", "disabled")):
            for attempt in range(5):
                c = checkpoints(pri)
                set_virtio_net_flag(sec, tmp, flag)
                if virtio_net_flag(sec, flag):
                    break
                # gdb froze the secondary long enough for a compare
                # timeout: that checkpoint already cleared the flag
                assert checkpoints(pri) != c, "gdb did not set " + flag
            else:
                raise AssertionError("a checkpoint cleared %s each time before "
                                     "the test could see it set" % flag)
            assert not virtio_net_flag(pri, flag)
            c = checkpoints(pri)
            pri.cmd("migrate-set-parameters",
                    **{"x-checkpoint-delay": 600001 + i})
            wait_for(lambda: checkpoints(pri) > c, 120, "a checkpoint")
            assert not virtio_net_flag(sec, flag), (
                "the secondary's virtio-net is still %s after a checkpoint "
                "loaded the primary's working one" % flag)
            s0 = stat(pri, "secondary-packets")
            n += 1
            assert client.request("after %s" % flag, 120) == n
            wait_for(lambda: stat(pri, "secondary-packets") > s0, 60,
                     "output from the secondary's guest")
        primary_dies(pri, sec, client, p("sec-net.sock"))
        assert client.request("after failover", 120) == n + 1
    finally:
        client.close()
        for vm in (pri, sec):
            if vm:
                vm.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if not os.path.exists(guest_files()["initrd"]):
        t.fail("end to end through the COLO proxy", "no test guest (run make guest)")
        return t.finish()
    t.check("end to end: a client's TCP connection through the COLO proxy "
            "survives the primary's death", client_connection_survives_failover)
    t.check("end to end: no duplicated input: echo requests the primary answered "
            "before its stop are not answered again by the secondary",
            no_duplicated_input)
    t.check_unless(None if shutil.which("gdb") else "no gdb to break a device with",
                   "end to end: a secondary NIC broken or disabled on its own "
                   "works again after the next checkpoint and serves after failover",
                   stale_device_flags_replaced_by_checkpoint)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
