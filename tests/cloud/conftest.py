#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS,
#    WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or
#    implied. See the License for the specific language governing
#    permissions and limitations under the License.

"""The one-node cloud of tools/cloud.sh, driven as its users drive it.

Every action is an ``openstack`` command, typed as a user types it, with
the demo user's openrc (the admin's where only an admin may look).
Watching while a command runs (the server's state every few tenths of a
second) goes through openstacksdk, which is faster than a command per
sample. A missing cloud fails the tests: run ``tools/cloud.sh up``.
"""

import json
import os
import signal
import subprocess
import threading

import openstack
import pytest

from tests.polling import wait_until

STACK_DIR = os.environ.get('STACK_DIR', '/var/tmp/nova-snapshot-ext-stack')
CLOUD_DIR = os.environ.get('CLOUD_DIR', os.path.join(STACK_DIR, 'cloud'))
TOOLS = os.path.join(os.path.dirname(__file__), '..', '..', 'tools')
IMAGE = 'nse-guest'
FLAVOR = 'nse.tiny'
BOOT_TIMEOUT = 300


def openrc(name):
    path = os.path.join(CLOUD_DIR, name)
    if not os.path.exists(path):
        pytest.fail('no cloud: %s is missing (run tools/cloud.sh up)' % path)
    env = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip()[len('export '):].partition('=')
            env[key] = value
    return env


class Cloud:
    """The openstack command and an SDK connection, as one user."""

    def __init__(self, rc):
        self.env = dict(os.environ, **openrc(rc))
        self.sdk = openstack.connect(
            auth_url=self.env['OS_AUTH_URL'],
            project_name=self.env['OS_PROJECT_NAME'],
            username=self.env['OS_USERNAME'],
            password=self.env['OS_PASSWORD'],
            user_domain_name='Default', project_domain_name='Default',
            region_name=self.env['OS_REGION_NAME'])

    def run(self, *args, check=True, timeout=600):
        """``openstack ARGS``; its JSON output when it gives one."""
        cmd = ['openstack', *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if check and proc.returncode:
            raise AssertionError('%s failed (%d): %s' % (
                ' '.join(cmd), proc.returncode, proc.stderr.strip()))
        if not check:
            return proc
        out = proc.stdout.strip()
        return json.loads(out) if 'json' in args and out else out

    def server(self, name, az=None, image=IMAGE):
        args = ['--os-compute-api-version', '2.37', 'server', 'create',
                '--image', image, '--flavor', FLAVOR, '--nic', 'none',
                '--wait', '-f', 'json', name]
        if az:
            args[-1:-1] = ['--availability-zone', az]
        server = self.run(*args, timeout=BOOT_TIMEOUT)
        assert server['status'] == 'ACTIVE', server
        return server

    def console_until(self, server_id, text, timeout=BOOT_TIMEOUT):
        def console():
            return self.run('console', 'log', 'show', server_id)

        def with_text():
            log = console()
            return log if text in log else None
        return wait_until(with_text, timeout, interval=2,
                          message=lambda: '%r never on the console of %s:\n%s'
                          % (text, server_id, console()[-2000:]))

    def snapshot(self, server_id, name, *extra):
        """``openstack server image create --wait``: the image."""
        self.run('server', 'image', 'create', '--wait', '--name', name,
                 *extra, server_id)
        return self.run('image', 'show', '-f', 'json', name)

    def delete_server(self, server_id):
        self.run('server', 'delete', '--wait', server_id, check=False)


class SnapshotInBackground:
    """``Cloud.snapshot`` in a thread, while the test does something else.

    ``done`` is set when it ends; ``join`` raises what it raised.
    """

    def __init__(self, cloud, server_id, name):
        self.done = threading.Event()
        self.errors = []
        self.image = None
        self._thread = threading.Thread(
            target=self._run, args=(cloud, server_id, name), daemon=True)
        self._thread.start()

    def _run(self, cloud, server_id, name):
        try:
            self.image = cloud.snapshot(server_id, name)
        except Exception as e:  # raised by join()
            self.errors.append(e)
        finally:
            self.done.set()

    def join(self):
        self._thread.join()
        if self.errors:
            raise self.errors[0]
        return self.image


class Sampler:
    """The server's status and power state, sampled until stopped."""

    def __init__(self, sdk, server_id, interval=0.2):
        self.samples = []
        self._sdk, self._id, self._interval = sdk, server_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            s = self._sdk.compute.get_server(self._id)
            self.samples.append((s.status, s.power_state, s.task_state))
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope='session')
def demo():
    return Cloud('openrc')


