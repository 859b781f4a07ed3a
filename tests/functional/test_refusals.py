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

"""Guests whose disks cannot give one point in time are refused with one
line, on a real libvirtd, and nothing is touched.

A ``<shareable/>`` disk is refused while another domain that has it
attached can write it, and taken when the others are paused or shut off.
The guest snapshotted is shut off (a cold copy of its disk, no boot); the
other one is booted once for the module.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from nova_snapshot_ext.journal import journal
from tests.functional import guest as guest_mod


def _share(conn, g):
    dom = ET.fromstring(g.inactive_xml())
    ET.SubElement(dom.find('./devices/disk'), 'shareable')
    g.dom = conn.defineXML(ET.tostring(dom, encoding='unicode'))


@pytest.fixture(scope='module')
def _shared_pair(conn, workroot):
    """A defined (not started) guest with a shareable raw disk, and a
    second guest with the same disk attached, shareable too.
    """
    tag = uuid.uuid4().hex[:6]
    path = os.path.join(workroot, 'share-%s' % tag)
    g = guest_mod.TestGuest(conn, path, 'share-%s' % tag, fmt='raw',
                            data_mb=8)
    _share(conn, g)
    other = guest_mod.TestGuest(conn, os.path.join(path, 'other'),
                                'share-%s-other' % tag, disks=g.disks)
    _share(conn, other)
    yield g, other
    other.remove()
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shareable_guest(_shared_pair):
    """The shut-off guest whose disk the other one writes, running."""
    g, other = _shared_pair
    if other.dom.isActive() and other.state() == libvirt.VIR_DOMAIN_PAUSED:
        other.dom.resume()
    elif not other.dom.isActive():
        other.start()
    return g


@pytest.fixture
def other_guest(_shared_pair):
    return _shared_pair[1]


def _cli(workdir, *args):
    conf = os.path.join(workdir, 'nse.conf')
    with open(conf, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % os.path.join(workdir,
                                                              'state'))
    return subprocess.run(
        [sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
         '--config-file', conf, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize('method', ['auto', 'cold', 'live'])
def test_a_shareable_disk_another_guest_writes_is_refused(
        shareable_guest, other_guest, workdir, method):
    before = shareable_guest.inactive_xml()
    other_before = other_guest.dom.XMLDesc(0)
    with open(shareable_guest.disks.path, 'rb') as f:
        data_before = f.read(8 << 20)
    done = _cli(workdir, 'snapshot', shareable_guest.name, '--name', 'x',
                '--method', method)
    assert done.returncode == 1
    assert done.stderr.count('\n') == 1, done.stderr
    assert 'its disk vda is shareable and %s (running) may write it' % (
        other_guest.name) in done.stderr
    assert 'pause (virsh suspend) or shut off %s until' % (
        other_guest.name) in done.stderr
    assert shareable_guest.inactive_xml() == before
    assert shareable_guest.state() == libvirt.VIR_DOMAIN_SHUTOFF
    assert other_guest.state() == libvirt.VIR_DOMAIN_RUNNING
    assert other_guest.dom.XMLDesc(0) == other_before
    with open(shareable_guest.disks.path, 'rb') as f:
        assert f.read(8 << 20) == data_before
    images = os.path.join(workdir, 'state', 'images')
    assert not os.path.isdir(images) or os.listdir(images) == []
    temp = os.path.join(workdir, 'state', 'tmp')
    assert not os.path.isdir(temp) or os.listdir(temp) == []


def test_check_says_why_a_shareable_disk_is_refused(shareable_guest,
                                                    workdir):
    done = _cli(workdir, '--json', 'check', shareable_guest.name)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)['guests']
    assert 'its disk vda is shareable and %s-other (running)' % (
        shareable_guest.name) in entry['error']


def _snapshot_is_right(g, workdir):
    done = _cli(workdir, 'snapshot', g.name, '--name', 'x', '--json')
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result['method'] == 'cold'
    check = guest_mod.check_image(result['image'], result['format'],
                                  g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters
    assert g.state() == libvirt.VIR_DOMAIN_SHUTOFF
    return check


def test_a_shareable_disk_is_taken_while_the_other_guest_is_paused(
        shareable_guest, other_guest, workdir):
    other_guest.dom.suspend()
    last = other_guest.last_counter()
    check = _snapshot_is_right(shareable_guest, workdir)
    # NOTE: the other guest prints every 500th counter; its disk is ahead.
    assert check.last >= last > 0
    assert other_guest.state() == libvirt.VIR_DOMAIN_PAUSED
    temp = os.path.join(workdir, 'state', 'tmp')
    assert not os.path.isdir(temp) or os.listdir(temp) == []


def test_a_writer_resumed_before_the_point_in_time_is_caught(
        shareable_guest, other_guest, workdir):
    """Paused at the first check, resumed before the copy (the command
    stopped by its test hook once its partial image exists): refused at
    the point in time, and what it made is undone.
    """
    other_guest.dom.suspend()
    conf = os.path.join(workdir, 'nse.conf')
    with open(conf, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % os.path.join(workdir,
                                                              'state'))
    proc = subprocess.Popen(
        [sys.executable, '-X', journal.TEST_HOOKS, '-m',
         'nova_snapshot_ext.cmd.main', '--config-file', conf, 'snapshot',
         shareable_guest.name, '--name', 'x'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **{journal.TEST_STOP_AFTER:
                                journal.STORE_PARTIAL}))
    guest_mod.wait_stopped(proc)
    images = os.path.join(workdir, 'state', 'images')
    assert any(n.endswith('.partial') for n in os.listdir(images))
    other_guest.dom.resume()
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert err.count('\n') == 1, err
    assert 'its disk vda is shareable and %s (running) may write it' % (
        other_guest.name) in err
    assert os.listdir(images) == []
    temp = os.path.join(workdir, 'state', 'tmp')
    assert not os.path.isdir(temp) or os.listdir(temp) == []
    assert shareable_guest.state() == libvirt.VIR_DOMAIN_SHUTOFF


def test_a_shareable_disk_is_taken_when_the_other_guest_is_shut_off(
        shareable_guest, other_guest, workdir):
    other_guest.dom.destroy()
    _snapshot_is_right(shareable_guest, workdir)
    assert not other_guest.dom.isActive()
