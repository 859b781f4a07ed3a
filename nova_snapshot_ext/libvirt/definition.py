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

"""A new domain's XML from the one a snapshot recorded (``restore``).

The new domain must not clash with the guest it was taken from, which
may still run beside it: it gets its own name and UUID, its network
interfaces lose their MAC addresses (libvirt makes new ones), its disks
point at the restored files (standalone, in the format each names), and
what the old domain wrote by path (a serial or console log, a unix
socket of a channel) moves to the new domain's own path or is left for
libvirt to choose. Disk devices not restored are left out; CD-ROMs and
floppies stay. What changed beyond that is said in the notes.
"""

import dataclasses
import os
import xml.etree.ElementTree as ET


@dataclasses.dataclass(frozen=True)
class NewDisk:
    """A restored disk: its target in the domain, file and format."""

    target: str
    path: str
    format: str


def rewrite(xml: str, name: str, uuid: str, disks: list[NewDisk],
            files_dir: str, same_guest: bool = False
            ) -> tuple[str, list[str]]:
    """The XML of the new domain, and notes on what else changed.

    :param files_dir: where the new domain's own files go (logs written
        by path).
    :param same_guest: the domain resumes the old one's memory, which
        knows its MAC addresses and disk serial numbers: they are kept
        (its UUID is the caller's to keep).
    """
    root = ET.fromstring(xml)
    notes: list[str] = []
    _set(root, 'name', name)
    _set(root, 'uuid', uuid)
    for tag in ('title', 'description', 'metadata'):
        for el in root.findall(tag):
            root.remove(el)
    devices = root.find('devices')
    if devices is None:
        devices = ET.SubElement(root, 'devices')
    _disks(devices, {d.target: d for d in disks}, notes, same_guest)
    for iface in devices.findall('interface'):
        for mac in iface.findall('mac') if not same_guest else []:
            iface.remove(mac)
    for chardev in list(devices):
        _chardev(chardev, name, files_dir)
    os_el = root.find('os')
    nvram = os_el.find('nvram') if os_el is not None else None
    if os_el is not None and nvram is not None:
        os_el.remove(nvram)
        notes.append('the UEFI variables (nvram) were not in the snapshot: '
                     'the new domain starts from the template')
    return ET.tostring(root, encoding='unicode'), notes


def _set(root: ET.Element, tag: str, text: str) -> None:
    el = root.find(tag)
    if el is None:
        el = ET.SubElement(root, tag)
    el.text = text


def _disks(devices: ET.Element, new: dict[str, NewDisk],
           notes: list[str], same_guest: bool) -> None:
    for disk in devices.findall('disk'):
        target = disk.find('target')
        dev = target.get('dev', '') if target is not None else ''
        if dev not in new:
            if disk.get('device', 'disk') in ('disk', 'lun'):
                devices.remove(disk)
                notes.append('disk %s was not in the snapshot: left out' %
                             dev)
            continue
        disk.set('type', 'file')
        if disk.get('device') == 'lun':
            disk.set('device', 'disk')
        kept = ('serial', 'wwn') if same_guest else ()
        for tag in ('source', 'backingStore', 'auth', 'encryption',
                    'shareable', 'serial', 'wwn'):
            if tag in kept:
                continue
            for el in disk.findall(tag):
                disk.remove(el)
        driver = disk.find('driver')
        if driver is None:
            driver = ET.SubElement(disk, 'driver', name='qemu')
        driver.set('type', new[dev].format)
        source = ET.Element('source', file=new[dev].path)
        disk.insert(list(disk).index(driver) + 1, source)


def _chardev(dev: ET.Element, name: str, files_dir: str) -> None:
    """Serial ports, consoles and channels that the old domain had at a
    path: a log file moves to ``files_dir``; a unix socket's path is
    dropped, for libvirt to choose one.
    """
    if dev.tag not in ('serial', 'console', 'channel', 'parallel'):
        return
    for el in [dev] + dev.findall('log'):
        path = el.get('file')
        if el.tag == 'log' and path:
            el.set('file', _own(path, name, files_dir))
    source = dev.find('source')
    if source is None or not source.get('path'):
        return
    if dev.get('type') == 'file':
        source.set('path', _own(source.get('path', ''), name, files_dir))
    elif dev.get('type') == 'unix':
        del source.attrib['path']


def _own(path: str, name: str, files_dir: str) -> str:
    return os.path.join(files_dir, '%s-%s' % (name, os.path.basename(path)))
