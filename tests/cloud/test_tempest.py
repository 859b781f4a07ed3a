#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS,
#    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or
#    implied. See the License for the specific language governing
#    permissions and limitations under the License.

"""Upstream Tempest's compute image tests, the backup and shelve tests
that reach the driver's snapshot() (createBackup with rotation, shelve
and shelve-offload of running and paused servers, delete while shelved,
the negative shelve and unshelve tests, unshelve to a given host), and
our plugin's, on the cloud.

The run is the one an operator types in the workspace tools/cloud.sh
made, with :data:`REGEX`::

    cd $CLOUD_DIR/tempest && tempest run --concurrency 2 --regex REGEX

Tempest's servers go to zone ``local`` (``[compute]
compute_volume_common_az``), which has two hosts, ``local`` and
``local2``: ``UnshelveToHostMultiNodesTest`` unshelves its server from a
snapshot taken on one of them onto the other, and must pass.

Then upstream's add-location scenario, :data:`ADD_LOCATION_REGEX`, with
``etc/tempest-rbd.conf`` (the same with servers in zone ``rbd``): the
driver's direct snapshot on the rbd host registers the image's location
with Glance's location API (v2.17), and Glance computes its checksum and
hash (``do_secure_hash``). Its volume test
(``test_volume_upload_image_hash_verification``) is left out: it needs
Cinder, which the cloud does not have.
"""

import os
import re
import subprocess

import pytest

from tests.cloud import conftest

REGEX = (
    r'^(tempest\.api\.compute\.images\.'
    r'|nova_snapshot_ext_tempest_plugin\.'
    r'|tempest\.api\.compute\.servers\.test_server_actions\.'
    r'(ServerActionsTestOtherB\.test_(create_backup|shelve_paused_server'
    r'|shelve_unshelve_server)|ServersAaction247Test\.test_create_backup)'
    r'|tempest\.api\.compute\.servers\.test_delete_server\.'
    r'DeleteServersTestJSON\.test_delete_server_while_in_shelved_state'
    r'|tempest\.api\.compute\.servers\.test_servers_negative\.'
    r'ServersNegativeTestJSON\.test_(shelve|unshelve)_'
    r'|tempest\.api\.compute\.admin\.test_servers_on_multinodes\.'
    r'UnshelveToHostMultiNodesTest)')
ADD_LOCATION_REGEX = (
    r'^tempest\.scenario\.test_snapshots_with_add_location\.'
    r'TestImageHashVerification\.'
    r'test_instance_snapshot_image_hash_verification')
UNSHELVE_TO_HOST = ('tempest.api.compute.admin.test_servers_on_multinodes.'
                    'UnshelveToHostMultiNodesTest.test_unshelve_to_'
                    'specific_host')
#: The backup and shelve tests, which must all pass.
SHELVE_AND_BACKUP = ('test_create_backup', 'shelve')
RESULT = re.compile(r'^\{\d+\} (?P<test>setUpClass \([^)]*\)|\S+?)'
                    r'(?:\[[^\]]*\])? '
                    r'(?:\[[\d.]+s\] )?\.\.\. (?P<status>ok|FAILED|SKIPPED)'
                    r'(?::\s*(?P<reason>.*))?$')


def tempest_run(regex, config=None):
    """``tempest run`` in the cloud's workspace: the process, and each
    test's (status, reason) by name; prints the counts and the skips.
    """
    workspace = os.path.join(conftest.CLOUD_DIR, 'tempest')
    tempest = os.path.join(conftest.CLOUD_DIR, 'venv', 'bin', 'tempest')
    cmd = [tempest, 'run', '--concurrency', '2', '--regex', regex]
    if config:
        cmd[2:2] = ['--config-file', os.path.join(workspace, 'etc', config)]
    proc = subprocess.run(cmd, cwd=workspace, capture_output=True,
                          text=True, timeout=2400)
    results = {}
    for line in proc.stdout.splitlines():
        m = RESULT.match(line.strip())
        if m:
            results[m.group('test')] = (m.group('status'),
                                        m.group('reason') or '')
    counts = {s: sum(1 for v, _ in results.values() if v == s)
              for s in ('ok', 'FAILED', 'SKIPPED')}
    print('tempest: %(ok)d passed, %(FAILED)d failed, %(SKIPPED)d skipped'
          % counts)
    for test, (status, reason) in sorted(results.items()):
        if status == 'SKIPPED':
            print('skipped: %s: %s' % (test, reason))
    return proc, results, counts


@pytest.mark.timeout(2700)
def test_tempest_compute_images_and_our_plugin():
    proc, results, counts = tempest_run(REGEX)
    failed = [t for t, (s, _) in results.items() if s == 'FAILED']
    assert proc.returncode == 0 and not failed, (
        failed, proc.stdout[-6000:], proc.stderr[-2000:])
    assert counts['ok'] >= 49, proc.stdout[-3000:]
    # Every backup and shelve test ran and passed, the unshelve from one
    # host of zone local onto the other one too.
    passed = [t for t, (s, _) in results.items() if s == 'ok'
              and any(k in t for k in SHELVE_AND_BACKUP)]
    assert len(passed) >= 10, sorted(results)
    assert results.get(UNSHELVE_TO_HOST, ('not run',))[0] == 'ok', (
        results.get(UNSHELVE_TO_HOST), sorted(results))
    # Our plugin's tests all ran, none skipped.
    ours = {t: s for t, (s, _) in results.items()
            if t.startswith('nova_snapshot_ext_tempest_plugin')
            or t.startswith('setUpClass (nova_snapshot_ext')}
    assert ours and set(ours.values()) == {'ok'}, ours


@pytest.mark.timeout(900)
def test_tempest_snapshot_add_location_on_the_rbd_host():
    proc, results, counts = tempest_run(ADD_LOCATION_REGEX,
                                        'tempest-rbd.conf')
    assert proc.returncode == 0, (proc.stdout[-6000:], proc.stderr[-2000:])
    assert counts == {'ok': 1, 'FAILED': 0, 'SKIPPED': 0}, results
