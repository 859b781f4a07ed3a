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

"""Ours against the baselines of :mod:`tools.bench` (whose docstring
lists the rows; run it): the live copy styles into the directory store
and into Glance, incremental snapshots, the bytes staged and the guest's
write rate meanwhile.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import threading
import time

import libvirt
import libvirt_qemu

from nova_snapshot_ext.backends import incremental as inc_backend
from nova_snapshot_ext import exception
from nova_snapshot_ext import snapshot
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tools import bench
from tools import bench_common as common
from tools import bench_glance
from tools import bench_report as spec

MiB = bench.MiB
BenchError = common.BenchError

#: Longest idle window, seconds (a hundred writes a second: plenty).
IDLE_MAX = 20.0
#: Seconds between two samples of the staged bytes.
INTERVAL = 0.1
#: The largest write of the change between two incremental snapshots,
#: and what the change is rounded to (a qcow2 cluster, the granularity
#: of the dirty bitmap).
CHUNK = MiB
CLUSTER = 64 * 1024
#: The byte the change writes.
PATTERN = 0x5a


class Staged(threading.Thread):
    """Samples the bytes the files under a directory hold on disk: the
    peak of the staged image and, apart, of the backup job's scratch
    file (``*.scratch``: what the guest overwrote meanwhile, copied
    before its write; not the image).
    """

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.peak = 0
        self.peak_scratch = 0
        self._done = threading.Event()

    def sample(self) -> None:
        allocated = scratch = 0
        for top, _, files in os.walk(self.path):
            for name in files:
                try:
                    used = os.lstat(os.path.join(top, name)).st_blocks * 512
                except FileNotFoundError:
                    continue
                allocated += used
                scratch += used if name.endswith('.scratch') else 0
        self.peak = max(self.peak, allocated - scratch)
        self.peak_scratch = max(self.peak_scratch, scratch)

    def run(self) -> None:
        while not self._done.wait(INTERVAL):
            self.sample()

    def __enter__(self) -> 'Staged':
        self.sample()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()


class Counter:
    """The guest's counter, read from where its counter sectors lie in
    disk.qcow2 (the guest wrote each of them before it printed its first
    counter, so they are allocated and stay where they are).
    """

    def __init__(self, disks: guest_mod.Disks) -> None:
        start = disks.size - guest_mod.SLOTS * guest_mod.SECTOR
        extents = json.loads(common.run(
            'qemu-img', 'map', '-U', '-f', 'qcow2', '--output=json',
            '--start-offset', str(start), disks.path))
        self.extents = [(e['offset'], e['length']) for e in extents
                        if e['data'] and e['depth'] == 0 and 'offset' in e]
        if sum(n for _, n in self.extents) != disks.size - start:
            raise BenchError('the counter sectors are not all in %s: %s' % (
                disks.path, extents))
        self.path = disks.path

    def read(self) -> int:
        last = 0
        with open(self.path, 'rb', buffering=0) as f:
            for offset, length in self.extents:
                data = os.pread(f.fileno(), length, offset)
                for at in range(0, len(data), guest_mod.SECTOR):
                    if data[at:at + 4] == b'CTR ':
                        last = max(last, int(data[at + 4:at + 16]))
        return last

    def rate(self, seconds: float) -> float:
        """Counter increments per second over an idle window."""
        before, started = self.read(), time.monotonic()
        time.sleep(seconds)
        return (self.read() - before) / (time.monotonic() - started)


def milestones(events: list[tuple[float, str]], started: float,
               ended: float) -> list[tuple[str, float]]:
    """The time between the first and the last progress call of each
    stage, and the call and its return, in order: ``(a -> b, seconds)``.
    """
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for at, stage in events:
        first.setdefault(stage, at)
        last[stage] = at
    marks = sorted([(started, 'call')] +
                   [(at, stage + ' 0') for stage, at in first.items()] +
                   [(at, stage + ' 1') for stage, at in last.items()] +
                   [(ended, 'return')])
    return [('%s -> %s' % (a, b), tb - ta)
            for (ta, a), (tb, b) in zip(marks, marks[1:])]


class Comparison(bench.Bench):
    """The baselines, ours and the uploads alone on one guest."""

    def __init__(self, args: argparse.Namespace, guest: guest_mod.TestGuest,
                 workdir: str, data_mb: int, glance_url: str,
                 image_name: str, calls: common.LibvirtCalls) -> None:
        super().__init__(args, guest, workdir, data_mb)
        self.url = glance_url
        self.image_name = image_name
        self.calls = calls
        self.counter = Counter(self.disks)
        #: Row -> one dict per run: staged peak, scratch file peak, image
        #: size, guest writes/s idle and during the job, libvirt calls.
        self.watched: dict[str, list[dict]] = {}
        #: Bytes and writes of the last change between two incremental
        #: snapshots.
        self.changed = (0, 0)
        self.uploads = os.path.join(workdir, 'uploads')
        os.makedirs(self.uploads, exist_ok=True)
        self.images = {}
        for fmt in ('raw', 'qcow2'):
            self.images[fmt] = os.path.join(self.outdir, 'equal.' + fmt)
            common.run('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', fmt,
                       self.disks.path, self.images[fmt])

    def variants(self) -> list:
        found = super().variants()
        found += [(spec.UPLOAD_RAW, lambda: self.upload('raw')),
                  (spec.UPLOAD_QCOW2, lambda: self.upload('qcow2'))]
        for variant in spec.OURS:
            found.append((variant[0], lambda v=variant: self.ours(*v)))
        found.append((spec.BACKUP_DIR_CAPPED, self.capped))
        found.append(('ours incremental', self.incremental))
        return found

    def upload(self, fmt: str) -> None:
        row = spec.UPLOAD_RAW if fmt == 'raw' else spec.UPLOAD_QCOW2
        seconds, size = bench_glance.upload_alone(
            self.conf, self.url, self.images[fmt], fmt, self.image_name,
            self.uploads)
        self.check_size(row, size)
        self.record(row, seconds)

    def capped(self) -> None:
        self.conf.set_override('live_copy_bandwidth', spec.CAP_MIB,
                               group='snapshot_libvirt')
        try:
            self.ours(spec.BACKUP_DIR_CAPPED, 'backup', 'file', 'qcow2')
        finally:
            self.conf.clear_override('live_copy_bandwidth',
                                     group='snapshot_libvirt')

    def ours(self, row: str, style: str, store: str, fmt: str) -> None:
        self.drop(store, self.take(row, style, store, fmt))

    def take(self, row: str, style: str, store: str, fmt: str,
             incremental: bool = False) -> snapshot.SnapshotResult:
        """One snapshot of ours, checked and recorded under ``row``; the
        caller drops its image. An incremental one need not hold all the
        data.
        """
        self.conf.set_override('live_copy_style', style,
                               group='snapshot_libvirt')
        events: list[tuple[float, str]] = []
        request = snapshot.SnapshotRequest(
            guest=self.guest.name, name=self.image_name, method='live',
            image_format=fmt, store=('glance+' + self.url
                                     if store == 'glance' else
                                     'file://' + self.store),
            incremental=incremental)
        # NOTE: the idle window, right before, about as long as the job.
        window = self.samples.get(row, [2.0 + 3.0 * self.data / 1024 ** 3])
        idle = self.counter.rate(min(IDLE_MAX, window[-1]))
        result = None
        try:
            with Staged(self.conf.snapshot.temp_directory) as staged:
                before, started = self.counter.read(), time.monotonic()
                calls = self.calls.total()
                try:
                    result = snapshot.take_snapshot(
                        request, conf=self.conf, progress=lambda s, f:
                        events.append((time.monotonic(), s)))
                except exception.SnapshotError as e:
                    raise BenchError('%s failed: %s' % (row, e))
                ended = time.monotonic()
                calls = self.calls.since(calls, self.calls.total())
                during = (self.counter.read() - before) / (ended - started)
            if result.method != 'live' or result.live_copy_style != style:
                raise BenchError('%s: got a %s snapshot (%s): %s' % (
                    row, result.method, result.live_copy_style,
                    result.reason))
            if fmt == 'raw' and result.size != self.disks.size:
                raise BenchError('%s: %d bytes, not the disk\'s %d' % (
                    row, result.size, self.disks.size))
            if not incremental or result.incremental_of is None:
                self.check_size(row, result.size)
        except BaseException:
            if result is not None:
                self.drop(store, result)
            raise
        self.record(row, ended - started)
        self.watched.setdefault(row, []).append({
            'staged': staged.peak, 'scratch': staged.peak_scratch,
            'image': result.size, 'idle': idle, 'during': during,
            'calls': calls})
        self.stage(row, 'result.seconds', result.seconds)
        for name, seconds in milestones(events, started, ended):
            self.stage(row, name, seconds)
        return result

    def incremental(self) -> None:
        """A full incremental snapshot (the start of a chain), then
        :data:`spec.CHANGED` of the data written while the guest runs,
        then an incremental snapshot; both images and the guest's
        checkpoint deleted afterwards.
        """
        full = after = None
        try:
            full = self.take(spec.INC_FULL, 'backup', 'file', 'qcow2',
                             incremental=True)
            if full.incremental_of is not None:
                raise BenchError('%s is backed by %s, not full' % (
                    spec.INC_FULL, full.incremental_of))
            started = time.monotonic()
            self.changed = self.change(spec.CHANGED)
            self.stage(spec.INC_AFTER, 'qemu-io writes before (not in the '
                       'row)', time.monotonic() - started)
            after = self.take(spec.INC_AFTER, 'backup', 'file', 'qcow2',
                              incremental=True)
            if after.incremental_of != full.image_id:
                raise BenchError('%s is not incremental of %s: %s' % (
                    spec.INC_AFTER, full.image_id,
                    after.incremental_reason or after.incremental_of))
            if after.size < self.changed[0]:
                raise BenchError('%s holds %d bytes, less than the %d '
                                 'written since the full one' % (
                                     spec.INC_AFTER, after.size,
                                     self.changed[0]))
        finally:
            for result in (after, full):
                if result is not None:
                    self.drop('file', result)
            self.delete_checkpoints()

    def hmp(self, command: str) -> str:
        """``command`` on the guest's QEMU monitor (HMP)."""
        try:
            return self.domain_call(lambda d: libvirt_qemu.qemuMonitorCommand(
                d, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP))
        except libvirt.libvirtError as e:
            raise BenchError('%s on %s: %s' % (
                command, self.guest.name, e.get_error_message()))

    def qemu_device(self) -> str:
        """The QOM path of the guest device its disk is attached to, from
        ``info block``: where the guest's own writes go through.
        """
        info = self.hmp('info block')
        for entry in re.split(r'\r?\n(?=\S)', info):
            attached = re.search(r'^\s+Attached to:\s+(\S+)', entry, re.M)
            if self.disks.path in entry.split('\n', 1)[0] and attached:
                return attached.group(1)
        raise BenchError('no device of %s in info block: %s' % (
            self.disks.path, info.strip()))

    def change(self, share: float) -> tuple[int, int]:
        """Write ``share`` of the disk's data (rounded to clusters) with
        :data:`PATTERN`, through the running QEMU's device of the disk,
        so that the dirty bitmap sees it: writes of at most
        :data:`CHUNK`, spread evenly over the data, which lies before
        the counter sectors; each one read back.

        :returns: bytes written and the number of writes.
        """
        device = self.qemu_device()
        total = max(CLUSTER, round(self.data * share / CLUSTER) * CLUSTER)
        pieces = [min(CHUNK, total - at) for at in range(0, total, CHUNK)]
        stride = self.data // len(pieces) // CLUSTER * CLUSTER
        for i, length in enumerate(pieces):
            at = i * stride
            if at + length > self.data:
                raise BenchError('a write at %d would end past the data' %
                                 at)
            for op in ('write', 'read'):
                # NOTE: qemu-io is silent when it succeeds (and a read
                # with -P when the pattern is there).
                out = self.hmp('qemu-io -d %s "%s -P 0x%x %d %d"' % (
                    device, op, PATTERN, at, length)).strip()
                if out:
                    raise BenchError('qemu-io %s of %d bytes at %d on %s: '
                                     '%s' % (op, length, at,
                                             self.guest.name, out))
        return total, len(pieces)

    def delete_checkpoints(self) -> None:
        """Delete the incremental snapshots' checkpoints of the guest."""
        try:
            for checkpoint in self.domain_call(
                    lambda d: d.listAllCheckpoints(0)):
                if checkpoint.getName().startswith(inc_backend.PREFIX):
                    checkpoint.delete(0)
        except libvirt.libvirtError as e:
            # NOTE: the guest is undefined with its checkpoints at the
            # end; the next full one says so if one is left meanwhile.
            print('bench: could not delete a checkpoint of %s: %s' % (
                self.guest.name, e.get_error_message()), file=sys.stderr)

    def drop(self, store: str, result: snapshot.SnapshotResult) -> None:
        if store == 'glance':
            glance_stack.delete(self.url, result.image_id)
        else:
            shutil.rmtree(os.path.dirname(result.location),
                          ignore_errors=True)


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def figures(run: Comparison) -> dict:
    """The medians and the targets of one size."""
    med = run.medians()
    rows = {}
    for row in spec.ROWS:
        if row not in med:
            continue
        rows[row] = r = {
            'seconds': round(med[row], 3),
            'samples': [round(v, 3) for v in run.samples[row]],
            'mib_per_s': round(run.data_mb / med[row], 1),
            'over_durable': round(med[row] / med[bench.DURABLE], 3)}
        runs = run.watched.get(row)
        if runs:
            # NOTE: the largest peaks of the runs.
            r.update(staged_peak_bytes=max(w['staged'] for w in runs),
                     scratch_peak_bytes=max(w['scratch'] for w in runs),
                     image_bytes=max(w['image'] for w in runs),
                     libvirt_calls=[w['calls'] for w in runs],
                     guest_writes_idle=_median(runs, 'idle'),
                     guest_writes_during=_median(runs, 'during'),
                     guest_rate=statistics.median(
                         w['during'] / w['idle'] if w['idle'] else 0.0
                         for w in runs))
    backup, raw, qcow2 = (med[spec.BACKUP_DIR], rows[spec.BACKUP_RAW],
                          rows[spec.BACKUP_QCOW2])
    full, after = rows[spec.INC_FULL], rows[spec.INC_AFTER]
    inc = {'written_bytes': run.changed[0], 'writes': run.changed[1],
           'time_ratio': round(med[spec.INC_AFTER] / med[spec.INC_FULL], 4),
           'bytes_ratio': round(after['image_bytes'] / full['image_bytes'],
                                4)}
    targets = [
        ('backup -> directory / convert + fsync + sha256 <= %.2f' %
         spec.BACKUP_OVER_DURABLE, backup / med[bench.DURABLE],
         backup / med[bench.DURABLE] <= spec.BACKUP_OVER_DURABLE),
        ('ours mirror -> directory / backup -> directory >= %.1f' %
         spec.SPEEDUP, med[spec.MIRROR_DIR] / backup,
         med[spec.MIRROR_DIR] / backup >= spec.SPEEDUP),
        ('manual procedure / backup -> directory >= %.1f' % spec.SPEEDUP,
         med[bench.MANUAL] / backup,
         med[bench.MANUAL] / backup >= spec.SPEEDUP),
        ('Glance backup raw: staged MiB (scratch file excepted) == 0',
         raw['staged_peak_bytes'] / MiB, raw['staged_peak_bytes'] == 0),
        ('Glance backup qcow2: staged MiB <= its image (%.1f MiB)' % (
            qcow2['image_bytes'] / MiB), qcow2['staged_peak_bytes'] / MiB,
         qcow2['staged_peak_bytes'] <= qcow2['image_bytes']),
        ('Glance backup raw / upload alone raw <= %.2f' % spec.RAW_OVER_UPLOAD,
         med[spec.BACKUP_RAW] / med[spec.UPLOAD_RAW],
         med[spec.BACKUP_RAW] / med[spec.UPLOAD_RAW] <= spec.RAW_OVER_UPLOAD),
        ('incremental after 1%% change: time / full time < %.2f' %
         spec.INCREMENTAL_OVER_FULL, inc['time_ratio'],
         inc['time_ratio'] < spec.INCREMENTAL_OVER_FULL),
        ('incremental after 1%% change: bytes / full bytes < %.2f' %
         spec.INCREMENTAL_OVER_FULL, inc['bytes_ratio'],
         inc['bytes_ratio'] < spec.INCREMENTAL_OVER_FULL),
    ] + [('guest write rate during %s / idle >= %.2f' % (row, spec.GUEST_RATE),
          rows[row]['guest_rate'], rows[row]['guest_rate'] >= spec.GUEST_RATE)
         for row in [r for r, *_ in spec.OURS] + [spec.BACKUP_DIR_CAPPED]]
    stages = {row: {name: round(statistics.median(v), 3)
                    for name, v in names.items()}
              for row, names in run.stages.items()}
    return {'data_mb': run.data_mb, 'disk_virtual_size': run.disks.size,
            'rows': rows, 'stages': stages, 'noisy_rows': run.noisy(),
            'incremental': inc,
            'targets': [{'target': t, 'value': round(v, 3), 'met': ok}
                        for t, v, ok in targets]}


