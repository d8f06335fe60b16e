"""A unix-socket proxy between the COLO primary and secondary that can
corrupt or cut the primary-to-secondary stream at a chosen checkpoint message.

It recognises our control messages (colo-proto.h: 28 bytes, the last 4 a
CRC32C of the first 24) by their checksum, so it can act on exactly the
device state of a given checkpoint.
"""

import os
import select
import socket
import struct
import threading
import time

COLO_MSG_RAM = 4
COLO_MSG_DEVICE_STATE = 5
MSG_SIZE = 28


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data, crc=0xFFFFFFFF):
    """QEMU's crc32c(crc, data, len), which inverts its result."""
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def parse_msg(buf):
    """(type, seq, length, crc, flags) if buf is a valid control message."""
    if len(buf) != MSG_SIZE:
        return None
    if struct.unpack(">I", buf[24:28])[0] != crc32c(buf[:24]):
        return None
    return struct.unpack(">IIQII", buf[:24])


class StreamProxy:
    """mode 'corrupt': flip one byte inside the device state of checkpoint
    `seq`; mode 'cut': close both connections halfway through it; mode
    'hold': stop forwarding there (the checkpoint stays in flight) until one
    side goes away, then close both; mode 'drip': from there on, forward
    only drip_rate bytes/s for drip_seconds (a slow link: the checkpoint
    progresses, slowly), then at full speed.  `phase` picks the device state
    (COLO_MSG_DEVICE_STATE) or, for 'hold' and 'drip', the RAM stream
    (COLO_MSG_RAM)."""

    def __init__(self, workdir, mode, seq, phase=COLO_MSG_DEVICE_STATE,
                 drip_seconds=20, drip_rate=64 * 1024):
        self.path = os.path.join(workdir, "proxy.sock")
        self.mode = mode
        self.drip_seconds = drip_seconds
        self.drip_rate = drip_rate      # bytes per second while dripping
        self.seq = seq
        self.phase = phase
        self.acted = threading.Event()
        self._closed = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(1)
        self._target = None
        self._conns = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def start(self, target_path):
        self._target = target_path
        self._thread.start()
        return self.path

    def close(self):
        self._closed.set()
        for c in self._conns + [self._listener]:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.connect(self._target)
        self._conns += [client, server]
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
        self._pump(client, server, True)

    def _pump(self, src, dst, inspect):
        window = b""          # last bytes seen, to find a message split over reads
        pending = None        # offset of the byte to act on, in bytes still to come
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if inspect and not self.acted.is_set():
                    if pending is None:
                        pending = self._find_target(window + data, len(window))
                    if pending is not None and pending < len(data):
                        if self.mode == "hold":
                            dst.sendall(data[:pending])
                            self.acted.set()
                            # Hold the rest, unread, until a side goes away.
                            self._hold_until_hangup(src)
                            self.close()
                            return
                        if self.mode == "drip":
                            dst.sendall(data[:pending])
                            self.acted.set()
                            if not self._drip(src, dst, data[pending:]):
                                break
                            continue
                        if self.mode == "cut":
                            dst.sendall(data[:pending])
                            self.acted.set()
                            self.close()
                            return
                        data = bytearray(data)
                        data[pending] ^= 0xFF
                        data = bytes(data)
                        self.acted.set()
                    elif pending is not None:
                        pending -= len(data)
                    window = (window + data)[-(MSG_SIZE - 1):]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for c in (src, dst):
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            if not inspect:
                # The secondary side ended: nothing more can flow.
                self._closed.set()

    def _drip(self, src, dst, rest):
        """Forward at drip_rate for drip_seconds; False if src hung up."""
        tick = 0.1
        chunk = max(1, int(self.drip_rate * tick))
        end = time.monotonic() + self.drip_seconds
        while time.monotonic() < end:
            if not rest:
                rest = src.recv(chunk)
                if not rest:
                    return False
            dst.sendall(rest[:chunk])
            rest = rest[chunk:]
            time.sleep(tick)        # pacing the link, not waiting for a state
        if rest:
            dst.sendall(rest)
        return True

    def _hold_until_hangup(self, src):
        """Wait, without reading (so the sender stays blocked where it is),
        until src hangs up or the other direction ended."""
        poller = select.poll()
        poller.register(src, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
        while not self._closed.is_set():
            if poller.poll(100):
                return

    def _find_target(self, buf, window_len):
        """Offset, relative to the new data, of the byte to act on: the middle
        of the target device state, or for the RAM stream just after its
        header; None if the header is not in buf."""
        head = struct.pack(">II", self.phase, self.seq)
        i = buf.find(head)
        while i >= 0:
            msg = parse_msg(buf[i:i + MSG_SIZE])
            if msg:
                return i + MSG_SIZE - window_len + msg[2] // 2
            i = buf.find(head, i + 1)
        return None
