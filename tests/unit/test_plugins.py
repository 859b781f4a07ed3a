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

"""Plugins load by name, and the directory store is atomic."""

import json
import os
import subprocess

import pytest

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext.backends import qcow2
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import guest
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store
from tests import vendor_plugins


def test_backends_are_entry_points():
    assert {'qcow2', 'raw'} <= set(backend_base.known_backends())


def test_unknown_backend_names_the_known_ones(conf):
    with pytest.raises(exception.UnknownBackend) as e:
        backend_base.load(conf, 'vmdk')
    assert "'vmdk'" in str(e.value)
    assert 'qcow2' in str(e.value) and 'raw' in str(e.value)


def test_load_backend(conf):
    backend = backend_base.load(conf, 'qcow2')
    assert isinstance(backend, qcow2.Qcow2Backend)
    assert isinstance(backend, backend_base.ImageBackend)


def test_a_backend_must_say_what_it_can_do_and_how_it_copies(conf):
    class Incomplete(backend_base.ImageBackend):
        name = 'incomplete'

        def inspect(self, job):
            return backend_base.Support()

    with pytest.raises(TypeError, match='copy'):
        Incomplete(conf)


def test_third_party_backend_through_the_loader(conf):
    mgr = vendor_plugins.backend_manager()
    assert backend_base.known_backends(mgr) == ['vendor']
    backend = backend_base.load(conf, 'vendor', manager=mgr)
    assert isinstance(backend, vendor_plugins.VendorBackend)
    with backend_base.Backends(conf, manager=mgr) as backends:
        assert backends.get('vendor') is backends.get('vendor')
        with pytest.raises(exception.UnknownBackend,
                           match="'qcow2'.*vendor"):
            backends.get('qcow2')


def test_third_party_store_through_the_loader(conf, tmp_path):
    mgr = vendor_plugins.store_manager()
    store = store_base.load(conf, 'vault://%s' % tmp_path, manager=mgr)
    assert isinstance(store, vendor_plugins.VaultStore)
    store.check()
    # A store without locations answers the rbd backend's and gc's
    # questions from the base class, never with AttributeError.
    assert not store.SUPPORTS_LOCATION
    assert store.stores_detail() is None
    assert store.image_locations('x') == []
    # Nor does it hold chains, read back or keep a directory here: it
    # says so, and --incremental, verify and gc ask it.
    assert not store.HOLDS_CHAINS and store.READBACK is None
    assert store.local_directory() is None
    assert store.queued_of_ours() == []
    assert store.deletes_on_failure()
    meta = store_base.ImageMeta(name='n', disk_format='raw')
    with pytest.raises(RuntimeError):
        with store.begin(meta) as pending:
            _write_raw(pending.path)
            raise RuntimeError('conversion failed')
    assert os.listdir(tmp_path) == []
    with pytest.raises(exception.UnknownStore, match='vault'):
        store_base.load(conf, 'file:///x', manager=mgr)


def test_backend_chosen_from_disk():
    assert backend_base.backend_name_for(
        guest.Disk('vda', 'file', '/d', 'qcow2')) == 'qcow2'
    assert backend_base.backend_name_for(
        guest.Disk('vda', 'network', 'p/i', 'raw', 'rbd')) == 'rbd'


def test_unknown_store(conf):
    with pytest.raises(exception.UnknownStore, match='known.*file'):
        store_base.load(conf, 's3://bucket')


@pytest.mark.parametrize('spec', ['file://relative/dir', 'file://'])
def test_file_store_needs_absolute_dir(conf, spec):
    with pytest.raises(exception.InvalidInput, match='absolute'):
        store_base.load(conf, spec)


def test_default_store_is_the_configured_directory(conf, tmp_path):
    store = store_base.load(conf)
    assert isinstance(store, file_store.FileStore)
    assert store.directory == str(tmp_path / 'images')


def _write_raw(path, size=1024 * 1024):
    with open(path, 'wb') as f:
        f.write(b'x' * 4096)
        f.truncate(size)


def test_file_store_commit_is_atomic(conf, tmp_path):
    store = store_base.load(conf, 'file://%s' % (tmp_path / 'img'))
    store.check()
    meta = store_base.ImageMeta(name='n', disk_format='raw',
                                properties={'method': 'live'})
    with store.begin(meta) as pending:
        _write_raw(pending.path)
        # Nothing visible before the commit.
        assert [e for e in os.listdir(store.directory)
                if not e.startswith('.')] == []
        stored = pending.commit()
    assert os.listdir(store.directory) == [stored.id]
    assert stored.reference == stored.location
    with open(os.path.join(store.directory, stored.id,
                           'metadata.json')) as f:
        doc = json.load(f)
    assert doc['method'] == 'live'
    assert doc['size'] == os.path.getsize(stored.location)
    assert doc['virtual_size'] == 1024 * 1024
    out = subprocess.run(['sha256sum', stored.location], check=True,
                         capture_output=True, text=True).stdout
    assert doc['sha256'] == out.split()[0] == stored.sha256
    assert store.list()[0]['id'] == stored.id


def test_file_store_abort_leaves_nothing(conf, tmp_path):
    store = store_base.load(conf, 'file://%s' % (tmp_path / 'img'))
    store.check()
    meta = store_base.ImageMeta(name='n', disk_format='raw')
    with pytest.raises(RuntimeError):
        with store.begin(meta) as pending:
            _write_raw(pending.path)
            raise RuntimeError('conversion failed')
    assert os.listdir(store.directory) == []


def test_file_store_check_fails_on_file(conf, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    store = store_base.load(conf, 'file://%s' % (blocker / 'images'))
    with pytest.raises(exception.StoreUnavailable, match='not writable'):
        store.check()


def test_file_store_rejects_odd_ids(conf, tmp_path):
    store = store_base.load(conf, 'file://%s' % tmp_path)
    meta = store_base.ImageMeta(name='n', disk_format='raw')
    with pytest.raises(exception.InvalidInput, match='not a UUID'):
        store.begin(meta, image_id='../../etc')
