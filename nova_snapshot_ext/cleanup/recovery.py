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

Each handler is declared by the module that makes its kind of step
(:mod:`nova_snapshot_ext.journal.undo`). Each look is made
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
import os
import time
from typing import Any, TypeVar

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

Action = undo.Action
#: Verbs of actions (see :mod:`nova_snapshot_ext.journal.undo`).
NOTHING, SKIP, KEEP, UNKNOWN, REMOVE_JOURNAL = (
    undo.NOTHING, undo.SKIP, undo.KEEP, undo.UNKNOWN, undo.REMOVE_JOURNAL)
#: Verbs that change nothing and are not worth a warning.
QUIET = undo.QUIET
#: Seconds to wait for a libvirt job (a save) a killed client left.
DOMAIN_JOB_WAIT = 120
#: Seconds after which a temporary file of unknown writer is stale.
STALE_TMP = 60

T = TypeVar('T')


def _action(j: journal.Journal, verb: str, target: str, detail: str = '',
            error: str | None = None) -> Action:
    return Action(verb, target, detail, error=error, journal=j.id,
                  guest=j.guest_name or '')


class _Recovery:
    """Recovery of one journal: the :class:`undo.Recovering` its step
    kinds' handlers are given.
    """

    def __init__(self, conf: cfg.ConfigOpts, j: journal.Journal,
                 host: host_mod.Host, dry_run: bool, backends: Any) -> None:
        self.conf = conf
        self.j = j
        self.host = host
        self.dry_run = dry_run
        self.backends = backends
        self.actions: list[Action] = []
        self._guest: guest_mod.Guest | None = None
        self._looked_up = False
        self._store: store_base.ImageStore | None = None
        self._cache: dict[str, Any] = {}
        self._closers: list[Callable[[], Any]] = []

    # -- what a handler is given ---------------------------------------
    def act(self, verb: str, target: str, detail: str = '',
            run: Callable[[], Any] | None = None) -> None:
        action = _action(self.j, verb, target, detail)
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

    def store(self, spec: str | None) -> store_base.ImageStore | None:
        if not spec:
            return None
        if self._store is None or self._store.spec != spec:
            self._store = store_base.load(self.conf, spec)
        return self._store

    def cached(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def on_close(self, close: Callable[[], Any]) -> None:
        self._closers.append(close)

    # -- the run -------------------------------------------------------
    def run(self) -> None:
        failed = unknown = False
        for step in reversed(self.j.steps):
            if step.done or step.kind in journal.MARKERS:
                continue
            handler = undo.handler(step.kind)
            if handler is None:
                unknown = True
                self.act(UNKNOWN, step.kind, 'not known to this release, '
                         'left as it is: %s' % undo.short(step.data))
                continue
            before = len(self.actions)
            try:
                handler(self, step)
            except exception.SnapshotError as e:
                self.actions.append(_action(
                    self.j, 'recover', step.kind, undo.short(step.data),
                    error=e.message))
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
        while self._closers:
            self._closers.pop()()
        self._cache.clear()


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
            actions.append(Action(KEEP, path, error=e.message,
                                  journal=os.path.basename(path), guest=''))
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
        return _action(j, SKIP, 'journal %s' % j.path,
                       'its snapshot ran on host %s' % owner.get('host'))
    if durable.owner_alive(owner) and owner.get('pid') != os.getpid():
        return _action(j, SKIP, 'journal %s' % j.path,
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
                  backends: Any = None,
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
            backends: Any = None) -> list[Action]:
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
                actions.append(_action(
                    j, SKIP, 'journal %s' % j.path,
                    'a snapshot of the guest is running'))
                continue
            actions += r.actions
    finally:
        for h in hosts.values():
            if h is not host:
                h.close()
    return actions
