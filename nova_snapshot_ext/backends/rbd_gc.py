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

"""Clean-up after interrupted snapshots: ``nova-snapshot-ext gc``.

Queued Glance records the command made and local leftovers (temporary and
partial directories) that no live snapshot owns are swept as
:mod:`nova_snapshot_ext.cleanup.sweep` says. For direct RBD snapshots, it walks
every pool of the cluster of ``[snapshot_rbd]`` (when its ``ceph_conf``
exists) and looks only at what the rbd backend makes: disk snapshots
named ``nse-<uuid>`` and the clones that its RBD metadata names.
Everything else is never touched, except that the clones of a clone being
removed are flattened first, so that they keep their data.

* A clone whose Glance image is active but still has a parent (its flatten
  was deferred) is flattened.
* A clone marked for removal (``<name>_to_be_deleted_by_glance``) is
  removed, after its own clones are flattened so that they keep their
  data.
* A clone whose image Glance has deleted or killed, or whose image is
  still not active after ``[snapshot_rbd] gc_min_age`` seconds, is left
  over from an interrupted snapshot and is removed.
* A clone whose image Glance does not show is removed only when that is
  certain: the credentials see every image (an admin, or a Glance without
  Keystone), the clone is older than ``gc_min_age`` and a second look
  still finds no image. A 404 under credentials that may not see the
  image (another project's private image) proves nothing: such clones are
  kept, saying why.
* A disk snapshot with no clone left is removed once its image is active,
  or, with no image, once it is older than ``gc_min_age`` (younger ones
  may belong to a snapshot still running).

``recover`` undoes the ``rbd_snap`` and ``rbd_clone`` steps of a journal
(:func:`undo_rbd_snap`, :func:`undo_rbd_clone`) with the same
:class:`Collector`, at age 0, so that it decides as gc would.
"""

import datetime
import functools
import os
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import rbd as rbd_backend
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.storage import rbd as rbd_storage
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

Action = undo.Action
FLATTEN, REMOVE_IMAGE, REMOVE_SNAP, KEEP = (
    'flatten', 'remove image', 'remove snapshot', undo.KEEP)
#: Glance statuses of an image whose data is complete.
DONE = ('active',)
#: Glance statuses of an image that no longer needs its data.
GONE = (None, 'killed', 'deleted', 'pending_delete')


class Collector:
    """Finds what is left over, and what to flatten."""

    def __init__(self, conf: cfg.ConfigOpts,
                 driver: rbd_storage.RBDDriver,
                 store: store_base.ImageStore, min_age: float) -> None:
        self.conf = conf
        self.driver = driver
        self.store = store
        self.min_age = min_age
        self._sees_all: bool | None = None
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self._status: dict[str, str | None] = {}
        #: (pool, image) that will no longer be clones of their parent.
        self.detached: set[tuple[str, str]] = set()

    def status(self, image_id: str) -> str | None:
        """Glance's status of ``image_id``; None when it does not exist."""
        if image_id not in self._status:
            self._status[image_id] = self.store.image_status(image_id)
        return self._status[image_id]

    def age(self, created: datetime.datetime) -> float:
        if created.tzinfo is None:
            # NOTE: librbd's timestamps are naive UTC.
            created = created.replace(tzinfo=datetime.timezone.utc)
        return (self.now - created).total_seconds()

    def collect(self) -> list[Action]:
        actions: list[Action] = []
        snaps = []
        for pool in self.driver.pools():
            try:
                names = self.driver.images(pool)
            except exception.RbdFailed as e:
                LOG.debug('Skipping pool %s: %s', pool, e)
                continue
            for name in names:
                try:
                    info = self.driver.info(pool, name)
                except exception.RbdFailed as e:
                    # NOTE: removed meanwhile, or not an image we can read.
                    LOG.debug('Skipping %s/%s: %s', pool, name, e)
                    continue
                meta = info['metadata']
                image_id = meta.get(rbd_backend.META_IMAGE_ID)
                if image_id and rbd_backend.is_our_clone(pool, name, meta):
                    actions += self.clone(pool, name, info, image_id)
                snaps += [(pool, name, s) for s in info['snaps']
                          if rbd_backend.SNAP_RE.match(s.name)]
        for pool, name, snap in snaps:
            actions += self.snapshot(pool, name, snap)
        return actions

    # -- clones --------------------------------------------------------
    def clone(self, pool: str, name: str, info: dict,
              image_id: str) -> list[Action]:
        snaps = info['snaps']
        target = '%s/%s' % (pool, name)
        if (rbd_backend.META_DELETE in info['metadata']
                or name.endswith(rbd_backend.TO_BE_DELETED)):
            return self._remove(pool, name, snaps, 'marked for removal '
                                                   'after a failed snapshot')
        status = self.status(image_id)
        if status is None:
            doubt = self._absence_unproven(image_id, info['created'])
            if doubt:
                return [Action(KEEP, target, doubt)]
        if status in DONE:
            if info['parent'] is None:
                return []
            self.detached.add((pool, name))
            return [Action(FLATTEN, target,
                           'image %s is active and its flatten was '
                           'deferred' % image_id,
                           run=lambda: self.driver.flatten(pool, name))]
        if status in GONE:
            return self._remove(pool, name, snaps,
                                'image %s is not in Glance%s' % (
                                    image_id, '' if status is None else
                                    ' (it is %s)' % status))
        age = self.age(info['created'])
        if age < self.min_age:
            return [Action(KEEP, target,
                           'image %s is %s; its snapshot may still be '
                           'running (%d s old, gc_min_age %d s)' % (
                               image_id, status, age, self.min_age))]
        return self._remove(pool, name, snaps,
                            'image %s is still %s after %d s: its snapshot '
                            'was interrupted' % (image_id, status, age))

    def _absence_unproven(self, image_id: str,
                          created: datetime.datetime) -> str | None:
        """Why Glance's 404 for ``image_id`` does not prove the image is
        gone; None when it does.
        """
        if self._sees_all is None:
            self._sees_all = self.store.sees_all_images()
        if not self._sees_all:
            return ('image %s is not visible to these credentials, which may '
                    'not see every image; run gc with admin credentials' %
                    image_id)
        age = self.age(created)
        if age < self.min_age:
            return ('image %s is not in Glance, but its snapshot may still be '
                    'running (%d s old, gc_min_age %d s)' % (
                        image_id, age, self.min_age))
        # NOTE: a second look, past the cache: a record made meanwhile.
        again = self.store.image_status(image_id)
        if again is not None:
            self._status[image_id] = again
            return 'image %s appeared in Glance (%s)' % (image_id, again)
        return None

    def _remove(self, pool: str, name: str, snaps: list[rbd_storage.Snap],
                reason: str) -> list[Action]:
        actions = []
        for snap in snaps:
            children = self.driver.children(pool, name, snap.name)
            for child_pool, child in children:
                actions.append(Action(
                    FLATTEN, '%s/%s' % (child_pool, child),
                    'it is a clone of %s/%s@%s, which is removed' % (
                        pool, name, snap.name),
                    run=functools.partial(self.driver.flatten, child_pool,
                                          child)))
        self.detached.add((pool, name))
        actions.append(Action(
            REMOVE_IMAGE, '%s/%s' % (pool, name), reason,
            run=lambda: self.driver.remove_image(pool, name)))
        return actions

    # -- disk snapshots ------------------------------------------------
    def snapshot(self, pool: str, name: str,
                 snap: rbd_storage.Snap) -> list[Action]:
        target = '%s/%s@%s' % (pool, name, snap.name)
        clones = [c for c in self.driver.children(pool, name, snap.name)
                  if c not in self.detached]
        if clones:
            return [Action(KEEP, target, 'it still has clones: %s' % ', '.join(
                '%s/%s' % c for c in clones))]
        image_id = snap.name[len(rbd_backend.SNAP_PREFIX):]
        status = self.status(image_id)
        age = self.age(snap.created)
        if status in DONE:
            reason = 'image %s is active and no longer needs it' % image_id
        elif age >= self.min_age:
            reason = 'left by a snapshot interrupted %d s ago' % age
        else:
            return [Action(KEEP, target,
                           'its snapshot may still be running (%d s old, '
                           'gc_min_age %d s)' % (age, self.min_age))]
        return [Action(REMOVE_SNAP, target, reason,
                       run=lambda: self.driver.remove_snap(pool, name,
                                                           snap.name))]