@pytest.fixture(scope='session')
def admin():
    return Cloud('admin-openrc')


@pytest.fixture(scope='session')
def images(demo):
    """Names of images the tests made: deleted at the end."""
    made = []
    yield made
    for name in made:
        demo.run('image', 'delete', name, check=False)


@pytest.fixture(scope='session')
def servers(demo):
    made = []
    yield made
    for server_id in made:
        demo.delete_server(server_id)


@pytest.fixture(scope='session')
def local_server(demo, servers):
    """A running server on the local-disk host, writing its counter."""
    server = demo.server('nse-cloud-local')
    servers.append(server['id'])
    demo.console_until(server['id'], 'CTR 500')
    return server


@pytest.fixture(scope='session')
def rbd_server(demo, servers):
    """A running server on the rbd host, writing its counter."""
    server = demo.server('nse-cloud-rbd', az='rbd')
    servers.append(server['id'])
    demo.console_until(server['id'], 'CTR 500')
    return server


def glance_kill():
    """SIGKILL the cloud's Glance (uWSGI master and workers) at once."""
    pidfile = os.path.join(STACK_DIR, 'glance', 'cloud', 'glance.pid')
    with open(pidfile) as f:
        master = int(f.read())
    with open('/proc/%d/task/%d/children' % (master, master)) as f:
        workers = [int(pid) for pid in f.read().split()]
    for pid in [master] + workers:
        os.kill(pid, signal.SIGKILL)


def glance(action):
    """Stop or start the cloud's Glance (tools/glance.sh, same data)."""
    env = dict(os.environ, GLANCE_VENV=os.path.join(CLOUD_DIR, 'venv'),
               GLANCE_FLAVOR='keystone')
    subprocess.run(['bash', os.path.join(TOOLS, 'glance.sh'), action,
                    'cloud'], env=env, check=True, capture_output=True)


def rbd(*args):
    """``rbd ARGS --format json`` on the stack's Ceph: its answer."""
    env = dict(os.environ, CEPH_CONF=os.path.join(STACK_DIR, 'ceph',
                                                  'ceph.conf'))
    return json.loads(subprocess.run(
        ['rbd', *args, '--format', 'json'], env=env, check=True,
        capture_output=True, text=True).stdout)


def cloud_sh(*args):
    subprocess.run(['bash', os.path.join(TOOLS, 'cloud.sh'), *args],
                   check=True, capture_output=True)


def _state(cloud, sid):
    server = cloud.sdk.compute.get_server(sid)
    return server.status, server.task_state


def wait_status(cloud, sid, status, timeout=120):
    """The server has STATUS and no task."""
    def reached():
        current, task = _state(cloud, sid)
        return current == status and not task
    wait_until(reached, timeout, interval=0.5,
               message=lambda: 'server %s is not %s: %s' % (
                   sid, status, _state(cloud, sid)))


def wait_task(cloud, sid, states=None, timeout=120):
    """The server's task once it has one (of STATES)."""
    def task():
        task = _state(cloud, sid)[1]
        return task if task and (states is None or task in states) else None
    return wait_until(task, timeout, message='server %s never had a task '
                      'of %s' % (sid, states or 'any kind'))
