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

"""The rbd backend's decisions, without a cluster: RBD locations, QEMU
options, which Glance store a direct snapshot goes to and why not, and
the location API of a Glance older than v2.17.
"""

import types
from unittest import mock

from glanceclient import exc as glance_exc
import pytest

from nova_snapshot_ext.backends import rbd as rbd_backend
from nova_snapshot_ext import exception
from nova_snapshot_ext import policy
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.storage import rbd as rbd_storage
from nova_snapshot_ext.storage import rbd_connection
from nova_snapshot_ext.storage import rbd_location
from nova_snapshot_ext.stores import glance

FSID = '1e321b40-5d00-436c-b8e0-d3d1311caaba'
OTHER = '2f432c51-6e11-547d-c9f1-e4e2422dbbcb'


def test_location_round_trip():
    loc = rbd_location.Location(FSID, 'images', 'a/b c', 'snap')
    assert loc.url == 'rbd://%s/images/a%%2Fb%%20c/snap' % FSID
    assert rbd_location.Location.parse(loc.url) == loc


@pytest.mark.parametrize('url', [
    None, '', 'file:///x', 'rbd://%s/images/img' % FSID,
    'rbd://%s/images//snap' % FSID, 'rbd://%s/a/b/c/d' % FSID + '/e'])
def test_location_parse_refuses_incomplete_urls(url):
    assert rbd_location.Location.parse(url) is None


def test_qemu_image_opts_name_the_format_and_escape_commas(conf):
    conf.set_override('ceph_conf', '/etc/ceph/a,b.conf', group='snapshot_rbd')
    conf.set_override('user', 'nova', group='snapshot_rbd')
    opts = rbd_location.qemu_image_opts(conf, 'raw', 'vms', 'd', 'nse-1')
    assert opts == ('driver=raw,file.driver=rbd,file.pool=vms,'
                    'file.image=d,file.snapshot=nse-1,file.user=nova,'
                    'file.conf=/etc/ceph/a,,b.conf')
    cmd = qemu_img.convert_cmd(conf, opts, 'raw', '/tmp/out', 'qcow2',
                               image_opts=True)
    assert '--image-opts' in cmd and '-f' not in cmd
    # The options must say the format the caller claims: no guessing.
    with pytest.raises(exception.InvalidInput):
        qemu_img.convert_cmd(conf, opts, 'qcow2', '/tmp/out', 'raw',
                             image_opts=True)


def test_a_clone_of_our_clone_is_not_ours():
    meta = {rbd_backend.META_CLONE: 'images/abc'}
    assert rbd_backend.is_our_clone('images', 'abc', meta)
    assert rbd_backend.is_our_clone('images', 'abc' +
                                    rbd_backend.TO_BE_DELETED, meta)
    # librbd copied the metadata into a guest's disk cloned from it.
    assert not rbd_backend.is_our_clone('vms', 'abc', meta)
    assert not rbd_backend.is_our_clone('images', 'abc_disk', meta)
    assert not rbd_backend.is_our_clone('images', 'abc', {})


class FakeStore:
    SUPPORTS_LOCATION = True

    def __init__(self, stores, locations=()):
        self.stores = stores
        self.locations = list(locations)

    def __str__(self):
        return 'Glance at http://g'

    def stores_detail(self):
        return self.stores

    def image_locations(self, image_id):
        return self.locations


def rbd_store(store_id='rbd1', fsid=FSID, pool='images', default=True):
    s = {'id': store_id, 'type': 'rbd',
         'properties': {'pool': pool, 'fsid': fsid}}
    if default:
        s['default'] = 'true'
    return s


FILE = {'id': 'file1', 'type': 'file', 'properties': {}}


def make_job(store, disk_format='raw', image_format='raw', metadata=None):
    return types.SimpleNamespace(
        store=store, guest=types.SimpleNamespace(name='g'),
        disk=types.SimpleNamespace(format=disk_format, path='vms/d'),
        image_format=image_format,
        request=types.SimpleNamespace(metadata=metadata or {}))


@pytest.fixture
def backend(conf):
    b = rbd_backend.RbdBackend(conf)
    b.driver = types.SimpleNamespace(fsid=lambda: FSID)
    return b


def test_target_is_glance_default_rbd_store(backend):
    job = make_job(FakeStore([FILE, rbd_store()]))
    assert backend.target(job) == rbd_backend.Target('images', FSID, 'rbd1')
    assert backend.direct_unavailable(job) is None


@pytest.mark.parametrize('stores,conf_store,reason', [
    ([FILE], '', 'Glance has no rbd store (its stores: file1)'),
    ([rbd_store(fsid=OTHER)], '',
     "Glance's rbd store rbd1 is in Ceph cluster %s, the disk in %s" % (
         OTHER, FSID)),
    ([rbd_store('a', default=False), rbd_store('b', default=False)], '',
     'Glance has several rbd stores (a, b); set [snapshot_rbd] glance_store'),
    ([FILE, rbd_store()], 'file1',
     "Glance store 'file1' is a file store, not rbd"),
    ([rbd_store()], 'ceph2',
     "Glance has no store 'ceph2' ([snapshot_rbd] glance_store); it has rbd1"),
])
def test_why_no_direct_snapshot(backend, conf, stores, conf_store, reason):
    conf.set_override('glance_store', conf_store, group='snapshot_rbd')
    assert backend.direct_unavailable(make_job(FakeStore(stores))) == reason


