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

"""Nova's libvirt driver, with snapshots taken by nova-snapshot-ext.

In nova.conf (of nova-compute)::

    [DEFAULT]
    compute_driver = nova_snapshot_ext.SnapshotLibvirtDriver

Nova loads drivers from its own ``nova.virt`` namespace only; the package
installs the module ``nova.virt.nova_snapshot_ext`` that makes this name
work. Everything but :meth:`SnapshotLibvirtDriver.snapshot` is Nova's
``LibvirtDriver`` unchanged.

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

Long Ceph calls (a flatten can take minutes) run through Nova's
``tpool_wrap``: in an eventlet nova-compute they run in native threads
and the service keeps answering; in threading mode they run as they are.
The backends, and their Ceph connection, are kept from the first snapshot
until ``cleanup_host``.

``init_host`` recovers what snapshots killed with an earlier nova-compute
left (as ``nova-snapshot-ext recover`` does). The per-guest locks and the
journals are in ``[snapshot] lock_path`` and ``journal_directory``, by
default the command line's, so that the command line and nova-compute
never snapshot one guest at the same time and each recovers the other's
interrupted snapshots.
"""

import os
import threading
from typing import Any

import libvirt
from nova.compute import task_states
from nova.compute import utils as compute_utils
from nova import conf as nova_conf
from nova import exception as nova_exc
from nova import utils as nova_utils
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as nova_host
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext import recovery
from nova_snapshot_ext import snapshot as snapshot_mod
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.virt import image_store

LOG = logging.getLogger(__name__)
CONF = nova_conf.CONF

#: Engine errors that mean the guest is not there (any more).
_GONE = (exception.GuestNotFound, exception.GuestGone)


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
    # NOTE: vmdk and vdi are asked for per snapshot (_image_format).
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


def _image_format(conf: cfg.ConfigOpts) -> str | None:
    """The snapshot's image format: ``[snapshot] image_format`` when set
    (by default Nova's qcow2 or raw), else Nova's vmdk or vdi, else None
    (the disk's).
    """
    fmt = CONF.libvirt.snapshot_image_format
    if conf.snapshot.image_format or fmt not in qemu_img.WRITE_FORMATS:
        return conf.snapshot.image_format
    return fmt


def _quiesce(conf: cfg.ConfigOpts, image_meta: Any) -> str:
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


def _disk_ops() -> Any:
    """Nova's limit on concurrent disk operations (``[compute]
    max_concurrent_disk_ops``), around the snapshot's copy, convert and
    upload.
    """
    # NOTE: looked up at each snapshot: the compute manager replaces the
    # semaphore at init_host.
    return compute_utils.disk_ops_semaphore


class _TaskStates:
    """Moves the instance through Nova's snapshot task states as the
    engine goes: ``image_pending_upload`` when it starts, then
    ``image_uploading`` when the image's data starts going to Glance (an
    upload, or the location of a direct snapshot).
    """

    def __init__(self, update_task_state: Any) -> None:
        self._update = update_task_state
        self._uploading = False
        self._lock = threading.Lock()

    def pending_upload(self) -> None:
        self._update(task_state=task_states.IMAGE_PENDING_UPLOAD)

    def uploading(self) -> None:
        with self._lock:
            if self._uploading:
                return
            self._uploading = True
        self._update(task_state=task_states.IMAGE_UPLOADING,
                     expected_state=task_states.IMAGE_PENDING_UPLOAD)

    def progress(self, stage: str, fraction: float) -> None:
        if stage == 'upload':
            self.uploading()


