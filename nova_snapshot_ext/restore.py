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

"""``nova-snapshot-ext restore IMAGE --as NEW_DOMAIN``: a new guest from
an image of the directory store.

Each disk is written standalone: an incremental image is read with its
whole backing chain, and every image of an ``--all-disks`` group is
restored, each to its own disk. The files go to ``--disk-dir`` (by
default beside the disk each came from), named ``NEW_DOMAIN-TARGET.FMT``
in the format of the disk the domain had; none may exist yet. The new
domain is defined from the domain XML the snapshot recorded, as
:mod:`nova_snapshot_ext.libvirt.definition` rewrites it (its own name,
UUID and MAC addresses, the new disks), and started with ``--start``.

Every file and the definition are journaled before they are made: a
restore that fails removes them, and one that is killed leaves them to
``recover`` (:func:`undo_restore_disk`, :func:`undo_restore_domain`).
Nothing of the source guest is touched.
"""

from collections.abc import Callable
import contextlib
import dataclasses
import os
import re
import time
from typing import Any

import libvirt
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import uuidutils

from nova_snapshot_ext import catalog
from nova_snapshot_ext import exception
from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext.journal import undo
from nova_snapshot_ext.libvirt import definition
from nova_snapshot_ext.libvirt import disks as disks_mod
from nova_snapshot_ext.libvirt import domain
from nova_snapshot_ext.libvirt import host as host_mod
from nova_snapshot_ext.libvirt import memory as memory_mod
from nova_snapshot_ext import model
from nova_snapshot_ext import private
from nova_snapshot_ext.storage import qemu_img
from nova_snapshot_ext.stores import base as store_base
from nova_snapshot_ext.stores import file as file_store

LOG = logging.getLogger(__name__)

#: A new domain's name: also part of its files' names.
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$')


@dataclasses.dataclass
class Restored:
    """What ``restore`` made."""

    domain: str
    uuid: str
    image: str
    disks: list[dict[str, str]]
    started: bool
    seconds: float
    notes: list[str]
    #: It resumed the snapshot's memory (it runs where the guest was).
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Plan:
    new: definition.NewDisk
    source: str
    source_format: str
    image: str


def restore(conf: cfg.ConfigOpts, ref: str, name: str,
            store: store_base.ImageStore | None = None,
            disk_dir: str | None = None, start: bool = False,
            host: host_mod.Host | None = None,
            progress: model.Progress = model.no_progress) -> Restored:
    """Restore the image ``ref`` names (see :meth:`catalog.Catalog.find`)
    as the new domain ``name``.

    :raises SnapshotError: with a message for the operator; nothing is
        left of the restore.
    """
    started = time.monotonic()
    if not NAME_RE.match(name):
        raise exception.InvalidInput(
            reason='%r cannot name a new domain: use 1 to 64 letters, '
                   'digits and _.+- (not first)' % name)
    store = store or store_base.load(conf, 'file')
    cat = catalog.Catalog(store)
    doc = cat.find(ref)
    members = cat.group(doc)
    xml = _recorded_xml(cat, members[0])
    with contextlib.ExitStack() as owned:
        host = host or owned.enter_context(contextlib.closing(
            host_mod.Host(conf.snapshot_libvirt.connection_uri)))
        _check_free(host, name)
        plans = _plan(cat, xml, members, name, disk_dir)
        uuid, memory = uuidutils.generate_uuid(), None
        notes: list[str] = []
        if members[0].get('memory'):
            memory, xml, notes = _resumable(host, cat, members[0], xml,
                                            name)
            uuid = members[0]['source_uuid'] if memory else uuid
        with locks.guest_lock(conf, uuid, name), journal.opened(
                conf.snapshot.journal_directory, uuid, name, host.uri,
                store.spec, uuidutils.generate_uuid()) as j:
            notes += _make(conf, j, host, xml, name, uuid, plans, disk_dir,
                           start, progress, memory)
    LOG.info('Restored image %(image)s as domain %(name)s', {
        'image': doc['id'], 'name': name})
    return Restored(
        domain=name, uuid=uuid, image=doc['id'],
        disks=[{'target': p.new.target, 'path': p.new.path,
                'format': p.new.format, 'image': p.image} for p in plans],
        started=start or memory is not None,
        seconds=round(time.monotonic() - started, 3), notes=notes,
        resumed=memory is not None)


