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

"""``snapshot --all-disks``: an image of every disk of a running guest,
all at one point in time, on the real libvirt.

The guest is the counter-writing test guest with a second disk (raw,
random data).
"""

import hashlib
import json
import os
import shutil
import uuid

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tests.functional import test_recover
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import assert_nothing_left
from tests.functional.test_snapshot import GuestBefore
from tests.functional.test_snapshot import take

DATA_B = 8 * guest_mod.MiB


class TwoDisks:
    def __init__(self, g, path, sha256):
        self.g, self.path, self.sha256 = g, path, sha256


@pytest.fixture(scope='module')
def two_disks(conn, workroot):
    name = 'two-%s' % uuid.uuid4().hex[:6]
    path = os.path.join(workroot, name)
    g = guest_mod.TestGuest(conn, path, name, fmt='qcow2')
    vdb, sha256 = guest_mod.add_raw_disk(g, DATA_B)
    g.start()
    yield TwoDisks(g, vdb, sha256)
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


def raw_sha256(path, fmt):
    out = path + '.check.raw'
    try:
        guest_mod.run('qemu-img', 'convert', '-f', fmt, '-O', 'raw', path,
                      out)
        with open(out, 'rb') as f:
            return hashlib.file_digest(f, 'sha256').hexdigest()
    finally:
        os.unlink(out)


def metadata(path):
    with open(os.path.join(os.path.dirname(path), 'metadata.json')) as f:
        return json.load(f)


def assert_group(result, two, method, fmt='qcow2'):
    g = two.g
    assert result.method == method
    assert [d['disk'] for d in result.disks] == ['vda', 'vdb']
    vda, vdb = result.disks
    assert vda['image'] == result.image
    check = guest_mod.check_image(vda['image'], vda['format'], g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters
    assert raw_sha256(vdb['image'], vdb['format']) == two.sha256
    metas = [metadata(d['image']) for d in result.disks]
    assert [m['name'] for m in metas] == ['snap', 'snap-vdb']
    assert [m['source_disk'] for m in metas] == ['vda', 'vdb']
    assert {m['snapshot_group'] for m in metas} != {None}
    assert len({m['snapshot_group'] for m in metas}) == 1
    assert {m['snapshot_disks'] for m in metas} == {'vda,vdb'}
    for d in result.disks:
        assert 'backing-filename' not in guest_mod.image_info(
            d['image'], d['format'])


def test_live_all_disks_through_one_backup_job(conf, two_disks):
    before = GuestBefore(two_disks.g)
    result = take(conf, two_disks.g, method='live', all_disks=True)
    assert result.live_copy_style == 'backup'
    assert_group(result, two_disks, 'live')
    # vdb is raw: each disk keeps its own format by default.
    assert [d['format'] for d in result.disks] == ['qcow2', 'raw']
    assert_guest_as_before(two_disks.g, before)


def test_cold_all_disks_under_one_save(conf, two_disks):
    before = GuestBefore(two_disks.g)
    result = take(conf, two_disks.g, method='cold', all_disks=True,
                  image_format='qcow2')
    assert result.downtime > 0
    assert_group(result, two_disks, 'cold')
    assert [d['format'] for d in result.disks] == ['qcow2', 'qcow2']
    assert_guest_as_before(two_disks.g, before)


def test_without_the_backup_api_live_is_refused_and_auto_is_cold(
        conf, two_disks):
    conf.set_override('live_copy_style', 'blockcopy',
                      group='snapshot_libvirt')
    before = GuestBefore(two_disks.g)
    with pytest.raises(exception.LiveSnapshotImpossible,
                       match='all disks at one point in time needs'):
        take(conf, two_disks.g, method='live', all_disks=True)
    assert_nothing_left(conf)
    result = take(conf, two_disks.g, all_disks=True)
    assert result.method == 'cold'
    assert 'needs [snapshot_libvirt] live_copy_style backup' in \
        result.reason
    assert_guest_as_before(two_disks.g, before)


def test_a_failed_disk_leaves_no_image_of_the_group(conf, two_disks):
    # The second image fails as its commit starts, once the first one is
    # complete in the store: that one is deleted too.
    before = GuestBefore(two_disks.g)
    commits = []

    def fail_second_commit(stage, fraction):
        if stage == 'upload' and fraction == 0.0:
            commits.append(stage)
            if len(commits) == 2:
                raise exception.SnapshotCancelled(guest=two_disks.g.name,
                                                  reason='test')

    with pytest.raises(exception.SnapshotCancelled):
        take(conf, two_disks.g, method='live', all_disks=True,
             progress=fail_second_commit)
    assert len(commits) == 2
    assert_nothing_left(conf)
    assert_guest_as_before(two_disks.g, before)


def test_all_disks_into_glance(conf, workdir, glance_url, two_disks):
    result = take(conf, two_disks.g, method='live', all_disks=True,
                  store='glance+' + glance_url)
    client = glance_stack.client(glance_url)
    images = [client.images.get(d['image_id']) for d in result.disks]
    assert [i['status'] for i in images] == ['active', 'active']
    assert [i['name'] for i in images] == ['snap', 'snap-vdb']
    assert images[0]['snapshot_group'] == images[1]['snapshot_group']
    path = os.path.join(workdir, 'vdb.download')
    glance_stack.download(glance_url, images[1]['id'], path)
    assert raw_sha256(path, images[1]['disk_format']) == two_disks.sha256
    for image in images:
        client.images.delete(image['id'])


def test_an_image_record_cannot_take_all_disks(conf, two_disks):
    with pytest.raises(exception.InvalidInput, match='holds one disk'):
        take(conf, two_disks.g, all_disks=True,
             image_id=str(uuid.uuid4()))
    assert_nothing_left(conf)


def test_sigkill_mid_group_then_recover_leaves_no_image_of_it(workdir,
                                                              two_disks):
    """Killed once the first image of the group is committed: ``recover``
    deletes it, the group is whole or absent (issue 22).
    """
    g = two_disks.g
    before = GuestBefore(g)
    run = test_recover.Run(workdir, 'backup', ['--method', 'live',
                                               '--all-disks'],
                           journal.GROUP_IMAGE, g, 'file')
    images = os.path.join(run.state, 'images')
    try:
        committed = [e for e in os.listdir(images) if not e.startswith('.')]
        assert len(committed) == 1
        assert metadata(os.path.join(images, committed[0], 'x'))[
            'source_disk'] == 'vda'
    finally:
        run.proc.kill()
        run.proc.communicate()
    out = run.recover()
    assert 'FAILED' not in out
    assert 'delete image %s' % committed[0] in out, out
    assert os.listdir(images) == []
    assert journal.paths(os.path.join(run.state, 'snapshots')) == []
    assert_guest_as_before(g, before)
