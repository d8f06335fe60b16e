"""Ethernet frames for the proxy tests, and the proxy's socket framing
(stdlib only).

    from frames import tcp, udp, frame
    f = tcp(1000, b"data", ts=1)            # Ethernet + IPv4 + TCP
    sock.sendall(frame(f))                  # colo-compare's length prefix

The defaults build what colo-compare's tests need (zero checksums, fixed
MACs, 10.0.0.2 -> 10.0.0.1); checksum=True, df=True and the MACs make a
frame a real guest accepts (tests/colo/test_proxy_e2e.py).
"""

import socket
import struct

MAC_A = bytes.fromhex("525400000001")
MAC_B = bytes.fromhex("525400000002")


def csum(data):
    """The Internet checksum (RFC 1071) of data."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def eth(payload, ethertype=0x0800, vlan=None, dst=MAC_A, src=MAC_B):
    hdr = dst + src
    if vlan is not None:
        hdr += struct.pack("!HH", 0x8100, vlan)
    return hdr + struct.pack("!H", ethertype) + payload


def ipv4(proto, l4, ip_id=1, src="10.0.0.2", dst="10.0.0.1", df=False,
         checksum=False):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ip_id,
                      0x4000 if df else 0, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    if checksum:
        hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + l4


def tcp(seq, data=b"", ack=1, flags=0x18, sport=80, dport=40000, window=512,
        ts=None, ip_id=1, src="10.0.0.2", dst="10.0.0.1", checksum=False,
        df=False, dst_mac=MAC_A, src_mac=MAC_B):
    opts = b""
    if ts is not None:
        opts = b"\x01\x01\x08\x0a" + struct.pack("!II", ts, 0)
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xffffffff,
                      ack & 0xffffffff, (20 + len(opts)) // 4 << 4, flags,
                      window, 0, 0) + opts + data
    if checksum:
        pseudo = (socket.inet_aton(src) + socket.inet_aton(dst) +
                  struct.pack("!HH", 6, len(seg)))
        seg = seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]
    return eth(ipv4(6, seg, ip_id=ip_id, src=src, dst=dst, df=df,
                    checksum=checksum), dst=dst_mac, src=src_mac)


def udp(data, sport=53, dport=4444, ip_id=1):
    return eth(ipv4(17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data,
                    ip_id=ip_id))


def frame(data, vnet_len=None):
    """data with the length prefix (and vnet header length) of the proxy's
    socket chardevs."""
    if vnet_len is None:
        return struct.pack("!I", len(data)) + data
    return struct.pack("!II", len(data), vnet_len) + data
