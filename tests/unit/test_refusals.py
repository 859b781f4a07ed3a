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

"""Guests and disks refused before anything is touched."""

import os
import types

import pytest

from nova_snapshot_ext.backends import incremental
from nova_snapshot_ext.backends import qcow2 as qcow2_backend
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext.stores import file as file_store

XML = '''<domain><devices>%s</devices></domain>'''
FILE_DISK = '''<disk type='file' device='disk'><driver type='qcow2'/>
<source file='/var/lib/g/disk'/><target dev='vda'/>%s</disk>'''
LUN = '''<disk type='block' device='lun'><driver type='raw'/>
<source dev='/dev/sdz'/><target dev='sda'/></disk>'''
CDROM = '''<disk type='file' device='cdrom'><driver type='raw'/>
<source file='/x.iso'/><target dev='hdc'/></disk>'''


@pytest.mark.parametrize('state', ['crashed', 'shutting down',
                                   'suspended by the guest', 'unknown'])
def test_states_without_a_consistent_copy_are_refused(state):
    with pytest.raises(exception.GuestStateUnsafe) as e:
        refusals.check_state('web1', state)
    text = str(e.value)
    assert text.startswith('Cannot snapshot web1: it is %s' % state)
    assert '\n' not in text


@pytest.mark.parametrize('state', ['running', 'paused', 'shutoff'])
def test_usual_states_pass(state):
    refusals.check_state('web1', state)


def test_a_shareable_disk_is_refused():
    disk = disks.root_disk(XML % (FILE_DISK % '<shareable/>'), 'web1')
    assert disk.shareable
    with pytest.raises(exception.UnsupportedDisk, match='vda is shareable'):
        refusals.check_disk('web1', disk, 'qemu:///system')


def test_a_lun_is_refused_not_left_out():
    xml = XML % (FILE_DISK % '' + LUN)
    with pytest.raises(exception.UnsupportedDisk, match='sda is a LUN'):
        disks.disks_of(xml, 'web1')
    with pytest.raises(exception.UnsupportedDisk, match='sda is a LUN'):
        disks.root_disk(XML % (CDROM + LUN + FILE_DISK % ''), 'web1')


def test_a_readonly_disk_is_seen():
    disk = disks.root_disk(XML % (FILE_DISK % '<readonly/>'), 'web1')
    assert disk.readonly and not disk.shareable


@pytest.mark.parametrize('uri,remote', [
    ('qemu:///system', False), ('qemu:///session', False),
    ('qemu+ssh://root@compute2/system', True),
    ('qemu+tcp://10.0.0.5/system', True),
    ('qemu+ssh://localhost/system', False), ('test:///default', False),
])
def test_remote_uris(uri, remote):
    assert refusals.is_remote(uri) is remote


def test_a_local_disk_of_a_remote_guest_is_refused():
    disk = disks.root_disk(XML % (FILE_DISK % ''), 'web1')
    with pytest.raises(exception.UnsupportedDisk,
                       match='/var/lib/g/disk on the host of qemu\\+ssh'):
        refusals.check_disk('web1', disk, 'qemu+ssh://compute2/system')


def test_a_network_disk_of_a_remote_guest_passes():
    disk = disks.Disk(target='vda', source_type='network', path='vms/d',
                      format='raw', protocol='rbd')
    refusals.check_disk('web1', disk, 'qemu+ssh://compute2/system')


def _dm(sysfs, name, uuid, slaves=()):
    node = sysfs / 'devices' / 'virtual' / 'block' / name
    (node / 'dm').mkdir(parents=True)
    (node / 'dm' / 'uuid').write_text(uuid + '\n')
    (node / 'slaves').mkdir()
    for slave in slaves:
        os.symlink(sysfs / 'devices' / 'virtual' / 'block' / slave,
                   node / 'slaves' / slave)
    return node


def _fake_block_device(monkeypatch, sysfs, node, major=253, minor=3):
    (sysfs / 'dev' / 'block').mkdir(parents=True, exist_ok=True)
    os.symlink(node, sysfs / 'dev' / 'block' / ('%d:%d' % (major, minor)))
    real_stat = os.stat

    class Blk:
        st_mode = 0o60660
        st_rdev = os.makedev(major, minor)

    monkeypatch.setattr(refusals.os, 'stat',
                        lambda p: Blk() if p == '/dev/vg/lv' else
                        real_stat(p))


# NOTE: this host's kernel has no device-mapper, so a real dm-crypt device
# cannot be made here; sysfs is laid out as the kernel lays it out.
def test_lvm_on_luks_is_found_below(tmp_path, monkeypatch):
    _dm(tmp_path, 'dm-1', 'CRYPT-LUKS2-0123abcd-luks-sdb')
    lv = _dm(tmp_path, 'dm-3', 'LVM-xyz', slaves=['dm-1'])
    _fake_block_device(monkeypatch, tmp_path, lv)
    assert refusals.host_encryption('/dev/vg/lv', str(tmp_path)) == (
        'dm-1 (CRYPT-LUKS2-0123abcd-luks-sdb)')
    disk = disks.Disk(target='vdb', source_type='block', path='/dev/vg/lv',
                      format='raw')
    with pytest.raises(exception.UnsupportedDisk,
                       match='decrypted by this host .dm-1'):
        refusals.check_disk('web1', disk, 'qemu:///system', str(tmp_path))


def test_plain_lvm_passes(tmp_path, monkeypatch):
    lv = _dm(tmp_path, 'dm-3', 'LVM-xyz')
    _fake_block_device(monkeypatch, tmp_path, lv)
    assert refusals.host_encryption('/dev/vg/lv', str(tmp_path)) is None


def test_files_and_missing_paths_have_no_host_encryption(tmp_path):
    f = tmp_path / 'disk'
    f.write_bytes(b'')
    assert refusals.host_encryption(str(f)) is None
    assert refusals.host_encryption(str(tmp_path / 'none')) is None


def test_incremental_refuses_a_readonly_disk(conf, tmp_path):
    disk = disks.root_disk(XML % (FILE_DISK % '<readonly/>'), 'web1')
    job = types.SimpleNamespace(
        store=file_store.FileStore(conf, 'file://%s' % tmp_path),
        image_format='qcow2', disk=disk,
        guest=types.SimpleNamespace(name='web1'))
    backend = qcow2_backend.Qcow2Backend(conf)
    with pytest.raises(exception.InvalidInput,
                       match='disk vda of web1 is read-only'):
        incremental.check(backend, job)
    job.disk = disks.root_disk(XML % (FILE_DISK % ''), 'web1')
    incremental.check(backend, job)
