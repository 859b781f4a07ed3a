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

"""Nova's own libvirt driver against ours, in one run on the one-node cloud.

For a server with 64 MiB and 1 GiB of data on its disk, on the local
(qcow2) and the rbd compute host, ``openstack server image create --wait``
with ``compute_driver = libvirt.LibvirtDriver`` and with
``nova_snapshot_ext.SnapshotLibvirtDriver``: seconds to an active image
(the command's own time, as a user waits for it), seconds the guest was
not running (its libvirt domain state, sampled every 0.1 s on the host's
libvirtd), peak bytes staged on the compute host (Nova's
``instances/snapshots`` and our ``$state_path/tmp``) and peak RSS of
nova-compute, both sampled every 0.1 s.

Run with the cloud's venv, after ``tools/cloud.sh up`` (``tox -e bench``
does)::

    $CLOUD_DIR/venv/bin/python tools/bench_cloud.py [--sizes 64,1024] \
        [--hosts local,rbd]

Each compute host is restarted with the driver under test
(``$CLOUD_DIR/etc/nova-compute-HOST-extra.conf``) and put back at the end.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

import libvirt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cloud_setup  # noqa: E402

CLOUD_DIR = cloud_setup.CLOUD_DIR
DRIVERS = [('stock', 'libvirt.LibvirtDriver'),
           ('ours', 'nova_snapshot_ext.SnapshotLibvirtDriver')]
HOSTS = ['local', 'rbd']
MiB = 1 << 20
FLAVOR = 'nse.bench'


def openstack(*args, rc='openrc'):
    env = dict(os.environ)
    with open(os.path.join(CLOUD_DIR, rc)) as f:
        for line in f:
            key, _, value = line.strip()[len('export '):].partition('=')
            env[key] = value
    command = os.path.join(os.path.dirname(sys.executable), 'openstack')
    return subprocess.run([command, *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def use_driver(host, driver):
    """HOST's nova-compute with DRIVER (None: the cloud's own)."""
    cloud_setup.restart_compute(
        host, None if driver is None
        else '[DEFAULT]\ncompute_driver = %s\n' % driver)


def data_image(conn, size_mib):
    """A copy of the test image with SIZE MiB of random data on it."""
    name = 'nse-bench-%d' % size_mib
    image = conn.image.find_image(name)
    if image is not None:
        return image
    guest = conn.image.find_image(cloud_setup.GUEST_IMAGE).to_dict()
    props = dict(guest.get('properties') or {}, **{
        k: v for k, v in guest.items() if k in ('kernel_id', 'ramdisk_id')
        and v})
    with tempfile.TemporaryDirectory(dir='/var/tmp') as tmp:
        raw = os.path.join(tmp, 'disk.raw')
        with open(raw, 'wb') as f:
            for _ in range(size_mib):
                f.write(os.urandom(MiB))
            # Within the bench flavor's 4 GB root disk.
            f.truncate(max(2 * size_mib, 1024) * MiB)
        disk = os.path.join(tmp, 'disk.qcow2')
        subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2',
                        raw, disk], check=True)
        return conn.image.create_image(
            name=name, filename=disk, disk_format='qcow2',
            container_format='bare', visibility='public', wait=True,
            timeout=600, kernel_id=props['kernel_id'],
            ramdisk_id=props['ramdisk_id'],
            os_command_line=cloud_setup.GUEST_CMDLINE)


def lv_uri(host):
    return ('qemu+unix:///system?socket=%s' % os.path.join(
        CLOUD_DIR, 'libvirt-' + host, 'run', 'libvirt-sock'))


class Sampler(threading.Thread):
    """The guest's domain state, bytes staged and nova-compute's RSS."""

    def __init__(self, server_id, host):
        super().__init__(daemon=True)
        self.lv = libvirt.open(lv_uri(host))
        self.dom = self.lv.lookupByUUIDString(server_id)
        state = os.path.join(CLOUD_DIR, 'nova-' + host)
        self.stage_dirs = [os.path.join(state, 'instances', 'snapshots'),
                           os.path.join(state, 'tmp')]
        with open(os.path.join(CLOUD_DIR, 'run',
                               'nova-compute-%s.pid' % host)) as f:
            self.pid = int(f.read())
        self.not_running = 0.0
        self.staged = 0
        self.rss = 0
        self.stop = threading.Event()

    def run(self):
        last = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if self.dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                self.not_running += now - last
            last = now
            self.staged = max(self.staged,
                              sum(_du(d) for d in self.stage_dirs))
            self.rss = max(self.rss, _rss(self.pid))
            self.stop.wait(0.1)
        self.lv.close()


def _du(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _rss(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def bench_flavor(conn):
    """nse.tiny's memory with room on its root disk for the data."""
    flavor = conn.compute.find_flavor(FLAVOR)
    if flavor is None:
        flavor = conn.compute.create_flavor(name=FLAVOR, ram=192, vcpus=1,
                                            disk=4, is_public=True)
    return flavor


def measure(conn, image, host, label):
    name = 'nse-bench-%s-%s' % (host, label)
    server = conn.compute.create_server(
        name=name, image_id=image.id,
        flavor_id=bench_flavor(conn).id,
        networks='none', availability_zone=host)
    server = conn.compute.wait_for_server(server, wait=600)
    try:
        time.sleep(5)
        sampler = Sampler(server.id, host)
        sampler.start()
        started = time.monotonic()
        openstack('server', 'image', 'create', '--wait', '--name',
                  name + '-snap', server.id, rc='admin-openrc')
        seconds = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
        snap = conn.image.find_image(name + '-snap')
        method = (snap.properties or {}).get('snapshot_method', '-')
        conn.image.delete_image(snap)
        return seconds, sampler.not_running, sampler.staged, sampler.rss, \
            method
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=300)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='64,1024',
                        help='MiB of data on the disk, comma separated')
    parser.add_argument('--hosts', default=','.join(HOSTS),
                        help='compute hosts, comma separated')
    args = parser.parse_args()
    if not os.path.exists(os.path.join(CLOUD_DIR, 'admin-openrc')):
        sys.exit('bench_cloud: no cloud in %s (run tools/cloud.sh up)'
                 % CLOUD_DIR)
    conn = cloud_setup.connect()
    rows = []
    sizes = [int(s) for s in args.sizes.split(',')]
    try:
        for host in args.hosts.split(','):
            for label, driver in DRIVERS:
                use_driver(host, driver)
                for size in sizes:
                    image = data_image(conn, size)
                    rows.append((host, size, label)
                                + measure(conn, image, host, label))
                    print('bench_cloud: %s %d MiB %s: %.1f s' % (
                        host, size, label, rows[-1][3]), file=sys.stderr)
    finally:
        for host in HOSTS:
            use_driver(host, None)
        for size in sizes:
            image = conn.image.find_image('nse-bench-%d' % size)
            if image is not None:
                conn.image.delete_image(image)
        flavor = conn.compute.find_flavor(FLAVOR)
        if flavor is not None:
            conn.compute.delete_flavor(flavor)
    print('%-6s %6s %-6s %-7s %10s %12s %12s %12s' % (
        'host', 'data', 'driver', 'method', 'to active', 'not running',
        'staged', 'compute RSS'))
    for host, size, label, secs, down, staged, rss, method in rows:
        print('%-6s %5dM %-6s %-7s %9.1fs %11.1fs %11.0fM %11.0fM' % (
            host, size, label, method, secs, down, staged / MiB, rss / MiB))


if __name__ == '__main__':
    main()
