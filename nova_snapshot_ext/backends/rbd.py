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

"""The rbd backend: guests whose root disk is an RBD image.

**Direct** (when Glance stores images in the same Ceph cluster and the
disk is raw): snapshot the disk (quiesced when the guest agent answers),
protect the snapshot, clone it into Glance's pool under the Glance image
id, flatten the clone (``[snapshot_rbd] flatten = inline``; ``deferred``
leaves it to ``nova-snapshot-ext gc``), snapshot ``snap`` on the clone and
protect it, register ``rbd://fsid/pool/id/snap`` as the image's location, and
remove the disk's snapshot once the clone no longer depends on it. Every
step registers its undo first; whatever cannot be removed at once (a busy
clone) is renamed ``<name>_to_be_deleted_by_glance`` for ``gc``.

**Export** (otherwise, with the reason logged and stored): snapshot the
disk, let qemu-img read that snapshot (never the live image) into the
store's file, remove the snapshot. A running guest keeps running.

What the backend creates is recognisable: disk snapshots are named
``nse-<uuid>`` and clones carry their own pool and name in their RBD
metadata (:func:`is_our_clone`), so ``gc`` never touches anything else.
"""

import contextlib
import re
import uuid

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import rbd_target
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.storage import rbd as rbd_storage
from nova_snapshot_ext.storage import rbd_location
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

