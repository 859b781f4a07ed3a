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

"""Every disk of a guest at one point in time: one image per disk.

Live, the disks are exported by one backup job (one point in time for
all of them, the guest's filesystems frozen for its begin when quiesce
applies); cold, they are converted while the guest's memory is saved.
A live snapshot through a mirror cannot cut several disks at one
instant, so without the backup API ``auto`` takes a cold snapshot and
``live`` is refused.

Each image is named after the snapshot, the root disk's plainly and the
others with their target (``NAME-vdb``), and each carries the group's id
(``snapshot_group``), its own disk (``source_disk``) and the list of the
group's disks (``snapshot_disks``). The images are committed one after
the other; when one fails, those already complete are deleted, so the
group is whole or absent. Nova takes the root disk only; this is the
command line's.
"""

import contextlib
import dataclasses
import time

from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.backends import backup
from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import export_copy
from nova_snapshot_ext.backends import finish
from nova_snapshot_ext.backends import local
from nova_snapshot_ext.backends import memory
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import disks as disks_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)


def snapshot(backends: base.Backends, job: model.SnapshotJob,
             disks: list[disks_mod.Disk],
             formats: dict[str, str]) -> model.SnapshotResult:
    """Snapshot ``disks`` (the root disk first) of ``job.guest``.

    :param formats: image format per disk target.
    :raises SnapshotError: no image of the group is left.
    """
    started = time.monotonic()
    backend = _backend(backends, job, disks)
    plan = (_memory_plan(backends, job, disks) if job.request.memory
            else _plan(backend, job))
    LOG.info('Snapshot of %(guest)s, disks %(disks)s: %(method)s, because '
             '%(reason)s', {'guest': job.guest.name,
                            'disks': ', '.join(d.target for d in disks),
                            'method': plan.method, 'reason': plan.reason})
    jobs = [dataclasses.replace(job, disk=d, image_format=formats[d.target])
            for d in disks]
    group = uuidutils.generate_uuid()
    outcome = steps.Outcome()
    if job.request.memory:
        outcome.live_style, outcome.live_reason = 'memory', plan.reason
    elif plan.method == policy.LIVE:
        outcome.live_style, outcome.live_reason = local.live_choice(job)
    with contextlib.ExitStack() as stack:
        pendings = [stack.enter_context(job.store.begin(
            _meta(j, plan, group, disks), None,
            job.conf.snapshot.temp_directory)) for j in jobs]
        for j, pending in zip(jobs, pendings):
            local.check_space(j, policy.COLD, pending.path)
        if job.request.memory:
            with memory.frozen(job, disks, str(pendings[0].memory_path),
                               outcome):
                for j, pending in zip(jobs, pendings):
                    steps.convert(j, j.disk.path, j.disk.format,
                                  pending.path)
        elif plan.method == policy.LIVE:
            with backup.exported(job, outcome,
                                 [d.target for d in disks]) as export:
                for j, pending in zip(jobs, pendings):
                    export_copy.read_export(j, export, pending.path, outcome)
        else:
            with steps.suspended(job, outcome):
                for j, pending in zip(jobs, pendings):
                    steps.convert(j, j.disk.path, j.disk.format,
                                  pending.path)
        stored = _commit_all(jobs, pendings, outcome, group)
    results = [finish.result(j, plan, s, outcome, started, backend.name)
               for j, s in zip(jobs, stored)]
    root = results[0]
    root.disks = [r.as_dict() for r in results]
    return root


def _require(backends: base.Backends, job: model.SnapshotJob,
             disks: list[disks_mod.Disk], capability: str,
             what: str) -> None:
    """Refuse a disk whose backend lacks ``capability``, which ``what``
    needs.
    """
    for disk in disks:
        if capability not in backends.for_disk(disk).capabilities:
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='%s needs backends with capability "%s", and %s is '
                       'a %s disk, whose backend lacks it' % (
                           what, capability, disk.target,
                           base.backend_name_for(disk)))


def _backend(backends: base.Backends, job: model.SnapshotJob,
             disks: list[disks_mod.Disk]) -> base.ImageBackend:
    _require(backends, job, disks, base.GROUP,
             'a snapshot of all disks at one point in time')
    for disk in disks:
        backends.for_disk(disk).inspect(dataclasses.replace(job, disk=disk))
    return backends.for_disk(disks[0])


