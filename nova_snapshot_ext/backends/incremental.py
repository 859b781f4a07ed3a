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

"""Incremental snapshots into the directory store (``--incremental``).

Each such snapshot makes a libvirt checkpoint named after its image
(``nse-<image id>``: a dirty bitmap, kept in the guest's qcow2 disk, of
the blocks written from then on) in the backup job that copies it. The
next one asks its backup job for what changed since that checkpoint and
writes a qcow2 holding only those blocks, backed by the previous image
(``../<id>/image.qcow2``, relative, so the store can move). The chain is
an ordinary qcow2 backing chain: ``qemu-img convert`` of the newest
image gives the whole disk.

Between snapshots libvirt does not know the checkpoint: its metadata is
deleted once the image is stored, and only the bitmap stays, in the
disk. A domain with checkpoints cannot be undefined without a flag that
Nova does not pass: Nova could not delete or hard reboot the instance,
nor take its own live snapshot (which makes the domain transient). Our
checkpoints are listed in ``$state_path/checkpoints/<guest uuid>.json``
instead (name, creation time, disk, store), and the next snapshot
defines the one it starts from again, validated against its bitmap,
for the length of its backup job.

Without a usable base the snapshot is a full image (and the start of a
new chain), and says why (``incremental_reason``): the guest has no
checkpoint of ours, the checkpoint's image is not in the store (it was
deleted, or the last snapshot went into another store), or its bitmap is
missing or broken (QEMU was killed, or the disk was copied without it).
Once an image is stored, the disk's other bitmaps of ours are deleted,
so that it carries one. A checkpoint is journaled before it is made and
deleted (or, once its image is stored, forgotten by libvirt) by
``recover`` when its snapshot did not end.

With ``--keep N`` the guest's N newest restore points stay in the store,
whichever chain they belong to (see :mod:`.retention`).
"""

import dataclasses
import json
import os
import time

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.backends import backup
from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import local
from nova_snapshot_ext.backends import retention
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import changed_blocks
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base

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

    def __init__(self, job: model.SnapshotJob) -> None:
        self.directory = os.path.join(job.conf.state_path, 'checkpoints')
        self.path = os.path.join(self.directory, job.guest.uuid + '.json')
        self.store = str(job.store)
        self.disk = job.disk.target
        try:
            with open(self.path) as f:
                self.doc: dict = json.load(f)
        except FileNotFoundError:
            self.doc = {'checkpoints': {}}

    def ours(self) -> dict[str, int]:
        """Name -> creation time of the checkpoints of the disk."""
        return {name: c['created']
                for name, c in self.doc['checkpoints'].items()
                if c['disk'] == self.disk}

    def add(self, name: str, created: int) -> None:
        self.doc['checkpoints'][name] = {
            'created': created, 'store': self.store, 'disk': self.disk}
        self._save()

    def remove(self, name: str) -> None:
        if self.doc['checkpoints'].pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        durable.write_json(self.path, self.doc)


def check(backend: base.ImageBackend, job: model.SnapshotJob) -> None:
    """Refuse, before anything is made, what cannot be incremental.

    :raises InvalidInput: naming what to change.
    """
    if base.CHANGED_BLOCKS not in backend.capabilities:
        raise exception.InvalidInput(
            reason='an incremental snapshot reads the blocks changed since '
                   'the last one, and the %s backend of disk %s lacks that '
                   'capability ("%s")' % (
                       backend.name, job.disk.target, base.CHANGED_BLOCKS))
    if not job.store.HOLDS_CHAINS:
        raise exception.InvalidInput(
            reason='incremental snapshots need a store that holds chains '
                   'of images, such as the directory store (file://), and '
                   '%s does not' % job.store)
    if job.image_format != 'qcow2':
        raise exception.InvalidInput(
            reason='an incremental image is a qcow2 backed by the one '
                   'before it; --format %s cannot be' % job.image_format)
    if job.disk.format != 'qcow2' or job.disk.source_type != 'file':
        raise exception.InvalidInput(
            reason='disk %s of %s is a %s %s disk; incremental snapshots '
                   'need a qcow2 file, which keeps the dirty bitmap' % (
                       job.disk.target, job.guest.name, job.disk.format,
                       job.disk.source_type))
    if job.disk.readonly:
        # NOTE: the dirty bitmap is written into the disk, which QEMU
        # opened read-only; and a disk nobody writes needs no tracking.
        raise exception.InvalidInput(
            reason='disk %s of %s is read-only: QEMU cannot keep a dirty '
                   'bitmap in it; take a full snapshot' % (
                       job.disk.target, job.guest.name))


def find_base(job: model.SnapshotJob,
              registry: Registry) -> tuple[Base | None, str]:
    """The newest checkpoint of ours whose image is in the store, or
    None and why there is none.
    """
    ours = registry.ours()
    if not ours:
        return None, 'the guest has no checkpoint of an earlier ' \
                     'incremental snapshot'
    images = {doc['id']: doc for doc in job.store.list()}
    usable = [n for n in ours if n[len(PREFIX):] in images and
              images[n[len(PREFIX):]].get('checkpoint') == n]
    if not usable:
        return None, 'the image of checkpoint %s is not in %s' % (
            ', '.join(sorted(ours)), job.store)
    newest = max(usable, key=lambda n: ours[n])
    return Base(newest[len(PREFIX):], newest, ours[newest]), ''


