#!/usr/bin/env python3
"""TLS on every COLO channel: a pair started and protected by qemu-colo-ctl
with tls-dir; only the pair's peer gets in.

Certificates are made at run time with certtool in the run's temporary
directory (tls_certs.py): the pair's CA, one certificate per node (each
node's QEMU sees its own at the configured tls-dir: a private mount
namespace per node, as on hosts of their own), an impostor CA with
certificates named like the nodes, and a certificate of the pair's CA for
another name.

The impostor ("on the link": in the other node's network namespace) tries
each COLO listener in four ways: plain (the channel's own protocol without
TLS), TLS without a certificate, TLS with a certificate of another CA named
like the peer, TLS with a certificate of the pair's CA for another name.
The migration listener and the proxy's chardev servers accept one peer and
only until it has connected, so they are tried in the window where they
listen and the real peer has not come yet: the tool's `migrate` is held
back by a QMP interposer on the primary's monitor, and the secondary's
connections to the proxy ports are refused by a routing rule (ip rule ...
sport 32768-60999 prohibit; the impostor binds a lower source port).  The
NBD export serves any number of clients: it is tried again while the pair
is protected.

TAP lines (one run, one pair):
  tls error       a secondary with a certificate of another CA: protect
                  fails and the error names the channel ("NBD: ...")
  tls listeners   every listener refuses every impostor before the pair is
                  protected, and the pair still gets protected
  tls status      qemu-colo-ctl status shows each channel encrypted
  tls protected   the NBD export of the protected pair refuses every
                  impostor; checkpoints continue
  tls kill        kill -9 of the primary with TLS on: failover, the
                  client's one connection survives, records on disk
"""

import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
from colo_vm import wait_for  # noqa: E402
from tap import Tap  # noqa: E402
from topology import PRI_LINK_IP, SEC_LINK_IP, Topology, missing_requirements  # noqa: E402
import tls_certs  # noqa: E402
import tool_pair as tr  # noqa: E402
from tool_pair import ToolPair, ctl, log  # noqa: E402
from e2e_pair import open_client  # noqa: E402

PORTS = {"mirror": 9003, "compare": 9004, "migration": 9998, "nbd": 9999}
MODES = ("plain", "no-cert", "other-ca", "other-name")
ATTEMPT_S = 5
t = Tap()


# ---- the impostor -------------------------------------------------------------

class Refused(Exception):
    pass


