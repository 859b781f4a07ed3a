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

"""The journal of a snapshot in progress.

One small JSON file per snapshot, ``[snapshot] journal_directory/<id>.json``,
rewritten atomically (temporary file, fsync, rename, fsync of the
directory) each time it changes::

    {"version": 1, "id": "...", "created": "...",
     "owner": {"pid": 123, "start": 4567, "host": "compute-1",
               "boot": "<boot id>"},
     "guest": {"uuid": "...", "name": "..."}, "uri": "qemu:///system",
     "store": "glance+http://..." or null,
     "steps": [{"kind": "temp_dir", "path": "...", "done": false}, ...]}

A step is written *before* the thing it describes is made (a directory, a
block job, a managed save, ...), and marked ``done`` once that thing is
undone or no longer needs undoing. The file is removed when the snapshot
ends, unless something could not be undone: then ``recover``
(:mod:`nova_snapshot_ext.cleanup.recovery`) finishes the work. A step's data
are what recovery needs to find exactly what the snapshot made, and nothing
else.

New kinds of steps (a backup job, its NBD socket, scratch file and
checkpoint) are new ``kind`` values with their own data: the format does
not change. A reader that meets a kind it does not know reports it.

Code that makes something calls :func:`current` (the journal of the
snapshot that runs in this thread, or one that records nothing) and wraps
the making in :meth:`Journal.step`.
"""

from collections.abc import Iterator
import contextlib
import contextvars
import dataclasses
import datetime
import json
import os
import signal
import sys
from typing import Any

from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext import private

LOG = logging.getLogger(__name__)

VERSION = 1
SUFFIX = '.json'

#: Kinds of steps, and what their data are.
TEMP_DIR = 'temp_dir'            # path: a directory of ours
STORE_PARTIAL = 'store_partial'  # path: a file store's .partial directory
GLANCE_IMAGE = 'glance_image'    # id, store: a record we created
LOCATION = 'location'            # id, url: the data registered in Glance
BLOCK_JOB = 'block_job'          # disk, dest: our copy job into dest
BACKUP_JOB = 'backup_job'        # socket, disks: our pull-mode backup job
CHECKPOINT = 'checkpoint'        # name: a libvirt checkpoint of ours; forget:
#                                   drop its metadata only (bitmap kept)
DOMAIN_XML = 'domain_xml'        # xml: the persistent definition
MANAGED_SAVE = 'managed_save'    # state: running or paused, to restore
FREEZE = 'freeze'                # filesystems frozen; agent_timeout: the
#                                   domain's agent timeout we set, or None
RBD_SNAP = 'rbd_snap'            # pool, image, snap
RBD_CLONE = 'rbd_clone'          # pool, image (image id in Glance)
GROUP_IMAGE = 'group_image'      # id, store, group: an image of a group
#                                   (--all-disks) not yet whole
RESTORE_DISK = 'restore_disk'    # path: a disk file a restore writes
RESTORE_DOMAIN = 'restore_domain'  # uuid, name: the domain it defines
REVERT_DISK = 'revert_disk'      # path: a disk's new content being written
REVERT_SWAP = 'revert_swap'      # disks: [{disk, new, old}], keep_old: the
#                                   swap of old disks for new, finished
#                                   (never undone) once journaled
MEMORY_OVERLAY = 'memory_overlay'  # disks: [{target, disk, format,
#                                   overlay}]: the overlays a snapshot
#                                   with memory moves the disks onto
#: Steps that make nothing themselves but tell recovery how to treat the
#: others (a registered location makes the clone Glance's image).
MARKERS = (LOCATION,)
KINDS = (TEMP_DIR, STORE_PARTIAL, GLANCE_IMAGE, LOCATION, BLOCK_JOB,
         BACKUP_JOB, CHECKPOINT, DOMAIN_XML, MANAGED_SAVE, FREEZE, RBD_SNAP,
         RBD_CLONE, GROUP_IMAGE, RESTORE_DISK, RESTORE_DOMAIN, REVERT_DISK,
         REVERT_SWAP, MEMORY_OVERLAY)

