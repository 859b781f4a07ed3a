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

"""The command line: exit codes, one-line errors, JSON output."""

import dataclasses
import io
import json
import os
import subprocess
import sys
from unittest import mock

import pytest

from nova_snapshot_ext.cmd import main as cli
from nova_snapshot_ext.cmd import progress
from nova_snapshot_ext import exception
from nova_snapshot_ext import model
from nova_snapshot_ext import snapshot

RESULT = model.SnapshotResult(
    method='live', reason='the guest is running and the host supports live '
    'snapshots', image='/srv/img/1/image.qcow2', image_id='1',
    location='/srv/img/1/image.qcow2', format='qcow2', size=3 * 1024 ** 2,
    virtual_size=65 * 1024 ** 2, sha256='ab' * 32, seconds=1.5, guest='g',
    backend='qcow2')


def run_main(argv, capsys):
    out = io.StringIO()
    rc = cli.main(argv + ['--config-file', os.devnull], out=out)
    return rc, out.getvalue(), capsys.readouterr().err


def test_json_output(capsys):
    with mock.patch.object(snapshot, 'take_snapshot',
                           return_value=RESULT) as take:
        rc, out, err = run_main(['snapshot', 'g', '--name', 'n', '--json',
                                 '--method', 'live', '--format', 'qcow2',
                                 '--store', 'file:///srv/img'], capsys)
    assert rc == 0
    doc = json.loads(out)
    for key in ('method', 'reason', 'image', 'format', 'size', 'sha256',
                'seconds'):
        assert doc[key] == getattr(RESULT, key)
    request = take.call_args[0][0]
    assert (request.guest, request.name, request.method,
            request.image_format, request.store) == (
        'g', 'n', 'live', 'qcow2', 'file:///srv/img')
    assert err == ''  # not a terminal: no progress bar


def test_summary_line(capsys):
    with mock.patch.object(snapshot, 'take_snapshot', return_value=RESULT):
        rc, out, err = run_main(['snapshot', 'g', '--name', 'n'], capsys)
    assert rc == 0
    assert out.count('\n') == 1
    assert out.startswith('live snapshot of g: /srv/img/1/image.qcow2')
    assert '3.0 MiB' in out


def test_all_disks_and_incremental_are_asked_for_and_said(capsys):
    result = dataclasses.replace(
        RESULT, incremental_of='0',
        disks=[{'disk': 'vda'}, {'disk': 'vdb', 'image': '/srv/img/2/i',
                                 'format': 'raw', 'size': 1024}])
    with mock.patch.object(snapshot, 'take_snapshot',
                           return_value=result) as take:
        rc, out, err = run_main(['snapshot', 'g', '--name', 'n',
                                 '--all-disks', '--incremental', '--keep',
                                 '3'], capsys)
    request = take.call_args[0][0]
    assert (request.all_disks, request.incremental, request.keep) == (
        True, True, 3)
    lines = out.splitlines()
    assert lines[1:] == [
        '  incremental: only the blocks changed since image 0',
        '  and disk vdb: /srv/img/2/i (raw, 1.0 KiB)']


@pytest.mark.parametrize('error', [
    exception.GuestNotFound(guest='x', uri='qemu:///system'),
    exception.LiveSnapshotImpossible(guest='x', reason='the guest is\n'
                                                       'shutoff'),
])
def test_errors_are_one_line(capsys, error):
    with mock.patch.object(snapshot, 'take_snapshot', side_effect=error):
        rc, out, err = run_main(['snapshot', 'x', '--name', 'n'], capsys)
    assert rc == 1
    assert out == ''
    assert err.count('\n') == 1
    assert err.startswith('nova-snapshot-ext: error: ')
    assert 'Traceback' not in err


def test_unexpected_errors_are_one_line_too(capsys):
    with mock.patch.object(snapshot, 'take_snapshot',
                           side_effect=OSError(28, 'No space left')):
        rc, out, err = run_main(['snapshot', 'x', '--name', 'n'], capsys)
    assert rc == 1
    assert err.count('\n') == 1
    assert 'No space left' in err and '--debug' in err


@pytest.mark.parametrize('argv', [
    ['snapshot', 'g'],
    ['snapshot', 'g', '--name', 'n', '--method', 'hot'],
    ['snapshot', 'g', '--name', 'n', '--format', 'vmdk'],
    ['frobnicate'],
])
def test_usage_errors_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1
    assert 'error:' in err


@pytest.mark.parametrize('content,message', [
    (None, 'cannot read the configuration file %s (no such file'),
    ('[snapshot\nmethod = live\n',
     'cannot parse the configuration file %s'),
])
def test_bad_config_file_is_a_usage_error(tmp_path, capsys, content,
                                          message):
    path = tmp_path / 'nse.conf'
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as e:
        cli.main(['--config-file', str(path), 'check'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1, err
    assert err.startswith('nova-snapshot-ext: error: ' + message % path)


def test_invalid_name_fails_before_anything(capsys):
    with mock.patch('nova_snapshot_ext.stores.base.load') as load:
        rc, out, err = run_main(['snapshot', 'g', '--name', 'a\x07b'],
                                capsys)
    assert rc == 1
    assert 'control character' in err
    load.assert_not_called()


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
                          '--help'], capture_output=True, text=True)
    assert out.returncode == 0
    assert 'snapshot' in out.stdout and 'check' in out.stdout


def test_progress_bar_only_on_a_terminal():
    stream = io.StringIO()
    with progress.bar(stream) as report:
        report('convert', 0.5)
    assert stream.getvalue() == ''

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with progress.bar(tty) as report:
        report('copy', 0.3)
        report('convert', 1.0)
    assert 'convert' in tty.getvalue() and '100%' in tty.getvalue()


@pytest.mark.parametrize('size,text', [(512, '512 B'),
                                       (3 * 1024 ** 2, '3.0 MiB'),
                                       (5 * 1024 ** 4, '5120.0 GiB')])
def test_human_size(size, text):
    assert exception.human_size(size) == text
