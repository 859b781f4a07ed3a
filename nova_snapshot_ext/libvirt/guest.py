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

"""One libvirt guest: its disk, block copy jobs, managed save, quiesce.

Every libvirt error is turned into an exception of
:mod:`nova_snapshot_ext.exception` here, so that nothing above this module
needs to know libvirt's error codes.
"""

from collections.abc import Callable
import dataclasses
from typing import Any
import xml.etree.ElementTree as ET

import libvirt
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext import retry

LOG = logging.getLogger(__name__)

AGENT_CHANNEL = 'org.qemu.guest_agent.0'

#: Power states that decide how a guest is snapshotted.
RUNNING, PAUSED, SHUTOFF = 'running', 'paused', 'shutoff'

_STATES = {
    libvirt.VIR_DOMAIN_RUNNING: RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PAUSED,
    libvirt.VIR_DOMAIN_SHUTOFF: SHUTOFF,
    libvirt.VIR_DOMAIN_SHUTDOWN: 'shutting down',
    libvirt.VIR_DOMAIN_CRASHED: 'crashed',
    libvirt.VIR_DOMAIN_PMSUSPENDED: 'suspended by the guest',
    libvirt.VIR_DOMAIN_BLOCKED: RUNNING,
}


@dataclasses.dataclass(frozen=True)
class Disk:
    """The guest's root disk, as its domain XML describes it."""

    target: str
    source_type: str
    path: str
    format: str
    protocol: str | None = None
    #: The encryption format (``luks``, ...) of an encrypted disk; None
    #: when the domain XML declares no encryption.
    encryption: str | None = None


