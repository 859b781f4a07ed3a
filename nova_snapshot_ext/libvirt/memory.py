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

"""A guest's memory and disks at one point in time, the guest running on
(mixed into its class).

libvirt's external snapshot with a live memory save
(``virDomainSnapshotCreateXML`` with ``LIVE``, ``ATOMIC`` and
``NO_METADATA``): QEMU saves the guest's memory while the guest runs, as a
live migration into a file would, then pauses it for the last dirty pages
and for the switch of each disk to a new overlay file, and resumes it.
From then on each disk's own file holds the point in time and takes no
more writes; the overlays take them. An active commit with ``SHALLOW``
(into the overlay's immediate backing file, the disk's own file, never
deeper into a backing chain of the disk) and a pivot put the guest back
on its own files, as they were plus what it wrote meanwhile.

The memory file is libvirt's save image: ``virDomainRestoreFlags``
resumes it, on disks that hold the same point in time.
"""

from typing import Any
import xml.etree.ElementTree as ET

import libvirt

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks
from nova_snapshot_ext.libvirt import domain
from nova_snapshot_ext.libvirt.domain import DONE
from nova_snapshot_ext.libvirt.domain import REPEAT
from nova_snapshot_ext import retry

_CREATE = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_LIVE |
           libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC |
           libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
_COMMIT = (libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE |
           libvirt.VIR_DOMAIN_BLOCK_COMMIT_SHALLOW)


def snapshot_xml(memory: str, overlays: dict[str, str],
                 all_disks: list[str]) -> str:
    """The ``<domainsnapshot>``: memory into ``memory``, each disk of
    ``overlays`` (target -> overlay file) onto its overlay, the other
    disks of ``all_disks`` left out explicitly.
    """
    root = ET.Element('domainsnapshot')
    ET.SubElement(root, 'memory', snapshot='external', file=memory)
    listed = ET.SubElement(root, 'disks')
    for target in all_disks:
        if target in overlays:
            disk = ET.SubElement(listed, 'disk', name=target,
                                 snapshot='external', type='file')
            ET.SubElement(disk, 'driver', type='qcow2')
            ET.SubElement(disk, 'source', file=overlays[target])
        else:
            ET.SubElement(listed, 'disk', name=target, snapshot='no')
    return ET.tostring(root, encoding='unicode')


def top_file(xml: str, target: str) -> str | None:
    """The file disk ``target`` of domain ``xml`` writes to; None when
    it has no such disk or it is not a file.
    """
    for disk in ET.fromstring(xml).findall('./devices/disk'):
        dev = disk.find('target')
        source = disk.find('source')
        if dev is not None and dev.get('dev') == target and \
                source is not None:
            return source.get('file')
    return None


def pointed_back(xml: str, target: str, path: str, fmt: str) -> str:
    """Domain ``xml`` with disk ``target`` on file ``path`` of format
    ``fmt`` again (its overlay's backing chain forgotten).
    """
    root = ET.fromstring(xml)
    for disk in root.findall('./devices/disk'):
        dev = disk.find('target')
        if dev is None or dev.get('dev') != target:
            continue
        for tag, attr, value in (('source', 'file', path),
                                 ('driver', 'type', fmt)):
            el = disk.find(tag)
            if el is not None:
                el.set(attr, value)
        for chain in disk.findall('backingStore'):
            disk.remove(chain)
    return ET.tostring(root, encoding='unicode')


def resume(host: Any, name: str, memory: str,
           xml: str | None = None) -> None:
    """Start domain ``name`` from ``memory`` (a save image), on disks at
    its point in time, with ``xml`` instead of the saved XML if given;
    ``host`` is a ``nova_snapshot_ext.libvirt.host.Host``.
    """
    domain.translated(name, 'resume', lambda: host.call(
        lambda conn: conn.restoreFlags(memory, xml, 0)))


class MemoryCalls(domain.Domain):
    """The calls of a snapshot with memory."""

    def snapshot_with_memory(self, memory: str,
                             overlays: dict[str, str]) -> float:
        """Save the memory into ``memory`` and move each disk of
        ``overlays`` onto its overlay, at one point in time; the seconds
        QEMU reports the guest stopped for the memory's last pages.

        :raises SnapshotError: nothing was made (libvirt undoes an atomic
            snapshot that fails).
        """
        xml = snapshot_xml(memory, overlays, disks.targets_of(
            self.xml()))  # type: ignore[attr-defined]

        def again() -> str:
            return DONE if all(self.writes_to(t) == o
                               for t, o in overlays.items()) else REPEAT

        self._call('snapshot with memory', 'snapshotCreateXML', xml,
                   _CREATE, again=again)
        try:
            stats = self._call('read the last job of', 'jobStats',
                               libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        except exception.SnapshotError:
            return 0.0
        return float((stats or {}).get('downtime', 0)) / 1000

    def writes_to(self, target: str) -> str | None:
        """The file disk ``target`` of the running domain writes to."""
        return top_file(self.xml(), target)  # type: ignore[attr-defined]

    def commit_overlay(self, target: str, timeout: float,
                       interval: float) -> None:
        """Commit disk ``target``'s active overlay into its immediate
        backing file and pivot to it; a commit already running is
        finished.

        :raises BlockJobFailed: it did not complete within ``timeout``.
        """
        if not self.block_job(target):  # type: ignore[attr-defined]
            self._call('commit the overlay of', 'blockCommit', target, None,
                       None, 0, _COMMIT, again=lambda: REPEAT if not
                       self.block_job(target)  # type: ignore[attr-defined]
                       else DONE)

        def ready() -> bool:
            job = self.block_job(target)  # type: ignore[attr-defined]
            if not job:
                raise exception.BlockJobFailed(
                    guest=self.name, disk=target,
                    reason='the commit of its overlay ended unfinished')
            # NOTE: only a ready job pivots; cur == end comes first.
            return bool(job.get('end')) and job.get('cur') == job['end'] \
                and self._mirror_ready(target)  # type: ignore[attr-defined]

        if not retry.poll(ready, bool, timeout=timeout, interval=interval):
            raise exception.BlockJobFailed(
                guest=self.name, disk=target,
                reason='the commit of its overlay did not complete within '
                       '%d s ([snapshot] block_job_timeout)' % timeout)
        self._call('pivot', 'blockJobAbort', target,
                   libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT,
                   again=lambda: REPEAT if self.block_job(  # type: ignore
                       target) else DONE)
        retry.poll(lambda: not self.block_job(  # type: ignore[attr-defined]
            target), bool, timeout=timeout, interval=interval)
