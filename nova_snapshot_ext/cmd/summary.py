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

"""What the command prints about a snapshot."""

from nova_snapshot_ext import exception
from nova_snapshot_ext import model
from nova_snapshot_ext import verify


def summary(result: model.SnapshotResult) -> str:
    """The lines the command prints for ``result`` (without --json)."""
    lines = [_line(result)]
    if result.incremental_of:
        lines.append('  incremental: only the blocks changed since image %s'
                     % result.incremental_of)
    elif result.incremental_reason:
        lines.append('  a full image, not incremental: %s' %
                     result.incremental_reason)
    for other in result.disks[1:]:
        lines.append('  and disk %(disk)s: %(image)s (%(format)s, %(size)s)'
                     % dict(other, size=exception.human_size(
                         other['size'])))
    return '\n'.join(lines)


def _line(result: model.SnapshotResult) -> str:
    return ('%(method)s snapshot of %(guest)s%(disk)s: %(image)s '
            '(%(format)s, %(size)s%(sha)s, %(secs).2f s%(down)s): %(reason)s'
            % {'method': result.method, 'guest': result.guest,
               'disk': ' disk %s' % result.disk if result.disk else '',
               'image': result.image, 'format': result.format,
               'size': exception.human_size(result.size),
               'sha': (', sha256 %s...' % result.sha256[:12]
                       if result.sha256 else ''),
               'secs': result.seconds,
               'down': (', guest paused %.2f s' % result.downtime
                        if result.downtime else ''),
               'reason': result.reason})


def verified(report: verify.Report) -> str:
    """The line the command prints for a good image (without --json)."""
    first = report.members[0]
    chain = len(report.members)
    return '%s: good (%s, %s%s%s)%s' % (
        report.image, first['format'],
        exception.human_size(first['size']),
        ', sha256 %s...' % first['sha256'][:12] if first['sha256'] else '',
        ', qemu-img check %s' % first['qemu_img_check']
        if first['qemu_img_check'] else '',
        '; its chain of %d images too' % chain if chain > 1 else '')
