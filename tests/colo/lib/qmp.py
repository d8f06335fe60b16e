"""The one QMP client of the tests (stdlib only).

    from qmp import Qmp, qmp_call
    with Qmp.connect("/path/qmp.sock", timeout=30) as q:
        print(q.cmd("query-status")["status"])
        ev = q.wait_event("RESUME", 10)
    qmp_call("/path/qmp.sock", "qom-list", path="/objects")  # a connection per call

Replies are matched by id; events that arrive meanwhile are kept in
q.events for wait_event().  Every wait has a deadline.  colo_vm.Vm uses it
for its QEMU (with a check that QEMU still runs while it waits).
"""

import json
import socket
import time

DEFAULT_TIMEOUT = 60.0


class QmpError(RuntimeError):
    """A QMP command answered with an error."""

    def __init__(self, desc, cls):
        super().__init__("%s: %s" % (cls, desc))
        self.desc = desc
        self.cls = cls


class QmpClosed(ConnectionError):
    """The monitor closed the connection."""


class Qmp:
    """A QMP connection on a connected unix socket.

    alive(what):  called while waiting (every half second) and on EOF; it
                  may raise to say why nothing comes (QEMU exited).
    """

    def __init__(self, sock, name="qmp", alive=None):
        self.sock = sock
        self.name = name
        self.alive = alive
        self.events = []            # events received and not yet consumed
        self._buf = b""
        self._id = 0

    @classmethod
    def connect(cls, path, timeout=DEFAULT_TIMEOUT, name=None):
        """Connect to @path, read the greeting, leave negotiation mode."""
        deadline = time.monotonic() + timeout
        s = cls._connect(path, deadline)
        try:
            q = cls(s, name or path)
            q.handshake(deadline)
        except BaseException:
            s.close()
            raise
        return q

    @staticmethod
    def _connect(path, deadline):
        """A socket connected to @path.  A monitor accepts one client at a
        time and listens with a backlog of 1: while it has not yet taken
        the connections queued (a previous client's close not yet seen), a
        socket with a timeout gets EAGAIN at once instead of waiting, so
        wait here, until the deadline."""
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(max(deadline - time.monotonic(), 0.01))
                s.connect(path)
                return s
            except BlockingIOError:
                s.close()
                if time.monotonic() >= deadline:
                    raise TimeoutError("%s: the monitor's backlog stayed full"
                                       % path)
                time.sleep(0.02)
            except BaseException:
                s.close()
                raise

    def greeting(self, deadline):
        """Read the monitor's greeting.  Events raised while we connect may
        come before it (QEMU's monitor sends events unless it negotiates,
        and it enters negotiation only once it has seen the new client):
        they are kept in self.events."""
        while True:
            msg = self.recv(deadline, "QMP greeting")
            if "event" not in msg:
                break
            self.events.append(msg)
        if "QMP" not in msg:
            raise RuntimeError("%s: unexpected QMP greeting %r" % (self.name, msg))

    def handshake(self, deadline):
        self.greeting(deadline)
        self.cmd("qmp_capabilities", _timeout=max(deadline - time.monotonic(), 1))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            # shutdown() wakes a recv() blocked in another thread;
            # close() alone does not.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _alive(self, what):
        if self.alive:
            self.alive(what)

    def recv(self, deadline, what):
        """Next QMP message (reply or event), waiting until deadline."""
        start = time.monotonic()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("%s: timed out after %.1fs waiting for %s"
                                   % (self.name, time.monotonic() - start, what))
            # Short slices so that a QEMU that dies is noticed quickly.
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                self._alive(what)
                continue
            if not data:
                self._alive(what)
                raise QmpClosed("%s: QMP connection closed while waiting for %s"
                                % (self.name, what))
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, /, _timeout=DEFAULT_TIMEOUT, **args):
        """Run a QMP command and return its 'return' value.

        Raises QmpError on an error reply.  Argument names are passed as
        given (also "name"); for names with dashes use
        cmd("x", **{"node-name": "n"})."""
        self._id += 1
        msg_id = "colo-%d" % self._id
        msg = {"execute": name, "id": msg_id}
        if args:
            msg["arguments"] = args
        what = "reply to QMP %s" % name
        self._alive(what)
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        except OSError as e:
            self._alive(what)
            raise QmpClosed("%s: QMP send failed for %s: %s" % (self.name, name, e))
        deadline = time.monotonic() + _timeout
        while True:
            reply = self.recv(deadline, what)
            if "event" in reply:
                self.events.append(reply)
            elif reply.get("id") == msg_id:
                if "error" in reply:
                    raise QmpError(reply["error"].get("desc"), reply["error"].get("class"))
                return reply.get("return")

    def wait_event(self, name, timeout, predicate=None):
        """Return (and consume) the first event called name, satisfying
        predicate(event) if given, that arrived since the last one consumed;
        events received meanwhile are kept in self.events."""
        def match(ev):
            return ev.get("event") == name and (predicate is None or predicate(ev))

        for i, ev in enumerate(self.events):
            if match(ev):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        what = "event %s%s" % (name, " (with predicate)" if predicate else "")
        while True:
            ev = self.recv(deadline, what)
            if "event" not in ev:
                continue                # stray reply to a timed-out command
            if match(ev):
                return ev
            self.events.append(ev)

    def poll_events(self):
        """Read the events QEMU already sent, without waiting; return and
        clear the buffered ones."""
        try:
            while True:
                ev = self.recv(time.monotonic() + 0.05, "pending events")
                if "event" in ev:
                    self.events.append(ev)
        except TimeoutError:
            pass
        events, self.events = self.events, []
        return events


def qmp_call(path, cmd, /, _timeout=DEFAULT_TIMEOUT, **args):
    """cmd on a connection of its own (the socket is free again after)."""
    with Qmp.connect(path, _timeout) as q:
        return q.cmd(cmd, _timeout=_timeout, **args)
