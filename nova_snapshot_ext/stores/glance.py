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

"""The Glance store: images streamed into Glance with python-glanceclient.

``spec`` is ``glance`` (Glance as ``[snapshot_glance]`` configures it:
keystoneauth auth and the service catalog, or ``endpoint_override``) or
``glance+http://HOST:PORT`` / ``glance+https://...`` (that endpoint, with
``[snapshot_glance]``'s auth if any, none otherwise: a Glance without
Keystone).

The record is made when the snapshot begins (or, for Nova, found queued),
so that Glance validates name and properties before the guest is touched.
The data is streamed from the local image file in chunks while its hashes
are computed, and Glance's own hash is checked against them at the end.
From the moment the record exists until the image is active, any failure
deletes it.
"""

from collections.abc import Iterator
from concurrent import futures
import contextlib
import hashlib
import os
import re
import time
from typing import Any, BinaryIO

import glanceclient
from glanceclient import exc as glance_exc
from keystoneauth1 import adapter as ks_adapter_base
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1.loading import adapter as ks_adapter
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.conf import glance as glance_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext import retry
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base

LOG = logging.getLogger(__name__)

GROUP = glance_conf.GROUP
#: Glance's limit on the length of a property value.
MAX_PROPERTY_LENGTH = 255
#: Properties of the engine's ImageMeta, as Glance names them.
PROPERTY_NAMES = {
    'method': 'snapshot_method',
    'reason': 'snapshot_reason',
    'quiesced': 'snapshot_quiesced',
    'source_domain': 'source_domain',
    'source_uuid': 'instance_uuid',
}
#: How many seconds abort() keeps trying to reach Glance to delete a
#: failed image when Glance went away mid-upload.
CLEANUP_TIMEOUT = 30


def glance_properties(meta: base.ImageMeta) -> dict[str, str]:
    """The image properties Glance gets for ``meta``: those Nova sets on
    a snapshot, the engine's own, and the caller's, all as strings.
    """
    props = {'image_type': 'snapshot'}
    for key, value in meta.properties.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        props[PROPERTY_NAMES.get(key, key)] = str(
            value)[:MAX_PROPERTY_LENGTH]
    return props


def _one_line(e: BaseException) -> str:
    text = getattr(e, 'details', None) or str(e) or type(e).__name__
    return ' '.join(str(text).split())


def _status_code(e: glance_exc.HTTPException) -> int | None:
    """The HTTP status of ``e``. glanceclient has classes for some codes
    only; for the others (415 among them) the code leads the details.
    """
    code = getattr(e, 'code', None)
    if isinstance(code, int):
        return code
    match = re.match(r'\s*(\d{3})\b', str(getattr(e, 'details', '')))
    return int(match.group(1)) if match else None


def _http_reason(e: glance_exc.HTTPException, code: int | None) -> str:
    details = _one_line(e)
    if code is None or details.startswith(str(code)):
        return 'HTTP %s' % details
    return 'HTTP %s %s' % (code, details)


