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


"""Where the qcow2 stream writer puts things. That its images are valid
and equal to their source is tested against qemu-img and a real NBD
server in tests/functional/test_qcow2_stream.py.
"""

import struct

from nova_snapshot_ext.storage import qcow2_layout as q

K = 64 * 1024
GiB = 1024 ** 3


def test_extents_become_runs_of_whole_clusters():
    layout = q.Layout.plan(10 * K, [(0, 1), (K - 1, 2), (3 * K + 5, K),
                                    (9 * K + 10, 100)])
    # 0..1 (the first two touch clusters 0 and 1), 3..4, and 9
    assert layout.runs == ((0, 2), (3, 2), (9, 1))
    assert layout.data_clusters == 5


def test_data_past_the_disk_end_is_cut():
    layout = q.Layout.plan(K + 512, [(K, 10 * K)])
    assert layout.runs == ((1, 1),)


def test_empty_disk_has_tables_only():
    layout = q.Layout.plan(GiB, [])
    assert layout.runs == ()
    assert layout.l2_tables == ()
    # header, L1, refcount table, one refcount block
    assert layout.size == layout.data_offset == 4 * K


def test_order_of_the_parts():
    layout = q.Layout.plan(2 * GiB, [(0, K), (GiB, K)])
    assert layout.l1_offset == K
    assert layout.refcount_table_offset == 2 * K
    # two L2 tables (one per 512 MiB that holds data) before the data
    assert layout.l2_tables == (0, 2)
    assert layout.data_offset == (1 + 1 + 1 + 1 + 2) * K
    assert layout.size == layout.data_offset + 2 * K
    chunks = list(layout.metadata())
    assert sum(map(len, chunks)) == layout.data_offset


def test_header():
    layout = q.Layout.plan(3 * GiB + 512, [(0, K)])
    fields = q.HEADER.unpack_from(layout.header())
    (magic, version, backing, _, cluster_bits, size, crypt, l1_size,
     l1_offset, table_offset, table_clusters, snapshots, _,
     incompatible, compatible, autoclear, refcount_order,
     header_length) = fields
    assert (magic, version, backing, crypt, snapshots) == (
        0x514649fb, 3, 0, 0, 0)
    assert (cluster_bits, refcount_order, header_length) == (16, 4, 104)
    assert (incompatible, compatible, autoclear) == (0, 0, 0)
    assert size == 3 * GiB + 512
    assert l1_size == 7  # 512 MiB per entry, rounded up
    assert (l1_offset, table_offset, table_clusters) == (
        layout.l1_offset, layout.refcount_table_offset, 1)


def test_tables_point_at_the_data_in_order():
    layout = q.Layout.plan(GiB, [(2 * K, 2 * K), (600 * 1024 * 1024, K)])
    header, l1, table, block, *l2 = layout.metadata()
    copied = 1 << 63
    first, second = (struct.unpack_from('>Q', l1, i * 8)[0]
                     for i in (0, 1))
    l2_offset = layout.data_offset - 2 * K
    assert first == l2_offset | copied
    assert second == (l2_offset + K) | copied
    entries = [struct.unpack_from('>Q', l2[0], i * 8)[0] for i in (1, 2, 3)]
    assert entries == [0, layout.data_offset | copied,
                       (layout.data_offset + K) | copied]
    # 600 MiB is entry 1600 of the second table; the third data cluster
    assert struct.unpack_from('>Q', l2[1], (9600 - 8192) * 8)[0] == \
        (layout.data_offset + 2 * K) | copied
    # every cluster of the file counted once, nothing more
    used = layout.size // K
    assert block[:used * 2] == b'\0\1' * used
    assert block[used * 2:] == bytes(K - used * 2)
    assert struct.unpack_from('>Q', table, 0)[0] == 3 * K


def test_refcount_blocks_count_themselves():
    # 2 GiB of file is what one refcount block counts: data that fills it
    # needs a second block, and the blocks are counted too.
    data = 2 * GiB // K
    layout = q.Layout.plan(4 * GiB, [(0, data * K)])
    assert layout.refcount_blocks == 2
    assert layout.size // K > q.REFCOUNT_ENTRIES


def test_backing_file_after_its_format():
    layout = q.Layout.plan(GiB, [(0, K)], ('../a/image.qcow2', 'qcow2'))
    header = layout.header()
    fields = q.HEADER.unpack_from(header)
    name_offset, name_size = fields[2], fields[3]
    # the format's extension (5 bytes, padded to 8), then the end
    assert q.EXTENSION.unpack_from(header, 104) == (0xe2792aca, 5)
    assert header[112:120] == b'qcow2\0\0\0'
    assert q.EXTENSION.unpack_from(header, 120) == (0, 0)
    assert (name_offset, name_size) == (128, 16)
    assert header[128:144] == b'../a/image.qcow2'
    assert header[144:] == bytes(K - 144)
    # the rest of the image is laid out as without a backing file
    assert layout.data_offset == q.Layout.plan(GiB, [(0, K)]).data_offset


def test_no_backing_file_ends_the_extensions_at_once():
    header = q.Layout.plan(GiB, []).header()
    assert q.HEADER.unpack_from(header)[2:4] == (0, 0)
    assert header[104:] == bytes(K - 104)


def test_a_backing_file_name_too_long_is_refused():
    layout = q.Layout.plan(GiB, [], ('x' * K, 'qcow2'))
    try:
        layout.header()
    except ValueError as e:
        assert 'backing file name' in str(e)
    else:
        raise AssertionError('a header past its cluster')
