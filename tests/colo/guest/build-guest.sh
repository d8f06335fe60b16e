#!/bin/bash
# Build the small Linux test guest used by the COLO tests and demo, from Debian
# packages only:
#   - kernel: the exact package that linux-image-cloud-amd64 depends on
#     (virtio drivers are modules there, so we ship the few we need);
#   - userland: busybox-static, as an initramfs written with cpio.
#
# Output (cached outside the work tree, reused while this script is unchanged):
#   ${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}/guest/vmlinuz
#   ${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}/guest/initrd.gz
#
# Guest kernel command line options understood by /init:
#   colo.dirty=N        keep rewriting N MiB of guest RAM in the background
#                       (tmpfs file overwritten from /dev/urandom, so the pages
#                       really change and are not zero pages)
#   colo.ip=A.B.C.D/NN  configure eth0 (virtio-net) with that address
#   colo.serve=1        TCP request/response service on port 7777 (busybox
#                       "nc -ll -p 7777 -e /bin/colo-serve", one process per
#                       connection): for each line received it answers
#                       "<n> <line>", where n counts lines served since boot
#                       (guest state, so it shows whether state survived a
#                       failover).
#   colo.records=DEV    with colo.serve=1: before answering line n, write the
#                       record "<n> <line>" (padded with spaces to 511 bytes
#                       and a newline) at sector n of block device DEV (e.g.
#                       /dev/vda, a virtio-blk disk), with fsync: every
#                       answer the client got is an acknowledged record on
#                       the disk.
#   colo.http=1         busybox httpd on port 80 serving /www, which holds
#                       "bulk", 4 MiB of random bytes written at boot (so
#                       the same on both VMs once protected)
#   colo.burn=N         N busy shell loops (a vCPU-heavy load; with -smp 2
#                       N=2 keeps both vCPUs busy), niced so the service
#                       still answers
#   colo.vary=1         with colo.serve=1: answer "<n> <line> <pad>" instead,
#                       pad being 1 to 32 dots, its length taken from the
#                       microseconds of the guest's clock as it answers
#                       (the "now at" of /proc/timer_list).  The two VMs of
#                       a COLO pair answer each line at different moments,
#                       so their answers differ in length: every answer is a
#                       mismatch and reaches the client only once a
#                       checkpoint covers it (output commit tests).  Not
#                       $RANDOM alone: ash's generator lives in the shell's
#                       memory, which a checkpoint copies to the secondary,
#                       so both VMs would draw the same numbers.
# /init prints "COLO-GUEST: ready" on the console once everything requested is
# running, then runs an interactive shell on ttyS0 (use "poweroff -f": /init is
# a shell script, not busybox init, so plain poweroff has no one to signal).
#
# Flavours: "cloud" (default; output in guest/) runs on virtio only; "generic"
# (output in guest-generic/) is the same userland on Debian's generic kernel,
# whose modules include the AHCI stack that the cloud kernel lacks (q35's
# own disk controller, CONFIG_SATA_AHCI is not set there): its AHCI disk is
# /dev/sda.
#
# Usage: build-guest.sh [--force] [cloud|generic]
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
force=
[[ "${1:-}" == "--force" ]] && { force=1; shift; }
FLAVOUR="${1:-cloud}"
case "$FLAVOUR" in
    cloud)   CACHE="${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}/guest"
             META=linux-image-cloud-amd64 ;;
    generic) CACHE="${QEMU_COLO_CACHE:-$HOME/.cache/qemu-colo}/guest-generic"
             META=linux-image-amd64 ;;
    *) echo "unknown flavour $FLAVOUR (cloud or generic)" >&2; exit 1 ;;
esac
STAMP="$CACHE/stamp"
# The virtio stack, in dependency order: busybox insmod does not resolve
# dependencies, and a wrong order shows "Unknown symbol" on the console.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk"
# The AHCI disk stack of the generic kernel, in dependency order (sd_mod
# needs t10-pi, which needs the two CRC modules and their generic backends).
[[ "$FLAVOUR" == generic ]] &&
    MODULES="$MODULES scsi_common scsi_mod libata libahci ahci crct10dif_common crct10dif_generic crc-t10dif crc64 crc64_rocksoft_generic crc64-rocksoft t10-pi sd_mod"
APPLETS="sh mount umount insmod ip ifconfig httpd nc dd md5sum sha256sum sync cat echo sleep mkdir ls poweroff reboot mknod grep sed awk seq hexdump head tail wc setsid renice rm mv cp ps kill dmesg uname free"

