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

"""The runner of every benchmark: its cases, each a function, run
``--repeat`` times, interleaved; their samples and medians; a table of
each figure beside the baseline measured in the same run; the options
they share; how a benchmark ends (one line and a status, cleanups run on
SIGTERM); a test guest's counter, read from its disk. Only the
standard library, libvirt's bindings and the test guest's module (which
needs no more), so that tools/bench_cloud.py runs it with the cloud's
venv.
"""

import argparse
from collections.abc import Callable, Sequence
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import libvirt

from tests.functional import guest as guest_mod
from tools import bench_memory

MiB = 1024 * 1024
#: A row whose (max - min) / median is above this is called noisy.
NOISY = 0.25
Case = tuple[str, Callable[[], object]]


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


def random_qcow2(workdir: str, data_mb: int, disk_mb: int = 0) -> str:
    """A qcow2 image of ``data_mb`` MiB of random data, on a disk of
    ``disk_mb`` MiB when that is larger (the rest a hole).
    """
    raw = os.path.join(workdir, 'data.raw')
    with open(raw, 'wb') as f:
        for _ in range(data_mb):
            f.write(os.urandom(MiB))
        f.truncate(max(data_mb, disk_mb) * MiB)
    image = os.path.join(workdir, 'snapshot.qcow2')
    run('qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, image)
    os.unlink(raw)
    return image


def allocated(path: str) -> tuple[int, int]:
    """Bytes the files under ``path`` hold on disk, and of those, the
    backup jobs' scratch files' (``*.scratch``).
    """
    total = scratch = 0
    for top, _, files in os.walk(path):
        for name in files:
            try:
                used = os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                continue
            total += used
            scratch += used if name.endswith('.scratch') else 0
    return total, scratch


def drop_caches() -> None:
    """Write what is dirty and drop the page cache, dentries and inodes
    (as root), so that what is read next comes from the disk.
    """
    os.sync()
    try:
        with open('/proc/sys/vm/drop_caches', 'w') as f:
            f.write('3\n')
    except OSError as e:
        raise BenchError('cannot drop the page cache (--cache cold needs '
                         'root): %s' % e)


class Sampler(threading.Thread):
    """:meth:`sample` when the ``with`` block starts, then every
    ``interval`` seconds until it ends.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self._done = threading.Event()

    def sample(self) -> None:
        raise NotImplementedError()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.sample()

    def __enter__(self) -> 'Sampler':
        self.sample()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()


class Counter:
    """The counter of a test guest (``tests/functional/guest.py``),
    read from where its counter sectors lie in ``path``, its qcow2 disk of
    ``size`` bytes (the guest wrote each of them before it printed its
    first counter, so they are allocated and stay where they are).
    """

    def __init__(self, path: str, size: int) -> None:
        start = size - guest_mod.SLOTS * guest_mod.SECTOR
        extents = json.loads(run(
            'qemu-img', 'map', '-U', '-f', 'qcow2', '--output=json',
            '--start-offset', str(start), path))
        self.extents = [(e['offset'], e['length']) for e in extents
                        if e['data'] and e['depth'] == 0 and 'offset' in e]
        if sum(n for _, n in self.extents) != size - start:
            raise BenchError('the counter sectors are not all in %s: %s' % (
                path, extents))
        self.path = path

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


class Trace(Sampler):
    """The guest's counter every 0.1 s, for the charts."""

    def __init__(self, counter: Counter) -> None:
        super().__init__()
        self.counter = counter
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.counter.read()))

    def since(self, zero: float) -> list[list[float]]:
        """[seconds after ``zero``, counter] of every sample."""
        return [[round(at - zero, 3), value] for at, value in self.samples]


class Runner:
    """Runs cases and keeps their samples: seconds by row, the seconds of
    each row's stages, and other figures of each run (``extras``).

    :param label: the start of each progress line.
    :param cache: None: nothing before each case; ``warm``: ``os.sync()``
        (no case pays for the write-back of another); ``cold``: also the
        page cache dropped.
    :param rotate: the order of the cases rotates from round to round.
    :param after: called with the name of each case after it ran.
    """

    def __init__(self, repeat: int, label: str = '',
                 cache: str | None = None, rotate: bool = True,
                 after: Callable[[str], object] | None = None) -> None:
        self.repeat = repeat
        self.label = label
        self.cache = cache
        self.rotate = rotate
        self.after = after
        self.samples: dict[str, list[float]] = {}
        self.stages: dict[str, dict[str, list[float]]] = {}
        self.extras: dict[str, list[dict]] = {}

    def record(self, row: str, seconds: float, **extra: object) -> None:
        self.samples.setdefault(row, []).append(seconds)
        if extra:
            self.extras.setdefault(row, []).append(extra)

    def stage(self, row: str, name: str, seconds: float) -> None:
        self.stages.setdefault(row, {}).setdefault(name, []).append(seconds)

    def progress(self, what: str) -> None:
        print(self.label + what, file=sys.stderr, flush=True)

    def run(self, cases: list[Case],
            warm_up: Callable[[], object] | None = None) -> None:
        """``warm_up`` once, unmeasured, then each case ``repeat`` times,
        interleaved.
        """
        if warm_up is not None:
            self.progress('warm-up')
            warm_up()
        for rep in range(self.repeat):
            # NOTE: with rotate, no case always follows the same one (and
            # its write-back).
            shift = rep % len(cases) if self.rotate else 0
            for name, measure in cases[shift:] + cases[:shift]:
                self.progress('round %d/%d: %s' % (rep + 1, self.repeat,
                                                   name))
                if self.cache:
                    os.sync()
                    if self.cache == 'cold':
                        drop_caches()
                measure()
                if self.after is not None:
                    self.after(name)

    def median(self, row: str) -> float:
        return statistics.median(self.samples[row])

    def ratio(self, row: str, base: str) -> float:
        """The median of ``row`` over its baseline's, of the same run."""
        return self.median(row) / self.median(base)

    def extra(self, row: str, key: str,
              how: Callable = statistics.median) -> object:
        """``how`` (median, max...) of the ``key`` figures of ``row``."""
        return how([e[key] for e in self.extras[row]])

    def stage_medians(self) -> dict[str, dict[str, float]]:
        return {row: {name: round(statistics.median(v), 3)
                      for name, v in names.items()}
                for row, names in self.stages.items()}

    def noisy(self) -> list[str]:
        """The rows whose spread is over :data:`NOISY` of their median."""
        return [row for row, values in self.samples.items()
                if len(values) > 1 and statistics.median(values) and
                (max(values) - min(values)) /
                statistics.median(values) > NOISY]

    def figures(self) -> dict[str, dict]:
        """Median and samples of each row, for --json."""
        return {row: {'seconds': round(self.median(row), 3),
                      'samples': [round(v, 3) for v in values]}
                for row, values in self.samples.items()}


