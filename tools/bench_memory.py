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

"""Memory that a benchmark's machine gives back to its host, held for
the run.

A virtual machine whose balloon driver reports free pages to its host
(``/sys/module/page_reporting``) loses each page it frees soon after;
the next process to touch that page waits for the host to give it back.
On the machines this project is built on that costs about 2.4 s of
system time per GiB, in ``write()`` for the writer of a new file, which
is every case of a snapshot benchmark. Which case gets such pages is
chance: the same snapshot of 1 GiB took 1.6 s or 3.5 s, and a
``qemu-img convert`` 0.4 s or 1.4 s. A compute host on bare metal has
no such cost.

So, as root where the parameters are there, a benchmark holds the
reporting off for its run (pages freed are kept five minutes, however
many), touches the free memory once, and restores the parameters when
it ends (also on SIGTERM). What it did is in :data:`state`, for the
report. Only the standard library.
"""

from collections.abc import Iterator
import contextlib
import mmap
import os
import sys
import time

PARAMETERS = '/sys/module/page_reporting/parameters'
#: What is held: freed pages wait this long (ms, the most the parameter
#: takes here) before they are reported, and no amount of them makes
#: them go sooner.
HOLD = {'min_free_ms': 300 * 1000, 'max_waiting_mib': 1 << 20}
#: Memory left untouched, of what is available.
SPARE = 2 << 30
#: Bytes touched at a time.
PIECE = 64 << 20

#: What the running benchmark did, in a sentence (see :func:`held`).
state = 'free page reporting: not looked at'


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: object) -> None:
    with open(path, 'w') as f:
        f.write('%s\n' % value)


def _restore(parameters: str, saved: dict[str, str]) -> None:
    """Write back the ``saved`` values of ``parameters``."""
    for name, value in saved.items():
        with contextlib.suppress(OSError):
            _write(os.path.join(parameters, name), value)


def available() -> int:
    """Bytes of memory available (``MemAvailable``), 0 if not known."""
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def touch(size: int) -> float:
    """Write to ``size`` bytes of new memory, then free it; the seconds
    it took.
    """
    started = time.monotonic()
    size -= size % PIECE
    if size <= 0:
        return 0.0
    piece = b'\1' * PIECE
    with mmap.mmap(-1, size) as m:
        for _ in range(size // PIECE):
            m.write(piece)
    return time.monotonic() - started


@contextlib.contextmanager
def held(parameters: str = PARAMETERS,
         spare: int = SPARE) -> Iterator[str]:
    """Free page reporting held off and the free memory touched once,
    for the ``with`` block; yields (and sets :data:`state` to) what was
    done, in a sentence. Nothing is done where ``parameters`` is not a
    directory, or cannot be written.
    """
    global state
    names = [n for n in HOLD if os.path.exists(os.path.join(parameters, n))]
    if not names:
        state = 'free page reporting: none here'
        yield state
        return
    saved = {}
    try:
        for name in names:
            path = os.path.join(parameters, name)
            saved[name] = _read(path)
            _write(path, HOLD[name])
    except OSError as e:
        _restore(parameters, saved)
        state = ('free page reporting: on, not held (%s); figures may '
                 'vary with it' % (e.strerror or e))
        yield state
        return
    try:
        size = max(0, available() - spare)
        sys.stderr.write('bench: holding freed memory, touching %.1f GiB '
                         'once\n' % (size / 1024 ** 3))
        sys.stderr.flush()
        seconds = touch(size)
        state = ('free page reporting: held off for the run, %.1f GiB '
                 'touched first in %.1f s' % (size / 1024 ** 3, seconds))
        yield state
    finally:
        _restore(parameters, saved)
