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

Related options:

* ``[snapshot] default_store``
"""),
]


def list_opts() -> dict:
    return {file_store_group: file_store_opts}
