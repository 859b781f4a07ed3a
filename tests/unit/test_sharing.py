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

"""Who else may write a shareable disk: sources matched across domains."""

import os
import stat
import types

import pytest

from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext.libvirt import sharing


def _disk(kind, path, protocol=None, readonly=False, shareable=True,
          target='vda'):
    return disks.Disk(target=target, source_type=kind, path=path,
                      format='raw', protocol=protocol, readonly=readonly,
                      shareable=shareable)


def _same(a, b):
    return sharing.identity(a) == sharing.identity(b)


def test_a_file_is_the_same_through_a_symlink_or_a_hard_link(tmp_path):
    real = tmp_path / 'disk.raw'
    real.write_bytes(b'x')
    (tmp_path / 'link').symlink_to(real)
    os.link(real, tmp_path / 'hard')
    other = tmp_path / 'other.raw'
    other.write_bytes(b'x')
    for name in ('link', 'hard'):
        assert _same(_disk('file', str(real)),
                     _disk('file', str(tmp_path / name)))
    assert _same(_disk('file', str(real)),
                 _disk('file', str(tmp_path / '.' / 'disk.raw')))
    assert not _same(_disk('file', str(real)), _disk('file', str(other)))


def test_a_missing_file_is_known_by_its_resolved_path(tmp_path):
    (tmp_path / 'link').symlink_to(tmp_path / 'gone')
    assert _same(_disk('file', str(tmp_path / 'gone')),
                 _disk('file', str(tmp_path / 'link')))
    assert not _same(_disk('file', str(tmp_path / 'gone')),
                     _disk('file', str(tmp_path / 'gone2')))


def _fake_stat(devices):
    def fake(path):
        if path not in devices:
            raise FileNotFoundError(path)
        return types.SimpleNamespace(st_mode=stat.S_IFBLK | 0o660,
                                     st_rdev=devices[path], st_dev=5,
                                     st_ino=hash(path))
    return fake


def test_block_devices_are_the_same_by_device_number(monkeypatch):
    monkeypatch.setattr(os, 'stat', _fake_stat({
        '/dev/sdb': 0x810, '/dev/disk/by-id/wwn-1': 0x810,
        '/dev/sdc': 0x820}))
    assert _same(_disk('block', '/dev/sdb'),
                 _disk('block', '/dev/disk/by-id/wwn-1'))
    # NOTE: libvirt lets a type='file' disk name a block device.
    assert _same(_disk('block', '/dev/sdb'), _disk('file', '/dev/sdb'))
    assert not _same(_disk('block', '/dev/sdb'), _disk('block', '/dev/sdc'))


def test_network_disks_are_the_same_by_protocol_and_name():
    rbd = _disk('network', 'vms/abc_disk', 'rbd')
    assert _same(rbd, _disk('network', 'vms/abc_disk', 'rbd'))
    assert not _same(rbd, _disk('network', 'vms/abc_disk.local', 'rbd'))
    assert not _same(rbd, _disk('network', 'images/abc_disk', 'rbd'))
    assert not _same(rbd, _disk('network', 'vms/abc_disk', 'nbd'))
    assert not _same(rbd, _disk('file', 'vms/abc_disk'))


XML = '''<domain><devices>
<disk type='file' device='disk'><driver type='raw'/>
 <source file='/v/a.raw'/><target dev='vda'/><shareable/></disk>
<disk type='block' device='lun'><driver type='raw'/>
 <source dev='/dev/sdz'/><target dev='sda'/></disk>
<disk type='network' device='disk'><driver type='raw'/>
 <source protocol='rbd' name='vms/x'><host name='m'/></source>
 <target dev='vdb'/><readonly/></disk>
<disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>
</devices></domain>'''


def test_attached_lists_every_disk_with_a_source():
    found = sharing.attached(XML)
    assert [(d.target, d.source_type, d.path, d.protocol, d.readonly,
             d.shareable) for d in found] == [
        ('vda', 'file', '/v/a.raw', None, False, True),
        ('sda', 'block', '/dev/sdz', None, False, False),
        ('vdb', 'network', 'vms/x', 'rbd', True, False)]