def recvall(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("closed by the server")
        buf += d
    return buf


def tls_context(certs, mode, peer):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE         # the impostor trusts anyone
    d = {"other-ca": certs.evil_dir.get(peer), "other-name": certs.stranger_dir}.get(mode)
    if d:
        ctx.load_cert_chain(os.path.join(d, "client-cert.pem"),
                            os.path.join(d, "client-key.pem"))
    return ctx


def tls_wrap(sock, certs, mode, peer):
    """The TLS handshake, then one read: QEMU checks the client's
    certificate and the authz once the handshake is done (TLS 1.3: the
    client finishes first) and closes; refused = an alert or the close."""
    try:
        ss = tls_context(certs, mode, peer).wrap_socket(sock)
    except (ssl.SSLError, ConnectionError, EOFError) as e:
        raise Refused("handshake: %s" % e)
    return ss


def nbd_option(s, opt, data=b""):
    s.sendall(b"IHAVEOPT" + struct.pack(">II", opt, len(data)) + data)
    magic, o, typ, ln = struct.unpack(">QIII", recvall(s, 20))
    recvall(s, ln)
    return typ


def nbd_attempt(s, certs, mode, peer):
    """Verdict of one NBD impostor: 'accepted' when the server lists its
    exports to it."""
    g = recvall(s, 18)
    assert g[:16] == b"NBDMAGICIHAVEOPT", g
    s.sendall(struct.pack(">I", 3))             # fixed newstyle, no zeroes
    if mode != "plain":
        typ = nbd_option(s, 5)                  # NBD_OPT_STARTTLS
        if typ == 1:                            # ACK: TLS now
            s = tls_wrap(s, certs, mode, peer)
        # a server without TLS: the impostor just goes on in plain
    typ = nbd_option(s, 3)                      # NBD_OPT_LIST
    if typ in (1, 2):
        return "accepted", "the export list (reply type %d)" % typ
    raise Refused("NBD option reply 0x%x" % typ)


def stream_attempt(s, certs, mode, peer):
    """A chardev or migration listener: plain sends bytes as a peer would
    (no answer expected: the server-side check decides), TLS must end in a
    refusal."""
    if mode == "plain":
        s.sendall(b"\0" * 64)
        try:
            d = s.recv(1)
        except socket.timeout:
            return "silent", "connection open, nothing received"
        if not d:
            raise Refused("closed by the server")
        return "accepted", "data from the server"
    ss = tls_wrap(s, certs, mode, peer)
    try:
        d = ss.recv(1)
    except (ssl.SSLError, ConnectionError) as e:
        raise Refused("after the handshake: %s" % e)
    except socket.timeout:
        return "accepted", "TLS session open"
    if not d:
        raise Refused("closed after the handshake")
    return "accepted", "data in the TLS session"


class Impostor:
    def __init__(self, topo, certs):
        self.topo = topo
        self.certs = certs
        self.sport = 20000

    def attempt(self, channel, mode, server_check=None):
        """One connection to `channel`; returns (verdict, detail).  The
        primary's listeners are tried from the secondary's namespace, the
        secondary's from the primary's."""
        on_primary = channel in ("mirror", "compare")
        ns = self.topo.sec if on_primary else self.topo.pri
        host = PRI_LINK_IP if on_primary else SEC_LINK_IP
        peer = "b" if on_primary else "a"       # whom the listener expects
        s = self.topo.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        if on_primary:                  # below the range the rule blocks
            self.sport += 1
            s.bind((SEC_LINK_IP, self.sport))
        s.settimeout(ATTEMPT_S)
        try:
            try:
                s.connect((host, PORTS[channel]))
            except ConnectionRefusedError:      # an earlier impostor killed it
                log("impostor %-9s %-10s -> no listener" % (channel, mode))
                return "no listener", "connection refused: the listener is gone"
            except socket.timeout:              # its backlog full: taken
                log("impostor %-9s %-10s -> not accepted in %d s (listener busy)"
                    % (channel, mode, ATTEMPT_S))
                return "busy", "the listener is busy with another client"
            local_port = s.getsockname()[1]
            fn = nbd_attempt if channel == "nbd" else stream_attempt
            try:
                verdict, detail = fn(s, self.certs, mode, peer)
            except Refused as e:
                verdict, detail = "refused", str(e)
            except (EOFError, ConnectionError) as e:
                verdict, detail = "refused", "closed: %s" % e
            except socket.timeout:
                verdict, detail = "silent", "no answer in %d s" % ATTEMPT_S
            if server_check:
                seen = server_check(local_port)
                if seen:
                    verdict, detail = "accepted", seen
        finally:
            s.close()
        log("impostor %-9s %-10s -> %s (%s)" % (channel, mode, verdict, detail))
        return verdict, detail


def check_verdicts(results):
    """TLS impostors must be refused; a plain one must not get in."""
    bad = ["%s/%s: %s (%s)" % (c, m, v, d) for (c, m), (v, d) in results.items()
           if v == "accepted" or (m != "plain" and v != "refused")]
    assert not bad, "impostors not refused: " + "; ".join(bad)


# ---- a QMP interposer that holds back `migrate` ---------------------------------

class QmpInterposer(threading.Thread):
    """Listens at the primary's configured QMP path (QEMU's own socket is
    moved aside, its listener stays) and forwards; holds a `migrate`
    command until release() while hold is set."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.real = path + ".real"
        os.rename(path, self.real)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.held = threading.Event()
        self.go = threading.Event()
        self.hold = True
        self.stopped = False

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            q = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            q.connect(self.real)
            threading.Thread(target=self.pipe, args=(q, c, False), daemon=True).start()
            threading.Thread(target=self.pipe, args=(c, q, True), daemon=True).start()

    def pipe(self, src, dst, from_client):
        buf = b""
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if not from_client:
                    dst.sendall(d)
                    continue
                buf += d
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if self.hold and re.search(rb'"execute":\s*"migrate"', line):
                        self.held.set()
                        self.go.wait(600)
                    dst.sendall(line + b"\n")
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def release(self):
        self.hold = False
        self.go.set()

    def stop(self):
        self.release()
        self.stopped = True
        self.srv.close()
        try:
            os.unlink(self.path)
            os.rename(self.real, self.path)
        except OSError:
            pass


# ---- the run ---------------------------------------------------------------------

def write_config(pair, certs, bad_b=False, tls=True):
    """The pair's configuration with tls-dir and each node's own
    credentials (bad_b: node b's from the impostor CA); tls=False: the
    same pair without TLS (bench/tls.py)."""
    with open(pair.config) as f:
        lines = f.read().splitlines()
    out = []
    node = None
    for line in lines:
        m = re.match(r"\[node (\w+)\]", line)
        if m:
            node = m.group(1)
        if line.startswith("launcher = ") or line.startswith("tls-dir") or \
                line.startswith("port-"):
            continue
        out.append(line)
        if line == "[pair]":
            if tls:
                out.append("tls-dir = %s" % certs.tls_dir)
            out += ["port-%s = %d" % (k, v) for k, v in
                    (("mirror", PORTS["mirror"]), ("compare", PORTS["compare"]),
                     ("migrate", PORTS["migration"]), ("nbd", PORTS["nbd"]))]
        if m:
            ns = getattr(pair.topo, ToolPair.HOSTS[node][0])
            d = certs.evil_dir[node] if (bad_b and node == "b") else certs.node_dir[node]
            out.append("launcher = " + (tls_certs.launcher(d, certs.tls_dir, ns) if tls
                                        else "ip netns exec %s" % ns))
    with open(pair.config, "w") as f:
        f.write("\n".join(out) + "\n")
    # heartbeat authentication is another test's business (test_heartbeat):
    # off where this build's configuration asks for a key
    r = subprocess.run([tr.CTL, "status", pair.config], capture_output=True, text=True)
    if "heartbeat-key-file" in r.stderr:
        out.insert(out.index("[pair]") + 1, "heartbeat-auth = none")
        with open(pair.config, "w") as f:
            f.write("\n".join(out) + "\n")


STAGES = ["error", "listeners", "status", "protected", "kill"]
TITLES = {
    "error": "tls error: a secondary whose certificate comes from another CA: "
             "protect fails, the error names the channel",
    "listeners": "tls listeners: migration, NBD, mirror and compare listeners "
                 "refuse impostors (plain, no certificate, another CA, another "
                 "name) before protection; the pair is then protected",
    "status": "tls status: qemu-colo-ctl status shows every channel encrypted",
    "protected": "tls protected: the NBD export of the protected pair refuses "
                 "impostors, checkpoints continue",
    "kill": "tls kill: kill -9 of the primary with TLS on: failover, the client's "
            "connection survives, acknowledged records on the survivor's disk",
}


def scenario(results):
    """Each stage records its own result; a failed stage is followed by a
    recovery so that the next stages still run (on the code before the TLS
    wiring every refusal stage fails on its own)."""
    topo = Topology()
    pair = None
    st = {"proxy": None, "client": None, "rules": []}
    tmp = tempfile.mkdtemp(prefix="colo-tls-")

    def rule(op, ch):
        topo.ip(topo.sec, "rule", op, "ipproto", "tcp", "sport", "32768-60999",
                "dport", str(PORTS[ch]), "prohibit")
        if op == "add":
            st["rules"].append(ch)
        else:
            st["rules"].remove(ch)

    def stage(name, fn):
        try:
            fn()
        except BaseException as e:          # recorded, the next stages run
            results[name] = e
            import traceback
            for line in traceback.format_exc().splitlines():
                log(line)
            return False
        results[name] = None
        log("stage %s passed" % name)
        return True

    def a_alone():
        """Node a serves alone, node b stopped (whatever the stage left)."""
        ctl("stop", pair.config, "--node", "b")
        if pair.mode("a") != "none":
            wait_for(lambda: pair.qmp["a"]("query-colo-status")["mode"] == "none"
                     or pair.qmp["a"]("query-colo-status")["reason"] == "error", 60,
                     "node a to notice the secondary's end")
        r = ctl("failover", pair.config, "--node", "a")
        assert r.returncode == 0, r.stderr
        assert pair.mode("a") == "none"

    def protect_plainly():
        a_alone()
        r = ctl("start", pair.config, "--node", "b", "--role", "secondary")
        assert r.returncode == 0, r.stderr
        r = ctl("protect", pair.config)
        assert r.returncode == 0, r.stderr

    try:
        topo.setup()
        certs = tls_certs.PairCerts(tmp, {"a": PRI_LINK_IP, "b": SEC_LINK_IP})
        pair = ToolPair(topo)
        imp = Impostor(topo, certs)
        write_config(pair, certs, bad_b=True)
        r = ctl("start", pair.config)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: "COLO-GUEST: ready" in pair.serial("a"), 240,
                 "the guest's service on node a")

        def error_stage():
            # a secondary with the impostor CA's certificate
            r = ctl("protect", pair.config)
            assert r.returncode != 0, "protected with a foreign certificate: " + r.stdout
            assert re.search(r"NBD: .*(certificate|Certificate|TLS|handshake)",
                             r.stderr), r.stderr
            assert pair.mode("a") == "none" and \
                pair.qmp["a"]("query-status")["status"] == "running"
        stage("error", error_stage)
        a_alone()
        write_config(pair, certs)

        def listeners_stage():
            # the window before protection: the listeners wait for their peer
            r = ctl("start", pair.config, "--node", "b", "--role", "secondary")
            assert r.returncode == 0, r.stderr
            for ch in ("mirror", "compare"):
                rule("add", ch)
            st["proxy"] = proxy = QmpInterposer(pair.path("a", "qmp.sock"))
            proxy.start()
            prot = {}
            th = threading.Thread(target=lambda: prot.setdefault(
                "r", ctl("protect", pair.config)), daemon=True)
            th.start()
            assert proxy.held.wait(300), "the tool never sent migrate"
            log("migrate held: the listeners wait for their peer")
            mig0 = pair.qmp["b"]("query-migrate").get("status")

            def migration_check(_port):
                if not pair.pid("b"):
                    return "the secondary died"
                s = pair.qmp["b"]("query-migrate").get("status")
                return None if s == mig0 else "incoming migration now '%s'" % s

            def chardev_check(port):
                for c in pair.qmp["a"]("query-chardev"):
                    if c["label"] in ("mirror0", "compare1") and \
                            c["filename"].endswith(":%d" % port):
                        return "%s connected to the impostor: %s" % (c["label"],
                                                                    c["filename"])
                return None

            res = {}
            for ch in ("migration", "nbd", "mirror", "compare"):
                check = {"migration": migration_check, "mirror": chardev_check,
                         "compare": chardev_check}.get(ch)
                for mode in MODES:
                    res[(ch, mode)] = imp.attempt(ch, mode, check)
            for ch in st["rules"][:]:
                rule("del", ch)
            proxy.release()
            th.join(600)
            proxy.stop()
            st["proxy"] = None
            r = prot.get("r")
            assert r is not None, "protect did not end"
            check_verdicts(res)
            assert r.returncode == 0 and "protected: a primary, b secondary" in r.stdout, \
                r.stdout + r.stderr
            assert pair.roles() == ("a", "b")
        if not stage("listeners", listeners_stage):
            if st["proxy"]:
                st["proxy"].stop()
                st["proxy"] = None
            for ch in st["rules"][:]:
                rule("del", ch)
            protect_plainly()

        def status_stage():
            r = ctl("status", pair.config)
            assert r.returncode == 0, r.stderr
            chan = re.findall(r"^  channels: (.*)$", r.stdout, re.M)
            assert len(chan) == 2, r.stdout
            assert re.search(r"migration=tls\(colo-tls-client, peer name b\) nbd=tls "
                             r"proxy=tls\(mirror0, compare1\) peer-allowed=CN=b\b",
                             chan[0]), chan
            assert re.search(r"migration=tls\(colo-tls-server, authz colo-tls-authz\) "
                             r"nbd=tls\(server\) proxy=tls\(red0, red1\) "
                             r"peer-allowed=CN=a\b", chan[1]), chan
        stage("status", status_stage)

        def protected_stage():
            c0 = pair.checkpoints("a")
            wait_for(lambda: pair.checkpoints("a") >= c0 + 2, 90, "two checkpoints")
            res = {("nbd", m): imp.attempt("nbd", m) for m in MODES}
            c1 = pair.checkpoints("a")
            wait_for(lambda: pair.checkpoints("a") >= c1 + 2, 90,
                     "two checkpoints after the impostors")
            assert pair.roles() == ("a", "b")
            check_verdicts(res)
        stage("protected", protected_stage)

        def kill_stage():
            st["client"] = client = open_client(topo)
            c0 = pair.checkpoints("a")
            wait_for(lambda: pair.checkpoints("a") >= c0 + 2, 90,
                     "checkpoints with the client running")
            survivor, dead = tr.fail(pair, topo, client, "primary")
            assert (survivor, dead) == ("b", "a")
            with client.lock:
                last = client.base + len(client.records)
            n = tr.guest_records(pair, survivor, client.base + 1, last)
            client.stop()
            log("node b took over with TLS on; %d acknowledged records on its disk, "
                "client at %d answers on its one connection" % (n, client.answers()))
        stage("kill", kill_stage)
    except BaseException:
        import traceback
        for line in traceback.format_exc().splitlines():
            log(line)
    finally:
        if st["client"]:
            st["client"]._stop = True
            st["client"].close()
        for ch in st["rules"][:]:
            rule("del", ch)
        if st["proxy"]:
            st["proxy"].stop()
        if pair:
            try:
                pair.stop()
            except AssertionError as e:
                log("stop: %s" % e)
        procs = topo.pids()
        topo.teardown()
        subprocess.run(["rm", "-rf", tmp])
        assert not procs, "processes left in our namespaces: %s" % procs
        assert not topo.leftovers(), "namespaces left behind"


def main():
    why = missing_requirements() or (None if tls_certs.available() else
                                     "certtool (gnutls-bin) missing")
    results = {}
    if not why:
        scenario(results)
    for name in STAGES:
        def check(name=name):
            if name not in results:
                raise AssertionError("not reached (an earlier stage failed)")
            if results[name] is not None:
                raise results[name]
        t.check_unless(why, TITLES[name], check)
    sys.exit(t.finish())


if __name__ == "__main__":
    main()
