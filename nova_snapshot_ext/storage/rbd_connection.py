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

"""The connection half of :class:`~nova_snapshot_ext.storage.rbd.
RBDDriver`: one Ceph cluster connection, opened on first use and kept
until closed; pools and images opened per operation in context managers;
Ceph errors turned into :mod:`nova_snapshot_ext.exception`'s; bounded
retries of calls that find an image busy.

The bindings are Ceph's own (Debian: python3-rados, python3-rbd); they are
not on PyPI, so a missing module is an error at connect time, not at
import time.
"""

from collections.abc import Callable, Iterator
import contextlib
import os
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext import retry


class _Missing:
    """Stands in for a missing binding module: the driver reports it when
    it connects, and its exception classes, named in ``except`` clauses on
    the way out, match nothing.
    """

    class Error(Exception):
        pass

    def __getattr__(self, name: str) -> type:
        return self.Error


try:
    import rados
    import rbd
except ImportError:  # pragma: no cover - depends on the host
    rados = rbd = _Missing()

LOG = logging.getLogger(__name__)


def one_line(e: BaseException) -> str:
    """One line of a Ceph error."""
    return ' '.join(str(e).split()) or type(e).__name__


class Connection:
    """The Ceph cluster of ``[snapshot_rbd]``: its connection."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        # NOTE: no lock: under Nova in eventlet mode the driver's calls run
        # in native threads (tpool) while eventlet makes threading's locks
        # green, and a green lock waited for in a native thread is never
        # woken. dict.setdefault and dict.pop are atomic instead.
        self._handles: dict[str, Any] = {}

    def __str__(self) -> str:
        return 'Ceph (%s)' % self.conf.snapshot_rbd.ceph_conf

    # -- connection ----------------------------------------------------
    def cluster(self) -> Any:
        """The connected ``rados.Rados``, connecting on first use.

        :raises CephUnavailable: the bindings are missing, or the cluster
            cannot be reached with the configured conf, user and keyring.
        """
        cluster = self._handles.get('cluster')
        if cluster is None:
            new = self._connect()
            cluster = self._handles.setdefault('cluster', new)
            if cluster is not new:
                # NOTE: another thread connected meanwhile; use its.
                new.shutdown()
        return cluster

    def _connect(self) -> Any:
        group = self.conf.snapshot_rbd
        failed = dict(user=group.user, conf=group.ceph_conf)
        if isinstance(rados, _Missing):
            raise exception.CephUnavailable(
                reason='the rados and rbd Python modules are not installed '
                       '(Debian and Ubuntu: python3-rados, python3-rbd)',
                **failed)
        if not os.path.isfile(group.ceph_conf):
            raise exception.CephUnavailable(reason='%s does not exist' %
                                                   group.ceph_conf, **failed)
        try:
            # NOTE: connect() ignores its timeout argument; librados
            # waits for the monitors for client_mount_timeout (300 s by
            # default).
            client = rados.Rados(
                conffile=group.ceph_conf, rados_id=group.user,
                conf={'client_mount_timeout': str(group.connect_timeout)})
        except rados.Error as e:
            raise exception.CephUnavailable(reason=one_line(e), **failed)
        try:
            client.connect()
        except (rados.Error, OSError) as e:
            client.shutdown()
            if isinstance(e, rados.TimedOut):
                reason = 'no monitor answered within %d s' % (
                    group.connect_timeout)
            else:
                reason = one_line(e)
            raise exception.CephUnavailable(reason=reason, **failed)
        return client

    @property
    def connected(self) -> bool:
        """Whether the driver holds a cluster connection."""
        return 'cluster' in self._handles

    def close(self) -> None:
        cluster = self._handles.pop('cluster', None)
        if cluster is not None:
            cluster.shutdown()

    def fsid(self) -> str:
        with self._errors('read the fsid of', 'the cluster'):
            fsid = self.cluster().get_fsid()
        return fsid.decode() if isinstance(fsid, bytes) else fsid

    # -- handles -------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, action: str, target: str) -> Iterator[None]:
        try:
            yield
        except exception.SnapshotError:
            raise
        except (rbd.PermissionError, rados.PermissionError) as e:
            raise exception.RbdForbidden(action=action, target=target,
                                         reason=one_line(e))
        except (rbd.Error, rados.Error) as e:
            raise exception.RbdFailed(action=action, target=target,
                                      reason=one_line(e))

    @contextlib.contextmanager
    def ioctx(self, pool: str) -> Iterator[Any]:
        cluster = self.cluster()
        with self._errors('open the pool', pool):
            try:
                ctx = cluster.open_ioctx(pool)
            except rados.ObjectNotFound:
                raise exception.RbdFailed(action='open the pool',
                                          target=pool,
                                          reason='it does not exist')
        try:
            yield ctx
        finally:
            ctx.close()

    @contextlib.contextmanager
    def image(self, pool: str, name: str, snapshot: str | None = None,
              read_only: bool = False) -> Iterator[Any]:
        """An open ``rbd.Image``; ``rbd.ImageNotFound`` passes through."""
        with self.ioctx(pool) as ctx:
            img = self._busy(rbd.Image, ctx, name, snapshot=snapshot,
                             read_only=read_only)
            try:
                yield img
            finally:
                img.close()

    def _busy(self, fn: Callable[..., Any], *args: Any,
              **kwargs: Any) -> Any:
        """Call ``fn``, retrying while it fails with ImageBusy."""
        group = self.conf.snapshot_rbd
        return retry.call(fn, *args, on=rbd.ImageBusy,
                          attempts=group.busy_retries + 1, interval=0.1,
                          max_interval=group.busy_retry_interval, **kwargs)

    # -- queries -------------------------------------------------------
