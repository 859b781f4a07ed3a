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

"""The journal's format, and what recovery makes of journals it cannot
act on (unknown kinds, corrupt files, live owners). The steps themselves
are recovered against the real daemons in tests/functional.
"""

import json
import os
import socket
import subprocess
import sys

import pytest

from nova_snapshot_ext.cleanup import recovery
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from tests import polling

GUEST = '8d7c5a0e-2b1f-4c3a-9e6d-0f1a2b3c4d5e'


def journal_dir(conf):
    return conf.snapshot.journal_directory


def write(conf, name, doc):
    os.makedirs(journal_dir(conf), exist_ok=True)
    path = os.path.join(journal_dir(conf), name + journal.SUFFIX)
    with open(path, 'w') as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def doc(steps, owner=None, **header):
    base = {'version': 1, 'id': 'j1', 'guest': {'uuid': GUEST, 'name': 'g'},
            'uri': 'test:///default', 'store': None,
            'owner': owner or {'pid': 0, 'start': 0,
                               'host': socket.gethostname()},
            'steps': steps}
    base.update(header)
    return base


def test_steps_are_written_before_and_marked_done(conf):
    with journal.opened(journal_dir(conf), GUEST, 'g', 'qemu:///system',
                        'file', 'snap-1') as j:
        assert journal.current() is j
        step = j.add(journal.TEMP_DIR, path='/tmp/snap-x')
        on_disk = journal.read(j.path)
        assert on_disk.header['owner']['pid'] == os.getpid()
        assert on_disk.guest_uuid == GUEST
        assert [(s.kind, s.data, s.done) for s in on_disk.steps] == [
            ('temp_dir', {'path': '/tmp/snap-x'}, False)]
        j.done(step)
        assert journal.read(j.path).steps[0].done
        # Atomic rewrites leave no temporary file.
        assert os.listdir(journal_dir(conf)) == ['snap-1.json']
    assert not os.path.exists(j.path)
    assert not journal.current().path, 'a journal stayed current'


def test_a_failure_that_left_something_keeps_the_journal(conf):
    with pytest.raises(RuntimeError):
        with journal.opened(journal_dir(conf), GUEST, 'g', 'qemu:///system',
                            None, 'snap-2') as j:
            j.add(journal.BLOCK_JOB, disk='vda', dest='/tmp/d.qcow2')
            j.add(journal.LOCATION, id='x', url='rbd://a/b/c/snap')
            raise RuntimeError('boom')
    kept = journal.read(j.path)
    assert [s.kind for s in kept.pending()] == ['block_job']


def test_a_failure_that_undid_everything_removes_the_journal(conf):
    with pytest.raises(RuntimeError):
        with journal.opened(journal_dir(conf), GUEST, 'g', 'qemu:///system',
                            None, 'snap-3') as j:
            j.done(j.add(journal.TEMP_DIR, path='/tmp/snap-y'))
            # A marker makes nothing to undo.
            j.add(journal.LOCATION, id='x', url='rbd://a/b/c/snap')
            raise RuntimeError('boom')
    assert not os.path.exists(j.path)


def test_the_check_runs_before_each_step(conf):
    def stop():
        raise exception.SnapshotCancelled(guest='g', reason='SIGTERM')

    with pytest.raises(exception.SnapshotCancelled):
        with journal.opened(journal_dir(conf), GUEST, 'g', 'qemu:///system',
                            None, 'snap-4', check=stop) as j:
            j.add(journal.TEMP_DIR, path='/tmp/snap-z')
    # Nothing was recorded, so nothing is left to recover.
    assert not os.path.exists(j.path)


def test_outside_a_snapshot_nothing_is_recorded(conf):
    j = journal.current()
    j.done(j.add(journal.TEMP_DIR, path='/tmp/x'))
    assert not os.path.exists(journal_dir(conf))