class _UploadBody:
    """The body of the upload: the image file in chunks, with its length
    (so the request has a Content-Length), hashed and reported as it goes.

    Each chunk is hashed in worker threads while the previous one is sent
    (hashlib releases the GIL), one thread per algorithm. The image must
    be exactly ``size`` bytes: a file that ends early is an error, not a
    short image. Close it to stop the threads.
    """

    ALGORITHMS = ('sha256', 'sha512')
    CHUNK = 1024 * 1024

    def __init__(self, store: 'GlanceStore', f: BinaryIO, size: int,
                 progress: base.Progress | None) -> None:
        self.store = store
        self.f = f
        self.size = size
        self.sent = 0
        self.progress = progress
        self.hashes = {name: hashlib.new(name) for name in self.ALGORITHMS}
        self._pool = futures.ThreadPoolExecutor(
            max_workers=len(self.ALGORITHMS),
            thread_name_prefix='upload-hash')
        self._hashing: list[futures.Future] = []

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self.size:
            yield self._read(min(self.CHUNK, self.size - self.sent))

    def _read(self, n: int) -> bytes:
        # NOTE: private: an object with read() is sent as a file would be,
        # in small blocks, by urllib3.
        # NOTE: an OSError raised here would reach the caller disguised by
        # requests as a connection error; raise our own instead.
        try:
            data = self.f.read(n)
        except OSError as e:
            raise exception.StoreWriteFailed(
                store=self.store, reason='cannot read the image file: %s' %
                                         (e.strerror or e))
        if not data:
            raise exception.StoreWriteFailed(
                store=self.store,
                reason='the image file ended after %d of %d bytes' % (
                    self.sent, self.size))
        # NOTE: the previous chunk must be hashed before this one starts.
        self._wait()
        self._hashing = [self._pool.submit(h.update, data)
                         for h in self.hashes.values()]
        self.sent += len(data)
        if self.progress is not None and self.size:
            self.progress(min(1.0, self.sent / self.size))
        return data

    def _wait(self) -> None:
        for future in self._hashing:
            future.result()
        self._hashing = []

    def hexdigest(self, name: str) -> str:
        self._wait()
        return self.hashes[name].hexdigest()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class GlancePendingImage(base.UploadedImage):

    TMP_PREFIX = 'glance-'

    def __init__(self, store: 'GlanceStore', meta: base.ImageMeta,
                 image_id: str | None, workdir: str | None) -> None:
        super().__init__(meta, workdir)
        self.store = store
        self.image_id: str | None = None
        #: The record as Glance last returned it.
        self.record: dict[str, Any] = {}
        try:
            if image_id is None:
                self.record = store.create(meta)
            else:
                self.record = store.get(image_id)
                # NOTE: only a queued record is ours to fill, and to
                # delete on failure; never touch an active image.
                if self.record['status'] != 'queued':
                    raise exception.ImageNotQueued(
                        image=image_id, store=store,
                        status=self.record['status'])
            self.image_id = self.record['id']
        except BaseException:
            self.abort()
            raise

    def commit(self, progress: base.Progress | None = None
               ) -> base.StoredImage:
        try:
            stored = self._commit(progress)
        except BaseException:
            self.abort()
            raise
        # NOTE: the local file was only the upload's source.
        self.remove_file()
        return stored

    def add_location(self, url: str, store_id: str | None = None
                     ) -> base.StoredImage:
        """Register ``url`` as the image's data; Glance makes the image
        active (and computes its hash in the background).

        A failure does not abort the image: a refused location leaves the
        record queued, for the caller to fill otherwise or abort.
        """
        store, image_id = self.store, self.image_id
        assert image_id is not None
        self.record = store.update(image_id, self.meta, self.record)
        store.add_location(image_id, url, store_id)
        image = store.wait_active(image_id)
        size = image.get('size') or 0
        return base.StoredImage(
            id=image_id, location=url, disk_format=self.meta.disk_format,
            size=int(size),
            virtual_size=int(image.get('virtual_size') or size),
            sha256=None)

    def _commit(self, progress: base.Progress | None) -> base.StoredImage:
        store, image_id = self.store, self.image_id
        assert image_id is not None
        self.record = store.update(image_id, self.meta, self.record)
        size = os.path.getsize(self.path)
        started = time.monotonic()
        with open(self.path, 'rb') as f, contextlib.closing(
                _UploadBody(store, f, size, progress)) as reader:
            store.upload(image_id, reader, self.meta.disk_format)
        seconds = time.monotonic() - started
        LOG.info('Uploaded %(size)d bytes to image %(id)s in %(s).1f s',
                 {'size': size, 'id': image_id, 's': seconds})
        image = store.wait_active(image_id)
        if image.get('size') != size:
            raise exception.StoreWriteFailed(
                store=store, reason='image %s has %s bytes, %d were sent' % (
                    image_id, image.get('size'), size))
        if store.conf[GROUP].verify_hash:
            self._verify_hash(image, reader)
        virtual_size = image.get('virtual_size')
        if not virtual_size:
            # NOTE: Glance fills it in for the formats it inspects.
            virtual_size = qemu_img.info(store.conf, self.path,
                                         self.meta.disk_format)[
                'virtual-size']
        return base.StoredImage(
            id=image_id,
            location=store.image_url(image_id),
            disk_format=self.meta.disk_format,
            size=size,
            virtual_size=int(virtual_size),
            sha256=reader.hexdigest('sha256'))

    def _verify_hash(self, image: dict[str, Any],
                     reader: _UploadBody) -> None:
        algo, value = image.get('os_hash_algo'), image.get('os_hash_value')
        if not algo or not value:
            LOG.warning('Glance reports no hash for image %s; its data '
                        'cannot be verified', image['id'])
            return
        if algo in reader.ALGORITHMS:
            ours = reader.hexdigest(algo)
        else:
            with open(self.path, 'rb') as f:
                ours = hashlib.file_digest(f, algo).hexdigest()
        if ours != value:
            raise exception.StoreWriteFailed(
                store=self.store,
                reason='Glance has a different %s of image %s than the '
                       'data sent: %s, not %s' % (algo, image['id'], value,
                                                  ours))

    def abort(self) -> None:
        self.remove_file()
        if self.image_id is not None:
            image_id, self.image_id = self.image_id, None
            self.store.delete_failed(image_id)


