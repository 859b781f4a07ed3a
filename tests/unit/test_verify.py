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

"""verify: an image read back against its record (real qemu-img, no
daemons; Glance faked at its API).
"""

import dataclasses
import hashlib
import io
import json
import os
import pathlib
from unittest import mock

from oslo_concurrency import processutils
from oslo_utils import uuidutils
import pytest

from nova_snapshot_ext.cmd import main as cli
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext import model
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import file as file_store
from nova_snapshot_ext.stores import image_api
from nova_snapshot_ext.stores import image_calls
from nova_snapshot_ext import verify


def _image(store_dir, fmt='qcow2', backing=None, data=b'guest data'):
    """An image in a directory store, as a snapshot leaves it: its id."""
    image_id = uuidutils.generate_uuid()
    directory = store_dir / image_id
    directory.mkdir()
    path = directory / ('image.%s' % fmt)
    cmd = ['qemu-img', 'create', '-q', '-f', fmt]
    if backing:
        cmd += ['-b', str(store_dir / backing / 'image.qcow2'),
                '-F', 'qcow2']
    processutils.execute(*cmd, str(path), '1M')
    processutils.execute('qemu-io', '-f', fmt, '-c',
                         'write -P 0x5a 0 64k', str(path))
    doc = {'id': image_id, 'format': fmt, 'size': path.stat().st_size,
           'sha256': durable.sha256_of(str(path)),
           'incremental_of': backing}
    (directory / 'metadata.json').write_text(json.dumps(doc))
    return image_id


def _flip_last_byte(path):
    with open(path, 'r+b') as f:
        f.seek(-1, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([b[0] ^ 0xff]))


@pytest.fixture
def store(conf, tmp_path):
    d = tmp_path / 'images'
    d.mkdir()
    return file_store.FileStore(conf, 'file://%s' % d)


def _dir(store):
    return pathlib.Path(store.directory)


def test_good_qcow2_image(conf, store):
    image_id = _image(_dir(store))
    report = verify.verify(conf, store, image_id)
    assert report.ok, report.problem
    assert report.members[0]['qemu_img_check'] == 'clean'
    assert report.as_dict()['ok'] is True


def test_image_may_be_named_by_its_path(conf, store):
    image_id = _image(_dir(store), fmt='raw')
    path = str(_dir(store) / image_id / 'image.raw')
    report = verify.verify(conf, store, path)
    assert report.ok
    assert report.members[0]['qemu_img_check'].startswith('not applicable')


def test_a_flipped_byte_is_found(conf, store):
    image_id = _image(_dir(store))
    _flip_last_byte(_dir(store) / image_id / 'image.qcow2')
    report = verify.verify(conf, store, image_id)
    assert not report.ok
    assert report.problem.startswith('image %s: its sha256 is' % image_id)
    assert '\n' not in report.problem


def test_a_short_image_is_found(conf, store):
    image_id = _image(_dir(store), fmt='raw')
    os.truncate(_dir(store) / image_id / 'image.raw', 1000)
    report = verify.verify(conf, store, image_id)
    assert 'its size is 1000' in report.problem


def test_unreadable_metadata(conf, store):
    image_id = _image(_dir(store))
    (_dir(store) / image_id / 'metadata.json').write_text('{')
    report = verify.verify(conf, store, image_id)
    assert 'metadata.json cannot be read' in report.problem


def test_unknown_image(conf, store):
    with pytest.raises(exception.ImageNotFound):
        verify.verify(conf, store, uuidutils.generate_uuid())
    with pytest.raises(exception.ImageNotFound):
        verify.verify(conf, store, 'not-an-id')


def test_qemu_img_check_corruption_is_reported(conf, store):
    image_id = _image(_dir(store))
    with mock.patch.object(qemu_img, 'check',
                           return_value={'corruptions': 2}):
        report = verify.verify(conf, store, image_id)
    assert report.problem.endswith('qemu-img check found 2 corruptions')


def test_chain_is_verified_and_a_damaged_base_named(conf, store):
    base = _image(_dir(store))
    top = _image(_dir(store), backing=base)
    report = verify.verify(conf, store, top)
    assert report.ok, report.problem
    assert [m['image_id'] for m in report.members] == [top, base]
    _flip_last_byte(_dir(store) / base / 'image.qcow2')
    report = verify.verify(conf, store, top)
    assert report.problem.startswith(
        'image %s (in the chain of %s): its sha256' % (base, top))


def test_a_backing_file_other_than_the_chain_is_damage(conf, store):
    base = _image(_dir(store))
    other = _image(_dir(store))
    top = _image(_dir(store), backing=other)
    doc_path = _dir(store) / top / 'metadata.json'
    doc = json.loads(doc_path.read_text())
    doc['incremental_of'] = base
    doc_path.write_text(json.dumps(doc))
    report = verify.verify(conf, store, top)
    assert 'its backing file is' in report.problem


def test_qemu_img_check_runs_limited_with_the_format(conf):
    out = json.dumps({'corruptions': 0, 'leaks': 0})
    with mock.patch.object(processutils, 'execute',
                           return_value=(out, '')) as execute:
        assert qemu_img.check(conf, '/img', 'qcow2')['corruptions'] == 0
    args, kwargs = execute.call_args
    assert args == ('qemu-img', 'check', '-f', 'qcow2', '--output=json',
                    '/img')
    assert kwargs['prlimit'].cpu_time == 30
    assert kwargs['check_exit_code'] == [0, 2, 3]
    with pytest.raises(exception.InvalidFormat):
        qemu_img.check(conf, '/img', None)


