#!/usr/bin/env bash
# Set up a Debian 12 machine to build QEMU with our COLO:
#  - apt sources: trixie deb-src (for the pinned QEMU source) and bookworm-backports
#    (meson >= 1.5, python3-pycotap, qemu-system-data), on the mirror apt already uses;
#  - build, firmware and test packages;
#  - the pinned upstream tarball, verified by sha256, cached outside the work tree and
#    unpacked there read-only ("pristine").
# Idempotent: a second run checks and does nothing.
set -euo pipefail

QEMU_DEB_VERSION="1:10.0.13+ds-0+deb13u1"
QEMU_ORIG="qemu_10.0.13+ds.orig.tar.xz"
QEMU_SHA256="6a0888e806c2ffc0c5f0733e974f9aea55491950d3c47c98669c8b236dde59ae"
CACHE="${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}"
PRISTINE="$CACHE/qemu-10.0.13"

BUILD_PKGS="build-essential ninja-build pkg-config flex bison libglib2.0-dev
 libpixman-1-dev libslirp-dev libfdt-dev python3-venv dpkg-dev xz-utils rsync
 libgnutls28-dev gnutls-bin libaio-dev"
BACKPORT_PKGS="meson python3-pycotap qemu-system-data"
RUNTIME_PKGS="seabios ipxe-qemu busybox-static cpio iproute2 socat gdb"
# HeartBeat agent: corosync membership/quorum with a qnetd witness (the tests run
# them inside network namespaces), the OCF shell library and ocf-tester, xmllint.
CLUSTER_PKGS="corosync corosync-qdevice corosync-qnetd libquorum-dev libvotequorum-dev
 libcmap-dev resource-agents libxml2-utils"
# The libvirt example of docs/system/qemu-colo.rst (tests/colo/test_libvirt.py
# runs a private libvirtd and virtlogd in namespaces) and a real Pacemaker
# (tests/colo/test_pacemaker.py, two nodes in namespaces); none is started here.
MANAGER_PKGS="libvirt-daemon-system libvirt-clients pacemaker pacemaker-cli-utils"

log() { echo "setup: $*"; }
die() { echo "setup: error: $*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# The mirror apt is configured with, so that we never name a host ourselves.
debian_mirror() {
    local uri=""
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }' \
              /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '/^deb / && $2 !~ /security/ && $0 ~ /bookworm/ { print $2; exit }' \
              /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "cannot find the Debian mirror in apt's sources"
    echo "$uri"
}

setup_apt() {
    local list=/etc/apt/sources.list.d/qemu-colo.sources mirror
    mirror=$(debian_mirror)
    local want
    want="Types: deb-src
URIs: $mirror
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    if [ ! -f "$list" ] || [ "$(cat "$list")" != "$want" ]; then
        log "adding trixie deb-src and bookworm-backports to apt sources"
        echo "$want" | as_root tee "$list" >/dev/null
        as_root rm -f /var/lib/qemu-colo-apt-updated
    fi
    if [ ! -f /var/lib/qemu-colo-apt-updated ]; then
        as_root apt-get update -q
        as_root touch /var/lib/qemu-colo-apt-updated
    fi
}

missing_pkgs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' \
            || echo "$p"
    done
}

# Installing corosync/qnetd must not start cluster daemons on this machine (the
# tests start their own in namespaces): without a policy-rc.d, put one in place
# that denies every start (honoured by invoke-rc.d and deb-systemd-invoke) for
# the duration of the install (an existing policy-rc.d is the admin's choice).
no_daemon_starts() {
    local policy=/usr/sbin/policy-rc.d rc=0
    if [ -e "$policy" ]; then
        "$@" || rc=$?
        return $rc
    fi
    printf '#!/bin/sh\n# qemu-colo setup: no daemon starts while installing\nexit 101\n' \
        | as_root tee "$policy" >/dev/null
    as_root chmod 755 "$policy"
    "$@" || rc=$?
    as_root rm -f "$policy"
    return $rc
}

install_pkgs() {
    local miss
    # shellcheck disable=SC2086
    miss=$(missing_pkgs $BUILD_PKGS $RUNTIME_PKGS $CLUSTER_PKGS $MANAGER_PKGS)
    if [ -n "$miss" ]; then
        log "installing:" $miss
        # shellcheck disable=SC2086
        no_daemon_starts as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends $miss
    fi
    # shellcheck disable=SC2086
    miss=$(missing_pkgs $BACKPORT_PKGS)
    if [ -n "$miss" ] || ! meson_new_enough; then
        log "installing from bookworm-backports:" $BACKPORT_PKGS
        # shellcheck disable=SC2086
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            -t bookworm-backports $BACKPORT_PKGS
    fi
    meson_new_enough || die "meson >= 1.5 is needed; got $(meson --version 2>/dev/null || echo none)"
}

meson_new_enough() {
    local v
    v=$(/usr/bin/meson --version 2>/dev/null) || return 1
    dpkg --compare-versions "$v" ge 1.5
}

verify_tarball() {
    echo "$QEMU_SHA256  $1" | sha256sum -c --status
}

fetch_tarball() {
    mkdir -p "$CACHE"
    local tb="$CACHE/$QEMU_ORIG"
    if [ -f "$tb" ] && verify_tarball "$tb"; then
        return 0
    fi
    [ ! -f "$tb" ] || { log "cached tarball has a wrong checksum; fetching again"; rm -f "$tb"; }
    local tmp
    tmp=$(mktemp -d)
    log "downloading qemu $QEMU_DEB_VERSION source"
    (cd "$tmp" && apt-get source --download-only -q "qemu=$QEMU_DEB_VERSION" >/dev/null) \
        || die "apt-get source qemu=$QEMU_DEB_VERSION failed"
    [ -f "$tmp/$QEMU_ORIG" ] || die "$QEMU_ORIG not among the downloaded files"
    if ! verify_tarball "$tmp/$QEMU_ORIG"; then
        local got
        got=$(sha256sum "$tmp/$QEMU_ORIG" | cut -d' ' -f1)
        rm -rf "$tmp"
        die "CHECKSUM MISMATCH for $QEMU_ORIG: expected $QEMU_SHA256, got $got. Refusing to build from an unverified tarball."
    fi
    mv "$tmp/$QEMU_ORIG" "$tb"
    rm -rf "$tmp"
}

unpack_pristine() {
    local stamp="$PRISTINE/.qemu-colo-pristine-$QEMU_SHA256"
    [ -f "$stamp" ] && return 0
    log "unpacking pristine source into $PRISTINE"
    verify_tarball "$CACHE/$QEMU_ORIG" || die "cached tarball failed verification"
    rm -rf "$PRISTINE" "$PRISTINE.tmp"
    mkdir -p "$PRISTINE.tmp"
    tar -xJf "$CACHE/$QEMU_ORIG" -C "$PRISTINE.tmp" --strip-components=1
    touch "$PRISTINE.tmp/.qemu-colo-pristine-$QEMU_SHA256"
    chmod -R a-w "$PRISTINE.tmp"
    mv "$PRISTINE.tmp" "$PRISTINE"
}

case "${1:-all}" in
    verify-only)
        verify_tarball "${2:?tarball}" || die "CHECKSUM MISMATCH for $2"; exit 0 ;;
    all)
        setup_apt
        install_pkgs
        fetch_tarball
        unpack_pristine
        log "ready: pristine source in $PRISTINE" ;;
    *) die "usage: $0 [all|verify-only TARBALL]" ;;
esac
