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

"""Locks shared by every process of the host that snapshots guests.

* :func:`guest_lock`: one snapshot (or recovery) of a guest at a time, in
  ``[snapshot] lock_path``, the same directory for nova-compute and the
  command line;
* :func:`host_slot`: at most ``[snapshot] max_concurrent`` snapshots of the
  command line at a time on the host.

Both are file locks (``fcntl``): the kernel releases them when their
process dies, however it dies. Their files are made before a lock opens
them (:func:`nova_snapshot_ext.private.lock_file`): root's command line
gives the ones it makes in nova-compute's directory to nova-compute's
user. :func:`check` tells whether this process can use the directories
it shares with the others.
"""

from collections.abc import Callable, Iterator
import contextlib
import os
from typing import Any

from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext import private
from nova_snapshot_ext import retry

LOG = logging.getLogger(__name__)

#: Seconds between two tries for a free slot.
SLOT_INTERVAL = 0.5


def lock_path(conf: cfg.ConfigOpts) -> str:
    """``[snapshot] lock_path``, created if missing."""
    path = conf.snapshot.lock_path
    _made('create the lock directory', path, private.makedirs)
    return path


def _made(what: str, path: str, make: Callable[[str], Any]) -> None:
    """``make(path)``; an OSError is our one line naming ``what``.

    :raises InvalidInput: it could not be made.
    """
    try:
        make(path)
    except OSError as e:
        raise exception.InvalidInput(
            reason='cannot %s %s ([snapshot] lock_path): %s' % (
                what, path, e.strerror or e))


def guest_lock_name(guest_uuid: str) -> str:
    return 'snapshot-%s' % guest_uuid


def _lock_file(directory: str, name: str) -> str:
    """The lock file ``name`` in ``directory``, made if missing (see
    :func:`nova_snapshot_ext.private.lock_file`); returns ``directory``.
    """
    _made('open the lock file', os.path.join(directory, name),
          private.lock_file)
    return directory


def check(conf: cfg.ConfigOpts) -> None:
    """Check that this process can take the locks and write the journals
    it shares with the other processes of the host (nova-compute, the
    command line of root): ``[snapshot] lock_path`` and its lock files,
    and ``[snapshot] journal_directory``, both made if missing.

    :raises InvalidInput: it cannot; one line that names the directory
        (or lock file), its owner and mode, and the fix.
    """
    locks = conf.snapshot.lock_path
    _writable_dir(locks, '[snapshot] lock_path')
    _writable_dir(conf.snapshot.journal_directory,
                  '[snapshot] journal_directory')
    for name in sorted(os.listdir(locks)):
        if name.startswith('snapshot-'):
            private.check_writable(os.path.join(locks, name),
                                   '[snapshot] lock_path', file=True)


def _writable_dir(path: str, option: str) -> None:
    try:
        private.makedirs(path)
    except OSError as e:
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(parent):
            private.check_writable(parent, option)
        raise exception.InvalidInput(
            reason='%s: cannot create %s: %s' % (option, path,
                                                 e.strerror or e))
    private.check_writable(path, option)


@contextlib.contextmanager
def guest_lock(conf: cfg.ConfigOpts, guest_uuid: str,
               guest_name: str) -> Iterator[None]:
    """Hold the guest's lock for the block, without waiting.

    :raises SnapshotInProgress: another process (or thread) holds it.
    """
    try:
        name = guest_lock_name(guest_uuid)
        with lockutils.lock(name, external=True, blocking=False,
                            lock_path=_lock_file(lock_path(conf), name)):
            yield
    except lockutils.AcquireLockFailedException:
        raise exception.SnapshotInProgress(guest=guest_name)


@contextlib.contextmanager
def shared_file_lock(conf: cfg.ConfigOpts, name: str) -> Iterator[None]:
    """Hold the host-wide lock ``name`` for the block, waiting for it
    (e.g. around a file that several processes update).
    """
    with lockutils.lock(name, external=True,
                        lock_path=_lock_file(lock_path(conf), name)):
        yield


@contextlib.contextmanager
def host_slot(conf: cfg.ConfigOpts,
              check: Callable[[], None] | None = None) -> Iterator[None]:
    """One of ``[snapshot] max_concurrent`` host-wide slots for the block,
    waiting for one as long as it takes (saying so once).

    :param check: called while waiting; raises to stop waiting
        (cancellation, a deadline).
    """
    count = conf.snapshot.max_concurrent
    if not count:
        yield
        return
    path = lock_path(conf)
    names = ['snapshot-slot-%d' % i for i in range(count)]
    slots = [lockutils.external_lock(n, lock_path=_lock_file(path, n))
             for n in names]
    said: list[bool] = []

    def take() -> lockutils.InterProcessLock | None:
        if check is not None:
            check()
        for slot in slots:
            if slot.acquire(blocking=False):
                return slot
        if not said:
            said.append(True)
            LOG.warning('Waiting: %(n)d snapshots are running on this host '
                        '([snapshot] max_concurrent = %(n)d)', {'n': count})
        return None

    held = retry.poll(take, lambda s: s is not None, timeout=float('inf'),
                      interval=SLOT_INTERVAL)
    assert held is not None  # poll() waits with no time limit
    if said:
        LOG.info('A snapshot slot is free; going on')
    try:
        yield
    finally:
        held.release()
