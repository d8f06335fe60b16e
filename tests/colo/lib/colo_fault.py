"""The test side of QEMU's COLO fault injection points (migration/colo-fault.h).

    points = FaultPoints()                    # listens on a unix socket
    vm = Vm(args, env=points.env("before-received"))
    ...
    hit = points.wait("before-received", timeout=60)   # the COLO thread waits
    ... look, kill, cut the link ...
    points.release()                          # let it go on

QEMU connects when its COLO thread first reaches a point it was told to
report, writes "<mode> <point> <seq>" and waits for one byte.  wait() lets
every other point go on at once, so a test names only the point it wants.
close() releases QEMU for good (the points are off from then on).
"""

import os
import select
import socket
import tempfile
import time


class FaultPoints:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="colo-fault-")
        self.path = os.path.join(self.dir, "fault.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.conn = None
        self.buf = b""
        self.held = None        # (mode, point, seq) QEMU is waiting at

    def env(self, *points):
        """Environment for the QEMU that reports @points (all if none)."""
        e = dict(os.environ)
        e["QEMU_COLO_FAULT_SOCKET"] = self.path
        e["QEMU_COLO_FAULT_POINTS"] = ",".join(points) if points else "all"
        return e

    def _read_line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no fault point reached in time")
            if self.conn is None:
                r, _, _ = select.select([self.listener], [], [], left)
                if r:
                    self.conn, _ = self.listener.accept()
                continue
            r, _, _ = select.select([self.conn], [], [], left)
            if not r:
                continue
            data = self.conn.recv(4096)
            if not data:
                raise EOFError("QEMU closed the fault socket (exited?)")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        mode, point, seq = line.decode().split()
        return mode, point, int(seq)

    def wait(self, point, timeout=120, mode=None, min_seq=0):
        """Wait until QEMU stands at @point (of @mode, checkpoint >= min_seq),
        releasing it at every other point meanwhile.  QEMU then waits until
        release().  Returns (mode, point, seq)."""
        deadline = time.monotonic() + timeout
        if self.held:
            self.release()
        while True:
            hit = self._read_line(deadline)
            if (hit[1] == point and (mode is None or hit[0] == mode)
                    and hit[2] >= min_seq):
                self.held = hit
                return hit
            self.conn.sendall(b"g")

    def release(self):
        if self.held and self.conn:
            try:
                self.conn.sendall(b"g")
            except OSError:
                pass
        self.held = None

    def close(self):
        """QEMU goes on and reports no more points."""
        for s in (self.conn, self.listener):
            if s:
                try:
                    s.close()
                except OSError:
                    pass
        self.conn = None
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass
