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

"""A cross-cell resize calls the source host's ``snapshot()``: Nova stops
the server, our driver snapshots its root disk into an image, and the
destination host, in another cell, boots the resized server from it.

Two cells, each a compute host with our driver, in one Nova (Nova's
functional fixtures, see :mod:`tests.nova.test_driver`): the one-node
cloud of ``tools/cloud.sh`` has a single cell, and a second one would
need its own database, message queue and conductor. The snapshot runs on
a real guest; the destination's boot is Nova's fake libvirt's.
"""

from nova.policies import base as base_policies
from nova.policies import servers as servers_policies

from tests.functional import guest as guest_mod
from tests.nova import test_driver


class CrossCellResizeTest(test_driver.DriverTestBase):
    NUMBER_OF_CELLS = 2

    def setUp(self):
        super().setUp()
        # NOTE: Nova allows no one a cross-cell resize by default.
        self.policy.set_rules({
            servers_policies.CROSS_CELL_RESIZE: base_policies.RULE_ADMIN_API,
        }, overwrite=False)

    def test_cross_cell_resize_of_a_server_whose_image_requires_quiesce(self):
        # NOTE: Nova stops the server before the snapshot, so its real
        # guest does not run; the image asks for quiesce, which Nova
        # never does for a stopped server, and neither do we.
        server, g = self._server_with_guest(
            image=test_driver.QUIESCE_IMAGE, start=False)
        self.assertEqual('compute1', server['OS-EXT-SRV-ATTR:host'])
        # NOTE: the other cell's host comes once the server is on
        # compute1: the scheduler could have picked either.
        self.start_compute('compute2', cell_name='cell2')
        flavor = self._create_flavor(memory_mb=4096, vcpu=2, disk=20)
        self.api.post_server_action(
            server['id'], {'resize': {'flavorRef': flavor}})
        server = self._wait_for_state_change(server, 'VERIFY_RESIZE')
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
        # The image our driver made, which the destination booted from:
        # the guest's disk, taken cold.
        self.assertEqual(1, len(self.images.data), self.images.data)
        (image_id, path), = self.images.data.items()
        check = guest_mod.check_image(path, 'qcow2', g.disks.size)
        self.assertEqual(g.disks.data_sha256, check.data_sha256)
        # NOTE: Nova deletes it once the destination has booted.
        self.assertNotIn(image_id, self.glance.images)
        self.assertEqual('cold', self.images.properties[image_id][
            'snapshot_method'])
        server = self._confirm_resize(server, cross_cell=True)
        self.assertEqual('compute2', server['OS-EXT-SRV-ATTR:host'])
