#!/bin/bash
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

# Build the tiny counter-writing test guest used by the functional tests.
#
# Output, in $GUEST_DIR (default $STACK_DIR/guest):
#   vmlinuz    the Debian generic amd64 kernel (from the linux-image-*-amd64
#              package that linux-image-amd64 depends on; downloaded with
#              apt-get download, never installed)
#   initrd.gz  busybox-static + the virtio block modules; its /init prints
#                TINYGUEST READY vda_sectors=<S> ctr_off=<OFF> slots=<K>
#              on the console, then loops forever writing the 512-byte
#              sector "CTR %012d\n" (zero padded, fsync'ed) for n = 1, 2, ...
#              at sector OFF + n % K of /dev/vda, where OFF = S - K, and
#              prints "CTR <n>" on the console every 500 writes.
#              With "tinyguest.readback" on the kernel command line it
#              first prints "TINYGUEST DATA <sha256 of sectors 0..OFF-1>"
#              and "TINYGUEST TAIL <sha256 of sectors OFF..S-1>", i.e.
#              what it reads from the disk it was given.
#   initrd-agent.gz
#              initrd.gz followed by a second archive with qemu-ga (copied
#              from this machine with the libraries it needs), the
#              modules for virtio-serial and ext4 and a freeze hook; kept
#              apart so that guests without an agent boot as fast as
#              before.  With "tinyguest.agent=on" on the command line
#              (and initrd-agent.gz) the guest also runs the QEMU guest agent
#              on the virtio-serial port org.qemu.guest_agent.0,
#              and mounts a 2 MiB ext4 filesystem (on a loop device
#              backed by a file in the initramfs, never on vda) on /fs
#              for the agent to freeze; a background loop writes and
#              fsyncs /fs/beat and prints "FS <n>" every 5 writes (about
#              once a second), so a frozen /fs shows as "FS" lines that
#              stop.  With "tinyguest.agent=hang" the agent runs with a
#              freeze hook that never returns: guest-fsfreeze-freeze
#              hangs, and the agent answers nothing more.  Both print
#              "TINYGUEST AGENT <mode>" before READY (or "TINYGUEST
#              AGENT-FAILED <why>").
#   recipe     the sha256 of this script and CTR_SLOTS: tools/stack.sh
#              rebuilds the guest when it changes
#
# Boot it with direct kernel boot and "console=ttyS0" on the command line.
#
# Environment:
#   STACK_DIR   default /var/tmp/nova-snapshot-ext-stack
#   GUEST_DIR   default $STACK_DIR/guest
#   CTR_SLOTS   K, the number of counter sectors at the end of vda
#               (default 256)
#
# Needs apt-get (download only), dpkg-deb, cpio, gzip, ldd and qemu-ga
# (Debian's qemu-guest-agent); run tools/install-deps.sh first.  Root is only needed when the apt lists
# must be refreshed.
#
# The .deb files are cached in $STACK_DIR/cache and checked against the
# apt index, so rebuilding on the same machine does not download again.
# The outputs are written under temporary names and renamed at the end
# (vmlinuz last), so an interrupted build never leaves a pair that looks
# complete but is not.

set -euo pipefail

# shellcheck source=tools/functions.sh
source "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

GUEST_DIR=${GUEST_DIR:-$STACK_DIR/guest}
CACHE_DIR=$STACK_DIR/cache
CTR_SLOTS=${CTR_SLOTS:-256}

# Load order matters: each module depends on the ones before it.
MODULES="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev"
MODULES+=" virtio_pci virtio_blk"
# Loaded only with tinyguest.agent: the virtio-serial port, and ext4 on a
# loop device (an ext2 layout mounted by the ext4 driver, which can
# freeze it; ext2's own driver cannot).
AGENT_MODULES="virtio_console loop crc16 mbcache jbd2 crc32c_generic ext4"
QEMU_GA=/usr/sbin/qemu-ga

function recipe {
    echo "$(sha256sum < "${BASH_SOURCE[0]}" | cut -d' ' -f1) $CTR_SLOTS"
}

if [ "${1:-}" = recipe ]; then
    recipe
    exit 0
