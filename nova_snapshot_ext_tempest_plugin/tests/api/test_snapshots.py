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


"""Snapshots taken by the nova-snapshot-ext compute driver, through the
Compute and Image APIs.

Options: ``[nova_snapshot_ext] live_snapshot`` and ``rbd_direct`` say what
the compute hosts are set up to do; ``[compute-feature-enabled] snapshot``
and ``[service_available] glance`` must be on.
"""

import time

from tempest.api.compute import base
from tempest.common import waiters
from tempest import config
from tempest.lib.common.utils import data_utils
from tempest.lib import decorators
from tempest.lib import exceptions as lib_exc

CONF = config.CONF

#: ``OS-EXT-STS:power_state`` of a running server (Nova's RUNNING).
POWER_STATE_RUNNING = 1
#: Seconds between two looks at the server while its snapshot is saved.
POLL_INTERVAL = 0.5
#: The values of the image property ``snapshot_method``.
SNAPSHOT_METHODS = ('live', 'cold', 'direct')
#: Methods that leave the server running.
LIVE_METHODS = ('live', 'direct')
#: Glance image states after which an image never becomes active.
FAILED_IMAGE_STATES = ('killed', 'deleted', 'pending_delete')


class SnapshotTestBase(base.BaseV2ComputeTest):
    """A server of the class, and snapshots of it read through Glance."""

    create_default_network = True

    @classmethod
    def skip_checks(cls):
        super(SnapshotTestBase, cls).skip_checks()
        if not CONF.service_available.glance:
            raise cls.skipException(
                '%s skipped: Glance is not available' % cls.__name__)
        if not CONF.compute_feature_enabled.snapshot:
            raise cls.skipException(
                '%s skipped: server snapshots are not enabled' %
                cls.__name__)

    #: The availability zone of the server; None: the default one.
    availability_zone = None

    @classmethod
    def resource_setup(cls):
        super(SnapshotTestBase, cls).resource_setup()
        kwargs = {}
        if cls.availability_zone:
            kwargs['availability_zone'] = cls.availability_zone
        cls.server_id = cls.create_test_server(wait_until='ACTIVE',
                                               **kwargs)['id']

    def start_snapshot(self):
        """Ask Nova for a snapshot of the server; return the image id.

        The image is deleted when the class is done.
        """
        body = self.create_image_from_server(self.server_id)
        if 'image_id' in body:
            # Compute API microversion 2.45 and later.
            return body['image_id']
        return data_utils.parse_image_id(body.response['location'])

    def snapshot_gone(self, image_id):
        """Fail the test: Nova deleted the image of a failed snapshot."""
        server = self.servers_client.show_server(self.server_id)['server']
        self.fail('Image %s of the snapshot of server %s is gone; the '
                  'server has fault %s' %
                  (image_id, self.server_id, server.get('fault')))

    def wait_snapshot(self, image_id):
        """Wait for the image to be active and the server to be done with
        the snapshot; return the image as Glance shows it.
        """
        try:
            waiters.wait_for_image_status(self.images_client, image_id,
                                          'active')
        except lib_exc.NotFound:
            self.snapshot_gone(image_id)
        waiters.wait_for_server_status(self.servers_client, self.server_id,
                                       'ACTIVE')
        return self.images_client.show_image(image_id)

    def assert_running(self, server, context):
        """The server is ACTIVE, its vm_state active, and it runs."""
        state = '%s: status %s, vm_state %s, power_state %s, task_state %s' % (
            context, server.get('status'), server.get('OS-EXT-STS:vm_state'),
            server.get('OS-EXT-STS:power_state'),
            server.get('OS-EXT-STS:task_state'))
        self.assertEqual('ACTIVE', server.get('status'), state)
        self.assertEqual('active', server.get('OS-EXT-STS:vm_state'), state)
        self.assertEqual(POWER_STATE_RUNNING,
                         server.get('OS-EXT-STS:power_state'), state)


