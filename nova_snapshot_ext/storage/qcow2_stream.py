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

"""A qcow2 image of an NBD export, written front to back.

``qemu-img convert`` writes a qcow2 out of order (its tables last), so it
needs a file it can seek in. When the allocation map of the source is
known first (NBD block status), where every cluster of the image will be
is known before any data is read, and the image can be produced as one
stream: the header, the L1 table, the refcount table and blocks and the
L2 tables first, then the data clusters in the order of the disk. Such a
stream can be hashed as it is written and uploaded with no local file.

The image is qcow2 version 3 (``compat=1.1``) with 64 KiB clusters and
16-bit refcounts, qemu-img's defaults, no backing file, no compression:
::

    header | L1 | refcount table | refcount blocks | L2 tables | data

Clusters the export reports as reading zeros (``NBD_STATE_ZERO``) are
neither read nor written: unallocated in the image, they read as zeros.
"""

import collections
from collections.abc import Iterator
import dataclasses
import importlib
import struct
import sys
import time
from typing import Any

from nova_snapshot_ext import exception

CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
#: Entries of an L2 table (8 bytes each); one table maps 512 MiB.
L2_ENTRIES = CLUSTER // 8
#: 16-bit refcounts; one refcount block counts 2 GiB of the file.
REFCOUNT_ORDER = 4
REFCOUNT_ENTRIES = CLUSTER * 8 // (1 << REFCOUNT_ORDER)
#: The L1/L2 flag of a cluster whose refcount is exactly one.
COPIED = 1 << 63
MAGIC = 0x514649fb
#: The version 3 header without its optional fields.
HEADER = struct.Struct('>IIQIIQIIQQIIQQQQII')
#: ``NBD_STATE_ZERO`` of the ``base:allocation`` context: reads as zeros.
STATE_ZERO = 2
ALLOCATION = 'base:allocation'
#: Bytes of block status asked for at a time.
STATUS_SPAN = 1 << 30
#: Bytes read at a time (a cluster multiple), and reads in flight.
CHUNK = 4 << 20
DEPTH = 4
#: Chunks read ahead of the caller at most.
AHEAD = 8


def _native(name: str) -> Any:
    """Standard module ``name`` as Python has it, also in a process that
    eventlet patched (an eventlet nova-compute): the read-ahead thread is
    a native thread, so that its blocking libnbd calls never stop the
    service, and it works whatever thread reads the stream.
    """
    if 'eventlet' in sys.modules:
        from eventlet import patcher
        return patcher.original(name)
    return importlib.import_module(name)


threading = _native('threading')
queue = _native('queue')


