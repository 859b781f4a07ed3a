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

For a server with each ``--sizes`` MiB of random data on its disk (1 and
4 GiB by default), on the local (qcow2) and the rbd compute host, a
snapshot through the compute API (``createImage``, what ``openstack
server image create`` asks for) with ``compute_driver =
libvirt.LibvirtDriver`` (the baseline) and with
``nova_snapshot_ext.SnapshotLibvirtDriver``:

* **to active**: seconds from the request to an active image, its status
  polled every :data:`POLL` seconds (the command's ``--wait`` looks every
  5 s);
* **not running**: seconds the guest was not running (its libvirt domain
  state, sampled every 0.1 s on the host's libvirtd);
* **guest**: the guest's write rate during the snapshot against an idle
  window of :data:`IDLE` seconds just before (its counter, read from its
  disk file: local hosts only);
* **staged**: peak bytes under Nova's ``instances/snapshots`` and our
  ``[snapshot] temp_directory`` on the compute host, and **compute RSS**,
  the peak RSS of nova-compute (and how much above its RSS before the
  request), both sampled every 0.1 s.

On the rbd host ours runs twice: with ``[snapshot_rbd] flatten = inline``
(the image is flat when it is active, as Nova's) and with the cloud's
``deferred`` (``nova-snapshot-ext gc`` flattens it later). The rbd host
takes the sizes up to :data:`RBD_MAX_MIB`. Images of the local hosts'
servers are in Glance's file store; every snapshot goes to Glance's
default store, rbd: the stack's memstore OSD must hold the largest
snapshot (4 GiB by default: ``CEPH_OSD_BYTES=10737418240 tools/stack.sh
up`` for 4 GiB of data).

``--at-once N`` (16 by default, 0: none) then boots N servers with
``--at-once-mb`` (64) MiB of data, spread over ``--hosts``, and
snapshots them all at once (the compute API, one thread each) with each
driver in turn, ``--at-once-repeat`` (1) times: the seconds to the last
active image and each image's own. Nova's ``max_concurrent_snapshots``
(5 per host) applies to both drivers.

``python -m tools.bench_charts FILE DIR`` draws the ``--json`` FILE:
stock against ours (``cloud.png``).

Run with the cloud's venv, after ``tools/cloud.sh up`` (``tox -e bench``
does)::

    $CLOUD_DIR/venv/bin/python tools/bench_cloud.py [--sizes 1024,4096] \
        [--hosts local,rbd] [--repeat 1] [--at-once 16] [--at-once-mb 64] \\
        [--at-once-repeat 1] [--json FILE]

Each compute host is restarted with the driver under test
(``$CLOUD_DIR/etc/nova-compute-HOST-extra.conf``) and put back at the end.
"""

from concurrent import futures
import functools
import os
import statistics
import sys
import tempfile
import time

import openstack

# NOTE: run as a script, with the cloud's venv: the repository's top
# makes the tools package importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from tools import bench_cloud_host as host_probe  # noqa: E402
from tools import bench_runner as runner  # noqa: E402
from tools import cloud_setup  # noqa: E402

CLOUD_DIR = cloud_setup.CLOUD_DIR
STOCK = 'libvirt.LibvirtDriver'
OURS = 'nova_snapshot_ext.SnapshotLibvirtDriver'
#: label, compute_driver, more of nova-compute's configuration.
DRIVERS = [('stock', STOCK, ''),
           ('ours', OURS, '[snapshot_rbd]\nflatten = inline\n')]
#: Only on the rbd host: the cloud's own setting.
DEFERRED = ('ours deferred', OURS, '')
HOSTS = ['local', 'rbd']
FLAVOR = 'nse.bench'
FLAVOR_RAM = 192
#: Seconds between two looks at the image's status.
POLL = 0.2
#: Seconds of the guest's idle write rate before each snapshot.
IDLE = 5.0
#: The largest data of the rbd host's servers (a snapshot doubles it in
#: the memstore OSD).
RBD_MAX_MIB = 1024
#: Glance store of the images of the servers of each kind of host.
STORES = {'local': 'file1', 'local2': 'file1', 'rbd': 'rbd1'}


def use_driver(host, driver=None, more=''):
    """HOST's nova-compute with DRIVER and MORE configuration (None: the
    cloud's own).
    """
    cloud_setup.restart_compute(
        host, None if driver is None
        else '[DEFAULT]\ncompute_driver = %s\n%s' % (driver, more))


def data_image(conn, size_mib, store):
    """A copy of the test image with SIZE MiB of random data on it, in
    Glance's STORE.
    """
    name = 'nse-bench-%d-%s' % (size_mib, store)
    image = conn.image.find_image(name)
    if image is not None:
        return image
    guest = conn.image.find_image(cloud_setup.GUEST_IMAGE).to_dict()
    props = dict(guest.get('properties') or {}, **{
        k: v for k, v in guest.items() if k in ('kernel_id', 'ramdisk_id')
        and v})
    with tempfile.TemporaryDirectory(dir='/var/tmp') as tmp:
        # NOTE: within the bench flavor's root disk.
        disk = runner.random_qcow2(tmp, size_mib, disk_mib(size_mib))
        image = conn.image.create_image(
            name=name, filename=disk, disk_format='qcow2',
            container_format='bare', visibility='public', wait=True,
            timeout=1800, stores=[store], kernel_id=props['kernel_id'],
            ramdisk_id=props['ramdisk_id'],
            os_command_line=cloud_setup.GUEST_CMDLINE)
        # NOTE: an import into a given store ends after the call.
        return conn.image.wait_for_status(image, 'active', failures=[
            'killed'], interval=1, wait=1800)


def delete_image(conn, image):
    """Delete IMAGE, again while Glance refuses (an image registered by
    location is active before Glance's own task hashing its data ends,
    and Glance fails a delete meanwhile).
    """
    deadline = time.monotonic() + 120
    while True:
        try:
            return conn.image.delete_image(image)
        except openstack.exceptions.HttpException:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def disk_mib(size_mib):
    return max(2 * size_mib, 1024)


def delete_data_images(conn):
    for image in conn.image.images():
        if image.name.startswith('nse-bench-') and \
                image.name.split('-')[-1] in STORES.values():
            conn.image.delete_image(image)


def bench_flavor(conn, disk_gb):
    """nse.tiny's memory with a root disk of DISK_GB: no more, or the
    rbd host's small pool would not take it.
    """
    name = '%s-%d' % (FLAVOR, disk_gb)
    flavor = conn.compute.find_flavor(name)
    if flavor is None:
        flavor = conn.compute.create_flavor(name=name, ram=FLAVOR_RAM, vcpus=1,
                                            disk=disk_gb, is_public=True)
    return flavor


def boot(conn, name, host, size):
    """A server with SIZE MiB of data on HOST (not waited for)."""
    zone = next(z for z, hosts in cloud_setup.ZONES.items() if host in hosts)
    return conn.compute.create_server(
        name=name, image_id=data_image(conn, size, STORES[host]).id,
        flavor_id=bench_flavor(conn, -(-disk_mib(size) // 1024)).id,
        networks='none', availability_zone='%s:%s' % (zone, host))


def measure(conn, run, row, host, size, label):
    name = 'nse-bench-%s-%s' % (host, label.replace(' ', '-'))
    server = conn.compute.wait_for_server(boot(conn, name, host, size),
                                          wait=900)
    try:
        with host_probe.Sampler(server.id, host) as sampler:
            counter = host_probe.guest_counter(sampler.dom)
            idle = counter.rate(IDLE) if counter else time.sleep(IDLE)
            before = counter.read() if counter else 0
            started = time.monotonic()
            snap = snapshot(conn, server.id, name + '-snap')
            seconds = time.monotonic() - started
            during = (counter.read() - before) / seconds if counter else 0
        method = (snap.properties or {}).get('snapshot_method', '-')
        delete_image(conn, snap)
        run.record(row, seconds, down=sampler.not_running,
                   staged=sampler.staged, rss=sampler.rss,
                   rss_growth=sampler.rss - sampler.rss_before, method=method,
                   guest=during / idle if idle else None)
    finally:
        conn.compute.delete_server(server)
        conn.compute.wait_for_delete(server, wait=300)


def variants(host):
    return DRIVERS + ([DEFERRED] if host == 'rbd' else [])


def single(conn, run, args, rows):
    """One server at a time; ``rows`` gets each row's host, size, driver
    and stock baseline.
    """
    for host in args.hosts:
        sizes = [s for s in args.sizes if host != 'rbd' or s <= RBD_MAX_MIB]
        for label, driver, more in variants(host):
            use_driver(host, driver, more)
            cases = []
            for size in sizes:
                row = '%s %d MiB %s' % (host, size, label)
                rows[row] = (host, size, label, '%s %d MiB %s' % (
                    host, size, DRIVERS[0][0]))
                cases.append((row, functools.partial(
                    measure, conn, run, row, host, size, label)))
            run.run(cases)


def snapshot(conn, server_id, name):
    """The image NAME of the server through the compute API's
    createImage, once active (its status polled every :data:`POLL` s).
    """
    image_id = conn.compute.create_server_image(server_id, name).id
    return conn.image.wait_for_status(
        conn.image.get_image(image_id), 'active', failures=['killed'],
        interval=POLL, wait=3600)


def snap_and_wait(server_id, name):
    """Seconds from the compute API's createImage to an active image."""
    conn = cloud_setup.connect()
    started = time.monotonic()
    image = snapshot(conn, server_id, name)
    seconds = time.monotonic() - started
    delete_image(conn, image)
    return seconds


def at_once(conn, run, args):
    """``--at-once`` servers with ``--at-once-mb`` of data, spread over
    the hosts, snapshotted at once with each driver in turn.
    """
    size = args.at_once_mb
    hosts = [args.hosts[i % len(args.hosts)] for i in range(args.at_once)]
    servers = []
    project, quotas = conn.current_project_id, {}
    try:
        old = conn.get_compute_quotas(project)
        quotas = {k: old[k] for k in ('instances', 'cores', 'ram')}
        # NOTE: the project's own quota (10 servers) would refuse them.
        conn.set_compute_quotas(project, **{k: max(v, (len(hosts) + 2) * (
            FLAVOR_RAM if k == 'ram' else 1)) for k, v in quotas.items()})
        for i, host in enumerate(hosts):
            servers.append(boot(conn, 'nse-bench-%d-%s' % (i, host), host,
                                size))
        servers = [conn.compute.wait_for_server(s, wait=1800)
                   for s in servers]
        for label, driver, more in DRIVERS:
            for host in sorted(set(hosts)):
                use_driver(host, driver, more)
            row = '%d servers at once, %d MiB, %s' % (
                len(servers), size, label)

            def case(row=row):
                started = time.monotonic()
                with futures.ThreadPoolExecutor(len(servers)) as pool:
                    each = list(pool.map(
                        lambda s: snap_and_wait(s.id, s.name + '-snap'),
                        servers))
                run.record(row, time.monotonic() - started, each=each)
            run.run([(row, case)])
    finally:
        for server in servers:
            conn.compute.delete_server(server)
        for server in servers:
            conn.compute.wait_for_delete(server, wait=300)
        if quotas:
            conn.set_compute_quotas(project, **quotas)


def measure_all(args):
    if not os.path.exists(os.path.join(CLOUD_DIR, 'admin-openrc')):
        raise runner.BenchError('no cloud in %s (run tools/cloud.sh up)'
                                % CLOUD_DIR)
    conn = cloud_setup.connect()
    run = runner.Runner(args.repeat)
    # NOTE: a run of many servers takes minutes: one unless asked.
    many = runner.Runner(args.at_once_repeat)
    rows = {}
    try:
        if not args.only_at_once:
            single(conn, run, args, rows)
        if args.at_once:
            at_once(conn, many, args)
    except BaseException:
        # NOTE: what was measured is not lost.
        print(report(run, rows, many), file=sys.stderr)
        save(args.json, run, rows, many)
        raise
    finally:
        for host in set(HOSTS + args.hosts):
            use_driver(host)
        delete_data_images(conn)
        for flavor in conn.compute.flavors():
            if flavor.name.startswith(FLAVOR + '-'):
                conn.compute.delete_flavor(flavor)
    print(report(run, rows, many))
    save(args.json, run, rows, many)


def save(path, run, rows, many):
    """The figures of the run, as JSON in PATH (None: nowhere)."""
    figures = run.figures()
    runner.write_json(path, {'kind': 'cloud', 'rows': {
        row: dict(figures[row], host=host, data_mb=size, driver=label,
                  baseline=base, runs=run.extras[row])
        for row, (host, size, label, base) in rows.items()
        if row in figures}, 'at_once': {
        row: dict(f, runs=many.extras[row])
        for row, f in many.figures().items()}})


def _pct(value):
    return '-' if value is None else '%.0f%%' % (100 * value)


def report(run, rows, many):
    lines = [] if not run.samples else runner.table([[
        'host', 'data', 'driver', 'method', 'to active', 'x stock',
        'not running', 'guest', 'staged', 'compute RSS', 'growth']] + [[
            host, '%dM' % size, label, ','.join(sorted(set(run.extra(
                row, 'method', list)))), '%.1fs' % run.median(row),
            '%.2f' % run.ratio(row, base), '%.1fs' % run.extra(row, 'down'),
            _pct(run.extra(row, 'guest', lambda v: None if None in v
                           else statistics.median(v))),
            '%.0fM' % (run.extra(row, 'staged', max) / runner.MiB),
            '%.0fM' % (run.extra(row, 'rss', max) / runner.MiB),
            '+%.0fM' % (run.extra(row, 'rss_growth', max) / runner.MiB)]
        for row, (host, size, label, base) in rows.items()
        if row in run.samples and base in run.samples])
    if many.samples:
        lines += [''] * bool(lines) + runner.table([[
            'at once', 'all active', 'each: median', 'max']] + [[
                row, '%.1fs' % many.median(row),
                '%.1fs' % many.extra(row, 'each', lambda v: statistics.median(
                    x for e in v for x in e)),
                '%.1fs' % many.extra(row, 'each', lambda v: max(
                    x for e in v for x in e))] for row in many.samples])
    return '\n'.join(lines)


def main(argv=None):
    # NOTE: each run boots a server: one of each unless asked.
    def more(parser):
        parser.add_argument('--hosts', default=','.join(HOSTS),
                            type=lambda text: text.split(','),
                            help='compute hosts, comma separated')
        parser.add_argument('--at-once', type=int, default=16,
                            help='servers snapshotted at once (0: none)')
        parser.add_argument('--at-once-mb', type=int, default=64,
                            help='MiB of data of each of them')
        parser.add_argument('--at-once-repeat', type=int, default=1,
                            help='runs of them (default: %(default)s)')
        parser.add_argument('--only-at-once', action='store_true',
                            help='no server alone')
    args = runner.options(
        'tools/bench_cloud.py', __doc__.splitlines()[0], argv, [1024, 4096],
        repeat=1, others=False, more=more)
    return runner.main(lambda: measure_all(args))


if __name__ == '__main__':
    sys.exit(main())
