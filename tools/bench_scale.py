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

"""How does a live snapshot scale when N guests of one host are
snapshotted at once, against one guest alone?

Run it from the top of the repository, as root, on the real stack
(``tools/stack.sh up``: its libvirtd)::

    python -m tools.bench_scale [--guests 8] [--data-mb 256] [--repeat 3]
                                [--json FILE]

``--guests`` counter-writing test guests (``tests/functional/guest.py``)
are booted at once, each by :func:`tools.bench.on_guest` in its own
thread: a qcow2 overlay over a raw base that together hold ``--data-mb``
MiB of random data, on a sparse disk twice as large. Every snapshot is
:func:`snapshot.take_snapshot`, live, qcow2, into one directory store,
``[snapshot_libvirt] live_copy_style = backup`` (tools.bench's "ours
backup -> directory"), one thread per snapshot. After one unmeasured
snapshot of guest 0 (the first use of the engine and of the page cache),
the two cases run ``--repeat`` times, interleaved, their order rotating
each round, ``os.sync()`` before each; medians are printed:

* **1 guest alone**: guest 0 only, the others running on meanwhile (the
  fair baseline: the same host, as busy with guests).
* **N guests at once**: all of them, each its own request and image,
  started together.

Figures of each case: **wall s**, from the first snapshot's start to the
last one's end; **MiB/s**, the data of all its guests over that time;
**x alone**, that over the alone case's MiB/s (N: perfect scaling, 1: no
faster than one after another, below 1: slower); **guest med s / max
s**, the median and the largest of the snapshots' own seconds, over every
guest and run; **guest writes**, a snapshotted guest's write rate during
its snapshot (its counter, read from its disk) over its rate in an idle
window just before, as long as the case's last run (at most
:data:`tools.bench.IDLE_MAX` s): median and lowest. ``--json`` adds
each run's figures by guest and the wall time over the alone case's.

Every image is checked (live, backup, whole, one point in time: as
tests/functional/test_snapshot.py's ``assert_good_image``) and deleted
after its measurement; the guests, their disks and work directories and
the run's own directory at the end, whatever happens, SIGTERM included.
"""

import argparse
import contextlib
import functools
import os
import shutil
import statistics
import sys
import threading
import time
import uuid

import libvirt

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import cancel as cancel_mod
from nova_snapshot_ext import snapshot
from tests.functional import conftest
from tests.functional import guest as guest_mod
from tools import bench
from tools import bench_runner as runner

MiB = runner.MiB
BenchError = runner.BenchError
DEFAULT_GUESTS = 8
DEFAULT_SIZES = (256,)
DISK_FACTOR = 2
STYLE = 'backup'
ALONE = '1 guest alone'
#: The row of the case of N snapshots at once.
AT_ONCE = '%d guests at once'


# -- the guests ----------------------------------------------------------
@contextlib.contextmanager
def fleet(count: int, data_mb: int, disk_mb: int):
    """``count`` running test guests, booted at once (each by
    :func:`bench.on_guest` in a thread of its own, which holds it until
    the block ends and then removes it, its disk and work directory).
    """
    held: dict[int, guest_mod.TestGuest] = {}
    failed: list[str] = []
    changed = threading.Condition()
    release = threading.Event()

    def hold(i: int, guest: guest_mod.TestGuest, workdir: str) -> None:
        with changed:
            held[i] = guest
            changed.notify_all()
        release.wait()

    def boot(i: int) -> None:
        try:
            bench.on_guest(data_mb, functools.partial(hold, i),
                           disk_mb=disk_mb)
        except BaseException as e:
            with changed:
                failed.append('guest %d: %s' % (i, e))
                changed.notify_all()
                if i in held:  # NOTE: its removal failed: said, not raised.
                    print('bench: %s' % failed[-1], file=sys.stderr)

    threads = [threading.Thread(target=boot, args=(i,), name='guest-%d' % i)
               for i in range(count)]
    try:
        for thread in threads:
            thread.start()
        with changed:
            changed.wait_for(lambda: failed or len(held) == count)
        if failed:
            raise BenchError('booting the guests, %s' % failed[0])
        yield [held[i] for i in range(count)]
    finally:
        release.set()
        for thread in [t for t in threads if t.ident is not None]:
            thread.join()


