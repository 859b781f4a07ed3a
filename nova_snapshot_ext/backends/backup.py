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

"""The live copy through a backup job: one pass, nothing staged.

The guest's filesystems are frozen (when quiesce applies), a pull-mode
backup job begins (:mod:`nova_snapshot_ext.libvirt.backup`), and they are
thawed at once: the job's export is the disk as it was at that moment.
The image's writer reads the export over NBD once, skipping what the
disk does not hold (NBD block status), and writes the image once, where
the store wants it (:mod:`.export_copy`), or streams it into an upload.
The job then ends; its scratch file held only the blocks the guest
overwrote meanwhile.

Pull mode rather than push: push writes a qcow2 of libvirt's choosing
that would then be converted or copied again for any other format or a
compressed image, and cannot stream; pull lets the image's own writer
read the export (measured: 1.26 s pull + convert against 1.53 s push on
1 GiB).

The job is written in the journal before it begins (its socket is what
tells ours from another), so ``recover`` ends it after a crash.
"""

from collections.abc import Iterator
import contextlib
import dataclasses
import os
import tempfile

from oslo_log import log as logging

from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import export_copy
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import backup as backup_mod
from nova_snapshot_ext import model
from nova_snapshot_ext.storage import nbd as nbd_client
from nova_snapshot_ext.storage import qcow2_stream
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

#: Seconds to wait for a backup job to end once asked to.
END_TIMEOUT = 60
#: The NBD socket, in a directory of its own in the temporary directory.
SOCKET = os.path.join('nbd', 'sock')
#: The longest path of a unix socket (sun_path, with its NUL).
MAX_SOCKET_PATH = 107
#: Where the socket goes when the temporary directory's path is too long
#: for one (the first whose parent we can write to).
SHORT_PARENTS = ('/run/nova-snapshot-ext',
                 os.path.join(tempfile.gettempdir(), 'nova-snapshot-ext'))


def backup_copy(job: model.SnapshotJob, out_path: str,
                outcome: steps.Outcome) -> None:
    """Copy the running guest's disk to ``out_path`` through a backup
    job: one point in time, the guest never paused.
    """
    with exported(job, outcome) as export:
        export_copy.read_export(job, export, out_path, outcome)


def backup_stream(job: model.SnapshotJob, commit: base.Commit,
                  outcome: steps.Outcome) -> store_base.StoredImage:
    """Stream the running guest's disk into ``commit`` (an upload)
    through a backup job: no file on the host at all.

    A raw image: ``nbdcopy`` reads the export and writes its bytes to a
    pipe (:func:`nova_snapshot_ext.storage.nbd.read_to_pipe`). A qcow2
    image is written front to back
    (:mod:`nova_snapshot_ext.storage.qcow2_stream`).
    """
    if job.image_format == 'qcow2':
        with exported(job, outcome) as export:
            with export_copy.qcow2_of(
                    job, export, chunk=qcow2_stream.SMALL_CHUNK) as stream:
                return commit(stream, stream.size,
                              stream.layout.virtual_size)
    conf, disk = job.conf, job.disk
    size = int(qemu_img.info(conf, disk.path, disk.format,
                             force_share=True)['virtual-size'])
    with exported(job, outcome) as export:
        with nbd_client.read_to_pipe(export.uri(disk.target)) as pipe:
            return commit(pipe, size)


@contextlib.contextmanager
def exported(job: model.SnapshotJob, outcome: steps.Outcome,
             targets: list[str] | None = None,
             incremental: str | None = None,
             checkpoint: str | None = None
             ) -> Iterator[backup_mod.Export]:
    """A backup job of disks ``targets`` (by default the root disk),
    begun between a freeze and a thaw when quiesce applies: all of them
    at one point in time. Yields the job's export.

    :param incremental: the export marks what changed since this
        checkpoint.
    :param checkpoint: the job makes this checkpoint (which the caller
        has journaled).
    """
    guest, conf = job.guest, job.conf
    targets = targets or [job.disk.target]
    for target in targets:
        guest.check_no_block_job(target)
    paused = steps.check_quiesce(job)
    qemu = guest.qemu_owner()
    with contextlib.ExitStack() as dirs:
        tmpdir = dirs.enter_context(steps.temp_directory(conf, qemu=qemu))
        sockdir = tmpdir
        if len(os.path.join(tmpdir, SOCKET)) > MAX_SOCKET_PATH:
            sockdir = dirs.enter_context(
                steps.temp_directory(conf, _short_parent(), qemu))
        export = dataclasses.replace(
            _export(guest, targets, tmpdir, sockdir),
            incremental=incremental, checkpoint=checkpoint)
        job.progress('copy', 0.0)
        with _job(guest, export):
            with steps.quiesced(job, paused, outcome):
                guest.backup_begin(export)
            journal.current().reached(journal.BACKUP_JOB)
            try:
                yield export
            except (exception.ConversionFailed,
                    exception.StoreWriteFailed):
                if not guest.is_active():
                    # NOTE: the export went with the domain.
                    raise exception.GuestGone(
                        guest=guest.name,
                        reason='the domain stopped during the copy')
                raise
        job.progress('copy', 1.0)


