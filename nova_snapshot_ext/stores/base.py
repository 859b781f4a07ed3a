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

"""Image stores: where finished snapshot images go.

A store is a stevedore plugin in the ``nova_snapshot_ext.image_stores``
namespace. A snapshot writes its image into a :class:`PendingImage` that the
store hands out, then commits it; until the commit succeeds, nothing is
visible in the store, and :meth:`PendingImage.abort` removes every trace.
"""

import abc
import builtins
from collections.abc import Callable, Iterator
import dataclasses
import os
import shutil
import tempfile
from typing import Any, BinaryIO

from oslo_config import cfg
from oslo_utils import uuidutils

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import temp
from nova_snapshot_ext import plugins
from nova_snapshot_ext import private

NAMESPACE = 'nova_snapshot_ext.image_stores'

Progress = Callable[[float], None]


@dataclasses.dataclass
class ImageMeta:
    """What a store records about an image besides its bytes."""

    name: str
    disk_format: str
    container_format: str = 'bare'
    #: Free-form properties, e.g. ``method``, ``reason``, ``source_domain``.
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The guest's domain XML, for a store that keeps it beside the image
    #: (the directory store: ``restore`` defines a guest from it).
    domain_xml: str | None = None
    #: The image's virtual size, when its writer knows it: a store may
    #: take it instead of probing the image it is given.
    virtual_size: int | None = None


@dataclasses.dataclass
class StoredImage:
    """An image that is complete in its store."""

    id: str
    #: Where the image is: a file path, or a URL for remote stores.
    location: str
    disk_format: str
    size: int
    virtual_size: int
    #: None when the store registered data it did not read (a location).
    sha256: str | None
    #: How a user names the image: its id, or for a file store its path.
    reference: str = ''

    def __post_init__(self) -> None:
        self.reference = self.reference or self.id


class PendingImage(metaclass=abc.ABCMeta):
    """An image being written. Use it as a context manager: leaving the
    block with an exception aborts it.
    """

    #: Local file the snapshot writes the image into.
    path: str
    #: The image's id in the store.
    image_id: str | None
    #: Where a snapshot with memory saves the guest's memory, to be kept
    #: with the image; None when the store keeps no memory.
    memory_path: str | None = None
    #: What the store records about the image; changes made before the
    #: commit are recorded.
    meta: ImageMeta

    @abc.abstractmethod
    def commit(self, progress: Progress | None = None) -> StoredImage:
        """Make the image complete and visible in the store."""

    def commit_hashed(self, sha256: str,
                      progress: Progress | None = None) -> StoredImage:
        """:meth:`commit`, when the writer of :attr:`path` hashed it as it
        wrote it: a store that hashes the file may take ``sha256`` instead
        of reading the file again.

        Optional: by default, :meth:`commit`.
        """
        return self.commit(progress)

    def add_location(self, url: str, store_id: str | None = None
                     ) -> StoredImage:
        """Complete the image with data already in the store's storage
        (instead of writing :attr:`path` and calling :meth:`commit`).

        Optional: stores without :attr:`ImageStore.SUPPORTS_LOCATION`
        raise NotImplementedError.

        :param url: where the data is, e.g. ``rbd://fsid/pool/image/snap``.
        :param store_id: the store backend that holds it, if the store
            has several.
        """
        raise NotImplementedError('this store cannot add locations')

    #: :meth:`commit_stream` can take the image's data as a stream, with
    #: no local file.
    STREAMS = False

    def commit_stream(self, stream: BinaryIO, size: int,
                      progress: Progress | None = None,
                      virtual_size: int | None = None) -> StoredImage:
        """Complete the image with ``size`` bytes read from ``stream``
        (instead of writing :attr:`path` and calling :meth:`commit`).
        ``virtual_size`` is the image's, when its writer knows it.

        Optional: stores without :attr:`STREAMS` raise
        NotImplementedError.
        """
        raise NotImplementedError('this store cannot take a stream')

    @abc.abstractmethod
    def abort(self) -> None:
        """Remove everything this pending image created. Idempotent."""

    def __enter__(self) -> 'PendingImage':
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()


