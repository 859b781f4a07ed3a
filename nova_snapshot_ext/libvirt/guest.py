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
:mod:`nova_snapshot_ext.exception` (by :mod:`.domain`), so that nothing
above this package needs to know libvirt's error codes.

When the connection to libvirtd is lost (libvirtd restarted; QEMU and its
block job go on), a guest of a :class:`~nova_snapshot_ext.libvirt.host.
Host` has the host connect again, looks its domain up again by UUID
(:class:`~nova_snapshot_ext.libvirt.domain.Domain`) and then, call by
call:

* reads (state, XML, block job info, ...) and ``defineXML`` (the same
  definition again) and thaw are made again;
* a block copy is started again only when the disk has no block job (one
  into our destination is the one we started; another is refused);
* the abort of our block job is made again only when the job is still
  there (gone: the abort was done);
* undefine is made again only when the domain is still persistent, start
  (restore) only when it does not run;
* a managed save is made again only when the domain still runs, once
  libvirtd's recovery of the interrupted save is over, and without the
  partial save file, which is removed; a domain that is off with its save
  needs nothing more;
* a freeze is not made again: it fails as a failed freeze does (the
  caller thaws, and goes on unquiesced or fails if quiesce is required).
"""

from collections.abc import Callable
import xml.etree.ElementTree as ET

import libvirt
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import backup
from nova_snapshot_ext.libvirt import disks as disks_mod
from nova_snapshot_ext.libvirt.domain import connection_lost  # noqa: F401
from nova_snapshot_ext.libvirt.domain import DONE
from nova_snapshot_ext.libvirt.domain import REPEAT
from nova_snapshot_ext.libvirt.domain import translate  # noqa: F401
from nova_snapshot_ext.libvirt import memory
from nova_snapshot_ext import retry

LOG = logging.getLogger(__name__)

Disk = disks_mod.Disk

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


#: Seconds to wait for libvirtd to end a save it found interrupted.
SAVE_JOB_WAIT = 60
#: ``operation`` of a backup job in the job's stats (missing from old
#: bindings).
_BACKUP_OPERATION = getattr(libvirt, 'VIR_DOMAIN_JOB_OPERATION_BACKUP', 9)


class Guest(backup.BackupCalls, memory.MemoryCalls):
    """A libvirt domain seen through the operations a snapshot needs."""

    # -- state ---------------------------------------------------------
    def power_state(self) -> str:
        state, _reason = self._call('read the state of', 'state')
        return _STATES.get(state, 'unknown')

    def is_active(self) -> bool:
        """Whether the domain runs (or is paused)."""
        if self.host is None:
            return bool(self._is_active())
        try:
            return bool(self._call('inspect', 'isActive'))
        except exception.GuestGone:
            return False

    def is_persistent(self) -> bool:
        return bool(self._call('inspect', 'isPersistent'))

    def xml(self, inactive: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_SECURE
        if inactive:
            flags |= libvirt.VIR_DOMAIN_XML_INACTIVE
        return self._call('read the XML of', 'XMLDesc', flags)

    def has_snapshot_metadata(self) -> bool:
        count = self._call('list snapshots of', 'snapshotNum', 0)
        try:
            count += len(self._call('list checkpoints of',
                                    'listAllCheckpoints', 0))
        except (exception.SnapshotError, AttributeError):
            pass
        return count > 0

    # -- disks ---------------------------------------------------------
    def disks(self) -> list[Disk]:
        """Every disk device of the running domain, in the domain's
        order (:func:`~nova_snapshot_ext.libvirt.disks.disks_of`).
        """
        return disks_mod.disks_of(self.xml(), self.name)

    def root_disk(self, any_device: bool = False) -> Disk:
        """The disk a snapshot of the guest is of: the first disk device,
        or with ``any_device`` the first ``<disk>`` of any kind
        (:func:`~nova_snapshot_ext.libvirt.disks.root_disk`).

        :raises UnsupportedDisk: no disk, or one we cannot read.
        """
        return disks_mod.root_disk(self.xml(), self.name, any_device)

    # -- block copy ----------------------------------------------------
    def block_job(self, dev: str) -> dict[str, int] | None:
        info = self._call('read the block jobs of', 'blockJobInfo', dev, 0)
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
            self._call('start a block copy of', 'blockCopy', dev,
                       dest_xml, params, flags,
                       again=lambda: self._copy_again(dev, dest))
        else:
            flags = (libvirt.VIR_DOMAIN_BLOCK_REBASE_COPY |
                     libvirt.VIR_DOMAIN_BLOCK_REBASE_REUSE_EXT |
                     libvirt.VIR_DOMAIN_BLOCK_REBASE_SHALLOW)
            if dest_format == 'raw':
                flags |= libvirt.VIR_DOMAIN_BLOCK_REBASE_COPY_RAW
            self._call('start a block copy of', 'blockRebase', dev,
                       dest, bandwidth_mib, flags,
                       again=lambda: self._copy_again(dev, dest))

    def _copy_again(self, dev: str, dest: str) -> str:
        """Whether to start the copy again after a reconnect."""
        if not self.block_job(dev):
            return REPEAT
        mirror = self.mirror_dest(dev)
        if mirror == dest:
            return DONE
        raise exception.BlockJobActive(guest=self.name, disk=dev,
                                       job='a copy into %s' % mirror)

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
        self._call('stop the block copy of', 'blockJobAbort', dev, 0,
                   again=lambda: REPEAT if self.block_job(dev) else DONE)

    def wait_no_job(self, timeout: float, interval: float = 0.5) -> bool:
        """Wait for the domain's job (a save, a migration, ...) to end,
        e.g. one its client started and did not see through. A backup
        job does not end by itself (its client ends it): it is not waited
        for.

        :returns: whether no job (but a backup job) runs.
        """
        def idle() -> bool:
            try:
                stats = self._call('inspect', 'jobStats', 0)
            except exception.SnapshotError:
                return True
            return (stats.get('type') == libvirt.VIR_DOMAIN_JOB_NONE or
                    stats.get('operation') == _BACKUP_OPERATION)

        return retry.poll(idle, bool, timeout=timeout, interval=interval)

    # -- definition ----------------------------------------------------
    def undefine_keep_running(self) -> None:
        """Make a running persistent domain transient."""
        flags = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM
        flags |= getattr(libvirt, 'VIR_DOMAIN_UNDEFINE_KEEP_TPM', 0)
        self._call('undefine', 'undefineFlags', flags,
                   again=lambda: REPEAT if self.is_persistent() else DONE)

    def define(self, xml: str) -> None:
        if self.host is not None:
            self._call('define', 'defineXML', xml, on_conn=True)
            return
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
        self._call('save', 'managedSave', flags, again=self._save_again)

    def _save_again(self) -> str:
        """Whether to save again after a reconnect: libvirtd cancels an
        interrupted save when it starts and the domain runs on.
        """
        self.wait_no_job(SAVE_JOB_WAIT)
        if not self.is_active():
            if self.has_managed_save():
                return DONE
            raise exception.GuestGone(guest=self.name,
                                      reason='it stopped during its save')
        if self.has_managed_save():
            # NOTE: a save file left by the interrupted save would be
            # what the next start of the guest restores.
            self._call('remove the partial save of', 'managedSaveRemove',
                       0)
        return REPEAT

    def has_managed_save(self) -> bool:
        return bool(self._call('inspect', 'hasManagedSaveImage', 0))

    def restore(self) -> None:
        self._call('restore', 'create',
                   again=lambda: DONE if self.is_active() else REPEAT)

    # -- quiesce -------------------------------------------------------
    def agent_connected(self) -> bool:
        """Whether a QEMU guest agent is connected right now."""
        root = ET.fromstring(self.xml())
        for chan in root.findall('./devices/channel/target'):
            if chan.get('name') == AGENT_CHANNEL:
                return chan.get('state') == 'connected'
        return False

    def freeze(self, timeout: int | None = None) -> None:
        """Freeze the guest's filesystems through its agent.

        :param timeout: seconds to wait for the agent: the domain's agent
            response timeout is set to it, and set back to libvirt's
            default (wait forever) by :meth:`thaw`. None: libvirt's
            setting, which by default waits forever.
        :raises QuiesceFailed: the agent did not freeze, whatever the
            reason (it failed, did not answer in time, the connection to
            libvirtd was lost); some filesystems may be frozen, so the
            caller thaws.
        """
        try:
            if timeout is not None:
                self._call('set the agent timeout of',
                           'agentSetResponseTimeout', timeout, 0)
                self._agent_timeout_set = True
            self._call('freeze the filesystems of', 'fsFreeze', None, 0,
                       again=self._freeze_again)
        except exception.LibvirtFailed as e:
            # NOTE: e.g. "Guest agent timeout" (VIR_ERR_AGENT_COMMAND_
            # TIMEOUT) or an agent error: for the snapshot it is a freeze
            # that failed.
            raise exception.QuiesceFailed(
                guest=self.name, reason=e.kwargs.get('reason', str(e)))

    def _freeze_again(self) -> str:
        raise exception.QuiesceFailed(
            guest=self.name, reason='the connection to libvirtd was lost '
                                    'during the freeze')

    def thaw(self) -> None:
        """Thaw the guest's filesystems; then set the agent response
        timeout :meth:`freeze` set back to libvirt's default.
        """
        try:
            self._call('thaw the filesystems of', 'fsThaw', None, 0)
        finally:
            if getattr(self, '_agent_timeout_set', False):
                self._agent_timeout_set = False
                try:
                    self.reset_agent_timeout()
                except exception.SnapshotError as e:
                    LOG.warning('Could not set the agent timeout of '
                                '%(guest)s back to the default: %(err)s',
                                {'guest': self.name, 'err': e})

    def reset_agent_timeout(self) -> None:
        """Set the domain's agent response timeout back to libvirt's
        default (wait forever); no agent need be connected.
        """
        self._call('set the agent timeout of', 'agentSetResponseTimeout',
                   libvirt.VIR_DOMAIN_AGENT_RESPONSE_TIMEOUT_BLOCK, 0)
