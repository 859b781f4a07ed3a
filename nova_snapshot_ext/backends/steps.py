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

"""Building blocks of a snapshot that any backend may use.

Each step undoes itself when the block it guards fails, so a backend made
of them leaves the guest as it was:

* :func:`check_quiesce` and :func:`quiesced`: the guest's filesystems
  frozen through the QEMU guest agent for a moment, when asked to and
  able to;
* :func:`suspended`: the guest's memory saved (managed save) and the
  guest brought back in the state it was in, whatever happens;
* :func:`temp_directory`: a private directory QEMU can reach, removed on
  the way out;
* :func:`convert`: ``qemu-img convert`` of a disk (or a copy of it) into
  the image, with the job's format and progress.

The ``freeze`` and ``managed_save`` steps of the journal are undone by
:func:`undo_freeze` and :func:`undo_managed_save`.

Each reports what the result tells the user (quiesced, downtime) in an
:class:`Outcome`.
"""

from collections.abc import Iterator
import contextlib
import dataclasses
import os
import shutil
import time

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import temp
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext import model
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import qemu_img

LOG = logging.getLogger(__name__)

#: Name prefix of the temporary directories of snapshots.
TEMP_PREFIX = temp.SNAPSHOT


class Outcome:
    """What a snapshot step tells the result besides the image."""

    def __init__(self) -> None:
        #: The guest's filesystems were frozen for the point in time.
        self.quiesced = False
        #: Seconds the guest's CPUs were stopped.
        self.downtime = 0.0
        #: How a live copy was made (backup, blockcopy, rebase); None
        #: when there was none.
        self.live_style: str | None = None
        #: Why that style.
        self.live_reason: str | None = None
        #: Image file -> its sha256, for the files the copy hashed as it
        #: wrote them.
        self.hashed: dict[str, str] = {}
        #: Image file -> its virtual size, for the files whose writer
        #: knows it.
        self.virtual_sizes: dict[str, int] = {}


def check_quiesce(job: model.SnapshotJob) -> bool:
    """Fail early, before anything changes, when quiesce is required and
    cannot work.

    :returns: whether the guest is not frozen because it is paused (it
        does no I/O and its agent cannot answer) or does not run.
    :raises QuiesceFailed: quiesce is required and impossible.
    """
    guest = job.guest
    state = guest.power_state()
    if state not in (guest_mod.RUNNING, guest_mod.PAUSED):
        # NOTE: a guest that does not run writes nothing: its disk is
        # as consistent as it gets, and no freeze is needed or possible.
        return True
    paused = state == guest_mod.PAUSED
    if job.quiesce == 'required':
        if paused:
            raise exception.QuiesceFailed(
                guest=guest.name, reason='the guest is paused, so its '
                                         'agent cannot answer')
        if not guest.agent_connected():
            raise exception.QuiesceFailed(
                guest=guest.name, reason='no QEMU guest agent is connected')
    return paused


def for_direct(job: model.SnapshotJob) -> model.SnapshotJob:
    """The job as a direct snapshot (a copy inside the storage) runs it:
    with no freeze when the request says direct snapshots are not
    quiesced (``quiesce_direct``).
    """
    if job.request.quiesce_direct:
        return job
    # NOTE: Nova never quiesces a direct snapshot: its driver asks for
    # none, and os_require_quiesce does not make one fail.
    return dataclasses.replace(job, quiesce='never')


def recheck_shared(job: model.SnapshotJob) -> None:
    """Check the job's shareable disks again (see
    :mod:`~nova_snapshot_ext.libvirt.refusals`), right before the point in
    time: another writer may have been resumed since the first check.
    """
    disks = job.guest.disks() if job.request.all_disks else [job.disk]
    refusals.recheck_shared(job.guest, disks, job.host)


@contextlib.contextmanager
def quiesced(job: model.SnapshotJob, paused: bool,
             outcome: Outcome) -> Iterator[None]:
    """The guest's filesystems frozen, when asked to and able to, for the
    duration of the block; thawed whatever happens.

    :param paused: what :func:`check_quiesce` returned.
    :raises QuiesceFailed: quiesce is required and the freeze failed.
    :raises UnsupportedDisk: a shareable disk may be written by another
        domain now (:func:`recheck_shared`).
    """
    step = None
    if not paused:
        step = _freeze(job)
    outcome.quiesced = step is not None
    try:
        # NOTE: the block takes the point in time: a writer of a shareable
        # disk resumed since the first check is caught here.
        recheck_shared(job)
        yield
    finally:
        if step is not None:
            job.guest.thaw()
            journal.current().done(step)


