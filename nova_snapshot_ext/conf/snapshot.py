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

* ``[snapshot] temp_directory``, ``lock_path``, ``journal_directory``,
  ``[snapshot_file_store] directory`` and ``[oslo_concurrency] lock_path``
  default to directories below it.
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
* ``live``: never pause the guest; fail when that is not possible. In
  the Nova driver: live where possible, otherwise as ``auto`` (Nova's
  shelve and snapshots of stopped servers do not fail).
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
agent for the moment the copy is cut. Cold snapshots, and guests that do not
run, are never frozen and never fail for it. The Nova driver never freezes
a guest for a direct RBD snapshot, as Nova's own driver does not.
"""),
    cfg.IntOpt(
        'quiesce_timeout',
        default=30,
        min=1,
        help="""
Seconds to wait for the QEMU guest agent to freeze (or thaw) the guest's
filesystems. An agent that does not answer in time (a freeze hook that
hangs, a guest too busy) counts as a failed freeze: the snapshot fails when
``quiesce`` is ``required`` and goes on crash-consistent otherwise, and the
guest is thawed. The guest's agent response timeout
(``virDomainAgentSetResponseTimeout``) is set to this value for the freeze
and the thaw, then set back to libvirt's default (wait forever).

Related options:

* ``quiesce``
"""),
    cfg.StrOpt(
        'temp_directory',
        default='$state_path/tmp',
        help="""
Directory for the temporary files of a snapshot (the live copy of the
disk and, for stores that upload, the converted image). It needs room for
about one copy of the guest's disk, and every directory above it must be
traversable by the user or the group QEMU runs as. When it is created, it
and each snapshot's directory in it are mode 0710, QEMU's group's (0711
when this user may not give them that group); the files are 0600.
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
    cfg.StrOpt(
        'lock_path',
        default='$state_path/locks',
        help="""
Directory of the per-guest lock files (``snapshot-<domain uuid>``) and of
the host-wide snapshot slots. Only one snapshot of a guest runs at a time
among the processes that use the same directory: give nova-compute and
the command line the same one.

In nova-compute the default is the command line's default,
``/var/lib/nova-snapshot-ext/locks``, not below Nova's ``state_path``.

Related options:

* ``journal_directory``, ``max_concurrent``
"""),
    cfg.StrOpt(
        'journal_directory',
        default='$state_path/snapshots',
        help="""
Directory of the journals of snapshots in progress: one small file per
snapshot, listing what it made outside the process (temporary files, the
block job, the saved domain XML, a managed save, a freeze, the image record,
Ceph snapshots and clones), so that ``nova-snapshot-ext recover`` (and
nova-compute when it starts) can finish or undo what a killed snapshot left.
Give nova-compute and the command line the same one.

In nova-compute the default is the command line's default,
``/var/lib/nova-snapshot-ext/snapshots``, not below Nova's ``state_path``.
"""),
    cfg.IntOpt(
        'max_concurrent',
        default=5,
        min=0,
        help="""
Maximum number of snapshots the command line takes at the same time on
this host (among processes that share ``lock_path``); more wait, saying
so. 0 means no limit. nova-compute uses Nova's own
``[DEFAULT] max_concurrent_snapshots`` instead.
"""),
    cfg.IntOpt(
        'max_per_guest',
        default=0,
        min=0,
        help="""
Most snapshots of one guest the command line keeps in the directory store
(an ``--all-disks`` group counts once); a snapshot beyond it is refused,
saying so, before the guest is touched, unless it is taken with
``--incremental --keep N``, which rotates the guest's restore points. 0
means no limit. nova-compute does not use it: Nova's ``createBackup``
rotation does that.
"""),
    cfg.IntOpt(
        'timeout',
        default=0,
        min=0,
        help="""
Seconds after which a snapshot is cancelled, the guest left as it was and
what it made undone; 0 means no limit. The command line's ``--timeout``
overrides it. The limit is checked between steps and as the copy, the
conversion and the upload progress; one libvirt or storage call that hangs
is not interrupted.
"""),
    cfg.StrOpt(
        'metrics_file',
        help="""
Write figures of the host's snapshots to this file in the Prometheus text
format, for the node exporter's textfile collector (a ``.prom`` file in
its ``--collector.textfile.directory``): snapshots by method, result and
store, their duration, bytes stored and the guests' pauses, and when the
last one ended. Every snapshot, of the command line or of nova-compute,
writes the file again whole; the counters are kept in ``state_path``
across restarts. Unset (the default): no figures are kept.
"""),
    cfg.BoolOpt(
        'verify',
        default=False,
        help="""
Verify each snapshot right after it is stored, as ``nova-snapshot-ext
verify`` does: the stored image is read back, its size and hash compared
with what the store recorded, a qcow2 image checked with ``qemu-img
check``, and an incremental image's whole chain likewise. A snapshot whose
image fails is a failed snapshot: its image is deleted (under Nova, Nova
deletes the record) and the error names what is wrong.

Reading the image back costs about as long as writing it; a direct (Ceph)
snapshot, whose data the snapshot does not read, is not verified.

Possible values:

* ``false`` (default): images are verified only on request.
* ``true``: applies to the command line and to the Nova driver.

Related options:

* ``[snapshot_qemu_img] info_cpu_time_limit`` and
  ``info_address_space_limit`` also limit ``qemu-img check``.
* ``[snapshot] temp_directory`` holds the copy of a Glance image while
  ``qemu-img check`` reads it.
"""),
]


def list_opts() -> dict:
    return {'DEFAULT': default_opts, snapshot_group: snapshot_opts}
