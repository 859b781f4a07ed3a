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

# Install the Debian 12 packages needed by the functional test stack
# (tools/stack.sh, tools/build-guest.sh) and by building libvirt-python.
#
# Idempotent and fast on a warm machine: when every package is already
# installed nothing is run (not even apt-get update).  Must run as root
# otherwise.
#
# --no-install-recommends is safe here: everything the stack needs is in
# the Depends closure.  The Recommends that are skipped (dnsmasq-base,
# iproute2, dmidecode, lvm2, parted, mdevctl, swtpm, ovmf, qemu-system-gui,
# the lxc/vbox/xen libvirt drivers, ...) are only used for libvirt
# networks, storage pools, TPM, UEFI and graphical displays, none of which
# the test domains use.

set -euo pipefail

# shellcheck source=tools/functions.sh
source "$(dirname "${BASH_SOURCE[0]}")/functions.sh"

PACKAGES=(
    # libvirtd + virtlogd (monolithic daemon on Debian 12) and virsh
    libvirt-daemon-system
    libvirt-clients
    # TCG guests and qemu-img
    qemu-system-x86
    qemu-utils
    # nbdcopy: streams a backup job's NBD export into an upload;
    # libnbd's Python bindings: incremental snapshots read the changed
    # blocks of an export (linked into venvs by
    # nova-snapshot-ext-link-bindings)
    libnbd-bin
    python3-libnbd
    # building libvirt-python (sdist only on PyPI) in a venv
    libvirt-dev
    pkg-config
    gcc
    python3-dev
    python3-venv
    # tools/ceph.sh: one mon, one OSD; the rados and rbd Python modules
    # (not on PyPI: nova-snapshot-ext-link-bindings links them into venvs);
    # QEMU's rbd block driver
    ceph-mon
    ceph-osd
    ceph-common
    python3-rados
    python3-rbd
    qemu-block-extra
    # tools/cloud.sh: Nova's rbd image backend asks a manager for "ceph df"
    ceph-mgr
    # tools/cloud.sh: the one-node OpenStack's database and message queue
    mariadb-server
    rabbitmq-server
    # tools/cloud.sh: nova-compute runs as the user nova and starts its
    # privileged helpers through sudo; the system's Python for its venv
    sudo
    adduser
    python3
    # tools/functions.sh: iniset; tools/cloud.sh and tools/glance.sh ask
    # their services over HTTP whether they answer
    crudini
    curl
    # tests/cloud: a TLS front for Glance with a CA the test makes
    stunnel4
    openssl
    # tools/build-guest.sh; qemu-ga and its libraries are copied into
    # the guest's initramfs
    busybox-static
    qemu-guest-agent
    cpio
    gzip
    xz-utils
)

function is_installed {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null) \
        || return 1
    [ "$status" = installed ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages already installed"
    exit 0
fi

require_root "to install: ${missing[*]}"

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-q -o DPkg::Lock::Timeout=600)
apt-get "${APT_OPTS[@]}" update
apt-get "${APT_OPTS[@]}" install -y --no-install-recommends "${missing[@]}"
log "done"
