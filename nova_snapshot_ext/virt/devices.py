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

"""The devices a memory save cannot carry, around a cold snapshot of a
running or paused instance, as Nova's libvirt driver handles them.

Nova takes such a snapshot through its own ``suspend()``: it detaches the
instance's PCI devices (flavor aliases), its direct-passthrough (SR-IOV)
ports and its mediated devices (vGPUs), then saves the guest's memory;
after the snapshot it starts the guest again and attaches the PCI devices
and the ports. The engine saves and restores the guest itself (its
journal must know of the save before it is made), so this module gives it
the rest of Nova's path, with Nova's own methods, as the request's
``guest_devices`` (:class:`nova_snapshot_ext.model.SnapshotRequest`):

* before the save: Nova's ``_detach_pci_devices``,
  ``_detach_direct_passthrough_ports`` and ``_detach_mediated_devices``,
  exactly as ``suspend()`` calls them;
* once the guest is back (or still running, when the save failed):
  ``cpu_api.power_up_for_instance``, ``_attach_pci_devices``,
  ``_attach_direct_passthrough_ports``, as Nova's snapshot does, and also
  the mediated devices that were detached, which Nova's snapshot does
  not re-attach (its ``resume()`` does): a vGPU instance keeps its vGPU.

A failure to detach leaves the guest as it was and fails the snapshot
with one line; a failure to attach fails it too (as in Nova), after the
other devices were tried. A nova-compute killed while the guest is saved
leaves the devices detached: ``init_host`` restores the guest (see
:mod:`nova_snapshot_ext.cleanup.undo`) but does not attach them; a hard
reboot of the server does, as for any suspended instance Nova lost track of.
"""

from collections.abc import Iterator
import contextlib
from typing import Any

from nova.compute import power_state
from nova import objects
from nova.virt.libvirt import config as vconfig
from oslo_log import log as logging

from nova_snapshot_ext import exception

LOG = logging.getLogger(__name__)

#: Nova's power states in which the guest runs (a restore brought it back
#: or the save never stopped it).
_UP = (power_state.RUNNING, power_state.PAUSED)


@contextlib.contextmanager
def detached(driver: Any, context: Any, instance: Any) -> Iterator[None]:
    """Nova's devices of ``instance`` detached for the block (see the
    module), by ``driver``, Nova's ``LibvirtDriver``.

    :raises LibvirtFailed: a device could not be detached, or attached
        again after a block that succeeded (after one that failed, that
        is logged and the block's error raised).
    """
    guest = driver._host.get_guest(instance)
    pci = instance.get_pci_devices(
        source=objects.InstancePCIRequest.FLAVOR_ALIAS)
    mdevs = guest.get_all_devices(
        devtype=vconfig.LibvirtConfigGuestHostdevMDEV)
    kinds = {
        'pci': (lambda: driver._detach_pci_devices(guest, pci),
                lambda: driver._attach_pci_devices(guest, pci)),
        'ports': (
            lambda: driver._detach_direct_passthrough_ports(
                context, instance, guest),
            lambda: driver._attach_direct_passthrough_ports(
                context, instance, guest)),
        'mdevs': (lambda: driver._detach_mediated_devices(guest),
                  lambda: driver._attach_mediated_devices(guest, mdevs)),
    }
    done: list[str] = []
    for kind, (detach, _attach) in kinds.items():
        try:
            detach()
        except Exception as e:  # noqa: B902 - Nova's, libvirt's, any
            with contextlib.suppress(exception.LibvirtFailed):
                _attach_again(instance, [kinds[k][1] for k in done])
            raise exception.LibvirtFailed(
                action='detach the PCI and mediated devices of',
                guest=instance.name, reason=e)
        done.append(kind)
    again = [lambda: driver.cpu_api.power_up_for_instance(instance)]
    again += [kinds[k][1] for k in done]
    try:
        yield
    except BaseException:
        if guest.get_power_state(driver._host) in _UP:
            with contextlib.suppress(exception.LibvirtFailed):
                _attach_again(instance, again)
        raise
    if guest.get_power_state(driver._host) in _UP:
        _attach_again(instance, again)


def _attach_again(instance: Any, attaches: list) -> None:
    """Call each of ``attaches``, whatever the others do.

    :raises LibvirtFailed: one of them failed (each failure is logged).
    """
    errors = []
    for attach in attaches:
        try:
            attach()
        except Exception as e:  # noqa: B902 - Nova's, libvirt's, any
            LOG.error('Attaching devices again after a snapshot: %s', e,
                      instance=instance)
            errors.append(str(e))
    if errors:
        raise exception.LibvirtFailed(
            action='attach the PCI and mediated devices again to',
            guest=instance.name, reason='; '.join(errors))
