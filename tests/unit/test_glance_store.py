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
    client = store.client()
    http = client.http_client
    assert isinstance(http.session.auth, generic.Password)
    assert http.session.auth.auth_url == 'http://keystone.example:5000/v3'
    assert http.session.verify == '/etc/ssl/ca.pem'
    assert http.service_type == 'image'
    assert http.region_name == 'RegionTwo'
    assert http.interface == ['internal']
    assert http.connect_retries == 3


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
    assert glance.glance_properties(meta) == {
        'image_type': 'snapshot', 'snapshot_method': 'live',
        'snapshot_reason': 'r' * 255, 'snapshot_quiesced': 'true',
        'instance_uuid': 'u-1', 'source_domain': 'd',
        'base_image_ref': 'b', 'min_ram': '512'}


@pytest.mark.parametrize('details,code', [
    ('415 Unsupported Media Type: bad', 415), ('nothing', None)])
def test_status_code_of_unmapped_errors(details, code):
    assert glance._status_code(
        glance_exc.HTTPException(details=details)) == code


class FakeStore(glance.GlanceStore):
    """Glance answers that a real one does not give: a wrong hash."""

    def __init__(self, conf, image):
        super().__init__(conf, 'glance+http://127.0.0.1:1')
        self.image = image
        self.deleted = []

    def create(self, meta):
        return {'id': self.image['id']}

    def update(self, image_id, meta, image):
        pass

    def upload(self, image_id, body, disk_format):
        assert len(body) == 4
        assert b''.join(body) == b'data'

    def wait_active(self, image_id):
        return self.image

    def delete(self, image_id):
        self.deleted.append(image_id)


def test_hash_mismatch_deletes_the_image(conf, tmp_path):
    store = FakeStore(conf, {'id': 'i-1', 'size': 4, 'status': 'active',
                             'os_hash_algo': 'sha512',
                             'os_hash_value': '00' * 64})
    meta = base.ImageMeta(name='n', disk_format='raw')
    with mock.patch.object(glance.qemu_img, 'info',
                           return_value={'virtual-size': 4}):
        with pytest.raises(exception.StoreWriteFailed) as e:
            with store.begin(meta, workdir=str(tmp_path / 'w')) as p:
                with open(p.path, 'wb') as f:
                    f.write(b'data')
                p.commit()
    assert 'Glance has a different sha512 of image i-1' in str(e.value)
    assert store.deleted == ['i-1']
    assert list((tmp_path / 'w').iterdir()) == []


def test_upload_body_refuses_a_short_file(conf):
    body = glance._UploadBody(glance.GlanceStore(conf, 'glance'),
                              io.BytesIO(b'abc'), 10, None)
    body.CHUNK = 2
    chunks = iter(body)
    assert next(chunks) == b'ab'
    assert next(chunks) == b'c'
    with pytest.raises(exception.StoreWriteFailed) as e:
        next(chunks)
    assert 'the image file ended after 3 of 10 bytes' in str(e.value)
    body.close()
