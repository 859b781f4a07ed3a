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

"""Disks that are local files or block devices: the live and cold flows.

* **live**: mirror the disk into a delta image while the guest runs (a
  libvirt block copy), cut the mirror (the delta is then one point in
  time, frozen by the guest agent for the cut when it answers), convert
  delta + backing file into a standalone image;
* **cold**: save the guest's memory (managed save), convert the disk,
  restore the guest in the state it was in.

Every step that changes something registers its undo before the next one
starts, so a failure anywhere leaves the guest as it was and no file
behind.

A restart of libvirtd part-way does not fail the snapshot: QEMU's mirror
goes on, and the guest's calls connect again and are made again only when
that is safe (:mod:`nova_snapshot_ext.libvirt.guest`). When libvirtd does
not come back, the snapshot fails and the journal tells ``recover`` what
to undo.
"""

import contextlib
import os
from typing import ClassVar

from nova_snapshot_ext.backends import backup
from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import export_copy
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import nbd as nbd_client
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base


class FileBackend(base.ImageBackend):
    """Base of the backends of local disks (files and block devices) in
    the formats of :attr:`disk_formats`.
    """

    #: Disk formats (libvirt ``<driver type>``) this backend reads.
    disk_formats: ClassVar[tuple[str, ...]] = ()
    capabilities = frozenset((base.GROUP, base.CHANGED_BLOCKS, base.MEMORY))

    def inspect(self, job: model.SnapshotJob) -> base.Support:
        disk = job.disk
        if disk.format not in self.disk_formats:
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='the %s backend reads %s disks, %s is %s' % (
                    self.name, '/'.join(self.disk_formats), disk.target,
                    disk.format))
        if disk.source_type not in ('file', 'block'):
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='the %s backend reads local files and block '
                       'devices, %s is a %s disk' % (
                           self.name, disk.target, disk.source_type))
        return base.Support(live=True)

    def copy(self, job: model.SnapshotJob, method: str, out_path: str,
             outcome: steps.Outcome) -> None:
        check_space(job, method, out_path)
        if method == policy.LIVE:
            style, outcome.live_reason = live_choice(job)
            outcome.live_style = style
            if style == 'backup':
                backup.backup_copy(job, out_path, outcome)
            else:
                live_copy(job, out_path, outcome, style == 'blockcopy')
            return
        with steps.suspended(job, outcome):
            steps.convert(job, job.disk.path, job.disk.format, out_path)

    def stream(self, job: model.SnapshotJob, method: str,
               commit: base.Commit, outcome: steps.Outcome
               ) -> store_base.StoredImage | None:
        # NOTE: a raw image is the export's bytes as they are, an
        # uncompressed qcow2 is written front to back; other images are
        # written by qemu-img, which needs a file.
        if method != policy.LIVE:
            return None
        if job.image_format == 'raw':
            streams = nbd_client.can_read_to_pipe()
        else:
            streams = export_copy.streams_qcow2(job)
        style, reason = live_choice(job)
        if style != 'backup' or not streams:
            return None
        outcome.live_style, outcome.live_reason = style, reason
        return backup.backup_stream(job, commit, outcome)


