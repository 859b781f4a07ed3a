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

"""``nova-snapshot-ext recover``: put right what killed snapshots left.

It reads every journal (:mod:`nova_snapshot_ext.journal.journal`) and, for each
step not done, newest first, looks at what is there now and undoes only
what the step names:

* ``block_job``: aborts the disk's block job if it mirrors into the
  journaled delta (a job of anyone else is left alone);
* ``freeze``: thaws the guest's filesystems, and sets the agent timeout
  the freeze set back to libvirt's default;
* ``managed_save``: starts the guest from its managed save, back in the
  journaled state (a guest without a managed save is left alone);
* ``domain_xml``: defines the domain again from the journaled XML if it is
  transient or gone;
* ``temp_dir``, ``store_partial``: removes the directory;
* ``glance_image``: deletes the record the snapshot created, if it is
  still queued or saving;
* ``group_image``: deletes the image, committed or not, of a group of
  images (``--all-disks``) that was not whole;
* ``rbd_clone``, ``rbd_snap``: hands them to the collector of gc,
  which removes them, unless a location was registered (the clone may be
  Glance's image): then gc decides from Glance's status.

The handlers are in :mod:`nova_snapshot_ext.cleanup.undo`. Each look is made
again on every run, so recovery is idempotent; a step
is marked done once handled, and the journal removed once every step is.
A step of a kind this release does not know is reported and its journal
kept.

Which journals: a journal another user wrote and this one cannot read
(root's command line, nova-compute's user) is skipped with a warning, and
left to that user; a journal whose owner (pid and process start time, in
this boot) still runs is skipped, and so is another host's (a journal
directory shared between hosts) and one whose guest's lock
(:func:`nova_snapshot_ext.journal.locks.guest_lock`) another process holds.
Under
that lock the journal is read again: another ``recover`` may have
finished it meanwhile.
"""

from collections.abc import Callable
import dataclasses
import os
import time
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext.cleanup import gc as gc_mod
from nova_snapshot_ext.cleanup import undo
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

#: Verbs of actions (see :mod:`nova_snapshot_ext.cleanup.undo`).
NOTHING, SKIP, KEEP, UNKNOWN, REMOVE_JOURNAL = (
    undo.NOTHING, undo.SKIP, undo.KEEP, undo.UNKNOWN, undo.REMOVE_JOURNAL)
#: Verbs that change nothing and are not worth a warning.
QUIET = undo.QUIET
#: Seconds to wait for a libvirt job (a save) a killed client left.
DOMAIN_JOB_WAIT = 120
#: Seconds after which a temporary file of unknown writer is stale.
STALE_TMP = 60


@dataclasses.dataclass
class Action:
    """One thing recovery did (or, in a dry run, would do)."""

    journal: str
    guest: str
    verb: str
    target: str
    detail: str = ''
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self, dry_run: bool = False) -> str:
        verb = self.verb
        if self.error:
            verb = 'FAILED to ' + verb
        elif dry_run and verb not in (NOTHING, SKIP, KEEP, UNKNOWN):
            verb = 'would ' + verb
        text = '%s: %s %s' % (self.guest or '?', verb, self.target)
        if self.detail:
            text += ': ' + self.detail
        if self.error:
            text += ' (%s)' % self.error
        return text


class _NeverRegistered:
    """The store gc asks about clones whose location was never
    registered: Glance has no image of their data, for certain.
    """

    def sees_all_images(self) -> bool:
        return True

    def image_status(self, image_id: str) -> None:
        return None


