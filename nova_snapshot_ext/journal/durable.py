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

"""Files written whole or not at all, and the processes that write them.

A file is written to a temporary file next to it, named after its
writer (``.<pid>-<start>-<random>.tmp``), then renamed over it, so that
a reader never sees half of it and recovery can tell the leftover of a
dead writer from the file a live one is writing.
"""

from concurrent import futures
import contextlib
import hashlib
import json
import os
import socket
import tempfile
from typing import IO, Any


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot), which
    tells a live owner from another process that got its pid; None when
    there is no such process.
    """
    try:
        with open('/proc/%d/stat' % pid) as f:
            return int(f.read().rsplit(')', 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def boot_id() -> str | None:
    """This boot of the host: pids and start times repeat across boots."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except OSError:
        return None


def owner(pid: int | None = None) -> dict[str, Any]:
    """This process (or ``pid``) as an owner: see :func:`owner_alive`."""
    pid = os.getpid() if pid is None else pid
    return {'pid': pid, 'start': process_start(pid),
            'host': socket.gethostname(), 'boot': boot_id()}


def owner_here(owner: dict[str, Any]) -> bool:
    """Whether ``owner`` is (or was) a process of this host. Of another
    host's (a directory shared between hosts) nothing can be told here.
    """
    return owner.get('host') == socket.gethostname()


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process ``owner`` (``host``, ``boot``, ``pid``,
    ``start``) still runs; False for another host's (see
    :func:`owner_here`).
    """
    if not owner_here(owner):
        return False
    if owner.get('boot') and owner['boot'] != boot_id():
        return False
    try:
        pid = int(owner['pid'])
    except (KeyError, TypeError, ValueError):
        return False
    start = process_start(pid)
    return start is not None and start == owner.get('start')


#: The suffix of a temporary file (see the module).
TMP_SUFFIX = '.tmp'


def _tmp_prefix() -> str:
    pid = os.getpid()
    return '.%d-%s-' % (pid, process_start(pid))


def stale_tmp(name: str) -> bool | None:
    """Whether ``name`` is a temporary file (see the module) whose
    writer no longer runs; None when its name does not say who wrote it.
    """
    if not (name.startswith('.') and name.endswith(TMP_SUFFIX)):
        return False
    pid, _, rest = name[1:].partition('-')
    start, _, _ = rest.partition('-')
    try:
        owner = {'pid': int(pid), 'start': int(start),
                 'host': socket.gethostname()}
    except ValueError:
        return None
    return not owner_alive(owner)


def write_json(path: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` whole or not at all, durably. A file
    that root rewrites keeps its owner (nova-compute's journal, which
    root's ``recover`` marks).
    """
    directory = os.path.dirname(path)
    keep = _owner_to_keep(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(), suffix=TMP_SUFFIX,
                               dir=directory)
    try:
        with os.fdopen(fd, 'w') as f:
            if keep is not None:
                os.fchown(f.fileno(), keep[0], keep[1])
            json.dump(doc, f, sort_keys=True)
            f.write('\n')
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def _owner_to_keep(path: str) -> tuple[int, int] | None:
    """The (uid, gid) of file ``path`` when root is about to replace it
    and it is another user's; None otherwise.
    """
    if os.geteuid() != 0:
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if st.st_uid == 0:
        return None
    return st.st_uid, st.st_gid


def sha256_of(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def sync_and_hash(path: str) -> str:
    """fsync ``path`` and return its sha256, side by side: hashing is
    CPU-bound and reads the file from the page cache, the fsync waits for
    the disk.
    """
    with futures.ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(sha256_of, path)
        with open(path, 'rb+') as f:
            os.fsync(f.fileno())
        return digest.result()


def fsync_file(path: str) -> None:
    """Make the content of the file ``path`` durable."""
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def fsync_dir(path: str) -> None:
    """Make a rename or an unlink in directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WriteBehind:
    """Writes to the binary file ``f`` that reach the disk while writing
    goes on: each time ``every`` more bytes were written, a thread
    ``fdatasync``\\ s the file, so that the ``fsync`` which makes it
    durable at the end waits for the last part only, not the whole file.
    A writer that is faster than the disk waits for the previous flush
    before it starts the next, so no more than about ``2 * every`` bytes
    are ever waiting in the page cache. Close it (even after a failure)
    to wait for the thread.
    """

    EVERY = 64 << 20

    def __init__(self, f: IO, every: int = EVERY) -> None:
        self.f = f
        self.every = every
        self._unflushed = 0
        self._pool = futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix='write-behind')
        self._flushing: futures.Future | None = None

    def write(self, data: bytes | memoryview) -> None:
        self.f.write(data)
        self._unflushed += len(data)
        if self._unflushed >= self.every:
            self._wait()
            self.f.flush()
            self._flushing = self._pool.submit(os.fdatasync, self.f.fileno())
            self._unflushed = 0

    def _wait(self) -> None:
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            flushing.result()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True)