def check_space(job: model.SnapshotJob, method: str, out_path: str) -> None:
    """Refuse, before the guest is touched, a snapshot whose files would
    not fit: the live copy's delta (as large as the disk's top image) in
    the temporary directory, the image (as large as the data of the
    disk's chain) where it is written.

    :raises UnsupportedDisk: the disk is a qcow2 image with encryption.
    :raises InsufficientSpace: naming the directory.
    """
    conf, disk = job.conf, job.disk
    top, chain = 0, 0
    path: str | None = disk.path
    fmt: str | None = disk.format
    while path:
        assert fmt is not None, 'qemu_img.backing_of names the format'
        info = qemu_img.info(conf, path, fmt, force_share=True)
        if info.get('encrypted'):
            raise exception.UnsupportedDisk(
                guest=job.guest.name,
                reason='%s is an encrypted %s image; snapshots of encrypted '
                       'disks are not supported' % (path, fmt))
        used = _allocated(path, int(info['virtual-size']))
        top = top or used
        chain += used
        backing = qemu_img.backing_of(info)
        path, fmt = backing if backing else (None, None)
    needs = {os.path.dirname(out_path): chain}
    if method == policy.LIVE and live_style(job) != 'backup':
        # NOTE: a backup job's scratch file holds only what the guest
        # overwrites during the copy: nothing to reserve up front.
        temp = conf.snapshot.temp_directory
        needs[temp] = needs.get(temp, 0) + top
    steps.check_space(job, needs)


def _allocated(path: str, virtual_size: int) -> int:
    """Bytes a file uses on disk; a block device's size."""
    st = os.stat(path)
    if not st.st_blocks:
        return virtual_size if not os.path.isfile(path) else 0
    return st.st_blocks * 512


def live_copy(job: model.SnapshotJob, out_path: str,
              outcome: steps.Outcome, transient_job: bool) -> None:
    """Copy the running guest's disk to ``out_path``, one point in time,
    without stopping the guest, through a mirror into a delta.

    :param transient_job: mirror with virDomainBlockCopy's transient job
        (``blockcopy``); otherwise make the domain transient for a
        blockRebase copy (``rebase``).
    """
    guest, disk, conf = job.guest, job.disk, job.conf
    guest.check_no_block_job(disk.target)
    paused = steps.check_quiesce(job)
    info = qemu_img.info(conf, disk.path, disk.format, force_share=True)
    backing = qemu_img.backing_of(info)
    with steps.temp_directory(conf, qemu=guest.qemu_owner()) as tmpdir:
        delta = os.path.join(tmpdir, 'delta.qcow2')
        # NOTE: made private first, the delta keeps mode 0600 when
        # qemu-img writes it; libvirt gives it to QEMU for the mirror.
        private.create(delta)
        qemu_img.create_qcow2(delta, int(info['virtual-size']), backing)
        job.progress('copy', 0.0)
        record = journal.current()
        with contextlib.ExitStack() as undo:
            if not transient_job:
                _make_transient(guest, undo)
            with record.step(journal.BLOCK_JOB, disk=disk.target,
                             dest=delta) as step:
                guest.start_copy(disk.target, delta, 'qcow2', transient_job,
                                 conf.snapshot_libvirt.live_copy_bandwidth)
            undo.callback(_stop_copy, guest, disk.target, step)
            guest.wait_copy_ready(
                disk.target, conf.snapshot.block_job_timeout,
                conf.snapshot.block_job_poll_interval,
                lambda f: job.progress('copy', f))
            # NOTE: freeze only now that the mirror is in sync, so the
            # guest's filesystems are frozen for the cut alone.
            with steps.quiesced(job, paused, outcome):
                guest.abort_copy(disk.target)
                record.done(step)
        job.progress('copy', 1.0)
        steps.convert(job, delta, 'qcow2', out_path)


def live_style(job: model.SnapshotJob) -> str:
    """How the live copy is made: ``backup``, ``blockcopy`` or
    ``rebase`` (see :func:`live_choice`).
    """
    return live_choice(job)[0]


