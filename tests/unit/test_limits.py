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

"""Locks, the host-wide limit, cancellation, and inputs that can hurt."""

import datetime
import io
import logging
import os
import subprocess
import sys

import pytest

from nova_snapshot_ext.backends import rbd_gc
from nova_snapshot_ext.cmd import main as cli
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import cancel as cancel_mod
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext import retry
from nova_snapshot_ext import snapshot

HOLD = '''
import sys
from oslo_concurrency import lockutils
lock = lockutils.external_lock(sys.argv[1], lock_path=sys.argv[2])
lock.acquire()
print('held', flush=True)
sys.stdin.read()
'''


@pytest.fixture
def holder(conf):
    """``hold(name)``: another process holds lock ``name``."""
    procs = []

    def hold(name):
        p = subprocess.Popen([sys.executable, '-c', HOLD, name,
                              locks.lock_path(conf)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout.readline() == 'held\n'

    yield hold
    for p in procs:
        p.communicate('')


def test_lock_path_is_the_same_for_every_process_by_default(conf):
    assert nse_conf.default_of('snapshot', 'lock_path') == '$state_path/locks'
    assert conf.snapshot.lock_path == os.path.join(conf.state_path, 'locks')
    assert conf.snapshot.journal_directory == os.path.join(conf.state_path,
                                                           'snapshots')
    # The command line's locks were there before: an older release's
    # snapshot is still excluded.
    assert conf.snapshot.lock_path == conf.oslo_concurrency.lock_path


def test_guest_lock_held_elsewhere(conf, holder):
    holder(locks.guest_lock_name('u-1'))
    with pytest.raises(exception.SnapshotInProgress, match='guest g1'):
        with locks.guest_lock(conf, 'u-1', 'g1'):
            pass
    with locks.guest_lock(conf, 'u-2', 'g2'):
        pass


def test_a_snapshot_waits_for_a_slot_and_says_so(conf, holder, caplog,
                                                 monkeypatch):
    conf.set_override('max_concurrent', 1, group='snapshot')
    holder('snapshot-slot-0')
    waits = []

    def check():
        waits.append(1)
        if len(waits) == 3:
            raise exception.SnapshotCancelled(guest='g', reason='SIGINT')

    monkeypatch.setattr(retry, 'sleep', lambda s: None)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(exception.SnapshotCancelled):
            with locks.host_slot(conf, check):
                pytest.fail('no slot was free')
    assert len(waits) == 3
    assert caplog.messages == [
        'Waiting: 1 snapshots are running on this host ([snapshot] '
        'max_concurrent = 1)']


def test_a_free_slot_is_taken_and_released(conf):
    conf.set_override('max_concurrent', 2, group='snapshot')
    with locks.host_slot(conf):
        with locks.host_slot(conf):
            pass
    conf.set_override('max_concurrent', 0, group='snapshot')
    with locks.host_slot(conf):
        pass


def test_cancel_raises_once():
    c = cancel_mod.Cancel()
    c.guest = 'g'
    c.check()
    c.request('SIGTERM')
    c.request('SIGINT')
    with pytest.raises(exception.SnapshotCancelled, match='SIGTERM'):
        c.check()
    # The unwinding that follows is not cut short by another raise.
    c.check()
    assert c.raised


def test_deadline(monkeypatch):
    c = cancel_mod.Cancel(5, '--timeout')
    c.guest = 'g'
    c.check()
    c.deadline -= 6
    with pytest.raises(exception.SnapshotTimedOut,
                       match='did not finish within 5 s .--timeout.'):
        c.check()


@pytest.mark.parametrize('props,message', [
    ({'id': 'x'}, "property 'id' is set by the snapshot or by Glance"),
    ({'os_hash_value': 'x'}, "'os_hash_value' is set"),
    ({'Disk_Format': 'raw'}, "'Disk_Format' is set"),
    ({'visibility': 'public'}, "'visibility' is set"),
    ({'k': 'v' * 256}, "the value of property 'k' has 256 characters, at "
                       "most 255"),
    ({'k' * 256: 'v'}, 'has 256 characters'),
    ({' ': 'v'}, 'a property needs a name'),
])
def test_properties_that_would_overwrite_or_be_cut(props, message):
    with pytest.raises(exception.InvalidInput, match=message):
        snapshot.validate_properties(props)


def test_fine_properties():
    props = {'base_image_ref': 'b-1', 'k': 'v' * 255}
    assert snapshot.validate_properties(props) == props


def test_cli_refuses_a_core_property(capsys):
    out = io.StringIO()
    rc = cli.main(['snapshot', 'g', '--name', 'n', '--property', 'size=1',
                   '--config-file', os.devnull], out=out)
    err = capsys.readouterr().err
    assert rc == 1 and out.getvalue() == ''
    assert err == ("nova-snapshot-ext: error: Invalid input: property 'size' "
                   "is set by the snapshot or by Glance and cannot be "
                   "given\n")


@pytest.mark.parametrize('value', ['0', '-3', 'soon'])
def test_cli_timeout_must_be_positive(capsys, value):
    with pytest.raises(SystemExit) as e:
        cli.main(['snapshot', 'g', '--name', 'n', '--timeout', value,
                  '--config-file', os.devnull])
    assert e.value.code == 2
    assert capsys.readouterr().err.count('\n') == 1


class FakeDom:
    def __init__(self, xml):
        self._xml = xml

    def name(self):
        return 'g'

    def UUIDString(self):
        return GUEST_UUID

    def XMLDesc(self, flags):
        return self._xml


GUEST_UUID = '0b0b0b0b-1111-2222-3333-444444444444'
DISK = '''<domain><devices><disk type='file' device='disk'>
<driver name='qemu' type='qcow2'/><source file='/d.qcow2'>%s</source>
<target dev='vda'/>%s</disk></devices></domain>'''
LUKS = ("<encryption format='luks'><secret type='passphrase' "
        "uuid='5c5c5c5c-1111-2222-3333-444444444444'/></encryption>")


@pytest.mark.parametrize('in_source,in_disk', [(LUKS, ''), ('', LUKS)])
def test_encrypted_disks_are_refused(in_source, in_disk):
    g = guest_mod.Guest(FakeDom(DISK % (in_source, in_disk)))
    disk = g.root_disk()
    assert disk.encryption == 'luks'
    with pytest.raises(exception.UnsupportedDisk,
                       match='its disk vda is encrypted .luks.; snapshots '
                             'of encrypted disks are not supported'):
        refusals.check_disk('g', disk, 'qemu:///system')


def test_plain_disks_pass():
    disk = guest_mod.Guest(FakeDom(DISK % ('', ''))).root_disk()
    assert disk.encryption is None
    refusals.check_disk('g', disk, 'qemu:///system')


class Store:
    """Glance that shows no image: 404 for everything."""

    def __init__(self, sees_all, appears=False):
        self.sees_all = sees_all
        self.appears = appears
        self.asked = 0

    def sees_all_images(self):
        return self.sees_all

    def image_status(self, image_id):
        self.asked += 1
        return 'queued' if self.appears and self.asked > 1 else None


OLD = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
    hours=2)


@pytest.mark.parametrize('store,min_age,created,kept', [
    (Store(False), 0, OLD, 'not visible to these credentials'),
    (Store(True), 3600, datetime.datetime.now(datetime.timezone.utc),
     'not in Glance, but its snapshot may still be running'),
    (Store(True, appears=True), 0, OLD, 'appeared in Glance (queued)'),
    (Store(True), 0, OLD, None),
])
def test_gc_removes_a_clone_only_when_its_image_is_surely_gone(
        conf, store, min_age, created, kept):
    collector = rbd_gc.Collector(conf, driver=None, store=store,
                                 min_age=min_age)
    info = {'snaps': [], 'metadata': {}, 'parent': ('vms', 'd', 's'),
            'created': created}
    if kept is None:
        collector._remove = lambda *a: ['removed']
    actions = collector.clone('images', 'i-1', info, 'i-1')
    if kept is None:
        assert actions == ['removed']
        assert store.asked == 2, 'no second look'
    else:
        [action] = actions
        assert action.verb == rbd_gc.KEEP and kept in action.detail


def test_image_type_may_be_chosen():
    # Only a default: Nova's compute API passes a user's choice too.
    assert snapshot.validate_properties({'image_type': 'test'})
