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

"""Who else may write a ``<shareable/>`` disk.

The other domains of the same libvirt connection that have the same disk
source attached (the same file, the same block device, the same RBD
pool/image), and that can write it now: they run (or are in any state
but shut off and paused) and the disk is not ``<readonly/>`` in them.

Sources are the same when they are the same thing, not the same text: a
file or block device is known by what ``stat`` says (device and inode of
a file, device number of a block device), through symbolic links; a
network disk by its protocol and name (``pool/image`` for RBD), as libvirt
writes it. Guests of other libvirt connections, other hosts or other
Ceph clients are not seen.
"""

import os
import stat
from typing import Any
import xml.etree.ElementTree as ET

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks as disks_mod

#: States in which a domain does not write its disks.
QUIET_STATES = ('shutoff', 'paused')

_SOURCE_ATTRS = {'file': 'file', 'block': 'dev', 'network': 'name'}


def identity(disk: disks_mod.Disk) -> tuple:
    """What the disk's source is, comparable across domains."""
    if disk.source_type == 'network':
        return ('network', disk.protocol or '', disk.path.strip('/'))
    try:
        st = os.stat(disk.path)
    except OSError:
        return ('path', os.path.realpath(disk.path))
    if stat.S_ISBLK(st.st_mode):
        return ('blockdev', st.st_rdev)
    return ('inode', st.st_dev, st.st_ino)


def attached(xml: str) -> list[disks_mod.Disk]:
    """Every ``<disk>`` with a source in domain ``xml``, of any device
    kind (LUNs and CD-ROMs too), with its ``<readonly/>``.
    """
    found = []
    for el in ET.fromstring(xml).findall('./devices/disk'):
        kind = el.get('type', 'file')
        source = el.find('source')
        path = (source.get(_SOURCE_ATTRS[kind])
                if source is not None and kind in _SOURCE_ATTRS else None)
        if source is None or not path:
            continue
        target = el.find('target')
        found.append(disks_mod.Disk(
            target=target.get('dev', '') if target is not None else '',
            source_type=kind, path=path, format='',
            protocol=source.get('protocol'),
            shareable=el.find('shareable') is not None,
            readonly=el.find('readonly') is not None))
    return found


def other_writers(host: Any, uuid: str,
                  disk: disks_mod.Disk) -> list[tuple[str, str]]:
    """The domains of ``host`` (a
    :class:`~nova_snapshot_ext.libvirt.host.Host`) other than the one of
    UUID ``uuid`` that may write ``disk``'s source now, as
    ``(name, state)``.
    """
    mine = identity(disk)
    writers = []
    for other in host.list_guests():
        if other.uuid == uuid:
            continue
        try:
            state = other.power_state()
            if state in QUIET_STATES:
                continue
            theirs = attached(other.xml())
        except exception.GuestGone:
            continue
        if any(not d.readonly and identity(d) == mine for d in theirs):
            writers.append((other.name, state))
    return writers