@pytest.mark.parametrize('content,reason', [
    ('{not json', 'Expecting property name'),
    ('[]', 'no list of steps'),
    (json.dumps({'version': 2, 'steps': []}), 'of version 2'),
    (json.dumps({'version': 1, 'steps': ['x']}), 'a step is not an object'),
])
def test_unreadable_journals_are_reported_and_kept(conf, content, reason):
    path = write(conf, 'bad', content)
    actions = recovery.recover(conf)
    [action] = actions
    assert action.verb == recovery.KEEP and action.target == path
    assert reason in action.error
    assert 'remove it' in action.error
    assert os.path.exists(path)


def test_unknown_kinds_are_reported_and_the_journal_kept(conf, tmp_path):
    scratch = tmp_path / 'tmp' / 'snap-abc'
    scratch.mkdir(parents=True)
    path = write(conf, 'j1', doc([
        {'kind': 'temp_dir', 'path': str(scratch)},
        {'kind': 'future_job', 'disk': 'vda', 'socket': '/run/x.sock'}]))
    actions = recovery.recover(conf)
    lines = [a.line() for a in actions]
    assert lines[0] == (
        'g: unknown step future_job: not known to this release, left as it '
        'is: disk=vda, socket=/run/x.sock')
    # The known steps are still recovered, and marked done.
    assert lines[1] == 'g: remove %s: temporary directory' % scratch
    assert not scratch.exists()
    assert actions[-1].verb == recovery.KEEP
    kept = journal.read(path)
    assert [s.kind for s in kept.steps if not s.done] == ['future_job']
    # Idempotent: a second run does the same, and nothing more.
    again = recovery.recover(conf)
    assert [a.verb for a in again] == [recovery.UNKNOWN, recovery.KEEP]


def test_a_dry_run_changes_nothing(conf, tmp_path):
    scratch = tmp_path / 'snap-dry'
    scratch.mkdir()
    path = write(conf, 'j1', doc([{'kind': 'temp_dir',
                                   'path': str(scratch)}]))
    actions = recovery.recover(conf, dry_run=True)
    assert [a.line(dry_run=True) for a in actions] == [
        'g: would remove %s: temporary directory' % scratch,
        'g: would remove journal %s' % path]
    assert scratch.exists() and os.path.exists(path)
    recovery.recover(conf)
    assert not scratch.exists() and not os.path.exists(path)


def test_only_our_directories_are_removed(conf, tmp_path):
    theirs = tmp_path / 'important'
    theirs.mkdir()
    write(conf, 'j1', doc([
        {'kind': 'temp_dir', 'path': str(theirs)},
        {'kind': 'store_partial', 'path': str(theirs)},
        {'kind': 'temp_dir', 'path': 'snap-relative'}]))
    actions = recovery.recover(conf)
    assert [a.verb for a in actions[:3]] == [recovery.KEEP] * 3
    assert theirs.exists()


def test_the_journal_of_a_live_process_is_skipped(conf, tmp_path):
    scratch = tmp_path / 'snap-live'
    scratch.mkdir()
    other = subprocess.Popen([sys.executable, '-c',
                              'import sys; sys.stdin.read()'],
                             stdin=subprocess.PIPE)
    try:
        owner = {'pid': other.pid, 'start': durable.process_start(other.pid),
                 'host': os.uname().nodename}
        path = write(conf, 'j1', doc([{'kind': 'temp_dir',
                                       'path': str(scratch)}], owner=owner))
        [action] = recovery.recover(conf)
        assert action.verb == recovery.SKIP
        assert 'still running (pid %d)' % other.pid in action.detail
        assert scratch.exists()
    finally:
        other.communicate(b'')
    # Its pid is gone (or reused, with another start time): recovered.
    recovery.recover(conf)
    assert not scratch.exists() and not os.path.exists(path)


def test_owner_alive_needs_the_same_start_time():
    me = {'pid': os.getpid(), 'start': durable.process_start(os.getpid()),
          'host': os.uname().nodename}
    assert durable.owner_alive(me)
    assert not durable.owner_alive(dict(me, start=me['start'] + 1))
    assert not durable.owner_alive(dict(me, host='another-host'))
    assert not durable.owner_alive({})
    # The same pid and start time in another boot: not this process.
    assert durable.owner_alive(durable.owner())
    assert not durable.owner_alive(dict(durable.owner(), boot='0' * 32))


