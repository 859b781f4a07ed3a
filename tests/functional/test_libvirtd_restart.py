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

"""libvirtd restarted in the middle of a snapshot.

The real command stops itself right after a step is made (the journal's
test hook, ``NSE_TEST_STOP_AFTER``): a live block copy started (both copy
styles; with ``rebase`` the domain is transient then) or the guest
managed-saved (cold); or just before (``NSE_TEST_STOP_BEFORE``), so that
the call that starts the copy, undefines the domain or saves the guest is
the first on the dead connection. The stack's libvirtd is restarted
(``tools/stack.sh restart-libvirtd``), the command goes on, and must
finish its snapshot on a new connection: a good image, and the guest as
before (state, persistent, same XML, no block job, no managed save, not
rebooted), no temporary file, no journal.

A further test restarts libvirtd from a thread while the copy runs (its
bandwidth limited so that it lasts), in the process.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import libvirt
import pytest

from nova_snapshot_ext.journal import journal
from tests.functional import guest as guest_mod
from tests.functional.test_snapshot import assert_good_image
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import GuestBefore
from tests.functional.test_snapshot import take
from tests import polling

STACK_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        os.pardir, os.pardir, 'tools', 'stack.sh')


def restart_libvirtd():
    done = subprocess.run(['bash', STACK_SH, 'restart-libvirtd'],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def libvirtd_up():
    return subprocess.run(['bash', STACK_SH, 'status'],
                          capture_output=True).returncode == 0


@pytest.fixture(scope='module', autouse=True)
def libvirtd_back(conn):
    """libvirtd runs when the module ends, even after a failure, and the
    session's connection (dead after a restart) works again.
    """
    yield
    if not libvirtd_up():
        restart_libvirtd()
    # NOTE: the session's connection object is shared by every test; give
    # it a live connection underneath (libvirt-python keeps the C handle
    # in _o) and close the dead one.
    fresh = libvirt.open(guest_mod.URI)
    conn._o, fresh._o = fresh._o, conn._o
    try:
        fresh.close()
    except libvirt.libvirtError:
        pass


@pytest.fixture(scope='module')
def shared_guest(workroot):
    """One running guest for the module's tests (each leaves it running),
    on a connection of its own, opened again after each restart
    (``g.reconnect()``).
    """
    path = os.path.join(workroot, 'restart-%s' % os.urandom(3).hex())
    os.makedirs(path)
    os.chmod(path, 0o755)
    own = libvirt.open(guest_mod.URI)
    g = guest_mod.TestGuest(own, os.path.join(path, 'guest'),
                            os.path.basename(path))

    def reconnect():
        g.conn = libvirt.open(guest_mod.URI)
        g.dom = g.conn.lookupByName(g.name)

    g.reconnect = reconnect
    g.start()
    yield g
    if not libvirtd_up():
        restart_libvirtd()
    reconnect()
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def guest(shared_guest):
    """The shared guest, its connection alive again after a restart."""
    if not libvirtd_up():
        restart_libvirtd()
    if not shared_guest.conn.isAlive():
        shared_guest.reconnect()
    return shared_guest


def write_conf(workdir, style='blockcopy', extra=''):
    path = os.path.join(workdir, 'nse.conf')
    with open(path, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % os.path.join(workdir,
                                                              'state'))
        f.write('[snapshot_libvirt]\nlive_copy_style = %s\n%s' % (style,
                                                                  extra))
    return path


def block_jobs(name):
    """The block jobs of domain ``name``, as a new client sees them."""
    c = libvirt.open(guest_mod.URI)
    try:
        dom = c.lookupByName(name)
        return dom.blockJobInfo('vda', 0) if dom.isActive() else {}
    finally:
        c.close()


def assert_clean(workdir, g, before, running_expected=True):
    g.reconnect()
    assert_guest_as_before(g, before, running_expected=running_expected)
    state = os.path.join(workdir, 'state')
    tmp = os.path.join(state, 'tmp')
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []
    assert journal.paths(os.path.join(state, 'snapshots')) == []


def check_image(result, g):
    check = guest_mod.check_image(result['image'], result['format'],
                                  g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters


def cli(workdir, *args):
    return [sys.executable, '-X', journal.TEST_HOOKS, '-m',
            'nova_snapshot_ext.cmd.main',
            '--config-file', os.path.join(workdir, 'nse.conf'), *args]


def start_cli(workdir, g, style, args, step, hook=journal.TEST_STOP_AFTER):
    """The snapshot command, which stops itself after ``step`` (or before
    its thing is made, with ``hook`` TEST_STOP_BEFORE).
    """
    write_conf(workdir, style)
    env = dict(os.environ, **{hook: step})
    return subprocess.Popen(
        cli(workdir, 'snapshot', g.name, '--name', 'snap', '--store', 'file',
            '--json', *args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


AFTER, BEFORE = journal.TEST_STOP_AFTER, journal.TEST_STOP_BEFORE
#: (copy style, arguments, step, hook): with BEFORE the call that makes
#: the step is the first on the dead connection.
POINTS = [
    ('blockcopy', ['--method', 'live'], journal.BLOCK_JOB, AFTER),
    ('rebase', ['--method', 'live'], journal.BLOCK_JOB, AFTER),
    ('blockcopy', ['--method', 'cold'], journal.MANAGED_SAVE, AFTER),
    ('blockcopy', ['--method', 'live'], journal.BLOCK_JOB, BEFORE),
    ('rebase', ['--method', 'live'], journal.DOMAIN_XML, BEFORE),
    ('blockcopy', ['--method', 'cold'], journal.MANAGED_SAVE, BEFORE),
]


@pytest.mark.parametrize(
    'style,args,step,hook', POINTS,
    ids=['%s-%s' % ('cold' if a[1] == 'cold' else 'live-' + st,
                    'after' if h == AFTER else 'before')
         for st, a, _s, h in POINTS])
def test_restart_mid_snapshot(workdir, guest, style, args, step, hook):
    before = GuestBefore(guest)
    proc = start_cli(workdir, guest, style, args, step, hook)
    try:
        guest_mod.wait_stopped(proc)
        if step == journal.BLOCK_JOB and hook == AFTER:
            assert block_jobs(guest.name)
        restart_libvirtd()
        if step == journal.BLOCK_JOB and hook == AFTER:
            # QEMU's job outlived libvirtd, which found it again.
            assert block_jobs(guest.name)
        os.kill(proc.pid, signal.SIGCONT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result['method'] == args[1]
    assert 'connecting again' in err, err
    check_image(result, guest)
    assert_clean(workdir, guest, before)


@pytest.mark.parametrize('args,step', [
    (['--method', 'live'], journal.BLOCK_JOB),
    (['--method', 'cold'], journal.MANAGED_SAVE),
], ids=['live', 'cold'])
def test_killed_then_restart_then_recover(workdir, guest, args, step):
    """The command SIGKILLed, then libvirtd restarted: ``recover`` finds
    the block job (QEMU's, found again by libvirtd) or the managed save
    and puts the guest right.
    """
    before = GuestBefore(guest)
    proc = start_cli(workdir, guest, 'blockcopy', args, step)
    try:
        guest_mod.wait_stopped(proc)
    finally:
        proc.kill()
        proc.communicate()
    restart_libvirtd()
    done = subprocess.run(cli(workdir, 'recover'), capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'FAILED' not in done.stdout
    assert ('abort' if step == journal.BLOCK_JOB else 'restore') in \
        done.stdout
    assert 'remove journal' in done.stdout
    assert_clean(workdir, guest, before)


def test_restart_while_copying(workdir, conf, guest):
    """libvirtd restarted from a thread while the mirror catches up (at
    most 4 MiB/s for a 32 MiB overlay): the snapshot finishes.
    """
    conf.set_override('live_copy_style', 'blockcopy',
                      group='snapshot_libvirt')
    conf.set_override('live_copy_bandwidth', 4, group='snapshot_libvirt')
    before = GuestBefore(guest)
    seen = []

    def progress(stage, fraction):
        seen.append((stage, fraction))

    def restart_once_copying():
        try:
            polling.wait_until(
                lambda: any(s == 'copy' and 0 < f < 0.7 for s, f in seen),
                120, 0.05, 'the copy did not start')
        except AssertionError:
            return  # NOTE: the test says so: nothing restarted
        restart_libvirtd()
        seen.append(('restarted', 1.0))

    restarter = threading.Thread(target=restart_once_copying)
    restarter.start()
    try:
        result = take(conf, guest, method='live', progress=progress)
    finally:
        restarter.join()
    assert ('restarted', 1.0) in seen
    copy_after = seen[seen.index(('restarted', 1.0)):]
    assert ('copy', 1.0) in copy_after
    assert result.method == 'live'
    assert_good_image(result, guest, conf)
    assert_clean(workdir, guest, before)
