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

"""The Glance store without a Glance: configuration, properties, and the
faults a real Glance cannot be made to show.
"""

import hashlib
import io
from unittest import mock

from glanceclient import exc as glance_exc
from keystoneauth1.identity import generic
from oslo_config import cfg
import pytest

from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.stores import base
from nova_snapshot_ext.stores import glance
from nova_snapshot_ext.stores import glance_errors
from nova_snapshot_ext.stores import image_api
from nova_snapshot_ext.stores import image_calls
from nova_snapshot_ext.stores import upload_body


def make_conf(tmp_path, text=''):
    path = tmp_path / 'nse.conf'
    path.write_text(text)
    c = cfg.ConfigOpts()
    nse_conf.register_opts(c)
    c(['--config-file', str(path)], default_config_files=[],
      default_config_dirs=[])
    c.set_override('state_path', str(tmp_path))
    return c


@pytest.fixture
def conf(tmp_path):
    return make_conf(tmp_path)


def test_glance_is_a_store_plugin(conf):
    store = base.load(conf, 'glance+http://127.0.0.1:9292/')
    assert isinstance(store, glance.GlanceStore)
    assert store.endpoint == 'http://127.0.0.1:9292'
    assert str(store) == 'Glance at http://127.0.0.1:9292'
    assert base.load(conf, 'glance').endpoint is None


@pytest.mark.parametrize('spec', ['glance+ftp://h', 'glance+http://',
                                  'glance:x'])
def test_bad_specs(conf, spec):
    with pytest.raises(exception.UnknownStore) as e:
        base.load(conf, spec)
    assert 'glance+http://HOST:PORT' in str(e.value)


def test_no_endpoint_and_no_auth_is_one_clear_error(conf):
    with pytest.raises(exception.StoreUnavailable) as e:
        base.load(conf, 'glance').check()
    assert 'no endpoint: set [snapshot_glance] auth_type' in str(e.value)


def test_password_auth_is_keystoneauths_own(tmp_path):
    conf = make_conf(tmp_path, """
[snapshot_glance]
auth_type = password
auth_url = http://keystone.example:5000/v3
username = nova
password = secret
user_domain_name = Default
project_name = service
project_domain_name = Default
region_name = RegionTwo
valid_interfaces = internal
cafile = /etc/ssl/ca.pem
""")
    store = base.load(conf, 'glance')
    # The upload's adapter is glanceclient's: same session, same options.
    adapter = store.api.adapter()
    assert store.api.client().http_client.session is adapter.session
    assert isinstance(adapter.session.auth, generic.Password)
    assert adapter.session.auth.auth_url == 'http://keystone.example:5000/v3'
    assert adapter.session.verify == '/etc/ssl/ca.pem'
    for a in (adapter, store.api.client().http_client):
        assert a.service_type == 'image'
        assert a.region_name == 'RegionTwo'
        assert a.interface == ['internal']
        assert a.connect_retries == 0
    assert adapter.session.timeout == 60


def test_image_url_is_the_adapters_endpoint(conf):
    store = base.load(conf, 'glance+http://127.0.0.1:9292/')
    assert (store.api.image_url('i-1')
            == 'http://127.0.0.1:9292/v2/images/i-1')


def test_incomplete_auth_names_what_is_missing(tmp_path):
    conf = make_conf(tmp_path, '[snapshot_glance]\nauth_type = password\n')
    with pytest.raises(exception.InvalidInput) as e:
        base.load(conf, 'glance').check()
    assert ('[snapshot_glance] auth_type password needs auth_url'
            in str(e.value))


def test_properties_are_strings_nova_names():
    meta = base.ImageMeta(name='n', disk_format='qcow2', properties={
        'method': 'live', 'reason': 'r' * 300, 'quiesced': True,
        'source_uuid': 'u-1', 'source_domain': 'd', 'base_image_ref': 'b',
        'min_ram': 512, 'unset': None})
    assert image_calls.glance_properties(meta) == {
        'image_type': 'snapshot', 'snapshot_method': 'live',
        'snapshot_reason': 'r' * 255, 'snapshot_quiesced': 'true',
        'instance_uuid': 'u-1', 'source_domain': 'd',
        'base_image_ref': 'b', 'min_ram': '512',
        'live_copy_style': '', 'live_copy_reason': ''}