def live_choice(job: model.SnapshotJob) -> tuple[str, str]:
    """How the live copy is made (``[snapshot_libvirt] live_copy_style``;
    ``auto`` takes the first of ``backup``, ``blockcopy`` and ``rebase``
    the host has), and why.

    :raises LiveSnapshotImpossible: the configured style is not there.
    """
    style = job.conf.snapshot_libvirt.live_copy_style
    configured = '[snapshot_libvirt] live_copy_style = %s' % style
    lacks = ''
    if style in ('auto', 'backup'):
        lacks = ('libvirt and QEMU here have no backup API for guests of '
                 'this kind')
        if job.guest.backup_supported():
            lacks = backup.socket_unreachable(job.guest) or ''
            if not lacks:
                return 'backup', (configured if style == 'backup' else
                                  'libvirt and QEMU here have the backup '
                                  'API for guests of this kind')
        if style == 'backup':
            raise exception.LiveSnapshotImpossible(
                guest=job.guest.name,
                reason='[snapshot_libvirt] live_copy_style is backup but '
                       + lacks)
    if style in ('auto', 'blockcopy'):
        if job.host.has_transient_block_copy():
            return 'blockcopy', (configured if style == 'blockcopy' else
                                 lacks + ': a mirror into a delta')
        if style == 'blockcopy':
            raise exception.LiveSnapshotImpossible(
                guest=job.guest.name,
                reason='[snapshot_libvirt] live_copy_style is blockcopy '
                       'but this libvirt has no transient block copy jobs')
        lacks += ' nor transient block copy jobs'
    return 'rebase', (configured if style == 'rebase' else
                      lacks + ': a mirror with the domain made transient')


def _make_transient(guest: guest_mod.Guest,
                    undo: contextlib.ExitStack) -> None:
    if not guest.is_persistent():
        return
    if guest.has_snapshot_metadata():
        # NOTE: undefining would throw away the domain's snapshot and
        # checkpoint metadata, which defining it again cannot restore.
        raise exception.LiveSnapshotImpossible(
            guest=guest.name,
            reason='the domain has libvirt snapshots or checkpoints, '
                   'which the rebase copy style would lose; set '
                   '[snapshot_libvirt] live_copy_style = blockcopy')
    xml = guest.xml(inactive=True)
    record = journal.current()
    with record.step(journal.DOMAIN_XML, xml=xml) as step:
        guest.undefine_keep_running()
    undo.callback(_define, guest, xml, step)


def _define(guest: guest_mod.Guest, xml: str, step: journal.Step) -> None:
    guest.define(xml)
    journal.current().done(step)


def _stop_copy(guest: guest_mod.Guest, dev: str, step: journal.Step) -> None:
    try:
        if guest.block_job(dev):
            guest.abort_copy(dev)
    except exception.GuestGone:
        pass
    journal.current().done(step)


def undo_block_job(r: undo.Recovering, step: journal.Step) -> None:
    """``block_job``: abort the disk's block job if it copies into the
    journaled destination.
    """
    disk, dest = str(step.data.get('disk')), str(step.data.get('dest'))
    g = r.active_guest()
    if g is None:
        r.act(undo.NOTHING, 'block job on %s' % disk, 'the guest does not '
              'run')
        return
    if not g.block_job(disk):
        r.act(undo.NOTHING, 'block job on %s' % disk, 'there is none')
        return
    mirror = g.mirror_dest(disk)
    if mirror != dest:
        r.act(undo.KEEP, 'block job on %s' % disk, 'not ours: it copies '
              'into %s' % mirror)
        return
    r.act('abort', 'block job on %s' % disk, 'it copies into %s' % dest,
          run=lambda: g.abort_copy(disk))


def undo_domain_xml(r: undo.Recovering, step: journal.Step) -> None:
    """``domain_xml``: define the domain again if it is transient or
    gone.
    """
    g = r.guest()
    if g is not None and g.is_persistent():
        r.act(undo.NOTHING, 'definition', 'the domain is persistent')
        return
    xml = str(step.data.get('xml'))

    def define() -> None:
        try:
            r.host.call(lambda conn: conn.defineXML(xml))
        except Exception as e:  # noqa: B902 - libvirt's, translated
            raise exception.LibvirtFailed(
                action='define', guest=r.j.guest_name, reason=str(e))

    r.act('define', 'the domain', 'from its saved XML (it is %s)' % (
        'transient' if g is not None else 'gone'), run=define)