def snapshot(backend: base.ImageBackend,
             job: model.SnapshotJob) -> model.SnapshotResult:
    """An incremental snapshot of ``job`` (see the module)."""
    started = time.monotonic()
    check(backend, job)
    plan = backend.plan(job)
    outcome = _backup_outcome(job, plan)
    registry = Registry(job)
    found, why = find_base(job, registry)
    image_id = uuidutils.generate_uuid()
    checkpoint = PREFIX + image_id
    meta = _meta(job, plan, checkpoint)
    record = journal.current()
    with job.store.begin(meta, image_id) as pending:
        step = record.add(journal.CHECKPOINT, name=checkpoint)
        defined = None
        try:
            if found is not None:
                defined = record.add(journal.CHECKPOINT,
                                     name=found.checkpoint, forget=True)
                why = _define(job, found)
                if not why:
                    why = _incremental(job, pending.path, found, checkpoint,
                                       outcome)
            if why:
                _full(job, pending.path, checkpoint, outcome, why,
                      first=found is None)
            of = None if why or found is None else found.image_id
            meta.properties.update(incremental_of=of,
                                   incremental_reason=why or None)
            stored = steps.commit(job, pending, outcome)
            created = job.guest.checkpoint_created(checkpoint)
        except BaseException:
            if _delete_checkpoint(job, checkpoint):
                record.done(step)
            if defined is not None and found is not None and \
                    _forget(job, found.checkpoint):
                record.done(defined)
            raise
        # NOTE: from here the checkpoint is the base of the next snapshot:
        # listed, then forgotten by libvirt (by recover, if we die).
        registry.add(checkpoint, created)
        forget = record.add(journal.CHECKPOINT, name=checkpoint, forget=True)
        record.done(step)
    _prune(job, registry, keep=checkpoint)
    if _forget(job, checkpoint):
        record.done(forget)
    if defined is not None:
        record.done(defined)
    if job.request.keep:
        retention.retain(job, job.request.keep)
    return steps.result(job, plan, stored, outcome, started, backend.name,
                        incremental_of=of, incremental_reason=why or None)


def _full(job: model.SnapshotJob, out_path: str, checkpoint: str,
          outcome: steps.Outcome, why: str, first: bool) -> None:
    """A full image into ``out_path`` through a backup job that starts
    ``checkpoint``, rather than an incremental one, because ``why``.
    """
    # NOTE: the first of a chain is full as a matter of course; a chain
    # cut short is worth a warning.
    (LOG.info if first else LOG.warning)(
        'Snapshot of %(guest)s is a full image, not incremental: %(why)s',
        {'guest': job.guest.name, 'why': why})
    local.check_space(job, policy.COLD, out_path)
    with backup.exported(job, outcome, checkpoint=checkpoint) as export:
        journal.current().reached(journal.CHECKPOINT)
        backup.read_export(job, export, out_path, outcome)


def _backup_outcome(job: model.SnapshotJob,
                    plan: policy.Plan) -> steps.Outcome:
    """The outcome of a live copy through a backup job.

    :raises InvalidInput: the snapshot would be taken another way.
    """
    style, style_reason = (local.live_choice(job) if plan.method ==
                           policy.LIVE else (None, ''))
    if style != 'backup':
        raise exception.InvalidInput(
            reason='an incremental snapshot is taken live through a backup '
                   'job, and this one would be %s (%s)' % (
                       plan.method, plan.reason))
    outcome = steps.Outcome()
    outcome.live_style, outcome.live_reason = style, style_reason
    return outcome


def _meta(job: model.SnapshotJob, plan: policy.Plan,
          checkpoint: str) -> store_base.ImageMeta:
    return store_base.ImageMeta(
        name=job.request.name, disk_format='qcow2',
        properties=dict(job.request.metadata, method=plan.method,
                        reason=plan.reason, source_domain=job.guest.name,
                        source_uuid=job.guest.uuid,
                        source_disk=job.disk.target, checkpoint=checkpoint,
                        # NOTE: created_at has seconds only; --keep orders
                        # restore points by this within one.
                        created_ns=time.time_ns()))


def _define(job: model.SnapshotJob, found: Base) -> str:
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


def _incremental(job: model.SnapshotJob, out_path: str, found: Base,
                 checkpoint: str, outcome: steps.Outcome) -> str:
    """Write the blocks changed since ``found`` into ``out_path``, backed
    by its image; returns '' or, when libvirt refused the checkpoint
    (nothing is made then), why.
    """
    size = int(qemu_img.info(job.conf, job.disk.path, job.disk.format,
                             force_share=True)['virtual-size'])
    parent = os.path.join('..', found.image_id,
                          job.store.image_file(
                              store_base.ImageMeta('', 'qcow2')))
    began = False
    try:
        with backup.exported(job, outcome, incremental=found.checkpoint,
                             checkpoint=checkpoint) as export:
            began = True
            journal.current().reached(journal.CHECKPOINT)
            qemu_img.create_qcow2(out_path, size, (parent, 'qcow2'))
            job.progress('convert', 0.0)
            changed_blocks.copy_changed(
                export.uri(job.disk.target),
                export.bitmap(job.disk.target), out_path,
                lambda f: job.progress('convert', f))
            job.progress('convert', 1.0)
    except exception.LibvirtFailed as e:
        if began:
            raise
        return 'libvirt refused checkpoint %s: %s' % (
            found.checkpoint, e.kwargs.get('reason', e))
    return ''


def _delete_checkpoint(job: model.SnapshotJob, name: str,
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


def _forget(job: model.SnapshotJob, name: str) -> bool:
    return _delete_checkpoint(job, name, metadata_only=True)


def _prune(job: model.SnapshotJob, registry: Registry, keep: str) -> None:
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
            _forget(job, name)
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