# -- the cases -------------------------------------------------------------
class Scale:
    """The two cases on the running guests, and their samples."""

    def __init__(self, args, guests: list[guest_mod.TestGuest],
                 rundir: str) -> None:
        self.guests = guests
        self.data = args.data_mb * MiB
        self.conf = conftest.make_conf(rundir)
        self.conf.set_override('live_copy_style', STYLE,
                               group='snapshot_libvirt')
        self.store = 'file://' + os.path.join(rundir, 'store')
        self.counters = [runner.Counter(g.disks.path, g.disks.size)
                         for g in guests]
        self.runner = runner.Runner(args.repeat, '%d x %d MiB, ' % (
            len(guests), args.data_mb), 'warm', after=self.check_running)
        self.taken = 0

    def cases(self) -> list[runner.Case]:
        everyone = list(range(len(self.guests)))
        return [(ALONE, functools.partial(self.case, ALONE, [0])),
                (AT_ONCE % len(everyone), functools.partial(
                    self.case, AT_ONCE % len(everyone), everyone))]

    def warm_up(self) -> None:
        self.drop(self.concurrently('warm-up', [0])[0]['result'])

    def check_running(self, name: str) -> None:
        for guest in self.guests:
            if guest.dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                raise BenchError('%s stopped running after %s' % (
                    guest.name, name))

    def idle_rates(self, row: str, indices: list[int]) -> list[float]:
        """Each guest's writes per second in one idle window, as long as
        the last run of ``row`` (a guess before the first one).
        """
        guess = 2.0 + 3.0 * len(indices) * self.data / 1024 ** 3
        before, started = [self.counters[i].read() for i in indices], \
            time.monotonic()
        time.sleep(min(bench.IDLE_MAX,
                       self.runner.samples.get(row, [guess])[-1]))
        seconds = time.monotonic() - started
        return [(self.counters[i].read() - b) / seconds
                for i, b in zip(indices, before)]

    def case(self, row: str, indices: list[int]) -> None:
        """One run of ``row``: the snapshots of ``indices`` at once,
        checked, dropped and recorded.
        """
        idle = self.idle_rates(row, indices)
        done = self.concurrently(row, indices)
        try:
            for i in indices:
                self.check(row, self.guests[i], done[i]['result'])
        finally:
            for one in done.values():
                self.drop(one['result'])
        wall, extra = one_run([done[i] for i in indices], idle)
        self.runner.record(row, wall, **extra)

    def concurrently(self, row: str, indices: list[int]) -> dict[int, dict]:
        """The snapshots of ``indices``, one thread each, all started
        together: what :meth:`take` returned, by guest. When one fails
        or the bench is stopped, the others are cancelled, awaited and
        their images dropped.
        """
        done: dict[int, dict] = {}
        failed: list[str] = []
        cancels = {i: cancel_mod.Cancel(self.conf.snapshot.timeout)
                   for i in indices}
        self.taken += 1

        def one(i: int) -> None:
            try:
                done[i] = self.take(i, 'scale-%d-g%d' % (self.taken, i),
                                    cancels[i])
            except Exception as e:
                failed.append('%s, %s: %s' % (row, self.guests[i].name, e))
                for cancel in cancels.values():
                    cancel.request('another snapshot of the bench failed')

        threads = [threading.Thread(target=one, args=(i,),
                                    name='snapshot-%d' % i) for i in indices]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        except BaseException:
            failed.append('the bench was stopped')
            for cancel in cancels.values():
                cancel.request(failed[-1])
            for thread in [t for t in threads if t.ident is not None]:
                thread.join()
            raise
        finally:
            for one_done in done.values() if failed else ():
                self.drop(one_done['result'])
        if failed:
            raise BenchError(failed[0])
        return done

    def take(self, i: int, name: str, cancel: cancel_mod.Cancel) -> dict:
        """One snapshot of guest ``i``, timed, with its writes meanwhile."""
        request = snapshot.SnapshotRequest(
            guest=self.guests[i].name, name=name, method='live',
            image_format='qcow2', store=self.store)
        before, started = self.counters[i].read(), time.monotonic()
        try:
            result = snapshot.take_snapshot(request, conf=self.conf,
                                            cancel=cancel)
        except exception.SnapshotError as e:
            raise BenchError('snapshot failed: %s' % e)
        ended = time.monotonic()
        return dict(result=result, started=started, ended=ended,
                    seconds=ended - started,
                    written=self.counters[i].read() - before)

    def check(self, row: str, guest: guest_mod.TestGuest,
              result: snapshot.SnapshotResult) -> None:
        """The image is live, of the backup style, whole and one point
        in time of the guest.
        """
        if result.method != 'live' or result.live_copy_style != STYLE:
            raise BenchError('%s, %s: got a %s snapshot (%s): %s' % (
                row, guest.name, result.method, result.live_copy_style,
                result.reason))
        try:
            found = guest_mod.check_image(result.image, 'qcow2',
                                          guest.disks.size)
        except guest_mod.CommandFailed as e:
            raise BenchError('%s, %s: %s' % (row, guest.name, e))
        if found.data_sha256 != guest.disks.data_sha256:
            raise BenchError('%s, %s: the image does not hold the disk\'s '
                             'data' % (row, guest.name))
        if not found.point_in_time or found.last <= 0:
            raise BenchError('%s, %s: the image is not one point in time: '
                             'counters %s' % (row, guest.name,
                                              found.counters))

    @staticmethod
    def drop(result: snapshot.SnapshotResult) -> None:
        # NOTE: an image of the directory store and its files are alone
        # in a directory (as tools.bench's Live.drop).
        shutil.rmtree(os.path.dirname(result.location), ignore_errors=True)


