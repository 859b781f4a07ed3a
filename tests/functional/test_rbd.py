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

"""The rbd backend against a real Ceph (one mon, one memstore OSD), real
Glance 33 with an rbd store on that cluster, and a real guest whose disk
is an RBD image in the ``vms`` pool, written to while it is snapshotted.
"""

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import threading
import time
import uuid

import libvirt
import pytest
import rbd

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext.backends import rbd as rbd_backend
from nova_snapshot_ext.backends import rbd_gc
from nova_snapshot_ext.cleanup import gc as gc_mod
from nova_snapshot_ext import exception
from nova_snapshot_ext import explain
from nova_snapshot_ext.storage import rbd_location
from nova_snapshot_ext.stores import glance as glance_store
from tests.functional import ceph_stack
from tests.functional import glance_stack
from tests.functional import guest as guest_mod
from tests.functional.test_snapshot import assert_guest_as_before
from tests.functional.test_snapshot import assert_no_temp_files
from tests.functional.test_snapshot import GuestBefore
from tests.functional.test_snapshot import take

VMS, IMAGES = 'vms', 'images'


@pytest.fixture(scope='module')
def ceph_glance():
    """The stack's Glance whose default store is rbd on the main cluster;
    every caller is a service user.
    """
    try:
        return glance_stack.endpoint('ceph')
    except guest_mod.StackMissing as e:
        pytest.fail(str(e))


@pytest.fixture
def rconf(conf):
    ceph_stack.set_rbd_conf(conf)
    return conf


@pytest.fixture
def drv(rconf):
    d = ceph_stack.driver(rconf)
    yield d
    d.close()


@pytest.fixture(scope='module')
def rbd_guest(conn, workroot):
    name = 'rbd-%s' % uuid.uuid4().hex[:6]
    path = os.path.join(workroot, name)
    g = guest_mod.TestGuest(
        conn, path, name, fmt='raw',
        disks=lambda d, n: ceph_stack.import_disk(conn, d, VMS, n))
    g.start()
    yield g
    g.remove()
    ceph_stack.remove_disk(g.disks.path)
    shutil.rmtree(path, ignore_errors=True)


def disk_name(g) -> str:
    return g.disks.path.split('/', 1)[1]


class StateWatch:
    """Samples the guest's state while a snapshot runs."""

    def __init__(self, g):
        self.g = g
        self.states = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.states.add(self.g.dom.state()[0])
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def our_clones(drv, pool=IMAGES) -> set[str]:
    """Images in ``pool`` that carry the backend's metadata."""
    found = set()
    for name in drv.images(pool):
        with contextlib.suppress(exception.RbdFailed):
            if rbd_backend.is_our_clone(pool, name,
                                        drv.info(pool, name)['metadata']):
                found.add(name)
    return found


def assert_nothing_left(drv, g, url, images_before, clones_before,
                        headers=None):
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == []
    assert our_clones(drv) == clones_before
    assert set(glance_stack.image_ids(url, headers)) == images_before


def assert_one_point_in_time(path, g):
    check = guest_mod.check_image(path, 'raw', g.disks.size)
    assert check.data_sha256 == g.disks.data_sha256
    assert check.point_in_time, check.counters
    assert check.last > 0


