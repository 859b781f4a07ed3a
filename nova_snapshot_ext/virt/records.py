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

"""Nova's image records that the driver is filling, written down.

The compute API makes the record (queued) before it calls the driver, and
the compute manager deletes it when the snapshot fails. When nova-compute
dies during the snapshot, nobody does: Nova resets the instance's task
state when it starts again and the record stays queued (or saving) for
good. So each record is written down in ``$state_path/snapshot-records``
before the driver starts to fill it, and crossed out when the snapshot
has ended one way or the other. At ``init_host`` a record still written
down is deleted if it is still unfinished (an active one is kept), as the
service user of ``[service_user]`` (Nova's own service credentials); one
that cannot be looked at now stays written down for the next start.
"""

import contextlib
import os
from typing import Any

from keystoneauth1 import loading as ks_loading
from nova import context as nova_context
from nova import exception as nova_exc
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.journal import durable
from nova_snapshot_ext import private
from nova_snapshot_ext.virt import image_store

LOG = logging.getLogger(__name__)

DIRECTORY = 'snapshot-records'
_SUFFIX = '.json'
#: Glance statuses of a record whose data never arrived.
UNFINISHED = ('queued', 'saving')


class Records:
    """The records being filled, one file each."""

    def __init__(self, state_path: str) -> None:
        self.directory = os.path.join(state_path, DIRECTORY)

    def add(self, image_id: str, instance_uuid: str) -> None:
        """Write ``image_id`` down, durably, before it is filled."""
        if not os.path.isdir(self.directory):
            private.makedirs(self.directory)
        durable.write_json(self._path(image_id),
                           {'image': image_id, 'instance': instance_uuid,
                            'owner': durable.owner()})

    def remove(self, image_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(image_id))

    def ids(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        return [n[:-len(_SUFFIX)] for n in names
                if n.endswith(_SUFFIX) and not n.startswith('.')]

    def _path(self, image_id: str) -> str:
        return os.path.join(self.directory, image_id + _SUFFIX)


def service_context(conf: cfg.ConfigOpts) -> Any:
    """An admin context that talks to Glance as Nova's service user
    (``[service_user]``); without those options, with no credentials (a
    Glance without Keystone).
    """
    ctx = nova_context.get_admin_context()
    ctx.user_auth_plugin = ks_loading.load_auth_from_conf_options(
        conf, 'service_user')
    return ctx


def finish(conf: cfg.ConfigOpts, records: Records,
           image_api: Any) -> list[str]:
    """Delete the unfinished records an earlier nova-compute left.

    :returns: one line per record looked at.
    """
    ids = records.ids()
    if not ids:
        return []
    ctx = service_context(conf)
    lines = []
    for image_id in ids:
        try:
            status = image_api.get(ctx, image_id).get('status')
            if status in UNFINISHED:
                image_api.delete(ctx, image_id)
                lines.append('deleted image %s, left %s by a snapshot that '
                             'nova-compute did not finish' % (image_id,
                                                              status))
            else:
                lines.append('kept image %s: it is %s' % (image_id, status))
        except nova_exc.ImageNotFound:
            lines.append('image %s is gone already' % image_id)
        except Exception as e:  # noqa: B902 - the service must start
            LOG.warning('Could not look at image %(id)s, left by a snapshot '
                        'that nova-compute did not finish; trying again at '
                        'the next start: %(err)s', {'id': image_id, 'err': e})
            continue
        records.remove(image_id)
    return lines


def delete_later(records: Records, image_api: Any, context: Any,
                 image_id: str) -> None:
    """:func:`image_store.delete_when_glance_answers`, then cross the
    record out, unless it gave up (the next start tries again).
    """
    outcome = image_store.delete_when_glance_answers(image_api, context,
                                                     image_id)
    if outcome != 'gave up':
        records.remove(image_id)