def _freeze(job: model.SnapshotJob) -> journal.Step | None:
    if job.quiesce == 'never':
        return None
    reason = ''
    if not job.guest.agent_connected():
        reason = 'no QEMU guest agent is connected'
    else:
        record = journal.current()
        timeout = job.conf.snapshot.quiesce_timeout
        # NOTE: the freeze sets the domain's agent timeout, which outlives
        # this process: the journal says so, for ``recover`` to set it
        # back if the process is killed before the thaw does.
        step = record.add(journal.FREEZE, agent_timeout=timeout)
        try:
            job.guest.freeze(timeout=timeout)
            record.reached(journal.FREEZE)
            return step
        except exception.QuiesceFailed as e:
            # NOTE: a freeze that failed may have frozen some filesystems;
            # thawing is harmless either way.
            _thaw_quietly(job.guest)
            record.done(step)
            reason = str(e.kwargs.get('reason', e))
    if job.quiesce == 'required':
        raise exception.QuiesceFailed(guest=job.guest.name, reason=reason)
    # NOTE: most guests run no agent; that is worth a note, not a
    # warning. An agent that fails to freeze is worth a warning.
    log = LOG.info if reason.startswith('no QEMU') else LOG.warning
    log('Snapshot of %(guest)s is crash-consistent, not quiesced: '
        '%(reason)s', {'guest': job.guest.name, 'reason': reason})
    return None


def _thaw_quietly(guest: guest_mod.Guest) -> None:
    try:
        guest.thaw()
    except exception.SnapshotError as e:
        LOG.debug('Thawing %(guest)s: %(err)s', {'guest': guest.name,
                                                 'err': e})


@contextlib.contextmanager
def suspended(job: model.SnapshotJob, outcome: Outcome) -> Iterator[None]:
    """A running or paused guest's memory saved and the guest stopped for
    the duration of the block, then restored in the state it was in, even
    when the block fails. A guest that does not run is left alone. The
    request's ``guest_devices`` is entered before the save and left after
    the restore.

    :raises GuestRestoreFailed: the guest could not be brought back.
    :raises UnsupportedDisk: a shareable disk may be written by another
        domain now (:func:`recheck_shared`); nothing was touched.
    """
    recheck_shared(job)
    guest = job.guest
    state = guest.power_state()
    if state not in (guest_mod.RUNNING, guest_mod.PAUSED):
        yield
        return
    stopped = time.monotonic()
    record = journal.current()
    # NOTE: the devices go back once the guest is back (or, when the save
    # failed, still running); see SnapshotRequest.guest_devices.
    with job.request.guest_devices():
        with record.step(journal.MANAGED_SAVE, state=state) as step:
            guest.managed_save(paused=state == guest_mod.PAUSED)
        try:
            yield
        finally:
            restore_state(guest, state)
            record.done(step)
            outcome.downtime = time.monotonic() - stopped


def restore_state(guest: guest_mod.Guest, state: str) -> None:
    """Start ``guest`` from its managed save and check it is ``state``.

    :raises GuestRestoreFailed: it could not be, or is in another state.
    """
    try:
        guest.restore()
    except exception.SnapshotError as e:
        raise exception.GuestRestoreFailed(guest=guest.name, state=state,
                                           reason=e)
    now = guest.power_state()
    if now != state:
        raise exception.GuestRestoreFailed(guest=guest.name, state=state,
                                           reason='it is %s' % now)