def sha256(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


# -- direct ------------------------------------------------------------
def test_check_says_direct_for_the_ceph_glance_only(rconf, ceph_glance,
                                                    glance_url, rbd_guest,
                                                    host):
    direct = explain.check(rconf, host, rbd_guest.name,
                           'glance+' + ceph_glance)['guests'][0]
    assert (direct['backend'], direct['method']) == ('rbd', 'direct')
    elsewhere = explain.check(rconf, host, rbd_guest.name,
                              'glance+' + glance_url)['guests'][0]
    assert elsewhere['method'] == 'live'
    assert elsewhere['reason'].startswith('no direct snapshot: ')


def test_direct_snapshot_of_running_guest(rconf, drv, ceph_glance, rbd_guest,
                                          conn, workdir):
    g = rbd_guest
    before = GuestBefore(g)
    with StateWatch(g) as watch:
        result = take(rconf, g, store='glance+' + ceph_glance)
    assert watch.states == {libvirt.VIR_DOMAIN_RUNNING}
    assert result.method == 'direct', result.reason
    assert result.backend == 'rbd' and result.downtime == 0
    image_id = result.image_id
    fsid = drv.fsid()
    url = rbd_location.Location(fsid, IMAGES, image_id, 'snap').url
    assert result.location == url

    image = glance_stack.client(ceph_glance).images.get(image_id)
    assert image['status'] == 'active'
    assert image['disk_format'] == 'raw' == result.format
    assert image['size'] == g.disks.size == result.size
    assert image['direct_url'] == url
    assert image['stores'] == 'rbd1'
    assert image['snapshot_method'] == 'direct'
    assert image['instance_uuid'] == g.dom.UUIDString()

    # The clone is standalone, Glance's "snap" is protected, and the
    # guest's disk keeps no snapshot of ours.
    info = drv.info(IMAGES, image_id)
    assert info['parent'] is None
    assert [(s.name, s.protected) for s in drv.snaps(IMAGES, image_id)] == [
        ('snap', True)]
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == []
    assert_guest_as_before(g, before)

    # One point in time, and Glance serves the same bytes.
    exported = ceph_stack.export(ceph_stack.ceph_conf(),
                                 '%s/%s@snap' % (IMAGES, image_id),
                                 os.path.join(workdir, 'export.raw'))
    assert_one_point_in_time(exported, g)
    downloaded = os.path.join(workdir, 'download.raw')
    glance_stack.download(ceph_glance, image_id, downloaded)
    assert sha256(downloaded) == sha256(exported)
    os.unlink(downloaded)

    # A new guest booted from the image (a clone of it, as Nova boots
    # one) reads exactly that data.
    boot_name = 'boot-%s' % uuid.uuid4().hex[:6]
    drv.clone(IMAGES, image_id, 'snap', VMS, guest_mod.PREFIX + boot_name)
    try:
        booted = guest_mod.TestGuest(
            conn, os.path.join(workdir, 'boot'), boot_name,
            disks=ceph_stack.network_disks(conn, g.disks, VMS,
                                           guest_mod.PREFIX + boot_name),
            readback=True)
        try:
            booted.start()
            assert booted.readback() == guest_mod.readback_of(
                exported, g.disks.size)
        finally:
            booted.remove()
    finally:
        drv.remove_image(VMS, guest_mod.PREFIX + boot_name)
    glance_stack.delete(ceph_glance, image_id)
    assert not drv.exists(IMAGES, image_id)
    assert_no_temp_files(rconf)


def test_deferred_flatten_then_gc(rconf, drv, ceph_glance, rbd_guest,
                                  workdir):
    g = rbd_guest
    rconf.set_override('flatten', 'deferred', group='snapshot_rbd')
    with backend_base.Backends(rconf) as backends:
        result = take(rconf, g, store='glance+' + ceph_glance,
                      backends=backends)
        # A service keeps the backend and its Ceph connection for the
        # next snapshot, until it closes them.
        kept = backends.get('rbd')
        assert kept.driver.connected
    assert not kept.driver.connected
    assert result.method == 'direct', result.reason
    image_id = result.image_id
    snap = rbd_backend.snap_name(image_id)
    image = glance_stack.client(ceph_glance).images.get(image_id)
    assert image['status'] == 'active'
    # Active at once, still a clone of the disk's snapshot.
    assert drv.info(IMAGES, image_id)['parent'] == (VMS, disk_name(g), snap)
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == [snap]

    store = glance_store.GlanceStore(rconf, 'glance+' + ceph_glance)
    planned = gc_mod.collect_garbage(rconf, store, dry_run=True,
                                     min_age=3600)
    mine = [(a.verb, a.target) for a in planned
            if image_id in a.target]
    assert mine == [
        (rbd_gc.FLATTEN, '%s/%s' % (IMAGES, image_id)),
        (rbd_gc.REMOVE_SNAP, '%s/%s@%s' % (VMS, disk_name(g), snap))]
    assert drv.info(IMAGES, image_id)['parent'] is not None

    done = gc_mod.collect_garbage(rconf, store, min_age=3600)
    assert not [a for a in done if a.error]
    assert drv.info(IMAGES, image_id)['parent'] is None
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == []
    assert glance_stack.client(ceph_glance).images.get(image_id)[
        'status'] == 'active'
    exported = ceph_stack.export(ceph_stack.ceph_conf(),
                                 '%s/%s@snap' % (IMAGES, image_id),
                                 os.path.join(workdir, 'export.raw'))
    assert_one_point_in_time(exported, g)
    glance_stack.delete(ceph_glance, image_id)


# -- fallback ----------------------------------------------------------
@pytest.fixture(scope='module')
def file_glance(glance_instances):
    """A Glance with a file store only, that shows its stores."""
    return glance_instances('rbd-file', GLANCE_FLAVOR='service')


def test_fallback_to_export_with_a_file_store_glance(
        rconf, drv, file_glance, rbd_guest, workdir, caplog):
    g = rbd_guest
    before = GuestBefore(g)
    caplog.set_level(logging.WARNING)
    with StateWatch(g) as watch:
        result = take(rconf, g, store='glance+' + file_glance)
    assert watch.states == {libvirt.VIR_DOMAIN_RUNNING}
    assert result.method == 'live'
    assert result.downtime == 0
    assert result.reason.startswith(
        'no direct snapshot: Glance has no rbd store (its stores: file1)')
    assert result.reason in caplog.text
    image = glance_stack.client(file_glance).images.get(result.image_id)
    assert image['status'] == 'active' and image['stores'] == 'file1'
    assert image['snapshot_method'] == 'live'
    assert image['snapshot_reason'] == result.reason[:255]
    path = os.path.join(workdir, 'download.raw')
    glance_stack.download(file_glance, result.image_id, path)
    assert sha256(path) == result.sha256
    assert_one_point_in_time(path, g)
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == []
    assert_guest_as_before(g, before)
    assert_no_temp_files(rconf)


@pytest.fixture(scope='module')
def other_cluster(glance_instances):
    """A second Ceph cluster, and a Glance whose rbd store is there."""
    try:
        ceph_stack.ceph_sh('up', 'other')
        yield glance_instances(
            'rbd-other', GLANCE_FLAVOR='service',
            GLANCE_CEPH_CONF=ceph_stack.ceph_conf('other'))
    finally:
        ceph_stack.ceph_sh('down', 'other')


def test_fsid_mismatch_falls_back_to_export(rconf, drv, other_cluster,
                                            rbd_guest, workdir):
    g = rbd_guest
    theirs = ceph_stack.ceph(ceph_stack.ceph_conf('other'), 'fsid')
    ours = drv.fsid()
    assert theirs != ours
    result = take(rconf, g, store='glance+' + other_cluster)
    assert result.method == 'live'
    assert ("Glance's rbd store rbd1 is in Ceph cluster %s, the disk in %s"
            % (theirs, ours)) in result.reason
    image = glance_stack.client(other_cluster).images.get(result.image_id)
    assert image['status'] == 'active' and image['stores'] == 'rbd1'
    path = os.path.join(workdir, 'download.raw')
    glance_stack.download(other_cluster, result.image_id, path)
    assert_one_point_in_time(path, g)
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == []


# -- failures ----------------------------------------------------------
def test_interrupted_flatten_leaves_nothing(rconf, drv, ceph_glance,
                                            rbd_guest):
    g = rbd_guest
    before = GuestBefore(g)
    images_before = set(glance_stack.image_ids(ceph_glance))
    clones_before = our_clones(drv)
    seen = []

    def progress(stage, fraction):
        if stage == 'copy' and 0 < fraction < 1:
            seen.append(fraction)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        take(rconf, g, store='glance+' + ceph_glance, progress=progress)
    assert seen, 'the flatten never reported progress'
    assert_nothing_left(drv, g, ceph_glance, images_before, clones_before)
    assert_guest_as_before(g, before)


@pytest.fixture(scope='module')
def member_glance(glance_instances):
    """Glance with the rbd store, for callers without the service role."""
    return glance_instances('rbd-member', GLANCE_FLAVOR='trusted',
                            GLANCE_CEPH_CONF=ceph_stack.ceph_conf())


def test_refused_location_falls_back_and_leaves_nothing(
        rconf, drv, member_glance, rbd_guest, workdir):
    g = rbd_guest
    headers = glance_stack.MEMBER_HEADERS
    # A member cannot see Glance's stores: the pool comes from the
    # configuration, and Glance refuses the rbd location to a member.
    rconf.set_override('glance_pool', IMAGES, group='snapshot_rbd')
    store = glance_store.GlanceStore(
        rconf, 'glance+' + member_glance,
        session=glance_stack.session(member_glance, headers))
    clones_before = our_clones(drv)
    result = take(rconf, g, store=store)
    assert result.method == 'live'
    assert result.reason.startswith(
        'no direct snapshot: Glance refused to register the RBD location '
        '(HTTP 403')
    assert ceph_stack.our_snaps(drv, VMS, disk_name(g)) == []
    # The uploaded image is Glance's own RBD image, not a clone of ours.
    assert our_clones(drv) == clones_before
    assert glance_stack.image_ids(member_glance, headers) == [
        result.image_id]
    image = glance_stack.client(member_glance, headers).images.get(
        result.image_id)
    assert image['status'] == 'active' and image['stores'] == 'rbd1'
    path = os.path.join(workdir, 'download.raw')
    glance_stack.download(member_glance, result.image_id, path, headers)
    assert_one_point_in_time(path, g)


@pytest.fixture(scope='module')
def stoppable_glance(glance_instances):
    return glance_instances('rbd-stop', GLANCE_FLAVOR='service',
                            GLANCE_CEPH_CONF=ceph_stack.ceph_conf())


def test_glance_down_before_the_location_leaves_nothing(
        rconf, drv, stoppable_glance, rbd_guest):
    g = rbd_guest
    before = GuestBefore(g)
    clones_before = our_clones(drv)
    timers = []

    def progress(stage, fraction):
        if stage == 'copy' and fraction == 1.0 and not timers:
            # The clone is made and flattened: Glance goes away, and comes
            # back after keystoneauth's connection retries gave up.
            glance_stack.glance_sh('stop', 'rbd-stop')
            timers.append(threading.Timer(
                8, glance_stack.glance_sh, ('restart', 'rbd-stop')))
            timers[0].start()

    try:
        with pytest.raises(exception.StoreUnavailable):
            take(rconf, g, store='glance+' + stoppable_glance,
                 progress=progress)
    finally:
        for t in timers:
            t.join()
    assert timers, 'the snapshot never reached the location step'
    assert_nothing_left(drv, g, stoppable_glance, set(), clones_before)
    assert_guest_as_before(g, before)


# -- gc ----------------------------------------------------------------
def cluster_state(drv):
    """Every image and snapshot (with protection and parent) of both
    pools.
    """
    state = {}
    for pool in (VMS, IMAGES):
        for name in drv.images(pool):
            info = drv.info(pool, name)
            state['%s/%s' % (pool, name)] = (
                info['parent'],
                sorted((s.name, s.protected) for s in drv.snaps(pool, name)))
    return state


def test_gc_clears_planted_leftovers_and_ignores_foreign_images(
        rconf, drv, ceph_glance, tmp_path):
    tag = uuid.uuid4().hex[:6]
    disk = 'nse-gc-%s' % tag
    with drv.ioctx(VMS) as ctx:
        rbd.RBD().create(ctx, disk, 8 << 20, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING)
    with drv.image(VMS, disk) as img:
        img.write(os.urandom(4 << 20), 0)
    # Ours: an interrupted direct snapshot (protected snapshot, marked
    # clone, no Glance image) ...
    lost = str(uuid.uuid4())
    drv.create_snap(VMS, disk, rbd_backend.snap_name(lost), protect=True)
    drv.clone(VMS, disk, rbd_backend.snap_name(lost), IMAGES, lost)
    drv.set_metadata(IMAGES, lost, {
        rbd_backend.META_CLONE: '%s/%s' % (IMAGES, lost),
        rbd_backend.META_IMAGE_ID: lost})
    # ... a clone marked for removal, which a guest was cloned from ...
    doomed_id = str(uuid.uuid4())
    doomed = doomed_id + rbd_backend.TO_BE_DELETED
    drv.create_snap(VMS, disk, rbd_backend.snap_name(doomed_id),
                    protect=True)
    drv.clone(VMS, disk, rbd_backend.snap_name(doomed_id), IMAGES, doomed)
    drv.set_metadata(IMAGES, doomed, {
        rbd_backend.META_CLONE: '%s/%s' % (IMAGES, doomed_id),
        rbd_backend.META_IMAGE_ID: doomed_id,
        rbd_backend.META_DELETE: 'true'})
    drv.create_snap(IMAGES, doomed, 'snap', protect=True)
    # (librbd copies the doomed clone's metadata into this one: it must
    # not be taken for ours.)
    child = 'child-%s' % tag
    drv.clone(IMAGES, doomed, 'snap', VMS, child)
    assert rbd_backend.META_DELETE in drv.info(VMS, child)['metadata']
    with drv.image(VMS, child, read_only=True) as img:
        child_data = hashlib.sha256(img.read(0, 8 << 20)).hexdigest()
    # ... and an export's snapshot.
    export_snap = rbd_backend.snap_name(str(uuid.uuid4()))
    drv.create_snap(VMS, disk, export_snap)
    # Not ours: a Glance-made image, a user's snapshot and its clone, an
    # unmarked image with our suffix, a snapshot that only looks like ours.
    foreign_image = str(uuid.uuid4())
    with drv.ioctx(IMAGES) as ctx:
        rbd.RBD().create(ctx, foreign_image, 1 << 20, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING)
    drv.create_snap(IMAGES, foreign_image, 'snap', protect=True)
    drv.create_snap(VMS, disk, 'mysnap', protect=True)
    drv.clone(VMS, disk, 'mysnap', VMS, 'user-clone-%s' % tag)
    foreign_doomed = 'x%s%s' % (tag, rbd_backend.TO_BE_DELETED)
    drv.clone(VMS, disk, 'mysnap', IMAGES, foreign_doomed)
    drv.create_snap(VMS, disk, 'nse-not-a-uuid')
    foreign = {'%s/%s' % (IMAGES, foreign_image),
               '%s/user-clone-%s' % (VMS, tag),
               '%s/%s' % (IMAGES, foreign_doomed)}

    conf_file = tmp_path / 'nse.conf'
    conf_file.write_text('[snapshot_rbd]\nceph_conf = %s\n' %
                         ceph_stack.ceph_conf())
    base = [sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
            '--config-file', str(conf_file), 'gc',
            '--store', 'glance+' + ceph_glance]
    try:
        state = cluster_state(drv)
        dry = guest_mod.run(*base, '--dry-run', '--min-age', '0')
        assert cluster_state(drv) == state, 'a dry run changed something'
        for line in (
                'would flatten %s/%s: it is a clone of %s/%s@snap, which is '
                'removed' % (VMS, child, IMAGES, doomed),
                'would remove image %s/%s: marked for removal after a '
                'failed snapshot' % (IMAGES, doomed),
                'would remove image %s/%s: image %s is not in Glance' % (
                    IMAGES, lost, lost),
                'would remove snapshot %s/%s@%s: left by a snapshot '
                'interrupted' % (VMS, disk, export_snap)):
            assert line in dry, dry
        # Young leftovers of unknown state wait for gc_min_age.
        kept = guest_mod.run(*base, '--dry-run')
        assert 'keep %s/%s@%s: its snapshot may still be running' % (
            VMS, disk, export_snap) in kept

        out = guest_mod.run(*base, '--min-age', '0')
        assert 'FAILED' not in out
        after = cluster_state(drv)
        assert not drv.exists(IMAGES, lost)
        assert not drv.exists(IMAGES, doomed)
        assert after['%s/%s' % (VMS, child)][0] is None
        with drv.image(VMS, child, read_only=True) as img:
            assert hashlib.sha256(img.read(0, 8 << 20)).hexdigest() == \
                child_data
        assert sorted(s.name for s in drv.snaps(VMS, disk)) == [
            'mysnap', 'nse-not-a-uuid']
        for name in foreign:
            assert after[name] == state[name], name
        again = guest_mod.run(*base, '--min-age', '0')
        for name in (lost, doomed, export_snap, child):
            assert name not in again, again
    finally:
        for pool, name in ((VMS, child), (VMS, 'user-clone-%s' % tag),
                           (IMAGES, foreign_doomed),
                           (IMAGES, foreign_image), (IMAGES, lost),
                           (IMAGES, doomed), (VMS, disk)):
            with contextlib.suppress(exception.SnapshotError):
                drv.flatten(pool, name)
                drv.remove_image(pool, name)
