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

"""Files that only their owner reads: guest data is nobody else's.

Images, metadata and temporary files are ``0600``, their directories
``0700``. Two kinds of directory are given to one group, never to every
user:

* a directory QEMU (which runs as another user) must reach a file in by
  name: ``0710``, its group QEMU's (:func:`qemu_dir`);
* the images of the directory store, when the operator names a group
  (``[snapshot_file_store] file_group``): files ``0640``, directories
  ``0750``, that group's (:func:`restrict` with ``gid``).

Modes are set with ``chmod`` after each file or directory is made, so the
process umask neither loosens nor tightens them. A file made empty by
:func:`create` keeps its mode when a writer (``qemu-img convert`` or
``create``, ``open(..., 'wb')``) writes it afterwards.

A host's state is shared by processes of different users: the command
line as root, nova-compute as ``nova``. A directory made by
:func:`makedirs`, or a lock file made by :func:`lock_file`, while running
as root inside a directory another user owns is given to that user (and
its group), so that root never locks that user out of a directory the two
share; :func:`check_writable` tells the operator, in one line, when this
process cannot write such a directory.
"""

import grp
import os
import pwd
import stat
from typing import IO

from oslo_log import log as logging

from nova_snapshot_ext import exception

LOG = logging.getLogger(__name__)

FILE = 0o600
DIR = 0o700
GROUP_FILE = 0o640
GROUP_DIR = 0o750
#: A directory QEMU reaches through its group.
QEMU_DIR = 0o710
#: A directory QEMU reaches when its group cannot be given it: every user
#: may traverse it, none may list it.
QEMU_DIR_ANYONE = 0o711

#: QEMU's (uid, gid), as its DAC label says.
Owner = tuple[int, int]


def mode_of(path: str, gid: int | None = None) -> int:
    """The mode :func:`restrict` gives ``path``."""
    is_dir = stat.S_ISDIR(os.lstat(path).st_mode)
    if gid is None:
        return DIR if is_dir else FILE
    return GROUP_DIR if is_dir else GROUP_FILE


def restrict(path: str, gid: int | None = None) -> None:
    """Make ``path`` (a file or a directory, not followed if a link)
    readable by its owner only or, with ``gid``, by that group too.

    :raises OSError: e.g. this user may not give files to group ``gid``.
    """
    if gid is not None and os.lstat(path).st_gid != gid:
        os.chown(path, -1, gid, follow_symlinks=False)
    os.chmod(path, mode_of(path, gid))


def create(path: str) -> None:
    """Make the empty file ``path``, private; it must not exist."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                 FILE)
    try:
        os.fchmod(fd, FILE)
    finally:
        os.close(fd)


def open_new(path: str, mode: str = 'w') -> IO:
    """``open(path, mode)`` for writing (``w`` or ``wb``), the file made
    private if it is new, truncated if not.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 FILE)
    try:
        os.fchmod(fd, FILE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def mkdir(path: str, gid: int | None = None) -> None:
    """Make directory ``path`` with the mode of :func:`restrict`."""
    os.mkdir(path, DIR)
    restrict(path, gid)


def makedirs(path: str, gid: int | None = None) -> None:
    """Make directory ``path`` and its missing parents; ``path`` itself,
    when made now, gets the mode of :func:`restrict` (an existing one
    keeps its mode: the operator may have chosen it). Each directory made
    now is given the owner of the one it is in (see :func:`inherited`).
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        makedirs_shared(parent)
    if _mkdir_inherited(path, DIR):
        restrict(path, gid)


def makedirs_shared(path: str) -> None:
    """Make directory ``path`` and its missing parents with the process
    umask's modes (as :func:`os.makedirs`), each given the owner of the
    directory it is in (see :func:`inherited`).
    """
    parent = os.path.dirname(path)
    if parent != path and not os.path.isdir(parent):
        makedirs_shared(parent)
    _mkdir_inherited(path)


def _mkdir_inherited(path: str, mode: int = 0o777) -> bool:
    """Make directory ``path``, given the owner of :func:`inherited`;
    False when it was there already.
    """
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    give_inherited(path)
    return True


def inherited(path: str) -> Owner | None:
    """The owner (uid, gid) to give ``path``, just made: that of the
    directory it is in when this process runs as root and that directory
    is another user's (root's command line making ``locks/`` in the state
    directory of nova-compute's user); None to keep this process's.
    """
    if os.geteuid() != 0:
        return None
    st = os.stat(os.path.dirname(os.path.abspath(path)))
    if st.st_uid == 0:
        return None
    return st.st_uid, st.st_gid


def give_inherited(path: str) -> None:
    """Give ``path`` (not followed if a link) the owner of
    :func:`inherited`, if any.
    """
    owner = inherited(path)
    if owner is not None:
        os.chown(path, owner[0], owner[1], follow_symlinks=False)


def lock_file(path: str) -> None:
    """Make sure the lock file ``path`` exists before a lock
    (``fcntl``, through oslo.concurrency) opens it for writing: made
    private if new; made, or found, by root in another user's directory,
    it is that user's (see :func:`inherited`), so that the user can open
    it too. A link is refused.

    :raises OSError: e.g. ``path`` is a link (``ELOOP``).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW |
                 os.O_NONBLOCK | os.O_CLOEXEC, FILE)
    try:
        st = os.fstat(fd)
        owner = inherited(path)
        if (owner is not None and stat.S_ISREG(st.st_mode) and
                (st.st_uid, st.st_gid) != owner):
            os.fchown(fd, owner[0], owner[1])
    finally:
        os.close(fd)


