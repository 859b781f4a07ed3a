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

"""Upstream Tempest's compute image tests and our plugin's, on the cloud.

The run is the one an operator types in the workspace tools/cloud.sh
made::

    cd $CLOUD_DIR/tempest && tempest run --concurrency 2 --regex \\
      '^(tempest\\.api\\.compute\\.images|nova_snapshot_ext_tempest_plugin)\\.'
"""

import os
import re
import subprocess

from tests.cloud import conftest

REGEX = r'^(tempest\.api\.compute\.images|nova_snapshot_ext_tempest_plugin)\.'
RESULT = re.compile(r'^\{\d+\} (?P<test>setUpClass \([^)]*\)|\S+?)'
                    r'(?:\[[^\]]*\])? '
                    r'(?:\[[\d.]+s\] )?\.\.\. (?P<status>ok|FAILED|SKIPPED)'
                    r'(?::\s*(?P<reason>.*))?$')


def test_tempest_compute_images_and_our_plugin():
    workspace = os.path.join(conftest.CLOUD_DIR, 'tempest')
    tempest = os.path.join(conftest.CLOUD_DIR, 'venv', 'bin', 'tempest')
    proc = subprocess.run(
        [tempest, 'run', '--concurrency', '2', '--regex', REGEX],
        cwd=workspace, capture_output=True, text=True, timeout=2400)
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
    failed = [t for t, (s, _) in results.items() if s == 'FAILED']
    assert proc.returncode == 0 and not failed, (
        failed, proc.stdout[-6000:], proc.stderr[-2000:])
    assert counts['ok'] >= 40, proc.stdout[-3000:]
    # Our plugin's tests all ran, none skipped.
    ours = {t: s for t, (s, _) in results.items()
            if t.startswith('nova_snapshot_ext_tempest_plugin')
            or t.startswith('setUpClass (nova_snapshot_ext')}
    assert ours and set(ours.values()) == {'ok'}, ours
