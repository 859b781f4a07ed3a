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

"""How ``recover`` undoes each kind of journal step.

One handler per step kind (:data:`HANDLERS`), called by
:mod:`nova_snapshot_ext.cleanup.recovery` with its per-journal context, which
finds the guest, the store and the Ceph collector and records actions
(``r.act``). Each handler looks at what is there now and undoes only what
its step names; the module docstring of
:mod:`nova_snapshot_ext.cleanup.recovery` says what that is per kind. A
new kind is one handler more here.
"""

from collections.abc import Callable
import os
import shutil
from typing import Any, Protocol, TYPE_CHECKING

from nova_snapshot_ext.backends import steps as steps_mod
from nova_snapshot_ext.cleanup import sweep
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.libvirt import backup as backup_mod
from nova_snapshot_ext.libvirt import guest as guest_mod

if TYPE_CHECKING:
    from nova_snapshot_ext.cleanup import gc as gc_mod
    from nova_snapshot_ext.libvirt import host as host_mod
    from nova_snapshot_ext.stores import base as store_base


class Recovering(Protocol):
    """What a handler is given: the recovery of one journal
    (:class:`nova_snapshot_ext.cleanup.recovery._Recovery`), which this module
    does not import.
    """

    j: journal.Journal
    host: 'host_mod.Host'

    def act(self, verb: str, target: str, detail: str = '',
            run: Callable[[], Any] | None = None) -> None:
        """Report an action, and run it unless this is a dry run."""

    def guest(self) -> guest_mod.Guest | None:
        """The journal's guest, None when it is gone."""

    def active_guest(self) -> guest_mod.Guest | None:
        """The guest when it runs (or is paused), else None."""

    def store(self, spec: str | None) -> 'store_base.ImageStore | None':
        """The store ``spec`` names, None for none."""

    def collector(self) -> 'gc_mod.Collector':
        """The RBD collector of this journal."""

    def gc_actions(self, actions: 'list[gc_mod.Action]') -> None:
        """Act on what the collector found."""


#: Verbs of actions.
NOTHING, SKIP, KEEP, UNKNOWN, REMOVE_JOURNAL = (
    'nothing to do', 'skip', 'keep', 'unknown step', 'remove journal')
#: Verbs that change nothing and are not worth a warning.
QUIET = (NOTHING, SKIP, REMOVE_JOURNAL)
#: Name prefixes of the temporary directories a snapshot makes.
TEMP_PREFIXES = sweep.TEMP_PREFIXES


def short(data: dict[str, Any]) -> str:
    text = ', '.join('%s=%s' % (k, v) for k, v in sorted(data.items())
                     if k != 'xml')
    return text[:200]


def _temp_dir(r: Recovering, step: journal.Step) -> None:
    _remove_dir(r, step, TEMP_PREFIXES, 'temporary directory')


def _store_partial(r: Recovering, step: journal.Step) -> None:
    _remove_dir(r, step, None, 'partial image')


def _remove_dir(r: Recovering, step: journal.Step,
                prefixes: tuple[str, ...] | None, what: str) -> None:
    path = str(step.data.get('path') or '')
    base = os.path.basename(path.rstrip('/'))
    ours = (base.startswith(prefixes) if prefixes else
            base.startswith('.') and base.endswith('.partial'))
    if not os.path.isabs(path) or not ours:
        r.act(KEEP, path or '(no path)', 'not a %s of ours' % what)
        return
    if not os.path.lexists(path):
        r.act(NOTHING, path, 'already gone')
        return
    r.act('remove', path, what,
          run=lambda: shutil.rmtree(path, ignore_errors=True))


def _glance_image(r: Recovering, step: journal.Step) -> None:
    image_id = str(step.data.get('id'))
    store = r.store(step.data.get('store'))
    if store is None:
        r.act(KEEP, 'image %s' % image_id, 'its store cannot be reached '
              'from here; delete it if it is still queued')
        return
    status = store.image_status(image_id)
    if status is None:
        r.act(NOTHING, 'image %s' % image_id, 'not in %s' % store)
    elif status in ('queued', 'saving', 'uploading', 'importing'):
        r.act('delete', 'image %s' % image_id, 'it is %s in %s' % (
            status, store), run=lambda: store.delete(image_id))
    else:
        r.act(KEEP, 'image %s' % image_id, 'it is %s' % status)


def _group_image(r: Recovering, step: journal.Step) -> None:
    image_id = str(step.data.get('id'))
    store = r.store(step.data.get('store'))
    if store is None:
        r.act(KEEP, 'image %s' % image_id, 'its store cannot be reached '
              'from here; delete it: its group %s is not whole' %
              step.data.get('group'))
        return
    # NOTE: the id was chosen by the snapshot, journaled before the
    # commit: the image is ours; a missing one is not an error.
    r.act('delete', 'image %s' % image_id, 'its group %s is not whole' %
          step.data.get('group'), run=lambda: store.delete(image_id))


def _block_job(r: Recovering, step: journal.Step) -> None:
    disk, dest = str(step.data.get('disk')), str(step.data.get('dest'))
    g = r.active_guest()
    if g is None:
        r.act(NOTHING, 'block job on %s' % disk, 'the guest does not run')
        return
    if not g.block_job(disk):
        r.act(NOTHING, 'block job on %s' % disk, 'there is none')
        return
    mirror = g.mirror_dest(disk)
    if mirror != dest:
        r.act(KEEP, 'block job on %s' % disk, 'not ours: it copies into '
              '%s' % mirror)
        return
    r.act('abort', 'block job on %s' % disk, 'it copies into %s' % dest,
          run=lambda: g.abort_copy(disk))


