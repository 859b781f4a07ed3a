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

"""Verify a stored image: read it back and compare it with its record.

* Its size and hash against what the store recorded: the directory
  store's ``metadata.json`` (``size``, ``sha256``); Glance's ``size`` and
  ``os_hash_value`` (in ``os_hash_algo``), and our ``sha256`` property
  when the image has one.
* A qcow2 image is checked with ``qemu-img check``, its format given
  (never probed).
* An incremental image (``incremental_of`` in its metadata) is only as
  good as its chain: every image below it is verified too, and each one's
  backing file must be the image below it.

The first problem found is the answer: one line naming the image.
"""

from collections.abc import Iterator
import dataclasses
import hashlib
import json
import os
import tempfile
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext import model
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store

LOG = logging.getLogger(__name__)

CHUNK = 1024 * 1024


@dataclasses.dataclass
class Report:
    """What ``verify`` found about an image and its chain."""

    #: The image as the user named it (an id, or a path).
    image: str
    store: str
    #: What was checked, per image, the named one first then its chain.
    members: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: The first problem, one line; None when the image is good.
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {'image': self.image, 'store': self.store, 'ok': self.ok,
                'problem': self.problem, 'chain': self.members}


class _Damaged(Exception):
    """What is wrong with one member of a chain."""


def verify(conf: cfg.ConfigOpts, store: store_base.ImageStore,
           image: str) -> Report:
    """Verify ``image`` (an id, or a directory store image's path) in
    ``store``.

    :raises ImageNotFound: the store has no such image.
    :raises InvalidInput: the store cannot be read back.
    """
    report = Report(image=image, store=str(store))
    if store.READBACK == 'chain':
        _verify_file_chain(store, _file_id(store, image), report)
    elif store.READBACK == 'image-api':
        _verify_glance(conf, store, image, report)
    else:
        raise exception.InvalidInput(
            reason='images of %s cannot be verified' % store)
    if report.problem:
        # NOTE: info, not a warning: the caller reports the damage once.
        LOG.info('Image %(image)s is damaged: %(problem)s',
                 {'image': image, 'problem': report.problem})
    return report


def after_snapshot(conf: cfg.ConfigOpts, store: store_base.ImageStore,
                   result: model.SnapshotResult) -> None:
    """Verify the images a snapshot just stored (``[snapshot] verify``);
    when one is damaged, delete them all and raise ImageDamaged.
    """
    if result.method == 'direct':
        # NOTE: the image is a clone Ceph made; no hash of it was
        # recorded and reading it all back would be the copy a direct
        # snapshot avoids.
        LOG.info('Direct snapshot %s not verified', result.image_id)
        return
    ids = [d['image_id'] for d in result.disks] or [result.image_id]
    for image_id in ids:
        report = verify(conf, store, image_id)
        if not report.ok:
            _discard(store, ids)
            raise exception.ImageDamaged(image=image_id,
                                         reason=report.problem)
    result.verified = True


def _discard(store: store_base.ImageStore, ids: list[str]) -> None:
    if not store.deletes_on_failure():
        # NOTE: Nova deletes the record of a failed snapshot itself.
        return
    for image_id in ids:
        store.delete(image_id)


# -- the directory store ------------------------------------------------
def _directory(store: store_base.ImageStore) -> str:
    directory = store.local_directory()
    assert directory is not None, 'a store of chains keeps a directory'
    return directory


def _file_id(store: store_base.ImageStore, image: str) -> str:
    """The id of an image named by its id or by its file's path."""
    image_id = image
    if os.sep in image:
        image_id = os.path.basename(os.path.dirname(os.path.abspath(image)))
    if not uuidutils.is_uuid_like(image_id) or not os.path.isdir(
            os.path.join(_directory(store), image_id)):
        raise exception.ImageNotFound(image=image, store=store)
    return image_id


def _verify_file_chain(store: store_base.ImageStore, image_id: str,
                       report: Report) -> None:
    seen: set[str] = set()
    current: str | None = image_id
    while current:
        if current in seen:
            report.problem = 'image %s: its chain loops' % current
            return
        seen.add(current)
        try:
            doc = _file_member(store, current, report)
        except _Damaged as e:
            below = '' if current == image_id else ' (in the chain of %s)' \
                % image_id
            report.problem = 'image %s%s: %s' % (current, below, e)
            return
        current = doc.get('incremental_of')


def _file_member(store: store_base.ImageStore, image_id: str,
                 report: Report) -> dict[str, Any]:
    """Verify one image of the directory store; its metadata."""
    directory = os.path.join(_directory(store), image_id)
    try:
        doc = _read_metadata(directory)
    except (OSError, ValueError) as e:
        raise _Damaged('%s cannot be read (%s)' % (
            file_store.METADATA, getattr(e, 'strerror', None) or e))
    path = os.path.join(directory, 'image.%s' % doc.get('format'))
    member = {'image_id': image_id, 'path': path,
              'format': doc.get('format'), 'size': None, 'sha256': None,
              'qemu_img_check': None}
    report.members.append(member)
    try:
        member['size'] = os.stat(path).st_size
        member['sha256'] = durable.sha256_of(path)
    except OSError as e:
        raise _Damaged('%s cannot be read (%s)' % (path, e.strerror or e))
    _compare(member['size'], doc.get('size'), 'size', 'metadata.json')
    _compare(member['sha256'], doc.get('sha256'), 'sha256', 'metadata.json')
    backing = None
    if doc.get('incremental_of'):
        backing = os.path.join(_directory(store), doc['incremental_of'],
                               'image.qcow2')
    member['qemu_img_check'] = _qemu_check(store.conf, path,
                                           doc.get('format'), backing)
    return doc


