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

"""The devstack plugin, run by bash under stand-ins of devstack.

The stand-ins, those ``tools/cloud.sh`` runs the plugin with
(``tools/devstack-functions.sh``), follow devstack where the plugin
depends on it (``is_service_enabled``, ``enable_service`` after
``disable_service``, devstack-plugin-ceph's
``is_ceph_enabled_for_service``); ``iniset`` writes real ini files;
installing calls are only recorded. The tests read nova.conf and
tempest.conf as an operator would.
"""

import ast
import configparser
import grp
import os
import pathlib
import pwd
import stat
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / 'devstack'

STUBS = r'''
set -o errexit -o nounset -o pipefail

# devstack's functions, as tools/cloud.sh runs the plugin with them.
source "%s/tools/devstack-functions.sh"

# Recorded; run for real only where the test runs as root.
function define_plugin { echo "define_plugin $*" >> "$CALLS"; }
function plugin_requires { echo "plugin_requires $*" >> "$CALLS"; }
function setup_develop { echo "setup_develop $*" >> "$CALLS"; }
function install_package { echo "install_package $*" >> "$CALLS"; }
function sudo {
    echo "sudo $*" >> "$CALLS"
    if [[ $(id -u) == 0 ]]; then "$@"; fi
}
'''

REPORT = r'''
echo "--- report"
for name in ENABLED_SERVICES VIRT_DRIVER NOVA_SNAPSHOT_EXT_DIR \
        NOVA_SNAPSHOT_EXT_METHOD NOVA_SNAPSHOT_EXT_QUIESCE \
        NOVA_SNAPSHOT_EXT_RBD_FLATTEN; do
    echo "$name=${!name}"
done
'''

NOVA_CONF_BEFORE = """\
[DEFAULT]
compute_driver = libvirt.LibvirtDriver

[libvirt]
virt_type = qemu
"""

TEMPEST_CONF_BEFORE = """\
[compute-feature-enabled]
snapshot = True
"""

CEPH = {'WITH_CEPH_PLUGIN': '1', 'ENABLE_CEPH_NOVA': 'True',
        'ENABLE_CEPH_GLANCE': 'True'}


class Stack:
    """A fake devstack host under tmp_path: $DEST, Nova's tree, configs."""

    def __init__(self, tmp_path):
        self.dest = tmp_path / 'opt-stack'
        self.nova_virt = self.dest / 'nova' / 'nova' / 'virt'
        self.nova_virt.mkdir(parents=True)
        # The clone enable_plugin makes, with the driver module to link.
        self.clone = self.dest / 'nova-snapshot-ext'
        shim = self.clone / 'nova' / 'virt' / 'nova_snapshot_ext'
        shim.mkdir(parents=True)
        (shim / '__init__.py').write_text('')
        self.nova_conf = tmp_path / 'nova.conf'
        self.nova_conf.write_text(NOVA_CONF_BEFORE)
        self.tempest_conf = tmp_path / 'tempest.conf'
        self.tempest_conf.write_text(TEMPEST_CONF_BEFORE)
        self.calls_file = tmp_path / 'calls'
        self.calls_file.write_text('')
        self.env = {
            'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
            'CALLS': str(self.calls_file),
            'DEST': str(self.dest),
            'NOVA_DIR': str(self.dest / 'nova'),
            'NOVA_CONF': str(self.nova_conf),
            'TEMPEST_CONFIG': str(self.tempest_conf),
            'ENABLED_SERVICES': 'n-api,n-cpu,n-cond,g-api,tempest',
            'DISABLED_SERVICES': '',
            'VIRT_DRIVER': 'libvirt',
        }

    @property
    def link(self):
        return self.nova_virt / 'nova_snapshot_ext'

    def run(self, *phases, check=True, **env):
        """Source settings, then plugin.sh for each phase, as stack.sh."""
        script = [STUBS % REPO, 'source "%s/settings"' % PLUGIN_DIR]
        for phase in phases:
            mode = phase if phase in ('unstack', 'clean') else 'stack ' + phase
            script.append('source "%s/plugin.sh" %s' % (PLUGIN_DIR, mode))
        script.append(REPORT)
        result = subprocess.run(
            ['bash', '-c', '\n'.join(script)], env={**self.env, **env},
            capture_output=True, text=True, timeout=60)
        if check:
            assert result.returncode == 0, result.stderr
            # Every function the plugin calls exists (in devstack: here).
            assert 'command not found' not in result.stderr, result.stderr
        self.stdout, self.stderr = result.stdout, result.stderr
        self.returncode = result.returncode
        return result

    @property
    def report(self):
        lines = self.stdout.split('--- report\n', 1)[1].splitlines()
        return dict(line.split('=', 1) for line in lines)

    def calls(self):
        return self.calls_file.read_text().splitlines()

    @staticmethod
    def _read(path):
        # [DEFAULT] as a plain section: its options stay out of the others.
        conf = configparser.RawConfigParser(default_section='\0')
        conf.optionxform = str
        assert conf.read(path) == [str(path)]
        return conf

    def nova(self):
        return self._read(self.nova_conf)

    def tempest(self):
        return self._read(self.tempest_conf)