class _Recovery:
    """Recovery of one journal."""

    def __init__(self, conf: cfg.ConfigOpts, j: journal.Journal,
                 host: host_mod.Host, dry_run: bool,
                 backends: backend_base.Backends | None) -> None:
        self.conf = conf
        self.j = j
        self.host = host
        self.dry_run = dry_run
        self.backends = backends
        self.actions: list[Action] = []
        self._guest: guest_mod.Guest | None = None
        self._looked_up = False
        self._store: store_base.ImageStore | None = None
        self._collector: gc_mod.Collector | None = None
        self._own_driver: Any = None

    # -- helpers -------------------------------------------------------
    def act(self, verb: str, target: str, detail: str = '',
            run: Callable[[], Any] | None = None) -> None:
        action = Action(self.j.id, self.j.guest_name or '', verb, target,
                        detail)
        self.actions.append(action)
        if run is None or self.dry_run:
            return
        try:
            run()
            LOG.info('recover: %s', action.line())
        except exception.SnapshotError as e:
            action.error = e.message
            LOG.error('recover: %s', action.line())

    def guest(self) -> guest_mod.Guest | None:
        if not self._looked_up:
            self._looked_up = True
            try:
                self._guest = self.host.get_guest(self.j.guest_uuid or '')
            except exception.GuestNotFound:
                self._guest = None
            if self._guest is not None and not self.dry_run:
                # NOTE: a save the killed client asked for goes on in
                # libvirtd; look at the guest once it is over.
                self._guest.wait_no_job(DOMAIN_JOB_WAIT)
        return self._guest

    def active_guest(self) -> guest_mod.Guest | None:
        g = self.guest()
        if g is None or not g.is_active():
            return None
        return g

    def has_location(self) -> bool:
        return any(s.kind == journal.LOCATION for s in self.j.steps)

    # -- the run -------------------------------------------------------
    def run(self) -> None:
        failed = unknown = False
        for step in reversed(self.j.steps):
            if step.done or step.kind in journal.MARKERS:
                continue
            handler = undo.HANDLERS.get(step.kind)
            if handler is None:
                unknown = True
                self.act(UNKNOWN, step.kind, 'not known to this release, '
                         'left as it is: %s' % undo.short(step.data))
                continue
            before = len(self.actions)
            try:
                handler(self, step)
            except exception.SnapshotError as e:
                self.actions.append(Action(
                    self.j.id, self.j.guest_name or '', 'recover',
                    step.kind, undo.short(step.data), error=e.message))
            errors = any(a.error for a in self.actions[before:])
            failed = failed or errors
            if not errors and not self.dry_run:
                self.j.done(step)
        self.close()
        if failed or unknown:
            self.act(KEEP, 'journal %s' % self.j.path,
                     'run recover again once the errors above are dealt '
                     'with' if failed else 'a newer release may know it')
            return
        self.act(REMOVE_JOURNAL, self.j.path, run=self.j.remove)

    def close(self) -> None:
        if self._own_driver is not None:
            self._own_driver.close()
            self._own_driver = None

    # -- stores and Ceph -----------------------------------------------
    def store(self, spec: str | None) -> store_base.ImageStore | None:
        if not spec:
            return None
        if self._store is None or self._store.spec != spec:
            self._store = store_base.load(self.conf, spec)
        return self._store

    def collector(self) -> gc_mod.Collector:
        if self._collector is None:
            driver = None
            if self.backends is not None:
                driver = self.backends.get('rbd').storage_driver()
            if driver is None:
                from nova_snapshot_ext.storage import rbd as rbd_storage
                driver = self._own_driver = rbd_storage.RBDDriver(self.conf)
            store: Any = _NeverRegistered()
            if self.has_location():
                store = self.store(self.j.header.get('store'))
                if store is None:
                    raise exception.InvalidInput(
                        reason='a location was registered and the store '
                               'cannot be reached from here; run '
                               '"nova-snapshot-ext gc"')
            self._collector = gc_mod.Collector(self.conf, driver, store,
                                               min_age=0)
        return self._collector

    def gc_actions(self, actions: list[gc_mod.Action]) -> None:
        for a in actions:
            self.act(a.verb, a.target, a.reason, run=a.run)


