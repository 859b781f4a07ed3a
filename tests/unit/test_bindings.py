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

"""The install step that links Debian's Ceph and libnbd bindings into a
venv: into a real new venv, from Debian's real modules, and what it says
when a package is missing.
"""

import subprocess
import venv

import pytest

from nova_snapshot_ext.cmd import bindings


def test_a_new_venv_imports_the_bindings_after_the_step(tmp_path):
    env = tmp_path / 'venv'
    venv.create(env, with_pip=False)
    python = str(env / 'bin' / 'python')
    probe = [python, '-c', 'import rados, rbd, nbd']
    assert subprocess.run(probe, capture_output=True).returncode != 0

    assert bindings.main([str(env)]) == 0
    done = subprocess.run(probe + ['; print(rbd.RBD)'], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert bindings.main([str(env)]) == 0, 'not repeatable'


def test_a_missing_package_is_named(tmp_path):
    (tmp_path / 'rados.cpython-311-x86_64-linux-gnu.so').write_text('')
    site = tmp_path / 'site'
    site.mkdir()
    with pytest.raises(bindings.Missing, match='install python3-rbd'):
        bindings.link(str(site), ['rados', 'rbd'], source=str(tmp_path))
