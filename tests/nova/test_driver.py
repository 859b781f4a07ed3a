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

"""``openstack server image create`` through real Nova into the driver.

Nova's API, conductor, scheduler and compute manager are real; the
compute driver is ours, loaded by name as nova.conf names it, through the
module the package installs into ``nova.virt``. Nova's fake libvirt
stands for the hypervisor in Nova's own code (boot, power state); the
snapshot itself runs on a real guest of the stack's libvirtd, defined
with the instance's UUID: a real disk, a real block copy or managed
save, real qemu-img. Nova's in-memory Glance stands for Glance, made to
behave as Glance does for a snapshot (queued until data arrives) and to
keep the data, which the tests read back as the guest would.
"""

import copy
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid

import fixtures
import greenlet

import libvirt
from nova.compute import task_states
from nova import context as nova_context
from nova import exception as nova_exc
from nova import objects
from nova.tests.functional.libvirt import base as libvirt_base
from nova.virt import driver as virt_driver
from nova.virt import fake as fake_virt

from nova_snapshot_ext.storage import rbd as rbd_storage
from nova_snapshot_ext.storage import rbd_location
from nova_snapshot_ext.virt import driver as nse_driver
from tests.functional import ceph_stack
from tests.functional import guest as guest_mod
from tests import polling

DRIVER = 'nova_snapshot_ext.SnapshotLibvirtDriver'
BASE_IMAGE = '2c52bbbc-b3bc-42d7-95ba-748e54e98d91'
QUIESCE_IMAGE = '915b13ce-28f2-40ff-a125-2c359117436d'
#: A snapshot of a live snapshot: os_require_quiesce, and the engine's own
#: properties of that earlier snapshot, which Nova copies into the record
#: of a snapshot of a server booted from it.
SNAPSHOT_IMAGE = 'b0a1f6a2-4d0e-4c55-8f0b-6a7e5d2c9e31'


def _base_image(image_id, name, **properties):
    return {
        'id': image_id, 'name': name, 'status': 'active',
        'container_format': 'bare', 'disk_format': 'qcow2',
        'size': 16 * guest_mod.MiB, 'min_ram': 0, 'min_disk': 0,
        'visibility': 'public', 'protected': False, 'tags': [],
        'properties': dict({'os_type': 'linux'}, **properties),
    }


class _Glance:
    """Nova's in-memory Glance, behaving as Glance does for a snapshot:
    the record the compute API makes is queued, data or a location makes
    it active. Data is kept in ``datadir``, and sized and hashed as
    Glance does (``os_hash_algo`` is Glance's default, sha512).
    """

    def __init__(self, fixture, datadir):
        self.fixture = fixture
        self.datadir = datadir
        self.data = {}
        #: The properties each image had when its data arrived.
        self.properties = {}
        self._create, self._update = fixture.create, fixture.update
        fixture.create, fixture.update = self.create, self.update

    def create(self, context, metadata, data=None):
        props = metadata.get('properties') or {}
        if props.get('image_type') == 'snapshot' and data is None:
            metadata = dict(metadata, status='queued', size=0)
        return self._create(context, metadata, data)

    def update(self, context, image_id, metadata, data=None,
               purge_props=False):
        metadata = copy.deepcopy(metadata)
        if data is not None:
            path = os.path.join(self.datadir, image_id)
            digest = hashlib.sha512()
            with open(path, 'wb') as f:
                for chunk in iter(lambda: data.read(1024 * 1024), b''):
                    digest.update(chunk)
                    f.write(chunk)
            self.data[image_id] = path
            # NOTE: top-level, as Nova's image API passes them on: they
            # are base attributes of Glance's image schema.
            metadata.update(status='active', size=os.path.getsize(path),
                            os_hash_algo='sha512',
                            os_hash_value=digest.hexdigest())
        location = metadata.pop('location', None)
        image = self._update(context, image_id, metadata,
                             purge_props=purge_props)
        if data is not None or location:
            self.properties[image_id] = dict(image.get('properties') or {})
        if location:
            # As Nova's image API does: the location is added after the
            # update, whose record is returned.
            image = copy.deepcopy(image)
            self._update(context, image_id, {
                'status': 'active',
                'locations': [{'url': location, 'metadata': {}}]})
        return image


