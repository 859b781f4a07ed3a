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

The record, the upload and its checks are
:class:`~nova_snapshot_ext.stores.image_api.APIPendingImage`'s; this
module is how the command line reaches Glance (:class:`GlanceAPI`). The
store makes records, and deletes the record of a failed snapshot.
"""

from collections.abc import Callable, Iterator
import contextlib
from typing import Any, TypeVar

import glanceclient
from glanceclient import exc as glance_exc
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import loading as ks_loading
from keystoneauth1.loading import adapter as ks_adapter_opts
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext.conf import glance as glance_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext import retry
from nova_snapshot_ext.stores import glance_errors
from nova_snapshot_ext.stores import image_api
from nova_snapshot_ext.stores import image_calls
from nova_snapshot_ext.stores import upload_body

LOG = logging.getLogger(__name__)

GROUP = image_api.GROUP

T = TypeVar('T')
#: The property of the records the store makes, by which ``gc`` knows
#: them (:mod:`nova_snapshot_ext.cleanup.sweep`); ``--property`` cannot set it.
MADE_BY, MAKER = 'snapshot_made_by', 'nova-snapshot-ext'


class GlanceAPI(image_calls.ImageAPI):
    """Glance's image API v2 through python-glanceclient, and a
    keystoneauth adapter of the same session for the upload.

    Records are made, with ``[snapshot_glance] visibility``; a failed
    snapshot deletes its record, nobody else would.

    Every request waits at most ``[snapshot_glance] timeout`` seconds for
    an answer. A request other than the upload and the registration of a
    location is tried up to ``request_attempts`` times while Glance cannot
    be reached or answers 5xx (StoreUnavailable), with growing pauses:
    Glance restarted while a snapshot begins costs a few seconds, not the
    snapshot. The upload and the location are sent once: a second POST of
    a location, or a replayed stream, is not the same request.

    :param endpoint: Glance's URL, instead of ``[snapshot_glance]``'s.
    :param session: a keystoneauth session to use instead of one built
        from ``[snapshot_glance]``.
    """

    creates_records = True
    deletes_on_failure = True
    hash_in_threads = True

    def __init__(self, conf: cfg.ConfigOpts, endpoint: str | None,
                 session: ks_session.Session | None) -> None:
        self.conf = conf
        self.endpoint = endpoint
        self._session = session
        self._adapter_kwargs: dict[str, Any] | None = None
        self._client: Any = None
        self._adapter: ks_adapter.Adapter | None = None

    def __str__(self) -> str:
        if self.endpoint:
            return 'Glance at %s' % self.endpoint
        return 'Glance'

    # -- connections ---------------------------------------------------
    def _connection(self) -> tuple[ks_session.Session, dict[str, Any]]:
        """The session, and the adapter kwargs glanceclient and the upload
        adapter share, built from ``[snapshot_glance]`` once.
        """
        if self._adapter_kwargs is None:
            group = self.conf[GROUP]
            kwargs: dict[str, Any] = {}
            ks_adapter_opts.process_conf_options(group, kwargs)
            # NOTE: glanceclient picks the API version itself, and the
            # upload names its path with the version.
            for key in ('version', 'min_version', 'max_version'):
                kwargs.pop(key, None)
            kwargs['service_type'] = kwargs.get('service_type') or 'image'
            if self.endpoint:
                kwargs['endpoint_override'] = self.endpoint
            if self._session is None:
                self._session = self._make_session(kwargs)
            self._adapter_kwargs = kwargs
        assert self._session is not None
        return self._session, self._adapter_kwargs

    def _make_session(self, kwargs: dict[str, Any]) -> ks_session.Session:
        group = self.conf[GROUP]
        try:
            auth = ks_loading.load_auth_from_conf_options(self.conf, GROUP)
        except ksa_exc.MissingRequiredOptions as e:
            raise exception.InvalidInput(
                reason='[snapshot_glance] auth_type %s needs %s' % (
                    group.auth_type, ', '.join(o.dest for o in e.options)))
        if auth is None:
            if not kwargs.get('endpoint_override'):
                raise exception.StoreUnavailable(
                    store=self,
                    reason='no endpoint: set [snapshot_glance] auth_type '
                           '(with Keystone) or endpoint_override, or use '
                           '--store glance+http://HOST:PORT')
            auth = noauth.NoAuth()
        return ks_loading.load_session_from_conf_options(self.conf, GROUP,
                                                         auth=auth)

    def client(self) -> Any:
        """The glanceclient v2 client."""
        if self._client is None:
            with self._errors():
                session, kwargs = self._connection()
                self._client = glanceclient.Client('2', session=session,
                                                   **kwargs)
        return self._client

    def adapter(self) -> ks_adapter.Adapter:
        """A keystoneauth adapter to Glance, as glanceclient's: the same
        session, service and endpoint options, so that the catalog's
        endpoint joined with ``/v2/...`` is the URL glanceclient uses.
        """
        if self._adapter is None:
            with self._errors():
                session, kwargs = self._connection()
                self._adapter = ks_adapter.Adapter(session, **kwargs)
        return self._adapter

    def _errors(self, image_id: str | None = None,
                disk_format: str | None = None
                ) -> contextlib.AbstractContextManager[None]:
        return glance_errors.translated(self, image_id, disk_format)

    def _retried(self, fn: Callable[[], T]) -> T:
        """``fn()``, tried again while it raises StoreUnavailable (not
        for refused credentials).
        """
        group = self.conf[GROUP]
        return retry.call(fn, on=exception.StoreUnavailable,
                          unless=exception.StoreAuthFailed,
                          attempts=group.request_attempts,
                          interval=group.retry_interval,
                          max_interval=glance_conf.MAX_RETRY_INTERVAL)

    def check(self) -> None:
        """List one image: Glance is there and takes the credentials."""
        def list_one() -> None:
            with self._errors():
                next(iter(self.client().images.list(limit=1, page_size=1)),
                     None)
        self._retried(list_one)

    # -- the ImageAPI --------------------------------------------------
    def get(self, image_id: str) -> dict[str, Any]:
        def get() -> dict[str, Any]:
            with self._errors(image_id):
                return dict(self.client().images.get(image_id))
        return self._retried(get)

    def create(self, attrs: dict[str, str]) -> dict[str, Any]:
        """Make the record; tried again, as the other calls are.

        A try whose answer was lost may have made the record: the next
        one is then refused (409, the id is taken), and the record found
        under the id, queued and of the name asked for, is the one made.
        When no try reached Glance (no connection could be made), the
        error says so: ``record_made`` is False.
        """
        attrs = dict(attrs, visibility=self.conf[GROUP].visibility,
                     **{MADE_BY: MAKER})
        lost = []

        def create() -> dict[str, Any]:
            try:
                with self._errors():
                    return dict(self.client().images.create(**attrs))
            except exception.StoreUnavailable as e:
                lost.append(not glance_errors.never_sent(e))
                raise
            except exception.StoreRejected:
                made = self._made_before(attrs) if lost else None
                if made is None:
                    raise
                return made
        try:
            return self._retried(create)
        except exception.StoreUnavailable as e:
            e.record_made = None if any(lost) else False
            raise

    def _made_before(self, attrs: dict[str, str]) -> dict[str, Any] | None:
        image_id = attrs.get('id')
        if not image_id:
            return None
        try:
            image = self.get(image_id)
        except exception.ImageNotFound:
            return None
        if (image.get('status') != 'queued'
                or image.get('name') != attrs.get('name')):
            return None
        LOG.info('Image %(id)s was made by a request whose answer was '
                 'lost', {'id': image_id})
        return image

    def queued_of_ours(self) -> list[dict[str, Any]]:
        """The queued records this store made, that the credentials see."""
        def listed() -> list[dict[str, Any]]:
            with self._errors():
                return [dict(i) for i in self.client().images.list(
                    filters={'status': 'queued', MADE_BY: MAKER})]
        return self._retried(listed)

    def update(self, image_id: str, changes: dict[str, str]
               ) -> dict[str, Any]:
        def update() -> dict[str, Any]:
            with self._errors(image_id):
                return dict(self.client().images.update(image_id,
                                                        **changes))
        return self._retried(update)

    def upload(self, image_id: str, body: upload_body.UploadBody,
               disk_format: str) -> None:
        """Send the image data with a Content-Length.

        NOTE: glanceclient's ``images.upload()`` sends a file
        chunk-encoded, which Glance under uWSGI reads more slowly (about
        15% for 1 GiB) and cannot size up front; the body's length gives
        the request a Content-Length. Never retried: the body is a stream
        that cannot be replayed.
        """
        adapter = self.adapter()
        with self._errors(image_id, disk_format):
            # NOTE: the session's timeout applies: a Glance that stops
            # taking data, or does not answer once it has it all, fails
            # the upload instead of hanging it.
            resp = adapter.put(
                '/v2/images/%s/file' % image_id, data=body,
                headers={'Content-Type': 'application/octet-stream'},
                raise_exc=False, connect_retries=0, status_code_retries=0)
            if not resp.ok:
                raise glance_exc.from_response(resp, resp.content)

    def add_location(self, image_id: str, url: str,
                     store_id: str | None) -> None:
        """Glance's location API (v2.17: ``POST /v2/images/ID/locations``,
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

    def download(self, image_id: str) -> Iterator[bytes]:
        # NOTE: glanceclient's own checksum would raise in the middle of
        # the stream; verify compares every hash Glance records itself.
        with self._errors(image_id):
            chunks = self.client().images.data(image_id, do_checksum=False)
        if chunks is None:
            return
        with self._errors(image_id):
            yield from chunks

    def delete(self, image_id: str) -> None:
        """Delete once: whoever deletes a failed snapshot's record waits
        for Glance itself (:meth:`~image_api.APIImageStore.delete_failed`).
        """
        with self._errors(image_id):
            self.client().images.delete(image_id)

    def stores_detail(self) -> list[dict[str, Any]] | None:
        """None when Glance does not show its stores to this client (it
        needs the admin or service role, and multiple stores enabled).
        """
        def detail() -> list[dict[str, Any]] | None:
            with self._errors():
                try:
                    body = self.client().images.get_stores_info_detail()
                except (glance_exc.HTTPForbidden,
                        glance_exc.HTTPNotFound) as e:
                    LOG.debug('%s does not show its stores: %s', self,
                              glance_errors.one_line(e))
                    return None
            return list((body or {}).get('stores') or ())
        return self._retried(detail)

    def sees_all_images(self) -> bool:
        """A Glance without Keystone serves every request as an admin;
        with Keystone, only a token with the admin role sees every
        project's images.
        """
        session, _kwargs = self._connection()
        auth = session.auth
        if auth is None or isinstance(auth, noauth.NoAuth):
            return True
        get_access = getattr(auth, 'get_access', None)
        if get_access is None:
            # NOTE: e.g. a bare token: its roles are unknown.
            return False
        with self._errors():
            access = get_access(session)
        return 'admin' in (access.role_names or ())

    def image_url(self, image_id: str) -> str:
        adapter = self.adapter()
        with self._errors():
            endpoint = adapter.get_endpoint()
        assert endpoint is not None  # the upload went through it
        return '%s/v2/images/%s' % (endpoint.rstrip('/'), image_id)


class GlanceStore(image_api.APIImageStore):
    """Images in Glance (image API v2), reached with python-glanceclient.

    Data is uploaded, or registered as a location in one of Glance's
    stores (:meth:`~image_api.APIPendingImage.add_location`).

    :param session: a keystoneauth session to use instead of one built
        from ``[snapshot_glance]``.
    """

    api: GlanceAPI

    def __init__(self, conf: cfg.ConfigOpts, spec: str,
                 session: ks_session.Session | None = None) -> None:
        endpoint = None
        if spec != 'glance':
            scheme, sep, rest = spec.partition('://')
            if scheme not in ('glance+http', 'glance+https') or not rest:
                raise exception.UnknownStore(
                    spec=spec, known='glance, glance+http://HOST:PORT, '
                                     'glance+https://HOST:PORT')
            endpoint = '%s://%s' % (scheme.split('+', 1)[1],
                                    rest.rstrip('/'))
        super().__init__(conf, spec, GlanceAPI(conf, endpoint, session))
        #: Glance's URL from ``spec``; None: as ``[snapshot_glance]`` says.
        self.endpoint = endpoint

    def check(self) -> None:
        self.api.check()
