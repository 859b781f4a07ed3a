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

"""Makes ``compute_driver = nova_snapshot_ext.SnapshotLibvirtDriver``
work: Nova loads a compute driver only as ``nova.virt.<compute_driver>``.

The package installs this one module into Nova's tree, and nothing else
there (no ``nova/__init__.py`` nor ``nova/virt/__init__.py``).
"""

from nova_snapshot_ext.virt.driver import SnapshotLibvirtDriver

__all__ = ['SnapshotLibvirtDriver']
