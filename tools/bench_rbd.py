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
many MiB of random data is snapshotted ``--repeat`` times by each case,
in turn, and the median time from the call until the Glance image is
active is reported, side by side:

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

import functools
import os
import sys
import time

from nova_snapshot_ext.cleanup import gc as gc_mod
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import glance as glance_store
from tests.functional import ceph_stack
from tests.functional import conftest
from tests.functional import glance_stack
from tools import bench
from tools import bench_runner as runner

INLINE = 'direct, inline flatten'
DEFERRED = 'direct, deferred flatten'
GC = '(gc flatten after deferred)'
EXPORT = 'export + upload (baseline)'


def measure(args, url: str, guest, workdir: str) -> runner.Runner:
    conf = conftest.make_conf(workdir)
    ceph_stack.set_rbd_conf(conf)
    store = glance_store.GlanceStore(conf, 'glance+' + url)
    run = runner.Runner(args.repeat, '%s, ' % guest.name, rotate=False)

    def case(variant: str) -> None:
        conf.set_override('flatten', 'deferred' if variant == DEFERRED
                          else 'inline', group='snapshot_rbd')
        conf.set_override('direct_snapshot', variant != EXPORT,
                          group='snapshot_rbd')
        started = time.monotonic()
        result = snapshot.take_snapshot(snapshot.SnapshotRequest(
            guest=guest.name, name='%s-%d' % (
                os.path.basename(workdir), len(run.samples.get(variant, []))),
            store='glance+' + url), conf=conf)
        run.record(variant, time.monotonic() - started)
        want = 'live' if variant == EXPORT else 'direct'
        if result.method != want:
            raise runner.BenchError('%s: got a %s snapshot: %s' % (
                variant, result.method, result.reason))
        if variant == DEFERRED:
            started = time.monotonic()
            failed = [a for a in gc_mod.collect_garbage(
                conf, store, min_age=3600) if a.error]
            run.record(GC, time.monotonic() - started)
            if failed:
                raise runner.BenchError('gc: %s' % failed[0].error)
        glance_stack.delete(url, result.image_id)

    run.run([(v, functools.partial(case, v))
             for v in (INLINE, DEFERRED, EXPORT)])
    return run


def measure_all(args) -> None:
    url = bench.stack(glance_stack.endpoint, 'ceph')
    runs = {size: bench.on_guest(size, functools.partial(measure, args, url),
                                 rbd=True)
            for size in args.sizes}
    print('\nTime from the call until the Glance image is active (median of '
          '%d, seconds):\n' % args.repeat)
    print(runner.size_table(runs, (INLINE, DEFERRED, EXPORT, GC), EXPORT,
                            'ratio to export + upload', no_ratio=(GC,)))
    runner.write_json(args.json, {str(size): run.figures()
                                  for size, run in runs.items()})


def main(argv: list[str] | None = None) -> int:
    args = runner.options(
        'python -m tools.bench_rbd', 'Time to an active Glance image for '
        'direct RBD snapshots (inline and deferred flatten) against export '
        '+ upload of the same disk.', argv, [64, 1024])
    return runner.main(lambda: measure_all(args))


if __name__ == '__main__':
    sys.exit(main())