class DriverTestBase(libvirt_base.ServersTestBase):
    """Real Nova with our driver on compute1, and real guests (see the
    module); the tests are in subclasses.
    """

    microversion = 'latest'
    ADMIN_API = True
    #: compute1's host PCI devices (Nova's fake libvirt's).
    PCI_INFO = None

    def setUp(self):
        # NOTE: the nova wheel installs api-paste.ini under the prefix,
        # where Nova's ConfFixture does not look.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, 'etc', 'nova', 'api-paste.ini'), group='wsgi')
        self.flags(notify_on_state_change='vm_and_task_state',
                   group='notifications')
        super().setUp()
        try:
            self.conn = guest_mod.connect()
        except guest_mod.StackMissing as e:
            self.fail(str(e))
        self.addCleanup(self.conn.close)
        self.workdir = os.path.join(guest_mod.work_root(),
                                    'nova-%s' % uuid.uuid4().hex[:8])
        os.makedirs(self.workdir)
        os.chmod(self.workdir, 0o755)
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.images = _Glance(self.glance, self.workdir)
        self.glance.create(None, _base_image(BASE_IMAGE, 'nse-base'))
        self.glance.create(None, _base_image(
            QUIESCE_IMAGE, 'nse-quiesce', hw_qemu_guest_agent='yes',
            os_require_quiesce='yes'))
        self.glance.create(None, _base_image(
            SNAPSHOT_IMAGE, 'nse-snapshot', hw_qemu_guest_agent='yes',
            os_require_quiesce='yes', snapshot_method='live',
            snapshot_quiesced='true', live_copy_style='backup',
            live_copy_reason='libvirt has the backup API',
            source_domain='instance-00000001'))
        self.start_compute('compute1', pci_info=self.PCI_INFO)
        self.driver = self.computes['compute1'].driver
        # NOTE: the engine's options are on Nova's CONF, which the test
        # case resets after each test.
        self.assertIs(nse_driver.CONF, self.driver.nse_conf)
        self.flags(lock_path=os.path.join(self.workdir, 'locks'),
                   group='oslo_concurrency')
        # NOTE: by default Nova's state_path is its package's directory.
        self.flags(state_path=os.path.join(self.workdir, 'state'))
        self.flags(temp_directory=os.path.join(self.workdir, 'tmp'),
                   lock_path=os.path.join(self.workdir, 'locks'),
                   journal_directory=os.path.join(self.workdir, 'journal'),
                   group='snapshot')
        self.guests = []
        self.addCleanup(self._remove_guests)

    def _setup_compute_service(self):
        self.flags(compute_driver=DRIVER)

    def _clear_attrs(self):
        # NOTE: nova.test.TestCase deletes every public attribute at
        # cleanup, which pytest's unittest support trips over.
        name = self._testMethodName
        keep = {name: self.__dict__[name]} if name in self.__dict__ else {}
        super()._clear_attrs()
        self.__dict__.update(keep)

    def _remove_guests(self):
        for g in self.guests:
            g.remove()

    # -- helpers -------------------------------------------------------
    def _server_with_guest(self, image=BASE_IMAGE, start=True,
                           agent_channel=True, flavor_id=None):
        """A Nova server, and the real guest with its UUID."""
        server = self._create_server(image_uuid=image, networks='none',
                                     flavor_id=flavor_id)
        g = guest_mod.TestGuest(
            self.conn, os.path.join(self.workdir, server['id'][:8]),
            'nova-%s' % server['id'][:8], fmt='qcow2', data_mb=16,
            agent_channel=agent_channel, uuid=server['id'])
        self.guests.append(g)
        if start:
            g.start()
        return server, g

    def _rbd_server_with_guest(self, data_mb, image=BASE_IMAGE):
        """A Nova server whose real guest (not started) has its disk in
        RBD, with Glance's images in the same cluster's pool "images".

        :returns: (Ceph driver, server, guest, disk name in pool "vms").
        """
        conf = self.driver.nse_conf
        ceph_stack.set_rbd_conf(conf)
        self.flags(glance_pool='images', group='snapshot_rbd')
        drv = ceph_stack.driver(conf)
        self.addCleanup(drv.close)
        server = self._create_server(image_uuid=image, networks='none')
        disk = '%s_disk' % server['id']
        g = guest_mod.TestGuest(
            self.conn, os.path.join(self.workdir, 'rbd'),
            'nova-%s' % server['id'][:8], fmt='raw', data_mb=data_mb,
            uuid=server['id'], disks=lambda d, n: ceph_stack.import_disk(
                self.conn, d, 'vms', disk))
        self.guests.append(g)
        self.addCleanup(ceph_stack.remove_disk, 'vms/' + disk)
        return drv, server, g, disk

    def _create_image(self, server, name='snap-1', fails=False):
        """createImage, and wait until Nova is done with it: the end of
        the snapshot, or the compute manager's error (the snapshot runs
        in a task of its own, so the action's event does not show it).
        """
        body = self.api.post_server_action(
            server['id'], {'createImage': {'name': name}})
        self.notifier.wait_for_versioned_notifications(
            'compute.exception' if fails else 'instance.snapshot.end')
        return body['image_id']

    def _snapshot_done(self, server, state):
        """createImage of ``server``, and Nova done with it: the server
        back in ``state`` with no task, the image active.

        :returns: (image id, image).
        """
        image_id = self._create_image(server)
        server = self._wait_for_state_change(server, state)
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        image = self.glance.images[image_id]
        self.assertEqual('active', image['status'])
        return image_id, image

    def _error(self):
        """The payload of Nova's compute.exception notification."""
        errors = [n for n in self.notifier.versioned_notifications
                  if n['event_type'] == 'compute.exception']
        self.assertEqual(1, len(errors))
        return errors[0]['payload']['nova_object.data']

    def _task_states(self, server_id):
        """The task states the instance went through since the compute
        manager took the snapshot on, from Nova's instance.update
        notifications.
        """
        states = []
        for n in self.notifier.versioned_notifications:
            if n['event_type'] != 'instance.update':
                continue
            payload = n['payload']['nova_object.data']
            if payload['uuid'] != server_id:
                continue
            update = payload['state_update']['nova_object.data']
            if update['old_task_state'] != update['new_task_state']:
                states.append(update['new_task_state'])
        return states[states.index(task_states.IMAGE_SNAPSHOT):]