#: Test hook: the name of a step kind. After the first step of that kind
#: is made, the process stops itself (SIGSTOP), so that a test can kill
#: it at exactly that point. Heard only by a Python started with ``-X``
#: :data:`TEST_HOOKS`.
TEST_STOP_AFTER = 'NSE_TEST_STOP_AFTER'
#: Test hook: as :data:`TEST_STOP_AFTER`, but once the step is written and
#: before its thing is made (a record about to be created).
TEST_STOP_BEFORE = 'NSE_TEST_STOP_BEFORE'
#: The ``-X`` option of the interpreter that turns the test hooks on.
#: NOTE: an environment variable alone must not be able to stop a
#: production snapshot (e.g. one inherited by nova-compute).
TEST_HOOKS = 'nse_test_hooks'


def _test_hook(name: str) -> str | None:
    if TEST_HOOKS not in sys._xoptions:
        return None
    return os.environ.get(name)


@dataclasses.dataclass
class Step:
    """One entry of a journal: its kind, its data, whether it is done."""

    kind: str
    data: dict[str, Any]
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.data, kind=self.kind, done=self.done)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> 'Step':
        data = {k: v for k, v in doc.items() if k not in ('kind', 'done')}
        return cls(kind=str(doc.get('kind')), data=data,
                   done=bool(doc.get('done')))


class Journal:
    """The journal of one snapshot, kept in ``path``.

    :param check: called before each new step; raises to stop the
        snapshot there (cancellation, a deadline).
    """

    def __init__(self, path: str, header: dict[str, Any],
                 steps: list[Step] | None = None,
                 check: Any = None) -> None:
        self.path = path
        self.header = header
        self.steps = steps or []
        self._check = check
        self._stopped = False

    # -- reading -------------------------------------------------------
    @property
    def id(self) -> str:
        return str(self.header.get('id') or
                   os.path.basename(self.path)[:-len(SUFFIX)])

    @property
    def guest_uuid(self) -> str | None:
        return (self.header.get('guest') or {}).get('uuid')

    @property
    def guest_name(self) -> str | None:
        return (self.header.get('guest') or {}).get('name')

    def as_dict(self) -> dict[str, Any]:
        return dict(self.header, version=VERSION,
                    steps=[s.as_dict() for s in self.steps])

    # -- writing -------------------------------------------------------
    def save(self) -> None:
        """Write the journal, atomically.

        :raises JournalUnwritable: e.g. its file system is full.
        """
        if not self.path:
            return
        try:
            durable.write_json(self.path, self.as_dict())
        except OSError as e:
            raise exception.JournalUnwritable(path=self.path,
                                              reason=e.strerror or str(e))

    def add(self, kind: str, **data: Any) -> Step:
        """Record that ``kind`` is about to be made; returns the step."""
        if self._check is not None:
            self._check()
        step = Step(kind, data)
        self.steps.append(step)
        self.save()
        if self.path and _test_hook(TEST_STOP_BEFORE) == kind:
            os.kill(os.getpid(), signal.SIGSTOP)
        return step

    @contextlib.contextmanager
    def step(self, kind: str, **data: Any) -> Iterator[Step]:
        """Record the step, then run the block that makes it."""
        step = self.add(kind, **data)
        yield step
        self.reached(kind)

    def done(self, step: Step | None) -> None:
        """The thing ``step`` made is undone, or needs no undoing."""
        if step is None or step.done:
            return
        step.done = True
        self.save()

    def pending(self) -> list[Step]:
        """The steps whose things may still need undoing (markers, which
        make nothing, aside).
        """
        return [s for s in self.steps if not s.done and s.kind not in MARKERS]

    def remove(self) -> None:
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
                durable.fsync_dir(os.path.dirname(self.path))

    def reached(self, kind: str) -> None:
        """The thing of the last step of ``kind`` is made.

        Only the test hook (:data:`TEST_STOP_AFTER`) listens.
        """
        if self._stopped or not self.path:
            return
        if _test_hook(TEST_STOP_AFTER) == kind:
            self._stopped = True
            os.kill(os.getpid(), signal.SIGSTOP)


