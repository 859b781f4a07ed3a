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

"""What the directory store holds, as list, show, delete and restore see
it: chains, groups, dependents, and the new domain's XML.
"""

import json
import os
import xml.etree.ElementTree as ET

import pytest

from nova_snapshot_ext import catalog
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import definition
from nova_snapshot_ext.stores import file as file_store

IDS = ['%08d-0000-4000-8000-000000000000' % n for n in range(6)]


def image(directory, n, parent=None, name=None, **extra):
    path = os.path.join(directory, IDS[n])
    os.makedirs(path)
    doc = dict(id=IDS[n], name=name or 'img-%d' % n, format='qcow2',
               created_at='2026-01-01T00:00:0%d+00:00' % n,
               source_domain='web1', incremental_of=parent, **extra)
    with open(os.path.join(path, 'metadata.json'), 'w') as f:
        json.dump(doc, f)
    open(os.path.join(path, 'image.qcow2'), 'w').close()


@pytest.fixture
def store(conf, tmp_path):
    directory = str(tmp_path / 'images')
    os.makedirs(directory)
    # A chain 0 <- 1 <- 2, 3 on 1 (a second branch), 4 alone, 5 in a group.
    image(directory, 0)
    image(directory, 1, IDS[0])
    image(directory, 2, IDS[1], name='same')
    image(directory, 3, IDS[1], name='same')
    image(directory, 4)
    image(directory, 5, snapshot_group='g', source_disk='vdb',
          snapshot_disks='vda,vdb')
    return file_store.FileStore(conf, 'file://' + directory)


def test_chain_and_dependents(store):
    cat = catalog.Catalog(store)
    doc = cat.find(IDS[2])
    assert [d['id'] for d in cat.chain(doc)] == IDS[2::-1]
    base = cat.find(IDS[0])
    assert [d['id'] for d in cat.dependents(base)] == [
        IDS[3], IDS[2], IDS[1]]
    shown = catalog.show(store, os.path.join(
        store.directory, IDS[1], 'image.qcow2'))
    assert shown['chain'] == [IDS[1], IDS[0]]
    assert shown['dependents'] == [IDS[3], IDS[2]]
    assert shown['domain_xml'] is False


def test_a_name_shared_by_two_images_names_neither(store):
    with pytest.raises(exception.InvalidInput, match='2 images'):
        catalog.Catalog(store).find('same')
    assert catalog.Catalog(store).find('img-4')['id'] == IDS[4]
    with pytest.raises(exception.ImageNotFound):
        catalog.Catalog(store).find('nothing')


def test_delete_refuses_an_image_others_need(store):
    with pytest.raises(exception.ImageHasDependents) as e:
        catalog.delete(store, IDS[1])
    assert IDS[2] in str(e.value) and IDS[3] in str(e.value)
    assert len(store.list()) == 6
    assert catalog.delete(store, IDS[1], with_dependents=True) == [
        IDS[3], IDS[2], IDS[1]]
    assert sorted(d['id'] for d in store.list()) == [IDS[0], IDS[4],
                                                     IDS[5]]


def test_a_delete_that_fails_stops_before_the_base(store, monkeypatch):
    monkeypatch.setattr(store, 'delete', lambda image_id: None)
    with pytest.raises(exception.ImageDeleteFailed, match=IDS[3]):
        catalog.delete(store, IDS[1], with_dependents=True)
    assert len(store.list()) == 6


def test_list_of_a_group_member(store):
    [listed] = [i for i in catalog.list_images(store) if i['id'] == IDS[5]]
    assert (listed['group'], listed['disk']) == ('g', 'vdb')
    assert [i['id'] for i in catalog.list_images(store, 'web1')] == IDS


XML = '''<domain type="qemu">
  <name>web1</name><uuid>6f1b2c3d-0000-4000-8000-000000000001</uuid>
  <title>web one</title>
  <os><type>hvm</type><nvram>/var/lib/libvirt/qemu/nvram/web1.fd</nvram></os>
  <devices>
    <disk type="network" device="disk"><driver name="qemu" type="raw"/>
      <source protocol="rbd" name="vms/web1_disk"/><auth username="c"/>
      <target dev="vda" bus="virtio"/></disk>
    <disk type="file" device="disk"><driver name="qemu" type="qcow2"/>
      <source file="/srv/web1-data.qcow2"/><target dev="vdb"/></disk>
    <disk type="file" device="cdrom"><source file="/srv/seed.iso"/>
      <target dev="hdc"/><readonly/></disk>
    <interface type="network"><mac address="52:54:00:aa:bb:cc"/>
      <source network="default"/></interface>
    <serial type="file"><source path="/srv/web1/serial.log"/></serial>
    <channel type="unix"><source mode="bind" path="/run/web1.agent"/>
      <target type="virtio" name="org.qemu.guest_agent.0"/></channel>
  </devices>
</domain>'''