def _backup_job(r: Recovering, step: journal.Step) -> None:
    socket = str(step.data.get('socket'))
    what = 'backup job of %s' % ', '.join(step.data.get('disks') or [])
    g = r.active_guest()
    if g is None:
        r.act(NOTHING, what, 'the guest does not run')
        return
    serves = g.backup_socket()
    if serves is None:
        r.act(NOTHING, what, 'there is none')
        return
    if serves != socket:
        r.act(KEEP, what,
              'not ours: it serves %s' % (serves or 'push targets'))
        return
    export = backup_mod.Export(socket=socket, scratch={})
    r.act('end', what, 'it serves %s' % socket,
          run=lambda: g.backup_end(export))


def _checkpoint(r: Recovering, step: journal.Step) -> None:
    name = str(step.data.get('name'))
    g = r.guest()
    if g is None or name not in g.checkpoint_names():
        r.act(NOTHING, 'checkpoint %s' % name, 'there is none')
        return
    if step.data.get('forget'):
        # NOTE: its bitmap is the base of the next incremental snapshot;
        # libvirt must not keep the checkpoint (see backends.incremental).
        r.act('forget', 'checkpoint %s' % name, 'its bitmap is kept, '
              'libvirt need not know it',
              run=lambda: g.delete_checkpoint(name, metadata_only=True))
        return
    r.act('delete', 'checkpoint %s' % name, 'its snapshot did not end',
          run=lambda: g.delete_checkpoint(name))


def _freeze(r: Recovering, step: journal.Step) -> None:
    g = r.active_guest()
    if g is None or not g.agent_connected():
        r.act(NOTHING, 'filesystems', 'no guest agent answers, so none is '
              'frozen')
    else:
        r.act('thaw', 'filesystems', run=g.thaw)
    if g is not None and step.data.get('agent_timeout') is not None:
        # NOTE: libvirt keeps the timeout the freeze set for as long as
        # the domain runs, agent or none.
        r.act('reset', 'agent timeout', "to libvirt's default (it was set "
              'to %s s)' % step.data['agent_timeout'],
              run=g.reset_agent_timeout)


def _managed_save(r: Recovering, step: journal.Step) -> None:
    state = str(step.data.get('state'))
    g = r.guest()
    if g is None or not g.has_managed_save():
        r.act(NOTHING, 'managed save', 'there is none')
        return
    if g.power_state() != guest_mod.SHUTOFF:
        r.act(KEEP, 'managed save', 'the guest is %s' % g.power_state())
        return

    def restore() -> None:
        steps_mod.restore_state(g, state)

    r.act('restore', 'the guest', 'from its managed save, %s' % state,
          run=restore)


def _domain_xml(r: Recovering, step: journal.Step) -> None:
    g = r.guest()
    if g is not None and g.is_persistent():
        r.act(NOTHING, 'definition', 'the domain is persistent')
        return
    xml = str(step.data.get('xml'))

    def define() -> None:
        try:
            r.host.call(lambda conn: conn.defineXML(xml))
        except Exception as e:  # noqa: B902 - libvirt's, translated
            raise exception.LibvirtFailed(
                action='define', guest=r.j.guest_name, reason=str(e))

    r.act('define', 'the domain', 'from its saved XML (it is %s)' % (
        'transient' if g is not None else 'gone'), run=define)


def _rbd_clone(r: Recovering, step: journal.Step) -> None:
    pool, image = str(step.data.get('pool')), str(step.data.get('image'))
    c = r.collector()
    try:
        info = c.driver.info(pool, image)
    except exception.RbdFailed:
        r.act(NOTHING, '%s/%s' % (pool, image), 'there is no such image')
        return
    r.gc_actions(c.clone(pool, image, info, image))


def _rbd_snap(r: Recovering, step: journal.Step) -> None:
    pool, image = str(step.data.get('pool')), str(step.data.get('image'))
    name = str(step.data.get('snap'))
    c = r.collector()
    try:
        snaps = [s for s in c.driver.snaps(pool, image) if s.name == name]
    except exception.RbdFailed:
        snaps = []
    if not snaps:
        r.act(NOTHING, '%s/%s@%s' % (pool, image, name), 'there is no such '
              'snapshot')
        return
    r.gc_actions(c.snapshot(pool, image, snaps[0]))


HANDLERS: dict[str, Callable[[Recovering, journal.Step], None]] = {
    journal.TEMP_DIR: _temp_dir,
    journal.STORE_PARTIAL: _store_partial,
    journal.GLANCE_IMAGE: _glance_image,
    journal.GROUP_IMAGE: _group_image,
    journal.BLOCK_JOB: _block_job,
    journal.BACKUP_JOB: _backup_job,
    journal.CHECKPOINT: _checkpoint,
    journal.FREEZE: _freeze,
    journal.MANAGED_SAVE: _managed_save,
    journal.DOMAIN_XML: _domain_xml,
    journal.RBD_CLONE: _rbd_clone,
    journal.RBD_SNAP: _rbd_snap,
}
