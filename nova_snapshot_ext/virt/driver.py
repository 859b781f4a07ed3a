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

The engine's options are registered on Nova's own configuration, with
Nova's settings as their defaults where Nova has them, and a snapshot is
asked for as Nova's driver would take it: see :mod:`.settings`.

Long Ceph calls (a flatten can take minutes) run through Nova's
``tpool_wrap``: in an eventlet nova-compute they run in native threads
and the service keeps answering; in threading mode they run as they are.
The backends, and their Ceph connection, are kept from the first snapshot
until ``cleanup_host``.

``init_host`` checks that nova-compute's user can write the directories
below, and refuses to start, in one line, if not; then it recovers what
snapshots killed with an earlier nova-compute left (as
``nova-snapshot-ext recover`` does). The per-guest locks and the
journals are in ``[snapshot] lock_path`` and ``journal_directory``, by
default the command line's, so that the command line and nova-compute
never snapshot one guest at the same time and each recovers the other's
interrupted snapshots.
"""

import functools
import sys
import threading
from typing import Any

import libvirt
from nova.compute import task_states
from nova import conf as nova_conf
from nova import exception as nova_exc
from nova import utils as nova_utils
from nova.virt.libvirt import driver as libvirt_driver
from nova.virt.libvirt import host as nova_host
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext.cleanup import recovery
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import snapshot as snapshot_mod
from nova_snapshot_ext.virt import devices
from nova_snapshot_ext.virt import image_store
from nova_snapshot_ext.virt import records as records_mod
from nova_snapshot_ext.virt import settings

LOG = logging.getLogger(__name__)
CONF = nova_conf.CONF

#: Nova's configuration with the engine's options (tests use it).
engine_conf = settings.engine_conf

#: Engine errors that mean the guest is not there (any more).
_GONE = (exception.GuestNotFound, exception.GuestGone)


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
            self._nse_conf = settings.engine_conf(CONF, self._uri())
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
        self.nse_check_shared()
        self.nse_recover()
        self.nse_finish_records()

    def nse_check_shared(self) -> None:
        """Check that nova-compute's user can take the snapshot locks and
        write the journals it shares with the command line (e.g. a
        directory root's command line made before ``nova`` could).

        :raises InvalidConfiguration: it cannot; the service does not
            start, with one line that names the directory and the fix.
        """
        try:
            locks.check(self.nse_conf)
        except exception.SnapshotError as e:
            LOG.error('%s', e.message)
            raise nova_exc.InvalidConfiguration(e.message)

    @property
    def nse_records(self) -> records_mod.Records:
        """The image records being filled (:mod:`.records`)."""
        return records_mod.Records(CONF.state_path)

    def nse_finish_records(self) -> None:
        """Delete the records an earlier nova-compute died filling."""
        for line in records_mod.finish(CONF, self.nse_records,
                                       self._image_api):
            LOG.warning('Snapshot recovery: %s', line)

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
        store = image_store.NovaImageStore(
            conf, self._image_api, context,
            settings.container_format(instance.image_meta))
        states = _TaskStates(update_task_state)
        # NOTE: crossed out when the snapshot ends, whatever the outcome
        # (the compute manager deletes the record of a failed one), but
        # not when the process dies: then init_host deletes the record.
        self.nse_records.add(image_id, instance.uuid)
        kept = False
        try:
            request = settings.request(
                conf, instance, image_id,
                store.record(image_id).get('name') or image_id)
            # NOTE: a cold snapshot of a running guest goes through Nova's
            # suspend path: its passthrough devices detached first.
            request.guest_devices = functools.partial(
                devices.detached, self, context, instance)
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
                kept = True
                self._nse_delete_later(context, image_id)
            raise nova_exc.InternalError(e.message)
        finally:
            # NOTE: a BaseException that is no Exception (GreenletExit,
            # SystemExit) ends the process, not the snapshot.
            dying = sys.exc_info()[1]
            if not kept and (dying is None or isinstance(dying, Exception)):
                self.nse_records.remove(image_id)
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
        threading.Thread(target=records_mod.delete_later,
                         args=(self.nse_records, self._image_api, context,
                               image_id),
                         name='nse-delete-%s' % image_id, daemon=True).start()
