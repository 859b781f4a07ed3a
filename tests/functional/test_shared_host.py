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

"""A host shared by root's command line and a nova-compute that runs as
another user (here ``nobody:nogroup``, no supplementary group): root's
snapshot, first on the host, makes the lock and journal directories in
that user's state directory, and the user then takes the same locks,
writes and recovers its journals, and passes the check of ``init_host``.

The user's part runs in a child of this process that drops to that user
(``setgroups``, ``setgid``, ``setuid``) after the modules are imported:
the test environment is root's alone, so a new interpreter of that user
could not import them.
"""

import json
import logging
import os
import pwd
import shutil
import stat
import traceback
import uuid

import pytest

from nova_snapshot_ext.cleanup import recovery
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.journal import undo
from tests.functional.conftest import make_conf
from tests.functional.test_cli import cli

USER = pwd.getpwnam('nobody')


class _Lines(logging.Handler):
    def __init__(self, lines):
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record):
        self.lines.append(record.getMessage())


def as_user(func):
    """``func()`` in a child process that runs as ``nobody`` (its group,
    no other): ``{'result': ..., 'error': ..., 'log': [warnings]}``.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = {'log': []}
        try:
            os.close(r)
            logging.getLogger().addHandler(_Lines(out['log']))
            os.setgroups([])
            os.setgid(USER.pw_gid)
            os.setuid(USER.pw_uid)
            out['result'] = func()
        except BaseException as e:  # noqa: B902 - reported to the parent
            out['error'] = '%s: %s' % (type(e).__name__, e)
            out['traceback'] = traceback.format_exc()
        finally:
            with os.fdopen(w, 'w') as f:
                json.dump(out, f, default=str)
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def owner(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture
def state(workdir):
    """The user's state directory, as a distribution makes it."""
    path = os.path.join(workdir, 'state')
    os.mkdir(path, 0o755)
    os.chown(path, USER.pw_uid, USER.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def conf_file(workdir, state):
    path = os.path.join(workdir, 'nse.conf')
    with open(path, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % state)
    return path


def _journal_left(conf, guest_uuid, scratch):
    """A journal with a step not done, as a killed snapshot leaves it."""
    with pytest.raises(RuntimeError):
        with journal.opened(conf.snapshot.journal_directory, guest_uuid,
                            'left', 'test:///default', None,
                            uuid.uuid4().hex) as j:
            j.add(journal.TEMP_DIR, path=scratch)
            os.mkdir(scratch)
            raise RuntimeError('killed')
    return j.path


def _nova_compute(conf, guest_uuid, guest_name, scratch):
    """What nova-compute does with the directories: init_host's check,
    the guest's lock and a slot, a journal written and recovered.
    """
    with locks.guest_lock(conf, guest_uuid, guest_name):
        with locks.host_slot(conf):
            pass
    locks.check(conf)
    _journal_left(conf, str(uuid.uuid4()), scratch)
    actions = recovery.recover(conf)
    return {'actions': [a.line() for a in actions],
            'scratch': os.path.exists(scratch)}


def test_root_first_then_the_nova_user(conf_file, workdir, state,
                                       qcow2_guest):
    # Root's command line is first on the host: a real snapshot makes the
    # lock directory, the guest's lock, the slots and the journal
    # directory in the user's state directory.
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'root',
               '--json')
    assert done.returncode == 0, done.stderr
    guest_uuid = qcow2_guest.dom.UUIDString()
    conf = make_conf(workdir)
    lock_dir = conf.snapshot.lock_path
    journals = conf.snapshot.journal_directory
    # A snapshot of root's killed: its journal, root's, stays for root.
    roots = _journal_left(conf, guest_uuid,
                          os.path.join(workdir, 'snap-root'))
    assert owner(roots)[::2] == (0, 0o600)

    # nova-compute, as the user: the same locks, a journal of its own
    # written and recovered, root's skipped with one warning line.
    scratch = os.path.join(state, 'snap-nova')
    # NOTE: nova-compute reads the package installed for it; this process
    # runs from a checkout that may be root's alone (a clone in a 0700
    # directory), so the undo's entry point is looked up before the switch.
    undo.handler(journal.TEMP_DIR)
    seen = as_user(lambda: _nova_compute(conf, guest_uuid, qcow2_guest.name,
                                         scratch))
    assert 'error' not in seen, seen.get('traceback')
    assert seen['result']['scratch'] is False
    assert any(line.startswith('left: remove %s' % scratch)
               for line in seen['result']['actions']), seen
    warned = [line for line in seen['log'] if roots in line]
    assert warned == ['Skipping the snapshot journal %s: it is root\'s and '
                      'user nobody cannot read it; "nova-snapshot-ext '
                      'recover" run as root recovers it.' % roots], seen
    assert os.listdir(journals) == [os.path.basename(roots)]

    # Which is because what root made there is the user's, as private as
    # root's own.
    me = (USER.pw_uid, USER.pw_gid)
    assert owner(lock_dir) == me + (0o700,)
    assert owner(journals) == me + (0o700,)
    names = sorted(os.listdir(lock_dir))
    assert 'snapshot-%s' % guest_uuid in names
    assert 'snapshot-slot-0' in names
    for name in names:
        assert owner(os.path.join(lock_dir, name)) == me + (0o600,), name

    # And root's command line takes the locks the user made.
    with locks.guest_lock(conf, guest_uuid, qcow2_guest.name):
        with locks.host_slot(conf):
            pass


def test_a_directory_of_roots_stops_the_nova_user_in_one_line(workdir,
                                                              state):
    # An earlier release's root command line made the lock directory
    # 0700 root; the user's nova-compute cannot use it.
    conf = make_conf(workdir)
    os.mkdir(conf.snapshot.lock_path, 0o700)

    def check():
        try:
            locks.check(conf)
        except exception.SnapshotError as e:
            return e.message
        return None

    def lock():
        try:
            with locks.guest_lock(conf, str(uuid.uuid4()), 'g'):
                return None
        except exception.SnapshotError as e:
            return e.message

    seen = as_user(check)
    assert 'error' not in seen, seen.get('traceback')
    assert seen['result'] == (
        'Invalid input: [snapshot] lock_path: %(path)s is owned by '
        'root:root, mode 0700, and user nobody cannot write to it: chown '
        'it to nobody (chown -R nobody: %(path)s) or set [snapshot] '
        'lock_path to a directory of nobody' % {
            'path': conf.snapshot.lock_path})
    seen = as_user(lock)
    assert 'error' not in seen, seen.get('traceback')
    assert seen['result'].startswith('Invalid input: cannot open the lock '
                                     'file %s/snapshot-' %
                                     conf.snapshot.lock_path), seen
