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

"""A guest's backup job (libvirt's backup API, pull mode).

``virDomainBackupBegin`` in pull mode makes QEMU export each chosen disk
*as it was when the job began* over NBD; the guest writes on, and QEMU
copies a block into the job's scratch file before the guest's first write
overwrites it (copy-before-write). The export is read once, by whoever
connects to its unix socket, and the job ends with ``abortJob``.

The calls reconnect as the guest's other calls do
(:mod:`nova_snapshot_ext.libvirt.domain`): a begin is made again only
when the domain has no backup job (one that serves our socket is the one
we began; another is refused), an end only while our job is there.
"""

import dataclasses
import xml.etree.ElementTree as ET

import libvirt

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks
from nova_snapshot_ext.libvirt import domain
from nova_snapshot_ext.libvirt.domain import DONE
from nova_snapshot_ext.libvirt.domain import REPEAT
from nova_snapshot_ext import retry
from nova_snapshot_ext.storage import nbd

#: libvirt's code for "there is no backup job" (missing from old bindings).
_NO_BACKUP = getattr(libvirt, 'VIR_ERR_NO_DOMAIN_BACKUP', 104)
_NO_CHECKPOINT = getattr(libvirt, 'VIR_ERR_NO_DOMAIN_CHECKPOINT', 103)


@dataclasses.dataclass(frozen=True)
class Export:
    """What a pull-mode backup job serves: the NBD unix socket, and one
    export (named after its disk) per disk, each with its scratch file.
    """

    socket: str
    #: Disk target (``vda``) -> scratch file.
    scratch: dict[str, str]
    #: Export only what changed since this checkpoint (in the dirty
    #: bitmap context :meth:`bitmap` of each disk's export).
    incremental: str | None = None
    #: Make this checkpoint as the job begins.
    checkpoint: str | None = None

    def xml(self, all_disks: list[str]) -> str:
        """The ``<domainbackup>`` document; ``all_disks`` are the targets
        of every disk of the guest: the others are left out explicitly.
        """
        root = ET.Element('domainbackup', mode='pull')
        if self.incremental:
            ET.SubElement(root, 'incremental').text = self.incremental
        ET.SubElement(root, 'server', transport='unix', socket=self.socket)
        disks = ET.SubElement(root, 'disks')
        for target in all_disks:
            if target in self.scratch:
                disk = ET.SubElement(disks, 'disk', name=target,
                                     backup='yes', type='file')
                ET.SubElement(disk, 'scratch', file=self.scratch[target])
            else:
                ET.SubElement(disks, 'disk', name=target, backup='no')
        return ET.tostring(root, encoding='unicode')

    def checkpoint_xml(self, all_disks: list[str]) -> str | None:
        """The ``<domaincheckpoint>`` document, if the job makes one: a
        dirty bitmap in each exported disk.
        """
        if not self.checkpoint:
            return None
        root = ET.Element('domaincheckpoint')
        ET.SubElement(root, 'name').text = self.checkpoint
        disks = ET.SubElement(root, 'disks')
        for target in all_disks:
            ET.SubElement(disks, 'disk', name=target,
                          checkpoint='bitmap' if target in self.scratch
                          else 'no')
        return ET.tostring(root, encoding='unicode')

    def uri(self, target: str) -> str:
        """The NBD URI of the export of disk ``target``."""
        return nbd.unix_uri(target, self.socket)

    @staticmethod
    def bitmap(target: str) -> str:
        """The NBD metadata context of the blocks of disk ``target`` that
        changed since :attr:`incremental` (libvirt's default name).
        """
        return 'qemu:dirty-bitmap:backup-%s' % target


