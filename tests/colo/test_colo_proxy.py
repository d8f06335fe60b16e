#!/usr/bin/env python3
"""COLO proxy at the QMP level, no guest: colo-compare, filter-mirror and
filter-redirector driven through their real chardevs (unix sockets).

The test plays both guests (it writes frames into primary_in and
secondary_in) and the client (it reads outdev), and plays the Xen-style
checkpoint agent on notify_dev so that checkpoints can be observed and
answered without a COLO controller.
"""

import os
import shutil
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from colo_vm import Vm  # noqa: E402
from compare_rig import IO_TIMEOUT, Compare, Peer  # noqa: E402,F401
from frames import frame, tcp, udp  # noqa: E402
from tap import Tap, expect_error  # noqa: E402

t = Tap()

def new_vm():
    vm = Vm(["-M", "pc", "-m", "64", "-nic", "none"], name="proxy")
    vm.start()
    vm.cmd("object-add", **{"qom-type": "iothread", "id": "iot0"})
    return vm


# ---- colo-compare -----------------------------------------------------------

TEXT = (b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" +
        bytes(range(48, 112)))


def compare_same_stream_cut_differently(vm):
    c = Compare(vm, "cmp-cut")
    try:
        p_cuts = [0, 10, 40, len(TEXT)]
        s_cuts = [0, 3, 25, 60, len(TEXT)]
        p_frames = [tcp(1000 + a, TEXT[a:b], ts=1, ip_id=7, checksum=True)
                    for a, b in zip(p_cuts, p_cuts[1:])]
        for f in p_frames:
            c.primary(f)
        c.wait_stat("primary-packets", 3)
        assert c.peers["out"].pending() == 0, "released before the secondary"
        for a, b in zip(s_cuts, s_cuts[1:]):
            c.secondary(tcp(1000 + a, TEXT[a:b], ts=99, window=1000, ip_id=500))
        # each primary segment leaves in the parts the secondary matched,
        # well-formed: PSH on its last part only, lengths and checksums
        # as the primary's segmentation would have made them
        cuts = sorted(set(p_cuts + s_cuts))
        for a, b in zip(cuts, cuts[1:]):
            assert c.out() == tcp(1000 + a, TEXT[a:b], ts=1, ip_id=7, checksum=True,
                                  flags=0x18 if b in p_cuts else 0x10), \
                "part %d..%d" % (a, b)
        c.wait_stat("secondary-packets", 4)
        assert c.stat("bytes-compared") == len(TEXT)
        assert c.stat("packets-compared") == 3
        assert c.stat("mismatches-tcp") == 0
        assert c.stat("queue-depth-primary") == 0
        assert c.stat("queue-depth-secondary") == 0
        assert c.stat("checkpoint-requests") == 0
        assert c.stat("write-errors") == 0
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-cut")


def compare_mismatch_checkpoint_and_flush(vm):
    c = Compare(vm, "cmp-mm")
    try:
        held = tcp(1, b"hello world")
        c.primary(held)
        c.primary(udp(b"dns answer"))
        c.secondary(tcp(1, b"hello WORLD"))
        assert c.notify_msg() == b"DO_CHECKPOINT"
        # published just after the request is written
        c.wait_stat("mismatches-tcp", 1)
        c.wait_stat("checkpoint-requests", 1)
        assert c.stat("mismatches-tcp") == 1
        assert c.stat("checkpoint-requests") == 1
        assert c.peers["out"].pending() == 0
        # The checkpoint agent answers: everything held goes out, in order.
        c.peers["notify"].send(frame(b"COLO_CHECKPOINT"))
        assert c.out() == held
        assert c.out() == udp(b"dns answer")
        c.wait_stat("flushes", 1)
        assert c.stat("queue-depth-primary") == 0
        assert c.stat("queue-depth-secondary") == 0
        # Comparing goes on after the checkpoint.
        c.primary(udp(b"next"))
        c.secondary(udp(b"next", ip_id=9))
        assert c.out() == udp(b"next")
        assert c.stat("mismatches-udp") == 0
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-mm")


