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

"""Image backends: how the root disk of a guest becomes an image.

A backend is a stevedore plugin in ``nova_snapshot_ext.image_backends``.
Its :meth:`ImageBackend.snapshot` hook is what the orchestrator and the
Nova driver call. The base class holds the local flow that file-based
backends share:

* **live**: mirror the disk into a delta image while the guest runs, cut
  the mirror (the delta is then one point in time), convert delta + backing
  file into a standalone image;
* **cold**: save the guest's memory (managed save), convert the disk,
  restore the guest in the state it was in;
* **direct**: an optional hook for backends that copy inside their
  storage (rbd); it raises NotImplementedError here.

Every step that changes something registers its undo before the next step
starts, so a failure anywhere leaves the guest as it was and no file
behind.
"""

import abc
from collections.abc import Iterator
import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from typing import Any, ClassVar, TYPE_CHECKING

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import plugins
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base

if TYPE_CHECKING:
    from nova_snapshot_ext.libvirt import host as host_mod

LOG = logging.getLogger(__name__)

NAMESPACE = 'nova_snapshot_ext.image_backends'


class ImageBackend(metaclass=abc.ABCMeta):
    """Base class of image backend plugins."""

    #: The entry point name.
    name: ClassVar[str] = ''
    #: Disk formats (libvirt ``<driver type>``) this backend reads.
    disk_formats: ClassVar[tuple[str, ...]] = ()
    #: The backend can copy the disk of a running guest.
    SUPPORTS_LIVE: ClassVar[bool] = True
    #: The backend has a direct path (copy inside the storage).
    SUPPORTS_DIRECT: ClassVar[bool] = False

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    # -- hooks ---------------------------------------------------------
    def check_disk(self, job: model.SnapshotJob) -> None:
        """Refuse a disk this backend cannot read.

        :raises UnsupportedDisk: with the reason.
        """
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

    def direct_unavailable(self, job: model.SnapshotJob) -> str | None:
        """Why the direct path cannot serve ``job``; None when it can."""
        return 'the %s backend has no direct path' % self.name

    def direct_snapshot(self, job: model.SnapshotJob,
                        pending: store_base.PendingImage,
                        outcome: '_Outcome') -> store_base.StoredImage:
        """Copy the disk inside the storage and register the copy as the
        image ``pending`` (:meth:`PendingImage.add_location`).

        Optional. Backends without a direct path raise NotImplementedError.

        :raises DirectSnapshotImpossible: the direct path turned out
            impossible and everything it made is undone; the snapshot
            falls back to a copy.
        """
        raise NotImplementedError('direct_snapshot() is not implemented')

    def facts(self, job: model.SnapshotJob) -> policy.Facts:
        guest = job.guest
        return host_facts(
            self.conf, job.host, guest=guest.name,
            power_state=guest.power_state(),
            persistent=guest.is_persistent(),
            backend=self.name,
            backend_supports_live=self.SUPPORTS_LIVE,
            backend_supports_direct=self.SUPPORTS_DIRECT,
            direct_unavailable=self.direct_unavailable(job))

    def plan(self, job: model.SnapshotJob) -> policy.Plan:
        return policy.choose(self.facts(job), job.method)

    # -- the snapshot() hook -------------------------------------------
    def snapshot(self, job: model.SnapshotJob) -> model.SnapshotResult:
        """Take the snapshot that ``job`` describes.

        :returns: the result, with the method used and why.
        :raises SnapshotError: nothing is left behind and the guest is as
            it was.
        """
        started = time.monotonic()
        self.check_disk(job)
        facts = self.facts(job)
        plan = policy.choose(facts, job.method)
        self._log_plan(job, plan)
        meta = store_base.ImageMeta(
            name=job.request.name,
            disk_format=job.image_format,
            properties=dict(job.request.metadata,
                            method=plan.method, reason=plan.reason,
                            source_domain=job.guest.name,
                            source_uuid=job.guest.uuid))
        outcome = _Outcome()
        with job.store.begin(meta, job.request.image_id,
                             self.conf.snapshot.temp_directory) as pending:
            stored = None
            if plan.method == policy.DIRECT:
                try:
                    stored = self.direct_snapshot(job, pending, outcome)
                except exception.DirectSnapshotImpossible as e:
                    plan = policy.choose(dataclasses.replace(
                        facts, direct_unavailable=e.kwargs['reason']),
                        job.method)
                    self._log_plan(job, plan)
                    meta.properties.update(method=plan.method,
                                           reason=plan.reason)
            if stored is None:
                if plan.method == policy.LIVE:
                    self.live_extract(job, pending.path, outcome)
                else:
                    self.cold_extract(job, pending.path, outcome)
                meta.properties['quiesced'] = outcome.quiesced
                job.progress('upload', 0.0)
                stored = pending.commit(
                    lambda f: job.progress('upload', f))
        return model.SnapshotResult(
            method=plan.method, reason=plan.reason,
            image=stored.reference, image_id=stored.id,
            location=stored.location, format=stored.disk_format,
            size=stored.size, virtual_size=stored.virtual_size,
            sha256=stored.sha256,
            seconds=round(time.monotonic() - started, 3),
            guest=job.guest.name, backend=self.name,
            quiesced=outcome.quiesced,
            downtime=round(outcome.downtime, 3))

    def _log_plan(self, job: model.SnapshotJob, plan: policy.Plan) -> None:
        # NOTE: a backend with a direct path that does not take it copies
        # the whole disk: the operator should hear of it.
        loud = self.SUPPORTS_DIRECT and plan.method != policy.DIRECT
        (LOG.warning if loud else LOG.info)(
            'Snapshot of %(guest)s: %(method)s, because %(reason)s',
            {'guest': job.guest.name, 'method': plan.method,
             'reason': plan.reason})

    # -- live ----------------------------------------------------------
    def live_extract(self, job: model.SnapshotJob, out_path: str,
                     outcome: '_Outcome') -> None:
        """Copy the running guest's disk to ``out_path``, one point in
        time, without stopping the guest.
        """
        guest, disk, conf = job.guest, job.disk, self.conf
        guest.check_no_block_job(disk.target)
        paused = self._check_quiesce(job)
        info = qemu_img.info(conf, disk.path, disk.format, force_share=True)
        backing = qemu_img.backing_of(info)
        transient_job = self._transient_job(job)
        with self._tempdir() as tmpdir:
            delta = os.path.join(tmpdir, 'delta.qcow2')
            qemu_img.create_qcow2(delta, int(info['virtual-size']), backing)
            job.progress('copy', 0.0)
            with contextlib.ExitStack() as undo:
                if not transient_job:
                    self._make_transient(guest, undo)
                guest.start_copy(disk.target, delta, 'qcow2', transient_job,
                                 conf.libvirt.live_copy_bandwidth)
                undo.callback(self._stop_copy, guest, disk.target)
                guest.wait_copy_ready(
                    disk.target, conf.snapshot.block_job_timeout,
                    conf.snapshot.block_job_poll_interval,
                    lambda f: job.progress('copy', f))
                # NOTE: freeze only now that the mirror is in sync, so the
                # guest's filesystems are frozen for the cut alone.
                with self._quiesced(job, paused, outcome):
                    guest.abort_copy(disk.target)
            job.progress('copy', 1.0)
            self._convert(job, delta, 'qcow2', out_path)

    def _transient_job(self, job: model.SnapshotJob) -> bool:
        style = self.conf.libvirt.live_copy_style
        if style == 'auto':
            return job.host.has_transient_block_copy()
        if style == 'blockcopy' and not job.host.has_transient_block_copy():
            raise exception.LiveSnapshotImpossible(
                guest=job.guest.name,
                reason='[libvirt] live_copy_style is blockcopy but this '
                       'libvirt has no transient block copy jobs')
        return style == 'blockcopy'

    def _make_transient(self, guest: guest_mod.Guest,
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
                       '[libvirt] live_copy_style = blockcopy')
        xml = guest.xml(inactive=True)
        guest.undefine_keep_running()
        undo.callback(guest.define, xml)

    @staticmethod
    def _stop_copy(guest: guest_mod.Guest, dev: str) -> None:
        try:
            if guest.block_job(dev):
                guest.abort_copy(dev)
        except exception.GuestGone:
            pass

    def _check_quiesce(self, job: model.SnapshotJob) -> bool:
        """Fail early when quiesce is required and cannot work.

        :returns: whether the guest is paused.
        """
        guest = job.guest
        paused = guest.power_state() == policy.PAUSED
        if job.quiesce == 'required':
            if paused:
                raise exception.QuiesceFailed(
                    guest=guest.name, reason='the guest is paused, so its '
                                             'agent cannot answer')
            if not guest.agent_connected():
                raise exception.QuiesceFailed(
                    guest=guest.name,
                    reason='no QEMU guest agent is connected')
        return paused

    @contextlib.contextmanager
    def _quiesced(self, job: model.SnapshotJob, paused: bool,
                  outcome: '_Outcome') -> Iterator[None]:
        """The guest's filesystems frozen, when asked to and able to, for
        the duration of the block. A paused guest does no I/O and its
        agent cannot answer: it is not frozen.
        """
        outcome.quiesced = not paused and self._freeze(job)
        try:
            yield
        finally:
            if outcome.quiesced:
                job.guest.thaw()

    def _freeze(self, job: model.SnapshotJob) -> bool:
        """Freeze the guest's filesystems if asked to and able to.

        :returns: whether they are frozen.
        :raises QuiesceFailed: quiesce is required and failed.
        """
        if job.quiesce == 'never':
            return False
        reason = None
        if not job.guest.agent_connected():
            reason = 'no QEMU guest agent is connected'
        else:
            try:
                job.guest.freeze()
                return True
            except exception.QuiesceFailed as e:
                reason = e.kwargs.get('reason', str(e))
        if job.quiesce == 'required':
            raise exception.QuiesceFailed(guest=job.guest.name,
                                          reason=reason)
        # NOTE: most guests run no agent; that is worth a note, not a
        # warning. An agent that fails to freeze is worth a warning.
        log = LOG.info if reason.startswith('no QEMU') else LOG.warning
        log('Snapshot of %(guest)s is crash-consistent, not quiesced: '
            '%(reason)s', {'guest': job.guest.name, 'reason': reason})
        return False

    # -- cold ----------------------------------------------------------
    def cold_extract(self, job: model.SnapshotJob, out_path: str,
                     outcome: '_Outcome') -> None:
        """Copy the disk while the guest's memory is saved; bring the guest
        back to the state it was in, whatever happens.
        """
        guest = job.guest
        state = guest.power_state()
        with contextlib.ExitStack() as undo:
            if state in (policy.RUNNING, policy.PAUSED):
                stopped = time.monotonic()
                guest.managed_save(paused=state == policy.PAUSED)
                undo.callback(self._restore, guest, state, stopped, outcome)
            self.copy_stopped(job, out_path)

    def copy_stopped(self, job: model.SnapshotJob, out_path: str) -> None:
        """Copy the disk of a guest that does not run."""
        self._convert(job, job.disk.path, job.disk.format, out_path)

    @staticmethod
    def _restore(guest: guest_mod.Guest, state: str, stopped: float,
                 outcome: '_Outcome') -> None:
        try:
            guest.restore()
        except exception.SnapshotError as e:
            raise exception.GuestRestoreFailed(guest=guest.name, state=state,
                                               reason=e)
        outcome.downtime = time.monotonic() - stopped
        now = guest.power_state()
        if now != state:
            raise exception.GuestRestoreFailed(
                guest=guest.name, state=state, reason='it is %s' % now)

    # -- shared --------------------------------------------------------
    def _convert(self, job: model.SnapshotJob, src: str, src_fmt: str,
                 out_path: str, image_opts: bool = False) -> None:
        job.progress('convert', 0.0)
        qemu_img.convert(self.conf, src, src_fmt, out_path, job.image_format,
                         compress=self.conf.snapshot.compress,
                         progress=lambda f: job.progress('convert', f),
                         image_opts=image_opts)
        job.progress('convert', 1.0)

    @contextlib.contextmanager
    def _tempdir(self) -> Iterator[str]:
        """A private directory QEMU can reach, removed on the way out."""
        parent = self.conf.snapshot.temp_directory
        os.makedirs(parent, mode=0o711, exist_ok=True)
        _check_traversable(parent)
        path = tempfile.mkdtemp(prefix='snap-', dir=parent)
        try:
            # NOTE: QEMU runs as another user and needs to open the delta
            # by name; o+x without o+r lets it do only that.
            os.chmod(path, 0o711)
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)


