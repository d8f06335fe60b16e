#!/usr/bin/env bash
# Configure (once, with the fixed options in assembly/configure-args) and build
# the assembled tree in build/qemu.  Re-configures only when those options change.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"
SRC="$OUT/src"
OBJ="$OUT/qemu"
args_file="$top/assembly/configure-args"

mkdir -p "$OUT"
# One assembly or build at a time per output directory (helpers share it).
exec 9>"$OUT/.lock"
flock 9

[ -x "$SRC/configure" ] || { echo "build: error: no assembled tree in $SRC" >&2; exit 1; }

mapfile -t args < <(grep -vE '^\s*(#|$)' "$args_file")
if [ ! -f "$OBJ/build.ninja" ] || ! cmp -s "$args_file" "$OBJ/.qemu-colo-configure-args"; then
    rm -rf "$OBJ"
    mkdir -p "$OBJ"
    echo "build: configuring (${args[*]})"
    (cd "$OBJ" && "$SRC/configure" "${args[@]}") > "$OUT/configure.log" 2>&1 ||
        { tail -30 "$OUT/configure.log"; echo "build: error: configure failed (see $OUT/configure.log)" >&2; exit 1; }
    cp "$args_file" "$OBJ/.qemu-colo-configure-args"
fi

# Run QEMU from the build tree: its relocated firmware directories must point
# at Debian's firmware packages.
bundle="$OBJ/qemu-bundle"
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    mkdir -p "$bundle$(dirname "$d")"
    [ -e "$bundle$d" ] || ln -s "$d" "$bundle$d"
done

targets=(qemu-system-x86_64 qemu-img qemu-nbd tools/colo/qemu-colo-ctl
         tools/colo/qemu-colo-agent "$@")
echo "build: ninja ${targets[*]}"
ninja -C "$OBJ" "${targets[@]}"
