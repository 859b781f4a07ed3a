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

"""``snapshot --incremental`` into the directory store, on the real
libvirt: checkpoints, chains of qcow2 images, and the falls back to a
full image. The guest is a counter-writing guest of its own (its
checkpoints would change the other tests' guests).
"""

import hashlib
import json
import logging
import os
import shutil
import signal
import uuid

import libvirt
import pytest

from nova_snapshot_ext import exception
from tests.functional.conftest import make_conf
from tests.functional.conftest import own_guest
from tests.functional import guest as guest_mod
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import assert_no_temp_files
from tests.functional.test_snapshot import GuestBefore
from tests.functional.test_snapshot import take
from tests import polling


@pytest.fixture(scope='module')
def conf(workroot):
    """One configuration, so one state directory, for the module: its
    list of the guest's checkpoints (which a snapshot made with another
    state directory would not know) lasts from test to test, as it does
    on a host.
    """
    path = os.path.join(workroot, 'inc-conf-%s' % uuid.uuid4().hex[:6])
    os.makedirs(path)
    os.chmod(path, 0o755)
    yield make_conf(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module')
def inc_guest(conn, workroot):
    yield from own_guest(conn, workroot, 'inc')


def checkpoints(g):
    return [c.getName() for c in g.dom.listAllCheckpoints(0)]


def _nodes(g):
    return json.loads(guest_mod.run(
        'virsh', '-c', guest_mod.URI, 'qemu-monitor-command', g.name,
        '{"execute": "query-named-block-nodes"}'))['return']


def bitmaps(g):
    """The dirty bitmaps QEMU holds for the guest's disk (libvirt does
    not know them between snapshots).
    """
    return sorted(b['name'] for n in _nodes(g)
                  for b in n.get('dirty-bitmaps', []))


def only_bitmap(g, result):
    """The guest's disk holds one bitmap, the checkpoint of ``result``,
    and libvirt knows no checkpoint (Nova could not undefine it).
    """
    assert bitmaps(g) == ['nse-' + result.image_id]
    assert checkpoints(g) == []


def metadata(result):
    with open(os.path.join(os.path.dirname(result.image),
                           'metadata.json')) as f:
        return json.load(f)


def whole_disk(result, g, last_before=0):
    """The chain read as one disk: the guest's data, one point in time,
    later than ``last_before``.
    """
    guest_mod.run('qemu-img', 'check', '-q', '-f', 'qcow2', result.image)
    check = guest_mod.check_image(result.image, 'qcow2', g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters
    assert check.last > last_before
    return check


def test_a_chain_of_incremental_images(conf, inc_guest):
    g = inc_guest
    before = GuestBefore(g)
    full = take(conf, g, incremental=True)
    assert full.incremental_of is None
    assert 'no checkpoint' in full.incremental_reason
    only_bitmap(g, full)
    first = whole_disk(full, g)

    g.wait_counter(first.last + 600)
    inc = take(conf, g, incremental=True)
    assert inc.incremental_of == full.image_id
    assert inc.incremental_reason is None
    info = guest_mod.image_info(inc.image, 'qcow2')
    assert info['backing-filename'] == '../%s/image.qcow2' % full.image_id
    assert info['backing-filename-format'] == 'qcow2'
    # Only the counter sectors changed: a few clusters, not the data.
    assert inc.size < full.size / 20, (inc.size, full.size)
    second = whole_disk(inc, g, first.last)
    meta = metadata(inc)
    assert meta['incremental_of'] == full.image_id
    # Recorded from the export's size, not probed: still the disk's.
    assert meta['virtual_size'] == inc.virtual_size == \
        info['virtual-size'] == g.disks.size
    assert meta['checkpoint'] == 'nse-' + inc.image_id

    g.wait_counter(second.last + 600)
    third = take(conf, g, incremental=True)
    assert third.incremental_of == inc.image_id
    whole_disk(third, g, second.last)
    # The guest keeps one bitmap: the newest checkpoint.
    only_bitmap(g, third)
    # A full copy of the chain is a standalone image of the same disk.
    flat = os.path.join(conf.state_path, 'flat.qcow2')
    guest_mod.run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2',
                  third.image, flat)
    guest_mod.run('qemu-img', 'compare', '-f', 'qcow2', '-F', 'qcow2',
                  third.image, flat)
    assert 'backing-filename' not in guest_mod.image_info(flat, 'qcow2')
    os.remove(flat)
    assert_guest_as_before(g, before)


def test_an_image_gone_from_the_store_means_a_full_image(conf, inc_guest):
    g = inc_guest
    first = take(conf, g, incremental=True)
    shutil.rmtree(os.path.dirname(first.image))
    again = take(conf, g, incremental=True)
    assert again.incremental_of is None
    assert 'is not in' in again.incremental_reason
    whole_disk(again, g)
    only_bitmap(g, again)


def _remove_bitmap(g, name):
    [node] = [n['node-name'] for n in _nodes(g)
              if any(b['name'] == name for b in n.get('dirty-bitmaps', []))]
    guest_mod.run('virsh', '-c', guest_mod.URI, 'qemu-monitor-command',
                  g.name, json.dumps({
                      'execute': 'block-dirty-bitmap-remove',
                      'arguments': {'node': node, 'name': name}}))


def test_a_lost_bitmap_means_a_full_image(conf, inc_guest):
    g = inc_guest
    before = GuestBefore(g)
    first = take(conf, g, incremental=True)
    _remove_bitmap(g, 'nse-' + first.image_id)
    again = take(conf, g, incremental=True)
    assert again.incremental_of is None
    assert 'the bitmap of checkpoint nse-%s cannot be used' % \
        first.image_id in again.incremental_reason
    assert metadata(again)['incremental_reason'] == \
        again.incremental_reason
    whole_disk(again, g)
    only_bitmap(g, again)
    assert_guest_as_before(g, before)


@pytest.mark.parametrize('kwargs,reason', [
    ({'image_format': 'raw'}, 'cannot be'),
    ({'method': 'cold'}, 'taken live through a backup job'),
    ({'all_disks': True}, 'of the root disk'),
])
def test_what_cannot_be_incremental_is_refused(conf, inc_guest, kwargs,
                                               reason):
    before = bitmaps(inc_guest)
    images = os.path.join(conf.state_path, 'images')
    stored = sorted(os.listdir(images)) if os.path.isdir(images) else []
    with pytest.raises(exception.InvalidInput, match=reason):
        take(conf, inc_guest, incremental=True, **kwargs)
    assert bitmaps(inc_guest) == before
    assert checkpoints(inc_guest) == []
    assert_no_temp_files(conf)
    assert (sorted(os.listdir(images)) if os.path.isdir(images) else []) \
        == stored


def test_a_failed_incremental_snapshot_deletes_its_checkpoint(conf,
                                                              inc_guest):
    g = inc_guest
    first = take(conf, g, incremental=True)
    before = bitmaps(g)
    store = os.path.dirname(os.path.dirname(first.image))
    images = sorted(os.listdir(store))

    def fail(stage, fraction):
        if stage == 'convert' and fraction == 1.0:
            raise exception.SnapshotCancelled(guest=g.name, reason='test')

    with pytest.raises(exception.SnapshotCancelled):
        take(conf, g, incremental=True, progress=fail)
    assert bitmaps(g) == before
    assert checkpoints(g) == []
    assert_no_temp_files(conf)
    assert sorted(os.listdir(store)) == images


def test_keep_n_merges_and_deletes_old_images(conf, inc_guest):
    g = inc_guest
    results = []
    for _ in range(4):
        results.append(take(conf, g, incremental=True, keep=2))
    store = os.path.dirname(os.path.dirname(results[-1].image))
    third, fourth = results[2], results[3]
    assert sorted(os.listdir(store)) == sorted([third.image_id,
                                                fourth.image_id])
    # The oldest kept image stands alone, and its metadata says so.
    assert 'backing-filename' not in guest_mod.image_info(third.image,
                                                          'qcow2')
    meta = metadata(third)
    assert meta['incremental_of'] is None
    assert meta['flattened_from'] == results[1].image_id
    with open(third.image, 'rb') as f:
        assert meta['sha256'] == hashlib.file_digest(f, 'sha256').hexdigest()
    assert meta['size'] == os.path.getsize(third.image)
    assert not [n for n in os.listdir(os.path.dirname(third.image))
                if n.endswith('.flat')]
    # The newest is still a small increment on it, and whole.
    assert fourth.incremental_of == third.image_id
    whole_disk(third, g)
    whole_disk(fourth, g)


def kill_qemu(g):
    """SIGKILL the guest's QEMU (as the OOM killer would): the dirty
    bitmaps of its disk are lost or left broken; then boot the guest
    again, as Nova's start would.
    """
    with open('/run/libvirt/qemu/%s.pid' % g.name) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)
    polling.wait_until(lambda: not g.dom.isActive(), 30, 0.1,
                       'the guest is still active')
    g.start()


