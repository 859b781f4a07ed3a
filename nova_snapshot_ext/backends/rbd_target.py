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

"""Where a direct RBD snapshot goes: Glance's rbd store in the disk's
Ceph cluster, from the stores Glance shows or, when it shows none to
these credentials, from the locations of the base image.
"""

from collections.abc import Callable
import dataclasses
from typing import Any

from oslo_config import cfg

from nova_snapshot_ext import exception
from nova_snapshot_ext import model
from nova_snapshot_ext.storage import rbd_location

#: Makes the error that says why the direct path cannot serve.
Impossible = Callable[[str], exception.DirectSnapshotImpossible]


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a direct snapshot goes: Glance's rbd store."""

    pool: str
    fsid: str
    #: Glance's store id; None when Glance does not show its stores.
    store_id: str | None


def from_stores(conf: cfg.ConfigOpts, stores: list[dict[str, Any]],
                fsid: str, impossible: Impossible) -> Target:
    """The target among the stores Glance shows."""
    wanted = conf.snapshot_rbd.glance_store
    rbd_stores = [s for s in stores if s.get('type') == 'rbd']
    if wanted:
        chosen = [s for s in stores if s.get('id') == wanted]
        if not chosen:
            raise impossible('Glance has no store %r ([snapshot_rbd] '
                             'glance_store); it has %s' % (
                                 wanted, _ids(stores)))
        if chosen[0].get('type') != 'rbd':
            raise impossible('Glance store %r is a %s store, not rbd' % (
                wanted, chosen[0].get('type')))
    else:
        chosen = [s for s in rbd_stores if s.get('default')
                  in (True, 'true')] or rbd_stores
        if not chosen:
            raise impossible('Glance has no rbd store (its stores: %s)'
                             % _ids(stores))
        if len(chosen) > 1:
            raise impossible('Glance has several rbd stores (%s); set '
                             '[snapshot_rbd] glance_store' % _ids(chosen))
    props = chosen[0].get('properties') or {}
    theirs = props.get('fsid')
    if theirs != fsid:
        raise impossible(
            "Glance's rbd store %s is in Ceph cluster %s, the disk in "
            "%s" % (chosen[0]['id'], theirs or '(not shown)', fsid))
    pool = conf.snapshot_rbd.glance_pool or props.get('pool')
    if not pool:
        raise impossible("Glance does not show the pool of its rbd "
                         "store %s; set [snapshot_rbd] glance_pool" %
                         chosen[0]['id'])
    return Target(pool=pool, fsid=fsid, store_id=chosen[0]['id'])


def from_locations(conf: cfg.ConfigOpts, job: model.SnapshotJob, fsid: str,
                   impossible: Impossible) -> Target:
    """The target from the base image's locations, when Glance does not
    show its stores.
    """
    base_ref = job.request.metadata.get('base_image_ref')
    pools = []
    if base_ref:
        for url in job.store.image_locations(base_ref):
            loc = rbd_location.Location.parse(url)
            if loc is not None and loc.fsid == fsid:
                pools.append(loc.pool)
    pool = conf.snapshot_rbd.glance_pool or (
        pools[0] if pools else None)
    if not pool:
        raise impossible(
            'Glance does not show its stores to these credentials (the '
            'admin or service role is needed) and the base image has no '
            'location in this Ceph cluster; set [snapshot_rbd] '
            'glance_pool')
    return Target(pool=pool, fsid=fsid,
                  store_id=conf.snapshot_rbd.glance_store or None)


def _ids(stores) -> str:
    return ', '.join(str(s.get('id')) for s in stores) or 'none'