class SnapshotsTest(SnapshotTestBase):
    """Snapshots of a running server: never paused, and their image."""

    @decorators.attr(type='slow')
    @decorators.idempotent_id('2a4e2d2d-98a6-472c-90ca-aef7bbf28be6')
    def test_live_snapshot_never_pauses_server(self):
        """The server stays ACTIVE and running while its image is saved"""
        if not CONF.nova_snapshot_ext.live_snapshot:
            raise self.skipException(
                'Snapshots are not live: [nova_snapshot_ext] live_snapshot')
        image_id = self.start_snapshot()
        image_states = []
        start = time.time()
        while True:
            server = self.servers_client.show_server(self.server_id)['server']
            self.assert_running(server, 'image states so far %s' %
                                image_states)
            try:
                status = self.images_client.show_image(image_id)['status']
            except lib_exc.NotFound:
                self.snapshot_gone(image_id)
            if not image_states or image_states[-1] != status:
                image_states.append(status)
            if status == 'active':
                break
            if status in FAILED_IMAGE_STATES:
                self.fail('Image %s of the snapshot went %s (states %s)' %
                          (image_id, status, image_states))
            if time.time() - start >= self.images_client.build_timeout:
                raise lib_exc.TimeoutException(
                    'Image %s of the snapshot not active within %s s '
                    '(states %s)' % (image_id,
                                     self.images_client.build_timeout,
                                     image_states))
            time.sleep(POLL_INTERVAL)

        server = self.servers_client.show_server(self.server_id)['server']
        self.assert_running(server, 'image active')
        image = self.wait_snapshot(image_id)
        # A cold snapshot can pause the guest between two looks, and Nova
        # does not sync the power state of a server with a task: the
        # method the driver recorded says how the snapshot was taken.
        self.assertIn(image.get('snapshot_method'), LIVE_METHODS)

    @decorators.attr(type='smoke')
    @decorators.idempotent_id('cf9c1387-03cd-48f1-ab1d-3660db4ccecf')
    def test_snapshot_image_properties(self):
        """The snapshot image has the properties of the driver and Nova"""
        image_id = self.start_snapshot()
        image = self.wait_snapshot(image_id)
        project_id = self.os_primary.credentials.project_id

        self.assertEqual('snapshot', image.get('image_type'))
        self.assertEqual(self.server_id, image.get('instance_uuid'))
        self.assertIn(image.get('snapshot_method'), SNAPSHOT_METHODS)
        reason = image.get('snapshot_reason')
        self.assertIsInstance(reason, str)
        self.assertNotEqual('', reason.strip())
        self.assertEqual('snapshot', image.get('image_location'))
        self.assertEqual(project_id, image.get('owner_id'))
        self.assertEqual(project_id, image.get('owner'))

        server = self.servers_client.show_server(self.server_id)['server']
        self.assertEqual('ACTIVE', server['status'])


class DirectSnapshotsAdminTest(SnapshotTestBase):
    """Direct RBD snapshots: their image is an rbd:// location."""

    credentials = ['primary', 'admin']

    @classmethod
    def skip_checks(cls):
        super(DirectSnapshotsAdminTest, cls).skip_checks()
        if not CONF.nova_snapshot_ext.rbd_direct:
            raise cls.skipException(
                '%s skipped: snapshots are not direct RBD clones: '
                '[nova_snapshot_ext] rbd_direct' % cls.__name__)

    @classmethod
    def resource_setup(cls):
        cls.availability_zone = CONF.nova_snapshot_ext.rbd_availability_zone
        super(DirectSnapshotsAdminTest, cls).resource_setup()

    @classmethod
    def setup_clients(cls):
        super(DirectSnapshotsAdminTest, cls).setup_clients()
        cls.admin_images_client = cls.os_admin.image_client_v2

    @decorators.attr(type='smoke')
    @decorators.idempotent_id('e78a850d-5203-40bd-a9c1-3f24f3323f6c')
    def test_direct_snapshot_rbd_location(self):
        """A direct snapshot's image data is an RBD snapshot in Glance"""
        image_id = self.start_snapshot()
        image = self.wait_snapshot(image_id)
        self.assertEqual('direct', image.get('snapshot_method'))

        admin_image = self.admin_images_client.show_image(image_id)
        urls = [loc.get('url')
                for loc in admin_image.get('locations') or ()]
        urls.append(admin_image.get('direct_url'))
        urls = [url for url in urls if url]
        if not urls:
            raise self.skipException(
                'Glance shows no location of image %s, not even to an '
                'admin (show_image_direct_url and show_multiple_locations '
                'are off)' % image_id)
        rbd_urls = [url for url in urls if url.startswith('rbd://')]
        self.assertNotEqual([], rbd_urls,
                            'no rbd:// URL among %s' % urls)
        for url in rbd_urls:
            # rbd://FSID/POOL/IMAGE/SNAPSHOT
            parts = url[len('rbd://'):].split('/')
            self.assertEqual(4, len(parts), url)
            self.assertNotIn('', parts, url)
        server = self.servers_client.show_server(self.server_id)['server']
        self.assertEqual('ACTIVE', server['status'])