@pytest.fixture
def stack(tmp_path):
    return Stack(tmp_path)


def test_settings_defaults_and_service(stack):
    stack.run()
    report = stack.report
    assert report['NOVA_SNAPSHOT_EXT_DIR'] == str(stack.clone)
    assert report['NOVA_SNAPSHOT_EXT_METHOD'] == 'auto'
    assert report['NOVA_SNAPSHOT_EXT_QUIESCE'] == 'auto'
    assert report['NOVA_SNAPSHOT_EXT_RBD_FLATTEN'] == 'inline'
    assert 'nova-snapshot-ext' in report['ENABLED_SERVICES'].split(',')
    assert 'define_plugin nova-snapshot-ext' in stack.calls()


def test_settings_keep_local_conf_values(stack):
    stack.run(NOVA_SNAPSHOT_EXT_DIR='/src/nse',
              NOVA_SNAPSHOT_EXT_METHOD='cold',
              NOVA_SNAPSHOT_EXT_QUIESCE='required',
              NOVA_SNAPSHOT_EXT_RBD_FLATTEN='deferred')
    assert stack.report['NOVA_SNAPSHOT_EXT_DIR'] == '/src/nse'
    assert stack.report['NOVA_SNAPSHOT_EXT_METHOD'] == 'cold'
    assert stack.report['NOVA_SNAPSHOT_EXT_QUIESCE'] == 'required'
    assert stack.report['NOVA_SNAPSHOT_EXT_RBD_FLATTEN'] == 'deferred'


def test_install_develops_the_clone_and_links_the_driver(stack):
    stack.run('install')
    assert stack.calls() == ['define_plugin nova-snapshot-ext',
                             'setup_develop %s' % stack.clone]
    # Nova imports nova.virt.nova_snapshot_ext from its own tree.
    assert stack.link.is_symlink()
    assert stack.link.resolve() == (
        stack.clone / 'nova' / 'virt' / 'nova_snapshot_ext')


def test_install_with_ceph_installs_the_bindings(stack):
    stack.run('install', **CEPH)
    assert 'install_package python3-rados python3-rbd' in stack.calls()
    assert 'setup_develop %s' % stack.clone in stack.calls()


def test_install_refuses_to_replace_a_directory_of_nova(stack):
    stack.link.mkdir()
    stack.run('install', check=False)
    assert stack.returncode != 0
    assert 'not our link' in stack.stderr
    assert not stack.link.is_symlink()


def test_post_config_sets_driver_and_snapshot_options(stack):
    stack.run('install', 'post-config')
    nova = stack.nova()
    assert nova['DEFAULT']['compute_driver'] == (
        'nova_snapshot_ext.SnapshotLibvirtDriver')
    assert dict(nova['snapshot']) == {'method': 'auto', 'quiesce': 'auto'}
    assert not nova.has_section('snapshot_rbd')
    assert nova['libvirt']['virt_type'] == 'qemu'
    # devstack keeps installing and configuring libvirt.
    assert stack.report['VIRT_DRIVER'] == 'libvirt'


def test_post_config_keeps_host_details_out_of_servers(stack):
    stack.run('install', 'post-config')
    names = stack.nova()['DEFAULT'][
        'non_inheritable_image_properties'].split(',')
    # Nova's defaults, and the signature ones it never copies, stay.
    for name in ('cache_in_nova', 'bittorrent', 'img_signature',
                 'img_signature_hash_method',
                 'img_signature_certificate_uuid', 'img_signature_key_type'):
        assert name in names
    for name in ('source_domain', 'snapshot_reason', 'live_copy_style',
                 'live_copy_reason'):
        assert name in names
    assert len(names) == len(set(names)) == 10


def test_post_config_with_ceph_sets_rbd_options(stack):
    stack.run('post-config', **CEPH)
    assert dict(stack.nova()['snapshot_rbd']) == {
        'ceph_conf': '/etc/ceph/ceph.conf',
        'user': 'cinder',
        'glance_pool': 'images',
        'flatten': 'inline',
        'direct_snapshot': 'True',
    }


