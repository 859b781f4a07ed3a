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

"""``gc`` sweeps queued Glance records of the command's and local
leftovers (temporary and partial directories) that no live snapshot owns,
made for real: commands killed at their step, and one still running.
"""

import os
import subprocess
import sys

from nova_snapshot_ext.journal import journal
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import GuestBefore


class Commands:
    def __init__(self, workdir):
        self.state = os.path.join(workdir, 'state')
        self.conf_file = os.path.join(workdir, 'nse.conf')
        with open(self.conf_file, 'w') as f:
            f.write('[DEFAULT]\nstate_path = %s\n' % self.state)
            # No Ceph here: gc says so and sweeps the rest.
            f.write('[snapshot_rbd]\nceph_conf = %s\n' % os.path.join(
                workdir, 'no-ceph.conf'))

    def cmd(self, *args):
        return [sys.executable, '-X', journal.TEST_HOOKS, '-m',
                'nova_snapshot_ext.cmd.main',
                '--config-file', self.conf_file, *args]

    def stopped(self, guest, store, step, *args):
        """A snapshot stopped right after ``step``; returns its process
        and what its journal names.
        """
        proc = subprocess.Popen(
            self.cmd('snapshot', guest.name, '--name', 'swept', '--store',
                     store, *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **{journal.TEST_STOP_AFTER: step}))
        guest_mod.wait_stopped(proc)
        paths = journal.paths(os.path.join(self.state, 'snapshots'))
        made = {}
        for path in paths:
            j = journal.read(path)
            if j.header['owner']['pid'] == proc.pid:
                made['journal'] = path
                for s in j.steps:
                    made.setdefault(s.kind, []).append(s.data)
        return proc, made

    def killed(self, *args):
        """Killed at its step, its journal lost: only gc finds what it
        left (with the journal, the next snapshot of the guest would
        recover it first).
        """
        proc, made = self.stopped(*args)
        proc.kill()
        proc.communicate()
        os.unlink(made['journal'])
        return made

    def run(self, *args):
        done = subprocess.run(self.cmd(*args), capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def test_gc_sweeps_what_no_live_snapshot_owns(workdir, glance_url,
                                              qcow2_guest, raw_guest):
    cmds = Commands(workdir)
    store = 'glance+' + glance_url
    before = GuestBefore(qcow2_guest)
    # Killed: its temporary directory and partial image stay.
    local = cmds.killed(qcow2_guest, 'file', journal.TEMP_DIR,
                        '--method', 'live')
    [temp] = [d['path'] for d in local[journal.TEMP_DIR]]
    [partial] = [d['path'] for d in local[journal.STORE_PARTIAL]]
    # Killed: its queued record stays.
    [record] = [d['id'] for d in cmds.killed(
        qcow2_guest, store, journal.GLANCE_IMAGE)[journal.GLANCE_IMAGE]]
    # Running (stopped, alive): everything it made is its own.
    live, owned = cmds.stopped(raw_guest, store, journal.GLANCE_IMAGE)
    [live_record] = [d['id'] for d in owned[journal.GLANCE_IMAGE]]
    client = glance_stack.client(glance_url)
    try:
        assert os.path.isdir(temp) and os.path.isdir(partial)
        assert client.images.get(record)['status'] == 'queued'
        assert client.images.get(live_record)['status'] == 'queued'

        # Younger than the default minimum age (an hour): nothing.
        young = cmds.run('gc', '--store', store, '--dry-run')
        assert record not in young and temp not in young, young

        dry = cmds.run('gc', '--store', store, '--dry-run', '--min-age',
                       '0')
        lines = dry.splitlines()
        assert any(line.startswith('would remove directory %s: temporary '
                                   'directory left by an interrupted '
                                   'snapshot' % temp) for line in lines), dry
        assert any(line.startswith('would remove directory %s: partial '
                                   'image' % partial)
                   for line in lines), dry
        assert any(line.startswith('would delete image record Glance at '
                                   "%s image %s ('swept'): queued for" % (
                                       glance_url, record))
                   for line in lines), dry
        assert 'keep Ceph: no cluster to look at' in dry
        assert live_record not in dry
        # A dry run changes nothing.
        assert os.path.isdir(temp) and os.path.isdir(partial)
        assert client.images.get(record)['status'] == 'queued'

        done = cmds.run('gc', '--store', store, '--min-age', '0')
        assert 'remove directory %s' % temp in done
        assert not os.path.exists(temp) and not os.path.exists(partial)
        assert record not in glance_stack.image_ids(glance_url)
        # The live snapshot's record and files are untouched.
        assert client.images.get(live_record)['status'] == 'queued'
    finally:
        live.kill()
        live.communicate()
    cmds.run('recover')
    assert live_record not in glance_stack.image_ids(glance_url)
    assert os.listdir(os.path.join(cmds.state, 'snapshots')) == []
    assert_guest_as_before(qcow2_guest, before)


def test_gc_into_the_file_store_sweeps_local_leftovers(
        workdir, qcow2_guest):
    cmds = Commands(workdir)
    made = cmds.killed(qcow2_guest, 'file', journal.STORE_PARTIAL)
    [partial] = [d['path'] for d in made[journal.STORE_PARTIAL]]
    out = cmds.run('gc', '--store', 'file', '--min-age', '0', '--json')
    assert '"remove directory"' in out and partial in out
    assert not os.path.exists(partial)
    assert 'Ceph' not in out