def translate(error: libvirt.libvirtError, guest: str, action: str,
              active: bool | None = None) -> exception.SnapshotError:
    """Turn a libvirt error into one of our exceptions.

    :param active: whether the domain still runs, when the caller knows.
    """
    code = error.get_error_code()
    message = error.get_error_message() or str(error)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return exception.GuestGone(guest=guest, reason=message)
    if code == libvirt.VIR_ERR_OPERATION_INVALID and active is False:
        return exception.GuestGone(guest=guest, reason=message)
    if code in (libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
                libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
        return exception.QuiesceFailed(guest=guest, reason=message)
    return exception.LibvirtFailed(action=action, guest=guest,
                                   reason=message)


class Guest:
    """A libvirt domain seen through the operations a snapshot needs."""

    def __init__(self, dom: libvirt.virDomain) -> None:
        self.dom = dom
        self.name: str = dom.name()
        self.uuid: str = dom.UUIDString()

    def _call(self, action: str, fn: Callable[..., Any],
              *args: Any) -> Any:
        try:
            return fn(*args)
        except libvirt.libvirtError as e:
            raise translate(e, self.name, action, self._is_active())

    def _is_active(self) -> bool | None:
        try:
            return bool(self.dom.isActive())
        except libvirt.libvirtError:
            return False

    # -- state ---------------------------------------------------------
    def power_state(self) -> str:
        state, _reason = self._call('read the state of', self.dom.state)
        return _STATES.get(state, 'unknown')

    def is_active(self) -> bool:
        """Whether the domain runs (or is paused)."""
        return bool(self._is_active())

    def is_persistent(self) -> bool:
        return bool(self._call('inspect', self.dom.isPersistent))

    def xml(self, inactive: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_SECURE
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        return self._call('read the XML of', self.dom.XMLDesc, flags)

    def has_snapshot_metadata(self) -> bool:
        count = self._call('list snapshots of', self.dom.snapshotNum, 0)
        try:
            count += len(self.dom.listAllCheckpoints(0))
        except (libvirt.libvirtError, AttributeError):
            pass
        return count > 0

    # -- disks ---------------------------------------------------------
    def root_disk(self) -> Disk:
        """The first disk device of the domain (the one it boots from).

        :raises UnsupportedDisk: no disk, or one we cannot read.
        """
        root = ET.fromstring(self.xml())
        for disk in root.findall('./devices/disk'):
            if disk.get('device', 'disk') != 'disk':
                continue
            return self._disk_from_xml(disk)
        raise exception.UnsupportedDisk(guest=self.name,
                                        reason='the domain has no disk')

    def _disk_from_xml(self, disk: ET.Element) -> Disk:
        target = disk.find('target')
        driver = disk.find('driver')
        source = disk.find('source')
        fmt = driver.get('type') if driver is not None else None
        if target is None or source is None or not fmt:
            raise exception.UnsupportedDisk(
                guest=self.name,
                reason='the disk XML lacks a target, source or driver type')
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
                guest=self.name,
                reason='disks of type %r are not supported' % kind)
        # NOTE: libvirt accepts <encryption> in <disk> (older) and in
        # <source> (since 6.4); either makes QEMU decrypt the disk.
        enc = disk.find('encryption')
        if enc is None:
            enc = source.find('encryption')
        return Disk(target=target.get('dev'), source_type=kind, path=path,
                    format=fmt, protocol=source.get('protocol'),
                    encryption=(enc.get('format') or 'unknown'
                                if enc is not None else None))

    # -- block copy ----------------------------------------------------
    def block_job(self, dev: str) -> dict[str, int] | None:
        info = self._call('read the block jobs of', self.dom.blockJobInfo,
                          dev, 0)
        return info or None

    def check_no_block_job(self, dev: str) -> None:
        job = self.block_job(dev)
        if job:
            raise exception.BlockJobActive(
                guest=self.name, disk=dev,
                job='type %s' % job.get('type'))

    def start_copy(self, dev: str, dest: str, dest_format: str,
                   transient_job: bool, bandwidth_mib: int = 0) -> None:
        """Start mirroring ``dev`` into the existing image ``dest``.

        Only the top image is copied (shallow): ``dest`` must have the
        same backing file as the disk.

        :param transient_job: use virDomainBlockCopy with TRANSIENT_JOB on
            the persistent domain; otherwise the domain must already be
            transient and blockRebase(COPY) is used.
        """
        if transient_job:
            disk = ET.Element('disk', type='file')
            ET.SubElement(disk, 'driver', type=dest_format)
            ET.SubElement(disk, 'source', file=dest)
            dest_xml = ET.tostring(disk, encoding='unicode')
            params = {}
            if bandwidth_mib:
                params[libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH] = (
                    bandwidth_mib * 1024 * 1024)
            flags = (libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT |
                     libvirt.VIR_DOMAIN_BLOCK_COPY_SHALLOW |
                     libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)
            self._call('start a block copy of', self.dom.blockCopy, dev,
                       dest_xml, params, flags)
        else:
            flags = (libvirt.VIR_DOMAIN_BLOCK_REBASE_COPY |
                     libvirt.VIR_DOMAIN_BLOCK_REBASE_REUSE_EXT |
                     libvirt.VIR_DOMAIN_BLOCK_REBASE_SHALLOW)
            if dest_format == 'raw':
                flags |= libvirt.VIR_DOMAIN_BLOCK_REBASE_COPY_RAW
            self._call('start a block copy of', self.dom.blockRebase, dev,
                       dest, bandwidth_mib, flags)

    def copy_ready(self, dev: str) -> tuple[bool, float]:
        """Whether the mirror of ``dev`` is in sync, and how far it is.

        :raises BlockJobFailed: the job is gone (Nova took that for
            success; it is not).
        :raises GuestGone: the domain stopped.
        """
        job = self.block_job(dev)
        if not job:
            if not self._is_active():
                raise exception.GuestGone(guest=self.name,
                                          reason='the domain is not running')
            raise exception.BlockJobFailed(
                guest=self.name, disk=dev,
                reason='the job ended before the copy was complete')
        end = job.get('end', 0)
        done = job.get('cur', 0) / end if end else 0.0
        if not end or job.get('cur') != end:
            return False, done
        # NOTE: cur == end can be seen a few milliseconds before QEMU
        # flags the mirror ready; only a ready mirror is a full copy.
        return self._mirror_ready(dev), done

    def _mirror_ready(self, dev: str) -> bool:
        root = ET.fromstring(self.xml())
        for disk in root.findall('./devices/disk'):
            target = disk.find('target')
            if target is not None and target.get('dev') == dev:
                mirror = disk.find('mirror')
                return mirror is not None and mirror.get('ready') == 'yes'
        return False

    def mirror_dest(self, dev: str) -> str | None:
        """The file the block job of ``dev`` mirrors into, as the live
        domain XML shows it; None when there is no mirror.
        """
        root = ET.fromstring(self.xml())
        for disk in root.findall('./devices/disk'):
            target = disk.find('target')
            if target is None or target.get('dev') != dev:
                continue
            mirror = disk.find('mirror')
            if mirror is None:
                return None
            source = mirror.find('source')
            if source is not None and source.get('file'):
                return source.get('file')
            return mirror.get('file')
        return None

    def wait_copy_ready(self, dev: str, timeout: float, interval: float,
                        progress: Callable[[float], None] | None = None
                        ) -> None:
        """Wait until the mirror of ``dev`` is complete and ready."""
        def check() -> bool:
            ready, done = self.copy_ready(dev)
            if progress is not None:
                progress(done)
            return ready

        if not retry.poll(check, bool, timeout=timeout, interval=interval):
            raise exception.BlockJobFailed(
                guest=self.name, disk=dev,
                reason='the copy did not catch up within %d s '
                       '([snapshot] block_job_timeout)' % timeout)

    def abort_copy(self, dev: str) -> None:
        """Stop the mirror without pivoting: the copy keeps its data as of
        this moment and the guest keeps using its own disk.
        """
        self._call('stop the block copy of', self.dom.blockJobAbort, dev, 0)

    def wait_no_job(self, timeout: float, interval: float = 0.5) -> bool:
        """Wait for the domain's job (a save, a migration, ...) to end,
        e.g. one its client started and did not see through.

        :returns: whether no job runs.
        """
        def idle() -> bool:
            try:
                return self.dom.jobInfo()[0] == libvirt.VIR_DOMAIN_JOB_NONE
            except libvirt.libvirtError:
                return True

        return retry.poll(idle, bool, timeout=timeout, interval=interval)

    # -- definition ----------------------------------------------------
    def undefine_keep_running(self) -> None:
        """Make a running persistent domain transient."""
        flags = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
        flags |= getattr(libvirt, 'VIR_DOMAIN_UNDEFINE_KEEP_TPM', 0)
        self._call('undefine', self.dom.undefineFlags, flags)

    def define(self, xml: str) -> None:
        try:
            self.dom.connect().defineXML(xml)
        except libvirt.libvirtError as e:
            raise translate(e, self.name, 'define')

    # -- managed save --------------------------------------------------
    def managed_save(self, paused: bool) -> None:
        """Save the guest's memory and stop it; :meth:`restore` brings it
        back running, or paused when ``paused``.
        """
        flags = (libvirt.VIR_DOMAIN_SAVE_PAUSED if paused
                 else libvirt.VIR_DOMAIN_SAVE_RUNNING)
        self._call('save', self.dom.managedSave, flags)

    def has_managed_save(self) -> bool:
        return bool(self._call('inspect', self.dom.hasManagedSaveImage, 0))

    def restore(self) -> None:
        self._call('restore', self.dom.create)

    # -- quiesce -------------------------------------------------------
    def agent_connected(self) -> bool:
        """Whether a QEMU guest agent is connected right now."""
        root = ET.fromstring(self.xml())
        for chan in root.findall('./devices/channel/target'):
            if chan.get('name') == AGENT_CHANNEL:
                return chan.get('state') == 'connected'
        return False

    def freeze(self) -> None:
        self._call('freeze the filesystems of', self.dom.fsFreeze, None, 0)

    def thaw(self) -> None:
        self._call('thaw the filesystems of', self.dom.fsThaw, None, 0)
