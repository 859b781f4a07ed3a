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
"""Guest first (backends/pacing.py): how the read's rate follows what
the guest manages to write.
"""

from nova_snapshot_ext.backends import pacing

MiB = pacing.MiB


class Guest:
    """A guest that writes ``rate(read_rate)`` requests per second."""

    def __init__(self, rate):
        self.rate = rate
        self.now = 0.0
        self.count = 0.0
        self.pacer = None

    def writes(self):
        return int(self.count)

    def clock(self):
        return self.now

    def run(self, steps):
        """``steps`` steps of the copy; the read rate after each."""
        rates = []
        for _ in range(steps):
            self.now += pacing.INTERVAL
            self.count += self.rate(self.pacer.rate) * pacing.INTERVAL
            rates.append(self.pacer.tick())
        return rates


def _pace(rate, share=0.8, ceiling=0):
    guest = Guest(rate)
    guest.pacer = pacing.GuestFirst(guest.writes, share, ceiling,
                                    clock=guest.clock)
    return guest


def test_a_guest_that_keeps_its_rate_lets_the_copy_speed_up():
    guest = _pace(lambda read: 200)
    rates = guest.run(6)
    assert rates[0] == 96 * MiB
    assert rates == sorted(rates) and rates[-1] > 500 * MiB


def test_a_guest_that_does_not_write_is_not_waited_for():
    assert _pace(lambda read: 0).run(8)[-1] > 1000 * MiB


def test_a_guest_slowed_below_its_share_slows_the_copy_down():
    # 200 writes/s while the copy reads at most 64 MiB/s, 50 beyond.
    guest = _pace(lambda read: 200 if read <= 64 * MiB else 50)
    rates = guest.run(40)
    # It settles around the fastest rate the guest does not feel: at most
    # one step above it, never below the floor.
    assert all(pacing.FLOOR <= r <= 96 * MiB for r in rates[5:])
    assert sum(1 for r in rates if r <= 64 * MiB) > len(rates) / 2


def test_a_guest_that_goes_quiet_by_itself_does_not_hold_the_copy_back():
    writes = {'rate': 400}
    guest = _pace(lambda read: writes['rate'] if read <= 32 * MiB
                  else writes['rate'] / 4)
    guest.run(10)
    writes['rate'] = 0
    assert guest.run(20)[-1] > 500 * MiB


def test_never_above_the_bandwidth_nor_below_the_floor():
    assert max(_pace(lambda read: 0, ceiling=100 * MiB).run(10)) == \
        100 * MiB
    assert min(_pace(lambda read: 100 if read < pacing.FLOOR else 1)
               .run(20)) == pacing.FLOOR
