#!/usr/bin/env python3
"""make install into a temporary DESTDIR, then the demo from the installed
files only.

- the installed tree has QEMU under PREFIX/libexec/qemu-colo (never a name of
  Debian's qemu packages), the tools in PREFIX/bin, the OCF agent and docs;
- every shared library the installed programs need is found;
- the installed QEMU offers kvm and tcg and accepts tls-creds-x509;
- make demo's script runs with the installed QEMU, qemu-img, qemu-colo-ctl
  and qemu-colo-agent (QEMU_COLO_BINARY, QEMU_COLO_IMG, QEMU_COLO_CTL,
  QEMU_COLO_AGENT), nothing from the build tree.
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
from colo_vm import REPO_ROOT  # noqa: E402
from tap import Tap  # noqa: E402

PREFIX = "/usr/local"
t = Tap()
dest = tempfile.mkdtemp(prefix="colo-install-")
root = dest + PREFIX
LIBEXEC = os.path.join(root, "libexec", "qemu-colo")
PROGRAMS = [os.path.join(LIBEXEC, p) for p in ("qemu-system-x86_64", "qemu-img", "qemu-nbd")]
PROGRAMS += [os.path.join(root, "bin", p) for p in ("qemu-colo-ctl", "qemu-colo-agent")]


def install():
    r = subprocess.run(["make", "-C", REPO_ROOT, "install", "PREFIX=" + PREFIX,
                        "DESTDIR=" + dest], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for p in PROGRAMS + [os.path.join(root, "lib", "ocf", "resource.d", "qemu", "colo"),
                         os.path.join(root, "share", "doc", "qemu-colo", "qemu-colo.rst")]:
        assert os.path.isfile(p) and os.access(p, os.R_OK), "missing: " + p
    assert not os.path.exists(os.path.join(root, "bin", "qemu-system-x86_64")), \
        "QEMU must not be installed under a name of Debian's packages on PATH"


def libraries_found():
    for p in PROGRAMS:
        out = subprocess.run(["ldd", p], capture_output=True, text=True).stdout
        assert "not found" not in out, "%s: %s" % (p, out)


def accelerators_and_tls():
    qemu = PROGRAMS[0]
    out = subprocess.run([qemu, "-accel", "help"], capture_output=True, text=True).stdout
    assert "kvm" in out.split() and "tcg" in out.split(), out
    # Accepted: the only complaint is about the (absent) certificate files.
    r = subprocess.run([qemu, "-machine", "none", "-display", "none", "-object",
                        "tls-creds-x509,id=t0,dir=%s,endpoint=client" % dest],
                       capture_output=True, text=True, timeout=60)
    assert "ca-cert.pem" in r.stderr and "GNUTLS" not in r.stderr, r.stderr


def demo_from_installed_tree():
    env = dict(os.environ, QEMU_COLO_BINARY=PROGRAMS[0], QEMU_COLO_IMG=PROGRAMS[1],
               QEMU_COLO_CTL=PROGRAMS[3], QEMU_COLO_AGENT=PROGRAMS[4])
    r = subprocess.run([sys.executable, os.path.join(HERE, "e2e", "demo.py")], env=env,
                       capture_output=True, text=True, timeout=900)
    failed = [line for line in r.stdout.splitlines() if line.startswith("not ok")]
    assert r.returncode == 0 and not failed, (r.stdout[-3000:] + r.stderr[-2000:])
    assert PROGRAMS[0] in r.stdout, "the demo did not show the installed QEMU in its config"


def main():
    try:
        t.check("make install DESTDIR=... PREFIX=%s: QEMU in libexec/qemu-colo, tools, "
                "OCF agent, docs" % PREFIX, install)
        t.check("installed programs find every shared library", libraries_found)
        t.check("installed QEMU: -accel help lists kvm and tcg; tls-creds-x509 accepted",
                accelerators_and_tls)
        t.check("the demo runs from the installed files only", demo_from_installed_tree)
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
