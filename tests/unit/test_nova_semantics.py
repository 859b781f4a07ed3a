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

"""What the Nova driver asks of the engine to snapshot as Nova does: the
root disk as ``find_disk`` takes it, no quiesce of cold or direct
snapshots, Nova's disk operations limit around the copy.
"""

import contextlib
from unittest import mock

import pytest

from nova_snapshot_ext.backends import base
from nova_snapshot_ext.backends import finish
from nova_snapshot_ext.backends import steps
from nova_snapshot_ext import exception
from nova_snapshot_ext.libvirt import disks
from nova_snapshot_ext import model
from nova_snapshot_ext import policy
from nova_snapshot_ext.stores import base as store_base

CDROM_FIRST = """<domain><devices>
  <disk type='file' device='cdrom'><driver type='raw'/>
    <source file='/iso/boot.iso'/><target dev='hda'/></disk>
  <disk type='file' device='disk'><driver type='qcow2'/>
    <source file='/disks/root.qcow2'/><target dev='vda'/></disk>
</devices></domain>"""


def test_root_disk_skips_a_cdrom_first_on_the_command_line():
    assert disks.root_disk(CDROM_FIRST, 'g').target == 'vda'


def test_root_disk_of_any_kind_as_novas_find_disk():
    disk = disks.root_disk(CDROM_FIRST, 'g', any_device=True)
    assert (disk.target, disk.path) == ('hda', '/iso/boot.iso')


def job_of(state, quiesce='required', agent=False, **request):
    guest = mock.Mock()
    guest.name = 'g'
    guest.power_state.return_value = state
    guest.agent_connected.return_value = agent
    return model.SnapshotJob(
        conf=mock.Mock(), request=model.SnapshotRequest('g', 'n', **request),
        host=mock.Mock(), guest=guest, disk=mock.Mock(), store=mock.Mock(),
        method='auto', image_format='raw', quiesce=quiesce)


@pytest.mark.parametrize('state', ['shutoff', 'crashed', 'pmsuspended'])
def test_a_guest_that_does_not_run_needs_no_freeze(state):
    # NOTE: e.g. a direct snapshot of a stopped server whose image has
    # os_require_quiesce: consistent, not frozen, no error.
    job = job_of(state)
    assert steps.check_quiesce(job) is True
    job.guest.agent_connected.assert_not_called()


@pytest.mark.parametrize('state,reason', [
    ('running', 'no QEMU guest agent'), ('paused', 'paused')])
def test_required_quiesce_of_a_running_guest_still_fails(state, reason):
    with pytest.raises(exception.QuiesceFailed, match=reason):
        steps.check_quiesce(job_of(state))


def test_direct_snapshot_not_quiesced_when_the_request_says_so():
    job = steps.for_direct(job_of('running', quiesce_direct=False))
    assert job.quiesce == 'never'
    assert steps.check_quiesce(job) is False


def test_direct_snapshot_quiesced_on_the_command_line():
    job = job_of('running')
    assert steps.for_direct(job) is job
    with pytest.raises(exception.QuiesceFailed):
        steps.check_quiesce(steps.for_direct(job))


class Backend(base.ImageBackend):
    name = 'fake'

    def __init__(self, conf, events):
        super().__init__(conf)
        self.events = events

    def inspect(self, job):
        return base.Support()

    def facts(self, job, support=None):
        return policy.Facts(
            guest='g', hypervisor='QEMU', libvirt_version=(9,),
            qemu_version=(8,), min_libvirt_version=(8,),
            min_qemu_version=(6,), power_state='shutoff')

    def copy(self, job, method, out_path, outcome):
        self.events.append('copy ' + method)


def test_copy_and_upload_run_under_the_disk_ops_hook(conf):
    events = []

    @contextlib.contextmanager
    def disk_ops():
        events.append('acquire')
        yield
        events.append('release')

    pending = mock.Mock(STREAMS=False, path='/tmp/x',
                        meta=store_base.ImageMeta('n', 'raw'))
    pending.commit.side_effect = lambda progress: events.append('upload')
    store = mock.Mock()
    store.begin.return_value = contextlib.nullcontext(pending)
    job = job_of('shutoff', disk_ops=disk_ops)
    job = model.SnapshotJob(**dict(vars(job), store=store, conf=conf,
                                   method=policy.PREFER_LIVE))
    with mock.patch.object(finish, 'result') as result:
        Backend(conf, events).snapshot(job)
    assert events == ['acquire', 'copy cold', 'upload', 'release']
    assert result.call_args[0][1].method == 'cold'
