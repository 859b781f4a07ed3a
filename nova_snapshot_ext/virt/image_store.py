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

"""The image store of the Nova driver: Nova's own image API.

Nova's compute API has already made the image's record when the driver is
called, with the request's credentials in the context. Everything here
goes through ``nova.image.glance.API`` with that context, so the driver
needs no Glance settings of its own: Nova's ``[glance]`` section, its
service catalog handling, TLS and retries serve as they do for Nova's own
driver. The data is read from the local image file while it is hashed.

Deleting the image when the snapshot fails is the compute manager's job
(``delete_image_on_error``); :meth:`NovaPendingImage.abort` only removes
the local file.
"""

from collections.abc import Iterator
import contextlib
import hashlib
import os
from typing import Any, BinaryIO

from nova import exception as nova_exc
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.stores import base
from nova_snapshot_ext.stores import glance as glance_store

LOG = logging.getLogger(__name__)


class _HashingReader:
    """A file object that hashes what is read from it and reports
    progress, for glanceclient's upload.
    """

    def __init__(self, f: BinaryIO, size: int,
                 progress: base.Progress | None) -> None:
        self.f = f
        self.size = size
        self.sent = 0
        self.progress = progress
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.sha256.update(data)
        self.sent += len(data)
        if self.progress is not None and self.size:
            self.progress(min(1.0, self.sent / self.size))
        return data


class NovaPendingImage(base.UploadedImage):
    """The queued record the compute API made, filled through Nova."""

    TMP_PREFIX = 'nova-'

    def __init__(self, store: 'NovaImageStore', meta: base.ImageMeta,
                 image_id: str, workdir: str | None) -> None:
        super().__init__(meta, workdir)
        self.store = store
        self.image_id = image_id
        record = store.record(image_id)
        # NOTE: only a queued record is ours to fill; never overwrite an
        # image that already has data.
        if record.get('status') != 'queued':
            raise exception.ImageNotQueued(image=image_id, store=store,
                                           status=record.get('status'))

    def _metadata(self) -> dict[str, Any]:
        return {'disk_format': self.meta.disk_format,
                'container_format': self.meta.container_format,
                'properties': glance_store.glance_properties(self.meta)}

    def commit(self, progress: base.Progress | None = None
               ) -> base.StoredImage:
        try:
            size = os.path.getsize(self.path)
            with open(self.path, 'rb') as f:
                reader = _HashingReader(f, size, progress)
                image = self.store.update(self.image_id, self._metadata(),
                                          data=reader)
            if reader.sent != size:
                raise exception.StoreWriteFailed(
                    store=self.store, reason='%d of %d bytes were sent' % (
                        reader.sent, size))
            return self._stored(image, self.store.image_url(self.image_id),
                                size, reader.sha256.hexdigest())
        finally:
            self.abort()

    def add_location(self, url: str, store_id: str | None = None
                     ) -> base.StoredImage:
        metadata = self._metadata()
        metadata['location'] = url
        self.store.update(self.image_id, metadata)
        # NOTE: Nova returns the record as it was before the location was
        # added; Glance makes the image active when it adds it.
        image = self.store.get(self.image_id)
        return self._stored(image, url, image.get('size') or 0, None)

    def _stored(self, image: dict[str, Any], location: str, size: int,
                sha256: str | None) -> base.StoredImage:
        if image.get('status') != 'active':
            raise exception.StoreWriteFailed(
                store=self.store, reason='image %s is %s, not active' % (
                    self.image_id, image.get('status')))
        return base.StoredImage(
            id=self.image_id, location=location,
            disk_format=self.meta.disk_format, size=int(size),
            virtual_size=int(image.get('virtual_size') or size),
            sha256=sha256)

    def abort(self) -> None:
        self.remove_file()


class NovaImageStore(base.ImageStore):
    """Images through Nova's image API, with the request's context.

    :param image_api: ``nova.image.glance.API``.
    :param context: the request's ``nova.context.RequestContext``.
    :param container_format: of the instance's image, as Nova keeps it.
    """

    SUPPORTS_LOCATION = True

    def __init__(self, conf: Any, image_api: Any, context: Any,
                 container_format: str = 'bare') -> None:
        super().__init__(conf, 'glance')
        self.image_api = image_api
        self.context = context
        self.container_format = container_format
        self._records: dict[str, dict[str, Any]] = {}

    def __str__(self) -> str:
        return "Nova's image service"

    @contextlib.contextmanager
    def _errors(self, image_id: str | None) -> Iterator[None]:
        """Nova's image exceptions as the engine's."""
        try:
            yield
        except nova_exc.ImageNotFound:
            raise exception.ImageNotFound(image=image_id, store=self)
        except (nova_exc.ImageNotAuthorized, nova_exc.Forbidden) as e:
            raise exception.StoreAuthFailed(store=self, reason=str(e))
        except (nova_exc.ImageQuotaExceeded, nova_exc.Invalid) as e:
            raise exception.StoreRejected(store=self, reason=str(e))
        except nova_exc.GlanceConnectionFailed as e:
            raise exception.StoreUnavailable(store=self, reason=str(e))
        except nova_exc.NovaException as e:
            raise exception.StoreWriteFailed(store=self, reason=str(e))

    # -- the ImageStore interface --------------------------------------
    def check(self) -> None:
        """Nothing to check: the compute API has just used it."""

    def begin(self, meta: base.ImageMeta, image_id: str | None = None,
              workdir: str | None = None) -> NovaPendingImage:
        if image_id is None:
            raise exception.InvalidInput(
                reason='the Nova driver fills the record the compute API '
                       'made; no image id was given')
        meta.container_format = self.container_format
        return NovaPendingImage(self, meta, image_id, workdir)

    def delete(self, image_id: str) -> None:
        try:
            with self._errors(image_id):
                self.image_api.delete(self.context, image_id)
        except exception.ImageNotFound:
            pass

    # -- calls ---------------------------------------------------------
    def get(self, image_id: str, include_locations: bool = False
            ) -> dict[str, Any]:
        with self._errors(image_id):
            return dict(self.image_api.get(
                self.context, image_id,
                include_locations=include_locations))

    def record(self, image_id: str) -> dict[str, Any]:
        """The image's record as it was when first asked for (as the
        compute API made it), read from Glance once.
        """
        if image_id not in self._records:
            self._records[image_id] = self.get(image_id)
        return self._records[image_id]

    def update(self, image_id: str, metadata: dict[str, Any],
               data: Any = None) -> dict[str, Any]:
        with self._errors(image_id):
            return dict(self.image_api.update(
                self.context, image_id, metadata, data, purge_props=False))

    def image_url(self, image_id: str) -> str:
        return 'glance:%s' % image_id

    def image_status(self, image_id: str) -> str | None:
        try:
            return self.get(image_id)['status']
        except exception.ImageNotFound:
            return None

    def image_locations(self, image_id: str) -> list[str]:
        """The URLs of an image's data that Glance shows these
        credentials.
        """
        image = self.get(image_id, include_locations=True)
        return [loc['url'] for loc in image.get('locations') or ()
                if loc.get('url')]

    def stores_detail(self) -> None:
        """Nova's image API does not list Glance's stores: the rbd
        backend finds Glance's pool from ``[snapshot_rbd] glance_pool`` or the
        base image's location, as Nova's own driver does.
        """
        return None
