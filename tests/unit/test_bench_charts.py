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
"""The benchmark's charts (tools/bench_charts.py), from figures laid out
as ``python -m tools.bench --json`` writes them.
"""

from matplotlib import image

from tools import bench_charts


def _trace(idle, during, seconds=4.0, step=0.1):
    """[seconds, counter] samples: ``idle`` writes/s for ``seconds``
    before time 0, ``during`` after.
    """
    samples, counter, at = [], 0.0, -seconds
    while at < seconds:
        samples.append([round(at, 3), round(counter)])
        counter += (idle if at < 0 else during) * step
        at += step
    return samples


def _figures():
    rows = lambda secs: {  # noqa: E731
        'plain convert + fsync + sha256': {'seconds': secs},
        'ours backup -> directory': {'seconds': secs * 1.3,
                                     'trace': _trace(250, 50)},
    }
    return {'sizes': [{'data_mb': 64, 'rows': rows(0.2)},
                      {'data_mb': 1024, 'rows': rows(1.4)}]}


def test_rate_series_gives_the_guests_writes_per_second():
    times, rates = bench_charts.rate_series(_trace(250, 50))
    before = [r for t, r in zip(times, rates) if t < -0.5]
    during = [r for t, r in zip(times, rates) if t > 0.5]
    assert before and during
    assert all(abs(r - 250) < 30 for r in before)
    assert all(abs(r - 50) < 30 for r in during)


def test_one_rate_chart_per_size_and_one_of_time_against_size(tmp_path):
    made = bench_charts.write(_figures(), str(tmp_path))
    assert [p.rsplit('/', 1)[1] for p in made] == [
        'guest-rate-64MiB.png', 'guest-rate-1024MiB.png',
        'time-vs-size.png']
    for path in made:
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        assert image.imread(path).shape[:2] == (450, 900)


def test_one_size_draws_no_size_chart(tmp_path):
    figures = _figures()
    figures['sizes'] = figures['sizes'][:1]
    made = bench_charts.write(figures, str(tmp_path))
    assert [p.rsplit('/', 1)[1] for p in made] == ['guest-rate-64MiB.png']


def _cloud_row(host, size, driver, seconds, guests):
    return {'host': host, 'data_mb': size, 'driver': driver,
            'seconds': seconds, 'runs': [{'guest': g} for g in guests]}


def test_the_cloud_run_draws_stock_against_ours(tmp_path):
    rows = {'local 1024 MiB stock': _cloud_row('local', 1024, 'stock', 30,
                                               [0.4, 0.5, 0.9]),
            'local 1024 MiB ours': _cloud_row('local', 1024, 'ours', 9,
                                              [0.8]),
            'rbd 1024 MiB ours': _cloud_row('rbd', 1024, 'ours', 4,
                                            [None])}
    made = bench_charts.write({'kind': 'cloud', 'rows': rows,
                               'at_once': {}}, str(tmp_path))
    assert [p.rsplit('/', 1)[1] for p in made] == ['cloud.png']
    assert image.imread(made[0]).shape[:2] == (450, 1100)


def test_the_cloud_chart_shows_the_median_guest_rate_or_none():
    assert bench_charts._guest(_cloud_row('local', 64, 'stock', 1,
                                          [0.4, 0.9, 0.5])) == 0.5
    # The rbd host's guest rate is not measured: no bar.
    assert bench_charts._guest(_cloud_row('rbd', 64, 'ours', 1,
                                          [None])) == 0.0
    assert bench_charts._guest(None) == 0.0
