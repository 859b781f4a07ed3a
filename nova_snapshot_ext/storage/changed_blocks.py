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

"""Copy the blocks an NBD export marks as changed into a qcow2 overlay.

An incremental backup job exports the whole disk and, as an NBD metadata
context, the blocks that changed since a checkpoint (a dirty bitmap).
With libnbd (Debian's ``python3-libnbd``) the changed extents are listed
(NBD block status of that context), read, and written at the same offsets
into the overlay, which ``qemu-nbd`` serves to us alone through socket
activation (it ends with our connection, or with us). What did not change
is neither read nor written: the overlay's backing image has it.
"""

from collections.abc import Callable
from typing import Any

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import nbd as nbd_client

#: Bytes read and written at a time.
CHUNK = 4 * 1024 * 1024


def copy_changed(uri: str, context: str, overlay: str,
                 create: Callable[[int], None],
                 progress: Callable[[float], None] | None = None) -> int:
    """Write the changed blocks of export ``uri`` (``context`` names its
    dirty bitmap) into the qcow2 image ``overlay`` at their offsets,
    which ``create(the export's size)`` makes first.

    :returns: the export's size (the overlay's virtual size).
    :raises ConversionFailed: the export or the overlay failed.
    """
    nbd = nbd_client.require_libnbd('incremental snapshots')
    src = dst = None
    try:
        src = nbd_client.connect(nbd, uri, context)
        if not src.can_meta_context(context):
            raise exception.ConversionFailed(
                tool=nbd_client.LIBNBD,
                reason='the export has no %s context' % context)
        size = src.get_size()
        create(size)
        dst = nbd_client.serve_qcow2(nbd, overlay)
        with nbd_client.errors(nbd):
            _copy(src, dst, context, size, progress)
        return size
    finally:
        # NOTE: closing a handle (when its last reference goes) ends the
        # connection and waits for the qemu-nbd it started, which holds
        # the overlay's lock until then.
        del src, dst


def _copy(src: Any, dst: Any, context: str, size: int,
          progress: Callable[[float], None] | None) -> None:
    extents = nbd_client.changed_extents(src, context, size)
    total = sum(length for _, length in extents) or 1
    done = 0
    for offset, length in extents:
        end = offset + length
        while offset < end:
            n = min(CHUNK, end - offset)
            data = src.pread(n, offset)
            if data.count(0) == n:
                dst.zero(n, offset)
            else:
                dst.pwrite(data, offset)
            offset += n
            done += n
            if progress is not None:
                progress(done / total)
    dst.flush()
    dst.shutdown()
