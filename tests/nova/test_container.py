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

"""The container image's steps (``contrib/container/Containerfile``), run
as its ``RUN`` lines are, against this environment, which has Nova
installed from PyPI as Kolla's venv has: the package installed from this
checkout, the bindings linked, and Nova finding the driver. No container
engine runs on these machines; the Debian packages its first step
installs are checked to be here instead.
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONTAINERFILE = os.path.join(ROOT, 'contrib', 'container', 'Containerfile')


def steps():
    """The ARG defaults and the RUN lines of the Containerfile."""
    args, runs = {}, []
    with open(CONTAINERFILE) as f:
        for line in f:
            if line.startswith('ARG '):
                name, _, value = line[4:].strip().partition('=')
                args[name] = value
            elif line.startswith('RUN '):
                runs.append(line[4:].strip())
    return args, runs


def test_the_image_steps_install_the_driver_into_novas_venv():
    args, runs = steps()
    assert args['VENV'] == '/var/lib/kolla/venv'
    packages = re.search(r'apt-get install -y --no-install-recommends '
                         r'([\w\s.-]+?) &&', runs[0]).group(1).split()
    for package in packages:
        subprocess.run(['dpkg', '-s', package], check=True,
                       capture_output=True)
    env = dict(os.environ, VENV=sys.prefix, SPEC=ROOT)
    for run in runs[1:]:
        done = subprocess.run(['/bin/sh', '-c', run], env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, (run, done.stdout, done.stderr)
    done = subprocess.run(
        [sys.executable, '-c', 'import rbd, nbd; from nova.virt.'
         'nova_snapshot_ext import SnapshotLibvirtDriver as D; print(D)'],
        capture_output=True, text=True)
    assert 'nova_snapshot_ext.virt.driver.SnapshotLibvirtDriver' in \
        done.stdout, done.stderr