@contextlib.contextmanager
def _job(guest: backup_mod.BackupCalls,
         export: backup_mod.Export) -> Iterator[None]:
    """The backup job of ``export`` recorded in the journal before it
    begins, and ended (if it began) on the way out.
    """
    record = journal.current()
    step = record.add(journal.BACKUP_JOB, socket=export.socket,
                      disks=sorted(export.scratch))
    try:
        yield
    except BaseException:
        with contextlib.suppress(exception.SnapshotError):
            # NOTE: the first error is the one to report; a job that did
            # not end stays in the journal for ``recover``.
            _end(guest, export, record, step)
        raise
    _end(guest, export, record, step)


def _end(guest: backup_mod.BackupCalls, export: backup_mod.Export,
         record: journal.Journal, step: journal.Step) -> None:
    """End the job; its step is done only once the job is gone.

    :raises SnapshotError: it did not end (its step is left pending).
    """
    try:
        guest.backup_end(export, END_TIMEOUT)
    except exception.GuestGone:
        pass
    except exception.SnapshotError as e:
        LOG.error('The backup job of %(guest)s did not end: %(err)s',
                  {'guest': guest.name, 'err': e})
        raise
    record.done(step)


def _short_parent() -> str:
    """A directory with a short path for the socket, made private to
    this user; refused when someone else owns it.

    :raises InvalidInput: it is another user's.
    """
    parents = [p for p in SHORT_PARENTS
               if os.access(os.path.dirname(p), os.W_OK)]
    path = parents[0] if parents else SHORT_PARENTS[-1]
    os.makedirs(path, mode=0o711, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.geteuid() or not os.path.isdir(path) or \
            os.path.islink(path):
        raise exception.InvalidInput(
            reason='%s is not a directory of this user; the NBD socket of '
                   'a backup job cannot go there (a shorter [snapshot] '
                   'temp_directory avoids it)' % path)
    return path


def _export(guest: backup_mod.BackupCalls, targets: list[str],
            tmpdir: str, sockdir: str) -> backup_mod.Export:
    """The export of disks ``targets``: their NBD socket in a directory
    only QEMU can write to (QEMU makes the socket), a scratch file per
    disk in ``tmpdir`` (libvirt makes those).

    :raises LiveSnapshotImpossible: this user cannot give the directory
        to QEMU (see :func:`_socket_dir`).
    """
    sockdir = os.path.join(sockdir, os.path.dirname(SOCKET))
    os.mkdir(sockdir, 0o700)
    _socket_dir(guest, sockdir)
    return backup_mod.Export(
        socket=os.path.join(sockdir, os.path.basename(SOCKET)),
        scratch={t: os.path.join(tmpdir, '%s.scratch' % t)
                 for t in targets})


def socket_unreachable(guest: backup_mod.BackupCalls) -> str | None:
    """Why this user cannot share a directory for the NBD socket of a
    backup job with the guest's QEMU (see :func:`_socket_dir`); None when
    it can.
    """
    uid, gid = guest.qemu_owner()
    if os.geteuid() in (0, uid) or gid == os.getegid() or \
            gid in os.getgroups():
        return None
    return ('QEMU runs as uid %d gid %d, and this user (uid %d) is not '
            'in group %d, so it can share no directory with QEMU for the '
            'NBD socket of a backup job' % (uid, gid, os.geteuid(), gid))


def _socket_dir(guest: backup_mod.BackupCalls, sockdir: str) -> None:
    """Let QEMU (and this user) alone make the socket in ``sockdir``:
    the directory is QEMU's user's when this process is root, this
    user's (``0700``) when QEMU runs as this user, else this user's and
    QEMU's group's (``0730``), which a user not root can give it only as
    a member of that group.

    :raises LiveSnapshotImpossible: none of these can be done.
    """
    uid, gid = guest.qemu_owner()
    if uid == os.geteuid():
        return
    try:
        if os.geteuid() == 0:
            os.chown(sockdir, uid, gid)
        else:
            os.chown(sockdir, -1, gid)
            os.chmod(sockdir, 0o730)
    except PermissionError:
        raise exception.LiveSnapshotImpossible(
            guest=guest.name,
            reason='QEMU runs as uid %d gid %d, and this user (uid %d) '
                   'can give it no directory for the NBD socket of a '
                   'backup job: make it a member of group %d, or run as '
                   'root' % (uid, gid, os.geteuid(), gid))


def undo_backup_job(r: undo.Recovering, step: journal.Step) -> None:
    """``backup_job``: end the guest's backup job if it serves the
    journaled socket.
    """
    socket = str(step.data.get('socket'))
    what = 'backup job of %s' % ', '.join(step.data.get('disks') or [])
    g = r.active_guest()
    if g is None:
        r.act(undo.NOTHING, what, 'the guest does not run')
        return
    serves = g.backup_socket()
    if serves is None:
        r.act(undo.NOTHING, what, 'there is none')
        return
    if serves != socket:
        r.act(undo.KEEP, what,
              'not ours: it serves %s' % (serves or 'push targets'))
        return
    export = backup_mod.Export(socket=socket, scratch={})
    r.act('end', what, 'it serves %s' % socket,
          run=lambda: g.backup_end(export))