def _plan(backend: base.ImageBackend,
          job: model.SnapshotJob) -> policy.Plan:
    facts = backend.facts(job)
    plan = policy.choose(facts, job.method)
    if plan.method != policy.LIVE or local.live_style(job) == 'backup':
        return plan
    why = ('a live snapshot of all disks at one point in time needs '
           '[snapshot_libvirt] live_copy_style backup (or auto) and '
           'libvirt\'s backup API')
    if job.method == policy.LIVE:
        raise exception.LiveSnapshotImpossible(guest=job.guest.name,
                                               reason=why)
    cold = policy.choose(facts, policy.COLD)
    return policy.Plan(cold.method, why)


def _memory_plan(backends: base.Backends, job: model.SnapshotJob,
                 disks: list[disks_mod.Disk]) -> policy.Plan:
    _require(backends, job, disks, base.MEMORY, 'a snapshot with memory')
    if job.method == policy.COLD:
        raise exception.InvalidInput(
            reason='a snapshot with memory is live: the guest runs on')
    memory.check(job, disks)
    return policy.Plan(policy.LIVE, 'with memory: it was saved live, and '
                       'each disk read from its own file while an overlay '
                       'took the guest\'s writes')


def _meta(job: model.SnapshotJob, plan: policy.Plan, group: str,
          disks: list[disks_mod.Disk]) -> store_base.ImageMeta:
    name = job.request.name
    if job.disk.target != disks[0].target:
        name = '%s-%s' % (name, job.disk.target)
    return store_base.ImageMeta(
        name=name, disk_format=job.image_format,
        properties=dict(job.request.metadata, method=plan.method,
                        reason=plan.reason, source_domain=job.guest.name,
                        source_uuid=job.guest.uuid, snapshot_group=group,
                        source_disk=job.disk.target,
                        snapshot_disks=','.join(d.target for d in disks)))


def _commit_all(jobs: list[model.SnapshotJob],
                pendings: list[store_base.PendingImage],
                outcome: steps.Outcome,
                group: str) -> list[store_base.StoredImage]:
    """Commit every image; when one fails, delete those committed.

    NOTE: the group is whole or absent, a killed process too: each image
    is journaled before its commit and its step stays pending (undo:
    delete the image) until the last image is committed.
    """
    store, record = jobs[0].store, journal.current()
    spec = store.spec if store.RECOVERABLE else None
    stored: list[store_base.StoredImage] = []
    made: list[journal.Step] = []
    try:
        for j, pending in zip(jobs, pendings):
            made.append(record.add(journal.GROUP_IMAGE, id=pending.image_id,
                                   store=spec, group=group))
            stored.append(finish.commit(j, pending, outcome))
            record.reached(journal.GROUP_IMAGE)
    except BaseException:
        # NOTE: an image whose commit failed is the store's to undo (its
        # own step), as it is for a snapshot of one disk.
        for step in made[len(stored):]:
            record.done(step)
        for s, step in zip(stored, made):
            try:
                store.delete(s.id)
                record.done(step)
            except exception.SnapshotError as e:
                LOG.error('Could not delete image %(id)s of a failed '
                          'snapshot group: %(err)s', {'id': s.id, 'err': e})
        raise
    for step in made:
        record.done(step)
    return stored


def undo_group_image(r: undo.Recovering, step: journal.Step) -> None:
    """``group_image``: delete the image, committed or not: its group
    was not whole.
    """
    image_id = str(step.data.get('id'))
    store = r.store(step.data.get('store'))
    if store is None:
        r.act(undo.KEEP, 'image %s' % image_id, 'its store cannot be '
              'reached from here; delete it: its group %s is not whole' %
              step.data.get('group'))
        return
    # NOTE: the id was chosen by the snapshot, journaled before the
    # commit: the image is ours; a missing one is not an error.
    r.act('delete', 'image %s' % image_id, 'its group %s is not whole' %
          step.data.get('group'), run=lambda: store.delete(image_id))
