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

"""Explain, without changing anything, how each guest would be
snapshotted: the facts behind ``nova-snapshot-ext check``.
"""

from typing import Any

from oslo_config import cfg

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.libvirt import refusals
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.stores import base as store_base


def host_facts(conf: cfg.ConfigOpts, host: host_mod.Host) -> dict[str, Any]:
    facts = backend_base.host_facts(conf, host)
    blockers = policy.live_blockers(facts)
    return {
        'uri': host.uri,
        'hypervisor': facts.hypervisor,
        'libvirt_version': policy.version_str(facts.libvirt_version),
        'qemu_version': policy.version_str(facts.qemu_version),
        'transient_block_copy': host.has_transient_block_copy(),
        'live_possible': not blockers,
        'live_off': '; '.join(blockers),
        'backends': backend_base.known_backends(),
        'stores': store_base.known_stores(),
    }


def explain_guest(conf: cfg.ConfigOpts, host: host_mod.Host,
                  store: store_base.ImageStore,
                  backends: backend_base.Backends,
                  guest_name: str) -> dict[str, Any]:
    guest = host.get_guest(guest_name)
    entry: dict[str, Any] = {'name': guest.name, 'uuid': guest.uuid}
    try:
        disk = guest.root_disk()
        refusals.check_state(guest.name, guest.power_state())
        refusals.check_disk(guest.name, disk, host.uri,
                            writers=refusals.writers_of(host, guest.uuid))
        backend = backends.for_disk(disk)
        job = model.SnapshotJob(
            conf=conf, request=model.SnapshotRequest(guest.name, 'check'),
            host=host, guest=guest, disk=disk,
            store=store, method=conf.snapshot.method,
            image_format=disk.format, quiesce=conf.snapshot.quiesce)
        plan = backend.plan(job)
        entry.update(state=guest.power_state(), backend=backend.name,
                     disk=disk.target, path=disk.path,
                     method=plan.method, reason=plan.reason)
    except exception.SnapshotError as e:
        entry['error'] = str(e)
    return entry


def check(conf: cfg.ConfigOpts, host: host_mod.Host,
          guest_name: str | None = None,
          store_spec: str | None = None) -> dict[str, Any]:
    """The host facts and, per guest, the method and its reason for a
    snapshot into the store ``store_spec`` (default: ``[snapshot]
    default_store``).
    """
    names = ([guest_name] if guest_name else
             sorted(g.name for g in host.list_guests()))
    store = store_base.load(conf, store_spec)
    with backend_base.Backends(conf) as backends:
        return {'host': host_facts(conf, host),
                'guests': [explain_guest(conf, host, store, backends, n)
                           for n in names]}
