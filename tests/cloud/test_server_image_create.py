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

"""``openstack server image create`` through a real nova-compute."""

import json
import os
import subprocess
import time

import pytest

from tests.cloud import conftest
from tests.functional import guest as guest_mod
from tests.polling import wait_until

#: A boot, a snapshot or two, a shelve (about 3.5 min at most on 2 cores).
pytestmark = pytest.mark.timeout(900)

RUNNING = 1          # Nova's power_state.RUNNING
#: Glance's rbd store in the cloud (tools/cloud.sh).
IMAGES_POOL = 'cloud-images'
#: Nova's pool of instance disks on the rbd host.
VMS_POOL = 'cloud-vms'


def _save(demo, image, tmp_path):
    path = os.path.join(str(tmp_path), image['id'])
    demo.run('image', 'save', '--file', path, image['id'])
    return path


def _info(path, fmt):
    return json.loads(subprocess.run(
        ['prlimit', '--as=1073741824', 'qemu-img', 'info', '-f', fmt,
         '--output=json', path], check=True, capture_output=True,
        text=True).stdout)


def test_live_snapshot_of_a_running_server(demo, local_server, images,
                                           servers, tmp_path):
    with conftest.Sampler(demo.sdk, local_server['id']) as sampler:
        image = demo.snapshot(local_server['id'], 'nse-cloud-live')
    images.append('nse-cloud-live')

    assert image['status'] == 'active'
    props = image['properties']
    assert props['image_type'] == 'snapshot'
    assert props['instance_uuid'] == local_server['id']
    assert props['snapshot_method'] == 'live'
    assert 'running' in props['snapshot_reason']
    # Never paused nor stopped while the snapshot ran.
    assert sampler.samples
    assert {(s, p) for s, p, _ in sampler.samples} == {('ACTIVE', RUNNING)}
    assert any(t for _, _, t in sampler.samples), 'no snapshot seen'

    path = _save(demo, image, tmp_path)
    info = _info(path, image['disk_format'])
    assert 'backing-filename' not in info      # standalone
    check = guest_mod.check_image(path, image['disk_format'],
                                  info['virtual-size'])
    assert check.point_in_time, check.counters
    assert check.last >= 500

    # A server booted from the snapshot runs and writes again.
    server = demo.server('nse-cloud-from-live', image=image['id'])
    servers.append(server['id'])
    demo.console_until(server['id'], 'TINYGUEST READY')
    # Every running TCG guest slows the others down.
    demo.delete_server(server['id'])


@pytest.mark.parametrize('state', ['stopped', 'paused', 'suspended'])
def test_snapshot_of_a_stopped_server_puts_it_back(demo, local_server,
                                                   images, state):
    sid = local_server['id']
    # A paused guest's disk stands still: it is copied live, as Nova's
    # own driver does, and the guest stays paused.
    to, back, status, method = {
        'stopped': ('stop', 'start', 'SHUTOFF', 'cold'),
        'paused': ('pause', 'unpause', 'PAUSED', 'live'),
        'suspended': ('suspend', 'resume', 'SUSPENDED', 'cold'),
    }[state]
    demo.run('server', to, sid)
    conftest.wait_status(demo, sid, status)
    name = 'nse-cloud-cold-' + state
    try:
        image = demo.snapshot(sid, name)
        images.append(name)
        assert image['status'] == 'active'
        assert image['properties']['snapshot_method'] == method
        server = demo.run('server', 'show', '-f', 'json', sid)
        assert server['status'] == status
        assert server['OS-EXT-STS:task_state'] is None
    finally:
        demo.run('server', back, sid)
        conftest.wait_status(demo, sid, 'ACTIVE')


