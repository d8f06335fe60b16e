"""The end-to-end test's client: ONE TCP connection to the guest's service,
numbered requests, every answer checked, latency logged.

    c = Client(sock)            # a TCP socket created in the client namespace
    c.connect((GUEST_IP, 7777), timeout=60)
    c.start()                   # background thread: request, answer, request...
    c.wait_answers(10, 60)      # 10 answers checked so far
    ...
    c.stop()                    # ends the thread; raises the first error seen
    c.close()

The guest answers each line with "<n> <line>", n counting lines since boot;
the first answer fixes the base, and answer k must be "<base + k> req-k": an
answer lost, duplicated, reordered or from a guest that lost state fails the
check.  With padded=True (a guest booted with colo.vary=1) answer k must be
"<base + k> req-k <pad>", pad being 1 to 32 dots: the two VMs of a pair pad
to different lengths, so a line torn between them (the start from one VM,
the rest from the other) or a stray piece of one fails the check too.

One request is outstanding at a time; the next one leaves interval_s after
the previous answer (the request rate, not a wait for a condition).  Every
request is logged as (k, sent, answered, n) in time.monotonic() seconds,
and every line sent or received in transcript (write_transcript() puts it
in a file, for a failure's logs).

Threading: the request thread owns the socket until stop(); records and
errors are read by the test thread under self.lock.
"""

import re
import socket
import threading
import time

PAD = re.compile(r"\.{1,32}\Z")


class ClientError(AssertionError):
    pass


class Client:
    def __init__(self, sock, interval_s=0.05, answer_timeout_s=120.0,
                 padded=False):
        self.sock = sock
        self.padded = padded
        self.transcript = []        # (time.monotonic(), ">" or "<", line)
        self.interval_s = interval_s
        self.answer_timeout_s = answer_timeout_s
        self.lock = threading.Condition()
        self.records = []           # (k, sent, answered, n)
        self.error = None
        self.base = None
        self._stop = False
        self._thread = None
        self._buf = b""

    def connect(self, addr, timeout):
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _readline(self, deadline):
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientError("no answer within %gs" % self.answer_timeout_s)
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                raise ClientError("the guest closed the connection")
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.rstrip(b"\r").decode(errors="replace")
        with self.lock:
            self.transcript.append((time.monotonic(), "<", line))
        return line

    def well_formed(self, line, req):
        """The line number of a right answer to req, or None."""
        n_text, _, rest = line.partition(" ")
        if not n_text.isdigit():
            return None
        if self.padded:
            body, _, pad = rest.rpartition(" ")
            if body != req or not PAD.match(pad):
                return None
        elif rest != req:
            return None
        return int(n_text)

    def _run(self):
        k = 0
        try:
            while True:
                with self.lock:
                    if self._stop:
                        return
                k += 1
                req = "req-%d" % k
                sent = time.monotonic()
                with self.lock:
                    self.transcript.append((sent, ">", req))
                self.sock.sendall(req.encode() + b"\n")
                line = self._readline(sent + self.answer_timeout_s)
                answered = time.monotonic()
                n = self.well_formed(line, req)
                if n is None:
                    raise ClientError("request %d: wrong answer %r" % (k, line))
                with self.lock:
                    if self.base is None:
                        self.base = n - k
                    if n != self.base + k:
                        raise ClientError("request %d: answer %r, expected line "
                                          "number %d (lost or duplicated lines)"
                                          % (k, line, self.base + k))
                    self.records.append((k, sent, answered, n))
                    self.lock.notify_all()
                    self.lock.wait_for(lambda: self._stop, self.interval_s)
        except Exception as e:      # reported by wait_answers() and stop()
            with self.lock:
                self.error = e if isinstance(e, ClientError) else ClientError(
                    "request %d: %s: %s" % (k, type(e).__name__, e))
                self.lock.notify_all()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="e2e-client",
                                        daemon=True)
        self._thread.start()

    def check(self):
        with self.lock:
            if self.error:
                raise self.error

    def answers(self):
        with self.lock:
            return len(self.records)

    def wait_answers(self, count, timeout):
        """Wait until count answers have been checked in total."""
        with self.lock:
            ok = self.lock.wait_for(lambda: self.error or len(self.records) >= count,
                                    timeout)
            if self.error:
                raise self.error
            if not ok:
                raise TimeoutError("client: %d answers after %gs, waiting for %d"
                                   % (len(self.records), timeout, count))

    def stop(self):
        with self.lock:
            self._stop = True
            self.lock.notify_all()
        if self._thread:
            self._thread.join(self.answer_timeout_s + 5)
            if self._thread.is_alive():
                raise ClientError("client thread did not stop")
        self.check()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def request_by_hand(self, req, timeout):
        """After stop(): one more request on the same connection, checked
        like the others (the connection is still open and the line number
        goes on).  Returns the line number."""
        with self.lock:
            k = len(self.records) + 1
        sent = time.monotonic()
        with self.lock:
            self.transcript.append((sent, ">", req))
        self.sock.sendall(req.encode() + b"\n")
        saved, self.answer_timeout_s = self.answer_timeout_s, timeout
        try:
            line = self._readline(sent + timeout)
        finally:
            self.answer_timeout_s = saved
        n = self.well_formed(line, req)
        if n is None or n != self.base + k:
            raise ClientError("request by hand %r: answer %r, expected line "
                              "number %d" % (req, line, self.base + k))
        return n

    def last_request(self, timeout=60):
        """After stop(): "last" on the same connection, by hand; its answer
        must carry the next line number.  Returns that number."""
        n = self.base + self.answers() + 1
        self.sock.settimeout(timeout)
        self.sock.sendall(b"last\n")
        buf = b""
        while b"\n" not in buf:
            data = self.sock.recv(4096)
            assert data, "connection closed"
            buf += data
        assert buf.decode().split() == [str(n), "last"], buf
        return n

    def write_transcript(self, path):
        with self.lock:
            lines = list(self.transcript)
            t0 = lines[0][0] if lines else 0
        with open(path, "w") as f:
            for when, way, text in lines:
                f.write("%9.3f %s %s\n" % (when - t0, way, text))
            f.write("# %d answers, base %s, error %s, unread %r\n"
                    % (len(self.records), self.base, self.error, self._buf))

    # ---- figures ----------------------------------------------------------

    def figures(self, t_event):
        """Figures around an event at time t_event (monotonic):
        first_answer_s: from t_event to the answer of the first request sent
        after it (only the survivor can answer that one); max_stall_s: the
        longest request latency of the whole run; max_gap_s: the longest time
        between two consecutive answers."""
        with self.lock:
            recs = list(self.records)
        after = [r for r in recs if r[1] >= t_event]
        first = (after[0][2] - t_event) if after else None
        # a request in flight at t_event is answered by the survivor too
        inflight = [r for r in recs if r[1] < t_event <= r[2]]
        if inflight:
            first = inflight[0][2] - t_event
        lat = [r[2] - r[1] for r in recs]
        gaps = [b[2] - a[2] for a, b in zip(recs, recs[1:])]
        return {"answers": len(recs),
                "answers_after": len(after) + len(inflight),
                "first_answer_s": first,
                "max_stall_s": max(lat) if lat else None,
                "max_gap_s": max(gaps) if gaps else None,
                "median_latency_ms": sorted(lat)[len(lat) // 2] * 1000 if lat else None}
