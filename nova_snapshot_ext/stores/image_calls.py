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

"""The calls a snapshot makes to Glance, whichever way Glance is reached,
and the image properties it sends.

Implemented by :class:`~nova_snapshot_ext.stores.glance.GlanceAPI` (the
command line) and :class:`~nova_snapshot_ext.virt.image_store.NovaImageAPI`
(the Nova driver); used by :mod:`nova_snapshot_ext.stores.image_api`.
"""

import abc
from collections.abc import Iterator
from typing import Any

from nova_snapshot_ext.stores import base
from nova_snapshot_ext.stores import upload_body

#: Glance's limit on the length of a property value.
MAX_PROPERTY_LENGTH = 255
#: Properties of the engine's ImageMeta, as Glance names them.
PROPERTY_NAMES = {
    'method': 'snapshot_method', 'reason': 'snapshot_reason',
    'quiesced': 'snapshot_quiesced', 'source_domain': 'source_domain',
    'source_uuid': 'instance_uuid'}
#: The engine's own properties, always written: one this snapshot has no
#: value for is written empty, so that a value the record got elsewhere
#: (Nova copies the instance's image properties into a snapshot's record,
#: e.g. an earlier live snapshot's live_copy_style) does not describe it.
OWN_PROPERTIES = ('snapshot_method', 'snapshot_reason', 'snapshot_quiesced',
                  'source_domain', 'live_copy_style', 'live_copy_reason')


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
    for name in OWN_PROPERTIES:
        props.setdefault(name, '')
    return props


class ImageAPI(metaclass=abc.ABCMeta):
    """The calls a snapshot makes to Glance's image API (v2).

    A record is a Glance image as a flat dict, base attributes (``id``,
    ``status``, ``size``, ``os_hash_algo``, ...) beside properties; what
    an implementation cannot see (``virtual_size`` through Nova) is left
    out. Every call raises the engine's exceptions: ImageNotFound,
    StoreAuthFailed (credentials refused), StoreUnavailable (Glance
    unreachable or failing itself), StoreRejected (quota, format,
    conflict), StoreWriteFailed (anything else); ``str()`` names the API
    in their messages.
    """

    #: New records may be made. Without it, a snapshot fills the queued
    #: record made beforehand (under Nova, by the compute API).
    creates_records: bool = True
    #: A failed snapshot deletes its record. Without it, whoever made the
    #: record deletes it: Nova's compute manager does, and a second
    #: delete would only race it.
    deletes_on_failure: bool = True
    #: The upload may be hashed in worker threads while it is sent; not
    #: where it is read in a thread that must not start threads (an
    #: eventlet tpool worker of nova-compute).
    hash_in_threads: bool = True

    def queued_of_ours(self) -> list[dict[str, Any]]:
        """The queued records this API made that the credentials see;
        none when it cannot tell its own.
        """
        return []

    @abc.abstractmethod
    def get(self, image_id: str) -> dict[str, Any]:
        """The record now, with the locations Glance shows here."""

    @abc.abstractmethod
    def create(self, attrs: dict[str, str]) -> dict[str, Any]:
        """Make a queued record with ``attrs``; returns it."""

    @abc.abstractmethod
    def update(self, image_id: str, changes: dict[str, str]
               ) -> dict[str, Any]:
        """Set ``changes``, keep other properties; returns the record."""

    @abc.abstractmethod
    def upload(self, image_id: str, body: upload_body.UploadBody,
               disk_format: str) -> None:
        """Send ``body`` as the data, once (a stream cannot be replayed);
        ``disk_format`` names the format Glance may refuse the data as.
        """

    @abc.abstractmethod
    def add_location(self, image_id: str, url: str,
                     store_id: str | None) -> None:
        """Register ``url`` (in Glance's store ``store_id``) as the data."""

    @abc.abstractmethod
    def delete(self, image_id: str) -> None:
        """Delete the image; ImageNotFound when there is none."""

    @abc.abstractmethod
    def stores_detail(self) -> list[dict[str, Any]] | None:
        """As :meth:`base.ImageStore.stores_detail` says."""

    def sees_all_images(self) -> bool:
        """Whether these credentials see every image (admin)."""
        return False

    def download(self, image_id: str) -> Iterator[bytes]:
        """The image's data as Glance serves it, in chunks, unchecked
        (the caller hashes it: ``verify``).

        Optional: raises NotImplementedError by default.
        """
        raise NotImplementedError('%s cannot read image data' % self)

    @abc.abstractmethod
    def image_url(self, image_id: str) -> str:
        """How a result names the image: a URL where the API has one."""