@contextlib.contextmanager
def temp_directory(conf: cfg.ConfigOpts, parent: str | None = None,
                   qemu: private.Owner | None = None) -> Iterator[str]:
    """A private directory under ``[snapshot] temp_directory`` (or
    ``parent``) that QEMU can reach, removed with its content on the way
    out: mode 0710 and QEMU's group when ``qemu`` (QEMU's user and group,
    ``Guest.qemu_owner()``) is given and this user may give it that
    group, 0711 otherwise (see :func:`nova_snapshot_ext.private.qemu_dir`).

    :raises InvalidInput: QEMU could not reach files there.
    """
    parent = parent or conf.snapshot.temp_directory
    if qemu == (0, 0):
        # NOTE: qemu_owner() says root when the domain has no DAC label,
        # which does not prove that QEMU runs as root.
        qemu = None
    if not os.path.isdir(parent):
        os.makedirs(os.path.dirname(os.path.abspath(parent)), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            private.qemu_dir(parent, qemu)
    _check_traversable(parent, qemu)
    path = os.path.join(parent, TEMP_PREFIX + uuidutils.generate_uuid(
        dashed=False))
    record = journal.current()
    step = record.add(journal.TEMP_DIR, path=path)
    try:
        # NOTE: QEMU runs as another user and needs to open files here by
        # name; its group's x without r lets it do only that, and the
        # files in it are 0600 (libvirt gives them to QEMU while it uses
        # them).
        private.qemu_dir(path, qemu)
        record.reached(journal.TEMP_DIR)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        record.done(step)


def check_space(job: model.SnapshotJob, needs: dict[str, int]) -> None:
    """Fail before anything is made when a directory lacks the room the
    snapshot will take there.

    :param needs: bytes needed per directory (existing or to be made);
        directories on one file system add up.
    :raises InsufficientSpace: naming the directory and the option.
    """
    temp = job.conf.snapshot.temp_directory
    by_fs: dict[int, list] = {}
    for path, need in needs.items():
        existing = path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        st = os.statvfs(existing)
        entry = by_fs.setdefault(os.stat(existing).st_dev,
                                 [path, 0, st.f_bavail * st.f_frsize])
        entry[1] += need
        if path == temp or path.startswith(temp.rstrip('/') + '/'):
            entry[0] = temp
    for path, need, free in by_fs.values():
        if need > free:
            raise exception.InsufficientSpace(
                path=path, guest=job.guest.name,
                need=exception.human_size(need),
                free=exception.human_size(free),
                option=('[snapshot] temp_directory' if path == temp
                        else 'the image store'))


def _check_traversable(path: str, qemu: private.Owner | None) -> None:
    path = os.path.abspath(path)
    while True:
        if not private.qemu_traverses(path, qemu):
            raise exception.InvalidInput(
                reason='QEMU cannot reach files under %s: %s is not '
                       'traversable by QEMU\'s user or group (chgrp it to '
                       'QEMU\'s group and chmod g+x, or chmod o+x it, or set '
                       '[snapshot] temp_directory elsewhere)' % (
                           path, path))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def convert(job: model.SnapshotJob, src: str, src_format: str,
            out_path: str, image_opts: bool = False,
            rate_mib: int = 0) -> None:
    """Write ``src`` (read as ``src_format``, never guessed) into
    ``out_path`` in the job's image format, reporting progress as the
    ``convert`` stage.

    :param image_opts: ``src`` is QEMU ``--image-opts`` (e.g. an RBD
        snapshot), not a path.
    :param rate_mib: read at most this many MiB/s (0: no limit).
    """
    conf = job.conf
    job.progress('convert', 0.0)
    # NOTE: a shareable disk is read only when no other domain can write
    # it (refusals.check_shared); one paused still holds it open for
    # writing, and its lock would stop qemu-img.
    shared = job.disk.shareable and src == job.disk.path and not image_opts
    qemu_img.convert(conf, src, src_format, out_path, job.image_format,
                     compress=conf.snapshot.compress,
                     progress=lambda f: job.progress('convert', f),
                     image_opts=image_opts, rate_mib=rate_mib,
                     force_share=shared)
    job.progress('convert', 1.0)


def undo_freeze(r: undo.Recovering, step: journal.Step) -> None:
    """``freeze``: thaw the guest's filesystems, and set the agent
    timeout the freeze set back to libvirt's default.
    """
    g = r.active_guest()
    if g is None or not g.agent_connected():
        r.act(undo.NOTHING, 'filesystems', 'no guest agent answers, so '
              'none is frozen')
    else:
        r.act('thaw', 'filesystems', run=g.thaw)
    if g is not None and step.data.get('agent_timeout') is not None:
        # NOTE: libvirt keeps the timeout the freeze set for as long as
        # the domain runs, agent or none.
        r.act('reset', 'agent timeout', "to libvirt's default (it was set "
              'to %s s)' % step.data['agent_timeout'],
              run=g.reset_agent_timeout)


def undo_managed_save(r: undo.Recovering, step: journal.Step) -> None:
    """``managed_save``: start the guest from its managed save, back in
    the journaled state.
    """
    state = str(step.data.get('state'))
    g = r.guest()
    if g is None or not g.has_managed_save():
        r.act(undo.NOTHING, 'managed save', 'there is none')
        return
    if g.power_state() != guest_mod.SHUTOFF:
        r.act(undo.KEEP, 'managed save', 'the guest is %s' %
              g.power_state())
        return
    r.act('restore', 'the guest', 'from its managed save, %s' % state,
          run=lambda: restore_state(g, state))
