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

"""How fast is a snapshot of a running guest, next to what an operator
would do by hand?

Run it from the top of the repository, as root, on the real stack
(``tools/stack.sh up``)::

    python -m tools.bench [--data-mb 1024] [--repeat 3] [--json FILE]

One counter-writing test guest (``tests/functional/guest.py``) runs on a
qcow2 overlay over a raw base that together hold ``--data-mb`` MiB of
random data. Every variant below runs ``--repeat`` times on that guest,
interleaved, in an order that rotates from round to round, and the median
is reported:

* **raw read**: read every byte of the disk chain (base.raw and
  disk.qcow2) into nothing: the physical limit.
* **plain convert**: ``qemu-img convert -U`` of the running disk, what an
  operator would type. ``-U`` reads a disk QEMU is writing, so the image
  is not one point in time: it is a baseline, not a method.
* **manual procedure**: ``virsh blockcopy --shallow --reuse-external
  --transient-job --finish`` into a delta created beforehand, then
  ``qemu-img convert`` of the delta; the classic recipe.
* **ours live** and **ours cold**: :func:`snapshot.take_snapshot` into a
  file store, with the time of each stage from the progress callback.

The page cache is not dropped (that needs a quiet host and is not always
allowed); instead an unmeasured read and convert warm it, ``os.sync()``
runs before each variant, and every variant reads equally warm data. The
stages section shows where the time of ours goes, and what a durable,
hashed image (fsync + sha256, as the file store does) adds to the plain
convert. Each output image is deleted right after its measurement. The
guest is destroyed and undefined and the work directory removed at the
end, whatever happens (``--keep`` keeps the directory).
"""

import argparse
from collections.abc import Callable, Sequence
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid

import libvirt

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import policy
from nova_snapshot_ext import snapshot
from tests.functional import conftest
from tests.functional import guest as guest_mod

MiB = 1024 * 1024
URI = guest_mod.URI
BUFFER = 8 * MiB

RAW_READ = 'raw read (disk chain)'
PLAIN = 'plain qemu-img convert -U'
MANUAL = 'manual blockcopy + convert'
LIVE = 'ours live (result.seconds)'
LIVE_WALL = 'ours live (wall)'
COLD = 'ours cold (result.seconds)'
COLD_WALL = 'ours cold (wall)'
DOWNTIME = 'cold downtime'
ROWS = (RAW_READ, PLAIN, MANUAL, LIVE, LIVE_WALL, COLD, COLD_WALL,
        DOWNTIME)

LIVE_TARGET = 1.20
#: A row whose (max - min) / median is above this is called noisy.
NOISY = 0.25


class BenchError(Exception):
    """A failure to report in one line."""


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanups run."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def command_failed(cmd: Sequence[str], status: int, stdout: str,
                   stderr: str) -> BenchError:
    """The error for a command that failed: its last line of output."""
    lines = (stderr or stdout or '').strip().splitlines()
    return BenchError('%s failed (status %s): %s' % (
        ' '.join(cmd[:2]), status, lines[-1] if lines else 'no output'))


def run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, check=True, capture_output=True,
                              text=True).stdout
    except subprocess.CalledProcessError as e:
        raise command_failed(cmd, e.returncode, e.stdout, e.stderr)


