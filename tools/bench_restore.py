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

Then, on a guest with ``--ram-mb`` MiB of memory (512) whose page cache
holds its ``--memory-data-mb`` MiB of data (it reads its disk at boot),
how long the guest is paused and how long the whole takes:

* **virsh save + virsh restore** (the baseline): the guest's memory
  saved to a file and the guest started from it; it is stopped
  throughout;
* **snapshot --memory**: the guest's memory and disks into the directory
  store, the guest running on; its pause is read from libvirt's lifecycle
  events (suspended to resumed).
"""

import contextlib
import functools
import os
import re
import sys
import threading
import time
import uuid

import libvirt

from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import restore
from nova_snapshot_ext import revert
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import base as store_base
from tests.functional import conftest
from tests.functional import guest as guest_mod
from tools import bench
from tools import bench_runner as runner

CONVERT = 'qemu-img convert + fsync (baseline)'
RESTORE = 'restore into a new guest'
REVERT = 'revert in place'
SAVE = 'virsh save + virsh restore (baseline)'
MEMORY = 'snapshot --memory'
SAVE_PAUSE = 'virsh save + restore: paused'
MEMORY_PAUSE = 'snapshot --memory: paused'


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


class Pauses:
    """The pauses of one domain, from libvirt's lifecycle events."""

    _loop = False

    def __init__(self, name: str) -> None:
        if not Pauses._loop:
            libvirt.virEventRegisterDefaultImpl()
            threading.Thread(target=self._run, daemon=True).start()
            Pauses._loop = True
        self.marks: list[tuple[float, int]] = []
        self.conn = libvirt.open(guest_mod.URI)
        self.conn.domainEventRegisterAny(
            self.conn.lookupByName(name),
            libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, None)

    @staticmethod
    def _run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    def _event(self, conn, dom, event, detail, opaque) -> None:
        self.marks.append((time.monotonic(), event))

    def paused_since(self, since: float) -> float:
        """Seconds between each suspend and the next resume since
        ``since``, added up.
        """
        total, paused_at = 0.0, None
        for at, event in self.marks:
            if at < since:
                continue
            if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED:
                paused_at = at
            elif event == libvirt.VIR_DOMAIN_EVENT_RESUMED and paused_at:
                total, paused_at = total + at - paused_at, None
        return total


def measure_memory(args, guest, workdir: str) -> runner.Runner:
    """The guest restarted with ``--ram-mb`` of memory, its page cache
    filled with its data, then saved and restored, and snapshotted with
    memory.
    """
    guest.dom.destroy()
    xml = re.sub(r'<(memory|currentMemory) unit=\'KiB\'>\d+<',
                 lambda m: '<%s unit=\'KiB\'>%d<' % (
                     m.group(1), args.ram_mb * 1024), guest.inactive_xml())
    xml = xml.replace('no_timer_check', 'no_timer_check tinyguest.readback')
    guest.dom = guest.conn.defineXML(xml)
    # NOTE: the guest reads all its data at boot, which takes a while
    # under TCG.
    guest.start(timeout=900)
    conf = conftest.make_conf(workdir)
    store = 'file://' + os.path.join(workdir, 'images')
    pauses = Pauses(guest.name)
    run = runner.Runner(args.repeat, '%s, ' % guest.name, cache='warm')
    saved = os.path.join(workdir, 'saved')

    def save_restore() -> None:
        started = time.monotonic()
        runner.run('virsh', '-c', guest_mod.URI, 'save', guest.name, saved)
        runner.run('virsh', '-c', guest_mod.URI, 'restore', saved)
        took = time.monotonic() - started
        run.record(SAVE, took)
        run.record(SAVE_PAUSE, took)
        runner.remove(saved)

    def with_memory() -> None:
        started = time.monotonic()
        snapshot.take_snapshot(snapshot.SnapshotRequest(
            guest=guest.name, name='bench-memory', store=store,
            memory=True), conf=conf)
        run.record(MEMORY, time.monotonic() - started)
        time.sleep(0.5)
        run.record(MEMORY_PAUSE, pauses.paused_since(started))

    run.run([(SAVE, save_restore), (MEMORY, with_memory)])
    pauses.conn.close()
    return run


def measure_all(args) -> None:
    runs = {size: bench.on_guest(size, functools.partial(measure, args))
            for size in args.sizes}
    memory = bench.on_guest(args.memory_data_mb,
                            functools.partial(measure_memory, args))
    print('\nRestore and revert of a standalone qcow2 image (median of %d, '
          'seconds, page cache warm):\n' % args.repeat)
    print(runner.size_table(runs, (CONVERT, RESTORE, REVERT), CONVERT,
                            'ratio to convert'))
    print('\nA guest with %d MiB of memory, %d MiB of it page cache: the '
          'guest\'s pause and the whole (median of %d, seconds):\n' % (
              args.ram_mb, args.memory_data_mb, args.repeat))
    print(runner.size_table({args.memory_data_mb: memory}, (
        SAVE, MEMORY, SAVE_PAUSE, MEMORY_PAUSE), SAVE, 'ratio to save'))
    runner.write_json(args.json, {
        **{str(size): run.figures() for size, run in runs.items()},
        'memory': memory.figures()})


def main(argv: list[str] | None = None) -> int:
    args = runner.options(
        'python -m tools.bench_restore', 'Restore into a new guest and '
        'revert in place against qemu-img convert of the same image; '
        'snapshot --memory against virsh save and restore.',
        argv, [1024], more=lambda p: (
            p.add_argument('--ram-mb', type=int, default=512,
                           help='memory of the --memory guest (MiB)'),
            p.add_argument('--memory-data-mb', type=int, default=384,
                           help='data the --memory guest reads into its '
                                'page cache (MiB)')))
    return runner.main(lambda: measure_all(args))


if __name__ == '__main__':
    sys.exit(main())
