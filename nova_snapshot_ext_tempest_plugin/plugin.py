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


"""Tempest plugin of nova-snapshot-ext (entry point
``tempest.test_plugins``).
"""

import os

from tempest.test_discover import plugins

from nova_snapshot_ext_tempest_plugin import config as plugin_config


class NovaSnapshotExtTempestPlugin(plugins.TempestPlugin):
    """The snapshot tests of nova-snapshot-ext and their options."""

    def load_tests(self):
        """``(tests directory, the top level directory it imports from)``."""
        package_dir = os.path.dirname(os.path.abspath(__file__))
        top_level_dir = os.path.dirname(package_dir)
        return os.path.join(package_dir, 'tests'), top_level_dir

    def register_opts(self, conf):
        conf.register_group(plugin_config.nova_snapshot_ext_group)
        conf.register_opts(plugin_config.NovaSnapshotExtGroup,
                           group=plugin_config.nova_snapshot_ext_group)

    def get_opt_lists(self):
        return [(plugin_config.nova_snapshot_ext_group.name,
                 plugin_config.NovaSnapshotExtGroup)]