def test_another_hosts_journal_is_left_to_that_host(conf, tmp_path):
    # A journal directory shared between hosts: the other host's
    # snapshot may be running, and its undo is not ours.
    scratch = tmp_path / 'snap-theirs'
    scratch.mkdir()
    path = write(conf, 'j1', doc([{'kind': 'temp_dir', 'path': str(scratch)}],
                                 owner={'pid': 1, 'start': 1,
                                        'host': 'compute-2'}))
    [action] = recovery.recover(conf)
    assert action.verb == recovery.SKIP
    assert 'ran on host compute-2' in action.detail
    assert scratch.exists() and os.path.exists(path)


def test_a_journal_finished_meanwhile_is_not_replayed(conf, tmp_path,
                                                      monkeypatch):
    # Two recovers at once: the second read the journal before the first
    # finished it under the guest's lock; it must not run it again.
    scratch = tmp_path / 'snap-once'
    scratch.mkdir()
    path = write(conf, 'j1', doc([{'kind': 'temp_dir',
                                   'path': str(scratch)}]))
    read = journal.read

    def read_then_other_recover(p):
        j = read(p)
        if not hasattr(read_then_other_recover, 'done'):
            read_then_other_recover.done = True
            os.unlink(path)
            scratch.mkdir(exist_ok=True)  # someone's new directory
            (scratch / 'theirs').write_text('x')
        return j

    monkeypatch.setattr(journal, 'read', read_then_other_recover)
    actions = recovery.recover(conf)
    assert actions == []
    assert (scratch / 'theirs').exists()


def _state(pid):
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0]


@pytest.mark.parametrize('hooks', [False, True])
def test_the_stop_hook_needs_the_interpreter_option(conf, hooks):
    code = ('import sys\n'
            'from nova_snapshot_ext.journal import journal\n'
            'with journal.opened(sys.argv[1], "u", "g", "test:///default", '
            'None, "s1"):\n'
            '    journal.current().add(journal.TEMP_DIR, path="/x")\n'
            'print("went on")\n')
    cmd = [sys.executable] + (['-X', journal.TEST_HOOKS] if hooks else [])
    proc = subprocess.Popen(
        cmd + ['-c', code, journal_dir(conf)], stdout=subprocess.PIPE,
        text=True, env=dict(os.environ, **{
            journal.TEST_STOP_BEFORE: journal.TEMP_DIR}))
    try:
        if not hooks:
            assert proc.communicate(timeout=60)[0] == 'went on\n'
            return

        def stopped():
            assert proc.poll() is None, 'it went on'
            return _state(proc.pid) == 'T'

        polling.wait_until(stopped, 60, 0.05, 'it did not stop')
    finally:
        proc.kill()
        proc.communicate()


def test_a_journal_that_cannot_be_written_fails_the_snapshot_early(
        conf, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    with pytest.raises(exception.JournalUnwritable,
                       match='Cannot write the snapshot journal .*/file/'
                             'j.json: File exists'):
        with journal.opened(str(blocker), GUEST, 'g', 'qemu:///system',
                            None, 'j'):
            pytest.fail('the snapshot ran without a journal')


def test_a_dead_writers_temporary_file_is_removed_at_once(conf):
    # A writer killed between its temporary file and the rename leaves
    # the file behind; a live writer's file is left alone.
    os.makedirs(journal_dir(conf))
    code = ('import tempfile, sys\n'
            'from nova_snapshot_ext.journal import durable\n'
            'tempfile.mkstemp(prefix=durable._tmp_prefix(),\n'
            '                 suffix=durable.TMP_SUFFIX, dir=sys.argv[1])\n')
    subprocess.run([sys.executable, '-c', code, journal_dir(conf)],
                   check=True)
    [dead] = os.listdir(journal_dir(conf))
    live = durable._tmp_prefix() + 'x' + durable.TMP_SUFFIX
    open(os.path.join(journal_dir(conf), live), 'w').close()
    assert recovery.recover(conf) == []
    assert os.listdir(journal_dir(conf)) == [live]
