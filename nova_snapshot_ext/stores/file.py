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

"""The directory store: the embedded default.

Layout of the store directory::

    <directory>/<image id>/image.<format>     the image
    <directory>/<image id>/metadata.json      name, format, sizes, sha256,
                                              method, reason, domain, time
    <directory>/<image id>/domain.xml         the domain XML (for restore)
    <directory>/<image id>/memory.save        the guest's memory (a
                                              snapshot with --memory)
    <directory>/.<image id>.partial/          an image being written
    <directory>/.<image id>.<tag>.deleting/   an image being deleted
    <directory>/<image id>/*.flat             a flatten in progress
                                              (FileStore.flatten)

An image is written inside its hidden ``.partial`` directory, synced, and
then renamed into place in one step, so a crash never leaves a directory
that looks complete. It is deleted the other way round: renamed to a
hidden ``.deleting`` directory in one step (synced), then removed, so a
crash never leaves half an image under its id. Neither hidden kind is
listed or verified; ``gc`` removes what a crash left of both
(:mod:`nova_snapshot_ext.cleanup.sweep`).

Images hold guest data: their files are readable by the store's owner
only, or also by ``[snapshot_file_store] file_group``
(:mod:`nova_snapshot_ext.private`).
"""

import contextlib
import datetime
import json
import os
import shutil
import stat
import tempfile
import time
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base

LOG = logging.getLogger(__name__)

PARTIAL_SUFFIX = '.partial'
#: Suffix of the hidden directory of an image being deleted.
DELETING_SUFFIX = '.deleting'
METADATA = 'metadata.json'
#: The domain XML the snapshot saw, beside its image.
DOMAIN_XML = 'domain.xml'
#: The guest's memory (libvirt's save image), beside its root image.
MEMORY = 'memory.save'
#: Suffix of the files of a flatten in progress.
FLAT_SUFFIX = '.flat'


def _write_metadata(path: str, doc: dict[str, Any]) -> None:
    """Write an image's metadata to ``path``, durably (the caller renames
    what holds it).
    """
    _write_file(path, json.dumps(doc, indent=2, sort_keys=True) + '\n')


