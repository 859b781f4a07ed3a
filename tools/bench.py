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

"""How fast is a live snapshot of a running guest, next to what an
operator would do by hand, to the upload alone and to the physical
limit; how much does it stage on the host and slow the guest?

Run it from the top of the repository, as root, on the real stack
(``tools/stack.sh up``: its libvirtd and its Glance)::

    python -m tools.bench [--sizes 1024,4096] [--disk-factor 2]
                          [--repeat 3] [--cache warm|cold] [--json FILE]
                          [--keep]

For each size, a counter-writing test guest (``tests/functional/
guest.py``) runs on a qcow2 overlay over a raw base that together hold
that many MiB of random data, on a sparse disk ``--disk-factor`` times
larger. The cases (:meth:`Live.cases`) run ``--repeat`` times,
interleaved, in an order that rotates each round; medians are printed,
the sizes side by side, each beside the baseline of ours into the
directory store, the plain convert + fsync + sha256:

* **raw read**: what the disk chain's files hold (holes skipped): the
  physical limit.
* **plain convert**: ``qemu-img convert -U`` of the running disk, what an
  operator would type (not one point in time: a baseline, not a method);
  in the same run, with the fsync and sha256 of its output that the
  directory store does on commit.
* **manual procedure**: ``virsh blockcopy --shallow --reuse-external
  --transient-job --finish`` into a delta, then ``qemu-img convert``.
* **ours mirror / backup -> directory**: :func:`snapshot.take_snapshot`,
  live, qcow2, into a directory store, ``[snapshot_libvirt]
  live_copy_style`` ``blockcopy`` (mirror into a delta, then convert) or
  ``backup`` (libvirt's backup API, pull mode); backup again with
  ``live_copy_bandwidth`` capped, and again guest first
  (``live_copy_guest_share``).
* **Glance: upload alone, raw / qcow2**: the Glance store uploading an
  existing image equal to the snapshot: the baseline of ours into Glance.
* **ours -> Glance**: ``backup`` raw (streamed, no file on the host),
  ``backup`` qcow2 and ``blockcopy`` qcow2 (both stage their image).
* **ours incremental**: a full ``--incremental`` snapshot into the
  directory store, then 1% of the disk's data written through the
  running QEMU (so that the dirty bitmap sees it), then an incremental
  snapshot: its time and image bytes against the full one's.

For each of ours: the peak bytes staged under ``[snapshot]
temp_directory`` (sampled every 0.1 s), apart from the backup job's
scratch file; the guest's write rate during the job (its counter, read
from its disk) against an idle window as long just before; the calls to
libvirt's version and capability methods. The issue's targets are
printed with the figures, marked PASS or FAIL.

``--cache warm``: an unmeasured read and convert warm the page cache and
``os.sync()`` runs before each case; ``cold``: the page cache is also
dropped, as on a compute host whose guest disks use ``cache=none``.
Every image and checkpoint is deleted after its measurement; the guest,
the run's Glance images and the work directory (unless ``--keep``) at
the end, whatever happens, SIGTERM included.
"""

import argparse
import functools
import hashlib
import os
import platform
import re
import shutil
import sys
import threading
import time
import uuid

import libvirt
import libvirt_qemu

from nova_snapshot_ext.backends import incremental as inc_backend
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import domain as lv_domain
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import policy
from nova_snapshot_ext import retry
from nova_snapshot_ext import snapshot
from nova_snapshot_ext.stores import base as store_base
from tests.functional import ceph_stack
from tests.functional import conftest
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tools import bench_charts
from tools import bench_memory
from tools import bench_runner as runner

MiB = runner.MiB
BenchError = runner.BenchError
BUFFER = 8 * MiB
DEFAULT_SIZES = (1024, 4096)
RECONNECT = 60.0
#: Longest idle window, seconds (a hundred writes a second: plenty).
IDLE_MAX = 20.0
#: The largest write of the change between two incremental snapshots,
#: and what the change is rounded to (a qcow2 cluster, the granularity
#: of the dirty bitmap); the byte it writes.
CHUNK = MiB
CLUSTER = 64 * 1024
PATTERN = 0x5a

