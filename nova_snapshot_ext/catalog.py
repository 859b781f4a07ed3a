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

"""What a store of chains holds (the directory store): ``list``,
``show`` and ``delete``.

An image is named by its id, by the path of its image file, or by its
name when no other image has it. Its *dependents* are the images whose
backing chain holds it (incremental snapshots taken after it); an image
of an ``--all-disks`` group has the other images of the group as its
*group*.

``delete`` refuses an image that others depend on, unless asked to
delete them too: then the newest goes first, so that a kill at any point
leaves only whole images, each with its whole chain (the store's own
delete of one image is crash-safe, see
:meth:`~nova_snapshot_ext.stores.file.FileStore.delete`).
"""

import datetime
import functools
import os
from typing import Any

from oslo_config import cfg
from oslo_utils import uuidutils

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store


def ordered(images: list[dict[str, Any]],
            newest_first: bool = False) -> list[dict[str, Any]]:
    """``images`` (metadata) in the order they were taken: by
    ``created_at``, then ``created_ns``, then, for images made before
    ``created_ns`` was recorded, by their place in a chain among them.
    """
    by_id = {doc['id']: doc for doc in images}

    def depth(image_id: str | None) -> int:
        # NOTE: without created_ns, an increment taken within the second
        # of its backing image still sorts after it.
        seen: set[str] = set()
        while image_id in by_id and image_id not in seen:
            assert image_id is not None
            seen.add(image_id)
            image_id = by_id[image_id].get('incremental_of')
        return len(seen)

    return sorted(images, reverse=newest_first,
                  key=lambda doc: (doc.get('created_at', ''),
                                   doc.get('created_ns') or 0,
                                   depth(doc['id']), doc['id']))


def summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What ``list`` shows of an image's metadata."""
    return {'id': doc.get('id'), 'name': doc.get('name'),
            'guest': doc.get('source_domain'),
            'created_at': doc.get('created_at'),
            'method': doc.get('method'), 'format': doc.get('format'),
            'size': doc.get('size'),
            'virtual_size': doc.get('virtual_size'),
            'parent': doc.get('incremental_of'),
            'group': doc.get('snapshot_group'),
            'disk': doc.get('source_disk'),
            'memory': bool(doc.get('memory'))}


def list_images(store: store_base.ImageStore,
                guest: str | None = None) -> list[dict[str, Any]]:
    """The images of ``store`` (of ``guest``, a domain name, when given),
    oldest first, as :func:`summary` says.
    """
    return [summary(doc) for doc in ordered(Catalog(store).images)
            if guest is None or doc.get('source_domain') == guest]


