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

"""Plugin lookup shared by image backends and image stores."""

from importlib import metadata

from stevedore import driver


def names(namespace: str) -> list[str]:
    """The installed plugin names of ``namespace``, without importing any
    plugin.
    """
    return sorted({ep.name for ep in metadata.entry_points(group=namespace)})


def load_class(namespace: str, name: str) -> type | None:
    """The plugin class ``name`` of ``namespace``, or None when there is
    no such plugin.
    """
    # NOTE: the class only: the caller builds it, so that the plugin's own
    # errors (a bad path, say) reach the user instead of being logged and
    # swallowed by stevedore.
    if name not in names(namespace):
        return None
    return driver.DriverManager(namespace, name).driver