def compare_timeout_requests_checkpoint(vm):
    c = Compare(vm, "cmp-to", compare_timeout=300, expired_scan_cycle=50)
    try:
        start = time.monotonic()
        c.primary(udp(b"lonely"))
        assert c.notify_msg() == b"DO_CHECKPOINT"
        assert time.monotonic() - start >= 0.25
        c.wait_stat("timeouts", 1)
        c.peers["notify"].send(frame(b"COLO_CHECKPOINT"))
        assert c.out() == udp(b"lonely")
        c.wait_stat("flushes", 1)
        assert c.stat("max-hold-us") >= 250000
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-to")


def compare_outdev_full_keeps_reading(vm):
    """outdev's reader (in the documented wiring: the main loop's
    redirector) may stop reading for a while; the main loop may at the same
    time block writing the guest's output to primary_in.  If colo-compare's
    iothread then blocked writing to outdev, neither would read again: QEMU
    hung (seen in bulk TCP with unix socket chardevs, whose buffers are
    small).  colo-compare must go on reading its inputs, keep what outdev
    does not take, and write it, in order, when outdev reads again."""
    c = Compare(vm, "cmp-full", notify=False)
    n = 2000                    # 2000 x 1400 bytes, far more than a socket holds
    payload = [(b"%06d" % i) * 233 for i in range(n)]
    try:
        for side in ("pin", "sin"):
            c.peers[side].sock.settimeout(IO_TIMEOUT)
        for i in range(n):
            f = frame(udp(payload[i], ip_id=i & 0xffff))
            try:
                c.peers["pin"].sock.sendall(f)
                c.peers["sin"].sock.sendall(f)
            except socket.timeout:
                raise AssertionError(
                    "colo-compare stopped reading its inputs after %d of %d "
                    "frames while outdev was full (%d bytes unread there)"
                    % (i, n, c.peers["out"].pending()))
        c.wait_stat("packets-compared", n)
        assert c.stat("write-errors") == 0
        for i in range(n):
            assert c.out() == udp(payload[i], ip_id=i & 0xffff), "frame %d" % i
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-full")


def compare_outdev_full_bound(vm):
    """What outdev does not take is kept up to 64 MiB; beyond, packets are
    lost (counted as write errors), and what was kept follows in order."""
    c = Compare(vm, "cmp-bound", notify=False)
    n = 1300                    # 1300 x 60000 bytes: 78 MB, over the bound
    try:
        for i in range(n):
            f = frame(udp(b"%06d" % i + b"z" * 59994, ip_id=i))
            c.peers["pin"].send(f)
            c.peers["sin"].send(f)
        c.wait_stat("packets-compared", n, timeout=60)
        lost = c.stat("write-errors")
        assert 0 < lost < n - 1000, "%d of %d frames lost" % (lost, n)
        got = [c.out()[42:48] for _ in range(n - lost)]
        assert got == [b"%06d" % i for i in range(n - lost)], \
            "not the first %d frames in order" % (n - lost)
        assert c.peers["out"].pending() == 0
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-bound")


def compare_xen_handshake(vm):
    c = Compare(vm, "cmp-xen")
    try:
        c.peers["notify"].send(frame(b"COLO_USERSPACE_PROXY_INIT"))
        assert c.notify_msg() == b"COLO_COMPARE_GET_XEN_INIT"
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-xen")


def compare_notify_reader_stalls(vm):
    """notify_dev's peer (Xen's checkpoint agent) may send and never read,
    as any peer may.  colo-compare answers every handshake on it; once
    that socket is full its answers must not stop comparing: beyond 64 KiB
    they are lost and counted, and the client's traffic goes on."""
    c = Compare(vm, "cmp-notify-stall")
    n = 20000                   # 20000 answers: far more than a socket holds
    hello = frame(b"COLO_USERSPACE_PROXY_INIT")
    try:
        c.peers["notify"].sock.settimeout(IO_TIMEOUT)
        try:
            c.peers["notify"].sock.sendall(hello * n)
        except socket.timeout:
            raise AssertionError("colo-compare stopped reading notify_dev "
                                 "while its own answers went unread")
        vm.wait_for(lambda: c.stat("write-errors") > 0, IO_TIMEOUT,
                    "unread answers beyond the bound to be counted as lost")
        for i in range(3):
            c.primary(udp(b"still compared %d" % i))
            c.secondary(udp(b"still compared %d" % i, ip_id=9))
            try:
                assert c.out() == udp(b"still compared %d" % i)
            except socket.timeout:
                raise AssertionError("colo-compare stopped comparing once "
                                     "notify_dev's reader stalled")
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-notify-stall")


