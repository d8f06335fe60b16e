#!/usr/bin/env bash
# Assemble the build tree: pristine upstream, minus upstream's COLO implementation,
# plus our patches (assembly/patches/*.patch, in name order), plus our files at
# their paths.  The result is staged, then synced into build/src by content, so a
# re-assembly only rewrites files whose bytes changed and ninja rebuilds just those.
# The cached pristine source is never written.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}"
PRISTINE="$CACHE/qemu-10.0.13"
OUT="${QEMU_COLO_BUILD:-$top/build}"
STAGE="$OUT/stage"
SRC="$OUT/src"

die() { echo "assemble: error: $*" >&2; exit 1; }

[ -d "$PRISTINE" ] || die "no pristine source in $PRISTINE (run assembly/setup.sh)"

# Our files: everything we track that mirrors QEMU's tree, i.e. all but our own tooling.
our_files() {
    (cd "$top" && git ls-files --cached --others --exclude-standard) |
        grep -vE '^(Makefile|README\.md|\.gitignore|\.ci/|assembly/|bench/)' || true
}

removed_files() {
    grep -vE '^\s*(#|$)' "$top/assembly/removed-upstream-files.txt"
}

mkdir -p "$OUT"
# One assembly or build at a time per output directory (helpers share it).
exec 9>"$OUT/.lock"
flock 9
rm -rf "$STAGE"
# Hard links make the stage cheap; every file we change below is unlinked first,
# so the pristine copy cannot be modified through a link.  Hard links cannot
# cross file systems (a checkout or build dir on another disk, a tmpfs, a bind
# mount of another device): then the stage is a plain copy.
if ! cp -al "$PRISTINE" "$STAGE" 2>/dev/null; then
    rm -rf "$STAGE"
    echo "assemble: $OUT is not on the file system of $CACHE: copying the pristine tree"
    cp -a "$PRISTINE" "$STAGE"
    chmod -R u+w "$STAGE"
fi
rm -f "$STAGE"/.qemu-colo-pristine-*

for p in "$top"/assembly/patches/*.patch; do
    [ -e "$p" ] || continue
    for f in $(sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$p"); do
        if [ -e "$STAGE/$f" ]; then
            cp --remove-destination "$STAGE/$f" "$STAGE/$f.unlink" &&
                mv -f "$STAGE/$f.unlink" "$STAGE/$f"
            chmod u+w "$STAGE/$f"
        fi
    done
    chmod u+w "$STAGE" "$STAGE"/* 2>/dev/null || true
    patch -d "$STAGE" -p1 -s -f --no-backup-if-mismatch < "$p" ||
        die "patch $(basename "$p") does not apply"
done

while read -r f; do
    [ -e "$PRISTINE/$f" ] || die "removed-upstream-files.txt names $f, which upstream lacks"
    rm -f "$STAGE/$f"
done < <(removed_files)

removed_list=$(removed_files)
while read -r f; do
    [ -n "$f" ] || continue
    if [ -e "$PRISTINE/$f" ] && ! grep -qxF "$f" <<<"$removed_list"; then
        die "$f shadows an upstream file: change upstream files with a patch in assembly/patches"
    fi
    mkdir -p "$(dirname "$STAGE/$f")"
    chmod u+w "$(dirname "$STAGE/$f")"
    rm -f "$STAGE/$f"
    cp "$top/$f" "$STAGE/$f"
done < <(our_files)

# Sync by content, without copying times: files whose bytes did not change keep
# their old mtime in build/src, so ninja does not rebuild them.
mkdir -p "$SRC"
rsync -r --links --checksum --delete --chmod=u+w "$STAGE/" "$SRC/"
rm -rf "$STAGE"
echo "assemble: build tree ready in $SRC"
