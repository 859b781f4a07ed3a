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

import contextlib
import unicodedata

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.backends import all_disks
from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext.backends import incremental
from nova_snapshot_ext import catalog
from nova_snapshot_ext.cleanup import recovery
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import cancel as cancel_mod
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext import metrics
from nova_snapshot_ext.model import no_progress
from nova_snapshot_ext.model import Progress
from nova_snapshot_ext.model import SnapshotJob
from nova_snapshot_ext.model import SnapshotRequest
from nova_snapshot_ext.model import SnapshotResult
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext import verify

LOG = logging.getLogger(__name__)

__all__ = ['SnapshotRequest', 'SnapshotResult', 'take_snapshot',
           'validate_name', 'validate_properties']

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
    if request.incremental and (request.all_disks or request.image_id):
        raise exception.InvalidInput(
            reason='an incremental snapshot is of the root disk, into a '
                   'new image of the directory store')
    if request.keep and not request.incremental:
        raise exception.InvalidInput(
            reason='keep applies to incremental snapshots')
    if request.keep < 0:
        raise exception.InvalidInput(
            reason='keep is a number of images, at least 1')
    if request.memory and (request.incremental or request.image_id):
        raise exception.InvalidInput(
            reason='a snapshot with memory is of every disk, into new '
                   'images of the directory store; it is not incremental')
    if request.all_disks and request.image_id:
        raise exception.InvalidInput(
            reason='an existing image record holds one disk; it cannot be '
                   'filled with all disks')
    fmt = request.image_format or conf.snapshot.image_format
    # NOTE: vmdk and vdi come from Nova's snapshot_image_format only; the
    # command line and [snapshot] image_format offer qcow2 and raw.
    if fmt is not None and fmt not in qemu_img.WRITE_FORMATS:
        raise exception.InvalidFormat(
            format=fmt, choices=', '.join(qemu_img.WRITE_FORMATS))
    return {'method': method, 'quiesce': quiesce, 'image_format': fmt}


def take_snapshot(request: SnapshotRequest,
                  conf: cfg.ConfigOpts | None = None,
                  host: host_mod.Host | None = None,
                  progress: Progress = no_progress,
                  store: store_base.ImageStore | None = None,
                  backends: backend_base.Backends | None = None,
                  cancel: cancel_mod.Cancel | None = None,
                  host_slots: bool = False) -> SnapshotResult:
    """Take one snapshot.

    Input is checked and the store is tried before the guest is touched.
    Only one snapshot of a guest runs at a time, across processes (see
    :mod:`nova_snapshot_ext.journal.locks`). Under the guest's lock, what an
    earlier, killed snapshot of the guest left is put right first
    (:func:`nova_snapshot_ext.cleanup.recovery.recover_guest`), and every step
    that leaves something outside the process is journaled
    (:mod:`nova_snapshot_ext.journal.journal`).

    :param store: a store to use instead of the one ``request.store``
        names (e.g. a Glance store with the caller's session).
    :param backends: the loaded backends to use (a service keeps them and
        their connections); by default they are loaded for this snapshot
        and closed after it.
    :param cancel: how the caller stops the snapshot part-way (a signal,
        its own deadline); by default one with ``[snapshot] timeout``.
    :param host_slots: wait for one of ``[snapshot] max_concurrent``
        host-wide slots first (the command line; Nova has its own limit).

    :raises SnapshotError: with a message for the operator; the guest is
        as it was and nothing is left in the store or on disk.
    """
    conf = conf or nse_conf.CONF
    spec = str(store.spec if store is not None else
               request.store or conf.snapshot.default_store)
    try:
        result = _snapshot(request, conf, host, progress, store, backends,
                           cancel, host_slots)
    except BaseException as e:
        metrics.record(conf, spec, error=e)
        raise
    metrics.record(conf, spec, result=result)
    return result


def _snapshot(request: SnapshotRequest, conf: cfg.ConfigOpts,
              host: host_mod.Host | None, progress: Progress,
              store: store_base.ImageStore | None,
              backends: backend_base.Backends | None,
              cancel: cancel_mod.Cancel | None,
              host_slots: bool) -> SnapshotResult:
    cancel = cancel or cancel_mod.Cancel(conf.snapshot.timeout)
    # NOTE: the guest as asked for, until its domain is looked up.
    cancel.guest = cancel.guest or request.guest
    validate_name(request.name)
    validate_properties(request.metadata)
    options = _resolve(conf, request)
    store = _checked_store(request, store or store_base.load(
        conf, request.store))

    def checked_progress(stage: str, fraction: float) -> None:
        cancel.check()
        progress(stage, fraction)

    with contextlib.ExitStack() as owned:
        # NOTE: what is made here is closed here; a caller's is its own.
        host = host or owned.enter_context(contextlib.closing(
            host_mod.Host(conf.snapshot_libvirt.connection_uri)))
        backends = backends or owned.enter_context(contextlib.closing(
            backend_base.Backends(conf)))
        with contextlib.ExitStack() as slot:
            if host_slots:
                slot.enter_context(locks.host_slot(conf, cancel.check))
            result = _take(conf, request, options, host, store,
                           backends, cancel, checked_progress)
        if conf.snapshot.verify:
            verify.after_snapshot(conf, store, result)
        return result


