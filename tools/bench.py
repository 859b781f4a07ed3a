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

(``--data-mb N`` is ``--sizes N``.) For each size, a counter-writing
test guest (``tests/functional/guest.py``) runs on a qcow2 overlay over
a raw base that together hold that many MiB of random data, on a sparse
disk ``--disk-factor`` times larger. Every variant runs ``--repeat``
times, interleaved, in an order that rotates each round; medians are
printed, the sizes side by side:

* **raw read**: read what the disk chain's files hold (holes skipped):
  the physical limit.
* **plain convert**: ``qemu-img convert -U`` of the running disk, what an
  operator would type (not one point in time: a baseline, not a method).
* **plain convert + fsync + sha256**: the same run, with the fsync and
  sha256 of its output that the directory store does on commit: the
  honest baseline of ours into the directory store.
* **manual procedure**: ``virsh blockcopy --shallow --reuse-external
  --transient-job --finish`` into a delta, then ``qemu-img convert``.
* **ours mirror / backup -> directory**: :func:`snapshot.take_snapshot`,
  live, qcow2, into a directory store, ``[snapshot_libvirt]
  live_copy_style`` ``blockcopy`` (mirror into a delta, then convert) or
  ``backup`` (libvirt's backup API, pull mode).
* **Glance: upload alone, raw / qcow2**: the Glance store uploading an
  existing image equal to the snapshot: the baseline of ours into Glance.
* **ours -> Glance**: ``backup`` raw (streamed, no file on the host),
  ``backup`` qcow2 and ``blockcopy`` qcow2 (both stage their image).
* **ours incremental**: a full ``--incremental`` snapshot into the
  directory store (the start of a chain), then 1% of the disk's data
  written through the running QEMU (so that the dirty bitmap sees it),
  then an incremental snapshot: its time and image bytes against the
  full one's.

For each of ours (:mod:`tools.bench_backup`), a thread samples the bytes
allocated under the snapshot's ``[snapshot] temp_directory`` every 0.1 s
(the directory store's image is elsewhere): the peak staged, apart from
the peak of the backup job's scratch file (the blocks the guest
overwrote during the job, copied before its writes). The guest's
counter, read from its disk, gives its write rate during the job and
over an idle window of about the same length just before. The calls to
libvirt's ``getVersion``, ``getLibVersion`` and
``getDomainCapabilities`` each snapshot makes are counted. The issue's
targets are printed with the figures, marked PASS or FAIL.

``--cache warm`` (the default): the page cache is not dropped; an
unmeasured read and convert warm it and ``os.sync()`` runs before each
variant. ``--cache cold``: after the ``os.sync()``, the page cache is
dropped (``/proc/sys/vm/drop_caches``) before each variant, so that each
reads its data from the disk, as on a compute host whose guest disks
use ``cache=none``. Every image (file or Glance image) and checkpoint
is deleted after its measurement; the guest is destroyed and undefined,
the run's Glance images deleted and the work directory removed at the
end, whatever happens, SIGTERM included (``--keep`` keeps the
directory).
"""

import argparse
from collections.abc import Callable
import os
import shutil
import statistics
import sys
import time
from typing import TypeVar
import uuid

import libvirt

from nova_snapshot_ext.libvirt import domain as lv_domain
from tests.functional import conftest
from tests.functional import guest as guest_mod
from tools import bench_common as common

T = TypeVar('T')

MiB = 1024 * 1024
URI = guest_mod.URI
BUFFER = 8 * MiB

RAW_READ = 'raw read (disk chain files)'
PLAIN = 'plain qemu-img convert -U'
DURABLE = 'plain convert + fsync + sha256'
MANUAL = 'manual blockcopy + convert'
#: Sizes of data (MiB) compared when neither --sizes nor --data-mb is
#: given.
DEFAULT_SIZES = (1024, 4096)
#: A row whose (max - min) / median is above this is called noisy.
NOISY = 0.25
#: Seconds to wait for libvirtd to answer again once it restarted (the
#: functional tests restart it).
RECONNECT = 60.0


class Bench:
    """The measurements on one running guest: the baselines. Subclasses
    add their variants to :meth:`variants`.
    """

    def __init__(self, args: argparse.Namespace, guest: guest_mod.TestGuest,
                 workdir: str, data_mb: int) -> None:
        self.args = args
        self.guest = guest
        self.disks = guest.disks
        self.workdir = workdir
        self.outdir = os.path.join(workdir, 'out')
        os.makedirs(self.outdir, mode=0o755, exist_ok=True)
        self.store = os.path.join(workdir, 'store')
        self.conf = conftest.make_conf(workdir)
        self.data_mb = data_mb
        self.data = data_mb * MiB
        self.samples: dict[str, list[float]] = {}
        self.stages: dict[str, dict[str, list[float]]] = {}

    def record(self, row: str, seconds: float) -> None:
        self.samples.setdefault(row, []).append(seconds)

    def stage(self, variant: str, name: str, seconds: float) -> None:
        self.stages.setdefault(variant, {}).setdefault(name, []).append(
            seconds)

    def check_size(self, what: str, size: int) -> None:
        # NOTE: random data does not compress; a smaller image means a
        # variant copied less than the disk, and its time means nothing.
        if size < self.data:
            raise common.BenchError(
                '%s wrote %d bytes, less than the %d bytes of data' % (
                    what, size, self.data))

    # -- the variants --------------------------------------------------
    def chain(self) -> list[str]:
        return [self.disks.base, self.disks.path]

    def raw_read(self) -> float:
        """Seconds to read what the chain's files hold (holes skipped)."""
        buf = bytearray(BUFFER)
        started = time.monotonic()
        for path in self.chain():
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

    def plain_convert(self) -> None:
        """The plain convert, and (in the same run) the plain convert
        followed by the fsync and sha256 of its output.
        """
        out = os.path.join(self.outdir, 'plain.qcow2')
        try:
            convert = common.timed('qemu-img', 'convert', '-U', '-f', 'qcow2',
                                   '-O', 'qcow2', self.disks.path, out)
            self.check_size('plain convert', os.path.getsize(out))
            # NOTE: what the file store adds to a convert (qemu-img
            # convert does not flush its output by default).
            synced, hashed = common.sync_and_hash(out)
        finally:
            common.remove(out)
        self.record(PLAIN, convert)
        self.record(DURABLE, convert + synced + hashed)
        self.stage(DURABLE, 'qemu-img convert', convert)
        self.stage(DURABLE, 'fsync of the output', synced)
        self.stage(DURABLE, 'sha256 of the output', hashed)

    def manual(self) -> None:
        delta = os.path.join(self.outdir, 'manual-delta.qcow2')
        out = os.path.join(self.outdir, 'manual.qcow2')
        try:
            create = common.timed('qemu-img', 'create', '-q', '-f', 'qcow2',
                                  '-b', self.disks.base, '-F', 'raw', delta,
                                  str(self.disks.size))
            # NOTE: --finish ends the job without a pivot once the mirror
            # is ready: the delta then holds the top layer as of that
            # moment and the guest keeps its own disk.
            copy = common.timed(
                'virsh', '-c', URI, 'blockcopy', self.guest.name, 'vda',
                '--dest', delta, '--format', 'qcow2', '--shallow',
                '--reuse-external', '--wait', '--finish', '--transient-job')
            convert = common.timed('qemu-img', 'convert', '-f', 'qcow2', '-O',
                                   'qcow2', delta, out)
            self.check_size('manual procedure', os.path.getsize(out))
        finally:
            common.remove(delta)
            common.remove(out)
        self.record(MANUAL, copy + convert)
        self.stage(MANUAL, 'qemu-img create (not in the row)', create)
        self.stage(MANUAL, 'virsh blockcopy --finish', copy)
        self.stage(MANUAL, 'qemu-img convert', convert)

    def variants(self) -> list[tuple[str, Callable[[], object]]]:
        return [
            ('raw read', lambda: self.record(RAW_READ, self.raw_read())),
            ('plain convert', self.plain_convert),
            ('manual procedure', self.manual),
        ]

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
            common.run('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O',
                       'qcow2', self.disks.path, out)
        finally:
            common.remove(out)

    def run(self) -> None:
        print('%d MiB: warm-up' % self.data_mb, file=sys.stderr,
              flush=True)
        self.warm_up()
        variants = self.variants()
        for rep in range(self.args.repeat):
            # NOTE: the order rotates from round to round, so that no
            # variant always follows the same one (and its write-back).
            shift = rep % len(variants)
            for name, measure in variants[shift:] + variants[:shift]:
                print('%d MiB, round %d/%d: %s' % (
                    self.data_mb, rep + 1, self.args.repeat, name),
                    file=sys.stderr, flush=True)
                # NOTE: no variant pays for the write-back of another.
                os.sync()
                if self.args.cache == 'cold':
                    common.drop_caches()
                measure()
                if self.domain_call(lambda d: d.state()[0]) != \
                        libvirt.VIR_DOMAIN_RUNNING:
                    raise common.BenchError(
                        'the guest stopped running after %s' % name)

    def domain_call(self, fn: Callable[[libvirt.virDomain], T]) -> T:
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

    def medians(self) -> dict[str, float]:
        return {row: statistics.median(values)
                for row, values in self.samples.items() if values}

    def noisy(self) -> list[str]:
        """The rows whose spread is over :data:`NOISY` of their median."""
        return [row for row, values in self.samples.items()
                if len(values) > 1 and statistics.median(values) and
                (max(values) - min(values)) /
                statistics.median(values) > NOISY]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(',') if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('a comma-separated list of MiB')
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError('sizes of at least 2 MiB')
    return sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m tools.bench',
        description='Benchmark live snapshots of a running guest (backup '
                    'and mirror copy styles, into a directory and into '
                    'Glance; incremental ones) against a raw read, a '
                    'plain qemu-img convert, the manual blockcopy '
                    'procedure and the upload alone.')
    common.add_common_arguments(parser,
                                'on the guest disk (one size: --sizes N)')
    parser.set_defaults(data_mb=None)
    parser.add_argument('--sizes', type=_sizes,
                        help='MiB of random data of each guest disk, '
                             'compared side by side (default: %s)' %
                             ','.join(map(str, DEFAULT_SIZES)))
    parser.add_argument('--disk-factor', type=float, default=2.0,
                        help='virtual size of the disk / its data; the '
                             'rest is a sparse hole (default: '
                             '%(default)s)')
    parser.add_argument('--cache', choices=('warm', 'cold'),
                        default='warm',
                        help='warm: the page cache is kept (warmed once); '
                             'cold: it is dropped before each variant, '
                             'which then reads its data from the disk '
                             '(default: %(default)s)')
    parser.add_argument('--keep', action='store_true',
                        help='keep the work directories (disks, serial '
                             'logs, state) for debugging')
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [args.data_mb] if args.data_mb else list(DEFAULT_SIZES)
    if min(args.sizes) < 2 or args.repeat < 1 or args.disk_factor < 1:
        parser.error('sizes are at least 2 MiB, --repeat and '
                     '--disk-factor at least 1')
    return args


