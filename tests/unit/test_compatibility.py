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

"""The tables of doc/source/compatibility.rst say what is tested: each
version in them is the one the constraints files, tox.ini and setup.cfg
install or declare, and the host's minimums are the options' defaults.
"""

import configparser
import pathlib
import re
import shutil
import subprocess

import pytest

from nova_snapshot_ext.conf import libvirt as libvirt_conf

TOP = pathlib.Path(__file__).resolve().parents[2]
PAGE = TOP / 'doc' / 'source' / 'compatibility.rst'
#: The distribution each component of the versions table is.
DISTRIBUTIONS = {
    'Nova': 'nova',
    'Placement': 'openstack-placement',
    'Glance': 'glance',
    'Keystone': 'keystone',
    'Neutron': 'neutron',
}


def _tables():
    """{name: rows} of the named list-tables of the page; a row is the
    list of its cells' text (continuation lines joined, a lone escaped
    dash as '-').
    """
    tables = {}
    rows = None
    for line in PAGE.read_text().splitlines():
        if line.startswith('.. list-table::'):
            rows = []
            continue
        if rows is None:
            continue
        m = re.match(r'   :name: (\S+)$', line)
        if m:
            tables[m.group(1)] = rows
        elif line.startswith('   * - '):
            rows.append([line[7:].strip()])
        elif line.startswith('     - '):
            rows[-1].append(line[7:].strip())
        elif line.startswith('       ') and rows:
            rows[-1][-1] += ' ' + line.strip()
        elif line and not line.startswith('   '):
            rows = None
    for rows in tables.values():
        for row in rows:
            row[:] = ['-' if cell == '\\-' else cell for cell in row]
    return tables


