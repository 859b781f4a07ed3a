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

"""A soak: 200 snapshots in one process, the cheapest there are (cold,
of a shut-off 8 MiB guest, into the directory store, each image removed
once made), with the process's open files and memory and the files in
the temporary and state directories measured: all stay flat.
"""

import os
import shutil
import time
import uuid

from tests.functional import guest as guest_mod
from tests.functional.test_snapshot import take

COUNT, WARMUP = 200, 20


def open_fds():
    return len(os.listdir('/proc/self/fd'))


def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


def names(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def files_below(path):
    return sum(len(dirs) + len(files) for _root, dirs, files in
               os.walk(path))


def test_soak_200_snapshots_stay_flat(conn, conf, workdir):
    g = guest_mod.TestGuest(conn, os.path.join(workdir, 'guest'),
                            'soak-%s' % uuid.uuid4().hex[:6], data_mb=8,
                            agent_channel=False)
    images = os.path.join(conf.state_path, 'images')
    samples = []
    started = time.monotonic()
    try:
        for i in range(1, COUNT + 1):
            result = take(conf, g, store='file', method='cold',
                          name='soak-%d' % i)
            shutil.rmtree(os.path.join(images, result.image_id))
            if i == WARMUP or i == COUNT:
                samples.append({
                    'fds': open_fds(), 'rss': rss_kib(),
                    'tmp': names(conf.snapshot.temp_directory),
                    'journals': names(conf.snapshot.journal_directory),
                    'state': files_below(conf.state_path)})
    finally:
        g.remove()
    seconds = time.monotonic() - started
    warm, last = samples
    print('%d snapshots in %.1f s; after %d / %d: fds %d / %d, RSS %d / '
          '%d KiB, files in state %d / %d' % (
              COUNT, seconds, WARMUP, COUNT, warm['fds'], last['fds'],
              warm['rss'], last['rss'], warm['state'], last['state']))
    assert last['fds'] == warm['fds']
    # Python's allocator keeps a little; a leak per snapshot would be
    # 180 times whatever it leaks.
    assert last['rss'] - warm['rss'] < 8 * 1024
    assert warm['tmp'] == last['tmp'] == []
    assert warm['journals'] == last['journals'] == []
    assert last['state'] == warm['state']
