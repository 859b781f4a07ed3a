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

"""The rows and targets of the backup benchmark (tools/bench_backup.py),
and its report: the figures of each size side by side, the targets
passed or failed, and where the time of each of ours went.
"""

import argparse

from tools import bench

MiB = bench.MiB


#: (row, [snapshot_libvirt] live_copy_style, store, image format).
OURS = (
    ('ours mirror -> directory', 'blockcopy', 'file', 'qcow2'),
    ('ours backup -> directory', 'backup', 'file', 'qcow2'),
    ('ours backup raw -> Glance (streamed)', 'backup', 'glance', 'raw'),
    ('ours backup qcow2 -> Glance', 'backup', 'glance', 'qcow2'),
    ('ours mirror qcow2 -> Glance', 'blockcopy', 'glance', 'qcow2'),
)
MIRROR_DIR, BACKUP_DIR, BACKUP_RAW, BACKUP_QCOW2, MIRROR_QCOW2 = (
    row for row, _, _, _ in OURS)
#: Ours backup -> directory with [snapshot_libvirt] live_copy_bandwidth
#: set to :data:`CAP_MIB` MiB/s: what sparing the guest's I/O costs.
CAP_MIB = 400
BACKUP_DIR_CAPPED = 'ours backup -> directory, %d MiB/s cap' % CAP_MIB
UPLOAD_RAW = 'Glance: upload alone, raw (baseline)'
UPLOAD_QCOW2 = 'Glance: upload alone, qcow2'
#: Incremental snapshots (``--incremental``: backup, qcow2, into the
#: directory store): the full one that starts a chain, and the
#: incremental one after :data:`CHANGED` of the data was written.
INC_FULL = 'ours incremental: full (chain start)'
INC_AFTER = 'ours incremental after 1% change'
INCREMENTAL = (INC_FULL, INC_AFTER)
#: The share of the disk's data written between the two.
CHANGED = 0.01
ROWS = (bench.RAW_READ, bench.PLAIN, bench.DURABLE, bench.MANUAL,
        MIRROR_DIR, BACKUP_DIR, BACKUP_DIR_CAPPED, UPLOAD_RAW, UPLOAD_QCOW2,
        BACKUP_RAW, BACKUP_QCOW2, MIRROR_QCOW2) + INCREMENTAL

#: The issue's targets.
BACKUP_OVER_DURABLE = 1.10
SPEEDUP = 2.0
RAW_OVER_UPLOAD = 1.10
GUEST_RATE = 0.80
#: Incremental after 1% change / the full one: time and image bytes.
INCREMENTAL_OVER_FULL = 0.10

#: Width of the figures of one size in the table.
CELL = 49


def _mib(n: float) -> str:
    return '%.1f' % (n / MiB)


def _calls(r: dict) -> str:
    """The libvirt version/capability calls of each snapshot of a row."""
    per = r['libvirt_calls']
    return '%s (getVersion, getLibVersion, getDomainCapabilities: %s)' % (
        ', '.join(str(sum(c.values())) for c in per),
        '; '.join('%d, %d, %d' % (c['getVersion'], c['getLibVersion'],
                                  c['getDomainCapabilities'])
                  for c in per))


