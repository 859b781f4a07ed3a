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

import functools
from importlib import metadata
from typing import Any, cast

from stevedore import driver


def names(namespace: str, manager: Any = None) -> list[str]:
    """The plugin names of ``namespace`` (without importing any plugin),
    or of ``manager``, a stevedore extension manager, when given.
    """
    if manager is not None:
        return sorted(manager.names())
    return list(_installed(namespace))


@functools.lru_cache(maxsize=None)
def _installed(namespace: str) -> tuple[str, ...]:
    # NOTE: entry points are read from every distribution on sys.path,
    # once per process: a plugin installed later takes a restart, as
    # with stevedore's own cache.
    return tuple(sorted({ep.name for ep in
                         metadata.entry_points(group=namespace)}))


def load(namespace: str, name: str, manager: Any = None) -> Any:
    """The plugin ``name`` of ``namespace`` (or of ``manager``, a
    stevedore extension manager such as one made by
    ``make_test_instance``) as its entry point names it, a class or a
    function, not called; None when there is no such plugin.
    """
    # NOTE: not invoked: the caller builds or calls it, so that the
    # plugin's own errors (a bad path, say) reach the user instead of
    # being logged and swallowed by stevedore.
    if name not in names(namespace, manager):
        return None
    if manager is not None:
        return manager[name].plugin
    try:
        return driver.DriverManager(namespace, name).driver
    except OSError:
        # NOTE: stevedore's cache looks at every directory of sys.path;
        # one this user may not read (a service user's Python started
        # from root's environment) stops it. The entry point itself is
        # found without the cache.
        [ep] = [ep for ep in metadata.entry_points(group=namespace)
                if ep.name == name]
        return ep.load()


def load_class(namespace: str, name: str,
               manager: Any = None) -> type | None:
    """The plugin class ``name`` of ``namespace``: :func:`load`."""
    return cast('type | None', load(namespace, name, manager))
