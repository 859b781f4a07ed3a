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

"""Stopping a snapshot part-way: a signal, or a time limit.

A :class:`Cancel` is asked to stop (:meth:`Cancel.request`, e.g. from a
signal handler, which must not raise at an arbitrary point) or given a
deadline. The snapshot calls :meth:`Cancel.check` at safe points only:
before each step it journals and as its copy, conversion and upload
progress. There the check raises, once, and the snapshot unwinds as for
any failure, undoing what it made. The unwinding itself is never
interrupted.
"""

import time

from nova_snapshot_ext import exception


class Cancel:
    """Whether one snapshot should stop.

    :param timeout: seconds from now; 0 means no limit.
    :param option: what set the limit, for the message.
    """

    def __init__(self, timeout: float = 0,
                 option: str = '[snapshot] timeout') -> None:
        self.timeout = timeout
        self.option = option
        self.deadline = time.monotonic() + timeout if timeout else None
        #: Why a stop was asked for; None while none was.
        self.reason: str | None = None
        #: The guest, for messages.
        self.guest = ''
        self._raised = False

    def request(self, reason: str) -> None:
        """Ask the snapshot to stop at its next safe point. Safe to call
        from a signal handler; only the first reason is kept.
        """
        if self.reason is None:
            self.reason = reason

    @property
    def raised(self) -> bool:
        """Whether :meth:`check` has raised."""
        return self._raised

    def check(self) -> None:
        """Raise, once, when a stop was asked for or time is up.

        :raises SnapshotCancelled: a stop was asked for.
        :raises SnapshotTimedOut: the deadline has passed.
        """
        if self._raised:
            return
        if self.reason is not None:
            self._raised = True
            raise exception.SnapshotCancelled(guest=self.guest,
                                              reason=self.reason)
        if self.deadline is not None and time.monotonic() > self.deadline:
            self._raised = True
            self.reason = 'timeout'
            raise exception.SnapshotTimedOut(
                guest=self.guest, timeout='%g' % self.timeout,
                option=self.option)
