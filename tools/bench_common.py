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

"""What the benchmarks share: commands, errors, host facts, the page
cache dropped, libvirt's version calls counted, output, and how a
benchmark ends (one line and a status, cleanups run on SIGTERM).
"""

import argparse
from collections.abc import Callable, Sequence
import functools
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time

import libvirt

from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext import policy
from tests.functional import guest as guest_mod


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


class LibvirtCalls:
    """Counts the calls to :data:`METHODS` of ``libvirt.virConnect``, on
    every connection of the process, from :meth:`install` on.
    """

    #: What a libvirt daemon tells of itself: versions and capabilities.
    METHODS = ('getVersion', 'getLibVersion', 'getDomainCapabilities')

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.METHODS, 0)
        self._lock = threading.Lock()

    def install(self) -> 'LibvirtCalls':
        """Wrap the methods on the class (once per process)."""
        for name in self.METHODS:
            original = getattr(libvirt.virConnect, name)
            if getattr(original, 'bench_counted', False):
                raise BenchError('libvirt calls are counted already')
            setattr(libvirt.virConnect, name, self._counted(name, original))
        return self

    def _counted(self, name: str, original: Callable) -> Callable:
        @functools.wraps(original)
        def counted(conn: libvirt.virConnect, *args, **kwargs):
            with self._lock:
                self.counts[name] += 1
            return original(conn, *args, **kwargs)

        counted.bench_counted = True
        return counted

    def total(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    @staticmethod
    def since(before: dict[str, int], after: dict[str, int]
              ) -> dict[str, int]:
        return {name: after[name] - before[name] for name in after}


def sync_and_hash(path: str) -> tuple[float, float]:
    """Seconds to fsync ``path`` and to sha256 it, as the file store
    does when it commits an image.
    """
    started = time.monotonic()
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


def connect() -> libvirt.virConnect:
    try:
        return guest_mod.connect()
    except guest_mod.StackMissing as e:
        raise BenchError(str(e))
