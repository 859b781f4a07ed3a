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

"""Fixtures of the functional tests: a real libvirtd and real guests.

The stack is started by ``tools/stack.sh up``. A missing stack is a test
failure, never a skip.
"""

import os
import shutil
import uuid

from oslo_config import cfg
import pytest

from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext.libvirt import host as host_mod
from tests.functional import glance_stack
from tests.functional import guest as guest_mod

URI = guest_mod.URI


@pytest.fixture(scope='session')
def conn():
    try:
        c = guest_mod.connect()
    except guest_mod.StackMissing as e:
        pytest.fail(str(e))
    yield c
    c.close()


@pytest.fixture(scope='session')
def workroot():
    return guest_mod.work_root()


@pytest.fixture
def workdir(workroot, request):
    path = os.path.join(workroot, 't-%s' % uuid.uuid4().hex[:8])
    os.makedirs(path)
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_conf(root: str) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    nse_conf.register_opts(conf)
    conf([], project='nova-snapshot-ext-tests', default_config_files=[],
         default_config_dirs=[])
    conf.set_override('state_path', os.path.join(root, 'state'))
    conf.set_override('connection_uri', URI, group='snapshot_libvirt')
    return conf


@pytest.fixture
def conf(workdir):
    return make_conf(workdir)


@pytest.fixture
def host():
    h = host_mod.Host(URI)
    yield h
    h.close()


def own_guest(conn, workroot, prefix, fmt='qcow2'):
    """A running guest named ``PREFIX-<random>``, removed with its files
    at the end: ``yield from`` it in a fixture.
    """
    name = '%s-%s' % (prefix, uuid.uuid4().hex[:6])
    path = os.path.join(workroot, name)
    g = guest_mod.TestGuest(conn, path, name, fmt=fmt)
    try:
        g.start()
        yield g
    finally:
        g.remove()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module')
def qcow2_guest(conn, workroot):
    yield from own_guest(conn, workroot, 'qcow2')


@pytest.fixture(scope='module')
def raw_guest(conn, workroot):
    yield from own_guest(conn, workroot, 'raw', fmt='raw')


@pytest.fixture(scope='module')
def _breakable_guest(conn, workroot):
    name = 'own-%s' % uuid.uuid4().hex[:6]
    path = os.path.join(workroot, name)
    g = guest_mod.TestGuest(conn, path, name)
    yield g
    g.remove()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fresh_guest(_breakable_guest):
    """A running guest the module's other tests do not use, for tests
    that shut it off or destroy it: it is booted again for the next.
    """
    if not _breakable_guest.dom.isActive():
        _breakable_guest.start()
    return _breakable_guest


@pytest.fixture
def shutoff_guest(_breakable_guest):
    """That guest shut off (not booted for it when it is already)."""
    if _breakable_guest.dom.isActive():
        _breakable_guest.dom.destroy()
    return _breakable_guest


@pytest.fixture(scope='session')
def glance_url():
    """The stack's Glance (no auth, file store)."""
    try:
        return glance_stack.endpoint('main')
    except guest_mod.StackMissing as e:
        pytest.fail(str(e))


@pytest.fixture(scope='module')
def glance_instances():
    """Start extra Glance instances: ``start(name, **env)`` returns the
    URL; all are stopped at the end of the module.
    """
    started = []

    def start(name, **env):
        glance_stack.glance_sh('start', name, **env)
        started.append(name)
        return glance_stack.endpoint(name)

    yield start
    for name in started:
        glance_stack.glance_sh('stop', name)
