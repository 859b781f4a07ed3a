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

"""One exception hierarchy, with messages an operator can act on.

Every error the engine raises on purpose is a :class:`SnapshotError`. Its
message is a single line that says what is wrong and, where there is one,
what to do about it. The command line prints it as it is.
"""


def human_size(size: int) -> str:
    """``size`` bytes as an operator reads them (``512 B``, ``3.0 MiB``),
    in messages and in the command's summaries.
    """
    if size < 1024:
        return '%d B' % size
    value = float(size)
    for unit in ('KiB', 'MiB', 'GiB'):
        value /= 1024
        if value < 1024 or unit == 'GiB':
            break
    return '%.1f %s' % (value, unit)


class SnapshotError(Exception):
    """Base class: a snapshot could not be taken."""

    msg_fmt = 'The snapshot failed.'

    def __init__(self, message: str | None = None, **kwargs: object) -> None:
        self.kwargs = kwargs
        if message is None:
            message = self.msg_fmt % kwargs
        # One line, always: libvirt and qemu-img like multi-line messages.
        message = ' '.join(str(message).split())
        super().__init__(message)
        self.message = message


class InvalidInput(SnapshotError):
    msg_fmt = 'Invalid input: %(reason)s'


class InvalidName(InvalidInput):
    msg_fmt = 'Invalid image name %(name)r: %(reason)s'


class InvalidFormat(InvalidInput):
    msg_fmt = ('Unsupported image format %(format)r: use one of '
               '%(choices)s.')


class UnknownBackend(SnapshotError):
    msg_fmt = ('No image backend %(name)r is installed; known backends: '
               '%(known)s.')


class UnknownStore(SnapshotError):
    msg_fmt = ('Unknown image store %(spec)r; use one of %(known)s.')


class StoreUnavailable(SnapshotError):
    msg_fmt = 'Image store %(store)s cannot be used: %(reason)s'

    #: Of a failed creation of an image record: False when no try reached
    #: the store (no record was made), None when one may have.
    record_made: bool | None = None


class StoreAuthFailed(StoreUnavailable):
    msg_fmt = ('%(store)s refused the credentials: %(reason)s. Check the '
               'auth options of [snapshot_glance].')


class StoreWriteFailed(SnapshotError):
    msg_fmt = 'Writing the image to %(store)s failed: %(reason)s'


class StoreRejected(StoreWriteFailed):
    msg_fmt = '%(store)s refused the image: %(reason)s'


class ImageNotFound(StoreWriteFailed):
    msg_fmt = 'Image %(image)s does not exist in %(store)s.'


class ImageHasDependents(SnapshotError):
    msg_fmt = ('Image %(image)s is the base of %(count)d later incremental '
               'image(s) (%(dependents)s): delete them first, or add '
               '--with-dependents to delete them with it.')


class TooManyImages(SnapshotError):
    msg_fmt = ('%(guest)s has %(count)d snapshots in %(store)s and '
               '[snapshot] max_per_guest is %(max)d: delete some '
               '("nova-snapshot-ext list %(guest)s", then "delete"), let gc '
               'remove expired ones, or take it with --incremental --keep N.')


class ImageDeleteFailed(SnapshotError):
    msg_fmt = ('Could not delete image %(image)s of %(store)s (see the '
               'log)%(done)s; every image left is whole.')


class ImageNotQueued(StoreWriteFailed):
    msg_fmt = ('Image %(image)s in %(store)s is %(status)s, not queued: '
               'it cannot take new data.')


class HypervisorUnavailable(SnapshotError):
    msg_fmt = ('Cannot connect to libvirt at %(uri)s: %(reason)s. Is '
               'libvirtd running, and may this user use it?')


class GuestNotFound(SnapshotError):
    msg_fmt = ('No guest named %(guest)s on %(uri)s. See '
               '"virsh list --all" for the names.')


class GuestGone(SnapshotError):
    msg_fmt = ('Guest %(guest)s stopped or vanished during the snapshot: '
               '%(reason)s')


class UnsupportedDisk(SnapshotError):
    msg_fmt = 'Cannot snapshot the root disk of %(guest)s: %(reason)s'


class GuestStateUnsafe(SnapshotError):
    msg_fmt = ('Cannot snapshot %(guest)s: it is %(state)s, so no copy of '
               'its disks is one point in time; %(hint)s.')