hash="$(sha256sum "$SELF" | cut -d' ' -f1) $FLAVOUR"
if [[ -z "$force" && -f "$CACHE/vmlinuz" && -f "$CACHE/initrd.gz" &&
      -f "$STAMP" && "$(cat "$STAMP")" == "$hash" ]]; then
    echo "up to date:"
    echo "  kernel: $CACHE/vmlinuz"
    echo "  initrd: $CACHE/initrd.gz"
    exit 0
fi

need=()
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if ((${#need[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        echo "missing packages: ${need[*]} (run apt-get install as root)" >&2
        exit 1
    fi
    apt-get install -y "${need[@]}"
fi
# A dynamically linked busybox would need its libraries in the initramfs.
if ldd /bin/busybox >/dev/null 2>&1; then
    echo "/bin/busybox is not static: install busybox-static" >&2
    exit 1
fi

# Exact package name only: "apt-get download linux-image-*" would fetch every
# kernel in the archive (about 1.6 GB).
kpkg="$(apt-cache depends "$META" |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')"
if [[ -z "$kpkg" ]]; then
    echo "cannot find the kernel package $META depends on" >&2
    exit 1
fi
echo "kernel package: $kpkg"

work="$(mktemp -d "${TMPDIR:-/tmp}/colo-guest.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# apt drops privileges to _apt for downloads; let it write here.
chmod 0777 "$work"
(cd "$work" && apt-get download "$kpkg")
dpkg -x "$work"/"$kpkg"_*.deb "$work/pkg"

kernels=("$work"/pkg/boot/vmlinuz-*)
vmlinuz="${kernels[0]}"
[[ -f "$vmlinuz" ]] || { echo "no boot/vmlinuz-* in $kpkg" >&2; exit 1; }
kver="${vmlinuz##*/vmlinuz-}"
moddir="$work/pkg/lib/modules/$kver"
[[ -d "$moddir" ]] || { echo "no modules dir for $kver" >&2; exit 1; }

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,run,tmp,lib/modules}
cp /bin/busybox "$root/bin/busybox"
for a in $APPLETS; do
    ln -s busybox "$root/bin/$a"
done

# Copy the modules, decompressing if this kernel ships them compressed
# (bookworm's are plain .ko today; newer kernels use .ko.xz or .ko.zst).
for m in $MODULES; do
    f="$(find "$moddir" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \
              -o -name "$m.ko.gz" \) -print -quit)"
    [[ -n "$f" ]] || { echo "module $m not found in $kpkg" >&2; exit 1; }
    out="$root/lib/modules/$m.ko"
    case "$f" in
        *.ko)     cp "$f" "$out" ;;
        *.ko.xz)  xz -dc "$f" >"$out" ;;
        *.ko.zst) zstd -dcq "$f" >"$out" ;;
        *.ko.gz)  gzip -dc "$f" >"$out" ;;
    esac
done
echo "$MODULES" >"$root/lib/modules/order"

# The kernel opens /dev/console for init before /init can mount devtmpfs.
if [[ "$(id -u)" == 0 ]]; then
    mknod -m 600 "$root/dev/console" c 5 1
fi

cat >"$root/bin/colo-serve" <<'EOF'
#!/bin/sh
# One connection of the port 7777 service: answer each line with
# "<n> <line>", n being a boot-wide count of lines served.
rec=$(cat /run/colo-records 2>/dev/null)
vary=$(cat /run/colo-vary 2>/dev/null)
dots=................................
while IFS= read -r line; do
    n=$(cat /run/colo-served 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" >/run/colo-served
    if [ -n "$rec" ]; then
        # the record is on the disk (fsync) before the answer leaves
        printf '%-511.511s\n' "$n $line" |
            dd of="$rec" bs=512 seek="$n" conv=notrunc,fsync 2>/dev/null ||
            { echo "COLO-GUEST: record $n not written" >/dev/console; exit 1; }
    fi
    if [ -n "$vary" ]; then
        ns=$(sed -n '/^now at /{s/^now at \([0-9]*\) nsecs.*/\1/p;q}' /proc/timer_list)
        len=$(( (${ns:-0} / 1000 + RANDOM) % 32 + 1 ))
        echo "$n $line ${dots:0:$len}"
    else
        echo "$n $line"
    fi
done
EOF
chmod 755 "$root/bin/colo-serve"

cat >"$root/bin/colo-dirty" <<'EOF'
#!/bin/sh
# Keep rewriting $1 MiB of RAM (a tmpfs file overwritten in place, random
# content so no page stays identical or zero).
while :; do
    dd if=/dev/urandom of=/run/colo-dirty bs=1M count="$1" conv=notrunc 2>/dev/null
done
EOF
chmod 755 "$root/bin/colo-dirty"

cat >"$root/init" <<'EOF'
#!/bin/sh
# COLO test guest init (PID 1: must never exit).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
exec </dev/console >/dev/console 2>&1

for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || echo "COLO-GUEST: insmod $m failed"
done

for opt in $(cat /proc/cmdline); do
    case "$opt" in
        colo.dirty=*) dirty="${opt#colo.dirty=}" ;;
        colo.ip=*)    ipaddr="${opt#colo.ip=}" ;;
        colo.serve=*) serve="${opt#colo.serve=}" ;;
        colo.records=*) records="${opt#colo.records=}" ;;
        colo.vary=*)  vary="${opt#colo.vary=}" ;;
        colo.burn=*)  burn="${opt#colo.burn=}" ;;
        colo.http=*)  http="${opt#colo.http=}" ;;
    esac
