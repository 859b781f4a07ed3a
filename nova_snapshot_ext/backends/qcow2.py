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

"""The qcow2 backend: qcow2 disks, with or without a backing file.

A live snapshot mirrors only the top image into a delta that shares the
disk's backing file; the conversion then flattens delta and backing file
into one standalone image.
"""

from nova_snapshot_ext.backends import local


class Qcow2Backend(local.FileBackend):
    """Local qcow2 disks."""

    name = 'qcow2'
    disk_formats = ('qcow2',)
