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

"""The body of an upload: a local image file streamed in chunks, with
its length, hashed as it is sent.
"""

from collections.abc import Iterator
from concurrent import futures
import hashlib
from typing import Protocol

from nova_snapshot_ext import exception
from nova_snapshot_ext.stores import base


class Readable(Protocol):
    """What an upload reads: a binary file, or a stream of the image's
    bytes (``storage.qcow2_stream.Stream``).
    """

    def read(self, n: int = -1, /) -> bytes | memoryview:
        """Up to ``n`` bytes; empty at the end."""


class UploadBody:
    """An upload's data: the image file in chunks, with its length (for
    a Content-Length), hashed and reported as it goes. With ``threads``,
    a chunk is hashed in worker threads (hashlib releases the GIL) while
    the previous one is sent; only with ``algorithms`` when given. The
    file must have ``size`` bytes: one that ends early is an error, not a
    short image. Close it to stop threads.
    """

    ALGORITHMS = ('sha256', 'sha512')
    CHUNK = 1024 * 1024

    def __init__(self, store: object, f: 'Readable', size: int,
                 progress: base.Progress | None,
                 threads: bool = True,
                 algorithms: tuple[str, ...] = ALGORITHMS) -> None:
        self.store = store
        self.f = f
        self.size = size
        self.sent = 0
        self.progress = progress
        self.hashes = {name: hashlib.new(name) for name in algorithms}
        self._pool = futures.ThreadPoolExecutor(
            max_workers=len(algorithms),
            thread_name_prefix='upload-hash') if threads else None
        self._hashing: list[futures.Future] = []

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes | memoryview]:
        while self.sent < self.size:
            yield self.chunk(self.CHUNK)

    def chunk(self, n: int = -1) -> bytes | memoryview:
        """The next ``n`` bytes at most (``CHUNK`` when ``n`` < 1); empty
        after ``size`` bytes. NOTE: not read(), or requests would send the
        body as a file, in blocks of a few KiB.
        """
        want = self.size - self.sent
        if want <= 0:
            return b''
        # NOTE: an OSError raised here would reach the caller disguised by
        # requests as a connection error; raise our own instead.
        try:
            data = self.f.read(min(want, n if n > 0 else self.CHUNK))
        except OSError as e:
            raise exception.StoreWriteFailed(
                store=self.store, reason='cannot read the image file: %s' %
                                         (e.strerror or e))
        if not data:
            raise exception.StoreWriteFailed(
                store=self.store,
                reason='the image file ended after %d of %d bytes' % (
                    self.sent, self.size))
        # NOTE: the previous chunk must be hashed before this one starts.
        self._wait()
        if self._pool is None:
            for h in self.hashes.values():
                h.update(data)
        else:
            self._hashing = [self._pool.submit(h.update, data)
                             for h in self.hashes.values()]
        self.sent += len(data)
        if self.progress is not None and self.size:
            self.progress(min(1.0, self.sent / self.size))
        return data

    def _wait(self) -> None:
        for future in self._hashing:
            future.result()
        self._hashing = []

    def hexdigest(self, name: str) -> str:
        self._wait()
        return self.hashes[name].hexdigest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
