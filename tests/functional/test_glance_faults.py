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

"""A real Glance restarted, stopped or frozen while the real command
begins a snapshot into it: requests before the upload are tried again, and
every request has a time limit.

The command stops itself once its journal names the record it is about to
create (``NSE_TEST_STOP_BEFORE``), so that Glance goes away exactly then.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from nova_snapshot_ext.journal import journal
from tests.functional import glance_stack
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import GuestBefore

NAME = 'faults'


@pytest.fixture(scope='module')
def faults_url(glance_instances):
    return glance_instances(NAME)


@pytest.fixture
def glance_back(faults_url):
    """The instance runs again after the test, whatever it did to it."""
    yield
    glance_stack.glance_sh('restart', NAME)


def uwsgi_pids():
    """The instance's uWSGI master (by its recorded PID) and workers."""
    path = os.path.join(glance_stack.guest_mod.stack_dir(), 'glance', NAME,
                        'glance.pid')
    with open(path) as f:
        master = int(f.read())
    children = subprocess.run(['pgrep', '-P', str(master)],
                              capture_output=True, text=True).stdout.split()
    return [master] + [int(p) for p in children]


class Command:
    def __init__(self, workdir, *lines):
        self.state = os.path.join(workdir, 'state')
        self.conf_file = os.path.join(workdir, 'nse.conf')
        with open(self.conf_file, 'w') as f:
            f.write('[DEFAULT]\nstate_path = %s\n' % self.state)
            f.write('\n'.join(lines) + '\n')

    def start(self, guest, url, **env):
        self.proc = subprocess.Popen(
            [sys.executable, '-X', journal.TEST_HOOKS, '-m',
             'nova_snapshot_ext.cmd.main',
             '--config-file', self.conf_file, 'snapshot', guest.name,
             '--name', 'faults', '--method', 'live', '--json',
             '--store', 'glance+' + url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, **env))
        self.started = time.monotonic()

    def wait_stopped(self, timeout=120):
        glance_stack.guest_mod.wait_stopped(self.proc, timeout)

    def finish(self, timeout=180):
        out, err = self.proc.communicate(timeout=timeout)
        self.seconds = time.monotonic() - self.started
        return self.proc.returncode, out, err

    def assert_nothing_left(self):
        for sub in ('tmp', 'snapshots'):
            path = os.path.join(self.state, sub)
            assert not os.path.isdir(path) or os.listdir(path) == [], sub


def stopped_at_the_record(workdir, guest, url, *lines):
    cmd = Command(workdir, *lines)
    cmd.start(guest, url,
              **{journal.TEST_STOP_BEFORE: journal.GLANCE_IMAGE})
    cmd.wait_stopped()
    return cmd


def test_glance_restarted_as_the_record_is_made(workdir, faults_url,
                                                glance_back, qcow2_guest):
    """Defaults only: Glance is stopped as the record is about to be
    made, and started again a second later (about 2.5 s to answer):
    the tries of the create reach it and the snapshot succeeds.
    """
    before = GuestBefore(qcow2_guest)
    cmd = stopped_at_the_record(workdir, qcow2_guest, faults_url)
    glance_stack.glance_sh('stop', NAME)
    restart = threading.Timer(1.0, glance_stack.glance_sh,
                              args=('restart', NAME))
    restart.start()
    try:
        os.kill(cmd.proc.pid, signal.SIGCONT)
        code, out, err = cmd.finish()
    finally:
        restart.join()
    assert code == 0, err
    result = json.loads(out)
    assert glance_stack.image_ids(faults_url) == [result['image']]
    image = glance_stack.client(faults_url).images.get(result['image'])
    assert image['status'] == 'active' and image['size'] == result['size']
    cmd.assert_nothing_left()
    assert_guest_as_before(qcow2_guest, before)
    glance_stack.client(faults_url).images.delete(result['image'])


def test_glance_stopped_for_good_is_one_line(workdir, faults_url,
                                             glance_back, qcow2_guest):
    before = GuestBefore(qcow2_guest)
    cmd = stopped_at_the_record(workdir, qcow2_guest, faults_url)
    glance_stack.glance_sh('stop', NAME)
    os.kill(cmd.proc.pid, signal.SIGCONT)
    code, out, err = cmd.finish()
    assert code == 1 and out == ''
    assert err.count('\n') == 1, err
    assert err.startswith('nova-snapshot-ext: error: Image store Glance at '
                          '%s cannot be used: unreachable' % faults_url)
    # Four tries, 1 + 2 + 4 s apart.
    assert cmd.seconds >= 7
    cmd.assert_nothing_left()
    assert_guest_as_before(qcow2_guest, before)
    glance_stack.glance_sh('restart', NAME)
    assert glance_stack.image_ids(faults_url) == []


def test_frozen_glance_times_out(workdir, faults_url, glance_back,
                                 qcow2_guest):
    """Glance accepts connections but answers nothing (its processes
    stopped) for 8 s: each try of the create gives up after
    [snapshot_glance] timeout, the snapshot fails, and the record a try
    may have made is deleted once Glance answers again.
    """
    before = GuestBefore(qcow2_guest)
    cmd = stopped_at_the_record(workdir, qcow2_guest, faults_url,
                                '[snapshot_glance]', 'timeout = 2',
                                'request_attempts = 2')
    pids = uwsgi_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    def thaw():
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    thawer = threading.Timer(8.0, thaw)
    thawer.start()
    try:
        os.kill(cmd.proc.pid, signal.SIGCONT)
        code, out, err = cmd.finish(timeout=60)
    finally:
        thawer.cancel()
        thaw()
    assert code == 1 and out == ''
    assert err.count('\n') == 1, err
    assert err.startswith('nova-snapshot-ext: error: Image store Glance at '
                          '%s cannot be used: unreachable' % faults_url)
    assert 'timed out' in err, err
    # Two tries of 2 s, 1 s apart; then the delete waits for Glance.
    assert 5 <= cmd.seconds < 30
    cmd.assert_nothing_left()
    assert_guest_as_before(qcow2_guest, before)
    assert glance_stack.image_ids(faults_url) == []
