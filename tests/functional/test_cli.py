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

"""The nova-snapshot-ext command against the real guest."""

import json
import os
import pty
import subprocess
import sys

import libvirt
from prometheus_client import parser
import pytest

from tests.functional import glance_stack
from tests.functional import guest as guest_mod


@pytest.fixture
def conf_file(workdir):
    path = os.path.join(workdir, 'nse.conf')
    with open(path, 'w') as f:
        state = os.path.join(workdir, 'state')
        f.write('[DEFAULT]\nstate_path = %s\n' % state)
    return path


def images_dir(workdir):
    return os.path.join(workdir, 'state', 'images')


def cli(conf_file, *args, stderr=subprocess.PIPE):
    return subprocess.run(
        [sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
         '--config-file', conf_file, *args],
        stdout=subprocess.PIPE, stderr=stderr, text=True)


def test_snapshot_json(conf_file, workdir, qcow2_guest):
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'cli',
               '--json')
    assert done.returncode == 0, done.stderr
    assert done.stderr == ''  # not a terminal: no bar, and no noise
    doc = json.loads(done.stdout)
    assert doc['method'] == 'live'
    assert doc['reason']
    # auto takes the backup API, which this host has, and says so.
    assert doc['live_copy_style'] == 'backup'
    assert doc['live_copy_reason'] == ('libvirt and QEMU here have the '
                                       'backup API for guests of this kind')
    # The root disk, as Nova takes it: the domain's first disk.
    assert doc['disk'] == 'vda'
    assert doc['format'] == 'qcow2'
    assert doc['image'].startswith(images_dir(workdir))
    assert doc['size'] == os.path.getsize(doc['image'])
    assert doc['seconds'] > 0
    out = subprocess.run(['sha256sum', doc['image']], capture_output=True,
                         text=True, check=True).stdout
    assert out.split()[0] == doc['sha256']
    check = guest_mod.check_image(doc['image'], 'qcow2',
                                  qcow2_guest.disks.size)
    assert check.point_in_time
    assert qcow2_guest.state() == libvirt.VIR_DOMAIN_RUNNING


def test_snapshot_raw_cold_summary_line(conf_file, workdir, qcow2_guest):
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'cli',
               '--method', 'cold', '--format', 'raw', '--store',
               'file://' + os.path.join(workdir, 'other'))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('\n') == 1
    assert done.stdout.startswith('cold snapshot of %s disk vda: %s' % (
        qcow2_guest.name, os.path.join(workdir, 'other')))
    assert 'guest paused' in done.stdout
    assert qcow2_guest.state() == libvirt.VIR_DOMAIN_RUNNING


def test_progress_bar_on_a_terminal(conf_file, qcow2_guest):
    leader, follower = pty.openpty()
    try:
        done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'tty',
                   stderr=follower)
        os.close(follower)
        follower = None
        shown = b''
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower is not None:
            os.close(follower)
        os.close(leader)
    assert done.returncode == 0
    text = shown.decode(errors='replace')
    assert 'live copy' in text and 'convert' in text and '100%' in text


@pytest.mark.parametrize('args,message', [
    (['snapshot', 'nse-no-such-guest', '--name', 'x'],
     'No guest named nse-no-such-guest'),
    (['snapshot', '{guest}', '--name', ''], 'it is empty'),
    (['snapshot', '{guest}', '--name', 'x', '--store', 'file://rel/dir'],
     'absolute directory'),
    (['snapshot', '{guest}', '--name', 'x', '--store', 'nfs://h/x'],
     "Unknown image store 'nfs://h/x'"),
    (['--connect', 'qemu+unix:///system?socket=/nonexistent', 'snapshot',
      '{guest}', '--name', 'x'], 'Cannot connect to libvirt'),
    # Glance down: one line, without keystoneauth's retry warnings.
    (['snapshot', '{guest}', '--name', 'x', '--store',
      'glance+http://127.0.0.1:9'], 'Glance at http://127.0.0.1:9 cannot be '
                                    'used: unreachable'),
    (['snapshot', '{guest}', '--name', 'x', '--property', 'checksum=1'],
     "property 'checksum' is set by the snapshot or by Glance"),
    (['snapshot', '{guest}', '--name', 'x', '--property', 'k=' + 'v' * 256],
     "the value of property 'k' has 256 characters, at most 255"),
    # Out of time before the guest is even looked up: still named.
    (['snapshot', '{guest}', '--name', 'x', '--timeout', '0.001'],
     'The snapshot of nse-qcow2-'),
])
def test_bad_input_is_one_line_and_leaves_nothing(conf_file, workdir,
                                                  qcow2_guest, args,
                                                  message):
    xml = qcow2_guest.inactive_xml()
    args = [a.format(guest=qcow2_guest.name) for a in args]
    done = cli(conf_file, *args)
    assert done.returncode == 1
    assert done.stdout == ''
    assert done.stderr.count('\n') == 1, done.stderr
    assert done.stderr.startswith('nova-snapshot-ext: error: ')
    assert message in done.stderr
    assert qcow2_guest.state() == libvirt.VIR_DOMAIN_RUNNING
    assert qcow2_guest.inactive_xml() == xml
    images = images_dir(workdir)
    assert not os.path.isdir(images) or os.listdir(images) == []


