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

"""How the changed extents are read from NBD block status replies. The
copy itself runs against a real backup job in tests/functional.
"""

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import changed_blocks

CTX = 'qemu:dirty-bitmap:backup-vda'
K = 64 * 1024


class Replies:
    """An NBD handle whose block status replies are scripted: one list of
    (length, flags) per call, for our context; other contexts get noise.
    """

    def __init__(self, *replies):
        self.replies = list(replies)
        self.asked = []

    def block_status(self, count, offset, callback):
        self.asked.append((offset, count))
        callback('base:allocation', offset, [count, 0], 0)
        entries = [x for pair in self.replies.pop(0) for x in pair]
        callback(CTX, offset, entries, 0)


def test_dirty_extents_are_merged_and_clean_ones_skipped():
    h = Replies([(K, 1), (K, 1), (2 * K, 0), (K, 1), (3 * K, 0)])
    assert changed_blocks.changed_extents(h, CTX, 8 * K) == [
        (0, 2 * K), (4 * K, K)]


def test_status_is_asked_again_where_a_reply_stopped():
    h = Replies([(2 * K, 0)], [(K, 1), (K, 0)])
    assert changed_blocks.changed_extents(h, CTX, 4 * K) == [(2 * K, K)]
    assert [offset for offset, _ in h.asked] == [0, 2 * K]


def test_an_extent_past_the_end_is_cut_to_the_size():
    h = Replies([(K, 0), (8 * K, 1)])
    assert changed_blocks.changed_extents(h, CTX, 3 * K) == [(K, 2 * K)]


def test_no_reply_for_the_bitmap_is_an_error():
    h = Replies([])
    with pytest.raises(exception.ConversionFailed, match='reports no'):
        changed_blocks.changed_extents(h, CTX, K)
