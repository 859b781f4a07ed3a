#!/bin/bash
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# The Debian package on a clean machine: build it (build.sh), install it
# with apt into a new minimal Debian 12 (debootstrap), and run the README's
# demo (tools/demo.py) with that machine's nova-snapshot-ext, against this
# host's libvirtd, Ceph and Glance (tools/stack.sh up first; as root).
#
#   contrib/debian/test.sh

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK=${STACK_DIR:-/var/tmp/nova-snapshot-ext-stack}
PYTHON=${PYTHON:-$ROOT/.tox/functional/bin/python}
work=$(mktemp -d /var/tmp/nse-deb.XXXXXX)
machine=$work/machine

function cleanup {
    # NOTE: the host's directories are bound into the machine: unmount
    # them before anything is removed, and never cross into them.
    for dir in /dev /run/libvirt "$STACK" /proc; do
        if mountpoint -q "$machine$dir"; then umount "$machine$dir"; fi
    done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

bash "$ROOT/contrib/debian/build.sh" "$work/out"
debootstrap --variant=minbase bookworm "$machine" http://deb.debian.org/debian
cp "$work"/out/nova-snapshot-ext_*_amd64.deb "$machine/tmp/"
mount -t proc proc "$machine/proc"
chroot "$machine" sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q python3-rados python3-rbd /tmp/nova-snapshot-ext_*.deb'
for dir in /dev /run/libvirt "$STACK"; do
    mkdir -p "$machine$dir"
    mount --bind "$dir" "$machine$dir"
done
mkdir "$work/bin"
printf '#!/bin/sh\nexec chroot %s /usr/bin/nova-snapshot-ext "$@"\n' \
    "$machine" > "$work/bin/nova-snapshot-ext"
chmod +x "$work/bin/nova-snapshot-ext"
cd "$ROOT"
PATH=$work/bin:$PATH "$PYTHON" -m tools.demo