def compare(args: argparse.Namespace) -> dict:
    try:
        url = glance_stack.endpoint()
    except guest_mod.StackMissing as e:
        raise BenchError(str(e))
    # NOTE: counted on every connection of the process; what a snapshot
    # made is what the counts grew by during its call.
    calls = common.LibvirtCalls().install()
    conn = common.connect()
    try:
        facts = common.host_facts(conn)
        facts['others'] = common.other_guests(conn, '')
    finally:
        conn.close()
    sizes = []

    def measure(guest: guest_mod.TestGuest, workdir: str) -> dict:
        # NOTE: every Glance image of the run has this name, so that
        # what a failure leaves is found and deleted.
        name = 'bench-%s' % os.path.basename(workdir)
        try:
            run = Comparison(args, guest, workdir, data_mb, url, name,
                             calls)
            run.run()
        finally:
            bench_glance.delete_named(url, name)
        return figures(run)

    for data_mb in args.sizes:
        sizes.append(bench.on_guest(args, data_mb, measure))
        facts['load_after'] = os.getloadavg()
        if len(sizes) < len(args.sizes):
            # NOTE: what is measured is not lost if a later size fails.
            print(spec.report(sizes, facts, args), file=sys.stderr, flush=True)
    print(spec.report(sizes, facts, args), flush=True)
    out = {'host': facts, 'repeat': args.repeat,
           'disk_factor': args.disk_factor, 'cache': args.cache,
           'sizes': sizes}
    common.write_json(args.json, out)
    return out


def main(argv: list[str] | None = None) -> int:
    """The same as ``python -m tools.bench``."""
    args = bench.parse_args(argv)
    return common.run_main(lambda: compare(args))


if __name__ == '__main__':
    sys.exit(main())
