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

"""The ``nova-snapshot-ext`` command's arguments (see :mod:`.main`)."""

import argparse
import math
from typing import Any

PROG = 'nova-snapshot-ext'


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, '%s: error: %s (see %s --help)\n' % (
            self.prog, message, self.prog))


def _property(text: str) -> tuple[str, str]:
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            'expected KEY=VALUE, got %r' % text)
    return key.strip(), value


def _seconds(text: str, zero: bool = False) -> float:
    """A finite number of seconds above 0 (or 0 and above, with
    ``zero``).
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise argparse.ArgumentTypeError(
            'expected a number of seconds %s, got %r' % (
                '(0 or more)' if zero else 'above 0', text))
    return value


def _duration(text: str) -> float:
    """Seconds, or a number followed by s, m, h or d."""
    units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
    scale = units.get(text[-1:].lower(), 0)
    return _seconds(text[:-1] if scale else text) * (scale or 1)


def _age(text: str) -> float:
    return _seconds(text, zero=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description='Snapshot libvirt guests into '
                                            'images.')
    parser.add_argument('--config-file', action='append', default=[],
                        metavar='F', help='configuration file (repeatable)')
    parser.add_argument('--connect', metavar='URI',
                        help='libvirt URI (default: [snapshot_libvirt] '
                             'connection_uri)')
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object')
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='log progress on stderr')
    parser.add_argument('--debug', action='store_true',
                        help='log everything, tracebacks included')
    sub = parser.add_subparsers(dest='command', required=True,
                                parser_class=_Parser)

    subparsers = [add(sub) for add in (_snapshot, _check, _gc, _recover,
                                       _verify, _list, _show, _delete,
                                       _restore, _revert)]
    # Global options may also follow the subcommand.
    for p in subparsers:
        p.add_argument('--config-file', action='append',
                       dest='sub_config_file', default=[], metavar='F',
                       help=argparse.SUPPRESS)
        p.add_argument('--connect', dest='sub_connect', metavar='URI',
                       help=argparse.SUPPRESS)
        p.add_argument('--json', dest='sub_json', action='store_true',
                       help=argparse.SUPPRESS)
    return parser


def _snapshot(sub: Any) -> argparse.ArgumentParser:
    """The ``snapshot`` subcommand."""
    snap = sub.add_parser('snapshot', help='snapshot a guest into an image')
    snap.add_argument('domain', metavar='DOMAIN', help='name or UUID')
    snap.add_argument('--name', required=True, help='image name')
    snap.add_argument('--method', choices=('auto', 'live', 'cold'))
    snap.add_argument('--format', dest='image_format',
                      choices=('qcow2', 'raw'))
    snap.add_argument('--store', metavar='STORE',
                      help='file, file:///abs/dir, glance (as '
                           '[snapshot_glance] configures it), '
                           'glance+http://HOST:PORT (a Glance without '
                           'Keystone); default: [snapshot] default_store')
    snap.add_argument('--property', dest='properties', action='append',
                      default=[], type=_property, metavar='KEY=VALUE',
                      help='image property (repeatable), e.g. '
                           'base_image_ref=UUID')
    snap.add_argument('--image-id', metavar='ID',
                      help='fill this existing queued image record '
                           'instead of creating one')
    snap.add_argument('--quiesce', choices=('never', 'auto', 'required'))
    snap.add_argument('--incremental', action='store_true',
                      help='into the directory store: a qcow2 of only the '
                           'blocks changed since the guest\'s last '
                           'incremental snapshot there, backed by its '
                           'image (a full image when there is none, and '
                           'why)')
    snap.add_argument('--keep', type=int, default=0, metavar='N',
                      help='with --incremental: keep the N newest '
                           'restore points (images taken with '
                           '--incremental, of any chain) of the guest in '
                           'the store; a kept one backed by an older one '
                           'is made standalone, older ones are deleted')
    snap.add_argument('--all-disks', action='store_true',
                      help='an image of every disk, all at one point in '
                           'time (the others named NAME-<disk>); by '
                           'default the root disk only')
    snap.add_argument('--memory', action='store_true',
                      help='the guest\'s memory too, with every disk at '
                           'one point in time, the guest running on '
                           '(directory store); restore and revert resume '
                           'the guest where it was')
    snap.add_argument('--expire-after', type=_duration, metavar='DURATION',
                      help='the image expires this long after it is taken '
                           '(seconds, or a number with s, m, h or d): its '
                           'property expires_at says when, and gc removes '
                           'it from the directory store once it has passed')
    snap.add_argument('--timeout', type=_seconds, metavar='SECONDS',
                      help='cancel the snapshot (undoing what it made) '
                           'after this many seconds (default: [snapshot] '
                           'timeout)')
    return snap


def _check(sub: Any) -> argparse.ArgumentParser:
    """The ``check`` subcommand."""
    check = sub.add_parser('check', help='host facts, and the method a '
                                         'snapshot of each guest would use')
    check.add_argument('domain', metavar='DOMAIN', nargs='?')
    check.add_argument('--store', metavar='STORE',
                       help='the store a snapshot would go to (whether a '
                            'direct snapshot is possible depends on it); '
                            'default: [snapshot] default_store')
    check.add_argument('--nova', action='store_true',
                       help='instead, check this compute host for the '
                            'Nova driver: shim, compute_driver, options, '
                            'directories, libvirt, Ceph, Glance (run it in '
                            'nova-compute\'s environment)')
    check.add_argument('--nova-config', action='append', metavar='FILE',
                       help='with --nova: nova-compute\'s configuration '
                            'file (repeatable; default /etc/nova/nova.conf)')
    check.add_argument('--user', metavar='USER',
                       help='with --nova: the user nova-compute runs as '
                            '(default: this one)')
    return check


def _gc(sub: Any) -> argparse.ArgumentParser:
    """The ``gc`` subcommand."""
    gc = sub.add_parser(
        'gc', help='remove what interrupted snapshots left behind (queued '
                   'image records of this command, temporary and partial '
                   'directories, Ceph snapshots and clones) and flatten '
                   'deferred RBD clones')
    gc.add_argument('--dry-run', action='store_true',
                    help='only list what would be done')
    gc.add_argument('--store', metavar='STORE', default='glance',
                    help='the store that holds the images: glance (as '
                         '[snapshot_glance] configures it, the default), '
                         'glance+http://HOST:PORT, or file (local '
                         'leftovers only)')
    gc.add_argument('--min-age', type=_age, metavar='SECONDS',
                    help='treat what unfinished snapshots made, older than '
                         'this and owned by no running snapshot, as left '
                         'by interrupted ones (default: [snapshot_rbd] '
                         'gc_min_age)')
    return gc


def _recover(sub: Any) -> argparse.ArgumentParser:
    """The ``recover`` subcommand."""
    rec = sub.add_parser(
        'recover', help='finish or undo what interrupted snapshots left '
                        '(block jobs, managed saves, definitions, files, '
                        'queued images, Ceph snapshots and clones)')
    rec.add_argument('--dry-run', action='store_true',
                     help='only list what would be done')
    return rec


def _verify(sub: Any) -> argparse.ArgumentParser:
    """The ``verify`` subcommand."""
    ver = sub.add_parser(
        'verify', help='read a stored image back: its size and hash '
                       'against the store\'s record, qemu-img check of '
                       'a qcow2, and the whole chain of an incremental '
                       'image')
    ver.add_argument('image', metavar='IMAGE',
                     help='image id (or, in the directory store, the '
                          'image file\'s path)')
    ver.add_argument('--store', metavar='STORE',
                     help='file, file:///abs/dir, glance or '
                          'glance+http://HOST:PORT; default: [snapshot] '
                          'default_store')
    return ver


_DIRECTORY_STORE = ('the directory store: file (as [snapshot_file_store] '
                    'configures it, the default) or file:///abs/dir')
_IMAGE = ('image id, the image file\'s path, or a name that only one '
          'image has')


_IMAGE_ARG = ('image', {'metavar': 'IMAGE', 'help': _IMAGE})


def _on_store(sub: Any, name: str, help: str,
              *positionals: tuple[str, dict]) -> argparse.ArgumentParser:
    """A subcommand on the directory store: its positionals, --store."""
    p = sub.add_parser(name, help=help)
    for dest, kwargs in positionals:
        p.add_argument(dest, **kwargs)
    p.add_argument('--store', metavar='STORE', default='file',
                   help=_DIRECTORY_STORE)
    return p


def _list(sub: Any) -> argparse.ArgumentParser:
    """The ``list`` subcommand."""
    return _on_store(sub, 'list', 'list the images of the directory store, '
                     'oldest first', ('domain', {
                         'metavar': 'DOMAIN', 'nargs': '?',
                         'help': 'only the images of this guest (its name)'}))


def _show(sub: Any) -> argparse.ArgumentParser:
    """The ``show`` subcommand."""
    return _on_store(sub, 'show', 'everything recorded about an image of '
                     'the directory store', _IMAGE_ARG)


def _delete(sub: Any) -> argparse.ArgumentParser:
    """The ``delete`` subcommand."""
    rm = _on_store(sub, 'delete', 'delete an image of the directory store',
                   _IMAGE_ARG)
    rm.add_argument('--with-dependents', action='store_true',
                    help='also delete the incremental images taken after '
                         'it, which need it (refused otherwise)')
    return rm


def _restore(sub: Any) -> argparse.ArgumentParser:
    """The ``restore`` subcommand."""
    res = _on_store(sub, 'restore', 'define a new guest from an image of '
                    'the directory store', _IMAGE_ARG)
    res.add_argument('--as', dest='new_domain', metavar='NEW_DOMAIN',
                     required=True, help='the new guest\'s name')
    res.add_argument('--disk-dir', metavar='DIR',
                     help='where its disks are written (default: beside '
                          'the disks of the guest the image was taken of)')
    res.add_argument('--start', action='store_true',
                     help='start the new guest')
    return res


def _revert(sub: Any) -> argparse.ArgumentParser:
    """The ``revert`` subcommand."""
    rev = _on_store(sub, 'revert', 'replace a shut-off guest\'s disks by an '
                    'image of it', ('domain', {'metavar': 'DOMAIN',
                                               'help': 'name or UUID'}),
                    _IMAGE_ARG)
    rev.add_argument('--force', action='store_true',
                     help='stop the guest first if it runs (and drop its '
                          'managed save)')
    rev.add_argument('--keep-old', action='store_true',
                     help='keep the old disks, as DISK.nse-old')
    return rev
