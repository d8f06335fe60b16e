"""x509 certificates for a COLO pair, made at run time with certtool
(gnutls-bin): a CA, one certificate per node, in QEMU's tls-creds-x509
directory layout.  Never committed: the callers put them in their run's
temporary directory.

Each node's certificate names the node (subject CN and a DNS name: the
migration and NBD clients check tls-hostname = the node name; the
listeners' authz accepts only the peer's "CN=<node>") and carries its link
address (IP SAN: the proxy's chardev client checks the address it connects
to).  The same certificate serves as server and client certificate.
"""

import os
import shutil
import subprocess

CERTTOOL = shutil.which("certtool") or "/usr/bin/certtool"


def available():
    return os.access(CERTTOOL, os.X_OK)


def _certtool(*args):
    subprocess.run([CERTTOOL] + list(args), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def _template(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def make_ca(d, name="qemu-colo pair CA"):
    """A CA in directory d: d/ca-cert.pem, d/ca-key.pem."""
    os.makedirs(d, exist_ok=True)
    key = os.path.join(d, "ca-key.pem")
    tmpl = os.path.join(d, "ca.info")
    _template(tmpl, ['cn = "%s"' % name, "ca", "cert_signing_key",
                     "expiration_days = 2"])
    _certtool("--generate-privkey", "--outfile", key)
    _certtool("--generate-self-signed", "--load-privkey", key,
              "--template", tmpl, "--outfile", os.path.join(d, "ca-cert.pem"))
    return d


def make_node(ca_dir, out_dir, name, ip=None, trust_ca_dir=None):
    """A certificate for node `name` signed by the CA in ca_dir, as a QEMU
    x509 directory out_dir (ca-cert.pem of trust_ca_dir, default ca_dir)."""
    os.makedirs(out_dir, exist_ok=True)
    key = os.path.join(out_dir, "server-key.pem")
    cert = os.path.join(out_dir, "server-cert.pem")
    tmpl = os.path.join(out_dir, "node.info")
    lines = ['cn = "%s"' % name, 'dns_name = "%s"' % name]
    if ip:
        lines.append("ip_address = %s" % ip)
    lines += ["tls_www_server", "tls_www_client", "encryption_key",
              "signing_key", "expiration_days = 2"]
    _template(tmpl, lines)
    _certtool("--generate-privkey", "--outfile", key)
    _certtool("--generate-certificate", "--load-privkey", key,
              "--load-ca-certificate", os.path.join(ca_dir, "ca-cert.pem"),
              "--load-ca-privkey", os.path.join(ca_dir, "ca-key.pem"),
              "--template", tmpl, "--outfile", cert)
    shutil.copy(cert, os.path.join(out_dir, "client-cert.pem"))
    shutil.copy(key, os.path.join(out_dir, "client-key.pem"))
    shutil.copy(os.path.join(trust_ca_dir or ca_dir, "ca-cert.pem"),
                os.path.join(out_dir, "ca-cert.pem"))
    for f in os.listdir(out_dir):
        if f.endswith("key.pem"):
            os.chmod(os.path.join(out_dir, f), 0o600)
    return out_dir


def placeholder_dir(d, ca_dir):
    """The tls-dir the configuration names, as the host running the tool
    sees it: the pair's CA and files that are no certificate at all, so
    that a QEMU that ever read it instead of its node's own directory
    fails loudly."""
    os.makedirs(d, exist_ok=True)
    shutil.copy(os.path.join(ca_dir, "ca-cert.pem"), os.path.join(d, "ca-cert.pem"))
    for f in ("server-cert.pem", "server-key.pem", "client-cert.pem",
              "client-key.pem"):
        with open(os.path.join(d, f), "w") as fh:
            fh.write("each node mounts its own credentials here\n")
    return d


def launcher(node_dir, tls_dir, netns):
    """A node's launcher: a private mount namespace where the configured
    tls_dir is this node's own directory (as on a host of its own), then
    the node's network namespace."""
    return ("unshare --mount --propagation private sh -c "
            "'mount --bind \"$1\" \"$2\" && shift 2 && exec \"$@\"' sh "
            "%s %s ip netns exec %s" % (node_dir, tls_dir, netns))


class PairCerts:
    """All a test needs: the pair's CA, nodes a and b (with their link
    addresses), an impostor CA with a certificate named like each node, the
    configuration's tls-dir (placeholder) and each node's own directory."""

    def __init__(self, root, nodes, impostors=True):
        self.root = root
        self.ca = make_ca(os.path.join(root, "ca"))
        self.node_dir = {}
        self.evil_dir = {}
        for name, ip in nodes.items():
            self.node_dir[name] = make_node(self.ca, os.path.join(root, "node-" + name),
                                            name, ip)
        self.tls_dir = placeholder_dir(os.path.join(root, "tls"), self.ca)
        if not impostors:
            return
        self.evil_ca = make_ca(os.path.join(root, "evil-ca"), "impostor CA")
        for name, ip in nodes.items():
            # the impostor's: same name, another CA; it trusts both CAs
            # (QEMU checks its own certificate against its ca-cert.pem)
            d = make_node(self.evil_ca, os.path.join(root, "evil-" + name), name, ip)
            with open(os.path.join(d, "ca-cert.pem"), "a") as out, \
                    open(os.path.join(self.ca, "ca-cert.pem")) as pair_ca:
                out.write(pair_ca.read())
            self.evil_dir[name] = d
        # a certificate of the pair's CA but for another name
        self.stranger_dir = make_node(self.ca, os.path.join(root, "stranger"), "stranger")
        # only the pair's CA, no certificate of one's own
        self.nocert_dir = os.path.join(root, "nocert")
        os.makedirs(self.nocert_dir, exist_ok=True)
        shutil.copy(os.path.join(self.ca, "ca-cert.pem"), self.nocert_dir)
