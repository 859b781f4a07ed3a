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

"""Ceph RBD through the ``rados`` and ``rbd`` bindings: the image calls
(pools, images, snapshots, clones, flatten) of :class:`RBDDriver`, on
the connection of :mod:`nova_snapshot_ext.storage.rbd_connection`. Every
Ceph error leaves this module as one of :mod:`nova_snapshot_ext.
exception`'s.
"""

from collections.abc import Callable
import contextlib
import dataclasses
import datetime
import errno
from typing import Any

from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import rbd_connection


LOG = logging.getLogger(__name__)

Progress = Callable[[float], None]


@dataclasses.dataclass(frozen=True)
class Snap:
    name: str
    protected: bool
    created: datetime.datetime


class RBDDriver(rbd_connection.Connection):
    """The Ceph cluster of ``[snapshot_rbd]``: the image calls."""

    def pools(self) -> list[str]:
        with self._errors('list the pools of', 'the cluster'):
            return list(self.cluster().list_pools())

    def images(self, pool: str) -> list[str]:
        with self.ioctx(pool) as ctx, self._errors('list the images of',
                                                   pool):
            return sorted(rbd_connection.rbd.RBD().list(ctx))

    def exists(self, pool: str, name: str) -> bool:
        target = '%s/%s' % (pool, name)
        with self._errors('open', target):
            try:
                with self.image(pool, name, read_only=True):
                    return True
            except rbd_connection.rbd.ImageNotFound:
                return False

    def info(self, pool: str, name: str) -> dict[str, Any]:
        """Size, features, parent ``(pool, image, snap)`` or None,
        creation time, metadata and user snapshots (:class:`Snap`) of an
        image, read with one open.
        """
        target = '%s/%s' % (pool, name)
        with self._errors('read', target), self.image(
                pool, name, read_only=True) as img:
            try:
                parent = img.get_parent_image_spec()
                parent = (parent['pool_name'], parent['image_name'],
                          parent['snap_name'])
            except rbd_connection.rbd.ImageNotFound:
                parent = None
            return {
                'size': img.size(),
                'features': img.features(),
                'parent': parent,
                'created': img.create_timestamp(),
                'metadata': dict(img.metadata_list()),
                'snaps': self._user_snaps(img),
            }

    def snaps(self, pool: str, name: str) -> list[Snap]:
        """The user snapshots of an image."""
        target = '%s/%s' % (pool, name)
        with self._errors('list the snapshots of', target), self.image(
                pool, name, read_only=True) as img:
            return self._user_snaps(img)

    @staticmethod
    def _user_snaps(img: Any) -> list[Snap]:
        user = rbd_connection.rbd.RBD_SNAP_NAMESPACE_TYPE_USER
        return [Snap(s['name'], bool(img.is_protected_snap(s['name'])),
                     img.get_snap_timestamp(s['id']))
                for s in img.list_snaps()
                if s.get('namespace', user) == user]

    def children(self, pool: str, name: str,
                 snap: str) -> list[tuple[str, str]]:
        """The clones of ``pool/name@snap``, as (pool, image)."""
        target = '%s/%s@%s' % (pool, name, snap)
        with self._errors('list the clones of', target), self.image(
                pool, name, snapshot=snap, read_only=True) as img:
            return [(c['pool'], c['image']) for c in img.list_children2()]

    # -- changes -------------------------------------------------------
    def set_metadata(self, pool: str, name: str,
                     values: dict[str, str]) -> None:
        with self._errors('set metadata on', '%s/%s' % (pool, name)), \
                self.image(pool, name) as img:
            for key, value in values.items():
                img.metadata_set(key, value)

    def create_snap(self, pool: str, name: str, snap: str,
                    protect: bool = False) -> None:
        """Snapshot an image, and protect the snapshot if asked to; a
        snapshot that cannot be protected is removed again.
        """
        target = '%s/%s@%s' % (pool, name, snap)
        with self._errors('create the snapshot', target), self.image(
                pool, name) as img:
            self._busy(img.create_snap, snap)
            if not protect:
                return
            try:
                self._busy(img.protect_snap, snap)
            except BaseException:
                with contextlib.suppress(rbd_connection.rbd.Error):
                    img.remove_snap(snap)
                raise

    def remove_snap(self, pool: str, name: str, snap: str) -> bool:
        """Unprotect and remove a snapshot.

        :returns: False when there was no such snapshot (or image).
        :raises RbdFailed: it still has clones, or Ceph refused.
        """
        target = '%s/%s@%s' % (pool, name, snap)
        with self._errors('remove the snapshot', target):
            try:
                with self.image(pool, name) as img:
                    return self._remove_snap(img, target, snap)
            except rbd_connection.rbd.ImageNotFound:
                return False

    def _remove_snap(self, img: Any, target: str, snap: str) -> bool:
        if snap not in {s['name'] for s in img.list_snaps()}:
            return False
        if img.is_protected_snap(snap):
            clones = ['%s/%s' % (c['pool'], c['image'])
                      for c in self._snap_children(img, snap)]
            if clones:
                raise exception.RbdFailed(
                    action='remove the snapshot', target=target,
                    reason='it has clones: %s' % ', '.join(clones))
            self._busy(img.unprotect_snap, snap)
        self._busy(img.remove_snap, snap)
        return True

    @staticmethod
    def _snap_children(img: Any, snap: str) -> list[dict[str, Any]]:
        img.set_snap(snap)
        try:
            return list(img.list_children2())
        finally:
            img.set_snap(None)

    def clone(self, pool: str, name: str, snap: str, dest_pool: str,
              dest_name: str) -> None:
        """Clone ``pool/name@snap`` (protected) as ``dest_pool/dest_name``
        with the parent's features.
        """
        target = '%s/%s@%s' % (pool, name, snap)
        with self._errors('clone %s into' % target,
                          '%s/%s' % (dest_pool, dest_name)):
            with self.image(pool, name, read_only=True) as img:
                features = img.features()
            with self.ioctx(pool) as src, self.ioctx(dest_pool) as dst:
                rbd_connection.rbd.RBD().clone(src, name, snap, dst,
                                               dest_name, features=features)

    def flatten(self, pool: str, name: str,
                progress: Progress | None = None) -> None:
        """Copy the parent's data into a clone, so it has no parent.

        An exception raised by ``progress`` (e.g. KeyboardInterrupt)
        cancels the flatten and is raised again.
        """
        raised: list[BaseException] = []

        def report(offset: int, total: int) -> int:
            if progress is not None and total:
                try:
                    progress(min(1.0, offset / total))
                except BaseException as e:
                    # NOTE: an exception cannot cross librbd; a negative
                    # result makes it stop the flatten.
                    raised.append(e)
                    return -errno.ECANCELED
            return 0

        with self._errors('flatten', '%s/%s' % (pool, name)), self.image(
                pool, name) as img:
            try:
                img.get_parent_image_spec()
            except rbd_connection.rbd.ImageNotFound:
                return
            try:
                self._busy(img.flatten, on_progress=report)
            except rbd_connection.rbd.Error:
                if raised:
                    raise raised[0]
                raise
            if raised:
                raise raised[0]

    def rename(self, pool: str, name: str, new_name: str) -> None:
        with self._errors('rename', '%s/%s' % (pool, name)), \
                self.ioctx(pool) as ctx:
            self._busy(rbd_connection.rbd.RBD().rename, ctx, name, new_name)

    def remove_image(self, pool: str, name: str) -> bool:
        """Remove an image and its snapshots (unprotecting them).

        :returns: False when there was no such image.
        :raises RbdFailed: a snapshot has clones, or Ceph refused.
        """
        target = '%s/%s' % (pool, name)
        with self._errors('remove', target):
            try:
                with self.image(pool, name) as img:
                    for snap in list(img.list_snaps()):
                        self._remove_snap(img, '%s@%s' % (
                            target, snap['name']), snap['name'])
            except rbd_connection.rbd.ImageNotFound:
                return False
            with self.ioctx(pool) as ctx:
                try:
                    self._busy(rbd_connection.rbd.RBD().remove, ctx, name)
                except rbd_connection.rbd.ImageNotFound:
                    return False
        return True