class _NoJournal(Journal):
    """The journal of code that runs outside a snapshot: records nothing."""

    def __init__(self) -> None:
        super().__init__('', {})

    def save(self) -> None:
        pass


_current: contextvars.ContextVar[Journal] = contextvars.ContextVar(
    'nova_snapshot_ext_journal', default=_NoJournal())


def current() -> Journal:
    """The journal of the snapshot running in this thread (or green
    thread); one that records nothing outside a snapshot.
    """
    return _current.get()


@contextlib.contextmanager
def opened(directory: str, guest_uuid: str, guest_name: str, uri: str,
           store: str | None, snapshot_id: str,
           check: Any = None) -> Iterator[Journal]:
    """A new journal for one snapshot, current for the block.

    It is removed at the end of the block, unless the block failed and
    some step is not done: ``recover`` then finishes it.

    :param store: how recovery reaches the store (its spec), or None
        when it cannot.
    """
    path = os.path.join(directory, snapshot_id + SUFFIX)
    try:
        private.makedirs(directory)
    except OSError as e:
        raise exception.JournalUnwritable(path=path,
                                          reason=e.strerror or str(e))
    header = {
        'id': snapshot_id,
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        'owner': durable.owner(),
        'guest': {'uuid': guest_uuid, 'name': guest_name},
        'uri': uri,
        'store': store,
    }
    j = Journal(path, header, check=check)
    j.save()
    token = _current.set(j)
    failed = False
    try:
        yield j
    except BaseException:
        failed = True
        raise
    finally:
        _current.reset(token)
        left = j.pending()
        if failed and left:
            LOG.error('The snapshot of %(guest)s could not undo: %(steps)s; '
                      '"nova-snapshot-ext recover" will (journal %(path)s)',
                      {'guest': guest_name, 'path': path,
                       'steps': ', '.join(s.kind for s in left)})
        else:
            j.remove()


def read(path: str) -> Journal:
    """Read one journal file.

    :raises JournalNotOurs: another user's, that this one cannot read
        (that user's to recover).
    :raises JournalUnreadable: it is not a journal this version can read.
    """
    try:
        with open(path) as f:
            doc = json.load(f)
    except PermissionError as e:
        raise _not_ours(path, e)
    except (OSError, ValueError) as e:
        raise exception.JournalUnreadable(path=path, reason=str(e))
    if not isinstance(doc, dict) or not isinstance(doc.get('steps'), list):
        raise exception.JournalUnreadable(path=path,
                                          reason='it has no list of steps')
    version = doc.get('version')
    if version != VERSION:
        raise exception.JournalUnreadable(
            path=path, reason='it is of version %r, this release reads '
                              'version %d' % (version, VERSION))
    steps = []
    for entry in doc['steps']:
        if not isinstance(entry, dict):
            raise exception.JournalUnreadable(
                path=path, reason='a step is not an object: %r' % (entry,))
        steps.append(Step.from_dict(entry))
    header = {k: v for k, v in doc.items() if k not in ('steps', 'version')}
    return Journal(path, header, steps)


def _not_ours(path: str, error: OSError) -> exception.JournalUnreadable:
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return exception.JournalUnreadable(path=path, reason=str(error))
    if uid == os.geteuid():
        return exception.JournalUnreadable(path=path, reason=str(error))
    return exception.JournalNotOurs(path=path, owner=private.user_name(uid),
                                    user=private.user_name(os.geteuid()))


def paths(directory: str) -> list[str]:
    """The journal files in ``directory``, oldest first.

    :raises InvalidInput: this user may not list it.
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except PermissionError as e:
        private.check_writable(directory, '[snapshot] journal_directory')
        raise exception.InvalidInput(
            reason='[snapshot] journal_directory: cannot list %s: %s' % (
                directory, e.strerror or e))
    found = [os.path.join(directory, n) for n in names
             if n.endswith(SUFFIX) and not n.startswith('.')]
    return sorted(found, key=lambda p: (_mtime(p), p))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
