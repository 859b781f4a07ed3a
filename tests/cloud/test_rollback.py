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

"""One compute host rolled back to stock Nova, as "Rolling back" in
doc/source/deploying.rst says: ``recover``, ``gc``, then
``compute_driver = libvirt.LibvirtDriver``.

The rbd host is the one where a rollback can go wrong: there our direct
snapshot leaves the image a clone of an ``nse-`` snapshot of the
server's disk until ``gc`` flattens it, and stock Nova knows nothing of
it. After the rollback, stock Nova snapshots and deletes the server, the
disk goes from Ceph, and the image ours took still boots. The host runs
our driver again afterwards.
"""

import os
import subprocess

import pytest

from tests.cloud import conftest
from tools import cloud_setup

#: Two boots, two snapshots, two restarts of nova-compute.
pytestmark = pytest.mark.timeout(900)

VMS_POOL = 'cloud-vms'
STOCK = '[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n'
CLI = os.path.join(conftest.CLOUD_DIR, 'venv', 'bin', 'nova-snapshot-ext')
#: The rbd host's libvirtd (tools/cloud.sh lv_uri).
RBD_LIBVIRT = ('qemu+unix:///system?socket=%s/libvirt-rbd/run/libvirt-sock'
               % conftest.CLOUD_DIR)


def _cli(*args):
    """The command on the rbd host, as the rollback runs it: its output."""
    proc = subprocess.run(
        [CLI, '--config-file', os.path.join(conftest.CLOUD_DIR, 'cli.conf'),
         *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def _ours(disk):
    return [s['name'] for s in conftest.rbd('snap', 'ls', disk)
            if s['name'].startswith('nse-')]


@pytest.fixture
def stock_rbd_host():
    """A function that rolls the rbd host back; ours again at the end."""
    try:
        yield lambda: cloud_setup.restart_compute('rbd', STOCK)
    finally:
        cloud_setup.restart_compute('rbd', None)


def test_rbd_host_rolled_back_to_stock_nova(demo, images, servers,
                                            stock_rbd_host):
    server = demo.server('nse-cloud-rollback', az='rbd')
    sid = server['id']
    servers.append(sid)
    demo.console_until(sid, 'CTR 100')
    disk = '%s/%s_disk' % (VMS_POOL, sid)
    ours = demo.snapshot(sid, 'nse-cloud-rollback-ours')
    images.append(ours['name'])
    assert ours['properties']['snapshot_method'] == 'direct'
    # A deferred flatten: the image still hangs on the server's disk.
    assert _ours(disk)

    assert 'nothing to do' in _cli('recover', '--connect', RBD_LIBVIRT)
    _cli('gc', '--store', 'glance', '--min-age', '0')
    assert _ours(disk) == []
    stock_rbd_host()

    stock = demo.snapshot(sid, 'nse-cloud-rollback-stock')
    images.append(stock['name'])
    assert stock['status'] == 'active'
    assert 'snapshot_method' not in stock['properties']

    again = demo.server('nse-cloud-rollback-from-ours', az='rbd',
                        image=ours['id'])
    servers.append(again['id'])
    demo.console_until(again['id'], 'TINYGUEST READY')
    for server_id in (sid, again['id']):
        demo.run('server', 'delete', '--wait', server_id)
    left = [n for n in conftest.rbd('ls', VMS_POOL)
            if n.startswith((sid, again['id']))]
    assert left == []
