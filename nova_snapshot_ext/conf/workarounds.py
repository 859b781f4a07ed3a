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

"""Escape hatches for host bugs ([snapshot_workarounds])."""

from oslo_config import cfg

workarounds_group = cfg.OptGroup(
    'snapshot_workarounds',
    title='Workarounds',
    help='Switches that work around bugs of a host. Leave them off unless '
         'a known bug bites.')

workarounds_opts = [
    cfg.BoolOpt(
        'disable_live_snapshot',
        deprecated_group='workarounds',
        default=False,
        help="""
Never take live snapshots: ``auto`` becomes cold and ``live`` fails.
Use it only on hosts whose libvirt or QEMU block jobs are unreliable.

Related options:

* ``[snapshot] method``
"""),
]


def list_opts() -> dict:
    return {workarounds_group: workarounds_opts}
