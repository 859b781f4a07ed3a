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

"""Image backends: how the disk of a guest becomes an image.

A backend is a stevedore plugin in ``nova_snapshot_ext.image_backends``
that subclasses :class:`ImageBackend`. It says two things, as abstract
methods:

* :meth:`ImageBackend.inspect`: what it can do for one guest disk (copy
  it while the guest runs, copy it inside the storage), or why it cannot
  read it at all;
* :meth:`ImageBackend.copy`: its snapshot step, one point in time of the
  disk written into the image file, live or cold;

and may add a direct path, :meth:`ImageBackend.direct_snapshot`, that
makes the image inside the storage without copying through the host.
What else it can take part in it declares in
:attr:`ImageBackend.capabilities`: :data:`GROUP` (``--all-disks``: its
disks copied with the guest's others at one point in time) and
:data:`CHANGED_BLOCKS` (``--incremental``: the blocks changed since a
checkpoint read from a libvirt backup job) and :data:`MEMORY`
(``--memory``: its disks with the guest's memory); the orchestrator composes
those modes from the capabilities and refuses a backend that lacks one
with one line naming it.
The shared steps (quiesce, managed save, temporary directory, convert)
are in :mod:`nova_snapshot_ext.backends.steps`.

:meth:`ImageBackend.snapshot` is the hook the orchestrator and the Nova
driver call: it asks the backend what it can do, lets
:func:`nova_snapshot_ext.policy.choose` pick the method with its reason,
and runs the backend's steps into the store's pending image.
"""

import abc
from collections.abc import Callable
import dataclasses
import functools
import time
from typing import Any, ClassVar, TYPE_CHECKING

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.backends import finish
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import guest as guest_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import plugins
from nova_snapshot_ext import policy
from nova_snapshot_ext.stores import base as store_base

if TYPE_CHECKING:
    from nova_snapshot_ext.libvirt import host as host_mod

LOG = logging.getLogger(__name__)

NAMESPACE = 'nova_snapshot_ext.image_backends'

#: Completes the pending image: with no argument from its local file,
#: else from ``(stream, size[, virtual_size])``.
Commit = Callable[..., store_base.StoredImage]

#: Applied to objects whose calls block for long (a storage driver), so
#: that they run where they do not stop the caller; e.g. Nova's
#: ``tpool_wrap`` in an eventlet nova-compute. The default leaves them.
Wrap = Callable[[Any], Any]


def no_wrap(obj: Any) -> Any:
    return obj


#: Capability: the backend's disks are copied from local files and block
#: devices through libvirt, so one backup job (or one managed save) can
#: take them with the guest's other disks at one point in time.
GROUP = 'group'
#: Capability: the backend can write only the blocks changed since a
#: libvirt checkpoint, from a backup job's dirty bitmap.
CHANGED_BLOCKS = 'changed-blocks'
#: Capability: the backend's disks can move onto a qcow2 overlay file for
#: a moment, so that a snapshot with memory can read them at its point in
#: time (``--memory``).
MEMORY = 'memory'


@dataclasses.dataclass(frozen=True)
class Support:
    """What a backend can do for one guest disk."""

    #: It can copy the disk while the guest runs.
    live: bool = True
    #: Its live copy is a libvirt block job, so ``[snapshot_libvirt]
    #: min_libvirt_version`` and ``min_qemu_version`` apply.
    live_needs_block_jobs: bool = True
    #: It has a direct path (a copy inside the storage) at all.
    direct: bool = False
    #: Why the direct path cannot serve this snapshot; None when it can.
    direct_unavailable: str | None = None


