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

"""``nova-snapshot-ext check --nova`` in an environment with Nova and the
package installed, against the real libvirt: a host set up right passes,
and each thing an operator gets wrong is one FAIL line that names it.
"""

import json
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

USER = 'nobody'


def check(conf_path, *extra):
    return subprocess.run(
        [sys.executable, '-m', 'nova_snapshot_ext.cmd.main', '--json',
         'check', '--nova', '--nova-config', conf_path, '--user', USER,
         *extra], capture_output=True, text=True)


def findings(done):
    assert done.stdout, done.stderr
    return {f['what']: f for f in json.loads(done.stdout)['findings']}


@pytest.fixture
def host():
    """A nova.conf of a host set up right, its directories nobody's (in
    a directory every user can reach).
    """
    top = pathlib.Path(tempfile.mkdtemp(dir='/var/tmp'))
    os.chmod(top, 0o755)
    state = top / 'state'
    state.mkdir()
    entry = pwd.getpwnam(USER)
    os.chown(state, entry.pw_uid, entry.pw_gid)
    conf = top / 'nova.conf'
    conf.write_text(
        '[DEFAULT]\ncompute_driver = nova_snapshot_ext.SnapshotLibvirtDriver\n'
        'state_path = %s\n[libvirt]\nconnection_uri = qemu:///system\n'
        '[snapshot]\nlock_path = %s/locks\njournal_directory = %s/journals\n'
        'temp_directory = %s/tmp\n' % ((state,) * 4))
    yield conf, state
    shutil.rmtree(top)


def test_a_host_set_up_right_passes(host):
    conf, _ = host
    done = check(str(conf))
    assert done.returncode == 0, done.stdout + done.stderr
    got = findings(done)
    assert set(got) == {'shim', 'driver', 'options', 'directories',
                        'libvirt'}
    assert 'nova_snapshot_ext.virt.driver.SnapshotLibvirtDriver' in \
        got['shim']['detail']


def test_each_mistake_is_one_failure_that_names_it(host):
    conf, state = host
    os.chown(state, 0, 0)
    os.chmod(state, 0o700)
    conf.write_text(conf.read_text().replace(
        'compute_driver = nova_snapshot_ext.SnapshotLibvirtDriver',
        'compute_driver = libvirt.LibvirtDriver') +
        'method = sometimes\n[glance]\napi_servers = http://127.0.0.1:9\n')
    done = check(str(conf))
    assert done.returncode == 1
    got = findings(done)
    failed = {what for what, f in got.items() if not f['ok']}
    assert failed == {'driver', 'options', 'directories', 'glance'}
    assert 'libvirt.LibvirtDriver' in got['driver']['detail']
    assert '[snapshot] method' in got['options']['detail']
    assert '%s cannot write %s' % (USER, state) in \
        got['directories']['detail']
    assert 'http://127.0.0.1:9' in got['glance']['detail']
    lines = subprocess.run(
        [sys.executable, '-m', 'nova_snapshot_ext.cmd.main', 'check',
         '--nova', '--nova-config', str(conf), '--user', USER],
        capture_output=True, text=True).stdout.splitlines()
    assert len(lines) == len(got)
    assert sorted(line.split()[1] for line in lines
                  if line.startswith('FAIL')) == sorted(failed)
