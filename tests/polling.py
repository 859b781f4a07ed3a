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

"""The one way a test waits for something: :func:`wait_until`.

Every wait has a deadline and fails with what it waited for, so that a
test fails in time rather than hangs (pytest-timeout, set in tox.ini, is
the last resort).
"""

from collections.abc import Callable
import time
from typing import TypeVar

T = TypeVar('T')


def wait_until(predicate: Callable[[], T], timeout: float,
               interval: float = 0.1,
               message: str | Callable[[], str] = 'the condition never held',
               sleep: Callable[[float], object] = time.sleep) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a
    true value, and return that value.

    :param message: what did not happen, or a function that says it
        (called only on failure, e.g. to show a log as it is then).
    :param sleep: how to sleep (``eventlet.sleep`` in a green thread).
    :raises AssertionError: ``timeout`` seconds passed; it says
        ``message`` and the predicate's last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError('%s (waited %s s; last value: %r)' % (
                text, timeout, value))
        sleep(interval)