def _pins(path):
    """{normalised distribution name: version} of a pip freeze."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r'([A-Za-z0-9_.-]+)==(\S+)$', line.strip())
        if m:
            pins[_normal(m.group(1))] = m.group(2)
    return pins


def _normal(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def _tox():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(TOP / 'tox.ini')
    return tox


def _setup():
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(TOP / 'setup.cfg')
    return setup


def _envs(section):
    """The tox environments of a section name: ``testenv:nova{,33}`` is
    ``nova`` and ``nova33``.
    """
    name = section.split(':', 1)[1]
    m = re.fullmatch(r'([^{]*)\{([^}]*)\}(.*)', name)
    if not m:
        return [name]
    return [m.group(1) + alt + m.group(3) for alt in m.group(2).split(',')]


def _deps(env):
    """The deps of the tox environment ``env``, its factor conditions
    (``nova33:``, ``!nova33:``) applied.
    """
    tox = _tox()
    section = next(s for s in tox.sections()
                   if s.startswith('testenv:') and env in _envs(s))
    deps = []
    for line in tox[section]['deps'].splitlines():
        line = line.strip()
        m = re.match(r'(!?)([\w,]+):\s*(.*)$', line)
        if m:
            negated, factors, dep = m.groups()
            if (env in factors.split(',')) == bool(negated):
                continue
            line = dep
        if line:
            deps.append(line)
    return deps


def _pinned(deps, name):
    for dep in deps:
        m = re.match(r'([A-Za-z0-9_.-]+)==(\S+)$', dep)
        if m and _normal(m.group(1)) == _normal(name):
            return m.group(2)
    return None


def _versions_table():
    rows = _tables()['compatibility-versions']
    header, body = rows[0], rows[1:]
    envs = [re.search(r'``(\w+)``', cell).group(1) for cell in header[1:]]
    return envs, body


def _constraints(env):
    """The constraints file tox.ini installs ``env`` with."""
    files = [d[2:] for d in _deps(env) if d.startswith('-c')]
    assert len(files) == 1, (env, files)
    return TOP / files[0].replace('{toxinidir}/', '')


def test_columns_are_the_nova_environments():
    envs, _ = _versions_table()
    section = next(s for s in _tox().sections()
                   if s.startswith('testenv:') and 'nova' in _envs(s))
    assert envs == _envs(section)
    page = PAGE.read_text()
    for env in envs:
        assert str(_constraints(env).relative_to(TOP)) in page, env


def test_cloud_installs_what_nova_does():
    # NOTE: the heading of the Nova 34 column names both.
    assert _constraints('cloud') == _constraints('nova')


def test_versions_are_the_constraints_files():
    envs, body = _versions_table()
    for env, column in zip(envs, range(1, len(envs) + 1)):
        pins = _pins(_constraints(env))
        for row in body:
            name, version = row[0], row[column]
            dist = _normal(DISTRIBUTIONS.get(name, name))
            if version == '-':
                assert dist not in pins, (env, name)
                continue
            assert pins.get(dist) == version, (env, name, version)


def test_nova_pins_in_tox_are_the_table():
    envs, body = _versions_table()
    nova = next(row for row in body if row[0] == 'Nova')
    for env, version in zip(envs, nova[1:]):
        assert _pinned(_deps(env), 'nova') == version, env


def test_tempest_pin_in_tox_is_the_table():
    envs, body = _versions_table()
    tempest = next(row for row in body if row[0] == 'Tempest')
    assert _pinned(_deps('tempest'), 'tempest') == tempest[1]


def test_nova33_is_the_release_before():
    envs, body = _versions_table()
    nova = next(row for row in body if row[0] == 'Nova')
    current, previous = (int(v.split('.')[0]) for v in nova[1:3])
    assert previous == current - 1


def test_python_is_setup_cfg_and_tox():
    rows = {row[0]: row[1] for row in _tables()['compatibility-python'][1:]}
    metadata = _setup()['metadata']
    tested = re.fullmatch(r'CPython (3\.\d+)',
                          rows['Tested (every tox environment)']).group(1)
    package = rows['The package (``python_requires``)']
    assert package == '%s and later' % tested
    assert metadata['python_requires'].strip() == '>=%s' % tested
    versions = re.findall(r'Programming Language :: Python :: (3\.\d+)',
                          metadata['classifier'])
    assert versions == [tested]
    assert _tox()['testenv']['basepython'].strip() == 'python%s' % tested
    assert rows['The ``rbd`` backend'].startswith('CPython %s ' % tested)


def test_host_minimums_are_the_options_defaults():
    rows = {row[0]: row for row in _tables()['compatibility-host'][1:]}
    defaults = {opt.name: opt.default for opt in libvirt_conf.libvirt_opts}
    assert rows['libvirt'][2] == defaults['min_libvirt_version']
    assert rows['QEMU'][2] == defaults['min_qemu_version']


@pytest.mark.skipif(shutil.which('dpkg-query') is None,
                    reason='not a Debian host')
def test_host_tested_versions_are_debian_packages():
    # NOTE: the host's packages are what the tests run on; only on the
    # Debian release the table names (the test machines').
    release = pathlib.Path('/etc/debian_version')
    if not release.exists() or not release.read_text().startswith('12'):
        pytest.skip('not Debian 12')
    rows = {row[0]: row[1] for row in _tables()['compatibility-host'][1:]}
    for name, package in [('libvirt', 'libvirt0'),
                          ('QEMU', 'qemu-utils'),
                          ('Ceph', 'ceph-common')]:
        out = subprocess.run(
            ['dpkg-query', '-W', '-f=${Version}', package],
            capture_output=True, text=True, check=False)
        if out.returncode:
            continue
        upstream = re.sub(r'^\d+:', '', out.stdout).split('+')[0]
        tested = rows[name].split()[0]
        assert (upstream + '.').startswith(tested + '.'), (name, upstream)


def test_the_debian_package_is_the_newest_release():
    """Releases are git tags (doc/source/releasenotes.rst), from which
    pbr takes the Python package's version; the Debian package's
    changelog names the newest one.
    """
    tags = subprocess.run(
        ['git', 'tag', '--list', '--sort=-v:refname', '[0-9]*.[0-9]*.[0-9]*'],
        cwd=TOP, check=True, capture_output=True, text=True).stdout.split()
    if not tags:
        # NOTE: a checkout without the history's tags (a shallow clone, a
        # source tarball) cannot tell the newest release.
        pytest.skip('no release tags in this checkout')
    with open(TOP / 'contrib' / 'debian' / 'changelog') as f:
        top = re.match(r'nova-snapshot-ext \(([^)]+)\)', f.readline())
    assert top and top.group(1) == tags[0]
