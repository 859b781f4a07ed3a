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

"""What ``nova-snapshot-ext gc`` sweeps besides Ceph: queued Glance
records the command made, and local leftovers.

Nothing is swept that a live snapshot may own: a journal whose owner still
runs (:func:`nova_snapshot_ext.journal.durable.owner_alive`) claims what its
steps name, and only what is older than the minimum age is taken, so that a
snapshot whose journal lives elsewhere (another ``journal_directory``)
keeps its files too.

* Glance records: queued, made by the command (the property
  ``snapshot_made_by`` = ``nova-snapshot-ext``, which ``--property``
  cannot set), created more than ``min_age`` seconds ago, claimed by no
  live journal. Records made by Nova's compute API never carry the
  property.
* Local leftovers: ``snap-*``, ``glance-*`` and ``image-*`` directories in
  ``[snapshot] temp_directory``, and ``.<id>.partial`` (an image being
  written) and ``.<id>.<tag>.deleting`` (an image being deleted)
  directories in ``[snapshot_file_store] directory`` and in the directory
  store ``gc`` was given, last changed more than ``min_age`` seconds ago,
  claimed by no live journal.

Each finding is an :class:`nova_snapshot_ext.journal.undo.Action`;
:mod:`nova_snapshot_ext.cleanup.gc` reports and runs them.
"""

import datetime
import functools
import os
import shutil
import time

from oslo_config import cfg
from oslo_log import log as logging

from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import temp
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store

LOG = logging.getLogger(__name__)

REMOVE_DIR, DELETE_RECORD = 'remove directory', 'delete image record'


class Claims:
    """What the journals of live snapshots name."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.records: set[str] = set()
        self.paths: set[str] = set()
        for path in journal.paths(conf.snapshot.journal_directory):
            try:
                j = journal.read(path)
            except exception.JournalNotOurs as e:
                LOG.warning('%s', e.message)
                continue
            except exception.JournalUnreadable as e:
                LOG.debug('Skipping %s: %s', path, e)
                continue
            owner = j.header.get('owner') or {}
            # NOTE: another host's journal (a shared directory) claims
            # what it names: this host cannot tell whether it still runs.
            if durable.owner_here(owner) and not durable.owner_alive(owner):
                continue
            for step in j.steps:
                if step.kind == journal.GLANCE_IMAGE:
                    self.records.add(str(step.data.get('id')))
                elif step.kind in (journal.TEMP_DIR, journal.STORE_PARTIAL):
                    self.paths.add(os.path.realpath(
                        str(step.data.get('path'))))


def local(conf: cfg.ConfigOpts, min_age: float, claims: Claims,
          store: store_base.ImageStore | None = None
          ) -> list[undo.Action]:
    """Temporary, partial and half-deleted directories no live snapshot
    owns, in the configured directories and in ``store`` when it is a
    directory store.
    """
    found = []
    temp_dir = conf.snapshot.temp_directory
    for name in _names(temp_dir):
        if temp.ours(name):
            found += _old_dir(os.path.join(temp_dir, name), 'temporary '
                              'directory', min_age, claims)
    stores = [os.path.normpath(conf.snapshot_file_store.directory)]
    here = store.local_directory() if store is not None else None
    if here is not None and here not in stores:
        stores.append(here)
    for images in stores:
        for name in _names(images):
            if not name.startswith('.'):
                continue
            if name.endswith(file_store.PARTIAL_SUFFIX):
                found += _old_dir(os.path.join(images, name),
                                  'partial image', min_age, claims)
            elif name.endswith(file_store.DELETING_SUFFIX):
                found += _old_dir(os.path.join(images, name),
                                  'half-deleted image', min_age, claims,
                                  'left by an interrupted delete')
    return found


def _names(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except FileNotFoundError:
        return []


def _old_dir(path: str, what: str, min_age: float, claims: Claims,
             left_by: str = 'left by an interrupted snapshot'
             ) -> list[undo.Action]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    if not os.path.isdir(path) or os.path.islink(path):
        return []
    if os.path.realpath(path) in claims.paths:
        return []
    age = time.time() - st.st_mtime
    if age < min_age:
        return []
    return [undo.Action(REMOVE_DIR, path,
                        '%s %s (%d s old, no snapshot running owns it)' % (
                            what, left_by, age),
                        run=lambda: _rmtree(path))]


def _rmtree(path: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise exception.SnapshotError('cannot remove %s: %s' % (
            path, e.strerror or e))


def records(store: store_base.ImageStore, min_age: float,
            claims: Claims) -> list[undo.Action]:
    """Queued records of the command's that no live snapshot owns."""
    now = datetime.datetime.now(datetime.timezone.utc)
    found: list[undo.Action] = []
    for image in store.queued_of_ours():
        image_id = image['id']
        if image_id in claims.records:
            continue
        age = (now - _when(image.get('created_at'), now)).total_seconds()
        if age < min_age:
            continue
        found.append(undo.Action(
            # NOTE: the name is the image owner's text: repr() shows
            # control characters escaped, so it cannot forge lines.
            DELETE_RECORD, '%s image %s (%r)' % (store, image_id,
                                                 image.get('name')),
            'queued for %d s, made by an interrupted snapshot of the '
            'command' % age,
            run=functools.partial(store.delete, image_id)))
    return found


def _when(text: object, default: datetime.datetime) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(str(text))
    except ValueError:
        # NOTE: no date: as young as can be, so never swept.
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when