fi

function kernel_package {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/^ *Depends: linux-image-[0-9]/ { print $2; exit }'
}

# fetch_deb PACKAGE: make sure $CACHE_DIR holds the .deb of the candidate
# version of PACKAGE (verified against the apt index); sets DEB to its path.
function fetch_deb {
    local pkg=$1 uri="" file="" size="" hash=""
    DEB=
    read -r uri file size hash < <(
        apt-get download --print-uris "$pkg" 2>/dev/null) || true
    [ -n "$file" ] || return 1
    if ! deb_ok "$CACHE_DIR/$file" "$size" "$hash"; then
        rm -f "$CACHE_DIR/$file"
        # The sandbox user _apt cannot write to the cache dir; download
        # as root instead of getting a warning for it.
        (cd "$CACHE_DIR" &&
            apt-get -q -o APT::Sandbox::User=root download "$pkg" \
                >/dev/null) || return 1
        deb_ok "$CACHE_DIR/$file" "$size" "$hash" || return 1
        log "downloaded $file"
    fi
    DEB=$CACHE_DIR/$file
}

function deb_ok {
    local path=$1 size=$2 hash=$3
    [ -f "$path" ] || return 1
    [ "$(stat -c %s "$path")" = "$size" ] || return 1
    case "$hash" in
        SHA256:*)
            echo "${hash#SHA256:}  $path" | sha256sum --status -c -
            ;;
    esac
}

# fetch_all: resolve the kernel package and fetch both .debs into KDEB and
# BBDEB.  Resolving or downloading fails without apt lists, or with stale
# ones (the mirror drops old kernel ABI packages): then refresh the lists
# once and retry.
function fetch_all {
    local attempt
    for attempt in 1 2; do
        if [ $attempt = 2 ]; then
            [ "$(id -u)" = 0 ] || die "cannot download the guest packages"
            log "refreshing the apt lists"
            apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
        fi
        KPKG=$(kernel_package) || true
        [ -n "$KPKG" ] && fetch_deb "$KPKG" || continue
        KDEB=$DEB
        fetch_deb busybox-static || continue
        BBDEB=$DEB
        return 0
    done
    die "cannot download ${KPKG:-the linux-image-amd64 kernel}" \
        "and busybox-static"
}

[[ "$CTR_SLOTS" =~ ^[1-9][0-9]*$ ]] \
    || die "CTR_SLOTS must be a positive integer, got '$CTR_SLOTS'"
for tool in apt-get dpkg-deb cpio gzip ldd "$QEMU_GA"; do
    command -v "$tool" >/dev/null || die "$tool not found (install-deps.sh)"
done

start=$SECONDS
mkdir -p "$GUEST_DIR" "$CACHE_DIR"
chmod 0755 "$STACK_DIR" "$GUEST_DIR"
GUEST_DIR=$(cd "$GUEST_DIR" && pwd)

# Leftovers of a build that was killed (SIGKILL, power loss).  Builds of
# one STACK_DIR must not run concurrently.
rm -rf "$STACK_DIR"/.build-guest.* "$GUEST_DIR"/.vmlinuz.tmp.* \
    "$GUEST_DIR"/.initrd.gz.tmp.* "$GUEST_DIR"/.initrd-agent.gz.tmp.*

# The kernel package unpacks to about 400 MB: keep that off /tmp, which
# may be a tmpfs.
work=$(mktemp -d "$STACK_DIR/.build-guest.XXXXXX")
tmp_kernel=$GUEST_DIR/.vmlinuz.tmp.$$
tmp_initrd=$GUEST_DIR/.initrd.gz.tmp.$$
tmp_agent=$GUEST_DIR/.initrd-agent.gz.tmp.$$
trap 'rm -rf "$work" "$tmp_kernel" "$tmp_initrd" "$tmp_agent"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