def images_of(g, store):
    """The ids of the images of guest ``g`` in directory ``store``."""
    found = []
    for entry in os.listdir(store):
        path = os.path.join(store, entry, 'metadata.json')
        if os.path.isfile(path):
            with open(path) as f:
                if json.load(f).get('source_uuid') == g.dom.UUIDString():
                    found.append(entry)
    return sorted(found)


def test_keep_n_keeps_n_restore_points_when_a_chain_restarts(
        conf, inc_guest, caplog):
    """keep 2, two snapshots in one chain, QEMU killed (the bitmap is
    lost): the third is a full image, the start of a new chain, and the
    second stays, made standalone: two restore points remain, whole.
    """
    caplog.set_level(logging.INFO)
    g = inc_guest
    first = take(conf, g, incremental=True, keep=2)
    g.wait_counter(whole_disk(first, g).last + 600)
    second = take(conf, g, incremental=True, keep=2)
    assert second.incremental_of == first.image_id
    kill_qemu(g)
    third = take(conf, g, incremental=True, keep=2)
    assert third.incremental_of is None
    assert 'cannot be used' in third.incremental_reason
    store = os.path.dirname(os.path.dirname(third.image))
    assert images_of(g, store) == sorted([second.image_id, third.image_id])
    for result in (second, third):
        guest_mod.run('qemu-img', 'check', '-q', '-f', 'qcow2',
                      result.image)
    # The older one's chain is whole: it stands alone now.
    assert 'backing-filename' not in guest_mod.image_info(second.image,
                                                          'qcow2')
    assert metadata(second)['flattened_from'] == first.image_id
    whole_disk(second, g)
    whole_disk(third, g)
    only_bitmap(g, third)
    # QEMU never saved the lost bitmap: nothing of it stays in the disk.
    assert 'Could not delete the bitmap' not in caplog.text
    assert 'nse-%s of %s is gone already' % (second.image_id, g.name) in \
        caplog.text


