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

"""Copying a backup job's export into a file
(:mod:`nova_snapshot_ext.backends.backup` runs the job).

An uncompressed qcow2 image is written front to back from the export
(:mod:`nova_snapshot_ext.storage.qcow2_stream`), hashed as it is
written, at most at ``[snapshot_libvirt] live_copy_bandwidth`` or paced
by the guest's own writes (``live_copy_guest_share``); an incremental
image is such a qcow2 holding only what changed since the export's
checkpoint, backed by the previous image. Other images are written by
``qemu-img convert``.
"""

from collections.abc import Iterator
import contextlib
import functools

from nova_snapshot_ext.backends import pacing
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.libvirt import backup as backup_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import nbd as nbd_client
from nova_snapshot_ext.storage import qcow2_stream
from nova_snapshot_ext.stores import upload_body


def read_export(job: model.SnapshotJob, export: backup_mod.Export,
                out_path: str, outcome: steps.Outcome) -> None:
    """Write the export of the job's disk into ``out_path``, in the
    job's image format, at most at ``[snapshot_libvirt]
    live_copy_bandwidth``: the guest's own I/O shares the disk and
    QEMU's event loop with the export.

    An uncompressed qcow2 image is written front to back and hashed as
    it is written (its hash goes into ``outcome``); other images are
    written by ``qemu-img convert``.
    """
    target = job.disk.target
    if not streams_qcow2(job):
        steps.convert(job, export.uri(target), 'raw', out_path,
                      rate_mib=_rate_mib(job))
        return
    with qcow2_of(job, export) as stream:
        _write_qcow2(job, stream, out_path, outcome)


def read_changed(job: model.SnapshotJob, export: backup_mod.Export,
                 out_path: str, outcome: steps.Outcome,
                 backing: tuple[str, str]) -> None:
    """Write the blocks of the job's disk that changed since the
    export's incremental checkpoint into ``out_path``: a qcow2 overlay
    of ``backing`` (name, format), written front to back like a full
    image (:func:`read_export`), hashed as it is written.

    :raises ConversionFailed: libnbd's bindings are not here, or the
        export does not mark what changed.
    """
    nbd_client.require_libnbd('incremental snapshots')
    with qcow2_of(job, export, export.bitmap(job.disk.target),
                  backing) as stream:
        _write_qcow2(job, stream, out_path, outcome)


def _write_qcow2(job: model.SnapshotJob, stream: qcow2_stream.Stream,
                 out_path: str, outcome: steps.Outcome) -> None:
    """Write ``stream`` into the new file ``out_path``, paced as
    :func:`read_export` says, and record its hash and virtual size in
    ``outcome``.
    """
    job.progress('convert', 0.0)
    with contextlib.closing(upload_body.UploadBody(
            out_path, stream, stream.size,
            lambda f: job.progress('convert', f),
            algorithms=('sha256',))) as body:
        try:
            pacer = _pacer(job)
            if pacer is not None:
                stream.rate = pacer.rate
            with private.open_new(out_path, 'wb') as f, \
                    contextlib.closing(durable.WriteBehind(f)) as out:
                for chunk in body:
                    out.write(chunk)
                    if pacer is not None:
                        stream.rate = pacer.tick() or stream.rate
        except OSError as e:
            raise exception.ConversionFailed(
                tool='the qcow2 stream',
                reason='cannot write %s: %s' % (out_path,
                                                e.strerror or e))
        outcome.hashed[out_path] = body.hexdigest('sha256')
        outcome.virtual_sizes[out_path] = stream.layout.virtual_size
    job.progress('convert', 1.0)


def streams_qcow2(job: model.SnapshotJob) -> bool:
    """Whether the job's image is a qcow2 this module writes front to
    back: uncompressed, and libnbd's Python bindings are here.
    """
    return (job.image_format == 'qcow2' and not job.conf.snapshot.compress
            and nbd_client.libnbd() is not None)


def _rate_mib(job: model.SnapshotJob) -> int:
    return job.conf.snapshot_libvirt.live_copy_bandwidth


def _pacer(job: model.SnapshotJob) -> pacing.GuestFirst | None:
    """What paces the read by the guest's writes, if asked for."""
    share = job.conf.snapshot_libvirt.live_copy_guest_share
    if not share:
        return None
    target = job.disk.target
    return pacing.GuestFirst(lambda: job.guest.writes(target), share,
                             ceiling=_rate_mib(job) * 1024 * 1024)


@contextlib.contextmanager
def qcow2_of(job: model.SnapshotJob, export: backup_mod.Export,
             changed: str | None = None,
             backing: tuple[str, str] | None = None,
             chunk: int = qcow2_stream.CHUNK
             ) -> Iterator[qcow2_stream.Stream]:
    """The qcow2 image of the export of the job's disk, as a stream read
    ``chunk`` bytes at a time: the whole disk, or with ``changed`` (the
    export's dirty bitmap context) an overlay of ``backing`` holding what
    changed.
    """
    nbd = nbd_client.libnbd()
    handle = nbd_client.connect(nbd, export.uri(job.disk.target),
                                changed or nbd_client.ALLOCATION)
    try:
        extents = None
        if changed is not None:
            if not handle.can_meta_context(changed):
                raise exception.ConversionFailed(
                    tool=nbd_client.LIBNBD,
                    reason='the export has no %s context' % changed)
            extents = functools.partial(nbd_client.changed_extents,
                                        handle, changed)
        stream = qcow2_stream.Stream(nbd, handle,
                                     rate=_rate_mib(job) * 1024 * 1024,
                                     chunk=chunk, extents=extents,
                                     backing=backing)
        try:
            yield stream
        finally:
            stream.close()
    finally:
        nbd_client.disconnect(nbd, handle)
