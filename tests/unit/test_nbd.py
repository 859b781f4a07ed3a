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

"""The NBD client: how extents are read from NBD block status replies,
and what a failure of the export's reader says. The copies themselves run
against a real backup job in tests/functional.
"""

import sys

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import nbd

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
    assert nbd.changed_extents(h, CTX, 8 * K) == [
        (0, 2 * K), (4 * K, K)]


def test_status_is_asked_again_where_a_reply_stopped():
    h = Replies([(2 * K, 0)], [(K, 1), (K, 0)])
    assert nbd.changed_extents(h, CTX, 4 * K) == [(2 * K, K)]
    assert [offset for offset, _ in h.asked] == [0, 2 * K]


def test_an_extent_past_the_end_is_cut_to_the_size():
    h = Replies([(K, 0), (8 * K, 1)])
    assert nbd.changed_extents(h, CTX, 3 * K) == [(K, 2 * K)]


def test_no_reply_for_the_bitmap_is_an_error():
    h = Replies([])
    with pytest.raises(exception.ConversionFailed, match='reports no'):
        nbd.changed_extents(h, CTX, K)


def _fake_reader(monkeypatch, script):
    """``nbdcopy`` replaced by a Python program running ``script``."""
    monkeypatch.setattr(
        nbd.subprocess, 'Popen',
        lambda argv, **kw: _Popen([sys.executable, '-c', script], **kw))


_Popen = nbd.subprocess.Popen


def test_a_failed_reader_is_named_in_the_error(monkeypatch):
    _fake_reader(monkeypatch,
                 'import sys; sys.stderr.write("nbd_connect: no socket\\n");'
                 ' sys.exit(1)')
    with pytest.raises(exception.ConversionFailed) as raised:
        with nbd.read_to_pipe('nbd+unix:///vda?socket=/nowhere') as pipe:
            pipe.read()
            raise exception.StoreWriteFailed(store='file', reason='short')
    assert str(raised.value) == (
        'nbdcopy could not write the image: it failed with status 1: '
        'nbd_connect: no socket')
    assert 'qemu-img' not in str(raised.value)


def test_the_store_error_stays_when_the_reader_did_not_fail(monkeypatch):
    _fake_reader(monkeypatch, 'pass')
    with pytest.raises(exception.StoreWriteFailed, match='short'):
        with nbd.read_to_pipe('nbd+unix:///vda?socket=/nowhere') as pipe:
            pipe.read()
            raise exception.StoreWriteFailed(store='file', reason='short')


def test_a_conversion_failure_names_qemu_img_by_default():
    assert str(exception.ConversionFailed(reason='x')) == (
        'qemu-img could not write the image: x')