done

ip link set lo up
if [ -n "$ipaddr" ]; then
    ip link set eth0 up
    ip addr add "$ipaddr" dev eth0 && echo "COLO-GUEST: eth0 $ipaddr"
fi
if [ -n "$records" ]; then
    # the disk's driver (virtio_blk) was loaded above; wait (bounded) for
    # its device node
    i=0
    until [ -b "$records" ]; do
        i=$((i + 1))
        [ $i -gt 200 ] && { echo "COLO-GUEST: no $records"; break; }
        sleep 0.05
    done
    echo "$records" >/run/colo-records && echo "COLO-GUEST: records on $records"
fi
[ "$vary" = 1 ] && echo 1 >/run/colo-vary
if [ "$serve" = 1 ]; then
    nc -ll -p 7777 -e /bin/colo-serve &
    # "ready" must mean "accepting": wait (bounded) for the listening socket
    # (port 7777 = 0x1E61, state 0A = LISTEN; nc may bind IPv6 "::").
    i=0
    until grep -q ':1E61 0*:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 600 ] && { echo "COLO-GUEST: port 7777 not listening"; break; }
        sleep 0.05
    done
    echo "COLO-GUEST: serving on tcp port 7777"
fi
if [ -n "$dirty" ] && [ "$dirty" -gt 0 ]; then
    # First pass in the foreground: /dev/urandom blocks until the kernel's
    # RNG is seeded (a second or so after boot), and "ready" should mean the
    # N MiB exist and are being rewritten.
    dd if=/dev/urandom of=/run/colo-dirty bs=1M count="$dirty" 2>/dev/null
    /bin/colo-dirty "$dirty" &
    # Niced so commands typed on the console stay responsive under TCG; an
    # idle shell leaves the dirtier the whole vCPU.
    renice -n 10 -p $! >/dev/null
    echo "COLO-GUEST: dirtying $dirty MiB"
fi
if [ "$http" = 1 ]; then
    mkdir -p /www
    dd if=/dev/urandom of=/www/bulk bs=1M count=4 2>/dev/null
    echo ok >/www/index.html
    httpd -p 80 -h /www
    echo "COLO-GUEST: httpd on port 80"
fi
if [ -n "$burn" ] && [ "$burn" -gt 0 ]; then
    i=0
    while [ $i -lt "$burn" ]; do
        sh -c 'while :; do :; done' &
        renice -n 10 -p $! >/dev/null
        i=$((i + 1))
    done
    echo "COLO-GUEST: burning $burn vCPU loops"
fi

# Printed last: a test that sees it can use everything requested above.
echo "COLO-GUEST: ready"

# setsid + opening the tty makes ttyS0 the shell's controlling terminal
# (job control, Ctrl-C); restart the shell if it exits.
while :; do
    setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'
done
EOF
chmod 755 "$root/init"

mkdir -p "$CACHE"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -9 >"$work/initrd.gz"
cp "$vmlinuz" "$work/vmlinuz"
# Replace atomically so a concurrent reader never sees a half-written file.
mv -f "$work/vmlinuz" "$CACHE/vmlinuz"
mv -f "$work/initrd.gz" "$CACHE/initrd.gz"
echo "$kpkg" >"$CACHE/kernel-package"
echo "$hash" >"$STAMP"

echo "kernel: $CACHE/vmlinuz ($kpkg)"
echo "initrd: $CACHE/initrd.gz ($(stat -c %s "$CACHE/initrd.gz") bytes)"
