#!/usr/bin/env bash
# The COLO proxy unit tests (parser, frame reader, compare engine, rewriter,
# fuzz smoke test) built once more with AddressSanitizer and UBSan and run:
# malformed input must never read or write out of bounds.  The engines are
# pure C + GLib, so they are compiled directly from the assembled tree,
# independently of the QEMU build's flags.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"
src="$OUT/src"
dir="$OUT/asan"
CC="${CC:-gcc}"
mkdir -p "$dir"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

declare -A sources=(
    [test-colo-packet]="net/colo-packet.c net/colo-frame.c"
    [test-colo-stream]="net/colo-packet.c net/colo-stream.c"
    [test-colo-rewriter]="net/colo-packet.c net/colo-rewriter.c"
    [test-colo-fuzz]="net/colo-packet.c net/colo-frame.c net/colo-stream.c net/colo-rewriter.c"
)
rc=0
for t in test-colo-packet test-colo-stream test-colo-rewriter test-colo-fuzz; do
    files=()
    for f in ${sources[$t]} "tests/unit/colo/$t.c"; do
        files+=("$src/$f")
    done
    # shellcheck disable=SC2046
    if ! "$CC" -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined \
            -fno-omit-frame-pointer -std=gnu11 -I"$src" -I"$OUT/qemu" \
            -I"$src/include" -I"$src/tests/unit/colo" \
            $(pkg-config --cflags glib-2.0) "${files[@]}" \
            $(pkg-config --libs glib-2.0) -o "$dir/$t" 2> "$dir/$t.build.log"; then
        cat "$dir/$t.build.log"
        echo "not ok - $t (ASan/UBSan build) failed to compile"
        rc=1
        continue
    fi
    echo "# $t (ASan/UBSan)"
    "$dir/$t" --tap 2>&1 | sed "s|^\(not \)\{0,1\}ok \([0-9]*\) |&asan: |"
    status=${PIPESTATUS[0]}
    if [ "$status" != 0 ]; then
        echo "not ok - $t (ASan/UBSan) exited with status $status"
        rc=1
    fi
done
exit $rc