class UploadedImage(PendingImage):
    """A pending image whose data is uploaded from a local file, made in
    a private temporary directory on first use of :attr:`path` (a
    location needs none).
    """

    #: Name prefix of the temporary directory.
    TMP_PREFIX = temp.IMAGE

    def __init__(self, meta: ImageMeta, workdir: str | None) -> None:
        self.meta = meta
        self.workdir = workdir
        self.tmpdir: str | None = None
        self._tmp_step: journal.Step | None = None

    # NOTE: read-only here (made on first use); no caller sets a pending
    # image's path.
    @property
    def path(self) -> str:  # type: ignore[override]
        if self.tmpdir is None:
            workdir = self.workdir or tempfile.gettempdir()
            os.makedirs(workdir, exist_ok=True)
            tmpdir = os.path.join(workdir, self.TMP_PREFIX +
                                  uuidutils.generate_uuid(dashed=False))
            self._tmp_step = journal.current().add(journal.TEMP_DIR,
                                                   path=tmpdir)
            private.mkdir(tmpdir)
            self.tmpdir = tmpdir
            journal.current().reached(journal.TEMP_DIR)
            # NOTE: made empty and private now, the file keeps its mode
            # whoever writes it (qemu-img, a stream).
            private.create(self._file())
        return self._file()

    def _file(self) -> str:
        assert self.tmpdir is not None  # made by path
        return os.path.join(self.tmpdir, 'image.%s' % self.meta.disk_format)

    def remove_file(self) -> None:
        """Remove the local file and its directory. Idempotent."""
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            journal.current().done(self._tmp_step)


