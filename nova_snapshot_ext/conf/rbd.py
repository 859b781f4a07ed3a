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

"""Options of the rbd backend and its Ceph connection ([snapshot_rbd])."""

from oslo_config import cfg

rbd_group = cfg.OptGroup(
    'snapshot_rbd',
    title='RBD (Ceph) backend',
    help="""
How the ``rbd`` backend reaches Ceph, and how it snapshots a guest whose
root disk is an RBD image: directly inside Ceph when Glance stores its
images in the same cluster, otherwise by exporting an RBD snapshot.
""")

rbd_opts = [
    cfg.StrOpt(
        'ceph_conf',
        deprecated_group='rbd',
        default='/etc/ceph/ceph.conf',
        help="""
Path of the ceph.conf that names the cluster's monitors. The client's
keyring is found the way librados finds it (the ``keyring`` setting of
that file, or ``/etc/ceph/ceph.client.USER.keyring``).
"""),
    cfg.StrOpt(
        'user',
        deprecated_group='rbd',
        default='admin',
        help="""
Ceph client id, without ``client.`` (Nova's ``[libvirt] rbd_user``). For
the direct path it needs write access to Glance's pool, e.g. ``osd
'profile rbd pool=vms, profile rbd pool=images'``.
"""),
    cfg.IntOpt(
        'connect_timeout',
        deprecated_group='rbd',
        default=5,
        min=1,
        help="""
Seconds to wait for the Ceph monitors when connecting.
"""),
    cfg.BoolOpt(
        'direct_snapshot',
        deprecated_group='rbd',
        default=True,
        help="""
Take direct snapshots (RBD snapshot, clone into Glance's pool, register
the clone as the image's location) when Glance stores images in the same
Ceph cluster. When off, or when the direct path is not possible, the disk
is exported from an RBD snapshot and uploaded, and the reason is logged
and stored with the image.
"""),
    cfg.StrOpt(
        'flatten',
        deprecated_group='rbd',
        default='inline',
        choices=[
            ('inline', 'flatten the clone before the image becomes active, '
                       'as Nova does'),
            ('deferred', 'the image becomes active at once; "nova-snapshot-'
                         'ext gc" flattens the clone afterwards'),
        ],
        help="""
When the clone of a direct snapshot is flattened, i.e. stops depending on
the guest's disk. Flattening copies the data the disk holds, so with
``inline`` the time until the image is active grows with the disk; with
``deferred`` it does not, and the guest's disk keeps a protected snapshot
until ``nova-snapshot-ext gc`` has flattened the clone.
"""),
    cfg.StrOpt(
        'glance_store',
        deprecated_group='rbd',
        default='',
        help="""
Id of Glance's rbd store (an entry of Glance's ``enabled_backends``, e.g.
``rbd1``) that direct snapshots register their images in. Empty: Glance's
default store when it is an rbd store, otherwise its only rbd store.
"""),
    cfg.StrOpt(
        'glance_pool',
        deprecated_group='rbd',
        default='',
        help="""
Pool of Glance's rbd store, for a Glance that does not show its store
details to this service's credentials (``GET /v2/info/stores/detail``
needs the admin or service role). Empty: learnt from Glance, or from the
location of the guest's base image.
"""),
    cfg.IntOpt(
        'busy_retries',
        deprecated_group='rbd',
        default=10,
        min=0,
        help="""
How many times to retry an RBD operation that fails because the image is
busy (another client has it open or is changing it), with a growing pause
of up to ``busy_retry_interval`` seconds between tries.
"""),
    cfg.FloatOpt(
        'busy_retry_interval',
        deprecated_group='rbd',
        default=2.0,
        min=0,
        help="""
Longest pause, in seconds, between retries of a busy RBD operation.
"""),
    cfg.IntOpt(
        'gc_min_age',
        deprecated_group='rbd',
        default=3600,
        min=0,
        help="""
Seconds after which ``nova-snapshot-ext gc`` treats an unfinished direct
snapshot as interrupted. Younger ones may still be running and are left
alone. Finished snapshots waiting for a deferred flatten are flattened
whatever their age.
"""),
]


def list_opts() -> dict:
    return {rbd_group: rbd_opts}
