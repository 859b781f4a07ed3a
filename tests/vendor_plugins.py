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

"""A third party's backend and store, written only against the public
interface (``backends.base``, ``backends.steps``, ``stores.base``), as a
plugin author would write them. The tests load them through stevedore
test managers passed into the project's own loaders.
"""

import json
import os
import shutil
import tempfile
import uuid

from stevedore import extension

from nova_snapshot_ext.backends import base as backend_base
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.stores import base as store_base


class VendorBackend(backend_base.ImageBackend):
    """Local files of any format, always copied with the guest's memory
    saved (no live copy).
    """

    name = 'vendor'

    def inspect(self, job):
        if job.disk.source_type != 'file':
            raise exception.UnsupportedDisk(
                guest=job.guest.name, reason='vendor reads files only')
        return backend_base.Support(live=False)

    def copy(self, job, method, out_path, outcome):
        with steps.suspended(job, outcome):
            steps.convert(job, job.disk.path, job.disk.format, out_path)


class VaultPending(store_base.PendingImage):

    def __init__(self, store, meta):
        self.store = store
        self.meta = meta
        self.image_id = str(uuid.uuid4())
        self.tmp = tempfile.mkdtemp(prefix='.vault-', dir=store.directory)
        self.path = os.path.join(self.tmp, 'data')

    def commit(self, progress=None):
        final = os.path.join(self.store.directory, self.image_id)
        with open(os.path.join(self.tmp, 'meta.json'), 'w') as f:
            json.dump({'name': self.meta.name,
                       'format': self.meta.disk_format,
                       'properties': self.meta.properties}, f)
        os.rename(self.tmp, final)
        size = os.path.getsize(os.path.join(final, 'data'))
        return store_base.StoredImage(
            id=self.image_id, location=final,
            disk_format=self.meta.disk_format, size=size,
            virtual_size=size, sha256=None)

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class VaultStore(store_base.ImageStore):
    """``vault:///abs/dir``: one directory per image."""

    def __init__(self, conf, spec):
        super().__init__(conf, spec)
        self.directory = spec.split('://', 1)[1]

    def check(self):
        if not os.path.isdir(self.directory):
            raise exception.StoreUnavailable(store=self,
                                             reason='no such directory')

    def begin(self, meta, image_id=None, workdir=None):
        return VaultPending(self, meta)

    def delete(self, image_id):
        shutil.rmtree(os.path.join(self.directory, image_id),
                      ignore_errors=True)


def backend_manager():
    return extension.ExtensionManager.make_test_instance(
        [extension.Extension('vendor', None, VendorBackend, None)])


def store_manager():
    return extension.ExtensionManager.make_test_instance(
        [extension.Extension('vault', None, VaultStore, None)])
