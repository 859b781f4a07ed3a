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

"""Sphinx configuration of the nova-snapshot-ext operator guide.

Built by ``tox -e docs``. The configuration reference (``show-options``)
needs the package installed: it reads the options through the
``oslo.config.opts`` entry point ``nova_snapshot_ext``.
"""

# -- General -----------------------------------------------------------

extensions = [
    'oslo_config.sphinxext',
    'reno.sphinxext',
]

project = 'nova-snapshot-ext'
copyright = '2026, The nova-snapshot-ext Authors'
author = 'The nova-snapshot-ext Authors'

root_doc = 'index'
exclude_patterns = []
pygments_style = 'sphinx'

# -- HTML --------------------------------------------------------------

html_theme = 'alabaster'
html_title = 'nova-snapshot-ext operator guide'
html_static_path = []
