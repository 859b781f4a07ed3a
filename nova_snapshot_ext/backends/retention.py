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

"""Retention of incremental snapshots (``--incremental --keep N``).

A guest's *restore points* are its images in the directory store taken
with ``--incremental``, whichever chain they belong to: the full image
that starts a chain (the first, or one after QEMU was killed, the base
was deleted...) as much as the increments on it. They carry a
``checkpoint`` in their metadata. Images of the guest taken without
``--incremental`` are not restore points of this kind: ``--keep``
neither counts nor deletes them.

``--keep N`` keeps the N newest restore points, ordered by the
creation time in their metadata: ``created_at``, and within one second
``created_ns`` (images made before it was recorded: a chain's images by
their place in it). An image a kept one is backed by is not kept
for it: the kept one is made standalone first
(:meth:`~nova_snapshot_ext.stores.file.FileStore.flatten`), so that the
store holds N restore points, not more. Should that fail, its backing
chain is kept instead. Then the other restore points are deleted, the
newest first, so that a crash in between never leaves an image whose
backing image is gone: the next snapshot with ``--keep`` finishes what is
left (and a flatten cut short, see ``finish_flatten``).

:func:`plan` chooses, without touching anything; :func:`retain` applies.
"""

import dataclasses
from typing import Any
from typing import Iterable

from oslo_log import log as logging

from nova_snapshot_ext import catalog
from nova_snapshot_ext import exception
from nova_snapshot_ext import model

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What retention does with a guest's restore points (image ids)."""

    #: Kept, newest first: the N newest and what they still need.
    keep: tuple[str, ...]
    #: Kept images to make standalone before anything is deleted.
    flatten: tuple[str, ...]
    #: Deleted, newest first (a child before its backing image).
    delete: tuple[str, ...]


def restore_points(images: Iterable[dict[str, Any]],
                   guest_uuid: str) -> list[dict[str, Any]]:
    """The restore points of guest ``guest_uuid`` among ``images`` (the
    store's metadata), newest first.
    """
    points = {doc['id']: doc for doc in images
              if doc.get('source_uuid') == guest_uuid and
              doc.get('checkpoint')}

    return catalog.ordered(list(points.values()), newest_first=True)


def plan(points: list[dict[str, Any]], keep: int,
         not_flattened: Iterable[str] = ()) -> Plan:
    """Which of ``points`` (restore points, newest first) to keep, to
    make standalone and to delete so that the ``keep`` newest remain
    whole.

    :param not_flattened: kept images that could not be made standalone:
        their backing chain is kept instead.
    """
    if keep < 1:
        raise ValueError('keep is at least 1, not %r' % keep)
    by_id = {doc['id']: doc for doc in points}
    newest = [doc['id'] for doc in points[:keep]]
    kept, flatten = set(newest), []
    for image_id in newest:
        parent = by_id[image_id].get('incremental_of')
        if parent is None or parent in kept or parent not in by_id:
            continue
        if image_id not in not_flattened and _whole(by_id, parent):
            flatten.append(image_id)
            continue
        # NOTE: a chain already broken further down cannot be flattened;
        # nothing it still references is deleted.
        while parent in by_id and parent not in kept:
            kept.add(parent)
            parent = by_id[parent].get('incremental_of')
    order = [doc['id'] for doc in points]
    return Plan(keep=tuple(i for i in order if i in kept),
                flatten=tuple(reversed(flatten)),
                delete=tuple(i for i in order if i not in kept))


def _whole(by_id: dict[str, dict[str, Any]], image_id: str | None) -> bool:
    """Whether the backing chain from ``image_id`` down is all there."""
    seen = set()
    while image_id is not None:
        if image_id not in by_id or image_id in seen:
            return False
        seen.add(image_id)
        image_id = by_id[image_id].get('incremental_of')
    return True


def retain(job: model.SnapshotJob, keep: int) -> Plan:
    """Keep the ``keep`` newest restore points of the job's guest in its
    (directory) store, whole; delete its older ones (see the module).

    :returns: what was done.
    """
    store = job.store
    guest = job.guest
    for doc in restore_points(store.list(), guest.uuid):
        # NOTE: under the guest's lock no flatten of ours runs: one
        # found is what a crash cut short.
        store.finish_flatten(doc['id'])
    chosen = plan(restore_points(store.list(), guest.uuid), keep)
    failed: set[str] = set()
    for image_id in chosen.flatten:
        LOG.info('Making image %(id)s of %(guest)s standalone: its backing '
                 'image is older than the %(keep)d kept',
                 {'id': image_id, 'guest': guest.name, 'keep': keep})
        try:
            store.flatten(image_id)
        except (exception.SnapshotError, OSError) as e:
            LOG.error('Could not make image %(id)s of %(guest)s standalone, '
                      'its backing images are kept: %(err)s',
                      {'id': image_id, 'guest': guest.name, 'err': e})
            failed.add(image_id)
    if chosen.flatten:
        # NOTE: chosen again from what the store holds now: an image that
        # could not be made standalone keeps its backing images.
        chosen = plan(restore_points(store.list(), guest.uuid), keep,
                      not_flattened=failed)
    for image_id in chosen.delete:
        LOG.info('Deleting image %(id)s of %(guest)s: the %(keep)d newest '
                 'restore points are kept',
                 {'id': image_id, 'guest': guest.name, 'keep': keep})
        store.delete(image_id)
    return chosen