def _checked_store(request: SnapshotRequest,
                   store: store_base.ImageStore) -> store_base.ImageStore:
    if request.memory and not store.KEEPS_MEMORY:
        raise exception.InvalidInput(
            reason='store %s keeps no memory: a snapshot with memory goes '
                   'to the directory store' % store)
    store.check()
    return store


def _take(conf: cfg.ConfigOpts, request: SnapshotRequest, options: dict,
          host: host_mod.Host, store: store_base.ImageStore,
          backends: backend_base.Backends, cancel: cancel_mod.Cancel,
          progress: Progress) -> SnapshotResult:
    """The snapshot, once input and store are checked."""
    guest = host.get_guest(request.guest)
    cancel.guest = guest.name
    disk = guest.root_disk(request.root_any_device)
    group = request.all_disks or request.memory
    disks = guest.disks() if group else [disk]
    refusals.check_state(guest.name, guest.power_state())
    for other in disks:
        refusals.check_disk(guest.name, other, host.uri,
                            writers=refusals.writers_of(host, guest.uuid))
    backend = (backends.get(request.backend) if request.backend
               else backends.for_disk(disk))
    job = SnapshotJob(
        conf=conf, request=request, host=host, guest=guest, disk=disk,
        store=store, method=options['method'],
        image_format=options['image_format'] or _default_format(disk),
        quiesce=options['quiesce'], progress=progress)
    catalog.check_room(conf, store, guest.uuid, guest.name, request.keep)
    with locks.guest_lock(conf, guest.uuid, guest.name):
        for action in recovery.recover_guest(conf, host, guest.uuid,
                                             backends):
            if action.verb not in recovery.QUIET:
                LOG.warning('An interrupted snapshot of %(guest)s left '
                            'something behind: %(action)s',
                            {'guest': guest.name, 'action': action.line()})
        cancel.check()
        with journal.opened(
                conf.snapshot.journal_directory, guest.uuid, guest.name,
                host.uri, store.spec if store.RECOVERABLE else None,
                uuidutils.generate_uuid(), check=cancel.check):
            if request.incremental:
                return incremental.snapshot(backend, job)
            if group:
                return all_disks.snapshot(
                    backends, job, disks,
                    {d.target: options['image_format'] or
                     _default_format(d) for d in disks})
            return backend.snapshot(job)


#: Image attributes Glance keeps itself or the snapshot sets: a property
#: cannot set them.
RESERVED_PROPERTIES = frozenset((
    'id', 'name', 'status', 'size', 'virtual_size', 'checksum',
    'os_hash_algo', 'os_hash_value', 'sha256', 'format', 'disk_format',
    'container_format', 'owner', 'visibility', 'protected', 'os_hidden',
    'locations', 'location', 'direct_url', 'created_at', 'updated_at',
    'deleted', 'deleted_at', 'file', 'schema', 'self', 'tags', 'min_disk',
    'min_ram', 'stores', 'snapshot_method', 'snapshot_made_by',
    'snapshot_reason', 'snapshot_quiesced', 'source_domain',
    'instance_uuid', 'method', 'reason', 'quiesced', 'source_uuid'))
#: Glance's limits on a property.
MAX_PROPERTY_KEY = 255
MAX_PROPERTY_VALUE = 255


def validate_properties(properties: dict) -> dict:
    """Check the caller's image properties: no reserved name, keys and
    values within Glance's limits (nothing is cut short).

    :raises InvalidInput: naming the property and what to do.
    """
    for key, value in properties.items():
        if not isinstance(key, str) or not key.strip():
            raise exception.InvalidInput(
                reason='a property needs a name, got %r' % (key,))
        if key.lower() in RESERVED_PROPERTIES:
            raise exception.InvalidInput(
                reason='property %r is set by the snapshot or by Glance '
                       'and cannot be given' % key)
        if len(key) > MAX_PROPERTY_KEY:
            raise exception.InvalidInput(
                reason='property name %r... has %d characters, at most %d '
                       'are allowed' % (key[:20], len(key),
                                        MAX_PROPERTY_KEY))
        if value is not None and len(str(value)) > MAX_PROPERTY_VALUE:
            raise exception.InvalidInput(
                reason='the value of property %r has %d characters, at '
                       'most %d are allowed' % (key, len(str(value)),
                                                MAX_PROPERTY_VALUE))
    return properties


def _default_format(disk) -> str:
    return disk.format if disk.format in qemu_img.FORMATS else 'raw'