def compare_malformed_input(vm):
    c = Compare(vm, "cmp-bad")
    try:
        good = tcp(5, b"abc")
        bad_ihl = bytearray(good)
        bad_ihl[14] = 0x44
        long_ip = bytearray(good)
        long_ip[16:18] = struct.pack("!H", 1500)
        for side in (c.primary, c.secondary):
            side(b"\x01\x02\x03")               # truncated Ethernet
            side(good[:30])                     # truncated IP header
            side(bytes(bad_ihl))                # bad IP header length
            side(bytes(long_ip))                # IP length beyond the frame
            side(good[:14 + 20 + 10])           # truncated TCP (IP length lies)
            side(udp(b"x")[:14 + 20 + 4])       # truncated UDP
        c.wait_stat("malformed-packets", 12)
        # zero-length frames and an oversized one (its bytes are skipped)
        c.peers["pin"].send(struct.pack("!I", 0) * 3)
        c.peers["pin"].send(struct.pack("!I", 200000) + b"\xee" * 200000)
        c.wait_stat("frames-rejected", 4)
        # the compare keeps working
        c.primary(good)
        c.secondary(good)
        assert c.out() == good
        assert c.stat("checkpoint-requests") == 0
        assert c.stat("primary-packets") == 1
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-bad")


def compare_chardev_reconnect(vm):
    """A peer that goes away in the middle of a frame: after the chardev
    reconnects, reading starts with a new frame and comparing goes on."""
    c = Compare(vm, "cmp-rc", reconnect=True)
    try:
        pin = c.peers["pin"]
        good = udp(b"after reconnect")
        pin.send(frame(good)[:10])          # half a frame, then the peer dies
        pin.sock.close()
        pin.accept()                        # QEMU reconnects
        c.primary(good)
        c.secondary(good)
        assert c.out() == good
        assert c.stat("malformed-packets") == 0
        assert c.stat("mismatches-udp") == 0
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-rc")


def compare_vnet_header(vm):
    c = Compare(vm, "cmp-vnet", vnet_hdr_support=True)
    try:
        data = b"\x00" * 10 + udp(b"with vnet header")
        c.primary(data, 10)
        c.secondary(data, 10)
        got, vlen = c.peers["out"].recv_frame(vnet=True)
        assert got == data and vlen == 10, (got, vlen)
        # a vnet header longer than the frame is rejected
        c.peers["pin"].send(struct.pack("!II", 4, 8) + b"abcd")
        c.wait_stat("frames-rejected", 1)
    finally:
        c.close()
        vm.cmd("object-del", id="cmp-vnet")


def compare_two_instances_and_delete(vm):
    a = Compare(vm, "cmp-a", max_queue_size=2)
    b = Compare(vm, "cmp-b")
    try:
        # a's bound is a's own: b holds more than two packets
        for i in range(3):
            b.primary(udp(b"b%d" % i))
        b.wait_stat("queue-depth-primary", 3)
        assert b.stat("queue-full") == 0
        for i in range(3):
            a.primary(udp(b"a"))
        assert a.notify_msg() == b"DO_CHECKPOINT"
        a.wait_stat("dropped-over-limit", 1)
        assert a.stat("queue-full") == 1
        assert a.stat("dropped-over-limit") == 1
        # delete a before any failover; b keeps comparing
        vm.cmd("object-del", id="cmp-a")
        for i in range(3):
            b.secondary(udp(b"b%d" % i))
            assert b.out() == udp(b"b%d" % i)
    finally:
        a.close()
        b.close()
        vm.cmd("object-del", id="cmp-b")
    assert vm.cmd("query-status")["status"] in ("running", "prelaunch")


def compare_deleted_while_peers_hang_up(vm):
    """object-del while the peers of all four chardevs hang up: the
    disconnects are handled in the iothread, the deletion in the main loop.
    Moving the chardevs' handlers from the main loop raced with a disconnect
    (a socket's channel freed under it: QEMU crashed)."""
    for i in range(150):
        name = "cmp-hup%d" % i
        c = Compare(vm, name)
        c.primary(udp(b"held"))
        hang_up = threading.Thread(target=c.close)
        hang_up.start()             # while object-del runs, as far as we can
        vm.cmd("object-del", id=name)
        hang_up.join()
    assert vm.cmd("query-status")["status"] in ("running", "prelaunch")


