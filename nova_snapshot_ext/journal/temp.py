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

"""The temporary directories of snapshots: their names, and the undo of
the ``temp_dir`` step that is journaled before one is made.

A backend's working directory is ``snap-<hex>`` (under ``[snapshot]
temp_directory``), an image staged before its upload ``image-<hex>`` and
a Glance image's local data ``glance-<hex>``: ``gc`` sweeps old ones, and
``recover`` removes those its journals name.
"""

from nova_snapshot_ext.journal import journal
from nova_snapshot_ext.journal import undo

#: Name prefixes: a backend's working directory, a staged image, a
#: Glance image's local data.
SNAPSHOT, IMAGE, GLANCE = 'snap-', 'image-', 'glance-'
PREFIXES = (SNAPSHOT, GLANCE, IMAGE)


def ours(name: str) -> bool:
    return name.startswith(PREFIXES)


def undo_temp_dir(r: undo.Recovering, step: journal.Step) -> None:
    """``temp_dir``: remove the directory."""
    undo.remove_path(r, step, ours, 'temporary directory')
