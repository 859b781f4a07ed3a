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
needs no Glance endpoint or credentials of its own: Nova's ``[glance]``
section, its service catalog handling, TLS and retries serve as they do
for Nova's own driver.

The pending image is the command line's
(:class:`~nova_snapshot_ext.stores.image_api.APIPendingImage`), with the
same checks of the upload; :class:`NovaImageAPI` says what differs: no
record is created, and a failed snapshot leaves the record to the compute
manager, which deletes it (``delete_image_on_error``). When Glance did
not answer, that delete fails as well: :func:`delete_when_glance_answers`
deletes the record once Glance is back.
"""

from collections.abc import Iterator
import contextlib
import time
from typing import Any

from nova import exception as nova_exc
from nova import utils as nova_utils
from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.stores import base
from nova_snapshot_ext.stores import image_api as api_mod
from nova_snapshot_ext.stores import image_calls
from nova_snapshot_ext.stores import upload_body

LOG = logging.getLogger(__name__)

#: Attributes of a Glance image Nova's image API takes beside
#: ``properties``; everything else the pending image sets is a property.
_ATTRIBUTES = frozenset(('name', 'disk_format', 'container_format',
                         'visibility', 'min_disk', 'min_ram', 'protected',
                         'os_hidden', 'tags'))


def _flat(image: dict[str, Any]) -> dict[str, Any]:
    """Nova's image dict as Glance's record: properties beside attributes.

    NOTE: Nova puts what its Glance schema does not call a base attribute
    under ``properties`` (``os_hash_value`` of an older schema among
    them), and drops ``virtual_size``.
    """
    record = dict(image.get('properties') or {})
    record.update((k, v) for k, v in image.items() if k != 'properties')
    return record


class _File:
    """The upload body as the file object glanceclient reads under Nova's
    image API, in its own chunks.
    """

    def __init__(self, body: upload_body.UploadBody) -> None:
        self.body = body

    def read(self, n: int = -1) -> bytes | memoryview:
        return self.body.chunk(n)


class NovaImageAPI(image_calls.ImageAPI):
    """Glance through ``nova.image.glance.API``, with the request's
    context.

    The compute API made the record, and the compute manager deletes it
    when the snapshot fails; under eventlet, Nova sends the upload from a
    tpool thread, so it is hashed in that thread.

    :param image_api: ``nova.image.glance.API``.
    :param context: the request's ``nova.context.RequestContext``.
    """

    creates_records = False
    deletes_on_failure = False

    def __init__(self, image_api: Any, context: Any) -> None:
        self.image_api = image_api
        self.context = context
        # NOTE: green threads must not be started from a native tpool
        # thread; in threading mode Nova calls glanceclient as it is.
        self.hash_in_threads = nova_utils.concurrency_mode_threading()

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

    def _update(self, image_id: str, metadata: dict[str, Any],
                data: Any = None) -> dict[str, Any]:
        with self._errors(image_id):
            return _flat(self.image_api.update(
                self.context, image_id, metadata, data, purge_props=False))

    def get(self, image_id: str) -> dict[str, Any]:
        with self._errors(image_id):
            return _flat(self.image_api.get(self.context, image_id,
                                            include_locations=True))

    def create(self, attrs: dict[str, str]) -> dict[str, Any]:
        """Never called: see :attr:`creates_records`."""
        raise NotImplementedError('the compute API makes the record')

    def update(self, image_id: str, changes: dict[str, str]
               ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            k: v for k, v in changes.items() if k in _ATTRIBUTES}
        metadata['properties'] = {
            k: v for k, v in changes.items() if k not in _ATTRIBUTES}
        return self._update(image_id, metadata)

    def upload(self, image_id: str, body: upload_body.UploadBody,
               disk_format: str) -> None:
        """Nova's update with data and nothing else to change.

        NOTE: Nova retries a call whose connection failed, the upload
        too, with the rest of the stream; the pending image's size check
        catches the short image that makes.
        """
        self._update(image_id, {}, _File(body))

    def add_location(self, image_id: str, url: str,
                     store_id: str | None) -> None:
        """Nova adds a ``location`` after the update, through Glance's
        location API; it cannot name Glance's store.
        """
        self._update(image_id, {'location': url})

    def delete(self, image_id: str) -> None:
        with self._errors(image_id):
            self.image_api.delete(self.context, image_id)

    def download(self, image_id: str) -> Iterator[bytes]:
        with self._errors(image_id):
            chunks = self.image_api.download(self.context, image_id)
        with self._errors(image_id):
            yield from chunks or ()

    def stores_detail(self) -> None:
        """Nova's image API does not list Glance's stores: the rbd
        backend finds Glance's pool from ``[snapshot_rbd] glance_pool`` or
        the base image's location, as Nova's own driver does.
        """
        return None

    def image_url(self, image_id: str) -> str:
        return 'glance:%s' % image_id


class NovaImageStore(api_mod.APIImageStore):
    """Images through Nova's image API, with the request's context.

    :param image_api: ``nova.image.glance.API``.
    :param context: the request's ``nova.context.RequestContext``.
    :param container_format: of the instance's image, as Nova keeps it.
    """

    #: Nova's image API needs a request's context: recovery cannot reach
    #: it (nor needs to: the compute manager owns the record).
    RECOVERABLE = False

    def __init__(self, conf: cfg.ConfigOpts, image_api: Any, context: Any,
                 container_format: str = 'bare') -> None:
        super().__init__(conf, 'glance', NovaImageAPI(image_api, context))
        self.container_format = container_format
        self._records: dict[str, dict[str, Any]] = {}

    def check(self) -> None:
        """Nothing to check: the compute API has just used it."""

    def begin(self, meta: base.ImageMeta, image_id: str | None = None,
              workdir: str | None = None) -> api_mod.APIPendingImage:
        meta.container_format = self.container_format
        return super().begin(meta, image_id, workdir)

    def record(self, image_id: str) -> dict[str, Any]:
        """The image's record as it was when first asked for (as the
        compute API made it), read from Glance once: the driver reads it
        for the image's name, then :meth:`begin` to fill it. The store
        lives for one snapshot.
        """
        if image_id not in self._records:
            self._records[image_id] = self.api.get(image_id)
        return self._records[image_id]


#: Glance states of a record no upload will fill any more once its
#: snapshot failed.
_UNFINISHED = ('queued', 'saving')


def delete_when_glance_answers(image_api: Any, context: Any, image_id: str,
                               interval: float = 5.0,
                               give_up_after: float = 1800.0,
                               sleep: Any = time.sleep,
                               clock: Any = time.monotonic) -> str:
    """Delete the record of a snapshot that failed because Glance did not
    answer, once Glance answers again.

    The compute manager deletes the record of a failed snapshot, but with
    Glance away its delete fails too and the record would stay queued
    for good. This tries again every ``interval`` seconds, with the
    request's context (its token lasts about as long as ``give_up_after``),
    and deletes the record only while no upload fills it (queued or
    saving): an active image is never touched.

    :returns: what happened: ``deleted``, ``gone`` (someone else deleted
        it), ``kept`` (it is no longer unfinished) or ``gave up``.
    """
    # NOTE: a loop of its own, not retry.call: its deadline runs on
    # ``clock`` (tests drive it; tenacity reads time.monotonic, which
    # eventlet's hub uses too) from before the first pause.
    deadline = clock() + give_up_after
    status = 'queued'
    while True:
        sleep(interval)
        try:
            status = image_api.get(context, image_id).get('status')
            if status not in _UNFINISHED:
                LOG.info('Image %s of a failed snapshot is %s now: kept',
                         image_id, status)
                return 'kept'
            image_api.delete(context, image_id)
        except nova_exc.ImageNotFound:
            return 'gone'
        except nova_exc.GlanceConnectionFailed:
            if clock() >= deadline:
                LOG.warning('Image %s of a failed snapshot stays %s: Glance '
                            'did not answer for %d s; delete it by hand',
                            image_id, status, give_up_after)
                return 'gave up'
            continue
        except Exception as e:  # noqa: B902 - logged, never raised
            LOG.warning('Could not delete image %s of a failed snapshot: '
                        '%s', image_id, e)
            return 'gave up'
        LOG.info('Deleted image %s of a snapshot that failed while Glance '
                 'did not answer', image_id)
        return 'deleted'
