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

"""The layout of a qcow2 image that can be written front to back.

``qemu-img convert`` writes a qcow2 out of order (its tables last), so it
needs a file it can seek in. When the data's place in the disk is known
first, where every cluster of the image will be is known before any data
is read, and the image can be produced as one stream: the header, the L1
table, the refcount table and blocks and the L2 tables first, then the
data clusters in the order of the disk.

The image is qcow2 version 3 (``compat=1.1``) with 64 KiB clusters and
16-bit refcounts, qemu-img's defaults, no compression:
::

    header | L1 | refcount table | refcount blocks | L2 tables | data

What the disk does not hold is unallocated in the image: it reads as
zeros, or, in an image with a backing file (an overlay: its name and
format follow the header, in its first cluster), as the backing file.
"""

from collections.abc import Iterator
import dataclasses
import struct

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
#: A header extension's type and length; that of the backing file's
#: format; the end of the extensions.
EXTENSION = struct.Struct('>II')
BACKING_FORMAT = 0xe2792aca
END = 0


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
    #: The backing file's name (as the image records it) and format.
    backing: tuple[str, str] | None = None

    @classmethod
    def plan(cls, virtual_size: int, extents: list[tuple[int, int]],
             backing: tuple[str, str] | None = None) -> 'Layout':
        """The layout of an image of ``virtual_size`` bytes whose data is
        ``extents`` ((offset, length), in order, not overlapping), backed
        by ``backing`` (name, format) if given.
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
                                                len(l2_tables)) * CLUSTER),
                   backing=backing)

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
        """The first cluster: the header, its extensions (the backing
        file's format), their end, and the backing file's name.

        :raises ValueError: the backing file's name and format do not fit.
        """
        extensions = name = b''
        if self.backing is not None:
            name, fmt = (x.encode() for x in self.backing)
            extensions = (EXTENSION.pack(BACKING_FORMAT, len(fmt)) +
                          fmt.ljust(-(-len(fmt) // 8) * 8, b'\0'))
        extensions += EXTENSION.pack(END, 0)
        name_offset = HEADER.size + len(extensions)
        if name_offset + len(name) > CLUSTER:
            raise ValueError('a backing file name of %d bytes' % len(name))
        head = HEADER.pack(
            MAGIC, 3, name_offset if name else 0, len(name), CLUSTER_BITS,
            self.virtual_size, 0, self.l1_size, self.l1_offset,
            self.refcount_table_offset, self.refcount_table_clusters, 0, 0,
            0, 0, 0, REFCOUNT_ORDER, HEADER.size)
        return (head + extensions + name).ljust(CLUSTER, b'\0')

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
        yield from self._l2()

    def _l2(self) -> Iterator[bytes]:
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