RAW_READ = 'raw read (disk chain files)'
PLAIN = 'plain qemu-img convert -U'
DURABLE = 'plain convert + fsync + sha256'
MANUAL = 'manual blockcopy + convert'
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
#: Ours backup -> directory with [snapshot_libvirt] live_copy_guest_share.
SHARE = 0.8
BACKUP_DIR_GUEST = 'ours backup -> directory, guest first %.1f' % SHARE
UPLOAD = {'raw': 'Glance: upload alone, raw (baseline)',
          'qcow2': 'Glance: upload alone, qcow2'}
#: The full incremental snapshot that starts a chain, and the one after
#: :data:`CHANGED` of the data was written.
INC_FULL = 'ours incremental: full (chain start)'
INC_AFTER = 'ours incremental after 1% change'
CHANGED = 0.01
ROWS = (RAW_READ, PLAIN, DURABLE, MANUAL, MIRROR_DIR, BACKUP_DIR,
        BACKUP_DIR_CAPPED, BACKUP_DIR_GUEST, UPLOAD['raw'], UPLOAD['qcow2'],
        BACKUP_RAW, BACKUP_QCOW2, MIRROR_QCOW2, INC_FULL, INC_AFTER)
#: The targets; incremental after 1% change / the full one: time and
#: image bytes, and its seconds up to 1 GiB of data.
BACKUP_OVER_DURABLE = 1.0
SPEEDUP = 2.0
RAW_OVER_UPLOAD = 1.10
GUEST_RATE = 0.80
INCREMENTAL_OVER_FULL = 0.05
INCREMENTAL_SECONDS = 0.25
#: What a libvirt daemon tells of itself, counted per snapshot.
VERSION_CALLS = ('getVersion', 'getLibVersion', 'getDomainCapabilities')


# -- the stack and its guests (tools.bench_rbd's too) -----------------
def stack(fn, *args):
    """``fn(*args)``, a part of the stack not running a :exc:`BenchError`."""
    try:
        return fn(*args)
    except guest_mod.StackMissing as e:
        raise BenchError(str(e))


