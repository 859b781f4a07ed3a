#!/bin/bash
#
# Copyright 2026 The nova-snapshot-ext Authors
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

# devstack plugin of nova-snapshot-ext, sourced by devstack as
# "plugin.sh MODE [PHASE]" (defaults in settings):
#
#   stack install      install the package where nova-compute runs
#   stack post-config  make Nova's compute driver ours, set [snapshot]
#                      and, with devstack-plugin-ceph, [snapshot_rbd];
#                      create the lock, journal and temporary directories
#                      for a non-root nova-compute
#   stack test-config  set our tempest plugin's [nova_snapshot_ext]
#   clean              remove the driver link (see install)
#
# VIRT_DRIVER stays libvirt: devstack installs and configures libvirt as
# usual, and post-config only swaps the driver class for our subclass.

# Nova loads "compute_driver = X" as the class nova.virt.X; this module is
# nova/virt/nova_snapshot_ext/ of this repository.
NOVA_SNAPSHOT_EXT_DRIVER_MODULE=nova_snapshot_ext
NOVA_SNAPSHOT_EXT_COMPUTE_DRIVER=$NOVA_SNAPSHOT_EXT_DRIVER_MODULE.SnapshotLibvirtDriver

# _nse_check_choice VARIABLE CHOICE...: die unless $VARIABLE is a CHOICE.
# Fails the run at once rather than when nova-compute reads its options.
function _nse_check_choice {
    local name=$1 choice
    shift
    for choice in "$@"; do
        if [[ "${!name}" == "$choice" ]]; then
            return 0
        fi
    done
    die $LINENO "$name=${!name}: expected one of: $*"
}

function nova_snapshot_ext_check_settings {
    _nse_check_choice NOVA_SNAPSHOT_EXT_METHOD auto live cold
    _nse_check_choice NOVA_SNAPSHOT_EXT_QUIESCE never auto required
    _nse_check_choice NOVA_SNAPSHOT_EXT_RBD_FLATTEN inline deferred
}

# _nse_ceph_for SERVICE: devstack-plugin-ceph keeps SERVICE's data in
# Ceph.  is_ceph_enabled_for_service comes from that plugin (its settings
# source its lib/cephadm); without the plugin there is no Ceph.
function _nse_ceph_for {
    declare -F is_ceph_enabled_for_service >/dev/null || return 1
    is_ceph_enabled_for_service "$1"
}

# _nse_glance_on_rbd: Glance stores images in the Ceph pool
# $GLANCE_CEPH_POOL, i.e. Ceph is on for Glance and devstack-plugin-ceph
# did not put Glance on the Rados gateway's Swift API instead.
function _nse_glance_on_rbd {
    _nse_ceph_for glance || return 1
    [[ "${GLANCE_RGW_BACKEND:-False}" != True || \
        "${ENABLE_CEPH_RGW:-False}" != True ]]
}

# Where Nova imports nova.virt.nova_snapshot_ext from: devstack installs
# Nova from its clone in $NOVA_DIR in development mode.
function _nse_driver_link {
    echo "$NOVA_DIR/nova/virt/$NOVA_SNAPSHOT_EXT_DRIVER_MODULE"
}

function install_nova_snapshot_ext {
    if _nse_ceph_for nova; then
        # The rados and rbd modules exist only as distro packages.
        # devstack's global venv ($DEVSTACK_VENV) is created with
        # --system-site-packages, so it imports them from the distro's
        # Python without links or .pth files; devstack-plugin-ceph
        # installs them too, except with REMOTE_CEPH=True.
        install_package python3-rados python3-rbd
    fi
    # Into devstack's global venv, like Nova (and dependencies).
    setup_develop "$NOVA_SNAPSHOT_EXT_DIR"

    # An install of this package cannot add a module to the package
    # nova.virt of a Nova installed from its source tree (nova.virt is
    # a directory of that tree), so link ours into that directory.
    local src=$NOVA_SNAPSHOT_EXT_DIR/nova/virt/$NOVA_SNAPSHOT_EXT_DRIVER_MODULE
    local link
    link=$(_nse_driver_link)
    if [[ ! -f $src/__init__.py ]]; then
        die $LINENO "$src/__init__.py is missing: no compute driver to link"
    fi
    if [[ -e $link && ! -L $link ]]; then
        die $LINENO "$link exists and is not our link: not replacing it"
    fi
    ln -sfn "$src" "$link"
}

_NSE_NON_INHERITABLE=cache_in_nova,bittorrent,img_signature
_NSE_NON_INHERITABLE+=,img_signature_hash_method,img_signature_certificate_uuid
_NSE_NON_INHERITABLE+=,img_signature_key_type
_NSE_NON_INHERITABLE+=,source_domain,snapshot_reason,live_copy_style
_NSE_NON_INHERITABLE+=,live_copy_reason

