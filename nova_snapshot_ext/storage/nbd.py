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

"""The NBD client: how this package reads an export over NBD.

A backup job exports a guest's disks on a unix socket (:func:`unix_uri`).
They are read either with libnbd's Python bindings (Debian's
``python3-libnbd``: :func:`libnbd`, :func:`connect`, block status as
:func:`extents`), or by ``nbdcopy`` (Debian's ``libnbd-bin``) into a pipe
(:func:`read_to_pipe`). A failure of either is a
:class:`~nova_snapshot_ext.exception.ConversionFailed` that names the tool.
"""

from collections.abc import Callable, Iterator
import contextlib
import shutil
import subprocess
import tempfile
import typing
from typing import Any, BinaryIO

from nova_snapshot_ext import exception

#: ``NBD_STATE_ZERO`` of the ``base:allocation`` context: reads as zeros.
STATE_ZERO = 2
ALLOCATION = 'base:allocation'
#: The dirty bit of a ``qemu:dirty-bitmap:*`` context.
DIRTY = 1
#: Bytes of block status asked for at a time.
STATUS_SPAN = 1 << 30
#: The program that reads an export into a pipe (Debian: libnbd-bin).
NBDCOPY = 'nbdcopy'
#: What a libnbd failure names.
LIBNBD = 'libnbd'


def unix_uri(export: str, socket: str) -> str:
    """The NBD URI of export ``export`` on unix socket ``socket``."""
    return 'nbd+unix:///%s?socket=%s' % (export, socket)


def libnbd() -> Any:
    """libnbd's Python bindings (Debian's ``python3-libnbd``), or None."""
    try:
        import nbd  # noqa: H306 - optional
    except ImportError:
        return None
    return nbd


def require_libnbd(why: str) -> Any:
    """libnbd's Python bindings.

    :raises InvalidInput: they are missing; ``why`` says what needs them.
    """
    nbd = libnbd()
    if nbd is None:
        raise exception.InvalidInput(
            reason='%s need libnbd\'s Python bindings (the python3-libnbd '
                   'package)' % why)
    return nbd


@contextlib.contextmanager
def errors(nbd: Any) -> Iterator[None]:
    """Raise what libnbd raises inside as ConversionFailed."""
    try:
        yield
    except nbd.Error as e:
        raise exception.ConversionFailed(tool=LIBNBD, reason=str(e))


def connect(nbd: Any, uri: str, context: str = ALLOCATION) -> Any:
    """A libnbd handle connected to export ``uri``, asking for metadata
    context ``context``. The connection ends when the handle is deleted.
    """
    def how(handle: Any) -> None:
        handle.add_meta_context(context)
        handle.connect_uri(uri)

    return _connected(nbd, how)


def _connected(nbd: Any, how: Callable[[Any], None]) -> Any:
    """A new handle that ``how`` connected."""
    handle = nbd.NBD()
    try:
        how(handle)
    except nbd.Error as e:
        # NOTE: the traceback keeps this frame, not the handle (whose
        # connection ends when it goes).
        handle = None
        raise exception.ConversionFailed(tool=LIBNBD, reason=str(e))
    return handle


def disconnect(nbd: Any, handle: Any) -> None:
    """End the connection of ``handle`` (what it has in flight is
    dropped: the export ends with it).
    """
    try:
        handle.shutdown(nbd.SHUTDOWN_ABANDON_PENDING)
    except nbd.Error:
        pass


def extents(handle: Any, context: str, size: int,
            keep: Callable[[int], bool]) -> list[tuple[int, int]]:
    """(offset, length) of every extent of the export of ``handle`` whose
    flags in metadata context ``context`` ``keep`` accepts, adjacent ones
    merged.

    :raises ConversionFailed: the export reports nothing of ``context``.
    """
    found: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        seen: list[tuple[int, int]] = []

        def collect(metacontext: str, start: int, entries: list[int],
                    *error: Any) -> int:
            if metacontext == context:
                for i in range(0, len(entries) - 1, 2):
                    seen.append((entries[i], entries[i + 1]))
            return 0

        handle.block_status(min(size - offset, STATUS_SPAN), offset, collect)
        if not seen:
            raise exception.ConversionFailed(
                tool=LIBNBD, reason='the export reports no %s for offset '
                                    '%d' % (context, offset))
        for length, flags in seen:
            length = min(length, size - offset)
            if keep(flags):
                if found and sum(found[-1]) == offset:
                    found[-1] = (found[-1][0], found[-1][1] + length)
                else:
                    found.append((offset, length))
            offset += length
            if offset >= size:
                break
    return found


def data_extents(handle: Any, size: int) -> list[tuple[int, int]]:
    """(offset, length) of what the export of ``handle`` holds (everything
    but what it reports as reading zeros), adjacent ones merged.
    """
    return extents(handle, ALLOCATION, size,
                   lambda flags: not flags & STATE_ZERO)


def changed_extents(handle: Any, context: str,
                    size: int) -> list[tuple[int, int]]:
    """(offset, length) of every extent of ``context`` (a dirty bitmap)
    with the dirty bit set, adjacent ones merged.
    """
    return extents(handle, context, size, lambda flags: bool(flags & DIRTY))


def can_read_to_pipe() -> bool:
    """Whether :func:`read_to_pipe` can run (``nbdcopy`` is installed)."""
    return shutil.which(NBDCOPY) is not None


@contextlib.contextmanager
def read_to_pipe(uri: str) -> Iterator[BinaryIO]:
    """The bytes of export ``uri`` as a pipe that ``nbdcopy`` writes:
    what the export does not hold is not read (NBD block status) but sent
    as zeros. ``nbdcopy`` is stopped on the way out.

    :raises ConversionFailed: instead of a SnapshotError raised inside
        when ``nbdcopy`` failed (its reason is the root cause).
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([NBDCOPY, '--', uri, '-'],
                                stdout=subprocess.PIPE, stderr=err)
        pipe = typing.cast(BinaryIO, proc.stdout)
        try:
            yield pipe
        except exception.SnapshotError as e:
            raise _reader_failed(proc, err, e)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            pipe.close()


def _reader_failed(proc: subprocess.Popen, err: BinaryIO,
                   e: exception.SnapshotError) -> exception.SnapshotError:
    """The error to raise when the reader of the export was used and
    something failed: the reader's own when it failed.
    """
    try:
        status = proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return e
    if status == 0:
        return e
    err.seek(0)
    text = ' '.join(err.read().decode(errors='replace').split())
    how = ('it was killed by signal %d' % -status if status < 0
           else 'it failed with status %d' % status)
    return exception.ConversionFailed(
        tool=NBDCOPY, reason='%s%s' % (how, ': ' + text if text else ''))
