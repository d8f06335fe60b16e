#!/usr/bin/env bash
# Tests of the tree assembly (TAP: "ok - ..." / "not ok - ..." lines, the plan last).
#  - a tarball with a wrong checksum is refused with a clear message;
#  - the assembled tree holds none of upstream's COLO implementation;
#  - our repository tracks only our own files (no upstream files, no binaries);
#  - re-assembly is incremental: only files whose content changed are rewritten;
#  - a build directory on another file system than the cache assembles the same tree;
#  - every make target that boots the test guest builds it first.
set -uo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
CACHE="${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}"
PRISTINE="$CACHE/qemu-10.0.13"
SRC="${QEMU_COLO_BUILD:-$top/build}/src"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cases=0
ok() { cases=$((cases + 1)); echo "ok - $*"; }
not_ok() { cases=$((cases + 1)); echo "not ok - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else not_ok "$what"; fi; }

# 1. Checksum: a copy of the tarball with one byte changed must be refused.
corrupt_tarball_refused() {
    local tb="$CACHE/qemu_10.0.13+ds.orig.tar.xz" out
    [ -f "$tb" ] || { echo "# no cached tarball"; return 1; }
    cp "$tb" "$tmp/qemu_10.0.13+ds.orig.tar.xz"
    printf 'X' | dd of="$tmp/qemu_10.0.13+ds.orig.tar.xz" bs=1 seek=1000 conv=notrunc status=none
    if out=$(bash "$top/assembly/setup.sh" verify-only "$tmp/qemu_10.0.13+ds.orig.tar.xz" 2>&1); then
        echo "# corrupt tarball accepted"; return 1
    fi
    grep -q "CHECKSUM MISMATCH" <<<"$out" || { echo "# message: $out"; return 1; }
    bash "$top/assembly/setup.sh" verify-only "$tb"
}
check "a tarball with a wrong sha256 is refused" corrupt_tarball_refused

# 2. No upstream COLO implementation in the assembled tree: every removed file is
#    absent or ours (different content), and ram.c lost its RAM-cache code.
no_upstream_colo_in_tree() {
    local f bad=0
    while read -r f; do
        if [ -e "$SRC/$f" ] && cmp -s "$SRC/$f" "$PRISTINE/$f"; then
            echo "# upstream $f is in the assembled tree"; bad=1
        fi
        if [ -e "$SRC/$f" ] && [ ! -e "$top/$f" ]; then
            echo "# $f is in the tree but is not ours"; bad=1
        fi
    done < <(grep -vE '^\s*(#|$)' "$top/assembly/removed-upstream-files.txt")
    for sym in colo_flush_ram_cache colo_cache_from_block_offset colo_release_ram_cache \
               colo_incoming_start_dirty_log colo_bitmap_find_dirty; do
        if grep -q "$sym" "$SRC/migration/ram.c"; then
            echo "# migration/ram.c still has $sym"; bad=1
        fi
    done
    return $bad
}
check "the assembled tree contains none of upstream's COLO implementation" no_upstream_colo_in_tree

# 3. The repository tracks only our files: nothing identical to or shadowing an
#    upstream file (outside the removed list), no tarballs, no binaries.
repo_holds_only_our_files() {
    local f bad=0 removed
    removed=$(grep -vE '^\s*(#|$)' "$top/assembly/removed-upstream-files.txt")
    while read -r f; do
        case "$f" in
            Makefile|README.md|.gitignore|.ci/*|assembly/*|bench/*) ;;
            *) if [ -e "$PRISTINE/$f" ] && ! grep -qxF "$f" <<<"$removed"; then
                   echo "# $f is an upstream path"; bad=1
               fi ;;
        esac
        case "$f" in *.tar*|*.xz|*.gz|*.bz2|*.img|*.bin|*.o|*.a|*.so)
            echo "# $f looks like an archive or binary"; bad=1 ;;
        esac
        if [ -f "$top/$f" ] && [ "$(tr -d '\000' < "$top/$f" | wc -c)" != "$(wc -c < "$top/$f")" ]; then
            echo "# $f is binary"; bad=1
        fi
    done < <(cd "$top" && git ls-files)
    return $bad
}
check "git ls-files holds only our own sources, patches, docs and scripts" repo_holds_only_our_files

# 4. Incremental re-assembly, on a copy of our files and a private output dir.
incremental_reassembly() {
    local repo="$tmp/repo" out="$tmp/out" f before after changed
    mkdir -p "$repo"
    (cd "$top" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$repo" 2>/dev/null; true)
    (cd "$repo" && git init -q . && git add -A) || return 1
    QEMU_COLO_BUILD="$out" bash "$repo/assembly/assemble.sh" >/dev/null || return 1
    # Age every file, so that a rewrite shows as a newer mtime.
    find "$out/src" -type f -exec touch -d '2000-01-01' {} +
    f=migration/colo-ram.c
    echo "/* incremental re-assembly test */" >> "$repo/$f"
    QEMU_COLO_BUILD="$out" bash "$repo/assembly/assemble.sh" >/dev/null || return 1
    changed=$(find "$out/src" -type f -newermt '2000-01-02' | sed "s|^$out/src/||")
    [ "$changed" = "$f" ] || { echo "# rewritten: ${changed:-nothing}"; return 1; }
    grep -q "incremental re-assembly test" "$out/src/$f"
}
check "re-assembly after editing one file rewrites only that file" incremental_reassembly

# 5. The cached pristine source is what the tarball holds: every file our
#    patches change (and one removed file) is compared with the tarball's copy.
pristine_untouched() {
    local files f bad=0
    files=$(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$top"/assembly/patches/*.patch | sort -u)
    files="$files migration/colo.c"
    mkdir -p "$tmp/tarball"
    # shellcheck disable=SC2086
    tar -xJf "$CACHE/qemu_10.0.13+ds.orig.tar.xz" -C "$tmp/tarball" --strip-components=1 \
        $(for f in $files; do echo "qemu-10.0.13/$f"; done) || return 1
    for f in $files; do
        cmp -s "$tmp/tarball/$f" "$PRISTINE/$f" || { echo "# pristine $f was modified"; bad=1; }
    done
    return $bad
}
check "the cached pristine source is not modified by assembly" pristine_untouched

# 6. A build directory on another file system than the cache (hard links
#    cannot cross it: EXDEV): a tmpfs mounted for the test.
other_file_system() {
    local repo="$tmp/repo6" fs="$tmp/otherfs" rc=0
    [ "$(id -u)" = 0 ] || { echo "# cannot run: mounting a tmpfs needs root"; return 1; }
    mkdir -p "$repo" "$fs"
    (cd "$top" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$repo" 2>/dev/null; true)
    (cd "$repo" && git init -q . && git add -A) || return 1
    mount -t tmpfs -o size=2g tmpfs "$fs" || { echo "# cannot mount a tmpfs"; return 1; }
    if [ "$(stat -c %d "$fs")" = "$(stat -c %d "$PRISTINE")" ]; then
        echo "# the tmpfs is on the cache's file system?"; rc=1
    elif ! QEMU_COLO_BUILD="$fs/build" bash "$repo/assembly/assemble.sh" >"$tmp/asm6.log" 2>&1; then
        sed 's/^/# /' "$tmp/asm6.log" | tail -5; rc=1
    elif ! QEMU_COLO_BUILD="$tmp/build6" bash "$repo/assembly/assemble.sh" >/dev/null 2>&1; then
        echo "# the same-file-system assembly failed"; rc=1
    elif ! diff -rq "$fs/build/src" "$tmp/build6/src" >"$tmp/diff6" 2>&1; then
        echo "# differs from the same-file-system assembly:"
        head -5 "$tmp/diff6" | sed 's/^/# /'; rc=1
    fi
    umount "$fs"
    return $rc
}
check "a build directory on another file system than the cache assembles the same tree" other_file_system
# 7. Every make target that boots the test guest builds it first: on a fresh
#    machine `make bench` ran with no guest and every benchmark failed to boot.
guest_targets_build_the_guest() {
    local t prereqs bad=0
    for t in check demo demo-basic bench soak check-kvm; do
        prereqs=$(sed -n "s/^$t:\(.*\)/\1/p" "$top/Makefile")
        if ! grep -qw guest <<<"$prereqs"; then
            echo "# make $t does not depend on guest (prerequisites:$prereqs)"; bad=1
        fi
    done
    return $bad
}
check "every make target that boots the test guest depends on guest" guest_targets_build_the_guest
echo "1..$cases"     # the TAP plan, last
