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

"""The data that crosses layers: a snapshot request, its job, its result."""

from collections.abc import Callable
import contextlib
import dataclasses
from typing import Any, ContextManager, TYPE_CHECKING

if TYPE_CHECKING:
    from oslo_config import cfg

    from nova_snapshot_ext.libvirt import guest as guest_mod
    from nova_snapshot_ext.libvirt import host as host_mod
    from nova_snapshot_ext.stores import base as store_base

#: ``progress(stage, fraction)``; stages are ``copy`` (live copy of the
#: disk), ``convert`` (writing the image) and ``upload``.
Progress = Callable[[str, float], None]


def no_progress(stage: str, fraction: float) -> None:
    """A progress callback that ignores progress."""


@dataclasses.dataclass
class SnapshotRequest:
    """What the caller asks for."""

    #: Domain name or UUID.
    guest: str
    #: Name of the image.
    name: str
    #: ``auto``, ``live`` or ``cold``; None means ``[snapshot] method``.
    method: str | None = None
    #: ``qcow2`` or ``raw``; None means ``[snapshot] image_format``, or
    #: the format of the guest's disk.
    image_format: str | None = None
    #: Store spec; None means ``[snapshot] default_store``.
    store: str | None = None
    #: ``never``, ``auto`` or ``required``; None means ``[snapshot]
    #: quiesce``.
    quiesce: str | None = None
    #: Backend name; None means chosen from the guest's root disk.
    backend: str | None = None
    #: Fill this existing image record (Nova creates it first).
    image_id: str | None = None
    #: Extra image properties stored with the image.
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Every disk of the guest, one image each, at one point in time
    #: (the command line's); otherwise the root disk only.
    all_disks: bool = False
    #: The guest's memory too, at the point in time of every disk, the
    #: guest running on (the command line's; implies ``all_disks``).
    memory: bool = False
    #: Only the blocks changed since the guest's last incremental
    #: snapshot in the (directory) store, backed by its image.
    incremental: bool = False
    #: With ``incremental``: keep this many newest incremental images of
    #: the guest in the store (0: all), merging and deleting older ones.
    keep: int = 0
    #: Freeze the guest for a direct snapshot too, as ``quiesce`` says
    #: (the command line's); Nova never quiesces a direct snapshot.
    quiesce_direct: bool = True
    #: The root disk is the first ``<disk>`` of any device kind (Nova's
    #: ``find_disk``); otherwise a CD-ROM or floppy first is skipped.
    root_any_device: bool = False
    #: Held while the image's data is read, converted and written to the
    #: store (not for a direct snapshot): e.g. Nova's limit on
    #: concurrent disk operations. Entered before the guest is touched.
    disk_ops: Callable[[], ContextManager[Any]] = contextlib.nullcontext
    #: Entered before a running or paused guest's memory is saved for a
    #: cold snapshot, left once the guest is back in its state: e.g.
    #: Nova's driver detaches there the PCI, SR-IOV and mediated devices
    #: that a memory save cannot carry, and attaches them again (its
    #: suspend and resume).
    guest_devices: Callable[[], ContextManager[Any]] = contextlib.nullcontext


@dataclasses.dataclass
class SnapshotJob:
    """A request resolved against the host: what a backend works on."""

    conf: 'cfg.ConfigOpts'
    request: SnapshotRequest
    host: 'host_mod.Host'
    guest: 'guest_mod.Guest'
    disk: 'guest_mod.Disk'
    store: 'store_base.ImageStore'
    method: str
    image_format: str
    quiesce: str
    progress: Progress = no_progress


@dataclasses.dataclass
class SnapshotResult:
    """What a snapshot produced. The CLI prints it as JSON."""

    method: str
    reason: str
    image: str
    image_id: str
    location: str
    format: str
    size: int
    virtual_size: int
    #: None for a direct snapshot, whose data the engine does not read.
    sha256: str | None
    seconds: float
    guest: str
    backend: str
    quiesced: bool = False
    #: Seconds the guest's CPUs were stopped (cold snapshots).
    downtime: float = 0.0
    #: Target of the disk the image is of (the root disk: see
    #: ``Guest.root_disk``), e.g. ``vda``.
    disk: str = ''
    #: How a live copy was made: ``backup`` (libvirt's backup API),
    #: ``blockcopy`` or ``rebase`` (a mirror); None for other methods.
    live_copy_style: str | None = None
    #: Why that style (the configuration, or what the host has).
    live_copy_reason: str | None = None
    #: With ``all_disks``: the result of each disk's image (the root
    #: disk's first), as dictionaries.
    disks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: With ``incremental``: the image this one is backed by, or None
    #: for a full image, with the reason.
    incremental_of: str | None = None
    incremental_reason: str | None = None
    #: The stored image was read back and found good (``[snapshot]
    #: verify``).
    verified: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
