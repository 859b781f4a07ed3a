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

"""The libvirt checkpoints of incremental snapshots, which libvirt does
not know between snapshots (see :mod:`.incremental`): their list in
``$state_path/checkpoints/<guest uuid>.json``, defining one again for a
backup job, deleting or forgetting one, and the undo of the
``checkpoint`` step.
"""

import dataclasses
import json
import os

from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext import model
from nova_snapshot_ext.storage import qemu_img

LOG = logging.getLogger(__name__)

#: Name prefix of our checkpoints.
PREFIX = 'nse-'


@dataclasses.dataclass(frozen=True)
class Base:
    """The image an incremental snapshot is backed by."""

    image_id: str
    checkpoint: str
    created: int


class Registry:
    """The checkpoints of ours a guest's disks may hold, which libvirt
    does not know between snapshots (see the module).
    """

    def __init__(self, state_path: str, guest_uuid: str, disk: str,
                 store: str = '') -> None:
        self.directory = os.path.join(state_path, 'checkpoints')
        self.path = os.path.join(self.directory, guest_uuid + '.json')
        self.store = store
        self.disk = disk
        try:
            with open(self.path) as f:
                self.doc: dict = json.load(f)
        except FileNotFoundError:
            self.doc = {'checkpoints': {}}

    @classmethod
    def of(cls, job: model.SnapshotJob) -> 'Registry':
        """The registry of the job's guest and disk."""
        return cls(job.conf.state_path, job.guest.uuid, job.disk.target,
                   str(job.store))

    def invalidated(self) -> str | None:
        """Why the disk's checkpoints were dropped (it was reverted), if
        no checkpoint was made since.
        """
        return self.doc.get('invalidated', {}).get(self.disk)

    def invalidate(self, why: str) -> None:
        """Drop every checkpoint of the disk (its content was replaced:
        their bitmaps are gone with it), saying why.
        """
        self.doc['checkpoints'] = {
            name: c for name, c in self.doc['checkpoints'].items()
            if c['disk'] != self.disk}
        self.doc.setdefault('invalidated', {})[self.disk] = why
        self._save()

    def ours(self) -> dict[str, int]:
        """Name -> creation time of the checkpoints of the disk."""
        return {name: c['created']
                for name, c in self.doc['checkpoints'].items()
                if c['disk'] == self.disk}

    def add(self, name: str, created: int) -> None:
        self.doc['checkpoints'][name] = {
            'created': created, 'store': self.store, 'disk': self.disk}
        self.doc.get('invalidated', {}).pop(self.disk, None)
        self._save()

    def remove(self, name: str) -> None:
        if self.doc['checkpoints'].pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        durable.write_json(self.path, self.doc)


def define(job: model.SnapshotJob, found: Base) -> str:
    """Define checkpoint ``found`` again, for the backup job; '' or why
    its bitmap cannot be used.
    """
    try:
        job.guest.define_checkpoint(found.checkpoint, found.created,
                                    job.disk.target)
    except exception.LibvirtFailed as e:
        return 'the bitmap of checkpoint %s cannot be used: %s' % (
            found.checkpoint, e.kwargs.get('reason', e))
    return ''


def delete(job: model.SnapshotJob, name: str,
           metadata_only: bool = False) -> bool:
    """Delete checkpoint ``name`` (of a failed snapshot), or with
    ``metadata_only`` make libvirt forget it, its bitmap kept; whether it
    is done (if not, the journal keeps it for ``recover``).
    """
    try:
        job.guest.delete_checkpoint(name, metadata_only=metadata_only)
        return True
    except exception.SnapshotError as e:
        LOG.error('Could not %(what)s checkpoint %(name)s of %(guest)s: '
                  '%(err)s', {'what': 'make libvirt forget' if metadata_only
                              else 'delete', 'name': name,
                              'guest': job.guest.name, 'err': e})
        return False


def forget(job: model.SnapshotJob, name: str) -> bool:
    return delete(job, name, metadata_only=True)


def prune(job: model.SnapshotJob, registry: Registry, keep: str) -> None:
    """Delete the bitmaps of our other checkpoints of the disk: it needs
    one.
    """
    for name, created in registry.ours().items():
        if name == keep:
            continue
        try:
            # NOTE: a broken bitmap (QEMU killed after it was saved in the
            # disk) is defined all the same, for libvirt to delete it.
            job.guest.define_checkpoint(name, created, job.disk.target,
                                        validate=False)
            job.guest.delete_checkpoint(name)
        except exception.SnapshotError as e:
            if _in_disk(job, name):
                LOG.warning('Could not delete the bitmap of the old '
                            'checkpoint %(name)s of %(guest)s, it stays in '
                            'its disk: %(err)s',
                            {'name': name, 'guest': job.guest.name,
                             'err': e})
            else:
                LOG.info('The bitmap of the old checkpoint %(name)s of '
                         '%(guest)s is gone already (QEMU stopped without '
                         'saving it)', {'name': name,
                                        'guest': job.guest.name})
            forget(job, name)
        registry.remove(name)


def _in_disk(job: model.SnapshotJob, bitmap: str) -> bool:
    """Whether the guest's disk file holds ``bitmap`` (or may: unknown).

    NOTE: QEMU writes a bitmap made while it runs into the qcow2 file
    only when it closes the disk: killed before, it leaves none, and
    libvirt finds none to delete.
    """
    try:
        info = qemu_img.info(job.conf, job.disk.path, job.disk.format,
                             force_share=True)
    except exception.SnapshotError:
        return True
    data = info.get('format-specific', {}).get('data', {})
    return any(b.get('name') == bitmap for b in data.get('bitmaps', []))


def undo_checkpoint(r: undo.Recovering, step: journal.Step) -> None:
    """``checkpoint``: delete the checkpoint whose snapshot did not end,
    or make libvirt forget one whose bitmap is kept (``forget``).
    """
    name = str(step.data.get('name'))
    g = r.guest()
    if g is None or name not in g.checkpoint_names():
        r.act(undo.NOTHING, 'checkpoint %s' % name, 'there is none')
        return
    if step.data.get('forget'):
        # NOTE: its bitmap is the base of the next incremental snapshot;
        # libvirt must not keep the checkpoint.
        r.act('forget', 'checkpoint %s' % name, 'its bitmap is kept, '
              'libvirt need not know it',
              run=lambda: g.delete_checkpoint(name, metadata_only=True))
        return
    r.act('delete', 'checkpoint %s' % name, 'its snapshot did not end',
          run=lambda: g.delete_checkpoint(name))
