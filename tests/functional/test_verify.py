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

"""``nova-snapshot-ext verify`` on real snapshots: good images pass, one
flipped byte in an image's data (or in the base of an incremental chain)
is found and named.
"""

import json
import os
from unittest import mock

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.storage import qemu_img

from tests.functional.conftest import make_conf
from tests.functional.conftest import own_guest
from tests.functional import guest as guest_mod
from tests.functional.test_cli import cli
from tests.functional.test_cli import conf_file  # noqa: F401 - a fixture
from tests.functional.test_snapshot import store_url
from tests.functional.test_snapshot import take


def flip_data_byte(path):
    """Flip one byte inside a data cluster of qcow2 image ``path`` (not
    its metadata: qemu-img check alone would not see it).
    """
    extents = json.loads(guest_mod.run('qemu-img', 'map', '-f', 'qcow2',
                                       '--output=json', path))
    data = [e for e in extents if e.get('data') and 'offset' in e]
    assert data, extents
    offset = data[0]['offset'] + data[0]['length'] // 2
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def assert_damaged(done, image_id):
    assert done.returncode == 1, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert 'error:' in lines[0] and image_id in lines[0]
    assert 'sha256' in lines[0]


def test_a_flipped_byte_is_found(conf_file, workdir,  # noqa: F811
                                 qcow2_guest):
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'v',
               '--json')
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    done = cli(conf_file, 'verify', doc['image_id'])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('%s: good (qcow2' % doc['image_id'])
    assert 'qemu-img check clean' in done.stdout
    flip_data_byte(doc['image'])
    assert_damaged(cli(conf_file, 'verify', doc['image_id']),
                   doc['image_id'])
    # Named by its path too, and in JSON.
    done = cli(conf_file, 'verify', doc['image'], '--json')
    assert done.returncode == 1
    assert json.loads(done.stdout)['ok'] is False


def test_snapshot_verified_when_configured(conf_file,  # noqa: F811
                                           qcow2_guest):
    with open(conf_file, 'a') as f:
        f.write('[snapshot]\nverify = true\n')
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'vv',
               '--json')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)['verified'] is True


def test_a_snapshot_failing_verification_leaves_no_image(
        conf, qcow2_guest):
    conf.set_override('verify', True, group='snapshot')
    images = os.path.join(conf.state_path, 'images')
    with mock.patch.object(qemu_img, 'check',
                           return_value={'corruptions': 1}):
        with pytest.raises(exception.ImageDamaged,
                           match='qemu-img check found 1 corruptions'):
            take(conf, qcow2_guest)
    assert os.listdir(images) == []


@pytest.fixture(scope='module')
def chain_guest(conn, workroot):
    """A guest of its own: incremental snapshots leave checkpoints."""
    yield from own_guest(conn, workroot, 'ver')


def test_a_damaged_base_of_a_chain_is_found(conf_file, workdir,  # noqa
                                            chain_guest):
    conf = make_conf(workdir)
    full = take(conf, chain_guest, incremental=True)
    top = take(conf, chain_guest, incremental=True)
    assert top.incremental_of == full.image_id
    store = store_url(conf)
    done = cli(conf_file, 'verify', top.image_id, '--store', store)
    assert done.returncode == 0, done.stderr
    assert 'its chain of 2 images too' in done.stdout
    flip_data_byte(full.image)
    done = cli(conf_file, 'verify', top.image_id, '--store', store)
    assert_damaged(done, full.image_id)
    assert top.image_id in done.stderr


def test_a_glance_image_verifies(conf_file, glance_url,  # noqa: F811
                                 qcow2_guest):
    store = 'glance+' + glance_url
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'vg',
               '--store', store, '--json')
    assert done.returncode == 0, done.stderr
    image_id = json.loads(done.stdout)['image_id']
    done = cli(conf_file, 'verify', image_id, '--store', store, '--json')
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['ok'] is True
    member = report['chain'][0]
    assert member['qemu_img_check'] == 'clean'
    assert member['sha512']
