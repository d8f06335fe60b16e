"""A colo-compare (or another proxy object) whose chardevs connect to
sockets of the test, which feeds and reads them frame by frame (stdlib
only; the frames come from frames.py).

    c = Compare(vm, "cmp0", notify=False)
    c.primary(udp(b"same")); c.secondary(udp(b"same"))
    assert c.out() == udp(b"same")
"""

import socket
import struct
import time

from frames import frame

IO_TIMEOUT = 10.0


class Peer:
    """A unix socket server that QEMU's chardev connects to."""

    def __init__(self, path):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(1)
        self.sock = None
        self.buf = b""

    def accept(self):
        self.srv.settimeout(IO_TIMEOUT)
        self.sock, _ = self.srv.accept()
        return self

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self, vnet=False, timeout=IO_TIMEOUT):
        """Next frame written by QEMU: (data, vnet_len)."""
        hdr_len = 8 if vnet else 4
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= hdr_len:
                (n,) = struct.unpack("!I", self.buf[:4])
                vlen = struct.unpack("!I", self.buf[4:8])[0] if vnet else None
                if len(self.buf) >= hdr_len + n:
                    data = self.buf[hdr_len:hdr_len + n]
                    self.buf = self.buf[hdr_len + n:]
                    return data, vlen
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from QEMU on %s" % self.path)
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("QEMU closed %s" % self.path)
            self.buf += chunk

    def pending(self):
        """Bytes QEMU wrote that were not read yet (without waiting)."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return len(self.buf)

    def close(self):
        for s in (self.sock, self.srv):
            if s:
                s.close()


class Compare:
    """A colo-compare with its four chardevs connected to test peers."""

    def __init__(self, vm, name, notify=True, iothread="iot0", reconnect=False,
                 **props):
        self.vm = vm
        self.name = name
        self.peers = {}
        roles = ["pin", "sin", "out"] + (["notify"] if notify else [])
        for role in roles:
            cid = "%s-%s" % (name, role)
            peer = Peer(vm.path(cid + ".sock"))
            data = {"addr": {"type": "unix", "data": {"path": peer.path}},
                    "server": False}
            if reconnect:
                data["reconnect-ms"] = 100
            vm.cmd("chardev-add", id=cid, backend={"type": "socket", "data": data})
            self.peers[role] = peer.accept()
        args = {"qom-type": "colo-compare", "id": name,
                "primary_in": name + "-pin", "secondary_in": name + "-sin",
                "outdev": name + "-out", "iothread": iothread}
        if notify:
            args["notify_dev"] = name + "-notify"
        args.update(props)
        vm.cmd("object-add", **args)
        self.vnet = bool(props.get("vnet_hdr_support"))

    def primary(self, data, vnet_len=None):
        self.peers["pin"].send(frame(data, vnet_len if self.vnet else None))

    def secondary(self, data, vnet_len=None):
        self.peers["sin"].send(frame(data, vnet_len if self.vnet else None))

    def out(self):
        return self.peers["out"].recv_frame(self.vnet)[0]

    def stat(self, name):
        return self.vm.cmd("qom-get", path="/objects/" + self.name,
                           property="stat-" + name)

    def wait_stat(self, name, value, timeout=IO_TIMEOUT):
        self.vm.wait_for(lambda: self.stat(name) >= value, timeout,
                         "%s stat-%s >= %d" % (self.name, name, value))

    def notify_msg(self):
        return self.peers["notify"].recv_frame()[0]

    def close(self):
        for p in self.peers.values():
            p.close()