def test_forced_live_impossible_names_the_reason(conf_file, qcow2_guest):
    with open(conf_file, 'a') as f:
        f.write('[snapshot_workarounds]\ndisable_live_snapshot = true\n')
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'x',
               '--method', 'live')
    assert done.returncode == 1
    assert done.stderr.count('\n') == 1
    assert 'disable_live_snapshot is set' in done.stderr


def test_check(conf_file, qcow2_guest):
    done = cli(conf_file, 'check', qcow2_guest.name, '--json')
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc['host']['libvirt_version'].startswith('9.')
    assert doc['host']['live_possible'] is True
    assert doc['host']['transient_block_copy'] is True
    [entry] = doc['guests']
    assert entry['name'] == qcow2_guest.name
    assert entry['method'] == 'live'
    assert entry['backend'] == 'qcow2'
    assert entry['state'] == 'running'
    done = cli(conf_file, 'check')
    assert done.returncode == 0
    assert '%s: running, qcow2 disk vda -> live' % qcow2_guest.name in \
        done.stdout


def test_snapshot_into_glance(conf_file, workdir, glance_url, qcow2_guest):
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'cli-g',
               '--store', 'glance+' + glance_url, '--property',
               'base_image_ref=b-1', '--json')
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    listed = glance_stack.openstack(glance_url, 'image', 'list', '-f',
                                    'json')
    assert {'ID': doc['image'], 'Name': 'cli-g', 'Status': 'active'} in \
        json.loads(listed)
    shown = json.loads(glance_stack.openstack(
        glance_url, 'image', 'show', '-f', 'json', doc['image']))
    assert shown['properties']['base_image_ref'] == 'b-1'
    assert shown['properties']['snapshot_method'] == doc['method']
    assert shown['size'] == doc['size']


def test_refused_token_is_one_line_and_leaves_nothing(
        conf_file, workdir, glance_instances, qcow2_guest):
    url = glance_instances('guarded', GLANCE_FLAVOR='trusted')
    with open(conf_file, 'a') as f:
        f.write('[snapshot_glance]\nauth_type = admin_token\nendpoint = %s\n'
                'token = not-a-valid-token\n' % url)
    done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'x',
               '--store', 'glance')
    assert done.returncode == 1
    assert done.stderr.startswith(
        'nova-snapshot-ext: error: Glance refused the credentials: HTTP 401')
    assert done.stderr.count('\n') == 1
    assert 'not-a-valid-token' not in done.stderr
    assert glance_stack.image_ids(url, glance_stack.MEMBER_HEADERS) == []
    tmp = os.path.join(workdir, 'state', 'tmp')
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []


def test_every_snapshot_adds_to_the_metrics_file(conf_file, workdir,
                                                 qcow2_guest):
    prom = os.path.join(workdir, 'textfile', 'nova_snapshot_ext.prom')
    with open(conf_file, 'a') as f:
        f.write('[snapshot]\nmetrics_file = %s\n' % prom)
    sizes = {}
    for method in ('live', 'cold'):
        done = cli(conf_file, 'snapshot', qcow2_guest.name, '--name', 'm',
                   '--method', method, '--json')
        assert done.returncode == 0, done.stderr
        sizes[method] = json.loads(done.stdout)['size']
    assert cli(conf_file, 'snapshot', 'nse-no-such-guest', '--name',
               'm').returncode == 1

    with open(prom) as f:
        figures = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in parser.text_string_to_metric_families(
                       f.read()) for s in family.samples}

    def total(method, result):
        return figures[('nova_snapshot_ext_snapshots_total', (
            ('method', method), ('result', result), ('store', 'file')))]

    assert total('live', 'ok') == total('cold', 'ok') == 1
    assert total('none', 'GuestNotFound') == 1
    cold = (('method', 'cold'),)
    assert figures[('nova_snapshot_ext_snapshot_seconds_count', cold)] == 1
    assert figures[('nova_snapshot_ext_snapshot_seconds_sum', cold)] > 0
    assert figures[('nova_snapshot_ext_guest_paused_seconds_total',
                    cold)] > 0
    assert figures[('nova_snapshot_ext_snapshot_bytes_total', cold)] == \
        sizes['cold']