def _recorded_xml(cat: catalog.Catalog, doc: dict[str, Any]) -> str:
    path = cat.path_of(doc, file_store.DOMAIN_XML)
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        raise exception.InvalidInput(
            reason='image %s has no domain XML (it was taken by an earlier '
                   'release): write its disk with "qemu-img convert -f %s '
                   '%s DISK" and define a domain for it by hand' % (
                       doc['id'], doc['format'], cat.path_of(doc)))


def _resumable(host: host_mod.Host, cat: catalog.Catalog,
               doc: dict[str, Any], xml: str, name: str
               ) -> tuple[str | None, str, list[str]]:
    """Whether the new domain can resume the memory of image ``doc``: its
    memory file and the domain XML saved with it, or None, the recorded
    XML and why not. The memory is of the guest's name and UUID (libvirt
    resumes it under those only): it resumes as that guest, once no
    domain here has its UUID.
    """
    uuid, old = str(doc.get('source_uuid')), doc.get('source_domain')
    if name != old:
        return None, xml, [
            'the memory was not resumed: it resumes only as %s, the guest '
            'it is of; restore --as %s once that guest is gone, or revert '
            'it' % (old, old)]
    try:
        owner = host.call(lambda conn: conn.lookupByUUIDString(uuid).name())
    except libvirt.libvirtError:
        owner = None
    if owner is not None:
        return None, xml, [
            'the memory was not resumed: it is of %s (UUID %s), which is '
            'still defined here; revert %s to resume it, or restore again '
            'once it is gone' % (owner, uuid, owner)]
    memory = cat.path_of(doc, file_store.MEMORY)
    saved = domain.translated(doc.get('source_domain') or uuid,
                              'read the saved memory of', lambda: host.call(
                                  lambda c: c.saveImageGetXMLDesc(memory, 0)))
    return memory, saved, []


def _check_free(host: host_mod.Host, name: str) -> None:
    try:
        host.get_guest(name)
    except exception.GuestNotFound:
        return
    raise exception.InvalidInput(
        reason='a domain named %s exists on %s already: choose another '
               'name' % (name, host.uri))


def _plan(cat: catalog.Catalog, xml: str,
          members: list[dict[str, Any]], name: str,
          disk_dir: str | None) -> list[_Plan]:
    """Where each image of the snapshot goes."""
    plans = []
    for doc in members:
        target = doc.get('source_disk')
        old = (disks_mod.root_disk(xml, name) if not target else
               next((d for d in disks_mod.disks_of(xml, name)
                     if d.target == target), None))
        if old is None:
            raise exception.InvalidInput(
                reason='image %s is of disk %s, which its domain XML does '
                       'not have' % (doc['id'], target))
        directory = disk_dir or (os.path.dirname(old.path)
                                 if old.source_type == 'file' else None)
        if not directory:
            raise exception.InvalidInput(
                reason='disk %s was not a file: say where the restored '
                       'disks go with --disk-dir' % old.target)
        fmt = old.format if old.format in qemu_img.WRITE_FORMATS \
            else doc['format']
        path = os.path.join(os.path.abspath(directory), '%s-%s.%s' % (
            name, old.target, fmt))
        if os.path.lexists(path):
            raise exception.InvalidInput(
                reason='%s exists already: remove it or choose another '
                       'name or --disk-dir' % path)
        if not os.path.isdir(directory):
            raise exception.InvalidInput(
                reason='--disk-dir %s is not a directory' % directory)
        plans.append(_Plan(definition.NewDisk(old.target, path, fmt),
                           cat.path_of(doc), doc['format'],
                           doc['id']))
    return plans