class Catalog:
    """The images of a store of chains, as its metadata says, read once."""

    def __init__(self, store: store_base.ImageStore) -> None:
        if not store.HOLDS_CHAINS:
            raise exception.InvalidInput(
                reason='%s does not keep chains of images: list, show, '
                       'delete, restore and revert work on the directory '
                       'store (--store file or file:///DIR)' % store)
        self.store = store
        self.images = store.list()
        self.by_id = {d['id']: d for d in self.images}

    def find(self, ref: str) -> dict[str, Any]:
        """The metadata of the image ``ref`` names (id, image file path,
        or a name only one image has).

        :raises ImageNotFound: none does.
        :raises InvalidInput: several images have that name.
        """
        wanted = ref
        if os.sep in ref:
            wanted = os.path.basename(os.path.dirname(os.path.abspath(ref)))
        if uuidutils.is_uuid_like(wanted):
            found = [d for d in self.images if d.get('id') == wanted]
        else:
            found = [d for d in self.images if d.get('name') == ref]
        if len(found) > 1:
            raise exception.InvalidInput(
                reason='%d images are named %r: name one by its id (%s)' % (
                    len(found), ref, ', '.join(d['id'] for d in found)))
        if not found:
            raise exception.ImageNotFound(image=ref, store=self.store)
        return found[0]

    def path_of(self, doc: dict[str, Any], name: str | None = None) -> str:
        """The path of the image file of ``doc`` (or of the file ``name``
        beside it).
        """
        directory = self.store.local_directory()
        assert directory is not None, 'a store of chains keeps a directory'
        return os.path.join(directory, doc['id'], name or
                            self.store.image_file(
                                store_base.ImageMeta('', doc['format'])))

    def chain(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """``doc`` and the images it is backed by, newest first."""
        found, seen = [doc], {doc['id']}
        parent = doc.get('incremental_of')
        while parent:
            if parent in seen or parent not in self.by_id:
                raise exception.InvalidInput(
                    reason='the chain of image %s is broken at %s: run '
                           '"nova-snapshot-ext verify %s"' % (
                               doc['id'], parent, doc['id']))
            seen.add(parent)
            found.append(self.by_id[parent])
            parent = self.by_id[parent].get('incremental_of')
        return found

    def group(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The images of ``doc``'s ``--all-disks`` group, in the order of
        the guest's disks; ``[doc]`` for an image of one disk.
        """
        group_id = doc.get('snapshot_group')
        if not group_id:
            return [doc]
        members = [d for d in self.images
                   if d.get('snapshot_group') == group_id]
        order = str(doc.get('snapshot_disks') or '').split(',')

        def place(d: dict[str, Any]) -> int:
            disk = str(d.get('source_disk'))
            return order.index(disk) if disk in order else len(order)

        return sorted(members, key=place)

    def dependents(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """The images whose chain holds ``doc``, newest first."""
        children: dict[str, list[dict[str, Any]]] = {}
        for d in self.images:
            if d.get('incremental_of'):
                children.setdefault(d['incremental_of'], []).append(d)
        found: list[dict[str, Any]] = []
        todo = [doc['id']]
        while todo:
            for child in children.get(todo.pop(), []):
                if child not in found:
                    found.append(child)
                    todo.append(child['id'])
        return ordered(found, newest_first=True)


def show(store: store_base.ImageStore, ref: str) -> dict[str, Any]:
    """Everything recorded about the image ``ref`` names, with its file,
    its chain (ids, newest first), its group and its dependents.
    """
    cat = Catalog(store)
    doc = cat.find(ref)
    shown = dict(doc)
    shown.update(
        path=cat.path_of(doc),
        chain=[d['id'] for d in cat.chain(doc)],
        group_images=[d['id'] for d in cat.group(doc)
                      if d.get('snapshot_group')],
        dependents=[d['id'] for d in cat.dependents(doc)],
        domain_xml=os.path.exists(cat.path_of(doc, file_store.DOMAIN_XML)))
    return shown


def delete(store: store_base.ImageStore, ref: str,
           with_dependents: bool = False) -> list[str]:
    """Delete the image ``ref`` names (and, with ``with_dependents``, the
    images that depend on it, newest first); the ids deleted.

    :raises ImageHasDependents: it has some and they are not to go.
    """
    cat = Catalog(store)
    doc = cat.find(ref)
    doomed = cat.dependents(doc)
    if doomed and not with_dependents:
        raise exception.ImageHasDependents(
            image=doc['id'], count=len(doomed),
            dependents=', '.join(d['id'] for d in doomed))
    deleted: list[str] = []
    for d in doomed + [doc]:
        store.delete(d['id'])
        if os.path.lexists(os.path.dirname(cat.path_of(d))):
            # NOTE: the store logged why; what it is the base of, if
            # anything, is gone already, and nothing older is touched.
            raise exception.ImageDeleteFailed(
                image=d['id'], store=store, done='' if not deleted else
                '; deleted before it: %s' % ', '.join(deleted))
        deleted.append(d['id'])
    return deleted


# -- retention --------------------------------------------------------------
def expiry(seconds: float) -> str:
    """The ``expires_at`` property of an image that expires ``seconds``
    from now.
    """
    return (datetime.datetime.now(datetime.timezone.utc) +
            datetime.timedelta(seconds=seconds)).isoformat(timespec='seconds')


def _expired(doc: dict[str, Any], now: datetime.datetime) -> bool:
    try:
        when = datetime.datetime.fromisoformat(str(doc.get('expires_at')))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when <= now


def check_room(conf: cfg.ConfigOpts, store: store_base.ImageStore,
               guest_uuid: str, guest: str, keep: int = 0) -> None:
    """Refuse a snapshot of the guest beyond ``[snapshot] max_per_guest``
    (unless ``keep`` rotates its restore points).

    :raises TooManyImages: with what to do.
    """
    limit = conf.snapshot.max_per_guest
    if not limit or keep or not store.HOLDS_CHAINS:
        return
    taken = {doc.get('snapshot_group') or doc['id'] for doc in store.list()
             if doc.get('source_uuid') == guest_uuid}
    if len(taken) >= limit:
        raise exception.TooManyImages(guest=guest, count=len(taken),
                                      store=store, max=limit)


def collect_expired(conf: cfg.ConfigOpts, store: store_base.ImageStore,
                    min_age: float) -> list[undo.Action]:
    """What ``gc`` does about the expired images of a store of chains
    (``expires_at`` passed): each is deleted, newest first, unless an
    image that has not expired is backed by it.
    """
    if not store.HOLDS_CHAINS:
        return []
    now = datetime.datetime.now(datetime.timezone.utc)
    going: set[str] = set()
    actions = []
    cat = Catalog(store)
    for doc in ordered(cat.images, newest_first=True):
        if not _expired(doc, now):
            continue
        target = 'image %s (%r)' % (doc['id'], doc.get('name'))
        needed = [d['id'] for d in cat.dependents(doc)
                  if d['id'] not in going]
        if needed:
            actions.append(undo.Action(
                undo.KEEP, target, 'it expired at %s, but images that have '
                'not are backed by it: %s' % (doc['expires_at'],
                                              ', '.join(needed))))
            continue
        going.add(doc['id'])
        actions.append(undo.Action(
            'delete', target, 'it expired at %s' % doc['expires_at'],
            run=functools.partial(store.delete, doc['id'])))
    return actions