def close(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


def reconnect() -> libvirt.virConnect:
    """A new connection to libvirtd, waiting up to :data:`RECONNECT`
    seconds for it to answer (the functional tests restart it).
    """
    return retry.call(stack, guest_mod.connect, on=BenchError,
                      timeout=RECONNECT, interval=1.0)


def on_guest(data_mb: int, measure, keep: bool = False, rbd: bool = False,
             disk_mb: int | None = None) -> object:
    """``measure(guest, workdir)`` on a fresh running test guest with
    ``data_mb`` MiB of data: qcow2 over raw on a ``disk_mb`` MiB disk,
    or with ``rbd`` a raw disk in the stack's Ceph pool ``vms``. The
    guest is removed through a new connection (its own one may be gone,
    and ``TestGuest.remove`` takes a failed lookup for a guest already
    gone), then its disk and work directory, whatever happens.
    """
    conn = stack(guest_mod.connect)
    tag = 'bench-%s' % uuid.uuid4().hex[:8]
    workdir = os.path.join(guest_mod.work_root(), tag)
    disks = dict(fmt='raw', disks=lambda d, n: ceph_stack.import_disk(
        conn, d, 'vms', n)) if rbd else dict(fmt='qcow2', disk_mb=disk_mb)
    guest = None
    try:
        # NOTE: one write: tools.bench_scale boots guests in threads.
        sys.stderr.write('preparing %d MiB of data and booting %s%s\n' % (
            data_mb, guest_mod.PREFIX, tag))
        sys.stderr.flush()
        guest = guest_mod.TestGuest(conn, workdir, tag, data_mb=data_mb,
                                    **disks)
        guest.start()
        return measure(guest, workdir)
    finally:
        try:
            if guest is not None:
                own, guest.conn = guest.conn, reconnect()
                try:
                    guest.remove()
                finally:
                    close(guest.conn)
                    guest.conn = own
                if rbd:
                    ceph_stack.remove_disk(guest.disks.path)
        finally:
            close(conn)
            if guest is not None and guest.conn is not conn:
                close(guest.conn)
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                print('kept %s' % workdir, file=sys.stderr)


def upload_alone(conf, url: str, path: str, fmt: str, name: str,
                 workdir: str) -> tuple[float, int]:
    """Seconds for the Glance store to upload the image file ``path`` in
    this process, as a snapshot's upload does (store loaded and checked,
    record, upload while hashing, wait for active, check), and the size
    stored. The image is deleted afterwards.
    """
    started = time.monotonic()
    store = store_base.load(conf, 'glance+' + url)
    store.check()
    meta = store_base.ImageMeta(name=name, disk_format=fmt)
    with store.begin(meta, workdir=workdir) as pending:
        # NOTE: the store made the file empty on first use of its path.
        os.unlink(pending.path)
        os.link(path, pending.path)
        stored = pending.commit()
    seconds = time.monotonic() - started
    glance_stack.delete(url, stored.id)
    return seconds, stored.size


# -- what the snapshots of ours are watched by ------------------------
class LibvirtCalls:
    """Counts the calls to :data:`VERSION_CALLS` of
    ``libvirt.virConnect``, on every connection of the process.
    """

    def __init__(self) -> None:
        self.counts = dict.fromkeys(VERSION_CALLS, 0)
        self._lock = threading.Lock()
        for name in VERSION_CALLS:
            setattr(libvirt.virConnect, name, self._counted(
                name, getattr(libvirt.virConnect, name)))

    def _counted(self, name: str, original):
        @functools.wraps(original)
        def counted(conn, *args, **kwargs):
            with self._lock:
                self.counts[name] += 1
            return original(conn, *args, **kwargs)
        return counted

    def total(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)


class Staged(runner.Sampler):
    """The peak bytes the files under a directory hold on disk: of the
    staged image, and apart, of the backup job's scratch file (what the
    guest overwrote meanwhile, copied before its write; not the image).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.peak = self.peak_scratch = 0

    def sample(self) -> None:
        total, scratch = runner.allocated(self.path)
        self.peak = max(self.peak, total - scratch)
        self.peak_scratch = max(self.peak_scratch, scratch)


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


# -- the cases on one guest -------------------------------------------
class Live:
    """The baselines, ours and the uploads alone on one running guest."""

    def __init__(self, args, guest: guest_mod.TestGuest, workdir: str,
                 data_mb: int, url: str, calls: LibvirtCalls,
                 image_name: str) -> None:
        self.guest = guest
        self.disks = guest.disks
        self.data_mb = data_mb
        self.data = data_mb * MiB
        self.url = url
        self.calls = calls
        self.image_name = image_name
        self.outdir = os.path.join(workdir, 'out')
        self.uploads = os.path.join(workdir, 'uploads')
        os.makedirs(self.outdir, mode=0o755, exist_ok=True)
        os.makedirs(self.uploads, exist_ok=True)
        self.store = 'file://' + os.path.join(workdir, 'store')
        self.conf = conftest.make_conf(workdir)
        self.runner = runner.Runner(
            args.repeat, '%d MiB, ' % data_mb, args.cache,
            after=self.check_running)
        self.counter = runner.Counter(self.disks.path, self.disks.size)
        #: Bytes and writes of the last change between two incremental
        #: snapshots.
        self.changed = (0, 0)
        self.only = re.compile(args.cases) if args.cases else None
        self.images = {}
        for fmt in UPLOAD:
            self.images[fmt] = os.path.join(self.outdir, 'equal.' + fmt)
            runner.run('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', fmt,
                       self.disks.path, self.images[fmt])

    def cases(self) -> list[runner.Case]:
        # NOTE: the plain convert is every row's baseline: always run.
        return [case for case in self._cases()
                if self.only is None or self.only.search(case[0]) or
                case[0] == 'plain convert']

    def _cases(self) -> list[runner.Case]:
        return [
            ('raw read', lambda: self.runner.record(RAW_READ,
                                                    self.raw_read())),
            ('plain convert', self.plain_convert),
            ('manual procedure', self.manual),
        ] + [(UPLOAD[fmt], functools.partial(self.upload, fmt))
             for fmt in UPLOAD] + [
            (v[0], functools.partial(self.ours, *v)) for v in OURS] + [
            (BACKUP_DIR_CAPPED, functools.partial(
                self.tuned, BACKUP_DIR_CAPPED, 'live_copy_bandwidth',
                CAP_MIB)),
            (BACKUP_DIR_GUEST, functools.partial(
                self.tuned, BACKUP_DIR_GUEST, 'live_copy_guest_share',
                SHARE)),
            ('ours incremental', self.incremental)]

    def warm_up(self) -> None:
        """One unmeasured read of the chain and one unmeasured convert.

        The first one fills the page cache; the second one pays for the
        first use of as much fresh page cache as an image takes (slow on
        a VM whose memory the host hands out on first touch), which
        otherwise lands on whichever case runs first.
        """
        self.raw_read()
        self.convert(self.disks.path, 'warm-up.qcow2', '-U')

    def check_running(self, name: str) -> None:
        if self.domain_call(lambda d: d.state()[0]) != \
                libvirt.VIR_DOMAIN_RUNNING:
            raise BenchError('the guest stopped running after %s' % name)

    def check_size(self, what: str, size: int) -> None:
        # NOTE: random data does not compress; a smaller image means a
        # case copied less than the disk, and its time means nothing.
        if size < self.data:
            raise BenchError('%s wrote %d bytes, less than the %d bytes of '
                             'data' % (what, size, self.data))

    def raw_read(self) -> float:
        """Seconds to read what the chain's files hold (holes skipped)."""
        buf = bytearray(BUFFER)
        started = time.monotonic()
        for path in (self.disks.base, self.disks.path):
            with open(path, 'rb', buffering=0) as f:
                at = 0
                while True:
                    try:
                        at = os.lseek(f.fileno(), at, os.SEEK_DATA)
                    except OSError:
                        break
                    end = os.lseek(f.fileno(), at, os.SEEK_HOLE)
                    while at < end:
                        got = os.preadv(f.fileno(), [memoryview(buf)[
                            :min(BUFFER, end - at)]], at)
                        if not got:
                            break
                        at += got
        return time.monotonic() - started

    def convert(self, source: str, name: str, *opts: str,
                what: str = '', hashed: bool = False) -> list[float]:
        """Seconds of ``qemu-img convert [opts]`` of ``source`` to qcow2
        ``name`` in the output directory (and, with ``hashed``, of the
        fsync and the sha256 of its output, as the directory store does
        on commit); with ``what``, the output's size checked. The output
        is removed.
        """
        out = os.path.join(self.outdir, name)
        try:
            seconds = [runner.timed('qemu-img', 'convert', *opts, '-f',
                                    'qcow2', '-O', 'qcow2', source, out)]
            if what:
                self.check_size(what, os.path.getsize(out))
            if hashed:
                started = time.monotonic()
                fd = os.open(out, os.O_RDWR)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                seconds.append(time.monotonic() - started)
                with open(out, 'rb') as f:
                    hashlib.file_digest(f, 'sha256')
                seconds.append(time.monotonic() - started - seconds[1])
            return seconds
        finally:
            runner.remove(out)

    def plain_convert(self) -> None:
        """The plain convert, and (in the same run) the plain convert
        followed by the fsync and sha256 of its output.
        """
        convert, synced, hashed = self.convert(
            self.disks.path, 'plain.qcow2', '-U', what='plain convert',
            hashed=True)
        self.runner.record(PLAIN, convert)
        self.runner.record(DURABLE, convert + synced + hashed)
        for name, seconds in (('qemu-img convert', convert),
                              ('fsync of the output', synced),
                              ('sha256 of the output', hashed)):
            self.runner.stage(DURABLE, name, seconds)

    def manual(self) -> None:
        delta = os.path.join(self.outdir, 'manual-delta.qcow2')
        try:
            create = runner.timed('qemu-img', 'create', '-q', '-f', 'qcow2',
                                  '-b', self.disks.base, '-F', 'raw', delta,
                                  str(self.disks.size))
            # NOTE: --finish ends the job without a pivot once the mirror
            # is ready: the delta then holds the top layer as of that
            # moment and the guest keeps its own disk.
            copy = runner.timed(
                'virsh', '-c', guest_mod.URI, 'blockcopy', self.guest.name,
                'vda', '--dest', delta, '--format', 'qcow2', '--shallow',
                '--reuse-external', '--wait', '--finish', '--transient-job')
            convert, = self.convert(delta, 'manual.qcow2',
                                    what='manual procedure')
        finally:
            runner.remove(delta)
        self.runner.record(MANUAL, copy + convert)
        for name, seconds in (('qemu-img create (not in the row)', create),
                              ('virsh blockcopy --finish', copy),
                              ('qemu-img convert', convert)):
            self.runner.stage(MANUAL, name, seconds)

    def upload(self, fmt: str) -> None:
        seconds, size = upload_alone(self.conf, self.url, self.images[fmt],
                                     fmt, self.image_name, self.uploads)
        self.check_size(UPLOAD[fmt], size)
        self.runner.record(UPLOAD[fmt], seconds)

    def tuned(self, row: str, option: str, value: float) -> None:
        """Ours backup -> directory with one [snapshot_libvirt] option."""
        self.conf.set_override(option, value, group='snapshot_libvirt')
        try:
            self.ours(row, 'backup', 'file', 'qcow2')
        finally:
            self.conf.clear_override(option, group='snapshot_libvirt')

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
            image_format=fmt, incremental=incremental,
            store='glance+' + self.url if store == 'glance' else self.store)
        # NOTE: the idle window, right before, about as long as the job.
        window = self.runner.samples.get(
            row, [2.0 + 3.0 * self.data / 1024 ** 3])
        trace = runner.Trace(self.counter)
        with trace:
            idle = self.counter.rate(min(IDLE_MAX, window[-1]))
            result, figures = self._take(row, style, store, fmt, request,
                                         events, incremental)
        started, ended = figures.pop('started'), figures.pop('ended')
        self.runner.record(row, ended - started, idle=idle,
                           rate=figures['during'] / idle if idle else 0.0,
                           trace=trace.since(started), **figures)
        self.runner.stage(row, 'result.seconds', result.seconds)
        for name, seconds in milestones(events, started, ended):
            self.runner.stage(row, name, seconds)
        return result

    def _take(self, row: str, style: str, store: str, fmt: str,
              request: snapshot.SnapshotRequest,
              events: list[tuple[float, str]], incremental: bool
              ) -> tuple[snapshot.SnapshotResult, dict]:
        """The snapshot of :meth:`take`, checked, and its figures."""
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
                calls = {n: c - calls[n]
                         for n, c in self.calls.total().items()}
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
        return result, dict(started=started, ended=ended,
                            staged=staged.peak,
                            scratch=staged.peak_scratch, image=result.size,
                            during=during, calls=calls)

    def incremental(self) -> None:
        """A full incremental snapshot (the start of a chain), then
        :data:`CHANGED` of the data written while the guest runs, then
        an incremental snapshot; both images and the guest's checkpoint
        deleted afterwards.
        """
        full = after = None
        try:
            full = self.take(INC_FULL, 'backup', 'file', 'qcow2',
                             incremental=True)
            if full.incremental_of is not None:
                raise BenchError('%s is backed by %s, not full' % (
                    INC_FULL, full.incremental_of))
            started = time.monotonic()
            self.changed = self.change(CHANGED)
            self.runner.stage(INC_AFTER, 'qemu-io writes before (not in '
                              'the row)', time.monotonic() - started)
            after = self.take(INC_AFTER, 'backup', 'file', 'qcow2',
                              incremental=True)
            if after.incremental_of != full.image_id:
                raise BenchError('%s is not incremental of %s: %s' % (
                    INC_AFTER, full.image_id,
                    after.incremental_reason or after.incremental_of))
            if after.size < self.changed[0]:
                raise BenchError('%s holds %d bytes, less than the %d '
                                 'written since the full one' % (
                                     INC_AFTER, after.size,
                                     self.changed[0]))
        finally:
            for result in (after, full):
                if result is not None:
                    self.drop('file', result)
            self.delete_checkpoints()

    def domain_call(self, fn):
        """``fn(domain of the guest)``, once more on a new connection when
        the connection was lost (libvirtd restarted; the guest runs on).
        """
        try:
            return fn(self.guest.dom)
        except libvirt.libvirtError as e:
            if not lv_domain.connection_lost(e):
                raise
        print('the connection to libvirtd was lost; connecting again',
              file=sys.stderr, flush=True)
        close(self.guest.conn)
        self.guest.conn = reconnect()
        self.guest.dom = self.guest.conn.lookupByName(self.guest.name)
        return fn(self.guest.dom)

    def hmp(self, command: str) -> str:
        """``command`` on the guest's QEMU monitor (HMP)."""
        try:
            return self.domain_call(lambda d: libvirt_qemu.qemuMonitorCommand(
                d, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP))
        except libvirt.libvirtError as e:
            raise BenchError('%s on %s: %s' % (
                command, self.guest.name, e.get_error_message()))

    def change(self, share: float) -> tuple[int, int]:
        """Write ``share`` of the disk's data (rounded to clusters) with
        :data:`PATTERN`, through the running QEMU's device of the disk
        (from ``info block``), so that the dirty bitmap sees it: writes of
        at most :data:`CHUNK`, spread evenly over the data, which lies
        before the counter sectors; each one read back.

        :returns: bytes written and the number of writes.
        """
        info = self.hmp('info block')
        for entry in re.split(r'\r?\n(?=\S)', info):
            attached = re.search(r'^\s+Attached to:\s+(\S+)', entry, re.M)
            if self.disks.path in entry.split('\n', 1)[0] and attached:
                device = attached.group(1)
                break
        else:
            raise BenchError('no device of %s in info block: %s' % (
                self.disks.path, info.strip()))
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

    def figures(self) -> dict:
        """The medians and the targets of this size."""
        run = self.runner
        rows = {}
        for row, figures in run.figures().items():
            rows[row] = r = dict(figures,
                                 mib_per_s=round(self.data / MiB /
                                                 run.median(row), 1),
                                 over_durable=round(run.ratio(row, DURABLE),
                                                    3))
            if row in run.extras:
                # NOTE: the largest peaks of the runs.
                r.update({k: run.extra(row, key, max) for k, key in (
                    ('staged_peak_bytes', 'staged'),
                    ('scratch_peak_bytes', 'scratch'),
                    ('image_bytes', 'image'))})
                r.update(libvirt_calls=run.extra(row, 'calls', list),
                         trace=run.extra(row, 'trace', lambda t: t[-1]),
                         guest_writes_idle=round(run.extra(row, 'idle'), 3),
                         guest_writes_during=round(run.extra(row, 'during'),
                                                   3),
                         guest_rate=run.extra(row, 'rate'))
        inc = {'written_bytes': self.changed[0], 'writes': self.changed[1]}
        if INC_AFTER in rows:
            inc.update(time_ratio=round(run.ratio(INC_AFTER, INC_FULL), 4),
                       bytes_ratio=round(rows[INC_AFTER]['image_bytes'] /
                                         rows[INC_FULL]['image_bytes'], 4))
        return {'data_mb': self.data_mb,
                'disk_virtual_size': self.disks.size, 'rows': rows,
                'stages': run.stage_medians(), 'noisy_rows': run.noisy(),
                'incremental': inc,
                'targets': [{'target': t, 'value': round(v, 3), 'met': ok}
                            for t, v, ok in self.targets(rows, inc)]}

    def targets(self, rows: dict, inc: dict
                ) -> list[tuple[str, float, bool]]:
        """Each target whose cases ran (--cases): its value, and whether
        it is met.
        """
        run = self.runner
        ratio = run.ratio
        targets = [
            ('backup -> directory / convert + fsync + sha256 <= %.2f' %
             BACKUP_OVER_DURABLE, lambda: ratio(BACKUP_DIR, DURABLE),
             lambda v: v <= BACKUP_OVER_DURABLE),
            ('ours mirror -> directory / backup -> directory >= %.1f' %
             SPEEDUP, lambda: ratio(MIRROR_DIR, BACKUP_DIR),
             lambda v: v >= SPEEDUP),
            ('manual procedure / backup -> directory >= %.1f' % SPEEDUP,
             lambda: ratio(MANUAL, BACKUP_DIR), lambda v: v >= SPEEDUP),
            ('Glance backup raw: staged MiB (scratch file excepted) == 0',
             lambda: rows[BACKUP_RAW]['staged_peak_bytes'] / MiB,
             lambda v: v == 0),
            ('Glance backup qcow2: staged MiB <= its image',
             lambda: (rows[BACKUP_QCOW2]['staged_peak_bytes'] /
                      rows[BACKUP_QCOW2]['image_bytes']),
             lambda v: v <= 1),
            ('Glance backup raw / upload alone raw <= %.2f' % RAW_OVER_UPLOAD,
             lambda: ratio(BACKUP_RAW, UPLOAD['raw']),
             lambda v: v <= RAW_OVER_UPLOAD),
        ] + [('incremental after 1%% change: %s / full %s <= %.2f' % (
            what, what, INCREMENTAL_OVER_FULL),
            functools.partial(inc.__getitem__, what + '_ratio'),
            lambda v: v <= INCREMENTAL_OVER_FULL)
            for what in ('time', 'bytes')] + [
            ('guest write rate during %s / idle >= %.2f' % (row, GUEST_RATE),
             functools.partial(lambda r: rows[r]['guest_rate'], row),
             lambda v: v >= GUEST_RATE)
            for row in [r for r, *_ in OURS] + [BACKUP_DIR_CAPPED,
                                                BACKUP_DIR_GUEST]]
        if self.data_mb <= 1024:
            targets.append((
                'incremental after 1%% change: seconds <= %.2f' %
                INCREMENTAL_SECONDS, lambda: run.median(INC_AFTER),
                lambda v: v <= INCREMENTAL_SECONDS))
        met = []
        for target, value, test in targets:
            try:
                v = value()
            except KeyError:
                continue
            met.append((target, v, test(v)))
        return met


