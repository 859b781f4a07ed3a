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

"""Figures an operator can graph: a Prometheus text file.

With ``[snapshot] metrics_file`` set, every snapshot, taken by the command
or by nova-compute, and whether it worked or not, adds to counters kept in
``metrics.json`` under ``state_path``; the file is then written again
whole, as the node exporter's textfile collector reads it (in the
collector's directory, ``*.prom``). The counters live across processes
and restarts, under a lock, so several processes on one host add to the
same figures:

* ``nova_snapshot_ext_snapshots_total{method, result, store}``: snapshots
  by method (``live``, ``cold``, ``direct``; ``none`` when one failed
  before a method was chosen), result (``ok`` or the error's name) and
  store kind (``file``, ``glance``);
* ``nova_snapshot_ext_snapshot_seconds_{sum,count}{method}`` and
  ``nova_snapshot_ext_snapshot_bytes_total{method}``, of the snapshots that
  worked: the mean duration and the bytes stored;
* ``nova_snapshot_ext_guest_paused_seconds_total{method}``: how long the
  guests were stopped for them;
* ``nova_snapshot_ext_last_snapshot_timestamp_seconds{result}``: when the
  last one ended, by result (an alert when ``ok`` gets old).

A metric that cannot be written is logged and never fails a snapshot.
"""

from collections.abc import Iterator
import json
import os
import time
from typing import Any

from oslo_log import log as logging
import prometheus_client
from prometheus_client import core

from nova_snapshot_ext.journal import durable
from nova_snapshot_ext.journal import locks
from nova_snapshot_ext import private

LOG = logging.getLogger(__name__)

STATE = 'metrics.json'
PREFIX = 'nova_snapshot_ext_'


def record(conf: Any, store: str, result: Any = None,
           error: BaseException | None = None) -> None:
    """Add one snapshot to the figures: ``result`` (a ``SnapshotResult``)
    when it worked, else the ``error`` it failed with.
    """
    path = conf.snapshot.metrics_file
    if not path:
        return
    try:
        with locks.shared_file_lock(conf, 'metrics'):
            state = _load(conf)
            _add(state, store, result, error)
            _save(conf, state)
            _write(path, state)
    except (OSError, ValueError) as e:
        LOG.warning('Could not write the snapshot metrics to %(path)s: '
                    '%(err)s', {'path': path, 'err': e})


def _load(conf: Any) -> dict[str, Any]:
    try:
        with open(os.path.join(conf.state_path, STATE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _save(conf: Any, state: dict[str, Any]) -> None:
    path = os.path.join(conf.state_path, STATE)
    with private.open_new(path + '.new') as f:
        json.dump(state, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + '.new', path)
    durable.fsync_dir(conf.state_path)


def _add(state: dict[str, Any], store: str, result: Any,
         error: BaseException | None) -> None:
    method = getattr(result, 'method', None) or 'none'
    outcome = 'ok' if error is None else type(error).__name__
    key = '%s|%s|%s' % (method, outcome, store.split(':', 1)[0].split('+')[0])
    counts = state.setdefault('snapshots', {})
    counts[key] = counts.get(key, 0) + 1
    state.setdefault('last', {})['ok' if error is None else 'error'] = \
        time.time()
    if result is None:
        return
    by_method = state.setdefault('methods', {}).setdefault(
        method, {'seconds': 0.0, 'count': 0, 'bytes': 0, 'paused': 0.0})
    by_method['seconds'] += float(result.seconds)
    by_method['count'] += 1
    by_method['bytes'] += int(sum(d.get('size') or 0 for d in result.disks)
                              if result.disks else result.size or 0)
    by_method['paused'] += float(result.downtime or 0.0)


class _Figures:
    """The figures of ``state`` as Prometheus metric families."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        total = core.CounterMetricFamily(
            PREFIX + 'snapshots', 'Snapshots taken, by method, result and '
            'store', labels=['method', 'result', 'store'])
        for key, n in sorted(self.state.get('snapshots', {}).items()):
            total.add_metric(key.split('|'), n)
        yield total
        methods = sorted(self.state.get('methods', {}).items())
        seconds = core.SummaryMetricFamily(
            PREFIX + 'snapshot_seconds', 'Duration of the snapshots that '
            'worked', labels=['method'])
        stored = core.CounterMetricFamily(
            PREFIX + 'snapshot_bytes', 'Bytes stored by the snapshots that '
            'worked', labels=['method'])
        paused = core.CounterMetricFamily(
            PREFIX + 'guest_paused_seconds', 'Seconds the guests were '
            'stopped for the snapshots that worked', labels=['method'])
        for method, f in methods:
            seconds.add_metric([method], f['count'], f['seconds'])
            stored.add_metric([method], f['bytes'])
            paused.add_metric([method], f['paused'])
        yield from (seconds, stored, paused)
        last = core.GaugeMetricFamily(
            PREFIX + 'last_snapshot_timestamp_seconds', 'When the last '
            'snapshot ended, by result (ok or error)', labels=['result'])
        for outcome, at in sorted(self.state.get('last', {}).items()):
            last.add_metric([outcome], at)
        yield last


def _write(path: str, state: dict[str, Any]) -> None:
    """The text file, written whole and renamed into place."""
    registry = prometheus_client.CollectorRegistry()
    registry.register(_Figures(state))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    prometheus_client.write_to_textfile(path, registry)