class SnapshotLibvirtDriver(libvirt_driver.LibvirtDriver):
    """Nova's ``LibvirtDriver`` whose snapshots nova-snapshot-ext takes."""

    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        self._nse_conf: cfg.ConfigOpts | None = None
        self._nse_host: host_mod.Host | None = None
        self._nse_backends: backend_base.Backends | None = None

    @property
    def nse_conf(self) -> cfg.ConfigOpts:
        """The engine's configuration (see the module's docstring)."""
        if self._nse_conf is None:
            self._nse_conf = engine_conf(CONF, self._uri())
        return self._nse_conf

    @property
    def nse_host(self) -> host_mod.Host:
        """The engine's libvirt connection. Like Nova's own, in eventlet
        mode its calls run in native threads (``tpool``), so that a long
        libvirt call does not stop the compute service.
        """
        if self._nse_host is None:
            classes = nova_host.Host._get_libvirt_proxy_classes(libvirt)
            self._nse_host = host_mod.Host(
                self._uri(),
                wrap=lambda conn: nova_utils.tpool_wrap(conn,
                                                        autowrap=classes))
        return self._nse_host

    @property
    def nse_backends(self) -> backend_base.Backends:
        """The engine's backends, kept with their storage connections
        until :meth:`cleanup_host`; their long storage calls run through
        ``tpool_wrap`` (see the module's docstring).
        """
        if self._nse_backends is None:
            self._nse_backends = backend_base.Backends(
                self.nse_conf, wrap=nova_utils.tpool_wrap)
        return self._nse_backends

    def init_host(self, host: str) -> None:
        super().init_host(host)
        self.nse_recover()

    def nse_recover(self) -> None:
        """Put right what snapshots killed with an earlier nova-compute
        left (``nova-snapshot-ext recover``). Logs, never raises: the
        service starts whatever it finds.
        """
        try:
            actions = recovery.recover(self.nse_conf, host=self.nse_host,
                                       backends=self.nse_backends)
        except Exception:  # noqa: B902 - the service must start
            LOG.exception('Could not recover interrupted snapshots; run '
                          '"nova-snapshot-ext recover"')
            return
        for action in actions:
            if action.error:
                LOG.error('Snapshot recovery: %s', action.line())
            elif action.verb not in recovery.QUIET:
                LOG.warning('Snapshot recovery: %s', action.line())

    def _cleanup_rbd(self, instance: Any) -> None:
        # NOTE: Nova removes an instance's RBD disks here (delete,
        # shelve-offload, a failed spawn), and gives up on a disk that
        # still has snapshots: a direct snapshot whose flatten was
        # deferred keeps one, with the image cloned from it. The images
        # are made independent first, so the disk goes and they stay. On
        # a resize revert Nova keeps the root disk, and so do we.
        if (CONF.libvirt.images_type == 'rbd' and
                instance.task_state != task_states.RESIZE_REVERTING):
            self.nse_release_disk('%s/%s_disk' % (
                CONF.libvirt.images_rbd_pool, instance.uuid), instance)
        super()._cleanup_rbd(instance)

    def nse_release_disk(self, path: str, instance: Any) -> None:
        """Make the images of the snapshots of the RBD disk ``path``
        independent of it before Nova removes it. Logs, never raises:
        Nova goes on with the removal either way.
        """
        try:
            done = self.nse_backends.get('rbd').release_disk(path)
        except exception.SnapshotError as e:
            LOG.error('Could not release %(path)s from the images of its '
                      'snapshots, so Nova may not remove it: %(err)s; run '
                      '"nova-snapshot-ext gc"', {'path': path, 'err': e},
                      instance=instance)
            return
        for line in done:
            LOG.info('Before removing %(path)s: %(line)s',
                     {'path': path, 'line': line}, instance=instance)

    def cleanup_host(self, host: str) -> None:
        if self._nse_backends is not None:
            self._nse_backends.close()
            self._nse_backends = None
        if self._nse_host is not None:
            self._nse_host.close()
            self._nse_host = None
        super().cleanup_host(host)

    def snapshot(self, context: Any, instance: Any, image_id: str,
                 update_task_state: Any) -> None:
        """Snapshot the instance's root disk into the image ``image_id``
        (the queued record the compute API made).

        :raises InstanceNotRunning: the guest is not on this host.
        :raises InstanceQuiesceFailed: quiesce was required and failed.
        :raises ImageNotFound: the image was deleted meanwhile.
        :raises InternalError: any other failure, with the engine's
            one-line message; the guest is as it was.
        """
        conf = self.nse_conf
        image_meta = instance.image_meta
        container_format = (image_meta.container_format
                            if image_meta.obj_attr_is_set('container_format')
                            else 'bare')
        store = image_store.NovaImageStore(conf, self._image_api, context,
                                           container_format)
        states = _TaskStates(update_task_state)
        try:
            request = model.SnapshotRequest(
                guest=instance.uuid,
                name=store.record(image_id).get('name') or image_id,
                method=self._method(conf),
                image_format=_image_format(conf),
                quiesce=_quiesce(conf, image_meta),
                image_id=image_id,
                metadata=self._properties(instance),
                quiesce_direct=False, root_any_device=True,
                disk_ops=_disk_ops)
            states.pending_upload()
            result = snapshot_mod.take_snapshot(
                request, conf, host=self.nse_host, progress=states.progress,
                store=store, backends=self.nse_backends)
            states.uploading()
        except _GONE:
            raise nova_exc.InstanceNotRunning(instance_id=instance.uuid)
        except exception.ImageNotFound:
            raise nova_exc.ImageNotFound(image_id=image_id)
        except exception.QuiesceFailed as e:
            raise nova_exc.InstanceQuiesceFailed(reason=e.message)
        except exception.SnapshotError as e:
            LOG.error('Snapshot failed: %s', e.message, instance=instance)
            if isinstance(e, exception.StoreUnavailable):
                self._nse_delete_later(context, image_id)
            raise nova_exc.InternalError(e.message)
        LOG.info('Snapshot %(image)s: %(method)s in %(s).1f s, because '
                 '%(reason)s', {'image': image_id, 'method': result.method,
                                's': result.seconds,
                                'reason': result.reason},
                 instance=instance)

    def _nse_delete_later(self, context: Any, image_id: str) -> None:
        """Glance did not answer: the compute manager's delete of the
        record will fail too. Delete it once Glance answers again, in a
        thread of its own (a green one in an eventlet nova-compute).
        """
        thread = threading.Thread(
            target=image_store.delete_when_glance_answers,
            args=(self._image_api, context, image_id),
            name='nse-delete-%s' % image_id, daemon=True)
        thread.start()

    @staticmethod
    def _method(conf: cfg.ConfigOpts) -> str:
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

    @staticmethod
    def _properties(instance: Any) -> dict[str, Any]:
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
