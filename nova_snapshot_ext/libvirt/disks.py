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

"""A guest's disks, as its domain XML describes them."""

import dataclasses
import xml.etree.ElementTree as ET

from nova_snapshot_ext import exception


@dataclasses.dataclass(frozen=True)
class Disk:
    """One disk device of a guest."""

    target: str
    source_type: str
    path: str
    format: str
    protocol: str | None = None
    #: The encryption format (``luks``, ...) of an encrypted disk; None
    #: when the domain XML declares no encryption.
    encryption: str | None = None
    #: ``<shareable/>``: other guests may write the disk at any time.
    shareable: bool = False
    #: ``<readonly/>``: the guest cannot write the disk.
    readonly: bool = False


def _devices(xml: str, any_device: bool = False) -> list[ET.Element]:
    """The ``<disk>`` elements of disk devices (not CD-ROMs or floppies,
    unless ``any_device``), in the domain's order.
    """
    return [d for d in ET.fromstring(xml).findall('./devices/disk')
            if any_device or d.get('device', 'disk') in ('disk', 'lun')]


def targets_of(xml: str) -> list[str]:
    """The targets (``vda``, ...) of every disk device of domain ``xml``,
    whatever their kind.
    """
    targets = [d.find('target') for d in _devices(xml)]
    # NOTE: libvirt's schema requires the target's dev.
    return [t.get('dev', '') for t in targets if t is not None]


def disks_of(xml: str, guest: str) -> list[Disk]:
    """Every disk device of domain ``xml``, in its order.

    :raises UnsupportedDisk: one of them cannot be read.
    """
    return [_disk(d, guest) for d in _devices(xml)]


def root_disk(xml: str, guest: str, any_device: bool = False) -> Disk:
    """The first disk device of the domain (the one it boots from).

    Nova's libvirt driver takes the first ``<disk>`` of the domain as the
    root disk of a snapshot; Nova writes an instance's root disk first,
    so both take the same disk. A CD-ROM or floppy first (a plain libvirt
    guest's) is skipped here, unless ``any_device`` (the Nova driver's:
    Nova's ``find_disk`` takes the first ``<disk>`` of any kind). The
    result and the log name the disk taken.

    :raises UnsupportedDisk: no disk, or one we cannot read.
    """
    devices = _devices(xml, any_device)
    if not devices:
        raise exception.UnsupportedDisk(guest=guest,
                                        reason='the domain has no disk')
    return _disk(devices[0], guest)


def _disk(disk: ET.Element, guest: str) -> Disk:
    target = disk.find('target')
    driver = disk.find('driver')
    source = disk.find('source')
    fmt = driver.get('type') if driver is not None else None
    if target is None or source is None or not fmt:
        raise exception.UnsupportedDisk(
            guest=guest,
            reason='the disk XML lacks a target, source or driver type')
    if disk.get('device') == 'lun':
        # NOTE: a LUN is listed with the disks so that it is refused, not
        # silently left out.
        raise exception.UnsupportedDisk(
            guest=guest, reason='disk %s is a LUN passed through to the '
                                'guest, which only the guest can read '
                                'consistently' % target.get('dev'))
    kind = disk.get('type', 'file')
    if kind == 'file':
        path = source.get('file')
    elif kind == 'block':
        path = source.get('dev')
    elif kind == 'network':
        path = source.get('name')
    else:
        path = None
    if not path:
        raise exception.UnsupportedDisk(
            guest=guest, reason='disks of type %r are not supported' % kind)
    # NOTE: libvirt accepts <encryption> in <disk> (older) and in <source>
    # (since 6.4); either makes QEMU decrypt the disk.
    enc = disk.find('encryption')
    if enc is None:
        enc = source.find('encryption')
    return Disk(target=target.get('dev', ''), source_type=kind, path=path,
                format=fmt, protocol=source.get('protocol'),
                encryption=(enc.get('format') or 'unknown'
                            if enc is not None else None),
                shareable=disk.find('shareable') is not None,
                readonly=disk.find('readonly') is not None)