def test_post_config_with_ceph_follows_the_ceph_plugin_variables(stack):
    stack.run('post-config', CEPH_CONF_FILE='/etc/ceph/other.conf',
              CINDER_CEPH_USER='nova-disks', GLANCE_CEPH_POOL='glance-imgs',
              NOVA_SNAPSHOT_EXT_RBD_FLATTEN='deferred', **CEPH)
    rbd = stack.nova()['snapshot_rbd']
    assert rbd['ceph_conf'] == '/etc/ceph/other.conf'
    assert rbd['user'] == 'nova-disks'
    assert rbd['glance_pool'] == 'glance-imgs'
    assert rbd['flatten'] == 'deferred'


@pytest.mark.parametrize('env', [
    {'ENABLE_CEPH_GLANCE': 'False'},
    {'GLANCE_RGW_BACKEND': 'True', 'ENABLE_CEPH_RGW': 'True'},
], ids=['glance-not-on-ceph', 'glance-on-rgw'])
def test_ceph_for_nova_only_has_no_glance_pool_nor_rbd_direct(stack, env):
    stack.run('post-config', 'test-config', **{**CEPH, **env})
    rbd = stack.nova()['snapshot_rbd']
    assert rbd['user'] == 'cinder' and rbd['direct_snapshot'] == 'True'
    assert not stack.nova().has_option('snapshot_rbd', 'glance_pool')
    assert stack.tempest()['nova_snapshot_ext']['rbd_direct'] == 'False'


@pytest.mark.parametrize('env', [
    {'WITH_CEPH_PLUGIN': '', 'ENABLE_CEPH_NOVA': 'True'},
    {'WITH_CEPH_PLUGIN': '1', 'ENABLE_CEPH_NOVA': 'False',
     'ENABLE_CEPH_GLANCE': 'True'},
], ids=['no-ceph-plugin', 'ceph-not-for-nova'])
def test_without_ceph_for_nova_no_rbd_options(stack, env):
    stack.run('install', 'post-config', 'test-config', **env)
    assert not stack.nova().has_section('snapshot_rbd')
    assert not any(c.startswith('install_package') for c in stack.calls())
    assert stack.tempest()['nova_snapshot_ext']['rbd_direct'] == 'False'


def test_local_conf_overrides_reach_nova_and_tempest(stack):
    stack.run('post-config', 'test-config', NOVA_SNAPSHOT_EXT_METHOD='cold',
              NOVA_SNAPSHOT_EXT_QUIESCE='never')
    assert dict(stack.nova()['snapshot']) == {
        'method': 'cold', 'quiesce': 'never'}
    assert stack.tempest()['nova_snapshot_ext']['live_snapshot'] == 'False'


def test_invalid_setting_stops_the_run_before_writing(stack):
    stack.run('post-config', check=False, NOVA_SNAPSHOT_EXT_QUIESCE='always')
    assert stack.returncode != 0
    assert 'NOVA_SNAPSHOT_EXT_QUIESCE=always' in stack.stderr
    assert stack.nova_conf.read_text() == NOVA_CONF_BEFORE


def test_test_config_writes_the_tempest_plugin_options(stack):
    stack.run('test-config', **CEPH)
    tempest = stack.tempest()
    assert dict(tempest['nova_snapshot_ext']) == {
        'live_snapshot': 'True', 'rbd_direct': 'True'}
    assert tempest['compute-feature-enabled']['snapshot'] == 'True'


def test_no_tempest_no_tempest_options(stack):
    stack.run('test-config', ENABLED_SERVICES='n-api,n-cpu,g-api')
    assert stack.tempest_conf.read_text() == TEMPEST_CONF_BEFORE


def test_host_without_nova_compute_gets_only_tempest_options(stack):
    stack.run('install', 'post-config', 'test-config',
              ENABLED_SERVICES='n-api,n-cond,g-api,tempest')
    assert stack.calls() == ['define_plugin nova-snapshot-ext']
    assert not stack.link.exists()
    assert stack.nova_conf.read_text() == NOVA_CONF_BEFORE
    assert stack.tempest().has_section('nova_snapshot_ext')


def test_disabled_service_does_nothing(stack):
    stack.run('install', 'post-config', 'test-config', 'unstack', 'clean',
              DISABLED_SERVICES='nova-snapshot-ext', **CEPH)
    assert 'nova-snapshot-ext' not in stack.report['ENABLED_SERVICES']
    assert stack.calls() == ['define_plugin nova-snapshot-ext']
    assert not stack.link.exists()
    assert stack.nova_conf.read_text() == NOVA_CONF_BEFORE
    assert stack.tempest_conf.read_text() == TEMPEST_CONF_BEFORE


