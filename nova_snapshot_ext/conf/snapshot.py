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

"""Options of the snapshot pipeline: [DEFAULT] paths and [snapshot]."""

from oslo_config import cfg

default_opts = [
    cfg.StrOpt(
        'state_path',
        default='/var/lib/nova-snapshot-ext',
        help="""
Top directory for the files nova-snapshot-ext keeps: temporary snapshot
files, locks and, with the file store, the images.

Related options:

* ``[snapshot] temp_directory``, ``[snapshot_file_store] directory`` and
  ``[oslo_concurrency] lock_path`` default to directories below it.
"""),
]

snapshot_group = cfg.OptGroup(
    'snapshot',
    title='Snapshot options',
    help='How snapshots are taken: method, output format and quiesce.')

snapshot_opts = [
    cfg.StrOpt(
        'method',
        default='auto',
        choices=[
            ('auto', 'live when the guest and the host allow it, otherwise '
                     'cold'),
            ('live', 'live only: fail, naming the reason, when a live '
                     'snapshot is not possible'),
            ('cold', 'always suspend a running guest for the copy'),
        ],
        help="""
Default snapshot method when a request does not name one.

Possible values:

* ``auto``: the guest keeps running whenever possible (recommended).
* ``live``: never pause the guest; fail when that is not possible.
* ``cold``: always stop the guest's CPUs while its disk is copied.

Related options:

* ``[snapshot_workarounds] disable_live_snapshot``
* ``[snapshot_libvirt] min_libvirt_version`` and ``min_qemu_version``
"""),
    cfg.StrOpt(
        'image_format',
        choices=[('qcow2', 'QEMU copy-on-write v2'), ('raw', 'raw bytes')],
        help="""
Format of the snapshot image. When unset, the image has the format of the
guest's disk.
"""),
    cfg.BoolOpt(
        'compress',
        default=False,
        help="""
Compress qcow2 snapshot images (``qemu-img convert -c``). Smaller images,
slower snapshots. Has no effect on raw images.
"""),
    cfg.StrOpt(
        'quiesce',
        default='auto',
        choices=[
            ('never', 'do not ask the guest agent to freeze filesystems'),
            ('auto', 'freeze when a guest agent answers, otherwise go on '
                     'crash-consistent'),
            ('required', 'fail, leaving the guest untouched, when the '
                         'guest agent cannot freeze the filesystems'),
        ],
        help="""
Whether live snapshots freeze the guest's filesystems through the QEMU guest
agent for the moment the copy is cut. Cold snapshots do not need it.
"""),
    cfg.StrOpt(
        'temp_directory',
        default='$state_path/tmp',
        help="""
Directory for the temporary files of a snapshot (the live copy of the
disk and, for stores that upload, the converted image). It needs room for
about one copy of the guest's disk and must be traversable by the user QEMU
runs as (the directory is created with mode 0711).
"""),
    cfg.StrOpt(
        'default_store',
        default='file',
        help="""
Image store used when a request names none.

Possible values:

* ``file``: the directory ``[snapshot_file_store] directory``.
* ``file:///abs/dir``: another directory.
"""),
    cfg.IntOpt(
        'block_job_timeout',
        default=3600,
        min=1,
        help="""
Seconds to wait for the live copy of a disk to catch up with the guest
before the snapshot is abandoned (the guest is left as it was).
"""),
    cfg.FloatOpt(
        'block_job_poll_interval',
        default=0.05,
        min=0.01,
        help='Seconds between two checks of a running block copy job.'),
]


def list_opts() -> dict:
    return {'DEFAULT': default_opts, snapshot_group: snapshot_opts}
