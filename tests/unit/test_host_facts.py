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

"""The daemon's versions are asked once per connection.

A fake connection counts the calls: what is measured is how often the
engine asks, which a real libvirtd cannot report.
"""

import libvirt

from nova_snapshot_ext.libvirt import host as host_mod


class _Conn:
    def __init__(self, calls, qemu=7002000):
        self.calls, self.qemu, self.alive = calls, qemu, True

    def isAlive(self):
        return self.alive

    def getVersion(self):
        self.calls.append('getVersion')
        return self.qemu

    def getLibVersion(self):
        self.calls.append('getLibVersion')
        return 9000000

    def getType(self):
        self.calls.append('getType')
        return 'QEMU'

    def close(self):
        self.alive = False


def _host(monkeypatch, versions):
    calls, opened = [], []

    def open_(uri):
        opened.append(_Conn(calls, versions[min(len(opened),
                                                len(versions) - 1)]))
        return opened[-1]

    monkeypatch.setattr(libvirt, 'open', open_)
    return host_mod.Host('qemu:///system'), calls, opened


def test_versions_are_asked_once_per_connection(monkeypatch):
    host, calls, _ = _host(monkeypatch, [7002000])
    for _ in range(5):
        assert host.qemu_version() == (7, 2, 0)
        assert host.libvirt_version() == (9, 0, 0)
        assert host.hypervisor() == 'QEMU'
    assert sorted(calls) == ['getLibVersion', 'getType', 'getVersion']


def test_a_new_connection_asks_again(monkeypatch):
    # libvirtd restarted after an upgrade: the new daemon's QEMU counts.
    host, calls, opened = _host(monkeypatch, [7002000, 8000000])
    assert host.qemu_version() == (7, 2, 0)
    opened[0].alive = False
    assert host.qemu_version() == (8, 0, 0)
    host.close()
    assert host.qemu_version() == (8, 0, 0)
    assert calls == ['getVersion'] * 3
