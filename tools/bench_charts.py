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

"""PNG charts of what ``python -m tools.bench`` measured (``--charts
DIR``), or of its ``--json`` file afterwards::

    python -m tools.bench_charts FIGURES.json DIR

* ``guest-rate-<N>MiB.png``: the guest's writes per second, before and
  during one snapshot of each variant (time 0: the snapshot's call), for
  each data size;
* ``time-vs-size.png``: the median seconds of each variant against the
  data size, when the run measured more than one size;
* ``cloud.png``, from ``tools/bench_cloud.py --json``: Nova's own driver
  against ours, seconds to an active image and the guest's write rate
  during the snapshot, for each host and size.

matplotlib draws them, without a display (its Agg backend).
"""

import os
import sys

import matplotlib
matplotlib.use('Agg')
from matplotlib import pyplot  # noqa: E402

MiB = 1024 * 1024
#: Seconds of one bin of the guest's write rate.
BIN = 0.5


def rate_series(trace: list[list[float]]) -> tuple[list[float], list[float]]:
    """The writes per second of ``trace`` ([seconds, counter] samples) in
    bins of :data:`BIN` seconds: (bin middles, rates).
    """
    times, rates = [], []
    if not trace:
        return times, rates
    start, count = trace[0]
    for at, value in trace[1:]:
        if at - start >= BIN:
            times.append((start + at) / 2)
            rates.append((value - count) / (at - start))
            start, count = at, value
    return times, rates


def guest_rate(size: dict, path: str) -> None:
    """The guest's write rate over time, one line per variant."""
    fig, ax = pyplot.subplots(figsize=(9, 4.5))
    for row, figures in sorted(size['rows'].items()):
        if figures.get('trace'):
            ax.plot(*rate_series(figures['trace']), label=row)
    ax.axvline(0, color='grey', linewidth=0.8)
    ax.set_xlabel('seconds since the snapshot was called (before: idle)')
    ax.set_ylabel('guest writes per second')
    ax.set_ylim(bottom=0)
    ax.set_title('Guest write rate during a live snapshot, %d MiB of data'
                 % size['data_mb'])
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def time_vs_size(sizes: list[dict], path: str) -> None:
    """Median seconds against data size, one line per variant that every
    size measured.
    """
    rows = set.intersection(*(set(s['rows']) for s in sizes))
    fig, ax = pyplot.subplots(figsize=(9, 4.5))
    data = [s['data_mb'] for s in sizes]
    for row in sorted(rows):
        ax.plot(data, [s['rows'][row]['seconds'] for s in sizes],
                marker='o', label=row)
    ax.set_xlabel('MiB of data on the disk')
    ax.set_ylabel('median seconds')
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_title('Time against data size')
    ax.legend(fontsize='small')
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def cloud(rows: dict, path: str) -> None:
    """Stock against ours in the cloud: two panels of bars, seconds to
    active and the guest's write rate, a group per host and size.
    """
    groups = sorted({(r['host'], r['data_mb']) for r in rows.values()})
    drivers = list(dict.fromkeys(r['driver'] for r in rows.values()))
    fig, axes = pyplot.subplots(1, 2, figsize=(11, 4.5))
    width = 0.8 / len(drivers)
    for i, driver in enumerate(drivers):
        found = {(r['host'], r['data_mb']): r for r in rows.values()
                 if r['driver'] == driver}
        at = [g + (i - (len(drivers) - 1) / 2) * width
              for g in range(len(groups))]
        axes[0].bar(at, [found[g]['seconds'] if g in found else 0
                         for g in groups], width, label=driver)
        axes[1].bar(at, [100 * _guest(found.get(g)) for g in groups],
                    width, label=driver)
    for ax, label in zip(axes, ('seconds to an active image',
                                'guest write rate during it, % of idle')):
        ax.set_xticks(range(len(groups)),
                      ['%s\n%d MiB' % g for g in groups])
        ax.set_ylabel(label)
        ax.legend(fontsize='small')
    fig.suptitle("Nova's own libvirt driver against ours, one-node cloud")
    fig.tight_layout()
    fig.savefig(path)
    pyplot.close(fig)


def _guest(row: dict | None) -> float:
    """The median guest rate of ``row``'s runs; 0 when not measured."""
    rates = sorted(r['guest'] for r in (row or {}).get('runs', [])
                   if r.get('guest') is not None)
    return rates[len(rates) // 2] if rates else 0.0


def write(figures: dict, directory: str) -> list[str]:
    """The charts of a run's ``figures`` in ``directory``: their paths."""
    os.makedirs(directory, exist_ok=True)
    made = []
    if figures.get('kind') == 'cloud':
        made.append(os.path.join(directory, 'cloud.png'))
        cloud(figures['rows'], made[-1])
        return made
    for size in figures['sizes']:
        path = os.path.join(directory, 'guest-rate-%dMiB.png'
                            % size['data_mb'])
        guest_rate(size, path)
        made.append(path)
    if len(figures['sizes']) > 1:
        made.append(os.path.join(directory, 'time-vs-size.png'))
        time_vs_size(figures['sizes'], made[-1])
    return made


def main(argv: list[str]) -> int:
    import json
    if len(argv) != 2:
        print('usage: python -m tools.bench_charts FIGURES.json DIR',
              file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        figures = json.load(f)
    for path in write(figures, argv[1]):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