def _clusters(n_bytes: int) -> int:
    return -(-n_bytes // CLUSTER)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything of the image is. ``runs`` are the disk's data as
    (first cluster, number of clusters), in order; the data clusters
    follow each other in the file in that order.
    """

    virtual_size: int
    runs: tuple[tuple[int, int], ...]
    l1_size: int
    l1_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    refcount_blocks: int
    l2_tables: tuple[int, ...]
    data_offset: int

    @classmethod
    def plan(cls, virtual_size: int,
             extents: list[tuple[int, int]]) -> 'Layout':
        """The layout of an image of ``virtual_size`` bytes whose data is
        ``extents`` ((offset, length), in order, not overlapping).
        """
        runs: list[tuple[int, int]] = []
        for offset, length in extents:
            if length <= 0:
                continue
            first = offset // CLUSTER
            end = _clusters(min(offset + length, virtual_size))
            if runs and runs[-1][0] + runs[-1][1] >= first:
                start = runs[-1][0]
                runs[-1] = (start, max(runs[-1][1], end - start))
            elif end > first:
                runs.append((first, end - first))
        l2_tables = sorted({c // L2_ENTRIES for first, n in runs
                            for c in range(first - first % L2_ENTRIES,
                                           first + n, L2_ENTRIES)})
        l1_size = max(1, -(-_clusters(virtual_size) // L2_ENTRIES))
        l1_clusters = _clusters(l1_size * 8)
        data = sum(n for _, n in runs)
        fixed = 1 + l1_clusters + len(l2_tables) + data
        blocks, table = 1, 1
        while True:
            total = fixed + table + blocks
            want_blocks = -(-total // REFCOUNT_ENTRIES)
            want_table = _clusters(want_blocks * 8)
            if (want_blocks, want_table) == (blocks, table):
                break
            blocks, table = want_blocks, want_table
        l1_offset = CLUSTER
        table_offset = l1_offset + l1_clusters * CLUSTER
        return cls(virtual_size=virtual_size, runs=tuple(runs),
                   l1_size=l1_size, l1_offset=l1_offset,
                   refcount_table_offset=table_offset,
                   refcount_table_clusters=table,
                   refcount_blocks=blocks, l2_tables=tuple(l2_tables),
                   data_offset=(table_offset + (table + blocks +
                                                len(l2_tables)) * CLUSTER))

    @property
    def data_clusters(self) -> int:
        return sum(n for _, n in self.runs)

    @property
    def size(self) -> int:
        """Bytes of the whole image."""
        return self.data_offset + self.data_clusters * CLUSTER

    @property
    def _blocks_offset(self) -> int:
        return (self.refcount_table_offset +
                self.refcount_table_clusters * CLUSTER)

    @property
    def _l2_offset(self) -> int:
        return self._blocks_offset + self.refcount_blocks * CLUSTER

    def header(self) -> bytes:
        head = HEADER.pack(
            MAGIC, 3, 0, 0, CLUSTER_BITS, self.virtual_size, 0,
            self.l1_size, self.l1_offset, self.refcount_table_offset,
            self.refcount_table_clusters, 0, 0,
            0, 0, 0, REFCOUNT_ORDER, HEADER.size)
        # NOTE: the zeros after it end the (empty) list of extensions.
        return head.ljust(CLUSTER, b'\0')

    def metadata(self) -> Iterator[bytes]:
        """Everything before the data, in order, a cluster or a table at
        a time.
        """
        yield self.header()
        where = {t: self._l2_offset + i * CLUSTER
                 for i, t in enumerate(self.l2_tables)}
        l1 = bytearray(_clusters(self.l1_size * 8) * CLUSTER)
        for t, offset in where.items():
            struct.pack_into('>Q', l1, t * 8, offset | COPIED)
        yield bytes(l1)
        table = bytearray(self.refcount_table_clusters * CLUSTER)
        for i in range(self.refcount_blocks):
            struct.pack_into('>Q', table, i * 8,
                             self._blocks_offset + i * CLUSTER)
        yield bytes(table)
        used = self.size // CLUSTER
        for i in range(self.refcount_blocks):
            counted = min(REFCOUNT_ENTRIES, used - i * REFCOUNT_ENTRIES)
            yield (b'\0\1' * counted).ljust(CLUSTER, b'\0')
        yield from self._l2(where)

    def _l2(self, where: dict[int, int]) -> Iterator[bytes]:
        at = self.data_offset
        table, current = bytearray(CLUSTER), None
        for first, n in self.runs:
            for c in range(first, first + n):
                t = c // L2_ENTRIES
                if t != current:
                    if current is not None:
                        yield bytes(table)
                        table = bytearray(CLUSTER)
                    current = t
                struct.pack_into('>Q', table, (c % L2_ENTRIES) * 8,
                                 at | COPIED)
                at += CLUSTER
        if current is not None:
            yield bytes(table)


def data_extents(handle: Any, size: int) -> list[tuple[int, int]]:
    """(offset, length) of what the export of ``handle`` holds (everything
    but what it reports as reading zeros), adjacent ones merged.
    """
    extents: list[tuple[int, int]] = []
    offset = 0
    while offset < size:
        seen: list[tuple[int, int]] = []

        def collect(metacontext: str, start: int, entries: list[int],
                    *error: Any) -> int:
            if metacontext == ALLOCATION:
                for i in range(0, len(entries) - 1, 2):
                    seen.append((entries[i], entries[i + 1]))
            return 0

        handle.block_status(min(size - offset, STATUS_SPAN), offset, collect)
        if not seen:
            raise exception.ConversionFailed(
                reason='the export reports no allocation for offset %d' %
                       offset)
        for length, flags in seen:
            length = min(length, size - offset)
            if not flags & STATE_ZERO:
                if extents and sum(extents[-1]) == offset:
                    extents[-1] = (extents[-1][0], extents[-1][1] + length)
                else:
                    extents.append((offset, length))
            offset += length
            if offset >= size:
                break
    return extents


def libnbd() -> Any:
    """libnbd's Python bindings (Debian's ``python3-libnbd``), or None."""
    try:
        import nbd  # noqa: H306 - optional
    except ImportError:
        return None
    return nbd


def connect(nbd: Any, uri: str) -> Any:
    """A libnbd handle connected to export ``uri``, asking for its
    allocation map. The connection ends when the handle is deleted.
    """
    handle = nbd.NBD()
    try:
        handle.add_meta_context(ALLOCATION)
        handle.connect_uri(uri)
    except nbd.Error as e:
        raise exception.ConversionFailed(reason='NBD: %s' % e)
    return handle


def disconnect(nbd: Any, handle: Any) -> None:
    """End the connection of ``handle`` (what it has in flight is
    dropped: the export ends with it).
    """
    try:
        handle.shutdown(nbd.SHUTDOWN_ABANDON_PENDING)
    except nbd.Error:
        pass


class Stream:
    """The qcow2 image of the export of ``handle`` as a file-like object
    to read front to back (``read(n)``; :attr:`size` bytes in all).

    A thread reads the export ahead of the caller (a few reads in flight,
    :data:`AHEAD` chunks waiting), so that the export is read while the
    caller hashes and writes what it has. Close the stream (even when
    the caller failed) before the handle.

    :param rate: read the export at most this many bytes a second (0: no
        limit).
    :raises ConversionFailed: the export failed (here or when read).
    """

    def __init__(self, nbd: Any, handle: Any, rate: int = 0) -> None:
        self.nbd = nbd
        self.handle = handle
        try:
            size = handle.get_size()
            extents = (data_extents(handle, size)
                       if handle.can_meta_context(ALLOCATION)
                       else [(0, size)])
        except nbd.Error as e:
            raise exception.ConversionFailed(reason='NBD: %s' % e)
        self.layout = Layout.plan(size, extents)
        self.size = self.layout.size
        self.rate = rate
        self._chunks = self._generate()
        self._chunk = memoryview(b'')
        self._at = 0
        #: Read buffers (of :data:`CHUNK` bytes) to use again, and those
        #: the caller may still hold.
        self._free: queue.Queue = queue.Queue()
        self._used: list[bytearray] = []
        for _ in range(DEPTH + AHEAD + 2):
            self._free.put(bytearray(CHUNK))
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        """Stop reading ahead."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def read(self, n: int = -1) -> memoryview:
        """The next ``n`` bytes at most (all of a chunk when ``n`` < 0),
        empty at the end. Not a copy: what it returns is valid until the
        second call that moves on to another chunk.
        """
        if self._at >= len(self._chunk):
            if isinstance(self._chunk.obj, bytearray):
                self._used.append(self._chunk.obj)
                if len(self._used) > 1:
                    self._free.put(self._used.pop(0))
            self._chunk, self._at = memoryview(next(self._chunks, b'')), 0
        chunk, at = self._chunk, self._at
        if n < 0 or at + n >= len(chunk):
            n = len(chunk) - at
        self._at += n
        return chunk[at:at + n]

    def _generate(self) -> Iterator[bytes | memoryview]:
        yield from self.layout.metadata()
        if not self.layout.runs:
            return
        self._thread = threading.Thread(target=self._read_ahead,
                                        name='qcow2-stream', daemon=True)
        self._thread.start()
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _read_ahead(self) -> None:
        """Put the data chunks on the queue, then None (or the error)."""
        try:
            for data in self._data():
                if not self._put(data):
                    return
        except BaseException as e:
            self._put(e)
        else:
            self._put(None)

    def _take(self) -> bytearray | None:
        """A free buffer; None when the stream was closed."""
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                continue
        return None

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _requests(self) -> Iterator[tuple[int, int]]:
        """(offset, bytes of the image) of each read."""
        for first, n in self.layout.runs:
            at, end = first * CLUSTER, (first + n) * CLUSTER
            while at < end:
                length = min(CHUNK, end - at)
                yield at, length
                at += length

    def _data(self) -> Iterator[memoryview]:
        handle, nbd = self.handle, self.nbd
        virtual = self.layout.virtual_size
        flight: collections.deque = collections.deque()
        started, done = time.monotonic(), 0
        requests = self._requests()
        try:
            while True:
                while len(flight) < DEPTH:
                    request = next(requests, None)
                    if request is None:
                        break
                    offset, length = request
                    free = self._take()
                    if free is None:
                        return
                    data = memoryview(free)[:length]
                    count = min(length, virtual - offset)
                    # NOTE: the last cluster may go past the disk's end;
                    # the rest of it is zeros.
                    data[count:] = bytes(length - count)
                    buf = nbd.Buffer.from_buffer(data[:count])
                    flight.append((handle.aio_pread(buf, offset), buf,
                                   data))
                if not flight:
                    return
                cookie, buf, data = flight.popleft()
                while not handle.aio_command_completed(cookie):
                    handle.poll(-1)
                del buf
                yield data
                done += len(data)
                if self.rate:
                    ahead = done / self.rate - (time.monotonic() - started)
                    if ahead > 0 and self._stop.wait(ahead):
                        return
        except nbd.Error as e:
            raise exception.ConversionFailed(reason='NBD: %s' % e)