def test_a_bitmap_broken_by_a_killed_qemu_is_deleted(conf, inc_guest):
    """A bitmap QEMU saved in the disk (the guest was stopped and started
    since its snapshot), then left marked in use by a killed QEMU, is
    broken: the next snapshot is full, and deletes it.
    """
    g = inc_guest
    first = take(conf, g, incremental=True)
    g.dom.destroy()
    g.start()
    kill_qemu(g)
    assert [b.get('inconsistent') for n in _nodes(g)
            for b in n.get('dirty-bitmaps') or []] == [True]
    again = take(conf, g, incremental=True)
    assert again.incremental_of is None
    assert 'the bitmap of checkpoint nse-%s cannot be used' % \
        first.image_id in again.incremental_reason
    whole_disk(again, g)
    only_bitmap(g, again)


def test_nova_can_suspend_copy_and_hard_reboot_the_guest_meanwhile(
        conf, inc_guest):
    """Between two incremental snapshots the guest goes through what Nova
    does to an instance: suspend and resume (managed save), its own live
    snapshot (a shallow block copy, aborted), a hard reboot (destroy,
    undefine with Nova's flags, define, start). None is refused, and the
    next snapshot is still incremental, and whole.
    """
    g = inc_guest
    first = take(conf, g, incremental=True)
    whole_disk(first, g)
    g.dom.managedSave(0)
    g.dom.create()
    copy = os.path.join(g.workdir, 'nova-copy.qcow2')
    g.dom.blockCopy('vda', '<disk type="file"><source file="%s"/><driver '
                    'type="qcow2"/></disk>' % copy, None,
                    libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW |
                    libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
    g.dom.blockJobAbort('vda', 0)
    xml = g.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    g.dom.destroy()
    g.dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                        libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    g.dom = g.conn.defineXML(xml)
    g.start()
    again = take(conf, g, incremental=True)
    assert again.incremental_of == first.image_id, again.incremental_reason
    whole_disk(again, g)
    only_bitmap(g, again)
