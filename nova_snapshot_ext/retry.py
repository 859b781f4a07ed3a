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

"""Trying again: the one place where the project waits between tries.

Two shapes, both on tenacity:

* :func:`call` calls a function again while it raises one of the given
  exceptions (an RBD image busy, Glance gone for a moment), with a pause
  that grows from ``interval`` to ``max_interval``, and raises the last
  error when it gives up;
* :func:`poll` calls a function until its result is what is waited for
  (a block job ready, an image active) or time is up, and returns the
  last result either way: the caller says what a timeout means.

Every pause goes through :func:`sleep`, which unit tests replace.
"""

from collections.abc import Callable
import time
from typing import Any, TypeVar

from oslo_log import log as logging
import tenacity

LOG = logging.getLogger(__name__)

T = TypeVar('T')


def sleep(seconds: float) -> None:
    """Pause between two tries."""
    time.sleep(seconds)


def _sleep(seconds: float) -> None:
    # NOTE: looked up at each pause, so that a test's replacement of
    # sleep() applies to retries set up before it.
    sleep(seconds)


def _outcome(state: tenacity.RetryCallState) -> tenacity.Future:
    """The outcome of the call just made (tenacity sets it before it
    calls back).
    """
    assert state.outcome is not None
    return state.outcome


def _wait(interval: float, max_interval: float | None
          ) -> tenacity.wait.wait_base:
    """``interval``, or from it doubling up to ``max_interval``."""
    if max_interval is None:
        return tenacity.wait_fixed(interval)
    return tenacity.wait_exponential(multiplier=interval, max=max_interval)


def call(fn: Callable[..., T], *args: Any,
         on: type[BaseException] | tuple[type[BaseException], ...],
         unless: type[BaseException] | tuple[type[BaseException], ...] = (),
         attempts: int | None = None, timeout: float | None = None,
         interval: float = 0.1, max_interval: float | None = None,
         **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, called again while it raises ``on``
    (but not ``unless``, a narrower kind of it).

    :param attempts: give up after this many calls.
    :param timeout: give up once this many seconds have passed.
    :param interval: the first pause; it doubles at each try up to
        ``max_interval`` (default: it stays ``interval``).
    :raises: the last exception when it gives up.
    """
    stops: list[tenacity.stop.stop_base] = []
    if attempts is not None:
        stops.append(tenacity.stop_after_attempt(max(1, attempts)))
    if timeout is not None:
        stops.append(tenacity.stop_after_delay(timeout))
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, on) and not isinstance(e, unless)),
        stop=tenacity.stop_any(*stops) if stops else tenacity.stop_never,
        wait=_wait(interval, max_interval), sleep=_sleep, reraise=True,
        before_sleep=lambda state: LOG.debug(
            'Trying %(fn)s again after: %(err)s',
            {'fn': getattr(fn, '__name__', fn),
             'err': _outcome(state).exception()}))
    return retrying(fn, *args, **kwargs)


def poll(fn: Callable[[], T], done: Callable[[T], bool], *,
         timeout: float, interval: float,
         max_interval: float | None = None) -> T:
    """Call ``fn`` every ``interval`` seconds until ``done(result)`` or
    ``timeout`` seconds have passed.

    :param max_interval: the pause doubles at each try up to this
        (default: it stays ``interval``): quick for what is often done
        at once, light on what takes long.
    :returns: the last result, done or not.
    """
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda result: not done(result)),
        stop=tenacity.stop_after_delay(timeout),
        wait=_wait(interval, max_interval), sleep=_sleep,
        retry_error_callback=lambda state: _outcome(state).result())
    return retrying(fn)