class _Outcome:
    """What an extraction tells the result besides the image."""

    def __init__(self) -> None:
        self.quiesced = False
        self.downtime = 0.0


def _check_traversable(path: str) -> None:
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & 0o001:
            raise exception.InvalidInput(
                reason='QEMU cannot reach files under %s: %s is not '
                       'traversable by others (chmod o+x it, or set '
                       '[snapshot] temp_directory elsewhere)' % (
                           path, path))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def host_facts(conf: cfg.ConfigOpts, host: 'host_mod.Host',
               **guest_facts: Any) -> policy.Facts:
    """The facts of ``host`` and its configuration, completed with the
    facts of one guest (for a host alone: a running guest).
    """
    guest_facts.setdefault('guest', '')
    guest_facts.setdefault('power_state', policy.RUNNING)
    return policy.Facts(
        hypervisor=host.hypervisor(),
        libvirt_version=host.libvirt_version(),
        qemu_version=host.qemu_version(),
        min_libvirt_version=policy.parse_version(
            conf.libvirt.min_libvirt_version),
        min_qemu_version=policy.parse_version(
            conf.libvirt.min_qemu_version),
        live_disabled=conf.workarounds.disable_live_snapshot,
        **guest_facts)


def known_backends() -> list[str]:
    return plugins.names(NAMESPACE)


def load(conf: cfg.ConfigOpts, name: str) -> ImageBackend:
    """Load the backend plugin ``name``.

    :raises UnknownBackend: naming the installed ones.
    """
    cls = plugins.load_class(NAMESPACE, name)
    if cls is None:
        raise exception.UnknownBackend(
            name=name, known=', '.join(known_backends()) or 'none')
    return cls(conf)


def backend_name_for(disk: guest_mod.Disk) -> str:
    """The backend that reads ``disk``: its protocol for network disks
    (``rbd``), its format otherwise (``qcow2``, ``raw``).
    """
    if disk.source_type == 'network':
        return disk.protocol or 'network'
    return disk.format
