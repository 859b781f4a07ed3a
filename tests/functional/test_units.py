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

"""The systemd units and the cron example in ``etc/``: each timer starts
a service that exists, and each service's command, run as systemd would
run it (``%i`` and ``${VAR}`` expanded), does its job on the real stack:
a scheduled snapshot that expires, the gc that removes it once it has,
and the recover of a boot. These machines have no systemd to start them.
"""

import datetime
import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from nova_snapshot_ext.cmd import parser as parser_mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
UNITS = os.path.join(ROOT, 'etc', 'systemd')
CRON = os.path.join(ROOT, 'etc', 'cron.d', 'nova-snapshot-ext')
BINARY = '/usr/bin/nova-snapshot-ext'


def unit(name):
    """Section -> key -> the values of a unit file, in order."""
    sections, current = {}, None
    with open(os.path.join(UNITS, name)) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            if line.startswith('['):
                current = sections.setdefault(line.strip('[]'), {})
                continue
            key, _, value = line.partition('=')
            current.setdefault(key, []).append(value)
    return sections


def command(name, instance, conf_file, **env):
    """The service's ExecStart as systemd runs it, on this checkout."""
    service = unit(name)['Service']
    values = {}
    for assignments in service.get('Environment', []):
        values.update(a.split('=', 1) for a in shlex.split(assignments))
    values.update(env)
    line = service['ExecStart'][0].replace('%i', instance)
    line = re.sub(r'\$\{(\w+)\}', lambda m: values[m.group(1)], line)
    argv = shlex.split(line)
    assert argv[0] == BINARY
    return [sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
            '--config-file', conf_file, *argv[1:]]


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_every_timer_starts_a_service_and_every_service_runs_the_command():
    names = sorted(os.path.basename(p) for p in glob.glob(
        os.path.join(UNITS, '*')))
    timers = [n for n in names if n.endswith('.timer')]
    assert timers
    for timer in timers:
        assert timer[:-len('.timer')] + '.service' in names, timer
        doc = unit(timer)
        assert doc['Install']['WantedBy'] == ['timers.target']
        assert doc['Timer']['OnCalendar']
    for service in (n for n in names if n.endswith('.service')):
        doc = unit(service)
        assert doc['Service']['Type'] == ['oneshot']
        assert doc['Unit']['ConditionPathExists'] == [BINARY]
        assert shlex.split(doc['Service']['ExecStart'][0])[0] == BINARY


def test_every_cron_line_is_a_command_the_parser_takes():
    with open(CRON) as f:
        lines = [line.split() for line in f
                 if line.strip() and not line.startswith('#')]
    assert lines
    for fields in lines:
        argv = fields[2:] if fields[0].startswith('@') else fields[6:]
        assert argv[0] == 'nova-snapshot-ext', fields
        parser_mod.build_parser().parse_args(argv[1:])


@pytest.fixture
def conf_file(workdir):
    path = os.path.join(workdir, 'nse.conf')
    with open(path, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % os.path.join(
            workdir, 'state'))
    return path


def test_a_scheduled_snapshot_expires_and_gc_removes_it(conf_file,
                                                        qcow2_guest):
    listing = [sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
               '--config-file', conf_file, '--json', 'list',
               qcow2_guest.name]

    run(command('nova-snapshot-ext-snapshot@.service', qcow2_guest.name,
                conf_file, NSE_EXPIRE_AFTER='20s'))
    images = json.loads(run(listing))['images']
    assert [i['name'] for i in images] == ['scheduled']
    run(command('nova-snapshot-ext-gc@.service', 'file', conf_file))
    assert json.loads(run(listing))['images'] == images

    shown = json.loads(run(listing[:-2] + ['show', images[0]['id']]))
    expires = datetime.datetime.fromisoformat(shown['expires_at'])
    time.sleep(max(0.0, (expires - datetime.datetime.now(
        datetime.timezone.utc)).total_seconds()) + 1.5)
    out = run(command('nova-snapshot-ext-gc@.service', 'file', conf_file))
    assert images[0]['id'] in out
    assert json.loads(run(listing))['images'] == []
    run(command('nova-snapshot-ext-recover.service', '', conf_file))
