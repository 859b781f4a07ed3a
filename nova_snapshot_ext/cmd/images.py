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

"""The commands that manage the directory store and go back in time:
``list``, ``show``, ``delete`` and ``restore``.
"""

import argparse
from collections.abc import Callable
import json
import sys
from typing import Any, TextIO

from nova_snapshot_ext import catalog
from nova_snapshot_ext.cmd import progress as progress_mod
from nova_snapshot_ext import conf as nse_conf
from nova_snapshot_ext import exception
from nova_snapshot_ext import restore
from nova_snapshot_ext import revert
from nova_snapshot_ext.stores import base as store_base


def _json(args: argparse.Namespace) -> bool:
    return bool(args.json or args.sub_json)


def _dump(doc: Any, out: TextIO) -> int:
    json.dump(doc, out, sort_keys=True)
    out.write('\n')
    return 0


def _store(args: argparse.Namespace) -> store_base.ImageStore:
    return store_base.load(nse_conf.CONF, args.store)


def _size(value: Any) -> str:
    return exception.human_size(value) if value is not None else '?'


def list_line(image: dict[str, Any]) -> str:
    """One image as ``list`` prints it."""
    what = [image['method'] or '?', image['format'] or '?',
            _size(image['size'])]
    if image['parent']:
        what.append('incremental of %s' % image['parent'])
    if image['group']:
        what.append('disk %s of group %s' % (image['disk'], image['group']))
    if image['memory']:
        what.append('with memory')
    return '%s  %s  %-16s %r (%s)' % (
        image['id'], image['created_at'] or '?', image['guest'] or '?',
        image['name'], ', '.join(what))


def cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    images = catalog.list_images(_store(args), args.domain)
    if _json(args):
        return _dump({'images': images}, out)
    for image in images:
        out.write(list_line(image) + '\n')
    if not images:
        out.write('no images\n')
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    shown = catalog.show(_store(args), args.image)
    if _json(args):
        return _dump(shown, out)
    for key in sorted(shown):
        value = shown[key]
        if isinstance(value, list):
            value = ', '.join(str(v) for v in value) or '-'
        out.write('%-20s %s\n' % (key, value))
    return 0


def cmd_delete(args: argparse.Namespace, out: TextIO) -> int:
    deleted = catalog.delete(_store(args), args.image,
                             with_dependents=args.with_dependents)
    if _json(args):
        return _dump({'deleted': deleted}, out)
    for image_id in deleted:
        out.write('deleted %s\n' % image_id)
    return 0


def _done(args: argparse.Namespace, out: TextIO,
          call: Callable[[progress_mod.Progress], Any],
          lines: Callable[[Any], list[str]]) -> int:
    """Run ``call`` with a progress bar; print its result."""
    with progress_mod.bar(sys.stderr) as report:
        done = call(report)
    if _json(args):
        return _dump(done.as_dict(), out)
    out.write(''.join(line + '\n' for line in lines(done)))
    return 0


def cmd_restore(args: argparse.Namespace, out: TextIO) -> int:
    return _done(args, out, lambda report: restore.restore(
        nse_conf.CONF, args.image, args.new_domain, store=_store(args),
        disk_dir=args.disk_dir, start=args.start, progress=report),
        lambda done: ['restored image %s as %s (%s)%s in %.2f s' % (
            done.image, done.domain, ', '.join(
                '%s: %s' % (d['target'], d['path']) for d in done.disks),
            ', resumed from its memory' if done.resumed else
            ', started' if done.started else '', done.seconds)] + [
            '  note: %s' % note for note in done.notes])


def cmd_revert(args: argparse.Namespace, out: TextIO) -> int:
    return _done(args, out, lambda report: revert.revert(
        nse_conf.CONF, args.domain, args.image, store=_store(args),
        force=args.force, keep_old=args.keep_old, progress=report),
        lambda done: ['reverted %s to image %s (%s)%s in %.2f s; it %s' % (
            done.domain, done.image,
            ', '.join(d['target'] for d in done.disks),
            ', stopped first' if done.stopped else '', done.seconds,
            'runs on from its memory' if done.resumed else 'is shut off')] + [
            '  kept the old disk as %s' % old for old in done.kept_old])


COMMANDS = {'list': cmd_list, 'show': cmd_show, 'delete': cmd_delete,
            'restore': cmd_restore, 'revert': cmd_revert}
