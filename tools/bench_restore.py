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

"""How long does bringing an image back take, against a plain copy?

Run it from the top of the repository, as root, on the real stack
(``tools/stack.sh up``)::

    python -m tools.bench_restore [--sizes 64,1024] [--repeat 3] [--json F]

For each size, a running guest holding that many MiB of random data is
snapshotted once into a directory store (a standalone qcow2), then each
case runs ``--repeat`` times, in turn, and the median is reported side by
side with the baseline of the same run:

* **qemu-img convert** (the baseline): the image written as a disk file,
  as by hand (``qemu-img convert -f qcow2 -O qcow2``, then fsync);
* **restore**: ``nova-snapshot-ext restore IMAGE --as NEW`` (the disk
  written and synced, the new domain defined; it is then undefined and its
  disk removed, unmeasured);
* **revert**: ``nova-snapshot-ext revert GUEST IMAGE`` of the guest, shut
  off (the new content written beside the disk, synced, swapped in).
"""

import contextlib
import functools
import os
import sys
import time
import uuid

from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import restore
from nova_snapshot_ext import revert
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import base as store_base
from tests.functional import conftest
from tools import bench
from tools import bench_runner as runner

CONVERT = 'qemu-img convert + fsync (baseline)'
RESTORE = 'restore into a new guest'
REVERT = 'revert in place'


def measure(args, guest, workdir: str) -> runner.Runner:
    conf = conftest.make_conf(workdir)
    store = store_base.load(conf, 'file://' + os.path.join(workdir, 'images'))
    result = snapshot.take_snapshot(snapshot.SnapshotRequest(
        guest=guest.name, name='bench', store=store.spec), conf=conf)
    guest.dom.destroy()
    run = runner.Runner(args.repeat, '%s, ' % guest.name, cache='warm')
    out = os.path.join(workdir, 'convert.qcow2')

    def convert() -> None:
        runner.remove(out)
        started = time.monotonic()
        runner.run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2',
                   result.image, out)
        with open(out, 'rb+') as f:
            os.fsync(f.fileno())
        run.record(CONVERT, time.monotonic() - started)
        runner.remove(out)

    def restored() -> None:
        name = 'nse-bench-restored-%s' % uuid.uuid4().hex[:6]
        started = time.monotonic()
        done = restore.restore(conf, result.image_id, name, store=store,
                               disk_dir=workdir)
        run.record(RESTORE, time.monotonic() - started)
        with contextlib.closing(host_mod.Host(
                conf.snapshot_libvirt.connection_uri)) as host:
            restore.drop_domain(host, done.uuid, name)
        for disk in done.disks:
            runner.remove(disk['path'])

    def reverted() -> None:
        started = time.monotonic()
        revert.revert(conf, guest.name, result.image_id, store=store)
        run.record(REVERT, time.monotonic() - started)

    run.run([(CONVERT, convert), (RESTORE, restored), (REVERT, reverted)])
    return run


def measure_all(args) -> None:
    runs = {size: bench.on_guest(size, functools.partial(measure, args))
            for size in args.sizes}
    print('\nRestore and revert of a standalone qcow2 image (median of %d, '
          'seconds, page cache warm):\n' % args.repeat)
    print(runner.size_table(runs, (CONVERT, RESTORE, REVERT), CONVERT,
                            'ratio to convert'))
    runner.write_json(args.json, {str(size): run.figures()
                                  for size, run in runs.items()})


def main(argv: list[str] | None = None) -> int:
    args = runner.options(
        'python -m tools.bench_restore', 'Restore into a new guest and '
        'revert in place against qemu-img convert of the same image.',
        argv, [1024])
    return runner.main(lambda: measure_all(args))


if __name__ == '__main__':
    sys.exit(main())
