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

"""The committed sample configuration is what the generator writes."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
GEN = os.path.join(ROOT, 'etc', 'nova-snapshot-ext',
                   'nova-snapshot-ext-config-generator.conf')
SAMPLE = os.path.join(ROOT, 'etc', 'nova-snapshot-ext',
                      'nova-snapshot-ext.conf.sample')


def test_sample_config_is_current(tmp_path):
    out = tmp_path / 'sample.conf'
    subprocess.run([sys.executable, '-m', 'oslo_config.generator',
                    '--config-file', GEN, '--output-file', str(out)],
                   check=True, cwd=ROOT)
    with open(SAMPLE) as f:
        committed = f.read()
    assert out.read_text() == committed, (
        'etc/nova-snapshot-ext/nova-snapshot-ext.conf.sample is stale: run '
        '"tox -e genconfig" and commit it')


def test_sample_config_documents_every_group():
    with open(SAMPLE) as f:
        text = f.read()
    for group in ('[snapshot]', '[snapshot_libvirt]', '[snapshot_workarounds]',
                  '[snapshot_qemu_img]', '[snapshot_file_store]',
                  '[snapshot_glance]', '[snapshot_rbd]'):
        assert group in text