def compare_validation(vm):
    for cid in ("v1", "v2", "v3"):
        vm.cmd("chardev-add", id=cid, backend={"type": "socket", "data": {
            "addr": {"type": "unix", "data": {"path": vm.path(cid + ".sock")}},
            "server": True, "wait": False}})
    vm.cmd("chardev-add", id="vnull", backend={"type": "null", "data": {}})
    base = {"qom-type": "colo-compare", "id": "cmp-v", "primary_in": "v1",
            "secondary_in": "v2", "outdev": "v3", "iothread": "iot0"}

    def add(**over):
        args = dict(base)
        args.update(over)
        for k in [k for k, v in args.items() if v is None]:
            del args[k]
        return lambda: vm.cmd("object-add", **args)

    # required properties: refused by the QAPI schema of object-add already
    expect_error(add(primary_in=None), "'primary_in'")
    expect_error(add(outdev=None), "'outdev'")
    expect_error(add(iothread=None), "'iothread'")
    expect_error(add(outdev="v1"), "must be different chardevs", "'v1'")
    expect_error(add(notify_dev="v2"), "must be different chardevs")
    expect_error(add(secondary_in="nosuch"), "chardev 'nosuch'", "secondary_in")
    expect_error(add(iothread="nosuch"), "iothread 'nosuch' not found")
    expect_error(add(primary_in="vnull"), "'vnull'", "use a socket chardev")
    expect_error(add(compare_timeout=0), "'compare_timeout' must be greater than 0")
    expect_error(add(expired_scan_cycle=0), "must be greater than 0")
    expect_error(add(max_queue_size=0), "'max_queue_size' must be greater than 0")
    # defaults
    vm.cmd("object-add", **base)
    path = "/objects/cmp-v"
    assert vm.cmd("qom-get", path=path, property="compare_timeout") == 3000
    assert vm.cmd("qom-get", path=path, property="expired_scan_cycle") == 1000
    assert vm.cmd("qom-get", path=path, property="max_queue_size") == 1024
    assert vm.cmd("qom-get", path=path, property="vnet_hdr_support") is False
    expect_error(lambda: vm.cmd("qom-set", path=path, property="outdev",
                                value="v2"), "cannot change")
    vm.cmd("object-del", id="cmp-v")
    for cid in ("v1", "v2", "v3", "vnull"):
        vm.cmd("chardev-remove", id=cid)


# ---- filter-mirror / filter-redirector --------------------------------------

def filters_validation(vm):
    vm.cmd("netdev_add", type="user", id="fn0")
    vm.cmd("chardev-add", id="f1", backend={"type": "null", "data": {}})
    vm.cmd("chardev-add", id="f2", backend={"type": "null", "data": {}})
    expect_error(lambda: vm.cmd("object-add", **{
        "qom-type": "filter-mirror", "id": "m0", "netdev": "fn0"}),
        "'outdev'")
    expect_error(lambda: vm.cmd("object-add", **{
        "qom-type": "filter-mirror", "id": "m0", "netdev": "fn0",
        "outdev": "nosuch"}), "chardev 'nosuch'")
    expect_error(lambda: vm.cmd("object-add", **{
        "qom-type": "filter-redirector", "id": "r0", "netdev": "fn0"}),
        "needs 'indev', 'outdev' or both")
    expect_error(lambda: vm.cmd("object-add", **{
        "qom-type": "filter-redirector", "id": "r0", "netdev": "fn0",
        "indev": "f1", "outdev": "f1"}), "must be different")
    vm.cmd("object-add", **{"qom-type": "filter-mirror", "id": "m0",
                            "netdev": "fn0", "outdev": "f1",
                            "vnet_hdr_support": True})
    vm.cmd("object-add", **{"qom-type": "filter-redirector", "id": "r0",
                            "netdev": "fn0", "indev": "f2",
                            "position": "id=m0", "insert": "before"})
    expect_error(lambda: vm.cmd("object-add", **{
        "qom-type": "filter-redirector", "id": "r1", "netdev": "fn0",
        "outdev": "f3", "position": "id=nosuch"}), "filter 'nosuch' not found")
    vm.cmd("qom-set", path="/objects/r0", property="status", value="off")
    assert vm.cmd("qom-get", path="/objects/r0", property="status") == "off"
    vm.cmd("qom-set", path="/objects/r0", property="status", value="on")
    vm.cmd("object-del", id="r0")
    vm.cmd("object-del", id="m0")


