#!/usr/bin/env bash
# Build and run the COLO proxy fuzz target (tests/unit/colo/test-colo-fuzz.c)
# with libFuzzer + AddressSanitizer + UBSan.  Needs clang; uses the
# configured build tree for config-host.h.
#
#   tests/colo/fuzz/build-libfuzzer.sh [seconds]     default 60
#
# Crashes are written to build/fuzz/ (libFuzzer's crash-* files).
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
OUT="${QEMU_COLO_BUILD:-$top/build}"
secs="${1:-60}"
CC="${CLANG:-clang}"
command -v "$CC" >/dev/null || { echo "fuzz: $CC not found" >&2; exit 1; }
mkdir -p "$OUT/fuzz/corpus"
src="$OUT/src"
"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -DCOLO_LIBFUZZER \
    -std=gnu11 -I"$src" -I"$OUT/qemu" -I"$src/include" -I"$src/tests/unit/colo" \
    $(pkg-config --cflags glib-2.0) \
    "$src/net/colo-packet.c" "$src/net/colo-frame.c" "$src/net/colo-stream.c" \
    "$src/net/colo-rewriter.c" "$src/tests/unit/colo/test-colo-fuzz.c" \
    $(pkg-config --libs glib-2.0) -o "$OUT/fuzz/fuzz-colo-proxy"
cd "$OUT/fuzz"
./fuzz-colo-proxy -max_total_time="$secs" -max_len=4096 -print_final_stats=1 corpus