# -- entry points -----------------------------------------------------------
def _journals(conf: cfg.ConfigOpts, actions: list[Action],
              dry_run: bool) -> list[journal.Journal]:
    directory = conf.snapshot.journal_directory
    found = []
    for path in journal.paths(directory):
        try:
            found.append(journal.read(path))
        except exception.JournalNotOurs as e:
            # NOTE: another user's (root's command line, nova-compute):
            # that user recovers it; neither an error nor ours to remove.
            LOG.warning('%s', e.message)
        except exception.JournalUnreadable as e:
            actions.append(Action(os.path.basename(path), '', KEEP, path,
                                  error=e.message))
    _remove_stale_tmp(directory, dry_run)
    return found


def _remove_stale_tmp(directory: str, dry_run: bool) -> None:
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if dry_run or not name.endswith(durable.TMP_SUFFIX):
            continue
        stale = durable.stale_tmp(name)
        try:
            if stale or (stale is None and
                         time.time() - os.stat(path).st_mtime > STALE_TMP):
                os.unlink(path)
        except OSError:
            pass


def _alive(j: journal.Journal) -> Action | None:
    owner = j.header.get('owner') or {}
    if not durable.owner_here(owner):
        # NOTE: a journal directory shared between hosts: the other host
        # recovers its own snapshots; their undo is not ours to run.
        return Action(j.id, j.guest_name or '', SKIP, 'journal %s' % j.path,
                      'its snapshot ran on host %s' % owner.get('host'))
    if durable.owner_alive(owner) and owner.get('pid') != os.getpid():
        return Action(j.id, j.guest_name or '', SKIP, 'journal %s' % j.path,
                      'its snapshot is still running (pid %s)' %
                      owner.get('pid'))
    return None


def _again(j: journal.Journal) -> journal.Journal | None:
    """``j`` as it is now on disk, None when it is gone (or became
    unreadable: the next run reports it): what was read before the
    guest's lock was taken may be stale.
    """
    try:
        return journal.read(j.path)
    except exception.JournalUnreadable:
        return None


def recover_guest(conf: cfg.ConfigOpts, host: host_mod.Host,
                  guest_uuid: str,
                  backends: backend_base.Backends | None = None,
                  dry_run: bool = False) -> list[Action]:
    """Recover the journals of one guest. The caller holds the guest's
    lock.
    """
    actions: list[Action] = []
    for j in _journals(conf, actions, dry_run):
        if j.guest_uuid != guest_uuid:
            continue
        alive = _alive(j)
        if alive is not None:
            actions.append(alive)
            continue
        r = _Recovery(conf, j, host, dry_run, backends)
        r.run()
        actions += r.actions
    return actions


def recover(conf: cfg.ConfigOpts, dry_run: bool = False,
            uri: str | None = None, host: host_mod.Host | None = None,
            backends: backend_base.Backends | None = None) -> list[Action]:
    """Recover every journal whose snapshot is no longer running.

    :param uri: the libvirt URI of the guests; by default each journal's.
    :param host: a connection to use (a service's) for journals of its
        URI.
    """
    actions: list[Action] = []
    hosts: dict[str, host_mod.Host] = {}
    if host is not None:
        hosts[host.uri] = host
    try:
        for j in _journals(conf, actions, dry_run):
            alive = _alive(j)
            if alive is not None:
                actions.append(alive)
                continue
            j_uri = uri or j.header.get('uri') or \
                conf.snapshot_libvirt.connection_uri
            if j_uri not in hosts:
                hosts[j_uri] = host_mod.Host(j_uri)
            try:
                with locks.guest_lock(conf, j.guest_uuid or 'unknown',
                                      j.guest_name or ''):
                    fresh = _again(j)
                    if fresh is None:
                        continue
                    r = _Recovery(conf, fresh, hosts[j_uri], dry_run,
                                  backends)
                    r.run()
            except exception.SnapshotInProgress:
                actions.append(Action(
                    j.id, j.guest_name or '', SKIP, 'journal %s' % j.path,
                    'a snapshot of the guest is running'))
                continue
            actions += r.actions
    finally:
        for h in hosts.values():
            if h is not host:
                h.close()
    return actions