# -- the report --------------------------------------------------------
def _mib(n: float) -> str:
    return '%.1f' % (n / MiB)


def _calls(r: dict) -> str:
    """The libvirt version/capability calls of each snapshot of a row."""
    per = r['libvirt_calls']
    return '%s (%s: %s)' % (
        ', '.join(str(sum(c.values())) for c in per), ', '.join(
            VERSION_CALLS), '; '.join(', '.join(
                str(c[n]) for n in VERSION_CALLS) for c in per))


def _cells(r: dict | None) -> list[str]:
    if r is None:
        return ['-'] * 6
    ours = 'staged_peak_bytes' in r
    return ['%.2f' % r['seconds'], '%.1f' % r['mib_per_s'],
            '%.2f' % r['over_durable']] + ([
                _mib(r['staged_peak_bytes']), _mib(r['scratch_peak_bytes']),
                '%.0f%%' % (r['guest_rate'] * 100)] if ours else ['-'] * 3)


def report(sizes: list[dict], facts: dict, args) -> str:
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
        'memory: %s' % facts.get('memory', 'not recorded'),
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
        'columns, left to right: %s' % ' | '.join(
            '%d MiB data, disk %d MiB' % (s['data_mb'],
                                          s['disk_virtual_size'] // MiB)
            for s in sizes),
        '']
    lines += runner.table([['variant'] + [
        's', 'MiB/s', 'xbase', 'stagedMB', 'scratchMB', 'guest'] *
        len(sizes)] + [[row] + sum((_cells(s['rows'].get(row))
                                    for s in sizes), [])
                       for row in ROWS], groups=len(sizes))
    for size in [s for s in sizes if 'time_ratio' in s['incremental']]:
        inc = size['incremental']
        full, after = size['rows'][INC_FULL], size['rows'][INC_AFTER]
        lines += [
            '', 'incremental, %d MiB: %s MiB written between the two (%.1f%% '
            'of the data, in %d qemu-io write%s spread over it)' % (
                size['data_mb'], _mib(inc['written_bytes']),
                100.0 * inc['written_bytes'] / (size['data_mb'] * MiB),
                inc['writes'], 's' if inc['writes'] > 1 else '')]
        lines += ['  ' + line for line in runner.table([
            ['', 's', 'image MiB']] + [
            [row, '%.2f' % r['seconds'], _mib(r['image_bytes'])]
            for row, r in ((INC_FULL, full), (INC_AFTER, after))] + [
            ['after / full', '%.3f' % inc['time_ratio'],
             '%.3f' % inc['bytes_ratio']]])]
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
            runner.NOISY * 100, ', '.join(size['noisy_rows']) or 'none'
            if args.repeat > 1 else 'one run each, not known'))
    return '\n'.join(lines)


