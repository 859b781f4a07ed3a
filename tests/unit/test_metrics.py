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

"""The metrics text file: what a scrape sees after some snapshots."""

import os

from prometheus_client import parser

from nova_snapshot_ext import exception
from nova_snapshot_ext import metrics
from nova_snapshot_ext import model


def result(method, size, seconds, downtime=0.0, disks=()):
    return model.SnapshotResult(
        method=method, reason='', image='', image_id='i', location='',
        format='qcow2', size=size, virtual_size=size, sha256=None,
        seconds=seconds, guest='g', backend='qcow2', downtime=downtime,
        disks=list(disks))


def scrape(path):
    with open(path) as f:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in parser.text_string_to_metric_families(f.read())
                for s in family.samples}


def test_counters_add_up_across_writers_and_survive_a_new_file(
        conf, tmp_path):
    prom = str(tmp_path / 'textfile' / 'nse.prom')
    conf.set_override('metrics_file', prom, group='snapshot')
    metrics.record(conf, 'file', result('live', 100, 2.0))
    metrics.record(conf, 'glance+http://g:9292', result('cold', 50, 4.0, 1.5))
    os.unlink(prom)
    metrics.record(conf, 'file:///x', result('live', 300, 4.0, disks=[
        {'size': 200}, {'size': 100}]))
    gone = exception.GuestNotFound(guest='x', uri='u')
    metrics.record(conf, 'glance', error=gone)

    got = scrape(prom)
    live, cold = (('method', 'live'),), (('method', 'cold'),)
    assert got[('nova_snapshot_ext_snapshots_total', (
        ('method', 'live'), ('result', 'ok'), ('store', 'file')))] == 2
    assert got[('nova_snapshot_ext_snapshots_total', (
        ('method', 'none'), ('result', 'GuestNotFound'),
        ('store', 'glance')))] == 1
    assert got[('nova_snapshot_ext_snapshot_seconds_count', live)] == 2
    assert got[('nova_snapshot_ext_snapshot_seconds_sum', live)] == 6.0
    assert got[('nova_snapshot_ext_snapshot_bytes_total', live)] == 400
    assert got[('nova_snapshot_ext_guest_paused_seconds_total', cold)] == 1.5
    assert ('nova_snapshot_ext_last_snapshot_timestamp_seconds',
            (('result', 'error'),)) in got


def test_a_file_that_cannot_be_written_fails_no_snapshot(conf, tmp_path):
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('')
    conf.set_override('metrics_file', str(blocker / 'nse.prom'),
                      group='snapshot')
    metrics.record(conf, 'file', result('live', 1, 1.0))
    assert blocker.read_text() == ''


def test_nothing_is_kept_unless_asked(conf, tmp_path):
    metrics.record(conf, 'file', result('live', 1, 1.0))
    assert not (tmp_path / metrics.STATE).exists()
