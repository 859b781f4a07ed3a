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

"""``nova-snapshot-ext revert DOMAIN IMAGE``: a guest's disks replaced by
an image of it, in place.

The guest must be shut off (``--force`` stops it, and drops a managed
save, whose memory would not match the disks). Each disk of the image
(every disk of an ``--all-disks`` group; the root disk otherwise) gets the
image's content written standalone beside it (``DISK.nse-revert``, the
old disk's format, owner and mode), synced. Only then are the old disks
swapped for the new ones: each old disk is kept as a hard link
(``DISK.nse-old``) and the new file renamed over it, and the old links
are removed at the end (kept with ``--keep-old``). The guest's
definition is not changed. Its incremental checkpoints go: the next
incremental snapshot of a reverted disk is full, and says why.

A kill leaves the old disks or the new ones, never a mix: until the swap
is journaled, ``recover`` removes the new files (:func:`undo_revert_disk`);
once it is, ``recover`` finishes it (:func:`undo_revert_swap`).
"""

from collections.abc import Callable
import contextlib
import dataclasses
import os
import time
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.backends import checkpoints
from nova_snapshot_ext import catalog
from nova_snapshot_ext.cleanup import recovery
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import domain as domain_mod
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.libvirt import memory as memory_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import restore
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store

LOG = logging.getLogger(__name__)

NEW_SUFFIX, OLD_SUFFIX = '.nse-revert', '.nse-old'


@dataclasses.dataclass
class Reverted:
    """What ``revert`` did."""

    domain: str
    image: str
    disks: list[dict[str, str]]
    stopped: bool
    kept_old: list[str]
    seconds: float
    #: It resumed the image's memory: the guest runs where it was.
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def revert(conf: cfg.ConfigOpts, domain: str, ref: str,
           store: store_base.ImageStore | None = None, force: bool = False,
           keep_old: bool = False, host: host_mod.Host | None = None,
           progress: model.Progress = model.no_progress) -> Reverted:
    """Revert guest ``domain``'s disks to the image ``ref`` names.

    :raises SnapshotError: with a message for the operator; the guest's
        disks are as they were.
    """
    started = time.monotonic()
    store = store or store_base.load(conf, 'file')
    cat = catalog.Catalog(store)
    doc = cat.find(ref)
    members = cat.group(doc)
    with contextlib.ExitStack() as owned:
        host = host or owned.enter_context(contextlib.closing(
            host_mod.Host(conf.snapshot_libvirt.connection_uri)))
        guest = host.get_guest(domain)
        for m in members:
            if m.get('source_uuid') != guest.uuid:
                raise exception.InvalidInput(
                    reason='image %s was taken of %s, not of %s: restore '
                           'it as a new guest instead' % (
                               m['id'], m.get('source_domain'), guest.name))
        with locks.guest_lock(conf, guest.uuid, guest.name):
            for action in recovery.recover_guest(conf, host, guest.uuid):
                if action.verb not in recovery.QUIET:
                    LOG.warning('%s', action.line())
            swaps = _plan(cat, guest, members)
            stopped = _stop(guest, force)
            with journal.opened(conf.snapshot.journal_directory, guest.uuid,
                                guest.name, host.uri, store.spec,
                                uuidutils.generate_uuid()) as j:
                _write(conf, j, swaps, progress)
                for swap in swaps:
                    checkpoints.Registry(
                        conf.state_path, guest.uuid, swap['target']
                    ).invalidate('disk %s was reverted to image %s since '
                                 'its last incremental snapshot' % (
                                     swap['target'], swap['image']))
                step = j.add(journal.REVERT_SWAP, keep_old=keep_old, disks=[
                    {k: s[k] for k in ('disk', 'new', 'old')}
                    for s in swaps])
                finish_swap(step.data, first_done=lambda: j.reached(
                    journal.REVERT_SWAP))
                for s in j.steps:
                    j.done(s)
            resumed = _resume(host, guest, cat, members[0], doc['id'])
    LOG.info('Reverted %(guest)s to image %(image)s', {
        'guest': guest.name, 'image': doc['id']})
    return Reverted(
        domain=guest.name, image=doc['id'], stopped=stopped,
        disks=[{k: s[k] for k in ('target', 'disk', 'image')}
               for s in swaps],
        kept_old=[s['old'] for s in swaps] if keep_old else [],
        seconds=round(time.monotonic() - started, 3), resumed=resumed)


