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
with ``compute_driver = libvirt.LibvirtDriver`` (the baseline) and with
``nova_snapshot_ext.SnapshotLibvirtDriver``: seconds to an active image
(the command's own time, as a user waits for it), seconds the guest was
not running (its libvirt domain state, sampled every 0.1 s on the host's
libvirtd), peak bytes staged on the compute host (Nova's
``instances/snapshots`` and our ``[snapshot] temp_directory``) and peak RSS of
nova-compute, both sampled every 0.1 s.

Run with the cloud's venv, after ``tools/cloud.sh up`` (``tox -e bench``
does)::

    $CLOUD_DIR/venv/bin/python tools/bench_cloud.py [--sizes 64,1024] \
        [--hosts local,rbd] [--repeat 1] [--json FILE]

Each compute host is restarted with the driver under test
(``$CLOUD_DIR/etc/nova-compute-HOST-extra.conf``) and put back at the end.
"""

import functools
import os
import subprocess
import sys
import tempfile
import time

import libvirt

# NOTE: run as a script, with the cloud's venv: the repository's top
# makes the tools package importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from tools import bench_runner as runner  # noqa: E402
from tools import cloud_setup  # noqa: E402

CLOUD_DIR = cloud_setup.CLOUD_DIR
DRIVERS = [('stock', 'libvirt.LibvirtDriver'),
           ('ours', 'nova_snapshot_ext.SnapshotLibvirtDriver')]
HOSTS = ['local', 'rbd']
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
        # NOTE: within the bench flavor's 4 GB root disk.
        disk = runner.random_qcow2(tmp, size_mib, max(2 * size_mib, 1024))
        return conn.image.create_image(
            name=name, filename=disk, disk_format='qcow2',
            container_format='bare', visibility='public', wait=True,
            timeout=600, kernel_id=props['kernel_id'],
            ramdisk_id=props['ramdisk_id'],
            os_command_line=cloud_setup.GUEST_CMDLINE)


class Sampler(runner.Sampler):
    """The guest's domain state, bytes staged and nova-compute's RSS."""

    def __init__(self, server_id, host):
        super().__init__()
        self.lv = libvirt.open('qemu+unix:///system?socket=%s' % os.path.join(
            CLOUD_DIR, 'libvirt-' + host, 'run', 'libvirt-sock'))
        self.dom = self.lv.lookupByUUIDString(server_id)
        state = os.path.join(CLOUD_DIR, 'nova-' + host)
        self.stage_dirs = [os.path.join(state, 'instances', 'snapshots'),
                           os.path.join(state, 'snapshot-ext', 'tmp')]
        with open(os.path.join(CLOUD_DIR, 'run',
                               'nova-compute-%s.pid' % host)) as f:
            self.pid = int(f.read())
        self.not_running = 0.0
        self.staged = self.rss = 0
        self.last = time.monotonic()

    def sample(self):
        now = time.monotonic()
        if self.dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
            self.not_running += now - self.last
        self.last = now
        self.staged = max(self.staged, sum(runner.allocated(d)[0]
                                           for d in self.stage_dirs))
        try:
            with open('/proc/%d/status' % self.pid) as f:
                self.rss = max([self.rss] + [
                    int(line.split()[1]) * 1024 for line in f
                    if line.startswith('VmRSS:')])
        except OSError:
            pass

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.lv.close()


def bench_flavor(conn):
    """nse.tiny's memory with room on its root disk for the data."""
    flavor = conn.compute.find_flavor(FLAVOR)
    if flavor is None:
        flavor = conn.compute.create_flavor(name=FLAVOR, ram=192, vcpus=1,
                                            disk=4, is_public=True)
    return flavor


def measure(conn, run, row, host, size, label):
    name = 'nse-bench-%s-%s' % (host, label)
    server = conn.compute.create_server(
        name=name, image_id=data_image(conn, size).id,
        flavor_id=bench_flavor(conn).id,
        networks='none', availability_zone=host)
    server = conn.compute.wait_for_server(server, wait=600)
    try:
        time.sleep(5)
        with Sampler(server.id, host) as sampler:
            started = time.monotonic()
            openstack('server', 'image', 'create', '--wait', '--name',
                      name + '-snap', server.id, rc='admin-openrc')
            seconds = time.monotonic() - started
        snap = conn.image.find_image(name + '-snap')
        method = (snap.properties or {}).get('snapshot_method', '-')
        conn.image.delete_image(snap)
        run.record(row, seconds, down=sampler.not_running,
                   staged=sampler.staged, rss=sampler.rss, method=method)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=300)


def measure_all(args):
    if not os.path.exists(os.path.join(CLOUD_DIR, 'admin-openrc')):
        raise runner.BenchError('no cloud in %s (run tools/cloud.sh up)'
                                % CLOUD_DIR)
    conn = cloud_setup.connect()
    run = runner.Runner(args.repeat)
    rows = {}
    try:
        for host in args.hosts.split(','):
            for label, driver in DRIVERS:
                use_driver(host, driver)
                cases = []
                for size in args.sizes:
                    row = '%s %d MiB %s' % (host, size, label)
                    rows[row] = (host, size, label, '%s %d MiB %s' % (
                        host, size, DRIVERS[0][0]))
                    cases.append((row, functools.partial(
                        measure, conn, run, row, host, size, label)))
                run.run(cases)
    finally:
        for host in HOSTS:
            use_driver(host, None)
        for size in args.sizes:
            image = conn.image.find_image('nse-bench-%d' % size)
            if image is not None:
                conn.image.delete_image(image)
        flavor = conn.compute.find_flavor(FLAVOR)
        if flavor is not None:
            conn.compute.delete_flavor(flavor)
    print('\n'.join(runner.table([[
        'host', 'data', 'driver', 'method', 'to active', 'x stock',
        'not running', 'staged', 'compute RSS']] + [[
            host, '%dM' % size, label, ','.join(sorted(set(run.extra(
                row, 'method', list)))), '%.1fs' % run.median(row),
            '%.2f' % run.ratio(row, base), '%.1fs' % run.extra(row, 'down'),
            '%.0fM' % (run.extra(row, 'staged', max) / runner.MiB),
            '%.0fM' % (run.extra(row, 'rss', max) / runner.MiB)]
        for row, (host, size, label, base) in rows.items()])))
    runner.write_json(args.json, {row: dict(figures, runs=run.extras[row])
                                  for row, figures in run.figures().items()})


def main(argv=None):
    # NOTE: each run boots a server: one of each unless asked.
    args = runner.options(
        'tools/bench_cloud.py', __doc__.splitlines()[0], argv, [64, 1024],
        repeat=1, others=False, more=lambda p: p.add_argument(
            '--hosts', default=','.join(HOSTS),
            help='compute hosts, comma separated'))
    return runner.main(lambda: measure_all(args))


if __name__ == '__main__':
    sys.exit(main())
