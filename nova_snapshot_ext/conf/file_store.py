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

"""Options of the directory image store ([snapshot_file_store])."""

from oslo_config import cfg

file_store_group = cfg.OptGroup(
    'snapshot_file_store',
    title='Directory image store',
    help='The embedded default store: images in a local directory.')

file_store_opts = [
    cfg.StrOpt(
        'directory',
        deprecated_group='file_store',
        default='$state_path/images',
        help="""
Directory that holds the images of the ``file`` store, one subdirectory per
image with the image file and ``metadata.json``. An image appears there
only once it is complete.

The directory is made readable by its owner only (mode 0700, or 0750 with
``file_group``) when nova-snapshot-ext creates it; an existing directory
keeps its mode.

Related options:

* ``[snapshot] default_store``
* ``file_group``
"""),
    cfg.StrOpt(
        'file_group',
        help="""
Group that may read the images of the ``file`` store (and of every
``file:///dir`` store), e.g. for a backup agent or an image server.

Images hold guest data: by default only the user that takes the snapshot
reads them (image files and ``metadata.json`` 0600, their directories
0700). With a group, they are given to it and made group-readable (files
0640, directories 0750); other users still read nothing. The user that
takes snapshots must be root or a member of the group, which is checked
before any guest is touched.

Possible values:

* unset (the default): images are private to their owner.
* a group name or a numeric gid.

Related options:

* ``directory``
"""),
]


def list_opts() -> dict:
    return {file_store_group: file_store_opts}