def test_own_properties_are_always_written():
    # NOTE: a cold snapshot's record may hold an earlier live snapshot's
    # live_copy_* (Nova copies the instance's image properties into it):
    # they are written empty, not left to describe this one.
    meta = base.ImageMeta(name='n', disk_format='raw', properties={
        'method': 'cold', 'live_copy_style': None})
    props = image_calls.glance_properties(meta)
    for name in image_calls.OWN_PROPERTIES:
        assert name in props
    assert props['live_copy_style'] == ''
    assert props['live_copy_reason'] == ''
    assert props['snapshot_method'] == 'cold'


@pytest.mark.parametrize('details,code', [
    ('415 Unsupported Media Type: bad', 415), ('nothing', None)])
def test_status_code_of_unmapped_errors(details, code):
    assert glance_errors.status_code(
        glance_exc.HTTPException(details=details)) == code


class FakeAPI(image_calls.ImageAPI):
    """Glance in memory, with answers a real one does not give: a wrong
    hash, a wrong size, none at all.
    """

    def __init__(self, creates_records=True, deletes_on_failure=True,
                 **after_upload):
        self.creates_records = creates_records
        self.deletes_on_failure = deletes_on_failure
        self.hash_in_threads = deletes_on_failure
        self.images = {}
        self.after_upload = after_upload
        self.calls = []

    def __str__(self):
        return 'Fake Glance'

    def get(self, image_id):
        if image_id not in self.images:
            raise exception.ImageNotFound(image=image_id, store=self)
        return dict(self.images[image_id])

    def create(self, attrs):
        self.calls.append(('create', attrs))
        image = dict(attrs, id='0f6c8e2e-4bd8-4c1f-9d4b-1d8f1c3c0a11',
                     status='queued', size=None)
        self.images[image['id']] = image
        return dict(image)

    def update(self, image_id, changes):
        self.calls.append(('update', changes))
        self.images[image_id].update(changes)
        return self.get(image_id)

    def upload(self, image_id, body, disk_format):
        data = b''.join(body)
        self.calls.append(('upload', len(body)))
        self.images[image_id].update(
            {'status': 'active', 'size': len(data),
             'os_hash_algo': 'sha512',
             'os_hash_value': hashlib.sha512(data).hexdigest()},
            **self.after_upload)

    def add_location(self, image_id, url, store_id):
        self.calls.append(('add_location', url, store_id))
        self.images[image_id].update(status='active', size=7,
                                     locations=[{'url': url}])

    def delete(self, image_id):
        self.calls.append(('delete', image_id))
        self.get(image_id)
        del self.images[image_id]

    def stores_detail(self):
        return None

    def image_url(self, image_id):
        return 'fake:' + image_id


class FakeStore(image_api.APIImageStore):

    def check(self):
        pass


def fake_store(conf, **kwargs):
    return FakeStore(conf, 'fake', FakeAPI(**kwargs))


def snapshot(store, tmp_path, data=b'data', image_id=None):
    meta = base.ImageMeta(name='n', disk_format='raw',
                          properties={'method': 'live'})
    with mock.patch.object(image_api.qemu_img, 'info',
                           return_value={'virtual-size': 4096}):
        with store.begin(meta, image_id, str(tmp_path / 'w')) as p:
            with open(p.path, 'wb') as f:
                f.write(data)
            return p.commit()


def test_commit_checks_and_reports_what_glance_made(conf, tmp_path):
    store = fake_store(conf)
    stored = snapshot(store, tmp_path)
    assert stored.sha256 == hashlib.sha256(b'data').hexdigest()
    # A raw image's virtual size is its size.
    assert (stored.size, stored.virtual_size) == (4, 4)
    assert stored.location == 'fake:' + stored.id
    image = store.api.images[stored.id]
    assert image['status'] == 'active' and image['name'] == 'n'
    assert image['snapshot_method'] == 'live'
    assert image['image_type'] == 'snapshot'
    assert [c[0] for c in store.api.calls] == ['create', 'upload']
    assert list((tmp_path / 'w').iterdir()) == []


