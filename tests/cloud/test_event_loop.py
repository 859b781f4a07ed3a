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

"""nova-compute keeps serving while a long snapshot runs, in eventlet mode.

Nova 34 runs nova-compute in native threads by default; eventlet
(``[DEFAULT] concurrency_backend = eventlet``) is deprecated but still
what many clouds run, and there one blocking call stops the whole
service. Both compute hosts are restarted in eventlet mode for these
tests (the rbd host also with ``[snapshot_rbd] flatten = inline``), and
put back afterwards. A server with several hundred MiB of data makes the
snapshot long: on the local host the upload into Glance, on the rbd host
the flatten of the clone. While it runs, another server of the same host
is paused and unpaused through the API, and ``openstack compute service
list`` shows the host up.
"""

from concurrent import futures
import os
import time
import uuid

import pytest

from tests.cloud import conftest
from tools import cloud_setup

#: Each test boots two servers and snapshots 384 MiB (about 3 min on 2 cores).
pytestmark = pytest.mark.timeout(900)

#: MiB of random data on the server's disk (the snapshot copies them).
DATA_MIB = 384
DISK_MIB = 1024
EVENTLET = '[DEFAULT]\nconcurrency_backend = eventlet\n'
EXTRA = {
    'local': EVENTLET,
    'rbd': EVENTLET + '\n[snapshot_rbd]\nflatten = inline\n',
}
ZONE = {'local': None, 'rbd': 'rbd'}
#: What nova-compute prints on its standard error (before its logging is
#: set up) when it starts in eventlet mode.
STARTED_EVENTLET = 'Eventlet based concurrency mode is deprecated'


def _log(host):
    return os.path.join(conftest.CLOUD_DIR, 'log',
                        'nova-compute-%s.out' % host)


def _count(path, text):
    with open(path, errors='replace') as f:
        return sum(1 for line in f if text in line)


def _restart_both(extra):
    """Both hosts' nova-compute restarted at once, with EXTRA[host]."""
    with futures.ThreadPoolExecutor(len(EXTRA)) as pool:
        for done in [pool.submit(cloud_setup.restart_compute, host,
                                 extra and extra[host]) for host in EXTRA]:
            done.result()


@pytest.fixture(scope='module')
def eventlet_hosts():
    before = {host: _count(_log(host), STARTED_EVENTLET) for host in EXTRA}
    try:
        _restart_both(EXTRA)
        for host in EXTRA:
            assert _count(_log(host), STARTED_EVENTLET) > before[host], (
                'nova-compute on %s did not start in eventlet mode' % host)
        yield
    finally:
        _restart_both(None)


@pytest.fixture(scope='module')
def data_image(demo, images, tmp_path_factory):
    """A raw image of the test guest's kernel and ramdisk with DATA_MIB
    MiB of random data on its disk: the demo project's, in Glance's rbd
    store (so that the rbd host clones it).
    """
    guest = demo.run('image', 'show', '-f', 'json', conftest.IMAGE)
    props = guest.get('properties') or {}
    path = str(tmp_path_factory.mktemp('data') / 'disk.raw')
    with open(path, 'wb') as f:
        for _ in range(DATA_MIB):
            f.write(os.urandom(1 << 20))
        f.truncate(DISK_MIB << 20)
    name = 'nse-cloud-data-%s' % uuid.uuid4().hex[:8]
    images.append(name)
    args = ['image', 'create', '--disk-format', 'raw',
            '--container-format', 'bare', '--file', path, '-f', 'json']
    for key in ('kernel_id', 'ramdisk_id', 'os_command_line'):
        if props.get(key):
            args += ['--property', '%s=%s' % (key, props[key])]
    image = demo.run(*args, name, timeout=900)
    os.unlink(path)
    return image['id']


@pytest.mark.parametrize('host', ['local', 'rbd'])
def test_compute_answers_during_a_long_snapshot(host, eventlet_hosts,
                                                data_image, demo, admin,
                                                images, servers):
    server = demo.server('nse-cloud-big-' + host, az=ZONE[host],
                         image=data_image)
    servers.append(server['id'])
    other = demo.server('nse-cloud-other-' + host, az=ZONE[host])
    servers.append(other['id'])
    assert admin.run('server', 'show', '-f', 'json', server['id'])[
        'OS-EXT-SRV-ATTR:host'] == host
    name = 'nse-cloud-long-%s-%s' % (host, uuid.uuid4().hex[:6])
    images.append(name)
    started = time.monotonic()
    snap = conftest.SnapshotInBackground(demo, server['id'], name)
    conftest.wait_task(demo, server['id'], timeout=300)
    # While the snapshot runs: an action on another server of the host
    # goes through nova-compute and completes.
    action = time.monotonic()
    demo.sdk.compute.pause_server(other['id'])
    conftest.wait_status(demo, other['id'], 'PAUSED')
    demo.sdk.compute.unpause_server(other['id'])
    conftest.wait_status(demo, other['id'], 'ACTIVE')
    action = time.monotonic() - action
    listed = admin.run('compute', 'service', 'list', '--service',
                       'nova-compute', '--host', host, '-f', 'json')
    assert [s['State'] for s in listed] == ['up'], listed
    still_running = not snap.done.is_set()
    image = snap.join()
    total = time.monotonic() - started
    print('%s: snapshot %.1f s; pause + unpause of another server %.1f s '
          'during it' % (host, total, action))
    assert still_running, (
        'the snapshot (%.1f s) ended before the other server was paused and '
        'unpaused (%.1f s): not long enough to show anything' % (
            total, action))
    assert image['status'] == 'active', image
    method = (image.get('properties') or {}).get('snapshot_method')
    assert method == ('direct' if host == 'rbd' else 'live'), image
    demo.delete_server(other['id'])
    demo.delete_server(server['id'])