class ImageBackend(metaclass=abc.ABCMeta):
    """Base class of image backend plugins.

    :param conf: the configuration, with the project's options.
    :param wrap: see :data:`Wrap`; a backend applies it to the storage
        driver it keeps.
    """

    #: The entry point name.
    name: ClassVar[str] = ''
    #: What else it can take part in: :data:`GROUP`,
    #: :data:`CHANGED_BLOCKS`, :data:`MEMORY`.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, conf: cfg.ConfigOpts, wrap: Wrap = no_wrap) -> None:
        self.conf = conf
        self.wrap = wrap

    @abc.abstractmethod
    def inspect(self, job: model.SnapshotJob) -> Support:
        """What this backend can do for ``job.disk``.

        :raises UnsupportedDisk: it cannot read that disk, with the
            reason.
        """

    @abc.abstractmethod
    def copy(self, job: model.SnapshotJob, method: str, out_path: str,
             outcome: steps.Outcome) -> None:
        """Write one point in time of the disk into ``out_path``, in
        ``job.image_format``.

        :param method: ``live`` (the guest keeps running) or ``cold``
            (the guest's CPUs may stop: :func:`.steps.suspended`).
        :param outcome: to fill in (quiesced, downtime).
        :raises SnapshotError: the guest is as it was and nothing made
            by the step is left.
        """

    def direct_snapshot(self, job: model.SnapshotJob,
                        pending: store_base.PendingImage,
                        outcome: steps.Outcome) -> store_base.StoredImage:
        """Make the image inside the storage and register it as the
        image ``pending`` (:meth:`PendingImage.add_location`).

        Optional: called only when :meth:`inspect` says the direct path
        can serve; this default raises NotImplementedError.

        :raises DirectSnapshotImpossible: the direct path turned out
            impossible and everything it made is undone; the snapshot
            falls back to :meth:`copy`.
        """
        raise NotImplementedError('direct_snapshot() is not implemented')

    def stream(self, job: model.SnapshotJob, method: str,
               commit: 'Commit', outcome: steps.Outcome
               ) -> store_base.StoredImage | None:
        """Write the image with no local file: hand ``commit`` a stream of
        the image's bytes and their number, and return what it returns.

        Optional: called when the store takes streams
        (:attr:`store_base.PendingImage.STREAMS`); this default returns
        None, and the snapshot goes on with :meth:`copy`. A backend
        returns None, having made nothing, when it cannot stream this
        snapshot.
        """
        return None

    def release_disk(self, path: str) -> list[str]:
        """Before the disk at ``path`` is deleted (by its owner, e.g.
        Nova deleting or shelve-offloading an instance): make every image
        that snapshots of it left depending on it independent, and remove
        what the snapshots left on it, so that the deletion succeeds.

        Optional: copies never depend on their disk, so this default does
        nothing.

        :returns: one line per thing done.
        :raises SnapshotError: the disk still holds something of ours.
        """
        return []

    def close(self) -> None:
        """Release what the backend keeps between snapshots (e.g. a
        storage connection). The default keeps nothing.
        """

    def storage_driver(self) -> Any:
        """The storage connection the backend keeps, which the cleanup
        of what its snapshots left may use too; None when it keeps none.
        """
        return None

    # -- the choice ----------------------------------------------------
    def facts(self, job: model.SnapshotJob,
              support: Support | None = None) -> policy.Facts:
        """What :func:`policy.choose` decides from, for ``job``."""
        support = support or self.inspect(job)
        guest = job.guest
        facts = host_facts(
            self.conf, job.host, guest=guest.name,
            power_state=guest.power_state(),
            persistent=guest.is_persistent(),
            backend=self.name,
            backend_supports_live=support.live,
            backend_supports_direct=support.direct,
            direct_unavailable=(support.direct_unavailable
                                if support.direct else
                                'the %s backend has no direct path' %
                                self.name))
        if not support.live_needs_block_jobs:
            facts = dataclasses.replace(facts, min_libvirt_version=(0,),
                                        min_qemu_version=(0,))
        return facts

    def plan(self, job: model.SnapshotJob) -> policy.Plan:
        """The method a snapshot of ``job`` would use, and why."""
        return policy.choose(self.facts(job), job.method)

    # -- the snapshot() hook -------------------------------------------
    def snapshot(self, job: model.SnapshotJob) -> model.SnapshotResult:
        """Take the snapshot that ``job`` describes.

        :returns: the result, with the method used and why.
        :raises SnapshotError: nothing is left behind and the guest is as
            it was.
        """
        started = time.monotonic()
        support = self.inspect(job)
        facts = self.facts(job, support)
        plan = policy.choose(facts, job.method)
        self._log_plan(job, plan, support)
        meta = store_base.ImageMeta(
            name=job.request.name,
            disk_format=job.image_format,
            properties=dict(job.request.metadata,
                            method=plan.method, reason=plan.reason,
                            source_domain=job.guest.name,
                            source_uuid=job.guest.uuid))
        outcome = steps.Outcome()
        with job.store.begin(meta, job.request.image_id,
                             self.conf.snapshot.temp_directory) as pending:
            stored = None
            if plan.method == policy.DIRECT:
                try:
                    stored = self.direct_snapshot(job, pending, outcome)
                except exception.DirectSnapshotImpossible as e:
                    plan = policy.choose(dataclasses.replace(
                        facts, direct_unavailable=str(e.kwargs['reason'])),
                        job.method)
                    self._log_plan(job, plan, support)
                    meta.properties.update(method=plan.method,
                                           reason=plan.reason)
            if stored is None:
                # NOTE: taken before the guest is touched, so that a cold
                # snapshot's guest does not stay stopped while it waits.
                with job.request.disk_ops():
                    stored = self._write(job, plan, pending, outcome)
        return finish.result(job, plan, stored, outcome, started,
                             self.name)

    def _write(self, job: model.SnapshotJob, plan: policy.Plan,
               pending: store_base.PendingImage,
               outcome: steps.Outcome) -> store_base.StoredImage:
        """Copy the disk into ``pending``, streamed when the store and
        the backend can, and commit it.
        """
        commit_ = functools.partial(finish.commit, job, pending, outcome)
        stored = None
        if pending.STREAMS:
            stored = self.stream(job, plan.method, commit_, outcome)
        if stored is None:
            self.copy(job, plan.method, pending.path, outcome)
            stored = commit_()
        return stored

    def _log_plan(self, job: model.SnapshotJob, plan: policy.Plan,
                  support: Support) -> None:
        # NOTE: a backend with a direct path that does not take it copies
        # the whole disk: the operator should hear of it.
        loud = support.direct and plan.method != policy.DIRECT
        (LOG.warning if loud else LOG.info)(
            'Snapshot of %(guest)s (root disk %(disk)s): %(method)s, '
            'because %(reason)s',
            {'guest': job.guest.name, 'disk': job.disk.target,
             'method': plan.method, 'reason': plan.reason})