# -- Glance, faked at its API ---------------------------------------------
DATA = b'\x01' * 5000


class FakeAPI(image_calls.ImageAPI):

    def __init__(self, record, data=DATA, deletes=True):
        self.record, self.data = record, data
        self.deletes_on_failure = deletes
        self.deleted = []

    def get(self, image_id):
        return dict(self.record, id=image_id)

    def download(self, image_id):
        yield self.data[:1000]
        yield self.data[1000:]

    def delete(self, image_id):
        self.deleted.append(image_id)

    def create(self, attrs):
        raise NotImplementedError

    def update(self, image_id, changes):
        raise NotImplementedError

    def upload(self, image_id, body, disk_format):
        raise NotImplementedError

    def add_location(self, image_id, url, store_id):
        raise NotImplementedError

    def stores_detail(self):
        return None

    def image_url(self, image_id):
        return image_id


class FakeStore(image_api.APIImageStore):

    def check(self):
        pass


def _glance(conf, **changes):
    record = {'status': 'active', 'disk_format': 'raw', 'size': len(DATA),
              'os_hash_algo': 'sha512',
              'os_hash_value': hashlib.sha512(DATA).hexdigest(),
              'sha256': hashlib.sha256(DATA).hexdigest()}
    record.update(changes)
    return FakeStore(conf, 'glance', FakeAPI(record))


def test_glance_image_good(conf):
    report = verify.verify(conf, _glance(conf), 'i')
    assert report.ok, report.problem
    assert report.members[0]['sha512'] == hashlib.sha512(DATA).hexdigest()


@pytest.mark.parametrize('changes,problem', [
    ({'os_hash_value': 'ab'}, 'its sha512 is'),
    ({'sha256': 'ab'}, 'its sha256 property records ab'),
    ({'size': 1}, 'Glance records 1'),
    ({'status': 'queued'}, 'it is queued'),
])
def test_glance_image_damaged(conf, changes, problem):
    report = verify.verify(conf, _glance(conf, **changes), 'i')
    assert report.problem.startswith('image i: ')
    assert problem in report.problem


def test_glance_client_s_own_hash_check_is_damage(conf):
    store = _glance(conf)

    def corrupt(image_id):
        yield DATA[:10]
        raise IOError('Corrupt image download. Hash was x expected y')

    store.api.download = corrupt
    report = verify.verify(conf, store, 'i')
    assert report.problem == ('image i: reading it back failed: Corrupt '
                              'image download. Hash was x expected y')


def test_glance_qcow2_is_checked_from_a_private_copy(conf, tmp_path):
    img = tmp_path / 'x.qcow2'
    processutils.execute('qemu-img', 'create', '-q', '-f', 'qcow2',
                         str(img), '1M')
    data = img.read_bytes()
    store = _glance(conf, disk_format='qcow2', size=len(data),
                    os_hash_value=hashlib.sha512(data).hexdigest(),
                    sha256=None)
    store.api.data = data
    report = verify.verify(conf, store, 'i')
    assert report.ok, report.problem
    assert report.members[0]['qemu_img_check'] == 'clean'
    assert os.listdir(conf.snapshot.temp_directory) == []


# -- [snapshot] verify ------------------------------------------------------
RESULT = model.SnapshotResult(
    method='live', reason='r', image='i', image_id='i', location='l',
    format='raw', size=1, virtual_size=1, sha256=None, seconds=1.0,
    guest='g', backend='raw')


def test_after_snapshot_marks_a_good_image_verified(conf):
    result = dataclasses.replace(RESULT)
    verify.after_snapshot(conf, _glance(conf), result)
    assert result.verified


def test_after_snapshot_deletes_a_damaged_image(conf):
    store = _glance(conf, os_hash_value='ab')
    result = dataclasses.replace(RESULT)
    with pytest.raises(exception.ImageDamaged, match='Image i is damaged'):
        verify.after_snapshot(conf, store, result)
    assert store.api.deleted == ['i']
    assert not result.verified


def test_after_snapshot_leaves_nova_s_record_to_nova(conf):
    store = _glance(conf, os_hash_value='ab')
    store.api.deletes_on_failure = False
    with pytest.raises(exception.ImageDamaged):
        verify.after_snapshot(conf, store, dataclasses.replace(RESULT))
    assert store.api.deleted == []


def test_direct_snapshots_are_not_read_back(conf):
    store = mock.Mock()
    result = dataclasses.replace(RESULT, method='direct')
    verify.after_snapshot(conf, store, result)
    assert not result.verified
    store.api.download.assert_not_called()


# -- the command --------------------------------------------------------------
def _run(argv, capsys):
    out = io.StringIO()
    rc = cli.main(argv + ['--config-file', os.devnull], out=out)
    return rc, out.getvalue(), capsys.readouterr().err


def test_command_good_and_damaged(store, capsys):
    image_id = _image(_dir(store))
    argv = ['verify', image_id, '--store', store.spec]
    rc, out, err = _run(argv, capsys)
    assert (rc, err) == (0, '')
    assert out.startswith('%s: good (qcow2' % image_id)
    rc, out, err = _run(argv + ['--json'], capsys)
    assert json.loads(out)['ok'] is True
    _flip_last_byte(_dir(store) / image_id / 'image.qcow2')
    rc, out, err = _run(argv, capsys)
    assert rc == 1
    assert out == ''
    assert err.count('\n') == 1
    assert err.startswith('nova-snapshot-ext: error: %s is damaged: image '
                          '%s: its sha256' % (image_id, image_id))


def test_command_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(['verify'])
    assert e.value.code == 2
    assert capsys.readouterr().err.count('\n') == 1