def test_the_new_domain_clashes_with_nothing_of_the_old():
    xml, notes = definition.rewrite(
        XML, 'web1-copy', 'new-uuid',
        [definition.NewDisk('vda', '/restore/web1-copy-vda.raw', 'raw')],
        '/restore')
    root = ET.fromstring(xml)
    assert root.findtext('name') == 'web1-copy'
    assert root.findtext('uuid') == 'new-uuid'
    assert root.find('title') is None
    [vda, cdrom] = root.findall('./devices/disk')
    assert vda.get('type') == 'file'
    assert vda.find('source').attrib == {
        'file': '/restore/web1-copy-vda.raw'}
    assert vda.find('auth') is None
    assert vda.find('driver').get('type') == 'raw'
    assert cdrom.get('device') == 'cdrom'
    assert root.find('./devices/interface/mac') is None
    assert root.find('./devices/interface/source').get('network') == \
        'default'
    assert root.find('./devices/serial/source').get('path') == \
        '/restore/web1-copy-serial.log'
    assert 'path' not in root.find('./devices/channel/source').attrib
    assert root.find('./os/nvram') is None
    assert notes == [
        'disk vdb was not in the snapshot: left out',
        'the UEFI variables (nvram) were not in the snapshot: the new '
        'domain starts from the template']


def test_gc_deletes_expired_images_unless_a_live_one_needs_them(store):
    past, future = '2000-01-01T00:00:00+00:00', catalog.expiry(3600)
    for n, when in ((0, past), (1, past), (2, past), (3, future),
                    (4, past)):
        path = os.path.join(store.directory, IDS[n], 'metadata.json')
        with open(path) as f:
            doc = json.load(f)
        doc['expires_at'] = when
        with open(path, 'w') as f:
            json.dump(doc, f)
    actions = catalog.collect_expired(None, store, 0)
    verbs = {a.target.split()[1]: a.verb for a in actions}
    # 2 and 4 go; 1 and 0 stay for 3, which has not expired.
    assert verbs == {IDS[4]: 'delete', IDS[2]: 'delete', IDS[1]: 'keep',
                     IDS[0]: 'keep'}
    assert IDS[3] in [a for a in actions if a.verb == 'keep'][0].detail
    for a in actions:
        if a.run:
            a.run()
    assert sorted(d['id'] for d in store.list()) == [IDS[0], IDS[1], IDS[3],
                                                     IDS[5]]


def test_max_per_guest_counts_a_group_once(conf, store):
    for n in range(6):
        path = os.path.join(store.directory, IDS[n], 'metadata.json')
        with open(path) as f:
            doc = json.load(f)
        doc['source_uuid'] = 'u1' if n < 3 else 'u2'
        doc['snapshot_group'] = 'g' if n >= 4 else None
        with open(path, 'w') as f:
            json.dump(doc, f)
    conf.set_override('max_per_guest', 3, group='snapshot')
    catalog.check_room(conf, store, 'u2', 'web2')     # 3, then 4+5 once
    with pytest.raises(exception.TooManyImages, match='web1 has 3 '):
        catalog.check_room(conf, store, 'u1', 'web1')
    catalog.check_room(conf, store, 'u1', 'web1', keep=2)
    conf.set_override('max_per_guest', 0, group='snapshot')
    catalog.check_room(conf, store, 'u1', 'web1')


def test_an_unreadable_path_does_not_stop_finding_an_undo(monkeypatch):
    # NOTE: stevedore's cache stats every sys.path entry; a service user
    # may not read one of root's.
    from nova_snapshot_ext.journal import undo
    from nova_snapshot_ext import plugins

    def refuse(*args, **kwargs):
        raise PermissionError(13, 'Permission denied', 'lib/python311.zip')

    monkeypatch.setattr(plugins.driver, 'DriverManager', refuse)
    undo.handler.cache_clear()
    try:
        assert undo.handler('restore_disk').__name__ == 'undo_restore_disk'
    finally:
        undo.handler.cache_clear()
