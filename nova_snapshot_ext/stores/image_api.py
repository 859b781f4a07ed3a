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

"""Images in Glance, whichever way Glance is reached.

The command line uses python-glanceclient (:mod:`.stores.glance`), the
Nova driver Nova's own image API with the request's context
(:mod:`nova_snapshot_ext.virt.image_store`). Both are an
:class:`~nova_snapshot_ext.stores.image_calls.ImageAPI`: the few calls a
snapshot makes. The record's life and
every check of what Glance made of the data are :class:`APIPendingImage`
and :class:`APIImageStore`, once for both; what the two ways do
differently is said by the attributes of ``ImageAPI``.
"""

from collections.abc import Iterator
import contextlib
import hashlib
import os
import time
from typing import Any, BinaryIO

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext.conf import glance as glance_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import temp
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext import retry
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base
from nova_snapshot_ext.stores import image_calls
from nova_snapshot_ext.stores import upload_body

LOG = logging.getLogger(__name__)

GROUP = glance_conf.GROUP
#: Seconds the deletion of a failed image waits for a Glance gone away.
CLEANUP_TIMEOUT = 30


class APIPendingImage(base.UploadedImage):
    """A snapshot's Glance record, made (or found queued) before the
    guest is touched, so that Glance validates name and properties first.
    :meth:`commit` uploads the file and checks what Glance made of it:
    active, of the size sent and (``[snapshot_glance] verify_hash``) of
    the hash computed while sending. A failure aborts, which deletes the
    record where :attr:`image_calls.ImageAPI.deletes_on_failure` says so.
    """

    TMP_PREFIX = temp.GLANCE

    def __init__(self, store: 'APIImageStore', meta: base.ImageMeta,
                 image_id: str | None, workdir: str | None) -> None:
        super().__init__(meta, workdir)
        self.store = store
        self.api = store.api
        self.image_id: str | None = None
        #: The record as Glance last returned it.
        self.record: dict[str, Any] = {}
        #: The record abort() deletes.
        self._owned: str | None = None
        self._record_step: journal.Step | None = None
        try:
            if image_id is None:
                # NOTE: the id is chosen here, so that the journal names
                # the record before it exists.
                new_id = uuidutils.generate_uuid()
                self._record_step = journal.current().add(
                    journal.GLANCE_IMAGE, id=new_id,
                    store=store.spec if store.RECOVERABLE else None)
                try:
                    self.record = self.api.create(
                        dict(self._wanted(), name=meta.name, id=new_id))
                except exception.StoreUnavailable as e:
                    self._failed_create(e, new_id)
                    raise
                journal.current().reached(journal.GLANCE_IMAGE)
                LOG.info('Created image %(id)s (%(name)s) in %(store)s',
                         {'id': self.record['id'], 'name': meta.name,
                          'store': store})
            else:
                self.record = store.record(image_id)
                # NOTE: only a queued record is ours to fill, and to
                # delete on failure; never touch an active image.
                if self.record.get('status') != 'queued':
                    raise exception.ImageNotQueued(
                        image=image_id, store=store,
                        status=self.record.get('status'))
            self.image_id = self.record.get('id') or image_id
            if self.api.deletes_on_failure:
                self._owned = self.image_id
        except BaseException:
            self.abort()
            raise

    def _failed_create(self, e: exception.StoreUnavailable,
                       image_id: str) -> None:
        """The create failed with Glance unreachable or failing: its
        record is certainly not made when the error says no try reached
        Glance; otherwise it may be, and abort() deletes it (or leaves
        it to recover).
        """
        if getattr(e, 'record_made', None) is False:
            journal.current().done(self._record_step)
        elif self.api.deletes_on_failure:
            self._owned = image_id

    def _wanted(self) -> dict[str, str]:
        return dict(image_calls.glance_properties(self.meta),
                    disk_format=self.meta.disk_format,
                    container_format=self.meta.container_format)

    def _update(self, image_id: str) -> None:
        """Record what :attr:`meta` says now, where the record differs."""
        want = self._wanted()
        # NOTE: image_type=snapshot is only a default: the record's maker
        # (Nova's compute API, from the user's --property) may have
        # chosen another type, which stays.
        if self.record.get('image_type'):
            want.pop('image_type', None)
        if self.record.get('name') is None:
            want['name'] = self.meta.name
        changes = {k: v for k, v in want.items() if self.record.get(k) != v}
        if changes:
            self.record = self.api.update(image_id, changes)

    STREAMS = True

    def commit(self, progress: base.Progress | None = None
               ) -> base.StoredImage:
        with open(self.path, 'rb') as f:
            return self.commit_stream(f, os.path.getsize(self.path),
                                      progress, self.meta.virtual_size)

    def commit_stream(self, stream: BinaryIO, size: int,
                      progress: base.Progress | None = None,
                      virtual_size: int | None = None) -> base.StoredImage:
        try:
            stored = self._commit(stream, size, progress, virtual_size)
        except BaseException:
            self.abort()
            raise
        journal.current().done(self._record_step)
        # NOTE: the local file was only the upload's source.
        self.remove_file()
        return stored

    def _commit(self, stream: BinaryIO, size: int,
                progress: base.Progress | None,
                virtual_size: int | None) -> base.StoredImage:
        store, image_id = self.store, self.image_id
        assert image_id is not None
        self._update(image_id)
        started = time.monotonic()
        with contextlib.closing(
                upload_body.UploadBody(
                    store, stream, size, progress,
                    threads=self.api.hash_in_threads)) as body:
            self.api.upload(image_id, body, self.meta.disk_format)
            LOG.info('Uploaded %(size)d bytes to image %(id)s in %(s).1f s',
                     {'size': size, 'id': image_id,
                      's': time.monotonic() - started})
            image = store.wait_active(image_id)
            # NOTE: a client that sends a stream again after an error
            # (Nova's image API retries) sends only the rest of it.
            if image.get('size') != size:
                raise exception.StoreWriteFailed(
                    store=store, reason='image %s has %s bytes, %d were '
                                        'sent' % (image_id,
                                                  image.get('size'), size))
            if store.conf[GROUP].verify_hash:
                self._verify_hash(image, body)
            sha256 = body.hexdigest('sha256')
        virtual_size = image.get('virtual_size') or virtual_size
        if not virtual_size and self.meta.disk_format == 'raw':
            virtual_size = size
        if not virtual_size:
            # NOTE: Glance fills it in for the formats it inspects; Nova's
            # image API does not pass it on.
            virtual_size = qemu_img.info(store.conf, self.path,
                                         self.meta.disk_format)[
                'virtual-size']
        return base.StoredImage(
            id=image_id, location=self.api.image_url(image_id),
            disk_format=self.meta.disk_format, size=size,
            virtual_size=int(virtual_size), sha256=sha256)

    def _verify_hash(self, image: dict[str, Any],
                     body: upload_body.UploadBody) -> None:
        algo, value = image.get('os_hash_algo'), image.get('os_hash_value')
        if not algo or not value:
            LOG.warning('%(store)s reports no hash for image %(id)s; its '
                        'data cannot be verified',
                        {'store': self.store, 'id': self.image_id})
            return
        if algo in body.ALGORITHMS:
            ours = body.hexdigest(algo)
        elif self.tmpdir is None:
            LOG.warning('%(store)s hashes image %(id)s with %(algo)s, which '
                        'a streamed upload does not compute; its data '
                        'cannot be verified',
                        {'store': self.store, 'id': self.image_id,
                         'algo': algo})
            return
        else:
            with open(self.path, 'rb') as f:
                ours = hashlib.file_digest(f, algo).hexdigest()
        if ours != value:
            raise exception.StoreWriteFailed(
                store=self.store,
                reason='Glance has a different %s of image %s than the '
                       'data sent: %s, not %s' % (algo, self.image_id,
                                                  value, ours))

    def add_location(self, url: str, store_id: str | None = None
                     ) -> base.StoredImage:
        """Register ``url`` as the image's data; Glance makes the image
        active (and computes its hash in the background, so there is
        none to check).

        A failure does not abort the image: a refused location leaves the
        record queued, for the caller to fill otherwise or abort.
        """
        image_id = self.image_id
        assert image_id is not None
        self._update(image_id)
        with journal.current().step(journal.LOCATION, id=image_id, url=url):
            self.api.add_location(image_id, url, store_id)
        image = self.store.wait_active(image_id)
        journal.current().done(self._record_step)
        size = int(image.get('size') or 0)
        return base.StoredImage(
            id=image_id, location=url, disk_format=self.meta.disk_format,
            size=size, virtual_size=int(image.get('virtual_size') or size),
            sha256=None)

    def abort(self) -> None:
        self.remove_file()
        image_id, self._owned = self._owned, None
        if image_id is not None and self.store.delete_failed(image_id):
            journal.current().done(self._record_step)