def _resume(host: host_mod.Host, guest: guest_mod.Guest,
            cat: catalog.Catalog, root: dict[str, Any], image: str) -> bool:
    """Resume the memory of the group's root image, if it was taken with
    it, on the disks just reverted to the same point in time; whether
    there was one.
    """
    if not root.get('memory'):
        return False
    try:
        memory_mod.resume(host, guest.name,
                          cat.path_of(root, file_store.MEMORY))
    except exception.SnapshotError as e:
        raise exception.InvalidInput(
            reason='the disks of %s were reverted to image %s, but its '
                   'memory was not resumed (%s): start it to boot from '
                   'them' % (guest.name, image, e))
    return True


def _plan(cat: catalog.Catalog, guest: guest_mod.Guest,
          members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which disk of the guest each image replaces."""
    disks = {d.target: d for d in guest.disks()}
    swaps = []
    for doc in members:
        target = doc.get('source_disk') or guest.root_disk().target
        disk = disks.get(target)
        if disk is None or disk.source_type != 'file':
            raise exception.InvalidInput(
                reason='image %s is of disk %s, which %s has not as a file: '
                       'revert replaces file disks; restore the image as a '
                       'new guest instead' % (doc['id'], target, guest.name))
        new, old = disk.path + NEW_SUFFIX, disk.path + OLD_SUFFIX
        for path in (new, old):
            if os.path.lexists(path):
                raise exception.InvalidInput(
                    reason='%s exists: a revert of %s did not end; run '
                           '"nova-snapshot-ext recover", or remove it if it '
                           'is not ours' % (path, guest.name))
        swaps.append({'target': target, 'disk': disk.path, 'new': new,
                      'old': old, 'format': disk.format, 'image': doc['id'],
                      'source': cat.path_of(doc),
                      'source_format': doc['format']})
    return swaps


def _stop(guest: guest_mod.Guest, force: bool) -> bool:
    """Make sure the guest is shut off with no managed save; whether it
    had to be stopped.
    """
    state = guest.power_state()
    saved = guest.has_managed_save()
    if (state != guest_mod.SHUTOFF or saved) and not force:
        raise exception.InvalidInput(
            reason='%s is %s%s: shut it down first, or add --force to stop '
                   'it' % (guest.name, state, ' with a managed save'
                           if saved else ''))
    if state != guest_mod.SHUTOFF:
        domain_mod.translated(guest.name, 'stop', guest.dom.destroy)
    if saved:
        domain_mod.translated(guest.name, 'remove the managed save of',
                              lambda: guest.dom.managedSaveRemove(0))
    return state != guest_mod.SHUTOFF


def _write(conf: cfg.ConfigOpts, j: journal.Journal,
           swaps: list[dict[str, Any]], progress: model.Progress) -> None:
    """Each disk's new content beside it, synced, with the old disk's
    owner and mode; all removed if one fails.
    """
    with contextlib.ExitStack() as undo_stack:
        for n, swap in enumerate(swaps):
            restore.write_disk(
                conf, j, journal.REVERT_DISK, swap['source'],
                swap['source_format'], swap['new'], swap['format'],
                undo_stack,
                restore.disk_progress(progress, 'revert', n, len(swaps)),
                like=swap['disk'])
        undo_stack.pop_all()


def finish_swap(data: dict[str, Any],
                first_done: Callable[[], None] = lambda: None) -> None:
    """Swap each old disk for its new content, idempotent: an old disk
    still in place is kept as a hard link and the new file renamed over
    it; then, unless ``keep_old``, the old links go.
    """
    for n, swap in enumerate(data.get('disks') or []):
        disk, new, old = swap['disk'], swap['new'], swap['old']
        if os.path.exists(new):
            if not os.path.lexists(old):
                os.link(disk, old)
            os.rename(new, disk)
            durable.fsync_dir(os.path.dirname(disk))
        if n == 0:
            first_done()
    if not data.get('keep_old'):
        for swap in data.get('disks') or []:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(swap['old'])


# -- recover ----------------------------------------------------------------
def undo_revert_disk(r: undo.Recovering, step: journal.Step) -> None:
    """``revert_disk``: remove a disk's new content, the swap not begun
    (a begun swap is finished first, which renames the file away).
    """
    undo.remove_path(r, step, lambda name: name.endswith(NEW_SUFFIX),
                     'new content of a revert that did not swap the disks')


def undo_revert_swap(r: undo.Recovering, step: journal.Step) -> None:
    """``revert_swap``: finish the swap of the old disks for the new."""
    disks = ', '.join(str(s.get('disk')) for s in step.data.get('disks')
                      or [])
    if r.active_guest() is not None:
        # NOTE: an error keeps the journal: the swap must be finished.
        raise exception.InvalidInput(
            reason='the revert of %s was cut short and the guest was started '
                   'since: shut it off, then run recover again to finish the '
                   'revert' % disks)
    r.act('finish', 'revert of %s' % disks, 'its swap was begun',
          run=lambda: finish_swap(step.data))