class NicRig:
    """A guest-less QEMU whose e1000's netdev is a unix stream socket the
    test holds (self.net: the network side, a Peer), and one socket
    chardev per role, each a Peer the test holds (self.peers)."""

    def __init__(self, name, roles):
        self.tmpdir = tempfile.mkdtemp(prefix="colo-proxy-%s-" % name)
        self.peers = {}
        # the netdev connects to the test, as the chardevs do
        self.net = Peer(os.path.join(self.tmpdir, "net.sock"))
        self.vm = Vm(["-M", "pc", "-m", "64", "-nodefaults",
                      "-netdev", "stream,id=hn0,server=off,addr.type=unix,"
                      "addr.path=%s" % self.net.path,
                      "-device", "e1000,netdev=hn0,romfile="], name=name)
        try:
            self.vm.start()
            self.net.accept()
            for role in roles:
                p = Peer(self.vm.path(role + ".sock"))
                self.peers[role] = p
                self.vm.cmd("chardev-add", id=role, backend={
                    "type": "socket", "data": {
                        "addr": {"type": "unix", "data": {"path": p.path}},
                        "server": False}})
                p.accept()
        except BaseException:
            self.close()
            raise

    def close(self):
        for p in list(self.peers.values()) + [self.net]:
            p.close()
        self.vm.shutdown()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def redirector_rx_inject_and_mirror_vnet():
    """A frame read from a redirector's indev (queue=rx) leaves through the
    netdev; a filter-mirror with vnet_hdr_support copies the netdev's
    incoming packets with the vnet header length field."""
    rig = NicRig("filters", ("rin", "mout"))
    try:
        rin, mout = rig.peers["rin"], rig.peers["mout"]
        rig.vm.cmd("object-add", **{"qom-type": "filter-redirector", "id": "r0",
                                    "netdev": "hn0", "queue": "rx", "indev": "rin"})
        rig.vm.cmd("object-add", **{"qom-type": "filter-mirror", "id": "m0",
                                    "netdev": "hn0", "queue": "tx", "outdev": "mout",
                                    "vnet_hdr_support": True})
        pkt = udp(b"injected by the redirector")
        # zero-length and oversized frames first: rejected, skipped
        rin.send(struct.pack("!I", 0) + struct.pack("!I", 100000) + b"\xee" * 100000)
        rin.send(frame(pkt))
        got, _ = rig.net.recv_frame()
        assert got == pkt, got
        pkt2 = udp(b"from the network to the guest")
        rig.net.send(frame(pkt2))
        got, vlen = mout.recv_frame(vnet=True)
        assert got == pkt2 and vlen == 0, (got, vlen)
    finally:
        rig.close()


def mirror_outdev_full_main_loop_runs():
    """A filter's outdev whose peer stops reading (a hung secondary, a
    stalled network) must not stop the main loop: the mirror copied each
    frame with a blocking write, so a client flooding the guest while the
    secondary hung froze the primary (QMP too: not even failover could be
    asked for).  Frames the peer does not take wait, in order, up to a
    bound; beyond, they are lost (the secondary then differs: a
    checkpoint), and the main loop runs on."""
    rig = NicRig("stall", ("rin", "mout"))
    n = 1500                        # 1500 x 20000 bytes, over the bound
    try:
        vm, rin, mout = rig.vm, rig.peers["rin"], rig.peers["mout"]
        # frames injected by r0 towards the network pass m0 (rx filters
        # run last-added first), which copies them to mout, whose peer
        # does not read
        vm.cmd("object-add", **{"qom-type": "filter-mirror", "id": "m0",
                                "netdev": "hn0", "queue": "rx", "outdev": "mout"})
        vm.cmd("object-add", **{"qom-type": "filter-redirector", "id": "r0",
                                "netdev": "hn0", "queue": "rx", "indev": "rin"})
        sink = threading.Thread(target=lambda: drain(rig.net.sock), daemon=True)
        sink.start()                # the network side takes what comes
        rin.sock.settimeout(IO_TIMEOUT)
        for i in range(n):
            try:
                rin.send(frame(udp(b"%06d" % i + b"m" * 19994, ip_id=i & 0xffff)))
            except socket.timeout:
                raise AssertionError("the main loop stopped reading indev after "
                                     "%d of %d frames" % (i, n))
        try:
            vm.cmd("query-status", _timeout=IO_TIMEOUT)
        except TimeoutError:
            raise AssertionError("the main loop is stuck writing to a full "
                                 "outdev (QMP does not answer)")
        got = []
        while True:
            try:
                f, _ = mout.recv_frame(timeout=2)
            except TimeoutError:
                break
            got.append(int(f[42:48]))
        assert 500 < len(got) < n, "%d of %d frames mirrored" % (len(got), n)
        assert got == list(range(len(got))), "not the first frames in order"
    finally:
        rig.close()


