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

"""8 guests snapshotted at once by 8 real commands with
``[snapshot] max_concurrent = 2``: all succeed, never more than 2 at a
time.

A snapshot holds one of the host's slots from before its journal is
written until after it is removed, so the number of journal files, sampled
every 20 ms, is never above the number of snapshots running. Guests are
the smallest test guest (8 MiB of data) and are destroyed as soon as
their snapshot is done: on 2 cores under TCG, 8 booting guests are the
cost of this test.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid

from tests.functional import guest as guest_mod
from tests import polling

COUNT, LIMIT = 8, 2
#: Seconds for all the snapshots to end.
ENDED_TIMEOUT = 600


def test_eight_snapshots_two_at_a_time(conn, workdir):
    state = os.path.join(workdir, 'state')
    conf_file = os.path.join(workdir, 'nse.conf')
    with open(conf_file, 'w') as f:
        f.write('[DEFAULT]\nstate_path = %s\n' % state)
        f.write('[snapshot]\nmax_concurrent = %d\n' % LIMIT)
    tag = uuid.uuid4().hex[:6]
    guests = [guest_mod.TestGuest(conn, os.path.join(workdir, 'g%d' % i),
                                  'many-%s-%d' % (tag, i), data_mb=8,
                                  agent_channel=False)
              for i in range(COUNT)]
    try:
        for g in guests:
            g.dom.create()
        for g in guests:
            g.wait_counter(1, timeout=180)

        journals = os.path.join(state, 'snapshots')
        seen = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    names = [n for n in os.listdir(journals)
                             if n.endswith('.json')]
                except FileNotFoundError:
                    names = []
                seen.append(len(names))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.monotonic()
        procs = [subprocess.Popen(
            [sys.executable, '-m', 'nova_snapshot_ext.cmd.main',
             '--config-file', conf_file, '--json', 'snapshot', g.name,
             '--name', 'many-%d' % i, '--method', 'live'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i, g in enumerate(guests)]
        results = []
        pending = dict(zip(procs, guests))

        def all_ended():
            for proc, g in list(pending.items()):
                if proc.poll() is None:
                    continue
                out, err = proc.communicate()
                results.append((proc.returncode, out, err))
                # Done: its CPU goes to the others.
                g.remove()
                del pending[proc]
            return not pending

        try:
            polling.wait_until(
                all_ended, ENDED_TIMEOUT, 0.1,
                lambda: '%d of the snapshots did not end' % len(pending))
        finally:
            stop.set()
            sampler.join()
            for proc in pending:
                proc.kill()
                proc.communicate()
        seconds = time.monotonic() - started
    finally:
        for g in guests:
            g.remove()

    for code, out, err in results:
        assert code == 0, err
        assert json.loads(out)['method'] == 'live'
    waited = [err for _code, _out, err in results
              if 'Waiting: %d snapshots are running' % LIMIT in err]
    print('%d snapshots in %.1f s; journals at once: max %d; %d waited'
          % (COUNT, seconds, max(seen), len(waited)))
    assert max(seen) <= LIMIT
    # They did run side by side, and the others said they waited.
    assert max(seen) == LIMIT
    assert waited
    images = os.path.join(state, 'images')
    assert len([n for n in os.listdir(images)
                if not n.startswith('.')]) == COUNT
    assert os.listdir(journals) == []