def host_facts(conf: cfg.ConfigOpts, host: 'host_mod.Host',
               **guest_facts: Any) -> policy.Facts:
    """The facts of ``host`` and its configuration, completed with the
    facts of one guest (for a host alone: a running guest).
    """
    guest_facts.setdefault('guest', '')
    guest_facts.setdefault('power_state', policy.RUNNING)
    return policy.Facts(
        hypervisor=host.hypervisor(),
        libvirt_version=host.libvirt_version(),
        qemu_version=host.qemu_version(),
        min_libvirt_version=policy.parse_version(
            conf.snapshot_libvirt.min_libvirt_version),
        min_qemu_version=policy.parse_version(
            conf.snapshot_libvirt.min_qemu_version),
        live_disabled=conf.snapshot_workarounds.disable_live_snapshot,
        **guest_facts)


def known_backends(manager: Any = None) -> list[str]:
    return plugins.names(NAMESPACE, manager)


def load(conf: cfg.ConfigOpts, name: str, wrap: Wrap = no_wrap,
         manager: Any = None) -> ImageBackend:
    """Load the backend plugin ``name``.

    :param manager: a stevedore extension manager to look the plugin up
        in instead of the installed entry points (e.g. one made with
        ``make_test_instance``).
    :raises UnknownBackend: naming the installed ones.
    """
    cls = plugins.load_class(NAMESPACE, name, manager)
    if cls is None:
        raise exception.UnknownBackend(
            name=name, known=', '.join(known_backends(manager)) or 'none')
    return cls(conf, wrap)


class Backends:
    """The backends of one service or command, each loaded once and kept,
    with what it keeps (a Ceph connection), until :meth:`close`.

    :param wrap: see :data:`Wrap`.
    :param manager: see :func:`load`.
    """

    def __init__(self, conf: cfg.ConfigOpts, wrap: Wrap = no_wrap,
                 manager: Any = None) -> None:
        self.conf = conf
        self.wrap = wrap
        self.manager = manager
        self._loaded: dict[str, ImageBackend] = {}

    def get(self, name: str) -> ImageBackend:
        """The backend ``name``, loaded on first use.

        :raises UnknownBackend: naming the installed ones.
        """
        if name not in self._loaded:
            self._loaded[name] = load(self.conf, name, self.wrap,
                                      self.manager)
        return self._loaded[name]

    def for_disk(self, disk: guest_mod.Disk) -> ImageBackend:
        """The backend that reads ``disk`` (:func:`backend_name_for`)."""
        return self.get(backend_name_for(disk))

    def close(self) -> None:
        loaded, self._loaded = self._loaded, {}
        for backend in loaded.values():
            backend.close()

    def __enter__(self) -> 'Backends':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def backend_name_for(disk: guest_mod.Disk) -> str:
    """The backend that reads ``disk``: its protocol for network disks
    (``rbd``), its format otherwise (``qcow2``, ``raw``).
    """
    if disk.source_type == 'network':
        return disk.protocol or 'network'
    return disk.format