class APIImageStore(base.ImageStore):
    """An image store over an :class:`image_calls.ImageAPI`.

    :param api: how Glance is reached.
    """

    SUPPORTS_LOCATION = True
    READBACK = 'image-api'

    def __init__(self, conf: cfg.ConfigOpts, spec: str,
                 api: image_calls.ImageAPI) -> None:
        super().__init__(conf, spec)
        self.api = api

    def queued_of_ours(self) -> list[dict[str, Any]]:
        return self.api.queued_of_ours()

    def download(self, image_id: str) -> Iterator[bytes]:
        return self.api.download(image_id)

    def deletes_on_failure(self) -> bool:
        return self.api.deletes_on_failure

    def __str__(self) -> str:
        return str(self.api)

    def begin(self, meta: base.ImageMeta, image_id: str | None = None,
              workdir: str | None = None) -> APIPendingImage:
        if image_id is None and not self.api.creates_records:
            raise exception.InvalidInput(
                reason='%s fills the record made beforehand (by Nova\'s '
                       'compute API); no image id was given' % self)
        if image_id is not None and not uuidutils.is_uuid_like(image_id):
            raise exception.InvalidInput(
                reason='image id %r is not a UUID' % image_id)
        return APIPendingImage(self, meta, image_id, workdir)

    def delete(self, image_id: str) -> None:
        try:
            self.api.delete(image_id)
        except exception.ImageNotFound:
            pass

    def record(self, image_id: str) -> dict[str, Any]:
        """The record :meth:`begin` fills."""
        return self.api.get(image_id)

    def image_status(self, image_id: str) -> str | None:
        try:
            return self.api.get(image_id)['status']
        except exception.ImageNotFound:
            return None

    def image_locations(self, image_id: str) -> list[str]:
        # NOTE: Nova's image API lists direct_url among the locations.
        image = self.api.get(image_id)
        urls = [loc.get('url') for loc in image.get('locations') or ()]
        urls.append(image.get('direct_url'))
        return list(dict.fromkeys(u for u in urls if u))

    def stores_detail(self) -> list[dict[str, Any]] | None:
        return self.api.stores_detail()

    def sees_all_images(self) -> bool:
        return self.api.sees_all_images()

    def wait_active(self, image_id: str) -> dict[str, Any]:
        """The image once it is active; StoreWriteFailed when it is not
        within ``[snapshot_glance] active_timeout`` seconds.
        """
        image = retry.poll(
            lambda: self.api.get(image_id),
            lambda i: i.get('status') not in ('queued', 'saving',
                                              'importing'),
            timeout=self.conf[GROUP].active_timeout, interval=0.2)
        status = image.get('status')
        if status == 'active':
            return image
        raise exception.StoreWriteFailed(
            store=self, reason='image %s is %s after the upload' % (
                image_id, status))

    def delete_failed(self, image_id: str) -> bool:
        """Delete an image whose snapshot failed, waiting a while for a
        Glance that went away to come back. Logs, never raises.

        :returns: whether the image is gone.
        """
        try:
            retry.call(self.delete, image_id, on=exception.StoreUnavailable,
                       timeout=CLEANUP_TIMEOUT, interval=0.25, max_interval=4)
            LOG.info('Deleted image %(id)s from %(store)s after the '
                     'failure', {'id': image_id, 'store': self})
            return True
        except exception.SnapshotError as e:
            LOG.error('Could not delete image %(id)s from %(store)s: '
                      '%(err)s. Delete it with "openstack image delete '
                      '%(id)s" or run "nova-snapshot-ext recover".',
                      {'id': image_id, 'store': self, 'err': e})
            return False


def undo_glance_image(r: undo.Recovering, step: journal.Step) -> None:
    """``glance_image``: delete the record the snapshot created if it is
    still queued or saving.
    """
    image_id = str(step.data.get('id'))
    store = r.store(step.data.get('store'))
    if store is None:
        r.act(undo.KEEP, 'image %s' % image_id, 'its store cannot be '
              'reached from here; delete it if it is still queued')
        return
    status = store.image_status(image_id)
    if status is None:
        r.act(undo.NOTHING, 'image %s' % image_id, 'not in %s' % store)
    elif status in ('queued', 'saving', 'uploading', 'importing'):
        r.act('delete', 'image %s' % image_id, 'it is %s in %s' % (
            status, store), run=lambda: store.delete(image_id))
    else:
        r.act(undo.KEEP, 'image %s' % image_id, 'it is %s' % status)
