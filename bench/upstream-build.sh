#!/usr/bin/env bash
# Build upstream QEMU 10.0.13's own COLO, for benchmarks only (never part of
# the product): the pinned tarball, unpacked into build/upstream/src, plus
#  - the one-line lock fix without which upstream's primary deadlocks at its
#    first checkpoint under TCG: the big lock around qemu_savevm_live_state()
#    in migration/colo.c (see /work/shared/qemu-base.md, "Which QEMU");
#  - the +ds build fix our patch 0001 makes too (no edk2 blobs to unpack).
# Configured as our build is (assembly/configure-args) less the tools, so the
# two binaries differ only in their COLO; builds qemu-system-x86_64 alone.
# Idempotent: does nothing when the binary is there.
#
# Usage: upstream-build.sh   prints the path of the binary on its last line.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}/upstream"
CACHE="${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}"
TARBALL="$CACHE/qemu_10.0.13+ds.orig.tar.xz"
SHA256="6a0888e806c2ffc0c5f0733e974f9aea55491950d3c47c98669c8b236dde59ae"
SRC="$OUT/src"
OBJ="$OUT/build"
BIN="$OBJ/qemu-system-x86_64"

log() { echo "upstream-build: $*" >&2; }

mkdir -p "$OUT"
exec 9>"$OUT/.lock"
flock 9

if [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi

if [ ! -f "$SRC/.unpacked" ]; then
    [ -f "$TARBALL" ] || { log "error: no $TARBALL (run make first)"; exit 1; }
    echo "$SHA256  $TARBALL" | sha256sum -c --quiet - ||
        { log "error: checksum mismatch on $TARBALL"; exit 1; }
    log "unpacking into $SRC"
    rm -rf "$SRC"
    mkdir -p "$SRC"
    tar -xJf "$TARBALL" -C "$SRC" --strip-components=1
    # The lock fix: upstream calls qemu_savevm_live_state() without the big
    # lock; under TCG the dirty-bitmap sync inside it waits on a condition
    # paired with that lock and the migration thread blocks on itself.
    grep -q '^    qemu_savevm_live_state(s->to_dst_file);$' "$SRC/migration/colo.c" ||
        { log "error: qemu_savevm_live_state call not found in colo.c"; exit 1; }
    sed -i 's/^    qemu_savevm_live_state(s->to_dst_file);$/    bql_lock(); qemu_savevm_live_state(s->to_dst_file); bql_unlock();/' \
        "$SRC/migration/colo.c"
    # The +ds tarball has no edk2 blobs (as assembly/patches/0001).
    sed -i 's/^    unpack_edk2_blobs = bzip2.found()$/    unpack_edk2_blobs = bzip2.found() and get_option('"'"'install_blobs'"'"')/' \
        "$SRC/meson.build"
    grep -q "unpack_edk2_blobs = bzip2.found() and get_option('install_blobs')" "$SRC/meson.build" ||
        { log "error: edk2 fix did not apply to meson.build"; exit 1; }
    touch "$SRC/.unpacked"
fi

if [ ! -f "$OBJ/build.ninja" ]; then
    mapfile -t args < <(grep -vE '^\s*(#|$)' "$top/assembly/configure-args" |
                        grep -v -- '--enable-tools')
    log "configuring (${args[*]})"
    rm -rf "$OBJ"
    mkdir -p "$OBJ"
    (cd "$OBJ" && "$SRC/configure" "${args[@]}") > "$OUT/configure.log" 2>&1 ||
        { tail -30 "$OUT/configure.log" >&2; log "error: configure failed"; exit 1; }
fi

# Run from the build tree: the relocated firmware directories point at
# Debian's firmware packages (as assembly/build.sh does for ours).
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    mkdir -p "$OBJ/qemu-bundle$(dirname "$d")"
    [ -e "$OBJ/qemu-bundle$d" ] || ln -s "$d" "$OBJ/qemu-bundle$d"
done

log "building qemu-system-x86_64 (niced; about 10 minutes on 2 cores)"
nice -n 10 ninja -C "$OBJ" qemu-system-x86_64 > "$OUT/ninja.log" 2>&1 ||
    { tail -30 "$OUT/ninja.log" >&2; log "error: build failed (see $OUT/ninja.log)"; exit 1; }
echo "$BIN"