def check_writable(path: str, option: str, file: bool = False) -> None:
    """Check that this process may make and remove files in directory
    ``path`` (with ``file``: may write to file ``path``), which is, or
    is in, the directory of ``option`` (e.g. ``[snapshot] lock_path``).

    :raises InvalidInput: it may not: one line with the path, its owner
        and mode, and what to do.
    """
    if file:
        if os.access(path, os.W_OK, effective_ids=True):
            return
    elif os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK,
                                           effective_ids=True):
        return
    me = user_name(os.geteuid())
    try:
        st = os.stat(path)
        what = 'is owned by %s:%s, mode %04o' % (
            user_name(st.st_uid), _group_name(st.st_gid),
            stat.S_IMODE(st.st_mode))
    except OSError as e:
        what = 'cannot be looked at (%s)' % (e.strerror or e)
    raise exception.InvalidInput(
        reason='%s: %s %s, and user %s cannot write to it: chown it to %s '
               '(chown -R %s: %s) or set %s to a directory of %s' % (
                   option, path, what, me, me, me, path, option, me))


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def qemu_dir(path: str, qemu: Owner | None) -> None:
    """Make directory ``path`` for files QEMU opens by name: ``0710``
    with QEMU's group, or ``0711`` when this user may not give it to that
    group (or QEMU's user is not known).
    """
    os.mkdir(path, DIR)
    if qemu is not None:
        try:
            os.chown(path, -1, qemu[1])
            os.chmod(path, QEMU_DIR)
            return
        except PermissionError:
            # NOTE: only root, or a member of QEMU's group, may give a
            # directory to it; without it QEMU can only pass through as
            # "other". Nothing in the directory is listable either way.
            LOG.info('Cannot give %(path)s to QEMU\'s group %(gid)d; '
                     'it is traversable (not listable) by every user',
                     {'path': path, 'gid': qemu[1]})
    os.chmod(path, QEMU_DIR_ANYONE)


def qemu_traverses(path: str, qemu: Owner | None) -> bool:
    """Whether QEMU (its user or its group; any user when unknown) may
    pass through directory ``path``.
    """
    st = os.stat(path)
    if st.st_mode & stat.S_IXOTH:
        return True
    if qemu is None:
        return False
    uid, gid = qemu
    if uid == 0 or (st.st_uid == uid and st.st_mode & stat.S_IXUSR):
        return True
    return st.st_uid != uid and st.st_gid == gid and bool(
        st.st_mode & stat.S_IXGRP)


def group_id(group: str | None, option: str) -> int | None:
    """The gid of ``group`` (a name or a number); None when unset.

    :param option: the option that names it, for the error.
    :raises InvalidInput: no such group.
    """
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    try:
        return grp.getgrgid(int(group)).gr_gid
    except (KeyError, ValueError):
        raise exception.InvalidInput(
            reason='%s = %s: there is no such group on this host' % (
                option, group))
