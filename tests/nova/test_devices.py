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

"""A cold snapshot of a running server with a PCI device goes through
Nova's suspend path: the device is detached from the domain before its
memory is saved and attached again once it runs again.

The host's PCI device and the instance's domain are Nova's fake libvirt's
(this machine has no device to pass through); Nova's scheduler, PCI
tracker and its own detach and attach code are real, and so are the
guest whose memory is saved and the snapshot of its disk (see
:mod:`tests.nova.test_driver`).

The unit tests at the end give the module faults that Nova's fake
libvirt cannot be made to show (a device that will not detach or attach),
with a stand-in for Nova's driver.
"""

import eventlet
import libvirt
from nova.compute import power_state
from nova.tests.fixtures import libvirt as fakelibvirt
from oslo_serialization import jsonutils
import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.virt import devices
from tests.functional import guest as guest_mod
from tests.nova import test_driver
from tests import polling

ALIAS = 'nse-a1'
#: Seconds to watch for the saved guest (the snapshot ends the watch).
WATCH_TIMEOUT = 900
_PCI = {'vendor_id': fakelibvirt.PCI_VEND_ID,
        'product_id': fakelibvirt.PCI_PROD_ID}


class PciDeviceSnapshotTest(test_driver.DriverTestBase):
    ADDITIONAL_FILTERS = ['PciPassthroughFilter']

    def setUp(self):
        self.PCI_INFO = fakelibvirt.HostPCIDevicesInfo(num_pci=1)
        self.flags(device_spec=[jsonutils.dumps(_PCI)],
                   alias=[jsonutils.dumps(dict(_PCI, name=ALIAS))],
                   group='pci')
        super().setUp()

    def _hostdevs(self, server_id):
        """The PCI devices in the instance's domain (Nova's)."""
        conn = self.driver._host.get_connection()
        xml = conn.lookupByUUIDString(server_id).XMLDesc(0)
        return xml.count("<hostdev mode='subsystem' type='pci'")

    def _watch(self, g, server_id, seen):
        """While the snapshot runs: the domain's PCI devices when the
        real guest is found saved (shut off), once.
        """
        polling.wait_until(lambda: g.state() == libvirt.VIR_DOMAIN_SHUTOFF,
                           WATCH_TIMEOUT, 0.02, 'the guest was never saved',
                           sleep=eventlet.sleep)
        seen.append(self._hostdevs(server_id))

    def test_cold_snapshot_detaches_and_attaches_the_pci_device(self):
        self.flags(method='cold', group='snapshot')
        flavor = self._create_flavor(
            extra_spec={'pci_passthrough:alias': '%s:1' % ALIAS})
        server, g = self._server_with_guest(flavor_id=flavor)
        self.assertEqual(1, self._hostdevs(server['id']))
        before = g.last_counter()
        seen = []
        watcher = eventlet.spawn(self._watch, g, server['id'], seen)
        try:
            image_id, image = self._snapshot_done(server, 'ACTIVE')
        finally:
            watcher.kill()
        self.assertEqual('cold', image['properties']['snapshot_method'])
        # Detached while the memory was saved, and there again after.
        self.assertEqual([0], seen)
        self.assertEqual(1, self._hostdevs(server['id']))
        # The guest runs on from where it was, and the image is its disk.
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, g.state())
        self.assertGreater(g.wait_counter(g.last_counter() + 1), before)
        check = guest_mod.check_image(self.images.data[image_id], 'qcow2',
                                      g.disks.size)
        self.assertTrue(check.point_in_time, check.counters)
        self.assertGreaterEqual(check.last, before)


# -- unit tests: faults that Nova's fake libvirt cannot be made to show --

class _Guest:
    def __init__(self, states):
        self._states = list(states)

    def get_all_devices(self, devtype=None):
        return ['mdev-1']

    def get_power_state(self, host):
        return self._states.pop(0)


class _Driver:
    """Nova's LibvirtDriver's device methods, recording their calls."""

    def __init__(self, guest, fail=()):
        self.calls = []
        self.fail = fail
        self.guest = guest
        self._host = self
        self.cpu_api = self

    def get_guest(self, instance):
        return self.guest

    def __getattr__(self, name):
        def call(*args):
            self.calls.append(name)
            if name in self.fail:
                raise RuntimeError('%s failed' % name)
        return call


class _Instance:
    name = 'instance-00000001'

    def get_pci_devices(self, source=None):
        return ['pci-1']


def test_a_device_that_cannot_be_detached_fails_with_the_others_back():
    drv = _Driver(_Guest([]), fail=('_detach_mediated_devices',))
    ctx = devices.detached(drv, None, _Instance())
    with pytest.raises(exception.LibvirtFailed) as e:
        ctx.__enter__()
    assert 'detach the PCI and mediated devices of instance-00000001' in (
        str(e.value))
    # The PCI devices and ports it had detached are attached again.
    assert drv.calls == [
        '_detach_pci_devices', '_detach_direct_passthrough_ports',
        '_detach_mediated_devices', '_attach_pci_devices',
        '_attach_direct_passthrough_ports']


def test_attach_failure_after_a_snapshot_fails_it_all_tried():
    drv = _Driver(_Guest([power_state.RUNNING]),
                  fail=('_attach_pci_devices',))
    with pytest.raises(exception.LibvirtFailed) as e:
        with devices.detached(drv, None, _Instance()):
            pass
    assert '_attach_pci_devices failed' in str(e.value)
    assert drv.calls[3:] == [
        'power_up_for_instance', '_attach_pci_devices',
        '_attach_direct_passthrough_ports', '_attach_mediated_devices']


def test_a_failed_snapshot_keeps_its_error_and_attaches_again():
    drv = _Driver(_Guest([power_state.PAUSED]),
                  fail=('_attach_pci_devices',))
    with pytest.raises(ValueError):
        with devices.detached(drv, None, _Instance()):
            raise ValueError('the copy failed')
    assert '_attach_mediated_devices' in drv.calls


def test_a_guest_that_did_not_come_back_gets_nothing_attached():
    drv = _Driver(_Guest([power_state.SHUTDOWN]))
    with pytest.raises(exception.GuestRestoreFailed):
        with devices.detached(drv, None, _Instance()):
            raise exception.GuestRestoreFailed(guest='g', state='running',
                                               reason='x')
    assert not [c for c in drv.calls if c.startswith('_attach')]