class UnsafeImage(SnapshotError):
    msg_fmt = 'Refusing to read %(path)s: %(reason)s'


class SnapshotInProgress(SnapshotError):
    msg_fmt = ('Another snapshot of guest %(guest)s is running; wait for it '
               'to finish and try again.')


class BlockJobActive(SnapshotError):
    msg_fmt = ('Disk %(disk)s of guest %(guest)s already has a block job '
               '(%(job)s); wait for it to end or abort it with "virsh '
               'blockjob %(guest)s %(disk)s --abort".')


class BlockJobFailed(SnapshotError):
    msg_fmt = 'The block copy of %(disk)s on %(guest)s failed: %(reason)s'


class LiveSnapshotImpossible(SnapshotError):
    msg_fmt = ('A live snapshot of %(guest)s is not possible: %(reason)s. '
               'Use --method cold or --method auto.')


class ColdSnapshotImpossible(SnapshotError):
    msg_fmt = 'A cold snapshot of %(guest)s is not possible: %(reason)s.'


class QuiesceFailed(SnapshotError):
    msg_fmt = ('Cannot quiesce %(guest)s, and quiesce is required: '
               '%(reason)s. Start the QEMU guest agent in the guest, or '
               'set [snapshot] quiesce = auto.')


class ConversionFailed(SnapshotError):
    """The image could not be written: ``tool`` (by default qemu-img)
    failed, for ``reason``.
    """

    msg_fmt = '%(tool)s could not write the image: %(reason)s'

    def __init__(self, message: str | None = None, tool: str = 'qemu-img',
                 **kwargs: object) -> None:
        super().__init__(message, tool=tool, **kwargs)


class GuestRestoreFailed(SnapshotError):
    msg_fmt = ('Could not bring %(guest)s back to its %(state)s state '
               'after the snapshot: %(reason)s. Check it with "virsh '
               'domstate %(guest)s".')


class LibvirtFailed(SnapshotError):
    msg_fmt = 'libvirt could not %(action)s %(guest)s: %(reason)s'


class CephUnavailable(SnapshotError):
    msg_fmt = ('Cannot use Ceph as client.%(user)s with %(conf)s: '
               '%(reason)s. Check [snapshot_rbd] ceph_conf, user and the '
               'keyring.')


class RbdFailed(SnapshotError):
    msg_fmt = 'RBD could not %(action)s %(target)s: %(reason)s'


class DirectSnapshotImpossible(SnapshotError):
    """The direct path turned out impossible before anything was kept;
    the backend falls back to an export.
    """

    msg_fmt = 'A direct snapshot of %(guest)s is not possible: %(reason)s'


class RbdForbidden(RbdFailed):
    msg_fmt = ('RBD could not %(action)s %(target)s: permission denied '
               '(%(reason)s). The Ceph client of [snapshot_rbd] user needs '
               'write access to that pool.')


class SnapshotCancelled(SnapshotError):
    msg_fmt = ('The snapshot of %(guest)s was cancelled (%(reason)s); what it '
               'had made was undone.')


class SnapshotTimedOut(SnapshotCancelled):
    msg_fmt = ('The snapshot of %(guest)s did not finish within %(timeout)s s '
               '(%(option)s); it was cancelled and what it had made was '
               'undone.')


class InsufficientSpace(SnapshotError):
    msg_fmt = ('Not enough free space in %(path)s for the snapshot of '
               '%(guest)s: it needs about %(need)s, %(free)s are free. Free '
               'some space, or set %(option)s to a larger file system.')


class ImageDamaged(SnapshotError):
    msg_fmt = ('Image %(image)s is damaged: %(reason)s. Take a new '
               'snapshot; do not restore from it.')


class JournalUnreadable(SnapshotError):
    msg_fmt = ('Cannot read the snapshot journal %(path)s: %(reason)s. '
               'Check what it names by hand, then remove it.')


class JournalNotOurs(JournalUnreadable):
    msg_fmt = ('Skipping the snapshot journal %(path)s: it is %(owner)s\'s '
               'and user %(user)s cannot read it; "nova-snapshot-ext '
               'recover" run as %(owner)s recovers it.')


class JournalUnwritable(SnapshotError):
    msg_fmt = ('Cannot write the snapshot journal %(path)s: %(reason)s. '
               'Check [snapshot] journal_directory.')