def drain(sock):
    try:
        while sock.recv(1 << 16):
            pass
    except OSError:
        pass


def redirector_reframes_vnet_header():
    """A frame whose virtio-net header layout differs from the netdev's
    (10 bytes in the frame, none on this stream netdev) is re-framed to the
    netdev's layout before it is injected: the packet arrives intact."""
    rig = NicRig("reframe", ("rin",))
    try:
        rig.vm.cmd("object-add", **{"qom-type": "filter-redirector", "id": "r0",
                                    "netdev": "hn0", "queue": "rx", "indev": "rin",
                                    "vnet_hdr_support": True})
        pkt = udp(b"sent with a 10-byte virtio-net header")
        rig.peers["rin"].send(frame(b"\x01" + b"\x00" * 9 + pkt, vnet_len=10))
        got, _ = rig.net.recv_frame()
        assert got == pkt, got
    finally:
        rig.close()


def tcp_csum_ok(f):
    ip = f[14:34]
    seg = f[34:14 + struct.unpack("!H", ip[2:4])[0]]
    data = ip[12:20] + struct.pack("!HH", 6, len(seg)) + seg
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return total == 0xffff


def with_csum(f):
    """Fill in the TCP checksum of an IPv4/TCP frame built by tcp()."""
    f = bytearray(f)
    ip = bytes(f[14:34])
    seg = bytes(f[34:])
    data = ip[12:20] + struct.pack("!HH", 6, len(seg)) + seg
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    f[34 + 16:34 + 18] = struct.pack("!H", ~total & 0xffff)
    return bytes(f)


def seq_ack(f):
    return struct.unpack("!II", f[38:46])


def rewriter_keeps_numbering():
    """filter-rewriter between a NIC and a stream netdev: frames injected as
    the guest's output (redirector, queue=rx) leave in the primary's
    numbering; the client's frames reach the guest (seen by a mirror,
    queue=tx) with ACKs in the secondary's numbering."""
    tmpdir = tempfile.mkdtemp(prefix="colo-proxy-rw-")
    net_path = os.path.join(tmpdir, "net.sock")
    net_srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    net_srv.bind(net_path)
    net_srv.listen(1)
    vm = Vm(["-M", "pc", "-m", "64", "-nodefaults",
             "-netdev", "stream,id=hn0,server=off,addr.type=unix,addr.path=%s" % net_path,
             "-device", "e1000,netdev=hn0,romfile="], name="rewriter")
    peers = []
    sec_isn, pri_isn = 0x20000000, 0xfffffff0
    try:
        vm.start()
        net_srv.settimeout(IO_TIMEOUT)
        net_sock, _ = net_srv.accept()
        net = Peer.__new__(Peer)
        net.sock, net.buf, net.path, net.srv = net_sock, b"", net_path, None
        peers.append(net)
        for role in ("rin", "mout"):
            p = Peer(vm.path(role + ".sock"))
            vm.cmd("chardev-add", id=role, backend={"type": "socket", "data": {
                "addr": {"type": "unix", "data": {"path": p.path}},
                "server": False}})
            peers.append(p.accept())
        rin, mout = peers[1], peers[2]
        vm.cmd("object-add", **{"qom-type": "filter-rewriter", "id": "rw0",
                                "netdev": "hn0"})
        vm.cmd("object-add", **{"qom-type": "filter-mirror", "id": "m0",
                                "netdev": "hn0", "queue": "tx", "outdev": "mout"})
        vm.cmd("object-add", **{"qom-type": "filter-redirector", "id": "r0",
                                "netdev": "hn0", "queue": "rx", "indev": "rin"})
        # the secondary guest answers the client's SYN with its own ISN
        synack = with_csum(tcp(sec_isn, ack=5001, flags=0x12))
        rin.send(frame(synack))
        got, _ = net.recv_frame()
        assert got == synack
        # the client acknowledges the primary's SYN-ACK
        net.sock.sendall(frame(with_csum(tcp(5001, ack=pri_isn + 1, flags=0x10,
                                             sport=40000, dport=80,
                                             src="10.0.0.1", dst="10.0.0.2"))))
        got, _ = mout.recv_frame()
        assert seq_ack(got) == (5001, sec_isn + 1), seq_ack(got)
        assert tcp_csum_ok(got)
        # the guest's data leaves in the primary's numbering
        data = with_csum(tcp(sec_isn + 1, b"HTTP/1.1 200 OK", ack=5001))
        rin.send(frame(data))
        got, _ = net.recv_frame()
        assert seq_ack(got) == ((pri_isn + 1) & 0xffffffff, 5001), seq_ack(got)
        assert got[54:] == b"HTTP/1.1 200 OK"
        assert tcp_csum_ok(got)
        stat = lambda n: vm.cmd("qom-get", path="/objects/rw0", property="stat-" + n)
        assert stat("offsets-learned") == 1
        assert stat("connections") == 1
        assert stat("rewritten") == 2
    finally:
        for p in peers:
            p.close()
        net_srv.close()
        vm.shutdown()
        shutil.rmtree(tmpdir, ignore_errors=True)


