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
"""The benchmarks' hold on free page reporting (tools/bench_memory.py),
on a directory standing in for the module's parameters.
"""

import os

import pytest

from tools import bench_memory


def _params(tmp_path, **values):
    for name, value in values.items():
        (tmp_path / name).write_text('%s\n' % value)
    return str(tmp_path)


def _values(path):
    return {n: open(os.path.join(path, n)).read().strip()
            for n in sorted(os.listdir(path))}


def test_held_for_the_block_and_restored(tmp_path):
    path = _params(tmp_path, min_free_ms=0, max_waiting_mib=1024,
                   page_reporting_order=9)
    with bench_memory.held(path, spare=bench_memory.available()) as state:
        assert _values(path) == {
            'max_waiting_mib': str(1 << 20), 'min_free_ms': '300000',
            'page_reporting_order': '9'}
        assert state.startswith('free page reporting: held off')
        assert bench_memory.state == state
    assert _values(path) == {'max_waiting_mib': '1024', 'min_free_ms': '0',
                             'page_reporting_order': '9'}


def test_restored_when_the_run_fails(tmp_path):
    path = _params(tmp_path, min_free_ms=5)
    with pytest.raises(KeyboardInterrupt):
        with bench_memory.held(path, spare=bench_memory.available()):
            raise KeyboardInterrupt()
    assert _values(path) == {'min_free_ms': '5'}


def test_nothing_where_there_is_no_reporting(tmp_path):
    with bench_memory.held(str(tmp_path / 'none')) as state:
        assert state == 'free page reporting: none here'
    assert not os.path.exists(tmp_path / 'none')


def test_not_held_when_it_cannot_be_written(tmp_path):
    path = _params(tmp_path, min_free_ms=0, max_waiting_mib=1024)
    os.chmod(os.path.join(path, 'max_waiting_mib'), 0o444)
    if os.access(os.path.join(path, 'max_waiting_mib'), os.W_OK):
        # NOTE: root writes a read-only file; a directory in its place
        # cannot be written by anyone.
        os.unlink(os.path.join(path, 'max_waiting_mib'))
        os.mkdir(os.path.join(path, 'max_waiting_mib'))
    with bench_memory.held(path) as state:
        assert state.startswith('free page reporting: on, not held')
        assert open(os.path.join(path, 'min_free_ms')).read().strip() == '0'


def test_touch_writes_whole_pieces():
    assert bench_memory.touch(bench_memory.PIECE - 1) == 0.0
    assert bench_memory.touch(2 * bench_memory.PIECE) >= 0.0