def _write_file(path: str, text: str) -> None:
    with private.open_new(path) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class FilePendingImage(base.PendingImage):

    #: Known from the start: the directory store names the image.
    image_id: str

    def __init__(self, store: 'FileStore', image_id: str,
                 meta: base.ImageMeta) -> None:
        self.store = store
        self.image_id = image_id
        self.meta = meta
        self.partial = os.path.join(store.directory,
                                    '.%s%s' % (image_id, PARTIAL_SUFFIX))
        self.final = os.path.join(store.directory, image_id)
        self._step = journal.current().add(journal.STORE_PARTIAL,
                                           path=self.partial)
        private.mkdir(self.partial)
        journal.current().reached(journal.STORE_PARTIAL)
        self.path = os.path.join(self.partial, store.image_file(meta))
        self.memory_path = os.path.join(self.partial, MEMORY)
        try:
            # NOTE: made empty and private now, the image keeps its mode
            # whoever writes it (qemu-img, a stream).
            private.create(self.path)
        except OSError:
            self.abort()
            raise

    def commit(self, progress: base.Progress | None = None
               ) -> base.StoredImage:
        return self._committed(None)

    def commit_hashed(self, sha256: str,
                      progress: base.Progress | None = None
                      ) -> base.StoredImage:
        return self._committed(sha256)

    def _committed(self, sha256: str | None) -> base.StoredImage:
        try:
            return self._commit(sha256)
        except OSError as e:
            self.abort()
            raise exception.StoreWriteFailed(store=self.store,
                                             reason=e.strerror or str(e))

    def _virtual_size(self) -> int:
        """The image's virtual size: its writer's word, a raw file's
        size, or else what ``qemu-img info`` finds.
        """
        if self.meta.virtual_size is not None:
            return self.meta.virtual_size
        if self.meta.disk_format == 'raw':
            return os.stat(self.path).st_size
        return int(qemu_img.info(self.store.conf, self.path,
                                 self.meta.disk_format)['virtual-size'])

    def _commit(self, sha256: str | None) -> base.StoredImage:
        if sha256 is None:
            sha256 = durable.sync_and_hash(self.path)
        else:
            durable.fsync_file(self.path)
        location = os.path.join(self.final,
                                self.store.image_file(self.meta))
        stored = base.StoredImage(
            id=self.image_id,
            location=location,
            reference=location,
            disk_format=self.meta.disk_format,
            size=os.stat(self.path).st_size,
            virtual_size=self._virtual_size(),
            sha256=sha256)
        doc = {
            'id': stored.id,
            'name': self.meta.name,
            'format': stored.disk_format,
            'container_format': self.meta.container_format,
            'virtual_size': stored.virtual_size,
            'size': stored.size,
            'sha256': stored.sha256,
            'created_at': datetime.datetime.now(
                datetime.timezone.utc).isoformat(timespec='seconds'),
            # NOTE: orders the images taken within one second.
            'created_ns': time.time_ns(),
        }
        doc.update(self.meta.properties)
        written = [self.path, os.path.join(self.partial, METADATA)]
        memory = os.path.join(self.partial, MEMORY)
        if os.path.exists(memory):
            doc.update(memory=True, memory_size=os.stat(memory).st_size)
            if os.stat(memory).st_uid == os.geteuid():
                # NOTE: libvirtd wrote it; as root's (for another user),
                # it is root's alone already.
                durable.fsync_file(memory)
                written.append(memory)
        _write_metadata(written[1], doc)
        if self.meta.domain_xml:
            written.append(os.path.join(self.partial, DOMAIN_XML))
            _write_file(written[-1], self.meta.domain_xml)
        gid = self.store.group_id()
        for path in written + [self.partial]:
            private.restrict(path, gid)
        durable.fsync_dir(self.partial)
        os.rename(self.partial, self.final)
        durable.fsync_dir(self.store.directory)
        journal.current().done(self._step)
        LOG.info('Image %(id)s stored in %(dir)s',
                 {'id': stored.id, 'dir': self.final})
        return stored

    def abort(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        journal.current().done(self._step)


class FileStore(base.ImageStore):
    """Images as files in a local directory.

    ``spec`` is ``file`` (the directory ``[snapshot_file_store] directory``) or
    ``file:///absolute/dir``.
    """

    HOLDS_CHAINS = True
    READBACK = 'chain'
    KEEPS_DOMAIN_XML = True
    KEEPS_MEMORY = True

    def __init__(self, conf: cfg.ConfigOpts, spec: str) -> None:
        super().__init__(conf, spec)
        if spec == 'file':
            directory = conf.snapshot_file_store.directory
        elif spec.startswith('file://'):
            directory = spec[len('file://'):]
        else:
            raise exception.UnknownStore(
                spec=spec, known='file, file:///absolute/directory')
        if not directory or not os.path.isabs(directory):
            raise exception.InvalidInput(
                reason='the file store needs an absolute directory, as in '
                       'file:///var/lib/images; got %r' % spec)
        self.directory = os.path.normpath(directory)

    def __str__(self) -> str:
        return 'file://%s' % self.directory

    @staticmethod
    def image_file(meta: base.ImageMeta) -> str:
        return 'image.%s' % meta.disk_format

    def group_id(self) -> int | None:
        """The gid of ``[snapshot_file_store] file_group``, None when
        images are private to their owner.

        :raises InvalidInput: no such group.
        """
        return private.group_id(self.conf.snapshot_file_store.file_group,
                                '[snapshot_file_store] file_group')

    def check(self) -> None:
        gid = self.group_id()
        try:
            private.makedirs(self.directory, gid)
            # NOTE: os.access() says yes to root even on a read-only
            # mount; creating a file is the only honest test.
            fd, probe = tempfile.mkstemp(prefix='.probe-',
                                         dir=self.directory)
            os.close(fd)
        except OSError as e:
            raise exception.StoreUnavailable(
                store=self, reason='%s is not writable (%s)' % (
                    self.directory, e.strerror or e))
        try:
            private.restrict(probe, gid)
        except OSError as e:
            raise exception.StoreUnavailable(
                store=self, reason='images cannot be given to group %s '
                '([snapshot_file_store] file_group): %s; make this user a '
                'member of it' % (self.conf.snapshot_file_store.file_group,
                                  e.strerror or e))
        finally:
            os.unlink(probe)
        if os.stat(self.directory).st_mode & stat.S_IROTH:
            LOG.warning('Every user may list the images of %(dir)s: '
                        'chmod o-rwx it', {'dir': self.directory})

    def begin(self, meta: base.ImageMeta, image_id: str | None = None,
              workdir: str | None = None) -> FilePendingImage:
        if image_id is None:
            image_id = uuidutils.generate_uuid()
        elif not uuidutils.is_uuid_like(image_id):
            raise exception.InvalidInput(
                reason='image id %r is not a UUID' % image_id)
        if os.path.exists(os.path.join(self.directory, image_id)):
            raise exception.StoreWriteFailed(
                store=self, reason='image %s already exists' % image_id)
        try:
            return FilePendingImage(self, image_id, meta)
        except OSError as e:
            raise exception.StoreWriteFailed(store=self,
                                             reason=e.strerror or str(e))

    def delete(self, image_id: str) -> None:
        """Delete image ``image_id``, crash-safe: once it is renamed away
        (one step) it is no longer an image, whatever is left of it; a
        crash during the removal leaves a hidden ``.deleting`` directory
        that ``gc`` removes. Never raises: an image that cannot be renamed
        away is kept whole, and logged.
        """
        if not uuidutils.is_uuid_like(image_id):
            return
        path = os.path.join(self.directory, image_id)
        doomed = os.path.join(self.directory, '.%s.%s%s' % (
            image_id, uuidutils.generate_uuid(dashed=False)[:8],
            DELETING_SUFFIX))
        try:
            os.rename(path, doomed)
            durable.fsync_dir(self.directory)
        except FileNotFoundError:
            return
        except OSError as e:
            LOG.error('Could not delete image %(id)s of %(store)s: %(err)s',
                      {'id': image_id, 'store': self, 'err': e})
            if not os.path.lexists(doomed):
                return
        shutil.rmtree(doomed, ignore_errors=True)

    def local_directory(self) -> str:
        return self.directory

    def list(self) -> list[dict[str, Any]]:
        """The metadata of every complete image, oldest first."""
        images = []
        for entry in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, entry, METADATA)
            if entry.startswith('.') or not os.path.isfile(path):
                continue
            with open(path) as f:
                images.append(json.load(f))
        return sorted(images, key=lambda doc: doc.get('created_at', ''))

    # -- chains of incremental images ----------------------------------
    def flatten(self, image_id: str) -> dict[str, Any]:
        """Make image ``image_id`` (a qcow2 backed by another image of
        the store) standalone, so that its backing image can go.

        The flat copy is written beside the image (``*.flat``) and
        renamed over it, then its metadata likewise; a crash in between
        is finished (or the copy dropped) by :meth:`finish_flatten`.

        :returns: the image's new metadata.
        """
        directory = os.path.join(self.directory, image_id)
        meta_path = os.path.join(directory, METADATA)
        with open(meta_path) as f:
            doc = json.load(f)
        image = os.path.join(directory, self.image_file(
            base.ImageMeta('', doc['format'])))
        flat = image + FLAT_SUFFIX
        gid = self.group_id()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(flat)
        private.create(flat)
        qemu_img.convert(self.conf, image, doc['format'], flat,
                         doc['format'])
        private.restrict(flat, gid)
        doc.update(sha256=durable.sync_and_hash(flat),
                   size=os.stat(flat).st_size,
                   flattened_from=doc.get('incremental_of'),
                   incremental_of=None)
        _write_metadata(meta_path + FLAT_SUFFIX, doc)
        private.restrict(meta_path + FLAT_SUFFIX, gid)
        os.rename(flat, image)
        durable.fsync_dir(directory)
        self.finish_flatten(image_id)
        return doc

    def finish_flatten(self, image_id: str) -> None:
        """Finish a flatten of ``image_id`` a crash cut short: a flat
        image not renamed yet is dropped; one renamed gets its new
        metadata. The caller makes sure no flatten of it runs.
        """
        directory = os.path.join(self.directory, image_id)
        names = os.listdir(directory)
        for name in names:
            if name.endswith(FLAT_SUFFIX) and name != METADATA + \
                    FLAT_SUFFIX:
                os.unlink(os.path.join(directory, name))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory,
                                           METADATA + FLAT_SUFFIX))
                return
        if METADATA + FLAT_SUFFIX in names:
            os.rename(os.path.join(directory, METADATA + FLAT_SUFFIX),
                      os.path.join(directory, METADATA))
            durable.fsync_dir(directory)


def undo_store_partial(r: undo.Recovering, step: journal.Step) -> None:
    """``store_partial``: remove the image being written."""
    undo.remove_path(r, step, lambda name: name.startswith('.') and
                     name.endswith(PARTIAL_SUFFIX), 'partial image')
