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

"""The raw backend: raw files and block devices.

A live snapshot mirrors the whole disk into a sparse qcow2 delta, which the
conversion turns into the requested format.
"""

from nova_snapshot_ext.backends import local


class RawBackend(local.FileBackend):
    """Local raw disks."""

    name = 'raw'
    disk_formats = ('raw',)
