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


"""Tempest options of the nova-snapshot-ext plugin ([nova_snapshot_ext]).

The devstack plugin sets them in ``tempest.conf`` to match how it set up
the compute hosts.
"""

from oslo_config import cfg

nova_snapshot_ext_group = cfg.OptGroup(
    name='nova_snapshot_ext',
    title='nova-snapshot-ext features',
    help='What the compute driver of nova-snapshot-ext is set up to do '
         'in the cloud under test.')

NovaSnapshotExtGroup = [
    cfg.BoolOpt(
        'live_snapshot',
        default=True,
        help='Snapshots of running servers are taken live, without pausing '
             'the server.'),
    cfg.BoolOpt(
        'rbd_direct',
        default=False,
        help='Snapshots are direct RBD clones registered as rbd:// '
             'locations in Glance, which shares the Ceph cluster with '
             'Nova.'),
    cfg.StrOpt(
        'rbd_availability_zone',
        help='The availability zone of the compute hosts whose instance '
             'disks are in Ceph, where the direct snapshot tests boot '
             'their server; unset: the default zone, where every host '
             'keeps its disks in Ceph.'),
]