def primary_topology_documented_command_line():
    """The primary side of the documented setup, on unix sockets: mirror of
    the client's packets to the secondary, the guest's packets through a
    redirector into colo-compare, the released ones through a second
    redirector out of the netdev.  The guest's output is injected by one
    more redirector at the tail (there is no guest OS here)."""
    tmpdir = tempfile.mkdtemp(prefix="colo-proxy-topo-")
    p = lambda name: os.path.join(tmpdir, name)
    net_srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    net_srv.bind(p("net.sock"))
    net_srv.listen(1)
    sec_mirror = Peer(p("mirror.sock"))         # the secondary's red0
    sec_out = Peer(p("secout.sock"))            # the secondary's red1 (f2)
    fake_guest = Peer(p("guest.sock"))
    sock = lambda cid, path, server: [
        "-chardev", "socket,id=%s,path=%s%s" % (cid, path,
                                                ",server=on,wait=off" if server else "")]
    args = ["-M", "pc", "-m", "64", "-nodefaults",
            "-netdev", "stream,id=hn0,server=off,addr.type=unix,addr.path=%s"
            % p("net.sock"),
            "-device", "e1000,netdev=hn0,romfile="]
    args += sock("mirror0", sec_mirror.path, False)
    args += sock("compare1", sec_out.path, False)
    args += sock("compare0", p("c0.sock"), True)
    args += sock("compare0-0", p("c0.sock"), False)
    args += sock("compare_out", p("co.sock"), True)
    args += sock("compare_out0", p("co.sock"), False)
    args += sock("guest", fake_guest.path, False)
    args += ["-object", "filter-mirror,id=m0,netdev=hn0,queue=tx,outdev=mirror0",
             "-object", "filter-redirector,netdev=hn0,id=redire0,queue=rx,"
                        "indev=compare_out",
             "-object", "filter-redirector,netdev=hn0,id=redire1,queue=rx,"
                        "outdev=compare0",
             "-object", "iothread,id=iothread1",
             "-object", "colo-compare,id=comp0,primary_in=compare0-0,"
                        "secondary_in=compare1,outdev=compare_out0,"
                        "iothread=iothread1",
             "-object", "filter-redirector,netdev=hn0,id=fakeguest,queue=rx,"
                        "indev=guest"]
    vm = Vm(args, name="topology")
    net = None
    try:
        vm.start()
        net_srv.settimeout(IO_TIMEOUT)
        net, _ = net_srv.accept()
        netpeer = Peer.__new__(Peer)
        netpeer.sock, netpeer.buf, netpeer.path, netpeer.srv = net, b"", "net", None
        for peer in (sec_mirror, sec_out, fake_guest):
            peer.accept()
        # client -> guest: mirrored to the secondary
        request = tcp(5001, b"GET / HTTP/1.1\r\n\r\n", ack=9001, sport=40000,
                      dport=80, src="10.0.0.1", dst="10.0.0.2")
        net.sendall(frame(request))
        assert sec_mirror.recv_frame()[0] == request
        # guest -> client: held until the secondary said the same
        answer = tcp(9001, b"HTTP/1.1 200 OK\r\n\r\n", ack=5021, checksum=True)
        fake_guest.send(frame(answer))
        stat = lambda n: vm.cmd("qom-get", path="/objects/comp0",
                                property="stat-" + n)
        vm.wait_for(lambda: stat("primary-packets") >= 1, IO_TIMEOUT,
                    "the compare to see the primary's answer")
        assert netpeer.pending() == 0
        sec_out.send(frame(tcp(9001, b"HTTP/1.1 200 ", ack=5021, ts=3)))
        # the part matched leaves at once, the rest once it matched too
        assert netpeer.recv_frame()[0] == tcp(9001, b"HTTP/1.1 200 ", ack=5021,
                                              flags=0x10, checksum=True)
        sec_out.send(frame(tcp(9014, b"OK\r\n\r\n", ack=5021, ts=3)))
        assert netpeer.recv_frame()[0] == tcp(9014, b"OK\r\n\r\n", ack=5021,
                                              checksum=True)
        # the statistics are published just after the release
        vm.wait_for(lambda: stat("bytes-compared") == len(b"HTTP/1.1 200 OK\r\n\r\n"),
                    IO_TIMEOUT, "bytes-compared to count the answer")
    finally:
        if net:
            net.close()
        for peer in (sec_mirror, sec_out, fake_guest):
            peer.close()
        net_srv.close()
        vm.shutdown()
        shutil.rmtree(tmpdir, ignore_errors=True)


