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

"""Clean-up after interrupted snapshots: ``nova-snapshot-ext gc``.

Queued Glance records the command made and local leftovers (temporary,
partial and half-deleted directories) that no live snapshot owns are
swept as :mod:`nova_snapshot_ext.cleanup.sweep` says. Then every
collector in the ``nova_snapshot_ext.garbage`` entry point namespace
looks at what its plugin's snapshots may leave outside the store: the rbd
backend's (:mod:`nova_snapshot_ext.backends.rbd_gc`) clears the Ceph
leftovers of direct snapshots and the flattens they deferred. A collector
is ``collect(conf, store, min_age) -> list[Action]``.

With ``dry_run`` it only says what it would do.
"""

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.cleanup import sweep
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext import plugins
from nova_snapshot_ext.stores import base as store_base

LOG = logging.getLogger(__name__)

NAMESPACE = 'nova_snapshot_ext.garbage'


def collect_garbage(conf: cfg.ConfigOpts, store: store_base.ImageStore,
                    dry_run: bool = False, min_age: float | None = None
                    ) -> list[undo.Action]:
    """Find the leftovers of interrupted snapshots and, unless
    ``dry_run``, clear them. An action that fails has its ``error`` set;
    the others still run.

    :param store: the store that holds the images: a Glance store (its
        queued records, and the Ceph leftovers of direct snapshots) or a
        file store (local leftovers only).
    :param min_age: seconds; None means ``[snapshot_rbd] gc_min_age``.
    """
    if min_age is None:
        min_age = conf.snapshot_rbd.gc_min_age
    store.check()
    claims = sweep.Claims(conf)
    actions = (sweep.local(conf, min_age, claims, store)
               + sweep.records(store, min_age, claims))
    for name in plugins.names(NAMESPACE):
        actions += plugins.load(NAMESPACE, name)(conf, store, min_age)
    if dry_run:
        return actions
    for action in actions:
        if action.run is None:
            continue
        try:
            action.run()
            LOG.info('gc: %s', action.line())
        except exception.SnapshotError as e:
            action.error = str(e)
            LOG.error('gc: %s', action.line())
    return actions
