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

"""Guests and disks that cannot give a consistent, safe copy, refused
before anything is touched.

* A guest that is crashed, shutting down, suspended by itself (S3/S4) or
  in a state libvirt does not name: QEMU may still hold the disk open
  with writes not yet on it, and neither a live nor a cold copy is one
  point in time of a guest that can run again.
* A ``<shareable/>`` disk that another domain of the same connection can
  write (:mod:`~nova_snapshot_ext.libvirt.sharing`): it writes whenever it
  likes. One is accepted when every other domain that has it attached is
  shut off or paused, or has it ``<readonly/>``: checked before anything
  is touched and again right before the point in time is taken
  (:func:`recheck_shared`). NOTE: a writer resumed *after* that point,
  while the disk is still being read (a cold copy, the export of a live
  one), is not seen: its writes may land in the image. Keep the other
  writers paused or shut off until the snapshot has ended. The Nova
  driver goes through the same check (Nova's own driver snapshots a
  shareable disk without one; there is no switch to do the same).
* A disk that is a file or block device of another host: with a remote
  connection URI (``qemu+ssh://host/system``) the local file of the same
  name is some other file, or none.
* A block device that the host decrypts (dm-crypt, LUKS: Nova's LVM
  ephemeral encryption, an os-brick encrypted volume): its content is the
  plaintext, and the image would keep it unencrypted.
"""

from collections.abc import Callable
import os
import stat
from typing import Any
import urllib.parse

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks as disks_mod
from nova_snapshot_ext.libvirt import sharing

#: ``writers(disk)``: the other domains that may write ``disk`` now, as
#: ``(name, state)`` (:func:`sharing.other_writers`).
Writers = Callable[[disks_mod.Disk], list[tuple[str, str]]]

#: Power states a snapshot can start from (see ``guest._STATES``).
SNAPSHOTTABLE = ('running', 'paused', 'shutoff')

_STATE_HINTS = {
    'crashed': 'destroy it (virsh destroy) or start it again first',
    'shutting down': 'wait until it is shut off',
    'suspended by the guest': 'wake it (virsh dompmwakeup) or shut it '
                              'off first',
}

_LOCAL_HOSTS = ('', 'localhost', '127.0.0.1', '::1')


def check_state(guest: str, state: str) -> None:
    """:raises GuestStateUnsafe: a guest in ``state`` cannot be copied
    consistently.
    """
    if state not in SNAPSHOTTABLE:
        raise exception.GuestStateUnsafe(
            guest=guest, state=state,
            hint=_STATE_HINTS.get(state, 'bring it to running, paused or '
                                         'shut off first'))


def check_disk(guest: str, disk: disks_mod.Disk, uri: str,
               sysfs: str = '/sys', writers: Writers | None = None) -> None:
    """:param writers: who else may write a shareable disk; without it a
        shareable disk is refused.
    :raises UnsupportedDisk: ``disk`` cannot be copied safely, and why.
    """
    if disk.encryption:
        raise exception.UnsupportedDisk(
            guest=guest,
            reason='its disk %s is encrypted (%s); snapshots of encrypted '
                   'disks are not supported, the image would be neither '
                   'encrypted nor readable' % (disk.target, disk.encryption))
    if disk.shareable:
        check_shared(guest, disk, writers)
    if disk.source_type in ('file', 'block') and is_remote(uri):
        raise exception.UnsupportedDisk(
            guest=guest,
            reason='its disk %s is %s on the host of %s, not on this one; '
                   'run the snapshot there' % (disk.target, disk.path, uri))
    if disk.source_type == 'block':
        layer = host_encryption(disk.path, sysfs)
        if layer:
            raise exception.UnsupportedDisk(
                guest=guest,
                reason='its disk %s (%s) is decrypted by this host (%s); '
                       'its image would hold the plaintext, so it is '
                       'refused' % (disk.target, disk.path, layer))


def check_shared(guest: str, disk: disks_mod.Disk,
                 writers: Writers | None) -> None:
    """:raises UnsupportedDisk: shareable ``disk`` may be written by
        another domain (or, without ``writers``, by anyone) during the
        copy.
    """
    if writers is None:
        raise exception.UnsupportedDisk(
            guest=guest,
            reason='its disk %s is shareable: other guests may write it '
                   'during the copy, so no copy of it is one point in '
                   'time' % disk.target)
    found = writers(disk)
    if found:
        raise exception.UnsupportedDisk(
            guest=guest,
            reason='its disk %s is shareable and %s may write it during '
                   'the copy, so no copy of it is one point in time; pause '
                   '(virsh suspend) or shut off %s until the snapshot has '
                   'ended, or make the disk <readonly/> there' % (
                       disk.target,
                       ', '.join('%s (%s)' % w for w in found),
                       ', '.join(name for name, _state in found)))


def writers_of(host: Any, uuid: str) -> Writers:
    """``writers`` for :func:`check_disk`: the other domains of ``host``
    (a :class:`~nova_snapshot_ext.libvirt.host.Host`) that may write a
    disk of the domain of UUID ``uuid``.
    """
    return lambda disk: sharing.other_writers(host, uuid, disk)


def recheck_shared(guest: Any, disks: list[disks_mod.Disk],
                   host: Any) -> None:
    """Check the shareable ``disks`` of ``guest`` (a
    :class:`~nova_snapshot_ext.libvirt.guest.Guest`) again, right before
    the point in time is taken: a writer may have been resumed since
    :func:`check_disk`.

    :raises UnsupportedDisk: one may be written by another domain now.
    """
    for disk in disks:
        if disk.shareable:
            check_shared(guest.name, disk, writers_of(host, guest.uuid))


def is_remote(uri: str) -> bool:
    """Whether libvirt at ``uri`` runs on another host."""
    host = urllib.parse.urlsplit(uri).hostname or ''
    return host not in _LOCAL_HOSTS


def host_encryption(path: str, sysfs: str = '/sys') -> str | None:
    """The device-mapper crypt layer under block device ``path`` (the
    device itself, or one below it, e.g. LVM on LUKS), as ``dm-N (UUID)``;
    None when there is none.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    node = os.path.join(sysfs, 'dev', 'block', '%d:%d' % (
        os.major(st.st_rdev), os.minor(st.st_rdev)))
    return _crypt_below(os.path.realpath(node), depth=0)


def _crypt_below(node: str, depth: int) -> str | None:
    if depth > 16:
        return None
    try:
        with open(os.path.join(node, 'dm', 'uuid')) as f:
            uuid = f.read().strip()
    except OSError:
        uuid = ''
    if uuid.startswith('CRYPT-'):
        return '%s (%s)' % (os.path.basename(node), uuid)
    slaves = os.path.join(node, 'slaves')
    try:
        names = sorted(os.listdir(slaves))
    except OSError:
        return None
    for name in names:
        found = _crypt_below(os.path.realpath(os.path.join(slaves, name)),
                             depth + 1)
        if found:
            return found
    return None
