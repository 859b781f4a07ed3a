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
"""durable.WriteBehind: a file written front to back reaches the disk
while it is written, and a failed flush is not lost.
"""

import errno
import os
from unittest import mock

import pytest

from nova_snapshot_ext.journal import durable

MiB = 1 << 20


def _write(path, every, chunks, chunk=256 * 1024):
    data = os.urandom(chunk)
    with open(path, 'wb') as f:
        out = durable.WriteBehind(f, every=every)
        try:
            for _ in range(chunks):
                out.write(data)
        finally:
            out.close()
    return data


def test_flushed_as_it_goes(tmp_path):
    path = str(tmp_path / 'image')
    flushed = []
    real = os.fdatasync

    def fdatasync(fd):
        flushed.append(os.fstat(fd).st_size)
        real(fd)

    with mock.patch.object(os, 'fdatasync', fdatasync):
        data = _write(path, MiB, 20)
    # 5 MiB written, a flush after each MiB of it: each saw at least all
    # that was written before it (the writer goes on meanwhile).
    assert len(flushed) == 5
    assert all(size >= MiB * n for n, size in enumerate(flushed, 1))
    with open(path, 'rb') as f:
        assert f.read() == data * 20


def test_a_failed_flush_fails_the_write(tmp_path):
    path = str(tmp_path / 'image')
    calls = []

    def fdatasync(fd):
        calls.append(fd)
        raise OSError(errno.EIO, 'Input/output error')

    with mock.patch.object(os, 'fdatasync', fdatasync):
        with pytest.raises(OSError) as e:
            _write(path, MiB, 20)
    assert e.value.errno == errno.EIO
    # Found at the next flush at the latest, not after the whole file.
    assert len(calls) == 1
    assert os.path.getsize(path) <= 2 * MiB + 256 * 1024
