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

"""The XML of a snapshot with memory, and what puts a disk back."""

import xml.etree.ElementTree as ET

from nova_snapshot_ext.libvirt import definition
from nova_snapshot_ext.libvirt import memory

DOMAIN = """<domain type='qemu'><name>web1</name>
<uuid>7d3c5f8e-0000-4000-8000-000000000001</uuid><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='/vm/web1.qcow2.nse-overlay'/>
<backingStore type='file'><format type='qcow2'/>
<source file='/vm/web1.qcow2'/></backingStore>
<target dev='vda' bus='virtio'/><serial>abc</serial></disk>
<disk type='file' device='cdrom'><source file='/iso/x.iso'/>
<target dev='hdc' bus='ide'/></disk>
<interface type='network'><mac address='52:54:00:12:34:56'/>
<source network='default'/></interface>
</devices></domain>"""


def test_every_disk_is_named_and_only_the_chosen_ones_move():
    root = ET.fromstring(memory.snapshot_xml(
        '/store/.x.partial/memory.save', {'vda': '/vm/a.nse-overlay'},
        ['vda', 'vdb']))
    assert root.find('memory').attrib == {
        'snapshot': 'external', 'file': '/store/.x.partial/memory.save'}
    disks = {d.get('name'): d for d in root.findall('disks/disk')}
    assert disks['vda'].get('snapshot') == 'external'
    assert disks['vda'].find('source').get('file') == '/vm/a.nse-overlay'
    assert disks['vda'].find('driver').get('type') == 'qcow2'
    assert disks['vdb'].get('snapshot') == 'no'


def test_a_disk_on_its_overlay_is_pointed_back_at_its_own_file():
    assert memory.top_file(DOMAIN, 'vda') == '/vm/web1.qcow2.nse-overlay'
    back = memory.pointed_back(DOMAIN, 'vda', '/vm/web1.qcow2', 'raw')
    assert memory.top_file(back, 'vda') == '/vm/web1.qcow2'
    disk = ET.fromstring(back).find('devices/disk')
    assert disk.find('driver').get('type') == 'raw'
    assert disk.find('backingStore') is None
    assert memory.top_file(back, 'hdc') == '/iso/x.iso'
    assert memory.top_file(back, 'vdz') is None


def test_the_same_guest_keeps_what_its_memory_knows():
    new = [definition.NewDisk('vda', '/new/web1-vda.qcow2', 'qcow2')]
    same, _ = definition.rewrite(DOMAIN, 'web1', 'u', new, '/new',
                                 same_guest=True)
    other, _ = definition.rewrite(DOMAIN, 'web2', 'u', new, '/new')
    for xml, kept in ((same, True), (other, False)):
        root = ET.fromstring(xml)
        assert (root.find('devices/interface/mac') is not None) == kept
        assert (root.find('devices/disk/serial') is not None) == kept
        assert root.find('devices/disk/source').get('file') == \
            '/new/web1-vda.qcow2'