def timed(*cmd: str) -> float:
    started = time.monotonic()
    run(*cmd)
    return time.monotonic() - started


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sync_and_hash(path: str, sync: bool = True) -> tuple[float, float]:
    """Seconds to fsync ``path`` and to sha256 it, as the file store
    does when it commits an image.
    """
    started = time.monotonic()
    if sync:
        fd = os.open(path, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    synced = time.monotonic()
    with open(path, 'rb') as f:
        hashlib.file_digest(f, 'sha256')
    return synced - started, time.monotonic() - synced


def host_facts(conn: libvirt.virConnect) -> dict:
    model = platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    qemu_img = run('qemu-img', '--version').split('\n', 1)[0]
    return {
        'libvirt': policy.version_str(
            host_mod.from_libvirt_number(conn.getLibVersion())),
        'qemu': policy.version_str(
            host_mod.from_libvirt_number(conn.getVersion())),
        'qemu_img': qemu_img.split()[2] if qemu_img else 'unknown',
        'cores': os.cpu_count(),
        'cpu': model,
        'ram_gib': round(os.sysconf('SC_PAGE_SIZE') *
                         os.sysconf('SC_PHYS_PAGES') / 1024 ** 3, 1),
        'kernel': platform.release(),
        'load_before': os.getloadavg(),
    }


def other_guests(conn: libvirt.virConnect, name: str) -> list[str]:
    return sorted(d.name() for d in conn.listAllDomains(
        libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) if d.name() != name)


class Bench:
    """The measurements on one running guest."""

    def __init__(self, args: argparse.Namespace, guest: guest_mod.TestGuest,
                 workdir: str) -> None:
        self.args = args
        self.guest = guest
        self.disks = guest.disks
        self.workdir = workdir
        self.outdir = os.path.join(workdir, 'out')
        os.makedirs(self.outdir, mode=0o755, exist_ok=True)
        self.store = os.path.join(workdir, 'store')
        self.conf = conftest.make_conf(workdir)
        self.data = args.data_mb * MiB
        self.samples: dict[str, list[float]] = {row: [] for row in ROWS}
        self.stages: dict[str, dict[str, list[float]]] = {}

    def record(self, row: str, seconds: float) -> None:
        self.samples[row].append(seconds)

    def stage(self, variant: str, name: str, seconds: float) -> None:
        self.stages.setdefault(variant, {}).setdefault(name, []).append(
            seconds)

    def check_size(self, what: str, size: int) -> None:
        # NOTE: random data does not compress; a smaller image means a
        # variant copied less than the disk, and its time means nothing.
        if size < self.data:
            raise BenchError('%s wrote %d bytes, less than the %d bytes of '
                             'data' % (what, size, self.data))

    # -- the variants --------------------------------------------------
    def chain(self) -> list[str]:
        return [self.disks.base, self.disks.path]

    def raw_read(self) -> float:
        buf = bytearray(BUFFER)
        started = time.monotonic()
        for path in self.chain():
            with open(path, 'rb', buffering=0) as f:
                while f.readinto(buf):
                    pass
        return time.monotonic() - started

    def plain_convert(self) -> None:
        out = os.path.join(self.outdir, 'plain.qcow2')
        try:
            self.record(PLAIN, timed(
                'qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2',
                self.disks.path, out))
            self.check_size('plain convert', os.path.getsize(out))
            # NOTE: not in the row: what the file store adds to a convert
            # (qemu-img convert does not flush its output by default).
            synced, hashed = sync_and_hash(out)
        finally:
            remove(out)
        self.stage('plain', 'fsync of the output (not in the row)', synced)
        self.stage('plain', 'sha256 of the output (not in the row)',
                   hashed)

    def manual(self) -> None:
        delta = os.path.join(self.outdir, 'manual-delta.qcow2')
        out = os.path.join(self.outdir, 'manual.qcow2')
        try:
            create = timed('qemu-img', 'create', '-q', '-f', 'qcow2',
                           '-b', self.disks.base, '-F', 'raw', delta,
                           str(self.disks.size))
            # NOTE: --finish ends the job without a pivot once the mirror
            # is ready: the delta then holds the top layer as of that
            # moment and the guest keeps its own disk.
            copy = timed('virsh', '-c', URI, 'blockcopy', self.guest.name,
                         'vda', '--dest', delta, '--format', 'qcow2',
                         '--shallow', '--reuse-external', '--wait',
                         '--finish', '--transient-job')
            convert = timed('qemu-img', 'convert', '-f', 'qcow2', '-O',
                            'qcow2', delta, out)
            self.check_size('manual procedure', os.path.getsize(out))
        finally:
            remove(delta)
            remove(out)
        self.record(MANUAL, copy + convert)
        self.stage('manual', 'qemu-img create (not in the row)', create)
        self.stage('manual', 'virsh blockcopy --finish', copy)
        self.stage('manual', 'qemu-img convert', convert)

    def ours(self, method: str) -> None:
        calls: dict[str, list[float]] = {}

        def progress(stage: str, fraction: float) -> None:
            calls.setdefault(stage, []).append(time.monotonic())

        request = snapshot.SnapshotRequest(
            guest=self.guest.name, name='bench', method=method,
            store='file://' + self.store)
        started = time.monotonic()
        try:
            result = snapshot.take_snapshot(request, conf=self.conf,
                                            progress=progress)
        except exception.SnapshotError as e:
            raise BenchError('ours %s failed: %s' % (method, e))
        ended = time.monotonic()
        try:
            if result.method != method:
                raise BenchError('asked for a %s snapshot, got %s: %s' % (
                    method, result.method, result.reason))
            self.check_size('ours %s' % method, result.size)
            # NOTE: the file store hashes the image in its commit; hash it
            # again (warm) to see how much of the commit that is.
            _, hashed = sync_and_hash(result.location, sync=False)
        finally:
            shutil.rmtree(os.path.dirname(result.location),
                          ignore_errors=True)
        wall = ended - started
        if method == 'live':
            self.record(LIVE, result.seconds)
            self.record(LIVE_WALL, wall)
        else:
            self.record(COLD, result.seconds)
            self.record(COLD_WALL, wall)
            self.record(DOWNTIME, result.downtime)
        convert, upload = calls['convert'], calls['upload']
        if method == 'live':
            # copy: 0.0, the fractions while the mirror catches up (the
            # last one when it is ready), then 1.0 once the job is cut.
            copy = calls['copy']
            ready = copy[-2] if len(copy) > 2 else copy[0]
            self.stage(method, 'setup (until the copy starts)',
                       copy[0] - started)
            self.stage(method, 'copy: mirror until ready',
                       ready - copy[0])
            self.stage(method, 'copy: cut (freeze try, abort)',
                       copy[-1] - ready)
            self.stage(method, 'convert (delta + base)',
                       convert[-1] - convert[0])
        else:
            self.stage(method, 'setup + managed save',
                       convert[0] - started)
            self.stage(method, 'convert (disk + base)',
                       convert[-1] - convert[0])
            self.stage(method, 'restore', upload[0] - convert[-1])
        self.stage(method, 'commit (fsync, info, sha256, rename)',
                   ended - upload[0])
        self.stage(method, '  of which sha256 alone (re-measured)', hashed)

    # -- the run -------------------------------------------------------
    def warm_up(self) -> None:
        """One unmeasured read of the chain and one unmeasured convert.

        The first one fills the page cache; the second one pays for the
        first use of as much fresh page cache as an image takes (slow on
        a VM whose memory the host hands out on first touch), which
        otherwise lands on whichever variant runs first.
        """
        self.raw_read()
        out = os.path.join(self.outdir, 'warm-up.qcow2')
        try:
            run('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2',
                self.disks.path, out)
        finally:
            remove(out)

    def run(self) -> None:
        print('warm-up', file=sys.stderr, flush=True)
        self.warm_up()
        variants = (
            ('raw read', lambda: self.record(RAW_READ, self.raw_read())),
            ('plain convert', self.plain_convert),
            ('manual procedure', self.manual),
            ('ours live', lambda: self.ours('live')),
            ('ours cold', lambda: self.ours('cold')),
        )
        for rep in range(self.args.repeat):
            # NOTE: the order rotates from round to round, so that no
            # variant always follows the same one (and its write-back).
            shift = rep % len(variants)
            for name, measure in variants[shift:] + variants[:shift]:
                print('round %d/%d: %s' % (rep + 1, self.args.repeat, name),
                      file=sys.stderr, flush=True)
                # NOTE: no variant pays for the write-back of another.
                os.sync()
                measure()
                if self.guest.state() != libvirt.VIR_DOMAIN_RUNNING:
                    raise BenchError('the guest stopped running after %s'
                                     % name)

    def medians(self) -> dict[str, float]:
        return {row: statistics.median(values)
                for row, values in self.samples.items() if values}


def report(bench: Bench, facts: dict, args: argparse.Namespace) -> dict:
    medians = bench.medians()
    plain = medians[PLAIN]
    data_mib = args.data_mb
    chain_mib = sum(os.path.getsize(p) for p in bench.chain()) / MiB
    lines = [
        'nova-snapshot-ext benchmark: one running guest, %d MiB of data'
        % data_mib,
        'data: %d MiB random data + %d MiB counter tail, qcow2 overlay '
        'over a raw base (virtual size %d MiB; raw read reads %.0f MiB '
        'of files, partly sparse)' % (
            data_mib, guest_mod.TAIL // MiB, bench.disks.size // MiB,
            chain_mib),
        'host: libvirt %(libvirt)s, QEMU %(qemu)s, qemu-img %(qemu_img)s, '
        '%(cores)s cores (%(cpu)s), %(ram_gib)s GiB RAM, Linux %(kernel)s'
        % facts,
        'guest: %s, TCG, 1 vCPU, writing its counter all along; other '
        'active guests: %s' % (
            bench.guest.name, ', '.join(facts['others']) or 'none'),
        'load average (1/5/15 min): before %s, after %s' % (
            '/'.join('%.2f' % x for x in facts['load_before']),
            '/'.join('%.2f' % x for x in facts['load_after'])),
        'method: each variant runs %d times, interleaved, in an order '
        'that rotates each round; median reported' % args.repeat,
        'cache: the page cache is NOT dropped; one unmeasured read and '
        'one unmeasured convert warm it and os.sync() runs before each '
        'variant, so every row starts equally warm, with no write-back '
        'pending',
        'note: the guest disk has cache=none, so QEMU writes the live '
        'copy (delta) with O_DIRECT: ours live and the manual procedure '
        'read it back from the disk, not from the page cache',
        'MiB/s = data MiB / seconds; ratio = seconds / plain convert',
        '',
    ]
    width = max(len(row) for row in ROWS)
    lines.append('%-*s %9s %9s %7s  %s' % (width, 'variant', 'median s',
                                           'MiB/s', 'ratio', 'min..max s'))
    rows = []
    for row in ROWS:
        if row not in medians:
            continue
        seconds = medians[row]
        mibs = data_mib / seconds if seconds else 0.0
        ratio = seconds / plain if plain else 0.0
        values = bench.samples[row]
        lines.append('%-*s %9.2f %9.1f %7.2f  %.2f..%.2f' % (
            width, row, seconds, mibs, ratio, min(values), max(values)))
        rows.append({'name': row, 'seconds': round(seconds, 3),
                     'mib_per_s': round(mibs, 1), 'ratio': round(ratio, 3),
                     'samples': [round(v, 3) for v in values]})
    lines.append('')
    lines.append('stages (median s):')
    stages: dict[str, dict[str, dict]] = {}
    width = max(len(name) for names in bench.stages.values()
                for name in names)
    for variant, names in bench.stages.items():
        stages[variant] = {}
        for name, values in names.items():
            median = statistics.median(values)
            stages[variant][name.strip()] = {
                'median': round(median, 3),
                'samples': [round(v, 3) for v in values]}
            lines.append('  %-6s %-*s %7.2f' % (
                variant, width, name, median))
    noisy = [row['name'] for row in rows
             if row['seconds'] and
             (max(row['samples']) - min(row['samples'])) /
             row['seconds'] > NOISY]
    lines += [
        '',
        'noise: %s' % (
            'max - min is over %d%% of the median for: %s' % (
                NOISY * 100, ', '.join(noisy)) if noisy else
            'every row within %d%% of its median' % (NOISY * 100)
            if args.repeat > 1 else 'one run each, not known'),
    ]
    live, manual = medians[LIVE_WALL], medians[MANUAL]
    live_ratio = live / plain
    durable = plain + sum(
        statistics.median(values)
        for values in bench.stages.get('plain', {}).values())
    lines += [
        'for reference: plain convert + fsync + sha256 of its output '
        '(what the file store adds) = %.2f s; ours live / that = %.2f' % (
            durable, live / durable),
        '',
        'verdicts use the wall time of ours live (take_snapshot() call):',
        'ours live / plain convert = %.2f (target <= %.2f): %s' % (
            live_ratio, LIVE_TARGET,
            'met' if live_ratio <= LIVE_TARGET else 'MISSED'),
        'ours live vs manual procedure: %.2f s vs %.2f s (target: '
        'faster): %s' % (live, manual, 'met' if live < manual else
                         'MISSED'),
    ]
    print('\n'.join(lines), flush=True)
    return {
        'data_mb': data_mib,
        'disk_virtual_size': bench.disks.size,
        'repeat': args.repeat,
        'host': facts,
        'guest': bench.guest.name,
        'rows': rows,
        'stages': stages,
        'verdicts': {
            'live_over_plain': round(live_ratio, 3),
            'live_over_plain_target': LIVE_TARGET,
            'live_seconds': round(live, 3),
            'manual_seconds': round(manual, 3),
            'plain_fsync_sha256_seconds': round(durable, 3),
        },
        'noisy_rows': noisy,
    }


def add_common_arguments(parser: argparse.ArgumentParser,
                         where: str) -> None:
    """--data-mb, --repeat and --json, shared by the benchmarks."""
    parser.add_argument('--data-mb', type=int, default=1024,
                        help='MiB of random data %s (default: '
                             '%%(default)s)' % where)
    parser.add_argument('--repeat', type=int, default=3,
                        help='runs of each variant; the median is '
                             'reported (default: %(default)s)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the figures to FILE as JSON')


def write_json(path: str | None, figures: dict) -> None:
    if path:
        with open(path, 'w') as f:
            json.dump(figures, f, indent=2, sort_keys=True)
            f.write('\n')


def run_main(measure: Callable[[], object]) -> int:
    """Run a benchmark: one line and a status for every way it can end.
    SIGTERM unwinds like Ctrl-C, so that its cleanups run.
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        measure()
    except BenchError as e:
        print('bench: error: %s' % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('bench: interrupted', file=sys.stderr)
        return 130
    except Terminated:
        print('bench: terminated', file=sys.stderr)
        return 143
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m tools.bench',
        description='Benchmark live and cold snapshots of a running '
                    'guest against a raw read, a plain qemu-img convert '
                    'and the manual blockcopy procedure.')
    add_common_arguments(parser, 'on the guest disk')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directory (disks, serial log, '
                             'state) for debugging')
    args = parser.parse_args(argv)
    if args.data_mb < 2:
        parser.error('--data-mb must be at least 2')
    if args.repeat < 1:
        parser.error('--repeat must be at least 1')
    return args


def connect() -> libvirt.virConnect:
    try:
        return guest_mod.connect()
    except guest_mod.StackMissing as e:
        raise BenchError(str(e))


def bench(args: argparse.Namespace) -> dict:
    conn = connect()
    root = guest_mod.work_root()
    tag = 'bench-%s' % uuid.uuid4().hex[:8]
    workdir = os.path.join(root, tag)
    guest = None
    try:
        facts = host_facts(conn)
        print('preparing %d MiB of data and booting %s%s' % (
            args.data_mb, guest_mod.PREFIX, tag), file=sys.stderr,
            flush=True)
        guest = guest_mod.TestGuest(conn, workdir, tag, fmt='qcow2',
                                    data_mb=args.data_mb)
        guest.start()
        facts['others'] = other_guests(conn, guest.name)
        runner = Bench(args, guest, workdir)
        runner.run()
        facts['load_after'] = os.getloadavg()
        figures = report(runner, facts, args)
    finally:
        try:
            if guest is not None:
                guest.remove()
        finally:
            conn.close()
            if args.keep:
                print('kept %s' % workdir, file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    write_json(args.json, figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main(lambda: bench(args))


if __name__ == '__main__':
    sys.exit(main())
