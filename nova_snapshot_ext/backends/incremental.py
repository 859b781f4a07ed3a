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

import os
import time

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.backends import backup
from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import checkpoints
from nova_snapshot_ext.backends import export_copy
from nova_snapshot_ext.backends import finish
from nova_snapshot_ext.backends import local
from nova_snapshot_ext.backends import retention
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)


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


def find_base(job: model.SnapshotJob, registry: checkpoints.Registry
              ) -> tuple[checkpoints.Base | None, str]:
    """The newest checkpoint of ours whose image is in the store, or
    None and why there is none.
    """
    ours = registry.ours()
    if not ours:
        return None, registry.invalidated() or (
            'the guest has no checkpoint of an earlier incremental snapshot')
    images = {doc['id']: doc for doc in job.store.list()}
    usable = [n for n in ours if n[len(checkpoints.PREFIX):] in images and
              images[n[len(checkpoints.PREFIX):]].get('checkpoint') == n]
    if not usable:
        return None, 'the image of checkpoint %s is not in %s' % (
            ', '.join(sorted(ours)), job.store)
    newest = max(usable, key=lambda n: ours[n])
    image_id = newest[len(checkpoints.PREFIX):]
    return checkpoints.Base(image_id, newest, ours[newest]), ''


def snapshot(backend: base.ImageBackend,
             job: model.SnapshotJob) -> model.SnapshotResult:
    """An incremental snapshot of ``job`` (see the module)."""
    started = time.monotonic()
    check(backend, job)
    plan = backend.plan(job)
    outcome = _backup_outcome(job, plan)
    registry = checkpoints.Registry.of(job)
    found, why = find_base(job, registry)
    image_id = uuidutils.generate_uuid()
    checkpoint = checkpoints.PREFIX + image_id
    meta = _meta(job, plan, checkpoint)
    record = journal.current()
    with job.store.begin(meta, image_id) as pending:
        step = record.add(journal.CHECKPOINT, name=checkpoint)
        defined = None
        try:
            if found is not None:
                defined = record.add(journal.CHECKPOINT,
                                     name=found.checkpoint, forget=True)
                why = checkpoints.define(job, found)
                if not why:
                    why = _incremental(job, pending.path, found, checkpoint,
                                       outcome)
            if why:
                _full(job, pending.path, checkpoint, outcome, why,
                      first=found is None)
            of = None if why or found is None else found.image_id
            meta.properties.update(incremental_of=of,
                                   incremental_reason=why or None)
            stored = finish.commit(job, pending, outcome)
            created = job.guest.checkpoint_created(checkpoint)
        except BaseException:
            if checkpoints.delete(job, checkpoint):
                record.done(step)
            if defined is not None and found is not None and \
                    checkpoints.forget(job, found.checkpoint):
                record.done(defined)
            raise
        # NOTE: from here the checkpoint is the base of the next snapshot:
        # listed, then forgotten by libvirt (by recover, if we die).
        registry.add(checkpoint, created)
        forget = record.add(journal.CHECKPOINT, name=checkpoint, forget=True)
        record.done(step)
    checkpoints.prune(job, registry, keep=checkpoint)
    if checkpoints.forget(job, checkpoint):
        record.done(forget)
    if defined is not None:
        record.done(defined)
    if job.request.keep:
        retention.retain(job, job.request.keep)
    return finish.result(job, plan, stored, outcome, started, backend.name,
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
        export_copy.read_export(job, export, out_path, outcome)


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


def _incremental(job: model.SnapshotJob, out_path: str,
                 found: checkpoints.Base,
                 checkpoint: str, outcome: steps.Outcome) -> str:
    """Write the blocks changed since ``found`` into ``out_path``, backed
    by its image; returns '' or, when libvirt refused the checkpoint
    (nothing is made then), why.
    """
    parent = os.path.join('..', found.image_id,
                          job.store.image_file(
                              store_base.ImageMeta('', 'qcow2')))
    began = False
    try:
        with backup.exported(job, outcome, incremental=found.checkpoint,
                             checkpoint=checkpoint) as export:
            began = True
            journal.current().reached(journal.CHECKPOINT)
            export_copy.read_changed(job, export, out_path, outcome,
                                     (parent, 'qcow2'))
    except exception.LibvirtFailed as e:
        if began:
            raise
        return 'libvirt refused checkpoint %s: %s' % (
            found.checkpoint, e.kwargs.get('reason', e))
    return ''