def test_direct_snapshot_on_the_rbd_host(demo, admin, rbd_server, images,
                                         servers):
    with conftest.Sampler(demo.sdk, rbd_server['id']) as sampler:
        image = demo.snapshot(rbd_server['id'], 'nse-cloud-direct')
    images.append('nse-cloud-direct')

    assert image['status'] == 'active'
    assert image['properties']['snapshot_method'] == 'direct'
    assert {(s, p) for s, p, _ in sampler.samples} == {('ACTIVE', RUNNING)}
    # Registered in Glance's rbd store, in the cluster of the disk: nothing
    # went through the compute host.
    shown = admin.run('image', 'show', '-f', 'json', image['id'])
    urls = [loc['url'] for loc in shown['properties']['locations']]
    fsid = _ceph_fsid()
    assert urls == ['rbd://%s/%s/%s/snap' % (fsid, IMAGES_POOL,
                                             image['id'])]
    assert shown['properties']['stores'] == 'rbd1'

    server = demo.server('nse-cloud-from-direct', az='rbd',
                         image=image['id'])
    servers.append(server['id'])
    demo.console_until(server['id'], 'TINYGUEST READY')
    demo.delete_server(server['id'])


def test_deferred_flatten_then_gc(demo, rbd_server, images):
    """On the rbd host the image is active at once, a clone of the disk's
    snapshot; ``nova-snapshot-ext gc`` flattens it.
    """
    image = demo.snapshot(rbd_server['id'], 'nse-cloud-deferred')
    images.append('nse-cloud-deferred')
    assert image['status'] == 'active'
    assert image['properties']['snapshot_method'] == 'direct'
    assert 'parent' in _rbd_info(IMAGES_POOL + '/' + image['id'])

    cli = os.path.join(conftest.CLOUD_DIR, 'venv', 'bin',
                       'nova-snapshot-ext')
    proc = subprocess.run(
        [cli, '--config-file', os.path.join(conftest.CLOUD_DIR, 'cli.conf'),
         'gc', '--store', 'glance', '--min-age', '0'],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert 'parent' not in _rbd_info(IMAGES_POOL + '/' + image['id'])
    # Still the image Glance serves, now standalone.
    assert demo.run('image', 'show', '-f', 'json',
                    image['id'])['status'] == 'active'


def test_shelve_offload_on_the_rbd_host_leaves_no_disk(demo, images,
                                                       servers):
    """Shelve (offloaded at once, Nova's default) of a server on the rbd
    host, whose snapshot is direct with a deferred flatten: Nova removes
    the disk, which keeps no ``nse-`` snapshot; unshelve boots from the
    image.
    """
    server = demo.server('nse-cloud-shelve', az='rbd')
    sid = server['id']
    servers.append(sid)
    demo.console_until(sid, 'CTR 100')
    started = time.monotonic()
    demo.run('server', 'shelve', sid)
    conftest.wait_status(demo, sid, 'SHELVED_OFFLOADED', timeout=300)
    print('shelve-offload took %.0f s' % (time.monotonic() - started))
    images.append('nse-cloud-shelve-shelved')
    disks = [n for n in _rbd_ls(VMS_POOL) if n.startswith(sid)]
    assert disks == [], disks

    demo.run('server', 'unshelve', sid)
    conftest.wait_status(demo, sid, 'ACTIVE', timeout=300)
    demo.console_until(sid, 'TINYGUEST READY')
    demo.delete_server(sid)


def _rbd_ls(pool):
    return conftest.rbd('ls', pool)


def _rbd_info(spec):
    return conftest.rbd('info', spec)


def test_other_servers_answer_during_a_snapshot(demo, admin, local_server,
                                                images, servers):
    """nova-compute keeps serving its other servers and its heartbeat
    while it snapshots one of them.
    """
    other = demo.server('nse-cloud-neighbour')
    servers.append(other['id'])
    images.append('nse-cloud-busy')
    snap = conftest.SnapshotInBackground(demo, local_server['id'],
                                         'nse-cloud-busy')
    conftest.wait_task(demo, local_server['id'])
    # Through the API directly: a command per action would take longer
    # than the snapshot.
    demo.sdk.compute.pause_server(other['id'])
    conftest.wait_status(demo, other['id'], 'PAUSED')
    demo.sdk.compute.unpause_server(other['id'])
    conftest.wait_status(demo, other['id'], 'ACTIVE')
    states = [s.state for s in admin.sdk.compute.services(
        binary='nova-compute', host='local')]
    assert states == ['up']
    assert not snap.done.is_set(), 'the snapshot ended before the checks'
    snap.join()
    demo.delete_server(other['id'])


def test_glance_stopped_during_a_snapshot(demo, local_server, images):
    sid = local_server['id']
    demo.run('server', 'image', 'create', '--name', 'nse-cloud-no-glance',
             sid)
    images.append('nse-cloud-no-glance')
    try:
        # Once the compute API made the record: nova-compute cannot read
        # it, nor upload into it, nor delete it.
        conftest.glance_kill()
        conftest.wait_status(demo, sid, 'ACTIVE', timeout=300)
    finally:
        conftest.glance('restart')
    server = demo.run('server', 'show', '-f', 'json', sid)
    assert server['OS-EXT-STS:power_state'] in (RUNNING, 'Running')
    # The record Nova could not delete is deleted once Glance is back.
    wait_until(lambda: demo.run('image', 'list', '--name',
                                'nse-cloud-no-glance', '-f', 'json') == [],
               90, interval=2, message='nse-cloud-no-glance still listed')
    image = demo.snapshot(sid, 'nse-cloud-glance-back')
    images.append('nse-cloud-glance-back')
    assert image['status'] == 'active'


def test_compute_killed_mid_snapshot_and_started_again(demo, admin,
                                                       local_server,
                                                       images):
    sid = local_server['id']
    demo.run('server', 'image', 'create', '--name', 'nse-cloud-killed', sid)
    images.append('nse-cloud-killed')
    conftest.wait_task(demo, sid, ('image_pending_upload', 'image_uploading'))
    pid = int(open(os.path.join(conftest.CLOUD_DIR, 'run',
                                'nova-compute-local.pid')).read())
    os.kill(pid, 9)
    conftest.cloud_sh('restart', 'nova-compute-local')

    def settled():
        server = demo.run('server', 'show', '-f', 'json', sid)
        return server if (server['status'] == 'ACTIVE' and
                          server['OS-EXT-STS:task_state'] is None) else None
    server = wait_until(settled, 180, interval=3,
                        message='server %s never ACTIVE again' % sid)
    assert server['OS-EXT-STS:power_state'] in (RUNNING, 'Running')
    # Nova leaves the record queued (or saving) for good; the driver
    # wrote it down and deleted it when nova-compute started again.
    left = demo.run('image', 'show', '-f', 'json', 'nse-cloud-killed',
                    check=False)
    status = (json.loads(left.stdout)['status'] if left.returncode == 0
              else 'gone')
    print('image after the kill: %s' % status)
    assert status in ('gone', 'active'), status
    # None of our leftovers once the driver started again: no block job,
    # no journal, no temporary file.
    dom = admin.run('server', 'show', '-f', 'json',
                    sid)['OS-EXT-SRV-ATTR:instance_name']
    uri = ('qemu+unix:///system?socket=%s/libvirt-local/run/libvirt-sock'
           % conftest.CLOUD_DIR)
    jobs = subprocess.run(['virsh', '-c', uri, 'blockjob', dom, 'vda'],
                          capture_output=True, text=True, check=True)
    assert 'No current block job' in jobs.stdout, jobs.stdout
    host_dir = os.path.join(conftest.CLOUD_DIR, 'nova-local')
    for sub in ('snapshot-ext/snapshots', 'instances/snapshots'):
        path = os.path.join(host_dir, sub)
        assert not os.path.isdir(path) or os.listdir(path) == [], path
    # Usable: the next snapshot works.
    image = demo.snapshot(sid, 'nse-cloud-after-kill')
    images.append('nse-cloud-after-kill')
    assert image['status'] == 'active'


def _ceph_fsid():
    conf = os.path.join(conftest.STACK_DIR, 'ceph', 'ceph.conf')
    with open(conf) as f:
        for line in f:
            if line.strip().startswith('fsid'):
                return line.split('=', 1)[1].strip()
    raise AssertionError('no fsid in ' + conf)
