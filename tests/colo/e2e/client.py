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
check.  One request is outstanding at a time; the next one leaves
interval_s after the previous answer (the request rate, not a wait for a
condition).  Every request is logged as (k, sent, answered) in
time.monotonic() seconds.

Threading: the request thread owns the socket until stop(); records and
errors are read by the test thread under self.lock.
"""

import socket
import threading
import time


class ClientError(AssertionError):
    pass


class Client:
    def __init__(self, sock, interval_s=0.05, answer_timeout_s=120.0):
        self.sock = sock
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
        return line.rstrip(b"\r").decode(errors="replace")

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
                self.sock.sendall(req.encode() + b"\n")
                line = self._readline(sent + self.answer_timeout_s)
                answered = time.monotonic()
                n_text, _, rest = line.partition(" ")
                if not n_text.isdigit() or rest != req:
                    raise ClientError("request %d: wrong answer %r" % (k, line))
                n = int(n_text)
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