class SnapshotDriverTest(DriverTestBase):

    def test_driver_is_loaded_by_its_nova_conf_name(self):
        self.assertIsInstance(self.driver, nse_driver.SnapshotLibvirtDriver)
        drv = virt_driver.load_compute_driver(fake_virt.FakeVirtAPI(),
                                              DRIVER)
        self.assertIs(nse_driver.SnapshotLibvirtDriver, type(drv))
        # NOTE: the module Nova imports is the one the package installs.
        import nova.virt.nova_snapshot_ext as shim
        self.assertEqual(
            os.path.join('nova', 'virt', 'nova_snapshot_ext',
                         '__init__.py'),
            os.path.join(*shim.__file__.split(os.sep)[-4:]))

    def test_live_snapshot_of_active_server(self):
        server, g = self._server_with_guest()
        before = g.last_counter()
        image_id, image = self._snapshot_done(server, 'ACTIVE')
        props = image['properties']
        self.assertEqual('live', props['snapshot_method'])
        self.assertEqual('qcow2', image['disk_format'])
        # Through a backup job: the qcow2 image streamed into Nova's
        # image API, read ahead by a native thread in this eventlet
        # process.
        self.assertEqual('backup', props['live_copy_style'])
        # The guest ran on, and the image is one point in time of it.
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, g.state())
        self.assertGreater(g.wait_counter(g.last_counter() + 1), before)
        check = guest_mod.check_image(self.images.data[image_id], 'qcow2',
                                      g.disks.size)
        self.assertEqual(g.disks.data_sha256, check.data_sha256)
        self.assertTrue(check.point_in_time, check.counters)
        self.assertGreaterEqual(check.last, before)
        self.assertEqual(os.path.getsize(self.images.data[image_id]),
                         image['size'])

    def test_task_states_in_nova_order(self):
        server, _g = self._server_with_guest()
        self._create_image(server)
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(
            [task_states.IMAGE_SNAPSHOT, task_states.IMAGE_PENDING_UPLOAD,
             task_states.IMAGE_UPLOADING, None],
            self._task_states(server['id']))

    def test_image_properties_as_nova_sets_them(self):
        server, _g = self._server_with_guest()
        image_id = self._create_image(server, name='nightly of web-1')
        image = self.glance.images[image_id]
        props = image['properties']
        self.assertEqual('nightly of web-1', image['name'])
        self.assertEqual('bare', image['container_format'])
        # Set by the compute API on the record it made.
        self.assertEqual('snapshot', props['image_type'])
        self.assertEqual(server['id'], props['instance_uuid'])
        self.assertEqual(BASE_IMAGE, props['base_image_ref'])
        # Set by the driver, as Nova's libvirt driver sets them.
        self.assertEqual('snapshot', props['image_location'])
        self.assertEqual('available', props['image_state'])
        self.assertEqual(server['tenant_id'], props['owner_id'])
        self.assertEqual('linux', props['os_type'])
        self.assertNotIn('kernel_id', props)
        # And what the engine adds: how, and why.
        self.assertIn(props['snapshot_method'], ('live', 'cold'))
        self.assertTrue(props['snapshot_reason'])
        self.assertEqual('false', props['snapshot_quiesced'])

    def test_stopped_server_gets_cold_snapshot(self):
        server, g = self._server_with_guest(start=False)
        server = self._stop_server(server)
        image_id, image = self._snapshot_done(server, 'SHUTOFF')
        self.assertEqual('cold', image['properties']['snapshot_method'])
        self.assertIn('the guest is shutoff',
                      image['properties']['snapshot_reason'])
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF, g.state())
        check = guest_mod.check_image(self.images.data[image_id], 'qcow2',
                                      g.disks.size)
        self.assertEqual(g.disks.data_sha256, check.data_sha256)

    def test_failing_snapshot_deletes_image_and_keeps_server(self):
        # The image asks for a quiesced snapshot; the guest has no agent.
        server, g = self._server_with_guest(image=QUIESCE_IMAGE,
                                            agent_channel=False)
        xml = g.inactive_xml()
        image_id = self._create_image(server, fails=True)

        server = self._wait_for_state_change(server, 'ACTIVE')
        self.assertIsNone(server['OS-EXT-STS:task_state'])
        self.assertNotIn(image_id, self.glance.images)
        error = self._error()
        self.assertEqual('InstanceQuiesceFailed', error['exception'])
        self.assertIn('no QEMU guest agent is connected',
                      error['exception_message'])
        self.assertEqual(
            [task_states.IMAGE_SNAPSHOT, task_states.IMAGE_PENDING_UPLOAD,
             None], self._task_states(server['id']))
        # The compute manager deleted the record: not ours to remember.
        self.assertEqual([], self.driver.nse_records.ids())
        # The guest is as it was.
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, g.state())
        self.assertEqual(xml, g.inactive_xml())
        self.assertEqual({}, g.dom.blockJobInfo('vda', 0))
        self.assertEqual([], os.listdir(os.path.join(self.workdir, 'tmp'))
                         if os.path.isdir(os.path.join(self.workdir, 'tmp'))
                         else [])

    def test_guest_gone_deletes_image(self):
        # No guest on the hypervisor with the instance's UUID: Nova's
        # "instance disappeared during snapshot".
        server = self._create_server(image_uuid=BASE_IMAGE, networks='none')
        body = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap-1'}})
        self._wait_for_instance_action_event(
            server, 'createImage', 'compute_snapshot_instance', 'Success')
        # NOTE: under load the event may be seen a moment before the
        # record's deletion is.
        polling.wait_until(lambda: body['image_id'] not in self.glance.images,
                           10, 0.1, 'the image record was not deleted')
        self.assertNotIn('instance.snapshot.end', [
            n['event_type'] for n in self.notifier.versioned_notifications])

    def test_rbd_disk_direct_snapshot_registers_location(self):
        drv, server, g, disk = self._rbd_server_with_guest(data_mb=16)
        g.start()
        before = g.last_counter()
        image_id, image = self._snapshot_done(server, 'ACTIVE')
        self.addCleanup(drv.remove_image, 'images', image_id)
        self.assertEqual('direct', image['properties']['snapshot_method'])
        self.assertEqual('raw', image['disk_format'])
        location = rbd_location.Location(drv.fsid(), 'images', image_id,
                                         'snap')
        self.assertEqual([location.url],
                         [loc['url'] for loc in image['locations']])
        # No data went through the compute host.
        self.assertNotIn(image_id, self.images.data)
        self.assertEqual(
            [task_states.IMAGE_SNAPSHOT, task_states.IMAGE_PENDING_UPLOAD,
             task_states.IMAGE_UPLOADING, None],
            self._task_states(server['id']))
        # The clone is flattened, the disk keeps no snapshot of ours, and
        # the image is one point in time of the running guest.
        self.assertIsNone(drv.info('images', image_id)['parent'])
        self.assertEqual([], ceph_stack.our_snaps(drv, 'vms', disk))
        self.assertEqual(libvirt.VIR_DOMAIN_RUNNING, g.state())
        path = ceph_stack.export(ceph_stack.ceph_conf(),
                                 'images/%s@snap' % image_id,
                                 os.path.join(self.workdir, 'clone.raw'))
        check = guest_mod.check_image(path, 'raw', g.disks.size)
        self.assertEqual(g.disks.data_sha256, check.data_sha256)
        self.assertTrue(check.point_in_time, check.counters)
        self.assertGreaterEqual(check.last, before)

    def test_engine_options_default_to_novas(self):
        self.flags(snapshots_directory='/srv/nova/snapshots',
                   snapshot_image_format='raw', rbd_user='nova',
                   images_rbd_ceph_conf='/etc/ceph/nova.conf',
                   group='libvirt')
        self.flags(disable_libvirt_livesnapshot=True, group='workarounds')
        nse_driver.CONF.clear_override('temp_directory', group='snapshot')
        conf = nse_driver.engine_conf(nse_driver.CONF, 'qemu:///system')
        # On Nova's own configuration, in groups of the engine's own.
        self.assertIs(nse_driver.CONF, conf)
        self.assertEqual('/srv/nova/snapshots', conf.snapshot.temp_directory)
        self.assertEqual('raw', conf.snapshot.image_format)
        self.assertTrue(conf.snapshot_workarounds.disable_live_snapshot)
        self.assertEqual('/etc/ceph/nova.conf', conf.snapshot_rbd.ceph_conf)
        self.assertEqual('nova', conf.snapshot_rbd.user)
        self.assertEqual('qemu:///system',
                         conf.snapshot_libvirt.connection_uri)
        # The locks and journals are the command line's, not below Nova's
        # state_path: one lock per guest for both.
        for name in ('lock_path', 'journal_directory'):
            nse_driver.CONF.clear_override(name, group='snapshot')
        self.assertEqual('/var/lib/nova-snapshot-ext/locks',
                         conf.snapshot.lock_path)
        self.assertEqual('/var/lib/nova-snapshot-ext/snapshots',
                         conf.snapshot.journal_directory)

        # Nova's values the engine cannot use leave the engine's defaults.
        self.flags(snapshot_image_format='vmdk', images_rbd_ceph_conf='',
                   rbd_user=None, group='libvirt')
        conf = nse_driver.engine_conf(nse_driver.CONF, 'qemu:///system')
        self.assertIsNone(conf.snapshot.image_format)
        self.assertEqual('/etc/ceph/ceph.conf', conf.snapshot_rbd.ceph_conf)
        self.assertEqual('admin', conf.snapshot_rbd.user)

    def test_recovery_at_init_host(self):
        # A journal left by a snapshot killed with an earlier
        # nova-compute: its temporary directory is removed, the journal
        # too; the service starts whatever it finds.
        journals = os.path.join(self.workdir, 'journal')
        os.makedirs(journals)
        scratch = os.path.join(self.workdir, 'tmp', 'snap-killed')
        os.makedirs(scratch)
        with open(os.path.join(journals, 'j.json'), 'w') as f:
            json.dump({'version': 1, 'id': 'j', 'uri': 'qemu:///system',
                       'guest': {'uuid': str(uuid.uuid4()), 'name': 'x'},
                       # A process of this host that no longer runs.
                       'owner': {'pid': 1, 'start': 0,
                                 'host': socket.gethostname()},
                       'store': None,
                       'steps': [{'kind': 'temp_dir', 'path': scratch}]}, f)
        with open(os.path.join(journals, 'bad.json'), 'w') as f:
            f.write('{')
        self.driver.nse_recover()
        self.assertFalse(os.path.exists(scratch))
        self.assertEqual(['bad.json'], os.listdir(journals))

    def test_init_host_refuses_a_lock_path_it_cannot_use(self):
        # nova-compute does not start without its locks, and says why in
        # one line (here the directory is a file; as another user than
        # root, see tests/functional/test_shared_host.py).
        path = os.path.join(self.workdir, 'not-a-directory')
        open(path, 'w').close()
        self.flags(lock_path=path, group='snapshot')
        with self.assertLogs('nova_snapshot_ext.virt.driver', 'ERROR') as log:
            exc = self.assertRaises(nova_exc.InvalidConfiguration,
                                    self.driver.init_host, 'compute1')
        line = ('Invalid input: [snapshot] lock_path: cannot create %s: '
                'File exists' % path)
        self.assertEqual(line, exc.format_message())
        self.assertEqual(['ERROR:nova_snapshot_ext.virt.driver:' + line],
                         log.output)

    def test_engine_options_are_read_from_nova_conf(self):
        # What an operator writes into nova-cpu.conf, read by nova-compute
        # as it reads its own options.
        path = os.path.join(self.workdir, 'nova-cpu.conf')
        with open(path, 'w') as f:
            f.write('[snapshot]\nmethod = cold\n\n'
                    '[snapshot_rbd]\nflatten = deferred\n\n'
                    '[libvirt]\nlive_copy_style = rebase\n')
        nse_driver.CONF(['--config-file', path], project='nova')
        self.addCleanup(nse_driver.CONF.clear)
        conf = nse_driver.engine_conf(nse_driver.CONF, 'qemu:///system')
        self.assertEqual('cold', conf.snapshot.method)
        self.assertEqual('deferred', conf.snapshot_rbd.flatten)
        # The group of earlier releases still works, as a deprecated one.
        self.assertEqual('rebase', conf.snapshot_libvirt.live_copy_style)

    def test_compute_answers_while_a_flatten_runs(self):
        # A direct snapshot's inline flatten copies the whole disk inside
        # Ceph. Meanwhile the compute service must keep answering: here,
        # pause and unpause of another server on the same host.
        spans = []
        flatten = rbd_storage.RBDDriver.flatten

        def timed_flatten(drv, *args, **kwargs):
            start = time.monotonic()
            try:
                return flatten(drv, *args, **kwargs)
            finally:
                spans.append((start, time.monotonic()))

        self.useFixture(fixtures.MonkeyPatch(
            'nova_snapshot_ext.storage.rbd.RBDDriver.flatten',
            timed_flatten))
        other = self._create_server(image_uuid=BASE_IMAGE, networks='none')
        # The guest need not run: the flatten copies what its disk holds.
        drv, server, _g, _disk = self._rbd_server_with_guest(data_mb=256)

        body = self.api.post_server_action(
            server['id'], {'createImage': {'name': 'snap-1'}})
        self.addCleanup(drv.remove_image, 'images', body['image_id'])
        answered = []
        done = 'instance.snapshot.end'
        while done not in [n['event_type'] for n in
                           self.notifier.versioned_notifications]:
            for action, state in (('pause', 'PAUSED'),
                                  ('unpause', 'ACTIVE')):
                self.api.post_server_action(other['id'], {action: None})
                self._wait_for_state_change(other, state)
                answered.append(time.monotonic())

        self.assertEqual('direct', self.glance.images[body['image_id']][
            'properties']['snapshot_method'])
        self.assertEqual(1, len(spans))
        start, end = spans[0]
        self.assertTrue(
            [t for t in answered if start < t < end],
            'no pause or unpause completed during the %.1f s flatten' % (
                end - start))

    # -- Nova's snapshot semantics ---------------------------------------
    def test_stopped_server_with_method_live_and_require_quiesce(self):
        # [snapshot] method = live means live where possible; a stopped
        # guest is not frozen, os_require_quiesce or not: cold, as Nova.
        self.flags(method='live', group='snapshot')
        server, g = self._server_with_guest(image=SNAPSHOT_IMAGE,
                                            start=False)
        server = self._stop_server(server)
        image_id, image = self._snapshot_done(server, 'SHUTOFF')
        props = image['properties']
        self.assertEqual('cold', props['snapshot_method'])
        self.assertIn('a live snapshot was preferred, but the guest is '
                      'shutoff', props['snapshot_reason'])
        self.assertEqual('false', props['snapshot_quiesced'])
        # The base image's live_copy_* (copied by the compute API) do
        # not describe this snapshot: written empty.
        self.assertEqual('', props['live_copy_style'])
        self.assertEqual('', props['live_copy_reason'])
        self.assertEqual(g.name, props['source_domain'])
        self.assertEqual(libvirt.VIR_DOMAIN_SHUTOFF, g.state())

    def test_rbd_direct_snapshot_is_not_quiesced_as_novas(self):
        # os_require_quiesce, no agent: Nova's direct snapshot never
        # quiesces, so it does not fail.
        drv, server, g, _disk = self._rbd_server_with_guest(
            data_mb=16, image=QUIESCE_IMAGE)
        g.start()
        image_id = self._create_image(server)
        self.addCleanup(drv.remove_image, 'images', image_id)

        self._wait_for_state_change(server, 'ACTIVE')
        props = self.glance.images[image_id]['properties']
        self.assertEqual('direct', props['snapshot_method'])
        self.assertEqual('false', props['snapshot_quiesced'])

    def test_snapshot_compression_is_the_default_of_compress(self):
        self.flags(snapshot_compression=True, group='libvirt')
        conf = nse_driver.engine_conf(nse_driver.CONF, 'qemu:///system')
        self.assertTrue(conf.snapshot.compress)

    def _image_of_format(self, fmt, start):
        self.flags(snapshot_image_format=fmt, group='libvirt')
        server, g = self._server_with_guest(start=start)
        if not start:
            server = self._stop_server(server)
        image_id = self._create_image(server)
        image = self.glance.images[image_id]
        self.assertEqual('active', image['status'])
        self.assertEqual(fmt, image['disk_format'])
        path = self.images.data[image_id]
        guest_mod.run('qemu-img', 'check', '-f', fmt, path)
        info = json.loads(guest_mod.run('qemu-img', 'info', '-f', fmt,
                                        '--output=json', path))
        self.assertEqual(fmt, info['format'])
        self.assertEqual(g.disks.size, info['virtual-size'])
        check = guest_mod.check_image(path, fmt, g.disks.size)
        self.assertEqual(g.disks.data_sha256, check.data_sha256)
        return image['properties']

    def test_snapshot_image_format_vmdk_of_a_running_server(self):
        props = self._image_of_format('vmdk', start=True)
        self.assertEqual('live', props['snapshot_method'])

    def test_snapshot_image_format_vdi_of_a_stopped_server(self):
        props = self._image_of_format('vdi', start=False)
        self.assertEqual('cold', props['snapshot_method'])

    def test_snapshot_runs_under_novas_disk_ops_semaphore(self):
        held = []

        class Semaphore:
            def __enter__(self):
                held.append('acquire')

            def __exit__(self, *exc):
                held.append('release')

        self.useFixture(fixtures.MonkeyPatch(
            'nova.compute.utils.disk_ops_semaphore', Semaphore()))
        server, _g = self._server_with_guest()
        self._create_image(server)
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual(['acquire', 'release'], held)

    # -- Nova removing an RBD disk ---------------------------------------
    def test_delete_after_deferred_direct_snapshot_removes_the_disk(self):
        # A deferred flatten leaves the image a clone of the disk's
        # snapshot. Nova's own removal of the disk (here: delete; also
        # shelve-offload) gives up on a disk with snapshots, so the
        # driver makes the image independent first: the disk goes, the
        # image stays whole.
        self.flags(flatten='deferred', group='snapshot_rbd')
        drv, server, g, disk = self._rbd_server_with_guest(data_mb=16)
        image_id = self._create_image(server)
        self.addCleanup(drv.remove_image, 'images', image_id)
        self._wait_for_state_change(server, 'ACTIVE')
        self.assertEqual('direct', self.glance.images[image_id][
            'properties']['snapshot_method'])
        self.assertIsNotNone(drv.info('images', image_id)['parent'])
        self.assertEqual(1, len(ceph_stack.our_snaps(drv, 'vms', disk)))

        self._rbd_instances()
        self._delete_server(server)
        self._assert_disk_gone_image_whole(drv, g, disk, image_id)

    def _rbd_instances(self):
        """compute1's instance disks in the pool "vms" (Nova's options),
        so that Nova removes them there.
        """
        conf = self.driver.nse_conf
        self.flags(images_type='rbd', images_rbd_pool='vms',
                   images_rbd_ceph_conf=conf.snapshot_rbd.ceph_conf,
                   rbd_user=conf.snapshot_rbd.user, group='libvirt')

    def _assert_disk_gone_image_whole(self, drv, g, disk, image_id):
        self.assertFalse(drv.exists('vms', disk))
        self.assertIsNone(drv.info('images', image_id)['parent'])
        path = ceph_stack.export(ceph_stack.ceph_conf(),
                                 'images/%s@snap' % image_id,
                                 os.path.join(self.workdir, 'clone.raw'))
        check = guest_mod.check_image(path, 'raw', g.disks.size)
        self.assertEqual(g.disks.data_sha256, check.data_sha256)

    def _shelve_offload_on_rbd(self, flatten):
        # Shelve, offloaded at once (Nova's default): Nova stops the
        # server, snapshots it through our driver (direct), then removes
        # its disk. Whatever the flatten, the disk goes, the image stays
        # whole and the server unshelves from it.
        self.flags(flatten=flatten, group='snapshot_rbd')
        drv, server, g, disk = self._rbd_server_with_guest(data_mb=16)
        self._rbd_instances()
        server = self._shelve_server(server)
        image_id, = [i for i, image in self.glance.images.items()
                     if image['name'] == server['name'] + '-shelved']
        self.addCleanup(drv.remove_image, 'images', image_id)
        self.assertEqual('direct', self.glance.images[image_id][
            'properties']['snapshot_method'])
        self._assert_disk_gone_image_whole(drv, g, disk, image_id)
        self._unshelve_server(server)

    def test_shelve_offload_on_rbd_inline_flatten_removes_the_disk(self):
        self._shelve_offload_on_rbd('inline')

    def test_shelve_offload_on_rbd_deferred_flatten_removes_the_disk(self):
        self._shelve_offload_on_rbd('deferred')

    # -- a nova-compute that dies during a snapshot ----------------------
    def test_record_left_by_a_dead_compute_is_deleted_at_start(self):
        # The process ends in the middle of the snapshot (here: its
        # greenthread is killed, as at a service stop; SIGKILL runs even
        # less): Nova resets the task state when it starts again, and
        # the driver deletes the record that would stay queued for good.
        server, _g = self._server_with_guest(start=False)
        ctx = nova_context.get_admin_context()
        instance = objects.Instance.get_by_uuid(ctx, server['id'])
        left = self.glance.create(ctx, {
            'name': 'left', 'status': 'queued', 'properties': {
                'image_type': 'snapshot'}})['id']
        done = self.glance.create(ctx, {
            'name': 'done', 'status': 'queued', 'properties': {
                'image_type': 'snapshot'}})['id']

        def dies(*args, **kwargs):
            raise greenlet.GreenletExit()

        with fixtures.MonkeyPatch(
                'nova_snapshot_ext.snapshot.take_snapshot', dies):
            for image_id in (left, done):
                self.assertRaises(greenlet.GreenletExit,
                                  self.driver.snapshot, ctx, instance,
                                  image_id, lambda **kw: None)
        self.assertEqual(sorted([left, done]),
                         self.driver.nse_records.ids())
        # Meanwhile someone else finished "done": it is kept.
        self.glance.update(ctx, done, {'status': 'active'})

        self.restart_compute_service('compute1')

        self.assertNotIn(left, self.glance.images)
        self.assertEqual('active', self.glance.images[done]['status'])
        self.assertEqual([], self.computes['compute1'].driver.nse_records
                         .ids())
