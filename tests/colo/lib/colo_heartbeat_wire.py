"""The heartbeat datagram of qemu-colo-agent, for tests that play a peer or
an attacker, and the pair's heartbeat key file.

Version 2 (tools/colo/colo-heartbeat.h, docs/system/qemu-colo-heartbeat.rst):
128 bytes, network byte order: magic "CHB1", version, health, mode, auth
(0 none, 1 HMAC-SHA256), seq (64 bits), boot id (64 bits), the sender's
wall clock in ms since the epoch, pair and node names (32 bytes each,
NUL-padded), HMAC-SHA256 over the first 96 bytes (zeros without a key).
"""

import hashlib
import hmac
import os
import struct
import time

MAGIC = b"CHB1"
VERSION = 2
BODY = ">4sBBBBQQq32s32s"
BODY_LEN = struct.calcsize(BODY)
WIRE_LEN = BODY_LEN + 32
HEALTH = {"unknown": 0, "running": 1, "stopped": 2, "gone": 3}
MODE = {"unknown": 0, "none": 1, "primary": 2, "secondary": 3}

assert BODY_LEN == 96


def write_key(directory, name="heartbeat.key", size=64):
    """A fresh random key file, mode 0600, as the configuration wants it
    (generated for each run: no key material is committed)."""
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(size))
    finally:
        os.close(fd)
    return path


def read_key(path):
    with open(path, "rb") as f:
        return f.read()


def wall_ms():
    return int(time.time() * 1000)


def encode(seq, boot_id, health, mode, pair, node, key, wall=None):
    """A datagram; key None or b"": unauthenticated (auth none)."""
    if isinstance(health, str):
        health = HEALTH[health]
    if isinstance(mode, str):
        mode = MODE[mode]
    body = struct.pack(BODY, MAGIC, VERSION, health, mode, 1 if key else 0,
                       seq, boot_id, wall_ms() if wall is None else wall,
                       pair.encode(), node.encode())
    mac = hmac.new(key, body, hashlib.sha256).digest() if key else bytes(32)
    return body + mac


def decode(buf):
    """The fields of a datagram (not checked), or None if it is not one."""
    if len(buf) != WIRE_LEN or buf[:4] != MAGIC:
        return None
    (_, version, health, mode, auth, seq, boot_id, wall, pair,
     node) = struct.unpack(BODY, buf[:BODY_LEN])
    return {"version": version, "health": health, "mode": mode, "auth": auth,
            "seq": seq, "boot_id": boot_id, "wall_ms": wall,
            "pair": pair.rstrip(b"\0").decode(errors="replace"),
            "node": node.rstrip(b"\0").decode(errors="replace"),
            "mac": buf[BODY_LEN:]}


def verify(buf, key):
    return hmac.compare_digest(
        hmac.new(key, buf[:BODY_LEN], hashlib.sha256).digest(), buf[BODY_LEN:])
