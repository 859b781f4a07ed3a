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

"""The end of every snapshot: the image committed with what the copy's
:class:`~nova_snapshot_ext.backends.steps.Outcome` tells, and the result.
"""

import time
from typing import Any, BinaryIO

from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.stores import base as store_base


def result(job: model.SnapshotJob, plan: policy.Plan,
           stored: store_base.StoredImage, outcome: steps.Outcome,
           started: float, backend: str,
           **extra: Any) -> model.SnapshotResult:
    """The result of a snapshot of ``job`` that made ``stored``."""
    return model.SnapshotResult(
        method=plan.method, reason=plan.reason, image=stored.reference,
        image_id=stored.id, location=stored.location,
        format=stored.disk_format, size=stored.size,
        virtual_size=stored.virtual_size, sha256=stored.sha256,
        seconds=round(time.monotonic() - started, 3),
        guest=job.guest.name, backend=backend, quiesced=outcome.quiesced,
        downtime=round(outcome.downtime, 3), disk=job.disk.target,
        live_copy_style=outcome.live_style,
        live_copy_reason=outcome.live_reason, **extra)


def commit(job: model.SnapshotJob, pending: store_base.PendingImage,
           outcome: steps.Outcome, stream: BinaryIO | None = None,
           size: int = 0, virtual_size: int | None = None
           ) -> store_base.StoredImage:
    """Complete ``pending`` (a backend's ``Commit``), with what the
    copy's ``outcome`` tells recorded in its metadata.
    """
    pending.meta.properties['quiesced'] = outcome.quiesced
    if job.store.KEEPS_DOMAIN_XML:
        pending.meta.domain_xml = job.guest.xml(
            inactive=job.guest.is_persistent())
    if outcome.live_style:
        pending.meta.properties['live_copy_style'] = outcome.live_style
        pending.meta.properties['live_copy_reason'] = outcome.live_reason
    job.progress('upload', 0.0)

    def progress(f: float) -> None:
        job.progress('upload', f)

    if stream is None:
        pending.meta.virtual_size = outcome.virtual_sizes.get(pending.path)
        sha256 = outcome.hashed.get(pending.path)
        if sha256 is not None:
            return pending.commit_hashed(sha256, progress)
        return pending.commit(progress)
    if virtual_size is None:
        return pending.commit_stream(stream, size, progress)
    return pending.commit_stream(stream, size, progress,
                                 virtual_size=virtual_size)