class FakeGuest:

    def __init__(self, name, state, xml='', uuid=None):
        self.name, self.uuid = name, uuid or name
        self._state, self._xml = state, xml

    def power_state(self):
        if self._state == 'gone':
            raise exception.GuestGone(guest=self.name, reason='gone')
        return self._state

    def xml(self):
        return self._xml


def _xml_with(source, readonly=False):
    return ('<domain><devices><disk type="file"><source file="%s"/>'
            '<target dev="vdz"/>%s</disk></devices></domain>' % (
                source, '<readonly/>' if readonly else ''))


def test_other_writers_are_the_others_that_can_write_now(tmp_path):
    path = str(tmp_path / 'shared.raw')
    open(path, 'w').close()
    elsewhere = str(tmp_path / 'elsewhere.raw')
    open(elsewhere, 'w').close()
    host = types.SimpleNamespace(list_guests=lambda: [
        FakeGuest('me', 'running', _xml_with(path)),
        FakeGuest('writer', 'running', _xml_with(path)),
        FakeGuest('paused', 'paused', _xml_with(path)),
        FakeGuest('off', 'shutoff', _xml_with(path)),
        FakeGuest('reader', 'running', _xml_with(path, readonly=True)),
        FakeGuest('unrelated', 'running', _xml_with(elsewhere)),
        FakeGuest('crashed', 'crashed', _xml_with(path)),
        FakeGuest('vanished', 'gone', _xml_with(path)),
    ])
    assert sharing.other_writers(host, 'me', _disk('file', path)) == [
        ('writer', 'running'), ('crashed', 'crashed')]


def test_a_shareable_disk_nobody_else_writes_is_taken():
    refusals.check_disk('web1', _disk('file', '/v/a.raw'), 'qemu:///system',
                        writers=lambda d: [])


def test_the_refusal_names_every_writer_on_one_line():
    with pytest.raises(exception.UnsupportedDisk) as e:
        refusals.check_disk(
            'web1', _disk('file', '/v/a.raw'), 'qemu:///system',
            writers=lambda d: [('db1', 'running'), ('db2', 'crashed')])
    text = str(e.value)
    assert '\n' not in text
    assert ('its disk vda is shareable and db1 (running), db2 (crashed) '
            'may write it') in text
    assert 'pause (virsh suspend) or shut off db1, db2 until' in text


def _job(disk, writers, all_disks=False, more=()):
    """A job of ``disk`` (and ``more`` disks) whose every disk the guests
    named ``writers`` have attached, running.
    """
    listed = []

    def list_guests():
        listed.append(True)
        return [FakeGuest(n, 'running', _xml_with(d.path))
                for n in writers for d in (disk, *more)]

    guest = types.SimpleNamespace(name='web1', uuid='u-1',
                                  disks=lambda: [disk, *more])
    job = types.SimpleNamespace(
        guest=guest, disk=disk, host=types.SimpleNamespace(
            list_guests=list_guests),
        request=types.SimpleNamespace(all_disks=all_disks))
    return job, listed


def test_the_point_in_time_checks_again(tmp_path):
    path = str(tmp_path / 'shared.raw')
    open(path, 'w').close()
    job, _ = _job(_disk('file', path), ['db1'])
    with pytest.raises(exception.UnsupportedDisk, match='db1 .running.'):
        steps.recheck_shared(job)
    job, _ = _job(_disk('file', path), [])
    steps.recheck_shared(job)


def test_the_check_again_looks_only_at_shareable_disks(tmp_path):
    path = str(tmp_path / 'disk.raw')
    open(path, 'w').close()
    job, listed = _job(_disk('file', path, shareable=False), ['db1'])
    steps.recheck_shared(job)
    assert listed == []
    # NOTE: --all-disks: every disk of the guest, not just the root.
    shared = _disk('file', path, target='vdb')
    job, listed = _job(_disk('file', str(tmp_path / 'root'),
                             shareable=False), ['db1'], all_disks=True,
                       more=[shared])
    with pytest.raises(exception.UnsupportedDisk, match='disk vdb'):
        steps.recheck_shared(job)
