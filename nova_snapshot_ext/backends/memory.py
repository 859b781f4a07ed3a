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

"""``snapshot --memory``: the guest's memory and every disk at one point
in time, the guest running on.

The guest's memory is saved live into the image's directory while each
disk moves onto an overlay beside it (``DISK.nse-overlay``,
:mod:`nova_snapshot_ext.libvirt.memory`); the guest pauses only for the
last dirty pages and the switch. Each disk's own file, which takes no
more writes, is then converted into its image, and the overlays are
committed back and removed before the command ends, the guest on its own
files again. It is an ``--all-disks`` group whose root image carries the
memory; a disk's backend must have the capability
:data:`~nova_snapshot_ext.backends.base.MEMORY` (file disks).

The overlays are journaled (``memory_overlay``) before they are made; a
kill leaves them to ``recover`` (:func:`undo_memory_overlay`), which
commits them back, into a guest that runs or, offline, into one that was
stopped since, and removes them. The disks' incremental checkpoints go:
the next incremental snapshot is full, and says why.
"""

from collections.abc import Iterator
import contextlib
import os
from typing import Any

from oslo_log import log as logging

from nova_snapshot_ext.backends import checkpoints
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import disks as disks_mod
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import memory as memory_mod
from nova_snapshot_ext import model
from nova_snapshot_ext.storage import qemu_img

LOG = logging.getLogger(__name__)

OVERLAY_SUFFIX = '.nse-overlay'


def check(job: model.SnapshotJob, disks: list[disks_mod.Disk]) -> None:
    """Refuse, before anything is made, a guest with no memory to save or
    a disk that cannot take an overlay.
    """
    state = job.guest.power_state()
    if state not in (guest_mod.RUNNING, guest_mod.PAUSED):
        raise exception.InvalidInput(
            reason='%s is %s: it has no memory to save; snapshot it '
                   'without --memory' % (job.guest.name, state))
    for disk in disks:
        if disk.source_type != 'file':
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='a snapshot with memory moves each disk onto an '
                       'overlay file for a moment, and %s is a %s disk' % (
                           disk.target, disk.source_type))
        if os.path.lexists(disk.path + OVERLAY_SUFFIX):
            raise exception.InvalidInput(
                reason='%s exists: a snapshot with memory of %s did not '
                       'end; run "nova-snapshot-ext recover"' % (
                           disk.path + OVERLAY_SUFFIX, job.guest.name))


@contextlib.contextmanager
def frozen(job: model.SnapshotJob, disks: list[disks_mod.Disk],
           memory_path: str, outcome: steps.Outcome) -> Iterator[None]:
    """The memory saved into ``memory_path`` and each disk's file holding
    the same point in time for the duration of the block; then the
    overlays committed back and removed, even when the block fails.
    """
    guest, record = job.guest, journal.current()
    # NOTE: a read-only disk holds the point in time as it is.
    overlays = {d.target: d.path + OVERLAY_SUFFIX for d in disks
                if not d.readonly}
    step = record.add(journal.MEMORY_OVERLAY, disks=[
        {'target': d.target, 'disk': d.path, 'format': d.format,
         'overlay': overlays[d.target]} for d in disks
        if d.target in overlays])
    for disk in disks:
        # NOTE: the commit writes past the disk's dirty bitmaps.
        checkpoints.Registry(job.conf.state_path, guest.uuid,
                             disk.target).invalidate(
            'disk %s ran on an overlay for a snapshot with memory since its '
            'last incremental snapshot' % disk.target)
    try:
        outcome.downtime = guest.snapshot_with_memory(memory_path, overlays)
        record.reached(journal.MEMORY_OVERLAY)
        LOG.info('Memory of %(guest)s saved; disks %(disks)s on overlays',
                 {'guest': guest.name, 'disks': ', '.join(overlays)})
        yield
    finally:
        commit_back(job.conf, guest, step.data['disks'])
        record.done(step)


def commit_back(conf: Any, guest: guest_mod.Guest,
                disks: list[dict[str, str]]) -> None:
    """Each disk back on its own file with what its overlay took, and
    the overlay removed; idempotent.
    """
    for d in disks:
        target, overlay = d['target'], d['overlay']
        if guest.is_active():
            if guest.writes_to(target) == overlay:
                guest.commit_overlay(target,
                                     conf.snapshot.block_job_timeout,
                                     conf.snapshot.block_job_poll_interval)
        elif memory_mod.top_file(guest.xml(inactive=True), target) == \
                overlay:
            qemu_img.commit(overlay)
            guest.define(memory_mod.pointed_back(
                guest.xml(inactive=True), target, d['disk'], d['format']))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(overlay)


# -- recover ----------------------------------------------------------------
def undo_memory_overlay(r: undo.Recovering, step: journal.Step) -> None:
    """``memory_overlay``: commit each overlay back into its disk and
    remove it.
    """
    disks = step.data.get('disks') or []
    names = ', '.join(str(d.get('overlay')) for d in disks)
    if not any(os.path.lexists(str(d.get('overlay'))) for d in disks):
        r.act(undo.NOTHING, 'overlays %s' % names, 'none was made')
        return
    g = r.guest()
    if g is None:
        r.act(undo.KEEP, 'overlays %s' % names, 'the guest is gone: '
              'commit them with "qemu-img commit" before you use its disks')
        return
    r.act('commit', 'overlays %s' % names, 'a snapshot with memory did not '
          'end', run=lambda: commit_back(r.conf, g, disks))