fetch_all
KVER=${KPKG#linux-image-}

dpkg-deb -x "$KDEB" "$work/kernel"
dpkg-deb -x "$BBDEB" "$work/busybox"

moddir=
for d in lib/modules usr/lib/modules; do
    if [ -d "$work/kernel/$d/$KVER" ]; then
        moddir=$work/kernel/$d/$KVER
    fi
done
[ -n "$moddir" ] || die "no modules for $KVER in $KPKG"
[ -f "$work/kernel/boot/vmlinuz-$KVER" ] || die "no vmlinuz in $KPKG"

root=$work/root
aroot=$work/agent-root
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules,run,var/run,fs}
mkdir -p "$aroot"/{usr/sbin,lib/modules,etc/qemu-ga}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"

# qemu-ga and every shared library it needs (ldd lists the dynamic loader
# too), at the same paths.
cp "$QEMU_GA" "$aroot/usr/sbin/qemu-ga"
libs=$(ldd "$QEMU_GA" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
    $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || die "ldd found no libraries for $QEMU_GA"
for lib in $libs; do
    mkdir -p "$aroot$(dirname "$lib")"
    cp -L "$lib" "$aroot$lib"
done

# The freeze hook of tinyguest.agent=hang: qemu-ga waits for it before
# freezing anything, and cannot answer anything else meanwhile.
cat > "$aroot/etc/qemu-ga/hang-hook" <<'HOOK'
#!/bin/sh
if [ "$1" = freeze ]; then
    while true; do
        sleep 3600
    done
fi
exit 0
HOOK
chmod 0755 "$aroot/etc/qemu-ga/hang-hook"

# Modules may be shipped compressed (.ko.xz/.ko.zst/.ko.gz); busybox insmod
# only takes plain .ko files, so decompress them here.  Modules that are
# built into the kernel are skipped.
for mod in $MODULES $AGENT_MODULES; do
    src=$(find "$moddir/kernel" \( -name "$mod.ko" -o -name "$mod.ko.*" \) \
        -print -quit)
    dst=$root/lib/modules/$mod.ko
    case " $AGENT_MODULES " in
        *" $mod "*) dst=$aroot/lib/modules/$mod.ko ;;
    esac
    case "$src" in
        "")
            if grep -q "/$mod\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
                continue
            fi
            die "module $mod not found in $KPKG"
            ;;
        *.ko) cp "$src" "$dst" ;;
        *.ko.xz) xz -dc "$src" > "$dst" ;;
        *.ko.zst) zstd -qdc "$src" > "$dst" ;;
        *.ko.gz) gzip -dc "$src" > "$dst" ;;
        *) die "unsupported module file $src" ;;
    esac
done

# Everything not escaped below is expanded now: $MODULES, $AGENT_MODULES
# and $CTR_SLOTS.
cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

for m in $MODULES; do
    if [ -f /lib/modules/\$m.ko ]; then
        insmod /lib/modules/\$m.ko || echo "TINYGUEST insmod \$m failed"
    fi
done

i=0
while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do
    sleep 0.1
    i=\$((i + 1))
done
if [ ! -b /dev/vda ]; then
    echo "TINYGUEST NO-VDA"
    poweroff -f
fi

K=$CTR_SLOTS
SZ=\$(blockdev --getsz /dev/vda)
OFF=\$((SZ - K))
if [ \$OFF -lt 0 ]; then
    echo "TINYGUEST VDA-TOO-SMALL vda_sectors=\$SZ slots=\$K"
    poweroff -f
fi
if grep -q tinyguest.readback /proc/cmdline; then
    set -- \$(head -c \$((OFF * 512)) /dev/vda | sha256sum)
    echo "TINYGUEST DATA \$1"
    set -- \$(dd if=/dev/vda bs=512 skip=\$OFF count=\$K 2>/dev/null \
        | sha256sum)
    echo "TINYGUEST TAIL \$1"
fi

