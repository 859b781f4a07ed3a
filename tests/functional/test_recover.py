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

"""The kill matrix: the real command, stopped at each step of each method,
then SIGKILLed (and ``recover`` run) or sent SIGTERM.

The command stops itself right after a named step is made (the journal's
test hook, ``NSE_TEST_STOP_AFTER``), so the kill lands exactly there.
Afterwards: the guest is in its power state, persistent, with the same
XML, no block job, no managed save, not rebooted; no temporary file, no
partial image, no journal, no image record of ours, no Ceph snapshot or
clone of ours.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nova_snapshot_ext.backends import rbd as rbd_backend
from nova_snapshot_ext.journal import journal
from tests.functional import ceph_stack
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tests.functional import test_incremental
from tests.functional.test_rbd import rbd_guest  # noqa: F401 - fixture
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import GuestBefore
from tests import polling

IMAGES, VMS = 'images', 'vms'

#: (method, extra arguments, step to stop after); one guest per method.
POINTS = [
    ('blockcopy', ['--method', 'live'], 'temp_dir'),
    ('blockcopy', ['--method', 'live'], 'block_job'),
    ('rebase', ['--method', 'live'], 'domain_xml'),
    ('rebase', ['--method', 'live'], 'block_job'),
    ('backup', ['--method', 'live'], 'backup_job'),
    ('incremental', ['--method', 'live', '--incremental'], 'checkpoint'),
    ('cold', ['--method', 'cold'], 'managed_save'),
    ('glance', ['--method', 'live'], 'glance_image'),
    ('rbd', [], 'rbd_snap'),
    ('rbd', [], 'rbd_clone'),
]


class Run:
    """One command run, stopped at its step."""

    def __init__(self, workdir, method, args, step, g, store):
        self.workdir = workdir
        self.state = os.path.join(workdir, 'state')
        self.conf_file = os.path.join(workdir, 'nse.conf')
        with open(self.conf_file, 'w') as f:
            f.write('[DEFAULT]\nstate_path = %s\n' % self.state)
            f.write('[snapshot_libvirt]\nlive_copy_style = %s\n' % (
                method if method in ('rebase', 'backup') else
                'backup' if method == 'incremental' else 'blockcopy'))
            f.write('[snapshot_rbd]\nceph_conf = %s\nuser = admin\n' %
                    ceph_stack.ceph_conf())
        env = dict(os.environ, **{journal.TEST_STOP_AFTER: step})
        self.proc = subprocess.Popen(
            self.cmd('snapshot', g.name, '--name', 'killed', '--store',
                     store, *args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        self.wait_stopped()
        self.journal = self.read_journal()
        assert step in [s.kind for s in self.journal.steps]

    def cmd(self, *args):
        return [sys.executable, '-X', journal.TEST_HOOKS, '-m',
                'nova_snapshot_ext.cmd.main',
                '--config-file', self.conf_file, *args]

    def wait_stopped(self, timeout=120):
        guest_mod.wait_stopped(self.proc, timeout)

    def read_journal(self):
        [path] = journal.paths(os.path.join(self.state, 'snapshots'))
        return journal.read(path)

    def made(self, kind):
        return [s.data for s in self.journal.steps if s.kind == kind]

    def recover(self, *args):
        done = subprocess.run(self.cmd('recover', *args),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture
def setup(request):
    """(method, guest, store) of the parameter; each guest is booted
    when first needed.
    """
    method = request.param
    store = 'file'
    if method == 'glance':
        store = 'glance+' + request.getfixturevalue('glance_url')
    elif method == 'rbd':
        store = 'glance+' + glance_stack.endpoint('ceph')
    fixture = 'rbd_guest' if method == 'rbd' else 'qcow2_guest'
    return method, request.getfixturevalue(fixture), store


def snapshot_ids(url):
    return set(glance_stack.image_ids(url))


def assert_nothing_left(run, g, before, store, images_before):
    # NOTE: the guest prints its counter every 5 s or so: wait for it only
    # where it was stopped.
    assert_guest_as_before(g, before,
                           running_expected=bool(run.made('managed_save')))
    tmp = os.path.join(run.state, 'tmp')
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []
    images = os.path.join(run.state, 'images')
    assert not os.path.isdir(images) or os.listdir(images) == []
    assert journal.paths(os.path.join(run.state, 'snapshots')) == []
    if store.startswith('glance+'):
        assert snapshot_ids(store[len('glance+'):]) == images_before
    for data in run.made(journal.RBD_SNAP):
        conf = ceph_stack.ceph_conf()
        snaps = guest_mod.run('rbd', '-c', conf, 'snap', 'ls', '--format',
                              'json', '%s/%s' % (data['pool'],
                                                 data['image']))
        assert data['snap'] not in snaps
        assert not [s for s in json.loads(snaps)
                    if rbd_backend.SNAP_RE.match(s['name'])]
    names = [c.getName() for c in g.dom.listAllCheckpoints(0)]
    held = test_incremental.bitmaps(g) if run.made(journal.CHECKPOINT) \
        else []
    for data in run.made(journal.CHECKPOINT):
        assert data['name'] not in names
        assert data['name'] not in held
    for data in run.made(journal.RBD_CLONE):
        listed = guest_mod.run('rbd', '-c', ceph_stack.ceph_conf(), 'ls',
                               data['pool'])
        assert data['image'] not in listed


def _start(workdir, setup, args, step):
    method, g, store = setup
    images_before = (snapshot_ids(store[len('glance+'):])
                     if store.startswith('glance+') else set())
    before = GuestBefore(g)
    return Run(workdir, method, args, step, g, store), g, before, store, \
        images_before


@pytest.mark.parametrize('setup,args,step', POINTS, indirect=['setup'],
                         ids=['%s-%s' % (m, s) for m, _a, s in POINTS])
def test_sigkill_then_recover(workdir, setup, args, step):
    run, g, before, store, images_before = _start(workdir, setup, args,
                                                  step)
    run.proc.kill()
    run.proc.communicate()
    out = run.recover()
    assert 'FAILED' not in out
    assert 'remove journal' in out
    if step == 'backup_job':
        assert 'end backup job of vda' in out, out
    assert_nothing_left(run, g, before, store, images_before)
    if step in ('block_job', 'backup_job'):
        # Idempotent.
        assert run.recover() == 'nothing to do\n'


@pytest.mark.parametrize('setup,args,step', POINTS, indirect=['setup'],
                         ids=['%s-%s' % (m, s) for m, _a, s in POINTS])
def test_sigterm_cancels_cleanly(workdir, setup, args, step):
    run, g, before, store, images_before = _start(workdir, setup, args,
                                                  step)
    run.proc.send_signal(signal.SIGTERM)
    os.kill(run.proc.pid, signal.SIGCONT)
    out, err = run.proc.communicate(timeout=300)
    assert run.proc.returncode == 143, out + err
    assert out == ''
    assert err.count('\n') == 1, err
    assert 'was cancelled (SIGTERM); what it had made was undone' in err
    assert_nothing_left(run, g, before, store, images_before)


# -- concurrency ---------------------------------------------------------
class Cli:
    """The command in the background, its stderr in a file."""

    def __init__(self, conf_file, workdir, domain, stop_after=None):
        env = dict(os.environ)
        if stop_after:
            env[journal.TEST_STOP_AFTER] = stop_after
        self.err_path = os.path.join(workdir, 'err-%s' % os.urandom(4).hex())
        self.err = open(self.err_path, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-X', journal.TEST_HOOKS, '-m',
             'nova_snapshot_ext.cmd.main',
             '--config-file', conf_file, 'snapshot', domain, '--name',
             'c', '--json'],
            stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def wait_for(self, predicate, what, timeout=60):
        polling.wait_until(predicate, timeout, 0.05,
                           lambda: '%s did not happen: %s' % (
                               what, self.stderr()))

    def stopped(self):
        return guest_mod.is_stopped(self.proc)

    def finish(self, timeout=120):
        os.kill(self.proc.pid, signal.SIGCONT)
        out, _ = self.proc.communicate(timeout=timeout)
        self.err.close()
        return self.proc.returncode, out, self.stderr()


@pytest.fixture
def small_domains(conn, workdir):
    """``make(n)``: n shut-off guests with small disks (a snapshot of
    one is a conversion of its disk).
    """
    made = []

    def make(n):
        names = []
        for _ in range(n):
            name = guest_mod.PREFIX + 'small-%s' % os.urandom(3).hex()
            path = os.path.join(workdir, name + '.raw')
            guest_mod.run('qemu-img', 'create', '-q', '-f', 'raw', path,
                          '16M')
            disks = guest_mod.Disks(path=path, format='raw', size=16 << 20,
                                    data_sha256='')
            made.append(conn.defineXML(guest_mod.domain_xml(
                name, disks, os.path.join(workdir, name + '.log'))))
            names.append(name)
        return names

    yield make
    for dom in made:
        dom.undefine()


def write_conf(workdir, extra=''):
    path = os.path.join(workdir, 'nse.conf')
    with open(path, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n%s' % (
            os.path.join(workdir, 'state'), extra))
    return path


def test_two_commands_on_one_guest(workdir, small_domains):
    [name] = small_domains(1)
    conf_file = write_conf(workdir)
    first = Cli(conf_file, workdir, name, stop_after='store_partial')
    first.wait_for(first.stopped, 'the first snapshot')
    second = Cli(conf_file, workdir, name)
    rc, out, err = second.finish()
    assert rc == 1 and out == ''
    assert err == ('nova-snapshot-ext: error: Another snapshot of guest %s '
                   'is running; wait for it to finish and try again.\n' %
                   name)
    # The refused one did not recover (nor touch) the running one's work.
    rc, out, err = first.finish()
    assert rc == 0, err
    assert json.loads(out)['method'] == 'cold'


def test_host_wide_limit(workdir, small_domains):
    names = small_domains(3)
    conf_file = write_conf(workdir, '[snapshot]\nmax_concurrent = 2\n')
    journals = os.path.join(workdir, 'state', 'snapshots')
    held = [Cli(conf_file, workdir, n, stop_after='store_partial')
            for n in names[:2]]
    for c in held:
        c.wait_for(c.stopped, 'a held snapshot')
    third = Cli(conf_file, workdir, names[2])
    third.wait_for(lambda: 'Waiting' in third.stderr(), 'waiting')
    assert third.stderr() == (
        'WARNING: Waiting: 2 snapshots are running on this host ([snapshot] '
        'max_concurrent = 2)\n')
    time.sleep(1)
    assert third.proc.poll() is None
    assert len(journal.paths(journals)) == 2
    # One slot frees: the third goes on; all three succeed.
    assert held[0].finish()[0] == 0
    assert third.finish()[0] == 0
    assert held[1].finish()[0] == 0
    assert journal.paths(journals) == []
    images = os.path.join(workdir, 'state', 'images')
    assert len(os.listdir(images)) == 3
