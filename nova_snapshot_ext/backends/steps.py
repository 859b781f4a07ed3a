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

* in :mod:`~nova_snapshot_ext.backends.guest_state`: the guest's
  filesystems frozen for a moment (``quiesced``), or its memory saved and
  the guest brought back in the state it was in (``suspended``);
* :func:`temp_directory`: a private directory QEMU can reach, removed on
  the way out;
* :func:`convert`: ``qemu-img convert`` of a disk (or a copy of it) into
  the image, with the job's format and progress.

Each reports what the result tells the user (quiesced, downtime) in an
:class:`Outcome`.
"""

from collections.abc import Iterator
import contextlib
import dataclasses
import os
import shutil
import time
from typing import Any, BinaryIO

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import temp
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base

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


def result(job: model.SnapshotJob, plan: policy.Plan,
           stored: store_base.StoredImage, outcome: Outcome,
           started: float, backend: str,
           **extra: Any) -> model.SnapshotResult:
    """The result of a snapshot of ``job`` that made ``stored``."""
    return model.SnapshotResult(
        method=plan.method, reason=plan.reason, image=stored.reference,
        image_id=stored.id, location=stored.location,
        format=stored.disk_format, size=stored.size,
        virtual_size=stored.virtual_size, sha256=stored.sha256,
        seconds=round(time.monotonic() - started, 3),
        guest=job.guest.name, backend=backend, quiesced=outcome.quiesced,
        downtime=round(outcome.downtime, 3), disk=job.disk.target,
        live_copy_style=outcome.live_style,
        live_copy_reason=outcome.live_reason, **extra)


def commit(job: model.SnapshotJob, pending: store_base.PendingImage,
           outcome: Outcome, stream: BinaryIO | None = None,
           size: int = 0, virtual_size: int | None = None
           ) -> store_base.StoredImage:
    """Complete ``pending`` (a backend's ``Commit``), with what the
    copy's ``outcome`` tells recorded in its metadata.
    """
    pending.meta.properties['quiesced'] = outcome.quiesced
    if outcome.live_style:
        pending.meta.properties['live_copy_style'] = outcome.live_style
        pending.meta.properties['live_copy_reason'] = outcome.live_reason
    job.progress('upload', 0.0)

    def progress(f: float) -> None:
        job.progress('upload', f)

    if stream is None:
        sha256 = outcome.hashed.get(pending.path)
        if sha256 is not None:
            return pending.commit_hashed(sha256, progress)
        return pending.commit(progress)
    if virtual_size is None:
        return pending.commit_stream(stream, size, progress)
    return pending.commit_stream(stream, size, progress,
                                 virtual_size=virtual_size)