# The agent (tinyguest.agent=on|hang): see the top of build-guest.sh.
agent_fail() {
    echo "TINYGUEST AGENT-FAILED \$*"
}
start_agent() {
    if [ ! -x /usr/sbin/qemu-ga ]; then
        agent_fail no-qemu-ga-in-initrd
        return
    fi
    for m in $AGENT_MODULES; do
        if [ -f /lib/modules/\$m.ko ]; then
            insmod /lib/modules/\$m.ko || echo "TINYGUEST insmod \$m failed"
        fi
    done
    dd if=/dev/zero of=/fs.img bs=1024 count=2048 2>/dev/null
    mke2fs -q -F /fs.img 2048 >/dev/null 2>&1 || { agent_fail mke2fs; return; }
    losetup /dev/loop0 /fs.img || { agent_fail losetup; return; }
    mount -t ext4 /dev/loop0 /fs || { agent_fail mount; return; }
    # No udev: name the port as udev would.
    port=
    i=0
    while [ -z "\$port" ] && [ \$i -lt 100 ]; do
        for f in /sys/class/virtio-ports/*/name; do
            name=\$(cat "\$f" 2>/dev/null)
            if [ "\$name" = org.qemu.guest_agent.0 ]; then
                port=\${f%/name}
                port=/dev/\${port##*/}
            fi
        done
        [ -n "\$port" ] && [ -c "\$port" ] && break
        port=
        sleep 0.1
        i=\$((i + 1))
    done
    [ -n "\$port" ] || { agent_fail no-port; return; }
    mkdir -p /dev/virtio-ports
    ln -sf "\$port" /dev/virtio-ports/org.qemu.guest_agent.0
    hook=
    if [ "\$1" = hang ]; then
        hook=--fsfreeze-hook=/etc/qemu-ga/hang-hook
    fi
    qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 \\
        -t /run -l /run/qemu-ga.log \$hook </dev/null >/dev/null 2>&1 &
    (
        b=0
        while true; do
            b=\$((b + 1))
            echo \$b > /fs/beat
            sync /fs/beat
            if [ \$((b % 5)) -eq 0 ]; then
                echo "FS \$b"
            fi
            sleep 0.2
        done
    ) &
    echo "TINYGUEST AGENT \$1"
}
for arg in \$(cat /proc/cmdline); do
    case "\$arg" in
        tinyguest.agent=on) start_agent on ;;
        tinyguest.agent=hang) start_agent hang ;;
    esac
done

echo "TINYGUEST READY vda_sectors=\$SZ ctr_off=\$OFF slots=\$K"

n=0
while true; do
    n=\$((n + 1))
    printf 'CTR %012d\n' \$n | dd of=/dev/vda bs=512 \\
        seek=\$((OFF + n % K)) conv=notrunc,sync,fsync 2>/dev/null
    if [ \$((n % 500)) -eq 0 ]; then
        echo "CTR \$n"
    fi
done
INIT
chmod 0755 "$root/init"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    | gzip -9 > "$tmp_initrd"
# The kernel unpacks concatenated archives one after the other.
(cd "$aroot" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) \
    | gzip -9 > "$work/agent.gz"
cat "$tmp_initrd" "$work/agent.gz" > "$tmp_agent"
cp "$work/kernel/boot/vmlinuz-$KVER" "$tmp_kernel"
chmod 0644 "$tmp_kernel" "$tmp_initrd" "$tmp_agent"

# Install: drop the old kernel first and put the new one in place last, so
# "vmlinuz and initrd.gz both exist" always means a complete, matching pair.
rm -f "$GUEST_DIR/vmlinuz"
mv -f "$tmp_initrd" "$GUEST_DIR/initrd.gz"
mv -f "$tmp_agent" "$GUEST_DIR/initrd-agent.gz"
mv -f "$tmp_kernel" "$GUEST_DIR/vmlinuz"
recipe > "$GUEST_DIR/recipe"

# Drop .debs of older versions from the cache.
for f in "$CACHE_DIR"/*.deb; do
    case "$f" in
        "$KDEB" | "$BBDEB") ;;
        */linux-image-[0-9]*_*.deb | */busybox-static_*.deb) rm -f "$f" ;;
    esac
done

log "$GUEST_DIR/vmlinuz ($KVER), $GUEST_DIR/initrd.gz" \
    "($(stat -c %s "$GUEST_DIR/initrd.gz") bytes, slots=$CTR_SLOTS)," \
    "$GUEST_DIR/initrd-agent.gz" \
    "($(stat -c %s "$GUEST_DIR/initrd-agent.gz") bytes)" \
    "built in $((SECONDS - start)) s"