#: Prefix of the snapshots the backend makes on guests' disks.
SNAP_PREFIX = 'nse-'
SNAP_RE = re.compile(r'^nse-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                     r'[0-9a-f]{12}$')
#: The snapshot Glance's rbd store expects on an image (glance_store's
#: DEFAULT_SNAPNAME).
GLANCE_SNAP = 'snap'
#: Suffix of clones that could not be removed at once.
TO_BE_DELETED = '_to_be_deleted_by_glance'
#: RBD metadata on the clones the backend makes. librbd copies an image's
#: metadata into its clones, so a clone is ours only where META_CLONE
#: names it (see :func:`is_our_clone`).
META_CLONE = 'nova_snapshot_ext.clone'
META_IMAGE_ID = 'nova_snapshot_ext.image_id'
META_SOURCE = 'nova_snapshot_ext.source'
META_FLATTEN = 'nova_snapshot_ext.flatten'
META_DELETE = 'nova_snapshot_ext.delete'


def snap_name(image_id: str) -> str:
    return SNAP_PREFIX + image_id


def is_our_clone(pool: str, name: str, metadata: dict[str, str]) -> bool:
    """Whether ``pool/name`` is a clone the backend made (possibly renamed
    for removal), and not, e.g., a guest's disk cloned from one of them.
    """
    marked = metadata.get(META_CLONE)
    here = '%s/%s' % (pool, name)
    return bool(marked) and here in (marked, '%s%s' % (marked,
                                                       TO_BE_DELETED))


Target = rbd_target.Target


class RbdBackend(base.ImageBackend):
    """Raw (or qcow2) disks on Ceph RBD."""

    name = 'rbd'
    disk_formats = ('raw', 'qcow2')

    def __init__(self, conf: cfg.ConfigOpts,
                 wrap: base.Wrap = base.no_wrap) -> None:
        super().__init__(conf, wrap)
        # NOTE: one Ceph connection for as long as the backend is kept
        # (base.Backends), closed by close(); its calls, which can take
        # minutes (flatten), go through wrap.
        self._driver = rbd_storage.RBDDriver(conf)
        self.driver = wrap(self._driver)

    def close(self) -> None:
        self._driver.close()

    def storage_driver(self) -> rbd_storage.RBDDriver:
        return self.driver

    def release_disk(self, path: str) -> list[str]:
        """Flatten the clones of the disk's ``nse-`` snapshots (images
        whose flatten was deferred, or is not done yet) and remove those
        snapshots; an RBD image with snapshots cannot be removed.
        """
        pool, _sep, name = path.partition('/')
        if not self.driver.exists(pool, name):
            return []
        done = []
        for snap in self.driver.snaps(pool, name):
            if not SNAP_RE.match(snap.name):
                continue
            for child_pool, child in self.driver.children(pool, name,
                                                          snap.name):
                self.driver.flatten(child_pool, child)
                done.append('flattened %s/%s' % (child_pool, child))
            self.driver.remove_snap(pool, name, snap.name)
            done.append('removed %s@%s' % (path, snap.name))
        return done

    # -- the interface -------------------------------------------------
    def inspect(self, job: model.SnapshotJob) -> base.Support:
        self._check_disk(job)
        # NOTE: an export reads an RBD snapshot, not a block copy: no
        # minimum libvirt or QEMU version applies.
        return base.Support(live=True, live_needs_block_jobs=False,
                            direct=True,
                            direct_unavailable=self.direct_unavailable(job))

    def copy(self, job: model.SnapshotJob, method: str, out_path: str,
             outcome: steps.Outcome) -> None:
        """Export an RBD snapshot of the disk; cold, with the guest's
        memory saved meanwhile.
        """
        if method == policy.LIVE:
            paused = steps.check_quiesce(job)
            self._export(job, out_path, paused, outcome)
            return
        with steps.suspended(job, outcome):
            self._export(job, out_path, True, steps.Outcome())

    def _check_disk(self, job: model.SnapshotJob) -> None:
        disk = job.disk
        if disk.source_type != 'network' or disk.protocol != 'rbd':
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='the rbd backend reads RBD disks, %s is a %s disk' % (
                    disk.target, disk.protocol or disk.source_type))
        if disk.format not in self.disk_formats:
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='the rbd backend reads raw and qcow2 disks, %s is '
                       '%s' % (disk.target, disk.format))
        pool, name = self.source(job)
        if not self.driver.exists(pool, name):
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='its disk %s is not in the Ceph cluster of %s' % (
                    disk.path, self.conf.snapshot_rbd.ceph_conf))

    def source(self, job: model.SnapshotJob) -> tuple[str, str]:
        """The disk's (pool, image)."""
        parts = job.disk.path.split('/')
        if len(parts) != 2 or not all(parts):
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='RBD disk %r is not POOL/IMAGE (namespaces are not '
                       'supported)' % job.disk.path)
        return parts[0], parts[1]

    def direct_unavailable(self, job: model.SnapshotJob) -> str | None:
        """Why the direct path cannot serve ``job``; None when it can."""
        try:
            self.target(job)
        except exception.DirectSnapshotImpossible as e:
            return str(e.kwargs['reason'])
        return None

    # -- where a direct snapshot goes ----------------------------------
    def target(self, job: model.SnapshotJob) -> Target:
        """Glance's rbd store in this cluster.

        :raises DirectSnapshotImpossible: with the reason.
        """
        group = self.conf.snapshot_rbd

        def impossible(reason: str) -> exception.DirectSnapshotImpossible:
            return exception.DirectSnapshotImpossible(guest=job.guest.name,
                                                      reason=reason)

        if not group.direct_snapshot:
            raise impossible('[snapshot_rbd] direct_snapshot is off')
        store = job.store
        if not store.SUPPORTS_LOCATION:
            raise impossible('the image store %s takes uploads only; a '
                             'direct snapshot needs Glance with an rbd '
                             'store' % store)
        if job.disk.format != 'raw':
            raise impossible('the disk is %s, and only raw RBD images are '
                             'cloned into Glance' % job.disk.format)
        if job.image_format != 'raw':
            raise impossible('a %s image was asked for, and a direct '
                             'snapshot is raw' % job.image_format)
        fsid = self.driver.fsid()
        stores = store.stores_detail()
        if stores is not None:
            return rbd_target.from_stores(self.conf, stores, fsid,
                                          impossible)
        return rbd_target.from_locations(self.conf, job, fsid, impossible)

    # -- direct --------------------------------------------------------
    def direct_snapshot(self, job: model.SnapshotJob,
                        pending: store_base.PendingImage,
                        outcome: steps.Outcome) -> store_base.StoredImage:
        target = self.target(job)
        pool, name = self.source(job)
        image_id = pending.image_id
        assert image_id is not None
        snap = snap_name(image_id)
        deferred = self.conf.snapshot_rbd.flatten == 'deferred'
        driver = self.driver
        job = steps.for_direct(job)
        paused = steps.check_quiesce(job)
        job.progress('copy', 0.0)
        record = journal.current()
        with contextlib.ExitStack() as undo:
            snap_step = record.add(journal.RBD_SNAP, pool=pool, image=name,
                                   snap=snap)
            with steps.quiesced(job, paused, outcome):
                driver.create_snap(pool, name, snap, protect=True)
            record.reached(journal.RBD_SNAP)
            undo.callback(self._drop_snap, pool, name, snap, snap_step)
            self._clone(job, (pool, name, snap), target, image_id, deferred,
                        undo)
            pending.meta.properties['quiesced'] = outcome.quiesced
            stored = self._register(job, pending, target, image_id)
            # NOTE: from here on the clone is Glance's image.
            undo.pop_all()
        if not deferred:
            self._drop_snap(pool, name, snap, snap_step)
        else:
            LOG.info('Image %(id)s is active; its clone %(pool)s/%(id)s '
                     'still depends on %(src)s until "nova-snapshot-ext gc" '
                     'flattens it', {'id': image_id, 'pool': target.pool,
                                     'src': '%s/%s@%s' % (pool, name, snap)})
        return stored

    def _clone(self, job: model.SnapshotJob, source: tuple[str, str, str],
               target: Target, image_id: str, deferred: bool,
               undo: contextlib.ExitStack) -> None:
        """Clone the disk's snapshot ``source`` (pool, image, snapshot)
        into the image ``image_id`` of ``target``'s pool, flattened unless
        ``deferred``, with Glance's snapshot on it; its removal is pushed
        on ``undo``.

        :raises DirectSnapshotImpossible: Ceph refused the clone.
        """
        pool, name, snap = source
        driver = self.driver
        record = journal.current()
        try:
            with record.step(journal.RBD_CLONE, pool=target.pool,
                             image=image_id) as clone_step:
                driver.clone(pool, name, snap, target.pool, image_id)
        except exception.RbdForbidden as e:
            record.done(clone_step)
            raise exception.DirectSnapshotImpossible(
                guest=job.guest.name, reason=e.message)
        undo.callback(self._drop_clone, target.pool, image_id, clone_step)
        driver.set_metadata(target.pool, image_id, {
            META_CLONE: '%s/%s' % (target.pool, image_id),
            META_IMAGE_ID: image_id,
            META_SOURCE: '%s/%s@%s' % (pool, name, snap),
            META_FLATTEN: 'deferred' if deferred else 'inline'})
        if not deferred:
            driver.flatten(target.pool, image_id,
                           lambda f: job.progress('copy', f))
        job.progress('copy', 1.0)
        driver.create_snap(target.pool, image_id, GLANCE_SNAP, protect=True)

    @staticmethod
    def _register(job: model.SnapshotJob, pending: store_base.PendingImage,
                  target: Target, image_id: str) -> store_base.StoredImage:
        """Register the clone as the image's location: this path's
        upload.

        :raises DirectSnapshotImpossible: Glance refused the location.
        """
        location = rbd_location.Location(target.fsid, target.pool,
                                         image_id, GLANCE_SNAP)
        job.progress('upload', 0.0)
        try:
            return pending.add_location(location.url, target.store_id)
        except exception.StoreAuthFailed as e:
            # NOTE: e.g. Glance's location API without the service
            # role; the record is still queued and can be uploaded.
            raise exception.DirectSnapshotImpossible(
                guest=job.guest.name,
                reason='Glance refused to register the RBD location '
                       '(%s)' % e.kwargs['reason'])

    def _drop_snap(self, pool: str, name: str, snap: str,
                   step: journal.Step | None = None) -> None:
        """Remove a snapshot of ours; what cannot be removed is logged
        and left to ``gc``.
        """
        try:
            self.driver.remove_snap(pool, name, snap)
        except exception.SnapshotError as e:
            LOG.warning('%(err)s; "nova-snapshot-ext gc" will remove it',
                        {'err': e})
            return
        journal.current().done(step)

    def _drop_clone(self, pool: str, name: str,
                    step: journal.Step | None = None) -> None:
        if drop_clone(self.driver, pool, name):
            journal.current().done(step)

    # -- export --------------------------------------------------------
    def _export(self, job: model.SnapshotJob, out_path: str, paused: bool,
                outcome: steps.Outcome) -> None:
        """Read one point in time of the disk (an RBD snapshot, quiesced
        unless ``paused``) into ``out_path``.
        """
        pool, name = self.source(job)
        snap = snap_name(str(uuid.uuid4()))
        record = journal.current()
        step = record.add(journal.RBD_SNAP, pool=pool, image=name, snap=snap)
        try:
            with steps.quiesced(job, paused, outcome):
                self.driver.create_snap(pool, name, snap)
            record.reached(journal.RBD_SNAP)
            src = rbd_location.qemu_image_opts(self.conf, job.disk.format,
                                               pool, name, snap)
            if job.disk.format != 'raw':
                info = qemu_img.info(self.conf, src, job.disk.format,
                                     image_opts=True)
                if qemu_img.backing_of(info):
                    raise exception.UnsupportedDisk(
                        guest=job.guest.name,
                        reason='its %s disk %s has a backing file' % (
                            job.disk.format, job.disk.path))
            steps.convert(job, src, job.disk.format, out_path,
                          image_opts=True)
        finally:
            self._drop_snap(pool, name, snap, step)


def drop_clone(driver: rbd_storage.RBDDriver, pool: str, name: str) -> bool:
    """Remove a clone of ours. One that cannot be removed now (busy, or
    cloned in turn) is renamed ``<name>_to_be_deleted_by_glance`` and
    marked, for ``gc``. Logs, never raises.

    :returns: whether it is gone (or marked for ``gc``).
    """
    try:
        driver.remove_image(pool, name)
        return True
    except exception.SnapshotError as e:
        failure = e
    doomed = name + TO_BE_DELETED
    try:
        driver.set_metadata(pool, name, {META_DELETE: 'true'})
        driver.rename(pool, name, doomed)
    except exception.SnapshotError as e:
        LOG.error('Could not remove %(pool)s/%(name)s (%(why)s) nor mark '
                  'it for removal (%(err)s); remove it with "rbd rm '
                  '%(pool)s/%(name)s"', {'pool': pool, 'name': name,
                                         'why': failure, 'err': e})
        return False
    LOG.warning('Could not remove %(pool)s/%(name)s (%(why)s); renamed it '
                '%(doomed)s for "nova-snapshot-ext gc"',
                {'pool': pool, 'name': name, 'why': failure,
                 'doomed': doomed})
    return True
