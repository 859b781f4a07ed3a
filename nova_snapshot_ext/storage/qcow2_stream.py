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

The export's allocation map (NBD block status) is read first, which gives
the image's layout (:mod:`nova_snapshot_ext.storage.qcow2_layout`); then
the image is produced as one stream, its tables and then its data read
from the export in the disk's order (the NBD client's pieces are in
:mod:`nova_snapshot_ext.storage.nbd`). Such a stream can be hashed as it is
written and uploaded with no local file. Clusters the export reports as
reading zeros (``NBD_STATE_ZERO``) are neither read nor written.

An overlay is written the same way: the caller names its extents (the
blocks that changed) and its backing file; everything else is left to
the backing file.
"""

import collections
from collections.abc import Callable
from collections.abc import Iterator
import importlib
import sys
import time
from typing import Any

from nova_snapshot_ext.storage import nbd as nbd_client
from nova_snapshot_ext.storage import qcow2_layout

#: Bytes read at a time by default (a cluster multiple), and reads in
#: flight.
CHUNK = 4 << 20
#: Bytes read at a time for a slower reader, e.g. an upload: as fast
#: into Glance (tools/bench, 1 GiB), with a quarter of the memory.
SMALL_CHUNK = 1 << 20
DEPTH = 4
#: Chunks read ahead of the caller at most (more gained nothing at
#: 1 GiB, into a file or Glance: tools/bench).
AHEAD = 2
#: Read buffers at most: those in flight and ahead, and the two the
#: caller may hold. Made as needed: a caller that keeps up needs fewer.
BUFFERS = DEPTH + AHEAD + 2


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


class Stream:
    """The qcow2 image of the export of ``handle`` as a file-like object
    to read front to back (``read(n)``; :attr:`size` bytes in all).

    A thread reads the export ahead of the caller (a few reads in flight,
    :data:`AHEAD` chunks waiting), so that the export is read while the
    caller hashes and writes what it has. Close the stream (even when
    the caller failed) before the handle.

    :param rate: read the export at most this many bytes a second (0: no
        limit); :attr:`rate` may be changed while the stream is read.
    :param chunk: bytes of each read (:data:`CHUNK` or
        :data:`SMALL_CHUNK`); :data:`BUFFERS` of them at most in memory.
    :param extents: what the image holds ((offset, length), in order),
        given the export's size; by default what the export holds.
    :param backing: the image's backing file (name, format).
    :raises ConversionFailed: the export failed (here or when read).
    """

    def __init__(self, nbd: Any, handle: Any, rate: int = 0,
                 chunk: int = CHUNK,
                 extents: Callable[[int], list[tuple[int, int]]] |
                 None = None,
                 backing: tuple[str, str] | None = None) -> None:
        self.nbd = nbd
        self.chunk = chunk
        self.handle = handle
        with nbd_client.errors(nbd):
            size = handle.get_size()
            if extents is not None:
                held = extents(size)
            elif handle.can_meta_context(nbd_client.ALLOCATION):
                held = nbd_client.data_extents(handle, size)
            else:
                held = [(0, size)]
        self.layout = qcow2_layout.Layout.plan(size, held, backing)
        self.size = self.layout.size
        self.rate = rate
        self._chunks = self._generate()
        self._chunk = memoryview(b'')
        self._at = 0
        #: Read buffers (of :attr:`chunk` bytes) to use again, and those
        #: the caller may still hold.
        # NOTE: Any: the native modules are loaded at run time (_native).
        self._free: Any = queue.Queue()
        self._used: list[bytearray] = []
        self._made = 0
        self._queue: Any = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._thread: Any = None

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
        """A free buffer, a new one while fewer than :data:`BUFFERS` were
        made; None when the stream was closed.
        """
        while not self._stop.is_set():
            try:
                return self._free.get(block=self._made >= BUFFERS,
                                      timeout=0.2)
            except queue.Empty:
                if self._made < BUFFERS:
                    self._made += 1
                    return bytearray(self.chunk)
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
            cluster = qcow2_layout.CLUSTER
            at, end = first * cluster, (first + n) * cluster
            while at < end:
                length = min(self.chunk, end - at)
                yield at, length
                at += length

    def _data(self) -> Iterator[memoryview]:
        handle, nbd = self.handle, self.nbd
        virtual = self.layout.virtual_size
        flight: collections.deque = collections.deque()
        started, done, rate = time.monotonic(), 0, self.rate
        requests = self._requests()
        with nbd_client.errors(nbd):
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
                if self.rate != rate:
                    # NOTE: a new rate (GuestFirst) counts from now on.
                    rate, started, done = self.rate, time.monotonic(), 0
                if rate:
                    ahead = done / rate - (time.monotonic() - started)
                    if ahead > 0 and self._stop.wait(ahead):
                        return
