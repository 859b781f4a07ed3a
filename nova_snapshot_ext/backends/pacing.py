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
"""Guest first: the read of a backup job's export paced by the guest.

A live snapshot through a backup job reads the disk's export from the
guest's own QEMU, which serves it in the event loop that also serves the
guest's I/O; read at full speed, the export slows the guest's writes to
a fraction of their rate. With ``[snapshot_libvirt] live_copy_guest_share``
set, :class:`GuestFirst` watches the guest's write requests to the disk
(libvirt's block statistics) while the copy runs and sets the read's
rate, in steps of :data:`INTERVAL` seconds:

* the first step reads at :data:`START`, gently, and what the guest
  writes meanwhile is its own rate (the baseline);
* after each step, when the guest wrote at least ``share`` of its
  baseline, the rate grows by half; when it did not, the rate halves (not
  below :data:`FLOOR`), so that the copy always ends;
* the baseline follows the guest: it is the highest rate seen, decaying
  by :data:`DECAY` each step; and when the guest writes less than its
  share even while the copy reads at the floor, the guest slowed down by
  itself, and its rate then is the new baseline: a guest that goes quiet
  does not hold the copy at the floor.

A guest that does not write is never slowed down for. The rate never
exceeds ``[snapshot_libvirt] live_copy_bandwidth`` when that is set.
"""

from collections.abc import Callable
import time

MiB = 1024 * 1024
#: Seconds between two decisions.
INTERVAL = 0.25
#: Bytes per second of the first step, of the slowest one.
START = 64 * MiB
FLOOR = 16 * MiB
#: How the baseline fades at each step while the guest writes less.
DECAY = 0.98
#: Growth and cut of the rate after a step.
GROW = 1.5
CUT = 0.5


class GuestFirst:
    """The read rate that keeps ``share`` of the guest's write rate.

    :param writes: the guest's write requests to the disk so far.
    :param share: the part of its own write rate the guest keeps (0-1).
    :param ceiling: bytes per second never exceeded (0: none).
    """

    def __init__(self, writes: Callable[[], int], share: float,
                 ceiling: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._writes = writes
        self.share = share
        self.ceiling = ceiling
        self._clock = clock
        self.rate = self._capped(START)
        self.baseline: float | None = None
        self._mark = (clock(), writes())

    def _capped(self, rate: float) -> int:
        rate = max(FLOOR, rate)
        return int(min(rate, self.ceiling) if self.ceiling else rate)

    def tick(self) -> int | None:
        """The new rate once a step has passed; None before."""
        now = self._clock()
        if now - self._mark[0] < INTERVAL:
            return None
        count = self._writes()
        guest = (count - self._mark[1]) / (now - self._mark[0])
        self._mark = (now, count)
        if self.baseline is None:
            self.baseline = guest
        else:
            self.baseline = max(guest, self.baseline * DECAY)
        if guest < self.share * self.baseline and self.rate <= FLOOR:
            # NOTE: as slow as the copy gets, the guest still writes less:
            # it slowed down by itself, and that is its new baseline.
            self.baseline = guest
        if guest >= self.share * self.baseline:
            self.rate = self._capped(self.rate * GROW)
        else:
            self.rate = self._capped(self.rate * CUT)
        return self.rate