def report(sizes: list[dict], facts: dict, args: argparse.Namespace) -> str:
    width = max(len(row) for row in ROWS)
    head = ''.join(' | %8s %7s %6s %8s %9s %6s' % (
        's', 'MiB/s', 'xbase', 'stagedMB', 'scratchMB', 'guest')
        for _ in sizes)
    cache = ('page cache warm (warmed once), os.sync() before each'
             if args.cache == 'warm' else
             'page cache cold: os.sync() and drop_caches (3) before each, '
             'the data read from the disk')
    lines = [
        'nova-snapshot-ext live snapshot benchmark: %s MiB of random data '
        'on qcow2 over raw disks %.1fx as large (sparse)' % (
            ' and '.join(str(s['data_mb']) for s in sizes),
            args.disk_factor),
        'host: libvirt %(libvirt)s, QEMU %(qemu)s, qemu-img %(qemu_img)s, '
        '%(cores)s cores (%(cpu)s), %(ram_gib)s GiB RAM, Linux %(kernel)s'
        % facts,
        'guest: TCG, 1 vCPU, writing its counter all along; other active '
        'guests: %s; load average before %s, after %s' % (
            ', '.join(facts['others']) or 'none',
            '/'.join('%.2f' % x for x in facts['load_before']),
            '/'.join('%.2f' % x for x in facts['load_after'])),
        'method: %d runs of each variant, interleaved, order rotating each '
        'round; median; %s (--cache %s)' % (args.repeat, cache,
                                            args.cache),
        's = median seconds; MiB/s = data MiB / s; xbase = s / plain '
        'convert + fsync + sha256; stagedMB = peak MiB of the image staged '
        'under [snapshot] temp_directory (the backup job\'s scratch file '
        'excepted); scratchMB = peak MiB of the backup job\'s scratch file '
        '(copies of the blocks the guest overwrote during the job, not '
        'the image); guest = guest write rate during the job / idle',
        '',
        '%-*s%s' % (width, '', ''.join(
            ' | %-*s' % (CELL, '%d MiB data, disk %d MiB' % (
                s['data_mb'], s['disk_virtual_size'] // MiB))
            for s in sizes)),
        '%-*s%s' % (width, 'variant', head),
    ]
    for row in ROWS:
        cells = ''
        for size in sizes:
            r = size['rows'].get(row)
            if r is None:
                cells += ' | %*s' % (CELL, '-')
                continue
            ours = 'staged_peak_bytes' in r
            cells += ' | %8.2f %7.1f %6.2f %8s %9s %6s' % (
                r['seconds'], r['mib_per_s'], r['over_durable'],
                _mib(r['staged_peak_bytes']) if ours else '-',
                _mib(r['scratch_peak_bytes']) if ours else '-',
                '%.0f%%' % (r['guest_rate'] * 100) if ours else '-')
        lines.append('%-*s%s' % (width, row, cells))
    for size in sizes:
        inc = size.get('incremental')
        if not inc:
            continue
        full, after = size['rows'][INC_FULL], size['rows'][INC_AFTER]
        name = max(len(row) for row in INCREMENTAL)
        lines += [
            '', 'incremental, %d MiB: %s MiB written between the two (%.1f%% '
            'of the data, in %d qemu-io write%s spread over it)' % (
                size['data_mb'], _mib(inc['written_bytes']),
                100.0 * inc['written_bytes'] / (size['data_mb'] * MiB),
                inc['writes'], 's' if inc['writes'] > 1 else ''),
            '  %-*s %8s %10s' % (name, '', 's', 'image MiB'),
            '  %-*s %8.2f %10s' % (name, INC_FULL, full['seconds'],
                                   _mib(full['image_bytes'])),
            '  %-*s %8.2f %10s' % (name, INC_AFTER, after['seconds'],
                                   _mib(after['image_bytes'])),
            '  %-*s %8.3f %10.3f' % (name, 'after / full',
                                     inc['time_ratio'], inc['bytes_ratio'])]
    for size in sizes:
        lines += ['', 'targets, %d MiB:' % size['data_mb']]
        lines += ['  %-4s %-76s %8.2f' % ('PASS' if t['met'] else 'FAIL',
                                          t['target'], t['value'])
                  for t in size['targets']]
    for size in sizes:
        lines += ['', 'stages of ours, %d MiB (median s; each snapshot '
                  'opens its own libvirt connection):' % size['data_mb']]
        for row, names in size['stages'].items():
            lines.append('  %s' % row)
            r = size['rows'][row]
            if 'guest_rate' in r:
                lines += [
                    '    staged peak %s MiB, backup scratch file peak %s '
                    'MiB; guest writes/s idle %.1f, during %.1f' % (
                        _mib(r['staged_peak_bytes']),
                        _mib(r['scratch_peak_bytes']),
                        r['guest_writes_idle'], r['guest_writes_during']),
                    '    libvirt version/capability calls per snapshot: ' +
                    _calls(r)]
            lines += ['    %-44s %7.2f' % (n, v) for n, v in names.items()]
        lines.append('noisy rows (max - min > %d%% of median): %s' % (
            bench.NOISY * 100, ', '.join(size['noisy_rows']) or 'none'
            if args.repeat > 1 else 'one run each, not known'))
    return '\n'.join(lines)