class ImageStore(metaclass=abc.ABCMeta):
    """Base class of image store plugins.

    :param conf: the configuration.
    :param spec: the store as the user named it, e.g. ``file:///srv/img``.
    """

    #: The store can register an image whose data already exists in
    #: shared storage (see :meth:`PendingImage.add_location`).
    SUPPORTS_LOCATION = False
    #: ``recover`` can reach the store again from its spec alone, to undo
    #: what a killed snapshot left in it (a record it created).
    RECOVERABLE = True
    #: The store holds chains of images (``--incremental``): a qcow2
    #: image backed by an earlier image of the store, which it can list,
    #: locate and make standalone (the methods "with HOLDS_CHAINS" below).
    HOLDS_CHAINS = False
    #: How ``nova-snapshot-ext verify`` reads the store's images back:
    #: ``chain`` (image files in a directory, a chain followed through
    #: its backing links), ``image-api`` (downloaded through its image
    #: API and checked against the recorded hash), None (it cannot).
    READBACK: str | None = None
    #: The store keeps the guest's domain XML with each image
    #: (``ImageMeta.domain_xml``), for ``restore``.
    KEEPS_DOMAIN_XML = False
    #: It keeps a guest's memory with an image (``--memory``).
    KEEPS_MEMORY = False

    def __init__(self, conf: cfg.ConfigOpts, spec: str) -> None:
        self.conf = conf
        self.spec = spec

    def __str__(self) -> str:
        return self.spec

    @abc.abstractmethod
    def check(self) -> None:
        """Fail fast, before any guest is touched, when the store cannot
        take an image.

        :raises StoreUnavailable: with the reason.
        """

    @abc.abstractmethod
    def begin(self, meta: ImageMeta, image_id: str | None = None,
              workdir: str | None = None) -> PendingImage:
        """Start an image. Its record (if the store keeps records) exists
        from now on, and :attr:`PendingImage.image_id` is its id.

        :param image_id: fill this existing record (e.g. the one Nova
            created) instead of making a new one.
        :param workdir: directory for temporary files, if the store needs
            any.
        """

    @abc.abstractmethod
    def delete(self, image_id: str) -> None:
        """Delete a complete image. Missing images are not an error."""

    # -- with HOLDS_CHAINS ---------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """The metadata of every complete image, oldest first."""
        raise NotImplementedError('%s holds no chains of images' % self)

    @staticmethod
    def image_file(meta: ImageMeta) -> str:
        """The name of an image's file, relative to its directory."""
        raise NotImplementedError('this store holds no chains of images')

    def flatten(self, image_id: str) -> dict[str, Any]:
        """Make image ``image_id`` standalone; its new metadata."""
        raise NotImplementedError('%s holds no chains of images' % self)

    def finish_flatten(self, image_id: str) -> None:
        """Finish a flatten of ``image_id`` that a crash cut short."""
        raise NotImplementedError('%s holds no chains of images' % self)

    # -- with READBACK 'image-api' ---------------------------------------
    def record(self, image_id: str) -> dict[str, Any]:
        """The image's record as the store's image API shows it."""
        raise NotImplementedError('%s keeps no records' % self)

    def download(self, image_id: str) -> Iterator[bytes]:
        """The image's data, in chunks."""
        raise NotImplementedError('%s cannot read its images back' % self)

    def deletes_on_failure(self) -> bool:
        """Whether the store deletes the image of a snapshot that failed
        (a store of records Nova made leaves that to Nova).
        """
        return True

    # -- housekeeping (gc) -----------------------------------------------
    def local_directory(self) -> str | None:
        """The directory of this host the store keeps images in (where
        ``gc`` sweeps partial and half-deleted ones); None when it keeps
        none here.
        """
        return None

    def queued_of_ours(self) -> builtins.list[dict[str, Any]]:
        """The records still queued that the command made (``gc`` deletes
        those no running snapshot owns); none when the store cannot tell.
        """
        return []

    # -- with SUPPORTS_LOCATION ----------------------------------------
    # NOTE: a store that sets SUPPORTS_LOCATION registers images whose
    # data a backend made inside shared storage (an RBD clone). The rbd
    # backend and gc then ask it the questions below; the defaults are
    # the answers of a store that knows nothing.

    def stores_detail(self) -> builtins.list[dict[str, Any]] | None:
        """The storage backends the store keeps images in, as Glance
        describes them (``id``, ``type``, ``default``, ``properties``
        such as an rbd store's ``pool`` and ``fsid``); None when the store
        does not show them (to these credentials).
        """
        return None

    def image_locations(self, image_id: str) -> builtins.list[str]:
        """The URLs of an image's data (e.g. ``rbd://fsid/pool/id/snap``)
        that the store shows; none when it shows none.
        """
        return []

    def sees_all_images(self) -> bool:
        """Whether the store shows every image to these credentials, so
        that an image it does not show does not exist.
        """
        return False

    def image_status(self, image_id: str) -> str | None:
        """The status of image ``image_id`` (``queued``, ``active``, ...);
        None when the store has no such image.
        """
        raise NotImplementedError('%s cannot tell the status of an image' %
                                  self)


def known_stores(manager: Any = None) -> list[str]:
    return plugins.names(NAMESPACE, manager)


def load(conf: cfg.ConfigOpts, spec: str | None = None,
         manager: Any = None) -> ImageStore:
    """Load the store named by ``spec``.

    ``spec`` is a plugin name (``file``, ``glance``) or a URL whose scheme
    starts with one (``file:///dir``, ``glance+http://host:9292``). When
    None, ``[snapshot] default_store`` is used.

    :param manager: a stevedore extension manager to look the plugin up
        in instead of the installed entry points.
    :raises UnknownStore: no plugin of that name.
    """
    spec = spec or conf.snapshot.default_store
    name = spec.split(':', 1)[0].split('+', 1)[0]
    cls = plugins.load_class(NAMESPACE, name, manager)
    if cls is None:
        raise exception.UnknownStore(
            spec=spec, known=', '.join(known_stores(manager)) or 'none')
    return cls(conf, spec)
