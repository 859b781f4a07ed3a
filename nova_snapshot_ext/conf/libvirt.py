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

"""Options of the libvirt connection and of live snapshots
([snapshot_libvirt]).
"""

from oslo_config import cfg

libvirt_group = cfg.OptGroup(
    'snapshot_libvirt',
    title='libvirt options',
    help='The libvirt connection and how live snapshots copy the disk.')

libvirt_opts = [
    cfg.StrOpt(
        'connection_uri',
        default='qemu:///system',
        help='libvirt URI of the hypervisor that runs the guests.'),
    cfg.StrOpt(
        'min_libvirt_version',
        deprecated_group='libvirt',
        default='8.0.0',
        help="""
Oldest libvirt with which live snapshots are taken. With an older libvirt,
``auto`` takes a cold snapshot and ``live`` fails.
"""),
    cfg.StrOpt(
        'min_qemu_version',
        deprecated_group='libvirt',
        default='6.2.0',
        help="""
Oldest QEMU with which live snapshots are taken. With an older QEMU,
``auto`` takes a cold snapshot and ``live`` fails.
"""),
    cfg.StrOpt(
        'live_copy_style',
        deprecated_group='libvirt',
        default='auto',
        choices=[
            ('auto', 'backup where libvirt and QEMU have the backup API, '
                     'else blockcopy where libvirt has the transient-job '
                     'flag, rebase otherwise'),
            ('backup', 'libvirt\'s backup API (virDomainBackupBegin, pull '
                       'mode): the disk as it was when the job began, read '
                       'once and written once into the image, nothing '
                       'staged on the host'),
            ('blockcopy', 'virDomainBlockCopy with TRANSIENT_JOB: the '
                          'domain stays persistent throughout'),
            ('rebase', 'Nova\'s way: the domain is made transient for the '
                       'copy (blockRebase COPY) and defined again after'),
        ],
        help="""
How a live snapshot copies the disk while the guest runs.

``blockcopy`` and ``rebase`` mirror the disk into a delta in
``[snapshot] temp_directory`` and then convert delta and backing file
into the image: the data is read and written twice. ``backup`` reads it
once; the guest's writes during the copy cost a copy-before-write into a
scratch file in ``[snapshot] temp_directory``.

Related options:

* ``[snapshot_libvirt] live_copy_bandwidth``
"""),
    cfg.IntOpt(
        'live_copy_bandwidth',
        deprecated_group='libvirt',
        default=0,
        min=0,
        help="""
Bandwidth limit of the live disk copy in MiB/s, to spare the guest's I/O.
0 means no limit. With ``live_copy_style = backup`` it limits the read of
the backup job's export into an image file (not the stream into Glance,
which Glance's upload paces): the guest's writes share the disk and QEMU's
event loop with that read, and an unlimited read can slow them to a tenth.
"""),
    cfg.FloatOpt(
        'live_copy_guest_share',
        default=0.0,
        min=0.0,
        max=1.0,
        help="""
Guest first: with ``live_copy_style = backup``, pace the read of the
backup job's export into an image file so that the guest keeps at least
this share of its own disk write rate (e.g. 0.8). The engine watches the
guest's write requests (libvirt's block statistics) every 0.25 s, halves
the read's rate when the guest falls below the share and raises it by half
when it does not; a guest that does not write is not waited for. The
snapshot takes longer when the guest is busy. 0 (the default) turns it
off: the export is read as fast as it can be, up to
``live_copy_bandwidth``. Not used for images streamed into Glance or
written by qemu-img (raw and compressed images), which
``live_copy_bandwidth`` alone limits.

Related options:

* ``[snapshot_libvirt] live_copy_bandwidth``: also the ceiling of the
  paced rate.
"""),
]


def list_opts() -> dict:
    return {libvirt_group: libvirt_opts}
