#!/usr/bin/env bash
# Install what `make` built:   make install [PREFIX=/usr/local] [DESTDIR=]
#
#   PREFIX/libexec/qemu-colo/   qemu-system-x86_64, qemu-img, qemu-nbd: our QEMU,
#                               in a directory of its own so that it never
#                               shadows or clashes with Debian's qemu packages
#                               (/usr/bin/qemu-*); the pair configuration names
#                               it (qemu = PREFIX/libexec/qemu-colo/qemu-system-x86_64)
#   PREFIX/bin/                 qemu-colo-ctl, qemu-colo-agent
#   PREFIX/lib/ocf/resource.d/qemu/colo    the Pacemaker resource agent
#   PREFIX/share/doc/qemu-colo/ the documentation (reStructuredText)
#
# Firmware comes from Debian's seabios, ipxe-qemu and qemu-system-data
# packages (the configured firmware path), as for the build tree.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
OBJ="${QEMU_COLO_BUILD:-$top/build}/qemu"
PREFIX="${PREFIX:-/usr/local}"
DESTDIR="${DESTDIR:-}"

die() { echo "install: error: $*" >&2; exit 1; }
case "$PREFIX" in /*) ;; *) die "PREFIX must be an absolute path, not '$PREFIX'" ;; esac

root="$DESTDIR$PREFIX"
for f in qemu-system-x86_64 qemu-img qemu-nbd tools/colo/qemu-colo-ctl \
         tools/colo/qemu-colo-agent; do
    [ -x "$OBJ/$f" ] || die "$OBJ/$f is missing: run make first"
done
for f in qemu-system-x86_64 qemu-img qemu-nbd; do
    install -D -m 755 "$OBJ/$f" "$root/libexec/qemu-colo/$f"
done
install -D -m 755 "$OBJ/tools/colo/qemu-colo-ctl" "$root/bin/qemu-colo-ctl"
install -D -m 755 "$OBJ/tools/colo/qemu-colo-agent" "$root/bin/qemu-colo-agent"
install -D -m 755 "$top/tools/colo/ocf/colo" "$root/lib/ocf/resource.d/qemu/colo"
for f in "$top"/docs/system/qemu-colo*.rst; do
    install -D -m 644 "$f" "$root/share/doc/qemu-colo/$(basename "$f")"
done
echo "install: installed into $root (QEMU in $PREFIX/libexec/qemu-colo)"