def collect(conf: cfg.ConfigOpts, store: store_base.ImageStore,
            min_age: float) -> list[Action]:
    """What gc does about the leftovers of direct snapshots in the
    cluster of ``[snapshot_rbd]``, when ``store`` is one Glance shares
    Ceph through (it registers locations).
    """
    if not store.SUPPORTS_LOCATION:
        return []
    if not os.path.exists(conf.snapshot_rbd.ceph_conf):
        return [Action(KEEP, 'Ceph', 'no cluster to look at: '
                                     '[snapshot_rbd] ceph_conf %s does not '
                                     'exist' % conf.snapshot_rbd.ceph_conf)]
    driver = rbd_storage.RBDDriver(conf)
    try:
        return Collector(conf, driver, store, min_age).collect()
    finally:
        driver.close()


# -- recover ----------------------------------------------------------------
class _NeverRegistered:
    """The store gc asks about clones whose location was never
    registered: Glance has no image of their data, for certain.
    """

    def sees_all_images(self) -> bool:
        return True

    def image_status(self, image_id: str) -> None:
        return None


def _collector(r: undo.Recovering) -> Collector:
    def make() -> Collector:
        driver = None
        if r.backends is not None:
            driver = r.backends.get('rbd').storage_driver()
        if driver is None:
            driver = rbd_storage.RBDDriver(r.conf)
            r.on_close(driver.close)
        store: Any = _NeverRegistered()
        if r.has_location():
            store = r.store(r.j.header.get('store'))
            if store is None:
                raise exception.InvalidInput(
                    reason='a location was registered and the store '
                           'cannot be reached from here; run '
                           '"nova-snapshot-ext gc"')
        return Collector(r.conf, driver, store, min_age=0)
    return r.cached('rbd collector', make)


def _act(r: undo.Recovering, actions: list[Action]) -> None:
    for a in actions:
        r.act(a.verb, a.target, a.detail, run=a.run)


def undo_rbd_clone(r: undo.Recovering, step: journal.Step) -> None:
    """``rbd_clone``: what gc would do about the clone."""
    pool, image = str(step.data.get('pool')), str(step.data.get('image'))
    c = _collector(r)
    try:
        info = c.driver.info(pool, image)
    except exception.RbdFailed:
        r.act(undo.NOTHING, '%s/%s' % (pool, image), 'there is no such '
              'image')
        return
    _act(r, c.clone(pool, image, info, image))


def undo_rbd_snap(r: undo.Recovering, step: journal.Step) -> None:
    """``rbd_snap``: what gc would do about the disk snapshot."""
    pool, image = str(step.data.get('pool')), str(step.data.get('image'))
    name = str(step.data.get('snap'))
    c = _collector(r)
    try:
        snaps = [s for s in c.driver.snaps(pool, image) if s.name == name]
    except exception.RbdFailed:
        snaps = []
    if not snaps:
        r.act(undo.NOTHING, '%s/%s@%s' % (pool, image, name), 'there is no '
              'such snapshot')
        return
    _act(r, c.snapshot(pool, image, snaps[0]))
