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

"""What tools/bench_cloud.py reads on a compute host of the one-node
cloud while a server is snapshotted: the guest's domain state and its
counter, the bytes staged, nova-compute's RSS. Run with the cloud's venv.
"""

import os
import time
import xml.etree.ElementTree as ET

import libvirt

from tools import bench_runner as runner
from tools import cloud_setup


def guest_counter(dom):
    """The counter of the guest of DOM, read from its root disk file;
    None when its disk is not a file (rbd). Waits for the guest to have
    written its counter sectors.
    """
    disk = ET.fromstring(dom.XMLDesc(0)).find("./devices/disk[@device='disk']")
    path = disk.find('source').get('file')
    if path is None:
        return None
    size = dom.blockInfo(disk.find('target').get('dev'))[0]
    deadline = time.monotonic() + 120
    while True:
        try:
            return runner.Counter(path, size)
        except runner.BenchError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


class Sampler(runner.Sampler):
    """The guest's domain state, bytes staged and nova-compute's RSS."""

    def __init__(self, server_id, host):
        super().__init__()
        self.lv = libvirt.open('qemu+unix:///system?socket=%s' % os.path.join(
            cloud_setup.CLOUD_DIR, 'libvirt-' + host, 'run', 'libvirt-sock'))
        self.dom = self.lv.lookupByUUIDString(server_id)
        state = os.path.join(cloud_setup.CLOUD_DIR, 'nova-' + host)
        self.stage_dirs = [os.path.join(state, 'instances', 'snapshots'),
                           os.path.join(state, 'snapshot-ext', 'tmp')]
        with open(os.path.join(cloud_setup.CLOUD_DIR, 'run',
                               'nova-compute-%s.pid' % host)) as f:
            self.pid = int(f.read())
        self.not_running = 0.0
        self.staged = self.rss = 0
        self.rss_before = self.read_rss()
        self.last = time.monotonic()

    def sample(self):
        now = time.monotonic()
        if self.dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
            self.not_running += now - self.last
        self.last = now
        self.staged = max(self.staged, sum(runner.allocated(d)[0]
                                           for d in self.stage_dirs))
        self.rss = max(self.rss, self.read_rss())

    def read_rss(self):
        try:
            with open('/proc/%d/status' % self.pid) as f:
                return max([0] + [int(line.split()[1]) * 1024 for line in f
                                  if line.startswith('VmRSS:')])
        except OSError:
            return 0

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.lv.close()
