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
and into Glance, the bytes staged and the guest's write rate meanwhile.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time

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


class Staged(threading.Thread):
    """Samples the bytes the files under a directory hold on disk."""

    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.peak = 0
        #: Of the peak: the backup job's scratch file (what the guest
        #: overwrote meanwhile, copied before its write).
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
        if allocated > self.peak:
            self.peak, self.peak_scratch = allocated, scratch

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
                 image_name: str) -> None:
        super().__init__(args, guest, workdir, data_mb)
        self.url = glance_url
        self.image_name = image_name
        self.counter = Counter(self.disks)
        #: Row -> one dict per run: staged peak (and of it the scratch
        #: file's), image size, guest writes/s idle and during the job.
        self.watched: dict[str, list[dict]] = {}
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
        for variant in spec.OURS + spec.INCREMENTAL:
            found.append((variant[0], lambda v=variant: self.ours(*v)))
        return found

    def upload(self, fmt: str) -> None:
        row = spec.UPLOAD_RAW if fmt == 'raw' else spec.UPLOAD_QCOW2
        seconds, size = bench_glance.upload_alone(
            self.conf, self.url, self.images[fmt], fmt, self.image_name,
            self.uploads)
        self.check_size(row, size)
        self.record(row, seconds)

    def ours(self, row: str, style: str, store: str, fmt: str) -> None:
        self.conf.set_override('live_copy_style', style,
                               group='snapshot_libvirt')
        events: list[tuple[float, str]] = []
        request = snapshot.SnapshotRequest(
            guest=self.guest.name, name=self.image_name, method='live',
            image_format=fmt, store=('glance+' + self.url
                                     if store == 'glance' else
                                     'file://' + self.store))
        # NOTE: the idle window, right before, about as long as the job.
        window = self.samples.get(row, [2.0 + 3.0 * self.data / 1024 ** 3])
        idle = self.counter.rate(min(IDLE_MAX, window[-1]))
        result = None
        try:
            with Staged(self.conf.snapshot.temp_directory) as staged:
                before, started = self.counter.read(), time.monotonic()
                try:
                    result = snapshot.take_snapshot(
                        request, conf=self.conf, progress=lambda s, f:
                        events.append((time.monotonic(), s)))
                except exception.SnapshotError as e:
                    raise BenchError('%s failed: %s' % (row, e))
                ended = time.monotonic()
                during = (self.counter.read() - before) / (ended - started)
            if result.method != 'live' or result.live_copy_style != style:
                raise BenchError('%s: got a %s snapshot (%s): %s' % (
                    row, result.method, result.live_copy_style,
                    result.reason))
            if fmt == 'raw' and result.size != self.disks.size:
                raise BenchError('%s: %d bytes, not the disk\'s %d' % (
                    row, result.size, self.disks.size))
            self.check_size(row, result.size)
        finally:
            if result is not None:
                self.drop(store, result)
        self.record(row, ended - started)
        self.watched.setdefault(row, []).append({
            'staged': staged.peak, 'scratch': staged.peak_scratch,
            'image': result.size, 'idle': idle, 'during': during})
        self.stage(row, 'result.seconds', result.seconds)
        for name, seconds in milestones(events, started, ended):
            self.stage(row, name, seconds)

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
            # NOTE: the largest peak of the runs, and its scratch share.
            peak = max(runs, key=lambda w: w['staged'])
            r.update(staged_peak_bytes=peak['staged'],
                     staged_scratch_bytes=peak['scratch'],
                     image_bytes=max(w['image'] for w in runs),
                     guest_writes_idle=_median(runs, 'idle'),
                     guest_writes_during=_median(runs, 'during'),
                     guest_rate=statistics.median(
                         w['during'] / w['idle'] if w['idle'] else 0.0
                         for w in runs))
    backup, raw, qcow2 = (med[spec.BACKUP_DIR], rows[spec.BACKUP_RAW],
                          rows[spec.BACKUP_QCOW2])
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
        ('Glance backup raw: staged MiB == 0',
         raw['staged_peak_bytes'] / MiB, raw['staged_peak_bytes'] == 0),
        ('Glance backup qcow2: staged MiB <= its image (%.1f MiB)' % (
            qcow2['image_bytes'] / MiB), qcow2['staged_peak_bytes'] / MiB,
         qcow2['staged_peak_bytes'] <= qcow2['image_bytes']),
        ('Glance backup raw / upload alone raw <= %.2f' % spec.RAW_OVER_UPLOAD,
         med[spec.BACKUP_RAW] / med[spec.UPLOAD_RAW],
         med[spec.BACKUP_RAW] / med[spec.UPLOAD_RAW] <= spec.RAW_OVER_UPLOAD),
    ] + [('guest write rate during %s / idle >= %.2f' % (row, spec.GUEST_RATE),
          rows[row]['guest_rate'], rows[row]['guest_rate'] >= spec.GUEST_RATE)
         for row, *_ in spec.OURS]
    stages = {row: {name: round(statistics.median(v), 3)
                    for name, v in names.items()}
              for row, names in run.stages.items()}
    return {'data_mb': run.data_mb, 'disk_virtual_size': run.disks.size,
            'rows': rows, 'stages': stages, 'noisy_rows': run.noisy(),
            'targets': [{'target': t, 'value': round(v, 3), 'met': ok}
                        for t, v, ok in targets]}


def compare(args: argparse.Namespace) -> dict:
    try:
        url = glance_stack.endpoint()
    except guest_mod.StackMissing as e:
        raise BenchError(str(e))
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
            run = Comparison(args, guest, workdir, data_mb, url, name)
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
           'disk_factor': args.disk_factor, 'sizes': sizes}
    common.write_json(args.json, out)
    return out