# -- the figures and the report -------------------------------------------
def one_run(done: list[dict], idle: list[float]) -> tuple[float, dict]:
    """The wall seconds of one run of a case, from its snapshots (as
    :meth:`Scale.take` returns them) and their guests' idle write rates,
    and its figures by guest: seconds, write rates idle and during, and
    during / idle.
    """
    during = [d['written'] / d['seconds'] for d in done]
    return (max(d['ended'] for d in done) - min(d['started'] for d in done),
            dict(per_guest=[round(d['seconds'], 3) for d in done],
                 idle=[round(r, 2) for r in idle],
                 during=[round(r, 2) for r in during],
                 rates=[round(d / r, 3) if r else 0.0
                        for d, r in zip(during, idle)]))


def figures(run: runner.Runner, guests: int, data_mb: int) -> dict:
    """The medians of both rows and their ratios to the alone case."""
    rows = {}
    alone = data_mb / run.median(ALONE)
    for row, count in ((ALONE, 1), (AT_ONCE % guests, guests)):
        per = [s for e in run.extras[row] for s in e['per_guest']]
        rates = [r for e in run.extras[row] for r in e['rates']]
        mib_per_s = count * data_mb / run.median(row)
        rows[row] = dict(
            run.figures()[row], guests=count,
            mib_per_s=round(mib_per_s, 1),
            over_alone=round(mib_per_s / alone, 3),
            wall_over_alone=round(run.ratio(row, ALONE), 3),
            per_guest_median=round(statistics.median(per), 3),
            per_guest_max=round(max(per), 3),
            guest_rate_median=round(statistics.median(rates), 3),
            guest_rate_min=round(min(rates), 3),
            runs=run.extras[row])
    return {'guests': guests, 'data_mb': data_mb, 'rows': rows,
            'noisy_rows': run.noisy()}