# -- the run -------------------------------------------------------------
def host_facts() -> dict:
    conn = stack(guest_mod.connect)
    try:
        version = [policy.version_str(host_mod.from_libvirt_number(n))
                   for n in (conn.getLibVersion(), conn.getVersion())]
        others = sorted(d.name() for d in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))
    finally:
        conn.close()
    model = platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), model)
    except OSError:
        pass
    qemu_img = runner.run('qemu-img', '--version').split('\n', 1)[0]
    return {
        'libvirt': version[0], 'qemu': version[1],
        'qemu_img': qemu_img.split()[2] if qemu_img else 'unknown',
        'cores': os.cpu_count(), 'cpu': model, 'kernel': platform.release(),
        'ram_gib': round(os.sysconf('SC_PAGE_SIZE') *
                         os.sysconf('SC_PHYS_PAGES') / 1024 ** 3, 1),
        'load_before': os.getloadavg(), 'others': others,
        'memory': bench_memory.state,
    }


def compare(args) -> dict:
    url = stack(glance_stack.endpoint, 'main')
    # NOTE: counted on every connection of the process; what a snapshot
    # made is what the counts grew by during its call.
    calls = LibvirtCalls()
    facts = host_facts()
    sizes = []

    def measure(guest: guest_mod.TestGuest, workdir: str) -> dict:
        # NOTE: every Glance image of the run has this name, so that
        # what a failure leaves is found and deleted.
        name = 'bench-%s' % os.path.basename(workdir)
        try:
            live = Live(args, guest, workdir, data_mb, url, calls, name)
            live.runner.run(live.cases(), live.warm_up)
        finally:
            for image in glance_stack.client(url).images.list(
                    filters={'name': name}):
                glance_stack.delete(url, image['id'])
        return live.figures()

    for data_mb in args.sizes:
        sizes.append(on_guest(data_mb, measure, args.keep,
                              disk_mb=int(data_mb * args.disk_factor)))
        facts['load_after'] = os.getloadavg()
        if len(sizes) < len(args.sizes):
            # NOTE: what is measured is not lost if a later size fails.
            print(report(sizes, facts, args), file=sys.stderr, flush=True)
    print(report(sizes, facts, args), flush=True)
    out = {'host': facts, 'repeat': args.repeat,
           'disk_factor': args.disk_factor, 'cache': args.cache,
           'sizes': sizes}
    runner.write_json(args.json, out)
    if args.charts:
        for path in bench_charts.write(out, args.charts):
            print('chart: %s' % path)
    return out


