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

"""The live / cold / direct choice, as a table."""

import pytest

from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import host
from nova_snapshot_ext import policy

BASE = dict(guest='g', hypervisor='QEMU', libvirt_version=(9, 0, 0),
            qemu_version=(7, 2, 22), min_libvirt_version=(8, 0, 0),
            min_qemu_version=(6, 2, 0), power_state='running',
            persistent=True, backend='qcow2')


def facts(**kw):
    return policy.Facts(**dict(BASE, **kw))


@pytest.mark.parametrize('kw,requested,method,reason', [
    ({}, 'auto', 'live', 'the guest is running'),
    ({'power_state': 'paused'}, 'auto', 'live', 'the guest is paused'),
    ({}, 'live', 'live', 'a live snapshot was requested'),
    ({}, 'cold', 'cold', 'a cold snapshot was requested'),
    ({'power_state': 'shutoff'}, 'auto', 'cold', 'the guest is shutoff'),
    ({'power_state': 'shutoff'}, 'cold', 'cold', 'cold snapshot was'),
    ({'hypervisor': 'LXC'}, 'auto', 'cold', 'hypervisor is LXC'),
    ({'libvirt_version': (7, 9, 0)}, 'auto', 'cold',
     'libvirt 7.9.0 is older than the minimum 8.0.0'),
    ({'qemu_version': (6, 1, 9)}, 'auto', 'cold',
     'QEMU 6.1.9 is older than the minimum 6.2.0'),
    ({'backend_supports_live': False}, 'auto', 'cold',
     'qcow2 backend cannot copy a running disk'),
    ({'live_disabled': True}, 'auto', 'cold', 'disable_live_snapshot'),
    ({'direct_unavailable': None, 'backend': 'rbd'}, 'auto', 'direct',
     'rbd backend copies the disk inside the storage'),
    ({'direct_unavailable': None, 'power_state': 'shutoff'}, 'auto',
     'direct', 'inside the storage'),
    ({'direct_unavailable': None}, 'cold', 'cold', 'cold snapshot was'),
])
def test_choose(kw, requested, method, reason):
    plan = policy.choose(facts(**kw), requested)
    assert plan.method == method
    assert reason in plan.reason


@pytest.mark.parametrize('kw,reason', [
    ({'power_state': 'shutoff'}, 'the guest is shutoff'),
    ({'hypervisor': 'LXC'}, 'the hypervisor is LXC, not QEMU'),
    ({'libvirt_version': (7, 0, 0)}, 'libvirt 7.0.0 is older'),
    ({'qemu_version': (5, 0, 0)}, 'QEMU 5.0.0 is older'),
    ({'live_disabled': True}, 'disable_live_snapshot is set'),
    ({'backend_supports_live': False}, 'cannot copy a running disk'),
])
def test_forced_live_names_the_reason(kw, reason):
    with pytest.raises(exception.LiveSnapshotImpossible) as e:
        policy.choose(facts(**kw), 'live')
    assert reason in str(e.value)
    assert 'Use --method cold' in str(e.value)


def test_forced_live_names_every_reason():
    with pytest.raises(exception.LiveSnapshotImpossible) as e:
        policy.choose(facts(power_state='shutoff', live_disabled=True),
                      'live')
    assert 'shutoff' in str(e.value)
    assert 'disable_live_snapshot' in str(e.value)


@pytest.mark.parametrize('kw,method,reason', [
    ({}, 'live', 'a live snapshot was requested'),
    ({'power_state': 'paused'}, 'live', 'a live snapshot was requested'),
    ({'power_state': 'shutoff'}, 'cold',
     'a live snapshot was preferred, but the guest is shutoff'),
    ({'power_state': 'pmsuspended'}, 'cold', 'the guest is pmsuspended'),
    ({'live_disabled': True}, 'cold',
     'preferred, but [snapshot_workarounds] disable_live_snapshot is set'),
    ({'qemu_version': (5, 0, 0)}, 'cold', 'QEMU 5.0.0 is older'),
    ({'direct_unavailable': None, 'power_state': 'shutoff'}, 'direct',
     'inside the storage'),
])
def test_prefer_live_falls_back_where_live_is_impossible(kw, method,
                                                         reason):
    # NOTE: what the Nova driver asks for with [snapshot] method = live:
    # shelve and snapshots of stopped servers must not fail.
    plan = policy.choose(facts(**kw), policy.PREFER_LIVE)
    assert plan.method == method
    assert reason in plan.reason


def test_prefer_live_of_running_transient_guest_without_live_is_refused():
    with pytest.raises(exception.ColdSnapshotImpossible):
        policy.choose(facts(persistent=False, live_disabled=True),
                      policy.PREFER_LIVE)


def test_cold_of_running_transient_guest_is_refused():
    with pytest.raises(exception.ColdSnapshotImpossible,
                       match='transient'):
        policy.choose(facts(persistent=False), 'cold')
    # live is fine for it
    assert policy.choose(facts(persistent=False)).method == 'live'


def test_bad_method():
    with pytest.raises(exception.InvalidInput, match='hot'):
        policy.choose(facts(), 'hot')


@pytest.mark.parametrize('text,version', [('8.0.0', (8, 0, 0)),
                                          ('6.2', (6, 2)), (' 10 ', (10,))])
def test_parse_version(text, version):
    assert policy.parse_version(text) == version


def test_parse_version_bad():
    with pytest.raises(exception.InvalidInput, match='8.x'):
        policy.parse_version('8.x')


def test_from_libvirt_number():
    assert host.from_libvirt_number(9000000) == (9, 0, 0)
    assert host.from_libvirt_number(7002022) == (7, 2, 22)
