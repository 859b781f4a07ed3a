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

"""How soon is a snapshot of an RBD guest an active Glance image?

Run it from the top of the repository, as root, on the real stack
(``tools/stack.sh up``: it uses its Ceph and its Ceph-backed Glance)::

    python -m tools.bench_rbd [--sizes 64,1024] [--repeat 3] [--json F]

For each size, a running guest whose disk is an RBD image holding that
many MiB of random data is snapshotted ``--repeat`` times by each
variant, in turn, and the median time from the call until the Glance
image is active is reported, side by side:

* **direct, inline flatten**: RBD snapshot, clone into Glance's pool,
  flatten, register the location (what Nova does);
* **direct, deferred flatten**: the same without the flatten, which
  ``nova-snapshot-ext gc`` does afterwards (its time is reported too);
* **export + upload** (the baseline): the disk read from an RBD snapshot
  by qemu-img and uploaded into the same Glance (``[snapshot_rbd]
  direct_snapshot = false``), which is what a snapshot costs without the
  direct path.

Every image is deleted after its measurement.
"""

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid

from nova_snapshot_ext.cleanup import gc as gc_mod
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import glance as glance_store
from tests.functional import ceph_stack
from tests.functional import conftest
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tools import bench_common as common

INLINE = 'direct, inline flatten'
DEFERRED = 'direct, deferred flatten'
GC = '(gc flatten after deferred)'
EXPORT = 'export + upload (baseline)'
VARIANTS = (INLINE, DEFERRED, EXPORT)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m tools.bench_rbd',
        description='Time to an active Glance image for direct RBD '
                    'snapshots (inline and deferred flatten) against '
                    'export + upload of the same disk.')
    parser.add_argument('--sizes', default='64,1024',
                        help='MiB of data on the guest disk, comma '
                             'separated (default: %(default)s)')
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs of each variant; the median is '
                             'reported (default: %(default)s)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the figures to FILE as JSON')
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(',')]
    except ValueError:
        parser.error('--sizes must be numbers, e.g. 64,1024')
    if args.repeat < 1 or min(args.sizes) < 2:
        parser.error('--repeat must be at least 1 and sizes at least 2')
    return args


def measure_size(conn, url: str, data_mb: int, repeat: int,
                 workroot: str) -> dict[str, list[float]]:
    tag = 'bench-rbd-%s' % uuid.uuid4().hex[:6]
    workdir = os.path.join(workroot, tag)
    conf = conftest.make_conf(workdir)
    ceph_stack.set_rbd_conf(conf)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS + (GC,)}
    print('%d MiB: preparing the disk and booting %s%s' % (
        data_mb, guest_mod.PREFIX, tag), file=sys.stderr, flush=True)
    guest = guest_mod.TestGuest(
        conn, workdir, tag, fmt='raw', data_mb=data_mb,
        disks=lambda d, n: ceph_stack.import_disk(conn, d, 'vms', n))
    try:
        guest.start()
        store = glance_store.GlanceStore(conf, 'glance+' + url)
        for run in range(repeat):
            for variant in VARIANTS:
                conf.set_override('flatten', 'deferred' if variant ==
                                  DEFERRED else 'inline', group='snapshot_rbd')
                conf.set_override('direct_snapshot', variant != EXPORT,
                                  group='snapshot_rbd')
                started = time.monotonic()
                result = snapshot.take_snapshot(snapshot.SnapshotRequest(
                    guest=guest.name, name='%s-%d' % (tag, run),
                    store='glance+' + url), conf=conf)
                times[variant].append(time.monotonic() - started)
                want = 'live' if variant == EXPORT else 'direct'
                if result.method != want:
                    raise common.BenchError('%s: got a %s snapshot: %s' % (
                        variant, result.method, result.reason))
                if variant == DEFERRED:
                    started = time.monotonic()
                    failed = [a for a in gc_mod.collect_garbage(
                        conf, store, min_age=3600) if a.error]
                    times[GC].append(time.monotonic() - started)
                    if failed:
                        raise common.BenchError('gc: %s' % failed[0].error)
                glance_stack.delete(url, result.image_id)
                print('  %-28s %6.2f s' % (variant, times[variant][-1]),
                      file=sys.stderr, flush=True)
    finally:
        guest.remove()
        ceph_stack.remove_disk(guest.disks.path)
        shutil.rmtree(workdir, ignore_errors=True)
    return times


def run(args: argparse.Namespace) -> dict:
    conn = common.connect()
    try:
        url = glance_stack.endpoint('ceph')
    except guest_mod.StackMissing as e:
        raise common.BenchError(str(e))
    figures = {}
    try:
        for size in args.sizes:
            figures[size] = measure_size(conn, url, size, args.repeat,
                                         guest_mod.work_root())
    finally:
        conn.close()
    print('\nTime from the call until the Glance image is active (median of '
          '%d, seconds):\n' % args.repeat)
    print('| disk data | variant | median s | ratio to export + upload |')
    print('|---|---|---|---|')
    for size, times in figures.items():
        base = statistics.median(times[EXPORT])
        for variant in VARIANTS + (GC,):
            median = statistics.median(times[variant])
            ratio = '%.2f' % (median / base) if variant != GC else '-'
            print('| %d MiB | %s | %.2f | %s |' % (size, variant, median,
                                                   ratio))
    out = {str(size): {v: {'median': statistics.median(t), 'runs': t}
                       for v, t in times.items()}
           for size, times in figures.items()}
    common.write_json(args.json, out)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    return common.run_main(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