def _factor(text: str) -> float:
    if float(text) < 1:
        raise argparse.ArgumentTypeError('at least 1')
    return float(text)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--disk-factor', type=_factor, default=2.0,
                        help='virtual size of the disk / its data; the '
                             'rest is a sparse hole (default: %(default)s)')
    parser.add_argument('--cache', choices=('warm', 'cold'), default='warm',
                        help='warm: the page cache is kept (warmed once); '
                             'cold: it is dropped before each case, which '
                             'then reads its data from the disk (default: '
                             '%(default)s)')
    parser.add_argument('--cases', metavar='REGEX',
                        help='run only the cases whose name matches (e.g. '
                             '"backup -> directory") and their baseline, '
                             'the plain convert; the others are left out')
    parser.add_argument('--charts', metavar='DIR',
                        help='also draw PNG charts into DIR (see '
                             'tools/bench_charts.py)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directories (disks, serial '
                             'logs, state) for debugging')


def main(argv: list[str] | None = None) -> int:
    args = runner.options(
        'python -m tools.bench', 'Benchmark live snapshots of a running '
        'guest (backup and mirror copy styles, into a directory and into '
        'Glance; incremental ones) against a raw read, a plain qemu-img '
        'convert, the manual blockcopy procedure and the upload alone.',
        argv, DEFAULT_SIZES, more=_options, others=False)
    return runner.main(lambda: compare(args))


if __name__ == '__main__':
    sys.exit(main())