def table(rows: Sequence[Sequence[object]], groups: int = 1) -> list[str]:
    """``rows`` (the head first) in columns as wide as their widest
    cell, right-aligned where every cell below the head is a figure (or
    ``-``); the columns after the first fall in ``groups`` groups, set
    apart by ``|``.
    """
    cells = [[str(c) for c in row] for row in rows]
    columns = list(zip(*cells))
    widths = [max(map(len, column)) for column in columns]
    right = [all(c[:1].isdigit() or c == '-' for c in column[1:])
             for column in columns]
    per = (len(widths) - 1) // groups
    return [''.join(
        ('' if i == 0 else '  ' if groups == 1 else
         ' | ' if (i - 1) % per == 0 else ' ') +
        (c.rjust if right[i] else c.ljust)(widths[i])
        for i, c in enumerate(row)).rstrip() for row in cells]


def size_table(runs: dict[int, 'Runner'], rows: Sequence[str], base: str,
               ratio_head: str, no_ratio: Sequence[str] = ()) -> str:
    """The medians of ``rows`` for each data size, each with its ratio to
    the ``base`` row of the same run (none for ``no_ratio`` rows).
    """
    return '\n'.join(table([['disk data', 'case', 'median s', ratio_head]] + [
        ['%d MiB' % size, row, '%.2f' % run.median(row),
         '-' if row in no_ratio else '%.2f' % run.ratio(row, base)]
        for size, run in runs.items() for row in rows]))


def _sizes(text: str) -> list[int]:
    try:
        found = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('a comma-separated list of MiB')
    if not found or min(found) < 2:
        raise argparse.ArgumentTypeError('sizes of at least 2 MiB')
    return found


def options(prog: str, description: str, argv: list[str] | None,
            sizes: Sequence[int], repeat: int = 3,
            more: Callable[[argparse.ArgumentParser], object] | None = None,
            others: bool = True) -> argparse.Namespace:
    """The options of a benchmark: the ones every benchmark takes
    (--sizes, --data-mb N for --sizes N, --repeat, --json) and ``more``'s.
    With ``others``, the ones it does not take are ignored, and said so
    (``tox -e bench`` passes all of tools.bench's to each benchmark).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument('--sizes', type=_sizes, default=list(sizes),
                        help='MiB of random data, comma separated, each '
                             'measured in turn (default: %s)' %
                             ','.join(map(str, sizes)))
    parser.add_argument('--data-mb', type=int,
                        help='one size: the same as --sizes N')
    parser.add_argument('--repeat', type=int, default=repeat,
                        help='runs of each case; the median is reported '
                             '(default: %(default)s)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the figures to FILE as JSON')
    if more is not None:
        more(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not others:
        parser.error('unrecognized arguments: %s' % ' '.join(unknown))
    if unknown:
        print('%s: ignoring %s' % (prog, ' '.join(unknown)), file=sys.stderr)
    if args.data_mb is not None:
        args.sizes = [args.data_mb]
    if min(args.sizes) < 2 or args.repeat < 1:
        parser.error('sizes are at least 2 MiB, --repeat at least 1')
    return args


def write_json(path: str | None, figures: dict) -> None:
    if path:
        with open(path, 'w') as f:
            json.dump(figures, f, indent=2, sort_keys=True)
            f.write('\n')


def main(measure: Callable[[], object]) -> int:
    """Run a benchmark: one line and a status for every way it can end.
    SIGTERM unwinds like Ctrl-C, so that its cleanups run. The memory
    the machine would give back to its host is held for the run
    (:mod:`tools.bench_memory`).
    """
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with bench_memory.held():
            measure()
    except BenchError as e:
        print('bench: error: %s' % e, file=sys.stderr)
        return 1
    except libvirt.libvirtError as e:
        print('bench: error: libvirt: %s' % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('bench: interrupted', file=sys.stderr)
        return 130
    except Terminated:
        print('bench: terminated', file=sys.stderr)
        return 143
    return 0