class BackupCalls(domain.Domain):
    """The backup job calls of a guest (mixed into its class)."""

    def disk_targets(self) -> list[str]:
        """The targets of every disk (not CD-ROM or floppy) of the
        running domain.
        """
        return disks.targets_of(self.xml())  # type: ignore[attr-defined]

    def writes(self, dev: str) -> int:
        """The write requests the guest made to disk ``dev`` so far."""
        stats = self._call('read the I/O statistics of', 'blockStats', dev)
        return int(stats[2])

    def qemu_owner(self) -> tuple[int, int]:
        """The user and group the guest's QEMU runs as (its DAC label),
        which must be able to make the NBD socket; root when unlabelled.
        """
        root = ET.fromstring(self.xml())  # type: ignore[attr-defined]
        for label in root.findall("./seclabel[@model='dac']/label"):
            user, _, group = (label.text or '').partition(':')
            try:
                return int(user.lstrip('+')), int(group.lstrip('+'))
            except ValueError:
                break
        return 0, 0

    def backup_socket(self) -> str | None:
        """The socket of the domain's pull-mode backup job; None when
        it has no backup job, '' for one that serves no unix socket.
        """
        try:
            desc = self._call('read the backup job of', 'backupGetXMLDesc',
                              0)
        except exception.LibvirtFailed as e:
            if e.kwargs.get('code') == _NO_BACKUP:
                return None
            raise
        server = ET.fromstring(desc).find('server')
        if server is None:
            return ''
        return server.get('socket') or ''

    def backup_begin(self, export: Export) -> None:
        """Begin a pull-mode backup job serving ``export``.

        :raises BlockJobActive: the domain has another backup job.
        """
        targets = self.disk_targets()
        self._call('begin a backup job of', 'backupBegin',
                   export.xml(targets), export.checkpoint_xml(targets), 0,
                   again=lambda: self._begin_again(export))

    def _begin_again(self, export: Export) -> str:
        socket = self.backup_socket()
        if socket is None:
            return REPEAT
        if socket == export.socket:
            return DONE
        raise exception.BlockJobActive(
            guest=self.name, disk=', '.join(export.scratch),
            job='a backup job serving %s' % (socket or 'push targets'))

    def backup_end(self, export: Export, timeout: float = 60) -> None:
        """End our backup job (if it is still there) and wait until the
        domain has no job left.

        :raises LibvirtFailed: the job is still there after ``timeout``
            seconds.
        """
        def ours() -> str:
            return REPEAT if self.backup_socket() == export.socket else DONE

        if ours() == REPEAT:
            self._call('end the backup job of', 'abortJob', again=ours)
        # NOTE: the caller marks the job's journal step done once this
        # returns; a job still there must stay in the journal, for
        # ``recover`` to end it.
        if not retry.poll(lambda: self.backup_socket() is None, bool,
                          timeout=timeout, interval=0.005,
                          max_interval=0.2):
            raise exception.LibvirtFailed(
                action='end the backup job of', guest=self.name,
                reason='it is still there %d s after it was asked to end; '
                       '"nova-snapshot-ext recover" ends it' % timeout)

    # -- checkpoints ---------------------------------------------------
    def checkpoint_names(self) -> list[str]:
        """The names of the domain's checkpoints."""
        return [c.getName() for c in
                self._call('list the checkpoints of', 'listAllCheckpoints',
                           0)]

    def checkpoint_created(self, name: str) -> int:
        """The creation time (seconds since the epoch) of checkpoint
        ``name``, which names it with its bitmaps when it is defined again.
        """
        checkpoint = self._call('find a checkpoint of',
                                'checkpointLookupByName', name, 0)
        desc = checkpoint.getXMLDesc(0)
        return int(ET.fromstring(desc).findtext('creationTime') or 0)

    def define_checkpoint(self, name: str, created: int, target: str,
                          validate: bool = True) -> None:
        """Make checkpoint ``name`` known to libvirt again, over the
        bitmap of the same name that disk ``target`` still holds.

        :param validate: refuse it when the bitmap is missing or broken
            (:class:`LibvirtFailed`, code ``VIR_ERR_CHECKPOINT_INCONSISTENT``).
        """
        root = ET.Element('domaincheckpoint')
        ET.SubElement(root, 'name').text = name
        ET.SubElement(root, 'creationTime').text = str(created)
        ET.SubElement(ET.SubElement(root, 'disks'), 'disk', name=target,
                      checkpoint='bitmap', bitmap=name)
        flags = libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE
        if validate:
            flags |= libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE
        self._call('define a checkpoint of', 'checkpointCreateXML',
                   ET.tostring(root, encoding='unicode'), flags)

    def delete_checkpoint(self, name: str,
                          metadata_only: bool = False) -> None:
        """Delete checkpoint ``name`` (its bitmaps are merged into its
        parent's, if any); a missing one is not an error.

        :param metadata_only: forget it without touching its bitmaps
            (for one whose bitmaps are gone).
        """
        flags = (libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY
                 if metadata_only else 0)
        try:
            checkpoint = self._call('find a checkpoint of',
                                    'checkpointLookupByName', name, 0)
            checkpoint.delete(flags)
        except exception.LibvirtFailed as e:
            if e.kwargs.get('code') != _NO_CHECKPOINT:
                raise
        except libvirt.libvirtError as e:
            if e.get_error_code() != _NO_CHECKPOINT:
                raise domain.translate(e, self.name, 'delete a checkpoint '
                                       'of')

    def backup_supported(self) -> bool:
        """Whether libvirt and the QEMU that runs this guest have the
        backup API (``<backup supported='yes'/>`` in the domain
        capabilities of guests of its kind).
        """
        root = ET.fromstring(self.xml())  # type: ignore[attr-defined]
        os_type = root.find('./os/type')
        args = (root.get('type') or 'kvm',
                root.findtext('./devices/emulator'),
                os_type.get('arch') if os_type is not None else None,
                os_type.get('machine') if os_type is not None else None)
        if self.host is not None:
            caps = self.host.domain_capabilities(*args)
        else:
            caps = self.dom.connect().getDomainCapabilities(
                args[1], args[2], args[3], args[0], 0)
        backup = ET.fromstring(caps).find('./features/backup')
        return backup is not None and backup.get('supported') == 'yes'