def close(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass


def reconnect() -> libvirt.virConnect:
    """A new connection to libvirtd, waiting up to :data:`RECONNECT`
    seconds for it to answer.
    """
    deadline = time.monotonic() + RECONNECT
    while True:
        try:
            return common.connect()
        except common.BenchError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def remove_guest(guest: guest_mod.TestGuest) -> None:
    """Destroy and undefine ``guest`` through a new connection.

    NOTE: the guest's own connection may be gone (the functional tests
    restart libvirtd), and ``TestGuest.remove`` takes a failed lookup
    for a guest already gone: on a dead connection it would leave the
    guest running.
    """
    previous, guest.conn = guest.conn, reconnect()
    try:
        guest.remove()
    finally:
        close(guest.conn)
        guest.conn = previous


def on_guest(args: argparse.Namespace, data_mb: int,
             measure: Callable[[guest_mod.TestGuest, str], object]
             ) -> object:
    """``measure(guest, workdir)`` on a fresh running test guest with
    ``data_mb`` MiB of data, on a disk ``--disk-factor`` times larger;
    the guest destroyed and undefined and its work directory removed
    afterwards, whatever happens.
    """
    conn = common.connect()
    tag = 'bench-%s' % uuid.uuid4().hex[:8]
    workdir = os.path.join(guest_mod.work_root(), tag)
    guest = None
    try:
        print('preparing %d MiB of data and booting %s%s' % (
            data_mb, guest_mod.PREFIX, tag), file=sys.stderr, flush=True)
        guest = guest_mod.TestGuest(
            conn, workdir, tag, fmt='qcow2', data_mb=data_mb,
            disk_mb=int(data_mb * args.disk_factor))
        guest.start()
        return measure(guest, workdir)
    finally:
        try:
            if guest is not None:
                remove_guest(guest)
        finally:
            close(conn)
            if guest is not None and guest.conn is not conn:
                close(guest.conn)
            if args.keep:
                print('kept %s' % workdir, file=sys.stderr)
            else:
                shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    # NOTE: imported here: tools.bench_backup builds on this module.
    from tools import bench_backup

    args = parse_args(argv)
    return common.run_main(lambda: bench_backup.compare(args))


if __name__ == '__main__':
    sys.exit(main())