def _read_metadata(directory: str) -> dict[str, Any]:
    with open(os.path.join(directory, file_store.METADATA)) as f:
        doc = json.load(f)
    if not isinstance(doc, dict):
        raise ValueError('not a JSON object')
    return doc


# -- Glance ---------------------------------------------------------------
def _verify_glance(conf: cfg.ConfigOpts, store: store_base.ImageStore,
                   image_id: str, report: Report) -> None:
    record = store.record(image_id)
    fmt = record.get('disk_format')
    algo = record.get('os_hash_algo') or 'sha512'
    member = {'image_id': image_id, 'format': fmt, 'size': None,
              'sha256': None, algo: None, 'qemu_img_check': None}
    report.members.append(member)
    try:
        if record.get('status') != 'active':
            raise _Damaged('it is %s in %s, not active' % (
                record.get('status'), store))
        with _downloaded(conf, store, image_id, fmt, algo, member) as path:
            _compare(member['size'], record.get('size'), 'size', 'Glance')
            _compare(member[algo], record.get('os_hash_value'), algo,
                     'Glance')
            _compare(member['sha256'], record.get('sha256'), 'sha256',
                     'its sha256 property')
            if path is not None:
                member['qemu_img_check'] = _qemu_check(conf, path, fmt)
    except _Damaged as e:
        report.problem = 'image %s: %s' % (image_id, e)


class _downloaded:
    """Read a Glance image, hashing it; a qcow2 one is kept in a private
    temporary file for ``qemu-img check`` (the path, else None).
    """

    def __init__(self, conf: cfg.ConfigOpts,
                 store: store_base.ImageStore, image_id: str,
                 fmt: str | None, algo: str,
                 member: dict[str, Any]) -> None:
        self.conf, self.store, self.image_id = conf, store, image_id
        self.keep, self.algo, self.member = fmt == 'qcow2', algo, member
        self.path: str | None = None

    def __enter__(self) -> str | None:
        try:
            other = hashlib.new(self.algo)
        except ValueError:
            raise _Damaged('Glance records an unknown hash, %s' % self.algo)
        sha256, size = hashlib.sha256(), 0
        out = None
        if self.keep:
            directory = self.conf.snapshot.temp_directory
            private.makedirs(directory)
            # NOTE: mkstemp makes the file readable by its owner only:
            # it holds guest data.
            fd, self.path = tempfile.mkstemp(prefix='verify-',
                                             dir=directory)
            out = os.fdopen(fd, 'wb')
        try:
            for chunk in self._chunks():
                sha256.update(chunk)
                other.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
        finally:
            if out is not None:
                out.close()
        self.member.update({'size': size, 'sha256': sha256.hexdigest(),
                            self.algo: other.hexdigest()})
        return self.path

    def _chunks(self) -> Iterator[bytes]:
        chunks = iter(self.store.download(self.image_id))
        while True:
            try:
                chunk = next(chunks, None)
            except OSError as e:
                # NOTE: glanceclient (as Nova calls it) checks the hash
                # itself and raises IOError at the end of a corrupt
                # download.
                raise _Damaged('reading it back failed: %s' % e)
            if chunk is None:
                return
            yield chunk

    def __exit__(self, *exc: Any) -> None:
        if self.path is not None:
            os.unlink(self.path)


# -- both ---------------------------------------------------------------
def _compare(found: Any, recorded: Any, what: str, where: str) -> None:
    if recorded is None:
        return
    if str(found) != str(recorded):
        raise _Damaged('its %s is %s, %s records %s' % (
            what, found, where, recorded))


def _qemu_check(conf: cfg.ConfigOpts, path: str, fmt: str | None,
                backing: str | None = None) -> str:
    """``qemu-img check`` a qcow2 image (after ``qemu-img info`` says it
    is safe to open, backed by ``backing`` if given); what it said.
    """
    if fmt != 'qcow2':
        return 'not applicable (%s)' % fmt
    try:
        info = qemu_img.info(conf, path, fmt)
        found = qemu_img.backing_of(info)
        if backing and (found is None or os.path.realpath(found[0]) !=
                        os.path.realpath(backing)):
            raise _Damaged('its backing file is %s, not %s' % (
                found[0] if found else 'missing', backing))
        result = qemu_img.check(conf, path, fmt)
    except exception.UnsafeImage as e:
        raise _Damaged('qemu-img: %s' % e.kwargs.get('reason', e))
    bad = {k: result.get(k) for k in ('corruptions', 'check-errors')
           if result.get(k)}
    if bad:
        raise _Damaged('qemu-img check found %s' % ', '.join(
            '%s %s' % (v, k) for k, v in sorted(bad.items())))
    leaks = result.get('leaks')
    return 'clean' if not leaks else '%s leaked clusters' % leaks