def report(figs: dict, facts: dict, repeat: int) -> str:
    lines = [
        'nova-snapshot-ext scale benchmark: %d guests, each %d MiB of '
        'random data on qcow2 over raw, disk %dx as large (sparse); live, '
        'qcow2, live_copy_style %s, directory store' % (
            figs['guests'], figs['data_mb'], DISK_FACTOR, STYLE),
        'host: libvirt %(libvirt)s, QEMU %(qemu)s, %(cores)s cores '
        '(%(cpu)s), %(ram_gib)s GiB RAM, Linux %(kernel)s' % facts,
        'memory: %s' % facts.get('memory', 'not recorded'),
        'guests: TCG, 1 vCPU each, writing their counters all along; other '
        'active guests before: %s; load average before %s, after %s' % (
            ', '.join(facts['others']) or 'none',
            *('/'.join('%.2f' % x for x in facts[k])
              for k in ('load_before', 'load_after'))),
        'method: %d runs of each case, interleaved, order rotating each '
        'round; median; os.sync() before each' % repeat,
        'wall s = first start to last end; MiB/s = guests x data / wall s; '
        'x alone = MiB/s / MiB/s of one alone; guest med/max s = the '
        'snapshots\' own seconds; guest writes = write rate during its '
        'snapshot / idle, median (lowest)', '']
    head = ['case', 'wall s', 'MiB/s', 'x alone', 'guest med s',
            'guest max s', 'guest writes']
    lines += runner.table([head] + [
        [row, '%.2f' % r['seconds'], '%.1f' % r['mib_per_s'],
         '%.2f' % r['over_alone'], '%.2f' % r['per_guest_median'],
         '%.2f' % r['per_guest_max'], '%.0f%% (%.0f%%)' % (
             r['guest_rate_median'] * 100, r['guest_rate_min'] * 100)]
        for row, r in figs['rows'].items()])
    lines.append('noisy rows (max - min > %d%% of median): %s' % (
        runner.NOISY * 100, ', '.join(figs['noisy_rows']) or 'none'
        if repeat > 1 else 'one run each, not known'))
    return '\n'.join(lines)


# -- the run -----------------------------------------------------------------
def compare(args) -> dict:
    facts = bench.host_facts()
    rundir = os.path.join(guest_mod.work_root(),
                          'bench-scale-%s' % uuid.uuid4().hex[:8])
    started = time.monotonic()
    try:
        os.makedirs(rundir)
        with fleet(args.guests, args.data_mb,
                   args.data_mb * DISK_FACTOR) as guests:
            scale = Scale(args, guests, rundir)
            scale.runner.run(scale.cases(), scale.warm_up)
            figs = figures(scale.runner, args.guests, args.data_mb)
            figs['disk_virtual_size'] = guests[0].disks.size
    finally:
        shutil.rmtree(rundir, ignore_errors=True)
    facts['load_after'] = os.getloadavg()
    print(report(figs, facts, args.repeat), flush=True)
    print('(whole run, boot and cleanup included: %.0f s)' % (
        time.monotonic() - started), file=sys.stderr)
    out = dict(figs, host=facts, repeat=args.repeat, style=STYLE,
               disk_factor=DISK_FACTOR)
    runner.write_json(args.json, out)
    return out


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--guests', type=int, default=DEFAULT_GUESTS,
                        help='guests booted and snapshotted at once '
                             '(default: %(default)s)')


def main(argv: list[str] | None = None) -> int:
    args = runner.options(
        'python -m tools.bench_scale', 'Benchmark live snapshots of N '
        'guests of one host taken at once against one guest alone.',
        argv, DEFAULT_SIZES, more=_options, others=False)
    if len(args.sizes) != 1 or args.guests < 2:
        print('bench: error: one size (--data-mb) at a time, and --guests '
              'at least 2', file=sys.stderr)
        return 2
    args.data_mb = args.sizes[0]
    return runner.main(lambda: compare(args))


if __name__ == '__main__':
    sys.exit(main())
