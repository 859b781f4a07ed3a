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

"""Nova's other callers of ``snapshot()``, through a real nova-compute,
for what Tempest does not check: that backup rotation keeps exactly N
backups, and that a stopped server and a shelve succeed when the image
requires quiesce (Nova quiesces only a running server's live snapshot).
"""

import os

import pytest

from tests.cloud import conftest
from tests.polling import wait_until

#: Three backups, or a stop, shelve and unshelve (about 2.5 min on 2 cores).
pytestmark = pytest.mark.timeout(900)

ROTATION = 2


def _backups(cloud, sid):
    """Ids of the server's daily backups, as Nova's rotation finds them."""
    listed = cloud.run('image', 'list', '--property',
                       'instance_uuid=%s' % sid, '--property',
                       'backup_type=daily', '-f', 'json')
    return {i['ID'] for i in listed}


def test_backup_rotation_keeps_exactly_n(demo, local_server, images):
    sid = local_server['id']
    made = []
    for i in range(ROTATION + 1):
        name = 'nse-cloud-backup-%d' % i
        images.append(name)
        demo.run('server', 'backup', 'create', '--name', name, '--type',
                 'daily', '--rotate', str(ROTATION), '--wait', sid)
        image = demo.run('image', 'show', '-f', 'json', name)
        assert image['status'] == 'active'
        assert image['properties']['snapshot_method'] == 'live'
        made.append(image['id'])
    # NOTE: the compute manager rotates once the image is active.
    wait_until(lambda: _backups(demo, sid) == set(made[-ROTATION:]), 120,
               interval=1, message=lambda: 'backups %s, made %s' % (
                   _backups(demo, sid), made))
    conftest.wait_status(demo, sid, 'ACTIVE')
    assert _backups(demo, sid) == set(made[-ROTATION:])


@pytest.fixture(scope='module')
def quiesce_image(demo, images, tmp_path_factory):
    """The guest's image, with an agent channel, that requires quiesce
    (the guest runs no agent: a freeze could only fail).
    """
    path = os.path.join(str(tmp_path_factory.mktemp('quiesce')), 'guest')
    demo.run('image', 'save', '--file', path, conftest.IMAGE)
    shown = demo.run('image', 'show', '-f', 'json', conftest.IMAGE)
    props = shown.get('properties') or {}
    name = 'nse-cloud-require-quiesce'
    images.append(name)
    args = ['image', 'create', '--file', path, '--disk-format',
            shown['disk_format'], '--container-format', 'bare',
            '--property', 'hw_qemu_guest_agent=yes',
            '--property', 'os_require_quiesce=yes']
    # NOTE: the guest boots its kernel and ramdisk, which are images of
    # their own, with its command line.
    for key in ('kernel_id', 'ramdisk_id', 'os_command_line'):
        if props.get(key):
            args += ['--property', '%s=%s' % (key, props[key])]
    demo.run(*args, name)
    os.unlink(path)
    return name


def test_stopped_server_and_shelve_whose_image_requires_quiesce(
        demo, quiesce_image, images, servers):
    # NOTE: the direct snapshot of the rbd host is never quiesced either
    # (tests/nova: test_rbd_direct_snapshot_is_not_quiesced_as_novas).
    server = demo.server('nse-cloud-quiesce', image=quiesce_image)
    sid = server['id']
    servers.append(sid)
    demo.console_until(sid, 'CTR 100')
    demo.run('server', 'stop', sid)
    conftest.wait_status(demo, sid, 'SHUTOFF')
    images.append('nse-cloud-quiesce-stopped')
    image = demo.snapshot(sid, 'nse-cloud-quiesce-stopped')
    assert image['status'] == 'active'
    assert image['properties']['snapshot_method'] == 'cold'
    assert image['properties']['snapshot_quiesced'] == 'false'
    # Shelve: Nova stops the server and snapshots it, unquiesced.
    demo.run('server', 'start', sid)
    conftest.wait_status(demo, sid, 'ACTIVE')
    demo.run('server', 'shelve', sid)
    conftest.wait_status(demo, sid, 'SHELVED_OFFLOADED', timeout=300)
    images.append('nse-cloud-quiesce-shelved')
    shelved = demo.run('image', 'show', '-f', 'json',
                       'nse-cloud-quiesce-shelved')
    assert shelved['status'] == 'active'
    assert shelved['properties']['snapshot_method'] == 'cold'
    assert shelved['properties']['snapshot_quiesced'] == 'false'
    demo.run('server', 'unshelve', sid)
    conftest.wait_status(demo, sid, 'ACTIVE', timeout=300)
    demo.console_until(sid, 'TINYGUEST READY')
    demo.delete_server(sid)