def _make(conf: cfg.ConfigOpts, j: journal.Journal, host: host_mod.Host,
          xml: str, name: str, uuid: str, plans: list[_Plan],
          disk_dir: str | None, start: bool,
          progress: model.Progress, memory: str | None) -> list[str]:
    """Write the disks, define the domain and start it (resume
    ``memory``), each undone if a later one fails; the notes of the
    rewritten XML.
    """
    with contextlib.ExitStack() as undo_stack:
        for n, plan in enumerate(plans):
            write_disk(conf, j, journal.RESTORE_DISK, plan.source,
                       plan.source_format, plan.new.path, plan.new.format,
                       undo_stack,
                       disk_progress(progress, 'restore', n, len(plans)))
        files_dir = disk_dir or os.path.dirname(plans[0].new.path)
        new_xml, notes = definition.rewrite(
            xml, name, uuid, [p.new for p in plans], files_dir,
            same_guest=memory is not None)
        step = j.add(journal.RESTORE_DOMAIN, uuid=uuid, name=name)
        undo_stack.callback(_drop_step_domain, j, step, host, uuid, name)
        domain.translated(name, 'define', lambda: host.call(
            lambda conn: conn.defineXML(new_xml)))
        j.reached(journal.RESTORE_DOMAIN)
        if memory is not None:
            memory_mod.resume(host, name, memory, new_xml)
        elif start:
            domain.translated(name, 'start', lambda: host.call(
                lambda conn: conn.lookupByUUIDString(uuid).create()))
        undo_stack.pop_all()
    for s in j.steps:
        j.done(s)
    return notes


def disk_progress(progress: model.Progress, stage: str, n: int,
                  of: int) -> Callable[[float], None]:
    """The progress of the ``n``-th of ``of`` disks, as ``stage``."""
    return lambda f: progress(stage, (n + f) / of)


def write_disk(conf: cfg.ConfigOpts, j: journal.Journal, kind: str,
               source: str, source_format: str, path: str, fmt: str,
               undo_stack: contextlib.ExitStack,
               progress: Callable[[float], None],
               like: str | None = None) -> None:
    """``source`` (with its backing chain) written standalone into the
    new private file ``path``, synced. The file is journaled as ``kind``
    before it is made, and removed by ``undo_stack`` if a later step
    fails.

    :param like: a file whose owner and mode ``path`` takes.
    """
    step = j.add(kind, path=path)
    undo_stack.callback(_drop_file, j, step, path)
    private.create(path)
    j.reached(kind)
    qemu_img.convert(conf, source, source_format, path, fmt,
                     progress=progress)
    if like is not None:
        st = os.stat(like)
        os.chown(path, st.st_uid, st.st_gid)
        os.chmod(path, st.st_mode & 0o7777)
    durable.fsync_file(path)
    durable.fsync_dir(os.path.dirname(path))


def _drop_file(j: journal.Journal, step: journal.Step, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    j.done(step)


def drop_domain(host: Any, uuid: str, name: str) -> None:
    """Stop and undefine the new domain, if it is there."""
    def drop(conn: Any) -> None:
        try:
            dom = conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return
            raise
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(0)

    domain.translated(name, 'undefine', lambda: host.call(drop))


def _drop_step_domain(j: journal.Journal, step: journal.Step,
                      host: host_mod.Host, uuid: str, name: str) -> None:
    try:
        drop_domain(host, uuid, name)
    except exception.SnapshotError as e:
        LOG.error('Could not undefine the new domain %(name)s: %(err)s; '
                  '"nova-snapshot-ext recover" will', {'name': name,
                                                       'err': e})
        return
    j.done(step)


# -- recover ----------------------------------------------------------------
def undo_restore_disk(r: undo.Recovering, step: journal.Step) -> None:
    """``restore_disk``: remove the disk file a restore was writing."""
    undo.remove_path(r, step, lambda name: True,
                     'disk of a restore that did not end')


def undo_restore_domain(r: undo.Recovering, step: journal.Step) -> None:
    """``restore_domain``: stop and undefine the domain a restore was
    defining.
    """
    uuid, name = str(step.data.get('uuid')), str(step.data.get('name'))
    if r.guest() is None:
        r.act(undo.NOTHING, 'domain %s' % name, 'there is none')
        return
    r.act('undefine', 'domain %s' % name, 'its restore did not end',
          run=lambda: drop_domain(r.host, uuid, name))
