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

"""The orchestrator: one snapshot, from request to stored image.

It resolves the request against the host (guest, root disk, backend,
store), takes the per-guest lock and calls the backend's ``snapshot()``
hook. The command line and the Nova driver both come through here.
"""

import os
import unicodedata

from oslo_concurrency import lockutils
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.model import no_progress
from nova_snapshot_ext.model import Progress
from nova_snapshot_ext.model import SnapshotJob
from nova_snapshot_ext.model import SnapshotRequest
from nova_snapshot_ext.model import SnapshotResult
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

__all__ = ['SnapshotRequest', 'SnapshotResult', 'take_snapshot',
           'validate_name']

MAX_NAME = 255


def validate_name(name: str) -> str:
    """Check an image name: 1 to 255 printable characters.

    :raises InvalidName: with the reason.
    """
    if not name or not name.strip():
        raise exception.InvalidName(name=name, reason='it is empty')
    if len(name) > MAX_NAME:
        raise exception.InvalidName(
            name=name[:20] + '...',
            reason='it has %d characters, at most %d are allowed' % (
                len(name), MAX_NAME))
    for ch in name:
        if unicodedata.category(ch).startswith('C'):
            raise exception.InvalidName(
                name=name, reason='it contains the control character %r' %
                                  ch)
    return name


def _resolve(conf: cfg.ConfigOpts, request: SnapshotRequest) -> dict:
    method = policy.check_method(request.method or conf.snapshot.method)
    quiesce = request.quiesce or conf.snapshot.quiesce
    if quiesce not in ('never', 'auto', 'required'):
        raise exception.InvalidInput(
            reason='quiesce %r is not one of never, auto, required' %
                   quiesce)
    fmt = request.image_format or conf.snapshot.image_format
    if fmt is not None and fmt not in qemu_img.FORMATS:
        raise exception.InvalidFormat(format=fmt,
                                      choices=', '.join(qemu_img.FORMATS))
    return {'method': method, 'quiesce': quiesce, 'image_format': fmt}


def take_snapshot(request: SnapshotRequest,
                  conf: cfg.ConfigOpts | None = None,
                  host: host_mod.Host | None = None,
                  progress: Progress = no_progress,
                  store: store_base.ImageStore | None = None,
                  backends: backend_base.Backends | None = None
                  ) -> SnapshotResult:
    """Take one snapshot.

    Input is checked and the store is tried before the guest is touched.
    Only one snapshot of a guest runs at a time, across processes.

    :param store: a store to use instead of the one ``request.store``
        names (e.g. a Glance store with the caller's session).
    :param backends: the loaded backends to use (a service keeps them and
        their connections); by default they are loaded for this snapshot
        and closed after it.

    :raises SnapshotError: with a message for the operator; the guest is
        as it was and nothing is left in the store or on disk.
    """
    conf = conf or nse_conf.CONF
    validate_name(request.name)
    options = _resolve(conf, request)
    store = store or store_base.load(conf, request.store)
    store.check()
    own_host = host is None
    host = host or host_mod.Host(conf.snapshot_libvirt.connection_uri)
    own_backends = backends is None
    backends = backends or backend_base.Backends(conf)
    try:
        guest = host.get_guest(request.guest)
        disk = guest.root_disk()
        backend = (backends.get(request.backend) if request.backend
                   else backends.for_disk(disk))
        job = SnapshotJob(
            conf=conf, request=request, host=host, guest=guest, disk=disk,
            store=store, method=options['method'],
            image_format=options['image_format'] or _default_format(disk),
            quiesce=options['quiesce'], progress=progress)
        lock_path = (conf.oslo_concurrency.lock_path or
                     os.path.join(conf.state_path, 'locks'))
        os.makedirs(lock_path, mode=0o700, exist_ok=True)
        try:
            with lockutils.lock('snapshot-%s' % guest.uuid, external=True,
                                lock_path=lock_path, blocking=False):
                return backend.snapshot(job)
        except lockutils.AcquireLockFailedException:
            raise exception.SnapshotInProgress(guest=guest.name)
    finally:
        if own_backends:
            backends.close()
        if own_host:
            host.close()


def _default_format(disk) -> str:
    return disk.format if disk.format in qemu_img.FORMATS else 'raw'