function configure_nova_snapshot_ext {
    # $NOVA_CONF, not $NOVA_CPU_CONF: devstack's start_nova_compute
    # writes nova-cpu.conf later as a copy of nova.conf plus local.conf's
    # [[post-config|$NOVA_CPU_CONF]], replacing whatever was in it.
    iniset "$NOVA_CONF" DEFAULT compute_driver \
        "$NOVA_SNAPSHOT_EXT_COMPUTE_DRIVER"
    iniset "$NOVA_CONF" snapshot method "$NOVA_SNAPSHOT_EXT_METHOD"
    iniset "$NOVA_CONF" snapshot quiesce "$NOVA_SNAPSHOT_EXT_QUIESCE"
    # Nova copies a snapshot's properties into the system metadata of the
    # servers booted from it, where their users read them: ours that name
    # the compute host's domain or its libvirt are kept out, beside
    # Nova's own defaults (and the signature ones it never copies).
    iniset "$NOVA_CONF" DEFAULT non_inheritable_image_properties \
        "$_NSE_NON_INHERITABLE"
    if [[ -n ${NOVA_SNAPSHOT_EXT_STATE_PATH:-} ]]; then
        # The directories init_nova_snapshot_ext_dirs makes, elsewhere
        # than their defaults (below /var/lib/nova-snapshot-ext).
        local state=$NOVA_SNAPSHOT_EXT_STATE_PATH
        iniset "$NOVA_CONF" snapshot lock_path "$state/locks"
        iniset "$NOVA_CONF" snapshot journal_directory "$state/snapshots"
        iniset "$NOVA_CONF" snapshot temp_directory "$state/tmp"
    fi

    if _nse_ceph_for nova; then
        # Nova's guest disks are in Ceph.  devstack-plugin-ceph gives
        # Nova the Ceph user $CINDER_CEPH_USER ([libvirt] rbd_user), whose
        # key may use every pool it created, Glance's included.
        iniset "$NOVA_CONF" snapshot_rbd ceph_conf "${CEPH_CONF_FILE:-/etc/ceph/ceph.conf}"
        iniset "$NOVA_CONF" snapshot_rbd user "${CINDER_CEPH_USER:-cinder}"
        if _nse_glance_on_rbd; then
            iniset "$NOVA_CONF" snapshot_rbd glance_pool "${GLANCE_CEPH_POOL:-images}"
        fi
        iniset "$NOVA_CONF" snapshot_rbd flatten "$NOVA_SNAPSHOT_EXT_RBD_FLATTEN"
        iniset "$NOVA_CONF" snapshot_rbd direct_snapshot True
    fi
}

# _nse_qemu_group: the group QEMU runs as (libvirt's default: libvirt-qemu
# on Debian and Ubuntu, qemu on Fedora and CentOS), or nothing.
function _nse_qemu_group {
    local group
    for group in libvirt-qemu qemu; do
        if getent group "$group" >/dev/null; then
            echo "$group"
            return 0
        fi
    done
}

# init_nova_snapshot_ext_dirs: the directories nova-compute shares with the
# command line by default ([snapshot] lock_path, journal_directory and
# temp_directory below [DEFAULT] state_path, /var/lib/nova-snapshot-ext),
# owned by the user Nova runs as: nova-compute, not root, cannot create
# them in /var/lib.  As root, Nova creates them itself.
function init_nova_snapshot_ext_dirs {
    local state=${NOVA_SNAPSHOT_EXT_STATE_PATH:-/var/lib/nova-snapshot-ext}
    local user=${STACK_USER:-$(whoami)}
    local qemu_group
    if [[ $user == root ]]; then
        return 0
    fi
    # Guest data is its owner's only.  QEMU (another user) opens the
    # snapshot's temporary files below tmp by name: tmp is its group's,
    # to pass through only.  Every user may pass through (not list) the
    # state directory: QEMU's group and [snapshot_file_store] file_group
    # both need to.
    qemu_group=$(_nse_qemu_group)
    sudo install -d -o "$user" -m 0711 "$state"
    sudo install -d -o "$user" -m 0700 "$state/locks" "$state/snapshots"
    if [[ -n $qemu_group ]]; then
        sudo install -d -o "$user" -g "$qemu_group" -m 0710 "$state/tmp"
    else
        sudo install -d -o "$user" -m 0711 "$state/tmp"
    fi
}

function configure_tempest_for_nova_snapshot_ext {
    local live_snapshot=True rbd_direct=False
    if [[ "$NOVA_SNAPSHOT_EXT_METHOD" == cold ]]; then
        live_snapshot=False
    fi
    if _nse_ceph_for nova && _nse_glance_on_rbd; then
        rbd_direct=True
    fi
    iniset "$TEMPEST_CONFIG" nova_snapshot_ext live_snapshot "$live_snapshot"
    iniset "$TEMPEST_CONFIG" nova_snapshot_ext rbd_direct "$rbd_direct"
}

function cleanup_nova_snapshot_ext {
    local link
    link=$(_nse_driver_link)
    if [[ -L $link ]]; then
        rm -f "$link"
    fi
}

if is_service_enabled nova-snapshot-ext; then
    if [[ "${1:-}" == stack ]]; then
        nova_snapshot_ext_check_settings
    fi

    if [[ "${1:-}" == stack && "${2:-}" == install ]]; then
        if is_service_enabled n-cpu; then
            echo_summary "Installing nova-snapshot-ext"
            install_nova_snapshot_ext
        fi

    elif [[ "${1:-}" == stack && "${2:-}" == post-config ]]; then
        if is_service_enabled n-cpu; then
            echo_summary "Configuring nova-snapshot-ext"
            configure_nova_snapshot_ext
            init_nova_snapshot_ext_dirs
        fi

    elif [[ "${1:-}" == stack && "${2:-}" == test-config ]]; then
        if is_service_enabled tempest; then
            echo_summary "Configuring tempest for nova-snapshot-ext"
            configure_tempest_for_nova_snapshot_ext
        fi
    fi

    # unstack: nothing to stop, nova-compute is devstack's own service.
    # clean: devstack removes the configuration and the venv; only the
    # link in Nova's tree is ours to remove.  The package stays installed
    # until the venv goes.
    if [[ "${1:-}" == clean ]]; then
        cleanup_nova_snapshot_ext
    fi
fi
