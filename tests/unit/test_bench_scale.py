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
"""The scale benchmark's figures (tools/bench_scale.py), from samples
recorded as its cases record them: no guest, no libvirt.
"""

from tools import bench_runner as runner
from tools import bench_scale

AT_ONCE = bench_scale.AT_ONCE % 4


def _snapshot(started, seconds, written):
    """One snapshot as ``Scale.take`` returns it (without the result)."""
    return {'started': started, 'ended': started + seconds,
            'seconds': seconds, 'written': written}


def _run():
    """Three runs of each case, 4 guests of 100 MiB: alone 2, 1 and 4 s
    (median 2); at once 5, 4 and 6 s (median 5).
    """
    run = runner.Runner(3)
    for wall, rate in ((2.0, 0.9), (1.0, 0.5), (4.0, 1.0)):
        run.record(bench_scale.ALONE, wall, per_guest=[wall], rates=[rate])
    for wall, per, rates in (
            (5.0, [1.0, 2.0, 3.0, 5.0], [0.8, 0.7, 0.9, 0.6]),
            (4.0, [4.0, 4.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0]),
            (6.0, [2.0, 6.0, 3.0, 1.0], [0.2, 0.9, 0.8, 0.9])):
        run.record(AT_ONCE, wall, per_guest=per, rates=rates)
    return run


def test_one_run_is_first_start_to_last_end():
    # NOTE: the second one starts last, the third one ends last.
    done = [_snapshot(10.0, 3.0, 300), _snapshot(10.5, 1.5, 30),
            _snapshot(10.2, 4.0, 100)]
    wall, extra = bench_scale.one_run(done, [100.0, 60.0, 0.0])
    assert abs(wall - 4.2) < 1e-9
    assert extra['per_guest'] == [3.0, 1.5, 4.0]
    assert extra['during'] == [100.0, 20.0, 25.0]
    assert extra['idle'] == [100.0, 60.0, 0.0]
    # NOTE: a guest that wrote nothing while idle has no ratio: 0.
    assert extra['rates'] == [1.0, 0.333, 0.0]


def test_one_run_of_one_guest_is_its_own_seconds():
    wall, extra = bench_scale.one_run([_snapshot(7.0, 2.5, 50)], [40.0])
    assert wall == 2.5
    assert extra['per_guest'] == [2.5]
    assert extra['rates'] == [0.5]


def test_figures_of_both_cases_against_the_alone_one():
    figs = bench_scale.figures(_run(), 4, 100)
    assert figs['guests'] == 4 and figs['data_mb'] == 100
    alone, both = figs['rows'][bench_scale.ALONE], figs['rows'][AT_ONCE]
    assert alone['seconds'] == 2.0 and alone['samples'] == [2.0, 1.0, 4.0]
    assert alone['mib_per_s'] == 50.0
    assert alone['over_alone'] == 1.0 and alone['wall_over_alone'] == 1.0
    assert alone['per_guest_median'] == 2.0
    assert alone['per_guest_max'] == 4.0
    assert alone['guest_rate_median'] == 0.9
    assert alone['guest_rate_min'] == 0.5
    # NOTE: 4 x 100 MiB in 5 s, against 100 MiB in 2 s alone.
    assert both['seconds'] == 5.0 and both['guests'] == 4
    assert both['mib_per_s'] == 80.0
    assert both['over_alone'] == 1.6
    assert both['wall_over_alone'] == 2.5
    # NOTE: the 12 snapshots' own seconds pooled: 1 1 2 2 3 3 | 4 4 4 4
    # 5 6.
    assert both['per_guest_median'] == 3.5
    assert both['per_guest_max'] == 6.0
    assert both['guest_rate_median'] == 0.9
    assert both['guest_rate_min'] == 0.2
    assert len(both['runs']) == 3
    # NOTE: alone spreads (4 - 1) / 2 = 150%, at once (6 - 4) / 5 = 40%.
    assert figs['noisy_rows'] == [bench_scale.ALONE, AT_ONCE]


def test_report_prints_the_figures_of_each_case():
    facts = {'libvirt': '9.0.0', 'qemu': '7.2.0', 'cores': 2,
             'cpu': 'test cpu', 'ram_gib': 8.0, 'kernel': '6.1',
             'others': ['other-guest'], 'load_before': (1.0, 0.5, 0.25),
             'load_after': (2.0, 1.5, 1.25)}
    text = bench_scale.report(bench_scale.figures(_run(), 4, 100), facts, 3)
    assert '4 guests, each 100 MiB' in text
    assert 'other-guest' in text
    assert 'load average before 1.00/0.50/0.25, after 2.00/1.50/1.25' in text
    lines = text.splitlines()
    alone = next(line for line in lines if line.strip().startswith(
        bench_scale.ALONE))
    both = next(line for line in lines if line.strip().startswith(
        AT_ONCE))
    assert alone.split()[3:] == ['2.00', '50.0', '1.00', '2.00', '4.00',
                                 '90%', '(50%)']
    assert both.split()[4:] == ['5.00', '80.0', '1.60', '3.50', '6.00',
                                '90%', '(20%)']
    assert lines[-1].endswith(': %s, %s' % (bench_scale.ALONE, AT_ONCE))