def test_glances_virtual_size_wins(conf, tmp_path):
    stored = snapshot(fake_store(conf, virtual_size=8192), tmp_path)
    assert stored.virtual_size == 8192


@pytest.mark.parametrize('deletes', [True, False])
@pytest.mark.parametrize('after,message', [
    ({'os_hash_value': '00' * 64},
     'Glance has a different sha512 of image'),
    ({'size': 3}, 'has 3 bytes, 4 were sent'),
    ({'status': 'killed'}, 'is killed after the upload')])
def test_bad_upload_fails_and_deletes_where_the_api_says(
        conf, tmp_path, deletes, after, message):
    store = fake_store(conf, deletes_on_failure=deletes, **after)
    record = store.api.create({'name': 'made before'})
    store.api.calls.clear()
    with pytest.raises(exception.StoreWriteFailed) as e:
        snapshot(store, tmp_path, image_id=record['id'])
    assert message in str(e.value)
    assert (record['id'] not in store.api.images) == deletes
    assert list((tmp_path / 'w').iterdir()) == []


def test_no_hash_is_said_once(conf, tmp_path, caplog):
    store = fake_store(conf, os_hash_algo=None, os_hash_value=None)
    snapshot(store, tmp_path)
    assert [r.levelname for r in caplog.records
            if 'reports no hash' in r.getMessage()] == ['WARNING']


def test_only_a_queued_record_is_filled_and_it_is_kept(conf, tmp_path):
    store = fake_store(conf)
    record = store.api.create({'name': 'done'})
    store.api.images[record['id']]['status'] = 'active'
    with pytest.raises(exception.ImageNotQueued):
        snapshot(store, tmp_path, image_id=record['id'])
    assert store.api.images[record['id']]['status'] == 'active'
    assert ('delete', record['id']) not in store.api.calls


def test_no_record_without_create(conf):
    store = fake_store(conf, creates_records=False)
    with pytest.raises(exception.InvalidInput) as e:
        store.begin(base.ImageMeta(name='n', disk_format='raw'))
    assert 'no image id was given' in str(e.value)


def test_location_completes_the_record(conf):
    store = fake_store(conf)
    with store.begin(base.ImageMeta(name='n', disk_format='raw')) as p:
        p.meta.properties['quiesced'] = True
        stored = p.add_location('rbd://f/images/i/snap', 'ceph')
    assert (stored.size, stored.virtual_size, stored.sha256) == (7, 7, None)
    assert store.api.calls[1:] == [
        ('update', {'snapshot_quiesced': 'true'}),
        ('add_location', 'rbd://f/images/i/snap', 'ceph')]
    assert store.image_locations(stored.id) == ['rbd://f/images/i/snap']
    assert store.image_status(stored.id) == 'active'
    assert store.image_status('gone') is None


def test_upload_body_refuses_a_short_file():
    body = upload_body.UploadBody('Glance', io.BytesIO(b'abc'), 10, None)
    body.CHUNK = 2
    chunks = iter(body)
    assert next(chunks) == b'ab'
    assert next(chunks) == b'c'
    with pytest.raises(exception.StoreWriteFailed) as e:
        next(chunks)
    assert 'the image file ended after 3 of 10 bytes' in str(e.value)
    body.close()


@pytest.mark.parametrize('threads', [True, False])
def test_upload_body_reads_as_a_file_to_its_end(threads):
    body = upload_body.UploadBody('Glance', io.BytesIO(b'abcdef'), 5,
                                  None, threads=threads)
    assert [body.chunk(2), body.chunk(-1), body.chunk(2)] == [
        b'ab', b'cde', b'']
    assert body.hexdigest('sha256') == hashlib.sha256(b'abcde').hexdigest()
    body.close()


def test_the_record_makers_image_type_stays(conf, tmp_path):
    # As Nova's compute API makes the record for
    # "openstack server image create --property image_type=test".
    store = fake_store(conf, creates_records=False)
    record = store.api.create({'name': 'n', 'image_type': 'test'})
    stored = snapshot(store, tmp_path, image_id=record['id'])
    image = store.api.images[stored.id]
    assert image['image_type'] == 'test'
    assert image['snapshot_method'] == 'live'