def main():
    vm = new_vm()
    try:
        t.check("compare: the same TCP stream cut differently is released, not a mismatch",
                compare_same_stream_cut_differently, vm)
        t.check("compare: a payload mismatch asks for a checkpoint; the flush releases primary",
                compare_mismatch_checkpoint_and_flush, vm)
        t.check("compare: an unmatched packet older than compare_timeout asks for a checkpoint",
                compare_timeout_requests_checkpoint, vm)
        t.check("compare: an outdev that stops reading does not stop the inputs; "
                "what it did not take follows in order",
                compare_outdev_full_keeps_reading, vm)
        t.check("compare: an outdev that never reads: 64 MiB kept, the rest "
                "lost and counted", compare_outdev_full_bound, vm)
        t.check("compare: notify_dev answers the Xen proxy handshake",
                compare_xen_handshake, vm)
        t.check("compare: a notify_dev peer that never reads does not stop "
                "comparing; answers beyond 64 KiB are lost and counted",
                compare_notify_reader_stalls, vm)
        t.check("compare: malformed frames are rejected and counted, comparing goes on",
                compare_malformed_input, vm)
        t.check("compare: vnet_hdr_support frames pass with their vnet header",
                compare_vnet_header, vm)
        t.check("compare: a chardev that reconnects mid-frame starts with a new frame",
                compare_chardev_reconnect, vm)
        t.check("compare: two instances have their own bounds; deleting one is safe",
                compare_two_instances_and_delete, vm)
        t.check("compare: deleted while its peers hang up, 150 times: QEMU stays up",
                compare_deleted_while_peers_hang_up, vm)
        t.check("compare: property validation with clear errors, defaults",
                compare_validation, vm)
        t.check("filters: mirror/redirector validation, position/insert, status",
                filters_validation, vm)
    finally:
        vm.shutdown()
    t.check("filters: redirector rx injection and mirror with vnet header via a NIC",
            redirector_rx_inject_and_mirror_vnet)
    t.check("filters: an outdev that stops reading does not stop the main loop; "
            "what it takes follows in order", mirror_outdev_full_main_loop_runs)
    t.check("filter-redirector re-frames a virtio-net header of another layout "
            "for its netdev", redirector_reframes_vnet_header)
    t.check("rewriter: guest output in the primary's numbering, client ACKs in the secondary's",
            rewriter_keeps_numbering)
    t.check("topology: the documented primary-side command line works end to end",
            primary_topology_documented_command_line)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
