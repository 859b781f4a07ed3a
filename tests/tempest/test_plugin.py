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


"""Tempest finds the nova-snapshot-ext plugin, registers its options and
lists its tests (``tox -e tempest``; no cloud needed).

The ``tempest`` commands and Tempest's plugin manager run in new
processes, in a temporary directory with HOME there: they see the
installed distribution (its entry point and package), not this source
tree, and leave nothing behind. The option tests use the plugin class
in this process.
"""

import configparser
import json
import os
import subprocess
import sys

from oslo_config import cfg
import pytest

PLUGIN_NAME = 'nova-snapshot-ext'
PLUGIN_PACKAGE = 'nova_snapshot_ext_tempest_plugin'
ENTRY_POINT = PLUGIN_PACKAGE + '.plugin:NovaSnapshotExtTempestPlugin'
GROUP = 'nova_snapshot_ext'
#: The plugin's tests as ``tempest run --list-tests`` names them: test
#: path, idempotent id and type.
MODULE = PLUGIN_PACKAGE + '.tests.api.test_snapshots'
TESTS = [
    (MODULE + '.SnapshotsTest.test_live_snapshot_never_pauses_server',
     '2a4e2d2d-98a6-472c-90ca-aef7bbf28be6', 'slow'),
    (MODULE + '.SnapshotsTest.test_snapshot_image_properties',
     'cf9c1387-03cd-48f1-ab1d-3660db4ccecf', 'smoke'),
    (MODULE + '.DirectSnapshotsAdminTest.test_direct_snapshot_rbd_location',
     'e78a850d-5203-40bd-a9c1-3f24f3323f6c', 'smoke'),
]
TIMEOUT = 600


def environ(tmp_path):
    """The environment of a command: no Tempest or cloud settings, and
    HOME in ``tmp_path`` (Tempest's workspace file, stevedore's cache of
    entry points).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('TEMPEST_', 'OS_')) and
           k not in ('PYTHON', 'PYTHONPATH', 'PYTHONHOME')}
    env['HOME'] = str(tmp_path / 'home')
    env['XDG_CONFIG_HOME'] = str(tmp_path / 'home' / '.config')
    env['XDG_CACHE_HOME'] = str(tmp_path / 'home' / '.cache')
    os.makedirs(env['HOME'], exist_ok=True)
    return env


def tempest(tmp_path, *args, cwd=None):
    """Run the environment's ``tempest`` command; return its output."""
    command = os.path.join(os.path.dirname(sys.executable), 'tempest')
    proc = subprocess.run(
        [command, *args], cwd=cwd or tmp_path, env=environ(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=TIMEOUT)
    assert proc.returncode == 0, 'tempest %s failed (%s):\n%s' % (
        ' '.join(args), proc.returncode, proc.stdout)
    return proc.stdout


def test_list_plugins_shows_plugin(tmp_path):
    output = tempest(tmp_path, 'list-plugins')
    rows = [[cell.strip() for cell in line.strip('|').split('|')]
            for line in output.splitlines() if line.startswith('|')]
    assert [PLUGIN_NAME, ENTRY_POINT] in rows, output


#: Prints what Tempest's plugin manager loads, as JSON.
MANAGER_SCRIPT = """
import json

from tempest.test_discover import plugins

manager = plugins.TempestTestPluginManager()
print(json.dumps({
    'plugins': {ext.name: isinstance(ext.obj, plugins.TempestPlugin)
                for ext in manager.ext_plugins.extensions},
    'load_tests': manager.get_plugin_load_tests_tuple(),
}))
"""


def test_plugin_manager_loads_tests_dir(tmp_path):
    # In a new interpreter outside the source tree, so that the installed
    # distribution's entry point and package are the ones loaded.
    proc = subprocess.run(
        [sys.executable, '-c', MANAGER_SCRIPT], cwd=tmp_path,
        env=environ(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded['plugins'].get(PLUGIN_NAME) is True, loaded

    load_tests = loaded['load_tests']
    assert PLUGIN_NAME in load_tests, load_tests
    test_dir, top_level_dir = load_tests[PLUGIN_NAME]
    assert os.path.isdir(test_dir), test_dir
    assert test_dir == os.path.join(top_level_dir, PLUGIN_PACKAGE, 'tests')
    assert os.path.isfile(
        os.path.join(test_dir, 'api', 'test_snapshots.py'))


def test_run_lists_plugin_tests(tmp_path):
    workspace = tmp_path / 'workspace'
    tempest(tmp_path, 'init', str(workspace))

    # The sample configuration shows the plugin's options (get_opt_lists).
    sample = configparser.ConfigParser()
    sample.read(workspace / 'etc' / 'tempest.conf.sample')
    assert sample.has_section(GROUP)
    text = (workspace / 'etc' / 'tempest.conf.sample').read_text()
    group_text = text.split('[%s]' % GROUP, 1)[1].split('\n[', 1)[0]
    assert '#live_snapshot = true' in group_text
    assert '#rbd_direct = false' in group_text

    output = tempest(tmp_path, 'run', '--list-tests',
                     '--regex', PLUGIN_PACKAGE, cwd=workspace)
    listed = sorted(line.strip() for line in output.splitlines()
                    if line.strip().startswith(PLUGIN_PACKAGE))
    expected = sorted('%s[id-%s,%s]' % test for test in TESTS)
    assert listed == expected, output


@pytest.fixture
def plugin():
    from nova_snapshot_ext_tempest_plugin import plugin

    return plugin.NovaSnapshotExtTempestPlugin()


def test_register_opts_defaults(plugin):
    conf = cfg.ConfigOpts()
    plugin.register_opts(conf)
    conf([], default_config_files=[])
    assert conf.nova_snapshot_ext.live_snapshot is True
    assert conf.nova_snapshot_ext.rbd_direct is False
    assert conf.nova_snapshot_ext.rbd_availability_zone is None


def test_register_opts_reads_config_file(plugin, tmp_path):
    conf_file = tmp_path / 'tempest.conf'
    conf_file.write_text('[%s]\nlive_snapshot = false\nrbd_direct = true\n'
                         'rbd_availability_zone = rbd\n' % GROUP)
    conf = cfg.ConfigOpts()
    plugin.register_opts(conf)
    conf([], default_config_files=[str(conf_file)])
    assert conf.nova_snapshot_ext.live_snapshot is False
    assert conf.nova_snapshot_ext.rbd_direct is True
    assert conf.nova_snapshot_ext.rbd_availability_zone == 'rbd'


def test_opt_lists(plugin):
    opt_lists = plugin.get_opt_lists()
    assert [group for group, _ in opt_lists] == [GROUP]
    opts = opt_lists[0][1]
    assert sorted(opt.name for opt in opts) == ['live_snapshot',
                                                'rbd_availability_zone',
                                                'rbd_direct']
    kinds = {opt.name: type(opt) for opt in opts}
    assert kinds == {'live_snapshot': cfg.BoolOpt, 'rbd_direct': cfg.BoolOpt,
                     'rbd_availability_zone': cfg.StrOpt}