def test_named_store_among_several(backend, conf):
    conf.set_override('glance_store', 'b', group='snapshot_rbd')
    job = make_job(FakeStore([rbd_store('a'), rbd_store('b', pool='p2',
                                                        default=False)]))
    assert backend.target(job) == rbd_backend.Target('p2', FSID, 'b')


@pytest.mark.parametrize('job_kwargs,reason', [
    ({'disk_format': 'qcow2'},
     'the disk is qcow2, and only raw RBD images are cloned into Glance'),
    ({'image_format': 'qcow2'},
     'a qcow2 image was asked for, and a direct snapshot is raw'),
])
def test_formats_that_cannot_be_cloned(backend, job_kwargs, reason):
    job = make_job(FakeStore([rbd_store()]), **job_kwargs)
    assert backend.direct_unavailable(job) == reason


def test_direct_snapshot_can_be_switched_off(backend, conf):
    conf.set_override('direct_snapshot', False, group='snapshot_rbd')
    job = make_job(FakeStore([rbd_store()]))
    assert backend.direct_unavailable(job) == (
        '[snapshot_rbd] direct_snapshot is off')


def test_a_store_without_locations(backend):
    store = FakeStore([])
    store.SUPPORTS_LOCATION = False
    assert backend.direct_unavailable(make_job(store)) == (
        'the image store Glance at http://g takes uploads only; a direct '
        'snapshot needs Glance with an rbd store')


def test_hidden_stores_use_the_base_image_location(backend, conf):
    base_url = rbd_location.Location(FSID, 'glance-pool', 'base', 'snap').url
    other = rbd_location.Location(OTHER, 'far', 'base', 'snap').url
    job = make_job(FakeStore(None, [other, base_url]),
                   metadata={'base_image_ref': 'base'})
    assert backend.target(job) == rbd_backend.Target('glance-pool', FSID,
                                                     None)
    # Without a base image in this cluster, only the configuration tells.
    job = make_job(FakeStore(None, [other]),
                   metadata={'base_image_ref': 'base'})
    assert 'set [snapshot_rbd] glance_pool' in backend.direct_unavailable(job)
    conf.set_override('glance_pool', 'images', group='snapshot_rbd')
    conf.set_override('glance_store', 'rbd1', group='snapshot_rbd')
    assert backend.target(job) == rbd_backend.Target('images', FSID, 'rbd1')


def test_fallback_reason_names_the_direct_path():
    facts = policy.Facts(
        guest='g', hypervisor='QEMU', libvirt_version=(9, 0, 0),
        qemu_version=(7, 2, 0), min_libvirt_version=(0,),
        min_qemu_version=(0,), power_state=policy.RUNNING, backend='rbd',
        backend_supports_direct=True,
        direct_unavailable='Glance has no rbd store')
    plan = policy.choose(facts)
    assert plan.method == policy.LIVE
    assert plan.reason.startswith('no direct snapshot: Glance has no rbd '
                                  'store; ')
    # A cold snapshot asked for is not a fallback.
    assert policy.choose(facts, policy.COLD).reason == (
        'a cold snapshot was requested')


def test_location_patch_on_a_glance_without_the_location_api(conf):
    # A Glance older than API v2.17 (glanceclient checks the version).
    store = glance.GlanceStore(conf, 'glance+http://127.0.0.1:9')
    client = mock.Mock()
    client.images.add_image_location.side_effect = (
        glance_exc.HTTPNotImplemented('not supported'))
    store.api._client = client
    store.api.add_location('id-1', 'rbd://f/p/i/snap', 'rbd1')
    client.images.add_location.assert_called_once_with(
        'id-1', 'rbd://f/p/i/snap', {'store': 'rbd1'})


def test_missing_ceph_conf_is_one_line(conf, tmp_path):
    conf.set_override('ceph_conf', str(tmp_path / 'none.conf'),
                      group='snapshot_rbd')
    with pytest.raises(exception.CephUnavailable) as e:
        rbd_storage.RBDDriver(conf).fsid()
    assert str(e.value) == (
        'Cannot use Ceph as client.admin with %s: %s does not exist. Check '
        '[snapshot_rbd] ceph_conf, user and the keyring.' % (
            tmp_path / 'none.conf', tmp_path / 'none.conf'))


def test_missing_bindings_are_one_line(conf, tmp_path, monkeypatch):
    # Debian's python3-rados and python3-rbd are installed here; a host
    # without them is simulated.
    conf_file = tmp_path / 'ceph.conf'
    conf_file.write_text('[global]\n')
    conf.set_override('ceph_conf', str(conf_file), group='snapshot_rbd')
    monkeypatch.setattr(rbd_connection, 'rados', rbd_connection._Missing())
    monkeypatch.setattr(rbd_connection, 'rbd', rbd_connection._Missing())
    with pytest.raises(exception.CephUnavailable) as e:
        rbd_storage.RBDDriver(conf).exists('vms', 'disk')
    assert 'the rados and rbd Python modules are not installed' in str(
        e.value)