def test_unstack_keeps_and_clean_removes_the_driver_link(stack):
    stack.run('install', 'post-config', 'unstack')
    assert stack.link.is_symlink()
    nova_conf = stack.nova_conf.read_text()
    stack.run('clean')
    assert not stack.link.exists() and not stack.link.is_symlink()
    assert stack.clone.joinpath('nova', 'virt', 'nova_snapshot_ext').is_dir()
    assert stack.nova_conf.read_text() == nova_conf


def _bound_names(path):
    """Names a module binds at top level, and where it imports them from."""
    tree = ast.parse(path.read_text(), str(path))
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = None
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = (node.module, alias.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = None
    return names


def test_compute_driver_names_the_class_of_this_repository(stack):
    # Nova loads compute_driver X as nova.virt.X: install the real
    # repository and follow the link as Nova's import would.
    stack.run('install', 'post-config', NOVA_SNAPSHOT_EXT_DIR=str(REPO))
    driver = stack.nova()['DEFAULT']['compute_driver']
    module, cls = driver.rsplit('.', 1)
    path = stack.nova_virt.joinpath(*module.split('.'), '__init__.py')
    assert path.resolve() == REPO.joinpath(
        'nova', 'virt', *module.split('.'), '__init__.py')
    names = _bound_names(path)
    assert cls in names, '%s does not define %s' % (path, cls)
    if names[cls] and names[cls][0].startswith('nova_snapshot_ext.'):
        source, name = names[cls]
        source_path = REPO.joinpath(*source.split('.')).with_suffix('.py')
        assert name in _bound_names(source_path), (
            '%s does not define %s' % (source_path, name))


def qemu_group():
    """The group QEMU runs as on this host, as the plugin finds it."""
    for name in ('libvirt-qemu', 'qemu'):
        try:
            return grp.getgrnam(name)
        except KeyError:
            pass
    return None


def test_post_config_makes_the_shared_dirs_for_a_non_root_nova(
        stack, tmp_path):
    state = tmp_path / 'var-lib-nse'
    stack.run('post-config', STACK_USER='nobody',
              NOVA_SNAPSHOT_EXT_STATE_PATH=str(state))
    calls = [c for c in stack.calls() if c.startswith('sudo ')]
    group = qemu_group()
    assert calls == [
        'sudo install -d -o nobody -m 0711 %s' % state,
        'sudo install -d -o nobody -m 0700 %s/locks %s/snapshots' % (
            state, state),
        'sudo install -d -o nobody -g %s -m 0710 %s/tmp' % (
            group.gr_name, state) if group else
        'sudo install -d -o nobody -m 0711 %s/tmp' % state]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam('nobody').pw_uid
        for sub, mode in (('', 0o711), ('locks', 0o700),
                          ('snapshots', 0o700),
                          ('tmp', 0o710 if group else 0o711)):
            st = (state / sub).stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody, mode)
        if group:
            assert (state / 'tmp').stat().st_gid == group.gr_gid
    # Again: nothing changes, nothing fails.
    stack.run('post-config', STACK_USER='nobody',
              NOVA_SNAPSHOT_EXT_STATE_PATH=str(state))


def test_post_config_puts_the_snapshot_dirs_below_the_state_path(
        stack, tmp_path):
    state = tmp_path / 'nse'
    stack.run('post-config', STACK_USER='root',
              NOVA_SNAPSHOT_EXT_STATE_PATH=str(state))
    assert dict(stack.nova()['snapshot']) == {
        'method': 'auto', 'quiesce': 'auto',
        'lock_path': '%s/locks' % state,
        'journal_directory': '%s/snapshots' % state,
        'temp_directory': '%s/tmp' % state}


def test_post_config_without_a_qemu_group_lets_anyone_through_tmp(
        stack, tmp_path):
    state = tmp_path / 'var-lib-nse'
    stack.run('post-config', STACK_USER='nobody',
              NOVA_SNAPSHOT_EXT_STATE_PATH=str(state),
              **{'BASH_FUNC_getent%%': '() { return 2; }'})
    calls = [c for c in stack.calls() if c.startswith('sudo ')]
    assert calls[-1] == 'sudo install -d -o nobody -m 0711 %s/tmp' % state


def test_post_config_as_root_leaves_the_dirs_to_nova(stack, tmp_path):
    stack.run('post-config', STACK_USER='root',
              NOVA_SNAPSHOT_EXT_STATE_PATH=str(tmp_path / 's'))
    assert not any(c.startswith('sudo ') for c in stack.calls())
    assert not (tmp_path / 's').exists()