class GlanceStore(base.ImageStore):
    """Images in Glance (image API v2).

    Data is uploaded, or registered as a location in one of Glance's
    stores (:meth:`GlancePendingImage.add_location`).

    :param session: a keystoneauth session to use instead of one built
        from ``[snapshot_glance]`` (the Nova driver passes the request's).
    """

    SUPPORTS_LOCATION = True

    def __init__(self, conf: cfg.ConfigOpts, spec: str,
                 session: ks_session.Session | None = None) -> None:
        super().__init__(conf, spec)
        self.endpoint: str | None = None
        if spec != 'glance':
            scheme, sep, rest = spec.partition('://')
            if scheme not in ('glance+http', 'glance+https') or not rest:
                raise exception.UnknownStore(
                    spec=spec, known='glance, glance+http://HOST:PORT, '
                                     'glance+https://HOST:PORT')
            self.endpoint = '%s://%s' % (scheme.split('+', 1)[1],
                                         rest.rstrip('/'))
        self._session = session
        self._client: Any = None

    def __str__(self) -> str:
        if self.endpoint:
            return 'Glance at %s' % self.endpoint
        return 'Glance'

    # -- clients -------------------------------------------------------
    def client(self) -> Any:
        """The glanceclient v2 client."""
        if self._client is None:
            with self._errors():
                self._client = self._make_client()
        return self._client

    def _make_client(self) -> Any:
        group = self.conf[GROUP]
        kwargs: dict[str, Any] = {}
        ks_adapter.process_conf_options(group, kwargs)
        # NOTE: glanceclient picks the API version itself.
        for key in ('version', 'min_version', 'max_version'):
            kwargs.pop(key, None)
        if self.endpoint:
            kwargs['endpoint_override'] = self.endpoint
        session = self._session
        if session is None:
            try:
                auth = ks_loading.load_auth_from_conf_options(self.conf,
                                                              GROUP)
            except ksa_exc.MissingRequiredOptions as e:
                raise exception.InvalidInput(
                    reason='[snapshot_glance] auth_type %s needs %s' % (
                        group.auth_type,
                        ', '.join(o.dest for o in e.options)))
            if auth is None:
                if not kwargs.get('endpoint_override'):
                    raise exception.StoreUnavailable(
                        store=self,
                        reason='no endpoint: set [snapshot_glance] '
                               'auth_type (with Keystone) or '
                               'endpoint_override, or use --store '
                               'glance+http://HOST:PORT')
                auth = noauth.NoAuth()
            session = ks_loading.load_session_from_conf_options(
                self.conf, GROUP, auth=auth)
        return glanceclient.Client('2', session=session, **kwargs)

    def image_url(self, image_id: str) -> str:
        with self._errors():
            endpoint = self.client().http_client.get_endpoint()
        return '%s/v2/images/%s' % (endpoint.rstrip('/'), image_id)

    @contextlib.contextmanager
    def _errors(self, image_id: str | None = None,
                disk_format: str | None = None) -> Iterator[None]:
        """Translate glanceclient's and keystoneauth's errors into ours."""
        try:
            yield
        except (glance_exc.CommunicationError, glance_exc.InvalidEndpoint,
                ksa_exc.ConnectionError, ksa_exc.EndpointNotFound,
                ksa_exc.DiscoveryFailure) as e:
            raise exception.StoreUnavailable(
                store=self, reason='unreachable (%s)' % _one_line(e))
        except (ksa_exc.Unauthorized, ksa_exc.Forbidden) as e:
            # NOTE: keystone itself refused (wrong password, ...).
            raise exception.StoreAuthFailed(
                store=self, reason='HTTP %s %s' % (e.http_status,
                                                   _one_line(e)))
        except glance_exc.HTTPException as e:
            code = _status_code(e)
            reason = _http_reason(e, code)
            if code in (401, 403):
                raise exception.StoreAuthFailed(store=self, reason=reason)
            if code == 404:
                if image_id is None:
                    raise exception.StoreUnavailable(store=self,
                                                     reason=reason)
                raise exception.ImageNotFound(image=image_id, store=self)
            if code == 413:
                raise exception.StoreRejected(
                    store=self, reason='over a size limit or quota (%s)' %
                                       reason)
            if code == 415:
                raise exception.StoreRejected(
                    store=self, reason='Glance does not accept its data '
                                       'as %s (%s)' % (
                                           disk_format or 'its disk_format',
                                           reason))
            if code == 409:
                raise exception.StoreRejected(store=self, reason=reason)
            if code is not None and code >= 500:
                # NOTE: a server-side error; worth retrying a delete.
                raise exception.StoreUnavailable(store=self, reason=reason)
            raise exception.StoreWriteFailed(store=self, reason=reason)
        except ksa_exc.ClientException as e:
            raise exception.StoreUnavailable(store=self,
                                             reason=_one_line(e))

    # -- the ImageStore interface --------------------------------------
    def check(self) -> None:
        with self._errors():
            next(iter(self.client().images.list(limit=1, page_size=1)),
                 None)

    def begin(self, meta: base.ImageMeta, image_id: str | None = None,
              workdir: str | None = None) -> GlancePendingImage:
        if image_id is not None and not uuidutils.is_uuid_like(image_id):
            raise exception.InvalidInput(
                reason='image id %r is not a UUID' % image_id)
        return GlancePendingImage(self, meta, image_id, workdir)

    def delete(self, image_id: str) -> None:
        try:
            with self._errors(image_id):
                self.client().images.delete(image_id)
        except exception.ImageNotFound:
            pass

    # -- Glance calls --------------------------------------------------
    def get(self, image_id: str) -> dict[str, Any]:
        with self._errors(image_id):
            return dict(self.client().images.get(image_id))

    def create(self, meta: base.ImageMeta) -> dict[str, Any]:
        attrs = dict(glance_properties(meta), name=meta.name,
                     disk_format=meta.disk_format,
                     container_format=meta.container_format,
                     visibility=self.conf[GROUP].visibility)
        with self._errors():
            image = dict(self.client().images.create(**attrs))
        LOG.info('Created image %(id)s (%(name)s) in %(store)s',
                 {'id': image['id'], 'name': meta.name, 'store': self})
        return image

    def update(self, image_id: str, meta: base.ImageMeta,
               image: dict[str, Any]) -> dict[str, Any]:
        """Set what ``meta`` says on the record ``image`` (as Glance last
        returned it), where it differs.

        :returns: the record as it is now.
        """
        want = dict(glance_properties(meta), disk_format=meta.disk_format,
                    container_format=meta.container_format)
        if image.get('name') is None:
            want['name'] = meta.name
        changes = {k: v for k, v in want.items() if image.get(k) != v}
        if not changes:
            return image
        with self._errors(image_id):
            return dict(self.client().images.update(image_id, **changes))

    def upload(self, image_id: str, body: '_UploadBody',
               disk_format: str) -> None:
        """Send the image data.

        NOTE: glanceclient sends a file chunk-encoded, which Glance under
        uWSGI reads more slowly (about 15% for 1 GiB) and cannot size up
        front; this is its ``images.upload()`` with a Content-Length, sent
        through the client's own session adapter. Never retried: the body
        is a stream that cannot be replayed.
        """
        http = self.client().http_client
        with self._errors(image_id, disk_format):
            resp = ks_adapter_base.Adapter.request(
                http, '/v2/images/%s/file' % image_id, 'PUT', data=body,
                headers={'Content-Type': 'application/octet-stream'},
                raise_exc=False, connect_retries=0, status_code_retries=0)
            if not resp.ok:
                raise glance_exc.from_response(resp, resp.content)

    def add_location(self, image_id: str, url: str,
                     store_id: str | None = None) -> None:
        """Register ``url`` as the data of the queued image ``image_id``.

        Glance's location API (v2.17: ``POST /v2/images/ID/locations``,
        which needs the service role for other than http URLs); the older
        locations PATCH (which needs ``show_multiple_locations``) on a
        Glance without it.
        """
        client = self.client()
        with self._errors(image_id):
            try:
                client.images.add_image_location(image_id, url, {})
                return
            except glance_exc.HTTPNotImplemented:
                LOG.info('%s has no location API (v2.17); using the '
                         'locations PATCH', self)
            client.images.add_location(
                image_id, url, {'store': store_id} if store_id else {})

    def image_status(self, image_id: str) -> str | None:
        try:
            return self.get(image_id)['status']
        except exception.ImageNotFound:
            return None

    def image_locations(self, image_id: str) -> list[str]:
        """The URLs of an image's data that Glance shows this client
        (its ``locations``, or ``direct_url``); none when it shows none.
        """
        image = self.get(image_id)
        urls = [loc.get('url') for loc in image.get('locations') or ()]
        if image.get('direct_url'):
            urls.append(image['direct_url'])
        return [u for u in urls if u]

    def stores_detail(self) -> list[dict[str, Any]] | None:
        """Glance's stores with their type and properties (for rbd:
        ``pool`` and ``fsid``); None when Glance does not show them to
        this client (it needs the admin or service role, and multiple
        stores enabled).
        """
        http = self.client().http_client
        with self._errors():
            try:
                _resp, body = http.get('/v2/info/stores/detail')
            except (glance_exc.HTTPForbidden, glance_exc.HTTPNotFound) as e:
                LOG.debug('%s does not show its stores: %s', self,
                          _one_line(e))
                return None
        return list((body or {}).get('stores') or ())

    def wait_active(self, image_id: str) -> dict[str, Any]:
        """The image once it is active.

        :raises StoreWriteFailed: it went to another final state, or is
            still not active after ``[snapshot_glance] active_timeout``
            seconds.
        """
        image = retry.poll(
            lambda: self.get(image_id),
            lambda image: image['status'] not in ('queued', 'saving',
                                                  'importing'),
            timeout=self.conf[GROUP].active_timeout, interval=0.2)
        status = image['status']
        if status == 'active':
            return image
        raise exception.StoreWriteFailed(
            store=self, reason='image %s is %s after the upload' % (
                image_id, status))

    def delete_failed(self, image_id: str) -> None:
        """Delete an image whose snapshot failed, waiting a while for a
        Glance that went away to come back. Logs, never raises.
        """
        try:
            retry.call(self.delete, image_id, on=exception.StoreUnavailable,
                       timeout=CLEANUP_TIMEOUT, interval=0.25, max_interval=4)
            LOG.info('Deleted image %(id)s from %(store)s after the '
                     'failure', {'id': image_id, 'store': self})
        except exception.SnapshotError as e:
            LOG.error('Could not delete image %(id)s from %(store)s: '
                      '%(err)s. Delete it with "openstack image delete '
                      '%(id)s".', {'id': image_id, 'store': self, 'err': e})
