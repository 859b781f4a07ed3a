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


"""The qcow2 stream writer against a real NBD server: every image it
writes passes ``qemu-img check`` and reads the same as its source
(``qemu-img compare``), whatever the shape of the source's data.
"""

import hashlib
import json
import os
import random
import subprocess
import time

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import nbd as nbd_client
from nova_snapshot_ext.storage import qcow2_layout
from nova_snapshot_ext.storage import qcow2_stream
from nova_snapshot_ext.stores import upload_body
from tests.functional import guest as guest_mod
from tests import polling

GiB = 1024 ** 3
MiB = 1024 ** 2


def _scattered(size, count, length):
    rng = random.Random(7)
    return [(rng.randrange(0, size - length), length) for _ in range(count)]


CASES = {
    # a few clusters at the start of a small disk
    'small': (10 * MiB, [(0, MiB)]),
    # nothing at all: header and tables only
    'empty': (MiB, []),
    # partial clusters, several L2 tables, a size that is no cluster
    # multiple, data in its very last bytes
    'ragged': (3 * GiB + 12345 * 512,
               [(0, 100), (600 * MiB, 5 * MiB), (2 * GiB + 7, 70000),
                (3 * GiB + 12345 * 512 - 1000, 1000)]),
    # thousands of small runs across a disk
    'scattered': (2 * GiB, _scattered(2 * GiB, 3000, 4096)),
}


@pytest.fixture
def nbd():
    found = nbd_client.libnbd()
    assert found is not None, 'python3-libnbd is missing'
    return found


def _source(path, size, writes):
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset, length in writes:
            f.seek(offset)
            # NOTE: not random bytes: a fast pattern that is not zeros.
            f.write((b'%016x' % offset) * (length // 16) +
                    b'x' * (length % 16))


def _serve(path, sock):
    proc = subprocess.Popen(['qemu-nbd', '--read-only', '--format', 'raw',
                             '--socket', sock, '--export-name', 'disk',
                             path])

    def listening():
        assert proc.poll() is None, 'qemu-nbd exited'
        return os.path.exists(sock)

    polling.wait_until(listening, 10, 0.02, 'qemu-nbd did not start')
    return proc


@pytest.mark.parametrize('chunk', [qcow2_stream.CHUNK,
                                   qcow2_stream.SMALL_CHUNK])
@pytest.mark.parametrize('case', sorted(CASES))
def test_image_is_valid_and_equal(nbd, tmp_path, case, chunk):
    size, writes = CASES[case]
    raw, out = str(tmp_path / 'source.raw'), str(tmp_path / 'image.qcow2')
    _source(raw, size, writes)
    proc = _serve(raw, str(tmp_path / 'sock'))
    try:
        handle = nbd_client.connect(
            nbd, 'nbd+unix:///disk?socket=%s' % (tmp_path / 'sock'))
        stream = qcow2_stream.Stream(nbd, handle, chunk=chunk)
        # NOTE: written as the file store writes it, hashed on the way.
        body = upload_body.UploadBody(out, stream, stream.size, None,
                                      algorithms=('sha256',))
        with open(out, 'wb') as f:
            for chunk in body:
                f.write(chunk)
        body.close()
        stream.close()
        nbd_client.disconnect(nbd, handle)
        written = stream.size
        del stream, handle
    finally:
        proc.wait(timeout=30)
    assert os.path.getsize(out) == written
    guest_mod.run('qemu-img', 'check', '-f', 'qcow2', out)
    guest_mod.run('qemu-img', 'compare', '-f', 'raw', '-F', 'qcow2', raw, out)
    # only the clusters the source holds are in the image
    cluster = 64 * 1024
    held = {c for offset, length in writes
            for c in range(offset // cluster,
                           -(-(offset + length) // cluster))}
    extents = json.loads(guest_mod.run(
        'qemu-img', 'map', '-f', 'qcow2', '--output=json', out))
    stored = sum(e['length'] for e in extents if e['data'])
    assert stored == sum(min(cluster, size - c * cluster) for c in held)
    with open(out, 'rb') as f:
        assert body.hexdigest('sha256') == \
            hashlib.file_digest(f, 'sha256').hexdigest()


@pytest.mark.parametrize('size,extents,mapped', [
    # more clusters than one refcount block counts (2 GiB of file)
    (64 * GiB, [(0, 10 * GiB), (40 * GiB + 3, 5 * GiB)],
     [(0, 10 * GiB), (40 * GiB, 5 * GiB + 64 * 1024)]),
    # an L1 table of more than one cluster (over 4 TiB)
    (5 * 1024 * GiB, [(0, MiB), (5 * 1024 * GiB - MiB, MiB)],
     [(0, MiB), (5 * 1024 * GiB - MiB, MiB)]),
])
def test_tables_of_large_images(tmp_path, size, extents, mapped):
    # The tables, with the data clusters left as a hole: qemu-img check
    # reads the tables and counts every cluster they use.
    layout = qcow2_layout.Layout.plan(size, extents)
    out = str(tmp_path / 'tables.qcow2')
    with open(out, 'wb') as f:
        for chunk in layout.metadata():
            f.write(chunk)
        assert f.tell() == layout.data_offset
        f.truncate(layout.size)
    guest_mod.run('qemu-img', 'check', '-f', 'qcow2', out)
    info = json.loads(guest_mod.run('qemu-img', 'info', '-f', 'qcow2',
                                    '--output=json', out))
    assert info['virtual-size'] == size
    extents_out = json.loads(guest_mod.run(
        'qemu-img', 'map', '-f', 'qcow2', '--output=json', out))
    assert [(e['start'], e['length'])
            for e in extents_out if e['data']] == mapped


def test_server_gone_mid_stream(nbd, tmp_path):
    # The export ends while the image is read (the guest is destroyed,
    # its QEMU dies): a clear error, and closing does not hang.
    raw = str(tmp_path / 'source.raw')
    _source(raw, 256 * MiB, [(0, 256 * MiB)])
    proc = _serve(raw, str(tmp_path / 'sock'))
    try:
        handle = nbd_client.connect(
            nbd, 'nbd+unix:///disk?socket=%s' % (tmp_path / 'sock'))
        stream = qcow2_stream.Stream(nbd, handle)
        got = len(stream.read(-1))
        proc.kill()
        with pytest.raises(exception.ConversionFailed, match='libnbd'):
            while True:
                data = stream.read(-1)
                assert data, 'the stream ended early, with no error'
                got += len(data)
        assert got < stream.size
        started = time.monotonic()
        stream.close()
        nbd_client.disconnect(nbd, handle)
        assert time.monotonic() - started < 5
    finally:
        proc.kill()
        proc.wait()
