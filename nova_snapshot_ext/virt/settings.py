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

"""What Nova asks of a snapshot, in the engine's terms.

The engine's options are registered on Nova's own configuration (the
one nova-compute parsed from its ``--config-file`` and ``--config-dir``
arguments), in groups of the engine's own: ``[snapshot]``,
``[snapshot_libvirt]``, ``[snapshot_workarounds]``, ``[snapshot_rbd]``,
``[snapshot_qemu_img]``. ``[DEFAULT] state_path`` and ``[oslo_concurrency]
lock_path`` are Nova's. None of the engine's options is mutable: a change
takes effect when nova-compute restarts. Where Nova has an option for the
same thing, Nova's value is the default:

* ``[snapshot_libvirt] connection_uri``: the driver's URI;
* ``[snapshot] temp_directory``: ``[libvirt] snapshots_directory``;
* ``[snapshot] image_format``: ``[libvirt] snapshot_image_format`` (raw
  or qcow2; vmdk and vdi, which are not among its choices, are asked for
  per snapshot, and written by ``qemu-img convert``);
* ``[snapshot] compress``: ``[libvirt] snapshot_compression``;
* ``[snapshot_workarounds] disable_live_snapshot``: ``[workarounds]
  disable_libvirt_livesnapshot``;
* ``[snapshot_rbd] ceph_conf`` and ``user``: ``[libvirt]
  images_rbd_ceph_conf`` and ``rbd_user``, when set.

The rest is read per snapshot from Nova's configuration and the instance:
the method, the format, quiesce, the disk-ops semaphore, the properties.
"""

import os
from typing import Any

from nova.compute import utils as compute_utils
from nova import conf as nova_conf
from oslo_config import cfg

from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import qemu_img

CONF = nova_conf.CONF


def engine_conf(nova: cfg.ConfigOpts, uri: str) -> cfg.ConfigOpts:
    """Nova's configuration ``nova``, with the engine's options registered
    on it and Nova's settings as their defaults where Nova has them (see
    the module's docstring). Safe to call again: the defaults follow
    Nova's current values.
    """
    nse_conf.register_opts(nova, host_service=True)

    def default(group: str, name: str, value: Any) -> None:
        # NOTE: a value of Nova's the engine cannot use puts the engine's
        # own default back, so a reload that unsets it takes effect.
        nova.set_default(name, nse_conf.default_of(group, name)
                         if value is None else value, group=group)

    default('snapshot_libvirt', 'connection_uri', uri)
    default('snapshot', 'temp_directory', nova.libvirt.snapshots_directory)
    fmt = nova.libvirt.snapshot_image_format
    # NOTE: vmdk and vdi are asked for per snapshot (image_format).
    default('snapshot', 'image_format',
            fmt if fmt in qemu_img.FORMATS else None)
    default('snapshot', 'compress', nova.libvirt.snapshot_compression)
    default('snapshot_workarounds', 'disable_live_snapshot',
            nova.workarounds.disable_libvirt_livesnapshot)
    default('snapshot_rbd', 'ceph_conf',
            nova.libvirt.images_rbd_ceph_conf or None)
    default('snapshot_rbd', 'user', nova.libvirt.rbd_user or None)
    # NOTE: the locks and journals are shared with the command line, so
    # their defaults are the command line's (below its state_path), not
    # below Nova's state_path.
    cli_state = nse_conf.default_of('DEFAULT', 'state_path')
    nova.set_default('lock_path', os.path.join(cli_state, 'locks'),
                     group='snapshot')
    nova.set_default('journal_directory', os.path.join(cli_state,
                                                       'snapshots'),
                     group='snapshot')
    return nova


def image_format(conf: cfg.ConfigOpts) -> str | None:
    """The snapshot's image format: ``[snapshot] image_format`` when set
    (by default Nova's qcow2 or raw), else Nova's vmdk or vdi, else None
    (the disk's).
    """
    fmt = CONF.libvirt.snapshot_image_format
    if conf.snapshot.image_format or fmt not in qemu_img.WRITE_FORMATS:
        return conf.snapshot.image_format
    return fmt


def quiesce(conf: cfg.ConfigOpts, image_meta: Any) -> str:
    """Quiesce as Nova's image properties ask: ``os_require_quiesce``
    makes it required; without ``hw_qemu_guest_agent`` the guest has no
    agent to ask.

    As Nova's, this applies to live snapshots only: the engine never
    freezes a guest for a cold snapshot (its CPUs are stopped, or it does
    not run), and the driver asks for no freeze of a direct one
    (``quiesce_direct``), so neither fails for quiesce.
    """
    props = image_meta.properties
    if props.get('os_require_quiesce', False):
        return 'required'
    if not props.get('hw_qemu_guest_agent', False):
        return 'never'
    return conf.snapshot.quiesce


def disk_ops() -> Any:
    """Nova's limit on concurrent disk operations (``[compute]
    max_concurrent_disk_ops``), around the snapshot's copy, convert and
    upload.
    """
    # NOTE: looked up at each snapshot: the compute manager replaces the
    # semaphore at init_host.
    return compute_utils.disk_ops_semaphore


def method(conf: cfg.ConfigOpts) -> str:
    """The method Nova's driver would take, as the engine's request."""
    # NOTE: Nova never snapshots live with encrypted ephemeral
    # storage; neither does this driver.
    if CONF.ephemeral_storage_encryption.enabled:
        return 'cold'
    # NOTE: Nova's callers (shelve, a snapshot of a stopped or
    # suspended server) expect a snapshot where a live one is
    # impossible: live means live where possible.
    if conf.snapshot.method == policy.LIVE:
        return policy.PREFER_LIVE
    return conf.snapshot.method


def properties(instance: Any) -> dict[str, Any]:
    """The properties Nova's libvirt driver sets on a snapshot."""
    base = instance.system_metadata.get('image_base_image_ref')
    props = {
        'image_location': 'snapshot',
        'image_state': 'available',
        'owner_id': instance.project_id,
        'kernel_id': instance.kernel_id or None,
        'ramdisk_id': instance.ramdisk_id or None,
        'os_type': instance.os_type or None,
        'base_image_ref': base or instance.image_ref or None,
    }
    return {k: v for k, v in props.items() if v is not None}


def container_format(image_meta: Any) -> str:
    """The container format of the instance's image (``bare`` unset)."""
    if image_meta.obj_attr_is_set('container_format'):
        return image_meta.container_format
    return 'bare'


def request(conf: cfg.ConfigOpts, instance: Any, image_id: str,
            name: str) -> model.SnapshotRequest:
    """The engine's request for a snapshot of ``instance`` into the
    record ``image_id``, as Nova's libvirt driver would take it.
    """
    return model.SnapshotRequest(
        guest=instance.uuid, name=name, method=method(conf),
        image_format=image_format(conf),
        quiesce=quiesce(conf, instance.image_meta), image_id=image_id,
        metadata=properties(instance),
        # NOTE: Nova never freezes a guest for a direct RBD snapshot, and
        # its root disk is find_disk's: the first <disk> of any kind.
        quiesce_direct=False, root_any_device=True, disk_ops=disk_ops)
