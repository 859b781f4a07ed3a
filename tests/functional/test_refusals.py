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
"""

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET

import pytest

from tests.functional import guest as guest_mod


@pytest.fixture
def shareable_guest(conn, workdir):
    """A defined (not started) guest whose disk another guest may write."""
    g = guest_mod.TestGuest(conn, workdir, 'share-%s' % uuid.uuid4().hex[:6],
                            fmt='raw', data_mb=8)
    dom = ET.fromstring(g.inactive_xml())
    ET.SubElement(dom.find('./devices/disk'), 'shareable')
    g.dom = conn.defineXML(ET.tostring(dom, encoding='unicode'))
    yield g
    g.remove()


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
def test_a_shareable_disk_is_refused(shareable_guest, workdir, method):
    before = shareable_guest.inactive_xml()
    done = _cli(workdir, 'snapshot', shareable_guest.name, '--name', 'x',
                '--method', method)
    assert done.returncode == 1
    assert done.stderr.count('\n') == 1, done.stderr
    assert 'its disk vda is shareable' in done.stderr
    assert shareable_guest.inactive_xml() == before
    images = os.path.join(workdir, 'state', 'images')
    assert not os.path.isdir(images) or os.listdir(images) == []
    temp = os.path.join(workdir, 'state', 'tmp')
    assert not os.path.isdir(temp) or os.listdir(temp) == []


def test_check_says_why_a_shareable_disk_is_refused(shareable_guest,
                                                    workdir):
    done = _cli(workdir, '--json', 'check', shareable_guest.name)
    assert done.returncode == 0, done.stderr
    (entry,) = json.loads(done.stdout)['guests']
    assert 'its disk vda is shareable' in entry['error']
